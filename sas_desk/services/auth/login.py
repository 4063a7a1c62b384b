"""The workstation's side of an OpenID Connect login through the room server.

- :meth:`OidcLogin.with_browser`: a one-shot loopback listener
  (:class:`~sas_desk.services.auth.loopback.LoopbackReceiver`), the room
  server starts the flow for that redirect, the system browser (an injected
  *opener*, ``webbrowser.open`` in the app) shows the provider's page, the
  listener receives the redirect and the server finishes the login;
- :meth:`OidcLogin.with_ciba`: the server starts CIBA for an RPPS, the
  binding message is shown (*on_binding_message*) while the professional
  approves on the e-CPS app, and the workstation asks the server to finish at
  the interval it says.

Both return the room server's answer carrying the session (200, the same
``SessionBody`` as ``POST /v1/session``), for the caller's session holder to
take (``RoomSession``).  With an ``httpx`` client that has the room's
``base_url``, pass ``room_url=""``.  Refusals raise :class:`AuthError` with
the server's code and French message.  No provider token ever reaches the
workstation.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

import httpx
import msgspec

from sas_desk.services.auth.errors import AuthError
from sas_desk.services.auth.loopback import LoopbackReceiver
from sas_desk.services.auth.wire import (
    OidcFinishBody,
    OidcPendingAnswer,
    OidcStartAnswer,
    OidcStartBody,
)

__all__ = ["OidcLogin"]

Opener = Callable[[str], object]


class _ServerError(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    code: str = ""
    message_fr: str = ""


class OidcLogin:
    def __init__(self, http: httpx.AsyncClient, room_url: str) -> None:
        self._http = http
        self._base = room_url.rstrip("/")

    async def _post(self, path: str, body: msgspec.Struct) -> httpx.Response:
        try:
            response = await self._http.post(
                self._base + path,
                content=msgspec.json.encode(body),
                headers={"Content-Type": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise AuthError(
                "provider_unreachable",
                type(exc).__name__,
                message_fr="Le serveur de salle ne répond pas. Réessayez dans un instant.",
            ) from exc
        if response.status_code >= 400:
            try:
                error = msgspec.json.decode(response.content, type=_ServerError)
            except msgspec.DecodeError:
                error = _ServerError()
            raise AuthError(
                error.code or "provider_error",
                f"room server HTTP {response.status_code}",
                message_fr=error.message_fr,
            )
        return response

    async def _start(self, body: OidcStartBody) -> OidcStartAnswer:
        response = await self._post("/v1/session/oidc/start", body)
        return msgspec.json.decode(response.content, type=OidcStartAnswer)

    async def with_browser(
        self,
        *,
        role: str,
        workstation: str,
        opener: Opener,
        provider: str = "psc",
        timeout: float = 300.0,
    ) -> httpx.Response:
        async with LoopbackReceiver() as receiver:
            started = await self._start(
                OidcStartBody(
                    role=role,
                    provider=provider,
                    mode="code",
                    workstation=workstation,
                    redirect_uri=receiver.redirect_uri,
                )
            )
            opened = opener(started.authorization_url)
            if inspect.isawaitable(opened):
                await opened
            params = await receiver.wait(timeout)
        response = await self._post(
            "/v1/session/oidc/finish",
            OidcFinishBody(
                flow_id=started.flow_id,
                code=params.get("code", ""),
                state=params.get("state", ""),
                iss=params.get("iss", ""),
                error=params.get("error", ""),
            ),
        )
        return response

    async def with_ciba(
        self,
        *,
        role: str,
        workstation: str,
        login_hint: str,
        on_binding_message: Callable[[str], None],
        provider: str = "psc",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> httpx.Response:
        started = await self._start(
            OidcStartBody(
                role=role,
                provider=provider,
                mode="ciba",
                workstation=workstation,
                login_hint=login_hint,
            )
        )
        on_binding_message(started.binding_message)
        interval = started.interval
        while True:
            await sleep(interval)
            response = await self._post(
                "/v1/session/oidc/finish", OidcFinishBody(flow_id=started.flow_id)
            )
            if response.status_code == 202:
                interval = msgspec.json.decode(response.content, type=OidcPendingAnswer).interval
                continue
            return response
