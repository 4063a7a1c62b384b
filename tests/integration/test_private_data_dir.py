"""The workstation's data dir is private (issue 15): the directory 0700 and
every file 0600 after a real session of the app, and what an older version
left readable is tightened at start."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sas_desk.services.private import make_private

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def _umask() -> Iterator[None]:
    previous = os.umask(0o022)
    os.umask(previous)
    yield
    os.umask(previous)


def modes(folder: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(folder.stat().st_mode)}
    for path in folder.rglob("*"):
        if not path.is_symlink():
            found[str(path.relative_to(folder))] = stat.S_IMODE(path.stat().st_mode)
    return found


@pytest.mark.usefixtures("_umask")
def test_make_private_tightens_an_old_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "logs").mkdir(parents=True)
    data.chmod(0o755)
    (data / "logs").chmod(0o755)
    (data / "journal.sqlite").write_bytes(b"x")
    (data / "journal.sqlite").chmod(0o644)
    (data / "logs" / "sas-desk.log").write_text("x")
    (data / "logs" / "sas-desk.log").chmod(0o640)
    (data / "already.sqlite").write_bytes(b"x")
    (data / "already.sqlite").chmod(0o600)
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    outside.chmod(0o644)
    (data / "link").symlink_to(outside)

    fixed = make_private(data)

    assert modes(data) == {
        ".": 0o700,
        "logs": 0o700,
        "journal.sqlite": 0o600,
        "logs/sas-desk.log": 0o600,
        "already.sqlite": 0o600,
    }
    assert sorted(p.name for p in fixed) == ["data", "journal.sqlite", "logs", "sas-desk.log"]
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644  # a link's target is not ours
    # and what is created afterwards is private too
    (data / "new.sqlite-wal").write_bytes(b"x")
    assert stat.S_IMODE((data / "new.sqlite-wal").stat().st_mode) == 0o600


@pytest.mark.usefixtures("_umask")
def test_a_missing_data_dir_is_created_private(tmp_path: Path) -> None:
    make_private(tmp_path / "a" / "b")
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700


def test_every_file_of_a_real_session_is_private(tmp_path: Path) -> None:
    """The app starts on the demo (journal, queues, outbox, logs), shows its
    window and exits: nothing in its data dir is readable by others."""
    data = tmp_path / "data"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    result = subprocess.run(
        [sys.executable, "-m", "sas_desk", "--data-dir", str(data), "--smoke"],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        umask=0o022,  # a usual desktop session's umask
    )
    assert result.returncode == 0, result.stderr
    found = modes(data)
    assert "journal.sqlite" in found
    assert any(name.startswith("logs/") for name in found), found
    loose = {name: oct(mode) for name, mode in found.items() if mode & 0o077}
    assert loose == {}
