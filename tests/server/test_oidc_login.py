"""Login through Pro Santé Connect and the establishment IdP, end to end over
real loopback HTTP: the workstation's OidcLogin (loopback listener, scripted
system browser, CIBA) -> a real room server process (the confidential
client) -> the simulated providers; then the session works on the API.
Every refusal arrives with its French message and is audited."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from sas_desk.server.store import open_store
from sas_desk.services.auth.errors import MESSAGES, AuthError
from sas_desk.services.auth.login import OidcLogin
from sas_desk.simulator.oidc import DEMO_PSC_SECRET
from sas_desk.simulator.server import Simulator
from tests.helpers.oidc_browser import establishment_browser, phone, psc_browser
from tests.helpers.oidc_room import CLAIRE, HUGO, INES, LEA, PAUL, start_oidc_room
from tests.helpers.room_server import ROOT, RoomServer

WORKSTATION = "POSTE-OIDC"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator() as simulator:
        yield simulator


@pytest.fixture(scope="module")
def room(sim: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoomServer]:
    server = start_oidc_room(sim, tmp_path_factory.mktemp("oidc-room"))
    try:
        yield server
    finally:
        assert server.stop() == 0, server.stderr_path.read_text()
        log = server.stderr_path.read_text()
        assert DEMO_PSC_SECRET not in log


@pytest.fixture(autouse=True)
def _reset(sim: Simulator) -> Iterator[None]:
    sim.identity.psc.set_quirks(ciba_interval=0)
    yield
    sim.identity.psc.reset()
    sim.identity.establishment.reset()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15) as client:
        yield client


async def no_wait(_: float) -> None:
    await asyncio.sleep(0)


async def browser_login(
    room: RoomServer, http: httpx.AsyncClient, nid: str, role: str
) -> dict[str, object]:
    login = OidcLogin(http, room.url)
    response = await login.with_browser(
        role=role,
        workstation=WORKSTATION,
        opener=lambda url: psc_browser(http, url, nid),
        timeout=10,
    )
    assert response.status_code == 200
    return dict(response.json())


async def api_works(
    room: RoomServer, http: httpx.AsyncClient, session: dict[str, object], queue: str
) -> None:
    answer = await http.get(
        f"{room.url}/v1/queues/{queue}",
        headers={"Authorization": f"Bearer {session['access_token']}"},
    )
    assert answer.status_code == 200, answer.text


@pytest.mark.asyncio
async def test_psc_browser_login_opens_a_room_session(
    room: RoomServer, http: httpx.AsyncClient
) -> None:
    session = await browser_login(room, http, CLAIRE, "MRL")
    assert session["operator"] == "dr.martin"
    assert session["role"] == "MRL"
    assert session["workstation"] == WORKSTATION
    assert DEMO_PSC_SECRET not in json.dumps(session)
    assert "id_token" not in session  # the provider's tokens stay on the server
    await api_works(room, http, session, "SNP")


@pytest.mark.asyncio
async def test_psc_ciba_login_opens_a_room_session(
    room: RoomServer, sim: Simulator, http: httpx.AsyncClient
) -> None:
    shown: list[str] = []
    ready = asyncio.Event()

    def show(message: str) -> None:
        shown.append(message)
        ready.set()

    async def approve_when_shown() -> None:
        await ready.wait()
        assert await phone(http, sim.base_url, INES) == shown[0]

    approver = asyncio.create_task(approve_when_shown())
    response = await OidcLogin(http, room.url).with_ciba(
        role="DENT",
        workstation=WORKSTATION,
        login_hint="10100000037",
        on_binding_message=show,
        sleep=no_wait,
    )
    await approver
    session = response.json()
    assert shown[0].startswith("SAS Desk ")
    assert session["operator"] == "dr.moreau" and session["role"] == "DENT"
    await api_works(room, http, session, "DENT")


@pytest.mark.asyncio
async def test_establishment_login_for_an_arm(room: RoomServer, http: httpx.AsyncClient) -> None:
    response = await OidcLogin(http, room.url).with_browser(
        role="ARM",
        workstation=WORKSTATION,
        provider="etablissement",
        opener=lambda url: establishment_browser(http, url, "arm.dupont", "demo-arm"),
        timeout=10,
    )
    session = response.json()
    assert session["operator"] == "arm.dupont" and session["role"] == "ARM"


@pytest.mark.parametrize(
    ("quirk", "code"),
    [
        ({"acr": "eidas0"}, "wrong_acr"),
        ({"ttl_s": -120}, "expired"),
        ({"audience": "un-autre-service"}, "wrong_audience"),
    ],
)
@pytest.mark.asyncio
async def test_token_refusals_reach_the_workstation_in_french(
    room: RoomServer, sim: Simulator, http: httpx.AsyncClient, quirk: dict[str, object], code: str
) -> None:
    sim.identity.psc.set_quirks(**quirk)
    with pytest.raises(AuthError) as caught:
        await browser_login(room, http, CLAIRE, "MRL")
    assert caught.value.code == code
    assert caught.value.message_fr == MESSAGES[code]


@pytest.mark.asyncio
async def test_ciba_wrong_acr_refused(
    room: RoomServer, sim: Simulator, http: httpx.AsyncClient
) -> None:
    sim.identity.psc.set_quirks(ciba_interval=0, acr="eidas0")
    approvals: list[asyncio.Task[str]] = []
    with pytest.raises(AuthError) as caught:
        await OidcLogin(http, room.url).with_ciba(
            role="MRL",
            workstation=WORKSTATION,
            login_hint=CLAIRE,
            on_binding_message=lambda _: approvals.append(
                asyncio.create_task(phone(http, sim.base_url, CLAIRE))
            ),
            sleep=no_wait,
        )
    assert caught.value.code == "wrong_acr"
    assert len(approvals) == 1 and approvals[0].done()


@pytest.mark.parametrize(
    ("nid", "role", "code", "words"),
    [
        (HUGO, "MRL", "unknown_subject", "aucun compte"),
        (PAUL, "MRU", "account_disabled", "désactivé"),
        (CLAIRE, "SUP", "role_forbidden", "ne peut pas travailler comme SUP"),
    ],
)
@pytest.mark.asyncio
async def test_account_refusals(
    room: RoomServer, http: httpx.AsyncClient, nid: str, role: str, code: str, words: str
) -> None:
    with pytest.raises(AuthError) as caught:
        await browser_login(room, http, nid, role)
    assert caught.value.code == code
    assert words in caught.value.message_fr


@pytest.mark.asyncio
async def test_refusals_are_audited(room: RoomServer, http: httpx.AsyncClient) -> None:
    with pytest.raises(AuthError):
        await browser_login(room, http, HUGO, "MRL")
    store = open_store(room.db.dsn, room.db.schema)
    await store.open()
    try:
        entries = [e for e in await store.audit_entries() if e.action == "login"]
    finally:
        await store.close()
    refused = [e for e in entries if e.outcome == "unknown_subject"]
    assert refused and refused[-1].operator == "rpps:10100000045"
    assert refused[-1].workstation == "" and refused[-1].client == "127.0.0.1"
    ok = [e for e in entries if e.outcome == "ok" and e.operator == "dr.martin"]
    assert ok and (ok[-1].detail or {}).get("via") == "psc"


@pytest.mark.asyncio
async def test_start_refuses_what_is_not_offered(room: RoomServer, http: httpx.AsyncClient) -> None:
    base = f"{room.url}/v1/session/oidc/start"
    ciba_etab = await http.post(
        base, json={"role": "ARM", "provider": "etablissement", "mode": "ciba", "workstation": "P"}
    )
    assert ciba_etab.status_code == 422 and ciba_etab.json()["code"] == "not_configured"
    remote = await http.post(
        base, json={"role": "MRL", "workstation": "P", "redirect_uri": "https://evil.example/cb"}
    )
    assert remote.status_code == 422 and "127.0.0.1" in remote.json()["message_fr"]
    unknown = await http.post(f"{room.url}/v1/session/oidc/finish", json={"flow_id": "nope"})
    assert unknown.status_code == 410 and unknown.json()["code"] == "unknown_flow"


@pytest.mark.asyncio
async def test_ciba_pushes_are_rate_limited(room: RoomServer, http: httpx.AsyncClient) -> None:
    body = {"role": "MRL", "mode": "ciba", "workstation": "P", "login_hint": "10100000045"}
    statuses = [
        (await http.post(f"{room.url}/v1/session/oidc/start", json=body)).status_code
        for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]


@pytest.mark.asyncio
async def test_openapi_documents_the_oidc_paths(room: RoomServer, http: httpx.AsyncClient) -> None:
    doc = (await http.get(f"{room.url}/v1/openapi.json")).json()
    assert "/v1/session/oidc/start" in doc["paths"]
    assert "/v1/session/oidc/finish" in doc["paths"]


@pytest.mark.asyncio
async def test_a_disabled_account_is_disconnected_and_cannot_log_in_again(
    room: RoomServer, http: httpx.AsyncClient
) -> None:
    await room.db.add_user(
        "dr.roux", ["MRU"], "inutilise-ici-123", name="Dr Roux", rpps="10100000052"
    )
    session = await browser_login(room, http, LEA, "MRU")
    await api_works(room, http, session, "AMU")
    store = open_store(room.db.dsn, room.db.schema)
    await store.open()
    try:
        assert await store.set_disabled("dr.roux", True)
    finally:
        await store.close()

    def refused() -> bool:
        answer = httpx.get(
            f"{room.url}/v1/queues/AMU",
            headers={"Authorization": f"Bearer {session['access_token']}"},
        )
        return answer.status_code == 401

    await asyncio.to_thread(room.wait_until, refused, 60.0)  # "within a minute"
    with pytest.raises(AuthError) as caught:
        await browser_login(room, http, LEA, "MRU")
    assert caught.value.code == "account_disabled"


def run_server(
    config: Path, tmp_path: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, "-m", "sas_desk", "--config", str(config), "server",
            "--dsn", f"sqlite://{tmp_path / 'room.sqlite'}", "--listen", "127.0.0.1:0",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip


def test_server_refuses_to_start_without_the_psc_secret(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text(
        '[identity]\npsc_issuer = "https://psc.example/auth/realms/esante-wallet"\n'
        'psc_client_id = "sas-desk"\n',
        encoding="utf-8",
    )
    result = run_server(config, tmp_path, {"CREDENTIALS_DIRECTORY": str(tmp_path / "none")})
    assert result.returncode == 1
    assert "secret du client Pro Santé Connect introuvable" in result.stderr
    assert "Traceback" not in result.stderr


def test_server_refuses_a_bad_identity_table(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text('[identity]\npsc_mode = "sms"\n', encoding="utf-8")
    result = run_server(config, tmp_path, {})
    assert result.returncode == 1
    assert f"({config}, ligne 2) : [identity] psc_mode doit valoir code ou ciba" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("start", {}),
        ("start", {"role": 5}),
        ("start", {"role": "MRL", "mode": "weird", "workstation": "P"}),
        ("start", {"role": "MRL", "provider": "x", "workstation": "P"}),
        ("start", {"role": "MRL", "mode": "ciba", "workstation": "P", "login_hint": "abc"}),
        ("start", {"role": "MRL", "workstation": "P", "redirect_uri": "http://127.0.0.1:99999/x"}),
        ("start", {"role": "XX", "workstation": "P"}),
        ("start", {"role": "MRL", "workstation": ""}),
        ("finish", {}),
        ("finish", {"flow_id": 5}),
        ("finish", ["x"]),
    ],
)
async def test_malformed_requests_are_refused_in_french_never_500(
    room: RoomServer, http: httpx.AsyncClient, path: str, body: object
) -> None:
    answer = await http.post(f"{room.url}/v1/session/oidc/{path}", json=body)
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.json()["message_fr"]
