"""The room server's side of an OpenID Connect login (back-end for front-end).

The server is the confidential client of the provider: it holds the client
secret and the PKCE verifier, exchanges the code (or polls CIBA), validates
the ID token, reads userinfo, and hands back a :class:`VerifiedIdentity`.
The workstation only opens the authorization URL in the system browser with
its own loopback redirect (RFC 8252), or shows the CIBA binding message, then
calls ``finish``.  Mapping the identity to an account and issuing a session
is the server's (``sas_desk/server/oidc.py``).

Flows live in memory for a bounded time and are consumed once: a finished,
failed or expired flow cannot be replayed.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from sas_desk.services.auth.errors import AuthError
from sas_desk.services.auth.pkce import Pkce
from sas_desk.services.auth.provider import Pending, RelyingParty, TokenSet, discover
from sas_desk.services.auth.tokens import Expectations, validate_id_token
from sas_desk.services.auth.wire import OidcStartAnswer

__all__ = [
    "FlowResult",
    "OidcBroker",
    "ProviderSettings",
    "VerifiedIdentity",
    "loopback_redirect_ok",
    "national_id",
]

log = logging.getLogger("sas_desk.auth")

_CODE_FLOW_TTL_S = 600
_MAX_FLOWS = 2000
_RPPS = re.compile(r"^\d{11}$")


@dataclass(frozen=True)
class ProviderSettings:
    """One provider as the room server uses it (from ``[identity]`` + keyring)."""

    name: str  # "psc" | "etablissement"
    issuer: str
    client_id: str
    client_secret: str = field(default="", repr=False)
    psc: bool = False
    acr: tuple[str, ...] = ()
    scope: str = "openid"
    login_claim: str = "preferred_username"  # establishment: the account's login


@dataclass(frozen=True)
class VerifiedIdentity:
    provider: str
    issuer: str
    subject: str
    rpps: str  # PSC: the RPPS behind the national id ``8`` + RPPS; "" otherwise
    login: str  # establishment IdP: the ``login_claim`` value; "" for PSC
    display_name: str
    acr: str


@dataclass(frozen=True)
class FlowResult:
    identity: VerifiedIdentity
    context: Mapping[str, str]  # what the server attached at start (role, workstation)


@dataclass
class _Flow:
    id: str
    provider: str
    mode: str
    expires: float
    context: Mapping[str, str]
    state: str = ""
    nonce: str = ""
    verifier: str = field(default="", repr=False)
    redirect_uri: str = ""
    auth_req_id: str = field(default="", repr=False)
    interval: int = 5
    next_poll: float = 0.0


def loopback_redirect_ok(uri: str) -> bool:
    """An RFC 8252 loopback redirect: ``http://127.0.0.1:PORT/…`` or ``[::1]``."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "http"
        and parts.hostname in ("127.0.0.1", "::1")
        and port is not None
        and not parts.fragment
        and not parts.username
    )


def national_id(login_hint: str) -> str:
    """PSC's national id (``8`` + RPPS) from an RPPS or a national id."""
    hint = login_hint.strip()
    if _RPPS.match(hint):
        return "8" + hint
    if hint.startswith("8") and _RPPS.match(hint[1:]):
        return hint
    raise AuthError("invalid", message_fr="Numéro RPPS invalide : 11 chiffres attendus.")


def _rpps(nid: str) -> str:
    return nid[1:] if nid.startswith("8") and _RPPS.match(nid[1:]) else ""


