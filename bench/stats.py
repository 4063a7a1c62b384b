"""The room's statistics on a year of a large centre.

    python bench/stats.py [--dossiers N] [--backend postgres|sqlite|both] [--dsn DSN]
                          [--keep-schema NAME]

Builds (seeded) a year (2025) of ``--dossiers`` dossiers (default 1,000,000:
a large centre) straight into the queue store's tables, as the backends
write them — ``dossiers`` (JSON) and the append-only ``events`` (4 to 6 per
dossier: put in a queue, claimed, decided, booking requested, closed), in
time order — on PostgreSQL (a schema of its own, dropped after) and/or
SQLite (a temporary file), then times:

* **yearly report**: ``StatsSource.raw`` + ``build_report`` by month over
  the year (goal ≤ 2 s on PostgreSQL);
* **monthly report**: by day over March;
* **board**: the last hour's events, today's SNP outcomes and
  ``board_figures`` over 300 items (goal ≤ 200 ms on PostgreSQL), and the
  board's paint on the GUI thread (goal ≤ 50 ms);
* **CSV export**: ``write_csv`` of an hourly report over 62 days (rows/s);
* **baseline**: the yearly figures by a plain ``GROUP BY`` over the raw
  events (PostgreSQL: one query with ``percentile_disc``; SQLite: a grouped
  count and the delays fetched for Python percentiles), side by side with
  the ratio; the dossier counts and the p50 of transmission → claim must
  agree (exit 1 otherwise).

``--keep-schema NAME`` (PostgreSQL): load into that schema only when it holds
no events yet, and keep it after the run; a later run with the same name
times the same data without loading it again (the rollup is cut back to
31/12 first, as the run leaves it rolled to January).

The machine may be shared: the figures are indicative.  Last line:
``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sas_desk.models.board import RecentEvent, board_figures
from sas_desk.models.queue import Claim, ItemStatus, QueueItem, QueueName, WaitLimits
from sas_desk.models.stats import Granularity, build_report, parse_period
from sas_desk.services.stats.export import write_csv

PARIS = ZoneInfo("Europe/Paris")
YEAR = 2025
LIMITS = WaitLimits()
COMMUNES = [f"69{n:03d}" for n in range(1, 300)]
MOTIVES = ["M01.01", "M01.03", "M02.01", "M02.05", "M03.01", "M03.14", "M03.30", "M04.01"]
OPERATORS = {
    "ARM": [f"arm.{i}" for i in range(25)],
    "MRU": [f"dr.mru{i}" for i in range(12)],
    "MRL": [f"dr.mrl{i}" for i in range(20)],
    "DENT": [f"dr.dent{i}" for i in range(4)],
    "OSNP": [f"osnp.{i}" for i in range(6)],
}
HOURLY = [2, 1, 1, 1, 1, 1, 2, 4, 6, 7, 7, 7, 6, 6, 6, 6, 6, 7, 8, 8, 7, 5, 4, 3]


def day_counts(total: int) -> list[int]:
    """Dossiers per day: weekends 1.4 times a weekday."""
    days = (date(YEAR + 1, 1, 1) - date(YEAR, 1, 1)).days
    weights = [
        1.4 if (date(YEAR, 1, 1) + timedelta(d)).weekday() >= 5 else 1.0 for d in range(days)
    ]
    scale = total / sum(weights)
    counts = [int(w * scale) for w in weights]
    for i in range(total - sum(counts)):
        counts[i % days] += 1
    return counts


def generate(
    total: int, seed: int = 17
) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """Per day: (dossier rows, event rows in time order).  Dossier row:
    (case_id, json, updated_at); event row: (case_id, at, kind, role,
    operator, workstation, data json)."""
    rng = random.Random(seed)
    n = 0
    for d, count in enumerate(day_counts(total)):
        day = date(YEAR, 1, 1) + timedelta(days=d)
        dossiers: list[tuple[Any, ...]] = []
        events: list[tuple[Any, ...]] = []
        for _ in range(count):
            n += 1
            hour = rng.choices(range(24), HOURLY)[0]
            start = datetime(day.year, day.month, day.day, hour, tzinfo=PARIS) + timedelta(
                seconds=rng.randrange(3600)
            )
            branch = rng.choices(("AMU", "SNP", "DENT"), (45, 45, 10))[0]
            priority = rng.choices(("P0", "P1", "P2", "P3", "NR"), (2, 10, 70, 15, 3))[0]
            if branch != "AMU" and priority in ("P0", "P1"):
                priority = "P2"
            case_id = f"fr.health.samu690.DRFR1569A{n:012d}"
            received = start - timedelta(seconds=int(rng.expovariate(1 / 90)) + 10)
            tx = start
            claim = tx + timedelta(
                seconds=int(rng.expovariate(1 / (240 if priority != "P0" else 30)))
            )
            decide = claim + timedelta(seconds=int(rng.expovariate(1 / 180)) + 20)
            close = decide + timedelta(seconds=int(rng.expovariate(1 / 120)) + 5)
            arm = rng.choice(OPERATORS["ARM"])
            role = {"AMU": "MRU", "SNP": "MRL", "DENT": "DENT"}[branch]
            reg = rng.choice(OPERATORS[role])
            ws = f"POSTE-{reg.upper()}"
            decisions: list[dict[str, Any]] = []
            row_events = [
                (
                    case_id,
                    tx,
                    "ENQUEUED",
                    "ARM",
                    arm,
                    f"POSTE-{arm.upper()}",
                    {
                        "queue": branch if branch != "DENT" else "DENT",
                        "priority": priority,
                        "reopened": False,
                    },
                ),
            ]
            decided = rng.random() < 0.93
            row_events.append((case_id, claim, "CLAIMED", role, reg, ws, {"queue": branch}))
            queue = branch
            if decided:
                kind = rng.choices(("CONSEIL", "PMT", "ORIENT", "INTER"), (55, 10, 25, 10))[0]
                decision: dict[str, Any] = {
                    "decision_type": kind,
                    "resource_type": "",
                    "orientation_type": "",
                }
                if kind == "ORIENT":
                    decision["orientation_type"] = rng.choice(("URGENCES", "CABINET", "CABINET"))
                if kind == "INTER":
                    decision["resource_type"] = rng.choice(("SMUR.ADULT", "TSU", "SIS.VSAV"))
                decisions.append(decision)
                row_events.append(
                    (
                        case_id,
                        decide,
                        "DECIDED",
                        role,
                        reg,
                        ws,
                        {"care_level": "R4", "decisions": [kind]},
                    )
                )
                if branch == "SNP" and decision["orientation_type"] == "CABINET":
                    row_events.append(
                        (
                            case_id,
                            decide + timedelta(seconds=30),
                            "BOOKING_REQUESTED",
                            role,
                            reg,
                            ws,
                            {"from": "SNP", "to": "OSNP"},
                        )
                    )
                    queue = "OSNP"
                    osnp = rng.choice(OPERATORS["OSNP"])
                    close = decide + timedelta(seconds=int(rng.expovariate(1 / 900)) + 60)
                    role, reg, ws = "OSNP", osnp, f"POSTE-{osnp.upper()}"
                    slot = close + timedelta(hours=rng.choice((2, 5, 18, 26, 40, 60)))
                    booking = {"orientation": "booking", "text": "RDV", "start": slot.isoformat()}
                    row_events.append(
                        (case_id, close - timedelta(seconds=5), "ORIENTED", role, reg, ws, booking)
                    )
                if branch == "DENT" and decided:
                    code = rng.choice(("CONSEIL", "DENTISTE_JOUR", "DENTISTE_GARDE", "MEDECIN"))
                    oriented = {"orientation": "dental", "text": "Orientation", "code": code}
                    row_events.append(
                        (
                            case_id,
                            decide + timedelta(seconds=5),
                            "DENTAL_ORIENTED",
                            role,
                            reg,
                            ws,
                            oriented,
                        )
                    )
            row_events.append(
                (case_id, close, "CLOSED", role, reg, ws, {"queue": queue, "reason": ""})
            )
            doc = {
                "case_id": case_id,
                "created_at": received.isoformat(),
                "owner": "fr.health.samu690",
                "sender_case_id": case_id[-21:],
                "priority": priority,
                "branch": branch,
                "perimeter": "AMU" if branch == "AMU" else "SNP",
                "attribution": {"AMU": "DRM.MRU.MU", "SNP": "DRM.MRL.MG", "DENT": "DRM.SPE.DENT"}[
                    branch
                ],
                "motive_code": rng.choice(MOTIVES),
                "patient": {
                    "age": f"P{rng.randrange(0, 98)}Y",
                    "sex": rng.choice("MF"),
                    "last_name": "Anonyme",
                    "first_name": "",
                    "birth_date": "",
                },
                "caller": {"callback": "+33600000000", "name": ""},
                "location": {
                    "insee": rng.choice(COMMUNES),
                    "city": "Commune",
                    "address": "1 rue de la République",
                },
                "status": "CLOSED",
                "transmitted_at": tx.isoformat(),
                "decisions": [
                    {"at": decide.isoformat(), "role": "MEDECIN", **x} for x in decisions
                ],
                "notes": [],
                "care_level": "R4" if decided else "",
            }
            dossiers.append((case_id, json.dumps(doc), close))
            events.extend(row_events)
        events.sort(key=lambda e: e[1])
        yield dossiers, events


# ---------------------------------------------------------------------------- loading


def load_postgres(dsn: str, schema: str, total: int) -> tuple[float, int]:
    import psycopg

    from sas_desk.services.queues.postgres import upgrade

    asyncio.run(upgrade(dsn, schema))
    t0 = time.perf_counter()
    n_events = 0
    with psycopg.connect(dsn, options=f"-c search_path={schema}") as conn:
        with conn.cursor() as cur:
            for dossiers, events in generate(total):
                with cur.copy("COPY dossiers (case_id, data, updated_at) FROM STDIN") as copy:
                    for row in dossiers:
                        copy.write_row(row)
                with cur.copy(
                    "COPY events (case_id, at, kind, role, operator, workstation, data) FROM STDIN"
                ) as copy:
                    for e in events:
                        copy.write_row((*e[:6], json.dumps(e[6])))
                n_events += len(events)
        conn.commit()
        conn.execute("ANALYZE dossiers")
        conn.execute("ANALYZE events")
        conn.commit()
    return time.perf_counter() - t0, n_events


def loaded_events(dsn: str, schema: str) -> int:
    """The events already in ``schema`` (0 when it has none, or no table)."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        found = conn.execute("SELECT to_regclass(%s)", (f"{schema}.events",)).fetchone()
        if found is None or found[0] is None:
            return 0
        row = conn.execute(f"SELECT count(*) FROM {schema}.events").fetchone()
        return int(row[0]) if row else 0


