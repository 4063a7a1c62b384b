"""The queue state machine: every rule of every operation, in one pure place.

:func:`transition` decides what an :class:`~sas_desk.models.queue.Operation`
does to a queue item and the server copy of its dossier: it validates the
operation, checks the remit of the operator's role
(:func:`~sas_desk.models.queue.forbidden_reason`), the holder and the
states, computes the lease, and returns a :class:`Change` -- the item to
write, the dossier to write, the event to append and what ``apply``
returns -- or raises :class:`~sas_desk.models.queue.QueueError`.  The
stores (SQLite, PostgreSQL; the room server through them) only persist the
change, atomically with the operation's idempotency record.  Lease renewal
(:func:`renewed`) and expiry (:func:`expired`) and the hash chain of the log
(:func:`seal`, :func:`event_hash`, :func:`verify_chain`) live here too.

No I/O, no clock: every time comes from the operation (or the ``at`` given to
renew/expire), so a replay decides exactly like the first application.

Behaviour fixed when the two former copies (one per store) were merged:

- a release clears the item's ``alert`` (like a claim or a move does): the
  alert says "this lease expired"; once someone acted on the item it is stale;
- an item's motive label falls back to the national code list's label when
  the dossier carries a code without a label;
- a note's text is stored stripped, an empty one is refused (``invalid``);
- ``decisions`` must be a list when given (``""`` is refused, not taken as none);
- times written into event data are UTC ISO 8601 strings, whatever the
  offset of the operation or of the stored claim (the same log on every store);
- leases are bounded: finite, > 0, at most :data:`~.api.MAX_LEASE_S`.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from sas_desk.models.codes import codelist
from sas_desk.models.dossier import (
    PRIORITIES,
    Actor,
    Dossier,
    Event,
    EventKind,
    Status,
    add_note,
    decision_problems,
)
from sas_desk.models.queue import (
    READ_ONLY_ROLES,
    Claim,
    ClaimConflict,
    ItemStatus,
    LogBreak,
    NotFound,
    NotHolder,
    Operation,
    QueueError,
    QueueItem,
    QueueName,
    forbidden_reason,
    priority_rank,
    queue_for_attribution,
)
from sas_desk.models.rseda_update import apply_update
from sas_desk.models.validation import ValidationError
from sas_desk.services.queues import rules
from sas_desk.services.queues.api import OPERATION_KINDS

# kinds whose transition reads or writes the server dossier (the stores load it)
NEEDS_DOSSIER = frozenset(
    {"enqueue", "decide", "note", "close", "request_booking", "update", "hub"}
)


@dataclass(frozen=True)
class Change:
    """What an operation does: the item to write (possibly CLOSED; ``None``:
    nothing to write, a no-op), the dossier to write when it changed, the
    event to append (always with an item to write), and what ``apply``
    returns (``None`` once closed)."""

    item: QueueItem | None
    dossier: Dossier | None
    event: Event | None
    result: QueueItem | None


def iso(value: datetime) -> str:
    """A time as written into event data: UTC, ISO 8601."""
    return value.astimezone(UTC).isoformat()


def claim_data(claim: Claim | None) -> dict[str, str] | None:
    if claim is None:
        return None
    return {
        "workstation": claim.workstation,
        "operator": claim.operator,
        "role": claim.role,
        "claimed_at": iso(claim.claimed_at),
        "expires_at": iso(claim.expires_at),
    }


def check_operation(op: Operation) -> None:
    """What is wrong with the operation by itself, before any item is read
    (kind, time, data shape, and a claim's lease).  :func:`transition` starts
    with it; a store may call it first to take a fast path (see postgres.py)."""
    if op.kind not in OPERATION_KINDS:
        raise QueueError(f"Opération inconnue : « {op.kind} ».", "unknown_kind")
    if not isinstance(op.at, datetime) or op.at.tzinfo is None:
        raise QueueError("Heure de l'opération sans fuseau horaire.", "invalid")
    if not isinstance(op.data, dict):
        raise QueueError("Données de l'opération invalides.", "invalid")
    if op.kind == "claim":
        rules.lease_seconds(op.data)


def transition(op: Operation, item: QueueItem | None, dossier: Dossier | None) -> Change:
    """What ``op`` does to ``item`` (``None``: no such case) and to the server
    ``dossier`` (needed for the kinds of :data:`NEEDS_DOSSIER`, ``None``
    otherwise or when there is none).  Pure: the arguments are not modified.
    Raises :class:`QueueError` (nothing is written then)."""
    check_operation(op)
    if dossier is not None:
        dossier = copy.deepcopy(dossier)
    at = op.at
    actor = Actor(op.role, op.operator, op.workstation)
    data = op.data
    payload: dict[str, Any]

    def event(kind: EventKind, payload: dict[str, Any]) -> Event:
        return Event(op.case_id, at, kind, actor, payload, op_id=op.op_id)

    def change(
        current: QueueItem,
        new: QueueItem,
        kind: EventKind,
        payload: dict[str, Any],
        *,
        dossier: Dossier | None = None,
    ) -> Change:
        new = replace(new, version=current.version + 1)
        result = None if new.status is ItemStatus.CLOSED else new
        return Change(new, dossier, event(kind, payload), result)

    def move(current: QueueItem, to: QueueName, kind: EventKind, **payload: Any) -> Change:
        if to is current.queue:
            raise QueueError(f"Le dossier est déjà dans la file {to.label}.", "same_queue")
        new = replace(
            current, queue=to, status=ItemStatus.WAITING, claim=None, waiting_since=at, alert=""
        )
        return change(current, new, kind, {"from": current.queue.value, "to": to.value, **payload})

    def server_dossier() -> Dossier:
        if dossier is None:
            raise NotFound(op.case_id)
        return dossier

    if op.kind == "enqueue":
        if op.role in READ_ONLY_ROLES:  # the one role that may not transmit
            raise QueueError(forbidden_reason(op.role, op.kind, QueueName.ARM) or "", "forbidden")
        return _enqueue(op, item, dossier, event)

    if item is None:
        raise NotFound(op.case_id)
    rules.check_role(op, item)

    if op.kind == "hub":  # closed or not: a partner's answer, an appointment's news
        return _hub(op, item, server_dossier(), change)

    if op.kind == "note":
        stored = server_dossier()
        note_id = rules.medical_note(stored, rules.text_arg(data, "text"), op)
        return change(item, item, EventKind.MEDICAL_NOTE, {"note_id": note_id}, dossier=stored)

    if item.status is ItemStatus.CLOSED:
        raise QueueError("Ce dossier est clôturé : il n'est plus dans les files.", "closed")

    if op.kind == "claim":
        lease = timedelta(seconds=rules.lease_seconds(data))
        expires = at + lease
        held = item.claim
        payload = {"queue": item.queue.value, "lease_s": lease.total_seconds()}
        if held is not None and held.workstation == op.workstation:  # one's own: renewed
            claim = Claim(
                op.workstation, op.operator, op.role, held.claimed_at, max(held.expires_at, expires)
            )
            payload["renewed"] = True
        else:
            if held is not None and held.expires_at > at:
                raise ClaimConflict(held)
            if held is not None:  # a lease that ran out and nobody expired yet
                payload["expired_claim"] = claim_data(held)
            claim = Claim(op.workstation, op.operator, op.role, at, expires)
        payload["expires_at"] = iso(claim.expires_at)
        new = replace(item, status=ItemStatus.CLAIMED, claim=claim, alert="")
        return change(item, new, EventKind.CLAIMED, payload)

    if op.kind == "release":
        held = rules.holder(item, op, supervisor=True)
        if held is None:
            raise NotHolder(item.case_id, None)  # nobody holds it: nothing to release
        new = replace(item, status=ItemStatus.WAITING, claim=None, alert="")
        payload = {"reason": rules.text_arg(data, "reason"), "holder": claim_data(held)}
        return change(item, new, EventKind.RELEASED, payload)

    if op.kind == "transfer":
        to = rules.queue_arg(data.get("to"))
        rules.holder(item, op, supervisor=True)
        return move(item, to, EventKind.TRANSFERRED, reason=rules.text_arg(data, "reason"))

    if op.kind == "decide":
        rules.holder(item, op, supervisor=False)
        stored = server_dossier()
        care_level = rules.text_arg(data, "care_level")
        if care_level and care_level not in codelist("care_level"):
            raise QueueError(f"Niveau de soins « {care_level} » invalide (R1 à R4).", "invalid")
        decisions = rules.decisions(data.get("decisions"), at)
        # a decision states the care level (this one's, or the one already
        # stated): the rule the decision form shows (models.dossier
        # .decision_problems; its resource rule is the form's alone for now)
        for decided in decisions:
            problems = decision_problems(care_level or stored.care_level, decided.decision_type)
            if "care_level" in problems:
                raise QueueError(problems["care_level"], "invalid")
        note_text = rules.text_arg(data, "note").strip()
        if not (care_level or decisions or note_text):
            raise QueueError(
                "Décision vide : niveau de soins, décision ou note médicale attendu.", "invalid"
            )
        if care_level:
            stored.care_level = care_level
        stored.decisions.extend(decisions)
        stored.revision += 1
        payload = {"care_level": care_level, "decisions": [d.decision_type for d in decisions]}
        if note_text:
            payload["note_id"] = rules.medical_note(stored, note_text, op)
        return change(item, item, EventKind.DECIDED, payload, dossier=stored)

    if op.kind == "request_booking":
        rules.holder(item, op, supervisor=False)
        stored = server_dossier()
        note_text = rules.text_arg(data, "note").strip()
        if not note_text:
            return move(item, QueueName.OSNP, EventKind.BOOKING_REQUESTED)
        note_id = rules.medical_note(stored, note_text, op)
        moved = move(item, QueueName.OSNP, EventKind.BOOKING_REQUESTED, note_id=note_id)
        return replace(moved, dossier=stored)

    if op.kind == "hand_back":
        rules.holder(item, op, supervisor=False)
        return move(
            item, QueueName.ARM, EventKind.HANDED_BACK, reason=rules.text_arg(data, "reason")
        )

    if op.kind == "close":
        held = rules.holder(item, op, supervisor=True)
        stored = server_dossier()
        stored.status = Status.CLOSED
        stored.revision += 1
        new = replace(item, status=ItemStatus.CLOSED, claim=None, alert="")
        payload = {"queue": item.queue.value, "reason": rules.text_arg(data, "reason")}
        if held is not None and held.workstation != op.workstation:
            payload["holder"] = claim_data(held)
        return change(item, new, EventKind.CLOSED, payload, dossier=stored)

    if op.kind == "reassign":
        workstation = rules.text_arg(data, "to_workstation")
        payload = {"from": claim_data(item.claim)}
        if workstation:
            lease = timedelta(seconds=rules.lease_seconds(data))
            claim = Claim(
                workstation,
                rules.text_arg(data, "to_operator"),
                rules.text_arg(data, "to_role"),
                at,
                at + lease,
            )
            new = replace(item, status=ItemStatus.CLAIMED, claim=claim, alert="")
            payload["to"] = claim_data(claim)
        else:
            new = replace(item, status=ItemStatus.WAITING, claim=None, alert="")
            payload["to"] = None
        return change(item, new, EventKind.REASSIGNED, payload)

    if op.kind == "orient":
        return _orient(op, item, change)

    if op.kind == "update":
        return _update(op, item, server_dossier(), change)

    raise QueueError(f"Opération inconnue : « {op.kind} ».", "unknown_kind")  # pragma: no cover


_ORIENTATIONS = {
    "booking": (EventKind.ORIENTED, frozenset({"OSNP", "MRU", "MRL"})),
    "dental": (EventKind.DENTAL_ORIENTED, frozenset({"DENT"})),
}
_SCALAR = (str, int, float, bool, type(None))


def _orient(op: Operation, item: QueueItem, change: Callable[..., Change]) -> Change:
    """An orientation recorded in the dossier's log: a slot booked at a vendor
    (OSNP, or the regulator who booked himself) or the dental regulator's
    orientation.  Within the role's queues (checked before), and not while
    another workstation holds the item: its holder or anyone of the queue
    when nobody holds it (a booking made while the lease ran out is kept)."""
    orientation = rules.text_arg(op.data, "orientation")
    if orientation not in _ORIENTATIONS:
        raise QueueError(f"Type d'orientation inconnu : « {orientation} ».", "invalid")
    kind, roles = _ORIENTATIONS[orientation]
    if op.role not in roles:
        what = "un rendez-vous" if orientation == "booking" else "une orientation dentaire"
        raise QueueError(f"Votre rôle ne permet pas d'enregistrer {what}.", "forbidden")
    held = item.claim
    if held is not None and held.workstation != op.workstation and held.expires_at > op.at:
        raise NotHolder(item.case_id, held)
    text = rules.text_arg(op.data, "text").strip()
    if not text:
        raise QueueError("Orientation sans résumé : texte attendu.", "invalid")
    details = op.data.get("details") or {}
    if not isinstance(details, dict) or not all(
        isinstance(k, str)
        and (isinstance(v, _SCALAR) or (isinstance(v, list) and all(isinstance(x, str) for x in v)))
        and not (isinstance(v, float) and not math.isfinite(v))
        for k, v in details.items()
    ):
        raise QueueError("Détails de l'orientation invalides : objet simple attendu.", "invalid")
    payload = {**details, "orientation": orientation, "text": text}
    result: Change = change(item, item, kind, payload)
    return result


def _update(
    op: Operation, item: QueueItem, stored: Dossier, change: Callable[..., Change]
) -> Change:
    """The ARM adds what the caller said after transmission: a note and/or a
    new priority.  Any ARM of the room (the caller may call back on another
    line), whoever holds the item; not once closed.  A new priority re-ranks
    the item (its wait is kept: a P0/P1 upgrade moves it up its queue).  The
    event says ``highlight`` so the holder's timeline shows it."""
    text = rules.text_arg(op.data, "note").strip()
    priority = rules.text_arg(op.data, "priority")
    if priority and priority not in PRIORITIES:
        raise QueueError(f"Priorité « {priority} » invalide (P0, P1, P2, P3 ou NR).", "invalid")
    if priority == stored.priority:
        priority = ""
    if not (text or priority):
        raise QueueError("Complément vide : note ou nouvelle priorité attendue.", "invalid")
    payload: dict[str, Any] = {"highlight": True}
    new = item
    if priority:
        payload.update(
            priority_from=stored.priority,
            priority_to=priority,
            upgrade=priority_rank(priority) < priority_rank(stored.priority),
        )
        stored.priority = priority
        stored.revision += 1
        new = replace(item, priority=priority)
    if text:
        try:
            add_note(
                stored, text, op.at, Actor(op.role, op.operator, op.workstation), medical=False
            )
        except ValidationError as exc:  # pragma: no cover - stripped text is never empty
            raise QueueError(exc.message, "invalid") from None
        payload["note_id"] = stored.notes[-1].note_id
        payload["text"] = text
    result: Change = change(item, new, EventKind.UPDATED, payload, dossier=stored)
    return result


# what the Hub Santé agent puts on a dossier's log (services/hub)
HUB_EVENTS = frozenset(
    {
        EventKind.APPOINTMENT,
        EventKind.HUB_UPDATE,
        EventKind.HUB_SHARED,
        EventKind.HUB_ACK,
        EventKind.HUB_ERROR,
        EventKind.HUB_ALARM,
    }
)


def _hub(op: Operation, item: QueueItem, stored: Dossier, change: Callable[..., Change]) -> Change:
    """A Hub Santé event on the dossier's log, for every workstation: an SAS
    appointment attached or changed, a partner's acknowledgement or error, a
    message shared.  ``HUB_UPDATE`` applies a partner's RS-EDA-MAJ
    (``update``: its body) to the server dossier.  Written by the room
    server's own agent only (the server refuses it from a workstation)."""
    name = rules.text_arg(op.data, "event")
    kind = next((k for k in HUB_EVENTS if k.value == name), None)
    if kind is None:
        raise QueueError(f"Événement Hub Santé inconnu : « {name} ».", "invalid")
    payload = op.data.get("data")
    if not isinstance(payload, dict):
        raise QueueError("Événement Hub Santé sans données.", "invalid")
    payload = dict(payload)
    if kind is not EventKind.HUB_UPDATE:
        return change(item, item, kind, payload)
    body = op.data.get("update")
    if not isinstance(body, dict):
        raise QueueError("Mise à jour RS-EDA-MAJ absente.", "invalid")
    try:
        payload["changes"] = apply_update(stored, body, op.at)
    except ValidationError as exc:
        raise QueueError(exc.message, "invalid") from None
    new = replace(item, priority=stored.priority) if stored.priority else item
    return change(item, new, kind, payload, dossier=stored)


def _enqueue(
    op: Operation,
    item: QueueItem | None,
    stored: Dossier | None,
    event: Callable[[EventKind, dict[str, Any]], Event],
) -> Change:
    raw = op.data.get("dossier")
    if not isinstance(raw, dict):
        raise QueueError("Dossier absent : mise en file impossible.", "invalid")
    try:
        sent = Dossier.from_dict(raw)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise QueueError("Dossier illisible : mise en file impossible.", "invalid") from None
    if sent.case_id != op.case_id:
        raise QueueError(
            "Le dossier transmis ne correspond pas à l'opération de mise en file.", "invalid"
        )
    wanted = op.data.get("queue")
    queue = rules.queue_arg(wanted) if wanted else queue_for_attribution(sent.attribution)
    if queue is None:
        raise QueueError(
            "Filière du dossier inconnue : impossible de choisir une file.", "no_queue"
        )
    if item is not None and item.status is not ItemStatus.CLOSED:
        return Change(None, None, None, item)  # already queued: nothing to do
    if stored is not None:  # a closed dossier sent again: keep what regulators added
        rules.merge_server_side(sent, stored)
    code = sent.motive_code
    new = QueueItem(
        case_id=op.case_id,
        queue=queue,
        status=ItemStatus.WAITING,
        priority=sent.priority,
        waiting_since=op.at,
        motive_code=code,
        motive_label=sent.motive_label or (codelist("motive").label(code) if code else ""),
        commune=sent.commune_label,
        age=sent.patient.age,
        sex=sent.patient.sex,
        version=item.version + 1 if item is not None else 1,
    )
    payload = {"queue": queue.value, "priority": new.priority, "reopened": item is not None}
    return Change(new, sent, event(EventKind.ENQUEUED, payload), new)


# --------------------------------------------------------------------------- leases


def lease_end(at: datetime, lease_s: float) -> datetime:
    """When a lease renewed at ``at`` for ``lease_s`` seconds ends (the
    duration checked like a claim's: bounded)."""
    if at.tzinfo is None:
        raise QueueError("Heure sans fuseau horaire : opération refusée.", "invalid")
    return at + timedelta(seconds=rules.checked_lease(lease_s))


def renewed(item: QueueItem, workstation: str, expires: datetime) -> QueueItem | None:
    """The item after ``workstation`` renewed its leases until ``expires``
    (from :func:`lease_end`); ``None`` when nothing changes: not its claim,
    or the lease already runs at least that long (leases only grow).  No
    event: a renewal is a heartbeat."""
    claim = item.claim
    if item.status is not ItemStatus.CLAIMED or claim is None:
        return None
    if claim.workstation != workstation or claim.expires_at >= expires:
        return None
    return replace(item, claim=replace(claim, expires_at=expires), version=item.version + 1)


def expired(item: QueueItem, at: datetime) -> tuple[QueueItem, Event] | None:
    """A claim whose lease ended at or before ``at`` goes back to its queue
    (WAITING, original ``waiting_since``, ``alert`` set for the supervisor)
    with a ``LEASE_EXPIRED`` event in the holder's name; ``None`` otherwise."""
    claim = item.claim
    if item.status is not ItemStatus.CLAIMED or claim is None or claim.expires_at > at:
        return None
    new = replace(
        item,
        status=ItemStatus.WAITING,
        claim=None,
        version=item.version + 1,
        alert=f"Prise en charge expirée : poste {claim.workstation} muet",
    )
    event = Event(
        item.case_id,
        at,
        EventKind.LEASE_EXPIRED,
        Actor(claim.role, claim.operator, claim.workstation),
        {
            "queue": item.queue.value,
            "claimed_at": iso(claim.claimed_at),
            "expired_at": iso(claim.expires_at),
        },
    )
    return new, event


# --------------------------------------------------------------------------- the hash chain


_ENCODER = msgspec.json.Encoder(order="sorted")


def canonical(event: Event, prev_hash: str) -> bytes:
    """The bytes an event's hash covers: its dossier, time (UTC), kind, actor,
    operation id, data and the previous event's hash, as compact JSON with
    sorted keys (the same on every store, whatever the offsets)."""
    body = {
        "case_id": event.dossier_id,
        "at": event.at.astimezone(UTC).isoformat(timespec="microseconds"),
        "kind": event.kind.value,
        "role": event.actor.role,
        "operator": event.actor.operator,
        "workstation": event.actor.workstation,
        "op_id": event.op_id,
        "data": event.data,
        "prev": prev_hash,
    }
    # msgspec: compact UTF-8 JSON, keys sorted at every level, floats as the
    # shortest repr (a third of json.dumps' cost, on every event written)
    return _ENCODER.encode(body)


def event_hash(event: Event, prev_hash: str) -> str:
    """sha256 (hex) of :func:`canonical`."""
    return hashlib.sha256(canonical(event, prev_hash)).hexdigest()


def seal(event: Event, head: str) -> Event:
    """The event chained after ``head`` (the hash of the dossier's last event,
    ``""`` for its first): what a store appends, and its new head is the
    returned event's ``hash``."""
    return replace(event, prev_hash=head, hash=event_hash(event, head))


def verify_chain(case_id: str, events: Iterable[Event], head: str | None) -> list[LogBreak]:
    """Breaks in one dossier's log (``events`` oldest first, with their
    ``seq``, ``op_id``, ``prev_hash`` and ``hash`` as stored); ``head`` is the
    hash the store keeps with the item (``None``: no item).  Events written
    before the log was chained (no hash) are accepted only before the first
    chained one."""
    breaks: list[LogBreak] = []
    expected = ""
    chained = False
    for ev in events:
        if not ev.hash:
            if chained:
                breaks.append(
                    LogBreak(case_id, ev.seq, "Événement sans empreinte dans un journal chaîné.")
                )
            continue
        chained = True
        if ev.prev_hash != expected:
            breaks.append(
                LogBreak(
                    case_id,
                    ev.seq,
                    "Chaîne rompue : l'événement précédent a été supprimé, modifié ou inséré.",
                )
            )
        if event_hash(ev, ev.prev_hash) != ev.hash:
            breaks.append(LogBreak(case_id, ev.seq, "Contenu de l'événement modifié après coup."))
        expected = ev.hash
    if head is not None and head != expected:
        breaks.append(
            LogBreak(
                case_id,
                None,
                "Fin du journal rompue : le dernier événement connu du dossier est absent ou modifié.",
            )
        )
    return breaks


def verify_log(events: Iterable[Event], heads: Mapping[str, str]) -> list[LogBreak]:
    """Breaks in a whole store's log: ``events`` ordered by dossier then
    ``seq``; ``heads`` the hash kept with each item (case id → head)."""
    breaks: list[LogBreak] = []
    by_case: dict[str, list[Event]] = {}
    for ev in events:
        by_case.setdefault(ev.dossier_id, []).append(ev)
    for case_id in sorted(set(by_case) | set(heads)):
        breaks.extend(verify_chain(case_id, by_case.get(case_id, []), heads.get(case_id)))
    return breaks


def op_id_reused() -> QueueError:
    """An ``op_id`` already applied to another operation (kind or case)."""
    return QueueError(
        "Identifiant d'opération déjà utilisé pour une autre opération : opération refusée.",
        "op_id_reused",
    )
