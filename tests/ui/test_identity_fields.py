"""Issue 14, « what the room needs »: the patient's and the caller's identity
on the sheet, typed from the keyboard in Tab order; the birth date gives the
age; all of it in the RS-EDA export (``patient.identity``,
``initialAlert.caller``)."""

from __future__ import annotations

from datetime import date

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from sas_desk.models.rseda import to_rseda
from sas_desk.models.validation import Age, age_agrees, age_on, parse_birth_date
from tests.ui.conftest import Env, until
from tests.ui.test_call_sheet import ctrl_enter, fill_valid, make_sheet, operator

pytestmark = [pytest.mark.gui, pytest.mark.asyncio(loop_scope="session")]


async def test_birth_date_rules() -> None:
    today = date(2026, 12, 7)
    assert parse_birth_date("12/03/1961", today) == date(1961, 3, 12)
    assert parse_birth_date("12031961", today) == date(1961, 3, 12)
    assert parse_birth_date("12.03.61", today) == date(1961, 3, 12)
    assert parse_birth_date("3/4/24", today) == date(2024, 4, 3)
    assert age_on(date(1961, 3, 12), today) == Age(65, "Y")
    assert age_on(date(2026, 3, 12), today) == Age(8, "M")
    assert age_on(date(2026, 12, 1), today) == Age(6, "D")
    assert age_agrees(Age(65, "Y"), date(1961, 3, 12), today)
    assert not age_agrees(Age(40, "Y"), date(1961, 3, 12), today)
    with pytest.raises(ValueError):
        parse_birth_date("12/03/19", today, short_year=False)  # the year is being typed
    for bad in ("31/02/2000", "2027-01-01", "12/03/1850", "hier"):
        with pytest.raises(ValueError) as info:
            parse_birth_date(bad, today)
        assert "Date de naissance" in str(info.value)


async def test_identity_typed_in_tab_order_goes_to_the_rseda_export(qtbot: QtBot, env: Env) -> None:
    sheet = await make_sheet(qtbot, env)
    fill_valid(sheet)  # callback, location, motive, age 67, P2
    sheet.branch.setFocus()
    operator("a", Qt.Key.Key_Tab)  # AMU: the dental row stays hidden, skipped
    assert QApplication.focusWidget() is sheet.last_name
    operator("Lefèvre-Dupont", Qt.Key.Key_Tab, "Élise", Qt.Key.Key_Tab, "12/03/19")
    # half-typed, « 12/03/19 » is no birth date of 2019: nothing derived yet
    assert sheet.dossier.patient.birth_date == "" and sheet.age.text() == "67"
    operator("61")
    assert sheet.dossier.patient.birth_date == "1961-03-12"
    operator(Qt.Key.Key_Tab)
    today = sheet.desk._now().date()
    expected = age_on(date(1961, 3, 12), today)
    # leaving the field, the age follows the birth date (one age on the sheet)
    assert sheet.age.text() == expected.display()
    assert sheet.dossier.patient.age == expected.iso
    assert sheet.dossier.inputs["age"] == expected.display()  # journaled as typed
    assert QApplication.focusWidget() is sheet.caller_type
    operator("Fa", Qt.Key.Key_Tab)  # « Famille ou proche du patient »
    assert QApplication.focusWidget() is sheet.caller_name
    operator("Marc Lefèvre", Qt.Key.Key_Tab)
    assert QApplication.focusWidget() is sheet.language
    operator("Ang", Qt.Key.Key_Tab)
    assert QApplication.focusWidget() is sheet.note
    d = sheet.dossier
    assert (d.patient.last_name, d.patient.first_name) == ("Lefèvre-Dupont", "Élise")
    assert d.patient.birth_date == "1961-03-12"
    assert (d.caller.caller_type, d.caller.name, d.caller.language) == (
        "FAMILLE",
        "Marc Lefèvre",
        "en",
    )
    # an age typed afterwards that contradicts the date is said, in French
    sheet.age.selectAll()
    sheet.age.setFocus()
    operator("40", Qt.Key.Key_Tab)
    assert "ne correspond pas à la date de naissance" in sheet.messages["age"].text()
    sheet.age.setFocus()
    sheet.age.selectAll()
    operator("65", Qt.Key.Key_Tab)
    assert sheet.messages["age"].text() == ""
    fired: list[str] = []
    sheet.transmitted.connect(fired.append)
    ctrl_enter()
    await until(lambda: bool(fired))
    body = to_rseda(sheet.dossier)["createCaseHealth"]
    (patient,) = body["patient"]
    identity = patient["identity"]
    assert identity["strictFeatures"]["birthDate"] == "1961-03-12"
    names = identity["nonStrictFeatures"]
    assert (names["lastName"], names["firstName"]) == ("Lefèvre-Dupont", "Élise")
    caller = body["initialAlert"]["caller"]
    assert caller["detailedName"]["complete"] == "Marc Lefèvre"
    assert (caller["type"], caller["language"]) == ("FAMILLE", "en")
    # read-only once transmitted
    assert sheet.last_name.isReadOnly() and sheet.birth_date.isReadOnly()
    assert not sheet.language.isEnabled()


async def test_identity_comes_back_after_a_restart(qtbot: QtBot, env: Env) -> None:
    sheet = await make_sheet(qtbot, env)
    sheet.last_name.setFocus()
    operator("Martin", Qt.Key.Key_Tab, "Paul", Qt.Key.Key_Tab, "01/02/20", Qt.Key.Key_Tab)
    assert await env.journal.flush(timeout=5)
    (again,) = [d for d in await env.journal.unfinished() if d.case_id == sheet.dossier.case_id]
    from sas_desk.ui.call_sheet import CallSheet

    reopened = CallSheet(env.desk, env.resolver, again)
    qtbot.addWidget(reopened)
    assert (reopened.last_name.text(), reopened.first_name.text()) == ("Martin", "Paul")
    assert reopened.birth_date.text() == "01/02/20"
    assert again.patient.birth_date == "2020-02-01"  # a two-digit year, read once left
    assert reopened.age.text() == sheet.age.text() != ""
