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
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from sas_desk.models.board import RecentEvent
from sas_desk.models.queue import WaitLimits
from sas_desk.models.stats import DEFAULT_TZ, Granularity, Period, RawStats
from sas_desk.services.stats import StatsUnavailable, rollup, sql

log = logging.getLogger("sas_desk.stats")

LONG = timedelta(days=31)
# a slot's start as the booking event carries it (client data: checked before
# the cast, which would fail the whole report)
_ISO_RE = (
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d(:[0-5]\d"
    r"(\.\d{1,6})?)?([+-]([01]\d|2[0-3]):[0-5]\d|Z)$"
)
_SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,47}")
_FORMATS = {
    Granularity.HOUR: 'YYYY-MM-DD"T"HH24',
    Granularity.DAY: "YYYY-MM-DD",
    Granularity.MONTH: "YYYY-MM",
}


def _iso_seconds(text: str) -> str:
    """Epoch seconds of an ISO 8601 date-time with its offset, NULL when it is
    none — never an error (client data: a cast would fail the whole report).
    A day past the month's end runs into the next month, as SQLite's
    ``julianday`` does (2026-02-30 → 2026-03-02), so both stores agree."""
    part = f"CAST(substr({text}, {{}}, 2) AS integer)"
    offset = f"substring({text} from '([+-][0-9]{{2}}:[0-9]{{2}}|Z)$')"
    return f"""CASE WHEN {text} ~ '{_ISO_RE}' THEN
        extract(epoch FROM make_timestamp(CAST(substr({text}, 1, 4) AS integer),
            {part.format(6)}, 1, {part.format(12)}, {part.format(15)}, 0))
        + ({part.format(9)} - 1) * 86400
        + COALESCE(CAST(substring({text} from '^.{{16}}:([0-9.]+)') AS double precision), 0)
        - CASE WHEN {offset} = 'Z' THEN 0 ELSE
            (CASE WHEN substr({offset}, 1, 1) = '-' THEN -1 ELSE 1 END)
            * (CAST(substr({offset}, 2, 2) AS integer) * 3600
               + CAST(substr({offset}, 5, 2) AS integer) * 60) END
        END"""


def pg(query: str) -> str:
    """``:name`` parameters → psycopg's ``%(name)s`` (and ``%`` escaped)."""
    return re.sub(r"(?<![:\w]):([a-z_][a-z0-9_]*)", r"%(\1)s", query.replace("%", "%%"))


def _facts_sql(only_cases: bool = False) -> str:
    """The facts of the dossiers first put in a queue in [start, end): a
    SELECT of :data:`sql.FACT_COLUMNS` and ``tx_at`` (the transmission as a
    time); ``only_cases``: of the dossiers ``:cases`` only (the open days'
    table, brought up to date)."""
    branch = sql.BRANCH_CASE.format(
        branch="(d.data->>'branch')", attribution="(d.data->>'attribution')"
    )
    epoch = "CAST(extract(epoch FROM {}) AS double precision)"
    cases = "AND case_id = ANY(:cases)" if only_cases else ""
    return f"""
WITH e AS (
    SELECT case_id,
        min(at) FILTER (WHERE kind = 'ENQUEUED'
            AND COALESCE(data->>'reopened', 'false') <> 'true') AS tx,
        min(at) FILTER (WHERE kind = 'CLAIMED') AS cl,
        min(at) FILTER (WHERE kind = 'DECIDED') AS de,
        min(at) FILTER (WHERE kind = 'DECIDED' AND role = 'MRL') AS liberal,
        min(at) FILTER (WHERE kind = 'BOOKING_REQUESTED') AS booking,
        min(at) FILTER (WHERE kind = 'CLOSED' AND data->>'queue' = 'OSNP') AS booked,
        min(at) FILTER (WHERE kind = 'ORIENTED' AND data->>'en_sus' = 'true') AS en_sus,
        min(at) FILTER (WHERE kind = 'TRANSFERRED' AND data->>'to' = 'AMU') AS to_amu
    FROM events WHERE seq >= :lo_seq AND seq < :hi_seq AND at >= :start AND at < :scan {cases}
    GROUP BY case_id
), f AS (
    SELECT e.case_id, e.tx,
        CASE WHEN e.cl < e.tx + :slack THEN e.cl END AS cl,
        CASE WHEN e.de < e.tx + :slack THEN e.de END AS de,
        COALESCE(e.liberal < e.tx + :slack, false) AS liberal,
        COALESCE(e.booking < e.tx + :slack, false) AS booking,
        CASE WHEN e.booked < e.tx + :slack THEN CASE WHEN e.en_sus < e.tx + :slack
            THEN 2 ELSE 1 END ELSE 0 END AS booked,
        COALESCE(e.to_amu < e.tx + :slack, false) AS to_amu,
        d.data AS data, {branch} AS branch FROM e JOIN dossiers d USING (case_id)
    WHERE e.tx >= :start AND e.tx < :end
)
SELECT case_id, tx AS tx_at, to_char(tx AT TIME ZONE :tz, :fmt) AS bucket, branch,
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
    CASE WHEN branch = 'DENT' THEN COALESCE((SELECT
        {sql.dental_case("(o.data->>'code')", "(o.data->>'text')")}
        FROM events o WHERE o.case_id = f.case_id AND o.kind = 'DENTAL_ORIENTED'
            AND o.at >= f.tx AND o.at < f.tx + :slack
        ORDER BY o.seq DESC LIMIT 1), '')
        ELSE '' END AS dental,
    CASE WHEN branch = 'SNP' THEN (SELECT {_iso_seconds("(o.data->>'start')")}
        FROM events o WHERE o.case_id = f.case_id AND o.kind = 'ORIENTED'
            AND o.at >= f.tx AND o.at < f.tx + :slack
        ORDER BY o.seq DESC LIMIT 1) END AS rdv
FROM f"""


