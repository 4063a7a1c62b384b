"""The slot search panel against the real simulator: directory synced from
its feed, vendors over loopback HTTP, booking pages booked for real."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QGuiApplication
from PySide6.QtTest import QTest
from pytestqt.modeltest import ModelTester
from pytestqt.qtbot import QtBot

from sas_desk.models.dossier import Actor, Branch, Dossier, EventKind, transmit
from sas_desk.models.queue import QueueName
from sas_desk.models.search import Band, SearchQuery, VendorState, Volunteer
from sas_desk.models.slots import ConsultationMode, SlotType
from sas_desk.services import clock
from sas_desk.services.fhir.service import SlotService, demo_sources
from sas_desk.services.queues.client import Outbox, QueueClient
from sas_desk.services.queues.sqlite import SqliteBackend
from sas_desk.simulator.server import Simulator
from sas_desk.ui.keys import press, type_text
from sas_desk.ui.offer_model import SortKey
from sas_desk.ui.slot_search import INTERRUPTED_FR, Booking, SlotSearchPanel, booking_url
from tests.ui.conftest import Env, open_window, until

pytestmark = [pytest.mark.gui, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def slots(
    simulator: Simulator, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[SlotService]:
    directory_url, vendors = await demo_sources(simulator.base_url)
    service = SlotService(
        tmp_path_factory.mktemp("directory") / "directory.sqlite",
        directory_url,
        vendors,
        now=clock.now,
    )
    await service.open()
    await service.sync()
    yield service
    await service.close()


class Browser:
    """The system browser, for tests: records the URLs opened; ``book``
    submits the vendor page's confirm form, as the operator would."""

    def __init__(self) -> None:
        self.opened: list[str] = []
        self.book = False
        self.tasks: list[asyncio.Task[None]] = []

    def __call__(self, url: QUrl) -> bool:
        self.opened.append(url.toString())
        if self.book:
            self.tasks.append(asyncio.get_running_loop().create_task(self._post(url.toString())))
        return True

    async def _post(self, url: str) -> None:
        async with httpx.AsyncClient() as client:
            page = await client.get(url)
            assert page.status_code == 200 and "Confirmer le rendez-vous" in page.text
            answer = await client.post(url)
            assert answer.status_code == 200 and "Rendez-vous confirmé" in answer.text


def make_panel(qtbot: QtBot, env: Env, service: SlotService, browser: Browser) -> SlotSearchPanel:
    panel = SlotSearchPanel(
        env.resolver, now=clock.now, desk=env.desk, open_url=browser, show_map=False
    )
    qtbot.addWidget(panel)
    panel.resize(1200, 800)
    panel.show()
    panel.set_source(service)
    return panel


def lyon(panel: SlotSearchPanel) -> None:
    panel.where.setFocus()
    type_text(panel.where, "Lyon")
    assert panel.place is not None and panel.place.insee == "69123"


async def test_progressive_fill_sas_first_vendor_row_and_keyboard(
    qtbot: QtBot, env: Env, slots: SlotService, qtmodeltester: ModelTester
) -> None:
    panel = make_panel(qtbot, env, slots, Browser())
    lyon(panel)
    assert panel.radius.value() == 5  # the Rhône's default radius
    counts: list[int] = []

    def grown(*_: object) -> None:
        if not counts or counts[-1] != panel.model.rowCount():
            counts.append(panel.model.rowCount())

    # rows come by insertions, or in one layout change when they land in many places
    panel.model.rowsInserted.connect(grown)
    panel.model.layoutChanged.connect(grown)
    press(panel.where, Qt.Key.Key_Return)  # Enter searches
    await until(lambda: panel.last_update is not None and panel.last_update.done, timeout=15)
    update = panel.last_update
    assert update is not None
    # the cards came in steps, as batches answered (on a loaded machine the
    # batches answered within one flush interval go in together: two at least)
    assert len(counts) >= 2 and counts[0] < counts[-1]
    assert panel.updates >= 2  # (as many as flush intervals the answers spread over)
    rows = panel.model.rows()
    assert len(rows) > 50
    assert panel.model.slot_count == sum(len(r.slots) for r in rows) > 1000
    sas = [r.offer.candidate.sas for r in rows]
    assert (
        sas.index(False) > 0 and all(sas[: sas.index(False)]) and not any(sas[sas.index(False) :])
    )
    firsts = [r.slots[0].start for r in rows if r.offer.candidate.sas]
    assert firsts == sorted(firsts)  # earliest slot first (within the SAS group)
    for name, status in update.vendors.items():
        assert status.state is VendorState.OK
        assert "a répondu" in panel.vendor_labels[name].text()
    assert "terminé" in panel.summary.text()
    qtmodeltester.check(panel.model)
    # keyboard: a card is current from the first batch on (it keeps its place
    # while cards are inserted above it); Home goes to the first, → moves the
    # slot cursor, ↓ the card
    assert panel.list.currentIndex().isValid()
    panel.list.setFocus()
    QTest.keyClick(panel.list, Qt.Key.Key_Home)
    assert panel.list.currentIndex().row() == 0
    QTest.keyClick(panel.list, Qt.Key.Key_Right)
    assert panel.slot_cursor == 1
    QTest.keyClick(panel.list, Qt.Key.Key_Down)
    assert panel.list.currentIndex().row() == 1 and panel.slot_cursor == 0


