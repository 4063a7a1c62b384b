"""What crosses HTTP between a workstation and the room server for an OpenID
Connect login (``POST /v1/session/oidc/start`` and ``…/finish``, see
``docs/room-api.md``).  The provider's tokens and the client secret stay on
the server: a workstation only ever sees the authorization URL, the CIBA
binding message, and at the end the room server's own session."""

from __future__ import annotations

import msgspec

__all__ = ["OidcFinishBody", "OidcPendingAnswer", "OidcStartAnswer", "OidcStartBody"]


class OidcStartBody(msgspec.Struct, frozen=True):
    role: str
    provider: str = "psc"  # "psc" | "etablissement"
    mode: str = "code"  # "code" (browser, loopback redirect) | "ciba" (PSC only)
    workstation: str = ""
    redirect_uri: str = ""  # code: the workstation's loopback listener
    login_hint: str = ""  # ciba: RPPS (11 digits) or national id (8 + RPPS)


class OidcStartAnswer(msgspec.Struct, frozen=True):
    flow_id: str
    mode: str
    expires_in: int
    authorization_url: str = ""  # code: open it in the system browser
    binding_message: str = ""  # ciba: show it; the e-CPS app shows the same
    interval: int = 0  # ciba: call finish again after this many seconds


class OidcFinishBody(msgspec.Struct, frozen=True):
    flow_id: str
    code: str = ""  # code mode: the redirect's parameters, as received
    state: str = ""
    iss: str = ""
    error: str = ""


class OidcPendingAnswer(msgspec.Struct, frozen=True):
    """202: CIBA not approved yet."""

    interval: int
    status: str = "pending"
