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
# the identity fields (issue 14): patient's name, first name, birth date, caller's name
LAST, FIRST, BORN, CALLER = "Quintanilla", "Bérengère", "17/09/1948", "Ysolde Quintanilla"
FORBIDDEN = (
    PHONE, "0612345678", "+33612345678", "612345678",
    "rue de la R", "rue+de+la", "rue%20de", "%C3%A9", "Sueurs", "bras gauche", ACCESS,
    "Quintanilla", "Bérengère", "rengère", "17/09/1948", "1948-09-17", "Ysolde",
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
    sheet.last_name.setFocus()
    type_text(sheet.last_name, LAST)
    sheet.first_name.setFocus()
    type_text(sheet.first_name, FIRST)
    sheet.birth_date.setFocus()
    type_text(sheet.birth_date, BORN)
    sheet.caller_name.setFocus()
    type_text(sheet.caller_name, CALLER)
    assert sheet.dossier.patient.birth_date == "1948-09-17"  # typed, so there is a date to leak
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