async def test_facets_and_sort_apply_at_once_on_what_is_loaded(
    qtbot: QtBot, env: Env, slots: SlotService
) -> None:
    panel = make_panel(qtbot, env, slots, Browser())
    lyon(panel)
    panel.start_search()
    await until(lambda: panel.last_update is not None and panel.last_update.done, timeout=15)
    all_slots = panel.model.slot_count
    now = clock.now()
    # the band of the soonest slot: "0-4 h" is empty at night, whatever the code
    soonest = min(s.start for r in panel.model.rows() for s in r.slots)
    band = Band.of(soonest, now)
    assert band is not None
    panel.band_buttons[band].setChecked(True)
    rows = panel.model.rows()
    assert 0 < panel.model.slot_count < all_slots
    assert all(Band.of(s.start, now) is band for r in rows for s in r.slots)
    panel.band_buttons[band].setChecked(False)
    panel.mode_buttons[ConsultationMode.HH].setChecked(True)
    assert all(ConsultationMode.HH in s.modes for r in panel.model.rows() for s in r.slots)
    assert "masqués par les filtres" in panel.summary.text()
    panel.mode_buttons[ConsultationMode.HH].setChecked(False)
    panel.type_buttons[SlotType.SNP].setChecked(True)
    assert panel.model.rows()
    assert all(SlotType.SNP in s.types for r in panel.model.rows() for s in r.slots)
    panel.type_buttons[SlotType.SNP].setChecked(False)
    assert panel.model.slot_count == all_slots
    panel.sort.setCurrentIndex(panel.sort.findData(SortKey.DISTANCE))
    rows = panel.model.rows()
    sas = [r for r in rows if r.offer.candidate.sas]
    others = [r for r in rows if not r.offer.candidate.sas]
    assert rows == sas + others
    assert [r.offer.distance_km for r in others] == sorted(r.offer.distance_km for r in others)


async def test_a_failing_vendor_is_shown_with_its_message_while_others_answer(
    qtbot: QtBot, env: Env, slots: SlotService, simulator: Simulator
) -> None:
    failing = slots.vendors[0].name
    simulator.set_faults(failing, "error:1")
    try:
        panel = make_panel(qtbot, env, slots, Browser())
        lyon(panel)
        panel.start_search()
        await until(lambda: panel.last_update is not None and panel.last_update.done, timeout=15)
    finally:
        simulator.set_faults(failing, None)
    assert panel.last_update is not None
    states = {n: s.state for n, s in panel.last_update.vendors.items()}
    assert states[failing] is VendorState.ERROR
    assert all(s is VendorState.OK for n, s in states.items() if n != failing)
    assert "en erreur" in panel.vendor_labels[failing].text()
    assert panel.vendor_errors.isVisible() and failing in panel.vendor_errors.text()
    assert panel.model.rowCount() > 0
    assert {r.offer.candidate.vendor for r in panel.model.rows()} == set(states) - {failing}


