"""Statistics over the SQLite queue file (embedded mode, one machine).

Opens the file read-only (``mode=ro``) on a thread of its own: the event
loop never waits on the disk, and the queue backend's connections are never
touched.  Times in the file are ISO 8601 strings with their offset; they are
compared through ``julianday`` (offsets differ across a change of daylight
saving time) and bucketed in the report's time zone by a small SQL function.

Patient data at rest (issue 15): on a workstation the dossiers and events
are sealed (``data``); the queries read only their clear ``facts`` — what
the statistics need, with the record's own JSON paths (see
``dossier_facts`` / ``event_facts`` in ``sas_desk.models.stats``) — and so
never need the workstation's key.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sas_desk.models.board import RecentEvent
from sas_desk.models.queue import WaitLimits
from sas_desk.models.stats import DEFAULT_TZ, Granularity, Period, RawStats, bucket_of
from sas_desk.services.stats import StatsUnavailable, rollup, sql

T = TypeVar("T")

_EPOCH_JD = 2440587.5
_MARGIN = timedelta(seconds=1)


def _jd(at: datetime) -> float:
    return at.timestamp() / 86400.0 + _EPOCH_JD


def _seconds(column: str) -> str:
    """Epoch seconds of an ISO text, to the millisecond (``julianday`` is a
    double: unrounded, 23:00:00 may come back as 22:59:59.99995)."""
    return f"round((julianday({column}) - {_EPOCH_JD}) * 86400.0, 3)"


def _facts_sql() -> str:
    j = "json_extract"
    branch = sql.BRANCH_CASE.format(
        branch=f"{j}(d.facts, '$.branch')", attribution=f"{j}(d.facts, '$.attribution')"
    )
    return f"""
CREATE TEMP TABLE stats_facts AS
WITH e AS (
    SELECT case_id,
        MIN(CASE WHEN kind = 'ENQUEUED' AND COALESCE({j}(data, '$.reopened'), 0) = 0
            THEN ts END) AS tx,
        MIN(CASE WHEN kind = 'CLAIMED' THEN ts END) AS cl,
        MIN(CASE WHEN kind = 'DECIDED' THEN ts END) AS de,
        MIN(CASE WHEN kind = 'DECIDED' AND role = 'MRL' THEN ts END) AS liberal,
        MIN(CASE WHEN kind = 'BOOKING_REQUESTED' THEN ts END) AS booking,
        MIN(CASE WHEN kind = 'CLOSED' AND {j}(data, '$.queue') = 'OSNP' THEN ts END) AS booked,
        MIN(CASE WHEN kind = 'ORIENTED' AND {j}(data, '$.en_sus') = 1 THEN ts END) AS en_sus,
        MIN(CASE WHEN kind = 'TRANSFERRED' AND {j}(data, '$.to') = 'AMU' THEN ts END) AS to_amu
    FROM (SELECT case_id, kind, role, facts AS data, {_seconds("at")} AS ts FROM events
          WHERE seq >= :lo_seq AND seq < :hi_seq
            AND julianday(at) >= :jstart AND julianday(at) < :jscan)
    GROUP BY case_id
), f AS (
    SELECT e.case_id, e.tx,
        CASE WHEN e.cl < e.tx + :slack THEN e.cl END AS cl,
        CASE WHEN e.de < e.tx + :slack THEN e.de END AS de,
        COALESCE(e.liberal < e.tx + :slack, 0) AS liberal,
        COALESCE(e.booking < e.tx + :slack, 0) AS booking,
        CASE WHEN e.booked < e.tx + :slack THEN CASE WHEN e.en_sus < e.tx + :slack
            THEN 2 ELSE 1 END ELSE 0 END AS booked,
        COALESCE(e.to_amu < e.tx + :slack, 0) AS to_amu,
        d.facts AS data, {branch} AS branch FROM e JOIN dossiers d USING (case_id)
    WHERE e.tx >= :start AND e.tx < :end
)
SELECT case_id, stats_bucket(tx) AS bucket, branch,
    COALESCE({j}(data, '$.priority'), '') AS priority,
    COALESCE({j}(data, '$.motive_code'), '') AS motive,
    COALESCE({j}(data, '$.patient.age'), '') AS age,
    COALESCE({j}(data, '$.location.insee'), '') AS insee,
    {_seconds(f"{j}(data, '$.created_at')")} AS recv, tx, cl, de,
    liberal, booking, booked, to_amu,
    CASE WHEN branch = 'SNP' THEN EXISTS (SELECT 1 FROM json_each(data, '$.decisions') x
        WHERE {j}(x.value, '$.resource_type') LIKE 'SMUR%') ELSE 0 END AS smur,
    CASE WHEN branch = 'SNP' THEN EXISTS (SELECT 1 FROM json_each(data, '$.decisions') x
        WHERE {j}(x.value, '$.orientation_type') IN ('URGENCES', 'REA-USI')) ELSE 0 END
        AS emergency,
    CASE WHEN COALESCE(json_array_length(data, '$.decisions'), 0) > 0 THEN 1 ELSE 0 END
        AS decided,
    CASE WHEN branch = 'SNP' THEN NOT EXISTS (SELECT 1 FROM json_each(data, '$.decisions') x
        WHERE {j}(x.value, '$.decision_type') NOT IN ('CONSEIL', 'PMT')) ELSE 0 END AS advice,
    CASE WHEN branch = 'DENT' THEN COALESCE((SELECT
        {sql.dental_case(f"{j}(o.facts, '$.code')", f"{j}(o.facts, '$.text')")}
        FROM events o WHERE o.case_id = f.case_id AND o.kind = 'DENTAL_ORIENTED'
            AND {_seconds("o.at")} >= f.tx AND {_seconds("o.at")} < f.tx + :slack
        ORDER BY o.seq DESC LIMIT 1), '') ELSE '' END AS dental,
    CASE WHEN branch = 'SNP' THEN (SELECT {_seconds(f"{j}(o.facts, '$.start')")}
        FROM events o WHERE o.case_id = f.case_id AND o.kind = 'ORIENTED'
            AND {_seconds("o.at")} >= f.tx AND {_seconds("o.at")} < f.tx + :slack
        ORDER BY o.seq DESC LIMIT 1) END AS rdv
