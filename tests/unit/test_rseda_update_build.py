"""RS-EDA-MAJ built for a partner (issue #16): only what it does not hold yet
of a case we shared — notes, decisions, priority, care level, owner — valid
against the national schema; nothing when it already has everything."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from sas_desk.models.dossier import Actor, Branch, Decision, add_note
from sas_desk.models.rseda import to_rseda
from sas_desk.models.rseda_update import apply_update, build_update, known_from
from tests.helpers.board_room import dossier
from tests.reference import schema_errors, schema_validator

pytestmark = pytest.mark.reference

AT = datetime(2026, 12, 7, 14, 0).astimezone()
MRU = Actor("MRU", "dr.durand", "POSTE-MRU-1")
PARTNER = "fr.health.samu380.DRFR1538A"


def test_after_the_rs_eda_only_the_new_work_travels_and_once() -> None:
    d = dossier("AMUOK", Branch.AMU, "P2", AT, ("M01.00", "Douleur thoracique"))
    add_note(d, "Avant le partage", AT, MRU)
    known = known_from([to_rseda(d)])
    assert build_update(d, known) is None  # the partner has it all

    add_note(d, "Après le partage", AT + timedelta(minutes=1), MRU)
    d.decisions.append(Decision(at=AT + timedelta(minutes=2), decision_type="CONSEIL"))
    d.priority, d.owner = "P1", "fr.health.samu380"
    built = build_update(d, known)
    assert built is not None
    body, lines = built
    assert (
        schema_errors(schema_validator("RS-EDA-MAJ.schema.json"), body["createCaseHealthUpdate"])
        == []
    )
    case = body["createCaseHealthUpdate"]
    assert [n["freetext"] for n in case["medicalNote"]] == ["Après le partage"]
    assert [x["decisionType"] for x in case["decision"]] == ["CONSEIL"]
    assert case["owner"] == "fr.health.samu380"
    assert case["qualification"] == {"details": {"priority": "P1"}}
    assert lines == [
        "Centre traitant fr.health.samu380",
        "Priorité P1",
        "1 note médicale",
        "Décision CONSEIL",
    ]
    # once sent, it is known: nothing more
    assert build_update(d, known_from([to_rseda(d), body])) is None


def test_what_the_partner_sent_is_not_echoed_back() -> None:
    d = dossier("AMUOK", Branch.AMU, "P2", AT, ("M01.00", "Douleur thoracique"))
    sent = to_rseda(d)
    theirs = {
        "createCaseHealthUpdate": {
            "caseId": d.case_id,
            "medicalNote": [
                {
                    "operator": {"role": "MEDECIN"},
                    "medicalNoteId": "fr.health.samu380.medicalNote.X1.1",
                    "creation": "2026-12-07T14:05:00+01:00",
                    "freetext": "Vu par le SMUR",
                }
            ],
        }
    }
    apply_update(d, theirs, AT)
    assert [n.text for n in d.notes] == ["Vu par le SMUR"]
    assert build_update(d, known_from([sent, theirs])) is None
