"""Ctrl+N within a frame: a closed call's sheet is emptied and kept for the
next call instead of building a new one (≈ 400 widgets and objects, a frame
or more of the GUI thread at the key press), and nothing of the closed call
stays in it."""

from __future__ import annotations

from typing import Any

import pytest
from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QApplication,
    QComboBox,
    QLabel,
    QLineEdit,
    QListWidget,
    QScrollBar,
    QWidget,
)
from pytestqt.qtbot import QtBot

from sas_desk.models.dossier import Status
from sas_desk.ui.call_sheet import CallSheet
from sas_desk.ui.keys import press, type_text
from sas_desk.ui.widgets import KeyPicker
from tests.ui.conftest import Env, open_window, until

pytestmark = [pytest.mark.gui, pytest.mark.asyncio(loop_scope="session")]


def snapshot(sheet: CallSheet) -> list[list[Any]]:
    """Everything an operator could see or get back (Ctrl+Z) of every widget
    of the sheet, in building order."""
    out: list[list[Any]] = [[sheet.styleSheet(), sheet.isEnabled()]]
    for w in sheet.findChildren(QWidget):
        row: list[Any] = [
            type(w).__name__,
            w.objectName(),
            w.isVisibleTo(sheet),
            w.isEnabled(),
            w.styleSheet(),
            w.toolTip(),
        ]
        if isinstance(w, QLineEdit):
            row += [
                w.text(),
                w.placeholderText(),
                w.isReadOnly(),
                w.isUndoAvailable(),
                w.isRedoAvailable(),
                w.isModified(),
            ]
        elif isinstance(w, QLabel):
            row += [w.text()]
        elif isinstance(w, QComboBox):
            row += [w.currentIndex(), w.count()]
        elif isinstance(w, QAbstractButton):
            row += [w.text(), w.isChecked()]
        elif isinstance(w, QListWidget):
            row += [[w.item(i).text() for i in range(w.count())]]
        elif isinstance(w, QAbstractItemView):
            model = w.model()
            row += [model.rowCount() if model is not None else None]
        elif isinstance(w, KeyPicker):
            row += [w.value(), w.focusPolicy()]
        elif isinstance(w, QScrollBar):
            row += [w.value()]
        out.append(row)
    return out


async def type_a_whole_call(sheet: CallSheet) -> None:
    """Every field, a suggestion list, a refused transmission with its
    messages, a confirmation, a note, then transmitted and an update sent."""
    type_text(sheet.callback, "06 12 34 56 78")
    sheet.location.setFocus()
    type_text(sheet.location, "rue des Lil")
    await until(lambda: sheet._loc_model.rowCount() > 0 or not sheet._geo_timer.isActive())
    sheet.location.setText("")
    type_text(sheet.location, "45.7640, 4.8357")
    sheet.floor.setFocus()
    type_text(sheet.floor, "3e")
    type_text(sheet.access_code, "B1234")
    type_text(sheet.interphone, "Martin")
    sheet.motive.setFocus()
    type_text(sheet.motive, "doul")
    sheet.motive.setText("")
    type_text(sheet.motive, "M03.06")
    sheet.age.setFocus()
    type_text(sheet.age, "67")
    type_text(sheet.sex, "F")
    type_text(sheet.priority, "1")
    type_text(sheet.branch, "D")
    sheet.transmit()  # refused: no dental reason (messages, footer)
    assert sheet.dossier.status is Status.DRAFT and sheet.summary.text()
    sheet.dental_reason.setCurrentIndex(1)
    sheet.last_name.setFocus()
    type_text(sheet.last_name, "Martin")
    type_text(sheet.first_name, "Jeanne")
    sheet.birth_date.setFocus()
    type_text(sheet.birth_date, "12/03/1958")
    sheet.caller_type.setCurrentIndex(1)
    type_text(sheet.caller_name, "Voisin")
    sheet.language.setCurrentIndex(1)
    sheet.note.setFocus()
    type_text(sheet.note, "chute dans l'escalier")
    press(sheet.note, Qt.Key.Key_Return)
    sheet.transmit()
    if sheet.dossier.status is Status.DRAFT and sheet.confirm_bar.isVisible():
        sheet.confirm_button.click()
    assert sheet.dossier.status is Status.TRANSMITTED
    type_text(sheet.note, "rappelle : va mieux")  # an update for the regulator
    press(sheet.note, Qt.Key.Key_Return)
    assert "envoyée" in sheet.summary.text()