FROM f"""


class SqliteStatsSource:
    """Statistics over one SQLite queue file (read-only)."""

    def __init__(self, path: Path, *, use_rollup: bool = True) -> None:
        self.path = path
        self.use_rollup = use_rollup  # False: every report from the events (tests, bench)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="stats-sqlite"
        )
        self._conn: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            try:
                return fn(self._connection())
            except sqlite3.Error as exc:
                raise StatsUnavailable(_message(exc)) from None

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            if not self.path.exists():
                raise StatsUnavailable(f"Fichier des files introuvable : {self.path}.")
            conn = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, timeout=5.0, isolation_level=None
            )
            self._conn = conn
        return self._conn

    async def raw(self, period: Period, by: Granularity, limits: WaitLimits) -> RawStats:
        limit_params = {f"p{i}": limits.limit(f"P{i}") for i in range(4)}

        def read(conn: sqlite3.Connection) -> RawStats:
            conn.execute("BEGIN")  # one snapshot for every query
            try:
                out = RawStats()
                state = _roll_state(conn) if self.use_rollup else None
                months: frozenset[str] = frozenset()
                if state is not None and by is Granularity.MONTH:
                    months = frozenset(
                        str(r[0])
                        for r in conn.execute(
                            "SELECT month FROM stats_month_state WHERE tz = ? AND limits = ?",
                            (period.tz, rollup.limits_key(limits)),
                        )
                    )
                for part in rollup.split(period.start, period.end, by, period.zone, state, months):
                    if part.rolled:
                        if part.hours:
                            rollup.extend(out, _rolled(conn, part, limit_params))
                        if part.months:
                            rollup.extend(out, _months(conn, part.months))
                    else:
                        facts = _facts(conn, part.start, part.end, by, period.zone, limit_params)
                        rollup.extend(out, facts)
            finally:
                conn.execute("ROLLBACK")
            return out

        return await self._run(read)

    async def refresh(
        self,
        now: datetime,
        *,
        rebuild: bool = False,
        tz: str = DEFAULT_TZ,
        limits: WaitLimits | None = None,
    ) -> tuple[int, int]:
        """Roll up the closed days not rolled yet (see
        :meth:`PostgresStatsSource.refresh`), on a writing connection of its
        own; returns the rolled range [lo, hi) in epoch seconds."""

        def write() -> tuple[int, int]:
            if not self.path.exists():
                raise StatsUnavailable(f"Fichier des files introuvable : {self.path}.")
            conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
            try:
                return _refresh(conn, now, rebuild, tz, limits or WaitLimits())
            except sqlite3.Error as exc:
                raise StatsUnavailable(_message(exc)) from None
            finally:
                conn.close()

        return await asyncio.get_running_loop().run_in_executor(self._executor, write)

    async def activity(self, since: datetime, until: datetime) -> list[RecentEvent]:
        def read(conn: sqlite3.Connection) -> list[RecentEvent]:
            rows = conn.execute(
                "SELECT at, kind, role, operator, workstation, case_id FROM events "
                "WHERE seq > (SELECT COALESCE(MAX(seq), 0) FROM events) - ? "
                f"AND julianday(at) >= ? AND julianday(at) < ? "
                f"AND {_seconds('at')} >= ? AND {_seconds('at')} < ? ORDER BY seq",
                (
                    sql.RECENT_EVENTS,
                    _jd(since - _MARGIN),
                    _jd(until + _MARGIN),
                    since.timestamp(),
                    until.timestamp(),
                ),
            ).fetchall()
            return [
                RecentEvent(datetime.fromisoformat(r[0]), r[1], r[2], r[3], r[4], r[5])
                for r in rows
            ]

        return await self._run(read)

    async def close(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=True)


def _bucket_function(conn: sqlite3.Connection, by: Granularity, zone: ZoneInfo) -> None:
    def bucket(seconds: float | None) -> str | None:
        if seconds is None:
            return None
        return bucket_of(datetime.fromtimestamp(round(seconds, 3), UTC), by, zone)

    conn.create_function("stats_bucket", 1, bucket, deterministic=True)


def _facts(
    conn: sqlite3.Connection,
    start: datetime,
    end: datetime,
    by: Granularity,
    zone: ZoneInfo,
    limit_params: dict[str, Any],
    *,
    by_priority: bool = False,
) -> RawStats:
    """The grouped counts of the dossiers put in a queue in [start, end),
    computed from the events (delays by priority for the rollup)."""
    params: dict[str, Any] = {
        **limit_params,
        "jstart": _jd(start - _MARGIN),  # the exact bounds apply to seconds
        "jscan": _jd(end + sql.SCAN_SLACK),
        "start": start.timestamp(),
        "end": end.timestamp(),
        "jend": _jd(end + _MARGIN),
        "slack": sql.SCAN_SLACK.total_seconds(),
        "lo_seq": _seq_at(conn, start - sql.CLOCK_SLACK),
        "hi_seq": _seq_at(conn, end + sql.SCAN_SLACK + sql.CLOCK_SLACK),
    }
    _bucket_function(conn, by, zone)
    conn.execute("DROP TABLE IF EXISTS temp.stats_facts")
    conn.execute(_facts_sql(), params)
    delays = sql.DELAYS_BY_PRIORITY if by_priority else sql.DELAYS
    out = RawStats(
        counts=[tuple(r) for r in conn.execute(sql.COUNTS)],
        ages=[tuple(r) for r in conn.execute(sql.AGES)],
        departements=[tuple(r) for r in conn.execute(sql.DEPARTEMENTS)],
        snp=[tuple(r) for r in conn.execute(sql.SNP)],
        dental=[tuple(r) for r in conn.execute(sql.DENTAL)],
        delays=[tuple(r) for r in conn.execute(delays, params)],
        load=[
            (r[0], r[1], r[2], sql.LOAD_KINDS[r[3]], r[4])
            for r in conn.execute(
                f"""SELECT stats_bucket({_seconds("at")}), role, operator, kind,
                    count(*) FROM events
                WHERE seq >= :lo_seq AND seq < :hi_seq
                  AND julianday(at) >= :jstart AND julianday(at) < :jend
                  AND {_seconds("at")} >= :start AND {_seconds("at")} < :end
                  AND kind IN ('ENQUEUED', 'CLAIMED', 'DECIDED', 'CLOSED')
                  AND json_extract(facts, '$.renewed') IS NULL
                GROUP BY 1, 2, 3, 4""",
                params,
            )
        ],
    )
    conn.execute("DROP TABLE temp.stats_facts")
    return out


def _roll_state(conn: sqlite3.Connection) -> tuple[int, int] | None:
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'stats_roll_state'"
    ).fetchone()
    if found is None:
        return None
    row = conn.execute("SELECT version, lo, hi FROM stats_roll_state WHERE id = 1").fetchone()
    if row is None or row[0] != rollup.VERSION or row[2] <= row[1]:
        return None
    return int(row[1]), int(row[2])


def _hours_table(conn: sqlite3.Connection, part: rollup.Part) -> None:
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS stats_hours (hour INTEGER PRIMARY KEY, bucket TEXT)"
    )
    conn.execute("DELETE FROM temp.stats_hours")
    conn.executemany("INSERT INTO temp.stats_hours VALUES (?, ?)", part.hours)


def _months(conn: sqlite3.Connection, months: tuple[str, ...]) -> RawStats:
    out = RawStats()
    for name in rollup.MONTH_TABLES:
        query = rollup.read_months_sql(name, len(months), "?")
        getattr(out, name).extend(tuple(r) for r in conn.execute(query, months))
    return out


def _cache_months(conn: sqlite3.Connection, lo: int, hi: int, tz: str, limits: WaitLimits) -> None:
    key = rollup.limits_key(limits)
    rows = conn.execute("SELECT month, tz, limits FROM stats_month_state").fetchall()
    if any((r[1], r[2]) != (tz, key) for r in rows):
        for table in ("stats_month_state", *(t for t, _ in rollup.MONTH_TABLES.values())):
            conn.execute(f"DELETE FROM {table}")
        rows = []
    done = {str(r[0]) for r in rows}
    base: dict[str, Any] = {f"p{i}": limits.limit(f"P{i}") for i in range(4)}
    for part in rollup.months_inside(lo, hi, ZoneInfo(tz)):
        month = part.hours[0][1]
        if month in done:
            continue
        _hours_table(conn, part)
        params = {**base, "rs": int(part.start.timestamp()), "re": int(part.end.timestamp())}
        for name in rollup.MONTH_TABLES:
            conn.execute(rollup.fill_month_sql(name), params)
        conn.execute("INSERT INTO stats_month_state VALUES (?, ?, ?)", (month, tz, key))


def _rolled(conn: sqlite3.Connection, part: rollup.Part, limit_params: dict[str, Any]) -> RawStats:
    _hours_table(conn, part)
    params = {**limit_params, "rs": int(part.start.timestamp()), "re": int(part.end.timestamp())}

    def rows(query: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in conn.execute(query, params)]

    out = RawStats(
        counts=rows(rollup.READ_COUNTS),
        ages=rows(rollup.READ_AGES),
        departements=rows(rollup.READ_DEPS),
        snp=rows(rollup.READ_SNP),
        dental=rows(rollup.READ_DENTAL),
        delays=rows(rollup.READ_DELAYS),
        load=rows(rollup.READ_LOAD),
    )
    conn.execute("DELETE FROM temp.stats_hours")
    return out


def _refresh(
    conn: sqlite3.Connection, now: datetime, rebuild: bool, tz: str, limits: WaitLimits
) -> tuple[int, int]:
    for statement in rollup.ddl():
        conn.execute(statement)
    utc = ZoneInfo("UTC")
    no_limits = dict.fromkeys(("p0", "p1", "p2", "p3"), 0)
    while True:
        conn.execute("BEGIN IMMEDIATE")  # one writer at a time
        try:
            row = conn.execute(
                "SELECT version, lo, hi FROM stats_roll_state WHERE id = 1"
            ).fetchone()
            if row is None or rebuild or row[0] != rollup.VERSION:
                rebuild = False
                for table in rollup.ALL_TABLES:
                    conn.execute(f"DELETE FROM {table}")
                conn.execute("DELETE FROM stats_roll_state")
                first = conn.execute("SELECT at FROM events ORDER BY seq LIMIT 1").fetchone()
                if first is None:
                    conn.execute("COMMIT")
                    return 0, 0
                lo = hi = rollup.day_floor(datetime.fromisoformat(first[0]) - sql.CLOCK_SLACK)
                conn.execute(
                    "INSERT INTO stats_roll_state VALUES (1, ?, ?, ?, ?)",
                    (rollup.VERSION, lo, hi, now.isoformat()),
                )
            else:
                lo, hi = int(row[1]), int(row[2])
            until = rollup.closed_before(now)
            if hi >= until:
                _cache_months(conn, lo, hi, tz, limits)
                conn.execute("COMMIT")
                return lo, hi
            start, end = next(iter(rollup.chunks(hi, until)))
            raw = _facts(conn, start, end, Granularity.HOUR, utc, no_limits, by_priority=True)
            for table, rows in rollup.rows_of(raw).items():
                conn.executemany(rollup.insert_sql(table, "?"), rows)
            conn.execute(
                "UPDATE stats_roll_state SET hi = ?, built_at = ? WHERE id = 1",
                (int(end.timestamp()), now.isoformat()),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _seq_at(conn: sqlite3.Connection, target: datetime) -> int:
    """The first seq at or after ``target`` (by bisection on the key)."""
    lo, hi = conn.execute(
        "SELECT COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0) + 1 FROM events"
    ).fetchone()
    search = sql.seq_search(int(lo), int(hi), target)
    try:
        probe = next(search)
        while True:
            row = conn.execute(
                "SELECT seq, at FROM events WHERE seq >= ? ORDER BY seq LIMIT 1", (probe,)
            ).fetchone()
            found = (int(row[0]), datetime.fromisoformat(row[1])) if row else None
            probe = search.send(found)
    except StopIteration as done:
        return int(done.value)


def _message(exc: sqlite3.Error) -> str:
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return "Fichier des files occupé : statistiques indisponibles, nouvel essai plus tard."
    if "no such table" in text:
        return "Le fichier des files ne contient pas encore de dossiers."
    if "no such column" in text:  # written by an older version, not opened since
        return (
            "Fichier des files d'une version antérieure : ouvrez SAS Desk une fois "
            "pour le mettre à jour."
        )
    if "unable to open" in text:
        return "Impossible d'ouvrir le fichier des files (dossier inaccessible)."
    return f"Lecture du fichier des files impossible ({exc.__class__.__name__})."
