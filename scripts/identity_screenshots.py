"""Render the identity login (issue 15) to PNG: the Pro Santé Connect login
waiting for the e-CPS approval (CIBA, binding message on screen), a
refusal in French, and the screen lock.  Runs a real room server process with ``[identity]``
against the simulator's PSC (the test helpers start both).

    QT_QPA_PLATFORM=offscreen python scripts/identity_screenshots.py [OUT_DIR]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import httpx
from PySide6.QtWidgets import QApplication, QDialog, QLabel, QVBoxLayout

from sas_desk.services.auth.login import OidcLogin
from sas_desk.services.config import IdentitySettings
from sas_desk.simulator.oidc import DEMO_CLIENT_ID
from sas_desk.simulator.server import Simulator
from sas_desk.ui.aio import event_loop
from sas_desk.ui.identity_login import IdentityLogin
from sas_desk.ui.session_lock import SessionLock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.oidc_browser import phone  # noqa: E402
from tests.helpers.oidc_room import CLAIRE, INES, start_oidc_room  # noqa: E402


async def until(predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    end = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > end:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.02)


def dialog(panel: IdentityLogin) -> QDialog:
    box = QDialog()
    box.setWindowTitle("SAS Desk — identification")
    layout = QVBoxLayout(box)
    title = QLabel("Identification au serveur de salle")
    title.setStyleSheet("font-size: 16px; font-weight: bold;")
    layout.addWidget(title)
    layout.addWidget(panel)
    box.resize(520, 300)
    box.show()
    return box


async def shots(out: Path, sim: Simulator, room_url: str) -> None:
    sim.identity.psc.set_quirks(ciba_interval=1)
    settings = IdentitySettings(
        psc_issuer=sim.psc_issuer,
        psc_client_id=DEMO_CLIENT_ID,
        psc_mode="ciba",
        establishment_issuer=sim.establishment_issuer,
        establishment_client_id=DEMO_CLIENT_ID,
    )
    async with httpx.AsyncClient(timeout=15) as http:
        panel = IdentityLogin(OidcLogin(http, room_url), settings, "POSTE-12", role="DENT")
        box = dialog(panel)
        panel.rpps.setText(INES[1:])
        panel.psc_button.click()
        await until(panel.binding.isVisible)
        await asyncio.sleep(0.2)
        box.grab().save(str(out / "15a-psc-waiting-for-ecps.png"))
        await phone(http, sim.base_url, INES)
        await until(lambda: not panel.busy)
        box.grab().save(str(out / "15b-psc-connected.png"))
        panel.role.setCurrentIndex(panel.role.findData("SUP"))
        panel.rpps.setText(CLAIRE[1:])
        panel.psc_button.click()
        await until(panel.binding.isVisible)
        await phone(http, sim.base_url, CLAIRE)
        await until(panel.error.isVisible)
        box.grab().save(str(out / "15c-psc-role-refused.png"))
        box.close()
    lock_screen(out)


def lock_screen(out: Path) -> None:
    """The lock over a window (a fake clock five minutes on)."""
    from PySide6.QtWidgets import QMainWindow, QTextEdit

    async def never(_: str) -> bool:
        return False

    now = [0.0]
    window = QMainWindow()
    window.setWindowTitle("SAS Desk")
    window.setCentralWidget(QTextEdit("Dossier en cours…"))
    window.resize(900, 560)
    window.show()
    lock = SessionLock(
        window, operator="Dr Martin (MRL)", reauthenticate=never, clock=lambda: now[0]
    )
    now[0] += 300
    lock.check()
    window.grab().save(str(out / "15d-lock-screen.png"))
    window.close()


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "shots").resolve()
    out.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication([])
    assert isinstance(app, QApplication)
    app.setQuitOnLastWindowClosed(False)  # closing the dialog must not stop the loop
    with Simulator() as sim, tempfile.TemporaryDirectory(prefix="sas-desk-idshots-") as tmp:
        room = start_oidc_room(sim, Path(tmp))
        try:
            with asyncio.Runner(loop_factory=lambda: event_loop(app)) as runner:
                runner.run(shots(out, sim, room.url))
        finally:
            room.stop()
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main()
