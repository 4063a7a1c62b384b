"""The rollup gives the very figures the events give: a random room of ten
weeks (across the change to summer time; late claims, a decision more than
seven days after transmission, reopened dossiers, dental orientations,
bookings — some with a start that is no date —, transfers), rolled up, then random reports — period, granularity, time
zone, waiting limits — read with and without the rollup (Hypothesis), on
SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sas_desk.models.queue import WaitLimits
from sas_desk.models.stats import (
    Granularity,
    build_report,
    dossier_facts,
    event_facts,
    parse_period,
)
from sas_desk.services.stats import rollup
from tests.conftest import unavailable
from tests.helpers.room_server import run_async
from tests.integration.queues.conftest import PG_DSN

FIRST = date(2026, 2, 2)
DAYS = 70
NOW = datetime(2026, 4, 13, 12, tzinfo=UTC)  # closed: up to 4 April (UTC)
ZONES = ("Europe/Paris", "America/Martinique", "Indian/Reunion", "UTC", "Asia/Kolkata")


def room(seed: int = 11, per_day: int = 8) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(dossier rows (case_id, json, updated_at), event rows in time order)."""
    rng = random.Random(seed)
    dossiers, events = [], []
    n = 0
    for d in range(DAYS):
        for _ in range(per_day):
            n += 1
            case_id = f"fr.health.samu690.DRFR1569A{n:012d}"
            tx = datetime(2026, 2, 2, tzinfo=UTC) + timedelta(days=d, seconds=rng.randrange(86400))
            branch = rng.choice(("AMU", "SNP", "DENT"))
            role = {"AMU": "MRU", "SNP": rng.choice(("MRL", "MRU")), "DENT": "DENT"}[branch]
            priority = rng.choice(("P0", "P1", "P2", "P3", "NR"))
            ev = [(tx, "ENQUEUED", "ARM", {"queue": branch, "reopened": False})]
            t = tx
            decisions = []
            if rng.random() < 0.85:
                t += timedelta(seconds=rng.choice((5, 30, 600, 3600, 9 * 86400)))
                ev.append((t, "CLAIMED", role, {"queue": branch}))
                if rng.random() < 0.8:
                    t += timedelta(seconds=rng.choice((20, 300, 8 * 86400)))
                    kind = rng.choice(("CONSEIL", "PMT", "ORIENT", "INTER"))
                    decisions.append(
                        {
                            "decision_type": kind,
                            "resource_type": "SMUR.ADULT" if kind == "INTER" else "",
                            "orientation_type": rng.choice(("URGENCES", "CABINET")),
                        }
                    )
                    ev.append((t, "DECIDED", role, {"decisions": [kind]}))
            if branch == "SNP" and rng.random() < 0.4:
                t += timedelta(seconds=60)
                ev.append((t, "BOOKING_REQUESTED", role, {"to": "OSNP"}))
                for _ in range(rng.choice((0, 1, 1, 2))):  # bookings: the last one counts
                    t += timedelta(seconds=rng.choice((60, 8 * 86400)))
                    slot = t + timedelta(hours=rng.choice((3, 30, 47, 49, 100)))
                    start = rng.choice((slot.isoformat(), "2026-02-30T10:00:00+01:00", "x"))
                    ev.append((t, "ORIENTED", "OSNP", {"start": start, "text": "RDV"}))
                if rng.random() < 0.7:
                    t += timedelta(seconds=rng.choice((60, 10 * 86400)))
                    ev.append((t, "CLOSED", "OSNP", {"queue": "OSNP"}))
            if branch == "DENT" and rng.random() < 0.7:
                for _ in range(rng.randrange(1, 3)):
                    t += timedelta(seconds=90)
                    code = rng.choice(("CONSEIL", "DENTISTE_JOUR", "DENTISTE_GARDE", ""))
                    text = "Orientation dentaire : Dentiste de garde" if not code else "résumé"
                    ev.append((t, "DENTAL_ORIENTED", "DENT", {"code": code, "text": text}))
            if branch != "AMU" and rng.random() < 0.15:
                t += timedelta(seconds=30)
                ev.append((t, "TRANSFERRED", role, {"to": "AMU"}))
            if rng.random() < 0.1:  # closed then sent again
                t += timedelta(seconds=rng.choice((600, 2 * 86400)))
                ev.append((t, "ENQUEUED", "ARM", {"queue": branch, "reopened": True}))
            doc = {
                "case_id": case_id,
                "created_at": (tx - timedelta(seconds=rng.randrange(0, 400))).isoformat(),
                "priority": priority,
                "branch": branch,
                "motive_code": rng.choice(("M01.01", "M03.02", "", "X")),
                "patient": {"age": rng.choice(("P3M", "P15Y", "P40Y", "P70Y", "P90Y", ""))},
                "location": {"insee": rng.choice(("69123", "2A004", "97411", "01053", ""))},
                "decisions": decisions,
                "notes": [],
            }
            dossiers.append((case_id, json.dumps(doc), tx.isoformat()))
            for at, kind, who, data in ev:
                events.append((case_id, at, kind, who, f"op.{who.lower()}", "POSTE-1", data))
    events.sort(key=lambda e: e[1])
    return dossiers, events


