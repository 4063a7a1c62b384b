"""Full garbage collections only when the operator is idle."""

from __future__ import annotations

import gc

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QLineEdit, QVBoxLayout, QWidget
from pytestqt.qtbot import QtBot

from sas_desk.ui.gc_policy import UNREACHABLE_THRESHOLD, IdleCollector
from sas_desk.ui.keys import keyboard_type, type_text

pytestmark = pytest.mark.gui


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Busy:
    def __init__(self) -> None:
        self.on = False

    def __call__(self) -> bool:
        return self.on


@pytest.fixture
def busy() -> Busy:
    return Busy()


@pytest.fixture
def policy(qtbot: QtBot, busy: Busy) -> tuple[IdleCollector, Clock, QLineEdit]:
    clock = Clock()
    collector = IdleCollector(idle_s=20, every_s=120, max_promotions=50, clock=clock, busy=busy)
    saved = gc.get_threshold()
    window = QWidget()
    field = QLineEdit(window)
    QVBoxLayout(window).addWidget(field)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    field.setFocus()
    collector.start(window)
    yield collector, clock, field
    collector.stop()
    assert gc.get_threshold() == saved  # restored
    gc.unfreeze()  # leave the test process as it was (freezing is process-wide)


def test_start_freezes_and_keeps_automatic_collections_young(
    policy: tuple[IdleCollector, Clock, QLineEdit],
) -> None:
    assert gc.get_threshold()[2] == UNREACHABLE_THRESHOLD
    assert gc.get_freeze_count() > 0


def test_a_full_collection_waits_for_the_operator_to_be_idle(
    policy: tuple[IdleCollector, Clock, QLineEdit],
) -> None:
    collector, clock, field = policy
    clock.t += 60  # idle, but a full collection ran less than 120 s ago (start)
    collector.tick()
    assert collector.collections == 0
    clock.t += 100  # 160 s since the last one, idle 160 s: collect
    collector.tick()
    assert collector.collections == 1
    clock.t += 200
    handle = field.window().windowHandle()
    assert handle is not None
    # as the platform delivers them: to the native window, then the focused widget
    QTest.keyClick(handle, Qt.Key.Key_A)
    assert field.text() == "a"
    clock.t += 5  # typing 5 s ago: not idle
    collector.tick()
    assert collector.collections == 1
    clock.t += 30
    QTest.mousePress(handle, Qt.MouseButton.LeftButton, pos=field.geometry().center())
    QTest.mouseRelease(handle, Qt.MouseButton.LeftButton, pos=field.geometry().center())
    clock.t += 19
    collector.tick()
    assert collector.collections == 1
    clock.t += 2  # 21 s without input
    collector.tick()
    assert collector.collections == 2


def test_a_room_that_never_pauses_still_gets_its_memory_back(
    policy: tuple[IdleCollector, Clock, QLineEdit],
) -> None:
    collector, clock, _field = policy
    clock.t += 500
    collector.last_input = clock.t  # always busy
    assert not collector.due()
    junk = []
    while gc.get_count()[2] <= collector.max_promotions:  # young collections promote
        junk.append([[] for _ in range(700)])
        if len(junk) > 100_000:  # pragma: no cover - safety
            break
    assert collector.due()
    collector.tick()
    assert collector.collections == 1
    assert gc.get_count()[2] == 0  # the full collection reset the count


def test_no_full_collection_while_a_search_fills_the_screen(
    policy: tuple[IdleCollector, Clock, QLineEdit], busy: Busy
) -> None:
    collector, clock, _field = policy
    clock.t += 500  # idle long enough: due
    assert collector.due()
    busy.on = True
    collector.tick()
    assert collector.collections == 0
    assert collector.deferred == 1
    busy.on = False  # the search ended: the next check collects
    collector.tick()
    assert collector.collections == 1


def test_input_is_watched_on_the_main_window_only(
    policy: tuple[IdleCollector, Clock, QLineEdit], qtbot: QtBot
) -> None:
    """The filter is not on the application (every paint and timer of every
    widget would go through Python): events for other windows never reach it."""
    collector, clock, field = policy
    app = QApplication.instance()
    assert app is not None
    assert collector._watched is field.window().windowHandle()
    other = QLineEdit()
    qtbot.addWidget(other)
    other.show()
    qtbot.waitExposed(other)
    before = collector.last_input
    clock.t += 50
    handle = other.windowHandle()
    assert handle is not None
    QTest.keyClick(handle, Qt.Key.Key_B)
    assert other.text() == "b"
    assert collector.last_input == before  # not the main window: not seen


def test_keyboard_type_goes_through_the_window_as_a_keyboard_does(
    policy: tuple[IdleCollector, Clock, QLineEdit],
) -> None:
    """What bench/shift.py types with: seen by what watches the operator's
    input (here the idle collector; the session lock watches the same
    window), unlike keys sent straight to a widget."""
    collector, clock, field = policy
    started = collector.last_input
    clock.t += 50
    type_text(field, "x")
    assert field.text() == "x" and collector.last_input == started  # not seen
    keyboard_type(field, "é1, ")
    assert field.text() == "xé1, "
    assert collector.last_input == clock.t
