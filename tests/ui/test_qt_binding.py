"""Guard against a broken Qt binding: PySide6 6.12.0 on Python 3.11 drops a
reference to ``None`` on every call of a C++ method returning void, which
kills the process ("none_dealloc") after a few thousand calls — minutes of
typing in a call sheet.  pyproject pins PySide6 below 6.12; this test fails
if an install ever brings such a build back."""

from __future__ import annotations

import sys

from PySide6.QtWidgets import QPushButton
from pytestqt.qtbot import QtBot


def test_void_calls_do_not_leak_references_to_none(qtbot: QtBot) -> None:
    button = QPushButton("x")
    qtbot.addWidget(button)
    before = sys.getrefcount(None)
    for _ in range(500):
        button.setEnabled(True)
        button.setText("y")
    after = sys.getrefcount(None)
    assert abs(after - before) < 50, f"None refcount went from {before} to {after}"
