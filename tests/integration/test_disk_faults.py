"""Local stores on bad disks (issue 18): a damaged outbox or queue file is
moved aside like the journal, with a French message; a data directory that is
a file, read-only or full never keeps the workstation from starting."""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from sas_desk.models.dossier import Actor
from sas_desk.services.queues.api import BackendUnavailable
from sas_desk.services.queues.client import Outbox, QueueClient
from sas_desk.services.queues.sqlite import SqliteBackend
from tests.helpers import disks
from tests.integration.test_cli import sas_desk

GARBAGE = b"\x00garbage, not SQLite" * 500
NOW = datetime(2026, 12, 7, 16, 0, tzinfo=timezone(timedelta(hours=1)))
ACTOR = Actor("ARM", "arm.test", "POSTE-1")
needs_mount = pytest.mark.skipif(not disks.can_mount(), reason="needs root to mount a tmpfs")


def clock() -> datetime:
    return NOW


def set_aside(folder: Path, name: str) -> Path:
    [aside] = folder.glob(f"{name}.endommage-*")
    assert aside.read_bytes() == GARBAGE
    return aside


async def outbox_works(outbox: Outbox) -> None:
    client = QueueClient(
        SqliteBackend(outbox.path.parent / "q.sqlite", now=clock), outbox, ACTOR, now=clock
    )
    op = client.operation("enqueue", "fr.health.samu690.X1")
    await outbox.add(op)
    assert [o.op_id for o in await outbox.pending()] == [op.op_id]


@pytest.mark.asyncio
async def test_a_damaged_outbox_is_moved_aside_with_a_french_message(tmp_path: Path) -> None:
    (tmp_path / "outbox.sqlite").write_bytes(GARBAGE)
    outbox = Outbox(tmp_path / "outbox.sqlite")
    await outbox.open()
    try:
        aside = set_aside(tmp_path, "outbox.sqlite")
        assert outbox.notice_fr.startswith("La file d'envoi hors ligne était endommagée")
        assert aside.name in outbox.notice_fr
        await outbox_works(outbox)
    finally:
        await outbox.close()


@pytest.mark.asyncio
async def test_an_outbox_in_a_data_dir_that_is_a_file_is_kept_in_memory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_text("not a directory")
    outbox = Outbox(data / "outbox.sqlite")
    await outbox.open()
    try:
        assert "c'est un fichier, pas un dossier" in outbox.notice_fr
        assert "gardée en mémoire" in outbox.notice_fr
        op = QueueClient(
            SqliteBackend(data / "queues.sqlite", now=clock), outbox, ACTOR, now=clock
        ).operation("enqueue", "fr.health.samu690.X1")
        await outbox.add(op)
        assert await outbox.count() == 1
    finally:
        await outbox.close()


@needs_mount
@pytest.mark.asyncio
async def test_an_outbox_on_a_full_or_read_only_disk_is_kept_in_memory(tmp_path: Path) -> None:
    with disks.tmpfs(tmp_path / "small", "64k") as mnt:
        disks.fill(mnt)
        outbox = Outbox(mnt / "outbox.sqlite")
        await outbox.open()
        assert "gardée en mémoire" in outbox.notice_fr
        await outbox.close()
    with disks.tmpfs(tmp_path / "ro", "1m") as mnt:
        disks.remount(mnt, "ro")
        outbox = Outbox(mnt / "outbox.sqlite")
        await outbox.open()
        assert "lecture seule" in outbox.notice_fr
        await outbox.close()


@pytest.mark.asyncio
async def test_a_damaged_queue_file_is_moved_aside_not_offline_forever(tmp_path: Path) -> None:
    (tmp_path / "queues.sqlite").write_bytes(GARBAGE)
    backend = SqliteBackend(tmp_path / "queues.sqlite", now=clock)
    client = QueueClient(backend, Outbox(tmp_path / "outbox.sqlite"), ACTOR, now=clock)
    await client.start()
    try:
        assert client.state.online
        assert "Le fichier des files de ce poste était endommagé" in client.state.message_fr
        set_aside(tmp_path, "queues.sqlite")
        await backend.open()  # usable: no BackendUnavailable
    except BackendUnavailable as exc:  # pragma: no cover - the failure this test guards
        pytest.fail(exc.message_fr)
    finally:
        await client.stop()


def smoke(data_dir: Path) -> subprocess.CompletedProcess[str]:
    result = sas_desk("--smoke", data_dir=data_dir)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    return result


def test_the_app_starts_when_the_data_dir_is_a_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_text("oops")
    assert "journal=memory" in smoke(data).stdout


def test_the_app_starts_with_damaged_outbox_and_queue_files(tmp_path: Path) -> None:
    (tmp_path / "outbox.sqlite").write_bytes(GARBAGE)
    (tmp_path / "queues.sqlite").write_bytes(GARBAGE)
    assert "journal=ok" in smoke(tmp_path).stdout
    assert len(list(tmp_path.glob("outbox.sqlite.endommage-*"))) == 1
    assert len(list(tmp_path.glob("queues.sqlite.endommage-*"))) == 1


@needs_mount
def test_the_app_starts_on_a_read_only_or_full_data_dir(tmp_path: Path) -> None:
    with disks.tmpfs(tmp_path / "ro", "1m") as mnt:
        disks.remount(mnt, "ro")
        assert "journal=memory" in smoke(mnt).stdout
    with disks.tmpfs(tmp_path / "full", "64k") as mnt:
        disks.fill(mnt)
        assert "journal=memory" in smoke(mnt).stdout
