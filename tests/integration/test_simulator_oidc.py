"""The simulated identity providers over HTTP: PSC's discovery path and
claims, what they refuse (no PKCE, no client secret, unknown national id),
the e-CPS page and the test quirks."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from sas_desk.simulator.oidc import DEMO_CLIENT_ID, DEMO_PSC_SECRET
from sas_desk.simulator.server import Simulator


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator() as simulator:
        yield simulator


@pytest.fixture
def http(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client
    sim.identity.psc.reset()


def test_psc_discovery_has_the_wallet_name_and_ciba(sim: Simulator, http: httpx.Client) -> None:
    doc = http.get(sim.psc_issuer + "/.well-known/wallet-openid-configuration").json()
    assert doc["issuer"] == sim.psc_issuer
    assert doc["issuer"].endswith("/auth/realms/esante-wallet")
    assert doc["token_endpoint"] == sim.psc_issuer + "/protocol/openid-connect/token"
    assert doc["jwks_uri"] == sim.psc_issuer + "/protocol/openid-connect/certs"
    assert doc["backchannel_authentication_endpoint"].endswith("/ext/ciba/auth")
    assert doc["backchannel_token_delivery_modes_supported"] == ["poll"]
    assert doc["acr_values_supported"] == ["eidas1"]
    assert "S256" in doc["code_challenge_methods_supported"]
    # PSC has no standard discovery name; the establishment IdP has
    assert http.get(sim.psc_issuer + "/.well-known/openid-configuration").status_code == 404
    etab = http.get(sim.establishment_issuer + "/.well-known/openid-configuration").json()
    assert etab["issuer"] == sim.establishment_issuer
    assert "backchannel_authentication_endpoint" not in etab
    keys = http.get(doc["jwks_uri"]).json()["keys"]
    assert keys[0]["kty"] == "RSA" and "d" not in keys[0]


def test_authorization_requires_pkce_s256(sim: Simulator, http: httpx.Client) -> None:
    params = {
        "response_type": "code",
        "client_id": DEMO_CLIENT_ID,
        "redirect_uri": "http://127.0.0.1:5999/callback",
        "scope": "openid scope_all",
        "state": "s1",
        "code_challenge": "abc",
        "code_challenge_method": "plain",
    }
    answer = http.get(sim.base_url + "/wallet/auth", params=params)
    assert answer.status_code == 302
    location = httpx.URL(answer.headers["location"])
    assert location.params["error"] == "invalid_request"
    assert location.params["state"] == "s1"
    stranger = http.get(
        sim.base_url + "/wallet/auth", params={**params, "redirect_uri": "https://evil.example/cb"}
    )
    assert stranger.status_code == 400  # never redirected to an unregistered address


def test_ciba_needs_the_client_secret_and_a_known_user(sim: Simulator, http: httpx.Client) -> None:
    url = sim.psc_issuer + "/protocol/openid-connect/ext/ciba/auth"
    form = {"scope": "openid scope_all", "login_hint": "810100000011", "binding_message": "x"}
    assert http.post(url, data=form, auth=(DEMO_CLIENT_ID, "wrong")).status_code == 401
    unknown = http.post(
        url, data={**form, "login_hint": "899999999999"}, auth=(DEMO_CLIENT_ID, DEMO_PSC_SECRET)
    )
    assert unknown.json()["error"] == "unknown_user_id"
    ok = http.post(url, data=form, auth=(DEMO_CLIENT_ID, DEMO_PSC_SECRET)).json()
    assert ok["expires_in"] > 0 and ok["interval"] == 5
    token = sim.psc_issuer + "/protocol/openid-connect/token"
    poll = {"grant_type": "urn:openid:params:grant-type:ciba", "auth_req_id": ok["auth_req_id"]}
    first = http.post(token, data=poll, auth=(DEMO_CLIENT_ID, DEMO_PSC_SECRET))
    assert first.json()["error"] == "authorization_pending"
    second = http.post(token, data=poll, auth=(DEMO_CLIENT_ID, DEMO_PSC_SECRET))
    assert second.json()["error"] == "slow_down"
    page = http.get(sim.base_url + "/ecps", params={"user": "810100000011"})
    assert "Valider" in page.text and ">x<" in page.text


def test_userinfo_carries_the_psc_claims(sim: Simulator, http: httpx.Client) -> None:
    sim.identity.psc.set_quirks(ciba_interval=0)
    creds = (DEMO_CLIENT_ID, DEMO_PSC_SECRET)
    start = http.post(
        sim.psc_issuer + "/protocol/openid-connect/ext/ciba/auth",
        data={"scope": "openid scope_all", "login_hint": "810100000037", "binding_message": "b"},
        auth=creds,
    ).json()
    pending = http.get(sim.base_url + "/ecps/pending", params={"user": "810100000037"}).json()
    http.post(
        sim.base_url + "/ecps/approve",
        data={"request_id": pending["requests"][0]["request_id"], "decision": "approve"},
    )
    tokens = http.post(
        sim.psc_issuer + "/protocol/openid-connect/token",
        data={
            "grant_type": "urn:openid:params:grant-type:ciba",
            "auth_req_id": start["auth_req_id"],
        },
        auth=creds,
    ).json()
    info = http.get(
        sim.psc_issuer + "/protocol/openid-connect/userinfo",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    ).json()
    assert info["SubjectNameID"] == "810100000037"
    assert info["SubjectRefPro"]["exercices"][0]["codeProfession"] == "40"
    assert info["Acces_Regulation_Medicale"] == "VRAI"
    assert (
        http.get(
            sim.psc_issuer + "/protocol/openid-connect/userinfo",
            headers={"Authorization": "Bearer nope"},
        ).status_code
        == 401
    )


def test_admin_quirks_endpoint(sim: Simulator, http: httpx.Client) -> None:
    ok = http.post(
        sim.base_url + "/_admin/oidc",
        json={"provider": "psc", "acr": "eidas0"},
        headers=sim.admin_headers,
    )
    assert ok.status_code == 200
    assert sim.identity.psc.quirks.acr == "eidas0"
    bad = http.post(
        sim.base_url + "/_admin/oidc",
        json={"provider": "psc", "colour": "red"},
        headers=sim.admin_headers,
    )
    assert bad.status_code == 400
