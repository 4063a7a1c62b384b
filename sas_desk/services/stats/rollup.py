"""The statistics rollup: per-hour aggregates of the closed days, so that a
report over months reads a few hundred thousand small rows instead of
millions of events.

What it holds: for each UTC hour of a *closed* day (a day whose dossiers can
no longer change their figures: every event of its dossiers' own window,
``SCAN_SLACK`` after transmission, is older than ``CLOCK_SLACK``), the very
grouped counts a source computes from the events
(:class:`~sas_desk.models.stats.RawStats`), keyed by the hour instead of
the report's bucket: ages already in bands, communes already in
départements, delays by priority (the waiting limits are applied when a
report is read, so a change of limits needs no rebuild).

How it is read: the hours of the period inside the rolled range are mapped
to the report's buckets (a small temporary table ``stats_hours`` built in
Python with :func:`~sas_desk.models.stats.bucket_of`: one rule for the
buckets, whatever the time zone), the rollup is summed by bucket, and the
rest of the period (the first hours before the rolled range, the recent,
still open days) is computed from the events as before; the parts are
added.  A time zone whose offset is not a whole number of hours cannot be
mapped from UTC hours: its reports are computed from the events.

Who writes it: ``refresh`` of a source (``sas-desk stats-rollup``, nightly,
or the room server); the report path only reads.  The dossier's fields are
read when its day is rolled: a field edited after that (weeks later) is not
seen by the rollup (documented in ``docs/statistics.md``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sas_desk.models.queue import WaitLimits
from sas_desk.models.stats import (
    Granularity,
    RawStats,
    age_band,
    bucket_of,
    departement_of,
)
from sas_desk.services.stats import sql

VERSION = 4  # bump when a fact's definition changes: the rollup is rebuilt
# (4: the SNP facts' ``booked`` is 2 for an appointment agreed "en sus")
HOUR = 3600
DAY = 86400
CHUNK_DAYS = 31  # days rolled per facts query and per transaction

#: table → its columns after ``hour`` (``n`` last)
TABLES: dict[str, tuple[str, ...]] = {
    "stats_roll_counts": ("branch", "priority", "chapter", "liberal", "decided", "n"),
    "stats_roll_ages": ("band", "n"),
    "stats_roll_deps": ("dep", "n"),
    "stats_roll_snp": (
        "to_amu",
        "smur",
        "emergency",
        "booked",
        "booking",
        "decided",
        "advice",
        "n",
    ),
    "stats_roll_dental": ("to_amu", "code", "n"),
    "stats_roll_delays": ("name", "priority", "seconds", "n"),
    "stats_roll_load": ("role", "operator", "what", "n"),
}
_TEXT = {"branch", "priority", "chapter", "band", "dep", "code", "name", "role", "operator", "what"}

#: RawStats list → (table, columns after ``month``): each full local month of
#: the rolled range, summed once in the room's time zone under its waiting
#: limits (what the hours give for that month, kept): a yearly report reads
#: twelve months of rows, not 8,760 hours of them
MONTH_TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "counts": ("stats_month_counts", TABLES["stats_roll_counts"]),
    "ages": ("stats_month_ages", ("band", "n")),
    "departements": ("stats_month_deps", ("dep", "n")),
    "snp": ("stats_month_snp", TABLES["stats_roll_snp"]),
    "dental": ("stats_month_dental", TABLES["stats_roll_dental"]),
    "delays": ("stats_month_delays", ("name", "seconds", "within", "n")),
    "load": ("stats_month_load", TABLES["stats_roll_load"]),
}


def ddl() -> list[str]:
    """The rollup's tables (portable SQL: SQLite and PostgreSQL)."""
    out = [
        "CREATE TABLE IF NOT EXISTS stats_roll_state (id INTEGER PRIMARY KEY, "
        "version INTEGER NOT NULL, lo BIGINT NOT NULL, hi BIGINT NOT NULL, built_at TEXT NOT NULL)"
    ]
    for table, columns in TABLES.items():
        cols = ", ".join(
            f"{c} TEXT NOT NULL" if c in _TEXT else f"{c} BIGINT NOT NULL" for c in columns
        )
        out.append(f"CREATE TABLE IF NOT EXISTS {table} (hour BIGINT NOT NULL, {cols})")
        out.append(f"CREATE INDEX IF NOT EXISTS {table}_hour ON {table} (hour)")
    out.append(
        "CREATE TABLE IF NOT EXISTS stats_month_state (month TEXT PRIMARY KEY, "
        "tz TEXT NOT NULL, limits TEXT NOT NULL)"
    )
    for table, columns in MONTH_TABLES.values():
        cols = ", ".join(
            f"{c} TEXT NOT NULL"
            if c in _TEXT
            else f"{c} BIGINT"
            if c == "within"
            else f"{c} BIGINT NOT NULL"
            for c in columns
        )
        out.append(f"CREATE TABLE IF NOT EXISTS {table} (month TEXT NOT NULL, {cols})")
        out.append(f"CREATE INDEX IF NOT EXISTS {table}_month ON {table} (month)")
    return out


