"""The queue backend interface shared by SQLite (one machine) and PostgreSQL
(the plateau and remote regulators).  One contract test suite runs against
every backend (``tests/integration/queues``).

Every mutation is an :class:`~sas_desk.models.queue.Operation` applied with
:meth:`QueueBackend.apply`; what it does is decided by the one state machine
(``services/queues/machine.py``), the stores only persist its answer.  Operations carry an idempotency key (``op_id``):
applying the same operation twice has the effect of applying it once and
returns the same outcome (this is what makes the offline outbox replay
exactly once).  Each applied operation appends one event to the dossier's
log (operator, role, workstation, time) in the same transaction; each event
carries the hash of the previous event of its dossier (:meth:`verify_log`).

Operation kinds and their ``data``:

================  ==========================================================
``enqueue``       ``dossier``: ``Dossier.to_dict()`` of the transmitted
                  dossier; ``queue``: queue name (default: from its
                  attribution).  Stores the dossier (server copy) and puts it
                  WAITING at the back of its priority.  Re-enqueueing a
                  dossier already queued is a no-op returning the item.
``claim``         ``lease_s`` (default 120, at most ``MAX_LEASE_S``).  WAITING → CLAIMED by the
                  operation's workstation; raises ``ClaimConflict`` when
                  someone else holds it (re-claiming one's own claim renews it).
``release``       ``reason``.  Holder only (or role SUP) → WAITING, keeps its
                  original ``waiting_since``.
``transfer``      ``to`` (queue), ``reason``.  Holder or SUP → WAITING in the
                  other queue, ``waiting_since`` reset to the operation time.
``decide``        ``care_level`` (R1–R4), ``decisions`` (list of
                  ``Decision`` dicts: decision_type, resource_type,
                  orientation_type, medical_transport, freetext), ``note``
                  (optional medical note text).  Holder only.  Decisions
                  need a care level (this one's or one already stated:
                  ``models.dossier.decision_problems``).  Updates the
                  server dossier (care level, decisions, note); item stays
                  CLAIMED.
``request_booking`` ``note``.  Holder → WAITING in OSNP.
``hand_back``     ``reason``.  Holder → WAITING in ARM.
``close``         ``reason``.  Holder or SUP → CLOSED (removed from queues).
``note``          ``text``.  Anyone who sees the queue: adds a medical note
                  (role ARM for ARM/OSNP/SUP operators, MEDECIN for MRU/MRL/
                  DENT).
``reassign``      SUP only.  ``to_workstation``, ``to_operator``, ``to_role``
                  → CLAIMED by them (fresh lease); with ``to_workstation``
                  empty → WAITING.
``orient``        ``orientation`` (``booking``: a slot booked at a vendor,
                  event ORIENTED; ``dental``: the dental regulator's
                  orientation, event DENTAL_ORIENTED), ``text`` (summary),
                  ``details`` (flat JSON object).  Booking: OSNP, MRL, MRU;
                  dental: DENT; within their queues, item not held by
                  another workstation.  Item unchanged (version bumped).
``update``        ``note`` and/or ``priority``.  ARM role only, any queue,
                  item not closed: the ARM adds what the caller said after
                  transmission.  A new priority re-ranks the item (a P0/P1
                  upgrade moves it up); event UPDATED with ``highlight``.
================  ==========================================================

Errors are :class:`~sas_desk.models.queue.QueueError` subclasses with French
messages; a backend that cannot reach its store raises
:class:`BackendUnavailable` (the outbox then keeps the operation).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sas_desk.models.dossier import Dossier, Event
from sas_desk.models.errors import KnownError
from sas_desk.models.queue import ChangeSet, LogBreak, Operation, QueueError, QueueItem, QueueName


class BackendUnavailable(KnownError):
    """The store cannot be reached (network, server down): retry later."""

    def __init__(self, message_fr: str = "Serveur des files injoignable.") -> None:
        super().__init__(message_fr)
        self.message_fr = message_fr


OPERATION_KINDS = (
    "enqueue",
    "claim",
    "release",
    "transfer",
    "decide",
    "request_booking",
    "hand_back",
    "close",
    "note",
    "reassign",
    "orient",
    "update",
    "hub",
)
# only the room server's Hub Santé agent writes these (refused from a workstation)
AGENT_KINDS = frozenset({"hub"})
DEFAULT_LEASE_S = 120.0
MAX_LEASE_S = 900.0  # a lease is a heartbeat, not a reservation: longer ones are refused
DEFAULT_RENEW_S = 30.0


# the room server's audit table (made by server/store.py beside the queues)
AUDIT_COLUMNS = (
    "at",
    "operator",
    "role",
    "workstation",
    "client",
    "action",
    "case_id",
    "outcome",
    "detail",
)


@dataclass(frozen=True)
class AuditRow:
    """The room server's audit row of one operation: who (the session's
    actor), from where (the client's address as the server saw it), when
    (the server's time: the operation's), what; the outcome (``ok`` or the
    refusal's code) is the store's to fill in.  A store writes it in the
    operation's own transaction (:meth:`QueueBackend.apply_audited`)."""

    at: datetime
    operator: str
    role: str
    workstation: str
    client: str
    action: str
    case_id: str
    detail: dict[str, Any]

    @classmethod
    def of(cls, op: Operation, client: str) -> AuditRow:
        return cls(
            at=op.at,
            operator=op.operator,
            role=op.role,
            workstation=op.workstation,
            client=client,
            action=f"op:{op.kind[:40]}",
            case_id=op.case_id,
            detail={"op_id": op.op_id},
        )

    def values(self, outcome: str) -> tuple[Any, ...]:
        """In the order of :data:`AUDIT_COLUMNS` (``detail`` as a dict)."""
        return (
            self.at,
            self.operator,
            self.role,
            self.workstation,
            self.client,
            self.action,
            self.case_id,
            outcome,
            self.detail,
        )


class QueueBackend(abc.ABC):
    """One store of queues, dossiers and events."""

    name: str = "abstract"

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect, create or migrate the schema if needed."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop watchers and release connections (idempotent)."""

    @abc.abstractmethod
    async def apply(self, op: Operation) -> QueueItem | None:
        """Apply ``op`` once (idempotent on ``op.op_id``).  Returns the item
        as it is after the operation (``None`` once closed)."""

    async def apply_audited(self, op: Operation, client: str) -> QueueItem | None:
        """:meth:`apply`, with the room server's audit row of it
        (:class:`AuditRow`, outcome ``ok`` or the refusal's code) written in
        the same transaction as the operation and its stored answer: both
        or neither, whatever fails between them.  A replayed ``op_id``
        writes its audit row alone (nothing else is written then).  The
        stores implement it (the audit table lives beside their queues);
        others refuse."""
        raise QueueError("Journal d'audit indisponible sur ce poste.", "unsupported")

    @abc.abstractmethod
    async def snapshot(self, queues: Iterable[QueueName]) -> list[QueueItem]:
        """Items WAITING or CLAIMED in ``queues``, in queue order."""

    @abc.abstractmethod
    def watch(self, queues: Iterable[QueueName]) -> AsyncIterator[ChangeSet]:
        """Change sets for ``queues``: first a ``reset`` with the whole
        content, then increments as other workstations (or this one) change
        things; a new ``reset`` after any reconnect.  Ends when the backend
        closes or the consumer stops iterating."""

    @abc.abstractmethod
    async def renew(self, workstation: str, at: datetime, lease_s: float = DEFAULT_LEASE_S) -> int:
        """Extend every lease held by ``workstation``; returns how many."""

    @abc.abstractmethod
    async def expire(self, at: datetime) -> list[QueueItem]:
        """Return expired claims to the head of their queue (WAITING, original
        ``waiting_since``, ``alert`` set) with a ``LEASE_EXPIRED`` event each.
        Any workstation may run it; running it twice changes nothing."""

    @abc.abstractmethod
    async def dossier(self, case_id: str) -> Dossier | None:
        """The server copy of the dossier (the ARM's sheet plus decisions)."""

    @abc.abstractmethod
    async def events(self, case_id: str) -> list[Event]:
        """The dossier's event log, oldest first."""

    async def verify_log(self) -> list[LogBreak]:
        """Check the hash chain of every dossier's log (see
        ``machine.verify_chain``); returns the breaks found, none when intact.
        Stores implement it; a backend that cannot (a remote workstation)
        refuses with a French message."""
        raise QueueError(
            "Vérification du journal impossible depuis ce poste : lancez-la sur le serveur.",
            "unsupported",
        )
