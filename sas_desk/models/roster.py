"""Dental on-call rosters ("tableaux de garde des chirurgiens-dentistes").

Pure model: roster entries and sectors, the French public holidays, and the
checks an import runs on a whole roster (overlaps, duplicates, coverage gaps).
Nothing here does I/O; see :mod:`sas_desk.services.roster` for the files, the
store and the sync, and ``docs/rosters.md`` for the formats.

Times are aware datetimes in Europe/Paris.  An on-call period may cross
midnight (its ``end`` is then on the next day); its ``day`` is the day it
starts.
"""

from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from dateutil.easter import easter  # type: ignore[import-untyped]

__all__ = [
    "MAX_PERIOD",
    "PARIS",
    "CoverageGap",
    "Duplicate",
    "Overlap",
    "RosterEntry",
    "Sector",
    "coverage_gaps",
    "find_duplicates",
    "find_overlaps",
    "fold_name",
    "french_holidays",
    "is_on_call_day",
    "on_call_days",
]

PARIS = ZoneInfo("Europe/Paris")
#: The longest on-call period accepted (a whole weekend, Saturday noon to Monday 8:00, fits).
MAX_PERIOD = timedelta(hours=72)


@lru_cache(maxsize=65536)
def fold_name(text: str) -> str:
    """Lowercase, no accents, words separated by one space (name matching)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join("".join(ch if ch.isalnum() else " " for ch in bare).split())


@dataclass(frozen=True, slots=True)
class Sector:
    """A dental on-call sector (set by the ARS) and the communes it covers."""

    code: str
    name: str
    communes: tuple[str, ...]  # INSEE codes

    @property
    def departement(self) -> str:
        first = self.communes[0] if self.communes else ""
        return first[:3] if first[:2] in ("97", "98") else first[:2]


@dataclass(frozen=True, slots=True)
class RosterEntry:
    """One on-call period of one dentist in one sector."""

    day: date  # the day the period starts
    start: datetime  # aware, Europe/Paris
    end: datetime  # aware, after start (possibly the next day)
    sector_code: str
    sector_name: str
    communes: tuple[str, ...]  # INSEE codes covered
    family: str  # dentist's family name
    given: str = ""
    rpps: str | None = None  # 11 digits when known
    address: str = ""  # practice address (street line)
    postcode: str = ""
    city: str = ""
    phone: str = ""  # E.164
    notes: str = ""
    source: str = ""  # file name or URL it came from
    version: int = 0  # store version (0: not stored yet)
    line: str = ""  # where it was read ("ligne 12", "VEVENT n° 3"), for messages

    @property
    def dentist(self) -> str:
        return f"{self.given} {self.family}".strip()

    @property
    def departement(self) -> str:
        first = self.communes[0] if self.communes else ""
        return first[:3] if first[:2] in ("97", "98") else first[:2]

    @property
    def dentist_key(self) -> str:
        """Identity of the dentist for duplicate detection: RPPS, else folded name."""
        return self.rpps or fold_name(f"{self.given} {self.family}")

    def covers(self, at: datetime) -> bool:
        return self.start <= at < self.end

    def full_address(self) -> str:
        town = " ".join(p for p in (self.postcode, self.city) if p)
        return ", ".join(p for p in (self.address, town) if p)


# --------------------------------------------------------------------------- holidays


def french_holidays(year: int) -> dict[date, str]:
    """Metropolitan French public holidays of *year* (Code du travail L3133-1),
    with Easter Monday, Ascension and Whit Monday from the Gregorian Easter.

    Alsace-Moselle (Good Friday, 26 December) and overseas days (abolition of
    slavery) are not included: see ``docs/rosters.md``."""
    sunday = easter(year)
    days = {
        date(year, 1, 1): "Jour de l'an",
        sunday + timedelta(days=1): "Lundi de Pâques",
        date(year, 5, 1): "Fête du Travail",
        date(year, 5, 8): "Victoire 1945",
        sunday + timedelta(days=39): "Ascension",
        sunday + timedelta(days=50): "Lundi de Pentecôte",
        date(year, 7, 14): "Fête nationale",
        date(year, 8, 15): "Assomption",
        date(year, 11, 1): "Toussaint",
        date(year, 11, 11): "Armistice 1918",
        date(year, 12, 25): "Noël",
    }
    return dict(sorted(days.items()))


_HOLIDAY_CACHE: dict[int, dict[date, str]] = {}


def _holidays(year: int) -> dict[date, str]:
    found = _HOLIDAY_CACHE.get(year)
    if found is None:
        found = _HOLIDAY_CACHE[year] = french_holidays(year)
    return found


def is_on_call_day(day: date) -> bool:
    """A Sunday or a public holiday: the days a dental permanence is due."""
    return day.weekday() == 6 or day in _holidays(day.year)


def on_call_days(first: date, last: date) -> list[date]:
    """Every Sunday and public holiday from *first* to *last* inclusive."""
    days: list[date] = []
    day = first
    while day <= last:
        if is_on_call_day(day):
            days.append(day)
        day += timedelta(days=1)
    return days


# --------------------------------------------------------------------------- checks


@dataclass(frozen=True, slots=True)
class Overlap:
    """Two periods of the same sector that partly overlap (a boundary mistake)."""

    first: RosterEntry
    second: RosterEntry

    def message_fr(self) -> str:
        a, b = self.first, self.second
        return (
            f"{b.line or 'entrée'} : chevauchement avec {a.line or 'une autre entrée'} "
            f"(secteur {b.sector_code}, {_span(a)} et {_span(b)})"
        )


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The same period of the same dentist in the same sector, twice."""

    kept: RosterEntry
    dropped: RosterEntry

    def message_fr(self) -> str:
        return (
            f"{self.dropped.line or 'entrée'} : doublon de {self.kept.line or 'une autre entrée'} "
            f"(secteur {self.kept.sector_code}, {_span(self.kept)}) : ignoré"
        )


