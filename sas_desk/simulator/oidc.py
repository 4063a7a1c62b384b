"""The simulated identity providers: Pro Santé Connect and an establishment IdP.

Both are OpenID Connect providers served by the simulator on loopback, so the
whole login (browser with a loopback redirect, or CIBA) runs offline and in CI.

**Pro Santé Connect** (issuer ``{simulator}/auth/realms/esante-wallet``), with
the paths of the real Keycloak realm:

- ``GET {issuer}/.well-known/wallet-openid-configuration``: the discovery
  document (PSC's non-standard name);
- ``GET {simulator}/wallet/auth``: the authorization endpoint (on its own
  "wallet" path, as PSC's is on its own host): ``response_type=code``,
  ``client_id``, ``redirect_uri`` (registered, or any loopback port for a
  client that allows loopback redirects, RFC 8252 §7.3), ``scope`` with
  ``openid``, ``state``, ``nonce``, ``acr_values``, and PKCE
  ``code_challenge`` + ``code_challenge_method=S256`` (required).  The page
  asks for the national id (e-CPS); ``POST /wallet/auth/login`` sends a push
  to the e-CPS app and ``GET /wallet/auth/wait?session=…`` redirects to the
  client once the professional approved (``error=access_denied`` if refused);
- ``POST {issuer}/protocol/openid-connect/token``: ``authorization_code``
  (code used once, bound to client, redirect and PKCE verifier) and
  ``urn:openid:params:grant-type:ciba`` (``authorization_pending``,
  ``slow_down`` when polled faster than the interval, ``expired_token``,
  ``access_denied``).  Confidential clients authenticate with
  ``client_secret_basic`` or ``client_secret_post``;
- ``POST {issuer}/protocol/openid-connect/ext/ciba/auth``: CIBA in poll mode
  (``login_hint`` = national id, ``binding_message``, ``scope=openid scope_all``,
  ``acr_values=eidas1``) → ``{"auth_req_id", "expires_in", "interval"}``;
- ``GET {issuer}/protocol/openid-connect/certs`` (JWKS, RS256),
  ``GET|POST …/userinfo`` (PSC claims: ``SubjectNameID``, ``SubjectRefPro``,
  ``Acces_Regulation_Medicale``, ``authMode``…), ``GET …/logout``.

The **e-CPS app** is a page: ``GET /ecps?user=NATIONAL_ID`` (HTML, the pending
requests with their binding message), ``GET /ecps/pending?user=…`` (the same
as JSON) and ``POST /ecps/approve`` (``request_id``, ``decision=approve|deny``).
Tests drive it over HTTP, as a professional taps the phone.

**The establishment IdP** (issuer ``{simulator}/idp/realms/etablissement``):
standard discovery ``{issuer}/.well-known/openid-configuration``, a
login/password page at ``{issuer}/protocol/openid-connect/auth`` (code +
PKCE S256), token, userinfo and certs under the same paths as PSC.

``POST /_admin/oidc`` (JSON ``{"provider": "psc"|"etablissement", "acr",
"audience", "ttl_s", "ciba_interval", "ciba_expires_in"}``; ``null`` clears)
makes the next tokens carry a wrong ``acr``, another audience or an expiry in
the past, so the refusals of the relying party can be tested.

Test users: :data:`PSC_USERS` and :data:`ESTABLISHMENT_USERS`.  The demo
client is :data:`DEMO_CLIENT_ID` with :data:`DEMO_PSC_SECRET` /
:data:`DEMO_ESTABLISHMENT_SECRET` (the room server's; never a workstation's).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from sas_desk.simulator.server import Query, Request, Response, json_response

__all__ = [
    "CIBA_GRANT",
    "DEMO_CLIENT_ID",
    "DEMO_ESTABLISHMENT_SECRET",
    "DEMO_PSC_SECRET",
    "ESTABLISHMENT_REALM",
    "ESTABLISHMENT_USERS",
    "PSC_REALM",
    "PSC_USERS",
    "IdentityProviders",
    "Provider",
    "SimClient",
    "SimUser",
]

PSC_REALM = "/auth/realms/esante-wallet"
PSC_DISCOVERY = "/.well-known/wallet-openid-configuration"
PSC_WALLET = "/wallet"
ECPS_APP = "/ecps"
ESTABLISHMENT_REALM = "/idp/realms/etablissement"
STANDARD_DISCOVERY = "/.well-known/openid-configuration"
OIDC = "/protocol/openid-connect"
CIBA_GRANT = "urn:openid:params:grant-type:ciba"

# the room server refuses these beyond loopback (services/auth/demo.py)
from sas_desk.services.auth.demo import (  # noqa: E402
    DEMO_CLIENT_ID,
    DEMO_ESTABLISHMENT_SECRET,
    DEMO_PSC_SECRET,
)

_CODE_TTL_S = 60
_TOKEN_TTL_S = 300
_AUTH_SESSION_TTL_S = 600
_CIBA_TTL_S = 120
_CIBA_INTERVAL_S = 5
_BINDING_MAX = 64


@dataclass(frozen=True)
class SimUser:
    """A professional at PSC (``login`` = national id ``8`` + RPPS) or an
    employee at the establishment IdP (``login`` = username, ``password``)."""

    login: str
    given_name: str
    family_name: str
    password: str = ""
    profession: str = ""  # TRE_G15: 10 médecin, 40 chirurgien-dentiste
    profession_label: str = ""
    regulation_access: bool = False  # Acces_Regulation_Medicale

    @property
    def rpps(self) -> str:
        return self.login[1:] if self.login.startswith("8") else ""


PSC_USERS: tuple[SimUser, ...] = (
    SimUser("810100000011", "Claire", "Martin", profession="10", profession_label="Médecin",
            regulation_access=True),
    SimUser("810100000029", "Paul", "Bernard", profession="10", profession_label="Médecin",
            regulation_access=True),
    SimUser("810100000037", "Inès", "Moreau", profession="40",
            profession_label="Chirurgien-Dentiste", regulation_access=True),
    SimUser("810100000052", "Léa", "Roux", profession="10", profession_label="Médecin",
            regulation_access=True),
    # a professional PSC knows and no room account has (tests: unknown RPPS)
    SimUser("810100000045", "Hugo", "Petit", profession="10", profession_label="Médecin"),
)  # fmt: skip

ESTABLISHMENT_USERS: tuple[SimUser, ...] = (
    SimUser("arm.dupont", "Julie", "Dupont", password="demo-arm"),
    SimUser("osnp.garcia", "Karim", "Garcia", password="demo-osnp"),
    SimUser("sup.leroy", "Anne", "Leroy", password="demo-sup"),
)


@dataclass(frozen=True)
class SimClient:
    """A registered relying party: a confidential client when it has a secret;
    ``loopback`` allows ``http://127.0.0.1:ANY/…`` redirects (RFC 8252)."""

    client_id: str
    secret: str = ""
    redirect_uris: tuple[str, ...] = ()
    loopback: bool = True

    def redirect_allowed(self, uri: str) -> bool:
        if uri in self.redirect_uris:
            return True
        if not self.loopback:
            return False
        parts = urlsplit(uri)
        return (
            parts.scheme == "http"
            and parts.hostname in ("127.0.0.1", "::1")
            and parts.port is not None
            and not parts.fragment
        )


