"""Patient data at rest (issue 15): the journal's snapshots and events and
the outbox's operations are sealed with AES-GCM under the workstation's key
(keyring, else a 0600 file beside the data dir with a notice); no patient
field can be found in the bytes of their files; another key or altered bytes
do not open; a record from before encryption still reads."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import stat
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keyring
import pytest
from keyring.backend import KeyringBackend

from sas_desk.models.dossier import Actor, Caller, Dossier, Event, EventKind, Patient
from sas_desk.models.queue import Operation
from sas_desk.services.atrest import (
    PREFIX,
    KeyGate,
    RecordCipher,
    SealError,
    data_key,
    key_file_for,
)
from sas_desk.services.journal.service import Journal
from sas_desk.services.journal.store import JournalError, JournalStore
from sas_desk.services.queues.api import BackendUnavailable
from sas_desk.services.queues.client import Outbox

NOW = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
ARM = Actor("ARM", "arm.martin", "POSTE-01")
PHONE, NAME, NOTE = "+33612345678", "Quintanilla", "douleur thoracique irradiant"


class MemoryKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.store.pop((service, username), None)


def files_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


def leaks(folder: Path) -> list[str]:
    raw = files_bytes(folder)
    return [w for w in (PHONE, NAME, NOTE) if w.encode() in raw or w.encode("utf-16-le") in raw]


def dossier() -> Dossier:
    return Dossier(
        "fr.health.samu690.DRM.20261207.00001",
        NOW,
        "fr.health.samu690",
        caller=Caller(callback=PHONE),
        patient=Patient(last_name=NAME),
        inputs={"note": NOTE, "callback": PHONE},
    )


def test_a_record_seals_and_opens_only_with_its_key_and_place() -> None:
    cipher = RecordCipher(bytes(range(32)))
    sealed = cipher.seal('{"nom": "Quintanilla"}', "case-1")
    assert sealed.startswith(PREFIX) and "Quintanilla" not in sealed
    assert cipher.seal('{"nom": "Quintanilla"}', "case-1") != sealed  # a fresh nonce
    assert cipher.open(sealed, "case-1") == '{"nom": "Quintanilla"}'
    assert cipher.open('{"avant": 1}', "case-1") == '{"avant": 1}'  # before encryption
    with pytest.raises(SealError):
        cipher.open(sealed, "case-2")  # moved to another row
    with pytest.raises(SealError):
        RecordCipher(bytes(32)).open(sealed, "case-1")  # another key
    raw = bytearray(base64.urlsafe_b64decode(sealed[len(PREFIX) :]))
    raw[-1] ^= 1
    with pytest.raises(SealError) as caught:
        cipher.open(PREFIX + base64.urlsafe_b64encode(bytes(raw)).decode(), "case-1")
    assert "illisible" in caught.value.message_fr


def test_the_key_lives_in_the_keyring_when_there_is_one(tmp_path: Path) -> None:
    previous = keyring.get_keyring()
    ring = MemoryKeyring()
    keyring.set_keyring(ring)
    try:
        first = data_key(tmp_path / "data")
        again = data_key(tmp_path / "data")
    finally:
        keyring.set_keyring(previous)
    assert first.key == again.key and len(first.key) == 32
    assert first.notice_fr == "" and not key_file_for(tmp_path / "data").exists()
    assert list(ring.store) == [("sas-desk", f"data-key:{(tmp_path / 'data').resolve()}")]


def test_without_a_keyring_a_private_key_file_beside_the_data_dir(tmp_path: Path) -> None:
    first = data_key(tmp_path / "data")  # the tests' keyring keeps nothing
    path = key_file_for(tmp_path / "data")
    assert path == tmp_path / "data.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert str(path) in first.notice_fr and first.notice_fr.startswith("Trousseau système")
    assert data_key(tmp_path / "data").key == first.key  # the next start: the same key
    path.write_text("pas une clé\n")
    with pytest.raises(SealError):
        data_key(tmp_path / "data")


def test_the_journal_keeps_no_patient_field_in_the_clear(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    cipher = RecordCipher(bytes(range(32)))
    store = JournalStore(folder / "journal.sqlite", now=lambda: NOW, cipher=cipher)
    d = dossier()
    event = Event(d.case_id, NOW, EventKind.NOTE_ADDED, ARM, {"text": NOTE, "callback": PHONE})
    store.write([d.to_dict()], [event])
    assert store.load(d.case_id) == d
    assert store.events(d.case_id)[0].data == {"text": NOTE, "callback": PHONE}
    assert [x.case_id for x in store.of_day(NOW.date())] == [d.case_id]
    assert leaks(folder) == []  # the file, its WAL and shared memory
    store.close()
    assert leaks(folder) == []
    other = JournalStore(folder / "journal.sqlite", now=lambda: NOW, cipher=RecordCipher(bytes(32)))
    with pytest.raises(JournalError) as caught:
        other.load(d.case_id)
    assert caught.value.reason == "damaged" and "clé" in caught.value.message_fr
    other.close()
    plain = JournalStore(tmp_path / "plain.sqlite", now=lambda: NOW)
    plain.write([d.to_dict()], [])
    plain.close()
    assert leaks(tmp_path) != []  # the search finds what is in the clear
    old = JournalStore(tmp_path / "plain.sqlite", now=lambda: NOW, cipher=cipher)
    assert old.load(d.case_id) == d  # written before encryption: still read
    old.close()


def test_the_outbox_keeps_no_patient_field_in_the_clear(tmp_path: Path) -> None:
    async def scenario() -> list[Operation]:
        outbox = Outbox(tmp_path / "data" / "outbox.sqlite", cipher=RecordCipher(bytes(32)))
        await outbox.open()
        op = Operation(
            uuid.uuid4().hex, "enqueue", "fr.x.1", NOW, "ARM", "arm.martin", "POSTE-01",
            {"summary": NAME, "callback": PHONE, "note": NOTE},
        )  # fmt: skip
        await outbox.add(op)
        pending = await outbox.pending()
        assert pending == [op]
        await outbox.close()
        return pending

    asyncio.run(scenario())
    assert leaks(tmp_path / "data") == []


def test_what_is_typed_before_the_key_stays_in_memory_then_is_written_sealed(
    tmp_path: Path,
) -> None:
    """The window paints before the data key is read (app.main): the journal
    opens without it, keeps the edits in memory, and writes them sealed
    once the key is there — never in the clear, never lost."""
    folder = tmp_path / "data"

    async def scenario() -> None:
        gate = KeyGate()
        journal = Journal(folder / "journal.sqlite", now=lambda: NOW, cipher=gate)
        await journal.open()
        assert journal.available and await journal.max_sequence(NOW.date()) == 0
        d = dossier()
        journal.submit(d, Event(d.case_id, NOW, EventKind.CREATED, ARM, {}))
        assert not await journal.flush(timeout=0.3)  # waiting for the key
        assert journal.pending_count == 2
        with sqlite3.connect(folder / "journal.sqlite") as db:
            assert db.execute("SELECT count(*) FROM dossiers").fetchone()[0] == 0
        assert leaks(folder) == []
        gate.set(RecordCipher(bytes(range(32))))
        assert await journal.flush(timeout=10)
        assert journal.pending_count == 0
        assert await journal.load(d.case_id) == d
        assert await journal.count_unfinished() == 1  # a draft, counted without the key
        await journal.close()

    asyncio.run(scenario())
    assert leaks(folder) == []


def test_without_a_key_nothing_is_written_and_closing_does_not_wait(tmp_path: Path) -> None:
    folder = tmp_path / "data"

    async def scenario() -> None:
        gate = KeyGate()
        journal = Journal(folder / "journal.sqlite", now=lambda: NOW, cipher=gate)
        outbox = Outbox(folder / "outbox.sqlite", cipher=gate)
        await journal.open()
        await outbox.open()
        journal.submit(dossier())
        gate.fail()
        with pytest.raises(SealError):
            await outbox.pending()
        await asyncio.wait_for(journal.close(), 2)
        await outbox.close()

    asyncio.run(scenario())
    assert leaks(folder) == []
    with sqlite3.connect(folder / "journal.sqlite") as db:
        assert db.execute("SELECT count(*) FROM dossiers").fetchone()[0] == 0


def test_the_outbox_waits_for_the_key_to_seal_an_operation(tmp_path: Path) -> None:
    async def scenario() -> None:
        gate = KeyGate()
        outbox = Outbox(tmp_path / "data" / "outbox.sqlite", cipher=gate)
        await outbox.open()
        assert await outbox.count() == 0  # counting needs no key
        op = Operation(
            uuid.uuid4().hex, "enqueue", "fr.x.1", NOW, "ARM", "arm.martin", "POSTE-01",
            {"summary": NAME, "callback": PHONE, "note": NOTE},
        )  # fmt: skip
        adding = asyncio.ensure_future(outbox.add(op))
        await asyncio.sleep(0.05)
        assert not adding.done() and await outbox.count() == 0
        gate.set(RecordCipher(bytes(32)))
        await asyncio.wait_for(adding, 5)
        assert await outbox.pending() == [op]
        await outbox.close()

    asyncio.run(scenario())
    assert leaks(tmp_path / "data") == []


# ---------------------------------------------------------------------------- retention


def test_retention_purges_acknowledged_old_transmitted_dossiers_only(tmp_path: Path) -> None:
    from dataclasses import replace
    from datetime import timedelta

    from sas_desk.models.dossier import Status

    clock = [NOW - timedelta(days=2)]
    store = JournalStore(tmp_path / "journal.sqlite", now=lambda: clock[0], cipher=None)

    def case(n: int, status: Status) -> Dossier:
        d = replace(dossier(), case_id=f"fr.health.samu690.DRM.20261205.{n:05d}", status=status)
        note = Event(d.case_id, clock[0], EventKind.NOTE_ADDED, ARM, {"text": NOTE})
        store.write([d.to_dict()], [note])
        return d

    old = case(1, Status.TRANSMITTED)
    waiting = case(2, Status.TRANSMITTED)  # still in the outbox: not acknowledged
    draft = case(3, Status.DRAFT)
    closed = case(4, Status.CLOSED)
    clock[0] = NOW
    recent = case(5, Status.TRANSMITTED)
    gone = store.purge(NOW - timedelta(days=1), keep={waiting.case_id})
    assert sorted(gone) == sorted([old.case_id, closed.case_id])
    assert store.load(old.case_id) is None and store.events(old.case_id) == []
    for kept in (waiting, draft, recent):
        assert store.load(kept.case_id) is not None and len(store.events(kept.case_id)) == 1
    # outside a purge the log stays append-only
    with pytest.raises(sqlite3.IntegrityError):
        store.db.execute("DELETE FROM events WHERE dossier_id = ?", [waiting.case_id])
    assert store.purge(NOW - timedelta(days=1), keep={waiting.case_id}) == []
    store.close()
    raw = (tmp_path / "journal.sqlite").read_bytes()
    assert old.case_id.encode() not in raw  # secure_delete: the bytes are overwritten


# ---------------------------------------------------------------------------- the embedded queue file

QUEUE_SECRETS = (
    "Eulalie",
    "Quincampoix",
    "Tournesol",
    "+33687654321",
    "0687654321",
    "impasse des Capucines",
    "1958-02-11",
    "anxieuse",
    "Mouton",  # the on-call dentist named in a dental orientation's summary
    "Villeurbanne",  # the commune, on the queue card
)


def queue_leaks(folder: Path) -> list[str]:
    raw = files_bytes(folder)
    return [w for w in QUEUE_SECRETS if w.encode() in raw or w.encode("utf-16-le") in raw]


async def _play_day(path: Path, cipher: RecordCipher | None) -> None:
    from sas_desk.services.queues.sqlite import SqliteBackend
    from tests.integration.queues.support import FakeClock
    from tests.integration.stats.day import Day

    backend = SqliteBackend(path, now=FakeClock(), cipher=cipher)
    await backend.open()
    try:
        await Day(backend).play()  # claims, notes, decisions, transfers, bookings, closes
    finally:
        await backend.close()


async def _read_all(path: Path, cipher: RecordCipher | None) -> dict[str, Any]:
    """Everything the backend and the statistics give back of the file."""
    from sas_desk.models.queue import QueueName, WaitLimits
    from sas_desk.models.stats import Granularity, build_report, parse_period
    from sas_desk.services.queues.sqlite import SqliteBackend
    from sas_desk.services.stats.sqlite import SqliteStatsSource
    from tests.integration.queues.support import FakeClock

    backend = SqliteBackend(path, now=FakeClock(), cipher=cipher)
    source = SqliteStatsSource(path, use_rollup=False)
    try:
        await backend.open()  # a file of an older version is brought up to date
        conn = sqlite3.connect(str(path))
        ids = [r[0] for r in conn.execute("SELECT case_id FROM dossiers ORDER BY case_id")]
        conn.close()
        period = parse_period("2026-03-13", "2026-03-15", Granularity.DAY)
        raw = await source.raw(period, Granularity.DAY, WaitLimits())
        return {
            "dossiers": [await backend.dossier(i) for i in ids],
            "events": [await backend.events(i) for i in ids],
            "items": await backend.snapshot(list(QueueName)),
            "breaks": await backend.verify_log(),
            "report": build_report(raw, period, Granularity.DAY).rows,
        }
    finally:
        await source.close()
        await backend.close()


def test_the_embedded_queue_file_keeps_no_patient_field_in_the_clear(tmp_path: Path) -> None:
    """An embedded session (the stats' hand-built day: claims, notes,
    decisions, transfers, dental orientations) leaves no patient field in
    ``queues.sqlite``, its WAL or shared memory; without the key the same
    session leaves them (the search finds what is in the clear); both give
    the same dossiers, events, queue cards and statistics."""
    cipher = RecordCipher(bytes(range(32)))
    sealed, plain = tmp_path / "data", tmp_path / "plain"
    asyncio.run(_play_day(sealed / "queues.sqlite", cipher))
    assert queue_leaks(sealed) == []
    asyncio.run(_play_day(plain / "queues.sqlite", None))
    assert "Quincampoix" in queue_leaks(plain) and "anxieuse" in queue_leaks(plain)
    got = asyncio.run(_read_all(sealed / "queues.sqlite", cipher))
    assert queue_leaks(sealed) == []  # reading does not write anything in the clear
    clear = asyncio.run(_read_all(plain / "queues.sqlite", None))

    def logged(read: dict[str, Any]) -> list[list[tuple[Any, ...]]]:  # op ids differ per play
        return [[(e.at, e.kind, e.actor, e.data) for e in case] for case in read["events"]]

    assert logged(got) == logged(clear) and sum(map(len, logged(got))) > 40
    for key in ("dossiers", "items", "breaks", "report"):
        assert got[key] == clear[key], key
    assert got["breaks"] == [] and len(got["dossiers"]) == 13
    assert any(d.patient.last_name == "Quincampoix" for d in got["dossiers"])
    assert sum(r["dossiers"] for r in got["report"]) == 13
    conn = sqlite3.connect(str(sealed / "queues.sqlite"))
    assert all(
        str(v).startswith(PREFIX)
        for table, column in (
            ("dossiers", "data"),
            ("events", "data"),
            ("items", "private"),
            ("applied_ops", "outcome"),
        )
        for (v,) in conn.execute(f"SELECT {column} FROM {table}")
    )
    conn.close()
    with pytest.raises(BackendUnavailable) as caught:  # another key: said, not misread
        asyncio.run(_read_all(sealed / "queues.sqlite", RecordCipher(bytes(32))))
    assert "clé" in caught.value.message_fr


def _as_schema_2(path: Path) -> None:
    """Turn a clear file of this version back into what version 2 wrote: the
    item's commune, age and sex in their columns, no ``facts``, ``private``, ``at_rest``."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    for case_id, private in conn.execute("SELECT case_id, private FROM items").fetchall():
        conn.execute(
            "UPDATE items SET commune = ?, age = ?, sex = ?, private = '' WHERE case_id = ?",
            (*json.loads(private), case_id),
        )
    conn.execute("ALTER TABLE items DROP COLUMN private")
    conn.execute("ALTER TABLE dossiers DROP COLUMN facts")
    conn.execute("ALTER TABLE events DROP COLUMN facts")
    conn.execute("DROP TABLE at_rest")
    conn.execute("PRAGMA user_version = 2")
    conn.execute("COMMIT")
    conn.execute("VACUUM")
    conn.close()


