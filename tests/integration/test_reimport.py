"""Re-importing an RS-EDA whose caseId is already stored never loses anything
(issue 18): identical -> left alone; different -> both kept, conflict reported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sas_desk.models.dossier import Actor, EventKind
from sas_desk.models.rseda import from_rseda, to_rseda
from sas_desk.services.config import Config
from sas_desk.services.desk import Desk
from sas_desk.services.journal.service import Journal
from sas_desk.services.journal.store import JournalStore
from tests.integration.test_cli import sas_desk
from tests.integration.test_journal_service import clock
from tests.unit.test_rseda import full_dossier

ACTOR = Actor("ARM", "arm.test", "POSTE-1")


async_test = pytest.mark.asyncio


def message(notes: int = 3) -> dict[str, Any]:
    body = to_rseda(full_dossier())
    case = body["createCaseHealth"]
    note = case["medicalNote"][0]
    case["medicalNote"] = [
        {**note, "medicalNoteId": f"{note['medicalNoteId']}-{i}", "freetext": f"note {i}"}
        for i in range(notes)
    ]
    return body


async def open_desk(tmp_path: Path) -> tuple[Journal, Desk]:
    journal = Journal(tmp_path / "journal.sqlite", now=clock)
    assert await journal.open() is not None
    return journal, Desk(Config(data_dir=tmp_path), journal, ACTOR, clock)


@async_test
async def test_a_different_message_for_a_known_case_keeps_both(tmp_path: Path) -> None:
    journal, desk = await open_desk(tmp_path)
    try:
        first = await desk.import_received(from_rseda(message(notes=3)))
        assert first.kind == "new"
        again = await desk.import_received(from_rseda(message(notes=0)))
        assert again.kind == "conflict"
        case_id = first.dossier.case_id
        assert again.dossier.case_id == f"{case_id}-import1"
        assert (
            "notes : 4 ici, 1 reçues" in again.message_fr and "Rien n'est perdu" in again.message_fr
        )
        assert await journal.flush(timeout=10)
        kept = await journal.load(case_id)
        received = await journal.load(again.dossier.case_id)
        assert kept is not None and len([n for n in kept.notes if n.medical]) == 3
        assert received is not None and not [n for n in received.notes if n.medical]
        assert [e.kind for e in await journal.events(case_id)] == [
            EventKind.IMPORTED,
            EventKind.IMPORT_CONFLICT,
        ]
        third = await desk.import_received(from_rseda(message(notes=1)))
        assert third.dossier.case_id == f"{case_id}-import2"
    finally:
        await journal.close()


@async_test
async def test_a_locally_edited_sheet_is_not_overwritten_nor_the_import_dropped(
    tmp_path: Path,
) -> None:
    journal, desk = await open_desk(tmp_path)
    try:
        first = await desk.import_received(from_rseda(message()))
        sheet = first.dossier
        sheet.location.floor = "3e étage"
        desk.touch(sheet)
        again = await desk.import_received(from_rseda(message()))
        assert again.kind == "conflict"
        assert await journal.flush(timeout=10)
        kept = await journal.load(sheet.case_id)
        assert kept is not None and kept.location.floor == "3e étage"
        assert await journal.load(again.dossier.case_id) is not None
    finally:
        await journal.close()


@async_test
async def test_the_same_message_twice_is_imported_once(tmp_path: Path) -> None:
    journal, desk = await open_desk(tmp_path)
    try:
        assert (await desk.import_received(from_rseda(message()))).kind == "new"
        same = await desk.import_received(from_rseda(message()))
        assert same.kind == "same" and "identique" in same.message_fr
        assert await journal.flush(timeout=10)
    finally:
        await journal.close()
    store = JournalStore(tmp_path / "journal.sqlite", now=clock)
    try:
        assert len(store.of_day(full_dossier().created_at.date())) == 1
    finally:
        store.close()


def test_cli_reports_the_conflict_and_exits_3(tmp_path: Path) -> None:
    three, none = tmp_path / "three.json", tmp_path / "none.json"
    three.write_text(json.dumps(message(notes=3)))
    none.write_text(json.dumps(message(notes=0)))
    data = tmp_path / "data"
    assert sas_desk("dossier", "import-rseda", str(three), data_dir=data).returncode == 0
    result = sas_desk("dossier", "import-rseda", str(none), data_dir=data)
    assert result.returncode == 3, result.stderr
    assert "Conflit : le dossier" in result.stderr and "Traceback" not in result.stderr
    case_id = full_dossier().case_id
    assert result.stdout.strip() == f"{case_id}-import1"
    exported = sas_desk("dossier", "export-rseda", case_id, data_dir=data)
    assert len(json.loads(exported.stdout)["createCaseHealth"]["medicalNote"]) == 3


@pytest.mark.parametrize("case_id", ["fr.health\x00.samu690.X", "../../../etc/passwd"])
def test_cli_refuses_a_case_id_with_nul_or_path(tmp_path: Path, case_id: str) -> None:
    body = message()
    body["createCaseHealth"]["caseId"] = case_id
    path = tmp_path / "m.json"
    path.write_text(json.dumps(body))
    result = sas_desk("dossier", "import-rseda", str(path), data_dir=tmp_path / "data")
    assert result.returncode == 1 and "caseId" in result.stderr
    assert "Traceback" not in result.stderr


def test_conflict_fields_are_named_in_french() -> None:
    from sas_desk.services.desk import conflict_fields

    here, received = from_rseda(message(notes=3)), from_rseda(message(notes=0))
    received.location.floor, received.priority = "2e", "P0"
    rows = conflict_fields(here, received)
    assert ("Notes", "4", "1") in rows and ("Priorité", "P1", "P0") in rows
    assert ("Lieu : étage", "3", "2e") in rows