@dataclass
class Quirks:
    """What the next tokens carry instead of the right values (tests)."""

    acr: str | None = None
    audience: str | None = None
    ttl_s: int | None = None
    ciba_interval: int | None = None
    ciba_expires_in: int | None = None


@dataclass
class _AuthSession:
    id: str
    client_id: str
    redirect_uri: str
    state: str
    nonce: str
    challenge: str
    scope: str
    acr: str
    created: float
    user: SimUser | None = None
    approval: str = ""  # e-CPS approval id (PSC)


@dataclass
class _Grant:
    code: str
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str
    scope: str
    acr: str
    user: SimUser
    expires: float
    used: bool = False


@dataclass
class _Approval:
    """A push to the professional's e-CPS app."""

    id: str
    user: SimUser
    client_id: str
    binding_message: str
    kind: str  # "browser" | "ciba"
    created: float
    status: str = "pending"  # approved | denied


@dataclass
class _Ciba:
    auth_req_id: str
    client_id: str
    approval: str
    scope: str
    acr: str
    expires: float
    interval: int
    last_poll: float | None = None
    done: bool = False


@dataclass
class Provider:
    """One OpenID provider's state (thread-safe: the simulator is threaded)."""

    name: str
    realm: str
    discovery: str
    users: tuple[SimUser, ...]
    clients: tuple[SimClient, ...]
    psc: bool
    clock: Callable[[], float] = time.time
    quirks: Quirks = field(default_factory=Quirks)

    def __post_init__(self) -> None:
        self._signing_key: RSAKey | None = None  # made on first use: most simulators never sign
        self._lock = threading.Lock()
        self._key_lock = threading.Lock()
        self._sessions: dict[str, _AuthSession] = {}
        self._grants: dict[str, _Grant] = {}
        self._access: dict[str, tuple[SimUser, float]] = {}
        self._approvals: dict[str, _Approval] = {}
        self._ciba: dict[str, _Ciba] = {}

    # ----------------------------------------------------------------- helpers

    @property
    def _key(self) -> RSAKey:
        key = self._signing_key
        if key is None:
            with self._key_lock:
                if self._signing_key is None:
                    self._signing_key = RSAKey.generate_key(
                        2048, parameters={"use": "sig", "alg": "RS256"}, auto_kid=True
                    )
                key = self._signing_key
        return key

    def rotate_key(self) -> None:
        """A new signing key (tests: the relying party must fetch the JWKS again)."""
        with self._key_lock:
            self._signing_key = None

    def issuer(self, request: Request) -> str:
        return request.origin + self.realm

    def user(self, login: str) -> SimUser | None:
        return next((u for u in self.users if u.login == login), None)

    def client(self, client_id: str) -> SimClient | None:
        return next((c for c in self.clients if c.client_id == client_id), None)

    def set_quirks(self, **values: Any) -> None:
        with self._lock:
            for name, value in values.items():
                if not hasattr(self.quirks, name):
                    raise ValueError(f"unknown quirk {name}")
                setattr(self.quirks, name, value)

    def clear_quirks(self) -> None:
        with self._lock:
            self.quirks = Quirks()

    def reset(self) -> None:
        """No quirks and no pending request (between tests)."""
        with self._lock:
            self.quirks = Quirks()
            self._sessions.clear()
            self._approvals.clear()
            self._ciba.clear()

    def authorization_endpoint(self, request: Request) -> str:
        if self.psc:
            return request.origin + PSC_WALLET + "/auth"
        return self.issuer(request) + OIDC + "/auth"

    def metadata(self, request: Request) -> dict[str, Any]:
        issuer = self.issuer(request)
        base = issuer + OIDC
        document: dict[str, Any] = {
            "issuer": issuer,
            "authorization_endpoint": self.authorization_endpoint(request),
            "token_endpoint": base + "/token",
            "userinfo_endpoint": base + "/userinfo",
            "jwks_uri": base + "/certs",
            "end_session_endpoint": base + "/logout",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "profile"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "acr", "nonce",
                                 "given_name", "family_name", "preferred_username"],
        }  # fmt: skip
        if self.psc:
            document["grant_types_supported"] = ["authorization_code", CIBA_GRANT]
            document["scopes_supported"] = ["openid", "scope_all", "rpps", "identity", "eidas1"]
            document["acr_values_supported"] = ["eidas1"]
            document["backchannel_authentication_endpoint"] = base + "/ext/ciba/auth"
            document["backchannel_token_delivery_modes_supported"] = ["poll"]
            document["backchannel_user_code_parameter_supported"] = False
            document["claims_supported"] += ["SubjectNameID", "SubjectRefPro"]
        return document

    # ----------------------------------------------------------------- tokens

    def _tokens(
        self, request: Request, client_id: str, user: SimUser, nonce: str, scope: str, acr: str
    ) -> dict[str, Any]:
        now = self.clock()
        q = self.quirks
        ttl = q.ttl_s if q.ttl_s is not None else _TOKEN_TTL_S
        claims: dict[str, Any] = {
            "iss": self.issuer(request),
            "sub": user.login,
            "aud": q.audience if q.audience is not None else client_id,
            "azp": client_id,
            "iat": int(now) + min(0, ttl) - (60 if ttl < 0 else 0),
            "exp": int(now) + ttl,
            "auth_time": int(now),
            "given_name": user.given_name,
            "family_name": user.family_name,
            "preferred_username": user.login,
        }
        if nonce:
            claims["nonce"] = nonce
        token_acr = q.acr if q.acr is not None else acr
        if token_acr:
            claims["acr"] = token_acr
        if self.psc:
            claims["SubjectNameID"] = user.login
        id_token = jwt.encode({"alg": "RS256", "kid": self._key.kid}, claims, self._key)
        access = secrets.token_urlsafe(32)
        self._access[access] = (user, now + max(ttl, 1))
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": max(ttl, 0),
            "id_token": id_token,
            "scope": scope,
        }

    def userinfo_claims(self, user: SimUser) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "sub": user.login,
            "given_name": user.given_name,
            "family_name": user.family_name,
            "preferred_username": user.login,
        }
        if self.psc:
            claims.update(
                {
                    "SubjectNameID": user.login,
                    "SubjectRefPro": {
                        "codeCivilite": "",
                        "exercices": [
                            {
                                "codeProfession": user.profession,
                                "codeCategorieProfessionnelle": "C",
                                "codeSavoirFaire": "",
                                "nomDExercice": user.family_name,
                                "prenomDExercice": user.given_name,
                                "activities": [],
                            }
                        ],
                    },
                    "SubjectOrganization": "",
                    "Secteur_Activite": "",
                    "Acces_Regulation_Medicale": "VRAI" if user.regulation_access else "FAUX",
                    "Palier_Authentification": "APPPRIP3^1.2.250.1.213.1.5.1.1.1",
                    "authMode": "MOBILE",
                    "otherIds": [],
                }
            )
        return claims

    # ----------------------------------------------------------------- HTTP

    def handle_realm(self, query: Query, request: Request) -> Response:
        sub = request.path[len(self.realm) :]
        if sub == self.discovery and request.method == "GET":
            return json_response(200, self.metadata(request))
        if sub == OIDC + "/certs":
            return json_response(200, KeySet([self._key]).as_dict(private=False))
        if sub == OIDC + "/token" and request.method == "POST":
            return self._token(request)
        if sub == OIDC + "/userinfo":
            return self._userinfo(request)
        if sub == OIDC + "/logout":
            return _page(200, "Déconnexion", "<p>Vous êtes déconnecté.</p>")
        if sub == OIDC + "/ext/ciba/auth" and self.psc and request.method == "POST":
            return self._ciba_start(request)
        if sub == OIDC + "/auth" and not self.psc:
            if request.method == "GET":
                return self._authorize(query, request)
            return self._login(request)
        return _oauth_error(404, "not_found", f"no such endpoint {sub}")

    def handle_wallet(self, query: Query, request: Request) -> Response:
        sub = request.path[len(PSC_WALLET) :]
        if sub == "/auth" and request.method == "GET":
            return self._authorize(query, request)
        if sub == "/auth/login" and request.method == "POST":
            return self._login(request)
        if sub == "/auth/wait" and request.method == "GET":
            return self._wait(query, request)
        return _oauth_error(404, "not_found", f"no such page {sub}")

    def handle_ecps(self, query: Query, request: Request) -> Response:
        sub = request.path[len(ECPS_APP) :]
        if sub in ("", "/") and request.method == "GET":
            login = _one(query, "user")
            pending = self._pending(login)
            rows = "".join(
                f"<li><b>{html.escape(a['binding_message'])}</b> ({html.escape(a['client'])})"
                f'<form method="post" action="{ECPS_APP}/approve">'
                f'<input type="hidden" name="request_id" value="{html.escape(a["request_id"])}">'
                '<button name="decision" value="approve">Valider</button>'
                '<button name="decision" value="deny">Refuser</button></form></li>'
                for a in pending
            )
            return _page(200, "e-CPS", f"<ul>{rows}</ul>" if rows else "<p>Aucune demande.</p>")
        if sub == "/pending" and request.method == "GET":
            return json_response(200, {"requests": self._pending(_one(query, "user"))})
        if sub == "/approve" and request.method == "POST":
            form = _form(request)
            with self._lock:
                approval = self._approvals.get(form.get("request_id", ""))
                if approval is None or approval.status != "pending":
                    return _page(404, "e-CPS", "<p>Demande inconnue ou déjà traitée.</p>")
                decision = form.get("decision", "")
                if decision not in ("approve", "deny"):
                    return _page(400, "e-CPS", "<p>Décision attendue : approve ou deny.</p>")
                approval.status = "approved" if decision == "approve" else "denied"
            return _page(200, "e-CPS", "<p>Demande traitée.</p>")
        return _oauth_error(404, "not_found", f"no such page {sub}")

    def _pending(self, login: str) -> list[dict[str, str]]:
        with self._lock:
            return [
                {
                    "request_id": a.id,
                    "client": a.client_id,
                    "binding_message": a.binding_message,
                    "kind": a.kind,
                }
                for a in self._approvals.values()
                if a.user.login == login and a.status == "pending"
            ]

    def _authorize(self, query: Query, request: Request) -> Response:
        params = {key: _one(query, key) for key in query}
        client = self.client(params.get("client_id", ""))
        redirect_uri = params.get("redirect_uri", "")
        if client is None:
            return _page(400, "Erreur", "<p>Client inconnu.</p>")
        if not client.redirect_allowed(redirect_uri):
            return _page(400, "Erreur", "<p>Adresse de retour non enregistrée.</p>")
        state = params.get("state", "")

        def back(error: str, description: str) -> Response:
            return _redirect(
                redirect_uri,
                {"error": error, "error_description": description, "state": state,
                 "iss": self.issuer(request)},
            )  # fmt: skip

        if params.get("response_type") != "code":
            return back("unsupported_response_type", "response_type=code attendu")
        if "openid" not in params.get("scope", "").split():
            return back("invalid_scope", "scope openid attendu")
        if not params.get("code_challenge") or params.get("code_challenge_method") != "S256":
            return back("invalid_request", "PKCE S256 requis")
        session = _AuthSession(
            id=secrets.token_urlsafe(16),
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            state=state,
            nonce=params.get("nonce", ""),
            challenge=params["code_challenge"],
            scope=params.get("scope", ""),
            acr=params.get("acr_values", "").split()[0] if params.get("acr_values") else "",
            created=self.clock(),
        )
        with self._lock:
            self._sessions[session.id] = session
        if self.psc:
            action = PSC_WALLET + "/auth/login"
            fields = '<label>Identifiant national (e-CPS) <input name="login"></label>'
            title = "Pro Santé Connect (simulateur)"
        else:
            action = self.realm + OIDC + "/auth"
            fields = (
                '<label>Identifiant <input name="username"></label>'
                '<label>Mot de passe <input name="password" type="password"></label>'
            )
            title = "Connexion établissement (simulateur)"
        return _page(
            200,
            title,
            f'<form method="post" action="{action}">'
            f'<input type="hidden" name="session" value="{session.id}">{fields}'
            "<button>Se connecter</button></form>",
        )

    def _session(self, session_id: str) -> _AuthSession | None:
        session = self._sessions.get(session_id)
        if session is None or self.clock() - session.created > _AUTH_SESSION_TTL_S:
            return None
        return session

    def _login(self, request: Request) -> Response:
        form = _form(request)
        with self._lock:
            session = self._session(form.get("session", ""))
            if session is None:
                return _page(400, "Erreur", "<p>Session de connexion expirée.</p>")
            if self.psc:
                user = self.user(form.get("login", "").strip())
                if user is None:
                    return _page(401, "Pro Santé Connect", "<p>Identifiant inconnu.</p>")
                approval = _Approval(
                    id=secrets.token_urlsafe(12),
                    user=user,
                    client_id=session.client_id,
                    binding_message=f"SAS Desk {secrets.randbelow(10000):04d}",
                    kind="browser",
                    created=self.clock(),
                )
                self._approvals[approval.id] = approval
                session.user, session.approval = user, approval.id
                wait = f"{PSC_WALLET}/auth/wait?session={session.id}"
                return _page(
                    200,
                    "Pro Santé Connect",
                    f"<p>Validez la demande « {html.escape(approval.binding_message)} » "
                    f'sur votre application e-CPS.</p><p><a id="wait" href="{wait}">Continuer</a></p>',
                    refresh=wait,
                )
            user = self.user(form.get("username", "").strip())
            if user is None or not secrets.compare_digest(
                user.password.encode(), form.get("password", "").encode()
            ):
                return _page(401, "Connexion", "<p>Identifiant ou mot de passe incorrect.</p>")
            session.user = user
            return self._issue_code(session, request)

    def _wait(self, query: Query, request: Request) -> Response:
        with self._lock:
            session = self._session(_one(query, "session"))
            if session is None or session.user is None:
                return _page(400, "Erreur", "<p>Session de connexion expirée.</p>")
            approval = self._approvals[session.approval]
            if approval.status == "pending":
                wait = f"{PSC_WALLET}/auth/wait?session={session.id}"
                return _page(
                    200, "Pro Santé Connect", "<p>En attente de l'e-CPS…</p>", refresh=wait
                )
            del self._sessions[session.id]
            if approval.status == "denied":
                return _redirect(
                    session.redirect_uri,
                    {"error": "access_denied", "state": session.state, "iss": self.issuer(request)},
                )
            return self._issue_code(session, request)

    def _issue_code(self, session: _AuthSession, request: Request) -> Response:
        assert session.user is not None
        grant = _Grant(
            code=secrets.token_urlsafe(24),
            client_id=session.client_id,
            redirect_uri=session.redirect_uri,
            challenge=session.challenge,
            nonce=session.nonce,
            scope=session.scope,
            acr=session.acr or ("eidas1" if self.psc else ""),
            user=session.user,
            expires=self.clock() + _CODE_TTL_S,
        )
        self._grants[grant.code] = grant
        self._sessions.pop(session.id, None)
        return _redirect(
            session.redirect_uri,
            {"code": grant.code, "state": session.state, "iss": self.issuer(request)},
        )

    def _authenticate_client(self, request: Request, form: Mapping[str, str]) -> SimClient | None:
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:]).decode()
            except (ValueError, UnicodeDecodeError):
                return None
            client_id, _, secret = decoded.partition(":")
        client = self.client(client_id)
        if client is None:
            return None
        if client.secret and not secrets.compare_digest(client.secret.encode(), secret.encode()):
            return None
        return client

    def _token(self, request: Request) -> Response:
        form = _form(request)
        client = self._authenticate_client(request, form)
        if client is None:
            return _oauth_error(401, "invalid_client", "client authentication failed")
        grant_type = form.get("grant_type", "")
        with self._lock:
            if grant_type == "authorization_code":
                return self._token_code(request, client, form)
            if grant_type == CIBA_GRANT and self.psc:
                return self._token_ciba(request, client, form)
        return _oauth_error(400, "unsupported_grant_type", grant_type)

    def _token_code(self, request: Request, client: SimClient, form: Mapping[str, str]) -> Response:
        grant = self._grants.get(form.get("code", ""))
        if grant is None or grant.client_id != client.client_id:
            return _oauth_error(400, "invalid_grant", "unknown code")
        if grant.used:
            return _oauth_error(400, "invalid_grant", "code already used")
        grant.used = True
        if self.clock() > grant.expires:
            return _oauth_error(400, "invalid_grant", "code expired")
        if form.get("redirect_uri", "") != grant.redirect_uri:
            return _oauth_error(400, "invalid_grant", "redirect_uri mismatch")
        verifier = form.get("code_verifier", "")
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        if not verifier or not secrets.compare_digest(challenge, grant.challenge):
            return _oauth_error(400, "invalid_grant", "PKCE verification failed")
        body = self._tokens(request, client.client_id, grant.user, grant.nonce, grant.scope,
                            grant.acr)  # fmt: skip
        return json_response(200, body, {"Cache-Control": "no-store"})

    def _token_ciba(self, request: Request, client: SimClient, form: Mapping[str, str]) -> Response:
        req = self._ciba.get(form.get("auth_req_id", ""))
        if req is None or req.client_id != client.client_id or req.done:
            return _oauth_error(400, "invalid_grant", "unknown auth_req_id")
        now = self.clock()
        if now > req.expires:
            return _oauth_error(400, "expired_token", "auth_req_id expired")
        approval = self._approvals[req.approval]
        if approval.status == "denied":
            req.done = True
            return _oauth_error(400, "access_denied", "the user refused")
        if approval.status == "pending":
            too_fast = req.last_poll is not None and now - req.last_poll < req.interval
            req.last_poll = now
            if too_fast:
                req.interval += 5
                return _oauth_error(400, "slow_down", "polling too fast")
            return _oauth_error(400, "authorization_pending", "waiting for the user")
        req.done = True
        body = self._tokens(request, client.client_id, approval.user, "", req.scope, req.acr)
        return json_response(200, body, {"Cache-Control": "no-store"})

    def _ciba_start(self, request: Request) -> Response:
        form = _form(request)
        client = self._authenticate_client(request, form)
        if client is None or not client.secret:
            return _oauth_error(401, "invalid_client", "client authentication failed")
        if "openid" not in form.get("scope", "").split():
            return _oauth_error(400, "invalid_scope", "scope openid expected")
        binding = form.get("binding_message", "")
        if len(binding) > _BINDING_MAX:
            return _oauth_error(400, "invalid_binding_message", "binding_message too long")
        user = self.user(form.get("login_hint", "").strip())
        if user is None:
            return _oauth_error(400, "unknown_user_id", "login_hint is not a known user")
        now = self.clock()
        with self._lock:
            q = self.quirks
            approval = _Approval(
                id=secrets.token_urlsafe(12),
                user=user,
                client_id=client.client_id,
                binding_message=binding,
                kind="ciba",
                created=now,
            )
            expires_in = q.ciba_expires_in if q.ciba_expires_in is not None else _CIBA_TTL_S
            interval = q.ciba_interval if q.ciba_interval is not None else _CIBA_INTERVAL_S
            req = _Ciba(
                auth_req_id=secrets.token_urlsafe(24),
                client_id=client.client_id,
                approval=approval.id,
                scope=form.get("scope", ""),
                acr=form.get("acr_values", "").split()[0] if form.get("acr_values") else "eidas1",
                expires=now + expires_in,
                interval=interval,
            )
            self._approvals[approval.id] = approval
            self._ciba[req.auth_req_id] = req
        return json_response(
            200,
            {"auth_req_id": req.auth_req_id, "expires_in": expires_in, "interval": interval},
            {"Cache-Control": "no-store"},
        )

    def _userinfo(self, request: Request) -> Response:
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        with self._lock:
            found = self._access.get(token)
        if found is None or self.clock() > found[1]:
            return _oauth_error(401, "invalid_token", "unknown or expired access token")
        return json_response(200, self.userinfo_claims(found[0]))


