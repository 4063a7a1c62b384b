"""The slot search panel during and after a large search (over 50,000 slots),
as the OSNP sees it on a 1366×768 screen.

    xvfb-run -a -s "-screen 0 1366x768x24" python scripts/search_screenshots.py [OUT_DIR]

(or QT_QPA_PLATFORM=offscreen).  Starts the simulator in a child process
with a denser territory than the demo's (2.5× the free slots, as
``bench/ui_search.py --large``), the app configured with its vendors and
directory feed (role OSNP), searches 100 km around Lyon over the next 72 h
(once first, unsaved: the simulator's caches warm up), and saves ``search-large-during.png`` (cards arriving, vendors still
answering) and ``search-large-after.png`` (all in, the summary), then
``search-large-again-during.png`` (the next search: the same status and
vendor labels, back to waiting).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from simulated import Simulated  # noqa: E402  (bench/simulated.py)

LYON = (45.7640, 4.8357)


def main() -> int:
    import httpx
    from shots import out_dir, saver, until

    from sas_desk.app import RunOptions, qt_turn, run
    from sas_desk.models.search import Window
    from sas_desk.services.config import Config, VendorEndpoint
    from sas_desk.services.geo.resolver import Place

    save = saver(out_dir())
    errors: list[str] = []

    async def scenario(window: Any) -> None:
        try:
            window.showMaximized()
            panel = window.slot_panel
            panel.open_url = lambda url: True
            await until(lambda: panel._source is not None, 180)
            await asyncio.sleep(0.5)
            await qt_turn()
            place = Place("Lyon (69001)", "municipality", "Lyon", "69123", "69001", *LYON)
            for name in ("warm-up", "search-large", "search-large-again"):
                panel.set_place(place)
                panel.radius.setValue(100)
                panel.window_choice.setCurrentIndex(panel.window_choice.findData(Window.H72))
                task = panel.start_search()
                if task is None:
                    raise RuntimeError("the search did not start")
                await until(lambda t=task: panel.model.slot_count > 15_000 or t.done(), 120)
                if name != "warm-up":  # (the simulator's first answers are slow: cold caches)
                    save(window, f"{name}-during")
                await task
                if name.endswith("again"):
                    break
                await asyncio.sleep(0.6)  # the map's markers
                await qt_turn()
                print(
                    f"{panel.model.slot_count} slots, {panel.model.rowCount()} places",
                    flush=True,
                )
                if name != "warm-up":
                    save(window, f"{name}-after")
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            window.close()

    sim = Simulated(density=2.5)
    try:
        meta = httpx.get(f"{sim.base_url}/_meta", timeout=60).json()
        # 30 s per vendor instead of 7: on a loaded machine the denser simulator
        # may take longer, and the picture is of a complete search
        vendors = tuple(
            VendorEndpoint(str(v["name"]), str(v["base_url"]), timeout=30.0) for v in meta
        )
        with tempfile.TemporaryDirectory(prefix="sas-desk-search-shots-") as tmp:
            config = Config(
                demo=False,
                data_dir=Path(tmp),
                workstation="SHOTS-OSNP",
                operator="shots",
                role="OSNP",
                vendors=vendors,
                directory_url=f"{sim.base_url}/directory",
            )
            code = run(config, RunOptions(on_ready=scenario))
    finally:
        sim.close()
    for error in errors:
        print(error, file=sys.stderr)
    return 1 if code or errors else 0


if __name__ == "__main__":
    sys.exit(main())
