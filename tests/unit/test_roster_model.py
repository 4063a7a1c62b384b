"""Roster model: French public holidays, on-call days, overlaps, duplicates
and coverage gaps (pure functions)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from sas_desk.models.roster import (
    PARIS,
    RosterEntry,
    Sector,
    coverage_gaps,
    find_duplicates,
    find_overlaps,
    fold_name,
    french_holidays,
    is_on_call_day,
    on_call_days,
)


def entry(
    day: date, start: int, end: int, sector: str = "69-C", family: str = "Martin", **kw: object
) -> RosterEntry:
    s = datetime(day.year, day.month, day.day, start, tzinfo=PARIS)
    e = s + timedelta(hours=end - start)
    return RosterEntry(
        day=day,
        start=s,
        end=e,
        sector_code=sector,
        sector_name=sector,
        communes=("69123",),
        family=family,
        phone="+33465711234",
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("year", "easter_monday", "ascension", "whit_monday"),
    [
        (2024, date(2024, 4, 1), date(2024, 5, 9), date(2024, 5, 20)),
        (2026, date(2026, 4, 6), date(2026, 5, 14), date(2026, 5, 25)),
        (2027, date(2027, 3, 29), date(2027, 5, 6), date(2027, 5, 17)),
        (2038, date(2038, 4, 26), date(2038, 6, 3), date(2038, 6, 14)),
    ],
)
def test_movable_holidays(
    year: int, easter_monday: date, ascension: date, whit_monday: date
) -> None:
    days = french_holidays(year)
    assert days[easter_monday] == "Lundi de Pâques"
    assert days[ascension] == "Ascension"
    assert days[whit_monday] == "Lundi de Pentecôte"
    assert len(days) == 11


def test_fixed_holidays_and_on_call_days() -> None:
    days = french_holidays(2027)
    for fixed in ((1, 1), (5, 1), (5, 8), (7, 14), (8, 15), (11, 1), (11, 11), (12, 25)):
        assert date(2027, *fixed) in days
    assert date(2027, 12, 26) not in days  # Alsace-Moselle only
    assert is_on_call_day(date(2027, 1, 3))  # a Sunday
    assert is_on_call_day(date(2027, 5, 6))  # Ascension, a Thursday
    assert not is_on_call_day(date(2027, 1, 4))
    # January 2027: Friday 1st (holiday) and five Sundays
    assert on_call_days(date(2027, 1, 1), date(2027, 1, 31)) == [
        date(2027, 1, 1),
        date(2027, 1, 3),
        date(2027, 1, 10),
        date(2027, 1, 17),
        date(2027, 1, 24),
        date(2027, 1, 31),
    ]


def test_overlap_is_a_partial_overlap_in_one_sector() -> None:
    sunday = date(2027, 1, 3)
    a = entry(sunday, 9, 12)
    b = entry(sunday, 11, 13, family="Durand")
    other_sector = entry(sunday, 10, 12, sector="69-N")
    parallel = entry(sunday, 9, 12, family="Petit")  # a sector staffed twice
    back_to_back = entry(sunday, 12, 14, family="Roux", sector="69-N")
    found = find_overlaps([a, b, other_sector, parallel, back_to_back])
    assert [(o.first.family, o.second.family) for o in found] == [("Martin", "Durand")]
    assert found[0].message_fr().startswith("entrée : chevauchement avec")


def test_duplicates_same_period_same_dentist() -> None:
    sunday = date(2027, 1, 3)
    a = entry(sunday, 9, 12, line="ligne 2")
    again = entry(sunday, 9, 12, line="ligne 5")
    other = entry(sunday, 9, 12, family="Durand", line="ligne 6")
    found = find_duplicates([a, again, other])
    assert len(found) == 1
    assert found[0].kept is a and found[0].dropped is again
    assert found[0].message_fr() == (
        "ligne 5 : doublon de ligne 2 (secteur 69-C, 03/01/2027 09:00–12:00) : ignoré"
    )
    assert find_overlaps([a, again, other]) == []


def test_duplicates_in_file_order_across_sectors() -> None:
    sunday = date(2027, 1, 3)
    a = entry(sunday, 9, 12, line="ligne 2")
    north = entry(sunday, 9, 12, sector="69-N", line="ligne 3")
    north_again = entry(sunday, 9, 12, sector="69-N", line="ligne 4")
    a_again = entry(sunday, 9, 12, line="ligne 5")
    afternoon = entry(sunday, 14, 18, line="ligne 6")
    parallel = entry(sunday, 9, 12, family="Petit", line="ligne 7")  # staffed twice: kept
    listed = [a, north, north_again, a_again, afternoon, parallel, afternoon]
    found = find_duplicates(listed)
    assert [(d.kept.line, d.dropped.line) for d in found] == [
        ("ligne 3", "ligne 4"),
        ("ligne 2", "ligne 5"),
        ("ligne 6", "ligne 6"),  # the same entry listed twice
    ]
    assert find_duplicates([a, north, afternoon, parallel]) == []


def test_coverage_gaps_sundays_and_holidays_per_sector() -> None:
    sectors = [Sector("69-C", "Lyon centre", ("69123",)), Sector("69-N", "Nord", ("69266",))]
    entries = [entry(date(2027, 1, 3), 9, 12), entry(date(2027, 1, 10), 9, 12)]
    gaps = coverage_gaps(entries, sectors, date(2027, 1, 1), date(2027, 1, 10))
    assert [(g.day, g.sector_code) for g in gaps] == [
        (date(2027, 1, 1), "69-C"),
        (date(2027, 1, 1), "69-N"),
        (date(2027, 1, 3), "69-N"),
        (date(2027, 1, 10), "69-N"),
    ]
    assert gaps[0].message_fr() == (
        "01/01/2027 (Jour de l'an) : aucun dentiste de garde dans le secteur 69-C (Lyon centre)"
    )
    assert gaps[2].message_fr() == (
        "03/01/2027 (dimanche) : aucun dentiste de garde dans le secteur 69-N (Nord)"
    )


def test_period_crossing_midnight_and_name_folding() -> None:
    start = datetime(2027, 1, 2, 20, tzinfo=PARIS)
    e = RosterEntry(
        day=start.date(),
        start=start,
        end=start + timedelta(hours=12),
        sector_code="69-C",
        sector_name="69-C",
        communes=("69123",),
        family="Lefèvre",
        given="Éloïse",
    )
    assert e.covers(datetime(2027, 1, 3, 7, 59, tzinfo=PARIS))
    assert not e.covers(datetime(2027, 1, 3, 8, 0, tzinfo=PARIS))
    assert e.departement == "69"
    assert fold_name("Éloïse LEFÈVRE-Dupré") == "eloise lefevre dupre"