_LOAD = """SELECT to_char(at AT TIME ZONE :tz, :fmt), role, operator, kind, count(*)
FROM events WHERE seq >= :lo_seq AND seq < :hi_seq AND at >= :start AND at < :end
  AND kind IN ('ENQUEUED', 'CLAIMED', 'DECIDED', 'CLOSED') AND data->>'renewed' IS NULL
GROUP BY 1, 2, 3, 4"""


# sql.seq_search in one statement: the bisection's probes on the server (a
# round trip each cost ≈ 10 ms on a loaded machine: 40 per report)
_SEQ_AT = """WITH RECURSIVE s(lo, hi) AS (
    SELECT COALESCE(min(seq), 0), COALESCE(max(seq), 0) + 1 FROM events
    UNION ALL
    SELECT CASE WHEN f.seq IS NULL OR f.at >= %(target)s THEN s.lo ELSE f.seq + 1 END,
        CASE WHEN f.seq IS NULL OR f.at >= %(target)s THEN (s.lo + s.hi) / 2 ELSE s.hi END
    FROM s LEFT JOIN LATERAL (SELECT seq, at FROM events WHERE seq >= (s.lo + s.hi) / 2
        ORDER BY seq LIMIT 1) f ON true
    WHERE s.lo < s.hi
)
SELECT lo FROM s WHERE lo >= hi"""


async def _seq_at(conn: psycopg.AsyncConnection[Any], target: datetime) -> int:
    """The first seq at or after ``target`` (by bisection on the key:
    :func:`sql.seq_search`, run by the server)."""
    cur = await conn.execute(_SEQ_AT, {"target": target})
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def _roll_state(conn: psycopg.AsyncConnection[Any]) -> tuple[int, int] | None:
    """The rolled range [lo, hi) (epoch seconds), None when there is none
    (no rollup table, or one of another definition)."""
    cur = await conn.execute("SELECT to_regclass('stats_roll_state')")
    found = await cur.fetchone()
    if found is None or found[0] is None:
        return None
    cur = await conn.execute("SELECT version, lo, hi FROM stats_roll_state WHERE id = 1")
    row = await cur.fetchone()
    if row is None or row[0] != rollup.VERSION or row[2] <= row[1]:
        return None
    return int(row[1]), int(row[2])


