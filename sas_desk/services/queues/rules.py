"""Queue rules shared by every backend (pure: no I/O).

How an operation's arguments are read and checked, who may act on a claimed
item, how a decision is validated against the national code lists, and how
a re-sent dossier keeps what the regulators added.  The backends only differ
in how they store the result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sas_desk.models.codes import codelist
from sas_desk.models.dossier import Actor, Decision, Dossier, add_note
from sas_desk.models.queue import (
    Claim,
    NotHolder,
    Operation,
    QueueError,
    QueueItem,
    QueueName,
    forbidden_reason,
)
from sas_desk.models.validation import ValidationError
from sas_desk.services.queues.api import DEFAULT_LEASE_S, MAX_LEASE_S


def text_arg(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise QueueError(f"Champ « {key} » invalide : texte attendu.", "invalid")
    return value


def queue_arg(value: Any) -> QueueName:
    try:
        return QueueName(value)
    except ValueError:
        raise QueueError(f"File inconnue : « {value} ».", "invalid") from None


def lease_seconds(data: Mapping[str, Any], key: str = "lease_s") -> float:
    value = data.get(key, DEFAULT_LEASE_S)
    if value is None:
        return DEFAULT_LEASE_S
    return checked_lease(value)


def checked_lease(value: Any, bound: float = MAX_LEASE_S) -> float:
    """A lease duration in seconds: finite, > 0 and at most ``bound``
    (a client once sent ``3e9`` and held an item for a century).  The bound
    is :data:`MAX_LEASE_S`; a room server may only lower it (its
    ``max_lease_s``, checked against this one when it starts)."""
    bound = min(bound, MAX_LEASE_S)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
        or value > bound
    ):
        raise QueueError(
            f"Durée de prise en charge invalide : entre 0 et {bound:.0f} secondes.",
            "invalid",
        )
    return float(value)


def check_role(op: Operation, item: QueueItem) -> None:
    """Refuses (code ``forbidden``) what the operator's role may not do on
    this item, whoever holds it."""
    reason = forbidden_reason(op.role, op.kind, item.queue)
    if reason is not None:
        raise QueueError(reason, "forbidden")


def holder(item: QueueItem, op: Operation, *, supervisor: bool) -> Claim | None:
    """The current claim when ``op`` may act on the item (its holder, or SUP
    when ``supervisor`` — even on an unclaimed item); raises NotHolder otherwise."""
    claim = item.claim
    if claim is not None and claim.workstation == op.workstation:
        return claim
    if supervisor and op.role == "SUP":
        return claim
    raise NotHolder(item.case_id, claim)


def decision(raw: Any, at: datetime) -> Decision:
    """One regulation decision, its codes checked against the national lists."""
    if not isinstance(raw, dict):
        raise QueueError("Décision invalide.", "invalid")
    decision_type = text_arg(raw, "decision_type")
    if decision_type not in codelist("decision_type"):
        raise QueueError(f"Type de décision inconnu : « {decision_type} ».", "invalid")
    resource = text_arg(raw, "resource_type")
    if resource and resource not in codelist("resource_type"):
        raise QueueError(f"Type de ressource inconnu : « {resource} ».", "invalid")
    orientation = text_arg(raw, "orientation_type")
    if orientation and orientation not in codelist("orientation_type"):
        raise QueueError(f"Type d'orientation inconnu : « {orientation} ».", "invalid")
    transport = raw.get("medical_transport")
    if transport is not None and not isinstance(transport, bool):
        raise QueueError("Transport médicalisé : oui, non ou non renseigné.", "invalid")
    return Decision(
        at=at,
        decision_type=decision_type,
        role="MEDECIN",  # a regulation decision is a physician's
        resource_type=resource,
        orientation_type=orientation,
        medical_transport=transport,
        freetext=text_arg(raw, "freetext"),
        patient_id=text_arg(raw, "patient_id"),
    )


def decisions(raw: Any, at: datetime) -> list[Decision]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise QueueError("Décisions invalides : liste attendue.", "invalid")
    return [decision(entry, at) for entry in raw]


def medical_note(dossier: Dossier, text: str, op: Operation) -> str:
    """Add the operator's note to the dossier; returns its id."""
    try:
        add_note(dossier, text, op.at, Actor(op.role, op.operator, op.workstation), medical=True)
    except ValidationError as exc:
        raise QueueError(exc.message, "invalid") from None
    return dossier.notes[-1].note_id


def merge_server_side(dossier: Dossier, stored: Dossier) -> None:
    """A closed dossier sent again by the ARM keeps what the regulators added
    to the server copy (care level, decisions, notes)."""
    dossier.care_level = dossier.care_level or stored.care_level
    dossier.decisions = stored.decisions + [
        d for d in dossier.decisions if d not in stored.decisions
    ]
    seen = {(n.note_id, n.at, n.text) for n in stored.notes}
    dossier.notes = stored.notes + [
        n for n in dossier.notes if (n.note_id, n.at, n.text) not in seen
    ]
