"""Statistics over the SQLite queue file (embedded mode, one machine).

Opens the file read-only (``mode=ro``) on a thread of its own: the event
loop never waits on the disk, and the queue backend's connections are never
touched.  Times in the file are ISO 8601 strings with their offset; they are
compared through ``julianday`` (offsets differ across a change of daylight
saving time) and bucketed in the report's time zone by a small SQL function.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sas_desk.models.board import RecentEvent
from sas_desk.models.queue import WaitLimits
from sas_desk.models.stats import DENTAL_NOTE_PREFIX, Granularity, Period, RawStats, bucket_of
from sas_desk.services.stats import StatsUnavailable, sql

T = TypeVar("T")

_EPOCH_JD = 2440587.5
SCAN_SLACK = timedelta(days=7)  # events read after the period (late claims, decisions)
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
        branch=f"{j}(d.data, '$.branch')", attribution=f"{j}(d.data, '$.attribution')"
    )
    note_text = f"{j}(n.value, '$.text')"
    return f"""
CREATE TEMP TABLE stats_facts AS
WITH e AS (
    SELECT case_id,
        MIN(CASE WHEN kind = 'ENQUEUED' AND COALESCE({j}(data, '$.reopened'), 0) = 0
            THEN ts END) AS tx,
        MIN(CASE WHEN kind = 'CLAIMED' THEN ts END) AS cl,
        MIN(CASE WHEN kind = 'DECIDED' THEN ts END) AS de,
        MAX(kind = 'DECIDED' AND role = 'MRL') AS liberal,
        MAX(kind = 'BOOKING_REQUESTED') AS booking,
        MAX(kind = 'CLOSED' AND {j}(data, '$.queue') = 'OSNP') AS booked,
        MAX(kind = 'TRANSFERRED' AND {j}(data, '$.to') = 'AMU') AS to_amu
    FROM (SELECT case_id, kind, role, data, {_seconds("at")} AS ts FROM events
          WHERE seq >= :lo_seq AND seq < :hi_seq
            AND julianday(at) >= :jstart AND julianday(at) < :jscan)
    GROUP BY case_id
), f AS (
    SELECT e.*, d.data AS data, {branch} AS branch FROM e JOIN dossiers d USING (case_id)
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
    CASE WHEN branch = 'DENT' THEN COALESCE((SELECT {sql.dental_case("t")} FROM
        (SELECT {note_text} AS t, CAST(n.key AS INTEGER) AS k FROM json_each(data, '$.notes') n)
        WHERE t LIKE '{DENTAL_NOTE_PREFIX}%' ORDER BY k DESC LIMIT 1), '') ELSE '' END
        AS dental
FROM f"""


class SqliteStatsSource:
    """Statistics over one SQLite queue file (read-only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="stats-sqlite"
        )
        self._conn: sqlite3.Connection | None = None
        self._bucket: Callable[[float | None], str | None] = lambda _s: None

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
            conn.create_function("stats_bucket", 1, lambda s: self._bucket(s), deterministic=True)
            self._conn = conn
        return self._conn

    async def raw(self, period: Period, by: Granularity, limits: WaitLimits) -> RawStats:
        params: dict[str, Any] = {
            "jstart": _jd(period.start - _MARGIN),  # the exact bounds apply to seconds
            "jscan": _jd(period.end + SCAN_SLACK),
            "start": period.start.timestamp(),
            "end": period.end.timestamp(),
            "jend": _jd(period.end + _MARGIN),
        }
        params.update({f"p{i}": limits.limit(f"P{i}") for i in range(4)})
        zone = period.zone

        def bucket(seconds: float | None) -> str | None:
            if seconds is None:
                return None
            return bucket_of(datetime.fromtimestamp(round(seconds, 3), UTC), by, zone)

        def read(conn: sqlite3.Connection) -> RawStats:
            self._bucket = bucket
            params["lo_seq"] = _seq_at(conn, period.start - sql.CLOCK_SLACK)
            params["hi_seq"] = _seq_at(conn, period.end + SCAN_SLACK + sql.CLOCK_SLACK)
            conn.execute("BEGIN")
            try:
                conn.execute("DROP TABLE IF EXISTS temp.stats_facts")
                conn.execute(_facts_sql(), params)
                out = RawStats(
                    counts=[tuple(r) for r in conn.execute(sql.COUNTS)],
                    ages=[tuple(r) for r in conn.execute(sql.AGES)],
                    departements=[tuple(r) for r in conn.execute(sql.DEPARTEMENTS)],
                    snp=[tuple(r) for r in conn.execute(sql.SNP)],
                    dental=[tuple(r) for r in conn.execute(sql.DENTAL)],
                    delays=[tuple(r) for r in conn.execute(sql.DELAYS, params)],
                    load=[
                        (r[0], r[1], r[2], sql.LOAD_KINDS[r[3]], r[4])
                        for r in conn.execute(
                            f"""SELECT stats_bucket({_seconds("at")}), role, operator, kind,
                                count(*) FROM events
                            WHERE seq >= :lo_seq AND seq < :hi_seq
                              AND julianday(at) >= :jstart AND julianday(at) < :jend
                              AND {_seconds("at")} >= :start AND {_seconds("at")} < :end
                              AND kind IN ('ENQUEUED', 'CLAIMED', 'DECIDED', 'CLOSED')
                              AND json_extract(data, '$.renewed') IS NULL
                            GROUP BY 1, 2, 3, 4""",
                            params,
                        )
                    ],
                )
                conn.execute("DROP TABLE temp.stats_facts")
            finally:
                conn.execute("ROLLBACK")
            return out

        return await self._run(read)

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
    if "unable to open" in text:
        return "Impossible d'ouvrir le fichier des files (dossier inaccessible)."
    return f"Lecture du fichier des files impossible ({exc.__class__.__name__})."
