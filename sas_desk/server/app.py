"""The room server's HTTP API (Litestar): ``docs/room-api.md``.

Who acts comes from the session (the bearer token), never from a body; the
time is the server's clock; leases are bounded by its settings.  Every change
and every read of a dossier is audited (who, role, workstation, client
address, server time, what, outcome).  Bodies are the msgspec structs of
:mod:`sas_desk.services.queues.wire`, so the OpenAPI document describes
exactly what the workstation decodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo

import msgspec
from litestar import Litestar, Request, Response, delete, get, post, put
from litestar.di import Provide
from litestar.exceptions import (
    HTTPException,
    NotFoundException,
    ValidationException,
)
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Components, SecurityRequirement, SecurityScheme
from litestar.params import Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from sas_desk import __version__
from sas_desk.models.errors import KnownError
from sas_desk.models.queue import (
    READ_ONLY_ROLES,
    ROLE_QUEUES,
    ItemStatus,
    NotFound,
    Operation,
    QueueError,
    QueueName,
    WaitLimits,
    may_read,
    may_read_queue,
    queues_for_role,
    read_refusal,
)
from sas_desk.models.stats import (
    DEFAULT_TZ,
    Granularity,
    StatsError,
    may_read_staff_load,
    may_read_stats,
    parse_period,
)
from sas_desk.server.auth import Authenticator, PasswordAuthenticator, Sessions
from sas_desk.server.settings import ServerSettings
from sas_desk.server.store import AuditEntry, Principal, ServerStore, StoreUnavailable
from sas_desk.server.stream import Bye, Changes, Hub, KeepAlive
from sas_desk.services.queues import rules
from sas_desk.services.queues.api import AGENT_KINDS, BackendUnavailable, QueueBackend
from sas_desk.services.queues.wire import (
    ByeBody,
    DossierBody,
    ErrorBody,
    EventsBody,
    HealthBody,
    ItemBody,
    OperationRequest,
    OperationResult,
    QueueCount,
    RefreshRequest,
    RenewRequest,
    RenewResult,
    RoomBody,
    SessionBody,
    SessionRequest,
    SnapshotBody,
    WorkstationBody,
    changes_body,
    error_body,
    event_body,
    http_status,
    item_body,
)
from sas_desk.services.stats import StatsSource, StatsUnavailable
from sas_desk.services.stats.remote import ActivityBody, RawStatsBody, activity_body, raw_body

if TYPE_CHECKING:
    from sas_desk.server.hubsante import HubSante
    from sas_desk.server.oidc import OidcLogins

log = logging.getLogger("sas_desk.server")

ROLES = tuple(ROLE_QUEUES)  # the roles a session may take
LEASED_KINDS = frozenset({"claim", "reassign"})
STATS_REFUSAL_FR = "Statistiques de la salle : réservées au superviseur et au rôle STATS."
ACTIVITY_REFUSAL_FR = "Activité de la salle (qui fait quoi) : réservée au superviseur."
SHUTDOWN_FR = "Le serveur de la salle s'arrête (maintenance ou redémarrage) : reconnexion."
_MAX_TEXT = 200  # login, workstation: a bound on what is stored and audited


class ServerClock:
    """The server's time.  Tests may freeze it (``PUT /_test/clock``)."""

    def __init__(self) -> None:
        self.frozen: datetime | None = None

    def now(self) -> datetime:
        return self.frozen if self.frozen is not None else datetime.now().astimezone()


class ApiError(KnownError):
    """A refused request: its French message goes back to the workstation."""

    def __init__(self, status: int, body: ErrorBody) -> None:
        super().__init__(body.message_fr)
        self.status = status
        self.body = body


def _error(status: int, code: str, message_fr: str, error: str, case_id: str = "") -> ApiError:
    return ApiError(
        status, ErrorBody(error=error, code=code, message_fr=message_fr, case_id=case_id)
    )


def unauthorized(
    message_fr: str = "Session absente, expirée ou révoquée : reconnectez-vous.",
) -> ApiError:
    return _error(401, "unauthorized", message_fr, "Unauthorized")


def forbidden(message_fr: str, case_id: str = "") -> ApiError:
    return _error(403, "forbidden", message_fr, "Forbidden", case_id)


def invalid(message_fr: str) -> ApiError:
    return _error(422, "invalid", message_fr, "Invalid")


class TestClockBody(msgspec.Struct, frozen=True):
    at: str
    expire: bool = False  # also run the lease expiry at that time