def trim_rollup(dsn: str, schema: str, now: datetime) -> None:
    """A kept schema's rollup as the first refresh at ``now`` leaves it: the
    days closed at ``now`` only, no month summed (a previous run rolled on
    to January)."""
    import psycopg

    from sas_desk.services.stats import rollup

    until = rollup.closed_before(now)
    with psycopg.connect(dsn, options=f"-c search_path={schema}") as conn:
        if conn.execute("SELECT to_regclass('stats_roll_state')").fetchone() == (None,):
            return
        for table in rollup.TABLES:
            conn.execute(f"DELETE FROM {table} WHERE hour >= %s", (until,))
        for table in ("stats_month_state", *(t for t, _ in rollup.MONTH_TABLES.values())):
            conn.execute(f"DELETE FROM {table}")
        conn.execute("UPDATE stats_roll_state SET hi = least(hi, %s)", (until,))
        conn.commit()


def load_sqlite(path: Path, total: int) -> tuple[float, int]:
    from sas_desk.services.queues.sqlite import SqliteBackend

    async def create() -> None:
        backend = SqliteBackend(path, now=lambda: datetime.now(UTC))
        await backend.open()
        await backend.close()

    asyncio.run(create())
    t0 = time.perf_counter()
    n_events = 0
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    for dossiers, events in generate(total):
        conn.executemany(
            "INSERT INTO dossiers(case_id, data, updated_at) VALUES (?, ?, ?)",
            [(c, d, u.isoformat()) for c, d, u in dossiers],
        )
        conn.executemany(
            "INSERT INTO events(case_id, at, kind, role, operator, workstation, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(*e[:1], e[1].isoformat(), *e[2:6], json.dumps(e[6])) for e in events],
        )
        n_events += len(events)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()
    return time.perf_counter() - t0, n_events


