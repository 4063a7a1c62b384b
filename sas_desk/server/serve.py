"""Running the room server: open the stores, refuse what is unsafe, serve
with uvicorn, stop cleanly on SIGTERM (streams say ``bye``, in-flight
requests finish, then the stores close)."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from types import FrameType
from typing import Any

import uvicorn

from sas_desk.server.app import SHUTDOWN_FR, ServerClock, create_app
from sas_desk.server.settings import ServerSettings, SettingsError
from sas_desk.server.store import ServerStore, StoreUnavailable, open_store
from sas_desk.server.stream import Hub
from sas_desk.services.config import IdentitySettings
from sas_desk.services.hub.settings import HubSettings
from sas_desk.services.queues.api import BackendUnavailable, QueueBackend
from sas_desk.services.stats import StatsSource

log = logging.getLogger("sas_desk.server")


def open_backend(settings: ServerSettings, clock: ServerClock) -> QueueBackend:
    path = settings.sqlite_path
    if path is not None:
        from sas_desk.services.queues.sqlite import SqliteBackend

        return SqliteBackend(path, now=clock.now)
    from sas_desk.services.queues.postgres import PostgresBackend

    return PostgresBackend(
        settings.dsn,
        now=clock.now,
        schema=settings.schema,
        application_name="sas-desk-server",
        pool_size=8,
    )


def open_stats(settings: ServerSettings) -> StatsSource:
    """The statistics over the room's own store (read-only; the supervisor's
    board and statistics screen read them through ``/v1/stats``)."""
    path = settings.sqlite_path
    if path is not None:
        from sas_desk.services.stats.sqlite import SqliteStatsSource

        return SqliteStatsSource(path)
    from sas_desk.services.stats.postgres import PostgresStatsSource

    return PostgresStatsSource(settings.dsn, settings.schema)


class _Server(uvicorn.Server):
    """uvicorn, plus: the streams are told ``bye`` as soon as SIGTERM/SIGINT
    arrives (otherwise they would hold the graceful shutdown open)."""

    def __init__(self, config: uvicorn.Config, hub: Hub) -> None:
        super().__init__(config)
        self.hub = hub

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.hub.begin_close(SHUTDOWN_FR)
        # not re-raised after the graceful shutdown (uvicorn's default): the
        # stores close and the process exits 0, which is what systemd expects
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True


async def serve(
    settings: ServerSettings,
    identity: IdentitySettings | None = None,
    hub_settings: HubSettings | None = None,
) -> int:
    settings = settings.checked()
    clock = ServerClock()
    backend = open_backend(settings, clock)
    store: ServerStore = open_store(settings.dsn, settings.schema)
    try:
        await store.open()
        if await store.is_superuser() and not settings.allow_superuser:
            raise SettingsError(
                "Serveur : le compte PostgreSQL est superutilisateur ; utilisez le compte du "
                "serveur (droits limités, voir docs/deploy-room-server.md) ou --allow-superuser."
            )
        await backend.open()
    except (StoreUnavailable, BackendUnavailable, SettingsError) as exc:
        await backend.close()
        await store.close()
        print(f"sas-desk server : {exc.message_fr}", file=sys.stderr)
        return 1
    hub = Hub(backend, settings.ring_size)
    logins = None
    if identity is not None:  # OIDC login (server/oidc.py)
        from sas_desk.server.oidc import open_logins

        try:
            logins = open_logins(identity, store, loopback=settings.loopback)
        except SettingsError as exc:
            await backend.close()
            await store.close()
            print(f"sas-desk server : {exc.message_fr}", file=sys.stderr)
            return 1
    sante = None
    if hub_settings is not None:  # the Hub Santé agent in the server (server/hubsante.py)
        from sas_desk.server.hubsante import open_hub

        try:
            sante = await open_hub(settings, hub_settings, backend, clock.now)
        except SettingsError as exc:
            if logins is not None:
                await logins.close()
            await backend.close()
            await store.close()
            print(f"sas-desk server : {exc.message_fr}", file=sys.stderr)
            return 1
    stats = open_stats(settings)
    app = create_app(
        settings,
        backend,
        store,
        clock=clock,
        hub=hub,
        identity=logins,
        stats=stats,
        sante=sante,
    )
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        await backend.close()
        await store.close()
        print(
            f"sas-desk server : impossible d'écouter sur {settings.host}:{settings.port} "
            f"({exc.strerror}).",
            file=sys.stderr,
        )
        return 1
    port = sock.getsockname()[1]
    options: dict[str, Any] = {}
    if settings.tls_cert is not None and settings.tls_key is not None:
        options = {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        server_header=False,
        **options,
    )
    server = _Server(config, hub)
    bound = ServerSettings(**{**settings.__dict__, "port": port})
    # the first line on stdout says where it listens (tests start it on port 0)
    print(f"LISTEN {bound.base_url}", flush=True)
    log.info("room server listening on %s (store: %s)", bound.base_url, store.kind)
    try:
        await server.serve(sockets=[sock])
    finally:
        if logins is not None:
            await logins.close()
        await stats.close()
        await backend.close()
        await store.close()
        sock.close()
    return 0 if server.started else 1


def run(
    settings: ServerSettings,
    identity: IdentitySettings | None = None,
    hub_settings: HubSettings | None = None,
) -> int:
    try:
        return asyncio.run(serve(settings, identity, hub_settings))
    except SettingsError as exc:
        print(f"sas-desk server : {exc.message_fr}", file=sys.stderr)
        return 1