class AttachRequest(msgspec.Struct, frozen=True):
    """``POST /v1/hub/appointments/{id}/attach``: who attaches is the session's."""

    case_id: str


class AppointmentsBody(msgspec.Struct, frozen=True):
    """``GET /v1/hub/appointments``: the records of ``sas-desk hub appointments``
    with the message itself (``body``)."""

    appointments: list[dict[str, Any]]


class ShareRequest(msgspec.Struct, frozen=True):
    """``POST /v1/hub/share``: the dossier to a partner centre (RS-EDA)."""

    case_id: str
    to: str


class LedgerBody(msgspec.Struct, frozen=True):
    """``GET /v1/hub/ledger?case_id=…``: what was sent about a dossier."""

    messages: list[dict[str, Any]]


class TestClockResult(msgspec.Struct, frozen=True):
    at: str
    expired: list[ItemBody]


@dataclass
class Room:
    """What the handlers share: settings, stores, clock, sessions, stream."""

    settings: ServerSettings
    backend: QueueBackend
    store: ServerStore
    clock: ServerClock
    authenticator: Authenticator
    sessions: Sessions
    hub: Hub
    stats: StatsSource | None = None
    sante: HubSante | None = None  # the Hub Santé agent ([hub], server/hubsante.py)
    streams: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def audit(
        self,
        request: Request[Any, Any, Any],
        who: Principal | None,
        action: str,
        *,
        case_id: str = "",
        outcome: str = "ok",
        detail: dict[str, Any] | None = None,
        login: str = "",
    ) -> None:
        entry = AuditEntry(
            at=self.clock.now(),
            operator=who.login if who is not None else login,
            role=who.role if who is not None else "",
            workstation=who.workstation if who is not None else "",
            client=client_address(request),
            action=action,
            case_id=case_id,
            outcome=outcome,
            detail=detail,
        )
        await self.store.audit(entry)

    async def expire_loop(self) -> None:
        """Returns expired claims to their queue (the server's own task)."""
        while True:
            await asyncio.sleep(self.settings.expire_every_s)
            if self.clock.frozen is not None:
                continue  # a test drives time (and expiry) itself
            try:
                expired = await self.backend.expire(self.clock.now())
            except BackendUnavailable as exc:
                log.warning("lease expiry skipped: %s", exc.message_fr)
                continue
            except Exception:
                log.exception("lease expiry failed")
                continue
            if expired:
                log.info("%d lease(s) expired", len(expired))

    async def purge_loop(self) -> None:
        while True:
            await asyncio.sleep(600)
            with contextlib.suppress(StoreUnavailable):
                await self.store.purge_expired_tokens(self.clock.now())