ALL_TABLES = (*TABLES, "stats_month_state", *(t for t, _ in MONTH_TABLES.values()))


def limits_key(limits: WaitLimits) -> str:
    return ",".join(str(limits.limit(f"P{i}")) for i in range(4))


def fill_month_sql(name: str) -> str:
    """INSERT … SELECT: a month's rows summed from the hours (``stats_hours``
    mapping the month's hours to its key), as a report reads them."""
    table, columns = MONTH_TABLES[name]
    return f"INSERT INTO {table} (month, {', '.join(columns)}) {READS[name]}"


def months_inside(lo: int, hi: int, zone: ZoneInfo) -> list[Part]:
    """The local months of ``zone`` wholly inside [lo, hi) (epoch seconds),
    each a rolled part with its hours (bucket: the month's key)."""
    out: list[Part] = []
    at = datetime.fromtimestamp(lo, UTC).astimezone(zone)
    month = date(at.year, at.month, 1)
    while True:
        start = datetime.combine(month, time(0), zone)
        following = date(month.year + month.month // 12, month.month % 12 + 1, 1)
        end = datetime.combine(following, time(0), zone)
        if end.timestamp() > hi:
            return out
        if start.timestamp() >= lo:
            key = f"{month:%Y-%m}"
            first, last = int(start.timestamp()), int(end.timestamp())
            if first % HOUR == 0 and last % HOUR == 0:
                hours = tuple((h, key) for h in range(first, last, HOUR))
                out.append(Part(start, end, True, hours))
        month = following


def month_so_far(lo: int, hi: int, zone: ZoneInfo) -> Part | None:
    """The local month of ``zone`` that the rolled range [lo, hi) ends in,
    from its first hour to ``hi`` (a rolled part keyed :func:`partial_key`):
    summed like a whole month, a report by month on one of its days reads
    it as one row instead of its hours.  None when ``hi`` starts a month, the
    month starts before ``lo``, or its hours are not UTC hours."""
    at = datetime.fromtimestamp(hi, UTC).astimezone(zone)
    start = datetime.combine(date(at.year, at.month, 1), time(0), zone)
    first = int(start.timestamp())
    if first >= hi or first < lo or first % HOUR or hi % HOUR:
        return None
    key = partial_key(f"{at:%Y-%m}", hi)
    hours = tuple((h, key) for h in range(first, hi, HOUR))
    return Part(start, datetime.fromtimestamp(hi, UTC), True, hours)


def partial_key(month: str, hi: int) -> str:
    """The month table's key of ``month`` summed up to ``hi`` only (reads
    give the month's key: its first 7 characters)."""
    return f"{month}/{hi}"


def insert_sql(table: str, placeholder: str) -> str:
    columns = ("hour", *TABLES[table])
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"VALUES ({', '.join([placeholder] * len(columns))})"
    )


# ---------------------------------------------------------------------------- writing


def hour_of(key: str) -> int:
    """A UTC hour bucket ``2025-03-01T14`` → its epoch seconds."""
    return int(datetime.strptime(key, "%Y-%m-%dT%H").replace(tzinfo=UTC).timestamp())


