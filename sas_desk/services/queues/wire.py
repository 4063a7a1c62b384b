"""The room API's wire format: typed msgspec structs for what crosses HTTP
between a workstation (``services/queues/remote.py``) and the room server
(``sas_desk/server``), and their conversions to and from the domain types.

One module for both sides, so the server documents (OpenAPI) exactly what
the client decodes.  Times are ISO 8601 strings with an offset; the server
writes its own clock's times, the client never chooses them.

Refusals travel as :class:`ErrorBody` with the HTTP status of
:func:`http_status`; :func:`error_from_body` raises the same
:class:`~sas_desk.models.queue.QueueError` subclass the local backends raise,
so the panel's messages do not depend on the backend.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from sas_desk.models.dossier import Actor, Event, EventKind
from sas_desk.models.queue import (
    ChangeSet,
    Claim,
    ClaimConflict,
    ItemStatus,
    NotFound,
    NotHolder,
    QueueError,
    QueueItem,
    QueueName,
)

# --------------------------------------------------------------------------- bodies

# an identifier, login or workstation name: present and bounded (what the
# server stores and audits)
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class ClaimBody(msgspec.Struct, frozen=True):
    workstation: str
    operator: str
    role: str
    claimed_at: str
    expires_at: str


class ItemBody(msgspec.Struct, frozen=True):
    case_id: str
    queue: str
    status: str
    priority: str
    waiting_since: str
    motive_code: str = ""
    motive_label: str = ""
    commune: str = ""
    age: str = ""
    sex: str = ""
    claim: ClaimBody | None = None
    version: int = 0
    alert: str = ""


class ChangeSetBody(msgspec.Struct, frozen=True):
    """One change set of the stream (SSE ``event: changes``)."""

    items: list[ItemBody] = msgspec.field(default_factory=list)
    removed: list[str] = msgspec.field(default_factory=list)
    reset: bool = False


class EventBody(msgspec.Struct, frozen=True):
    case_id: str
    at: str
    kind: str
    role: str
    operator: str
    workstation: str
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    seq: int | None = None


class OperationRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """``POST /v1/ops``.  The actor (operator, role, workstation) and the time
    come from the server's session and clock, never from this body; fields
    a client adds for them are ignored."""

    op_id: Id
    kind: str
    case_id: Id
    data: dict[str, Any] = msgspec.field(default_factory=dict)


class OperationResult(msgspec.Struct, frozen=True):
    """The item after the operation (``null`` once closed)."""

    item: ItemBody | None = None


class ErrorBody(msgspec.Struct, frozen=True):
    """Every refusal: a French message for the user and a stable code."""

    error: str  # QueueError class name, or "Unauthorized", "Forbidden", "TooManyAttempts"…
    code: str
    message_fr: str
    case_id: str = ""
    claim: ClaimBody | None = None


class SessionRequest(msgspec.Struct, frozen=True):
    """``POST /v1/session``: who logs in, for which role, from which workstation."""

    login: Id
    password: Annotated[str, msgspec.Meta(max_length=1024)]
    role: str
    workstation: Id


class RefreshRequest(msgspec.Struct, frozen=True):
    """``POST /v1/session/refresh``: the refresh token (used once: both rotate)."""

    refresh_token: str


class SessionBody(msgspec.Struct, frozen=True):
    """A session's tokens and who it speaks for (as the server decided)."""

    access_token: str
    refresh_token: str
    expires_in: int  # seconds the access token stays valid
    operator: str
    role: str
    workstation: str
    display_name: str = ""


class RenewRequest(msgspec.Struct, frozen=True):
    """``POST /v1/renew``: ``lease_s`` is bounded by the server's settings."""

    lease_s: float | None = None


class RenewResult(msgspec.Struct, frozen=True):
    renewed: int


class SnapshotBody(msgspec.Struct, frozen=True):
    """``GET /v1/queues/{queue}``: the items in queue order."""

    items: list[ItemBody]


class DossierBody(msgspec.Struct, frozen=True):
    """``GET /v1/dossiers/{case_id}``: ``Dossier.to_dict()``."""

    dossier: dict[str, Any]


class EventsBody(msgspec.Struct, frozen=True):
    """``GET /v1/dossiers/{case_id}/events``: oldest first."""

    events: list[EventBody]


class QueueCount(msgspec.Struct, frozen=True):
    queue: str
    waiting: int
    claimed: int
    oldest_waiting_since: str | None = None  # the longest-waiting WAITING item


class WorkstationBody(msgspec.Struct, frozen=True):
    workstation: str
    operator: str
    role: str
    streams: int  # change streams it has open


