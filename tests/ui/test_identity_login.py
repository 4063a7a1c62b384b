"""The identity login panel (ui/identity_login.py) driven by pytest-qt against
a real room server process and the simulated Pro Santé Connect: CIBA shows
the binding message the e-CPS app shows; the browser flow opens the URL and
finishes; refusals are French and leave the panel usable."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from sas_desk.services.auth.login import OidcLogin
from sas_desk.services.config import IdentitySettings
from sas_desk.simulator.server import Simulator
from sas_desk.ui.identity_login import WAIT_ECPS_FR, IdentityLogin
from tests.helpers.oidc_browser import pending_approvals, phone, psc_browser
from tests.helpers.oidc_room import CLAIRE, INES, start_oidc_room
from tests.helpers.room_server import RoomServer
from tests.ui.conftest import until

pytestmark = [pytest.mark.gui, pytest.mark.asyncio(loop_scope="session")]


@pytest.fixture(scope="module")
def room(simulator: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoomServer]:
    server = start_oidc_room(simulator, tmp_path_factory.mktemp("oidc-ui"))
    try:
        yield server
    finally:
        assert server.stop() == 0, server.stderr_path.read_text()


@pytest.fixture(autouse=True)
def _fast_ciba(simulator: Simulator) -> Iterator[None]:
    simulator.identity.psc.set_quirks(ciba_interval=1)
    yield
    simulator.identity.psc.reset()


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15) as client:
        yield client


def identity(sim: Simulator, mode: str) -> IdentitySettings:
    return IdentitySettings(
        psc_issuer=sim.psc_issuer,
        psc_client_id="sas-desk-salle",
        psc_mode=mode,
        establishment_issuer=sim.establishment_issuer,
        establishment_client_id="sas-desk-salle",
    )


def panel(
    qtbot: Any, http: httpx.AsyncClient, room: RoomServer, settings: IdentitySettings, **kw: Any
) -> IdentityLogin:
    widget = IdentityLogin(OidcLogin(http, room.url), settings, "POSTE-12", **kw)
    qtbot.addWidget(widget)
    widget.show()
    return widget


async def test_ciba_shows_the_binding_message_and_opens_the_session(
    qtbot: Any, room: RoomServer, simulator: Simulator, http: httpx.AsyncClient
) -> None:
    widget = panel(qtbot, http, room, identity(simulator, "ciba"), role="DENT")
    assert widget.rpps.isVisible()
    opened: list[httpx.Response] = []
    widget.sessionOpened.connect(opened.append)
    widget.rpps.setText(INES[1:])
    widget.psc_button.click()
    await until(lambda: widget.binding.isVisible(), timeout=10)
    assert widget.state.text() == WAIT_ECPS_FR
    assert widget.cancel_button.isEnabled() and not widget.psc_button.isEnabled()
    # the professional sees the same words on the phone, and approves
    assert await phone(http, simulator.base_url, INES) == widget.binding.text()
    await until(lambda: bool(opened), timeout=15)
    session = opened[0].json()
    assert session["operator"] == "dr.moreau" and session["role"] == "DENT"
    assert session["workstation"] == "POSTE-12"
    assert widget.psc_button.isEnabled() and not widget.binding.isVisible()


async def test_browser_flow_opens_the_system_browser(
    qtbot: Any, room: RoomServer, simulator: Simulator, http: httpx.AsyncClient
) -> None:
    urls: list[str] = []

    def opener(url: str) -> Any:
        urls.append(url)
        return psc_browser(http, url, CLAIRE)

    widget = panel(qtbot, http, room, identity(simulator, "code"), role="MRL", opener=opener)
    assert not widget.rpps.isVisible()
    opened: list[httpx.Response] = []
    widget.sessionOpened.connect(opened.append)
    widget.psc_button.click()
    await until(lambda: bool(opened), timeout=15)
    assert urls and urls[0].startswith(simulator.base_url + "/wallet/auth?")
    assert opened[0].json()["operator"] == "dr.martin"


async def test_refusals_are_shown_in_french_and_the_panel_stays_usable(
    qtbot: Any, room: RoomServer, simulator: Simulator, http: httpx.AsyncClient
) -> None:
    widget = panel(
        qtbot, http, room, identity(simulator, "code"), role="SUP",
        opener=lambda url: psc_browser(http, url, CLAIRE),
    )  # fmt: skip
    widget.psc_button.click()
    await until(lambda: widget.error.isVisible(), timeout=15)
    assert "ne peut pas travailler comme SUP" in widget.error.text()
    assert widget.psc_button.isEnabled()
    simulator.identity.psc.set_quirks(acr="eidas0")
    widget.role.setCurrentIndex(widget.role.findData("MRL"))
    widget.psc_button.click()
    await until(lambda: "niveau d'authentification" in widget.error.text(), timeout=15)


async def test_a_bad_rpps_is_refused_before_any_request(
    qtbot: Any, room: RoomServer, simulator: Simulator, http: httpx.AsyncClient
) -> None:
    widget = panel(qtbot, http, room, identity(simulator, "ciba"))
    widget.rpps.setText("12345")
    widget.psc_button.click()
    assert widget.error.isVisible() and "RPPS" in widget.error.text()
    assert not widget.busy
    assert await pending_approvals(http, simulator.base_url, "812345") == []


async def test_cancel_while_waiting_for_the_phone(
    qtbot: Any, room: RoomServer, simulator: Simulator, http: httpx.AsyncClient
) -> None:
    widget = panel(qtbot, http, room, identity(simulator, "ciba"), role="MRL")
    widget.rpps.setText(CLAIRE)
    widget.psc_button.click()
    await until(lambda: widget.binding.isVisible(), timeout=10)
    widget.cancel_button.click()
    await until(lambda: not widget.busy, timeout=5)
    assert widget.state.text() == "Connexion annulée."
    assert widget.psc_button.isEnabled()
