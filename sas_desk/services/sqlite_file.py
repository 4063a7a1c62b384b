"""Opening a local SQLite file of ours that sqlite-utils works on: WAL, a
schema versioned with ``PRAGMA user_version`` and ordered migrations, and a
damaged or too-new file handed to the caller to set aside before a fresh one
is made (the directory re-syncs, the rosters keep a copy)."""

from __future__ import annotations

import logging
import shutil
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where a database is opened: sqlite-utils imports numpy
    import sqlite_utils  # when present (~0.15 s), off the window's start-up path

log = logging.getLogger("sas_desk.sqlite")

Migration = Callable[["sqlite_utils.Database"], None]


def connect(path: Path | None, what: str, *, synchronous: str = "") -> sqlite_utils.Database:
    """A connection usable from any thread (the caller serialises), in
    autocommit mode; ``None`` for an in-memory database."""
    import sqlite_utils

    target = ":memory:" if path is None else str(path)
    conn = sqlite3.connect(target, timeout=5.0, isolation_level=None, check_same_thread=False)
    if path is not None:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            if synchronous:
                conn.execute(f"PRAGMA synchronous={synchronous}")
        except sqlite3.DatabaseError as exc:
            log.warning("%s: cannot set the journal mode (%s)", what, exc)
    return sqlite_utils.Database(conn)


def unusable(db: sqlite_utils.Database, schema_version: int) -> str | None:
    """Why the file cannot be used (damaged, or written by a newer version)."""
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        check = db.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        return str(exc)
    if check != "ok":
        return f"quick_check: {check}"
    if version > schema_version:
        return f"schema {version} newer than {schema_version}"
    return None


def migrate(db: sqlite_utils.Database, migrations: Sequence[Migration], what: str) -> None:
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    for number, step in enumerate(migrations[version:], start=version + 1):
        with db.atomic():
            step(db)
            db.execute(f"PRAGMA user_version = {number}")
        log.info("%s migrated to schema %d", what, number)


def open_versioned(
    path: Path | None,
    migrations: Sequence[Migration],
    *,
    what: str,
    set_aside: Callable[[str], None],
    classify: Callable[[BaseException], Exception],
    synchronous: str = "",
) -> sqlite_utils.Database:
    """Open (or create) the file and bring its schema up to date; a file that
    cannot be used is passed to ``set_aside`` (with the reason) and replaced
    by a new one.  OS and SQLite errors become ``classify(exc)``."""
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise classify(exc) from exc
    try:
        db = connect(path, what, synchronous=synchronous)
        why = unusable(db, len(migrations))
        if why is not None:
            db.close()
            set_aside(why)
            db = connect(path, what, synchronous=synchronous)
        migrate(db, migrations, what)
    except (sqlite3.Error, OSError) as exc:
        raise classify(exc) from exc
    return db


def is_damaged(exc: BaseException) -> bool:
    """A SQLite error saying the file itself is unusable (not busy, not the disk)."""
    text = str(exc).lower()
    return isinstance(exc, sqlite3.DatabaseError) and any(
        word in text for word in ("not a database", "malformed", "corrupt", "encrypted")
    )


def move_aside(path: Path, now: datetime) -> Path:
    """Rename a damaged file (and its ``-wal``/``-shm``) to
    ``<name>.endommage-<stamp>`` beside it, for support to look at; the
    caller then creates a fresh one.  ``OSError`` when it cannot be moved."""
    stamp = now.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.endommage-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.endommage-{stamp}-{n}")
        n += 1
    shutil.move(str(path), str(target))
    for suffix in ("-wal", "-shm"):
        side = Path(str(path) + suffix)
        if side.exists():
            shutil.move(str(side), str(target) + suffix)
    log.error("%s was damaged; moved to %s", path, target)
    return target
