"""The pure side of the statistics: periods, buckets, percentiles, outcome
rules and the privacy rules of exports."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sas_desk.models.stats import (
    SMALL_CELL,
    SUPPRESSED,
    DentalOrientation,
    Granularity,
    SnpOutcome,
    StatsError,
    age_band,
    bucket_of,
    buckets,
    chapter_of,
    dental_orientation,
    departement_of,
    parse_period,
    percentile,
    snp_outcome,
    suppress_row,
)


def test_a_period_is_whole_local_days() -> None:
    period = parse_period("2026-03-14", "2026-03-15")
    assert period.days == 2
    assert period.start.isoformat() == "2026-03-14T00:00:00+01:00"
    assert period.end.isoformat() == "2026-03-16T00:00:00+01:00"


@pytest.mark.parametrize(
    ("first", "last", "by", "message"),
    [
        ("2026-3-14", "2026-03-14", Granularity.DAY, "format attendu AAAA-MM-JJ"),
        ("2026-02-29", "2026-03-14", Granularity.DAY, "inexistante"),
        ("2026-03-15", "2026-03-14", Granularity.DAY, "précède le début"),
        ("2024-01-01", "2026-01-01", Granularity.MONTH, "Période trop longue"),
        ("2026-01-01", "2026-06-30", Granularity.HOUR, "détail par heure"),
    ],
)
def test_bad_periods_are_refused_in_french(
    first: str, last: str, by: Granularity, message: str
) -> None:
    with pytest.raises(StatsError) as caught:
        parse_period(first, last, by)
    assert message in caught.value.message_fr


def test_hour_buckets_follow_the_clock_changes() -> None:
    spring = buckets(parse_period("2026-03-29", "2026-03-29", Granularity.HOUR), Granularity.HOUR)
    assert len(spring) == 23 and "2026-03-29T02" not in spring
    autumn = buckets(parse_period("2026-10-25", "2026-10-25", Granularity.HOUR), Granularity.HOUR)
    assert len(autumn) == 24 and autumn.count("2026-10-25T02") == 1
    assert buckets(parse_period("2026-01-30", "2026-03-02"), Granularity.MONTH) == [
        "2026-01",
        "2026-02",
        "2026-03",
    ]


def test_buckets_are_in_local_time() -> None:
    zone = parse_period("2026-07-01", "2026-07-01").zone
    late = datetime(2026, 6, 30, 22, 30, tzinfo=UTC)  # 00:30 in Paris (UTC+2)
    assert bucket_of(late, Granularity.DAY, zone) == "2026-07-01"
    assert bucket_of(late, Granularity.HOUR, zone) == "2026-07-01T00"
    assert bucket_of(late, Granularity.MONTH, zone) == "2026-07"


def test_percentiles_are_nearest_rank() -> None:
    values = {10: 1, 30: 2, 60: 3, 90: 1, 120: 3, 180: 1}  # 11 values
    assert percentile(values, 50) == 60  # 6th
    assert percentile(values, 90) == 120  # 10th
    assert percentile({5: 1}, 90) == 5
    assert percentile({}, 50) is None
    assert percentile({1: 1, 2: 1}, 50) == 1 and percentile({1: 1, 2: 1}, 51) == 2


@pytest.mark.parametrize(
    ("age", "band"),
    [
        ("P3M", "0_4"),
        ("P2W", "0_4"),
        ("P4Y", "0_4"),
        ("P5Y", "5_17"),
        ("P18Y", "18_44"),
        ("P64Y", "45_64"),
        ("P65Y", "65_74"),
        ("P102Y", "75_plus"),
        ("", "inconnu"),
        ("67 ans", "inconnu"),
    ],
)
def test_age_bands(age: str, band: str) -> None:
    assert age_band(age) == band


@pytest.mark.parametrize(
    ("insee", "dep"),
    [("69123", "69"), ("2A004", "2A"), ("97411", "974"), ("", "inconnu"), ("6912", "inconnu")],
)
def test_departement_rather_than_commune(insee: str, dep: str) -> None:
    assert departement_of(insee) == dep


def test_motive_chapter() -> None:
    assert chapter_of("M01.02") == "M01" and chapter_of("M03") == "M03"
    assert chapter_of("") == "M07" and chapter_of("X") == "M07"


def test_snp_outcome_takes_the_first_that_applies() -> None:
    base = {
        "to_amu": False,
        "smur": False,
        "emergency": False,
        "booked": False,
        "booking_requested": False,
        "decisions": 0,
        "advice_only": False,
    }
    assert snp_outcome(**base) is SnpOutcome.SANS_DECISION
    assert snp_outcome(**{**base, "decisions": 1, "advice_only": True}) is SnpOutcome.CONSEIL
    assert snp_outcome(**{**base, "decisions": 2}) is SnpOutcome.AUTRE
    assert (
        snp_outcome(**{**base, "decisions": 1, "booking_requested": True}) is SnpOutcome.RDV_DEMANDE
    )
    assert snp_outcome(**{**base, "booking_requested": True, "booked": True}) is SnpOutcome.RDV_PRIS
    assert snp_outcome(**{**base, "booked": True, "emergency": True}) is SnpOutcome.URGENCES
    assert snp_outcome(**{**base, "emergency": True, "smur": True}) is SnpOutcome.SMUR
    assert snp_outcome(**{**base, "smur": True, "to_amu": True}) is SnpOutcome.TRANSFERT_AMU


def test_dental_orientation() -> None:
    assert dental_orientation(False, "DENTISTE_GARDE") is DentalOrientation.DENTISTE_GARDE
    assert dental_orientation(True, "CONSEIL") is DentalOrientation.MEDECIN
    assert dental_orientation(False, "") is DentalOrientation.NON_RENSEIGNE


GROUPS = [("total", ("a", "b", "c", "d"))]


def test_a_lone_small_cell_takes_the_next_smallest_with_it() -> None:
    row = {"total": 60, "a": 3, "b": 12, "c": 20, "d": 25}
    out = suppress_row(row, GROUPS, {})
    assert out == {"total": 60, "a": SUPPRESSED, "b": SUPPRESSED, "c": 20, "d": 25}


def test_small_cells_adding_up_below_11_take_another_with_them() -> None:
    row = {"total": 50, "a": 2, "b": 3, "c": 20, "d": 25}
    out = suppress_row(row, GROUPS, {})
    assert [out[k] for k in "abcd"] == [SUPPRESSED, SUPPRESSED, SUPPRESSED, 25]


def test_zeros_stay_and_a_small_total_hides_its_parts() -> None:
    row = {"total": 7, "a": 7, "b": 0, "c": 0, "d": 0}
    out = suppress_row(row, GROUPS, {})
    assert out == {"total": SUPPRESSED, "a": SUPPRESSED, "b": 0, "c": 0, "d": 0}


def test_nothing_small_nothing_hidden() -> None:
    row = {"total": 55, "a": 11, "b": 0, "c": 20, "d": 24}
    assert suppress_row(row, GROUPS, {}) == row


def test_figures_on_few_dossiers_are_hidden() -> None:
    row = {"n": 9, "p50": 120, "m": 40, "q": 80.0, "z": 0, "r": None}
    out = suppress_row(row, [], {"p50": "n", "q": "m", "r": "z"})
    assert out == {"n": SUPPRESSED, "p50": SUPPRESSED, "m": 40, "q": 80.0, "z": 0, "r": None}


def test_seq_search_finds_the_first_event_of_a_time_with_gaps_in_seq() -> None:
    from datetime import timedelta

    from sas_desk.services.stats.sql import seq_search

    t0 = datetime(2026, 3, 14, tzinfo=UTC)
    events = {s: t0 + timedelta(minutes=s) for s in (1, 2, 5, 9, 10, 40, 41)}  # gaps

    def first_from(seq: int) -> tuple[int, datetime] | None:
        found = [s for s in sorted(events) if s >= seq]
        return (found[0], events[found[0]]) if found else None

    def run(target: datetime) -> int:
        search = seq_search(1, 42, target)
        try:
            probe = next(search)
            while True:
                probe = search.send(first_from(probe))
        except StopIteration as done:
            return int(done.value)

    assert run(t0 + timedelta(minutes=6)) == 6  # the next event is seq 9
    assert first_from(run(t0 + timedelta(minutes=6))) == (9, events[9])
    assert run(t0) == 1
    assert first_from(run(t0 + timedelta(minutes=41))) == (41, events[41])
    assert first_from(run(t0 + timedelta(hours=2))) is None


def test_every_indicator_shows_in_a_theme_other_than_all() -> None:
    """The screen's themes cover the report: no column is reachable only
    through « Tous les indicateurs », each theme starts with the period."""
    from sas_desk.models.stats import THEMES, Granularity, RawStats, build_report, theme

    period = parse_period("2026-03-14", "2026-03-15")
    report = build_report(RawStats(calls=[]), period, Granularity.DAY)
    assert "tel_presentes" in report.columns  # the telephony's columns too
    covered: set[str] = set()
    for t in THEMES[1:]:
        columns = t.columns(report.columns)
        assert columns[0] == "periode" and len(columns) > 1, t.key
        covered.update(columns)
    assert set(report.columns) - covered == set()
    assert THEMES[0].columns(report.columns) == report.columns
    assert theme("inconnu") is THEMES[0] and theme("snp").key == "snp"


def _rule_as_written(
    row: dict[str, Any], groups: list[tuple[str, tuple[str, ...]]], denominators: dict[str, str]
) -> dict[str, Any]:
    """The small-cell rule read plainly: passes over every group until one
    changes nothing (what ``Suppression`` computes with positions and skips)."""

    def small(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and 0 < v < SMALL_CELL

    out = dict(row)
    hidden = {c for c, v in row.items() if small(v)}
    changed = True
    while changed:
        changed = False
        for total, parts in groups:
            if total in hidden:
                new = {p for p in parts if row.get(p) not in (0, None)} - hidden
            else:
                mine = [p for p in parts if p in hidden]
                new = set()
                if len(mine) == 1 or (
                    mine and sum(int(row.get(p) or 0) for p in mine) < SMALL_CELL
                ):
                    rest = sorted(
                        (p for p in parts if p not in hidden and row.get(p) not in (0, None)),
                        key=lambda p: int(row.get(p) or 0),
                    )
                    new = set(rest[:1])
            if new:
                hidden |= new
                changed = True
    for column in hidden:
        out[column] = SUPPRESSED
    for column, base in denominators.items():
        n = row.get(base)
        if not isinstance(n, int) or n < SMALL_CELL:
            out[column] = SUPPRESSED if (isinstance(n, int) and n > 0) else None
    return out


CELL_VALUES = st.one_of(
    st.integers(0, 14), st.integers(0, 400), st.none(), st.floats(0, 100, allow_nan=False)
)


@settings(max_examples=400, deadline=None)
@given(
    values=st.lists(CELL_VALUES, min_size=14, max_size=14),
    missing=st.sets(st.sampled_from("abcdefghijklmn"), max_size=3),
)
def test_the_compiled_rule_suppresses_as_the_rule_reads(
    values: list[Any], missing: set[str]
) -> None:
    """Nested groups (a total that is a part of another), names the row
    lacks, denominators on counts and on missing columns."""
    names = "abcdefghijklmn"
    row = {c: v for c, v in zip(names, values, strict=True) if c not in missing}
    groups = [
        ("a", ("b", "c", "d", "e")),
        ("b", ("f", "g")),
        ("a", ("h", "i", "j")),
        ("e", ("k", "l", "z")),
        ("y", ("m", "n")),
    ]
    denominators = {"m": "a", "n": "j", "x": "b", "w": "z"}
    assert suppress_row(row, groups, denominators) == _rule_as_written(row, groups, denominators)
