"""Offline operation: transmissions wait in the local outbox and replay
exactly once, even when the server connection dies in the middle of the
replay (SQLite and the real PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import pytest_asyncio

from sas_desk.models.dossier import Actor, Branch, Dossier, EventKind, transmit
from sas_desk.models.queue import QueueError, QueueName
from sas_desk.services.queues.api import QueueBackend
from sas_desk.services.queues.client import LinkState, Outbox, QueueClient
from tests.conftest import unavailable
from tests.helpers.flaky import FlakyBackend

TZ = timezone(timedelta(hours=1))
PG_DSN = os.environ.get("SAS_DESK_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
ARM = Actor("ARM", "arm.test", "POSTE-ARM")


def clock() -> datetime:
    return datetime.now(TZ).replace(microsecond=0)


def transmitted(n: int) -> Dossier:
    at = clock()
    d = Dossier(
        case_id=f"fr.health.samu690.DRFR1569A26329{n:05d}",
        sender_case_id=f"DRFR1569A26329{n:05d}",
        created_at=at,
        received_at=at,
        owner="fr.health.samu690",
    )
    d.caller.callback = "06 12 34 56 78"
    d.location.city, d.location.insee = "Lyon", "69123"
    d.motive_code, d.motive_label = "M03.06", "Douleur thoracique"
    d.priority = ("P0", "P1", "P2", "P3")[n % 4]
    d.branch = (Branch.AMU, Branch.SNP)[n % 2]
    transmit(d, at, ARM)
    return d


async def make_pg(schema: str) -> QueueBackend:
    try:
        from sas_desk.services.queues.postgres import PostgresBackend
    except ImportError:
        unavailable("PostgreSQL backend not importable")
    import psycopg

    try:
        conn = await psycopg.AsyncConnection.connect(PG_DSN, connect_timeout=3)
        await conn.close()
    except psycopg.OperationalError as exc:
        unavailable(f"PostgreSQL unreachable at {PG_DSN}: {exc.__class__.__name__}")
    return PostgresBackend(
        PG_DSN, now=clock, schema=schema, application_name=f"sas-desk-test-{schema}"
    )


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[[], QueueBackend]]:
    """A factory of backends on one store: each call is another workstation
    (or the same one after a restart)."""
    if request.param == "sqlite":
        from sas_desk.services.queues.sqlite import SqliteBackend

        yield lambda: SqliteBackend(tmp_path / "queues.sqlite", now=clock)
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    await make_pg(schema)  # checks reachability
    from sas_desk.services.queues.postgres import PostgresBackend

    yield lambda: PostgresBackend(
        PG_DSN, now=clock, schema=schema, application_name=f"sas-desk-test-{schema}"
    )
    import psycopg

    async with await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def wait_for(predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_offline_transmissions_replay_exactly_once(
    store: Callable[[], QueueBackend], tmp_path: Path
) -> None:
    backend = store()
    flaky = FlakyBackend(backend)
    client = QueueClient(
        flaky, Outbox(tmp_path / "outbox.sqlite"), ARM, now=clock, retry_delay=0.05
    )
    states: list[LinkState] = []
    client.add_listener(states.append)
    await client.start()
    try:
        flaky.down = True
        dossiers = [transmitted(n) for n in range(12)]
        for d in dossiers:
            assert await client.enqueue(d) is None  # kept, not lost
        assert client.state.pending == 12
        assert not client.state.online
        with pytest.raises(QueueError, match="Hors ligne"):
            await client.submit(client.operation("claim", dossiers[0].case_id))
        flaky.down = False
        await wait_for(lambda: client.state.pending == 0 and client.state.online)
        items = await backend.snapshot(tuple(QueueName))
        assert sorted(i.case_id for i in items) == sorted(d.case_id for d in dossiers)
        for d in dossiers:
            kinds = [e.kind for e in await backend.events(d.case_id)]
            assert kinds.count(EventKind.ENQUEUED) == 1
        assert any(s.pending == 12 and not s.online for s in states)
    finally:
        await client.stop()


@pytest.mark.asyncio
async def test_outbox_survives_a_restart_of_the_workstation(
    store: Callable[[], QueueBackend], tmp_path: Path
) -> None:
    flaky = FlakyBackend(store())
    flaky.down = True
    first = QueueClient(
        flaky,
        Outbox(tmp_path / "outbox.sqlite"),
        ARM,
        now=clock,
        retry_delay=0.05,
        max_retry_delay=0.5,
    )
    await first.start()
    d = transmitted(1)
    await first.enqueue(d)
    await first.stop()  # the workstation is switched off while offline
    backend = store()  # ...and started again, the server reachable
    second = QueueClient(
        backend, Outbox(tmp_path / "outbox.sqlite"), ARM, now=clock, retry_delay=0.05
    )
    await second.start()
    try:
        await wait_for(lambda: second.state.pending == 0)
        assert [i.case_id for i in await backend.snapshot((QueueName.AMU, QueueName.SNP))] == [
            d.case_id
        ]
    finally:
        await second.stop()


@pytest.mark.asyncio
async def test_replay_interrupted_by_killed_connections_is_exactly_once(tmp_path: Path) -> None:
    """pg_terminate_backend on the client's connections while it replays."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    pg = await make_pg(schema)
    import psycopg

    flaky = FlakyBackend(pg)
    client = QueueClient(
        flaky, Outbox(tmp_path / "outbox.sqlite"), ARM, now=clock, retry_delay=0.02
    )
    await client.start()
    try:
        flaky.down = True
        dossiers = [transmitted(n) for n in range(60)]
        for d in dossiers:
            await client.enqueue(d)
        assert client.state.pending == 60

        async def killer() -> int:
            """Kill this workstation's connections a few times while the
            replay makes progress (each kill lands mid-replay)."""
            kills = 0
            marks = [5, 15, 30, 45]  # kill when the replay has sent that many operations
            async with await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True) as admin:
                while client.state.pending and marks:
                    if len(flaky.applied) >= marks[0]:
                        marks.pop(0)
                        cur = await admin.execute(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE pid <> pg_backend_pid() AND application_name LIKE %s",
                            (f"sas-desk-test-{schema}%",),
                        )
                        kills += sum(1 for (ok,) in await cur.fetchall() if ok)
                    await asyncio.sleep(0.002)
            return kills

        flaky.down = False
        kill_task = asyncio.create_task(killer())
        await wait_for(lambda: client.state.pending == 0, timeout=60)
        kills = await kill_task
        items = await pg.snapshot(tuple(QueueName))
        assert sorted(i.case_id for i in items) == sorted(d.case_id for d in dossiers)
        for d in dossiers:
            kinds = [e.kind for e in await pg.events(d.case_id)]
            assert kinds.count(EventKind.ENQUEUED) == 1, d.case_id
        # the replay really was interrupted, and some operations were sent twice
        assert kills >= 1
        assert len(flaky.applied) >= 60
    finally:
        await client.stop()
        async with await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
