"""Statistics over the PostgreSQL queue store (the room's server).

Reads the schema's ``events`` and ``dossiers`` tables with the grouped
queries of :mod:`sas_desk.services.stats.sql`, inside one REPEATABLE READ
transaction (one consistent snapshot) with a temporary table dropped at
commit; the stored tables are only read.  Its own connection, opened per report: the queue backend's pool
is never borrowed.  The password comes from the DSN or libpq's usual
sources (``PGPASSWORD``, ``~/.pgpass``).
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from typing import Any

import psycopg

from sas_desk.models.board import RecentEvent
from sas_desk.models.queue import WaitLimits
from sas_desk.models.stats import DENTAL_NOTE_PREFIX, Granularity, Period, RawStats
from sas_desk.services.stats import StatsUnavailable, sql

log = logging.getLogger("sas_desk.stats")

SCAN_SLACK = timedelta(days=7)
_SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,47}")
_FORMATS = {
    Granularity.HOUR: 'YYYY-MM-DD"T"HH24',
    Granularity.DAY: "YYYY-MM-DD",
    Granularity.MONTH: "YYYY-MM",
}


def pg(query: str) -> str:
    """``:name`` parameters → psycopg's ``%(name)s`` (and ``%`` escaped)."""
    return re.sub(r"(?<![:\w]):([a-z_][a-z0-9_]*)", r"%(\1)s", query.replace("%", "%%"))


def _facts_sql() -> str:
    branch = sql.BRANCH_CASE.format(
        branch="(d.data->>'branch')", attribution="(d.data->>'attribution')"
    )
    epoch = "CAST(extract(epoch FROM {}) AS double precision)"
    return f"""
CREATE TEMP TABLE stats_facts ON COMMIT DROP AS
WITH e AS (
    SELECT case_id,
        min(at) FILTER (WHERE kind = 'ENQUEUED'
            AND COALESCE(data->>'reopened', 'false') <> 'true') AS tx,
        min(at) FILTER (WHERE kind = 'CLAIMED') AS cl,
        min(at) FILTER (WHERE kind = 'DECIDED') AS de,
        bool_or(kind = 'DECIDED' AND role = 'MRL') AS liberal,
        bool_or(kind = 'BOOKING_REQUESTED') AS booking,
        bool_or(kind = 'CLOSED' AND data->>'queue' = 'OSNP') AS booked,
        bool_or(kind = 'TRANSFERRED' AND data->>'to' = 'AMU') AS to_amu
    FROM events WHERE seq >= :lo_seq AND seq < :hi_seq AND at >= :start AND at < :scan
    GROUP BY case_id
), f AS (
    SELECT e.*, d.data AS data, {branch} AS branch FROM e JOIN dossiers d USING (case_id)
    WHERE e.tx >= :start AND e.tx < :end
)
SELECT case_id, to_char(tx AT TIME ZONE :tz, :fmt) AS bucket, branch,
    COALESCE(data->>'priority', '') AS priority,
    COALESCE(data->>'motive_code', '') AS motive,
    COALESCE(data->'patient'->>'age', '') AS age,
    COALESCE(data->'location'->>'insee', '') AS insee,
    {epoch.format("CAST(data->>'created_at' AS timestamptz)")} AS recv,
    {epoch.format("tx")} AS tx, {epoch.format("cl")} AS cl, {epoch.format("de")} AS de,
    CAST(liberal AS integer) AS liberal, CAST(booking AS integer) AS booking,
    CAST(booked AS integer) AS booked, CAST(to_amu AS integer) AS to_amu,
    CASE WHEN branch = 'SNP' AND EXISTS (SELECT 1 FROM jsonb_array_elements(data->'decisions') x
        WHERE x->>'resource_type' LIKE 'SMUR%') THEN 1 ELSE 0 END AS smur,
    CASE WHEN branch = 'SNP' AND EXISTS (SELECT 1 FROM jsonb_array_elements(data->'decisions') x
        WHERE x->>'orientation_type' IN ('URGENCES', 'REA-USI')) THEN 1 ELSE 0 END AS emergency,
    CASE WHEN COALESCE(jsonb_array_length(data->'decisions'), 0) > 0 THEN 1 ELSE 0 END
        AS decided,
    CASE WHEN branch = 'SNP' AND NOT EXISTS (SELECT 1
        FROM jsonb_array_elements(data->'decisions') x
        WHERE x->>'decision_type' NOT IN ('CONSEIL', 'PMT')) THEN 1 ELSE 0 END AS advice,
    CASE WHEN branch = 'DENT' THEN COALESCE((SELECT {sql.dental_case("n->>'text'")}
        FROM jsonb_array_elements(data->'notes') WITH ORDINALITY AS t(n, k)
        WHERE n->>'text' LIKE '{DENTAL_NOTE_PREFIX}%' ORDER BY k DESC LIMIT 1), '')
        ELSE '' END AS dental
FROM f"""