async def _facts(
    conn: psycopg.AsyncConnection[Any],
    start: datetime,
    end: datetime,
    base: dict[str, Any],
    *,
    by_priority: bool = False,
) -> RawStats:
    """The grouped counts of the dossiers put in a queue in [start, end),
    computed from the events (delays by priority for the rollup)."""
    params = {**base, "start": start, "end": end, "scan": end + sql.SCAN_SLACK}
    # the planner cannot guess how many dossiers the events group into:
    # over months, one pass on the dossiers beats a lookup each
    await conn.execute(f"SET LOCAL enable_nestloop = {'off' if end - start > LONG else 'on'}")
    params["lo_seq"] = await _seq_at(conn, start - sql.CLOCK_SLACK)
    params["hi_seq"] = await _seq_at(conn, end + sql.SCAN_SLACK + sql.CLOCK_SLACK)
    await conn.execute("DROP TABLE IF EXISTS stats_facts")
    await conn.execute(
        pg(f"CREATE TEMP TABLE stats_facts ON COMMIT DROP AS {_facts_sql()}"), params
    )
    return await _grouped(conn, params, by_priority=by_priority)


async def _grouped(
    conn: psycopg.AsyncConnection[Any],
    params: dict[str, Any],
    *,
    by_priority: bool = False,
    load_params: dict[str, Any] | None = None,
) -> RawStats:
    """Step 2: ``stats_facts`` grouped, and the load of [start, end) from
    the events (of ``load_params``' [start, end) when given)."""

    queries = (
        sql.COUNTS,
        sql.AGES,
        sql.DEPARTEMENTS,
        sql.SNP,
        sql.DENTAL,
        sql.DELAYS_BY_PRIORITY if by_priority else sql.DELAYS,
        _LOAD,
    )
    # sent together, answers read after: one round trip instead of seven
    async with conn.pipeline():
        cursors = [
            await conn.execute(pg(query), load_params if query is _LOAD and load_params else params)
            for query in queries
        ]
    counts, ages, deps, snp, dental, delays, load = [
        [tuple(r) for r in await cur.fetchall()] for cur in cursors
    ]
    return RawStats(
        counts=counts,
        ages=ages,
        departements=deps,
        snp=snp,
        dental=dental,
        delays=delays,
        load=[(r[0], r[1], r[2], sql.LOAD_KINDS[r[3]], int(r[4])) for r in load],
    )


# ---------------------------------------------------------------------------- the open days

#: the events looked at again on every update of the open days' facts, below
#: the mark: an insert whose seq was drawn before a newer event committed but
#: whose transaction had no id yet when the update took its snapshot
OPEN_LAG = 64
_FAR = datetime(9000, 1, 1, tzinfo=UTC)  # "no end": the open days run on
_OPEN_COLUMNS = (
    "case_id, tx_at, branch, priority, motive, age, insee, recv, tx, cl, de, liberal, "
    "booking, booked, to_amu, smur, emergency, decided, advice, dental, rdv"
)
OPEN_DDL = (
    "CREATE TABLE IF NOT EXISTS stats_open_state (id integer PRIMARY KEY, "
    "version integer NOT NULL, lo bigint NOT NULL, mark bigint NOT NULL, "
    "pending_mark bigint, pending_xip text)",
    "CREATE TABLE IF NOT EXISTS stats_open_facts (case_id text PRIMARY KEY, "
    "tx_at timestamptz NOT NULL, branch text, priority text, motive text, age text, "
    "insee text, recv double precision, tx double precision, cl double precision, "
    "de double precision, liberal integer, booking integer, booked integer, "
    "to_amu integer, smur integer, emergency integer, decided integer, advice integer, "
    "dental text, rdv double precision)",
    "CREATE INDEX IF NOT EXISTS stats_open_facts_tx ON stats_open_facts (tx_at)",
    # the load (events per person) of the open days' settled hours
    "ALTER TABLE stats_open_state ADD COLUMN IF NOT EXISTS load_hi bigint",
    # the first event of the open days' scan (found once per rolled range's end)
    "ALTER TABLE stats_open_state ADD COLUMN IF NOT EXISTS lo_seq bigint",
    "CREATE TABLE IF NOT EXISTS stats_open_load (hour bigint NOT NULL, role text NOT NULL, "
    "operator text NOT NULL, kind text NOT NULL, n bigint NOT NULL)",
    "CREATE INDEX IF NOT EXISTS stats_open_load_hour ON stats_open_load (hour)",
)
#: _LOAD by UTC hour, for the settled hours [:lo, :hi) (epoch seconds)
_FILL_OPEN_LOAD = """INSERT INTO stats_open_load (hour, role, operator, kind, n)
SELECT CAST(floor(extract(epoch FROM at) / 3600) * 3600 AS bigint), role, operator, kind, count(*)
FROM events WHERE seq >= :lo_seq AND seq < :hi_seq AND at >= :start AND at < :end
  AND kind IN ('ENQUEUED', 'CLAIMED', 'DECIDED', 'CLOSED') AND data->>'renewed' IS NULL
GROUP BY 1, 2, 3, 4"""
_READ_OPEN_LOAD = """SELECT h.bucket, r.role, r.operator, r.kind, CAST(sum(r.n) AS bigint)
FROM stats_open_load r JOIN stats_hours h ON h.hour = r.hour
WHERE r.hour >= :rs AND r.hour < :re GROUP BY 1, 2, 3, 4"""
_OPEN_READ = f"""CREATE TEMP TABLE stats_facts ON COMMIT DROP AS
SELECT case_id, to_char(tx_at AT TIME ZONE :tz, :fmt) AS bucket,
    {_OPEN_COLUMNS.split(", ", 2)[2]}
FROM stats_open_facts WHERE tx_at >= :start AND tx_at < :end"""


