"""The app in production mode with ``[identity]``: the login dialog offers
Pro Santé Connect and the establishment's provider (no password form), the
room session takes the session the OIDC login opened, and the window opens
on the account's operator and the chosen role."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sas_desk.app import RunOptions, run
from sas_desk.services.config import Config, IdentitySettings
from sas_desk.simulator.oidc import DEMO_CLIENT_ID
from sas_desk.simulator.server import Simulator
from tests.helpers.oidc_browser import establishment_browser, psc_browser
from tests.helpers.oidc_room import CLAIRE, start_oidc_room
from tests.helpers.room_server import RoomServer
from tests.ui.conftest import until

pytestmark = [pytest.mark.gui]


@pytest.fixture(scope="module")
def oidc_room(
    simulator: Simulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RoomServer]:
    server = start_oidc_room(simulator, tmp_path_factory.mktemp("oidc-app"))
    try:
        yield server
    finally:
        assert server.stop() == 0, server.stderr_path.read_text()


def identity(sim: Simulator, mode: str = "code") -> IdentitySettings:
    return IdentitySettings(
        psc_issuer=sim.psc_issuer,
        psc_client_id=DEMO_CLIENT_ID,
        psc_mode=mode,
        establishment_issuer=sim.establishment_issuer,
        establishment_client_id=DEMO_CLIENT_ID,
    )


def room_config(room: RoomServer, sim: Simulator, tmp_path: Path, name: str) -> Config:
    return Config(
        data_dir=tmp_path,
        workstation=name,
        room_url=room.url,
        demo=False,
        identity=identity(sim),
    )


def test_the_app_logs_in_through_pro_sante_connect(
    oidc_room: RoomServer, simulator: Simulator, tmp_path: Path
) -> None:
    seen: dict[str, Any] = {}

    async def on_login(dialog: Any) -> None:
        await until(dialog.isVisible)
        assert dialog.oidc is not None
        seen["password_offered"] = dialog.password.isVisible()
        seen["psc"] = dialog.oidc.psc_button.isVisible()
        seen["establishment"] = dialog.oidc.establishment_button.isVisible()
        async with httpx.AsyncClient(timeout=15) as http:
            dialog.oidc.opener = lambda url: psc_browser(http, url, CLAIRE)
            dialog.role.setCurrentIndex(dialog.role.findData("MRL"))
            dialog.oidc.psc_button.click()
            await until(lambda: not dialog.isVisible(), 20)

    async def on_ready(window: Any) -> None:
        seen["role"] = window.role
        seen["session"] = window.session_label.text()
        seen["actor"] = window.desk.actor.operator
        window.close()

    config = room_config(oidc_room, simulator, tmp_path, "POSTE-PSC")
    assert run(config, RunOptions(on_login=on_login, on_ready=on_ready)) == 0
    assert seen == {
        "password_offered": False,
        "psc": True,
        "establishment": True,
        "role": "MRL",
        "session": "Session : dr.martin (MRL)",
        "actor": "dr.martin",
    }


def test_a_refused_role_is_said_and_the_establishment_login_follows(
    oidc_room: RoomServer, simulator: Simulator, tmp_path: Path
) -> None:
    seen: dict[str, Any] = {}

    async def on_login(dialog: Any) -> None:
        await until(dialog.isVisible)
        assert dialog.oidc is not None
        async with httpx.AsyncClient(timeout=15) as http:
            dialog.role.setCurrentIndex(dialog.role.findData("SUP"))
            dialog.oidc.opener = lambda url: establishment_browser(
                http, url, "arm.dupont", "demo-arm"
            )
            dialog.oidc.establishment_button.click()
            await until(lambda: dialog.error.isVisible() or dialog.oidc.error.isVisible(), 20)
            seen["refusal"] = dialog.error.text() or dialog.oidc.error.text()
            assert dialog.isVisible()
            dialog.role.setCurrentIndex(dialog.role.findData("ARM"))
            dialog.oidc.establishment_button.click()
            await until(lambda: not dialog.isVisible(), 20)

    async def on_ready(window: Any) -> None:
        seen["session"] = window.session_label.text()
        window.close()

    config = room_config(oidc_room, simulator, tmp_path, "POSTE-ETAB")
    assert run(config, RunOptions(on_login=on_login, on_ready=on_ready)) == 0
    assert seen == {
        "refusal": "Le compte arm.dupont ne peut pas travailler comme SUP.",
        "session": "Session : arm.dupont (ARM)",
    }
