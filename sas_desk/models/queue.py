"""Regulator handoff queues: the domain side (no I/O).

A dossier transmitted by the ARM waits in one queue (AMU, SNP, DENT, OSNP
or ARM); exactly one workstation may hold it at a time (a *claim*, which is a
lease the holder keeps renewing).  Items are ordered by priority, then by
how long they have waited.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sas_desk.models.errors import KnownError


class QueueName(enum.StrEnum):
    AMU = "AMU"  # emergency regulators (MRU)
    SNP = "SNP"  # liberal GP regulators (MRL)
    DENT = "DENT"  # dental regulators
    OSNP = "OSNP"  # booking requests after a GP decision
    ARM = "ARM"  # cases handed back for a call-back

    @property
    def label(self) -> str:
        return {
            "AMU": "AMU — urgence",
            "SNP": "SNP — médecine générale",
            "DENT": "Dentaire",
            "OSNP": "Prise de rendez-vous (OSNP)",
            "ARM": "Retour ARM (rappel)",
        }[self.value]


ROLE_QUEUES: dict[str, tuple[QueueName, ...]] = {
    "ARM": (QueueName.ARM,),
    "OSNP": (QueueName.OSNP,),
    "MRU": (QueueName.AMU,),
    "MRL": (QueueName.SNP,),
    "DENT": (QueueName.DENT,),
    "SUP": tuple(QueueName),
    "STATS": (),  # reads the statistics only (see models.stats.may_read_stats)
}

#: roles that act on no queue, whatever the operation
READ_ONLY_ROLES = frozenset({"STATS"})


def queues_for_role(role: str) -> tuple[QueueName, ...]:
    return ROLE_QUEUES.get(role, ())


# Medical acts.  A regulation decision is a physician's, or for a dental case
# the dental regulator's (a chirurgien-dentiste); a booking request (→ OSNP)
# follows a physician's decision of a consultation within 48 h.
DECIDING_ROLES = frozenset({"MRU", "MRL", "DENT"})
BOOKING_ROLES = frozenset({"MRU", "MRL"})
# who records an orientation: a booking (OSNP, or the regulator who books
# himself) or the dental regulator's orientation
ORIENTING_ROLES = frozenset({"OSNP", "MRU", "MRL", "DENT"})


def forbidden_reason(role: str, kind: str, queue: QueueName) -> str | None:
    """Why ``role`` may not do ``kind`` on an item of ``queue`` whoever holds
    it, in French; ``None`` when the role may (holding the item is checked
    apart).  A role claims and annotates in the queues it works (the
    supervisor in all of them); only the supervisor reassigns; the
    statistics reader acts on nothing (not even a transmission)."""
    if role in READ_ONLY_ROLES:
        return "Le rôle STATS consulte les statistiques : aucune action sur les dossiers."
    if kind in ("claim", "note") and queue not in queues_for_role(role):
        what = "prise en charge" if kind == "claim" else "note"
        return f"Ce dossier est dans la file {queue.label}, hors de vos files : {what} impossible."
    if kind == "decide" and role not in DECIDING_ROLES:
        return "Seul un médecin régulateur ou le dentiste régulateur enregistre une décision."
    if kind == "request_booking" and role not in BOOKING_ROLES:
        return "Seul un médecin régulateur demande un rendez-vous (OSNP)."
    if kind == "reassign" and role != "SUP":
        return "Seul le superviseur peut réattribuer un dossier."
    if kind == "update" and role != "ARM":
        return "Seul un ARM complète un dossier après sa transmission."
    if kind == "orient":
        if role not in ORIENTING_ROLES:
            return "Seuls l'OSNP, les médecins régulateurs et le dentiste régulateur orientent."
        if queue not in queues_for_role(role):
            return f"Ce dossier est dans la file {queue.label}, hors de vos files : orientation impossible."
    return None


_MOVES_TO = {"hand_back": QueueName.ARM, "request_booking": QueueName.OSNP}


def role_may(role: str, kind: str) -> bool:
    """Whether ``role`` may do ``kind`` on an item of some queue it works
    (what its panel offers): an ARM hands nothing back to itself."""
    return any(
        forbidden_reason(role, kind, q) is None and q is not _MOVES_TO.get(kind)
        for q in queues_for_role(role)
    )


def queue_for_attribution(attribution: str) -> QueueName | None:
    """``DRM.MRU.*`` → AMU, ``DRM.MRL.*`` → SNP, ``DRM.SPE.DENT`` → DENT."""
    if attribution.startswith("DRM.SPE.DENT"):
        return QueueName.DENT
    if attribution.startswith("DRM.MRL"):
        return QueueName.SNP
    if attribution.startswith("DRM.MRU"):
        return QueueName.AMU
    return None


PRIORITY_RANK: dict[str, int] = {"P0": 0, "P1": 1, "P2": 2, "P3": 3, "NR": 4}


def priority_rank(priority: str) -> int:
    return PRIORITY_RANK.get(priority, len(PRIORITY_RANK))


class AgeState(enum.StrEnum):
    OK = "ok"
    DUE = "due"  # three quarters of the limit spent
    LATE = "late"  # over the limit

    @property
    def label(self) -> str:
        return {"ok": "dans les temps", "due": "bientôt en retard", "late": "en retard"}[self.value]


@dataclass(frozen=True)
class WaitLimits:
    """Longest acceptable wait per priority, in seconds (NR has none)."""

    P0: float = 60.0
    P1: float = 300.0
    P2: float = 1200.0
    P3: float = 3600.0
    due_fraction: float = 0.75

    def limit(self, priority: str) -> float | None:
        value = getattr(self, priority, None)
        return float(value) if isinstance(value, int | float) else None

    def state(self, priority: str, waited: timedelta) -> AgeState:
        limit = self.limit(priority)
        if limit is None:
            return AgeState.OK
        seconds = waited.total_seconds()
        if seconds > limit:
            return AgeState.LATE
        if seconds >= limit * self.due_fraction:
            return AgeState.DUE
        return AgeState.OK


class ItemStatus(enum.StrEnum):
    WAITING = "WAITING"
    CLAIMED = "CLAIMED"
    CLOSED = "CLOSED"  # out of every queue (closed, or booking done)


@dataclass(frozen=True)
class Claim:
    """Who holds an item, and until when (the lease)."""

    workstation: str
    operator: str
    role: str
    claimed_at: datetime
    expires_at: datetime

    def describe(self) -> str:
        """Who and since when, in the workstation's local time (a server may
        keep its times in UTC)."""
        since = self.claimed_at.astimezone()
        return f"{self.operator} ({self.role}, {self.workstation}) depuis {since:%H:%M:%S}"


@dataclass(frozen=True)
class QueueItem:
    """One dossier in a queue, with what the queue panel shows."""

    case_id: str
    queue: QueueName
    status: ItemStatus
    priority: str
    waiting_since: datetime  # enqueue time; reset when the item changes queue
    motive_code: str = ""
    motive_label: str = ""
    commune: str = ""
    age: str = ""  # ISO duration, e.g. P67Y
    sex: str = ""
    claim: Claim | None = None
    version: int = 0  # bumped on every change; change sets carry the newest
    alert: str = ""  # e.g. "lease expired" — shown to the supervisor

    def sort_key(self) -> tuple[int, datetime, str]:
        return (priority_rank(self.priority), self.waiting_since, self.case_id)

    def waited(self, now: datetime) -> timedelta:
        return now - self.waiting_since


def ordered(items: list[QueueItem]) -> list[QueueItem]:
    return sorted(items, key=QueueItem.sort_key)


def next_to_take(items: Iterable[QueueItem], queues: Collection[QueueName]) -> QueueItem | None:
    """The head of ``queues`` taken together: the waiting item nobody holds
    that comes first in queue order (priority, then longest wait)."""
    free = [
        i for i in items if i.queue in queues and i.claim is None and i.status is ItemStatus.WAITING
    ]
    return min(free, key=QueueItem.sort_key, default=None)


#: the priorities whose lateness is escalated (banner and sound in the room)
ESCALATED_PRIORITIES = frozenset({"P0", "P1"})


def is_escalated(item: QueueItem, now: datetime, limits: WaitLimits) -> bool:
    """A P0 or P1 that nobody holds, waiting past its limit: every
    workstation of its queue and the supervisor's raise a banner and a sound
    until someone claims it.  The board's "urgent late" list is this rule."""
    return (
        item.priority in ESCALATED_PRIORITIES
        and item.claim is None
        and item.status is ItemStatus.WAITING
        and limits.state(item.priority, item.waited(now)) is AgeState.LATE
    )


