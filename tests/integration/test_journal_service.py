"""The async journal: coalescing autosave, and disks that refuse to write
(really full, really read-only) without losing a character."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from sas_desk.models.dossier import Actor, Dossier, Event, EventKind
from sas_desk.services.journal.service import Journal, SaveState
from sas_desk.services.journal.store import JournalStore
from tests.helpers import disks

TZ = timezone(timedelta(hours=1))
NOW = datetime(2026, 11, 25, 16, 0, 0, tzinfo=TZ)
ACTOR = Actor("ARM", "arm.test", "POSTE-1")


def clock() -> datetime:
    return NOW


def new_dossier(n: int = 1) -> Dossier:
    return Dossier(
        case_id=f"fr.health.samu690.DRFR1569A2632900{n:03d}",
        sender_case_id=f"DRFR1569A2632900{n:03d}",
        created_at=NOW,
        owner="fr.health.samu690",
    )


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.01)


def states(journal: Journal) -> list[SaveState]:
    seen: list[SaveState] = []
    journal.add_listener(seen.append)
    return seen


def edit(journal: Journal, d: Dossier, key: str, text: str) -> None:
    d.inputs[key] = text
    d.revision += 1
    journal.submit(d)


@pytest.mark.asyncio
async def test_edits_reach_the_disk_and_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    journal = Journal(path, now=clock)
    seen = states(journal)
    assert await journal.open() is not None
    d = new_dossier()
    journal.submit(d, Event(d.case_id, NOW, EventKind.CREATED, ACTOR))
    for text in ("0", "06", "06 1", "06 12"):
        edit(journal, d, "callback", text)
    assert await journal.flush(timeout=5)
    assert seen and seen[-1].ok and seen[-1].pending == 0
    await journal.close()
    store = JournalStore(path, now=clock)
    loaded = store.load(d.case_id)
    assert loaded is not None and loaded.inputs["callback"] == "06 12"
    assert [e.kind for e in store.events(d.case_id)] == [EventKind.CREATED]
    store.close()


@pytest.mark.asyncio
async def test_a_burst_of_keystrokes_is_coalesced(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite", now=clock)
    seen = states(journal)
    await journal.open()
    d = new_dossier()
    for i in range(300):
        edit(journal, d, "note", "x" * i)
    assert await journal.flush(timeout=10)
    writes = [s for s in seen if s.ok]
    assert len(writes) < 50, f"{len(writes)} writes for 300 keystrokes"
    assert writes[-1].saved == ((d.case_id, d.revision),)
    loaded = await journal.load(d.case_id)
    assert loaded is not None and loaded.inputs["note"] == "x" * 299
    await journal.close()


@pytest.mark.asyncio
async def test_pending_edits_are_readable_before_they_hit_the_disk(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite", now=clock)
    await journal.open()
    d = new_dossier()
    edit(journal, d, "age", "67")
    loaded = await journal.load(d.case_id)  # either pending or already written
    assert loaded is not None and loaded.inputs["age"] == "67"
    await journal.close()


needs_mount = pytest.mark.skipif(not disks.can_mount(), reason="needs root to mount a small tmpfs")


@needs_mount
@pytest.mark.asyncio
async def test_full_disk_keeps_the_sheet_in_memory_and_recovers(tmp_path: Path) -> None:
    with disks.tmpfs(tmp_path / "small", "512k") as mnt:
        journal = Journal(mnt / "journal.sqlite", now=clock, retry_delay=0.05)
        seen = states(journal)
        await journal.open()
        d = new_dossier()
        edit(journal, d, "callback", "06")
        assert await journal.flush(timeout=5)
        filler = disks.fill(mnt)
        for i in range(40):  # enough text to need new pages
            edit(journal, d, "note", f"{i} " + "texte important " * 200)
        await wait_for(lambda: any(not s.ok for s in seen))
        failure = next(s for s in seen if not s.ok)
        assert failure.reason == "full"
        assert "Disque plein" in failure.message_fr
        assert journal.pending_count >= 1
        in_memory = await journal.load(d.case_id)
        assert in_memory is not None and in_memory.inputs["note"].startswith("39 ")
        filler.unlink()  # the support frees some space
        await wait_for(lambda: seen[-1].ok and journal.pending_count == 0)
        await journal.close()
        store = JournalStore(mnt / "journal.sqlite", now=clock)
        stored = store.load(d.case_id)
        assert stored is not None and stored.inputs["note"].startswith("39 ")
        assert stored.revision == d.revision
        store.close()


@needs_mount
@pytest.mark.asyncio
async def test_read_only_disk_at_start_keeps_sheets_in_memory_then_catches_up(
    tmp_path: Path,
) -> None:
    with disks.tmpfs(tmp_path / "ro", "4m") as mnt:
        first = Journal(mnt / "journal.sqlite", now=clock)
        await first.open()
        old = new_dossier(1)
        edit(first, old, "callback", "04 72 00 00 00")
        await first.close()
        disks.remount(mnt, "ro")  # e.g. a profile share mounted read-only
        try:
            journal = Journal(mnt / "journal.sqlite", now=clock, retry_delay=0.05)
            seen = states(journal)
            assert await journal.open() is None
            assert journal.open_error is not None
            assert journal.open_error.reason == "readonly"
            assert "mémoire" in journal.open_error.message_fr
            d = new_dossier(2)
            edit(journal, d, "callback", "06 12 34 56 78")
            await wait_for(lambda: sum(not s.ok for s in seen) >= 2)
            assert journal.pending_count == 1
            loaded = await journal.load(d.case_id)
            assert loaded is not None and loaded.inputs["callback"] == "06 12 34 56 78"
        finally:
            disks.remount(mnt, "rw")
        await wait_for(lambda: journal.available and journal.pending_count == 0 and seen[-1].ok)
        await journal.close()
        store = JournalStore(mnt / "journal.sqlite", now=clock)
        stored = store.load(d.case_id)
        assert stored is not None and stored.inputs["callback"] == "06 12 34 56 78"
        assert store.load(old.case_id) is not None  # the old journal was not set aside
        store.close()


@pytest.mark.asyncio
async def test_unwritable_data_dir_at_start_runs_in_memory_then_catches_up(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data folder should be")  # mkdir fails, even for root
    journal = Journal(blocker / "journal.sqlite", now=clock, retry_delay=0.05)
    seen = states(journal)
    assert await journal.open() is None
    assert journal.open_error is not None and journal.open_error.message_fr
    assert not journal.available
    d = new_dossier()
    edit(journal, d, "callback", "06 12 34 56 78")
    await wait_for(lambda: len(seen) >= 2)
    assert not seen[-1].ok and journal.pending_count == 1
    loaded = await journal.load(d.case_id)
    assert loaded is not None and loaded.inputs["callback"] == "06 12 34 56 78"
    blocker.unlink()  # the folder becomes available
    await wait_for(lambda: journal.available and journal.pending_count == 0 and seen[-1].ok)
    await journal.close()
    store = JournalStore(blocker / "journal.sqlite", now=clock)
    assert store.load(d.case_id) is not None
    store.close()


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root ignores file permissions; the tmpfs test covers it"
)
@pytest.mark.asyncio
async def test_read_only_folder_for_ordinary_users(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        journal = Journal(ro / "journal.sqlite", now=clock, retry_delay=0.05)
        assert await journal.open() is None
        assert journal.open_error is not None and journal.open_error.reason == "readonly"
        await journal.close()
    finally:
        ro.chmod(0o700)
