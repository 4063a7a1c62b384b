"""The screen lock (issue 15), driven by pytest-qt with a fake clock: it
locks after 5 min without input, hides the window under an opaque cover,
swallows what is typed meant for the dossier, and unlocks only after the
operator is identified again (a full login after 20 min)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QColor
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QDialog, QLineEdit, QMainWindow, QVBoxLayout, QWidget
from pytestqt.qtbot import QtBot

from sas_desk.ui.keys import type_text
from sas_desk.ui.session_lock import COVER_COLOUR, LOCKED_FR, REFUSED_FR, SessionLock
from tests.ui.conftest import until

pytestmark = [pytest.mark.gui, pytest.mark.asyncio(loop_scope="session")]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Auth:
    """The re-authentication the app would run (PSC, IdP or password)."""

    def __init__(self, answer: bool = True) -> None:
        self.answer = answer
        self.asked: list[str] = []

    async def __call__(self, reason: str) -> bool:
        self.asked.append(reason)
        await asyncio.sleep(0)
        return self.answer


def press_in_window(window: QWidget, field: QWidget, key: Qt.Key) -> None:
    """A key as the operator types it: to the native window, which hands it
    to the focused widget."""
    window.activateWindow()
    field.setFocus()
    handle = window.windowHandle()
    assert handle is not None
    QTest.keyClick(handle, key)


def setup(qtbot: QtBot, auth: Auth) -> tuple[QMainWindow, QLineEdit, SessionLock, FakeClock]:
    window = QMainWindow()
    field = QLineEdit()
    field.setObjectName("patientNote")
    window.setCentralWidget(field)
    qtbot.addWidget(window)
    window.resize(800, 600)
    window.show()
    clock = FakeClock()
    lock = SessionLock(
        window, operator="Dr Martin", reauthenticate=auth, clock=clock, tick_ms=60_000
    )
    return window, field, lock, clock


async def test_locks_after_five_minutes_without_input(qtbot: QtBot) -> None:
    window, field, lock, clock = setup(qtbot, Auth())
    clock.now += 299
    lock.check()
    assert not lock.is_locked
    press_in_window(window, field, Qt.Key.Key_X)  # activity restarts the count
    assert field.text() == "x"
    clock.now += 299
    lock.check()
    assert not lock.is_locked
    field.setText("Douleur thoracique depuis 30 min")
    clock.now += 1
    lock.check()
    assert lock.is_locked
    assert lock.cover.geometry() == window.rect()  # the whole window is covered
    shot = window.grab().toImage()  # and nothing of it shows through
    assert shot.pixelColor(5, 5) == QColor(COVER_COLOUR)
    assert shot.pixelColor(window.width() - 5, window.height() - 5) == QColor(COVER_COLOUR)
    assert lock.cover.title.text() == LOCKED_FR
    assert "Dr Martin" in lock.cover.who.text()
    window.resize(1000, 700)
    await until(lambda: lock.cover.geometry() == window.rect())


async def test_typing_under_the_lock_reaches_nothing(qtbot: QtBot) -> None:
    _, field, lock, clock = setup(qtbot, Auth())
    type_text(field, "Douleur")
    clock.now += 300
    lock.check()
    type_text(field, " thoracique")
    assert field.text() == "Douleur"
    assert lock.is_locked  # typing while locked is no activity either


async def test_unlock_after_a_short_absence_asks_for_the_lock_identification(
    qtbot: QtBot,
) -> None:
    auth = Auth()
    _, field, lock, clock = setup(qtbot, auth)
    unlocked: list[Any] = []
    lock.unlocked.connect(lambda: unlocked.append(True))
    clock.now += 360
    lock.check()
    lock.cover.button.click()
    await until(lambda: bool(unlocked))
    assert auth.asked == ["lock"]
    assert not lock.is_locked
    type_text(field, "ok")
    assert field.text() == "ok"


async def test_after_twenty_minutes_a_full_login_is_needed(qtbot: QtBot) -> None:
    auth = Auth()
    _, _, lock, clock = setup(qtbot, auth)
    clock.now += 1200
    lock.check()
    lock.cover.button.click()
    await until(lambda: not lock.is_locked)
    assert auth.asked == ["reauth"]


async def test_a_refused_identification_keeps_the_lock(qtbot: QtBot) -> None:
    auth = Auth(answer=False)
    _, field, lock, clock = setup(qtbot, auth)
    clock.now += 400
    lock.check()
    lock.cover.button.click()
    await until(lambda: lock.cover.error.text() == REFUSED_FR)
    assert lock.is_locked and lock.cover.button.isEnabled()
    type_text(field, "x")
    assert field.text() == ""


class CountingLock(SessionLock):
    """The lock, counting the events its Python filter is handed."""

    seen: list[QEvent.Type]

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        self.seen.append(event.type())
        return super().eventFilter(obj, event)


async def test_a_key_in_the_window_is_activity_and_paints_never_reach_python(
    qtbot: QtBot,
) -> None:
    """The filter sits on the native window (where input arrives first), not
    on the application: the window's paints and timers do not go through it."""
    window = QMainWindow()
    field = QLineEdit()
    window.setCentralWidget(field)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    clock = FakeClock()
    CountingLock.seen = []
    lock = CountingLock(window, operator="Dr Martin", reauthenticate=Auth(), clock=clock)
    clock.now += 200
    press_in_window(window, field, Qt.Key.Key_A)
    assert field.text() == "a"
    assert lock.idle_s() == 0  # the key restarted the count
    assert QEvent.Type.KeyPress in lock.seen
    lock.seen.clear()
    timers: list[bool] = []
    QTimer.singleShot(0, field, lambda: timers.append(True))
    for _ in range(5):
        field.setText(field.text() + "b")
        field.repaint()
        window.repaint()
    await until(lambda: bool(timers))
    assert QEvent.Type.Paint not in lock.seen
    assert QEvent.Type.Timer not in lock.seen
    assert len(lock.seen) < 5  # the native window's own few events at most


async def test_typing_in_an_open_dialog_is_activity(qtbot: QtBot) -> None:
    window, _field, lock, clock = setup(qtbot, Auth())
    dialog = QDialog(window)
    entry = QLineEdit(dialog)
    QVBoxLayout(dialog).addWidget(entry)
    dialog.show()
    qtbot.waitExposed(dialog)
    dialog.activateWindow()
    entry.setFocus()
    handle = dialog.windowHandle()
    assert handle is not None
    await until(lambda: QApplication.focusWindow() is handle)
    clock.now += 299
    QTest.keyClick(handle, Qt.Key.Key_M)
    assert entry.text() == "m"
    assert lock.idle_s() == 0
    clock.now += 299
    lock.check()
    assert not lock.is_locked  # the operator was typing in the dialog