def client_address(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client is not None else ""


# --------------------------------------------------------------------------- errors


def _respond(
    status: int, body: ErrorBody, headers: dict[str, str] | None = None
) -> Response[ErrorBody]:
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return Response(body, status_code=status, headers=headers or None)


def _api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[ErrorBody]:
    return _respond(exc.status, exc.body)


def _queue_error(_: Request[Any, Any, Any], exc: QueueError) -> Response[ErrorBody]:
    return _respond(http_status(exc), error_body(exc, getattr(exc, "case_id", "")))


def _unavailable(
    _: Request[Any, Any, Any], exc: BackendUnavailable | StoreUnavailable
) -> Response[ErrorBody]:
    return _respond(
        503, ErrorBody(error="Unavailable", code="unavailable", message_fr=exc.message_fr)
    )


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[ErrorBody]:
    return _respond(
        422,
        ErrorBody(
            error="Invalid",
            code="invalid",
            message_fr="Requête invalide : corps ou paramètres non conformes à l'API de la salle.",
        ),
    )


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    if isinstance(exc, NotFoundException):
        body = ErrorBody(error="NotFound", code="not_found", message_fr="Adresse inconnue.")
    else:
        body = ErrorBody(
            error="HTTPError",
            code="invalid" if exc.status_code < 500 else "internal",
            message_fr=f"Requête refusée par le serveur de la salle ({exc.status_code}).",
        )
    return _respond(exc.status_code, body, dict(exc.headers or {}))  # e.g. Allow on a 405


def _internal(_: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    log.exception("internal error", exc_info=exc)
    return _respond(
        500,
        ErrorBody(
            error="Internal",
            code="internal",
            message_fr="Erreur interne du serveur de la salle (consignée dans son journal).",
        ),
    )


# --------------------------------------------------------------------------- responses

_E = ErrorBody
_AUTH = {401: ResponseSpec(_E, description="Session absente, expirée ou révoquée")}
_COMMON = {
    **_AUTH,
    403: ResponseSpec(_E, description="Hors du périmètre du rôle"),
    422: ResponseSpec(_E, description="Requête invalide"),
    503: ResponseSpec(_E, description="Base injoignable"),
}
_BEARER: list[SecurityRequirement] = [{"bearer": []}]


def create_app(
    settings: ServerSettings,
    backend: QueueBackend,
    store: ServerStore,
    *,
    clock: ServerClock | None = None,
    authenticator: Authenticator | None = None,
    hub: Hub | None = None,
    identity: OidcLogins | None = None,
    stats: StatsSource | None = None,
    sante: HubSante | None = None,
) -> Litestar:
    """The ASGI application over opened stores (the caller opens and closes them)."""
    clock = clock or ServerClock()
    room = Room(
        settings=settings,
        backend=backend,
        store=store,
        clock=clock,
        authenticator=authenticator or PasswordAuthenticator(store),
        sessions=Sessions(
            store,
            access_ttl_s=settings.access_ttl_s,
            refresh_ttl_s=settings.refresh_ttl_s,
            max_failures=settings.max_failures,
            lockout_s=settings.lockout_s,
        ),
        hub=hub or Hub(backend, settings.ring_size),
        stats=stats,
        sante=sante,
    )

    async def principal(request: Request[Any, Any, Any]) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized()
        found = await room.sessions.check(token.strip(), clock.now())
        if found is None:
            raise unauthorized()
        return found

    deps = {"who": Provide(principal)}

    # ------------------------------------------------------------ no auth
    @get("/healthz", responses={503: ResponseSpec(_E)}, tags=["santé"])
    async def healthz() -> HealthBody:
        """The server and its store answer."""
        await room.store.ping()
        return HealthBody(status="ok")

    document: dict[str, Any] = {}

    @get("/v1/openapi.json", include_in_schema=False)
    async def openapi(request: Request[Any, Any, Any]) -> dict[str, Any]:
        """The OpenAPI document (no auth)."""
        if not document:
            document.update(_document(request.app.openapi_schema.to_schema()))
        return document

    # ------------------------------------------------------------ session
    @post(
        "/v1/session",
        status_code=200,
        responses={
            401: ResponseSpec(_E, description="Identifiant ou mot de passe incorrect"),
            403: ResponseSpec(_E, description="Rôle non autorisé pour ce compte"),
            422: ResponseSpec(_E),
            429: ResponseSpec(_E, description="Trop d'échecs : compte bloqué une minute"),
            503: ResponseSpec(_E),
        },
        tags=["session"],
    )
    async def open_session(request: Request[Any, Any, Any], data: SessionRequest) -> SessionBody:
        """Log in for one role from one workstation: the session is the actor
        of everything done with its token."""
        at = clock.now()
        login = data.login.strip()
        if not login or len(login) > _MAX_TEXT:
            raise invalid("Identifiant manquant ou trop long.")
        workstation = data.workstation.strip()
        if not workstation or len(workstation) > _MAX_TEXT:
            raise invalid("Nom du poste manquant ou trop long.")
        if data.role not in ROLES:
            raise invalid(f"Rôle inconnu : « {data.role[:_MAX_TEXT]} ».")
        if await room.sessions.locked(login, at):
            await room.audit(request, None, "login", login=login, outcome="locked")
            raise _error(
                429,
                "locked",
                "Trop d'échecs de connexion : compte bloqué une minute. Réessayez plus tard.",
                "TooManyAttempts",
            )
        account = await room.authenticator.authenticate(login, data.password)
        if account is None:
            await room.sessions.failed(login, at)
            await room.audit(
                request,
                None,
                "login",
                login=login,
                outcome="unauthorized",
                detail={"role": data.role, "workstation": workstation},
            )
            raise unauthorized("Identifiant ou mot de passe incorrect.")
        if data.role not in account.roles:
            await room.audit(
                request,
                None,
                "login",
                login=login,
                outcome="forbidden",
                detail={"role": data.role, "workstation": workstation},
            )
            raise forbidden(f"Le compte {login} ne peut pas travailler comme {data.role}.")
        issued = await room.sessions.open(
            account, data.role, workstation, client_address(request), at
        )
        await room.audit(request, issued.principal, "login")
        return _session_body(issued)

    @post(
        "/v1/session/refresh",
        status_code=200,
        responses={401: ResponseSpec(_E), 422: ResponseSpec(_E), 503: ResponseSpec(_E)},
        tags=["session"],
    )
    async def refresh_session(request: Request[Any, Any, Any], data: RefreshRequest) -> SessionBody:
        """A new pair of tokens for a valid refresh token (used once)."""
        issued = await room.sessions.refresh(data.refresh_token, clock.now())
        if issued is None:
            raise unauthorized()
        await room.audit(request, issued.principal, "refresh")
        return _session_body(issued)

    @delete(
        "/v1/session",
        status_code=204,
        dependencies=deps,
        responses={**_AUTH, 503: ResponseSpec(_E)},
        security=_BEARER,
        tags=["session"],
    )
    async def close_session(request: Request[Any, Any, Any], who: Principal) -> None:
        """Log out: the session's tokens stop working."""
        await room.sessions.revoke(who, clock.now())
        await room.audit(request, who, "logout")

    # ------------------------------------------------------------ operations
    @post(
        "/v1/ops",
        status_code=200,
        dependencies=deps,
        responses={
            **_COMMON,
            404: ResponseSpec(_E, description="Dossier inconnu"),
            409: ResponseSpec(_E, description="Conflit d'état"),
        },
        security=_BEARER,
        tags=["files"],
    )
    async def apply_op(
        request: Request[Any, Any, Any], data: OperationRequest, who: Principal
    ) -> OperationResult:
        """Apply one queue operation as the session's actor, at the server's
        time (idempotent on ``op_id``).  Its audit row is written by the
        store in the operation's own transaction: both or neither."""
        if not data.op_id or len(data.op_id) > _MAX_TEXT or len(data.case_id) > _MAX_TEXT:
            raise invalid("Identifiant d'opération ou de dossier manquant ou trop long.")
        if data.kind in AGENT_KINDS:
            await room.audit(
                request, who, f"op:{data.kind}", case_id=data.case_id, outcome="forbidden"
            )
            raise forbidden("Opération réservée à l'agent Hub Santé du serveur.", data.case_id)
        try:
            op = Operation(
                op_id=data.op_id,
                kind=data.kind,
                case_id=data.case_id,
                at=clock.now(),
                role=who.role,
                operator=who.login,
                workstation=who.workstation,
                data=_bounded(data.kind, dict(data.data), settings),
            )
        except QueueError as exc:  # refused before the store: nothing else is written
            await room.audit(
                request,
                who,
                f"op:{data.kind[:40]}",
                case_id=data.case_id,
                outcome=exc.code,
                detail={"op_id": data.op_id},
            )
            raise
        item = await room.backend.apply_audited(op, client_address(request))
        if room.sante is not None:  # a shared case's news for the partners
            room.sante.applied(op)
        return OperationResult(item=item_body(item) if item is not None else None)

    @post(
        "/v1/renew",
        status_code=200,
        dependencies=deps,
        responses={**_AUTH, 422: ResponseSpec(_E), 503: ResponseSpec(_E)},
        security=_BEARER,
        tags=["files"],
    )
    async def renew(who: Principal, data: RenewRequest | None = None) -> RenewResult:
        """Renew every lease the session's workstation holds."""
        lease = settings.lease_s
        if data is not None and data.lease_s is not None:
            lease = rules.checked_lease(data.lease_s, settings.max_lease_s)
        count = await room.backend.renew(who.workstation, clock.now(), lease)
        return RenewResult(renewed=count)

    # ------------------------------------------------------------ reads
    @get(
        "/v1/queues/{queue:str}",
        dependencies=deps,
        responses=_COMMON,
        security=_BEARER,
        tags=["files"],
    )
    async def queue_snapshot(queue: QueueName, who: Principal) -> SnapshotBody:
        """The items of one queue, in queue order (only the role's queues)."""
        name = queue
        if not may_read_queue(who.role, name):
            raise forbidden(read_refusal(name))
        items = await room.backend.snapshot([name])
        return SnapshotBody(items=[item_body(i) for i in items])

    async def readable(
        request: Request[Any, Any, Any], who: Principal, case_id: str, what: str
    ) -> list[Any]:
        events = await room.backend.events(case_id)
        current = room.hub.state.get(case_id)
        queue = (
            current.queue
            if current is not None and current.status is not ItemStatus.CLOSED
            else None
        )
        if not events and current is None:
            await room.audit(request, who, what, case_id=case_id, outcome="not_found")
            raise NotFound(case_id)
        if not may_read(who.role, who.login, queue, (e.actor.operator for e in events)):
            await room.audit(request, who, what, case_id=case_id, outcome="forbidden")
            raise forbidden(read_refusal(), case_id)
        await room.audit(request, who, what, case_id=case_id)
        return events

    @get(
        "/v1/dossiers/{case_id:str}",
        dependencies=deps,
        responses={**_COMMON, 404: ResponseSpec(_E, description="Dossier inconnu")},
        security=_BEARER,
        tags=["dossiers"],
    )
    async def dossier(request: Request[Any, Any, Any], case_id: str, who: Principal) -> DossierBody:
        """The server copy of a dossier (audited read)."""
        await readable(request, who, case_id, "read:dossier")
        found = await room.backend.dossier(case_id)
        if found is None:
            raise NotFound(case_id)
        return DossierBody(dossier=found.to_dict())

    @get(
        "/v1/dossiers/{case_id:str}/events",
        dependencies=deps,
        responses={**_COMMON, 404: ResponseSpec(_E, description="Dossier inconnu")},
        security=_BEARER,
        tags=["dossiers"],
    )
    async def dossier_events(
        request: Request[Any, Any, Any], case_id: str, who: Principal
    ) -> EventsBody:
        """A dossier's event log, oldest first (audited read)."""
        events = await readable(request, who, case_id, "read:events")
        return EventsBody(events=[event_body(e) for e in events])

    @get(
        "/v1/stream",
        dependencies=deps,
        responses=_COMMON,
        security=_BEARER,
        tags=["files"],
        media_type="text/event-stream",
    )
    async def stream(
        who: Principal,
        queue: Annotated[list[QueueName] | None, Parameter(query="queue", required=False)] = None,
        last_event_id: Annotated[
            str | None, Parameter(header="Last-Event-ID", required=False)
        ] = None,
    ) -> ServerSentEvent:
        """Server-Sent Events: ``changes`` (a reset, then increments; ids
        ``<boot>.<n>`` for ``Last-Event-ID``), keep-alive comments, ``bye``."""
        if queue:
            names = list(queue)
            for name in names:
                if not may_read_queue(who.role, name):
                    raise forbidden(read_refusal(name))
        else:
            names = list(QueueName) if who.role == "SUP" else list(queues_for_role(who.role))
        return ServerSentEvent(_sse(room, who, frozenset(names), last_event_id))

    @get(
        "/v1/room",
        dependencies=deps,
        responses={**_AUTH, 403: ResponseSpec(_E), 503: ResponseSpec(_E)},
        security=_BEARER,
        tags=["supervision"],
    )
    async def room_view(who: Principal) -> RoomBody:
        """Counts per queue, oldest waits, connected workstations (supervisor)."""
        if who.role != "SUP":
            raise forbidden("Vue de la salle réservée au superviseur.")
        counts = []
        for name in QueueName:
            items = [i for i in room.hub.state.values() if i.queue is name]
            waiting = [i for i in items if i.status is ItemStatus.WAITING]
            oldest = min((i.waiting_since for i in waiting), default=None)
            counts.append(
                QueueCount(
                    queue=name.value,
                    waiting=len(waiting),
                    claimed=len(items) - len(waiting),
                    oldest_waiting_since=oldest.isoformat() if oldest is not None else None,
                )
            )
        workstations = [
            WorkstationBody(workstation=w, operator=o, role=r, streams=n)
            for (w, o, r), n in sorted(room.streams.items())
            if n > 0
        ]
        return RoomBody(at=clock.now().isoformat(), queues=counts, workstations=workstations)

    # ------------------------------------------------------------ statistics
    def stats_source(who: Principal, *, per_person: bool = False) -> StatsSource:
        if not may_read_stats(who.role):
            raise forbidden(STATS_REFUSAL_FR)
        if per_person and not may_read_staff_load(who.role):
            raise forbidden(ACTIVITY_REFUSAL_FR)
        if room.stats is None:
            raise _error(
                503, "unavailable", "Statistiques indisponibles sur ce serveur.", "Unavailable"
            )
        return room.stats

    @get(
        "/v1/stats/raw",
        dependencies=deps,
        responses=_COMMON,
        security=_BEARER,
        tags=["supervision"],
    )
    async def stats_raw(
        request: Request[Any, Any, Any],
        who: Principal,
        # required, but checked after the token (no token: 401 first)
        first: str = "",
        last: str = "",
        by: Granularity = Granularity.DAY,
        tz: str = DEFAULT_TZ,
        p0: Annotated[float, Parameter(gt=0, le=86400)] = 60.0,
        p1: Annotated[float, Parameter(gt=0, le=86400)] = 300.0,
        p2: Annotated[float, Parameter(gt=0, le=86400)] = 1200.0,
        p3: Annotated[float, Parameter(gt=0, le=86400)] = 3600.0,
        due_fraction: Annotated[float, Parameter(gt=0, le=1)] = 0.75,
    ) -> RawStatsBody:
        """The room's grouped counts over whole local days (supervisor and
        STATS; counts only, no dossier content; the load per person for the
        supervisor only): what a workstation in room mode builds its
        statistics screen and report from."""
        source = stats_source(who)
        try:
            zone_checked(tz)
            period = parse_period(first[:20], last[:20], by, tz)
        except StatsError as exc:
            raise invalid(exc.message_fr) from None
        limits = WaitLimits(P0=p0, P1=p1, P2=p2, P3=p3, due_fraction=due_fraction)
        try:
            raw = await source.raw(period, by, limits)
        except StatsUnavailable as exc:
            raise _error(503, "unavailable", exc.message_fr, "Unavailable") from None
        if not may_read_staff_load(who.role):  # figures per person stay in the room
            raw = replace(raw, load=[])
        await room.audit(
            request, who, "read:stats", detail={"first": first, "last": last, "by": by.value}
        )
        return raw_body(raw)

    @get(
        "/v1/stats/activity",
        dependencies=deps,
        responses=_COMMON,
        security=_BEARER,
        tags=["supervision"],
    )
    async def stats_activity(who: Principal, since: str = "", until: str = "") -> ActivityBody:
        """The room's events of ``[since, until)`` (ISO 8601 with an offset,
        at most a day): the board's last hour (supervisor: who did what)."""
        source = stats_source(who, per_person=True)
        try:
            start, end = datetime.fromisoformat(since), datetime.fromisoformat(until)
        except ValueError:
            raise invalid("Activité : dates ISO 8601 attendues (since, until).") from None
        if start.tzinfo is None or end.tzinfo is None:
            raise invalid("Activité : fuseau horaire attendu (since, until).")
        if not timedelta(0) <= end - start <= timedelta(days=1):
            raise invalid("Activité : période d'une journée au plus, since avant until.")
        try:
            events = await source.activity(start, end)
        except StatsUnavailable as exc:
            raise _error(503, "unavailable", exc.message_fr, "Unavailable") from None
        return activity_body(events)

    handlers: list[Any] = [
        healthz,
        openapi,
        open_session,
        refresh_session,
        close_session,
        apply_op,
        renew,
        queue_snapshot,
        dossier,
        dossier_events,
        stream,
        room_view,
        stats_raw,
        stats_activity,
    ]

    if settings.test_clock_token and settings.loopback:

        @put("/_test/clock", include_in_schema=False, status_code=200)
        async def set_clock(
            request: Request[Any, Any, Any], data: TestClockBody
        ) -> TestClockResult:
            token = request.headers.get("x-test-token", "")
            if not secrets.compare_digest(token, settings.test_clock_token):
                raise forbidden("Horloge de test : jeton refusé.")
            try:
                at = datetime.fromisoformat(data.at)
            except ValueError:
                raise invalid("Horloge de test : date ISO 8601 attendue.") from None
            if at.tzinfo is None:
                raise invalid("Horloge de test : fuseau horaire attendu.")
            clock.frozen = at
            expired = await room.backend.expire(at) if data.expire else []
            return TestClockResult(at=at.isoformat(), expired=[item_body(i) for i in expired])

        handlers.append(set_clock)

    if identity is not None:  # login through PSC / the establishment IdP (server/oidc.py)
        from sas_desk.server.oidc import oidc_handlers

        handlers.extend(oidc_handlers(room, identity))

    if sante is not None:  # the Hub Santé agent runs here ([hub])

        @get(
            "/v1/hub/appointments",
            dependencies=deps,
            responses=_COMMON,
            security=_BEARER,
            tags=["hub"],
        )
        async def hub_appointments(who: Principal, unattached: bool = False) -> AppointmentsBody:
            """The SAS appointments received (RS-SAS-RDV), soonest first."""
            if who.role in READ_ONLY_ROLES:
                raise forbidden("Le rôle STATS ne consulte pas les rendez-vous SAS.")
            assert room.sante is not None
            return AppointmentsBody(appointments=await room.sante.appointments(unattached))

        @post(
            "/v1/hub/appointments/{appointment_id:str}/attach",
            status_code=200,
            dependencies=deps,
            responses={**_COMMON, 404: ResponseSpec(_E, description="Rendez-vous ou dossier")},
            security=_BEARER,
            tags=["hub"],
        )
        async def hub_attach(
            request: Request[Any, Any, Any],
            appointment_id: str,
            data: AttachRequest,
            who: Principal,
        ) -> dict[str, Any]:
            """Attach an appointment to a dossier as the session's operator; it
            shows on the dossier's timeline on every workstation."""
            assert room.sante is not None
            if who.role in READ_ONLY_ROLES:
                raise forbidden("Le rôle STATS ne rattache pas de rendez-vous.")
            if len(appointment_id) > _MAX_TEXT or not data.case_id or len(data.case_id) > _MAX_TEXT:
                raise invalid("Identifiant de rendez-vous ou de dossier manquant ou trop long.")
            await readable(request, who, data.case_id, "hub:attach")
            try:
                await room.sante.processor.attach(appointment_id, data.case_id, who.login)
            except ValueError as exc:  # French: unknown appointment or dossier
                raise _error(404, "not_found", str(exc), "NotFound", data.case_id) from None
            return {"appointment": await room.sante.attached(appointment_id)}

        @post(
            "/v1/hub/share",
            status_code=200,
            dependencies=deps,
            responses={**_COMMON, 404: ResponseSpec(_E, description="Dossier inconnu")},
            security=_BEARER,
            tags=["hub"],
        )
        async def hub_share(
            request: Request[Any, Any, Any], data: ShareRequest, who: Principal
        ) -> dict[str, Any]:
            """Share a dossier with a partner of ``[hub] partners`` (RS-EDA through
            the durable outbox); the room's later notes and decisions on it follow
            as RS-EDA-MAJ."""
            assert room.sante is not None
            if who.role in READ_ONLY_ROLES:
                raise forbidden("Le rôle STATS ne partage pas de dossier.")
            if not data.case_id or len(data.case_id) > _MAX_TEXT or len(data.to) > _MAX_TEXT:
                raise invalid("Identifiant de dossier ou destinataire manquant ou trop long.")
            if data.to not in room.sante.settings.partners:
                raise invalid(f"« {data.to} » n'est pas un partenaire de [hub] partners.")
            await readable(request, who, data.case_id, "hub:share")
            try:
                did = await room.sante.processor.share_case(data.case_id, data.to)
            except ValueError as exc:
                raise _error(404, "not_found", str(exc), "NotFound", data.case_id) from None
            room.sante.agent.wake()
            return {"distributionID": did}

        @get(
            "/v1/hub/ledger",
            dependencies=deps,
            responses={**_COMMON, 404: ResponseSpec(_E, description="Dossier inconnu")},
            security=_BEARER,
            tags=["hub"],
        )
        async def hub_ledger(
            request: Request[Any, Any, Any], case_id: str, who: Principal
        ) -> LedgerBody:
            """The messages sent about a dossier and where each one is."""
            assert room.sante is not None
            await readable(request, who, case_id, "read:hub-ledger")
            rows = await room.sante.store.run(lambda s: s.ledger(case_id))
            return LedgerBody(messages=[r.record() for r in rows])

        @get("/v1/hub/partners", dependencies=deps, responses=_AUTH, security=_BEARER, tags=["hub"])
        async def hub_partners(who: Principal) -> dict[str, list[str]]:
            """The partner centres of ``[hub] partners`` (« Partager avec… »)."""
            assert room.sante is not None
            return {"partners": list(room.sante.settings.partners)}

        handlers.extend([hub_appointments, hub_attach, hub_share, hub_ledger, hub_partners])

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        room.hub.start()
        if room.sante is not None:
            room.sante.start()
        room.tasks.append(asyncio.create_task(room.expire_loop(), name="lease-expiry"))
        room.tasks.append(asyncio.create_task(room.purge_loop(), name="token-purge"))
        try:
            yield
        finally:
            room.hub.begin_close(SHUTDOWN_FR)
            for task in room.tasks:
                task.cancel()
            for task in room.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await room.hub.close(SHUTDOWN_FR)
            if room.sante is not None:
                await room.sante.close()

    app = Litestar(
        route_handlers=handlers,
        lifespan=[lifespan],
        exception_handlers={
            ApiError: _api_error,
            QueueError: _queue_error,
            BackendUnavailable: _unavailable,
            StoreUnavailable: _unavailable,
            ValidationException: _validation,
            HTTPException: _http,
            Exception: _internal,
        },
        openapi_config=OpenAPIConfig(
            title="SAS Desk — serveur de la salle",
            version=__version__,
            description="API de la salle de régulation : voir docs/room-api.md.",
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(
                        type="http", scheme="bearer", description="jeton d'accès"
                    )
                }
            ),
            path="/v1/_schema",
            enabled_endpoints=set(),
        ),
        debug=False,
    )
    app.state.room = room
    return app


