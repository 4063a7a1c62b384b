"""Unexpected errors: the log (with its traceback), a crash report file, and
one dialog that tells the operator, in French, that something went wrong and
that nothing typed is lost.

A :class:`~sas_desk.models.errors.KnownError` never comes here: the
operation runner (:mod:`sas_desk.ui.operation`) shows its French text.
Anything else is a bug.  :func:`report` may be called from any thread: the
dialog is shown on the GUI thread (a queued signal).  The traceback goes to
the log and the report file only, never on screen.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QVBoxLayout, QWidget

from sas_desk.ui.widgets import named

log = logging.getLogger("sas_desk.crash")

TITLE = "SAS Desk — erreur inattendue"
SAVED = (
    "Rien de ce que vous avez saisi n'est perdu : les fiches sont enregistrées dans le "
    "journal au fil de la frappe."
)
UNSAVED = (
    "Attention : le journal n'est pas enregistré sur disque en ce moment (voir le bandeau) ; "
    "notez ce qui est en cours sur la fiche papier."
)
NEXT = (
    "Vous pouvez continuer. Si l'écran ne répond plus comme prévu, fermez et relancez "
    "SAS Desk : les fiches en cours seront rouvertes. Le détail technique est dans le "
    "journal d'exécution (prévenez le support)."
)


class CrashDialog(QDialog):
    """Non-modal (the operator may be on a call): one instance, which counts
    the errors seen since it was last closed."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("crash_dialog")
        self.setWindowTitle(TITLE)
        self.setWindowFlag(Qt.WindowType.WindowStaysOnTopHint, True)
        self.count = 0
        layout = QVBoxLayout(self)
        self.headline = named(QLabel(), "crash_headline")
        self.headline.setStyleSheet("font-weight: bold; color: #b00020;")
        self.headline.setWordWrap(True)
        self.saved = named(QLabel(), "crash_saved")
        self.saved.setWordWrap(True)
        self.advice = named(QLabel(NEXT), "crash_advice")
        self.advice.setWordWrap(True)
        for w in (self.headline, self.saved, self.advice):
            layout.addWidget(w)
        buttons = QDialogButtonBox()
        ok = buttons.addButton("Continuer", QDialogButtonBox.ButtonRole.AcceptRole)
        ok.setDefault(True)
        buttons.accepted.connect(self.accept)
        layout.addWidget(buttons)
        self.setMinimumWidth(460)
        self.finished.connect(self._reset)

    def _reset(self, _result: int = 0) -> None:
        self.count = 0

    def tell(self, where: str, journal_ok: bool) -> None:
        self.count += 1
        what = f" ({where})" if where else ""
        times = f" — {self.count} fois" if self.count > 1 else ""
        self.headline.setText(f"Une erreur inattendue s'est produite{what}{times}.")
        self.saved.setText(SAVED if journal_ok else UNSAVED)
        self.show()
        self.raise_()
        self.activateWindow()

    def text(self) -> str:
        return "\n".join(w.text() for w in (self.headline, self.saved, self.advice))


class _Sink(QObject):
    """Lives on the GUI thread: ``crashed`` emitted from any thread is
    delivered there (queued)."""

    crashed = Signal(str)

    def __init__(self, journal_ok: Callable[[], bool]) -> None:
        super().__init__()
        self.journal_ok = journal_ok
        self.dialog: CrashDialog | None = None
        self.crashed.connect(self._show, Qt.ConnectionType.QueuedConnection)

    def _show(self, where: str) -> None:
        if self.dialog is None:
            self.dialog = CrashDialog()
        try:
            ok = self.journal_ok()
        except Exception:  # the dialog must come up whatever the journal says
            ok = False
        self.dialog.tell(where, ok)


_sink: _Sink | None = None
_data_dir: Path | None = None
_lock = threading.Lock()


def report(exc: BaseException, where: str = "") -> None:
    """A bug: log it with its traceback, write a crash report, tell the
    operator (when the window is up).  Any thread."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if exc.__traceback__ is None:  # never raised (handed to the loop): where it was reported
        text = "Traceback (reported from):\n" + "".join(traceback.format_stack()[:-1]) + text
    log.critical("unexpected error%s\n%s", f" in {where}" if where else "", text)
    with _lock:
        data_dir, sink = _data_dir, _sink
    if data_dir is not None:
        try:
            logs = data_dir / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            stamp = datetime.now().astimezone().strftime("%Y%m%d-%H%M%S-%f")
            (logs / f"crash-{stamp}.txt").write_text(text, encoding="utf-8")
        except OSError:
            pass  # the log line above is what counts
    if sink is not None:
        sink.crashed.emit(where)


def dialog() -> CrashDialog | None:
    """The crash dialog, once one was shown (tests, screenshots)."""
    return _sink.dialog if _sink is not None else None


def show_dialog(journal_ok: Callable[[], bool] = lambda: True) -> None:
    """From now on a crash is also told in a dialog (GUI thread, QApplication up)."""
    global _sink
    with _lock:
        if _sink is None:
            _sink = _Sink(journal_ok)
        else:
            _sink.journal_ok = journal_ok


def hide_dialog() -> None:
    """Back to the log only (the window is gone)."""
    global _sink
    with _lock:
        sink, _sink = _sink, None
    if sink is not None:
        if sink.dialog is not None:
            sink.dialog.close()
            sink.dialog.deleteLater()
        sink.deleteLater()


def install(data_dir: Path | None) -> None:
    """Route every unhandled exception here: the main thread's
    (``sys.excepthook``, which also gets those raised in Qt slots), other
    threads' (``threading.excepthook``).  The asyncio loop's handler is
    :func:`loop_handler` (set on the loop by the app)."""
    global _data_dir
    with _lock:
        _data_dir = data_dir

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, exc, tb)
            return
        report(exc.with_traceback(tb))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        name = args.thread.name if args.thread is not None else "?"
        report(args.exc_value, f"fil {name}")

    sys.excepthook = hook
    threading.excepthook = thread_hook


def loop_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The asyncio loop's exception handler: an exception nobody awaited is a
    bug; a message without exception (a task destroyed while pending…) is
    logged as asyncio would."""
    exc = context.get("exception")
    if isinstance(exc, BaseException) and not isinstance(exc, asyncio.CancelledError):
        task = context.get("task") or context.get("future")
        name = task.get_name() if isinstance(task, asyncio.Task) else ""
        report(exc, name)
        return
    loop.default_exception_handler(context)