def day_floor(at: datetime) -> int:
    """Epoch seconds of the UTC midnight at or before ``at``."""
    seconds = int(at.timestamp())
    return seconds - seconds % DAY


def closed_before(now: datetime) -> int:
    """The end (UTC midnight, epoch seconds) of the last closed day: every
    event of its dossiers' windows is written, give or take the clocks."""
    return day_floor(now - sql.SCAN_SLACK - sql.CLOCK_SLACK)


def chunks(lo: int, hi: int) -> Iterable[tuple[datetime, datetime]]:
    """[lo, hi) in runs of at most CHUNK_DAYS whole UTC days."""
    start = lo
    while start < hi:
        end = min(hi, start + CHUNK_DAYS * DAY)
        yield datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
        start = end


def rows_of(raw: RawStats) -> dict[str, list[tuple[object, ...]]]:
    """The rollup's rows of facts grouped by UTC hour (``raw``: a source's
    facts with ``by=HOUR`` in UTC, delays by priority)."""
    keys: dict[str, int] = {}

    def h(key: str) -> int:
        if key not in keys:
            keys[key] = hour_of(key)
        return keys[key]

    ages: Counter[tuple[int, str]] = Counter()
    for key, iso_age, n in raw.ages:
        ages[(h(key), age_band(str(iso_age)))] += int(n)
    deps: Counter[tuple[int, str]] = Counter()
    for key, insee, n in raw.departements:
        deps[(h(key), departement_of(str(insee)))] += int(n)
    return {
        "stats_roll_counts": [
            (h(k), b, p, c, int(lib), int(dec), int(n)) for k, b, p, c, lib, dec, n in raw.counts
        ],
        "stats_roll_ages": [(*key, n) for key, n in ages.items()],
        "stats_roll_deps": [(*key, n) for key, n in deps.items()],
        "stats_roll_snp": [(h(r[0]), *(int(x) for x in r[1:])) for r in raw.snp],
        "stats_roll_dental": [(h(k), int(t), str(c), int(n)) for k, t, c, n in raw.dental],
        # delays come as (bucket, name, seconds, priority, n)
        "stats_roll_delays": [
            (h(k), name, str(prio), int(s), int(n)) for k, name, s, prio, n in raw.delays
        ],
        "stats_roll_load": [(h(k), r, o, w, int(n)) for k, r, o, w, n in raw.load],
    }


# ---------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Part:
    """A slice of a report's period: computed from the events (``rolled``
    False) or read from the rollup: its hours → buckets map, and the whole
    months read from the month table (``months``, their hours left out)."""

    start: datetime
    end: datetime
    rolled: bool
    hours: tuple[tuple[int, str], ...] = ()
    months: tuple[str, ...] = ()