@dataclass
class Stores:
    rolled: Any
    plain: Any


def _sqlite(tmp: Path) -> Iterator[Stores]:
    from sas_desk.services.queues.sqlite import SqliteBackend
    from sas_desk.services.stats.sqlite import SqliteStatsSource

    path = tmp / "queues.sqlite"

    async def create() -> None:
        backend = SqliteBackend(path, now=lambda: NOW)
        await backend.open()
        await backend.close()

    run_async(create())
    dossiers, events = room()
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("BEGIN")
    # the rows as the backend writes them: the record, and the statistics' clear part
    conn.executemany(
        "INSERT INTO dossiers(case_id, data, facts, updated_at) VALUES (?, ?, ?, ?)",
        [(d[0], d[1], json.dumps(dossier_facts(json.loads(d[1]))), d[2]) for d in dossiers],
    )
    conn.executemany(
        "INSERT INTO events(case_id, at, kind, role, operator, workstation, data, facts) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (e[0], e[1].isoformat(), *e[2:6], json.dumps(e[6]), json.dumps(event_facts(e[2], e[6])))
            for e in events
        ],
    )
    conn.execute("COMMIT")
    conn.close()
    stores = Stores(SqliteStatsSource(path), SqliteStatsSource(path, use_rollup=False))
    yield stores
    run_async(stores.rolled.close())
    run_async(stores.plain.close())


def _postgres() -> Generator[Stores, None, None]:
    import psycopg

    from sas_desk.services.queues.postgres import upgrade
    from sas_desk.services.stats.postgres import PostgresStatsSource

    try:
        psycopg.connect(PG_DSN, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        unavailable(f"PostgreSQL unreachable (SAS_DESK_TEST_PG_DSN): {exc}")
    schema = f"roll_{uuid4().hex[:12]}"
    run_async(upgrade(PG_DSN, schema))
    dossiers, events = room()
    try:
        with psycopg.connect(PG_DSN, options=f"-c search_path={schema}") as conn:
            with conn.cursor() as cur:
                with cur.copy("COPY dossiers (case_id, data, updated_at) FROM STDIN") as copy:
                    for row in dossiers:
                        copy.write_row(row)
                with cur.copy(
                    "COPY events (case_id, at, kind, role, operator, workstation, data) FROM STDIN"
                ) as copy:
                    for e in events:
                        copy.write_row((*e[:6], json.dumps(e[6])))
            conn.commit()
        yield Stores(
            PostgresStatsSource(PG_DSN, schema),
            PostgresStatsSource(PG_DSN, schema, use_rollup=False),
        )
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"], scope="module")
def stores(request, tmp_path_factory) -> Iterator[Stores]:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        yield from _sqlite(Path(tmp_path_factory.mktemp("roll")))
    else:
        yield from _postgres()


ROOM_TZ, ROOM_LIMITS = "Europe/Paris", WaitLimits(60, 120, 600, 2400)  # lim = 60 below


def refresh(stores: Stores, now: datetime = NOW) -> tuple[int, int]:
    """The rollup, its months summed in Paris under the limits of lim = 60."""
    result: tuple[int, int] = run_async(stores.rolled.refresh(now, tz=ROOM_TZ, limits=ROOM_LIMITS))
    return result


def test_refresh_rolls_the_closed_days_and_is_idempotent(stores: Stores) -> None:
    lo, hi = refresh(stores)
    first_event = datetime(2026, 2, 2, tzinfo=UTC)
    assert lo == int((first_event - timedelta(days=1)).timestamp())
    # closed: 8 days (7 of the dossiers' window, 1 of clocks) before NOW's day
    assert hi == int(datetime(2026, 4, 5, tzinfo=UTC).timestamp())
    assert refresh(stores) == (lo, hi)
    later = NOW + timedelta(days=2)
    assert refresh(stores, later)[1] == hi + 2 * rollup.DAY


def _compare(stores: Stores, first: date, days: int, by: Granularity, tz: str, lim: int) -> None:
    if by is Granularity.HOUR:
        days = min(days, 10)
    period = parse_period(f"{first}", f"{first + timedelta(days=days - 1)}", by, tz)
    limits = WaitLimits(lim, 2 * lim, 10 * lim, 40 * lim)

    async def both() -> tuple[Any, Any]:
        return (
            await stores.rolled.raw(period, by, limits),
            await stores.plain.raw(period, by, limits),
        )

    rolled, plain = run_async(both())
    a, b = build_report(rolled, period, by), build_report(plain, period, by)
    assert a.columns == b.columns
    assert a.rows == b.rows
    assert sorted(_load_sum(a.load)) == sorted(_load_sum(b.load))


def _load_sum(load: list[tuple[str, str, str, str, int]]) -> list[tuple[str, str, str, str, int]]:
    """Load rows summed by key (the rolled part and the open days may both
    give one row per key)."""
    total: dict[tuple[str, str, str, str], int] = {}
    for *key, n in load:
        total[tuple(key)] = total.get(tuple(key), 0) + n  # type: ignore[index]
    return [(*k, n) for k, n in total.items()]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    start=st.integers(-3, DAYS + 2),
    days=st.integers(1, 50),
    by=st.sampled_from(list(Granularity)),
    tz=st.sampled_from(ZONES),
    lim=st.sampled_from((10, 60, 300)),
)
def test_rolled_reports_equal_the_reports_from_the_events(
    stores: Stores, start: int, days: int, by: Granularity, tz: str, lim: int
) -> None:
    refresh(stores)
    _compare(stores, FIRST + timedelta(days=start), days, by, tz, lim)