# ---------------------------------------------------------------------------- timing


def items(now: datetime, n: int = 300) -> list[QueueItem]:
    rng = random.Random(5)
    out = []
    for i in range(n):
        claim = None
        if i % 3 == 0:
            claim = Claim(
                f"POSTE-{i % 20}",
                f"dr.{i % 20}",
                "MRL",
                now - timedelta(minutes=5),
                now + timedelta(minutes=1),
            )
        out.append(
            QueueItem(
                case_id=f"x.{i}",
                queue=list(QueueName)[i % 5],
                status=ItemStatus.CLAIMED if claim else ItemStatus.WAITING,
                priority=("P0", "P1", "P2", "P3", "NR")[i % 5],
                waiting_since=now - timedelta(seconds=rng.randrange(3000)),
                claim=claim,
                motive_label="Fièvre",
            )
        )
    return out


async def timed(fn: Any, runs: int = 3) -> tuple[float, Any]:
    best, value = float("inf"), None
    for _ in range(runs):
        t0 = time.perf_counter()
        value = await fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


async def measure(
    source: Any, unrolled: Any, kind: str, baseline: Any, runs: int = 2, before: Any = None
) -> dict[str, Any]:
    """``before``: the same store read without the open days' table (the
    open days from their events: the previous way), timed side by side."""
    out: dict[str, Any] = {}
    year = parse_period(f"{YEAR}-01-01", f"{YEAR}-12-31", Granularity.MONTH)
    now = datetime(YEAR, 12, 31, 15, 30, tzinfo=PARIS)  # the last afternoon of the year
    t0 = time.perf_counter()
    lo, hi = await source.refresh(now, tz="Europe/Paris", limits=LIMITS)
    out["rollup_build_s"] = round(time.perf_counter() - t0, 1)
    out["rolled_days"] = (hi - lo) // 86400
    print(f"{kind}: rollup of {out['rolled_days']} closed days built in {out['rollup_build_s']} s")

    def yearly_of(src: Any) -> Any:
        async def yearly() -> Any:
            raw = await src.raw(year, Granularity.MONTH, LIMITS)
            return build_report(raw, year, Granularity.MONTH)

        return yearly

    out["yearly_s"], report = await timed(yearly_of(source), runs)
    if before is not None:
        out["yearly_open_from_events_s"], old_report = await timed(yearly_of(before), runs)
        out["yearly_identical_to_before"] = old_report.rows == report.rows
        print(
            f"{kind}: yearly report on 31/12 {out['yearly_s']:.3f} s with the open days' "
            f"table, {out['yearly_open_from_events_s']:.3f} s with the open days from their "
            f"events; identical: {out['yearly_identical_to_before']}"
        )
    out["yearly_events_s"], plain_report = await timed(yearly_of(unrolled), 1)
    out["yearly_identical"] = (
        report.rows == plain_report.rows and report.columns == plain_report.columns
    )
    print(
        f"{kind}: yearly report {out['yearly_s']:.3f} s with the rollup, "
        f"{out['yearly_events_s']:.3f} s from the events; identical: {out['yearly_identical']}"
    )
    march = parse_period(f"{YEAR}-03-01", f"{YEAR}-03-31", Granularity.DAY)

    async def monthly() -> Any:
        return build_report(
            await source.raw(march, Granularity.DAY, LIMITS), march, Granularity.DAY
        )

    out["monthly_s"], _ = await timed(monthly, runs)
    today = parse_period(f"{now:%Y-%m-%d}", f"{now:%Y-%m-%d}", Granularity.DAY)
    current = items(now)

    def board_of(src: Any) -> Any:
        async def board() -> Any:
            events = await src.activity(now - timedelta(hours=1), now)
            raw = await src.raw(today, Granularity.DAY, LIMITS)
            build_report(raw, today, Granularity.DAY)
            recent = [
                RecentEvent(e.at, e.kind, e.role, e.operator, e.workstation, e.case_id)
                for e in events
            ]
            return board_figures(current, recent, now, LIMITS), len(events)

        return board

    out["board_s"], (figures, n_recent) = await timed(board_of(source), 5)
    if before is not None:
        out["board_open_from_events_s"], _ = await timed(board_of(before), 5)
        print(
            f"{kind}: board {out['board_s']:.3f} s with the open days' table, "
            f"{out['board_open_from_events_s']:.3f} s from the events"
        )
    out["board_events_last_hour"] = n_recent
    hourly = parse_period(f"{YEAR}-03-01", f"{YEAR}-05-01", Granularity.HOUR)
    rep = build_report(await source.raw(hourly, Granularity.HOUR, LIMITS), hourly, Granularity.HOUR)
    buf = io.StringIO()
    t0 = time.perf_counter()
    rows = write_csv(rep, buf)
    elapsed = time.perf_counter() - t0
    out["csv_rows"] = rows
    out["csv_rows_per_s"] = round(rows / elapsed) if elapsed else None
    out["csv_columns"] = len(rep.columns)
    # the year once closed (the ARS report, made in January): all of it rolled
    t0 = time.perf_counter()
    await source.refresh(datetime(YEAR + 1, 1, 20, tzinfo=PARIS), tz="Europe/Paris", limits=LIMITS)
    out["rollup_rest_s"] = round(time.perf_counter() - t0, 1)
    out["yearly_closed_s"], closed_report = await timed(yearly_of(source), runs)
    out["yearly_closed_identical"] = closed_report.rows == plain_report.rows
    print(
        f"{kind}: the closed year's report {out['yearly_closed_s']:.3f} s "
        f"(identical: {out['yearly_closed_identical']})"
    )
    out["baseline_s"], base = await timed(baseline, runs)
    ours = {r["periode"]: r for r in report.rows}
    mismatch = [
        m
        for m, (n, p50) in base.items()
        if ours[m]["dossiers"] != n or ours[m]["delai_transmission_prise_p50_s"] != p50
    ]
    out["agree"] = (
        not mismatch
        and out["yearly_identical"]
        and out["yearly_closed_identical"]
        and out.get("yearly_identical_to_before", True)
    )
    out["dossiers_year"] = sum(int(r["dossiers"] or 0) for r in report.rows)
    out["p50_tx_claim_march"] = ours[f"{YEAR}-03"]["delai_transmission_prise_p50_s"]
    out["figures"] = figures
    return out