class OidcBroker:
    def __init__(
        self,
        providers: Sequence[ProviderSettings],
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
        max_flows: int = _MAX_FLOWS,
    ) -> None:
        self.providers = {p.name: p for p in providers}
        self._http = http
        self._clock = clock
        self._max_flows = max_flows
        self._rps: dict[str, RelyingParty] = {}
        self._flows: dict[str, _Flow] = {}

    def offers(self, provider: str, mode: str) -> bool:
        settings = self.providers.get(provider)
        return settings is not None and (mode == "code" or (mode == "ciba" and settings.psc))

    async def relying_party(self, name: str) -> RelyingParty:
        settings = self.providers.get(name)
        if settings is None:
            raise AuthError("not_configured", f"no provider {name!r}")
        rp = self._rps.get(name)
        if rp is None:
            metadata = await discover(self._http, settings.issuer, psc=settings.psc)
            rp = RelyingParty(self._http, metadata, settings.client_id, settings.client_secret)
            self._rps[name] = rp
        return rp

    def _store(self, flow: _Flow) -> None:
        now = self._clock()
        for flow_id in [k for k, f in self._flows.items() if f.expires < now]:
            del self._flows[flow_id]
        if len(self._flows) >= self._max_flows:
            raise AuthError("provider_unreachable", "too many logins in progress")
        self._flows[flow.id] = flow

    async def start_code(
        self, provider: str, redirect_uri: str, context: Mapping[str, str]
    ) -> OidcStartAnswer:
        if not loopback_redirect_ok(redirect_uri):
            raise AuthError(
                "invalid",
                "redirect_uri is not a loopback address",
                message_fr="Adresse de retour refusée : seule une adresse locale "
                "http://127.0.0.1:PORT/… est admise.",
            )
        settings = self.providers.get(provider)
        if settings is None:
            raise AuthError("not_configured", f"no provider {provider!r}")
        rp = await self.relying_party(provider)
        pkce = Pkce.new()
        flow = _Flow(
            id=secrets.token_urlsafe(24),
            provider=provider,
            mode="code",
            expires=self._clock() + _CODE_FLOW_TTL_S,
            context=dict(context),
            state=secrets.token_urlsafe(24),
            nonce=secrets.token_urlsafe(24),
            verifier=pkce.verifier,
            redirect_uri=redirect_uri,
        )
        url = rp.authorization_url(
            redirect_uri=redirect_uri,
            state=flow.state,
            nonce=flow.nonce,
            code_challenge=pkce.challenge,
            scope=settings.scope,
            acr=" ".join(settings.acr),
        )
        self._store(flow)
        log.info("oidc code flow started with %s", provider)
        return OidcStartAnswer(
            flow_id=flow.id, mode="code", expires_in=_CODE_FLOW_TTL_S, authorization_url=url
        )

    async def start_ciba(
        self, provider: str, login_hint: str, context: Mapping[str, str]
    ) -> OidcStartAnswer:
        settings = self.providers.get(provider)
        if settings is None or not settings.psc:
            raise AuthError("not_configured", f"no CIBA provider {provider!r}")
        nid = national_id(login_hint)
        rp = await self.relying_party(provider)
        binding = f"SAS Desk {secrets.randbelow(10000):04d}"
        started = await rp.ciba_start(
            login_hint=nid,
            binding_message=binding,
            scope=settings.scope,
            acr=" ".join(settings.acr),
        )
        now = self._clock()
        interval = max(0, started.interval)
        flow = _Flow(
            id=secrets.token_urlsafe(24),
            provider=provider,
            mode="ciba",
            expires=now + started.expires_in,
            context=dict(context),
            auth_req_id=started.auth_req_id,
            interval=interval,
            next_poll=now + interval,
        )
        self._store(flow)
        log.info("oidc ciba flow started with %s", provider)
        return OidcStartAnswer(
            flow_id=flow.id,
            mode="ciba",
            expires_in=started.expires_in,
            binding_message=binding,
            interval=interval,
        )

    async def finish(
        self, flow_id: str, *, code: str = "", state: str = "", iss: str = "", error: str = ""
    ) -> FlowResult | Pending:
        """Exchange the code (or poll CIBA) and verify the identity; a refusal
        names its provider (``AuthError.provider``)."""
        provider = self._flows[flow_id].provider if flow_id in self._flows else ""
        try:
            return await self._finish(flow_id, code=code, state=state, iss=iss, error=error)
        except AuthError as exc:
            exc.provider = provider
            raise

    async def _finish(
        self, flow_id: str, *, code: str, state: str, iss: str, error: str
    ) -> FlowResult | Pending:
        flow = self._flows.get(flow_id)
        now = self._clock()
        if flow is None:
            raise AuthError("unknown_flow", "no such flow")
        if now > flow.expires:
            del self._flows[flow_id]
            raise AuthError("flow_expired", "flow expired")
        settings = self.providers[flow.provider]
        rp = await self.relying_party(flow.provider)
        if flow.mode == "ciba":
            if now < flow.next_poll:
                return Pending(max(1, int(flow.next_poll - now + 0.999)))
            try:
                polled = await rp.ciba_poll(flow.auth_req_id, flow.interval)
            except AuthError:
                self._flows.pop(flow_id, None)
                raise
            if isinstance(polled, Pending):
                flow.interval = polled.interval
                flow.next_poll = now + polled.interval
                return Pending(polled.interval)
            del self._flows[flow_id]
            tokens = polled
            nonce = ""
        else:
            del self._flows[flow_id]  # one attempt: a wrong state burns the flow
            if not secrets.compare_digest(state.encode(), flow.state.encode()):
                raise AuthError("state", "state mismatch")
            if iss and iss.rstrip("/") != rp.metadata.issuer.rstrip("/"):
                raise AuthError("wrong_issuer", "authorization response iss mismatch")
            if error:
                raise AuthError("denied", f"authorization error {error[:40]}")
            if not code:
                raise AuthError("invalid", "no code")
            tokens = await rp.exchange_code(code, flow.redirect_uri, flow.verifier)
            nonce = flow.nonce
        identity = await self._identity(settings, rp, tokens, nonce)
        log.info("oidc login verified with %s (acr %s)", flow.provider, identity.acr or "-")
        return FlowResult(identity, flow.context)

    async def _identity(
        self, settings: ProviderSettings, rp: RelyingParty, tokens: TokenSet, nonce: str
    ) -> VerifiedIdentity:
        expect = Expectations(settings.issuer.rstrip("/"), settings.client_id, settings.acr)
        claims = await validate_id_token(
            rp, tokens.id_token, expect, nonce=nonce, clock=self._clock
        )
        info: dict[str, Any] = {}
        if rp.metadata.userinfo_endpoint:
            info = await rp.userinfo(tokens.access_token)
            if info.get("sub") != claims["sub"]:  # OpenID Connect Core §5.3.2
                raise AuthError("bad_token", "userinfo sub differs from the ID token's")
        merged = {**info, **claims}
        subject = str(claims["sub"])
        name = " ".join(
            str(merged[k]) for k in ("given_name", "family_name") if merged.get(k)
        ).strip()
        if settings.psc:
            nid = str(merged.get("SubjectNameID") or subject)
            return VerifiedIdentity(
                provider=settings.name,
                issuer=expect.issuer,
                subject=subject,
                rpps=_rpps(nid),
                login="",
                display_name=name,
                acr=str(claims.get("acr", "")),
            )
        return VerifiedIdentity(
            provider=settings.name,
            issuer=expect.issuer,
            subject=subject,
            rpps="",
            login=str(merged.get(settings.login_claim, "")),
            display_name=name,
            acr=str(claims.get("acr", "")),
        )