class RoomBody(msgspec.Struct, frozen=True):
    """``GET /v1/room``: the supervision screen's figures."""

    at: str
    queues: list[QueueCount]
    workstations: list[WorkstationBody]


class HealthBody(msgspec.Struct, frozen=True):
    status: str


class ByeBody(msgspec.Struct, frozen=True):
    """SSE ``event: bye``: the server closes the stream (shutdown)."""

    reason_fr: str


# --------------------------------------------------------------------------- conversions


def claim_body(claim: Claim) -> ClaimBody:
    return ClaimBody(
        workstation=claim.workstation,
        operator=claim.operator,
        role=claim.role,
        claimed_at=claim.claimed_at.isoformat(),
        expires_at=claim.expires_at.isoformat(),
    )


def claim_from_body(body: ClaimBody) -> Claim:
    return Claim(
        workstation=body.workstation,
        operator=body.operator,
        role=body.role,
        claimed_at=datetime.fromisoformat(body.claimed_at),
        expires_at=datetime.fromisoformat(body.expires_at),
    )


def item_body(item: QueueItem) -> ItemBody:
    return ItemBody(
        case_id=item.case_id,
        queue=item.queue.value,
        status=item.status.value,
        priority=item.priority,
        waiting_since=item.waiting_since.isoformat(),
        motive_code=item.motive_code,
        motive_label=item.motive_label,
        commune=item.commune,
        age=item.age,
        sex=item.sex,
        claim=claim_body(item.claim) if item.claim is not None else None,
        version=item.version,
        alert=item.alert,
    )


def item_from_body(body: ItemBody) -> QueueItem:
    return QueueItem(
        case_id=body.case_id,
        queue=QueueName(body.queue),
        status=ItemStatus(body.status),
        priority=body.priority,
        waiting_since=datetime.fromisoformat(body.waiting_since),
        motive_code=body.motive_code,
        motive_label=body.motive_label,
        commune=body.commune,
        age=body.age,
        sex=body.sex,
        claim=claim_from_body(body.claim) if body.claim is not None else None,
        version=body.version,
        alert=body.alert,
    )


def changes_body(changes: ChangeSet) -> ChangeSetBody:
    return ChangeSetBody(
        items=[item_body(i) for i in changes.items],
        removed=list(changes.removed),
        reset=changes.reset,
    )


def changes_from_body(body: ChangeSetBody) -> ChangeSet:
    return ChangeSet(
        items=tuple(item_from_body(i) for i in body.items),
        removed=tuple(body.removed),
        reset=body.reset,
    )


def event_body(event: Event) -> EventBody:
    return EventBody(
        case_id=event.dossier_id,
        at=event.at.isoformat(),
        kind=event.kind.value,
        role=event.actor.role,
        operator=event.actor.operator,
        workstation=event.actor.workstation,
        data=dict(event.data),
        seq=event.seq,
    )


def event_from_body(body: EventBody) -> Event:
    return Event(
        dossier_id=body.case_id,
        at=datetime.fromisoformat(body.at),
        kind=EventKind(body.kind),
        actor=Actor(body.role, body.operator, body.workstation),
        data=dict(body.data),
        seq=body.seq,
    )


# --------------------------------------------------------------------------- refusals

_STATUS_BY_CODE = {
    "forbidden": 403,
    "not_found": 404,
    "claimed": 409,
    "not_holder": 409,
    "closed": 409,
    "same_queue": 409,
    "op_id_reused": 409,
    # the store failed the write (nothing written): the server is in trouble,
    # not the request -- the workstation keeps it in its outbox and sends it again
    "server": 503,
    "integrity": 503,
}


def http_status(exc: QueueError) -> int:
    """403 outside one's remit, 404 unknown dossier, 409 a state conflict
    (held by another, not the holder, closed…), 422 anything invalid, 503
    a write the store failed."""
    return _STATUS_BY_CODE.get(exc.code, 422)


def error_body(exc: QueueError, case_id: str = "") -> ErrorBody:
    claim = exc.claim if isinstance(exc, ClaimConflict | NotHolder) else None
    return ErrorBody(
        error=type(exc).__name__,
        code=exc.code,
        message_fr=exc.message_fr,
        case_id=case_id,
        claim=claim_body(claim) if claim is not None else None,
    )


def error_from_body(body: ErrorBody) -> QueueError:
    """The refusal as the same exception a local backend raises."""
    claim = claim_from_body(body.claim) if body.claim is not None else None
    if body.error == "ClaimConflict" and claim is not None:
        return ClaimConflict(claim)
    if body.error == "NotFound":
        return NotFound(body.case_id)
    if body.error == "NotHolder":
        return NotHolder(body.case_id, claim)
    return QueueError(body.message_fr, body.code)