def _document(schema: dict[str, Any]) -> dict[str, Any]:
    """Litestar's document, with what it cannot say: renew's body is
    optional, and a malformed request (400) is answered with an ErrorBody."""
    renew = schema.get("paths", {}).get("/v1/renew", {}).get("post", {})
    if "requestBody" in renew:
        renew["requestBody"]["required"] = False
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {}) if isinstance(operation, dict) else {}
            if "400" in responses:
                responses["400"] = {"description": "Requête mal formée", "content": error}
    return schema


def zone_checked(tz: str) -> ZoneInfo:
    """The IANA time zone named ``tz`` (a StatsError in French otherwise)."""
    try:
        return ZoneInfo(tz)
    except (ValueError, KeyError, OSError):
        raise StatsError(f"Fuseau horaire inconnu : « {tz[:60]} ».") from None


def _queue(value: str) -> QueueName:
    try:
        return QueueName(value)
    except ValueError:
        raise invalid(f"File inconnue : « {value[:_MAX_TEXT]} ».") from None


def _bounded(kind: str, data: dict[str, Any], settings: ServerSettings) -> dict[str, Any]:
    """The operation's data with the server's lease when it names none; a
    lease over the server's ``max_lease_s`` (at most the queues' own bound)
    is refused by the queues' one rule (:func:`rules.checked_lease`), as a
    store refuses one over ``MAX_LEASE_S``: a lease is never cut in silence."""
    if kind in LEASED_KINDS:
        lease = data.get("lease_s")
        if lease is None:
            data["lease_s"] = settings.lease_s
        else:
            data["lease_s"] = rules.checked_lease(lease, settings.max_lease_s)
    return data


