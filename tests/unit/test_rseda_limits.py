"""What one imported RS-EDA may hold (issue 18): bounded text, bounded lists,
a caseId in the Hub's format (no NUL, no path)."""

from __future__ import annotations

from typing import Any

import pytest

from sas_desk.models.rseda import MAX_ITEMS, MAX_TEXT, from_rseda, to_rseda
from sas_desk.models.validation import ValidationError
from tests.unit.test_rseda import full_dossier


def body(**changes: Any) -> dict[str, Any]:
    case = to_rseda(full_dossier())["createCaseHealth"]
    case.update(changes)
    return {"createCaseHealth": case}


def refused(message: dict[str, Any]) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        from_rseda(message)
    return caught.value


def test_a_50_mb_text_field_is_refused_naming_the_field() -> None:
    case = body()
    case["createCaseHealth"]["initialAlert"]["caller"]["freetext"] = "x" * 50_000_000
    error = refused(case)
    assert error.field == "initialAlert.caller.freetext"
    assert f"au plus {MAX_TEXT}" in error.message


def test_text_at_the_cap_is_kept() -> None:
    case = body()
    case["createCaseHealth"]["initialAlert"]["caller"]["freetext"] = "x" * MAX_TEXT
    assert from_rseda(case).caller.freetext == "x" * MAX_TEXT


def test_10000_notes_are_refused() -> None:
    note = {"freetext": "note", "creation": "2024-01-04T08:01:00+01:00"}
    error = refused(body(medicalNote=[note] * 10_000))
    assert error.field == "medicalNote"
    assert f"10000 éléments (au plus {MAX_ITEMS})" in error.message
    assert len(from_rseda(body(medicalNote=[note] * MAX_ITEMS)).notes) >= MAX_ITEMS


@pytest.mark.parametrize(
    "case_id",
    [
        "fr.health.samu690.DRFR15\x00690",
        "../../etc/passwd",
        "fr.health/../samu690.X",
        "fr.health..samu690.X",
        "fr health samu690 X",
        "a" * 200,
        ".fr.health.samu",
    ],
)
def test_a_case_id_with_nul_path_or_spaces_is_refused(case_id: str) -> None:
    error = refused(body(caseId=case_id))
    assert error.field == "caseId"
    assert "\x00" not in error.message


@pytest.mark.parametrize(
    "case_id", ["fr.health.samu690.DRFR156902423700035", "fr.fire.sdis69.cgo.X-1_2", "ABCD"]
)
def test_hub_case_ids_are_accepted(case_id: str) -> None:
    assert from_rseda(body(caseId=case_id)).case_id == case_id