async def _open_update(conn: psycopg.AsyncConnection[Any], lo: int) -> int | None:
    """Bring ``stats_open_facts`` up to date: one row of facts per dossier
    first put in a queue at or after ``lo`` (epoch seconds: the end of the
    rolled range), as :func:`_facts` computes them from the events.

    Only the dossiers with an event since the last update are computed again
    (every write of a dossier appends an event to it: the queue backends
    write both in one statement); the table is rebuilt when it starts after
    ``lo`` or the facts' definition changed, and the days rolled meanwhile
    are dropped.  The mark (the last event taken into account) only passes
    the events of transactions still running when it was read once they have
    ended.  One updater at a time (an advisory lock).

    The load (events per person and hour) of the settled hours — those a
    day (``CLOCK_SLACK``) older than the last event — is summed once into
    ``stats_open_load``.  Returns where those hours end (epoch seconds);
    None when the tables are not there (``refresh`` makes them)."""
    cur = await conn.execute("SELECT to_regclass('stats_open_load')")
    found = await cur.fetchone()
    if found is None or found[0] is None:
        return None
    await conn.execute(
        "SELECT pg_advisory_lock(hashtextextended('sas_desk.stats_open:' || current_schema(), 0))"
    )
    level = conn.isolation_level
    try:
        # one snapshot, taken once the lock is held: the facts and the mark
        # agree (BEGIN ISOLATION LEVEL …: no statement of its own)
        await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
        async with conn.transaction():
            cur = await conn.execute(
                "SELECT (SELECT COALESCE(max(seq), 0) FROM events), "
                # the transactions running, but those of another database
                # (they cannot write these events: the server may be shared)
                "CAST(ARRAY(SELECT x FROM pg_snapshot_xip(pg_current_snapshot()) x "
                "WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a "
                "WHERE a.datname IS DISTINCT FROM current_database() "
                "AND CAST(CAST(a.backend_xid AS text) AS bigint) "
                "= CAST(CAST(x AS text) AS bigint) % 4294967296)) AS text), "
                "(SELECT CAST(extract(epoch FROM at) AS bigint) FROM events "
                "ORDER BY seq DESC LIMIT 1), "
                "s.version, s.lo, s.mark, s.pending_mark, s.pending_xip, s.load_hi, s.lo_seq "
                "FROM (SELECT 1) one LEFT JOIN stats_open_state s ON s.id = 1"
            )
            top, xip, last_at, *state = await _one(cur)
            start = datetime.fromtimestamp(lo, UTC)
            params: dict[str, Any] = {
                "tz": "UTC",
                "fmt": "YYYY",
                "slack": sql.SCAN_SLACK,
                "start": start,
                "end": _FAR,
                "scan": _FAR,
                "hi_seq": int(top) + 1,
            }
            insert = f"INSERT INTO stats_open_facts ({_OPEN_COLUMNS}) SELECT {_OPEN_COLUMNS} FROM "
            pending_mark, pending_xip = None, None
            load_hi = lo
            if state[0] != rollup.VERSION or int(state[1]) > lo or state[5] is None:
                params["lo_seq"] = await _seq_at(conn, start - sql.CLOCK_SLACK)
                await conn.execute("SET LOCAL work_mem = '256MB'")
                await conn.execute("DELETE FROM stats_open_facts")
                await conn.execute("DELETE FROM stats_open_load")
                await conn.execute(pg(f"{insert} ({_facts_sql()}) f"), params)
                mark = params["lo_seq"] - 1
            else:
                load_hi = max(lo, int(state[5]))
                mark, pending_mark, pending_xip = int(state[2]), state[3], state[4]
                if int(state[1]) == lo and state[6] is not None:
                    params["lo_seq"] = int(state[6])
                else:
                    params["lo_seq"] = await _seq_at(conn, start - sql.CLOCK_SLACK)
                    await conn.execute("DELETE FROM stats_open_load WHERE hour < %s", (lo,))
                    await conn.execute("DELETE FROM stats_open_facts WHERE tx_at < %s", (start,))
                cur = await conn.execute(
                    "SELECT COALESCE(array_agg(DISTINCT case_id), '{}') FROM events WHERE seq > %s",
                    (max(mark - OPEN_LAG, params["lo_seq"] - 1),),
                )
                cases = (await _one(cur))[0]
                if cases:
                    async with conn.pipeline():
                        await conn.execute(
                            "DELETE FROM stats_open_facts WHERE case_id = ANY(%s)", (cases,)
                        )
                        await conn.execute(
                            pg(f"{insert} ({_facts_sql(only_cases=True)}) f"),
                            {**params, "cases": cases},
                        )
                if pending_xip is not None:
                    # their events, if any, are among those just read: done
                    # before this snapshot, they are visible in it
                    cur = await conn.execute(
                        "SELECT bool_and(pg_visible_in_snapshot(x, pg_current_snapshot())) "
                        "FROM unnest(CAST(%s AS xid8[])) x",
                        (pending_xip,),
                    )
                    if (await _one(cur))[0] is not False:
                        mark, pending_mark, pending_xip = max(mark, int(pending_mark)), None, None
            settled = (int(last_at or 0) - int(sql.CLOCK_SLACK.total_seconds())) // 3600 * 3600
            if settled > load_hi:
                await conn.execute(
                    pg(_FILL_OPEN_LOAD),
                    {
                        "start": datetime.fromtimestamp(load_hi, UTC),
                        "end": datetime.fromtimestamp(settled, UTC),
                        "lo_seq": await _seq_at(
                            conn, datetime.fromtimestamp(load_hi, UTC) - sql.CLOCK_SLACK
                        ),
                        "hi_seq": int(top) + 1,
                    },
                )
                load_hi = settled
            if xip == "{}":
                mark, pending_mark, pending_xip = max(mark, int(top)), None, None
            elif pending_xip is None:
                pending_mark, pending_xip = int(top), xip
            await conn.execute(
                "INSERT INTO stats_open_state (id, version, lo, mark, pending_mark, pending_xip, "
                "load_hi, lo_seq) VALUES (1, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, lo = EXCLUDED.lo, "
                "mark = EXCLUDED.mark, pending_mark = EXCLUDED.pending_mark, "
                "pending_xip = EXCLUDED.pending_xip, load_hi = EXCLUDED.load_hi, "
                "lo_seq = EXCLUDED.lo_seq",
                (rollup.VERSION, lo, mark, pending_mark, pending_xip, load_hi, params["lo_seq"]),
            )
    finally:
        await conn.set_isolation_level(level)
        await conn.execute(
            "SELECT pg_advisory_unlock(hashtextextended('sas_desk.stats_open:' || current_schema(), 0))"
        )
    return load_hi