async def test_esc_cancels_and_a_new_search_replaces_the_one_in_flight(
    qtbot: QtBot, env: Env, slots: SlotService, simulator: Simulator
) -> None:
    slow = slots.vendors[1].name
    simulator.set_faults(slow, "hang")  # keeps both searches in flight
    try:
        panel = make_panel(qtbot, env, slots, Browser())
        lyon(panel)
        first = panel.start_search()
        assert first is not None
        await until(lambda: panel.model.rowCount() > 0, timeout=10)
        second = panel.start_search()  # replaces the first
        assert second is not None and second is not first
        assert first.cancelling() or first.done()
        assert panel.model.rowCount() == 0  # the first search's cards are gone
        await until(lambda: panel.model.rowCount() > 0, timeout=10)
        assert panel.running and panel.cancel_button.isEnabled()
        assert (
            panel.vendor_labels[slow]
            .text()
            .endswith(
                "(0/"
                + str(panel.last_update.vendors[slow].requests if panel.last_update else 0)
                + ")"
            )
        )
        panel.list.setFocus()
        QTest.keyClick(panel.list, Qt.Key.Key_Escape)
        assert second.cancelling() or second.done()
        assert not panel.running and not panel.cancel_button.isEnabled()
        assert "Recherche annulée" in panel.summary.text()
        assert INTERRUPTED_FR in panel.vendor_labels[slow].text()  # no longer "en attente"
        kept = panel.model.rowCount()
        assert kept > 0  # what came stays on screen
        # both unwind (at the latest at the hanging vendor's deadline) and
        # nothing they still say reaches the screen
        await until(lambda: first.done() and second.done(), timeout=10)
        assert panel.model.rowCount() == kept and "Recherche annulée" in panel.summary.text()
    finally:
        simulator.set_faults(slow, None)


async def test_booking_opens_the_vendor_page_and_records_the_orientation(
    qtbot: QtBot, env: Env, slots: SlotService, simulator: Simulator
) -> None:
    browser = Browser()
    browser.book = True
    panel = make_panel(qtbot, env, slots, browser)
    dossier = env.desk.new_call()
    dossier.location.city, dossier.location.insee, dossier.location.postcode = (
        "Lyon",
        "69123",
        "69001",
    )
    dossier.location.lat, dossier.location.lon = 45.7640, 4.8357
    panel.prefill(dossier)
    assert panel.place is not None and panel.radius.value() == 5
    panel.start_search()
    await until(lambda: panel.last_update is not None and panel.last_update.done, timeout=15)
    panel.list.setFocus()
    QTest.keyClick(panel.list, Qt.Key.Key_Right)
    row = panel.current_row()
    assert row is not None
    slot = row.slots[1]
    QTest.keyClick(panel.list, Qt.Key.Key_Return)
    assert browser.opened == [booking_url(slot.booking_url or "", "sas")]
    assert browser.opened[0].endswith("&origin=sas")
    assert panel.booking.isVisible()
    await until(lambda: bool(browser.tasks) and all(t.done() for t in browser.tasks), timeout=10)
    for task in browser.tasks:
        task.result()
    QTest.keyClick(panel.booking, Qt.Key.Key_O)
    assert not panel.booking.isVisible()
    assert "Rendez-vous pris" in panel.message.text()
    assert all(s.id != slot.id for r in panel.model.rows() for s in r.slots)
    assert await env.journal.flush(timeout=5)
    events = await env.journal.events(dossier.case_id)
    oriented = [e for e in events if e.kind is EventKind.ORIENTED]
    assert len(oriented) == 1
    data = oriented[0].data
    assert data["slot_id"] == slot.id and data["practitioner"] == row.offer.candidate.name
    assert data["operator"] == "arm.test" and data["start"] == slot.start.isoformat()
    # the simulator has it booked, with the origin; a new search no longer shows it
    async with httpx.AsyncClient() as client:
        booked = (await client.get(f"{simulator.base_url}/_bookings")).json()
    assert any(b.get("slot") == slot.id and b.get("origin") == "sas" for b in booked)
    panel.start_search()
    await until(lambda: panel.last_update is not None and panel.last_update.done, timeout=15)
    assert panel.model.rowCount() > 0
    assert all(s.id != slot.id for r in panel.model.rows() for s in r.slots)