def ctrl_n(qtbot: QtBot, window: Any) -> CallSheet:
    qtbot.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    sheet = window.current_sheet()
    assert isinstance(sheet, CallSheet)
    return sheet


async def test_a_recycled_sheet_is_a_new_sheet_and_keeps_nothing_of_the_last_call(
    qtbot: QtBot, env: Env
) -> None:
    window = await open_window(qtbot, env, role="ARM")
    first = window.current_sheet()
    assert first is not None
    await type_a_whole_call(first)
    window.close_sheet(window.tabs.indexOf(first))

    sheet = ctrl_n(qtbot, window)
    assert sheet is first  # the closed call's sheet, not a new one
    assert sheet.dossier is not None and sheet.dossier.is_blank
    fresh = CallSheet(env.desk, env.resolver, sheet.dossier)
    qtbot.addWidget(fresh)
    if window._last_save_ok is not None:  # what the window tells every sheet it opens
        fresh.set_save_state(
            "✓ enregistré" if window._last_save_ok else "⚠ en mémoire seulement",
            window._last_save_ok,
        )
    kept, built = snapshot(sheet), snapshot(fresh)
    assert len(kept) == len(built)
    assert [(a, b) for a, b in zip(kept, built, strict=True) if a != b] == []
    sheet.callback.undo()  # Ctrl+Z brings nothing of the previous caller back
    assert sheet.callback.text() == ""
    assert sheet.callback.hasFocus()

    # and it works as a new sheet: typed, transmitted, listed once
    type_text(sheet.callback, "06 98 76 54 32")
    assert sheet.dossier.caller.callback == "+33698765432"
    assert window.tabs.tabText(window.tabs.indexOf(sheet)) != "Nouvel appel"


async def test_ctrl_n_after_a_closed_call_builds_no_widget_and_nothing_grows(
    qtbot: QtBot, env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = await open_window(qtbot, env, role="ARM")
    built: list[CallSheet] = []
    real_init = CallSheet.__init__

    def counting_init(self: CallSheet, *args: Any, **kw: Any) -> None:
        built.append(self)
        real_init(self, *args, **kw)

    monkeypatch.setattr(CallSheet, "__init__", counting_init)
    counts: list[tuple[int, int]] = []
    transmitted: list[str] = []
    for n in range(4):
        sheet = window.current_sheet()
        assert sheet is not None
        await type_a_whole_call(sheet)
        transmitted.append(sheet.dossier.case_id)
        window.close_sheet(window.tabs.indexOf(sheet))
        before = set(QApplication.allWidgets())
        widgets = len(before)
        ctrl_n(qtbot, window)
        new = [
            f"{type(w).__name__} {w.objectName()}"
            for w in QApplication.allWidgets()
            if w not in before and w.parent() is not window.tabs.tabBar()  # its close button
        ]
        assert new == [], f"Ctrl+N of call {n + 2} built widgets"
        counts.append((widgets, len(window.findChildren(QObject))))
    assert built == []  # no sheet built at any key press
    assert len(set(counts)) == 1, counts  # nothing grows from call to call
    # each sheet's signals reach the window once: one line per call in the day list
    assert window.day_model.rowCount() == len(transmitted) + 1
    listed = {window.day_model.dossier_at(r).case_id for r in range(window.day_model.rowCount())}  # type: ignore[union-attr]
    assert set(transmitted) <= listed


async def test_a_second_sheet_open_is_built_and_closed_sheets_beyond_one_are_deleted(
    qtbot: QtBot, env: Env
) -> None:
    window = await open_window(qtbot, env, role="ARM")
    first = window.current_sheet()
    assert first is not None
    type_text(first.callback, "0612")
    second = ctrl_n(qtbot, window)  # the first is not blank: a second sheet
    assert second is not first
    type_text(second.callback, "0613")
    window.close_sheet(window.tabs.indexOf(first))
    window.close_sheet(window.tabs.indexOf(second))
    await until(lambda: not any(s is second for s in window.findChildren(CallSheet)))
    assert window.findChildren(CallSheet) == [first]  # one kept, emptied
    reopened = ctrl_n(qtbot, window)
    assert reopened is first and reopened.callback.text() == ""
    # the closed drafts are still in the list of the day, and reopen as typed
    rows = [window.day_model.dossier_at(r) for r in range(window.day_model.rowCount())]
    assert {d.inputs.get("callback") for d in rows if d is not None} >= {"0612", "0613"}
