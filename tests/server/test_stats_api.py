"""The room's statistics through its server (room mode): the supervisor's
board and statistics screen read ``/v1/stats`` with :class:`RemoteStatsSource`
and get what a source on the server's own store gives; other roles are
refused (SQLite and PostgreSQL, a real server process)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest

from sas_desk.models.dossier import Actor
from sas_desk.models.queue import WaitLimits
from sas_desk.models.stats import DEFAULT_TZ, Granularity, Period
from sas_desk.server.app import ACTIVITY_REFUSAL_FR, STATS_REFUSAL_FR
from sas_desk.services.queues.remote import Credentials, RoomSession, TokenStore
from sas_desk.services.stats import StatsSource, StatsUnavailable
from sas_desk.services.stats.remote import RemoteStatsSource, limits_params, raw_body
from tests.helpers.room_server import PG_DSN, RoomServer, run_async
from tests.integration.queues.support import MRU, SUP
from tests.server.conftest import PASSWORD, Sessions
from tests.server.test_api import enqueue, op

pytestmark = pytest.mark.asyncio


class _Memory(TokenStore):
    async def load(self) -> str | None:
        return self._memory

    async def save(self, token: str) -> None:
        self._memory = token

    async def clear(self) -> None:
        self._memory = None


def local_source(server: RoomServer) -> StatsSource:
    """A source on the server's own store, as the server reads it."""
    if server.db.kind == "sqlite":
        from pathlib import Path

        from sas_desk.services.stats.sqlite import SqliteStatsSource

        return SqliteStatsSource(Path(server.db.dsn.removeprefix("sqlite://")))
    from sas_desk.services.stats.postgres import PostgresStatsSource

    return PostgresStatsSource(PG_DSN, server.db.schema)


async def session_as(server: RoomServer, actor: Any) -> RoomSession:
    session = RoomSession(server.url, actor.workstation, tokens=_Memory(server.url, "t"))
    await session.login(Credentials(actor.operator, PASSWORD, actor.role))
    return session


async def test_the_supervisor_reads_the_servers_statistics(
    as_: Sessions, room_server: RoomServer
) -> None:
    case_id = await enqueue(as_)
    mru = await as_(MRU)
    assert (await op(mru, "claim", case_id)).status_code == 200
    today = datetime.now(ZoneInfo(DEFAULT_TZ)).date()
    period = Period(today - timedelta(days=1), today + timedelta(days=1))
    limits = WaitLimits(P0=90.0)
    local = local_source(room_server)
    session = await session_as(room_server, SUP)
    remote = RemoteStatsSource(session)
    try:
        expected = await local.raw(period, Granularity.DAY, limits)
        got = await remote.raw(period, Granularity.DAY, limits)
        assert got == expected
        assert sum(int(row[-1]) for row in got.counts) >= 1  # our dossier at least
        until = datetime.now().astimezone() + timedelta(seconds=1)
        since = until - timedelta(hours=1)
        events = await remote.activity(since, until)
        assert events == await local.activity(since, until)
        mine = [(e.kind, e.operator) for e in events if e.case_id == case_id]
        assert [str(k) for k, _ in mine] == ["ENQUEUED", "CLAIMED"]
    finally:
        await local.close()
        await remote.close()
        await session.close()
    # the wire body is the model's, as the server encodes it
    sup = await as_(SUP)
    params = {
        "first": period.first.isoformat(),
        "last": period.last.isoformat(),
        "by": "day",
        "tz": period.tz,
        **limits_params(limits),
    }
    r = await sup.get("/v1/stats/raw", params=params)
    assert r.status_code == 200
    body = r.json()
    assert body == msgspec.to_builtins(raw_body(expected))


async def test_the_stats_role_reads_the_counts_not_who_did_what(
    as_: Sessions, room_server: RoomServer
) -> None:
    reader = Actor("STATS", "direction.stats", "POSTE-DIR")
    await asyncio.to_thread(
        run_async, room_server.db.add_user("direction.stats", ["STATS"], PASSWORD)
    )
    case_id = await enqueue(as_)
    assert (await op(await as_(MRU), "claim", case_id)).status_code == 200
    # the room's days (Paris), a day either side: between midnight in Paris
    # and midnight on the machine's clock, "today" differs (this failed then)
    today = datetime.now(ZoneInfo(DEFAULT_TZ)).date()
    period = Period(today - timedelta(days=1), today + timedelta(days=1))
    session = await session_as(room_server, reader)
    sup_session = await session_as(room_server, SUP)
    try:
        seen = await RemoteStatsSource(session).raw(period, Granularity.DAY, WaitLimits())
        full = await RemoteStatsSource(sup_session).raw(period, Granularity.DAY, WaitLimits())
        assert full.load and seen.load == []  # per person: the supervisor's only
        assert seen.counts == full.counts
        now = datetime.now().astimezone()
        with pytest.raises(StatsUnavailable) as refused:
            await RemoteStatsSource(session).activity(now - timedelta(hours=1), now)
        assert refused.value.message_fr == ACTIVITY_REFUSAL_FR
    finally:
        await session.close()
        await sup_session.close()


async def test_statistics_are_the_supervisors_only_and_bad_requests_are_said(
    as_: Sessions, room_server: RoomServer
) -> None:
    mru = await as_(MRU)
    today = datetime.now().astimezone().date().isoformat()
    r = await mru.get("/v1/stats/raw", params={"first": today, "last": today})
    assert r.status_code == 403
    assert r.json()["message_fr"] == STATS_REFUSAL_FR
    r = await mru.get("/v1/stats/activity", params={"since": "x", "until": "y"})
    assert r.status_code == 403
    session = await session_as(room_server, MRU)
    try:
        with pytest.raises(StatsUnavailable) as refused:
            await RemoteStatsSource(session).activity(
                datetime.now().astimezone(), datetime.now().astimezone()
            )
        assert refused.value.message_fr == STATS_REFUSAL_FR
    finally:
        await session.close()
    sup = await as_(SUP)
    for params, said in (
        ({"first": today, "last": today, "tz": "Mars/Olympus"}, "Fuseau horaire inconnu"),
        ({"first": today, "last": "2020-01-01"}, "Période invalide"),
        ({"first": "hier", "last": today}, "AAAA-MM-JJ"),
    ):
        r = await sup.get("/v1/stats/raw", params=params)
        assert r.status_code == 422, r.text
        assert said in r.json()["message_fr"]
    now = datetime.now().astimezone()
    r = await sup.get(
        "/v1/stats/activity",
        params={"since": (now - timedelta(days=2)).isoformat(), "until": now.isoformat()},
    )
    assert r.status_code == 422 and "journée au plus" in r.json()["message_fr"]