def test_a_rolled_report_reads_the_rollup(stores: Stores) -> None:
    """Not the events: a rolled hour's count changed by hand shows."""
    refresh(stores)
    period = parse_period("2026-03-10", "2026-03-10", Granularity.DAY, "UTC")
    before = build_report(
        run_async(stores.rolled.raw(period, Granularity.DAY, WaitLimits())),
        period,
        Granularity.DAY,
    ).rows[0]["dossiers"]
    assert (
        before
        == build_report(
            run_async(stores.plain.raw(period, Granularity.DAY, WaitLimits())),
            period,
            Granularity.DAY,
        ).rows[0]["dossiers"]
    )
    hour = int(datetime(2026, 3, 10, 12, tzinfo=UTC).timestamp())
    _execute(
        stores,
        f"INSERT INTO stats_roll_counts VALUES ({hour}, 'AMU', 'P2', 'M01', 0, 0, 1000)",
    )
    try:
        after = build_report(
            run_async(stores.rolled.raw(period, Granularity.DAY, WaitLimits())),
            period,
            Granularity.DAY,
        ).rows[0]["dossiers"]
        assert after == int(before or 0) + 1000
    finally:
        _execute(stores, f"DELETE FROM stats_roll_counts WHERE hour = {hour} AND n = 1000")


def _execute(stores: Stores, statement: str) -> None:
    source = stores.rolled
    if hasattr(source, "path"):
        conn = sqlite3.connect(str(source.path), isolation_level=None)
        conn.execute(statement)
        conn.close()
    else:
        import psycopg

        with psycopg.connect(
            source.dsn, autocommit=True, options=f"-c search_path={source.schema}"
        ) as conn:
            conn.execute(statement)


def test_no_rollup_table_reads_the_events(tmp_path: Path) -> None:
    stores = next(_sqlite(tmp_path))
    period = parse_period("2026-03-01", "2026-03-31", Granularity.MONTH, "UTC")
    got = run_async(stores.rolled.raw(period, Granularity.MONTH, WaitLimits()))
    assert sum(n for *_, n in got.counts) == 31 * 8
    run_async(stores.rolled.close())


@pytest.mark.parametrize("tz", ZONES)
@pytest.mark.parametrize(
    ("first", "last"),
    [("2026-02-01", "2026-03-31"), ("2026-03-01", "2026-04-30"), ("2026-01-15", "2026-03-10")],
)
def test_whole_months_read_from_the_month_table_equal_the_events(
    stores: Stores, tz: str, first: str, last: str
) -> None:
    """By month: whole months summed in the room's zone under its limits are
    read as they are (other zones and limits go through the hours)."""
    refresh(stores)
    for lim in (60, 300):
        _compare(
            stores,
            date.fromisoformat(first),
            (date.fromisoformat(last) - date.fromisoformat(first)).days + 1,
            Granularity.MONTH,
            tz,
            lim,
        )


