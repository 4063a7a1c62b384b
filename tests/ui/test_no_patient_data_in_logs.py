"""Issue 15: the logs never carry a patient's fields nor a position, even at
DEBUG (``-v``).  A call is typed from the keyboard (callback number, an
address looked up in the geocoder, GPS coordinates, a note, an access code),
transmitted, and every log record of the whole process is searched."""

from __future__ import annotations

import logging

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from sas_desk.ui.keys import press, type_text
from tests.ui.conftest import Env, until
from tests.ui.test_call_sheet import make_sheet

pytestmark = [pytest.mark.gui, pytest.mark.asyncio(loop_scope="session")]

PHONE = "06 12 34 56 78"
ADDRESS = "12 rue de la Rép"
NOTE = "Sueurs froides, douleur irradiant au bras gauche"
ACCESS = "4521B"
FORBIDDEN = (
    PHONE, "0612345678", "+33612345678", "612345678",
    "rue de la R", "rue+de+la", "rue%20de", "%C3%A9", "Sueurs", "bras gauche", ACCESS,
)  # fmt: skip


async def test_a_typed_and_transmitted_call_leaves_no_patient_field_in_the_logs(
    qtbot: QtBot, env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # what -v writes
    sheet = await make_sheet(qtbot, env)
    type_text(sheet.callback, PHONE)
    sheet.location.setFocus()
    type_text(sheet.location, ADDRESS)
    await until(lambda: any("69001 Lyon" in s for s in sheet._loc_model.stringList()))
    sheet._on_place_chosen(next(s for s in sheet._loc_model.stringList() if "69001 Lyon" in s))
    assert sheet.dossier.location.lat is not None  # geocoded: a position exists to leak
    position = f"{sheet.dossier.location.lat:.4f}"
    sheet.access_code.setFocus()
    type_text(sheet.access_code, ACCESS)
    sheet.motive.setFocus()
    type_text(sheet.motive, "M03.06")
    type_text(sheet.age, "67")
    type_text(sheet.priority, "2")
    sheet.branch.setFocus()
    type_text(sheet.branch, "a")
    sheet.note.setFocus()
    type_text(sheet.note, NOTE)
    press(sheet.note, Qt.Key.Key_Return)
    fired: list[str] = []
    sheet.transmitted.connect(fired.append)
    sheet.callback.setFocus()
    qtbot.keyClick(sheet.callback, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    await until(lambda: bool(fired))
    assert await env.journal.flush(timeout=5)
    assert sheet.dossier.caller.callback == "+33612345678"  # the call really went through
    # the geocoder's request was logged (httpx, DEBUG): the search below covers it
    assert any(r.name == "httpx" and "/search" in r.getMessage() for r in caplog.records)
    text = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    words = (*FORBIDDEN, position)
    leaks = {word: line for word in words for line in text.splitlines() if word in line}
    assert leaks == {}
