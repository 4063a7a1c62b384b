"""Faults between the workstations and the room server, with the product's
:class:`RemoteBackend` (one session each) and a real ``sas-desk server``
process over PostgreSQL on the real clock:

- the server killed (SIGKILL) and restarted in the middle of contested
  claims, and in the middle of an outbox replay: every operation applied
  exactly once, one winner per item;
- the change stream cut under the workstations (a proxy drops every
  connection), and the server stopped (SIGTERM, ``bye``) and started again:
  nothing lost, nothing applied twice, every workstation converges on the
  server's snapshot;
- PostgreSQL killing the server's connections (``pg_terminate_backend``) and
  refusing new ones for a while: 503 in French, the outbox keeps the
  transmission, the server recovers by itself and it lands once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import pytest_asyncio
from psycopg.conninfo import conninfo_to_dict

from sas_desk.models.dossier import Actor, Dossier, EventKind
from sas_desk.models.queue import ClaimConflict, Operation, QueueItem, QueueName
from sas_desk.services.queues.api import BackendUnavailable
from sas_desk.services.queues.client import Outbox, QueueClient
from sas_desk.services.queues.remote import Credentials, RemoteBackend, RoomSession
from tests.integration.queues.conftest import PG_DSN
from tests.integration.queues.room import PASSWORD, RoomServer, room_server
from tests.integration.queues.support import (
    ARM,
    MRU,
    MRU2,
    SUP,
    Mirror,
    make_dossier,
    op,
    real_clock,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


@pytest.fixture
def room(tmp_path: Path) -> Iterator[RoomServer]:
    yield from room_server("postgres", tmp_path, PG_DSN, [ARM, MRU, MRU2, SUP])


def remote(url: str, actor: Actor) -> RemoteBackend:
    async def credentials(reason_fr: str) -> Credentials | None:
        return Credentials(actor.operator, PASSWORD, actor.role)

    return RemoteBackend(
        RoomSession(url, actor.workstation, credentials=credentials, connect_timeout=1.0),
        retry_delay=0.05,
        max_retry_delay=0.5,
    )


@pytest_asyncio.fixture
async def backends(room: RoomServer) -> AsyncIterator[dict[Actor, RemoteBackend]]:
    made = {actor: remote(room.url, actor) for actor in (ARM, MRU, MRU2, SUP)}
    for backend in made.values():
        await backend.open()
    yield made
    for backend in made.values():
        await backend.close()


async def until_answered(backend: RemoteBackend, operation: Operation) -> QueueItem | ClaimConflict:
    """Send ``operation`` until the server answers (the same op_id each
    time: what the workstation does after a cut)."""
    while True:
        try:
            item = await backend.apply(operation)
        except ClaimConflict as exc:
            return exc
        except BackendUnavailable:
            await asyncio.sleep(0.05)  # the server is restarting: try again shortly
            continue
        assert item is not None
        return item


async def restart(room: RoomServer) -> None:
    room.kill()
    await asyncio.get_running_loop().run_in_executor(None, room.start)


async def test_server_killed_in_the_middle_of_contested_claims(
    room: RoomServer, backends: dict[Actor, RemoteBackend]
) -> None:
    dossiers = [make_dossier(n) for n in range(1, 41)]
    for d in dossiers:
        await backends[ARM].apply(op("enqueue", d.case_id, ARM, real_clock(), dossier=d.to_dict()))
    answered = 0
    restarted: asyncio.Task[None] | None = None

    async def contest(case_id: str) -> tuple[QueueItem | ClaimConflict, ...]:
        nonlocal answered, restarted
        results = await asyncio.gather(
            until_answered(backends[MRU], op("claim", case_id, MRU, real_clock())),
            until_answered(backends[MRU2], op("claim", case_id, MRU2, real_clock())),
        )
        answered += 1
        if answered == 10:  # claims of the next items go out while the server dies
            restarted = asyncio.ensure_future(restart(room))
        return tuple(results)

    outcomes = {}
    for batch in range(0, len(dossiers), 4):  # four items contested at a time
        group = dossiers[batch : batch + 4]
        for d, result in zip(
            group, await asyncio.gather(*(contest(d.case_id) for d in group)), strict=True
        ):
            outcomes[d.case_id] = result
    assert restarted is not None
    await restarted
    assert room.starts == 2
    shown = {i.case_id: i for i in await backends[SUP].snapshot([QueueName.AMU])}
    for d in dossiers:
        won = [r for r in outcomes[d.case_id] if isinstance(r, QueueItem)]
        lost = [r for r in outcomes[d.case_id] if isinstance(r, ClaimConflict)]
        assert len(won) == 1 and len(lost) == 1, (d.case_id, outcomes[d.case_id])
        assert won[0].claim is not None and lost[0].claim == won[0].claim
        assert shown[d.case_id].claim == won[0].claim
        kinds = [e.kind for e in await backends[SUP].events(d.case_id)]
        assert kinds == [EventKind.ENQUEUED, EventKind.CLAIMED], d.case_id


class CountingBackend(RemoteBackend):
    """The ARM's backend, killing the server after its ``kill_after``-th
    applied operation (the outbox is then half replayed)."""

    def __init__(self, room: RoomServer, kill_after: int) -> None:
        base = remote(room.url, ARM)
        super().__init__(base.session, retry_delay=0.05, max_retry_delay=0.5)
        self.room = room
        self.kill_after = kill_after
        self.applied = 0
        self.killed = asyncio.Event()

    async def apply(self, operation: Operation) -> QueueItem | None:
        item = await super().apply(operation)
        self.applied += 1
        if self.applied == self.kill_after:
            self.room.kill()
            self.killed.set()
        return item


async def test_server_killed_in_the_middle_of_an_outbox_replay(
    room: RoomServer, backends: dict[Actor, RemoteBackend], tmp_path: Path
) -> None:
    backend = CountingBackend(room, kill_after=5)
    client = QueueClient(
        backend,
        Outbox(tmp_path / "outbox.sqlite"),
        ARM,
        now=real_clock,
        retry_delay=0.05,
        max_retry_delay=0.3,
        renew_s=3600,
    )
    dossiers = [make_dossier(n) for n in range(1, 13)]
    room.kill()  # the ARM transmits while the server is down
    await client.start()
    try:
        for d in dossiers:
            assert await client.enqueue(d) is None  # kept in the outbox
        assert client.state.pending == len(dossiers) and not client.state.online
        await asyncio.get_running_loop().run_in_executor(None, room.start)
        await asyncio.wait_for(backend.killed.wait(), 30)  # replayed halfway, then killed again
        assert 0 < await client.outbox.count() < len(dossiers)
        await asyncio.get_running_loop().run_in_executor(None, room.start)
        for _ in range(600):
            if client.state.pending == 0 and client.state.online:
                break
            await asyncio.sleep(0.05)  # the client's own replay loop retries
        assert client.state.pending == 0 and await client.outbox.count() == 0
        assert client.state.failed == ()
    finally:
        await client.stop()
    shown = await backends[SUP].snapshot([QueueName.AMU])
    assert sorted(i.case_id for i in shown) == sorted(d.case_id for d in dossiers)
    for d in dossiers:
        assert [e.kind for e in await backends[SUP].events(d.case_id)] == [EventKind.ENQUEUED]


class Proxy:
    """A loopback TCP proxy in front of the server whose connections the
    test can cut at once (a network drop under the change stream)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}

    def cut(self) -> None:
        for writer in list(self.writers):
            writer.transport.abort()

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def converged(mirror: Mirror, snapshot: list[QueueItem]) -> bool:
    return mirror.items == {i.case_id: i for i in snapshot}


