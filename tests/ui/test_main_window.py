"""The main window: role picker, resume offer, banners, Dossiers du jour."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.modeltest import ModelTester
from pytestqt.qtbot import QtBot

from sas_desk.models.dossier import EventKind, Status
from sas_desk.services import clock
from sas_desk.services.journal.service import SaveState
from sas_desk.services.journal.store import OpenReport
from sas_desk.ui.call_sheet import CallSheet
from sas_desk.ui.keys import type_text
from tests.ui.conftest import Env, open_window

pytestmark = [pytest.mark.gui, pytest.mark.asyncio(loop_scope="session")]


async def test_role_picker_first_then_arm_lands_on_a_new_call(qtbot: QtBot, env: Env) -> None:
    window = await open_window(qtbot, env)
    assert window.stack.currentWidget() is window.picker
    type_text(window.picker, "1")
    assert window.role == "ARM"
    assert "ARM" in window.role_button.text()
    assert env.desk.actor.role == "ARM"
    sheet = window.current_sheet()
    assert isinstance(sheet, CallSheet)
    assert sheet.callback.hasFocus()
    assert window.day_model.rowCount() == 1


async def test_other_roles_land_on_the_list_and_sheets_are_read_only(
    qtbot: QtBot, env: Env
) -> None:
    draft = env.desk.new_call()
    window = await open_window(qtbot, env, today=[draft])
    type_text(window.picker, "4")  # MRL (the DENT lands on the dental view)
    assert window.role == "MRL"
    assert window.current_sheet() is None
    assert window.day_view.hasFocus()
    window.day_view.activated.emit(window.day_model.index(0, 0))
    sheet = window.current_sheet()
    assert sheet is not None and sheet.callback.isReadOnly()
    window.show_role_picker()
    assert window.stack.currentWidget() is window.picker


async def test_ctrl_n_new_call_and_closing_a_draft_keeps_it(qtbot: QtBot, env: Env) -> None:
    window = await open_window(qtbot, env, role="ARM")
    first = window.current_sheet()
    assert first is not None
    type_text(first.callback, "0612")
    qtbot.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert window.tabs.count() == 2
    window.close_sheet(window.tabs.indexOf(first))
    assert window.tabs.count() == 1
    assert window.day_model.rowCount() == 2  # the closed draft is still listed
    row = next(
        r for r in range(2) if window.day_model.dossier_at(r).case_id == first.dossier.case_id
    )  # type: ignore[union-attr]
    window.day_view.doubleClicked.emit(window.day_model.index(row, 0))
    reopened = window.current_sheet()
    assert reopened is not None and reopened.callback.text() == "0612"


async def test_resume_offer_reopens_unfinished_sheets(qtbot: QtBot, env: Env) -> None:
    draft = env.desk.new_call()
    draft.inputs.update({"callback": "06 12 34", "age": "8 mois", "note": "pas fini"})
    env.desk.touch(draft)
    assert await env.journal.flush(timeout=5)
    unfinished = await env.journal.unfinished()
    window = await open_window(qtbot, env, role="ARM", unfinished=unfinished)
    banner = window.findChild(object, "resumeBanner")
    assert banner is not None
    assert "1 fiche non terminée" in banner.label.text()
    assert window.tabs.count() == 0  # nothing opened behind the operator's back
    button = window.findChild(object, "resumeButton")
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    sheet = window.current_sheet()
    assert sheet is not None
    assert (sheet.callback.text(), sheet.age.text(), sheet.note.text()) == (
        "06 12 34",
        "8 mois",
        "pas fini",
    )
    assert await env.journal.flush(timeout=5)
    kinds = [e.kind for e in await env.journal.events(draft.case_id)]
    assert kinds[-1] is EventKind.RESUMED


async def test_damaged_journal_notice_is_shown(qtbot: QtBot, env: Env, tmp_path: Path) -> None:
    report = OpenReport(
        tmp_path / "journal.sqlite",
        tmp_path / "journal.sqlite.endommage-20261125-160000",
        "Le journal de saisie était endommagé (x). Il a été mis de côté.",
    )
    window = await open_window(qtbot, env, role="SUP", report=report)
    banner = window.findChild(object, "banner_warning")
    assert banner is not None and "endommagé" in banner.label.text()


async def test_journal_errors_are_shown_and_cleared(qtbot: QtBot, env: Env) -> None:
    window = await open_window(qtbot, env, role="ARM")
    sheet = window.current_sheet()
    assert sheet is not None
    window._on_save_state(
        SaveState(False, datetime.now().astimezone(), 1, "Disque plein : …", "full")
    )
    assert "NON ENREGISTRÉ" in window.save_label.text()
    assert window.findChild(object, "journalError") is not None
    assert "mémoire" in sheet.state.text()
    window._on_save_state(SaveState(True, datetime.now().astimezone(), 0))
    assert "enregistré à" in window.save_label.text()
    assert "enregistré" in sheet.state.text()


async def test_day_list_model_contract_and_live_updates(
    qtbot: QtBot, qtmodeltester: ModelTester, env: Env
) -> None:
    window = await open_window(qtbot, env, role="ARM")
    qtmodeltester.check(window.day_model)
    sheet = window.current_sheet()
    assert sheet is not None
    type_text(sheet.callback, "06 12 34 56 78")
    sheet.location.setFocus()
    type_text(sheet.location, "45.7640, 4.8357")
    sheet.motive.setFocus()
    type_text(sheet.motive, "M03.06")
    assert window.day_model.index(0, 2).data() == "Douleur thoracique"  # live, before transmission
    assert window.day_model.index(0, 3).data() == "Lyon"
    type_text(sheet.priority, "2")
    sheet.branch.setFocus()
    type_text(sheet.branch, "s")
    sheet.transmit()
    assert sheet.dossier.status is Status.TRANSMITTED
    status_col = 5
    assert window.day_model.index(0, status_col).data() == "Transmis"
    assert window.day_model.index(0, 2).data() == "Douleur thoracique"
    window.new_call()
    qtmodeltester.check(window.day_model)
    assert window.day_model.rowCount() == 2


async def test_a_sheet_opened_ahead_is_stamped_by_the_first_keystroke(
    qtbot: QtBot, env: Env
) -> None:
    """Issue 14 §8: the auto-opened sheet was stamped when it opened, not
    when the call came."""
    t = [clock.now()]
    env.desk._now = lambda: t[0]
    window = await open_window(qtbot, env, role="ARM")
    sheet = window.current_sheet()
    assert sheet is not None
    assert sheet.dossier.received_at is None
    assert "première saisie" in sheet.title.text()
    t[0] += timedelta(minutes=5)  # opened at 06:58, the call comes at 07:03
    type_text(sheet.callback, "0")
    received = sheet.dossier.received_at
    assert received == sheet.dossier.created_at + timedelta(minutes=5)
    assert f"reçu à {received:%H:%M:%S}" in sheet.title.text()
    type_text(sheet.callback, "6")
    assert sheet.dossier.received_at == received  # the first keystroke's, once
    assert await env.journal.flush(timeout=5)
    stored = await env.journal.load(sheet.dossier.case_id)
    assert stored is not None and stored.received_at == received


async def test_ctrl_n_answers_on_the_blank_sheet_instead_of_leaving_it_behind(
    qtbot: QtBot, env: Env
) -> None:
    """Issue 14 §14: an ARM's Ctrl+N left the auto-created empty sheet as a
    « fiche non terminée » forever."""
    t = [clock.now()]
    env.desk._now = lambda: t[0]
    window = await open_window(qtbot, env, role="ARM")
    blank = window.current_sheet()
    assert blank is not None
    t[0] += timedelta(minutes=5)
    qtbot.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert window.tabs.count() == 1 and window.current_sheet() is blank
    assert blank.dossier.received_at == t[0]  # Ctrl+N's time
    assert blank.callback.hasFocus()
    type_text(blank.callback, "0612")
    qtbot.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    second = window.current_sheet()
    assert window.tabs.count() == 2 and second is not blank
    window.close_sheet(window.tabs.indexOf(second))  # closed blank: abandoned, not unfinished
    assert await env.journal.flush(timeout=5)
    unfinished = [d.case_id for d in await env.journal.unfinished()]
    assert unfinished == [blank.dossier.case_id]
    kinds = [e.kind for e in await env.journal.events(second.dossier.case_id)]
    assert kinds[-1] is EventKind.ABANDONED
    assert window.day_model.rowCount() == 1  # nothing to list for the blank one


async def test_a_blank_sheet_left_by_an_earlier_session_is_not_offered_again(
    qtbot: QtBot, env: Env
) -> None:
    blank = env.desk.new_call(answered=False)
    assert await env.journal.flush(timeout=5)
    window = await open_window(qtbot, env, role="ARM", unfinished=await env.journal.unfinished())
    assert window.findChild(object, "resumeBanner") is None
    assert await env.journal.flush(timeout=5)
    sheet = window.current_sheet()
    assert sheet is not None and sheet.dossier.case_id != blank.case_id
    assert [d.case_id for d in await env.journal.unfinished()] == [sheet.dossier.case_id]
    stored = await env.journal.load(blank.case_id)
    assert stored is not None and stored.status is Status.ABANDONED
    assert window.day_model.rowCount() == 1


async def test_supervisor_ctrl_n_says_where_calls_are_taken(qtbot: QtBot, env: Env) -> None:
    """Issue 14 §14: a supervisor's Ctrl+N made a dead read-only draft."""
    window = await open_window(qtbot, env, role="SUP")
    qtbot.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert window.tabs.count() == 0
    assert "poste ARM" in window.statusBar().currentMessage()
    assert await env.journal.flush(timeout=5)
    assert await env.journal.unfinished() == []
