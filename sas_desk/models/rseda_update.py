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
"""

from __future__ import annotations

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
)
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
