"""The local SQLite journal: drafts, dossiers of the day and the append-only
event log.  Synchronous; one thread owns a :class:`JournalStore` (see
``service.py``).

Schema versioned with ``PRAGMA user_version`` and ordered migrations.  The
``events`` table refuses UPDATE and DELETE (triggers): the case file is part
of the medical record.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sas_desk.models.dossier import Actor, Dossier, Event, EventKind, Status
from sas_desk.models.errors import KnownError
from sas_desk.services.atrest import RecordCipher, SealError, seal, unseal
from sas_desk.services.sqlite_file import move_aside

log = logging.getLogger("sas_desk.journal")


def _m1(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE dossiers (
            case_id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            day TEXT NOT NULL,
            status TEXT NOT NULL,
            revision INTEGER NOT NULL,
            updated_at TEXT NOT NULL,
            data TEXT NOT NULL)"""
    )
    db.execute("CREATE INDEX dossiers_day ON dossiers(day, status)")
    db.execute("CREATE INDEX dossiers_status ON dossiers(status)")
    db.execute(
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            dossier_id TEXT NOT NULL,
            at TEXT NOT NULL,
            kind TEXT NOT NULL,
            role TEXT NOT NULL,
            operator TEXT NOT NULL,
            workstation TEXT NOT NULL,
            data TEXT NOT NULL)"""
    )
    db.execute("CREATE INDEX events_dossier ON events(dossier_id, seq)")
    db.execute(
        "CREATE TRIGGER events_no_update BEFORE UPDATE ON events "
        "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END"
    )
    db.execute(
        "CREATE TRIGGER events_no_delete BEFORE DELETE ON events "
        "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END"
    )


def _m2(db: sqlite3.Connection) -> None:
    """Retention (issue 15): events stay append-only, except for the dossiers
    a purge names in ``purging`` inside its own transaction."""
    db.execute("CREATE TABLE purging (case_id TEXT PRIMARY KEY)")
    db.execute("DROP TRIGGER events_no_delete")
    db.execute(
        "CREATE TRIGGER events_no_delete BEFORE DELETE ON events "
        "WHEN OLD.dossier_id NOT IN (SELECT case_id FROM purging) "
        "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END"
    )


MIGRATIONS: Sequence[Callable[[sqlite3.Connection], None]] = (_m1, _m2)
SCHEMA_VERSION = len(MIGRATIONS)


class JournalError(KnownError):
    """A known storage problem (not a bug): message for the user in French."""

    def __init__(self, message_fr: str, reason: str) -> None:
        super().__init__(f"{reason}: {message_fr}")
        self.message_fr = message_fr
        self.reason = reason  # readonly | full | io | busy | damaged


def classify(exc: BaseException) -> JournalError:
    """Turn an sqlite3/OS error into a known error with a French message."""
    text = str(exc).lower()
    if (
        isinstance(exc, PermissionError)
        or "readonly" in text
        or "read-only" in text
        or "permission" in text
    ):
        return JournalError(
            "Le disque du journal est en lecture seule : la fiche reste en mémoire, ne fermez pas SAS Desk.",
            "readonly",
        )
    if "full" in text or (isinstance(exc, OSError) and exc.errno == 28):
        return JournalError(
            "Disque plein : la sauvegarde de la fiche est impossible, elle reste en mémoire. Prévenez le support.",
            "full",
        )
    if "unable to open" in text:
        return JournalError(
            "Impossible d'ouvrir le journal de saisie (dossier inaccessible) : la fiche reste en mémoire.",
            "readonly",
        )
    if "locked" in text or "busy" in text:
        return JournalError(
            "Journal occupé par un autre programme : nouvel essai en cours.", "busy"
        )
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return JournalError("Journal endommagé.", "damaged")
    return JournalError(f"Erreur d'écriture du journal ({exc.__class__.__name__}).", "io")


@dataclass(frozen=True)
class OpenReport:
    path: Path
    moved_aside: Path | None = None  # where a damaged journal was put
    notice_fr: str = ""


class JournalStore:
    """Owns one SQLite connection; use it from a single thread."""

    def __init__(
        self, path: Path, *, now: Callable[[], datetime], cipher: RecordCipher | None = None
    ) -> None:
        """``cipher``: dossier snapshots and event data sealed at rest
        (``services/atrest.py``); None only for tools and old tests."""
        self.path = path
        self._now = now
        self._cipher = cipher
        # case id -> (revision, callback number) of the dossiers already
        # decoded for a lookup by number: a lookup decodes only the dossiers
        # written since (in memory only, like every dossier this process reads)
        self._callbacks: dict[str, tuple[int, str]] = {}
        self.report = OpenReport(path)
        self.db = self._open()

    # ------------------------------------------------------------------ opening
    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise classify(exc) from exc
        try:
            db = self._connect()
            self._check(db)
        except _Damaged as exc:
            moved = self._move_aside(exc.why)
            self.report = OpenReport(
                self.path,
                moved,
                f"Le journal de saisie était endommagé ({exc.why}). Il a été mis de côté sous "
                f"« {moved.name} » et un nouveau journal a été créé.",
            )
            db = self._connect()
        try:
            self._migrate(db)
        except sqlite3.Error as exc:
            raise classify(exc) from exc
        return db

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(str(self.path), timeout=5.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise classify(exc) from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # a saved keystroke survives a power cut
            conn.execute("PRAGMA secure_delete=ON")  # a purged dossier's bytes are overwritten
        except sqlite3.DatabaseError as exc:
            known = classify(exc)
            conn.close()
            if known.reason == "damaged":
                raise _Damaged(str(exc)) from exc
            raise known from exc
        return conn

    def _check(self, db: sqlite3.Connection) -> None:
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            result = db.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            db.close()
            raise _Damaged(str(exc)) from exc
        if result != "ok":
            db.close()
            raise _Damaged(f"quick_check: {result}")
        if version > SCHEMA_VERSION:
            db.close()
            raise _Damaged(f"version {version} plus récente que ce programme ({SCHEMA_VERSION})")

    def _move_aside(self, why: str) -> Path:
        log.error("journal %s unreadable (%s); moving it aside", self.path, why)
        try:
            return move_aside(self.path, self._now())
        except OSError as exc:
            raise classify(exc) from exc

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
            with db:
                db.execute("BEGIN IMMEDIATE")
                step(db)
                db.execute(f"PRAGMA user_version = {number}")
            log.info("journal migrated to schema %d", number)

    # ------------------------------------------------------------------ writes
    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` … ``COMMIT``: whatever fails inside is
        rolled back (nothing half written), a database or disk error said as
        the journal's own error."""
        conn = self.db
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if isinstance(exc, (sqlite3.Error, OSError)):
                raise classify(exc) from exc
            raise

    def write(self, dossiers: Iterable[dict[str, Any]], events: Iterable[Event]) -> list[int]:
        """Write dossier snapshots (``Dossier.to_dict()``) and events in one
        transaction.  A snapshot older than the stored revision is ignored."""
        seqs: list[int] = []
        now = self._now().isoformat()
        with self._transaction() as conn:
            for d in dossiers:
                created = str(d["created_at"])
                conn.execute(
                    """INSERT INTO dossiers(case_id, created_at, day, status, revision, updated_at, data)
                       VALUES (?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT(case_id) DO UPDATE SET
                         status=excluded.status, revision=excluded.revision,
                         updated_at=excluded.updated_at, data=excluded.data
                       WHERE excluded.revision >= dossiers.revision""",
                    (
                        d["case_id"],
                        created,
                        created[:10],
                        d["status"],
                        d["revision"],
                        now,
                        seal(self._cipher, json.dumps(d, ensure_ascii=False), d["case_id"]),
                    ),
                )
            for ev in events:
                row = ev.to_row()
                cur = conn.execute(
                    "INSERT INTO events(dossier_id, at, kind, role, operator, workstation, data) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        row["dossier_id"],
                        row["at"],
                        row["kind"],
                        row["role"],
                        row["operator"],
                        row["workstation"],
                        seal(
                            self._cipher,
                            json.dumps(row["data"], ensure_ascii=False),
                            row["dossier_id"],
                        ),
                    ),
                )
                seqs.append(int(cur.lastrowid or 0))
        return seqs

    def purge(self, before: datetime, keep: Iterable[str] = ()) -> list[str]:
        """Retention: delete the local copy (snapshot and events) of every
        dossier transmitted (or closed) whose last change is older than
        ``before``, except the
        case ids in ``keep`` (operations still waiting in the outbox: not
        acknowledged by the room yet).  Returns the purged case ids."""
        kept = set(keep)
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT case_id FROM dossiers WHERE status IN (?, ?) AND updated_at < ?",
                (Status.TRANSMITTED.value, Status.CLOSED.value, before.isoformat()),
            ).fetchall()
            gone = [r[0] for r in rows if r[0] not in kept]
            conn.executemany(
                "INSERT OR IGNORE INTO purging(case_id) VALUES (?)", [(c,) for c in gone]
            )
            conn.execute("DELETE FROM events WHERE dossier_id IN (SELECT case_id FROM purging)")
            conn.execute("DELETE FROM dossiers WHERE case_id IN (SELECT case_id FROM purging)")
            conn.execute("DELETE FROM purging")
        if not gone:
            return []
        for case_id in gone:  # nothing of a purged dossier kept, its number included
            self._callbacks.pop(case_id, None)
        log.info("retention: %d transmitted dossier(s) purged from the journal", len(gone))
        return gone

    # ------------------------------------------------------------------ reads
    def _dossier(self, case_id: str, stored: str) -> Dossier:
        try:
            return Dossier.from_dict(json.loads(unseal(self._cipher, stored, case_id)))
        except SealError as exc:
            raise JournalError(exc.message_fr, "damaged") from exc

    def load(self, case_id: str) -> Dossier | None:
        row = self.db.execute("SELECT data FROM dossiers WHERE case_id = ?", [case_id]).fetchone()
        return self._dossier(case_id, row[0]) if row else None

    def use_cipher(self, cipher: RecordCipher | None) -> None:
        """The key, once read after the journal opened (Journal's KeyGate)."""
        self._cipher = cipher

    def count_status(self, status: Status) -> int:
        row = self.db.execute(
            "SELECT count(*) FROM dossiers WHERE status = ?", [status.value]
        ).fetchone()
        return int(row[0])

    def by_status(self, status: Status) -> list[Dossier]:
        rows = self.db.execute(
            "SELECT case_id, data FROM dossiers WHERE status = ? ORDER BY created_at",
            [status.value],
        ).fetchall()
        return [self._dossier(r[0], r[1]) for r in rows]

    def of_day(self, day: date) -> list[Dossier]:
        rows = self.db.execute(
            "SELECT case_id, data FROM dossiers WHERE day = ? ORDER BY created_at DESC",
            [day.isoformat()],
        ).fetchall()
        return [self._dossier(r[0], r[1]) for r in rows]

    def of_day_with_callback(self, day: date, callback: str) -> list[Dossier]:
        """The day's dossiers whose callback number is ``callback``: those
        decoded for an earlier lookup and not written since are known by
        their number without being decoded again (a lookup late in a shift
        decoded the thousands of dossiers of three days, each time)."""
        rows = self.db.execute(
            "SELECT case_id, revision FROM dossiers WHERE day = ? ORDER BY created_at DESC",
            [day.isoformat()],
        ).fetchall()
        found: list[Dossier] = []
        for case_id, revision in rows:
            known = self._callbacks.get(case_id)
            if known is not None and known[0] == revision and known[1] != callback:
                continue  # unchanged since it was read, another number
            dossier = self.load(case_id)
            if dossier is None:
                continue
            self._callbacks[case_id] = (revision, dossier.caller.callback)
            if dossier.caller.callback == callback:
                found.append(dossier)
        return found

    def events(self, case_id: str) -> list[Event]:
        rows = self.db.execute(
            "SELECT seq, dossier_id, at, kind, role, operator, workstation, data FROM events "
            "WHERE dossier_id = ? ORDER BY seq",
            [case_id],
        ).fetchall()
        try:
            return [
                Event(
                    r[1],
                    datetime.fromisoformat(r[2]),
                    EventKind(r[3]),
                    Actor(r[4], r[5], r[6]),
                    json.loads(unseal(self._cipher, r[7], r[1])),
                    seq=r[0],
                )
                for r in rows
            ]
        except SealError as exc:
            raise JournalError(exc.message_fr, "damaged") from exc

    def max_sequence(self, day: date) -> int:
        """Highest daily sequence used for ``day`` (last 5 digits of the local number)."""
        rows = self.db.execute(
            "SELECT case_id FROM dossiers WHERE day = ?", [day.isoformat()]
        ).fetchall()
        best = 0
        for (case_id,) in rows:
            tail = str(case_id).rsplit(".", 1)[-1][-5:]
            if tail.isdigit():
                best = max(best, int(tail))
        return best

    def close(self) -> None:
        try:
            self.db.close()
        except sqlite3.Error:  # pragma: no cover - closing never matters
            pass


class _Damaged(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def is_writable_dir(path: Path) -> bool:
    return os.access(path, os.W_OK)
