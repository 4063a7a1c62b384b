"""The import conflict as the operator meets it (issue 18): an RS-EDA file
for a case already stored and different opens a dialog showing what differs;
the operator keeps one version with one key, and both stay in the journal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from pytestqt.qtbot import QtBot

from sas_desk.models.dossier import EventKind, Status
from sas_desk.ui.widgets import Banner
from tests.integration.test_reimport import message
from tests.ui.conftest import Env, open_window, until
from tests.unit.test_rseda import full_dossier

pytestmark = [pytest.mark.gui, pytest.mark.asyncio(loop_scope="session")]

CASE_ID = full_dossier().case_id


def banners(window: Any, name: str) -> list[str]:
    return [b.label.text() for b in window.findChildren(Banner) if b.objectName() == name]


def table(dialog: Any) -> list[tuple[str, str, str]]:
    t = dialog.table
    return [tuple(t.item(r, c).text() for c in range(3)) for r in range(t.rowCount())]


async def shown_dialog(window: Any) -> Any:
    dialog = window.conflict_dialog
    assert dialog is not None and dialog.isVisible()
    dialog.activateWindow()  # as the window manager does for a dialog opened
    await until(dialog.isActiveWindow)
    return dialog


async def conflict(qtbot: QtBot, env: Env, tmp_path: Path) -> Any:
    three, none = tmp_path / "three.json", tmp_path / "none.json"
    three.write_text(json.dumps(message(notes=3)))
    none.write_text(json.dumps(message(notes=0)))
    window = await open_window(qtbot, env, role="ARM")
    await window.import_rseda_file(three)
    assert any("Dossier importé" in t for t in banners(window, "importNotice"))
    await window.import_rseda_file(none)
    dialog = await shown_dialog(window)
    assert ("Notes", "4", "1") in table(dialog)  # 1 alert note + 3 medical here, 1 received
    return window, dialog


async def test_keeping_the_received_version_keeps_the_other_abandoned(
    qtbot: QtBot, env: Env, tmp_path: Path
) -> None:
    window, dialog = await conflict(qtbot, env, tmp_path)
    QTest.keyClick(dialog, Qt.Key.Key_R)
    await until(lambda: banners(window, "importSettled"), timeout=5)
    assert not dialog.isVisible() and window.conflict_dialog is None
    assert await env.journal.flush(timeout=10)
    kept = await env.journal.load(CASE_ID)
    other = await env.journal.load(f"{CASE_ID}-import1")
    assert kept is not None and other is not None
    assert not [n for n in kept.notes if n.medical]  # the received version, now the dossier
    assert len([n for n in other.notes if n.medical]) == 3  # what was here: kept, abandoned
    assert other.status is Status.ABANDONED and kept.status is not Status.ABANDONED
    events = await env.journal.events(CASE_ID)
    assert [e.kind for e in events][-2:] == [EventKind.IMPORT_CONFLICT, EventKind.IMPORT_RESOLVED]
    assert events[-1].data == {"kept": "received", "received_as": f"{CASE_ID}-import1"}


async def test_keeping_the_existing_version_or_deciding_later(
    qtbot: QtBot, env: Env, tmp_path: Path
) -> None:
    window, dialog = await conflict(qtbot, env, tmp_path)
    QTest.keyClick(dialog, Qt.Key.Key_Escape)  # later: both kept, said so
    assert not dialog.isVisible()
    assert any("laissé en attente" in t for t in banners(window, "banner_warning"))
    received = await env.journal.load(f"{CASE_ID}-import1")
    assert received is not None and received.status is not Status.ABANDONED
    # the same choice offered again, settled with E
    window.show_import_conflict(await env.journal.load(CASE_ID), received)
    dialog = await shown_dialog(window)
    QTest.keyClick(dialog, Qt.Key.Key_E)
    await until(lambda: banners(window, "importSettled"), timeout=5)
    assert await env.journal.flush(timeout=10)
    kept = await env.journal.load(CASE_ID)
    other = await env.journal.load(f"{CASE_ID}-import1")
    assert kept is not None and len([n for n in kept.notes if n.medical]) == 3
    assert other is not None and other.status is Status.ABANDONED
    # settled once: a second settlement is refused in French, nothing changes
    window.show_import_conflict(kept, other)
    QTest.keyClick(await shown_dialog(window), Qt.Key.Key_R)
    await until(lambda: any("déjà tranché" in t for t in banners(window, "banner_error")))
    again = await env.journal.load(CASE_ID)
    assert again is not None and len([n for n in again.notes if n.medical]) == 3


async def test_a_bad_file_is_refused_in_french_without_dialog(
    qtbot: QtBot, env: Env, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"[" * 100_000)
    window = await open_window(qtbot, env, role="ARM")
    await window.import_rseda_file(bad)
    assert window.conflict_dialog is None
    errors = banners(window, "banner_error")
    assert errors and "bad.json" in errors[-1]