_LOAD = """SELECT to_char(at AT TIME ZONE :tz, :fmt), role, operator, kind, count(*)
FROM events WHERE seq >= :lo_seq AND seq < :hi_seq AND at >= :start AND at < :end
  AND kind IN ('ENQUEUED', 'CLAIMED', 'DECIDED', 'CLOSED') AND data->>'renewed' IS NULL
GROUP BY 1, 2, 3, 4"""


async def _seq_at(conn: psycopg.AsyncConnection[Any], target: datetime) -> int:
    """The first seq at or after ``target`` (by bisection on the key)."""
    cur = await conn.execute("SELECT COALESCE(min(seq), 0), COALESCE(max(seq), 0) + 1 FROM events")
    row = await cur.fetchone()
    assert row is not None
    search = sql.seq_search(int(row[0]), int(row[1]), target)
    try:
        probe = next(search)
        while True:
            cur = await conn.execute(
                "SELECT seq, at FROM events WHERE seq >= %s ORDER BY seq LIMIT 1", (probe,)
            )
            found = await cur.fetchone()
            probe = search.send((int(found[0]), found[1]) if found else None)
    except StopIteration as done:
        return int(done.value)


class PostgresStatsSource:
    """Statistics over one PostgreSQL schema of queues."""

    def __init__(self, dsn: str, schema: str = "sas_desk", *, connect_timeout: int = 5) -> None:
        if not _SCHEMA_RE.fullmatch(schema):
            raise ValueError(f"Nom de schéma invalide « {schema} ».")
        self.dsn = dsn
        self.schema = schema
        self.connect_timeout = connect_timeout

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        try:
            return await psycopg.AsyncConnection.connect(
                self.dsn,
                autocommit=True,
                connect_timeout=self.connect_timeout,
                application_name="sas-desk stats",
                options=f"-c search_path={self.schema},pg_catalog -c statement_timeout=120000",
            )
        except psycopg.Error as exc:
            log.warning("stats: PostgreSQL unreachable (%s)", type(exc).__name__)
            raise StatsUnavailable(
                "Serveur des files injoignable : statistiques indisponibles."
            ) from None

    async def raw(self, period: Period, by: Granularity, limits: WaitLimits) -> RawStats:
        params: dict[str, Any] = {
            "start": period.start,
            "end": period.end,
            "scan": period.end + SCAN_SLACK,
            "tz": period.tz,
            "fmt": _FORMATS[by],
        }
        params.update({f"p{i}": limits.limit(f"P{i}") for i in range(4)})
        conn = await self._connect()
        try:
            async with conn.transaction():
                # one snapshot for every query (a temporary table forbids READ ONLY)
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                # a year is a million groups by dossier: hash them in memory, not on disk
                await conn.execute("SET LOCAL work_mem = '256MB'")
                if period.days > 31:
                    # the planner cannot guess how many dossiers the events group
                    # into: over months, one pass on the dossiers beats a lookup each
                    await conn.execute("SET LOCAL enable_nestloop = off")
                params["lo_seq"] = await _seq_at(conn, period.start - sql.CLOCK_SLACK)
                params["hi_seq"] = await _seq_at(conn, period.end + SCAN_SLACK + sql.CLOCK_SLACK)
                await conn.execute(pg(_facts_sql()), params)

                async def rows(query: str) -> list[tuple[Any, ...]]:
                    cur = await conn.execute(pg(query), params)
                    return [tuple(r) for r in await cur.fetchall()]

                out = RawStats(
                    counts=await rows(sql.COUNTS),
                    ages=await rows(sql.AGES),
                    departements=await rows(sql.DEPARTEMENTS),
                    snp=await rows(sql.SNP),
                    dental=await rows(sql.DENTAL),
                    delays=await rows(sql.DELAYS),
                    load=[
                        (r[0], r[1], r[2], sql.LOAD_KINDS[r[3]], int(r[4]))
                        for r in await rows(_LOAD)
                    ],
                )
        except psycopg.Error as exc:
            log.warning("stats query failed: %s", type(exc).__name__)
            raise StatsUnavailable(
                f"Lecture des statistiques impossible ({type(exc).__name__})."
            ) from None
        finally:
            await conn.close()
        return out

    async def activity(self, since: datetime, until: datetime) -> list[RecentEvent]:
        conn = await self._connect()
        try:
            cur = await conn.execute(
                "SELECT at, kind, role, operator, workstation, case_id FROM events "
                "WHERE seq > (SELECT COALESCE(max(seq), 0) FROM events) - %s "
                "AND at >= %s AND at < %s ORDER BY seq",
                (sql.RECENT_EVENTS, since, until),
            )
            return [RecentEvent(*r) for r in await cur.fetchall()]
        except psycopg.Error as exc:
            raise StatsUnavailable(
                f"Lecture de l'activité impossible ({type(exc).__name__})."
            ) from None
        finally:
            await conn.close()

    async def close(self) -> None:
        return None