def split(
    start: datetime,
    end: datetime,
    by: Granularity,
    zone: ZoneInfo,
    state: tuple[int, int] | None,
    months: frozenset[str] = frozenset(),
) -> list[Part]:
    """The parts of ``[start, end)``: the rolled hours (``state``: the
    rollup's [lo, hi) in epoch seconds) and, around them, what the events
    must give.  By month, the ``months`` already summed (in this zone, under
    these limits) and wholly inside the period are read as they are."""
    whole = [Part(start, end, False)]
    if state is None:
        return whole
    s, e = start.timestamp(), end.timestamp()
    lo = max(state[0], -(-int(s) // HOUR) * HOUR)
    hi = min(state[1], int(e) // HOUR * HOUR)
    if hi <= lo:
        return whole
    skip: dict[int, int] = {}  # first hour of a whole month read as it is → its end
    whole_months: list[str] = []
    if by is Granularity.MONTH and months:
        for month in months_inside(lo, hi, zone):
            key = month.hours[0][1]
            if key in months and month.start >= start and month.end <= end:
                whole_months.append(key)
                skip[int(month.start.timestamp())] = int(month.end.timestamp())
        # the month the rolled range ends in, summed so far: its rest is open
        so_far = month_so_far(state[0], state[1], zone) if hi == state[1] else None
        if so_far is not None and so_far.start >= max(start, datetime.fromtimestamp(lo, UTC)):
            key = so_far.hours[0][1]
            following = so_far.start.date().replace(day=28) + timedelta(days=4)
            month_end = datetime.combine(following.replace(day=1), time(0), zone)
            if key in months and month_end <= end:
                whole_months.append(key)
                skip[int(so_far.start.timestamp())] = hi
    hours: list[tuple[int, str]] = []
    hour = lo
    while hour < hi:
        if hour in skip:
            hour = skip[hour]
            continue
        at = datetime.fromtimestamp(hour, UTC)
        offset = at.astimezone(zone).utcoffset() or timedelta(0)
        if offset.total_seconds() % HOUR:
            return whole  # buckets that do not start on a UTC hour
        hours.append((hour, bucket_of(at, by, zone)))
        hour += HOUR
    parts = []
    if s < lo:
        parts.append(Part(start, datetime.fromtimestamp(lo, UTC), False))
    parts.append(
        Part(
            datetime.fromtimestamp(lo, UTC),
            datetime.fromtimestamp(hi, UTC),
            True,
            tuple(hours),
            tuple(whole_months),
        )
    )
    if hi < e:
        parts.append(Part(datetime.fromtimestamp(hi, UTC), end, False))
    return parts


def hours_of(
    start: datetime, end: datetime, by: Granularity, zone: ZoneInfo
) -> list[tuple[int, str]]:
    """The whole UTC hours of [start, end) with their report bucket, when
    those are the buckets' hours too (``start`` on an hour, every hour's
    offset in ``zone`` whole hours); [] otherwise."""
    first = int(start.timestamp())
    if first % HOUR:
        return []
    out: list[tuple[int, str]] = []
    for hour in range(first, int(end.timestamp()) // HOUR * HOUR, HOUR):
        at = datetime.fromtimestamp(hour, UTC)
        offset = at.astimezone(zone).utcoffset() or timedelta(0)
        if offset.total_seconds() % HOUR:
            return []
        out.append((hour, bucket_of(at, by, zone)))
    return out


def _sum(table: str, columns: str, group: int, where: str = "") -> str:
    return (
        f"SELECT h.bucket, {columns}, CAST(sum(r.n) AS BIGINT) FROM {table} r "
        f"JOIN stats_hours h ON h.hour = r.hour WHERE r.hour >= :rs AND r.hour < :re {where}"
        f"GROUP BY {', '.join(str(i) for i in range(1, group + 1))}"
    )


READ_COUNTS = _sum("stats_roll_counts", "r.branch, r.priority, r.chapter, r.liberal, r.decided", 6)
READ_AGES = _sum("stats_roll_ages", "r.band", 2)
READ_DEPS = _sum("stats_roll_deps", "r.dep", 2)
READ_SNP = _sum(
    "stats_roll_snp",
    "r.to_amu, r.smur, r.emergency, r.booked, r.booking, r.decided, r.advice",
    8,
)
READ_DENTAL = _sum("stats_roll_dental", "r.to_amu, r.code", 3)
READ_DELAYS = _sum(
    "stats_roll_delays", f"r.name, r.seconds, {sql.within_case('r.seconds', 'r.name')}", 4
)
READ_LOAD = _sum("stats_roll_load", "r.role, r.operator, r.what", 4)


READS = {
    "counts": READ_COUNTS,
    "ages": READ_AGES,
    "departements": READ_DEPS,
    "snp": READ_SNP,
    "dental": READ_DENTAL,
    "delays": READ_DELAYS,
    "load": READ_LOAD,
}


def read_months_sql(name: str, count: int, placeholder: str) -> str:
    table, columns = MONTH_TABLES[name]
    marks = ", ".join([placeholder] * count)
    # a month summed so far is keyed "YYYY-MM/hi": its bucket is the month's
    return f"SELECT substr(month, 1, 7), {', '.join(columns)} FROM {table} WHERE month IN ({marks})"


def extend(into: RawStats, part: RawStats) -> None:
    """Add a part's grouped counts (a report sums rows of the same key)."""
    into.counts.extend(part.counts)
    into.ages.extend(part.ages)
    into.departements.extend(part.departements)
    into.snp.extend(part.snp)
    into.dental.extend(part.dental)
    into.delays.extend(part.delays)
    into.load.extend(part.load)
