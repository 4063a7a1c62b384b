"""Render the identity screens of issue 15 to PNG, through the real app in
production mode: a room server process with ``[identity]`` against the
simulator's Pro Santé Connect (the test helpers start both), the app's login
dialog in CIBA mode.

- 15a: the login waiting for the e-CPS approval (binding message on screen);
- 15b: a role the account does not have, refused in French;
- 15c: the screen lock over the window (patient data hidden);
- 15d: « Changer d'opérateur »: the window covered, the next operator's login.

    xvfb-run -a -s "-screen 0 1366x768x24" python scripts/identity_screenshots.py [OUT_DIR]

The pictures are grabs of the whole screen (window and dialog together), so
run it under Xvfb, not on the offscreen platform.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from PySide6.QtWidgets import QApplication

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sas_desk.app import RunOptions, run  # noqa: E402
from sas_desk.services.config import Config, IdentitySettings  # noqa: E402
from sas_desk.simulator.oidc import DEMO_CLIENT_ID  # noqa: E402
from sas_desk.simulator.server import Simulator  # noqa: E402
from tests.helpers.oidc_browser import phone  # noqa: E402
from tests.helpers.oidc_room import CLAIRE, start_oidc_room  # noqa: E402


async def until(predicate: Any, timeout: float = 20.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > end:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.02)


async def shot(out: Path, name: str) -> None:
    await asyncio.sleep(0.4)  # let Qt lay out and paint
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    screen = app.primaryScreen()
    screen.grabWindow(0).save(str(out / name))
    print(f"  {name}")


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "shots").resolve()
    out.mkdir(parents=True, exist_ok=True)
    with Simulator() as sim, tempfile.TemporaryDirectory(prefix="sas-desk-idshots-") as tmp:
        sim.identity.psc.set_quirks(ciba_interval=1)
        room = start_oidc_room(sim, Path(tmp))
        try:
            config = Config(
                data_dir=Path(tmp) / "data",
                workstation="POSTE-12",
                room_url=room.url,
                demo=False,
                role="MRL",
                identity=IdentitySettings(
                    psc_issuer=sim.psc_issuer,
                    psc_client_id=DEMO_CLIENT_ID,
                    psc_mode="ciba",
                    establishment_issuer=sim.establishment_issuer,
                    establishment_client_id=DEMO_CLIENT_ID,
                ),
            )

            async def on_login(dialog: Any) -> None:
                await until(dialog.isVisible)
                async with httpx.AsyncClient(timeout=15) as http:
                    dialog.move(420, 160)
                    dialog.oidc.rpps.setText(CLAIRE[1:])
                    dialog.role.setCurrentIndex(dialog.role.findData("SUP"))
                    dialog.oidc.psc_button.click()
                    await until(dialog.oidc.binding.isVisible)
                    await phone(http, sim.base_url, CLAIRE)
                    await until(dialog.oidc.error.isVisible)
                    await shot(out, "15b-psc-role-refused.png")
                    dialog.role.setCurrentIndex(dialog.role.findData("MRL"))
                    dialog.oidc.psc_button.click()
                    await until(dialog.oidc.binding.isVisible)
                    await shot(out, "15a-psc-waiting-for-ecps.png")
                    await phone(http, sim.base_url, CLAIRE)
                    await until(lambda: not dialog.isVisible())

            async def on_ready(window: Any) -> None:
                window.showMaximized()
                gate = window.gate
                gate.lock.lock()
                await shot(out, "15c-lock-screen.png")
                gate.change_operator()
                await until(gate.dialog.isVisible)
                gate.dialog.move(420, 480)
                await shot(out, "15d-change-of-operator.png")
                gate.dialog.reject()  # the handover is abandoned: the screen stays locked
                await until(lambda: "abandonné" in gate.lock.cover.error.text())
                window.close()

            code = run(config, RunOptions(on_login=on_login, on_ready=on_ready))
        finally:
            room.stop()
    print(f"screenshots in {out} (exit {code})")


if __name__ == "__main__":
    main()
