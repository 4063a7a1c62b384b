"""The roster service a view (or the CLI) calls: imports, "who is on call",
next period, dentist search, and the status a banner shows.

Everything here is synchronous and Qt-free: a view runs imports and the demo
loading in a worker thread (``asyncio.to_thread``); the queries take well
under a millisecond and can run on the UI thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sas_desk.models.roster import (
    PARIS,
    CoverageGap,
    Duplicate,
    Overlap,
    RosterEntry,
    Sector,
    coverage_gaps,
    find_duplicates,
    find_overlaps,
)
from sas_desk.services.geo.territory import CommuneIndex
from sas_desk.services.roster.formats import (
    MAX_BYTES,
    Issue,
    ParsedRoster,
    RosterFormatError,
    parse_roster,
    parse_sectors,
    read_limited,
)
from sas_desk.services.roster.store import RosterError, RosterStore, SourceState, VersionInfo

log = logging.getLogger("sas_desk.roster")

#: A roster whose last day is this close (or past) is flagged.
ENDS_SOON = timedelta(days=14)
#: A synced roster not refreshed successfully for this long is flagged.
SYNC_STALE = timedelta(days=7)

__all__ = [
    "ENDS_SOON",
    "SYNC_STALE",
    "ImportReport",
    "RosterImportError",
    "RosterService",
    "RosterStatus",
]


#: Problems listed one by one (a file of a million bad lines gives the first ones and a count).
MAX_LISTED = 50


class RosterImportError(RosterError):
    """The file was refused: nothing changed; :attr:`issues` lists every problem."""

    def __init__(self, issues: Sequence[Issue], source: str) -> None:
        self.issues = list(issues)
        self.source = source
        n = len(self.issues)
        super().__init__(
            f"{source} : {n} erreur{'s' if n > 1 else ''}, tableau non importé "
            "(le tableau précédent reste en vigueur).",
            "invalid",
        )

    def lines_fr(self, limit: int = MAX_LISTED) -> list[str]:
        """The message and the first *limit* problems, then how many more."""
        lines = [self.message_fr, *(f"  - {issue}" for issue in self.issues[:limit])]
        if len(self.issues) > limit:
            more = len(self.issues) - limit
            lines.append(
                f"  … et {more} autre{'s' if more > 1 else ''} erreur{'s' if more > 1 else ''}"
            )
        return lines


@dataclass(frozen=True)
class ImportReport:
    version: VersionInfo
    kind: str
    encoding: str
    entries: int
    sectors: int
    departements: tuple[str, ...]
    duplicates: tuple[Duplicate, ...] = ()
    overlaps: tuple[Overlap, ...] = ()  # always empty once imported (they are refused)
    gaps: tuple[CoverageGap, ...] = ()
    skipped: tuple[Issue, ...] = ()

    def lines_fr(self) -> list[str]:
        v = self.version
        span = (
            f"du {v.first_day.strftime('%d/%m/%Y')} au {v.last_day.strftime('%d/%m/%Y')}"
            if v.first_day and v.last_day
            else ""
        )
        lines = [
            f"Tableau importé (version {v.id}, {self.kind.upper()}, {self.encoding}) : "
            f"{self.entries} gardes, {self.sectors} secteurs, "
            f"département(s) {', '.join(self.departements)} {span}".rstrip(),
            f"Chevauchements : {len(self.overlaps)}",
            f"Doublons ignorés : {len(self.duplicates)}",
        ]
        lines += [f"  - {d.message_fr()}" for d in self.duplicates]
        lines += [f"  - {s}" for s in self.skipped]
        lines.append(f"Dimanches et jours fériés sans dentiste de garde : {len(self.gaps)}")
        lines += [f"  - {g.message_fr()}" for g in self.gaps]
        return lines


@dataclass(frozen=True)
class RosterStatus:
    """What the banner shows for one département (or all of them)."""

    departement: str | None
    version: VersionInfo | None  # the roster in use
    last_sync: datetime | None  # last successful sync of its sources (None: never / manual)
    offline: bool  # the last sync attempt failed: the cached roster is used
    stale: bool
    reasons: tuple[str, ...] = field(default_factory=tuple)
    message_fr: str = ""


def _fr(day: date | datetime) -> str:
    return day.strftime("%d/%m/%Y")


class RosterService:
    """Rosters of the room: a :class:`RosterStore` plus commune resolution.

    ``communes``: the territory's communes (name lookup, and a commune of a
    département the territory covers must be one of them); ``sources``: the
    configured roster URLs (their sync state feeds :meth:`status`)."""

    def __init__(
        self,
        path: Path | None,
        *,
        communes: CommuneIndex | None = None,
        sources: Sequence[str] = (),
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        store: RosterStore | None = None,
    ) -> None:
        self.store = store if store is not None else RosterStore(path)
        self.communes = communes
        self.sources = tuple(sources)
        self._now = now
        self._territory_deps = (
            frozenset(c.departement for c in communes) if communes is not None else frozenset()
        )

    def close(self) -> None:
        self.store.close()

    def now(self) -> datetime:
        return self._now().astimezone(PARIS)

    # ------------------------------------------------------------------ imports

    def known_commune(self, insee: str) -> bool:
        """A commune of a département the territory covers must be in it;
        others are accepted on their (already checked) INSEE syntax."""
        if self.communes is None:
            return True
        dep = insee[:3] if insee[:2] in ("97", "98") else insee[:2]
        return dep not in self._territory_deps or insee in self.communes

    def parse(
        self,
        data: bytes,
        name: str,
        *,
        sectors: Sequence[Sector] | None = None,
        max_bytes: int = MAX_BYTES,
    ) -> ParsedRoster:
        try:
            return parse_roster(
                data, name, sectors=sectors, known=self.known_commune, max_bytes=max_bytes
            )
        except RosterFormatError as exc:
            raise RosterImportError(exc.issues, exc.source or name) from None

    def import_file(
        self, path: Path, *, sectors_path: Path | None = None, max_bytes: int = MAX_BYTES
    ) -> ImportReport:
        """Import a roster file (CSV, .ics, .json), optionally with its sectors
        file: all of it or nothing (:class:`RosterImportError` lists every
        problem; the previous roster stays in force)."""
        sectors = self.read_sectors(sectors_path) if sectors_path is not None else None
        try:
            data = read_limited(path, max_bytes)
        except RosterFormatError as exc:
            raise RosterImportError(exc.issues, path.name) from None
        parsed = self.parse(data, path.name, sectors=sectors, max_bytes=max_bytes)
        del data  # read: its memory is not kept while the roster is checked and stored
        return self.apply(parsed)

    def read_sectors(self, path: Path) -> list[Sector]:
        try:
            sectors = parse_sectors(read_limited(path), path.name)
        except RosterFormatError as exc:
            raise RosterImportError(exc.issues, path.name) from None
        issues = [
            Issue(f"secteur {s.code}", "", f"commune inconnue « {c} » (code INSEE)")
            for s in sectors
            for c in s.communes
            if not self.known_commune(c)
        ]
        if issues:
            raise RosterImportError(issues, path.name)
        return sectors

    def import_bytes(
        self,
        data: bytes,
        name: str,
        *,
        sectors: Sequence[Sector] | None = None,
        origin: str = "file",
        source: str | None = None,
        max_bytes: int = MAX_BYTES,
    ) -> ImportReport:
        parsed = self.parse(data, name, sectors=sectors, max_bytes=max_bytes)
        return self.apply(parsed, origin=origin, source=source)

    def apply(
        self, parsed: ParsedRoster, *, origin: str = "file", source: str | None = None
    ) -> ImportReport:
        """Check a parsed roster as a whole (duplicates dropped, overlaps
        refused, gaps listed) and put it in force."""
        duplicates = find_duplicates(parsed.entries)
        dropped = {id(d.dropped) for d in duplicates}
        entries = [e for e in parsed.entries if id(e) not in dropped] if dropped else parsed.entries
        overlaps = find_overlaps(entries)
        if overlaps:
            issues = [Issue(o.second.line or "entrée", "", _overlap_text(o)) for o in overlaps]
            raise RosterImportError(issues, source or parsed.source)
        gaps = coverage_gaps(entries, parsed.sectors)
        version = self.store.apply(
            entries,
            parsed.sectors,
            origin=origin,
            source=source or parsed.source,
            kind=parsed.kind,
            encoding=parsed.encoding,
            sha256=parsed.sha256,
            size=parsed.size,
            duplicates=len(duplicates),
            gaps=len(gaps),
            imported_at=self._now(),
        )
        return ImportReport(
            version=version,
            kind=parsed.kind,
            encoding=parsed.encoding,
            entries=len(entries),
            sectors=version.sectors,
            departements=version.departements,
            duplicates=tuple(duplicates),
            gaps=tuple(gaps),
            skipped=tuple(parsed.skipped),
        )

    # ------------------------------------------------------------------ queries

    def resolve_commune(self, text: str) -> str | None:
        """An INSEE code (as typed, or of the territory commune named *text*)."""
        raw = text.strip()
        code = raw.upper()
        if len(code) == 5 and (code.isdigit() or code[:2] in ("2A", "2B")):
            return code
        if self.communes is None:
            return None
        found = self.communes.search_name(raw, limit=1)
        return found[0].insee if found else None

    def on_call(self, commune: str, at: datetime | None = None) -> list[RosterEntry]:
        """Who is on call for a commune (INSEE code or name) now or at *at*."""
        insee = self.resolve_commune(commune)
        if insee is None:
            return []
        return self.store.who(insee, at or self.now())

    def on_call_sector(
        self, sector: str, at: datetime | None = None, *, departement: str | None = None
    ) -> list[RosterEntry]:
        return self.store.who_sector(sector.strip(), at or self.now(), departement)

    def next_on_call(
        self, commune: str, after: datetime | None = None, *, limit: int = 1
    ) -> list[RosterEntry]:
        """The next on-call period(s) starting after *after* (default now)."""
        insee = self.resolve_commune(commune)
        if insee is None:
            return []
        return self.store.next_periods(after or self.now(), insee=insee, limit=limit)

    def next_on_call_sector(
        self, sector: str, after: datetime | None = None, *, limit: int = 1
    ) -> list[RosterEntry]:
        return self.store.next_periods(after or self.now(), sector=sector.strip(), limit=limit)

    def search_dentist(
        self, text: str, *, upcoming_only: bool = True, limit: int = 20
    ) -> list[RosterEntry]:
        return self.store.search_dentist(
            text, after=self.now() if upcoming_only else None, limit=limit
        )

    # ------------------------------------------------------------------ status

    def status(self, departement: str | None = None) -> RosterStatus:
        """The roster in use, its last successful sync, and why it is flagged:
        its last day within :data:`ENDS_SOON` (or past), no successful sync
        for :data:`SYNC_STALE`, or the last sync attempt failed (offline)."""
        now = self.now()
        in_force = self.store.in_force()
        if departement is not None:
            version = in_force.get(departement)
        else:
            version = max(in_force.values(), key=lambda v: v.id, default=None)
        states = [s for s in (self.store.source(u) for u in self.sources) if s is not None]
        last_sync = max((s.last_success for s in states if s.last_success), default=None)
        offline = any(_failed_after_success(s) for s in states)
        reasons: list[str] = []
        if self.store.notice_fr:
            reasons.append(self.store.notice_fr)
        if version is None:
            where = f" pour le département {departement}" if departement else ""
            return RosterStatus(
                departement,
                None,
                last_sync,
                offline,
                True,
                (*reasons, f"Aucun tableau de garde dentaire{where}."),
                " ".join((*reasons, f"Aucun tableau de garde dentaire{where}.")),
            )
        last_days = [v.last_day for d, v in in_force.items() if departement in (None, d)]
        last_day = min((d for d in last_days if d), default=None)
        if last_day is not None and last_day < now.date():
            reasons.append(f"Tableau de garde périmé : son dernier jour était le {_fr(last_day)}.")
        elif last_day is not None and last_day - now.date() <= ENDS_SOON:
            reasons.append(f"Le tableau de garde se termine le {_fr(last_day)}.")
        if self.sources:
            if last_sync is None:
                reasons.append("Tableau de garde jamais synchronisé.")
            elif now - last_sync > SYNC_STALE:
                days = (now - last_sync).days
                reasons.append(f"Dernière synchronisation réussie il y a {days} jours.")
            if offline:
                reasons.append(
                    "Source des tableaux injoignable : tableau local du "
                    f"{_fr(version.imported_at.astimezone(PARIS))} utilisé."
                )
        stale = bool(reasons)
        head = (
            f"Tableau de garde du {_fr(version.imported_at.astimezone(PARIS))} "
            f"({version.source})"
            + (
                f", synchronisé le {last_sync.astimezone(PARIS).strftime('%d/%m/%Y %H:%M')}"
                if last_sync
                else ""
            )
            + "."
        )
        return RosterStatus(
            departement,
            version,
            last_sync,
            offline,
            stale,
            tuple(reasons),
            " ".join((head, *reasons)),
        )

    def source_states(self) -> list[SourceState]:
        return [s for s in (self.store.source(u) for u in self.sources) if s is not None]

    # ------------------------------------------------------------------ demo

    def load_demo_if_empty(self, today: date | None = None) -> ImportReport | None:
        """Load the synthetic demo roster when the store holds none (call it
        from a worker thread: ≈ 0.2 s).  ``None`` when a roster is there."""
        if not self.store.is_empty():
            return None
        from sas_desk.services.roster.demo import demo_roster

        communes = self.communes if self.communes is not None else CommuneIndex.load()
        parsed = demo_roster(communes, today or self.now().date())
        return self.apply(parsed, origin="demo", source="démo")


def _failed_after_success(state: SourceState) -> bool:
    if state.state not in ("failed", "offline") or state.last_attempt is None:
        return False
    return state.last_success is None or state.last_attempt > state.last_success


def _overlap_text(overlap: Overlap) -> str:
    text = overlap.message_fr()
    prefix = f"{overlap.second.line} : "
    return text.removeprefix(prefix) if overlap.second.line else text