class IdentityProviders:
    """The two simulated providers, and their routes for the simulator."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.psc = Provider(
            name="psc",
            realm=PSC_REALM,
            discovery=PSC_DISCOVERY,
            users=PSC_USERS,
            clients=(SimClient(DEMO_CLIENT_ID, DEMO_PSC_SECRET),),
            psc=True,
            clock=clock,
        )
        self.establishment = Provider(
            name="etablissement",
            realm=ESTABLISHMENT_REALM,
            discovery=STANDARD_DISCOVERY,
            users=ESTABLISHMENT_USERS,
            clients=(SimClient(DEMO_CLIENT_ID, DEMO_ESTABLISHMENT_SECRET),),
            psc=False,
            clock=clock,
        )

    def provider(self, name: str) -> Provider:
        if name == "psc":
            return self.psc
        if name == "etablissement":
            return self.establishment
        raise KeyError(name)

    def register(self, table: Any) -> None:
        """Add the providers' routes to a :class:`~sas_desk.simulator.server.RouteTable`."""
        both = ("GET", "POST")
        table.add(PSC_REALM, self.psc.handle_realm, methods=both)
        table.add(PSC_WALLET, self.psc.handle_wallet, methods=both)
        table.add(ECPS_APP, self.psc.handle_ecps, methods=both)
        table.add(ESTABLISHMENT_REALM, self.establishment.handle_realm, methods=both)
        table.add("/_admin/oidc", self._admin, methods=("POST",))

    def _admin(self, query: Query, request: Request) -> Response:
        del query
        try:
            change = json.loads(request.body or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError):
            return json_response(400, {"code": 400, "message": "body is not JSON"})
        if not isinstance(change, dict):
            return json_response(400, {"code": 400, "message": "a JSON object is expected"})
        try:
            provider = self.provider(str(change.pop("provider", "psc")))
            provider.set_quirks(**change)
        except (KeyError, ValueError) as exc:
            return json_response(400, {"code": 400, "message": f"unknown: {exc}"})
        return json_response(200, {"ok": True})