def test_a_clear_queue_file_of_schema_2_is_sealed_in_place(tmp_path: Path) -> None:
    """The file an older version left (every record in the clear) is sealed
    in place when the workstation opens it with its key (schema 3): no
    patient field left in any byte of the file, and everything reads back
    as before — dossiers, events and their hash chain, queue cards and the
    statistics' figures."""
    folder = tmp_path / "data"
    path = folder / "queues.sqlite"
    asyncio.run(_play_day(path, None))
    before = asyncio.run(_read_all(path, None))
    _as_schema_2(path)
    conn = sqlite3.connect(str(path))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    assert conn.execute("SELECT count(*) FROM items WHERE commune = 'Villeurbanne'").fetchone()[0]
    conn.close()
    assert "Quincampoix" in queue_leaks(folder) and "Villeurbanne" in queue_leaks(folder)

    cipher = RecordCipher(bytes(range(32)))

    async def opened_before_the_key() -> None:
        """As the app opens it: the file first, the key after (a KeyGate)."""
        from sas_desk.services.atrest import KeyGate
        from sas_desk.services.queues.sqlite import SqliteBackend
        from tests.integration.queues.support import FakeClock

        gate = KeyGate()
        backend = SqliteBackend(path, now=FakeClock(), cipher=gate)
        await backend.open()  # migrated (schema 3), not sealed yet: no key
        assert "Quincampoix" in queue_leaks(folder)
        reading = asyncio.ensure_future(backend.dossier(before["dossiers"][0].case_id))
        await asyncio.sleep(0)
        assert not reading.done()  # a record waits for the key
        gate.set(cipher)
        assert await reading == before["dossiers"][0]
        await backend.close()

    asyncio.run(opened_before_the_key())
    after = asyncio.run(_read_all(path, cipher))
    assert queue_leaks(folder) == []  # the file, its WAL and shared memory
    conn = sqlite3.connect(str(path))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    conn.close()
    assert after == before and after["breaks"] == []
    # the log stays append-only after the migration lifted its guard
    conn = sqlite3.connect(str(path))
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE events SET kind = kind")
    conn.close()