async def _one(cur: psycopg.AsyncCursor[Any]) -> tuple[Any, ...]:
    row = await cur.fetchone()
    assert row is not None
    return tuple(row)


async def _open_facts(
    conn: psycopg.AsyncConnection[Any],
    start: datetime,
    end: datetime,
    base: dict[str, Any],
    load_hi: int,
    by: Granularity,
    zone: ZoneInfo,
) -> RawStats:
    """The grouped counts of [start, end) (open days) from ``stats_open_facts``;
    the load of the settled hours (before ``load_hi``) from ``stats_open_load``,
    of the rest from the events."""
    params = {**base, "start": start, "end": end}
    params["lo_seq"] = await _seq_at(conn, start - sql.CLOCK_SLACK)
    params["hi_seq"] = await _seq_at(conn, end + sql.CLOCK_SLACK)
    hours = rollup.hours_of(start, min(end, datetime.fromtimestamp(load_hi, UTC)), by, zone)
    cut = datetime.fromtimestamp(hours[-1][0] + rollup.HOUR, UTC) if hours else start
    load_params = {**params, "start": cut}
    if hours:
        load_params["lo_seq"] = await _seq_at(conn, cut - sql.CLOCK_SLACK)
    await conn.execute("DROP TABLE IF EXISTS stats_facts")
    await conn.execute(pg(_OPEN_READ), params)
    out = await _grouped(conn, params, load_params=load_params)
    if hours:
        await _hours_table(conn, rollup.Part(start, cut, True, tuple(hours)))
        cur = await conn.execute(
            pg(_READ_OPEN_LOAD), {"rs": hours[0][0], "re": hours[-1][0] + rollup.HOUR}
        )
        out.load.extend(
            (r[0], r[1], r[2], sql.LOAD_KINDS[r[3]], int(r[4])) for r in await cur.fetchall()
        )
    return out