def paint_ms(figures: Any) -> float:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from sas_desk.ui.board import Board

    app = QApplication.instance() or QApplication([])
    board = Board(None, None, LIMITS, lambda: figures.at)
    board.resize(1366, 768)
    board.show()
    board.paint(figures)
    app.processEvents()
    best = float("inf")
    for _ in range(10):
        t0 = time.perf_counter()
        board.paint(figures)
        board.repaint()
        best = min(best, time.perf_counter() - t0)
    board.stop()
    board.close()
    return best * 1000


def pg_baseline(dsn: str, schema: str) -> Any:
    import psycopg

    async def run() -> dict[str, tuple[int, int]]:
        async with await psycopg.AsyncConnection.connect(
            dsn, options=f"-c search_path={schema}"
        ) as conn:
            cur = await conn.execute(
                """WITH f AS (
                    SELECT case_id, min(at) FILTER (WHERE kind = 'ENQUEUED') AS tx,
                           min(at) FILTER (WHERE kind = 'CLAIMED') AS cl
                    FROM events GROUP BY case_id)
                SELECT to_char(tx AT TIME ZONE 'Europe/Paris', 'YYYY-MM'), count(*),
                       percentile_disc(0.5) WITHIN GROUP (ORDER BY round(extract(epoch FROM cl - tx)))
                FROM f JOIN dossiers USING (case_id)
                WHERE tx >= %s AND tx < %s GROUP BY 1 ORDER BY 1""",
                (datetime(YEAR, 1, 1, tzinfo=PARIS), datetime(YEAR + 1, 1, 1, tzinfo=PARIS)),
            )
            return {m: (int(n), int(p)) for m, n, p in await cur.fetchall()}

    return run