async def test_not_booked_records_nothing(qtbot: QtBot, env: Env, slots: SlotService) -> None:
    browser = Browser()
    panel = make_panel(qtbot, env, slots, browser)
    dossier: Dossier = env.desk.new_call()
    dossier.location.lat, dossier.location.lon = 45.7640, 4.8357
    panel.prefill(dossier)
    panel.start_search()
    await until(lambda: panel.last_update is not None and panel.last_update.done, timeout=15)
    panel.list.setFocus()
    QTest.keyClick(panel.list, Qt.Key.Key_3)  # the third slot of the first card
    assert len(browser.opened) == 1
    QTest.keyClick(panel.booking, Qt.Key.Key_N)
    assert "non pris" in panel.message.text()
    assert await env.journal.flush(timeout=5)
    events = await env.journal.events(dossier.case_id)
    assert not [e for e in events if e.kind is EventKind.ORIENTED]


async def test_the_search_header_says_the_patients_age_in_french(
    qtbot: QtBot, env: Env, slots: SlotService
) -> None:
    """Issue 14 §11: « patient 4y » in the header."""
    panel = make_panel(qtbot, env, slots, Browser())
    dossier: Dossier = env.desk.new_call()
    dossier.location.lat, dossier.location.lon = 45.7640, 4.8357
    for iso, said in (("P4Y", "patient de 4 ans"), ("P8M", "patient de 8 mois")):
        dossier.patient.age = iso
        panel.prefill(dossier)
        assert said in panel.place_label.text()
        assert iso[1:].lower() not in panel.place_label.text()


async def test_the_radius_said_is_the_one_searched(
    qtbot: QtBot, env: Env, slots: SlotService
) -> None:
    """Issue 14 §17: « Rayon 1 km » beside « rayon par défaut … : 5 km »."""
    panel = make_panel(qtbot, env, slots, Browser())
    lyon(panel)
    assert "rayon par défaut de Lyon (69123) : 5 km" in panel.place_label.text()
    panel.radius.setFocus()
    panel.radius.selectAll()
    type_text(panel.radius, "1")
    assert panel.radius.value() == 1
    text = panel.place_label.text()
    assert "rayon choisi : 1 km (par défaut à Lyon (69123) : 5 km)" in text, text


class NoBrowser(Browser):
    """A machine where no browser can be started (QDesktopServices says False)."""

    def __call__(self, url: QUrl) -> bool:
        self.opened.append(url.toString())
        return False


async def test_no_browser_is_said_and_the_booking_address_offered_to_copy(
    qtbot: QtBot, env: Env, slots: SlotService
) -> None:
    """Issue 14 §7: « page de réservation ouverte » when no browser started."""
    browser = NoBrowser()
    panel = make_panel(qtbot, env, slots, browser)
    dossier: Dossier = env.desk.new_call()
    dossier.location.lat, dossier.location.lon = 45.7640, 4.8357
    panel.prefill(dossier)
    panel.start_search()
    await until(lambda: panel.last_update is not None and panel.last_update.done, timeout=15)
    panel.list.setFocus()
    QTest.keyClick(panel.list, Qt.Key.Key_1)
    assert len(browser.opened) == 1
    question = panel.booking.label.text()
    assert "Aucun navigateur" in question and "ouverte dans le navigateur" not in question
    assert panel.booking.copy.isVisible() and panel.booking.hasFocus()
    QGuiApplication.clipboard().setText("")
    QTest.keyClick(panel.booking, Qt.Key.Key_C)
    assert QGuiApplication.clipboard().text() == browser.opened[0]
    assert panel.booking.isVisible()  # still asked: booked by hand, or not
    QTest.keyClick(panel.booking, Qt.Key.Key_N)
    assert not panel.booking.isVisible()
    panel.open_platform()
    assert "Aucun navigateur" in panel.message.text()
    assert QGuiApplication.clipboard().text() == browser.opened[-1]