def increments_once(mirror: Mirror) -> None:
    """No (item, version) arrives twice between two resets."""
    seen: set[tuple[str, int]] = set()
    for change in mirror.sets:
        if change.reset:
            seen = set()
            continue
        for item in change.items:
            assert (item.case_id, item.version) not in seen, item
            seen.add((item.case_id, item.version))


async def test_stream_cut_and_server_restart_lose_nothing_and_converge(
    room: RoomServer, backends: dict[Actor, RemoteBackend]
) -> None:
    proxy = Proxy(room.port)
    await proxy.start()
    watchers = [remote(proxy.url, MRU), remote(proxy.url, MRU2)]
    dossiers = [make_dossier(n) for n in range(1, 21)]
    try:
        for w in watchers:
            await w.open()
        streams = [w.watch([QueueName.AMU]) for w in watchers]
        mirrors = [Mirror(s) for s in streams]
        for m in mirrors:
            assert (await m.next(10)).reset

        async def act(batch: list[Dossier]) -> None:
            for d in batch:
                await backends[ARM].apply(
                    op("enqueue", d.case_id, ARM, real_clock(), dossier=d.to_dict())
                )
            for d in batch[::2]:
                await backends[MRU].apply(op("claim", d.case_id, MRU, real_clock()))

        async def all_converge() -> None:
            snapshot = await backends[SUP].snapshot([QueueName.AMU])
            for m in mirrors:
                await m.until(lambda items, s=snapshot: items == {i.case_id: i for i in s}, 15)

        await act(dossiers[:5])
        await all_converge()
        resets = [sum(c.reset for c in m.sets) for m in mirrors]
        # 1. the network drops every connection; changes happen meanwhile
        proxy.cut()
        await act(dossiers[5:10])
        await all_converge()
        # resumed with Last-Event-ID: the missed changes came as increments
        assert [sum(c.reset for c in m.sets) for m in mirrors] == resets
        # 2. the server stops (SIGTERM: "bye"), changes wait for it, it starts again
        await asyncio.get_running_loop().run_in_executor(None, room.stop)
        await asyncio.get_running_loop().run_in_executor(None, room.start)
        await act(dossiers[10:15])
        await all_converge()
        # 3. killed outright under the stream
        await restart(room)
        await act(dossiers[15:])
        await all_converge()
        for m in mirrors:
            increments_once(m)
            assert set(m.items) == {d.case_id for d in dossiers}
        for s in streams:
            await s.aclose()  # type: ignore[attr-defined]
    finally:
        for w in watchers:
            await w.close()
        await proxy.close()


