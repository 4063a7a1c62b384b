"""OpenID Connect login on the room server: Pro Santé Connect and the
establishment's identity provider (``docs/room-api.md``, "Login through an
identity provider").

The server is the confidential client (back-end for front-end): it holds the
client secrets, the PKCE verifiers and the provider's tokens
(:class:`~sas_desk.services.auth.broker.OidcBroker`); a workstation only
starts a flow (``POST /v1/session/oidc/start``), opens the authorization URL
in the system browser with its loopback redirect or shows the CIBA binding
message, and finishes it (``POST /v1/session/oidc/finish``).  The verified
identity is mapped to an account (:class:`OidcAuthenticator`: the RPPS for
PSC, the login claim for the establishment), the role must be one of the
account's, and the server issues its own session, exactly as a password login
does.  Every attempt is audited.

Client secrets: the server's keyring (service ``sas-desk``, user
``oidc:<issuer>``), else a systemd credential file
``$CREDENTIALS_DIRECTORY/oidc-psc`` / ``oidc-etablissement``.  Never in the
configuration file, never on the command line.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from litestar import Request, Response, post
from litestar.openapi.datastructures import ResponseSpec

from sas_desk.server.app import (
    _MAX_TEXT,
    ROLES,
    ApiError,
    Room,
    _session_body,
    client_address,
)
from sas_desk.server.settings import SettingsError
from sas_desk.server.store import Account, ServerStore
from sas_desk.services.auth.broker import (
    FlowResult,
    OidcBroker,
    ProviderSettings,
    VerifiedIdentity,
)
from sas_desk.services.auth.demo import DEMO_SECRETS
from sas_desk.services.auth.errors import AuthError
from sas_desk.services.auth.provider import Pending
from sas_desk.services.auth.wire import (
    OidcFinishBody,
    OidcPendingAnswer,
    OidcStartAnswer,
    OidcStartBody,
)
from sas_desk.services.config import IdentitySettings
from sas_desk.services.queues.wire import ErrorBody, SessionBody

__all__ = [
    "KEYRING_SERVICE",
    "OidcAuthenticator",
    "OidcLogins",
    "oidc_handlers",
    "open_logins",
]

log = logging.getLogger("sas_desk.server")

KEYRING_SERVICE = "sas-desk"
_CIBA_PER_MINUTE = 3  # pushes to one professional's phone per minute, at most

#: AuthError code -> (HTTP status, ErrorBody.error)
_STATUS: dict[str, tuple[int, str]] = {
    "wrong_acr": (401, "Unauthorized"),
    "expired": (401, "Unauthorized"),
    "wrong_audience": (401, "Unauthorized"),
    "wrong_issuer": (401, "Unauthorized"),
    "bad_token": (401, "Unauthorized"),
    "nonce": (401, "Unauthorized"),
    "state": (401, "Unauthorized"),
    "denied": (401, "Unauthorized"),
    "unknown_subject": (403, "Forbidden"),
    "account_disabled": (403, "Forbidden"),
    "role_forbidden": (403, "Forbidden"),
    "unknown_flow": (410, "Gone"),
    "flow_expired": (410, "Gone"),
    "invalid": (422, "Invalid"),
    "unknown_user": (422, "Invalid"),
    "not_configured": (422, "Invalid"),
    "too_many": (429, "TooManyAttempts"),
    "provider_error": (502, "ProviderError"),
    "provider_unreachable": (503, "Unavailable"),
}


class OidcAuthenticator:
    """A verified identity -> the room's account (enabled), or a refusal."""

    def __init__(self, store: ServerStore) -> None:
        self.store = store

    async def account_for(self, identity: VerifiedIdentity) -> Account:
        account: Account | None = None
        if identity.rpps:
            matches = [a for a in await self.store.accounts() if a.rpps == identity.rpps]
            account = matches[0] if len(matches) == 1 else None
            if len(matches) > 1:
                log.warning("several accounts carry one RPPS: login refused")
        elif identity.login:
            found = await self.store.account(identity.login)
            account = found[0] if found is not None else None
        if account is None:
            raise AuthError("unknown_subject", f"{identity.provider} subject has no account")
        if account.disabled:
            raise AuthError("account_disabled", f"account {account.login} is disabled")
        return account