async def test_volunteers_when_few_results_and_phone_copied_with_one_key(
    qtbot: QtBot, env: Env, slots: SlotService
) -> None:
    panel = make_panel(qtbot, env, slots, Browser())
    query = _sparse_query(slots)
    assert query is not None, "no sparse place with volunteers in the demo territory"
    panel.where.setText(f"{query.lat:.5f}, {query.lon:.5f}")
    panel._on_where_edited(panel.where.text())
    panel.radius.setValue(int(query.radius_km))
    panel.start_search()
    await until(lambda: panel.last_update is not None and panel.last_update.done, timeout=15)
    assert panel.last_update is not None and panel.last_update.volunteers
    n = len(panel.last_update.volunteers)
    assert panel.tabs.tabText(1) == f"En sus ({n})"
    assert panel.notes.isVisible() and "en sus" in panel.notes.text()
    QTest.keyClick(panel, Qt.Key.Key_2, Qt.KeyboardModifier.AltModifier)
    assert panel.tabs.currentIndex() == 1 and panel.volunteers.hasFocus()
    QTest.keyClick(panel.volunteers, Qt.Key.Key_C)
    phone = panel.last_update.volunteers[0].phone
    assert phone and QGuiApplication.clipboard().text() == phone
    assert phone in panel.message.text()


async def test_an_appointment_agreed_with_an_en_sus_volunteer_is_recorded_with_its_time(
    qtbot: QtBot, env: Env, slots: SlotService
) -> None:
    """Alt+2, Entrée on a volunteer: the time agreed on the phone is typed
    (a wrong one refused in French, the strip kept), then recorded in the
    dossier as an "en sus" orientation (ORIENTED, ``en_sus``)."""
    panel = make_panel(qtbot, env, slots, Browser())
    query = _sparse_query(slots)
    assert query is not None, "no sparse place with volunteers in the demo territory"
    dossier = env.desk.new_call()
    dossier.location.city, dossier.location.insee = "Lyon", "69123"
    dossier.location.lat, dossier.location.lon = query.lat, query.lon
    panel.prefill(dossier)
    panel.radius.setValue(int(query.radius_km))
    panel.start_search()
    await until(lambda: panel.last_update is not None and panel.last_update.done, timeout=15)
    assert panel.last_update is not None and panel.last_update.volunteers
    QTest.keyClick(panel, Qt.Key.Key_2, Qt.KeyboardModifier.AltModifier)
    volunteer = panel.volunteers.volunteers[0]
    QTest.keyClick(panel.volunteers, Qt.Key.Key_Return)
    assert panel.en_sus.isVisible() and panel.en_sus.time.hasFocus()
    assert volunteer.name in panel.en_sus.label.text()
    type_text(panel.en_sus.time, "25:99")
    QTest.keyClick(panel.en_sus.time, Qt.Key.Key_Return)
    assert panel.en_sus.isVisible() and "impossible" in panel.en_sus.error.text()
    when = (panel.now() + timedelta(hours=2)).replace(second=0, microsecond=0)
    panel.en_sus.time.clear()
    type_text(panel.en_sus.time, f"{when:%d/%m %H:%M}")
    assert panel.en_sus.error.isHidden()  # the refusal went with the first key
    with qtbot.waitSignal(panel.en_sus_booked, timeout=5000) as booked:
        QTest.keyClick(panel.en_sus.time, Qt.Key.Key_Return)
    assert booked.args[0].start == when and booked.args[0].volunteer == volunteer
    assert not panel.en_sus.isVisible() and "Rendez-vous en sus" in panel.message.text()
    assert await env.journal.flush(timeout=5)
    oriented = [
        e for e in await env.journal.events(dossier.case_id) if e.kind is EventKind.ORIENTED
    ]
    assert len(oriented) == 1
    data = oriented[0].data
    assert data["en_sus"] is True and data["start"] == when.isoformat()
    assert data["practitioner"] == volunteer.name and "slot_id" not in data
    # Échap leaves the strip without recording anything
    QTest.keyClick(panel.volunteers, Qt.Key.Key_Return)
    QTest.keyClick(panel.en_sus.time, Qt.Key.Key_Escape)
    assert not panel.en_sus.isVisible() and panel.volunteers.hasFocus()


def _sparse_query(service: SlotService) -> SearchQuery | None:
    """A place of the demo territory with fewer than five practitioners with
    slots around it but volunteers "en sus" (from the directory)."""
    from sas_desk.services.fhir.candidates import DirectoryCandidates

    assert service.store is not None
    source = DirectoryCandidates(service.store, service.vendors)
    for lat, lon in ((45.7542, 4.7647), (45.6986, 4.8633), (45.6867, 4.9336)):
        for radius in (1.0, 2.0):
            cands = source.candidates(lat, lon, radius, "SM54")
            vols = source.volunteers(lat, lon, radius, "SM54")
            if 0 < len(cands) < 5 and vols:
                return SearchQuery(lat, lon, radius)
    return None


