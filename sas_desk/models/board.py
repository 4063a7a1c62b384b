"""The supervisor's board: what it shows, computed from the queue items and
the last hour's events (pure: no I/O, no Qt — the board runs it off the GUI
thread and only paints the result).

- waiting per queue and priority, with the longest wait and its state
  against the waiting limits;
- the late items first: P0/P1 past their limit, lost leases, call-backs
  due, booking requests nearing 48 h, then the other late items;
- staff on position: who holds what since when, decisions in the last
  hour, silent workstations (lost lease);
- the last hour's flow in 10-minute slots.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sas_desk.models.queue import (
    PRIORITY_RANK,
    AgeState,
    QueueItem,
    QueueName,
    WaitLimits,
    is_escalated,
    ordered,
)

BOARD_PRIORITIES = ("P0", "P1", "P2", "P3", "NR")
FLOW_SLOT = timedelta(minutes=10)
FLOW_SPAN = timedelta(hours=1)
BOOKING_LIMIT = timedelta(hours=48)  # SNP: a consultation within 48 h
BOOKING_WARN = timedelta(hours=36)  # three quarters of it
ACTIVE_WINDOW = timedelta(minutes=15)  # a workstation that acted since is "on position"
FLOW_KINDS: tuple[tuple[str, str], ...] = (
    ("ENQUEUED", "Entrés en file"),
    ("CLAIMED", "Pris en charge"),
    ("DECIDED", "Décidés"),
    ("CLOSED", "Clôturés"),
)


class LateReason(enum.IntEnum):
    """Why an item is on the late list; the order is the list's order."""

    URGENT_LATE = 0  # P0/P1 past their limit
    LOST_LEASE = 1  # its workstation went silent
    CALLBACK_DUE = 2  # a hand-back to the ARM, limit (nearly) reached
    BOOKING_48H = 3  # a booking request nearing 48 h
    LATE = 4  # any other item past its limit

    @property
    def label(self) -> str:
        return {
            0: "Urgent en retard",
            1: "Poste muet",
            2: "Rappel dû",
            3: "RDV < 48 h menacé",
            4: "En retard",
        }[self.value]


@dataclass(frozen=True)
class QueueCell:
    queue: QueueName
    priority: str
    waiting: int  # not held
    held: int
    longest_s: float  # longest wait of the items not held (0 when none)
    state: AgeState


@dataclass(frozen=True)
class LateItem:
    case_id: str
    queue: QueueName
    priority: str
    waited_s: float
    reason: LateReason
    state: AgeState
    holder: str = ""  # "operator (role, workstation)" when held
    motive: str = ""  # the motive label: no patient identity

    @property
    def short_id(self) -> str:
        return self.case_id.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class StaffRow:
    workstation: str
    operator: str
    role: str
    held: tuple[tuple[str, datetime], ...]  # (case id, claimed at)
    decided_last_hour: int
    last_seen: datetime | None
    silent: bool  # a lease of this workstation expired in the last hour

    @property
    def since(self) -> datetime | None:
        return min((at for _, at in self.held), default=None)


@dataclass(frozen=True)
class Flow:
    slots: tuple[datetime, ...]  # start of each 10-minute slot
    series: dict[str, tuple[int, ...]]  # event kind → count per slot


@dataclass(frozen=True)
class BoardFigures:
    at: datetime
    cells: tuple[QueueCell, ...]
    late: tuple[LateItem, ...]
    staff: tuple[StaffRow, ...]
    flow: Flow
    totals: dict[str, int] = field(default_factory=dict)

    def cell(self, queue: QueueName, priority: str) -> QueueCell | None:
        return next((c for c in self.cells if c.queue is queue and c.priority == priority), None)


@dataclass(frozen=True)
class RecentEvent:
    """What the board needs of an event: no dossier content."""

    at: datetime
    kind: str
    role: str
    operator: str
    workstation: str
    case_id: str


def _late_reason(
    item: QueueItem, state: AgeState, waited: timedelta, urgent: bool
) -> LateReason | None:
    """``urgent``: :func:`~sas_desk.models.queue.is_escalated` (the room's
    banner and sound), the one rule for "a P0/P1 is late"."""
    if item.alert:
        return LateReason.LOST_LEASE
    if item.claim is not None:
        return None
    if item.queue is QueueName.OSNP and waited >= BOOKING_WARN:
        return LateReason.BOOKING_48H
    if item.queue is QueueName.ARM and state is not AgeState.OK:
        return LateReason.CALLBACK_DUE
    if urgent:
        return LateReason.URGENT_LATE
    if state is AgeState.LATE:
        return LateReason.LATE
    return None


