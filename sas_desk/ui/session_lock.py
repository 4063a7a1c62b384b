"""Screen lock after inactivity (issue 15; PGSSI-S: a shared room's
workstation must not show a dossier to whoever walks by).

:class:`SessionLock` watches the keyboard and mouse on the main window's
native window and on the top-level window that has the focus (a dialog:
typing in it is activity too) — not on the whole application, whose every
paint and timer would go through Python.  Only while locked does it filter
the application, to swallow what is meant for the window underneath.  After ``lock_after_s`` without input (5 min by default) it
covers the window with an opaque panel that hides every patient field and
swallows input meant for the window underneath; the panel's
« Déverrouiller » asks the injected ``reauthenticate`` coroutine to
identify the operator again — ``"lock"`` after a short absence,
``"reauth"`` (a full login: PSC, the establishment IdP or the password)
after ``reauth_after_s`` (20 min).  Nothing else stops: the loop, the
queues, the alerts keep running under the panel.

Time comes from an injected monotonic ``clock`` and :meth:`check` runs on a
timer (tests call it after moving a fake clock).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import Any

from PySide6.QtCore import QEvent, QObject, QPoint, QRect, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QResizeEvent, QWindow
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from sas_desk.ui.operation import run_operation
from sas_desk.ui.widgets import input_window, named

__all__ = ["SessionLock"]

LOCKED_FR = "Poste verrouillé"
REFUSED_FR = "Identification refusée : le poste reste verrouillé."

COVER_COLOUR = "#1f2933"

_INPUT = frozenset(
    {
        QEvent.Type.KeyPress,
        QEvent.Type.KeyRelease,
        QEvent.Type.MouseButtonPress,
        QEvent.Type.MouseButtonRelease,
        QEvent.Type.MouseButtonDblClick,
        QEvent.Type.Wheel,
        QEvent.Type.ShortcutOverride,
    }
)


class _Cover(QWidget):
    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName("lockCover")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)  # paints its background
        self.setStyleSheet(
            f"#lockCover {{ background: {COVER_COLOUR}; }} #lockCover QLabel {{ color: white; }}"
        )
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        self.title = named(QLabel(LOCKED_FR), "lockTitle")
        self.title.setStyleSheet("font-size: 28px; font-weight: bold;")
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.who = named(QLabel(""), "lockWho")
        self.who.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.why = named(QLabel(""), "lockWhy")
        self.why.setAlignment(Qt.AlignmentFlag.AlignCenter)
        # one line (the messages are short): a wrapped label centred in this
        # layout was given one line's height and clipped
        self.why.setStyleSheet("font-size: 15px; color: #ffe08a;")
        self.why.hide()
        # late urgent calls of the followed queues, said on the cover (counts
        # and queues only: no patient field) while the alarm keeps ringing
        self.late = named(QLabel(""), "lockLate")
        self.late.setStyleSheet(
            "font-size: 17px; font-weight: bold; color: white; background: #b00020;"
            " padding: 6px 12px; border-radius: 4px;"
        )
        self.late.hide()
        self.button = named(QPushButton("Déverrouiller"), "unlockButton")
        self.button.setDefault(True)
        # more actions (the change of operator) go in this row
        self.buttons = QHBoxLayout()
        self.buttons.addStretch(1)
        self.buttons.addWidget(self.button)
        self.buttons.addStretch(1)
        self.error = named(QLabel(""), "lockError")
        self.error.setStyleSheet("color: #ffb4a9; font-weight: bold;")
        self.error.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.error.setWordWrap(True)
        for widget in (self.title, self.who, self.why, self.late):
            layout.addWidget(widget, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addLayout(self.buttons)
        layout.addWidget(self.error, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(1)
        self.hide()


class SessionLock(QObject):
    locked = Signal()
    unlocked = Signal()

    def __init__(
        self,
        window: QWidget,
        *,
        operator: str,
        reauthenticate: Callable[[str], Coroutine[Any, Any, bool]],
        lock_after_s: float = 300.0,
        reauth_after_s: float = 1200.0,
        clock: Callable[[], float] = time.monotonic,
        tick_ms: int = 1000,
    ) -> None:
        super().__init__(window)
        if not 0 < lock_after_s <= reauth_after_s:
            raise ValueError("0 < lock_after_s <= reauth_after_s")
        self._window = window
        self.operator = operator
        self._reauthenticate = reauthenticate
        self.lock_after_s = lock_after_s
        self.reauth_after_s = reauth_after_s
        self._clock = clock
        self.last_activity = clock()
        self._unlocking = False
        self.cover = _Cover(window)
        self.cover.button.clicked.connect(self.unlock)
        # the operator's input arrives first on the native windows: the main
        # window's (its resizes too) and the focused one's (an open dialog)
        self._main = input_window(window)
        self._main.installEventFilter(self)
        self._focused: QObject | None = None
        self._app_filtered = False
        app = QApplication.instance()
        if isinstance(app, QGuiApplication):
            app.focusWindowChanged.connect(self._watch_focus)
            self._watch_focus(app.focusWindow())
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.check)
        self._timer.start(tick_ms)

    @property
    def is_locked(self) -> bool:
        return self.cover.isVisible()

    @property
    def unlocking(self) -> bool:
        return self._unlocking

    def idle_s(self) -> float:
        return self._clock() - self.last_activity

    def check(self) -> None:
        if not self.is_locked and self.idle_s() >= self.lock_after_s:
            self.lock()

    def lock(self, why_fr: str = "") -> None:
        """Cover the window; ``why_fr`` says why when it is not inactivity
        (end of shift, a session the server closed, a change of operator)."""
        self.cover.why.setText(why_fr)
        self.cover.why.setVisible(bool(why_fr))
        if self.is_locked:
            return
        self.cover.who.setText(f"Session de {self.operator} — identifiez-vous pour reprendre.")
        self.cover.error.setText("")
        self.cover.setGeometry(self._window.rect())
        self.cover.show()
        self.cover.raise_()
        self._filter_application(True)
        self.cover.button.setFocus()
        self.locked.emit()

    def unlock(self) -> None:
        if not self.is_locked or self._unlocking:
            return
        reason = "reauth" if self.idle_s() >= self.reauth_after_s else "lock"
        self._unlocking = True
        self.cover.button.setEnabled(False)
        self.cover.error.setText("")
        run_operation(
            self._reauthenticate(reason),
            name="session-unlock",
            show_error=lambda message: self.cover.error.setText(
                f"{message} Le poste reste verrouillé."
            ),  # a known refusal (server unreachable…); the lock stays
            on_success=self._identified,
            on_finally=self._unlock_done,
        )

    def _unlock_done(self) -> None:
        self._unlocking = False
        self.cover.button.setEnabled(True)

    def _identified(self, ok: bool) -> None:
        if ok:
            self.release()
        else:
            self.cover.error.setText(REFUSED_FR)

    def release(self) -> None:
        """Uncover (the operator was identified, however that happened)."""
        self.last_activity = self._clock()
        if not self.is_locked:
            return
        self.cover.hide()
        self._filter_application(False)
        self.unlocked.emit()

    def _watch_focus(self, focused: QWindow | None) -> None:
        """Watch the focused top-level window too (a dialog) while it has the focus."""
        if self._focused is not None:
            with contextlib.suppress(RuntimeError):  # the dialog may be gone already
                self._focused.removeEventFilter(self)
            self._focused = None
        if focused is not None and focused is not self._main:
            focused.installEventFilter(self)
            self._focused = focused

    def _filter_application(self, on: bool) -> None:
        """Locked: every input event of the application passes here, to keep
        what is meant for the window underneath from reaching it."""
        app = QApplication.instance()
        if app is None or on == self._app_filtered:
            return
        if on:
            app.installEventFilter(self)
        else:
            app.removeEventFilter(self)
        self._app_filtered = on

    def _inside_cover(self, obj: QObject) -> bool:
        current: QObject | None = obj
        while current is not None:
            if current is self.cover:
                return True
            current = current.parent()
        return False

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        kind = event.type()
        if obj is self._main and kind == QEvent.Type.Resize:
            if self.is_locked and isinstance(event, QResizeEvent):
                # the widget is resized after this filter: the new size is the event's
                self.cover.setGeometry(QRect(QPoint(0, 0), event.size()))
            return False
        if kind not in _INPUT:
            return False
        if not self.is_locked:
            self.last_activity = self._clock()
            return False
        # locked: input reaches the cover only, never the dossier underneath
        if isinstance(obj, QWidget) and obj.window() is self._window:
            return not self._inside_cover(obj)
        return False