@pytest.mark.qt_log_ignore("QObject::disconnect: Unexpected nullptr parameter")
async def test_main_window_opens_the_panel_from_a_sheet_with_map_selection_both_ways(
    qtbot: QtBot, env: Env, slots: SlotService
) -> None:
    from tests.ui.test_main_window import open_window

    window = await open_window(qtbot, env, role="ARM")
    sheet = window.current_sheet()
    assert sheet is not None
    loc = sheet.dossier.location
    loc.city, loc.insee, loc.postcode, loc.lat, loc.lon = "Lyon", "69123", "69001", 45.764, 4.8357
    window.set_slot_source(slots)
    window.slot_search_action.trigger()  # Ctrl+F
    panel = window.slot_panel
    assert panel is not None and window.tabs.currentWidget() is panel
    assert panel.dossier is sheet.dossier and panel.where.hasFocus()
    assert panel.place is not None and panel.radius.value() == 5
    panel.start_search()
    await until(lambda: panel.last_update is not None and panel.last_update.done, timeout=15)
    # the map (QtLocation, software-rendered offscreen) got the places
    await until(lambda: panel.map is not None and panel.map.markers.rowCount() > 0, timeout=10)
    slot_map = panel.map
    assert slot_map is not None and slot_map.ok
    # list -> map: the current card's marker is lit
    key = panel.current_key()
    lit = [g for g in slot_map.markers.groups if g.selected]
    assert len(lit) == 1 and key in lit[0].keys
    # map -> list: a marker picked selects its card
    other = next(g for g in slot_map.markers.groups if key not in g.keys)
    slot_map.bridge.pick(other.keys[0], 1)
    assert panel.current_key() == other.keys[0]
    assert [g for g in slot_map.markers.groups if g.selected] == [other]
    # the OSNP lands on the panel
    window.set_role("OSNP")
    assert window.tabs.currentWidget() is panel