def escalated(items: Iterable[QueueItem], now: datetime, limits: WaitLimits) -> list[QueueItem]:
    """The escalated items (:func:`is_escalated`), P0 first, longest wait first."""
    return sorted(
        (i for i in items if is_escalated(i, now, limits)),
        key=QueueItem.sort_key,
    )


@dataclass(frozen=True)
class ChangeSet:
    """What changed in the watched queues.  ``reset`` means: forget what you
    had, ``items`` is the complete content (first change set, and after every
    reconnect)."""

    items: tuple[QueueItem, ...] = ()
    removed: tuple[str, ...] = ()  # case ids no longer in the watched queues
    reset: bool = False


class QueueError(KnownError):
    """A refused queue operation, with a French message for the user."""

    def __init__(self, message_fr: str, code: str = "") -> None:
        super().__init__(message_fr)
        self.message_fr = message_fr
        self.code = code


class ClaimConflict(QueueError):
    """Someone else holds the item."""

    def __init__(self, claim: Claim) -> None:
        super().__init__(f"Dossier déjà pris par {claim.describe()}.", "claimed")
        self.claim = claim


class NotFound(QueueError):
    def __init__(self, case_id: str) -> None:
        super().__init__(f"Dossier {case_id} introuvable dans les files.", "not_found")


