"""The journal store on real SQLite files: schema, append-only log,
revision guard, damaged and future files moved aside."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from sas_desk.models.dossier import Actor, Dossier, Event, EventKind, Status
from sas_desk.services.journal.store import SCHEMA_VERSION, JournalError, JournalStore, classify

TZ = timezone(timedelta(hours=1))
NOW = datetime(2026, 11, 25, 16, 0, 0, tzinfo=TZ)
ACTOR = Actor("ARM", "arm.test", "POSTE-1")


def clock() -> datetime:
    return NOW


def dossier(n: int = 1, revision: int = 1) -> Dossier:
    d = Dossier(
        case_id=f"fr.health.samu690.DRFR1569A2632900{n:03d}",
        sender_case_id=f"DRFR1569A2632900{n:03d}",
        created_at=NOW,
        received_at=NOW,
        owner="fr.health.samu690",
    )
    d.revision = revision
    return d


def test_fresh_journal_has_current_schema(tmp_path: Path) -> None:
    store = JournalStore(tmp_path / "j.sqlite", now=clock)
    version = store.db.execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION
    assert {"dossiers", "events"} <= {
        r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.report.moved_aside is None
    store.close()


def test_write_and_read_back(tmp_path: Path) -> None:
    store = JournalStore(tmp_path / "j.sqlite", now=clock)
    d = dossier()
    d.inputs["callback"] = "06 12 3"
    ev = Event(d.case_id, NOW, EventKind.CREATED, ACTOR, {"x": 1})
    seqs = store.write([d.to_dict()], [ev])
    assert len(seqs) == 1 and seqs[0] > 0
    store.close()
    again = JournalStore(tmp_path / "j.sqlite", now=clock)
    loaded = again.load(d.case_id)
    assert loaded == d
    assert [e.kind for e in again.events(d.case_id)] == [EventKind.CREATED]
    assert again.events(d.case_id)[0].actor == ACTOR
    assert [x.case_id for x in again.by_status(Status.DRAFT)] == [d.case_id]
    assert [x.case_id for x in again.of_day(NOW.date())] == [d.case_id]
    assert again.max_sequence(NOW.date()) == 1
    again.close()


def test_older_revision_never_overwrites_newer(tmp_path: Path) -> None:
    store = JournalStore(tmp_path / "j.sqlite", now=clock)
    new = dossier(revision=5)
    new.inputs["age"] = "67"
    old = dossier(revision=3)
    old.inputs["age"] = "6"
    store.write([new.to_dict()], [])
    store.write([old.to_dict()], [])
    loaded = store.load(new.case_id)
    assert loaded is not None and loaded.inputs["age"] == "67" and loaded.revision == 5
    store.close()


def test_events_are_append_only(tmp_path: Path) -> None:
    store = JournalStore(tmp_path / "j.sqlite", now=clock)
    d = dossier()
    store.write([d.to_dict()], [Event(d.case_id, NOW, EventKind.CREATED, ACTOR)])
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.db.execute("UPDATE events SET kind = 'TRANSMITTED'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.db.execute("DELETE FROM events")
    assert len(store.events(d.case_id)) == 1
    store.close()


def test_garbage_file_is_moved_aside_and_a_new_journal_starts(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    junk = b"this is not a database\n" * 200
    path.write_bytes(junk)
    store = JournalStore(path, now=clock)
    moved = store.report.moved_aside
    assert moved is not None
    assert moved.name == "journal.sqlite.endommage-20261125-160000"
    assert moved.read_bytes() == junk  # kept for investigation, byte for byte
    assert "endommagé" in store.report.notice_fr and moved.name in store.report.notice_fr
    store.write([dossier().to_dict()], [])
    assert store.load(dossier().case_id) is not None
    store.close()


def test_corrupted_pages_are_detected(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    store = JournalStore(path, now=clock)
    for n in range(200):
        d = dossier(n)
        d.inputs["note"] = "x" * 500
        store.write([d.to_dict()], [Event(d.case_id, NOW, EventKind.CREATED, ACTOR)])
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    raw = bytearray(path.read_bytes())
    page = 4096
    for offset in range(2 * page, min(len(raw), 12 * page)):
        raw[offset] = 0xA5  # scribble over b-tree pages
    path.write_bytes(bytes(raw))
    again = JournalStore(path, now=clock)
    assert again.report.moved_aside is not None
    assert again.by_status(Status.DRAFT) == []
    again.close()


def test_journal_from_a_newer_program_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    store = JournalStore(path, now=clock)
    assert store.report.moved_aside is not None
    assert "version 99" in store.report.notice_fr
    store.close()


def test_two_damaged_files_in_the_same_second_get_distinct_names(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    path.write_bytes(b"junk" * 100)
    JournalStore(path, now=clock).close()
    path.write_bytes(b"more junk" * 100)
    store = JournalStore(path, now=clock)
    assert store.report.moved_aside is not None
    assert store.report.moved_aside.name.endswith("-1")
    store.close()


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (sqlite3.OperationalError("attempt to write a readonly database"), "readonly"),
        (sqlite3.OperationalError("database or disk is full"), "full"),
        (OSError(28, "No space left on device"), "full"),
        (PermissionError(13, "Permission denied"), "readonly"),
        (sqlite3.OperationalError("database is locked"), "busy"),
        (sqlite3.DatabaseError("database disk image is malformed"), "damaged"),
        (sqlite3.OperationalError("disk I/O error"), "io"),
    ],
)
def test_errors_are_classified_with_french_messages(exc: Exception, reason: str) -> None:
    err = classify(exc)
    assert isinstance(err, JournalError)
    assert err.reason == reason
    assert err.message_fr and err.message_fr[0].isupper()
