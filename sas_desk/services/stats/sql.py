"""The statistics queries both sources run (``:name`` parameters; the
PostgreSQL source rewrites them to ``%(name)s``).

Step 1 (dialect-specific, in each source) fills a temporary table
``stats_facts``: one row per dossier first put in a queue during the period,
with its bucket, branch, priority, motive, age and commune as typed, the
times (epoch seconds) of reception, transmission, first claim and first
decision, and the facts the outcome rules read.  Step 2 (here, portable)
groups that table: only counts and delay histograms come back.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime, timedelta

from sas_desk.models.stats import DENTAL_NOTE_LABELS, DENTAL_NOTE_PREFIX, DentalOrientation

# Events are appended in time order, give or take clocks and late replays:
# the seq range of a period is found by bisection on the primary key (a few
# dozen index lookups) and the scans stay within it, so a month's report does
# not read the whole year.  An event written more than CLOCK_SLACK out of
# order could be missed.
CLOCK_SLACK = timedelta(days=1)
# A dossier's facts are the events of its first SCAN_SLACK after transmission:
# a claim, a decision or a booking later than that is not the period's.  The
# window is the dossier's own, so that a report gives the same figures however
# its period is cut (a year, its months, the rollup's days).
SCAN_SLACK = timedelta(days=7)
RECENT_EVENTS = 50_000  # the board's last hour is within the last 50,000 events


def seq_search(
    lo: int, hi: int, target: datetime
) -> Generator[int, tuple[int, datetime] | None, int]:
    """The first seq in ``[lo, hi)`` whose event is at or after ``target``.

    A generator that yields the seq to probe and receives the first event
    (seq, at) at or after it (None when there is none), so that the SQLite
    (blocking) and PostgreSQL (async) sources share it."""
    while lo < hi:
        mid = (lo + hi) // 2
        found = yield mid
        if found is None or found[1] >= target:
            hi = mid
        else:
            lo = found[0] + 1
    return lo


FACT_COLUMNS = (
    "case_id, bucket, branch, priority, motive, age, insee, recv, tx, cl, de, "
    "liberal, booking, booked, to_amu, smur, emergency, decided, advice, dental, rdv"
)

# the national attribution → branch (as Branch.from_attribution) when a
# dossier (an imported one) has no branch of its own
BRANCH_CASE = """COALESCE(NULLIF({branch}, ''), CASE
    WHEN {attribution} LIKE 'DRM.SPE.DENT%' THEN 'DENT'
    WHEN {attribution} LIKE 'DRM.MRL%' THEN 'SNP'
    WHEN {attribution} LIKE 'DRM.MRU%' THEN 'AMU'
    ELSE '' END)"""


def dental_case(code: str, text: str) -> str:
    """SQL CASE: a dental orientation event's code (``details.code``, what
    the dental view sends), else the one its summary starts with (events
    recorded before the code was sent), else ''."""
    known = ", ".join(f"'{o.value}'" for o in DentalOrientation)
    whens = " ".join(
        f"WHEN {text} LIKE '{DENTAL_NOTE_PREFIX}{label}%' THEN '{o.value}'"
        for label, o in DENTAL_NOTE_LABELS
    )
    return f"CASE WHEN {code} IN ({known}) THEN {code} {whens} ELSE '' END"


#: the SAS goal for a consultation booked through the platform: within 48 h
#: of the call (the "appel → rendez-vous" delay's limit, whatever the priority)
APPOINTMENT_LIMIT_S = 48 * 3600


def within_case(delay: str, name: str | None = None) -> str:
    """1 / 0 whether ``delay`` is within the limit of the dossier's priority;
    NULL for NR (no limit).  With ``name`` (the delay's name, an SQL
    expression): the appointment delay is judged against 48 h instead."""
    if name is not None:
        return (
            f"CASE WHEN {name} = 'appel_rdv' THEN CASE WHEN {delay} <= {APPOINTMENT_LIMIT_S} "
            f"THEN 1 ELSE 0 END ELSE {within_case(delay)} END"
        )
    return (
        f"CASE priority WHEN 'P0' THEN CASE WHEN {delay} <= :p0 THEN 1 ELSE 0 END "
        f"WHEN 'P1' THEN CASE WHEN {delay} <= :p1 THEN 1 ELSE 0 END "
        f"WHEN 'P2' THEN CASE WHEN {delay} <= :p2 THEN 1 ELSE 0 END "
        f"WHEN 'P3' THEN CASE WHEN {delay} <= :p3 THEN 1 ELSE 0 END END"
    )


COUNTS = """SELECT bucket, branch, priority, substr(motive, 1, 3), liberal,
    CASE WHEN de IS NULL THEN 0 ELSE 1 END, count(*)
FROM stats_facts GROUP BY 1, 2, 3, 4, 5, 6"""
AGES = "SELECT bucket, age, count(*) FROM stats_facts GROUP BY 1, 2"
DEPARTEMENTS = "SELECT bucket, insee, count(*) FROM stats_facts GROUP BY 1, 2"
SNP = """SELECT bucket, to_amu, smur, emergency, booked, booking, decided, advice, count(*)
FROM stats_facts WHERE branch = 'SNP' GROUP BY 1, 2, 3, 4, 5, 6, 7, 8"""
DENTAL = """SELECT bucket, to_amu, dental, count(*)
FROM stats_facts WHERE branch = 'DENT' GROUP BY 1, 2, 3"""
_DELAY_PAIRS = (
    ("reception_transmission", "recv", "tx"),
    ("transmission_prise", "tx", "cl"),
    ("prise_decision", "cl", "de"),
    ("appel_rdv", "recv", "rdv"),
)


def _delays(within: bool) -> str:
    return " UNION ALL ".join(
        f"""SELECT bucket, '{name}', CAST(round({end} - {start}) AS INTEGER),
    {within_case(f"({end} - {start})", f"'{name}'") if within else "priority"}, count(*)
FROM stats_facts WHERE {start} IS NOT NULL AND {end} IS NOT NULL AND {end} >= {start}
GROUP BY 1, 2, 3, 4"""
        for name, start, end in _DELAY_PAIRS
    )


DELAYS = _delays(within=True)
#: the rollup keeps the priority (the limits are applied when a report is read)
DELAYS_BY_PRIORITY = _delays(within=False)
LOAD_KINDS = {"ENQUEUED": "transmis", "CLAIMED": "pris", "DECIDED": "decides", "CLOSED": "clotures"}
