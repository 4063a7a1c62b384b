"""The room server's OpenID Connect login (services/auth) against the
simulated Pro Santé Connect and establishment IdP, over real loopback HTTP:
authorization code + PKCE with a loopback listener, CIBA in poll mode, and
every refusal with its French message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
from joserfc import jwt
from joserfc.jwk import RSAKey

from sas_desk.services.auth.broker import FlowResult, OidcBroker, ProviderSettings
from sas_desk.services.auth.errors import MESSAGES, AuthError
from sas_desk.services.auth.loopback import LoopbackReceiver
from sas_desk.services.auth.provider import Pending
from sas_desk.services.auth.tokens import Expectations, validate_id_token
from sas_desk.simulator.oidc import (
    DEMO_CLIENT_ID,
    DEMO_ESTABLISHMENT_SECRET,
    DEMO_PSC_SECRET,
)
from sas_desk.simulator.server import Simulator
from tests.helpers.oidc_browser import establishment_browser, phone, psc_browser

CLAIRE = "810100000011"

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator() as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def _clear_quirks(sim: Simulator) -> Iterator[None]:
    yield
    sim.identity.psc.reset()
    sim.identity.establishment.reset()


def settings(sim: Simulator, *, psc_secret: str = DEMO_PSC_SECRET) -> list[ProviderSettings]:
    return [
        ProviderSettings(
            name="psc",
            issuer=sim.psc_issuer,
            client_id=DEMO_CLIENT_ID,
            client_secret=psc_secret,
            psc=True,
            acr=("eidas1",),
            scope="openid scope_all",
        ),
        ProviderSettings(
            name="etablissement",
            issuer=sim.establishment_issuer,
            client_id=DEMO_CLIENT_ID,
            client_secret=DEMO_ESTABLISHMENT_SECRET,
        ),
    ]


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
def broker(sim: Simulator, http: httpx.AsyncClient) -> OidcBroker:
    return OidcBroker(settings(sim), http)


async def code_login(
    broker: OidcBroker, http: httpx.AsyncClient, nid: str = CLAIRE, decision: str = "approve"
) -> FlowResult | Pending:
    async with LoopbackReceiver() as receiver:
        started = await broker.start_code("psc", receiver.redirect_uri, {"role": "MRL"})
        landing = await psc_browser(http, started.authorization_url, nid, decision=decision)
        assert landing.status_code == 200
        assert "Vous pouvez fermer cet onglet" in landing.text
        params = await receiver.wait(5)
    return await broker.finish(started.flow_id, **params)


async def test_psc_code_pkce_login_end_to_end(broker: OidcBroker, http: httpx.AsyncClient) -> None:
    result = await code_login(broker, http)
    assert isinstance(result, FlowResult)
    assert result.identity.rpps == "10100000011"
    assert result.identity.acr == "eidas1"
    assert result.identity.display_name == "Claire Martin"
    assert result.context == {"role": "MRL"}


async def test_psc_authorization_url_carries_pkce_acr_and_scope(
    broker: OidcBroker, sim: Simulator
) -> None:
    started = await broker.start_code("psc", "http://127.0.0.1:9/callback", {})
    url = httpx.URL(started.authorization_url)
    assert url.path == "/wallet/auth"
    assert url.params["code_challenge_method"] == "S256"
    assert len(url.params["code_challenge"]) == 43
    assert url.params["acr_values"] == "eidas1"
    assert url.params["scope"] == "openid scope_all"
    assert url.params["client_id"] == DEMO_CLIENT_ID
    assert "secret" not in str(url).lower()
    assert DEMO_PSC_SECRET not in str(url)


@pytest.mark.parametrize(
    "redirect", ["https://127.0.0.1:8000/cb", "http://evil.example:8000/cb", "http://127.0.0.1/cb"]
)
async def test_non_loopback_redirect_refused(broker: OidcBroker, redirect: str) -> None:
    with pytest.raises(AuthError) as caught:
        await broker.start_code("psc", redirect, {})
    assert caught.value.code == "invalid"
    assert "127.0.0.1" in caught.value.message_fr


async def test_psc_ciba_login_end_to_end(
    broker: OidcBroker, sim: Simulator, http: httpx.AsyncClient
) -> None:
    sim.identity.psc.set_quirks(ciba_interval=0)
    started = await broker.start_ciba("psc", "10100000011", {"role": "MRU"})
    assert started.binding_message.startswith("SAS Desk ")
    pending = await broker.finish(started.flow_id)
    assert isinstance(pending, Pending)
    shown = await phone(http, sim.base_url, CLAIRE)
    assert shown == started.binding_message  # the same words on the screen and the phone
    result = await broker.finish(started.flow_id)
    assert isinstance(result, FlowResult)
    assert result.identity.rpps == "10100000011"
    assert result.identity.acr == "eidas1"
    with pytest.raises(AuthError) as again:
        await broker.finish(started.flow_id)
    assert again.value.code == "unknown_flow"


async def test_ciba_interval_and_slow_down_are_respected(
    sim: Simulator, http: httpx.AsyncClient
) -> None:
    now = [1_000_000.0]
    broker = OidcBroker(settings(sim), http, clock=lambda: now[0])
    sim.identity.psc.set_quirks(ciba_interval=5)
    started = await broker.start_ciba("psc", CLAIRE, {})
    assert started.interval == 5
    # asked again too early: the broker does not poll the provider at all
    early = await broker.finish(started.flow_id)
    assert isinstance(early, Pending) and early.interval == 5
    now[0] += 5
    first = await broker.finish(started.flow_id)  # polls: authorization_pending
    assert isinstance(first, Pending) and first.interval == 5
    # the provider's own clock is real: a poll right after is too fast for it
    now[0] += 5
    second = await broker.finish(started.flow_id)
    assert isinstance(second, Pending) and second.interval == 10  # slow_down: +5 s


async def test_ciba_denied_on_the_phone(
    broker: OidcBroker, sim: Simulator, http: httpx.AsyncClient
) -> None:
    sim.identity.psc.set_quirks(ciba_interval=0)
    started = await broker.start_ciba("psc", CLAIRE, {})
    await phone(http, sim.base_url, CLAIRE, decision="deny")
    with pytest.raises(AuthError) as caught:
        await broker.finish(started.flow_id)
    assert caught.value.code == "denied"
    assert caught.value.message_fr == MESSAGES["denied"]


async def test_ciba_expired(sim: Simulator, http: httpx.AsyncClient) -> None:
    now = [1_000_000.0]
    broker = OidcBroker(settings(sim), http, clock=lambda: now[0])
    sim.identity.psc.set_quirks(ciba_interval=0, ciba_expires_in=30)
    started = await broker.start_ciba("psc", CLAIRE, {})
    now[0] += 31
    with pytest.raises(AuthError) as caught:
        await broker.finish(started.flow_id)
    assert caught.value.code == "flow_expired"
    assert "expiré" in caught.value.message_fr


async def test_ciba_unknown_national_id(broker: OidcBroker) -> None:
    with pytest.raises(AuthError) as caught:
        await broker.start_ciba("psc", "19999999999", {})
    assert caught.value.code == "unknown_user"
    with pytest.raises(AuthError) as bad:
        await broker.start_ciba("psc", "12ab", {})
    assert "RPPS" in bad.value.message_fr


async def test_establishment_code_login(broker: OidcBroker, http: httpx.AsyncClient) -> None:
    async with LoopbackReceiver() as receiver:
        started = await broker.start_code("etablissement", receiver.redirect_uri, {})
        await establishment_browser(http, started.authorization_url, "arm.dupont", "demo-arm")
        params = await receiver.wait(5)
    result = await broker.finish(started.flow_id, **params)
    assert isinstance(result, FlowResult)
    assert result.identity.login == "arm.dupont"
    assert result.identity.rpps == ""
    assert result.identity.display_name == "Julie Dupont"


@pytest.mark.parametrize(
    ("quirk", "code"),
    [
        ({"acr": "eidas0"}, "wrong_acr"),
        ({"ttl_s": -120}, "expired"),
        ({"audience": "un-autre-service"}, "wrong_audience"),
    ],
)
async def test_psc_token_refusals(
    broker: OidcBroker, sim: Simulator, http: httpx.AsyncClient, quirk: dict[str, object], code: str
) -> None:
    sim.identity.psc.set_quirks(**quirk)
    with pytest.raises(AuthError) as caught:
        await code_login(broker, http)
    assert caught.value.code == code
    assert caught.value.message_fr == MESSAGES[code]
    assert caught.value.message_fr.startswith("Connexion refusée")


async def test_psc_ciba_wrong_acr_refused(
    broker: OidcBroker, sim: Simulator, http: httpx.AsyncClient
) -> None:
    sim.identity.psc.set_quirks(ciba_interval=0, acr="eidas0")
    started = await broker.start_ciba("psc", CLAIRE, {})
    await phone(http, sim.base_url, CLAIRE)
    with pytest.raises(AuthError) as caught:
        await broker.finish(started.flow_id)
    assert caught.value.code == "wrong_acr"


async def test_code_flow_denied_in_the_browser(broker: OidcBroker, http: httpx.AsyncClient) -> None:
    with pytest.raises(AuthError) as caught:
        await code_login(broker, http, decision="deny")
    assert caught.value.code == "denied"


async def test_wrong_state_burns_the_flow(broker: OidcBroker, http: httpx.AsyncClient) -> None:
    async with LoopbackReceiver() as receiver:
        started = await broker.start_code("psc", receiver.redirect_uri, {})
        await psc_browser(http, started.authorization_url, CLAIRE)
        params = await receiver.wait(5)
    with pytest.raises(AuthError) as caught:
        await broker.finish(started.flow_id, code=params["code"], state="forged")
    assert caught.value.code == "state"
    with pytest.raises(AuthError) as again:
        await broker.finish(started.flow_id, **params)
    assert again.value.code == "unknown_flow"


async def test_wrong_client_secret_is_a_provider_error(
    sim: Simulator, http: httpx.AsyncClient
) -> None:
    broker = OidcBroker(settings(sim, psc_secret="wrong"), http)
    with pytest.raises(AuthError) as caught:
        await code_login(broker, http)
    assert caught.value.code == "provider_error"


async def test_provider_checks_pkce_and_single_use_of_the_code(
    broker: OidcBroker, http: httpx.AsyncClient
) -> None:
    """The simulated PSC refuses a wrong verifier and a replayed code."""
    rp = await broker.relying_party("psc")
    async with LoopbackReceiver() as receiver:
        started = await broker.start_code("psc", receiver.redirect_uri, {})
        await psc_browser(http, started.authorization_url, CLAIRE)
        params = await receiver.wait(5)
    with pytest.raises(AuthError):
        await rp.exchange_code(params["code"], receiver.redirect_uri, "not-the-verifier" * 4)
    with pytest.raises(AuthError):  # burnt by the failed attempt
        await broker.finish(started.flow_id, **params)


async def test_forged_signature_and_rotated_keys(
    broker: OidcBroker, sim: Simulator, http: httpx.AsyncClient
) -> None:
    rp = await broker.relying_party("psc")
    keys = await rp.keys()
    kid = keys.keys[0].kid
    forger = RSAKey.generate_key(2048, auto_kid=False)
    claims = {"iss": sim.psc_issuer, "aud": DEMO_CLIENT_ID, "sub": CLAIRE, "iat": 1, "exp": 2**40}
    forged = jwt.encode({"alg": "RS256", "kid": kid}, claims, forger)
    expect = Expectations(sim.psc_issuer, DEMO_CLIENT_ID, ("eidas1",))
    with pytest.raises(AuthError) as caught:
        await validate_id_token(rp, forged, expect)
    assert caught.value.code == "bad_token"
    # the provider rotates its key: the next login fetches the new JWKS by kid
    sim.identity.psc.rotate_key()
    result = await code_login(broker, http)
    assert isinstance(result, FlowResult)
    assert (await rp.keys()).keys[0].kid != kid


async def test_loopback_receiver_times_out_in_french() -> None:
    async with LoopbackReceiver() as receiver:
        with pytest.raises(AuthError) as caught:
            await receiver.wait(0.05)
    assert caught.value.code == "timeout"
    assert "navigateur" in caught.value.message_fr


async def test_loopback_receiver_ignores_other_paths(http: httpx.AsyncClient) -> None:
    async with LoopbackReceiver() as receiver:
        base = receiver.redirect_uri.rsplit("/", 1)[0]
        assert (await http.get(base + "/favicon.ico")).status_code == 404
        assert (await http.get(receiver.redirect_uri + "?code=c&state=s")).status_code == 200
        assert await asyncio.wait_for(receiver.wait(1), 2) == {"code": "c", "state": "s"}