async def _hours_table(conn: psycopg.AsyncConnection[Any], part: rollup.Part) -> None:
    """``stats_hours``: the part's hours → their report bucket."""
    await conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS stats_hours (hour bigint PRIMARY KEY, bucket text) "
        "ON COMMIT DROP"
    )
    await conn.execute("TRUNCATE stats_hours")
    async with (
        conn.cursor() as cursor,
        cursor.copy("COPY stats_hours (hour, bucket) FROM STDIN") as copy,
    ):
        for row in part.hours:
            await copy.write_row(row)


async def _rolled(
    conn: psycopg.AsyncConnection[Any], part: rollup.Part, base: dict[str, Any]
) -> RawStats:
    """The rollup's counts of the part's hours, summed by the report's bucket."""
    await _hours_table(conn, part)
    params = {**base, "rs": int(part.start.timestamp()), "re": int(part.end.timestamp())}

    async def rows(query: str) -> list[tuple[Any, ...]]:
        cur = await conn.execute(pg(query), params)
        return [tuple(r) for r in await cur.fetchall()]

    return RawStats(
        counts=await rows(rollup.READ_COUNTS),
        ages=await rows(rollup.READ_AGES),
        departements=await rows(rollup.READ_DEPS),
        snp=await rows(rollup.READ_SNP),
        dental=await rows(rollup.READ_DENTAL),
        delays=await rows(rollup.READ_DELAYS),
        load=await rows(rollup.READ_LOAD),
    )


async def _months(conn: psycopg.AsyncConnection[Any], months: tuple[str, ...]) -> RawStats:
    """The month table's rows of whole months."""
    out = RawStats()
    for name in rollup.MONTH_TABLES:
        cur = await conn.execute(rollup.read_months_sql(name, len(months), "%s"), months)
        getattr(out, name).extend(tuple(r) for r in await cur.fetchall())
    return out


