"""An OpenID provider seen from its relying party: discovery, the
authorization URL, the token endpoint (code + PKCE, CIBA poll), userinfo and
its signing keys.

Pro Santé Connect publishes its discovery document under a non-standard name
(``{issuer}/.well-known/wallet-openid-configuration``); other providers use
``{issuer}/.well-known/openid-configuration``.  The document's ``issuer``
must be the configured issuer exactly (OpenID Connect Discovery §4.3).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import msgspec
from joserfc.jwk import KeySet

from sas_desk.services.auth.errors import AuthError

__all__ = [
    "CIBA_GRANT",
    "PSC_DISCOVERY",
    "STANDARD_DISCOVERY",
    "CibaStart",
    "Pending",
    "ProviderMetadata",
    "RelyingParty",
    "TokenSet",
    "discover",
]

log = logging.getLogger("sas_desk.auth")

PSC_DISCOVERY = "/.well-known/wallet-openid-configuration"
STANDARD_DISCOVERY = "/.well-known/openid-configuration"
CIBA_GRANT = "urn:openid:params:grant-type:ciba"


class ProviderMetadata(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str = ""
    end_session_endpoint: str = ""
    backchannel_authentication_endpoint: str = ""
    code_challenge_methods_supported: list[str] = []
    id_token_signing_alg_values_supported: list[str] = []


class TokenSet(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    access_token: str
    id_token: str = ""
    token_type: str = "Bearer"
    expires_in: int = 0
    refresh_token: str = ""
    scope: str = ""


class CibaStart(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    auth_req_id: str
    expires_in: int
    interval: int = 5  # CIBA §7.3: 5 s when the provider says nothing


class _OAuthError(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    error: str = ""
    error_description: str = ""


@dataclass(frozen=True)
class Pending:
    """CIBA: not approved yet; poll again after ``interval`` seconds."""

    interval: int


async def _get_json(http: httpx.AsyncClient, url: str, what: str) -> bytes:
    try:
        response = await http.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise AuthError("provider_unreachable", f"{what}: {type(exc).__name__}") from exc
    if response.status_code != 200:
        raise AuthError("provider_error", f"{what}: HTTP {response.status_code}")
    return response.content


async def discover(http: httpx.AsyncClient, issuer: str, *, psc: bool) -> ProviderMetadata:
    """Fetch and check the provider's discovery document."""
    issuer = issuer.rstrip("/")
    url = issuer + (PSC_DISCOVERY if psc else STANDARD_DISCOVERY)
    raw = await _get_json(http, url, "discovery")
    try:
        metadata = msgspec.json.decode(raw, type=ProviderMetadata)
    except msgspec.DecodeError as exc:
        raise AuthError("provider_error", f"discovery document unreadable: {exc}") from exc
    if metadata.issuer.rstrip("/") != issuer:
        raise AuthError("wrong_issuer", f"discovery names issuer {metadata.issuer!r}")
    if (
        metadata.code_challenge_methods_supported
        and "S256" not in metadata.code_challenge_methods_supported
    ):
        raise AuthError("provider_error", "the provider does not offer PKCE S256")
    return metadata