@dataclass
class OidcLogins:
    """What the OIDC routes need: the broker, the account mapping, the HTTP
    client to the providers (closed with the server)."""

    broker: OidcBroker
    authenticator: OidcAuthenticator
    http: httpx.AsyncClient
    clock: Callable[[], float] = time.monotonic
    _ciba_starts: dict[str, deque[float]] = field(default_factory=dict)

    async def close(self) -> None:
        await self.http.aclose()

    def ciba_allowed(self, login_hint: str) -> bool:
        now = self.clock()
        starts = self._ciba_starts.setdefault(login_hint, deque())
        while starts and now - starts[0] > 60:
            starts.popleft()
        if len(starts) >= _CIBA_PER_MINUTE:
            return False
        starts.append(now)
        if len(self._ciba_starts) > 10_000:
            self._ciba_starts = {k: v for k, v in self._ciba_starts.items() if v}
        return True


def client_secret(name: str, issuer: str) -> str:
    """From the keyring, else the systemd credential ``oidc-<name>``; "" if none."""
    try:
        import keyring

        secret = keyring.get_password(KEYRING_SERVICE, f"oidc:{issuer}")
        if secret:
            return secret
    except Exception as exc:  # no usable keyring: the credential file remains
        log.debug("keyring lookup failed: %s", type(exc).__name__)
    directory = os.environ.get("CREDENTIALS_DIRECTORY", "")
    if directory:
        path = Path(directory) / f"oidc-{name}"
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError:
            pass
    return ""


def open_logins(
    identity: IdentitySettings,
    store: ServerStore,
    *,
    secret: Callable[[str, str], str] = client_secret,
    loopback: bool = True,
) -> OidcLogins:
    """The OIDC logins of ``[identity]``.  A server that listens beyond this
    machine (``loopback`` False: a real room) refuses the demo simulator's
    providers: an ``http://`` issuer or a demo client secret."""
    if not loopback:
        _no_simulator(identity, secret)
    providers: list[ProviderSettings] = []
    if identity.psc:
        psc_secret = secret("psc", identity.psc_issuer)
        if not psc_secret:
            raise SettingsError(
                "Serveur : secret du client Pro Santé Connect introuvable (trousseau "
                f"« {KEYRING_SERVICE} », utilisateur « oidc:{identity.psc_issuer} », ou "
                "fichier d'identifiant systemd oidc-psc)."
            )
        providers.append(
            ProviderSettings(
                name="psc",
                issuer=identity.psc_issuer,
                client_id=identity.psc_client_id,
                client_secret=psc_secret,
                psc=True,
                acr=tuple(identity.psc_acr.split()),
                scope=identity.psc_scope,
            )
        )
    if identity.establishment:
        providers.append(
            ProviderSettings(
                name="etablissement",
                issuer=identity.establishment_issuer,
                client_id=identity.establishment_client_id,
                client_secret=secret("etablissement", identity.establishment_issuer),
                acr=tuple(identity.establishment_acr.split()),
                scope=identity.establishment_scope,
                login_claim=identity.establishment_login_claim,
            )
        )
    http = httpx.AsyncClient(timeout=httpx.Timeout(10.0), follow_redirects=False)
    return OidcLogins(OidcBroker(providers, http), OidcAuthenticator(store), http)


def _no_simulator(identity: IdentitySettings, secret: Callable[[str, str], str]) -> None:
    for name, issuer in (
        ("psc", identity.psc_issuer),
        ("etablissement", identity.establishment_issuer),
    ):
        if not issuer:
            continue
        if issuer.startswith("http://") or secret(name, issuer) in DEMO_SECRETS:
            raise SettingsError(
                f"Serveur : le fournisseur d'identité {issuer} est celui du simulateur de "
                "démonstration (adresse http:// ou secret de démonstration) : refusé pour un "
                "serveur qui écoute hors de cette machine."
            )


def _refusal(exc: AuthError) -> ApiError:
    status, error = _STATUS.get(exc.code, (502, "ProviderError"))
    return ApiError(status, ErrorBody(error=error, code=exc.code, message_fr=exc.message_fr))


_E = ErrorBody