async def _cache_months(
    conn: psycopg.AsyncConnection[Any], lo: int, hi: int, tz: str, limits: WaitLimits
) -> None:
    """Sum the whole months of [lo, hi) in ``tz`` under ``limits`` (the ones
    not summed yet; all again when the zone or the limits changed)."""
    key = rollup.limits_key(limits)
    cur = await conn.execute("SELECT month, tz, limits FROM stats_month_state")
    rows = await cur.fetchall()
    if any((r[1], r[2]) != (tz, key) for r in rows):
        for table in ("stats_month_state", *(t for t, _ in rollup.MONTH_TABLES.values())):
            await conn.execute(f"DELETE FROM {table}")
        rows = []
    done = {str(r[0]) for r in rows}
    base: dict[str, Any] = {f"p{i}": limits.limit(f"P{i}") for i in range(4)}
    so_far = rollup.month_so_far(lo, hi, ZoneInfo(tz))
    for month in done:
        if "/" in month and (so_far is None or month != so_far.hours[0][1]):
            # a month summed so far, rolled further since (or whole now)
            for table in ("stats_month_state", *(t for t, _ in rollup.MONTH_TABLES.values())):
                await conn.execute(f"DELETE FROM {table} WHERE month = %s", (month,))
    for part in [*rollup.months_inside(lo, hi, ZoneInfo(tz)), *filter(None, [so_far])]:
        month = part.hours[0][1]
        if month in done:
            continue
        await _hours_table(conn, part)
        params = {**base, "rs": int(part.start.timestamp()), "re": int(part.end.timestamp())}
        for name in rollup.MONTH_TABLES:
            await conn.execute(pg(rollup.fill_month_sql(name)), params)
        await conn.execute("INSERT INTO stats_month_state VALUES (%s, %s, %s)", (month, tz, key))