# --------------------------------------------------------------------------- small helpers


def _one(query: Query, key: str) -> str:
    values = query.get(key) or [""]
    return values[0]


def _form(request: Request) -> dict[str, str]:
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = json.loads(request.body or b"{}")
        except (UnicodeDecodeError, json.JSONDecodeError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    try:
        parsed = parse_qs(request.body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return {}
    return {key: values[0] for key, values in parsed.items()}


def _redirect(uri: str, params: Mapping[str, str]) -> Response:
    sep = "&" if urlsplit(uri).query else "?"
    location = uri + sep + urlencode({k: v for k, v in params.items() if v})
    return 302, {"Location": location, "Cache-Control": "no-store"}, b""


def _oauth_error(status: int, error: str, description: str) -> Response:
    return json_response(
        status, {"error": error, "error_description": description}, {"Cache-Control": "no-store"}
    )


def _page(status: int, title: str, body: str, *, refresh: str = "") -> Response:
    meta = f'<meta http-equiv="refresh" content="2;url={html.escape(refresh)}">' if refresh else ""
    text = (
        f'<!doctype html><html lang="fr"><head><meta charset="utf-8">{meta}'
        f"<title>{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>"
        f"{body}</body></html>"
    )
    return status, {"Content-Type": "text/html; charset=utf-8"}, text.encode("utf-8")