def test_a_whole_month_reads_the_month_table(stores: Stores) -> None:
    refresh(stores)
    period = parse_period("2026-03-01", "2026-03-31", Granularity.MONTH, ROOM_TZ)

    def dossiers(limits: WaitLimits) -> int:
        rep = build_report(
            run_async(stores.rolled.raw(period, Granularity.MONTH, limits)),
            period,
            Granularity.MONTH,
        )
        return int(rep.rows[0]["dossiers"] or 0)

    before = dossiers(ROOM_LIMITS)
    _execute(
        stores, "INSERT INTO stats_month_counts VALUES ('2026-03', 'AMU', 'P2', 'M01', 0, 0, 500)"
    )
    try:
        assert dossiers(ROOM_LIMITS) == before + 500
        assert dossiers(WaitLimits()) == before  # other limits: through the hours
    finally:
        _execute(stores, "DELETE FROM stats_month_counts WHERE n = 500")


def test_the_server_side_bisection_finds_the_same_seq_as_the_python_one() -> None:
    """PostgreSQL runs sql.seq_search as one recursive statement (SQLite runs
    the Python one: no round trips)."""
    import psycopg

    from sas_desk.services.stats import sql
    from sas_desk.services.stats.postgres import _seq_at

    async def both(target: datetime) -> tuple[int, int]:
        async with await psycopg.AsyncConnection.connect(
            source.dsn, options=f"-c search_path={source.schema}"
        ) as conn:
            cur = await conn.execute("SELECT min(seq), max(seq) + 1 FROM events")
            lo, hi = await cur.fetchone()  # type: ignore[misc]
            search = sql.seq_search(lo, hi, target)
            probe = next(search)
            try:
                while True:
                    cur = await conn.execute(
                        "SELECT seq, at FROM events WHERE seq >= %s ORDER BY seq LIMIT 1", (probe,)
                    )
                    found = await cur.fetchone()
                    probe = search.send((found[0], found[1]) if found else None)
            except StopIteration as done:
                expected = int(done.value)
            return expected, await _seq_at(conn, target)

    room_ = _postgres()
    source = next(room_).rolled
    targets = (
        datetime(2025, 1, 1, tzinfo=UTC),
        datetime(2026, 2, 2, tzinfo=UTC),
        datetime(2026, 3, 14, 10, 3, tzinfo=UTC),
        datetime(2026, 4, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    try:
        for target in targets:
            expected, got = run_async(both(target))
            assert got == expected, target
    finally:
        room_.close()


def _report(source: Any, first: str, last: str) -> Any:
    period = parse_period(first, last, Granularity.DAY, "UTC")
    return build_report(
        run_async(source.raw(period, Granularity.DAY, WaitLimits())), period, Granularity.DAY
    )


def test_the_open_days_follow_the_events_written_since(monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL keeps one row of facts per dossier of the open days
    (``stats_open_facts``), computed again for the dossiers with new events
    only: reports stay equal to the events' as dossiers arrive, are claimed
    and decided — also when an event commits after a newer one (its
    transaction still running when the table was brought up to date)."""
    import psycopg

    from sas_desk.services.stats import postgres

    monkeypatch.setattr(postgres, "OPEN_LAG", 0)  # only the mark's rule catches the late one
    room_ = _postgres()
    stores = next(room_)
    source = stores.rolled
    options = f"-c search_path={source.schema}"
    try:
        refresh(stores)
        with psycopg.connect(source.dsn, autocommit=True, options=options) as conn:
            (last,) = conn.execute("SELECT max(at) FROM events").fetchone()  # type: ignore[misc]
            (open_rows,) = conn.execute("SELECT count(*) FROM stats_open_facts").fetchone()  # type: ignore[misc]
            # the load of the hours a day older than the last event: summed once
            (load_rows,) = conn.execute("SELECT count(*) FROM stats_open_load").fetchone()  # type: ignore[misc]
        assert load_rows > 0
        # the dossiers first put in a queue on or after 5 April (closed before)
        assert open_rows == sum(1 for _, _, updated in room()[0] if updated >= "2026-04-05")
        first, end = "2026-04-01", f"{(last + timedelta(days=3)).date()}"

        def same() -> int:
            a, b = _report(source, first, end), _report(stores.plain, first, end)
            assert a.rows == b.rows
            assert sorted(_load_sum(a.load)) == sorted(_load_sum(b.load))
            return sum(int(r["dossiers"] or 0) for r in a.rows)

        before = same()

        def write(conn: Any, case: str, minutes: int, kind: str, decided: bool = False) -> None:
            at = last + timedelta(minutes=minutes)
            doc = {
                "case_id": case,
                "created_at": (at - timedelta(minutes=minutes + 2)).isoformat(),
                "priority": "P1",
                "branch": "SNP",
                "decisions": [{"decision_type": "CONSEIL"}] if decided else [],
            }
            conn.execute(
                "INSERT INTO dossiers (case_id, data, updated_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (case_id) DO UPDATE SET data = EXCLUDED.data",
                (case, json.dumps(doc), at),
            )
            conn.execute(
                "INSERT INTO events (case_id, at, kind, role, operator, workstation, data) "
                "VALUES (%s, %s, %s, 'MRL', 'dr.x', 'POSTE-X', %s)",
                (case, at, kind, json.dumps({"queue": "SNP", "reopened": False})),
            )

        with psycopg.connect(source.dsn, autocommit=True, options=options) as conn:
            write(conn, "new.1", 1, "ENQUEUED")
            assert same() == before + 1
            write(conn, "new.1", 3, "CLAIMED")
            write(conn, "new.1", 5, "DECIDED", decided=True)
            assert same() == before + 1
            with psycopg.connect(source.dsn, options=options) as late:
                write(late, "new.2", 7, "ENQUEUED")  # its seq drawn, not committed yet
                write(conn, "new.3", 8, "ENQUEUED")
                assert same() == before + 2  # new.3; new.2 not seen by anyone yet
                late.commit()
            assert same() == before + 3
    finally:
        room_.close()


def test_the_month_in_progress_is_read_summed_so_far() -> None:
    """PostgreSQL: the month the rolled range ends in is summed up to its
    end (key "YYYY-MM/hi"): a report by month reads it as one row, and the
    open days after it; equal to the events, and the stale sum is dropped
    once the rollup goes further."""
    import psycopg

    room_ = _postgres()
    stores = next(room_)
    source = stores.rolled
    try:
        hi = refresh(stores)[1]
        key = rollup.partial_key("2026-04", hi)
        with psycopg.connect(
            source.dsn, autocommit=True, options=f"-c search_path={source.schema}"
        ) as conn:
            months = [r[0] for r in conn.execute("SELECT month FROM stats_month_state")]
            assert key in months
            _compare(stores, date(2026, 3, 1), 61, Granularity.MONTH, ROOM_TZ, 60)
            conn.execute(
                "INSERT INTO stats_month_counts VALUES (%s, 'AMU', 'P2', 'M01', 0, 0, 500)",
                (key,),
            )
            period = parse_period("2026-04-01", "2026-04-30", Granularity.MONTH, ROOM_TZ)
            rep = build_report(
                run_async(source.raw(period, Granularity.MONTH, ROOM_LIMITS)),
                period,
                Granularity.MONTH,
            )
            plain = build_report(
                run_async(stores.plain.raw(period, Granularity.MONTH, ROOM_LIMITS)),
                period,
                Granularity.MONTH,
            )
            assert rep.rows[0]["dossiers"] == int(plain.rows[0]["dossiers"] or 0) + 500
            refresh(stores, NOW + timedelta(days=2))
            months = [r[0] for r in conn.execute("SELECT month FROM stats_month_state")]
            assert key not in months
            assert rollup.partial_key("2026-04", hi + 2 * rollup.DAY) in months
            _compare(stores, date(2026, 4, 1), 30, Granularity.MONTH, ROOM_TZ, 60)
    finally:
        room_.close()


def test_the_last_hours_events_are_read_from_their_first_seq() -> None:
    """PostgreSQL's activity (the board's last hour) starts at the event a
    day before, found by bisection: the same events as the log's, in order."""
    room_ = _postgres()
    source = next(room_).rolled
    try:
        events = room()[1]
        for since in (datetime(2026, 3, 14, 10, tzinfo=UTC), datetime(2026, 4, 12, 23, tzinfo=UTC)):
            until = since + timedelta(hours=3)
            got = run_async(source.activity(since, until))
            want = [(e[0], e[2], e[1]) for e in events if since <= e[1] < until]
            assert want
            assert [(g.case_id, str(g.kind), g.at) for g in got] == want
    finally:
        room_.close()
