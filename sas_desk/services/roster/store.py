"""The local roster database (``DATA_DIR/rosters.sqlite``): versions, sectors,
entries, and the sync state of each roster source.

- Every import is a **version** (source, date, counts, first and last day);
  the roster **in force** for a département is the latest version that
  brought it (table ``in_force``).  Applying a version is one transaction: a
  failure leaves the previous roster in force.  The entries of the
  :data:`KEEP_VERSIONS` latest versions (and of every version in force) are
  kept; older versions keep their history row only.
- "Who is on call": the communes → sectors map of the versions in force is
  held in memory; the entries of a sector come from the index
  ``(version_id, departement, sector_code, start_s)``, looking back at most
  :data:`~sas_desk.models.roster.MAX_PERIOD`.
- Dentist names are searched through FTS5 (accent- and case-insensitive).

A damaged file, or one written by a newer SAS Desk, is moved aside
(``rosters.sqlite.damaged-…``) and an empty store is started, with a notice
in :attr:`RosterStore.notice_fr` (manual imports are not re-downloadable).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from sas_desk.models.errors import KnownError
from sas_desk.models.roster import MAX_PERIOD, PARIS, RosterEntry, Sector, fold_name
from sas_desk.services.sqlite_file import open_versioned

log = logging.getLogger("sas_desk.roster")

KEEP_VERSIONS = 3
FTS_TOKENIZE = "unicode61 remove_diacritics 2"
_MAX_S = int(MAX_PERIOD.total_seconds())

__all__ = ["KEEP_VERSIONS", "RosterError", "RosterStore", "SourceState", "VersionInfo"]


class RosterError(KnownError):
    """A known roster problem (not a bug): message for the user in French."""

    def __init__(self, message_fr: str, reason: str = "io") -> None:
        super().__init__(f"{reason}: {message_fr}")
        self.message_fr = message_fr
        self.reason = reason


def _classify(exc: BaseException) -> RosterError:
    text = str(exc).lower()
    if isinstance(exc, PermissionError) or "readonly" in text or "read-only" in text:
        return RosterError("Le fichier des tableaux de garde est en lecture seule.", "readonly")
    if "full" in text or (isinstance(exc, OSError) and exc.errno == 28):
        return RosterError("Disque plein : le tableau de garde n'a pas été enregistré.", "full")
    if "locked" in text or "busy" in text:
        return RosterError("Tableaux de garde occupés par un autre programme.", "busy")
    return RosterError(f"Erreur du stockage des tableaux de garde ({exc.__class__.__name__}).")


# --------------------------------------------------------------------------- schema


def _m1(db: sqlite_utils.Database) -> None:
    db.table("versions").create(
        {
            "id": int,
            "imported_at": str,  # ISO, UTC
            "origin": str,  # file | sync | demo
            "source": str,  # file name or URL
            "kind": str,  # csv | ics | json
            "encoding": str,
            "sha256": str,
            "size": int,
            "entries": int,
            "sectors": int,
            "departements": str,  # comma-joined
            "first_day": str,
            "last_day": str,
            "duplicates": int,
            "gaps": int,
        },
        pk="id",
        not_null={"imported_at", "origin", "source", "entries"},
    )
    db.table("in_force").create({"departement": str, "version_id": int}, pk="departement")
    db.table("sectors").create(
        {"version_id": int, "departement": str, "code": str, "name": str, "communes": str},
        pk=("version_id", "departement", "code"),
    )
    entries = db.table("entries").create(
        {
            "id": int,
            "version_id": int,
            "departement": str,
            "sector_code": str,
            "sector_name": str,
            "start_s": int,  # epoch seconds
            "end_s": int,
            "communes": str,  # "|"-joined INSEE codes
            "family": str,
            "given": str,
            "name_key": str,  # folded "given family" (FTS)
            "rpps": str,
            "address": str,
            "postcode": str,
            "city": str,
            "phone": str,
            "notes": str,
            "source": str,
            "line": str,
        },
        pk="id",
        not_null={"version_id", "departement", "sector_code", "start_s", "end_s"},
    )
    entries.create_index(
        ["version_id", "departement", "sector_code", "start_s"], index_name="idx_entries_sector"
    )
    entries.create_index(["rpps"])
    entries.enable_fts(["name_key"], tokenize=FTS_TOKENIZE, create_triggers=True)
    db.table("sources").create(
        {
            "url": str,
            "etag": str,
            "last_modified": str,
            "last_attempt": str,
            "last_success": str,
            "state": str,  # updated | unchanged | failed | offline
            "message": str,
            "version_id": int,
        },
        pk="url",
    )


MIGRATIONS: Sequence[Callable[[sqlite_utils.Database], None]] = (_m1,)
SCHEMA_VERSION = len(MIGRATIONS)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class VersionInfo:
    id: int
    imported_at: datetime
    origin: str
    source: str
    kind: str
    entries: int
    sectors: int
    departements: tuple[str, ...]
    first_day: date | None
    last_day: date | None
    duplicates: int = 0
    gaps: int = 0
    sha256: str = ""


@dataclass(frozen=True, slots=True)
class SourceState:
    url: str
    etag: str | None
    last_modified: str | None
    last_attempt: datetime | None
    last_success: datetime | None
    state: str
    message: str
    version_id: int | None


def _dt(text: Any) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) and text else None


def _day(text: Any) -> date | None:
    return date.fromisoformat(text) if isinstance(text, str) and text else None


_VERSION_COLUMNS = (
    "id, imported_at, origin, source, kind, entries, sectors, departements, first_day, "
    "last_day, duplicates, gaps, sha256"
)


def _version(row: Sequence[Any]) -> VersionInfo:
    imported = _dt(row[1])
    assert imported is not None
    return VersionInfo(
        id=int(row[0]),
        imported_at=imported,
        origin=row[2],
        source=row[3],
        kind=row[4] or "",
        entries=int(row[5]),
        sectors=int(row[6] or 0),
        departements=tuple(d for d in (row[7] or "").split(",") if d),
        first_day=_day(row[8]),
        last_day=_day(row[9]),
        duplicates=int(row[10] or 0),
        gaps=int(row[11] or 0),
        sha256=row[12] or "",
    )


_ENTRY_COLUMNS = (
    "e.version_id, e.sector_code, e.sector_name, e.start_s, e.end_s, e.communes, e.family, "
    "e.given, e.rpps, e.address, e.postcode, e.city, e.phone, e.notes, e.source, e.line"
)


def _entry(row: Sequence[Any]) -> RosterEntry:
    start = datetime.fromtimestamp(row[3], PARIS)
    return RosterEntry(
        day=start.date(),
        start=start,
        end=datetime.fromtimestamp(row[4], PARIS),
        sector_code=row[1],
        sector_name=row[2] or row[1],
        communes=tuple(row[5].split("|")) if row[5] else (),
        family=row[6] or "",
        given=row[7] or "",
        rpps=row[8] or None,
        address=row[9] or "",
        postcode=row[10] or "",
        city=row[11] or "",
        phone=row[12] or "",
        notes=row[13] or "",
        source=row[14] or "",
        version=int(row[0]),
        line=row[15] or "",
    )


# --------------------------------------------------------------------------- store


class RosterStore:
    """The roster database; ``path=None`` keeps it in memory (tests, bench).

    One connection guarded by a lock: queries from the UI thread, imports
    and syncs from a worker thread."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.notice_fr = ""
        self._lock = threading.RLock()
        # insee -> [(version_id, departement, sector_code)] of the rosters in force
        self._cover: dict[str, list[tuple[int, str, str]]] = {}
        self._sector_keys: dict[str, list[tuple[int, str]]] = {}  # code -> [(version, dep)]
        self._db = self._open()
        self._load_cover()

    # ------------------------------------------------------------------ opening

    def _open(self) -> sqlite_utils.Database:
        return open_versioned(
            self.path,
            MIGRATIONS,
            what="roster store",
            set_aside=self._move_aside,
            classify=_classify,
        )

    def _move_aside(self, why: str) -> None:
        assert self.path is not None
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        log.error("roster store %s unusable (%s): moved to %s", self.path, why, aside.name)
        self.path.replace(aside)
        for suffix in ("-wal", "-shm"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)
        self.notice_fr = (
            "Le fichier des tableaux de garde était illisible : il a été mis de côté "
            f"({aside.name}). Réimportez les tableaux ou attendez la prochaine synchronisation."
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> RosterStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ cover map

    def _load_cover(self) -> None:
        cover: dict[str, list[tuple[int, str, str]]] = {}
        keys: dict[str, list[tuple[int, str]]] = {}
        rows = self._db.execute(
            "SELECT s.version_id, s.departement, s.code, s.communes FROM sectors s "
            "JOIN in_force f ON f.departement = s.departement AND f.version_id = s.version_id"
        ).fetchall()
        for vid, dep, code, communes in rows:
            keys.setdefault(code, []).append((vid, dep))
            for insee in communes.split("|") if communes else ():
                cover.setdefault(insee, []).append((vid, dep, code))
        self._cover, self._sector_keys = cover, keys

    # ------------------------------------------------------------------ writes

    def apply(
        self,
        entries: Sequence[RosterEntry],
        sectors: Sequence[Sector],
        *,
        origin: str,
        source: str,
        kind: str = "",
        encoding: str = "",
        sha256: str = "",
        size: int = 0,
        duplicates: int = 0,
        gaps: int = 0,
        imported_at: datetime | None = None,
    ) -> VersionInfo:
        """Store a checked roster as a new version and put it in force for
        every département it covers, in one transaction."""
        imported_at = imported_at or datetime.now(UTC)
        deps = sorted({e.departement for e in entries})
        # sectors: those declared for these départements, plus the union of the entries' communes
        by_key: dict[tuple[str, str], tuple[str, dict[str, None]]] = {}
        for sector in sectors:
            if sector.departement in deps:
                by_key[(sector.departement, sector.code)] = (
                    sector.name,
                    dict.fromkeys(sector.communes),
                )
        for e in entries:
            _name, communes = by_key.setdefault((e.departement, e.sector_code), (e.sector_name, {}))
            for c in e.communes:
                communes.setdefault(c)
        first = min((e.day for e in entries), default=None)
        last = max((e.end.date() for e in entries), default=None)
        with self._lock:
            try:
                with self._db.atomic():
                    cur = self._db.execute(
                        "INSERT INTO versions (imported_at, origin, source, kind, encoding, sha256, "
                        "size, entries, sectors, departements, first_day, last_day, duplicates, "
                        "gaps) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [
                            imported_at.isoformat(timespec="seconds"),
                            origin,
                            source,
                            kind,
                            encoding,
                            sha256,
                            size,
                            len(entries),
                            len(by_key),
                            ",".join(deps),
                            first.isoformat() if first else None,
                            last.isoformat() if last else None,
                            duplicates,
                            gaps,
                        ],
                    )
                    vid = int(cur.lastrowid or 0)
                    conn = self._db.conn
                    conn.executemany(
                        "INSERT INTO sectors (version_id, departement, code, name, communes) "
                        "VALUES (?, ?, ?, ?, ?)",
                        [
                            (vid, dep, code, name, "|".join(communes))
                            for (dep, code), (name, communes) in by_key.items()
                        ],
                    )
                    conn.executemany(
                        "INSERT INTO entries (version_id, departement, sector_code, sector_name, "
                        "start_s, end_s, communes, family, given, name_key, rpps, address, "
                        "postcode, city, phone, notes, source, line) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            (
                                vid,
                                e.departement,
                                e.sector_code,
                                e.sector_name,
                                int(e.start.timestamp()),
                                int(e.end.timestamp()),
                                "|".join(e.communes),
                                e.family,
                                e.given,
                                fold_name(f"{e.given} {e.family}"),
                                e.rpps,
                                e.address,
                                e.postcode,
                                e.city,
                                e.phone,
                                e.notes,
                                e.source,
                                e.line,
                            )
                            for e in entries
                        ),
                    )
                    conn.executemany(
                        "INSERT OR REPLACE INTO in_force (departement, version_id) VALUES (?, ?)",
                        [(dep, vid) for dep in deps],
                    )
                    self._prune()
                    row = self._db.execute(
                        f"SELECT {_VERSION_COLUMNS} FROM versions WHERE id = ?", [vid]
                    ).fetchone()
            except sqlite3.Error as exc:
                self._load_cover()
                raise _classify(exc) from exc
            self._load_cover()
        log.info(
            "roster version %d in force (%s, %d entries, départements %s)",
            vid,
            origin,
            len(entries),
            ",".join(deps),
        )
        return _version(row)

    def _prune(self) -> None:
        """Drop the entries of versions neither in force nor among the latest ones."""
        keep = {
            r[0]
            for r in self._db.execute(
                "SELECT id FROM versions ORDER BY id DESC LIMIT ?", [KEEP_VERSIONS]
            ).fetchall()
        } | {r[0] for r in self._db.execute("SELECT version_id FROM in_force").fetchall()}
        old = [
            r[0]
            for r in self._db.execute(
                "SELECT DISTINCT version_id FROM sectors WHERE version_id NOT IN "
                f"({', '.join('?' * len(keep))})",
                sorted(keep),
            ).fetchall()
        ]
        for vid in old:
            self._db.execute("DELETE FROM entries WHERE version_id = ?", [vid])
            self._db.execute("DELETE FROM sectors WHERE version_id = ?", [vid])
            log.info("roster version %d pruned (history row kept)", vid)

    def record_source(
        self,
        url: str,
        *,
        state: str,
        message: str,
        attempt: datetime,
        success: bool,
        etag: str | None = None,
        last_modified: str | None = None,
        version_id: int | None = None,
    ) -> None:
        """Remember a sync attempt of *url* (validators only change on success)."""
        with self._lock:
            previous = self._source(url)
            row: dict[str, Any] = {
                "url": url,
                "state": state,
                "message": message,
                "last_attempt": attempt.isoformat(timespec="seconds"),
                "last_success": (
                    attempt.isoformat(timespec="seconds")
                    if success
                    else (
                        previous.last_success.isoformat(timespec="seconds")
                        if previous and previous.last_success
                        else None
                    )
                ),
                "etag": previous.etag if previous else None,
                "last_modified": previous.last_modified if previous else None,
                "version_id": previous.version_id if previous else None,
            }
            if success and (etag is not None or last_modified is not None or version_id):
                if etag is not None or last_modified is not None:
                    row["etag"], row["last_modified"] = etag, last_modified
                if version_id is not None:
                    row["version_id"] = version_id
            try:
                with self._db.atomic():
                    self._db.table("sources").upsert(row, pk="url")
            except sqlite3.Error as exc:
                raise _classify(exc) from exc

    # ------------------------------------------------------------------ reads

    def _source(self, url: str) -> SourceState | None:
        row = self._db.execute(
            "SELECT url, etag, last_modified, last_attempt, last_success, state, message, "
            "version_id FROM sources WHERE url = ?",
            [url],
        ).fetchone()
        if row is None:
            return None
        return SourceState(
            row[0], row[1], row[2], _dt(row[3]), _dt(row[4]), row[5] or "", row[6] or "", row[7]
        )

    def source(self, url: str) -> SourceState | None:
        with self._lock:
            return self._source(url)

    def sources(self) -> list[SourceState]:
        with self._lock:
            urls = [r[0] for r in self._db.execute("SELECT url FROM sources ORDER BY url")]
            return [s for s in (self._source(u) for u in urls) if s is not None]

    def is_empty(self) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM in_force LIMIT 1").fetchone() is None

    def in_force(self) -> dict[str, VersionInfo]:
        """Département → the version in force."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT f.departement, {', '.join('v.' + c for c in _VERSION_COLUMNS.split(', '))} "
                "FROM in_force f JOIN versions v ON v.id = f.version_id ORDER BY f.departement"
            ).fetchall()
        return {r[0]: _version(r[1:]) for r in rows}

    def versions(self) -> list[VersionInfo]:
        """Every import, newest first (the history)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_VERSION_COLUMNS} FROM versions ORDER BY id DESC"
            ).fetchall()
        return [_version(r) for r in rows]

    def count_entries(self, version_id: int | None = None) -> int:
        with self._lock:
            if version_id is None:
                sql = (
                    "SELECT count(*) FROM entries e JOIN in_force f "
                    "ON f.departement = e.departement AND f.version_id = e.version_id"
                )
                return int(self._db.execute(sql).fetchone()[0])
            return int(
                self._db.execute(
                    "SELECT count(*) FROM entries WHERE version_id = ?", [version_id]
                ).fetchone()[0]
            )

    def sectors(self) -> list[Sector]:
        """The sectors of the rosters in force."""
        with self._lock:
            rows = self._db.execute(
                "SELECT s.code, s.name, s.communes FROM sectors s JOIN in_force f "
                "ON f.departement = s.departement AND f.version_id = s.version_id "
                "ORDER BY s.departement, s.code"
            ).fetchall()
        return [Sector(c, n or c, tuple(m.split("|")) if m else ()) for c, n, m in rows]

    def communes_covered(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._cover)

    def who(self, insee: str, at: datetime) -> list[RosterEntry]:
        """Entries in force covering commune *insee* at *at* (aware)."""
        at_s = int(at.timestamp())
        found: list[RosterEntry] = []
        with self._lock:
            for vid, dep, code in self._cover.get(insee, ()):
                for row in self._db.execute(
                    f"SELECT {_ENTRY_COLUMNS} FROM entries e WHERE e.version_id = ? "
                    "AND e.departement = ? AND e.sector_code = ? AND e.start_s > ? "
                    "AND e.start_s <= ? AND e.end_s > ?",
                    (vid, dep, code, at_s - _MAX_S, at_s, at_s),
                ):
                    if insee in row[5].split("|"):
                        found.append(_entry(row))
        found.sort(key=lambda e: (e.start, e.sector_code, e.family))
        return found

    def who_sector(
        self, code: str, at: datetime, departement: str | None = None
    ) -> list[RosterEntry]:
        at_s = int(at.timestamp())
        found: list[RosterEntry] = []
        with self._lock:
            for vid, dep in self._sector_keys.get(code, ()):
                if departement is not None and dep != departement:
                    continue
                for row in self._db.execute(
                    f"SELECT {_ENTRY_COLUMNS} FROM entries e WHERE e.version_id = ? "
                    "AND e.departement = ? AND e.sector_code = ? AND e.start_s > ? "
                    "AND e.start_s <= ? AND e.end_s > ?",
                    (vid, dep, code, at_s - _MAX_S, at_s, at_s),
                ):
                    found.append(_entry(row))
        found.sort(key=lambda e: (e.start, e.family))
        return found

    def next_periods(
        self,
        after: datetime,
        *,
        insee: str | None = None,
        sector: str | None = None,
        limit: int = 1,
    ) -> list[RosterEntry]:
        """The next periods starting strictly after *after* (by start), for a
        commune or a sector: the first *limit* start times, every entry of them."""
        after_s = int(after.timestamp())
        keys: list[tuple[int, str, str]] = []
        with self._lock:
            if insee is not None:
                keys = list(self._cover.get(insee, ()))
            elif sector is not None:
                keys = [(v, d, sector) for v, d in self._sector_keys.get(sector, ())]
            found: list[RosterEntry] = []
            for vid, dep, code in keys:
                rows = self._db.execute(
                    f"SELECT {_ENTRY_COLUMNS} FROM entries e WHERE e.version_id = ? "
                    "AND e.departement = ? AND e.sector_code = ? AND e.start_s > ? "
                    "ORDER BY e.start_s LIMIT ?",
                    (vid, dep, code, after_s, limit * 4),
                ).fetchall()
                found += [_entry(r) for r in rows if insee is None or insee in r[5].split("|")]
        starts = sorted({e.start for e in found})[:limit]
        return sorted(
            (e for e in found if e.start in starts), key=lambda e: (e.start, e.sector_code)
        )

    def search_dentist(
        self, text: str, *, after: datetime | None = None, limit: int = 20
    ) -> list[RosterEntry]:
        """Entries in force whose dentist's name has every word of *text* as
        a word prefix (accents and case ignored), by start; those ending
        after *after* only when given."""
        words = fold_name(text).split()
        if not words or limit <= 0:
            return []
        query = " ".join(f'"{w}"*' for w in words)
        params: list[Any] = [query]
        where = ""
        if after is not None:
            where = "AND e.end_s > ? "
            params.append(int(after.timestamp()))
        params.append(limit)
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM entries_fts t "
                "JOIN entries e ON e.rowid = t.rowid "
                "JOIN in_force f ON f.departement = e.departement AND f.version_id = e.version_id "
                f"WHERE entries_fts MATCH ? {where}ORDER BY e.start_s, e.id LIMIT ?",
                params,
            ).fetchall()
        return [_entry(r) for r in rows]

    def entries(self, departement: str | None = None) -> list[RosterEntry]:
        """Every entry in force (of one département), by start (exports)."""
        with self._lock:
            sql = (
                f"SELECT {_ENTRY_COLUMNS} FROM entries e JOIN in_force f "
                "ON f.departement = e.departement AND f.version_id = e.version_id"
            )
            params: list[Any] = []
            if departement is not None:
                sql += " WHERE e.departement = ?"
                params.append(departement)
            rows = self._db.execute(sql + " ORDER BY e.start_s, e.id", params).fetchall()
        return [_entry(r) for r in rows]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Raw read (bench baseline, diagnostics)."""
        with self._lock:
            return list(self._db.execute(sql, list(params)).fetchall())