def board_figures(
    items: Iterable[QueueItem],
    events: Sequence[RecentEvent],
    now: datetime,
    limits: WaitLimits,
    queues: Sequence[QueueName] = tuple(QueueName),
) -> BoardFigures:
    """Everything the board paints, from the items and the last hour's events."""
    items = ordered(list(items))
    cells: list[QueueCell] = []
    for queue in queues:
        for priority in BOARD_PRIORITIES:
            mine = [i for i in items if i.queue is queue and i.priority == priority]
            free = [i for i in mine if i.claim is None]
            longest = max((i.waited(now) for i in free), default=timedelta(0))
            cells.append(
                QueueCell(
                    queue,
                    priority,
                    len(free),
                    len(mine) - len(free),
                    longest.total_seconds(),
                    limits.state(priority, longest) if free else AgeState.OK,
                )
            )

    late: list[LateItem] = []
    for item in items:
        waited = item.waited(now)
        state = limits.state(item.priority, waited)
        reason = _late_reason(item, state, waited, is_escalated(item, now, limits))
        if reason is None:
            continue
        holder = ""
        if item.claim is not None:
            c = item.claim
            holder = f"{c.operator} ({c.role}, {c.workstation})"
        late.append(
            LateItem(
                item.case_id,
                item.queue,
                item.priority,
                waited.total_seconds(),
                reason,
                state,
                holder,
                item.motive_label or item.motive_code,
            )
        )
    late.sort(key=lambda x: (x.reason, PRIORITY_RANK.get(x.priority, 9), -x.waited_s))

    staff = _staff(items, events, now)
    flow = _flow(events, now)
    totals = {
        "attente": sum(c.waiting for c in cells),
        "pris": sum(c.held for c in cells),
        "retard": sum(1 for x in late if x.state is AgeState.LATE or x.reason <= 1),
        "postes": sum(1 for s in staff if not s.silent or s.held),
    }
    return BoardFigures(now, tuple(cells), tuple(late), staff, flow, totals)


def _staff(
    items: Sequence[QueueItem], events: Sequence[RecentEvent], now: datetime
) -> tuple[StaffRow, ...]:
    held: dict[str, list[tuple[str, datetime]]] = {}
    who: dict[str, tuple[str, str]] = {}
    for item in items:
        if item.claim is not None:
            c = item.claim
            held.setdefault(c.workstation, []).append((item.case_id, c.claimed_at))
            who[c.workstation] = (c.operator, c.role)
    last_seen: dict[str, datetime] = {}  # last action, within ACTIVE_WINDOW
    last_any: dict[str, datetime] = {}  # last action within the hour
    expired: dict[str, datetime] = {}  # last lease lost within the hour
    decided: dict[str, int] = {}
    hour_ago = now - FLOW_SPAN
    for ev in events:
        if ev.at < hour_ago or ev.at > now:
            continue
        who.setdefault(ev.workstation, (ev.operator, ev.role))
        if ev.kind == "LEASE_EXPIRED":
            expired[ev.workstation] = max(expired.get(ev.workstation, ev.at), ev.at)
            continue
        last_any[ev.workstation] = max(last_any.get(ev.workstation, ev.at), ev.at)
        if ev.kind == "DECIDED":
            decided[ev.workstation] = decided.get(ev.workstation, 0) + 1
        if ev.at >= now - ACTIVE_WINDOW:
            last_seen[ev.workstation] = max(last_seen.get(ev.workstation, ev.at), ev.at)
    # on position: holding something, or acted lately, or silent (to be seen)
    silent = {ws for ws, at in expired.items() if last_any.get(ws, at) <= at}
    keep = set(held) | set(last_seen) | silent | {ws for ws, n in decided.items() if n}
    who = {ws: v for ws, v in who.items() if ws in keep}
    rows = [
        StaffRow(
            ws,
            operator,
            role,
            tuple(sorted(held.get(ws, []), key=lambda h: h[1])),
            decided.get(ws, 0),
            last_seen.get(ws),
            ws in silent,
        )
        for ws, (operator, role) in who.items()
    ]
    rows.sort(key=lambda r: (not r.silent, r.role, r.workstation))
    return tuple(rows)


def _flow(events: Sequence[RecentEvent], now: datetime) -> Flow:
    end = now.replace(second=0, microsecond=0)
    end -= timedelta(minutes=end.minute % 10)
    end += FLOW_SLOT  # the current slot is the last one
    count = int(FLOW_SPAN / FLOW_SLOT)
    slots = tuple(end - FLOW_SLOT * (count - i) for i in range(count))
    series = {kind: [0] * count for kind, _ in FLOW_KINDS}
    for ev in events:
        if ev.kind not in series or ev.at < slots[0] or ev.at >= end:
            continue
        series[ev.kind][int((ev.at - slots[0]) / FLOW_SLOT)] += 1
    return Flow(slots, {k: tuple(v) for k, v in series.items()})
