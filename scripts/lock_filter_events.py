"""How many events reach the screen lock's Python event filter during one
slot search (the real app on the embedded demo, role OSNP, Lyon 20 km).

    xvfb-run -a -s "-screen 0 1366x768x24" python scripts/lock_filter_events.py

The lock watches the keyboard and mouse on the native windows (issue #20):
a search's paints and timers should not go through Python at all.  Prints
the count, the most frequent kinds and the time spent in the filter.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject

import sas_desk.ui.session_gate as gate
from sas_desk.app import RunOptions, run
from sas_desk.services.config import Config
from sas_desk.services.geo.resolver import Place
from sas_desk.ui.session_lock import SessionLock

LYON = Place("Lyon (69001)", "municipality", "Lyon", "69123", "69001", 45.7640, 4.8357)

seen: Counter[str] = Counter()
spent = [0.0]


class CountingLock(SessionLock):
    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        began = time.perf_counter()
        try:
            return super().eventFilter(obj, event)
        finally:
            spent[0] += time.perf_counter() - began
            seen[event.type().name] += 1


async def until(predicate: Any, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.05)


async def scenario(window: Any) -> None:
    try:
        window.showMaximized()
        panel = window.slot_panel or window.open_slot_search()
        await until(lambda: panel._source is not None, 180)
        panel.set_place(LYON)
        panel.radius.setValue(20)
        await asyncio.sleep(0.5)  # the window settled: count the search only
        seen.clear()
        spent[0] = 0.0
        panel.start_search()
        await until(lambda: panel.last_update is not None and panel.last_update.done, 60)
        print(
            f"events through the lock's filter during one search: {sum(seen.values())}"
            f" {dict(seen.most_common(6))}, {spent[0] * 1000:.2f} ms in the filter"
        )
    finally:
        window.close()


def main() -> int:
    gate.SessionLock = CountingLock  # type: ignore[misc]
    with tempfile.TemporaryDirectory(prefix="sas-desk-lock-") as tmp:
        config = Config(data_dir=Path(tmp), workstation="SHOT", operator="osnp", role="OSNP")
        return run(config, RunOptions(on_ready=scenario))


if __name__ == "__main__":
    sys.exit(main())
