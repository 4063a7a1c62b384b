"""Synthetic typing, for scripts, benchmarks and tests that drive the real UI.

``QTest.keyClicks`` only handles ASCII; French text needs key events that
carry their text, which is what a keyboard sends.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QApplication, QWidget


def type_text(widget: QWidget, text: str) -> None:
    for ch in text:
        key = Qt.Key(ord(ch.upper())) if ch.isascii() and ch.isalnum() else Qt.Key.Key_unknown
        if ch == " ":
            key = Qt.Key.Key_Space
        for kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease):
            QApplication.sendEvent(widget, QKeyEvent(kind, key, Qt.KeyboardModifier.NoModifier, ch))


def press(
    widget: QWidget, key: Qt.Key, modifiers: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier
) -> None:
    for kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease):
        QApplication.sendEvent(widget, QKeyEvent(kind, key, modifiers))


def keyboard_type(widget: QWidget, text: str) -> None:
    """Type ``text`` as a keyboard does: each key goes to ``widget``'s native
    window, which hands it to the widget with the focus (or to an open
    suggestion popup), and what watches the operator's input there (the
    session lock, the idle collector) sees it.  ``widget`` gets the focus
    first.  (:func:`type_text` goes straight to the widget: for tests of one
    widget.)"""
    widget.setFocus()
    target = widget.window().windowHandle() or widget
    for ch in text:
        key = Qt.Key(ord(ch.upper())) if ch.isascii() and ch.isalnum() else Qt.Key.Key_unknown
        if ch == " ":
            key = Qt.Key.Key_Space
        for kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease):
            QApplication.sendEvent(target, QKeyEvent(kind, key, Qt.KeyboardModifier.NoModifier, ch))
