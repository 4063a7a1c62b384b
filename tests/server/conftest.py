"""A room server process per backend (SQLite file, PostgreSQL schema), shared
by the tests of a module; accounts for every role.  Tests isolate themselves
with fresh dossier ids."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from sas_desk.models.dossier import Actor
from tests.conftest import unavailable
from tests.helpers.room_server import RoomDatabase, RoomServer, run_async
from tests.integration.queues.support import ARM, DENT, MRL, MRU, MRU2, OSNP, SUP

PASSWORD = "mot-de-passe-de-test"
ARM2 = Actor("ARM", "arm.bis", "POSTE-08")  # an ARM who transmitted nothing
ACTORS = (ARM, ARM2, MRU, MRU2, MRL, OSNP, DENT, SUP)


def make_database(kind: str, tmp: Path) -> RoomDatabase:
    if kind == "sqlite":
        return RoomDatabase.sqlite(tmp)
    import psycopg

    try:
        return RoomDatabase.postgres()
    except psycopg.OperationalError as exc:
        unavailable(f"PostgreSQL unreachable (SAS_DESK_TEST_PG_DSN): {exc}")
        raise


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RoomDatabase]:
    """An empty room database of one's own (no accounts, no server)."""
    database = make_database(request.param, tmp_path)
    try:
        yield database
    finally:
        database.drop()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def room_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RoomDatabase]:
    db = make_database(request.param, tmp_path_factory.mktemp("room"))

    async def accounts() -> None:
        for actor in ACTORS:
            await db.add_user(actor.operator, [actor.role], PASSWORD, name=actor.operator)
        await db.add_user("multi", ["MRU", "SUP"], PASSWORD, name="Dr Multi")

    run_async(accounts())
    try:
        yield db
    finally:
        db.drop()


@pytest.fixture(scope="module")
def room_server(
    room_db: RoomDatabase, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RoomServer]:
    server = RoomServer.start(room_db, tmp_path_factory.mktemp("logs"))
    try:
        yield server
    finally:
        code = server.stop()
        assert code == 0, server.stderr_path.read_text()


def token(server: RoomServer, actor: Actor) -> str:
    """An access token for ``actor`` (one login per actor and server)."""
    key = (actor.operator, actor.role, actor.workstation)
    if key not in server.tokens:
        server.tokens[key] = server.login(actor.operator, PASSWORD, actor.role, actor.workstation)
    return str(server.tokens[key]["access_token"])


def client(server: RoomServer, actor: Actor) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token(server, actor)}"}
    )


class Sessions:
    """One logged-in httpx client per actor (role and workstation as in the tests)."""

    def __init__(self, server: RoomServer) -> None:
        self.server = server
        self.clients: dict[Actor, httpx.AsyncClient] = {}

    async def __call__(self, actor: Actor) -> httpx.AsyncClient:
        if actor not in self.clients:
            access = await asyncio.to_thread(token, self.server, actor)
            self.clients[actor] = httpx.AsyncClient(
                base_url=self.server.url, headers={"Authorization": f"Bearer {access}"}, timeout=10
            )
        return self.clients[actor]

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()


@pytest_asyncio.fixture
async def as_(room_server: RoomServer) -> AsyncIterator[Sessions]:
    """``client = await as_(MRU)``: an httpx client logged in as that actor."""
    sessions = Sessions(room_server)
    try:
        yield sessions
    finally:
        await sessions.close()
