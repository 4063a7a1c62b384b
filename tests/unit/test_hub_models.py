"""RS-SAS-RDV appointments and RS-EDA-MAJ updates: pure rules."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from sas_desk.models.appointment import (
    AppointmentError,
    Change,
    classify,
    parse_appointment,
    timeline_text,
    to_record,
)
from sas_desk.models.dossier import Decision
from sas_desk.models.rseda import from_rseda
from sas_desk.models.rseda_update import apply_update, update_case_id
from sas_desk.models.validation import ValidationError
from tests.reference import load_example

pytestmark = pytest.mark.reference

PARIS = timezone(timedelta(hours=2))
RDV = "RS-SAS-RDV_appointment_PS.01.json"
EDA = "RS-EDA_partageDossier_DidierMorel.01a.json"


def rdv(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(load_example(RDV))
    body["appointment"].update(changes)
    return body


def test_the_official_appointment_reads() -> None:
    a = parse_appointment(load_example(RDV))
    assert a.appointment_id == "2d2db05f-e2b0-4169-be8f-891806da2c74"
    assert a.method == "CreateAppointment" and a.status == "booked"
    assert a.start == datetime(2025, 6, 17, 14, 0, tzinfo=PARIS)
    assert a.practitioner_name == "Didier MOREL" and a.practitioner_rpps == "810005681340"
    assert a.regulator_email == "pauline.ricart@ghsas.fr"
    assert "Didier MOREL" in timeline_text(a) and "17/06/2025 à 14:00" in timeline_text(a)
    record = to_record(a, None)
    assert record["caseId"] is None and record["status"] == "booked"
    assert record["practitioner"] == "Didier MOREL"


def test_create_update_duplicate_rules() -> None:
    created = parse_appointment(load_example(RDV))
    assert classify(created, None) is Change.CREATED
    assert classify(created, created) is Change.DUPLICATE
    update = parse_appointment(rdv(method="UpdateAppointment", status="cancelled"))
    assert classify(update, None) is Change.CREATED_FROM_UPDATE
    assert classify(update, created) is Change.UPDATED
    assert classify(update, update) is Change.UNCHANGED


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"appointmentId": ""}, "appointmentId"),
        ({"method": "createAppointment"}, "méthode"),
        ({"status": "done"}, "statut"),
        ({"start": "2025-06-17T14:00:00Z"}, "appointment.start"),
        ({"regulator": None}, "regulator"),
        ({"practitioner": {"rppsId": "123", "lastName": "X", "firstName": "Y"}}, "RPPS"),
    ],
)
def test_bad_appointments_are_refused_in_french(changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(AppointmentError) as caught:
        parse_appointment(rdv(**changes))
    assert fragment in caught.value.message_fr


def test_update_applies_owner_priority_notes_decisions_once() -> None:
    dossier = from_rseda(load_example(EDA))
    case_id = dossier.case_id
    at = datetime(2026, 12, 7, 16, 0, tzinfo=PARIS)
    update = {
        "createCaseHealthUpdate": {
            "caseId": case_id,
            "owner": "fr.health.samu690",
            "qualification": {"details": {"priority": "P1", "careLevel": "R1"}},
            "medicalNote": [
                {
                    "medicalNoteId": "fr.health.samu690.medicalNote.X.9",
                    "operator": {"role": "MEDECIN", "label": "Dr House"},
                    "creation": "2026-12-07T15:50:00+02:00",
                    "freetext": "Douleur thoracique typique",
                }
            ],
            "decision": [
                {
                    "operator": {"role": "MEDECIN"},
                    "creation": "2026-12-07T15:55:00+02:00",
                    "decisionType": "INTER",
                    "resourceType": "SMUR",
                }
            ],
            "freetext": "Adresse précisée : 2e étage",
        }
    }
    revision, notes = dossier.revision, len(dossier.notes)
    changes = apply_update(dossier, update, at)
    assert dossier.owner == "fr.health.samu690"
    assert (dossier.priority, dossier.care_level) == ("P1", "R1")
    assert len(dossier.notes) == notes + 2 and dossier.revision == revision + 1
    assert dossier.decisions[-1] == Decision(
        at=datetime(2026, 12, 7, 15, 55, tzinfo=PARIS),
        decision_type="INTER",
        resource_type="SMUR",
        role="MEDECIN",
    )
    assert any("Centre traitant" in c for c in changes)
    assert any("Priorité" in c for c in changes)
    # the same update again changes nothing
    assert apply_update(dossier, copy.deepcopy(update), at) == []
    assert dossier.revision == revision + 1


def test_update_for_another_case_or_without_case_id() -> None:
    dossier = from_rseda(load_example(EDA))
    with pytest.raises(ValidationError):
        apply_update(dossier, {"createCaseHealthUpdate": {"caseId": "fr.health.a.b.c"}})
    with pytest.raises(ValidationError):
        update_case_id({"createCaseHealthUpdate": {"owner": "x"}})
    owner = dossier.owner
    with pytest.raises(ValidationError):  # bad note: nothing applied
        apply_update(
            dossier,
            {
                "createCaseHealthUpdate": {
                    "caseId": dossier.case_id,
                    "owner": "fr.health.samu1",
                    "medicalNote": "x",
                }
            },
        )
    assert dossier.owner == owner
