"""Hub Santé RS-EDA-MAJ (``createCaseHealthUpdate``) applied to a known
:class:`~sas_desk.models.dossier.Dossier`.  Pure: no I/O.

Only ``caseId`` is required; the update carries the blocks that changed
(``reference/notes/hub-sante.md`` §2.3).  What SAS Desk applies:

* ``owner`` (a change of handling centre), ``perimeter``;
* ``qualification.details``: ``priority``, ``careLevel`` (``status`` is
  informational in 15-15: a ``CLOTURE`` is recorded in the changes, the
  dossier's own status is the room's);
* ``medicalNote[]`` and ``initialAlert.notes[]``: appended, a note already
  present (same id, or same time and text) is not added twice;
* ``decision[]``: appended unless already present;
* ``freetext``: kept as a non-medical note (what has no structured slot).

:func:`apply_update` returns the list of French change lines (empty when the
update changed nothing) for the dossier's timeline.

The other way, :func:`build_update` writes the RS-EDA-MAJ of what a partner
does not have yet of a case we shared (:class:`Known`, read from every body
exchanged with that partner about it): the medical notes and decisions added
since, a new priority or care level, a change of handling centre (``owner``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sas_desk.models.dossier import Dossier, Note
from sas_desk.models.rseda import (
    _CARE_LEVELS,
    _PERIMETERS,
    _PRIORITIES,
    _import_alert_notes,
    _import_decisions,
    _import_medical_notes,
    _invalid,
    _obj,
    _str,
    to_rseda,
)
from sas_desk.models.rseda import ROOT_KEY as CASE_KEY
from sas_desk.models.validation import ValidationError

ROOT_KEY = "createCaseHealthUpdate"


def update_case_id(body: dict[str, Any]) -> str:
    """The ``caseId`` of an update body (``{"createCaseHealthUpdate": {...}}``
    or the inner object); raises :class:`ValidationError` when missing."""
    case = _update(body)
    case_id = _str(case, "caseId", "caseId").strip()
    if not case_id:
        raise ValidationError("Message RS-EDA-MAJ invalide : caseId manquant", "caseId")
    return case_id


def _update(body: dict[str, Any]) -> dict[str, Any]:
    case = body.get(ROOT_KEY, body) if isinstance(body, dict) else None
    if not isinstance(case, dict):
        raise _invalid("createCaseHealthUpdate n'est pas un objet JSON", ROOT_KEY)
    return case


def apply_update(dossier: Dossier, body: dict[str, Any], received_at: Any = None) -> list[str]:
    """Apply the update to ``dossier`` in place; French change lines.

    Raises :class:`ValidationError` (French) on a malformed update, or when
    its ``caseId`` is not the dossier's; the dossier is then unchanged (every
    read happens before the first write)."""
    case = _update(body)
    case_id = update_case_id(body)
    if case_id != dossier.case_id:
        raise ValidationError(
            f"Mise à jour RS-EDA-MAJ pour le dossier {case_id}, pas {dossier.case_id}", "caseId"
        )
    fallback = received_at or dossier.received_at or dossier.created_at
    owner = _str(case, "owner", "owner").strip()
    perimeter = _str(case, "perimeter", "perimeter").strip()
    details = _obj(_obj(case, "qualification", "qualification"), "details", "qualification.details")
    priority = _str(details, "priority", "qualification.details.priority")
    care = _str(details, "careLevel", "qualification.details.careLevel")
    status = _str(details, "status", "qualification.details.status")
    # coded values out of their list would be stored, then lost when the dossier
    # is sent on (RS-EDA carries only the list's codes): refused here
    for value, allowed, path in (
        (perimeter, _PERIMETERS, "perimeter"),
        (priority, _PRIORITIES, "qualification.details.priority"),
        (care, _CARE_LEVELS, "qualification.details.careLevel"),
    ):
        if value and value not in allowed:
            shown = value[:20].encode("unicode_escape").decode("ascii")
            raise ValidationError(
                f"Message RS-EDA-MAJ invalide : {path} « {shown} » hors liste "
                f"({', '.join(sorted(allowed))})",
                path,
            )
    alert = _obj(case, "initialAlert", "initialAlert")
    notes = _import_alert_notes(alert, fallback) + _import_medical_notes(case, fallback)
    decisions = _import_decisions(case, fallback)
    freetext = _str(case, "freetext", "freetext").strip()

    changes: list[str] = []
    if owner and owner != dossier.owner:
        changes.append(f"Centre traitant : {dossier.owner} → {owner}")
        dossier.owner = owner
    if perimeter and perimeter != dossier.perimeter:
        changes.append(f"Filière : {dossier.perimeter or '—'} → {perimeter}")
        dossier.perimeter = perimeter
    if priority and priority != dossier.priority:
        changes.append(f"Priorité : {dossier.priority} → {priority}")
        dossier.priority = priority
    if care and care != dossier.care_level:
        changes.append(f"Niveau de soins : {dossier.care_level or '—'} → {care}")
        dossier.care_level = care
    if status:
        changes.append(f"Statut chez le partenaire : {status}")
    seen = {(n.note_id or None, n.at, n.text) for n in dossier.notes}
    ids = {n.note_id for n in dossier.notes if n.note_id}
    for note in sorted(notes, key=lambda n: n.at):
        if (note.note_id and note.note_id in ids) or (
            note.note_id or None,
            note.at,
            note.text,
        ) in seen:
            continue
        dossier.notes.append(note)
        changes.append(f"Note {'médicale ' if note.medical else ''}reçue ({note.role})")
    for decision in decisions:
        if decision in dossier.decisions:
            continue
        dossier.decisions.append(decision)
        what = " ".join(x for x in (decision.decision_type, decision.resource_type) if x)
        changes.append(f"Décision reçue : {what}")
    if freetext:
        text = f"Mise à jour du partenaire : {freetext}"
        if not any(n.text == text for n in dossier.notes):
            dossier.notes.append(Note(at=fallback, text=text, role="AUTRE", medical=False))
            changes.append("Commentaire du partenaire reçu")
    if changes:
        dossier.revision += 1
    return changes


# --------------------------------------------------------------------------- sending


@dataclass(frozen=True)
class Known:
    """What a partner already holds of a case: read from the RS-EDA and
    RS-EDA-MAJ bodies sent to it or received from it (nothing is echoed)."""

    notes: frozenset[str] = frozenset()  # medicalNoteId
    decisions: frozenset[tuple[str, str]] = frozenset()  # (creation, decisionType)
    owner: str = ""
    priority: str = ""
    care_level: str = ""


def _case_of(body: dict[str, Any]) -> dict[str, Any]:
    for key in (CASE_KEY, ROOT_KEY):
        inner = body.get(key)
        if isinstance(inner, dict):
            return inner
    return {}


def _decision_key(item: dict[str, Any]) -> tuple[str, str]:
    return (str(item.get("creation", "")), str(item.get("decisionType", "")))


def known_from(bodies: Iterable[dict[str, Any]]) -> Known:
    """Fold the bodies exchanged with one partner, oldest first (a later
    owner, priority or care level replaces an earlier one)."""
    notes: set[str] = set()
    decisions: set[tuple[str, str]] = set()
    owner = priority = care = ""
    for body in bodies:
        case = _case_of(body)
        for item in case.get("medicalNote") or []:
            if isinstance(item, dict) and isinstance(item.get("medicalNoteId"), str):
                notes.add(item["medicalNoteId"])
        for item in case.get("decision") or []:
            if isinstance(item, dict):
                decisions.add(_decision_key(item))
        if isinstance(case.get("owner"), str) and case["owner"]:
            owner = case["owner"]
        qualification = case.get("qualification")
        details = qualification.get("details") if isinstance(qualification, dict) else None
        if isinstance(details, dict):
            if isinstance(details.get("priority"), str) and details["priority"]:
                priority = details["priority"]
            if isinstance(details.get("careLevel"), str) and details["careLevel"]:
                care = details["careLevel"]
    return Known(frozenset(notes), frozenset(decisions), owner, priority, care)


def build_update(dossier: Dossier, known: Known) -> tuple[dict[str, Any], list[str]] | None:
    """The RS-EDA-MAJ body ``{"createCaseHealthUpdate": {...}}`` carrying what
    the partner does not have yet, with French lines saying what it carries;
    ``None`` when the partner already has everything.  Notes and decisions are
    written as :func:`~sas_desk.models.rseda.to_rseda` writes them (same ids,
    same patient), so that what the RS-EDA carried is recognised."""
    full = to_rseda(dossier)[CASE_KEY]
    notes = [n for n in full.get("medicalNote", []) if n["medicalNoteId"] not in known.notes]
    decisions = [d for d in full.get("decision", []) if _decision_key(d) not in known.decisions]
    details_all = full.get("qualification", {}).get("details", {})
    details: dict[str, Any] = {}
    lines: list[str] = []
    if details_all.get("priority") and details_all["priority"] != known.priority:
        details["priority"] = details_all["priority"]
        lines.append(f"Priorité {details['priority']}")
    if details_all.get("careLevel") and details_all["careLevel"] != known.care_level:
        details["careLevel"] = details_all["careLevel"]
        lines.append(f"Niveau de soins {details['careLevel']}")
    owner = full.get("owner", "") if full.get("owner") != known.owner else ""
    if not (notes or decisions or details or owner):
        return None
    case: dict[str, Any] = {"caseId": full["caseId"]}
    if "senderCaseId" in full:
        case["senderCaseId"] = full["senderCaseId"]
    if owner:
        case["owner"] = owner
        lines.insert(0, f"Centre traitant {owner}")
    if details:
        case["qualification"] = {"details": details}
    if notes:
        case["medicalNote"] = notes
        lines.append("1 note médicale" if len(notes) == 1 else f"{len(notes)} notes médicales")
    if decisions:
        case["decision"] = decisions
        lines += [f"Décision {d['decisionType']}" for d in decisions]
    return {ROOT_KEY: case}, lines
