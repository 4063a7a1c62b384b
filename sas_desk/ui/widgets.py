"""Small keyboard-first widgets shared by the panels."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor, QFocusEvent, QKeyEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QButtonGroup, QHBoxLayout, QLabel, QPushButton, QWidget

PRIORITY_COLOURS = {
    "P0": "#b00020",
    "P1": "#e65100",
    "P2": "#1565c0",
    "P3": "#2e7d32",
    "NR": "#616161",
}


FOCUS_COLOUR = "#1565c0"
FOCUS_FILL = "#e3f0ff"


class KeyPicker(QWidget):
    """A row of choices picked with single keys while the row has focus
    (e.g. priority: 0 1 2 3 N).  Mouse works too.  Emits ``changed(value)``.

    A key picks and nothing more: focus moves on with Tab, as in every other
    field (moving on by itself made the operator's next Tab skip a row).
    The row with focus is framed and tinted, so one sees where a key lands."""

    changed = Signal(str)

    def __init__(
        self, choices: list[tuple[str, str, str, str]], parent: QWidget | None = None
    ) -> None:
        """``choices``: (value, button text, key, colour or "")."""
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setObjectName("KeyPicker")
        self._value = ""
        self._read_only = False
        self._keys: dict[str, str] = {}
        self._buttons: dict[str, QPushButton] = {}
        self._group = QButtonGroup(self)
        self._group.setExclusive(True)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        for value, text, key, colour in choices:
            button = QPushButton(f"{text}  [{key}]")
            button.setCheckable(True)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.setProperty("value", value)
            if colour:  # not bold: a bold label no longer fits the button sized for it
                button.setStyleSheet(
                    f"QPushButton:checked {{ background: {colour}; color: white; }}"
                )
            button.clicked.connect(lambda _=False, v=value: self._pick(v))
            self._group.addButton(button)
            self._buttons[value] = button
            self._keys[key.upper()] = value
            layout.addWidget(button)
        layout.addStretch(1)

    def value(self) -> str:
        return self._value

    def set_value(self, value: str, *, emit: bool = False) -> None:
        self._value = value
        if self._read_only:
            for v, b in self._buttons.items():
                b.setHidden(v != value)
        button = self._buttons.get(value)
        if button is not None:
            button.setChecked(True)
        else:
            self._group.setExclusive(False)
            for b in self._buttons.values():
                b.setChecked(False)
            self._group.setExclusive(True)
        if emit:
            self.changed.emit(value)

    def _pick(self, value: str) -> None:
        self.set_value(value, emit=True)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        value = self._keys.get(event.text().upper()) if event.text() else None
        if value is not None and not event.modifiers() & (
            Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier
        ):
            self._pick(value)
            return
        super().keyPressEvent(event)

    def focusInEvent(self, event: QFocusEvent) -> None:
        super().focusInEvent(event)
        self.update()

    def focusOutEvent(self, event: QFocusEvent) -> None:
        super().focusOutEvent(event)
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        if not self.hasFocus():
            return
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(QColor(FOCUS_COLOUR), 2))
        painter.setBrush(QColor(FOCUS_FILL))
        painter.drawRoundedRect(self.rect().adjusted(1, 1, -1, -1), 4, 4)
        painter.end()

    def setReadOnly(self, read_only: bool) -> None:
        """Read-only, the row shows what was chosen only (narrow, nothing to
        misread among greyed alternatives)."""
        self._read_only = read_only
        for value, b in self._buttons.items():
            b.setEnabled(not read_only)
            b.setHidden(read_only and value != self._value)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus if read_only else Qt.FocusPolicy.StrongFocus)


class Message(QLabel):
    """Inline validation message under a field (hidden when empty)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("FieldMessage")
        self.setWordWrap(True)
        self._colour = "#b00020"
        self.setStyleSheet(f"color: {self._colour}; font-size: 11px;")
        self.hide()

    def show_message(self, text: str, *, info: bool = False, warn: bool = False) -> None:
        """Called on every keystroke of a flagged field: touch the style sheet
        (a costly re-polish) only when the colour really changes."""
        colour = "#2e5e2e" if info else "#b35c00" if warn else "#b00020"
        if colour != self._colour:
            self._colour = colour
            self.setStyleSheet(f"color: {colour}; font-size: 11px;")
        if text != self.text():
            self.setText(text)
        if self.isHidden() == bool(text):
            self.setVisible(bool(text))


class Banner(QWidget):
    """A non-modal notice strip with optional action buttons."""

    def __init__(self, text: str, level: str = "info", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        colours = {"info": "#e3f0ff", "warning": "#fff4d6", "error": "#fde2e1"}
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setStyleSheet(
            f"Banner {{ background: {colours.get(level, '#eee')}; border-radius: 4px; }}"
        )
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        self.label = QLabel(text)
        self.label.setWordWrap(True)
        layout.addWidget(self.label, 1)
        self._layout = layout
        close = QPushButton("×")
        close.setFlat(True)
        close.setFixedWidth(24)
        close.setToolTip("Masquer")
        close.clicked.connect(self.deleteLater)
        self._close = close
        layout.addWidget(close)

    def add_action(self, text: str, slot: Callable[[], object]) -> QPushButton:
        button = QPushButton(text)
        button.clicked.connect(slot)
        self._layout.insertWidget(self._layout.count() - 1, button)
        return button


W = TypeVar("W", bound=QObject)


def named(widget: W, name: str) -> W:
    """Set the object name (tests and style sheets find widgets by it)."""
    widget.setObjectName(name)
    return widget


def input_window(widget: QObject) -> QObject:
    """Where ``widget``'s keyboard and mouse input arrives first: its native
    window (created if need be: one is needed to show it anyway).  A filter
    there sees the input of every widget of the window, not their paints."""
    if isinstance(widget, QWidget):
        handle = widget.windowHandle()
        if handle is None:
            widget.winId()
            handle = widget.windowHandle()
        if handle is not None:
            return handle
    return widget