class NotHolder(QueueError):
    def __init__(self, case_id: str, claim: Claim | None) -> None:
        who = claim.describe() if claim else "personne"
        super().__init__(f"Vous ne tenez pas ce dossier (tenu par {who}).", "not_holder")
        self.claim = claim


@dataclass(frozen=True)
class Operation:
    """One queue action, with its idempotency key: replaying an operation
    with the same ``op_id`` never applies it twice."""

    op_id: str
    kind: str  # enqueue | claim | release | transfer | decide | request_booking | hand_back | close | note | reassign
    case_id: str
    at: datetime
    role: str
    operator: str
    workstation: str
    data: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- reading

READ_ALL_ROLES = frozenset({"SUP"})


def may_read_queue(role: str, queue: QueueName) -> bool:
    """Whether ``role`` sees ``queue`` (snapshot, change stream): the queues
    it works, every queue for the supervisor."""
    return role in READ_ALL_ROLES or queue in queues_for_role(role)


def may_read(role: str, operator: str, queue: QueueName | None, actors: Iterable[str]) -> bool:
    """Whether ``operator`` working as ``role`` may read a dossier and its
    events.  ``queue``: the queue the dossier waits or is held in now (None
    once closed); ``actors``: the operators of its events.  The supervisor
    reads everything; any other role a dossier in one of its queues, or one
    the operator acted on (transmitted, claimed, decided…)."""
    if role in READ_ALL_ROLES:
        return True
    if queue is not None and may_read_queue(role, queue):
        return True
    return bool(operator) and operator in set(actors)


WALL_ROLES = READ_ALL_ROLES  # the wall shows every queue: the supervisor's view


def wall_refusal(role: str) -> str | None:
    """Why a session of ``role`` may not drive the room's wall screen
    (French), or None: the wall watches every queue, as the supervisor."""
    if role in WALL_ROLES:
        return None
    return (
        f"Le tableau de salle s'ouvre avec un compte de superviseur (SUP), pas {role or '—'} : "
        "connectez-vous avec le rôle SUP."
    )


def read_refusal(queue: QueueName | None = None) -> str:
    """The French message of a refused read."""
    if queue is not None:
        return f"La file {queue.label} est hors de vos files : consultation refusée."
    return (
        "Ce dossier n'est pas dans vos files et vous n'y êtes pas intervenu : consultation refusée."
    )


@dataclass(frozen=True)
class LogBreak:
    """One break found in a dossier's hash-chained event log (an event
    deleted, altered or inserted behind the store's back)."""

    case_id: str
    seq: int | None  # the event where the chain breaks (None: the dossier's end)
    what_fr: str
