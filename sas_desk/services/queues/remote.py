"""The workstation's side of the room server: a :class:`QueueBackend` that
speaks the room API (``docs/room-api.md``) over HTTPS.

- :class:`RoomSession` holds the one session of the workstation: it logs in
  with credentials from an injected provider (the login dialog), refreshes
  the short-lived access token, and keeps the refresh token in the system
  keyring (in memory, with a notice for the operator, when no keyring is
  usable).  The server derives who acts from that session.
- :class:`RemoteBackend` maps the backend interface onto the API: ``apply``
  is ``POST /v1/ops`` (refusals come back as the same
  :class:`~sas_desk.models.queue.QueueError` subclasses as the local
  backends raise; a network failure, a 5xx or a server shutting down is
  :class:`BackendUnavailable`, so the client's outbox keeps the operation and
  replays it exactly once: the server is idempotent on ``op_id``); ``watch``
  follows the Server-Sent Events stream, resuming with ``Last-Event-ID``
  after a cut and reconnecting with backoff.  The server owns time, leases
  and their expiry: ``renew`` asks it to renew this session's leases,
  ``expire`` does nothing.

TLS is always verified: against ``[room] ca`` when given, else the system
store.  Plain ``http://`` is accepted on loopback only (tests, a server on
the same machine).  Tokens and passwords are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import msgspec

from sas_desk.models.dossier import Dossier, Event
from sas_desk.models.errors import KnownError
from sas_desk.models.queue import ChangeSet, Operation, QueueError, QueueItem, QueueName, ordered
from sas_desk.services.config import room_url_problem
from sas_desk.services.private import KEYRING_FR
from sas_desk.services.queues import wire
from sas_desk.services.queues.api import DEFAULT_LEASE_S, BackendUnavailable, QueueBackend

log = logging.getLogger("sas_desk.queues.remote")

KEYRING_SERVICE = "sas-desk"
UNREACHABLE_FR = "Serveur de salle injoignable."
SESSION_LOST_FR = "Session du serveur de salle expirée : reconnectez-vous."


# --------------------------------------------------------------------------- TLS


def tls_context(ca: str = "") -> ssl.SSLContext:
    """Server certificate always verified: against ``ca`` (the room's CA)
    when given, else the system store; TLS 1.2 at least."""
    context = ssl.create_default_context(cafile=ca or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


# --------------------------------------------------------------------------- the token


class TokenStore:
    """The session's refresh token, in the system keyring under
    (``sas-desk``, ``room:<url>#<workstation>``).  When no keyring is usable
    (a headless machine, a locked store), the token stays in memory for this
    run and :attr:`notice_fr` says so (the window shows it)."""

    def __init__(self, url: str, workstation: str) -> None:
        self.account = f"room:{url.rstrip('/')}#{workstation}"
        self.notice_fr = ""
        self._memory: str | None = None
        self._keyring_ok = True

    def _unusable(self, why: str) -> None:
        if self._keyring_ok:
            log.warning("keyring unusable (%s): the room session is kept in memory", why)
        self._keyring_ok = False
        self.notice_fr = (
            f"{KEYRING_FR}la session du serveur de salle est gardée "
            "en mémoire seulement (identification redemandée au prochain démarrage)."
        )

    async def load(self) -> str | None:
        if not self._keyring_ok:
            return self._memory

        def get() -> str | None:
            import keyring

            return keyring.get_password(KEYRING_SERVICE, self.account)

        try:
            found = await asyncio.to_thread(get)
        except Exception as exc:
            self._unusable(type(exc).__name__)
            return self._memory
        return found

    async def save(self, token: str) -> None:
        self._memory = token
        if not self._keyring_ok:
            return

        def put() -> bool:
            import keyring

            keyring.set_password(KEYRING_SERVICE, self.account, token)
            return keyring.get_password(KEYRING_SERVICE, self.account) == token

        try:
            kept = await asyncio.to_thread(put)
        except Exception as exc:
            self._unusable(type(exc).__name__)
            return
        if not kept:  # the null keyring accepts and forgets
            self._unusable("token not kept")

    async def clear(self) -> None:
        self._memory = None
        if not self._keyring_ok:
            return

        def delete() -> None:
            import keyring
            from keyring.errors import PasswordDeleteError

            with contextlib.suppress(PasswordDeleteError):
                keyring.delete_password(KEYRING_SERVICE, self.account)

        try:
            await asyncio.to_thread(delete)
        except Exception as exc:
            self._unusable(type(exc).__name__)


# --------------------------------------------------------------------------- the session


@dataclass(frozen=True)
class Credentials:
    login: str
    password: str
    role: str

    def problem(self) -> str | None:
        """What is missing before asking the server (French), or None."""
        if not self.login.strip() or not self.password:
            return "Identifiant et mot de passe requis."
        if not self.role:
            return "Choisissez le rôle de la session."
        return None


@dataclass(frozen=True)
class SessionInfo:
    """Who the server says acts on this workstation."""

    operator: str
    role: str
    workstation: str


class LoginRefused(KnownError):
    """The server refused the login (``code``: ``unauthorized``,
    ``forbidden``, ``locked``, ``invalid``); ``message_fr`` for the operator."""

    def __init__(self, message_fr: str, code: str) -> None:
        super().__init__(message_fr)
        self.message_fr = message_fr
        self.code = code


class LoginCancelled(BackendUnavailable):
    """No session: the operator gave up the login (or nobody can log in)."""


@dataclass(frozen=True)
class OpenedSession:
    """A session the server opened another way: the 200 answer of an OpenID
    Connect login (``services/auth/login.py``), for :meth:`RoomSession.take`."""

    response: httpx.Response


# asked again with the French reason of the previous refusal ("" the first
# time); None: the operator gave up
CredentialProvider = Callable[[str], Awaitable[Credentials | OpenedSession | None]]

_LOGIN_FALLBACK_FR = {
    401: "Identifiant ou mot de passe incorrect.",
    403: "Ce rôle n'est pas autorisé pour ce compte.",
    429: "Trop d'essais : identifiant bloqué une minute.",
}


class _SessionBody(msgspec.Struct, frozen=True):
    access_token: str
    expires_in: float
    operator: str
    role: str
    refresh_token: str = ""
    workstation: str = ""


_SESSION = msgspec.json.Decoder(_SessionBody)
_ERROR = msgspec.json.Decoder(wire.ErrorBody)


def _error_body(response: httpx.Response) -> wire.ErrorBody | None:
    try:
        return _ERROR.decode(response.content)
    except msgspec.DecodeError:
        return None


def _unavailable(exc: BaseException) -> BackendUnavailable:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return BackendUnavailable(
                "Serveur de salle refusé : son certificat n'est pas reconnu (vérifiez [room] ca)."
            )
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, httpx.TimeoutException):
        return BackendUnavailable("Serveur de salle injoignable (délai dépassé).")
    return BackendUnavailable(UNREACHABLE_FR)


class RoomSession:
    """The workstation's one session with the room server."""

    def __init__(
        self,
        url: str,
        workstation: str,
        *,
        ca: str = "",
        credentials: CredentialProvider | None = None,
        tokens: TokenStore | None = None,
        timeout: float = 10.0,
        connect_timeout: float = 3.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        problem = room_url_problem(url)
        if problem is not None:
            raise ValueError(f"[room] url {problem}.")
        self.url = url.rstrip("/")
        self.workstation = workstation
        self.ca = ca
        self.credentials = credentials
        self.tokens = tokens if tokens is not None else TokenStore(self.url, workstation)
        self.info: SessionInfo | None = None
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._access = ""
        self._access_until = 0.0  # monotonic
        self._refresh = ""
        self._lock = asyncio.Lock()
        self.logins = 0  # logins through the provider, for relogin
        # credentials typed while the server did not answer: kept in memory
        # (never on disk, never logged) and tried again, once, whenever the
        # session is needed -- a workstation started offline logs in by
        # itself when the server comes back; dropped once answered
        self._typed: Credentials | None = None
        self.listeners: list[Callable[[SessionInfo | None], None]] = []

    # ------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        if self._client is not None:
            return
        verify: ssl.SSLContext | bool = True
        if self.url.startswith("https://"):
            try:
                verify = await asyncio.to_thread(tls_context, self.ca)
            except (OSError, ssl.SSLError) as exc:
                raise BackendUnavailable(
                    f"Certificat d'autorité du serveur de salle illisible ([room] ca = "
                    f"{self.ca}) : {type(exc).__name__}."
                ) from None
        self._client = httpx.AsyncClient(
            base_url=self.url,
            verify=verify,
            timeout=self._timeout,
            follow_redirects=False,
            transport=self._transport,
            headers={"Accept": "application/json"},
        )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise BackendUnavailable("Connexion au serveur de salle fermée.")
        return self._client

    def _set_info(self, info: SessionInfo | None) -> None:
        self.info = info
        for listener in list(self.listeners):
            try:
                listener(info)
            except Exception:
                log.exception("session listener failed")

    async def _take(self, response: httpx.Response) -> SessionInfo:
        try:
            body = _SESSION.decode(response.content)
        except msgspec.DecodeError:
            raise BackendUnavailable("Réponse illisible du serveur de salle.") from None
        self._access = body.access_token
        self._access_until = time.monotonic() + max(0.0, body.expires_in)
        if body.refresh_token:
            self._refresh = body.refresh_token
            await self.tokens.save(body.refresh_token)
        info = SessionInfo(body.operator, body.role, body.workstation or self.workstation)
        self._set_info(info)
        return info

    # ------------------------------------------------------------ login
    async def login(self, credentials: Credentials) -> SessionInfo:
        """``POST /v1/session``.  Raises :class:`LoginRefused` (wrong login or
        password, role not allowed, locked) or :class:`BackendUnavailable`."""
        await self.open()
        body = {
            "login": credentials.login,
            "password": credentials.password,
            "role": credentials.role,
            "workstation": self.workstation,
        }
        try:
            response = await self.client.post("/v1/session", json=body)
        except httpx.HTTPError as exc:
            raise _unavailable(exc) from None
        if response.status_code == 200:
            info = await self._take(response)
            log.info("room session opened: %s as %s", info.operator, info.role)
            return info
        if response.status_code >= 500:
            raise BackendUnavailable(UNREACHABLE_FR)
        error = _error_body(response)
        code = error.code if error is not None else "invalid"
        message = (
            error.message_fr
            if error is not None and error.message_fr
            else _LOGIN_FALLBACK_FR.get(response.status_code, "Connexion refusée.")
        )
        log.warning("room login refused (%d %s)", response.status_code, code)
        raise LoginRefused(message, code)

    async def take(self, response: httpx.Response) -> SessionInfo:
        """A session the server opened another way: the 200 answer of an
        OpenID Connect login (``services/auth/login.py``, run with
        :attr:`client`), the same ``SessionBody`` as ``POST /v1/session``."""
        if response.status_code != 200:
            error = _error_body(response)
            raise LoginRefused(
                error.message_fr if error is not None else "Connexion refusée.",
                error.code if error is not None else "invalid",
            )
        return await self._take(response)

    async def resume(self) -> SessionInfo | None:
        """A session again from the refresh token kept by the keyring; None
        when there is none or the server no longer accepts it."""
        await self.open()
        if not self._refresh:
            self._refresh = await self.tokens.load() or ""
        if not self._refresh:
            return None
        return await self._refresh_now()

    async def _refresh_now(self) -> SessionInfo | None:
        try:
            response = await self.client.post(
                "/v1/session/refresh", json={"refresh_token": self._refresh}
            )
        except httpx.HTTPError as exc:
            raise _unavailable(exc) from None
        if response.status_code == 200:
            return await self._take(response)
        if response.status_code >= 500:
            raise BackendUnavailable(UNREACHABLE_FR)
        log.info("room session refresh refused (%d)", response.status_code)
        self._refresh = ""
        self._access = ""
        await self.tokens.clear()
        self._set_info(None)
        return None

    async def ensure(self, reason_fr: str = "") -> SessionInfo:
        """A usable session: the current one, the kept one, else a login
        with the provider's credentials (asked again after each refusal)."""
        async with self._lock:
            if self.info is not None and self._access:
                return self.info
            try:
                info = await self.resume()
            except BackendUnavailable as exc:  # the kept token is tried again later
                info, reason_fr = None, reason_fr or exc.message_fr
            if info is not None:
                return info
            return await self._ask(reason_fr)

    @property
    def offline_login(self) -> Credentials | None:
        """The credentials typed while the server did not answer (the
        workstation may start offline as them), else None."""
        return self._typed

    async def _ask(self, reason_fr: str) -> SessionInfo:
        """The credentials typed while the server was unreachable, else the
        provider's, until the server accepts them; :class:`LoginCancelled`
        when the operator gives up, and the server's unavailability as is
        (asking again would not help: what was typed is kept for later)."""
        while True:
            credentials: Credentials | OpenedSession | None = self._typed
            self._typed = None
            if credentials is None:
                if self.credentials is None:
                    raise LoginCancelled(SESSION_LOST_FR)
                credentials = await self.credentials(reason_fr)
                if credentials is None:
                    raise LoginCancelled(SESSION_LOST_FR)
            try:
                if isinstance(credentials, OpenedSession):
                    info = await self.take(credentials.response)
                else:
                    info = await self.login(credentials)
            except LoginRefused as exc:
                reason_fr = exc.message_fr
                continue
            except BackendUnavailable:
                if isinstance(credentials, Credentials):  # a password login: kept
                    self._typed = credentials
                raise
            self.logins += 1
            return info

    async def relogin(self, reason_fr: str) -> SessionInfo:
        """A new login while a session may be open (unlocking the screen, a
        change of operator): the provider's credentials open a new session
        that replaces the current one, which is then closed on the server.
        :class:`LoginCancelled` when the operator gives up: the current
        session (if any) is kept as it was.  A login that happened while
        this one waited for the session's lock (another request asked) is
        the answer."""
        logins = self.logins
        async with self._lock:
            if self.info is not None and self._access and self.logins != logins:
                return self.info
            before = self._access
            info = await self._ask(reason_fr)
            if before and before != self._access and self._client is not None:
                with contextlib.suppress(httpx.HTTPError):  # best effort
                    await self.client.delete(
                        "/v1/session", headers={"Authorization": f"Bearer {before}"}
                    )
            return info

    async def logout(self) -> None:
        """``DELETE /v1/session`` (best effort) and forget the tokens."""
        if self._access and self._client is not None:
            with contextlib.suppress(httpx.HTTPError):
                await self.client.delete("/v1/session", headers=self._auth())
        self._access = self._refresh = ""
        self._typed = None
        await self.tokens.clear()
        self._set_info(None)

    # ------------------------------------------------------------ requests
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._access}"}

    async def _fresh_token(self, stale: str) -> None:
        """After a 401 with ``stale``: refresh once (whoever comes first),
        else log in again."""
        async with self._lock:
            if self._access and self._access != stale:
                return  # another request refreshed it meanwhile
            self._access = ""
            if self._refresh and await self._refresh_now() is not None:
                return
            self._set_info(None)
            await self._ask(SESSION_LOST_FR)

    async def _token(self) -> str:
        if not self._access:
            await self.ensure()
        elif time.monotonic() > self._access_until - 5.0 and self._refresh:
            async with self._lock:  # about to expire: refresh ahead
                if time.monotonic() > self._access_until - 5.0:
                    await self._refresh_now()
            if not self._access:
                await self.ensure(SESSION_LOST_FR)
        return self._access

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        """One authenticated request; a 401 refreshes (or logs in again)
        and retries once.  A connection that fails is tried once more on a
        fresh one (a keep-alive connection to a server that restarted): every
        request of the API may be sent twice (operations are idempotent on
        ``op_id``).  Network failures are :class:`BackendUnavailable`."""
        for attempt in (0, 1):
            token = await self._token()
            headers = {"Authorization": f"Bearer {token}"}
            if content is not None:
                headers["Content-Type"] = "application/json"
            try:
                try:
                    response = await self.client.request(
                        method, path, json=json, params=params, content=content, headers=headers
                    )
                except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
                    response = await self.client.request(
                        method, path, json=json, params=params, content=content, headers=headers
                    )
            except httpx.HTTPError as exc:
                raise _unavailable(exc) from None
            if response.status_code != 401 or attempt:
                return response
            await self._fresh_token(token)
        raise AssertionError("unreachable")

    @contextlib.asynccontextmanager
    async def stream(
        self, path: str, *, params: Any = None, headers: dict[str, str] | None = None
    ) -> AsyncIterator[httpx.Response]:
        """An authenticated streaming GET (the change stream); reads may
        wait up to ``read_s`` (twice the server's keep-alive) before the
        connection is taken for dead."""
        for attempt in (0, 1):
            token = await self._token()
            sent = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
            sent.update(headers or {})
            timeout = httpx.Timeout(STREAM_READ_S, connect=self._timeout.connect)
            request = self.client.build_request(
                "GET", path, params=params, headers=sent, timeout=timeout
            )
            try:
                response = await self.client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise _unavailable(exc) from None
            try:
                if response.status_code == 401 and not attempt:
                    await response.aclose()
                    await self._fresh_token(token)
                    continue
                yield response
                return
            finally:
                await response.aclose()


STREAM_READ_S = 40.0  # the server sends a keep-alive every 15 s


# --------------------------------------------------------------------------- SSE


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: str
    id: str | None  # None: the event set no id


class SseParser:
    """Server-Sent Events, line by line (the WHATWG rules we need: ``event``,
    ``data`` lines joined by newlines, ``id``, comments; a blank line
    dispatches; an event without data is not dispatched)."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> SseEvent | None:
        line = line.rstrip("\r\n")
        if not line:
            if not self._data:
                self._event, self._id = "", None
                return None
            event = SseEvent(self._event or "message", "\n".join(self._data), self._id)
            self._event, self._data, self._id = "", [], None
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None


def _event_number(event_id: str) -> tuple[str, int] | None:
    boot, _, n = event_id.rpartition(".")
    try:
        return boot, int(n)
    except ValueError:
        return None


_CHANGES = msgspec.json.Decoder(wire.ChangeSetBody)


# --------------------------------------------------------------------------- the backend


class _Items(msgspec.Struct, frozen=True):
    items: list[wire.ItemBody]


class _Events(msgspec.Struct, frozen=True):
    events: list[wire.EventBody]


class _Dossier(msgspec.Struct, frozen=True):
    dossier: dict[str, Any]


class _Renewed(msgspec.Struct, frozen=True):
    renewed: int


_RESULT = msgspec.json.Decoder(wire.OperationResult)
_ITEMS = msgspec.json.Decoder(_Items)
_EVENTS = msgspec.json.Decoder(_Events)
_DOSSIER = msgspec.json.Decoder(_Dossier)
_RENEWED = msgspec.json.Decoder(_Renewed)
_ENCODER = msgspec.json.Encoder()


_NOT_FINITE_FR = "Valeur numérique invalide (infinie ou NaN) dans l'opération."


def _json_numbers(value: Any) -> bool:
    """Whether every number in ``value`` is one JSON can carry (finite)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_json_numbers(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_json_numbers(v) for v in value)
    return True


class RemoteBackend(QueueBackend):
    """The queues of the room, through its server."""

    name = "remote"

    def __init__(
        self,
        session: RoomSession,
        *,
        retry_delay: float = 0.2,
        max_retry_delay: float = 5.0,
    ) -> None:
        self.session = session
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self._closed = asyncio.Event()
        self._pumps: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        self._closed.clear()
        await self.session.open()

    async def close(self) -> None:
        self._closed.set()
        pumps = list(self._pumps)
        for task in pumps:
            task.cancel()
        if pumps:
            await asyncio.wait(pumps, timeout=5.0)
        await self.session.close()

    # ------------------------------------------------------------ answers
    def _refusal(self, response: httpx.Response, case_id: str = "") -> Exception:
        """The exception for a non-2xx answer: a refusal is the local
        backends' QueueError; a server in trouble is BackendUnavailable."""
        status = response.status_code
        if status >= 500 or status in (408, 429):
            if status == 503:
                return BackendUnavailable("Serveur de salle indisponible (arrêt ou maintenance).")
            return BackendUnavailable(f"Serveur de salle en difficulté (erreur {status}).")
        error = _error_body(response)
        if error is None:
            log.error("room server answered %d without a refusal body", status)
            return QueueError(f"Réponse inattendue du serveur de salle ({status}).", "invalid")
        if status == 401:
            return BackendUnavailable(error.message_fr or SESSION_LOST_FR)
        if not error.case_id and case_id and error.error == "NotFound":
            error = msgspec.structs.replace(error, case_id=case_id)
        return wire.error_from_body(error)

    async def apply(self, op: Operation) -> QueueItem | None:
        if not _json_numbers(op.data):  # JSON would carry them as null: refused here
            raise QueueError(_NOT_FINITE_FR, "invalid")
        request = wire.OperationRequest(
            op_id=op.op_id, kind=op.kind, case_id=op.case_id, data=op.data
        )
        response = await self.session.request("POST", "/v1/ops", content=_ENCODER.encode(request))
        if response.status_code != 200:
            raise self._refusal(response, op.case_id)
        try:
            result = _RESULT.decode(response.content)
        except msgspec.DecodeError:
            raise BackendUnavailable("Réponse illisible du serveur de salle.") from None
        return wire.item_from_body(result.item) if result.item is not None else None

    async def snapshot(self, queues: Iterable[QueueName]) -> list[QueueItem]:
        items: list[QueueItem] = []
        for queue in sorted({QueueName(q) for q in queues}, key=lambda q: q.value):
            response = await self.session.request("GET", f"/v1/queues/{queue.value}")
            if response.status_code != 200:
                raise self._refusal(response)
            items.extend(wire.item_from_body(b) for b in _ITEMS.decode(response.content).items)
        return ordered(items)

    async def dossier(self, case_id: str) -> Dossier | None:
        response = await self.session.request("GET", f"/v1/dossiers/{case_id}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._refusal(response, case_id)
        return Dossier.from_dict(_DOSSIER.decode(response.content).dossier)

    async def events(self, case_id: str) -> list[Event]:
        response = await self.session.request("GET", f"/v1/dossiers/{case_id}/events")
        if response.status_code == 404:
            return []
        if response.status_code != 200:
            raise self._refusal(response, case_id)
        return [wire.event_from_body(b) for b in _EVENTS.decode(response.content).events]

    async def renew(self, workstation: str, at: datetime, lease_s: float = DEFAULT_LEASE_S) -> int:
        """The server renews the leases of this session's workstation (its
        clock; ``lease_s`` cut to its bound); ``workstation`` and ``at`` are
        the local backends' arguments, the session's and the server's here."""
        if not _json_numbers(lease_s):  # JSON cannot carry it: refused here
            raise QueueError(_NOT_FINITE_FR, "invalid")
        response = await self.session.request("POST", "/v1/renew", json={"lease_s": lease_s})
        if response.status_code != 200:
            raise self._refusal(response)
        return _RENEWED.decode(response.content).renewed

    async def expire(self, at: datetime) -> list[QueueItem]:
        return []  # the server's own task

    # ------------------------------------------------------------ the stream
    def watch(self, queues: Iterable[QueueName]) -> AsyncIterator[ChangeSet]:
        return self._watch(sorted({QueueName(q) for q in queues}, key=lambda q: q.value))

    async def _watch(self, queues: list[QueueName]) -> AsyncIterator[ChangeSet]:
        out: asyncio.Queue[ChangeSet | BaseException | None] = asyncio.Queue()
        pump = asyncio.get_running_loop().create_task(self._pump(queues, out), name="room-stream")
        self._pumps.add(pump)
        try:
            while True:
                got = await out.get()
                if got is None:
                    return
                if isinstance(got, BaseException):
                    raise got
                yield got
        finally:
            pump.cancel()
            self._pumps.discard(pump)
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    async def _pump(
        self, queues: list[QueueName], out: asyncio.Queue[ChangeSet | BaseException | None]
    ) -> None:
        """Read the stream into ``out`` until the backend closes: after a cut
        or a ``bye``, reconnect with backoff and resume from the last id."""
        params = [("queue", q.value) for q in queues]
        last: str | None = None
        seen: tuple[str, int] | None = None
        delay = self.retry_delay
        try:
            while not self._closed.is_set():
                headers = {"Last-Event-ID": last} if last is not None else {}
                try:
                    async with self.session.stream(
                        "/v1/stream", params=params, headers=headers
                    ) as response:
                        if response.status_code != 200:
                            await response.aread()
                            error = self._refusal(response)
                            if isinstance(error, QueueError):
                                out.put_nowait(error)  # a refusal: the consumer decides
                                return
                            raise error
                        parser = SseParser()
                        async for line in response.aiter_lines():
                            event = parser.feed(line)
                            if event is None:
                                continue
                            if event.event == "bye":
                                log.info("room stream closed by the server")
                                break
                            if event.event != "changes":
                                continue
                            number = _event_number(event.id) if event.id else None
                            if (
                                number is not None
                                and seen is not None
                                and number[0] == seen[0]
                                and number[1] <= seen[1]
                            ):
                                continue  # already applied (sent again on resume)
                            changes = wire.changes_from_body(_CHANGES.decode(event.data))
                            if event.id is not None:
                                last, seen = event.id, number
                            delay = self.retry_delay
                            out.put_nowait(changes)
                except (BackendUnavailable, httpx.HTTPError, msgspec.DecodeError) as exc:
                    log.info("room stream cut (%s); again in %.1f s", type(exc).__name__, delay)
                if self._closed.is_set():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self.max_retry_delay)
        finally:
            out.put_nowait(None)