class PostgresStatsSource:
    """Statistics over one PostgreSQL schema of queues."""

    def __init__(
        self,
        dsn: str,
        schema: str = "sas_desk",
        *,
        connect_timeout: int = 5,
        use_rollup: bool = True,
        open_days: bool = True,
    ) -> None:
        if not _SCHEMA_RE.fullmatch(schema):
            raise ValueError(f"Nom de schéma invalide « {schema} ».")
        self.dsn = dsn
        self.schema = schema
        self.connect_timeout = connect_timeout
        self.use_rollup = use_rollup  # False: every report from the events (tests, bench)
        # False: the open days from the events, not from stats_open_facts (bench)
        self.open_days = use_rollup and open_days

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
        base: dict[str, Any] = {"tz": period.tz, "fmt": _FORMATS[by], "slack": sql.SCAN_SLACK}
        base.update({f"p{i}": limits.limit(f"P{i}") for i in range(4)})
        conn = await self._connect()
        try:
            open_from = await self._open_from(conn)
            # one snapshot for every query (a temporary table forbids READ ONLY)
            await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
            async with conn.transaction():
                # a year is a million groups by dossier: hash them in memory, not on disk
                await conn.execute("SET LOCAL work_mem = '256MB'")
                state = await _roll_state(conn) if self.use_rollup else None
                months: frozenset[str] = frozenset()
                if state is not None and by is Granularity.MONTH:
                    cur = await conn.execute(
                        "SELECT month FROM stats_month_state WHERE tz = %s AND limits = %s",
                        (period.tz, rollup.limits_key(limits)),
                    )
                    months = frozenset(str(r[0]) for r in await cur.fetchall())
                out = RawStats()
                for part in rollup.split(period.start, period.end, by, period.zone, state, months):
                    if part.rolled:
                        if part.hours:
                            rollup.extend(out, await _rolled(conn, part, base))
                        if part.months:
                            rollup.extend(out, await _months(conn, part.months))
                    elif open_from is not None and part.start.timestamp() >= open_from[0]:
                        opened = await _open_facts(
                            conn, part.start, part.end, base, open_from[1], by, period.zone
                        )
                        rollup.extend(out, opened)
                    else:
                        rollup.extend(out, await _facts(conn, part.start, part.end, base))
        except psycopg.Error as exc:
            log.warning("stats query failed: %s", type(exc).__name__)
            raise StatsUnavailable(
                f"Lecture des statistiques impossible ({type(exc).__name__})."
            ) from None
        finally:
            await conn.close()
        return out

    async def _open_from(self, conn: psycopg.AsyncConnection[Any]) -> tuple[int, int] | None:
        """The open days' facts brought up to date: where they start (the
        rolled range's end) and where their settled hours' load ends (epoch
        seconds); None when a report must read the events (no rollup, no
        table, or the update failed: logged)."""
        if not self.open_days:
            return None
        state = await _roll_state(conn)
        if state is None:
            return None
        try:
            load_hi = await _open_update(conn, state[1])
            return None if load_hi is None else (state[1], load_hi)
        except psycopg.Error as exc:
            if conn.closed:
                raise
            log.warning("stats: open days not brought up to date (%s)", type(exc).__name__)
            return None

    async def refresh(
        self,
        now: datetime,
        *,
        rebuild: bool = False,
        tz: str = DEFAULT_TZ,
        limits: WaitLimits | None = None,
    ) -> tuple[int, int]:
        """Roll up the closed days not rolled yet (all of them again with
        ``rebuild`` or after a change of the rollup's definition), then sum
        the whole months of the room's zone ``tz`` under its ``limits``;
        returns the rolled range [lo, hi) in epoch seconds (0, 0: nothing to
        roll).  Each run of days is its own transaction: an interrupted
        refresh keeps what it committed and goes on from there next time."""
        conn = await self._connect()
        try:
            async with conn.transaction():
                for statement in (*rollup.ddl(), *OPEN_DDL):
                    await conn.execute(statement)
                if rebuild:
                    await conn.execute("DELETE FROM stats_open_state")
            lo, hi = 0, 0
            while True:
                async with conn.transaction():
                    cur = await conn.execute(
                        "SELECT version, lo, hi FROM stats_roll_state WHERE id = 1 FOR UPDATE"
                    )
                    row = await cur.fetchone()
                    if row is None or rebuild or row[0] != rollup.VERSION:
                        rebuild = False
                        for table in rollup.ALL_TABLES:
                            await conn.execute(f"DELETE FROM {table}")
                        await conn.execute("DELETE FROM stats_roll_state")
                        cur = await conn.execute("SELECT at FROM events ORDER BY seq LIMIT 1")
                        first = await cur.fetchone()
                        if first is None:
                            return 0, 0
                        lo = hi = rollup.day_floor(first[0] - sql.CLOCK_SLACK)
                        await conn.execute(
                            "INSERT INTO stats_roll_state VALUES (1, %s, %s, %s, %s)",
                            (rollup.VERSION, lo, hi, now.isoformat()),
                        )
                    else:
                        lo, hi = int(row[1]), int(row[2])
                    until = rollup.closed_before(now)
                    if hi >= until:
                        break
                    start, end = next(iter(rollup.chunks(hi, until)))
                    base: dict[str, Any] = {
                        "tz": "UTC",
                        "fmt": _FORMATS[Granularity.HOUR],
                        "slack": sql.SCAN_SLACK,
                    }
                    raw = await _facts(conn, start, end, base, by_priority=True)
                    for table, rows in rollup.rows_of(raw).items():
                        columns = ", ".join(("hour", *rollup.TABLES[table]))
                        async with (
                            conn.cursor() as cursor,
                            cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
                        ):
                            for r in rows:
                                await copy.write_row(r)
                    hi = int(end.timestamp())
                    await conn.execute(
                        "UPDATE stats_roll_state SET hi = %s, built_at = %s WHERE id = 1",
                        (hi, now.isoformat()),
                    )
                    log.info("stats rollup: %s .. %s rolled", start.date(), end.date())
            async with conn.transaction():
                await _cache_months(conn, lo, hi, tz, limits or WaitLimits())
            await _open_update(conn, hi)
            return lo, hi
        except psycopg.Error as exc:
            log.warning("stats rollup failed: %s", type(exc).__name__)
            raise StatsUnavailable(
                f"Mise à jour des agrégats impossible ({type(exc).__name__})."
            ) from None
        finally:
            await conn.close()

    async def activity(self, since: datetime, until: datetime) -> list[RecentEvent]:
        conn = await self._connect()
        try:
            # from the first event a day (the clock slack) before ``since``,
            # found by bisection, as a constant: with the bound computed in the
            # query the planner could not size the range and chose a parallel
            # scan of the last 50,000 events (167 ms for 554 rows at 10^6
            # dossiers, 2.5 ms this way)
            lo_seq = await _seq_at(conn, since - sql.CLOCK_SLACK)
            cur = await conn.execute(
                "SELECT at, kind, role, operator, workstation, case_id FROM events "
                "WHERE seq >= %s AND at >= %s AND at < %s ORDER BY seq",
                (lo_seq, since, until),
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