SESSION_CLOSED_FR = "Session fermée par le serveur de salle : identifiez-vous à nouveau."


def _session_body(issued: Any) -> SessionBody:
    p = issued.principal
    return SessionBody(
        access_token=issued.access_token,
        refresh_token=issued.refresh_token,
        expires_in=issued.expires_in,
        operator=p.login,
        role=p.role,
        workstation=p.workstation,
        display_name=p.display_name,
    )


async def _sse(
    room: Room, who: Principal, queues: frozenset[QueueName], last_event_id: str | None
) -> AsyncIterator[ServerSentEventMessage]:
    key = (who.workstation, who.login, who.role)
    room.streams[key] += 1
    try:
        async for message in room.hub.follow(queues, last_event_id, room.settings.keepalive_s):
            if isinstance(message, Changes):
                yield ServerSentEventMessage(
                    data=msgspec.json.encode(changes_body(message.changes)).decode(),
                    event="changes",
                    id=message.id,
                )
            elif isinstance(message, KeepAlive):
                if not await room.store.session_open(who.session_id):
                    # revoked or account disabled: the workstation hears it
                    # within a keep-alive period, and its next request is refused
                    yield ServerSentEventMessage(
                        data=msgspec.json.encode(ByeBody(reason_fr=SESSION_CLOSED_FR)).decode(),
                        event="bye",
                    )
                    return
                yield ServerSentEventMessage(comment="keep-alive")
            elif isinstance(message, Bye):
                yield ServerSentEventMessage(
                    data=msgspec.json.encode(ByeBody(reason_fr=message.reason_fr)).decode(),
                    event="bye",
                )
                return
    finally:
        room.streams[key] -= 1
        if room.streams[key] <= 0:
            del room.streams[key]


__all__ = ["ApiError", "Room", "ServerClock", "create_app"]