def oidc_handlers(room: Room, logins: OidcLogins) -> list[Any]:
    """The routes, for :func:`sas_desk.server.app.create_app`."""
    responses = {
        401: ResponseSpec(_E, description="Jeton d'identité refusé (acr, expiration, audience…)"),
        403: ResponseSpec(_E, description="Identité sans compte, compte désactivé ou rôle refusé"),
        410: ResponseSpec(_E, description="Demande de connexion inconnue ou expirée"),
        422: ResponseSpec(_E, description="Requête invalide ou mode non configuré"),
        429: ResponseSpec(_E, description="Trop de demandes e-CPS pour ce professionnel"),
        502: ResponseSpec(_E, description="Le fournisseur d'identité a refusé"),
        503: ResponseSpec(_E, description="Fournisseur d'identité injoignable"),
    }

    async def refuse(
        request: Request[Any, Any, Any], exc: AuthError, provider: str, subject: str = ""
    ) -> ApiError:
        log.info("oidc login refused: %s", exc)
        await room.audit(
            request,
            None,
            "login",
            login=subject or f"oidc:{provider}",
            outcome=exc.code,
            detail={"via": provider},
        )
        return _refusal(exc)

    @post("/v1/session/oidc/start", status_code=200, responses=responses, tags=["session"])
    async def oidc_start(request: Request[Any, Any, Any], data: OidcStartBody) -> OidcStartAnswer:
        """Start a login through Pro Santé Connect (``code`` with the
        workstation's loopback redirect, or ``ciba``) or the establishment's
        identity provider (``code``)."""
        workstation = data.workstation.strip()
        if data.role not in ROLES:
            raise _refusal(AuthError("invalid", message_fr=f"Rôle inconnu : « {data.role[:40]} »."))
        if not workstation or len(workstation) > _MAX_TEXT:
            raise _refusal(AuthError("invalid", message_fr="Nom du poste manquant ou trop long."))
        if not logins.broker.offers(data.provider, data.mode):
            raise _refusal(AuthError("not_configured", f"{data.provider}/{data.mode}"))
        context = {"role": data.role, "workstation": workstation}
        try:
            if data.mode == "ciba":
                if not logins.ciba_allowed(data.login_hint.strip()):
                    raise AuthError(
                        "too_many",
                        message_fr="Trop de demandes de validation e-CPS pour ce professionnel : "
                        "attendez une minute.",
                    )
                return await logins.broker.start_ciba(data.provider, data.login_hint, context)
            return await logins.broker.start_code(data.provider, data.redirect_uri, context)
        except AuthError as exc:
            raise await refuse(request, exc, data.provider) from None

    @post(
        "/v1/session/oidc/finish",
        status_code=200,
        responses={
            **responses,
            202: ResponseSpec(OidcPendingAnswer, description="CIBA : en attente"),
        },
        tags=["session"],
    )
    async def oidc_finish(
        request: Request[Any, Any, Any], data: OidcFinishBody
    ) -> Response[SessionBody | OidcPendingAnswer]:
        """Finish the login: the server exchanges the code (or polls CIBA),
        validates the ID token, maps the identity to an account and opens a
        session for the role asked at start."""
        try:
            result = await logins.broker.finish(
                data.flow_id, code=data.code, state=data.state, iss=data.iss, error=data.error
            )
        except AuthError as exc:
            raise await refuse(request, exc, exc.provider or "?") from None
        if isinstance(result, Pending):
            return Response(OidcPendingAnswer(interval=result.interval), status_code=202)
        return Response(await _open(request, result), status_code=200)

    async def _open(request: Request[Any, Any, Any], result: FlowResult) -> SessionBody:
        identity = result.identity
        subject = f"rpps:{identity.rpps}" if identity.rpps else identity.login or identity.subject
        try:
            account = await logins.authenticator.account_for(identity)
            if result.context["role"] not in account.roles:
                raise AuthError(
                    "role_forbidden",
                    message_fr=f"Le compte {account.login} ne peut pas travailler comme "
                    f"{result.context['role']}.",
                )
        except AuthError as exc:
            raise await refuse(request, exc, identity.provider, subject) from None
        issued = await room.sessions.open(
            account,
            result.context["role"],
            result.context["workstation"],
            client_address(request),
            room.clock.now(),
        )
        await room.audit(
            request,
            issued.principal,
            "login",
            detail={"via": identity.provider, "acr": identity.acr},
        )
        return _session_body(issued)

    return [oidc_start, oidc_finish]
