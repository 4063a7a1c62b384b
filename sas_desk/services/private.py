"""The workstation's data dir is private: the directory 0700, every file in
it 0600 (journal, outbox, queues, rosters, logs, crash reports), on a GP's
laptop at home as in the room.

:func:`make_private` is called once at start, before anything is written:
it sets the process umask to ``077`` (so every file and directory created
afterwards — SQLite's ``-wal``/``-shm`` files included — is private) and
tightens what an older version left readable by others.  A file it cannot
change is logged, never a reason not to start.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

__all__ = ["KEYRING_FR", "PRIVATE_UMASK", "make_private"]

log = logging.getLogger("sas_desk.private")

PRIVATE_UMASK = 0o077
#: how every notice about what the system keyring could not keep begins (the
#: window says them in one banner)
KEYRING_FR = "Trousseau système indisponible : "
_DIR_MODE = 0o700
_FILE_MODE = 0o600


def make_private(data_dir: Path) -> list[Path]:
    """Umask 077, *data_dir* created 0700, and every file under it 0600,
    every directory 0700 (symbolic links are left alone); returns the paths
    whose mode was tightened."""
    os.umask(PRIVATE_UMASK)
    fixed: list[Path] = []
    try:
        data_dir.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("data dir %s not created: %s", data_dir, exc.strerror)
        return fixed
    _tighten(data_dir, _DIR_MODE, fixed)
    for root, dirs, files in os.walk(data_dir, followlinks=False):
        for name in dirs:
            _tighten(Path(root) / name, _DIR_MODE, fixed)
        for name in files:
            _tighten(Path(root) / name, _FILE_MODE, fixed)
    if fixed:
        log.info("%d path(s) of the data dir made private (0700/0600)", len(fixed))
    return fixed


def _tighten(path: Path, mode: int, fixed: list[Path]) -> None:
    try:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            return
        if stat.S_IMODE(info.st_mode) & 0o077:
            path.chmod(mode)
            fixed.append(path)
    except OSError as exc:
        log.warning("could not make %s private: %s", path, exc.strerror)
