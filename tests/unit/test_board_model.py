"""The board's figures (pure): cells, the late list's order, staff, flow."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sas_desk.models.board import LateReason, RecentEvent, board_figures
from sas_desk.models.queue import AgeState, Claim, ItemStatus, QueueItem, QueueName, WaitLimits

TZ = timezone(timedelta(hours=1))
NOW = datetime(2026, 3, 14, 14, 37, 20, tzinfo=TZ)


def item(n: int, queue: QueueName, priority: str, minutes: float, **kw: object) -> QueueItem:
    return QueueItem(
        case_id=f"x.{n}",
        queue=queue,
        status=ItemStatus.CLAIMED if kw.get("claim") else ItemStatus.WAITING,
        priority=priority,
        waiting_since=NOW - timedelta(minutes=minutes),
        **kw,  # type: ignore[arg-type]
    )


def ev(
    minutes: float, kind: str, ws: str = "P-1", op: str = "dr.a", role: str = "MRL"
) -> RecentEvent:
    return RecentEvent(NOW - timedelta(minutes=minutes), kind, role, op, ws, "x.0")


def test_cells_take_the_longest_wait_of_the_items_not_held() -> None:
    claim = Claim("P-1", "dr.a", "MRU", NOW - timedelta(minutes=30), NOW + timedelta(minutes=1))
    items = [
        item(1, QueueName.AMU, "P2", 16),
        item(2, QueueName.AMU, "P2", 3),
        item(3, QueueName.AMU, "P2", 40, claim=claim),
    ]
    fig = board_figures(items, [], NOW, WaitLimits())
    cell = fig.cell(QueueName.AMU, "P2")
    assert cell is not None
    assert (cell.waiting, cell.held, cell.longest_s, cell.state) == (2, 1, 960.0, AgeState.DUE)
    empty = fig.cell(QueueName.SNP, "P0")
    assert empty is not None and (empty.waiting, empty.state) == (0, AgeState.OK)


def test_the_late_list_puts_urgent_items_first() -> None:
    items = [
        item(1, QueueName.AMU, "P3", 70),  # late P3
        item(2, QueueName.ARM, "P2", 16),  # call-back due (3/4 of 20 min)
        item(3, QueueName.OSNP, "P2", 37 * 60),  # 48 h near
        item(4, QueueName.AMU, "P2", 2, alert="Prise en charge expirée : poste P-9 muet"),
        item(5, QueueName.SNP, "P1", 6),  # urgent late
        item(6, QueueName.AMU, "P0", 0.5),  # fine
    ]
    fig = board_figures(items, [], NOW, WaitLimits())
    assert [(x.case_id, x.reason) for x in fig.late] == [
        ("x.5", LateReason.URGENT_LATE),
        ("x.4", LateReason.LOST_LEASE),
        ("x.2", LateReason.CALLBACK_DUE),
        ("x.3", LateReason.BOOKING_48H),
        ("x.1", LateReason.LATE),
    ]
    assert fig.totals["attente"] == 6


def test_staff_silent_until_it_acts_again() -> None:
    events = [ev(50, "CLAIMED", "P-9"), ev(40, "LEASE_EXPIRED", "P-9"), ev(5, "DECIDED")]
    fig = board_figures([], events, NOW, WaitLimits())
    rows = {s.workstation: s for s in fig.staff}
    assert rows["P-9"].silent and not rows["P-1"].silent
    assert rows["P-1"].decided_last_hour == 1
    assert fig.staff[0].workstation == "P-9"  # the silent first
    fig = board_figures([], [*events, ev(2, "CLAIMED", "P-9")], NOW, WaitLimits())
    assert not {s.workstation: s for s in fig.staff}["P-9"].silent


def test_flow_is_six_ten_minute_slots_ending_with_the_current_one() -> None:
    events = [ev(0.5, "ENQUEUED"), ev(7.5, "ENQUEUED"), ev(65, "ENQUEUED"), ev(20, "CLOSED")]
    fig = board_figures([], events, NOW, WaitLimits())
    assert [f"{s:%H:%M}" for s in fig.flow.slots] == [
        "13:40",
        "13:50",
        "14:00",
        "14:10",
        "14:20",
        "14:30",
    ]
    # 14:36:50 and 14:29:50 entered; 13:32:20 is before the first slot
    assert fig.flow.series["ENQUEUED"] == (0, 0, 0, 0, 1, 1)
    assert fig.flow.series["CLOSED"] == (0, 0, 0, 1, 0, 0)  # 14:17:20