@dataclass(frozen=True, slots=True)
class CoverageGap:
    """A Sunday or public holiday with no dentist on call in a sector."""

    day: date
    sector_code: str
    sector_name: str
    holiday: str = ""  # the holiday's name; "" for a plain Sunday

    def message_fr(self) -> str:
        what = self.holiday or "dimanche"
        return (
            f"{self.day.strftime('%d/%m/%Y')} ({what}) : aucun dentiste de garde "
            f"dans le secteur {self.sector_code}"
            + (f" ({self.sector_name})" if self.sector_name != self.sector_code else "")
        )


def _span(entry: RosterEntry) -> str:
    end = entry.end.strftime("%H:%M")
    if entry.end.date() != entry.start.date():
        end = entry.end.strftime("%d/%m %H:%M")
    return f"{entry.start.strftime('%d/%m/%Y %H:%M')}–{end}"


def _by_sector(
    entries: Iterable[RosterEntry], *, ordered: bool = True
) -> dict[tuple[str, str], list[RosterEntry]]:
    """The entries of each (département, sector), by start and end when *ordered*."""
    groups: dict[tuple[str, str], list[RosterEntry]] = defaultdict(list)
    for entry in entries:
        groups[(entry.departement, entry.sector_code)].append(entry)
    if ordered:
        for group in groups.values():
            group.sort(key=lambda e: (e.start, e.end))
    return groups


def _sharing_a_period(entries: Iterable[RosterEntry]) -> set[int]:
    """``id()`` of the entries whose sector has another entry of the same
    period: the only ones that can be duplicates.  Worked out a sector at a
    time, so that no key is held per entry of the whole roster."""
    found: set[int] = set()
    for group in _by_sector(entries, ordered=False).values():
        counts = Counter((e.start, e.end) for e in group)
        if len(counts) < len(group):
            found.update(id(e) for e in group if counts[(e.start, e.end)] > 1)
    return found


def find_duplicates(entries: Sequence[RosterEntry]) -> list[Duplicate]:
    """Entries repeating an earlier one (same sector, start, end and dentist)."""
    candidates = _sharing_a_period(entries)
    seen: dict[tuple[str, str, datetime, datetime, str], RosterEntry] = {}
    found: list[Duplicate] = []
    for entry in entries:
        if id(entry) not in candidates:
            continue  # alone on its period in its sector
        key = (entry.departement, entry.sector_code, entry.start, entry.end, entry.dentist_key)
        kept = seen.get(key)
        if kept is None:
            seen[key] = entry
        else:
            found.append(Duplicate(kept, entry))
    return found


def find_overlaps(entries: Sequence[RosterEntry]) -> list[Overlap]:
    """Periods of one sector that overlap without being the same period.

    Two dentists on exactly the same period of a sector are a sector staffed
    twice (allowed); a period that starts before the previous one ends is not.
    Exact duplicates are :func:`find_duplicates`' business."""
    found: list[Overlap] = []
    for group in _by_sector(entries).values():
        latest: RosterEntry | None = None  # the period reaching furthest so far
        for entry in group:
            if (
                latest is not None
                and entry.start < latest.end
                and (entry.start, entry.end) != (latest.start, latest.end)
            ):
                found.append(Overlap(latest, entry))
            if latest is None or entry.end > latest.end:
                latest = entry
    return found


def coverage_gaps(
    entries: Sequence[RosterEntry],
    sectors: Sequence[Sector] = (),
    first: date | None = None,
    last: date | None = None,
) -> list[CoverageGap]:
    """Sundays and public holidays from *first* to *last* (default: the
    roster's first and last days) where a sector has no period starting that
    day.  The sectors are *sectors* when given, else those of the entries."""
    if not entries and (first is None or last is None):
        return []
    first = first or min(e.day for e in entries)
    last = last or max(e.day for e in entries)
    names: dict[tuple[str, str], str] = {}
    for sector in sectors:
        names[(sector.departement, sector.code)] = sector.name
    covered: dict[tuple[str, str], set[date]] = defaultdict(set)  # the days of each sector
    for entry in entries:
        key = (entry.departement, entry.sector_code)
        names.setdefault(key, entry.sector_name)
        covered[key].add(entry.day)
    by_sector = sorted(names.items())
    gaps: list[CoverageGap] = []
    for day in on_call_days(first, last):
        holiday = _holidays(day.year).get(day, "")
        for (dep, code), name in by_sector:
            if day not in covered.get((dep, code), ()):
                gaps.append(CoverageGap(day, code, name, holiday))
    return gaps
