"""Full garbage collections only when the operator is idle."""

from __future__ import annotations

import gc

import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QKeyEvent, QMouseEvent
from PySide6.QtWidgets import QApplication, QLineEdit
from pytestqt.qtbot import QtBot

from sas_desk.ui.gc_policy import UNREACHABLE_THRESHOLD, IdleCollector

pytestmark = pytest.mark.gui


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def policy(qtbot: QtBot) -> tuple[IdleCollector, Clock, QLineEdit]:
    clock = Clock()
    collector = IdleCollector(idle_s=20, every_s=120, max_promotions=50, clock=clock)
    app = QApplication.instance()
    assert app is not None
    saved = gc.get_threshold()
    collector.start(app)
    field = QLineEdit()
    qtbot.addWidget(field)
    yield collector, clock, field
    collector.stop(app)
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
    QApplication.sendEvent(
        field, QKeyEvent(QEvent.Type.KeyPress, Qt.Key.Key_A, Qt.KeyboardModifier.NoModifier, "a")
    )
    clock.t += 5  # typing 5 s ago: not idle
    collector.tick()
    assert collector.collections == 1
    QApplication.sendEvent(
        field,
        QMouseEvent(
            QEvent.Type.MouseButtonPress,
            QPointF(1, 1),
            QPointF(1, 1),
            Qt.MouseButton.LeftButton,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
        ),
    )
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
