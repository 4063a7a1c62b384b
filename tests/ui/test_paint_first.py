"""The window paints before the data key is read (issue 14, start-up): the
keyring may be slow or ask the desktop to unlock it.  The ARM's sheet is
there at once; what is typed before the key is kept in memory, never
written in the clear, and written sealed as soon as the key is read —
nothing typed is lost."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from sas_desk.app import RunOptions, run
from sas_desk.services import atrest
from sas_desk.services.config import Config
from sas_desk.ui.keys import type_text
from sas_desk.ui.main_window import MainWindow

pytestmark = [pytest.mark.gui]

NAME = "Quintanilla"


def _rows(journal: Path) -> int:
    with sqlite3.connect(journal) as db:
        return int(db.execute("SELECT count(*) FROM dossiers").fetchone()[0])


def test_keys_typed_before_the_data_key_are_kept_then_written_sealed(
    qapp: QApplication, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    real = atrest.data_key

    returned = threading.Event()

    def slow_key(data_dir: Path) -> atrest.DataKey:  # a keyring waiting for its unlock
        release.wait(10)
        returned.set()
        return real(data_dir)

    monkeypatch.setattr(atrest, "data_key", slow_key)
    made_on: list[str] = []  # where the cipher (cryptography's import) is made
    cipher_init = atrest.RecordCipher.__init__

    def record(self: atrest.RecordCipher, key: bytes) -> None:
        made_on.append(threading.current_thread().name)
        cipher_init(self, key)

    monkeypatch.setattr(atrest.RecordCipher, "__init__", record)
    config = Config(data_dir=tmp_path / "data", workstation="POSTE-01", role="ARM")
    seen: dict[str, Any] = {}

    def before_the_key() -> None:
        """Polled by a timer on the app's loop while the key is held back."""
        window = next(
            (w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow)), None
        )
        if window is None or not window.isVisible() or "typed" in seen:
            return
        sheet = window.current_sheet()
        seen["sheet_before_key"] = sheet is not None and not returned.is_set()
        if sheet is None:
            release.set()
            return
        type_text(sheet.last_name, NAME)
        seen["typed"] = sheet.dossier.case_id
        seen["pending"] = window.journal.pending_count
        seen["rows_before"] = _rows(config.journal_path)
        seen["clear_before"] = NAME.encode() in config.journal_path.read_bytes()
        release.set()

    poll = QTimer(interval=5)
    poll.timeout.connect(before_the_key)
    poll.start()

    async def on_ready(window: Any) -> None:
        poll.stop()
        assert await window.journal.flush(timeout=10)
        stored = await window.journal.load(seen["typed"])
        seen["stored_name"] = stored.patient.last_name if stored is not None else None
        window.close()

    try:
        assert run(config, RunOptions(on_ready=on_ready)) == 0
    finally:
        poll.stop()
        release.set()
    assert seen["sheet_before_key"] is True  # the sheet came with the first paint
    assert seen["pending"] >= 1 and seen["rows_before"] == 0  # in memory, not on disk
    assert seen["clear_before"] is False
    assert seen["stored_name"] == NAME  # written once the key was there
    raw = b"".join(p.read_bytes() for p in config.data_dir.rglob("*") if p.is_file())
    assert NAME.encode() not in raw  # sealed
    assert made_on and "MainThread" not in made_on  # off the GUI thread, which paints