class RelyingParty:
    """Our side of one provider: a client id, and a secret when we are the
    confidential client (the room server; never a workstation)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        metadata: ProviderMetadata,
        client_id: str,
        client_secret: str = "",
    ) -> None:
        self.http = http
        self.metadata = metadata
        self.client_id = client_id
        self._secret = client_secret
        self._keys: KeySet | None = None

    def __repr__(self) -> str:  # never the secret
        return f"RelyingParty({self.metadata.issuer!r}, {self.client_id!r})"

    def authorization_url(
        self,
        *,
        redirect_uri: str,
        state: str,
        nonce: str,
        code_challenge: str,
        scope: str,
        acr: str = "",
    ) -> str:
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
            "nonce": nonce,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
        }
        if acr:
            params["acr_values"] = acr
        endpoint = self.metadata.authorization_endpoint
        return endpoint + ("&" if "?" in endpoint else "?") + urlencode(params)

    def _auth(self) -> httpx.BasicAuth | None:
        return httpx.BasicAuth(self.client_id, self._secret) if self._secret else None

    async def _post(self, url: str, form: dict[str, str], what: str) -> httpx.Response:
        if not self._secret:
            form = {**form, "client_id": self.client_id}
        try:
            return await self.http.post(
                url, data=form, auth=self._auth() or httpx.USE_CLIENT_DEFAULT
            )
        except httpx.HTTPError as exc:
            raise AuthError("provider_unreachable", f"{what}: {type(exc).__name__}") from exc

    @staticmethod
    def _error(response: httpx.Response) -> _OAuthError:
        try:
            return msgspec.json.decode(response.content, type=_OAuthError)
        except msgspec.DecodeError:
            return _OAuthError()

    async def exchange_code(self, code: str, redirect_uri: str, verifier: str) -> TokenSet:
        response = await self._post(
            self.metadata.token_endpoint,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
            "token",
        )
        if response.status_code != 200:
            error = self._error(response)
            raise AuthError(
                "provider_error", f"token endpoint: {error.error or response.status_code}"
            )
        return self._tokens(response)

    @staticmethod
    def _tokens(response: httpx.Response) -> TokenSet:
        try:
            tokens = msgspec.json.decode(response.content, type=TokenSet)
        except msgspec.DecodeError as exc:
            raise AuthError("provider_error", "token answer unreadable") from exc
        if not tokens.id_token:
            raise AuthError("provider_error", "no id_token in the token answer")
        return tokens

    async def ciba_start(
        self, *, login_hint: str, binding_message: str, scope: str, acr: str = ""
    ) -> CibaStart:
        endpoint = self.metadata.backchannel_authentication_endpoint
        if not endpoint:
            raise AuthError("not_configured", "the provider offers no CIBA endpoint")
        form = {"scope": scope, "login_hint": login_hint, "binding_message": binding_message}
        if acr:
            form["acr_values"] = acr
        response = await self._post(endpoint, form, "ciba")
        if response.status_code != 200:
            error = self._error(response)
            if error.error == "unknown_user_id":
                raise AuthError("unknown_user", "login_hint unknown")
            raise AuthError("provider_error", f"ciba: {error.error or response.status_code}")
        try:
            return msgspec.json.decode(response.content, type=CibaStart)
        except msgspec.DecodeError as exc:
            raise AuthError("provider_error", "ciba answer unreadable") from exc

    async def ciba_poll(self, auth_req_id: str, interval: int) -> TokenSet | Pending:
        """One poll of the token endpoint (CIBA §10.1, poll mode)."""
        response = await self._post(
            self.metadata.token_endpoint,
            {"grant_type": CIBA_GRANT, "auth_req_id": auth_req_id},
            "ciba poll",
        )
        if response.status_code == 200:
            return self._tokens(response)
        error = self._error(response).error
        if error == "authorization_pending":
            return Pending(interval)
        if error == "slow_down":
            return Pending(interval + 5)  # CIBA §11: increase by at least 5 s
        if error == "expired_token":
            raise AuthError("flow_expired", "auth_req_id expired")
        if error == "access_denied":
            raise AuthError("denied", "the user refused on the e-CPS app")
        raise AuthError("provider_error", f"ciba poll: {error or response.status_code}")

    async def userinfo(self, access_token: str) -> dict[str, Any]:
        if not self.metadata.userinfo_endpoint:
            return {}
        try:
            response = await self.http.get(
                self.metadata.userinfo_endpoint,
                headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise AuthError("provider_unreachable", f"userinfo: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise AuthError("provider_error", f"userinfo: HTTP {response.status_code}")
        try:
            claims = msgspec.json.decode(response.content)
        except msgspec.DecodeError as exc:
            raise AuthError("provider_error", "userinfo unreadable") from exc
        if not isinstance(claims, dict):
            raise AuthError("provider_error", "userinfo is not an object")
        return claims

    async def keys(self, *, refresh: bool = False) -> KeySet:
        """The provider's signing keys (cached; ``refresh`` after a rotation)."""
        if self._keys is None or refresh:
            raw = await _get_json(self.http, self.metadata.jwks_uri, "jwks")
            try:
                self._keys = KeySet.import_key_set(msgspec.json.decode(raw))
            except (msgspec.DecodeError, ValueError, KeyError, TypeError) as exc:
                raise AuthError("provider_error", "jwks unreadable") from exc
        return self._keys