class PgProxy:
    """A loopback TCP proxy in front of PostgreSQL, for the server's DSN:
    it knows the server's connections (their ports, as PostgreSQL sees its
    clients) and can refuse new ones while the database is "down"."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.down = threading.Event()
        self.ports: set[int] = set()  # local ports of the upstream sockets
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            if self.down.is_set():
                client.close()  # the database refuses connections
                continue
            try:
                up = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            up.settimeout(None)
            with self.lock:
                self.ports.add(up.getsockname()[1])
                self.sockets |= {client, up}
            for src, dst in ((client, up), (up, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def terminate_backends(self) -> int:
        """``pg_terminate_backend`` from another connection, for every
        session that came through this proxy (the server's: nobody else's)."""
        import psycopg

        with self.lock:
            ports = sorted(self.ports)
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE client_port = ANY(%s) AND pid <> pg_backend_pid()",
                (ports,),
            ).fetchall()
        return sum(1 for (done,) in rows if done)

    def close(self) -> None:
        self.listener.close()
        with self.lock:
            for s in self.sockets:
                with contextlib.suppress(OSError):
                    s.close()


@pytest.fixture
def pg_proxy() -> Iterator[PgProxy]:
    info = conninfo_to_dict(PG_DSN)
    proxy = PgProxy(str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432))
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def proxied_room(tmp_path: Path, pg_proxy: PgProxy) -> Iterator[RoomServer]:
    url = urlsplit(PG_DSN)  # the server takes a postgresql:// URL
    user = f"{url.username}@" if url.username else ""
    dsn = urlunsplit(url._replace(netloc=f"{user}127.0.0.1:{pg_proxy.port}"))
    made = room_server("postgres", tmp_path, dsn, [ARM, SUP])
    server = next(made)
    try:
        yield server
    finally:
        pg_proxy.down.clear()  # the schema is dropped through the proxy
        with contextlib.suppress(StopIteration):
            next(made)


async def test_postgres_connections_killed_under_the_server(
    proxied_room: RoomServer, pg_proxy: PgProxy, tmp_path: Path
) -> None:
    """PostgreSQL kills the server's connections (``pg_terminate_backend``
    from another session) and refuses new ones for a while: the server
    answers 503 with a French message (no traceback, no crash), the
    workstation's outbox keeps the transmission, and once the database is
    back the server recovers by itself and the transmission lands once."""
    room = proxied_room
    loop = asyncio.get_running_loop()
    backend = remote(room.url, ARM)
    client = QueueClient(
        backend,
        Outbox(tmp_path / "outbox.sqlite"),
        ARM,
        now=real_clock,
        retry_delay=0.05,
        max_retry_delay=0.3,
        renew_s=3600,
    )
    sup = remote(room.url, SUP)
    await sup.open()
    first, second = make_dossier(1), make_dossier(2)
    await client.start()
    try:
        assert await client.enqueue(first) is not None  # the room works
        session = backend.session
        # the database goes down under the running server
        pg_proxy.down.set()
        killed = await loop.run_in_executor(None, pg_proxy.terminate_backends)
        assert killed >= 1
        answer = await session.request(
            "POST",
            "/v1/ops",
            json={"op_id": "probe-1", "kind": "release", "case_id": first.case_id, "data": {}},
        )
        assert answer.status_code == 503, answer.text
        body = answer.json()
        assert body["code"] == "unavailable"
        assert body["message_fr"] == "Serveur des files injoignable."
        assert "Traceback" not in answer.text
        # the ARM transmits meanwhile: kept in the outbox, not lost, not refused
        assert await client.enqueue(second) is None
        assert client.state.pending == 1 and not client.state.online
        assert client.state.failed == ()
        # the database is back: the server recovers without a restart
        pg_proxy.down.clear()
        for _ in range(600):
            if client.state.pending == 0 and client.state.online:
                break
            await asyncio.sleep(0.05)  # the client's own replay loop retries
        assert client.state.pending == 0 and await client.outbox.count() == 0
        assert client.state.failed == ()
        assert room.process is not None and room.process.poll() is None  # never restarted
        assert room.starts == 1
    finally:
        await client.stop()
    shown = await sup.snapshot([QueueName.AMU])
    assert {i.case_id for i in shown} >= {first.case_id, second.case_id}
    for d in (first, second):
        assert [e.kind for e in await sup.events(d.case_id)] == [EventKind.ENQUEUED]
    await sup.close()
    assert "Traceback" not in room.log()
