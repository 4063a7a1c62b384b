"""When Python's cyclic garbage collector may pause the desk.

A full collection walks every live object: with a slot search's results in
memory (≈ 10 objects per slot, thousands of slots) it froze the window for
60–75 ms (bench/ui_search.py, measured with ``gc.callbacks``), in the middle
of a search or of a call being typed.  So:

* the objects alive once the window is up (modules, Qt wrappers, code lists)
  are frozen: no collection ever walks them again;
* automatic collections stay young-generation only (the third threshold is
  set out of reach): short-lived cycles are still reclaimed at once, cheaply;
* the full collection runs when the operator has not touched keyboard or
  mouse for :attr:`IdleCollector.idle_s` seconds (and at most every
  :attr:`IdleCollector.every_s`), or regardless after
  :attr:`IdleCollector.max_promotions` young collections have promoted
  objects since the last one (a room that never pauses still gets its
  memory back);
* never while :attr:`IdleCollector.busy` says work is on screen (a slot
  search filling its cards): the collection waits for the next check after;
* the operator's input is watched on the main window's own native window
  (``QWindow``), where keyboard and mouse events arrive before they reach a
  widget — not on the whole application, whose every event (paints, timers,
  thousands per search) would go through Python.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QTimer

from sas_desk.ui.widgets import input_window

log = logging.getLogger("sas_desk.ui.gc")

_INPUT = frozenset(
    {
        QEvent.Type.KeyPress,
        QEvent.Type.MouseButtonPress,
        QEvent.Type.MouseMove,
        QEvent.Type.Wheel,
        QEvent.Type.TouchBegin,
    }
)
UNREACHABLE_THRESHOLD = 1_000_000_000  # gen-2 threshold no count reaches


class IdleCollector(QObject):
    def __init__(
        self,
        *,
        idle_s: float = 20.0,
        every_s: float = 120.0,
        check_s: float = 5.0,
        max_promotions: int = 2_000,
        clock: Callable[[], float] = time.monotonic,
        busy: Callable[[], bool] = lambda: False,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.idle_s = idle_s
        self.every_s = every_s
        self.max_promotions = max_promotions
        self._clock = clock
        self.busy = busy
        self.deferred = 0  # checks where a collection was due but work was on screen
        self._watched: QObject | None = None
        self.last_input = clock()
        self.last_full = clock()
        self.collections = 0  # full collections run (diagnostics, tests)
        self._saved = gc.get_threshold()
        self._timer = QTimer(self)
        self._timer.setInterval(int(check_s * 1000))
        self._timer.timeout.connect(self.tick)

    def start(self, window: QObject) -> None:
        """Freeze what is alive now, keep automatic collections young, and
        watch the operator's input on ``window`` (the main window: its native
        window receives every key and mouse event meant for its widgets)."""
        gc.freeze()  # no collection first: it would pause the window just shown
        young0, young1, _ = self._saved
        gc.set_threshold(young0, young1, UNREACHABLE_THRESHOLD)
        self._watched = input_window(window)
        self._watched.installEventFilter(self)
        self._timer.start()
        log.info("gc: %d objects frozen; full collections when idle", gc.get_freeze_count())

    def stop(self) -> None:
        self._timer.stop()
        if self._watched is not None:
            with contextlib.suppress(RuntimeError):  # the window may be gone already
                self._watched.removeEventFilter(self)
            self._watched = None
        gc.set_threshold(*self._saved)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() in _INPUT:
            self.last_input = self._clock()
        return False

    def due(self) -> bool:
        now = self._clock()
        if now - self.last_full < self.every_s:
            return False
        if now - self.last_input >= self.idle_s:
            return True
        # third count: young (generation-1) collections since the last full one
        return gc.get_count()[2] > self.max_promotions

    def tick(self) -> None:
        if not self.due():
            return
        if self.busy():
            self.deferred += 1  # a search is filling the screen: at the next check
            return
        self.collect()

    def collect(self) -> int:
        began = time.perf_counter()
        found = gc.collect()
        self.last_full = self._clock()
        self.collections += 1
        log.debug(
            "gc: full collection, %d unreachable, %.0f ms",
            found,
            (time.perf_counter() - began) * 1000,
        )
        return found
