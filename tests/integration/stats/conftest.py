"""The hand-built day on each store: SQLite (a file in tmp) and PostgreSQL
(a schema of its own, dropped after; with CI=true an unreachable server is a
failure, see ``tests.conftest.unavailable``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import pytest_asyncio

from sas_desk.services.atrest import RecordCipher
from sas_desk.services.queues.api import QueueBackend
from sas_desk.services.queues.sqlite import SqliteBackend
from sas_desk.services.stats import StatsSource
from sas_desk.services.stats.sqlite import SqliteStatsSource
from tests.conftest import unavailable
from tests.integration.queues.conftest import PG_DSN
from tests.integration.queues.support import FakeClock
from tests.integration.stats.day import Day


@dataclass
class Played:
    kind: str
    backend: QueueBackend
    source: StatsSource
    day: Day


@pytest_asyncio.fixture(params=["sqlite", "postgres"], scope="module", loop_scope="module")
async def played(request, tmp_path_factory) -> AsyncIterator[Played]:  # type: ignore[no-untyped-def]
    async with play(request.param, tmp_path_factory) as done:
        yield done


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sqlite_played(tmp_path_factory) -> AsyncIterator[Played]:  # type: ignore[no-untyped-def]
    """The day in a data dir's ``queues.sqlite`` (what the command line reads)."""
    async with play("sqlite", tmp_path_factory) as done:
        yield done


@contextlib.asynccontextmanager
async def play(kind: str, tmp_path_factory) -> AsyncIterator[Played]:  # type: ignore[no-untyped-def]
    clock = FakeClock()
    cleanup = None
    if kind == "sqlite":
        path = Path(tmp_path_factory.mktemp("stats")) / "queues.sqlite"
        # sealed as on a workstation (issue 15): the statistics read the clear facts only
        backend: QueueBackend = SqliteBackend(
            path, now=clock, cipher=RecordCipher(bytes(range(32)))
        )
        source: StatsSource = SqliteStatsSource(path)
    else:
        import psycopg
        from psycopg import sql

        from sas_desk.services.queues.postgres import PostgresBackend
        from sas_desk.services.stats.postgres import PostgresStatsSource

        try:
            psycopg.connect(PG_DSN, connect_timeout=3).close()
        except psycopg.OperationalError as exc:
            unavailable(f"PostgreSQL unreachable (SAS_DESK_TEST_PG_DSN): {exc}")
        schema = f"st_{uuid4().hex[:12]}"
        backend = PostgresBackend(PG_DSN, now=clock, schema=schema)
        source = PostgresStatsSource(PG_DSN, schema)

        def cleanup() -> None:
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )

    await backend.open()
    day = Day(backend)
    try:
        await day.play()
        yield Played(kind, backend, source, day)
    finally:
        await source.close()
        await backend.close()
        if cleanup is not None:
            cleanup()
