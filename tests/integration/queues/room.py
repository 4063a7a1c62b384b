"""The room server as the queue tests meet it: a real ``sas-desk server``
process over PostgreSQL (a schema of its own) or SQLite (a file in tmp),
its accounts made with ``sas-desk server user add``, and
:class:`ServerAdapter`, the contract suite's view of it.

The contract tests name who acts in each operation (``op(kind, case, MRU,
at)``) and move a fake clock; the server takes both from elsewhere (the
session, its clock).  The adapter bridges that, in the tests only: it holds
one :class:`RemoteBackend` (one session) per actor and sets the server's
clock to the operation's ``at`` through the test clock endpoint (enabled by
``SAS_DESK_SERVER_TEST_CLOCK_TOKEN``, loopback only) before sending it.  The
product's :class:`RemoteBackend` has one session and never sets a clock.

One server per store kind serves the whole run (starting one and hashing
eight passwords per test would cost seconds each); each test works in a
namespace of its own: case ids carry a per-test prefix on the wire, removed
on the way back, and what a test left in the queues is closed by the
supervisor when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from sas_desk.models.dossier import Actor, Dossier, Event
from sas_desk.models.queue import (
    ChangeSet,
    LogBreak,
    Operation,
    QueueError,
    QueueItem,
    QueueName,
)
from sas_desk.services.queues import wire
from sas_desk.services.queues.api import DEFAULT_LEASE_S, QueueBackend
from sas_desk.services.queues.remote import Credentials, RemoteBackend, RoomSession, TokenStore
from tests.integration.queues.support import (
    ARM,
    DENT,
    MRL,
    MRL2,
    MRU,
    MRU2,
    OSNP,
    SUP,
    real_clock,
)

ROOT = Path(__file__).resolve().parents[3]
PASSWORD = "mot-de-passe-de-test-1"
OSNP2 = Actor("OSNP", "osnp.autre", "POSTE-08")  # a colleague in the contract tests
ACTORS = (ARM, MRU, MRU2, MRL, MRL2, OSNP, OSNP2, DENT, SUP)
CLOCK_ENV = "SAS_DESK_SERVER_TEST_CLOCK_TOKEN"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sas_desk(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> str:
    """Run the ``sas-desk`` command line (this worktree's code); its output."""
    result = subprocess.run(
        [sys.executable, "-m", "sas_desk", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    if result.returncode != 0:
        raise AssertionError(f"sas-desk {args[:3]} failed: {result.stdout}{result.stderr}")
    return result.stdout


@dataclass
class RoomServer:
    """One ``sas-desk server`` process and its store."""

    kind: str  # "postgres" or "sqlite"
    dsn: str
    schema: str
    log_dir: Path
    port: int = field(default_factory=free_port)
    clock_token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    process: subprocess.Popen[bytes] | None = None
    tokens: dict[Actor, TokenStore] = field(default_factory=dict)  # kept refresh tokens
    clock_at: datetime | None = None  # where the test clock was last set
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def store_args(self) -> list[str]:
        return ["--dsn", self.dsn] + (["--schema", self.schema] if self.kind == "postgres" else [])

    def start(self, timeout: float = 30.0) -> None:
        """Start the process and wait until it answers ``/healthz``."""
        assert self.process is None or self.process.poll() is not None
        self.starts += 1
        self.clock_at = None
        out = (self.log_dir / f"server-{self.port}-{self.starts}.log").open("wb")
        args = ["server", *self.store_args(), "--listen", f"127.0.0.1:{self.port}"]
        if self.kind == "postgres":
            args.append("--allow-superuser")  # the test database's role is a superuser
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sas_desk", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), CLOCK_ENV: self.clock_token},
        )
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the room server exited: {self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)  # polling a process that is starting: nothing to wait on
        raise AssertionError(f"the room server did not answer within {timeout} s: {self.log()}")

    def log(self) -> str:
        path = self.log_dir / f"server-{self.port}-{self.starts}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, in-flight requests lost."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM: the server finishes what is in flight and says bye."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def add_accounts(self, actors: Iterable[Actor] = ACTORS) -> None:
        """``sas-desk server user add`` for each operator (with every role
        it plays), in parallel: each hashes a password."""
        roles: dict[str, set[str]] = {}
        for actor in actors:
            roles.setdefault(actor.operator, set()).add(actor.role)
        running = []
        for login, played in roles.items():
            args = ["server", "user", "add", login, *self.store_args()]
            for role in sorted(played):
                args += ["--role", role]
            running.append(
                subprocess.Popen(
                    [sys.executable, "-m", "sas_desk", *args],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                )
            )
        for process in running:
            output, _ = process.communicate(f"{PASSWORD}\n".encode(), timeout=120)
            assert process.returncode == 0, output.decode(errors="replace")

    def token_store(self, actor: Actor) -> TokenStore:
        """The actor's refresh token, kept across the tests of the run (a
        test's session starts with a refresh, not a password check)."""
        if actor not in self.tokens:
            self.tokens[actor] = TokenStore(self.url, f"{actor.workstation}/{actor.operator}")
        return self.tokens[actor]

    def tamper(self, statement: str) -> str | None:
        """UPDATE or DELETE the server's events behind its back: the refusal,
        or None when the database accepted it (rolled back)."""
        if self.kind == "sqlite":
            path = self.dsn.removeprefix("sqlite:///")
            conn = sqlite3.connect(path)
            try:
                sql = (
                    "UPDATE events SET kind = kind"
                    if statement == "UPDATE"
                    else "DELETE FROM events"
                )
                try:
                    conn.execute(sql)
                except sqlite3.DatabaseError as exc:
                    return str(exc)
                conn.rollback()
                return None
            finally:
                conn.close()
        import psycopg
        from psycopg import sql as pgsql

        with psycopg.connect(self.dsn) as conn:
            table = pgsql.Identifier(self.schema, "events")
            query = (
                pgsql.SQL("UPDATE {} SET kind = kind").format(table)
                if statement == "UPDATE"
                else pgsql.SQL("DELETE FROM {}").format(table)
            )
            try:
                conn.execute(query)
            except psycopg.Error as exc:
                conn.rollback()
                return str(exc)
            conn.rollback()
            return None


def room_server(
    kind: str, tmp: Path, pg_dsn: str, actors: Iterable[Actor] = ACTORS
) -> Iterator[RoomServer]:
    """A ``sas-desk server`` process over a fresh store (a PostgreSQL schema
    or a SQLite file in ``tmp``), with the accounts of ``actors``; stopped
    (and its schema dropped) after."""
    import importlib.util

    from tests.conftest import unavailable

    if importlib.util.find_spec("sas_desk.server") is None:
        unavailable("the room server is not written yet (sas_desk/server)")
    schema = f"t_{secrets.token_hex(6)}"
    if kind == "postgres":
        import psycopg

        try:
            psycopg.connect(pg_dsn, connect_timeout=3).close()
        except psycopg.OperationalError as exc:
            first = (str(exc).strip().splitlines() or ["?"])[0]
            unavailable(f"PostgreSQL unreachable (SAS_DESK_TEST_PG_DSN): {first}")
        dsn = pg_dsn
    else:
        dsn = f"sqlite:///{tmp / 'room.sqlite'}"
    server = RoomServer(kind, dsn, schema, tmp)
    try:
        server.start()
        server.add_accounts(actors)
        yield server
    finally:
        server.stop()
        if kind == "postgres":
            import psycopg
            from psycopg import sql

            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )


# ---------------------------------------------------------------------------- the adapter


class Namespace:
    """A test's case ids on a shared server: ``<prefix><case_id>``."""

    def __init__(self) -> None:
        self.prefix = f"t{secrets.token_hex(4)}-"

    def out(self, case_id: str) -> str:
        return self.prefix + case_id

    def mine(self, case_id: str) -> bool:
        return case_id.startswith(self.prefix)

    def back(self, case_id: str) -> str:
        return case_id.removeprefix(self.prefix)

    def text(self, value: str) -> str:
        return value.replace(self.prefix, "")

    def op(self, op: Operation) -> Operation:
        data = dict(op.data)
        if isinstance(data.get("dossier"), dict):
            data["dossier"] = {**data["dossier"], "case_id": self.out(data["dossier"]["case_id"])}
        return replace(op, case_id=self.out(op.case_id), data=data)

    def item(self, item: QueueItem | None) -> QueueItem | None:
        if item is None:
            return None
        return replace(item, case_id=self.back(item.case_id), alert=self.text(item.alert))

    def items(self, items: Iterable[QueueItem]) -> list[QueueItem]:
        """This test's items only, as the test named them."""
        return [
            replace(i, case_id=self.back(i.case_id), alert=self.text(i.alert))
            for i in items
            if self.mine(i.case_id)
        ]

    def error(self, exc: QueueError) -> QueueError:
        """The refusal with the test's case ids in its message."""
        exc.message_fr = self.text(exc.message_fr)
        exc.args = (exc.message_fr,)
        return exc


@dataclass
class Sessions:
    """One test's sessions, one per actor, shared by its adapters (so that
    ``renew`` finds the workstation's session whichever adapter opened it)."""

    server: RoomServer
    by_actor: dict[Actor, RemoteBackend] = field(default_factory=dict)

    def backend(self, actor: Actor) -> RemoteBackend:
        if actor not in self.by_actor:
            asked = 0

            async def credentials(reason_fr: str) -> Credentials | None:
                nonlocal asked
                asked += 1
                return Credentials(actor.operator, PASSWORD, actor.role) if asked <= 2 else None

            session = RoomSession(
                self.server.url,
                actor.workstation,
                credentials=credentials,
                tokens=self.server.token_store(actor),
            )
            self.by_actor[actor] = RemoteBackend(session)
        return self.by_actor[actor]

    async def close(self) -> None:
        for backend in self.by_actor.values():
            await backend.close()
        self.by_actor.clear()


class ServerAdapter(QueueBackend):
    """The contract suite's backend: operations sent by each actor's
    session, the server's clock set from each operation's time; reads,
    watches and expiry as the supervisor (who reads everything)."""

    def __init__(self, server: RoomServer, ns: Namespace, sessions: Sessions) -> None:
        self.server = server
        self.ns = ns
        self.sessions = sessions
        self.name = f"remote-{server.kind}"
        self._http: httpx.AsyncClient | None = None
        self._closed = asyncio.Event()

    async def open(self) -> None:
        self._http = httpx.AsyncClient(base_url=self.server.url, timeout=10.0)
        self._closed.clear()

    async def close(self) -> None:
        self._closed.set()  # ends this adapter's watches (the sessions are the test's)
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def _reader(self) -> RemoteBackend:
        return self.sessions.backend(SUP)

    async def set_clock(self, at: datetime, *, expire: bool = False) -> list[QueueItem]:
        assert self._http is not None
        if at == self.server.clock_at and not expire:
            return []  # already there (operations of one instant)
        response = await self._http.put(
            "/_test/clock",
            json={"at": at.isoformat(), "expire": expire},
            headers={"X-Test-Token": self.server.clock_token},
        )
        assert response.status_code == 200, response.text
        self.server.clock_at = at
        return [wire.item_from_body(wire.ItemBody(**b)) for b in response.json()["expired"]]

    async def apply(self, op: Operation) -> QueueItem | None:
        await self.set_clock(op.at)
        backend = self.sessions.backend(Actor(op.role, op.operator, op.workstation))
        try:
            return self.ns.item(await backend.apply(self.ns.op(op)))
        except QueueError as exc:
            raise self.ns.error(exc) from None

    async def snapshot(self, queues: Iterable[QueueName]) -> list[QueueItem]:
        return self.ns.items(await self._reader.snapshot(queues))

    def watch(self, queues: Iterable[QueueName]) -> AsyncIterator[ChangeSet]:
        return self._watch(self._reader.watch(queues))

    async def _watch(self, changes: AsyncIterator[ChangeSet]) -> AsyncIterator[ChangeSet]:
        """The supervisor's stream, this test's items only; ends when this
        adapter closes."""
        async with contextlib.aclosing(changes):  # type: ignore[type-var]
            while True:
                following = asyncio.ensure_future(anext(changes))
                closing = asyncio.ensure_future(self._closed.wait())
                await asyncio.wait({following, closing}, return_when=asyncio.FIRST_COMPLETED)
                closing.cancel()
                if not following.done():
                    following.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await following
                    return
                try:
                    change = following.result()
                except StopAsyncIteration:
                    return
                items = tuple(self.ns.items(change.items))
                removed = tuple(self.ns.back(c) for c in change.removed if self.ns.mine(c))
                if not (items or removed or change.reset):
                    continue  # another test's change
                yield ChangeSet(items=items, removed=removed, reset=change.reset)

    async def renew(self, workstation: str, at: datetime, lease_s: float = DEFAULT_LEASE_S) -> int:
        """Through the session of ``workstation``; a workstation without a
        session holds nothing (the server renews per session)."""
        await self.set_clock(at)
        for actor, backend in self.sessions.by_actor.items():
            if actor.workstation == workstation:
                return await backend.renew(workstation, at, lease_s)
        return 0

    async def expire(self, at: datetime) -> list[QueueItem]:
        """The server's expiry, run at ``at`` by the test clock endpoint."""
        return self.ns.items(await self.set_clock(at, expire=True))

    async def dossier(self, case_id: str) -> Dossier | None:
        try:
            dossier = await self._reader.dossier(self.ns.out(case_id))
        except QueueError as exc:
            raise self.ns.error(exc) from None
        if dossier is not None:
            dossier.case_id = self.ns.back(dossier.case_id)
        return dossier

    async def events(self, case_id: str) -> list[Event]:
        events = await self._reader.events(self.ns.out(case_id))
        return [replace(e, dossier_id=self.ns.back(e.dossier_id)) for e in events]

    async def verify_log(self) -> list[LogBreak]:
        """The server's store checks its own chain (what the server's
        operator runs on the server; a workstation cannot)."""
        store: QueueBackend
        if self.server.kind == "sqlite":
            from sas_desk.services.queues.sqlite import SqliteBackend

            store = SqliteBackend(Path(self.server.dsn.removeprefix("sqlite:///")), now=real_clock)
        else:
            from sas_desk.services.queues.postgres import PostgresBackend

            store = PostgresBackend(self.server.dsn, now=real_clock, schema=self.server.schema)
        await store.open()
        try:
            breaks = await store.verify_log()
        finally:
            await store.close()
        return [
            replace(b, case_id=self.ns.back(b.case_id)) for b in breaks if self.ns.mine(b.case_id)
        ]

    async def leave_clean(self) -> None:
        """Close what the test left in the queues (as the supervisor), so
        that the next test finds no claim of its workstations."""
        left = [i for i in await self._reader.snapshot(QueueName) if self.ns.mine(i.case_id)]
        sup = self.sessions.backend(SUP)
        for item in left:
            op = Operation(
                secrets.token_hex(8), "close", item.case_id, item.waiting_since, "SUP",
                SUP.operator, SUP.workstation, {"reason": "fin du test"},
            )  # fmt: skip
            with contextlib.suppress(QueueError):
                await sup.apply(op)


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    """Poll an async predicate until true (a remote state, nothing to wait on)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(0.05)
