"""The call sheet, driven from the keyboard as an ARM does, on the real
journal and the real geocoding simulator."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from sas_desk.models.dossier import EventKind, Status
from sas_desk.services import clock
from sas_desk.services.geo.resolver import LocationResolver
from sas_desk.ui.call_sheet import CallSheet
from sas_desk.ui.keys import press, type_text
from tests.ui.conftest import Env, until

pytestmark = [pytest.mark.gui, pytest.mark.asyncio(loop_scope="session")]


async def make_sheet(qtbot: QtBot, env: Env, resolver: LocationResolver | None = None) -> CallSheet:
    dossier = env.desk.new_call()
    sheet = CallSheet(env.desk, resolver or env.resolver, dossier)
    qtbot.addWidget(sheet)
    sheet.resize(1000, 800)
    sheet.show()
    sheet.activateWindow()
    await until(sheet.isActiveWindow)
    sheet.focus_first()
    return sheet


def fill_valid(sheet: CallSheet) -> None:
    type_text(sheet.callback, "06 12 34 56 78")
    sheet.location.setFocus()
    type_text(sheet.location, "45.7640, 4.8357")
    sheet.motive.setFocus()
    type_text(sheet.motive, "M03.06")
    type_text(sheet.age, "67")
    type_text(sheet.priority, "2")


async def test_new_call_stamps_reception_and_is_journaled(qtbot: QtBot, env: Env) -> None:
    before = clock.now()
    sheet = await make_sheet(qtbot, env)
    d = sheet.dossier
    assert d.received_at is not None
    assert before - timedelta(seconds=1) <= d.received_at <= clock.now()
    assert re.fullmatch(r"fr\.health\.samu690\.DRFR1569A\d{10}", d.case_id)
    assert d.received_at.strftime("%H:%M:%S") in sheet.title.text()
    assert await env.journal.flush(timeout=5)
    events = await env.journal.events(d.case_id)
    assert [e.kind for e in events] == [EventKind.CREATED]
    assert events[0].actor.workstation == "POSTE-TEST"


async def test_each_key_lands_in_the_row_that_has_the_focus(qtbot: QtBot, env: Env) -> None:
    """Issue 14 §1: age, Tab, f, Tab, 1, Tab, s — every key in its own row."""
    sheet = await make_sheet(qtbot, env)
    sheet.age.setFocus()
    operator("67", Qt.Key.Key_Tab, "f", Qt.Key.Key_Tab, "1", Qt.Key.Key_Tab, "s")
    d = sheet.dossier
    assert (d.patient.age, d.patient.sex, d.priority) == ("P67Y", "F", "P1")
    assert d.branch is not None and d.branch.value == "SNP"
    assert sheet.caller_type.currentData() == ""  # "Appelant" untouched
    assert QApplication.focusWidget() is sheet.branch


async def test_the_row_with_the_focus_is_visibly_framed(qtbot: QtBot, env: Env) -> None:
    sheet = await make_sheet(qtbot, env)
    sheet.age.setFocus()
    plain = sheet.priority.grab().toImage()
    operator(Qt.Key.Key_Tab, Qt.Key.Key_Tab)  # age → sex → priority
    assert QApplication.focusWidget() is sheet.priority
    framed = sheet.priority.grab().toImage()
    assert framed != plain
    edge = framed.pixelColor(1, framed.height() // 2)
    assert edge.blue() > 150 and edge.red() < 100, edge.name()  # the blue focus frame
    operator(Qt.Key.Key_Tab)
    assert sheet.priority.grab().toImage() == plain  # gone once the focus left


async def test_a_new_sheet_has_no_priority_and_no_branch_until_picked(
    qtbot: QtBot, env: Env
) -> None:
    """Issue 14 §2: nothing preselected; a sheet cannot leave without a priority."""
    sheet = await make_sheet(qtbot, env)
    assert sheet.priority.value() == "" and sheet.branch.value() == ""
    assert not any(b.isChecked() for b in sheet.priority._buttons.values())
    type_text(sheet.callback, "06 12 34 56 78")
    sheet.location.setFocus()
    type_text(sheet.location, "45.7640, 4.8357")
    sheet.motive.setFocus()
    type_text(sheet.motive, "M03.06")
    sheet.branch.setFocus()
    type_text(sheet.branch, "s")
    sheet.callback.setFocus()
    press(sheet.callback, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert sheet.dossier.status is Status.DRAFT
    assert "Priorité manquante" in sheet.messages["priority"].text()
    assert sheet.priority.hasFocus()  # straight to what is missing
    operator("1")
    press(sheet.priority, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert sheet.dossier.status is Status.TRANSMITTED
    assert sheet.dossier.priority == "P1"


async def test_tab_order_is_keyboard_first(qtbot: QtBot, env: Env) -> None:
    sheet = await make_sheet(qtbot, env)
    order = [sheet.callback]
    widget = sheet.callback
    for _ in range(16):
        widget = widget.nextInFocusChain()
        while not (widget.focusPolicy() & Qt.FocusPolicy.TabFocus) or not widget.isVisible():
            widget = widget.nextInFocusChain()
        order.append(widget)
    names = [w.objectName() for w in order]
    assert names[:18] == [
        "callback",
        "location",
        "floor",
        "access_code",
        "interphone",
        "motive",
        "age",
        "sex",
        "priority",
        "branch",
        "last_name",  # identity once the urgent part is typed (issue 14)
        "first_name",
        "birth_date",
        "caller_type",
        "caller_name",
        "language",
        "note",
    ]


async def test_every_keystroke_goes_to_the_journal(qtbot: QtBot, env: Env) -> None:
    sheet = await make_sheet(qtbot, env)
    type_text(sheet.callback, "06 12 3")
    assert sheet.dossier.inputs["callback"] == "06 12 3"
    assert await env.journal.flush(timeout=5)
    stored = await env.journal.load(sheet.dossier.case_id)
    assert stored is not None
    assert stored.inputs["callback"] == "06 12 3"


async def test_phone_validation_is_inline_and_clears(qtbot: QtBot, env: Env) -> None:
    sheet = await make_sheet(qtbot, env)
    type_text(sheet.callback, "06 12 34")
    assert not sheet.messages["callback"].isVisible()  # nothing shouted while typing
    sheet.callback.editingFinished.emit()
    assert "10" in sheet.messages["callback"].text()
    assert sheet.messages["callback"].isVisible()
    type_text(sheet.callback, " 56 78")
    assert not sheet.messages["callback"].isVisible()
    assert sheet.dossier.caller.callback == "+33612345678"


def operator(*strokes: str | Qt.Key) -> None:
    """Type as the operator does: every stroke goes where a keyboard's would,
    to the open popup (a list of suggestions) if any, else to the widget with
    the focus (text is typed, a key is pressed)."""
    for stroke in strokes:
        widget = QApplication.activePopupWidget() or QApplication.focusWidget()
        assert widget is not None
        if isinstance(stroke, str):
            type_text(widget, stroke)
        else:
            press(widget, stroke)


async def test_priority_and_branch_by_single_keys(qtbot: QtBot, env: Env) -> None:
    sheet = await make_sheet(qtbot, env)
    sheet.priority.setFocus()
    press(sheet.priority, Qt.Key.Key_0)
    type_text(sheet.priority, "0")
    assert sheet.dossier.priority == "P0"
    assert QApplication.focusWidget() is sheet.priority  # a pick does not move on
    press(sheet.priority, Qt.Key.Key_Tab)
    assert QApplication.focusWidget() is sheet.branch
    type_text(sheet.branch, "s")
    assert sheet.dossier.branch is not None and sheet.dossier.branch.value == "SNP"
    sheet.priority.setFocus()
    type_text(sheet.priority, "n")
    assert sheet.dossier.priority == "NR"
    sheet.sex.setFocus()
    type_text(sheet.sex, "f")
    assert sheet.dossier.patient.sex == "F"


@pytest.mark.parametrize(
    ("key", "perimeter", "attribution"),
    [("a", "AMU", "DRM.MRU.MU"), ("s", "SNP", "DRM.MRL.MG"), ("d", "SNP", "DRM.SPE.DENT")],
)
async def test_transmit_sets_perimeter_and_attribution(
    qtbot: QtBot, env: Env, key: str, perimeter: str, attribution: str
) -> None:
    sheet = await make_sheet(qtbot, env)
    fill_valid(sheet)
    sheet.branch.setFocus()
    type_text(sheet.branch, key)
    if key == "d":
        sheet.dental_reason.setCurrentIndex(sheet.dental_reason.findData("DENT.DOULEUR"))
    fired: list[str] = []
    sheet.transmitted.connect(fired.append)
    sheet.callback.setFocus()
    qtbot.keyClick(sheet.callback, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    await until(lambda: bool(fired))
    d = sheet.dossier
    assert fired == [d.case_id]
    assert d.status is Status.TRANSMITTED
    assert (d.perimeter, d.attribution) == (perimeter, attribution)
    assert d.caller.callback == "+33612345678"
    assert sheet.callback.isReadOnly()
    assert attribution in sheet.summary.text()
    assert await env.journal.flush(timeout=5)
    events = await env.journal.events(d.case_id)
    assert events[-1].kind is EventKind.TRANSMITTED
    assert events[-1].data["attribution"] == attribution
    stored = await env.journal.load(d.case_id)
    assert stored is not None and stored.status is Status.TRANSMITTED


def ctrl_enter() -> None:
    widget = QApplication.focusWidget()
    assert widget is not None
    press(widget, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)


async def test_an_unlocated_place_is_sent_only_once_confirmed_and_logged(
    qtbot: QtBot, env: Env
) -> None:
    """Issue 14 §4: « Trifouillis-les-Oies », grey « Lieu non localisé », P1."""
    sheet = await make_sheet(qtbot, env)
    operator("06 12 34 56 78", Qt.Key.Key_Tab, "Trifouillis-les-Oies")
    sheet.motive.setFocus()
    operator("M03.06", Qt.Key.Key_Tab, "67", Qt.Key.Key_Tab, "m", Qt.Key.Key_Tab, "1")
    operator(Qt.Key.Key_Tab, "a")
    assert sheet.place_label.text() == "Lieu non localisé"
    ctrl_enter()
    d = sheet.dossier
    assert d.status is Status.DRAFT
    assert sheet.confirm_bar.isVisible()
    assert "Lieu non localisé" in sheet.confirm_text.text()
    assert sheet.confirm_button.hasFocus()
    ctrl_enter()  # a second Ctrl+Entrée is no answer
    assert d.status is Status.DRAFT
    operator(Qt.Key.Key_Escape)  # « Corriger »: back to the place
    assert not sheet.confirm_bar.isVisible() and sheet.location.hasFocus()
    assert d.status is Status.DRAFT
    ctrl_enter()
    assert sheet.confirm_button.hasFocus()
    operator(Qt.Key.Key_Return)  # « Transmettre quand même »
    assert d.status is Status.TRANSMITTED
    assert not sheet.confirm_bar.isVisible()
    assert await env.journal.flush(timeout=5)
    event = (await env.journal.events(d.case_id))[-1]
    assert event.kind is EventKind.TRANSMITTED
    assert list(event.data["confirmed"]) == ["unlocated"]
    assert "Lieu non localisé" in event.data["confirmed"]["unlocated"]


@pytest.mark.parametrize(
    ("place", "callback", "priority", "key", "text"),
    [
        ("Grenoble", "06 12 34 56 78", "2", "out_of_territory", "hors du territoire"),
        ("45.7640, 4.8357", "", "0", "no_callback", "P0 sans numéro de rappel"),
    ],
)
async def test_out_of_territory_or_urgent_without_callback_asks_confirmation(
    qtbot: QtBot, env: Env, place: str, callback: str, priority: str, key: str, text: str
) -> None:
    sheet = await make_sheet(qtbot, env)
    operator(callback, Qt.Key.Key_Tab, place)
    sheet.motive.setFocus()
    operator("M03.06", Qt.Key.Key_Tab, "67", Qt.Key.Key_Tab, Qt.Key.Key_Tab, priority)
    operator(Qt.Key.Key_Tab, "a")
    ctrl_enter()
    assert sheet.dossier.status is Status.DRAFT
    assert text in sheet.confirm_text.text()
    type_text(sheet.note, "x")  # the sheet changed: the question goes, to be asked again
    assert not sheet.confirm_bar.isVisible()
    sheet.note.clear()
    sheet.dossier.inputs["note"] = ""
    ctrl_enter()
    operator(Qt.Key.Key_Enter)
    assert sheet.dossier.status is Status.TRANSMITTED
    assert await env.journal.flush(timeout=5)
    event = (await env.journal.events(sheet.dossier.case_id))[-1]
    assert list(event.data["confirmed"]) == [key]


async def test_incomplete_sheet_is_not_transmitted(qtbot: QtBot, env: Env) -> None:
    sheet = await make_sheet(qtbot, env)
    type_text(sheet.callback, "06 12 34 56 78")
    sheet.transmit()
    d = sheet.dossier
    assert d.status is Status.DRAFT
    assert "Impossible de transmettre" in sheet.summary.text()
    for key in ("location", "motive", "branch"):
        assert sheet.messages[key].isVisible(), key
    assert sheet.location.hasFocus()  # first problem gets the focus
    assert not sheet.callback.isReadOnly()


async def test_the_footer_follows_the_corrections(qtbot: QtBot, env: Env) -> None:
    """Issue 14 §9: « Numéro de rappel invalide » stayed in the footer after
    the number was corrected."""
    sheet = await make_sheet(qtbot, env)
    fill_valid(sheet)
    sheet.branch.setFocus()
    operator("a")
    sheet.callback.setFocus()
    sheet.callback.selectAll()
    operator("06 12 34")
    ctrl_enter()
    assert sheet.dossier.status is Status.DRAFT
    assert "Numéro de rappel invalide" in sheet.summary.text()
    operator(" 56")
    assert "Numéro de rappel invalide" in sheet.summary.text()  # still wrong: still said
    operator(" 78")
    assert not sheet.summary.isVisible() and sheet.summary.text() == ""
    ctrl_enter()
    assert sheet.dossier.status is Status.TRANSMITTED


async def test_pasted_position_and_aml(qtbot: QtBot, env: Env) -> None:
    sheet = await make_sheet(qtbot, env)
    sheet.location.setFocus()
    type_text(sheet.location, "45,7640 4,8357")
    loc = sheet.dossier.location
    assert (loc.lat, loc.lon) == (45.764, 4.8357)
    assert loc.insee == "69123" and loc.city == "Lyon"
    assert "45.76400" in sheet.place_label.text()
    sheet.location.selectAll()
    type_text(sheet.location, 'A"ML=1;lt=+45.76720;lg=+004.88010;rd=15;top=20261125160000')
    assert loc.is_aml and loc.insee == "69266"  # Villeurbanne
    assert "AML" in sheet.place_label.text()
    sheet.location.selectAll()
    type_text(sheet.location, "4.8357, 45.7640")
    sheet.location.editingFinished.emit()
    assert "inversées" in sheet.messages["location"].text()
    assert loc.lat is None


@pytest.mark.parametrize(
    ("rd", "precision", "shown"),
    [
        ("12", "EXACTE", "± 12 m"),
        ("1500", "VILLE", "± 1\u202f500 m"),
        ("", "INCONNUE", "rayon inconnu"),
    ],
)
async def test_an_aml_position_is_as_precise_as_its_radius(
    qtbot: QtBot, env: Env, rd: str, precision: str, shown: str
) -> None:
    """Issue 14 §10: rd=1500 was shown as « précision exacte »."""
    sheet = await make_sheet(qtbot, env)
    sheet.location.setFocus()
    radius = f";rd={rd}" if rd else ""
    operator(f'A"ML=1;lt=+45.76720;lg=+004.88010{radius};top=20261125160000')
    loc = sheet.dossier.location
    assert loc.is_aml and loc.precision == precision
    assert loc.radius_m == (float(rd) if rd else None)
    label = sheet.place_label.text()
    assert shown in label and f"précision {precision.lower()}" in label
    sheet.location.selectAll()
    operator("rue inconnue")  # the text no longer is the position: nothing kept
    assert loc.precision == "" and loc.radius_m is None and loc.lat is None


async def test_commune_typed_in_full_or_by_insee_code(qtbot: QtBot, env: Env) -> None:
    sheet = await make_sheet(qtbot, env)
    sheet.location.setFocus()
    type_text(sheet.location, "38185")
    loc = sheet.dossier.location
    assert (loc.city, loc.insee, loc.precision) == ("Grenoble", "38185", "VILLE")
    sheet.location.selectAll()
    type_text(sheet.location, "saint-etienne")
    assert loc.insee == "42218"


async def test_address_suggestions_come_from_the_geocoder(qtbot: QtBot, env: Env) -> None:
    sheet = await make_sheet(qtbot, env)
    sheet.location.setFocus()
    type_text(sheet.location, "12 rue de la Rép")
    await until(lambda: any("69001 Lyon" in s for s in sheet._loc_model.stringList()))
    choice = next(s for s in sheet._loc_model.stringList() if "69001 Lyon" in s)
    sheet._on_place_chosen(choice)
    loc = sheet.dossier.location
    assert loc.insee == "69123" and loc.precision == "ADRESSE"
    assert loc.number == "12" and loc.lat is not None
    assert "précision adresse" in sheet.place_label.text()


async def test_geocoder_down_still_offers_communes(qtbot: QtBot, env: Env) -> None:
    import httpx

    from sas_desk.services.geo.ban import BanGeocoder

    async with httpx.AsyncClient() as client:
        dead = LocationResolver(
            env.resolver.index, BanGeocoder("http://127.0.0.1:9", client, timeout=1.0)
        )
        sheet = await make_sheet(qtbot, env, dead)
        sheet.location.setFocus()
        type_text(sheet.location, "Villeurb")
        await until(lambda: sheet.messages["location"].isVisible())
        assert (
            "injoignable" in sheet.messages["location"].text().lower()
            or "indisponible" in sheet.messages["location"].text().lower()
        )
        assert any("Villeurbanne" in s for s in sheet._loc_model.stringList())
        assert sheet.location.text() == "Villeurb"  # nothing typed is touched


async def test_motive_type_ahead_on_code_and_label(qtbot: QtBot, env: Env) -> None:
    sheet = await make_sheet(qtbot, env)
    sheet.motive.setFocus()
    type_text(sheet.motive, "douleur thor")
    assert sheet._motive_model.stringList()[0].startswith("M03.06")
    sheet.motive.clear()
    type_text(sheet.motive, "M03.1")
    assert all(s.startswith("M03.1") for s in sheet._motive_model.stringList())
    sheet.motive.clear()
    type_text(sheet.motive, "m03.06")
    assert sheet.dossier.motive_code == "M03.06"
    assert "Douleur thoracique" in sheet.motive_label.text()


@pytest.mark.parametrize("key", [Qt.Key.Key_Tab, Qt.Key.Key_Return])
async def test_the_only_motive_suggestion_is_taken_by_tab_or_enter(
    qtbot: QtBot, env: Env, key: Qt.Key
) -> None:
    """Issue 14 §3: « fievre » has one suggestion (M03.14); Tab or Entrée takes it."""
    sheet = await make_sheet(qtbot, env)
    sheet.motive.setFocus()
    operator("fievre")
    assert len(sheet._motive_model.stringList()) == 1
    operator(key)
    assert sheet.dossier.motive_code == "M03.14"
    assert sheet.motive.text().startswith("M03.14 — ")
    assert not sheet.messages["motive"].isVisible()
    if key == Qt.Key.Key_Tab:
        assert QApplication.focusWidget() is sheet.age
    # two suggestions or more: the operator still chooses
    sheet.motive.setFocus()
    sheet.motive.selectAll()
    operator("douleur")
    assert len(sheet._motive_model.stringList()) > 1
    operator(Qt.Key.Key_Tab)
    assert sheet.dossier.motive_code == ""
    assert "Choisissez un motif" in sheet.messages["motive"].text()


async def test_notes_are_timestamped_and_an_unfinished_note_is_kept(qtbot: QtBot, env: Env) -> None:
    sheet = await make_sheet(qtbot, env)
    sheet.note.setFocus()
    type_text(sheet.note, "Sueurs, douleur irradiant au bras gauche")
    press(sheet.note, Qt.Key.Key_Return)
    assert len(sheet.dossier.notes) == 1
    note = sheet.dossier.notes[0]
    assert note.role == "ARM" and note.text.startswith("Sueurs")
    assert sheet.notes.item(0).text().startswith(note.at.strftime("%H:%M:%S"))
    type_text(sheet.note, "Antécédent d'infar")
    assert sheet.dossier.inputs["note"] == "Antécédent d'infar"
    assert await env.journal.flush(timeout=5)
    stored = await env.journal.load(sheet.dossier.case_id)
    assert stored is not None and stored.inputs["note"] == "Antécédent d'infar"
    events = await env.journal.events(sheet.dossier.case_id)
    assert EventKind.NOTE_ADDED in [e.kind for e in events]


async def test_a_sheet_reopened_from_the_journal_shows_every_field(qtbot: QtBot, env: Env) -> None:
    sheet = await make_sheet(qtbot, env)
    type_text(sheet.callback, "06 12 34 5")  # invalid on purpose: kept as typed
    sheet.location.setFocus()
    type_text(sheet.location, "12 rue de la Rép")
    type_text(sheet.floor, "3e gauche")
    type_text(sheet.access_code, "4521B")
    sheet.motive.setFocus()
    type_text(sheet.motive, "douleur tho")
    type_text(sheet.age, "8 mois")
    sheet.priority.setFocus()
    type_text(sheet.priority, "1")
    type_text(sheet.branch, "a")
    sheet.note.setFocus()
    type_text(sheet.note, "note pas finie é à ç")
    assert await env.journal.flush(timeout=5)
    stored = await env.journal.load(sheet.dossier.case_id)
    assert stored is not None
    again = CallSheet(env.desk, env.resolver, stored)
    qtbot.addWidget(again)
    again.show()
    assert again.callback.text() == "06 12 34 5"
    assert again.location.text() == "12 rue de la Rép"
    assert again.floor.text() == "3e gauche"
    assert again.access_code.text() == "4521B"
    assert again.motive.text() == "douleur tho"
    assert again.age.text() == "8 mois"
    assert again.priority.value() == "P1"
    assert again.branch.value() == "AMU"
    assert again.note.text() == "note pas finie é à ç"
    assert again.messages["callback"].isVisible()  # still flagged after the restart


async def test_dental_branch_asks_for_the_dental_reason_and_warns_on_severity(
    qtbot: QtBot, env: Env
) -> None:
    sheet = await make_sheet(qtbot, env)
    assert sheet.dental_reason.isHidden()
    fill_valid(sheet)
    sheet.branch.setFocus()
    type_text(sheet.branch, "d")
    assert not sheet.dental_reason.isHidden()
    press(sheet.branch, Qt.Key.Key_Tab)
    assert sheet.dental_reason.hasFocus()  # next in the keyboard flow
    sheet.transmit()
    assert sheet.dossier.status is Status.DRAFT
    assert "Motif dentaire manquant" in sheet.messages["dental_reason"].text()
    sheet.dental_reason.setCurrentIndex(sheet.dental_reason.findData("DENT.CELLULITE"))
    assert "médecin (AMU)" in sheet.messages["dental_reason"].text()  # advice, not a block
    sheet.transmit()
    d = sheet.dossier
    assert d.status is Status.TRANSMITTED
    assert (d.attribution, d.dental_reason) == ("DRM.SPE.DENT", "DENT.CELLULITE")


async def test_p0_outside_amu_is_flagged_without_blocking(qtbot: QtBot, env: Env) -> None:
    sheet = await make_sheet(qtbot, env)
    sheet.priority.setFocus()
    type_text(sheet.priority, "0")
    type_text(sheet.branch, "s")
    assert "hors filière AMU" in sheet.messages["branch"].text()
    sheet.branch.setFocus()
    type_text(sheet.branch, "a")
    assert sheet.messages["branch"].text() == ""


async def test_a_chosen_button_shows_its_whole_label(qtbot: QtBot, env: Env) -> None:
    """Issue 14 §17: « P1 Prioritaire [1 » — the chosen label was clipped."""
    sheet = await make_sheet(qtbot, env)
    sheet.priority.setFocus()
    operator("1", Qt.Key.Key_Tab, "s")
    for picker, value in ((sheet.priority, "P1"), (sheet.branch, "SNP")):
        button = picker._buttons[value]
        assert button.isChecked()
        image = button.grab().toImage()
        # the white text painted on the coloured button ends before its edge
        text_columns = [
            x
            for x in range(2, image.width() - 2)
            for y in range(3, image.height() - 3)
            if min(image.pixelColor(x, y).getRgb()[:3]) > 200
        ]
        assert text_columns, button.text()
        assert max(text_columns) <= image.width() - 6, (button.text(), image.width())


async def test_earlier_calls_from_the_number_show_as_it_is_typed(qtbot: QtBot, env: Env) -> None:
    """Issue 14, what the room needs: the day's and the last 72 h's dossiers
    for that callback number."""
    earlier = env.desk.new_call()
    earlier.inputs["callback"] = "06 12 34 56 78"
    earlier.caller.callback = "+33612345678"
    earlier.motive_code, earlier.motive_label = "M03.06", "Problème médical; Douleur thoracique"
    earlier.location.city, earlier.location.insee = "Lyon", "69123"
    earlier.priority = "P1"
    env.desk.touch(earlier)
    other = env.desk.new_call()
    other.inputs["callback"] = "07 00 00 00 01"
    other.caller.callback = "+33700000001"
    env.desk.touch(other)
    assert await env.journal.flush(timeout=5)
    sheet = await make_sheet(qtbot, env)
    operator("06 12 34 56 7")
    assert not sheet.previous.isVisible()
    operator("8")
    await until(sheet.previous.isVisible)
    text = sheet.previous.text()
    assert "1 appel de ce numéro en 72 h" in text
    assert f"aujourd'hui à {earlier.received_at:%H:%M}" in text  # type: ignore[str-format]
    assert "P1, Douleur thoracique, Lyon" in text
    operator(Qt.Key.Key_Backspace)  # no longer a whole number: nothing shown
    assert not sheet.previous.isVisible()
