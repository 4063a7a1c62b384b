"""Property tests for RS-EDA-MAJ (``createCaseHealthUpdate``, issue 18): any
bytes or any JSON gives a clear refusal (a French :class:`ValidationError` or
:class:`InputError`, the dossier untouched) or an updated dossier that is
still a valid model — it round-trips through the journal's form and through
RS-EDA — and the same update applied again adds nothing.

Inputs are a full valid update mutated (subtrees replaced by arbitrary JSON,
deleted, lists grown) and raw bytes; bounded like test_parser_properties.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sas_desk.models.dossier import Dossier
from sas_desk.models.limits import InputError, decode_json
from sas_desk.models.rseda import from_rseda, to_rseda
from sas_desk.models.rseda_update import apply_update, update_case_id
from sas_desk.models.validation import ValidationError
from tests.unit.test_parser_properties import JSON_VALUES, bounded, mutated, never_raises_other
from tests.unit.test_rseda import CASE_ID, full_dossier

UPDATE: dict[str, Any] = {
    "createCaseHealthUpdate": {
        "caseId": CASE_ID,
        "owner": "fr.health.samu380",
        "perimeter": "SNP",
        "qualification": {"details": {"priority": "P0", "careLevel": "R2", "status": "CLOTURE"}},
        "initialAlert": {
            "notes": [{"creation": "2026-07-14T21:40:00+02:00", "freetext": "Rappel : fièvre"}]
        },
        "medicalNote": [
            {
                "medicalNoteId": f"{CASE_ID}.medicalNote.9",
                "operator": {"role": "MEDECIN", "label": "Dr Garnier"},
                "creation": "2026-07-14T21:45:00+02:00",
                "freetext": "Aggravation, dyspnée",
            }
        ],
        "decision": [
            {
                "operator": {"role": "MEDECIN"},
                "creation": "2026-07-14T21:50:00+02:00",
                "decisionType": "INTER",
                "resourceType": "SMUR",
            }
        ],
        "freetext": "Adresse précisée : 2e étage",
    }
}
STATUS_LINE = "Statut chez le partenaire"


def snapshot(dossier: Dossier) -> str:
    return json.dumps(dossier.to_dict(), sort_keys=True, default=str)


def check_update(body: Any) -> None:
    """The contract, for one body: refused with the dossier untouched, or
    applied into a valid dossier, and idempotent."""
    dossier = full_dossier()
    before = snapshot(dossier)
    never_raises_other(lambda: update_case_id(body), ValidationError)
    try:
        changes = apply_update(dossier, body)
    except ValidationError as exc:
        message = str(exc)
    else:
        message = ""
    if message:  # refused: said, and the dossier untouched (reads before the first write)
        assert "RS-EDA" in message  # French, naming the message kind
        assert snapshot(dossier) == before
        return
    assert all(isinstance(line, str) and line for line in changes)
    assert (snapshot(dossier) != before) == bool(changes)
    # still a valid model: the journal's form and RS-EDA both round-trip
    stored = Dossier.from_dict(json.loads(json.dumps(dossier.to_dict())))
    assert snapshot(stored) == snapshot(dossier)
    again = from_rseda(to_rseda(dossier))
    assert again.case_id == dossier.case_id and again.priority == dossier.priority
    assert len(again.notes) == len(dossier.notes)
    # a redelivered update adds nothing (the partner's status is only said again)
    notes, decisions, revision = len(dossier.notes), len(dossier.decisions), dossier.revision
    second = apply_update(dossier, copy.deepcopy(body))
    assert all(line.startswith(STATUS_LINE) for line in second)
    assert (len(dossier.notes), len(dossier.decisions)) == (notes, decisions)
    assert dossier.revision == revision + (1 if second else 0)


def test_the_full_update_applies_and_round_trips() -> None:
    dossier = full_dossier()
    changes = apply_update(dossier, copy.deepcopy(UPDATE))
    assert any(c.startswith("Priorité") for c in changes) and any(
        c.startswith("Décision reçue") for c in changes
    )
    check_update(copy.deepcopy(UPDATE))


@bounded
@given(mutated(UPDATE))
def test_any_mutation_of_an_update_is_refused_cleanly_or_applied_validly(body: Any) -> None:
    check_update(body)


@bounded
@given(
    JSON_VALUES
    | st.dictionaries(st.sampled_from(["createCaseHealthUpdate", "caseId"]), JSON_VALUES)
)
def test_any_json_is_refused_cleanly_or_applied_validly(body: Any) -> None:
    check_update(body)


@bounded
@given(st.binary(max_size=400) | mutated(UPDATE).map(lambda v: json.dumps(v).encode()))
def test_any_bytes_are_refused_cleanly_or_applied_validly(data: bytes) -> None:
    decoded = never_raises_other(lambda: decode_json(data), InputError)
    if decoded is not None:
        check_update(decoded)


def test_a_code_out_of_its_list_is_refused_naming_where() -> None:
    """Found by the properties: priority "0" was stored, then sent on as no
    priority (RS-EDA carries only P0-P3) and read back as P2."""
    for path, value in (("priority", "0"), ("careLevel", "R9"), ("perimeter", "SAMU")):
        body = copy.deepcopy(UPDATE)
        case = body["createCaseHealthUpdate"]
        (case if path == "perimeter" else case["qualification"]["details"])[path] = value
        dossier = full_dossier()
        before = snapshot(dossier)
        with pytest.raises(ValidationError, match=f"{path} « {value} » hors liste"):
            apply_update(dossier, body)
        assert snapshot(dossier) == before