def sqlite_baseline(path: Path) -> Any:
    async def run() -> dict[str, tuple[int, int]]:
        def read() -> dict[str, tuple[int, int]]:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            rows = conn.execute(
                """SELECT case_id, min(CASE WHEN kind = 'ENQUEUED' THEN at END),
                          min(CASE WHEN kind = 'CLAIMED' THEN at END)
                   FROM events GROUP BY case_id"""
            ).fetchall()
            conn.close()
            per: dict[str, list[int]] = {}
            for _, tx, cl in rows:
                t = datetime.fromisoformat(tx)
                key = f"{t.astimezone(PARIS):%Y-%m}"
                if not key.startswith(str(YEAR)):
                    continue
                per.setdefault(key, []).append(
                    round((datetime.fromisoformat(cl) - t).total_seconds())
                )
            out = {}
            for k, v in sorted(per.items()):
                v.sort()
                out[k] = (len(v), v[max(0, -(-len(v) // 2) - 1)])
            return out

        return await asyncio.to_thread(read)

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dossiers", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=("postgres", "sqlite", "both"), default="both")
    parser.add_argument("--runs", type=int, default=2, help="best of N for each timing")
    parser.add_argument(
        "--keep-schema",
        default="",
        help="PostgreSQL: load into this schema unless it has events, and keep it",
    )
    parser.add_argument(
        "--dsn",
        default=os.environ.get("SAS_DESK_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    args = parser.parse_args()
    result: dict[str, Any] = {"dossiers": args.dossiers, "indicative": "shared machine"}
    ok = True
    figures = None
    if args.backend in ("postgres", "both"):
        import psycopg

        from sas_desk.services.stats.postgres import PostgresStatsSource

        schema = args.keep_schema or f"bench_stats_{uuid.uuid4().hex[:8]}"
        try:
            n_events = loaded_events(args.dsn, schema) if args.keep_schema else 0
            if n_events:
                load_s = 0.0
                trim_rollup(args.dsn, schema, datetime(YEAR, 12, 31, 15, 30, tzinfo=PARIS))
                print(f"postgres: schema {schema} kept: {n_events:,} events, not loaded again")
            else:
                load_s, n_events = load_postgres(args.dsn, schema, args.dossiers)
                print(
                    f"postgres: {args.dossiers:,} dossiers, {n_events:,} events loaded "
                    f"in {load_s:.1f} s"
                )
            source = PostgresStatsSource(args.dsn, schema)
            unrolled = PostgresStatsSource(args.dsn, schema, use_rollup=False)
            before = PostgresStatsSource(args.dsn, schema, open_days=False)
            res = asyncio.run(
                measure(
                    source,
                    unrolled,
                    "postgres",
                    pg_baseline(args.dsn, schema),
                    args.runs,
                    before,
                )
            )
        finally:
            if not args.keep_schema:
                with psycopg.connect(args.dsn, autocommit=True) as conn:
                    conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        figures = res.pop("figures")
        res.update(load_s=round(load_s, 1), events=n_events)
        result["postgres"] = res
        ok &= res["agree"]
    if args.backend in ("sqlite", "both"):
        from sas_desk.services.stats.sqlite import SqliteStatsSource

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "queues.sqlite"
            load_s, n_events = load_sqlite(path, args.dossiers)
            size = path.stat().st_size
            print(
                f"sqlite: {args.dossiers:,} dossiers, {n_events:,} events loaded in {load_s:.1f} s"
                f" ({size / 1e6:.0f} MB)"
            )
            source = SqliteStatsSource(path)
            unrolled = SqliteStatsSource(path, use_rollup=False)

            async def run_sqlite() -> dict[str, Any]:
                try:
                    return await measure(
                        source, unrolled, "sqlite", sqlite_baseline(path), args.runs
                    )
                finally:
                    await source.close()
                    await unrolled.close()

            res = asyncio.run(run_sqlite())
        figures = res.pop("figures")
        res.update(load_s=round(load_s, 1), events=n_events, file_mb=round(size / 1e6))
        result["sqlite"] = res
        ok &= res["agree"]
    if figures is not None:
        result["board_paint_ms"] = round(paint_ms(figures), 1)
    print()
    print(f"{'':24}{'postgres':>12}{'sqlite':>12}   goal")
    for key, label, goal in (
        ("yearly_s", "yearly report, 31/12 (s)", "≤ 2 s (PG)"),
        ("yearly_open_from_events_s", "  open days from events", "(before)"),
        ("yearly_closed_s", "  the year closed (s)", "≤ 2 s (PG)"),
        ("yearly_events_s", "  from events (s)", "(no rollup)"),
        ("rollup_build_s", "rollup build (s)", "(once; then nightly)"),
        ("monthly_s", "monthly report (s)", ""),
        ("board_s", "board refresh (s)", "≤ 0.2 s (PG)"),
        ("board_open_from_events_s", "  today from events (s)", "(before)"),
        ("baseline_s", "plain GROUP BY (s)", ""),
        ("csv_rows_per_s", "CSV rows/s", "≥ 100,000"),
    ):
        cells = [result.get(b, {}).get(key) for b in ("postgres", "sqlite")]
        text = [f"{c:>12.3f}" if isinstance(c, float) else f"{c!s:>12}" for c in cells]
        print(f"{label:24}{text[0]}{text[1]}   {goal}")
    for b in ("postgres", "sqlite"):
        if b in result:
            r = result[b]
            r["yearly_vs_plain_ratio"] = round(r["baseline_s"] / r["yearly_s"], 2)
            r["yearly_events_vs_rollup_ratio"] = round(r["yearly_events_s"] / r["yearly_s"], 1)
            r["yearly_events_vs_closed_ratio"] = round(
                r["yearly_events_s"] / r["yearly_closed_s"], 1
            )
            print(
                f"{b}: from events / with rollup (yearly) = "
                f"{r['yearly_events_vs_rollup_ratio']}x on 31/12, "
                f"{r['yearly_events_vs_closed_ratio']}x the year closed; "
                f"plain GROUP BY / ours (yearly) = {r['yearly_vs_plain_ratio']}x; "
                f"figures agree: {r['agree']}; board read {r['board_events_last_hour']} events"
            )
    if "board_paint_ms" in result:
        print(f"board paint on the GUI thread: {result['board_paint_ms']} ms (goal ≤ 50 ms)")
    print("RESULT " + json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
