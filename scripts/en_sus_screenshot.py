"""The "en sus" volunteers and the time of the appointment agreed on the
phone, as the OSNP sees them on a 1366×768 screen (the demo).

    xvfb-run -a -s "-screen 0 1366x768x24" python scripts/en_sus_screenshot.py [OUT_DIR]

Searches around a sparse place of the demo territory (few practitioners with
slots, volunteers "en sus"), goes to the volunteers (Alt+2), Entrée on the
first, types a wrong time (``en-sus-refused.png``) then a right one
(``en-sus-typing.png``, then ``en-sus-recorded.png`` after Entrée).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

SPARSE = ((45.7542, 4.7647), (45.6986, 4.8633), (45.6867, 4.9336))


def main() -> int:
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest
    from shots import out_dir, saver, until

    from sas_desk.app import RunOptions, qt_turn, run
    from sas_desk.services.config import Config
    from sas_desk.services.geo.resolver import Place
    from sas_desk.ui.keys import type_text

    save = saver(out_dir())
    errors: list[str] = []

    async def scenario(window: Any) -> None:
        try:
            window.showMaximized()
            panel = window.open_slot_search()
            panel.open_url = lambda url: True
            await until(lambda: panel._source is not None, 120)
            for lat, lon in SPARSE:
                for radius in (1, 2):
                    panel.set_place(Place("Lieu", "municipality", "Lieu", "", "", lat, lon))
                    panel.radius.setValue(radius)
                    task = panel.start_search()
                    assert task is not None
                    await task
                    if panel.volunteers.volunteers:
                        break
                if panel.volunteers.volunteers:
                    break
            if not panel.volunteers.volunteers:
                raise RuntimeError("no volunteers found in the demo territory")
            panel._show_tab(1)  # Alt+2 (no window manager here to give the window focus)
            QTest.keyClick(panel.volunteers, Qt.Key.Key_Return)
            type_text(panel.en_sus.time, "07/12 25:00")
            QTest.keyClick(panel.en_sus.time, Qt.Key.Key_Return)
            await qt_turn()
            save(window, "en-sus-refused")
            panel.en_sus.time.clear()
            when = panel.now() + timedelta(hours=2)
            type_text(panel.en_sus.time, f"{when:%H:%M}")
            await qt_turn()
            save(window, "en-sus-typing")
            QTest.keyClick(panel.en_sus.time, Qt.Key.Key_Return)
            await asyncio.sleep(0.3)
            await qt_turn()
            save(window, "en-sus-recorded")
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            window.close()

    with tempfile.TemporaryDirectory(prefix="sas-desk-en-sus-") as tmp:
        config = Config(data_dir=Path(tmp), workstation="SHOTS-OSNP", operator="shots", role="OSNP")
        code = run(config, RunOptions(on_ready=scenario))
    for error in errors:
        print(error, file=sys.stderr)
    return 1 if code or errors else 0


if __name__ == "__main__":
    sys.exit(main())
