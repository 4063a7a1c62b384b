"""One contract, every backend: the ``backend`` fixture runs each contract
test against SQLite (a file in tmp), PostgreSQL (a fresh schema), and the
room server (a real ``sas-desk server`` process) over PostgreSQL and over
SQLite, reached by the workstation's :class:`RemoteBackend` (see
``room.py`` for how the tests' actors and clock reach it).

``peer`` is a second backend instance on the same store: another
workstation.  ``store`` reaches the storage underneath (raw SQL for the
append-only checks).  PostgreSQL is skipped, or failed in CI, when the
backend module is not written yet or the server cannot be reached
(``SAS_DESK_TEST_PG_DSN``, default ``postgresql://postgres@127.0.0.1:5432/test``).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from uuid import uuid4

import pytest
import pytest_asyncio

from sas_desk.services.atrest import RecordCipher
from sas_desk.services.queues.api import QueueBackend
from sas_desk.services.queues.sqlite import SqliteBackend
from tests.conftest import unavailable
from tests.integration.queues.room import (
    Namespace,
    RoomServer,
    ServerAdapter,
    Sessions,
    room_server,
)
from tests.integration.queues.support import FakeClock

PG_DSN = os.environ.get("SAS_DESK_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class Store:
    """The storage behind one backend parameter, and how to open instances on it."""

    kind: str
    make: Callable[[], QueueBackend]
    tamper: Callable[[str], str | None]
    # run one SQL statement on the store with the events' append-only guard
    # off, as the schema owner could ("{events}" / "{items}": the tables)
    unguarded: Callable[[str], None] = lambda statement: None
    cleanup: Callable[[], None] = lambda: None
    opened: list[QueueBackend] = field(default_factory=list)
    finish: Callable[[list[QueueBackend]], Awaitable[None]] | None = None  # before closing

    async def instance(self) -> QueueBackend:
        backend = self.make()
        self.opened.append(backend)
        await backend.open()
        return backend

    async def close(self) -> None:
        try:
            if self.finish is not None:
                await self.finish(self.opened)
            for backend in reversed(self.opened):
                await backend.close()
        finally:
            self.cleanup()


STORE = pytest.StashKey[Store]()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture(params=["sqlite", "postgres", "remote-postgres", "remote-sqlite"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[QueueBackend]:
    kind = request.param
    if kind == "sqlite":
        store = _sqlite_store(tmp_path, clock)
    elif kind == "postgres":
        store = _postgres_store(clock)
    else:
        store = _remote_store(request.getfixturevalue(f"room_{kind.removeprefix('remote-')}"))
    request.node.stash[STORE] = store
    try:
        yield await store.instance()
    finally:
        await store.close()


@pytest_asyncio.fixture
async def peer(request: pytest.FixtureRequest, backend: QueueBackend) -> QueueBackend:
    """Another workstation: a second backend instance on the same store."""
    return await request.node.stash[STORE].instance()


@pytest.fixture
def store(request: pytest.FixtureRequest, backend: QueueBackend) -> Store:
    return request.node.stash[STORE]


# ---------------------------------------------------------------------------- sqlite


def _sqlite_store(tmp_path: Path, clock: FakeClock) -> Store:
    path = tmp_path / "queues.sqlite"

    def tamper(statement: str) -> str | None:
        """Try to UPDATE or DELETE events behind the backend's back; returns
        the refusal, or None when the database accepted it (rolled back)."""
        conn = sqlite3.connect(str(path))
        try:
            columns = [row[1] for row in conn.execute("PRAGMA table_info(events)")]
            assert columns, "no events table"
            sql = (
                f"UPDATE events SET {columns[-1]} = {columns[-1]}"
                if statement == "UPDATE"
                else "DELETE FROM events"
            )
            try:
                cur = conn.execute(sql)
            except sqlite3.DatabaseError as exc:
                return str(exc)
            assert cur.rowcount > 0, "the statement touched no event"
            conn.rollback()
            return None
        finally:
            conn.close()

    def unguarded(statement: str) -> None:
        conn = sqlite3.connect(str(path), isolation_level=None)
        try:
            triggers = conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events'"
            ).fetchall()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DROP TRIGGER events_no_update")
            conn.execute("DROP TRIGGER events_no_delete")
            conn.execute(statement.format(events="events", items="items"))
            for (ddl,) in triggers:
                conn.execute(ddl)
            conn.execute("COMMIT")
        finally:
            conn.close()

    # sealed as on a workstation (issue 15): the contract holds over the sealed file
    cipher = RecordCipher(bytes(range(32)))
    return Store("sqlite", lambda: SqliteBackend(path, now=clock, cipher=cipher), tamper, unguarded)


# ---------------------------------------------------------------------------- postgres


def _postgres_store(clock: FakeClock) -> Store:
    try:
        from sas_desk.services.queues.postgres import PostgresBackend
    except ModuleNotFoundError as exc:
        if exc.name != "sas_desk.services.queues.postgres":
            raise
        unavailable("PostgresBackend not written yet (sas_desk/services/queues/postgres.py)")
        raise AssertionError("unreachable") from exc
    import psycopg
    from psycopg import sql

    try:
        psycopg.connect(PG_DSN, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        first = (str(exc).strip().splitlines() or ["?"])[0]
        unavailable(f"PostgreSQL unreachable (SAS_DESK_TEST_PG_DSN): {first}")
    schema = f"t_{uuid4().hex[:12]}"

    def tamper(statement: str) -> str | None:
        with psycopg.connect(PG_DSN) as conn:
            found = conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = 'events' "
                "ORDER BY ordinal_position DESC LIMIT 1",
                (schema,),
            ).fetchone()
            assert found is not None, f"no table {schema}.events"
            table = sql.Identifier(schema, "events")
            column = sql.Identifier(found[0])
            query = (
                sql.SQL("UPDATE {} SET {} = {}").format(table, column, column)
                if statement == "UPDATE"
                else sql.SQL("DELETE FROM {}").format(table)
            )
            try:
                cur = conn.execute(query)
            except psycopg.Error as exc:
                conn.rollback()
                return str(exc)
            assert cur.rowcount > 0, "the statement touched no event"
            conn.rollback()
            return None

    def unguarded(statement: str) -> None:
        events = sql.Identifier(schema, "events")
        with psycopg.connect(PG_DSN) as conn:  # one transaction, committed on exit
            conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(events))
            conn.execute(
                sql.SQL(statement).format(events=events, items=sql.Identifier(schema, "items"))
            )
            conn.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(events))

    def cleanup() -> None:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))

    return Store(
        "postgres",
        lambda: PostgresBackend(PG_DSN, now=clock, schema=schema),
        tamper,
        unguarded,
        cleanup,
    )


# ---------------------------------------------------------------------------- the room server


@pytest.fixture(scope="session")
def room_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoomServer]:
    yield from room_server("postgres", tmp_path_factory.mktemp("room-pg"), PG_DSN)


@pytest.fixture(scope="session")
def room_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoomServer]:
    yield from room_server("sqlite", tmp_path_factory.mktemp("room-sqlite"), PG_DSN)


def _remote_store(server: RoomServer) -> Store:
    if server.process is None or server.process.poll() is not None:
        server.start()  # a fault test stopped it
    ns = Namespace()
    sessions = Sessions(server)

    async def finish(opened: list[QueueBackend]) -> None:
        try:
            if opened:
                assert isinstance(opened[0], ServerAdapter)
                await opened[0].leave_clean()
        finally:
            await sessions.close()

    return Store(
        f"remote-{server.kind}",
        lambda: ServerAdapter(server, ns, sessions),
        server.tamper,
        finish=finish,
    )
