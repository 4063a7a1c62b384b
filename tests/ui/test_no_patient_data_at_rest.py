"""Issue 15: after a scripted session of the real app (a call typed from the
keyboard: callback number, patient's and caller's names, a note, then
transmitted into the embedded queues), every file of the data dir is
private (0600, directories 0700) and none holds a patient field in the
clear — the journal, the outbox and the queue file are sealed, the logs
never carry them (strings search over the raw bytes, UTF-8 and
UTF-16)."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt

from sas_desk.app import RunOptions, run, setup_logging
from sas_desk.services.config import Config
from sas_desk.services.private import make_private
from sas_desk.ui.keys import press, type_text
from tests.ui.conftest import until

pytestmark = [pytest.mark.gui]

PHONE = "06 12 34 56 78"
LAST, FIRST, CALLER = "Quintanilla", "Bérengère", "Ysolde Vasquez"
NOTE = "Sueurs froides, douleur irradiant au bras gauche"
WORDS = (PHONE, "0612345678", "612345678", LAST, FIRST, "Ysolde", "Sueurs froides", "bras gauche")


def found_in(folder: Path) -> dict[str, list[str]]:
    hits: dict[str, list[str]] = {}
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        raw = path.read_bytes()
        for word in WORDS:
            if word.encode("utf-8") in raw or word.encode("utf-16-le") in raw:
                hits.setdefault(str(path.relative_to(folder)), []).append(word)
    return hits


def test_a_typed_call_leaves_no_patient_field_in_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    previous = os.umask(0o022)  # a usual desktop session's: the app tightens it
    seen: dict[str, Any] = {}

    async def on_ready(window: Any) -> None:
        sheet = window.current_sheet()
        assert sheet is not None
        sheet.callback.setFocus()
        type_text(sheet.callback, PHONE)
        sheet.last_name.setFocus()
        type_text(sheet.last_name, LAST)
        sheet.first_name.setFocus()
        type_text(sheet.first_name, FIRST)
        sheet.caller_name.setFocus()
        type_text(sheet.caller_name, CALLER)
        sheet.note.setFocus()
        type_text(sheet.note, NOTE)
        press(sheet.note, Qt.Key.Key_Return)
        await until(lambda: bool(sheet.dossier.notes), 5)
        # transmitted: the dossier goes into the embedded queue file too
        sheet.location.setFocus()
        type_text(sheet.location, "45.7640, 4.8357")
        sheet.motive.setFocus()
        type_text(sheet.motive, "M03.06")
        type_text(sheet.priority, "2")
        sheet.branch.setFocus()
        type_text(sheet.branch, "s")
        sheet.transmit()
        case_id = sheet.dossier.case_id
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        queued = None
        while queued is None and loop.time() < deadline:  # through the outbox, on its thread
            queued = await window.queue_client.dossier(case_id)
        seen["queued"] = (queued.patient.last_name, queued.caller.callback) if queued else None
        assert await window.journal.flush(timeout=10)
        stored = await window.journal.load(case_id)
        seen["stored"] = (stored.patient.last_name, stored.notes[0].text) if stored else None
        window.close()

    root = logging.getLogger()
    kept, level = list(root.handlers), root.level
    for handler in kept:  # another in-process run's log file: this run logs into its data dir
        if getattr(handler, "_sas_desk", False):
            root.removeHandler(handler)
    try:
        make_private(data)  # what the command line does before run()
        setup_logging(data, verbose=True)  # what -v writes, into the data dir's log
        config = Config(data_dir=data, role="ARM", workstation="POSTE-AT-REST", operator="arm.t")
        assert run(config, RunOptions(on_ready=on_ready)) == 0
    finally:
        os.umask(previous)
        for handler in list(root.handlers):
            if handler not in kept:
                root.removeHandler(handler)
                handler.close()
        for handler in kept:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)
    assert seen["stored"] == (LAST, NOTE)  # typed, saved, and read back with the key
    assert seen["queued"] is not None and seen["queued"][0] == LAST  # in the queue file, sealed
    names = {str(p.relative_to(data)) for p in data.rglob("*")}
    assert {"journal.sqlite", "queues.sqlite"} <= names, names
    assert any(n.startswith("logs/") for n in names), names
    assert found_in(data) == {}
    loose = {
        str(p.relative_to(data)): oct(stat.S_IMODE(p.stat().st_mode))
        for p in data.rglob("*")
        if stat.S_IMODE(p.stat().st_mode) & 0o077
    }
    assert loose == {}
    key = data.parent / "data.key"  # the tests' keyring keeps nothing: the key file
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
