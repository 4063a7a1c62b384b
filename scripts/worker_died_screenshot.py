"""Screenshots of the slot search when its worker process dies mid-search.

    xvfb-run -a -s "-screen 0 1366x768x24" python scripts/worker_died_screenshot.py OUT_DIR

Runs the real app on the embedded demo (a temporary data dir, role OSNP:
the window lands on the slot search), searches around Lyon, kills the search
worker (SIGKILL) once cards are on screen, and saves ``worker-died.png``
(the panel saying so); then searches again on the restarted worker and
saves ``worker-restarted.png``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from sas_desk.app import RunOptions, run
from sas_desk.services.config import Config
from sas_desk.services.geo.resolver import Place

LYON = Place("Lyon (69001)", "municipality", "Lyon", "69123", "69001", 45.7640, 4.8357)


async def until(predicate: Any, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.05)


def scenario(out: Path) -> Any:
    async def go(window: Any) -> None:
        try:
            window.showMaximized()
            panel = window.slot_panel or window.open_slot_search()
            panel.open_url = lambda url: True
            await until(lambda: panel._source is not None, 180)
            worker = window.slot_source
            panel.set_place(LYON)
            panel.radius.setValue(20)
            panel.start_search()
            await until(lambda: panel.model.rowCount() > 20, 60)
            os.kill(worker.pid, signal.SIGKILL)
            await until(lambda: not panel.running, 30)
            await asyncio.sleep(0.3)  # the repaint, not a result
            window.grab().save(str(out / "worker-died.png"))
            print("died:", panel.summary.text())
            await until(worker.started.is_set, 60)
            panel.start_search()
            await until(lambda: panel.last_update is not None and panel.last_update.done, 60)
            await asyncio.sleep(0.5)
            window.grab().save(str(out / "worker-restarted.png"))
            print("restarted:", panel.summary.text())
        finally:
            window.close()

    return go


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sas-desk-shot-") as tmp:
        config = Config(data_dir=Path(tmp), workstation="SHOT", operator="osnp", role="OSNP")
        return run(config, RunOptions(on_ready=scenario(out)))


if __name__ == "__main__":
    sys.exit(main())