async def test_the_sas_platform_link_and_the_search_window(
    qtbot: QtBot, env: Env, slots: SlotService
) -> None:
    browser = Browser()
    panel = make_panel(qtbot, env, slots, browser)
    panel.open_platform()  # no place yet: said, nothing opened
    assert browser.opened == [] and "Choisissez d'abord un lieu" in panel.message.text()
    case = env.desk.new_call()
    case.location.number, case.location.way_type, case.location.way_name = "12", "Rue", "de la Paix"
    case.location.insee, case.location.city = "69266", "Villeurbanne"
    case.location.lat, case.location.lon = 45.7719, 4.8902
    panel.prefill(case)
    panel.activateWindow()
    await until(panel.isActiveWindow)
    panel.where.setFocus()
    qtbot.keyClick(
        panel.where,
        Qt.Key.Key_P,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    link = (
        "https://sas.sante.fr/sas/recherche?origin=fr.health.samu690"
        "&specialty=urn:oid:1.2.250.1.213.2.28%7CSM54&streetnumber=12"
        "&streetname=Rue%20de%20la%20Paix&inseecode=69266&city=Villeurbanne"
    )
    assert panel.platform_link() == link
    assert browser.opened == [QUrl(link).toString()]  # opened in the browser
    # "Quand": the next 4 hours instead of J to J+2
    panel.window_choice.setCurrentIndex(panel.window_choice.findText("4 prochaines heures"))
    query = panel.query()
    assert query is not None and query.start is not None and query.end is not None
    assert query.end - query.start == timedelta(hours=4)
    panel.start_search()
    await until(lambda: panel.last_update is not None and panel.last_update.done, timeout=15)
    starts = [s.start for r in panel.model.rows() for s in r.slots]
    assert all(s <= query.end for s in starts)


@contextlib.asynccontextmanager
async def _osnp_dossier_open(
    qtbot: QtBot, env: Env, tmp_path: Path
) -> AsyncIterator[tuple[QueueClient, Any, Dossier]]:
    """An SNP dossier transmitted to the OSNP queue, claimed, open in an
    OSNP's window (the client, the window, the dossier)."""
    client = QueueClient(
        SqliteBackend(tmp_path / "queues.sqlite", now=env.desk._now, poll_interval=0.02),
        Outbox(tmp_path / "outbox.sqlite"),
        Actor("OSNP", "osnp.test", "POSTE-OSNP"),
        now=env.desk._now,
        retry_delay=0.05,
        renew_s=3600,
    )
    await client.start()
    try:
        d = env.desk.new_call()
        d.caller.callback = "0612345678"
        d.location.city, d.location.insee = "Villeurbanne", "69266"
        d.location.lat, d.location.lon = 45.7719, 4.8902
        d.motive_code, d.patient.age, d.branch = "M03.14", "P34Y", Branch.SNP
        d.priority = "P2"
        transmit(d, env.desk._now(), env.desk.actor)
        enqueue = client.operation("enqueue", d.case_id, dossier=d.to_dict(), queue="OSNP")
        await client.submit(enqueue)
        await client.submit(client.operation("claim", d.case_id, lease_s=120))
        window = await open_window(qtbot, env, role="OSNP", queue_client=client)
        window.open_dossier_view(d.case_id)
        await until(lambda: window._dossier_view(d.case_id) is not None)
        yield client, window, d
    finally:
        await client.stop()


async def test_a_booking_for_a_dossier_from_the_osnp_queue_notes_and_closes_it(
    qtbot: QtBot, env: Env, slots: SlotService, tmp_path: Path
) -> None:
    async with _osnp_dossier_open(qtbot, env, tmp_path) as (client, window, d):
        panel = window.open_slot_search()
        assert panel.dossier is not None and panel.dossier.case_id == d.case_id
        panel.set_source(slots)
        panel.start_search()
        await until(lambda: panel.last_update is not None and panel.last_update.done, timeout=15)
        offer = panel.model.rows()[0].offer
        # the operator confirmed the booking on the vendor's page
        panel.pending_booking = Booking(
            offer, offer.slots[0], "https://vendor/book", env.desk._now()
        )
        panel._on_booking_answer(True)
        assert window.orientation_task is not None
        await until(window.orientation_task.done, timeout=10)
        events = await client.events(d.case_id)
        # the booking is an event of the room's log (the desk's orient), then the close
        assert [e.kind for e in events][-2:] == [EventKind.ORIENTED, EventKind.CLOSED]
        assert events[-2].actor.role == "OSNP" and events[-2].data["orientation"] == "booking"
        assert events[-2].data["slot_id"] == offer.slots[0].id
        assert offer.candidate.name in events[-2].data["text"]
        assert offer.candidate.name in str(events[-1].data)  # the orientation, as the reason
        assert not any(
            i.case_id == d.case_id for i in await client.backend.snapshot([QueueName.OSNP])
        )


async def test_an_en_sus_appointment_for_a_dossier_from_the_osnp_queue_closes_it(
    qtbot: QtBot, env: Env, tmp_path: Path
) -> None:
    async with _osnp_dossier_open(qtbot, env, tmp_path) as (client, window, d):
        panel = window.open_slot_search()
        volunteer = Volunteer("810000000001", "Dr Claire Sus", "+33478000001", 1.2, "Lyon")
        panel.volunteers.set_volunteers([volunteer])
        panel._show_tab(1)
        QTest.keyClick(panel.volunteers, Qt.Key.Key_Return)
        when = (panel.now() + timedelta(hours=3)).replace(second=0, microsecond=0)
        type_text(panel.en_sus.time, f"{when:%d/%m %H:%M}")
        QTest.keyClick(panel.en_sus.time, Qt.Key.Key_Return)
        assert window.orientation_task is not None
        await until(window.orientation_task.done, timeout=10)
        events = await client.events(d.case_id)
        assert [e.kind for e in events][-2:] == [EventKind.ORIENTED, EventKind.CLOSED]
        assert events[-2].data["orientation"] == "booking"
        assert events[-2].data["en_sus"] is True
        assert events[-2].data["start"] == when.isoformat()
        assert "RDV en sus" in str(events[-1].data) and volunteer.name in str(events[-1].data)
        assert not any(
            i.case_id == d.case_id for i in await client.backend.snapshot([QueueName.OSNP])
        )
