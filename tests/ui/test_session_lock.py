"""The screen lock (issue 15), driven by pytest-qt with a fake clock: it
locks after 5 min without input, hides the window under an opaque cover,
swallows what is typed meant for the dossier, and unlocks only after the
operator is identified again (a full login after 20 min)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QLineEdit, QMainWindow
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
    type_text(field, "x")  # activity restarts the count
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
