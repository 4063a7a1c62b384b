"""The dental regulator's view over a real roster service (the demo roster in
an in-memory store) with an injected clock; the main window's wiring with a
real SQLite queue store."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtTest import QTest
from pytestqt.qtbot import QtBot

from sas_desk.models.dossier import Actor, Branch, Dossier, EventKind, transmit
from sas_desk.models.queue import ItemStatus, QueueName
from sas_desk.models.roster import PARIS
from sas_desk.services.geo.territory import CommuneIndex
from sas_desk.services.queues.client import Outbox, QueueClient
from sas_desk.services.queues.sqlite import SqliteBackend
from sas_desk.services.roster.service import RosterService
from sas_desk.ui.dental_view import DentalView, Orientation, parse_when, suggest
from sas_desk.ui.keys import press, type_text
from tests.ui.conftest import Env, open_window, until

pytestmark = [pytest.mark.gui, pytest.mark.asyncio(loop_scope="session")]

TODAY = date(2026, 12, 1)  # a Tuesday: the demo roster starts here
SUNDAY_MORNING = datetime(2026, 12, 6, 10, 30, tzinfo=PARIS)
CHRISTMAS_AFTERNOON = datetime(2026, 12, 25, 15, 0, tzinfo=PARIS)  # a Friday, public holiday
MONDAY = datetime(2026, 12, 7, 10, 0, tzinfo=PARIS)
SOURCE = "https://cdo69.example/gardes/69.ics"


class Clock:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock(SUNDAY_MORNING)


@pytest.fixture
def service(communes: CommuneIndex, clock: Clock) -> Iterator[RosterService]:
    svc = RosterService(None, communes=communes, now=clock)
    assert svc.load_demo_if_empty(TODAY) is not None
    yield svc
    svc.close()


def trauma_in_lyon(env: Env, age: str) -> Dossier:
    """A new dental dossier: a knocked-out tooth in Lyon, patient of ``age``."""
    dossier = env.desk.new_call()
    dossier.location.insee = "69123"
    dossier.branch = Branch.DENT
    dossier.dental_reason = "DENT.TRAUMA"
    dossier.patient.age = age
    return dossier


def make_view(qtbot: QtBot, env: Env, service: RosterService | None) -> DentalView:
    view = DentalView(env.resolver.index, desk=env.desk)
    qtbot.addWidget(view)
    view.resize(1300, 800)
    view.show()
    view.set_service(service)
    return view


async def ask(view: DentalView, commune: str, when: str = "") -> None:
    view.commune.setText(commune)
    view.when.setText(when)
    view.commune.setFocus()
    press(view.commune, Qt.Key.Key_Return)
    assert view.last_lookup is not None
    await until(view.last_lookup.done)


async def test_on_call_on_a_sunday_with_phone_card_and_next_period(
    qtbot: QtBot, env: Env, service: RosterService
) -> None:
    view = make_view(qtbot, env, service)
    await ask(view, "Lyon")
    expected = service.on_call("69123")
    assert len(expected) == 1  # the demo: one dentist per sector and day
    entry = expected[0]
    assert view.on_call_table.entries == expected
    title = view.answer_title.text()
    assert "Dentiste de garde pour Lyon (69123), maintenant" in title
    card = view.card.text()
    assert entry.family in card and entry.sector_name in card
    assert "04 65 71 " in card  # French format, not E.164
    assert "dimanche 06/12/2026, 09:00–12:00" in card
    # the next period is the afternoon one of the same day
    nxt = view.next_table.entries
    assert nxt and nxt[0].start == datetime(2026, 12, 6, 14, 0, tzinfo=PARIS)
    assert "Prochaine garde" in view.next_title.text()
    assert "14:00–18:00" in view.next_title.text()
    # one dentist: the card has the focus and C copies the phone (E.164)
    assert view.card.hasFocus() and not view.on_call_table.isVisible()
    QGuiApplication.clipboard().clear()
    QTest.keyClick(view.card, Qt.Key.Key_C)
    assert QGuiApplication.clipboard().text() == entry.phone
    assert "Numéro copié : 04 65 71" in view.message.text()


async def test_a_public_holiday_at_a_given_time_by_insee_code(
    qtbot: QtBot, env: Env, service: RosterService
) -> None:
    view = make_view(qtbot, env, service)
    await ask(view, "69266", "25/12/2026 15h")
    assert view.answer is not None and view.answer.at == CHRISTMAS_AFTERNOON
    assert view.on_call_table.entries == service.on_call("69266", CHRISTMAS_AFTERNOON)
    assert view.on_call_table.entries
    assert "Villeurbanne (69266), le vendredi 25/12/2026 à 15:00" in view.answer_title.text()
    assert "14:00–18:00" in view.card.text()


async def test_nobody_on_call_says_so_in_french_with_the_next_period(
    qtbot: QtBot, env: Env, service: RosterService, clock: Clock
) -> None:
    clock.t = MONDAY
    view = make_view(qtbot, env, service)
    await ask(view, "Villeurbanne (69266)")
    assert view.on_call_table.entries == []
    assert not view.card.isVisible()
    text = view.answer_title.text()
    assert text.startswith("Aucun dentiste de garde pour Villeurbanne (69266) maintenant")
    assert "dimanches et jours fériés" in text
    nxt = view.next_table.entries
    assert nxt and nxt[0].start == datetime(2026, 12, 13, 9, 0, tzinfo=PARIS)
    # a commune no roster covers: nobody, and no next period either
    await ask(view, "75056")
    assert view.on_call_table.entries == [] and view.next_table.entries == []
    assert "Aucun dentiste de garde pour 75056" in view.answer_title.text()
    assert "aucune dans le tableau" in view.next_title.text()
    # unknown commune and unreadable time: French messages, no lookup
    view.commune.setText("Zzyzx")
    view.lookup()
    assert "Commune inconnue" in view.message.text()
    view.commune.setText("Lyon")
    view.when.setText("demain midi")
    view.lookup()
    assert "illisible" in view.message.text()


async def test_whole_day_and_dentist_search(qtbot: QtBot, env: Env, service: RosterService) -> None:
    view = make_view(qtbot, env, service)
    await ask(view, "Lyon", "13/12/2026")
    starts = [e.start.hour for e in view.on_call_table.entries]
    assert starts == [9, 14]
    # several periods: the table has the focus; C copies the phone of the chosen row
    assert view.on_call_table.isVisible() and view.on_call_table.hasFocus()
    QTest.keyClick(view.on_call_table, Qt.Key.Key_Down)
    QGuiApplication.clipboard().clear()
    QTest.keyClick(view.on_call_table, Qt.Key.Key_C)
    assert QGuiApplication.clipboard().text() == view.on_call_table.entries[1].phone
    assert view.current_on_call() == view.on_call_table.entries[1]
    family = view.on_call_table.entries[0].family
    view.search.setFocus()
    type_text(view.search, family[:4])
    assert view.last_search is not None
    await until(view.last_search.done)
    found = view.search_table.entries
    assert found and all(e.family.startswith(family[:4]) for e in found)
    assert all(e.end > SUNDAY_MORNING for e in found)


@pytest.mark.parametrize(
    ("signs", "pain", "on_call_day", "expected"),
    [
        ({"swelling", "fever"}, "", True, Orientation.MEDECIN),
        ({"airway"}, "", False, Orientation.MEDECIN),
        ({"fever"}, "2", True, Orientation.MEDECIN),
        ({"trauma"}, "", True, Orientation.DENTISTE_GARDE),
        ({"trauma"}, "", False, Orientation.DENTISTE_JOUR),
        ({"swelling"}, "1", True, Orientation.DENTISTE_GARDE),
        ({"bleeding"}, "", True, Orientation.DENTISTE_GARDE),
        ({"bleeding", "anticoagulant"}, "", True, Orientation.MEDECIN),
        ({"anticoagulant"}, "1", True, Orientation.CONSEIL),
        (set(), "2", True, Orientation.DENTISTE_GARDE),
        ({"minor"}, "1", True, Orientation.CONSEIL),
        (set(), "1", False, Orientation.CONSEIL),
        (set(), "", True, None),
    ],
)
async def test_triage_suggestions(
    signs: set[str], pain: str, on_call_day: bool, expected: Orientation | None
) -> None:
    s = suggest(frozenset(signs), pain, on_call_day=on_call_day)
    assert s.orientation is expected
    if "trauma" in signs:
        assert any("lait" in a for a in s.advice)
    if "anticoagulant" in signs:
        assert any("anticoagulant" in a for a in s.advice)


@pytest.mark.parametrize(
    ("age", "milk", "check"),
    [(None, False, False), (4.0, True, False), (8.0, False, True), (30.0, False, False)],
)
async def test_knocked_out_tooth_advice_depends_on_age(
    age: float | None, milk: bool, check: bool
) -> None:
    s = suggest(frozenset({"trauma"}), "", on_call_day=True, age_years=age)
    assert s.orientation is Orientation.DENTISTE_GARDE
    text = " ".join(s.advice)
    assert ("ne pas la réimplanter" in text) is milk
    assert ("à réimplanter au plus vite" in text) is not milk
    assert ("vérifier s'il s'agit d'une dent de lait" in text) is check


async def test_parse_when() -> None:
    now = SUNDAY_MORNING
    assert parse_when("", now) == (None, False)
    assert parse_when("maintenant", now) == (None, False)
    assert parse_when("16:30", now) == (datetime(2026, 12, 6, 16, 30, tzinfo=PARIS), False)
    assert parse_when("1/1 10h", now) == (datetime(2026, 1, 1, 10, 0, tzinfo=PARIS), False)
    assert parse_when("2027-01-01 9h30", now) == (datetime(2027, 1, 1, 9, 30, tzinfo=PARIS), False)
    assert parse_when("25/12/2026", now) == (datetime(2026, 12, 25, 0, 0, tzinfo=PARIS), True)
    assert parse_when("31/02/2026 10:00", now) is None
    assert parse_when("midi", now) is None


async def test_triage_keys_suggest_and_the_regulator_confirms_on_the_dossier(
    qtbot: QtBot, env: Env, service: RosterService
) -> None:
    dossier = trauma_in_lyon(env, "P35Y")
    view = make_view(qtbot, env, service)
    view.prefill(dossier)
    assert view.commune.text() == "Lyon (69123)"
    assert view.last_lookup is not None
    await until(view.last_lookup.done)
    assert view.signs.signs() == {"trauma"}
    assert view.orientation.value() == Orientation.DENTISTE_GARDE  # a Sunday
    assert "lait" in view.suggestion_label.text()
    # keys in the signs list: G (swelling) + F (fever) → back to a physician
    view.signs.setFocus()
    QTest.keyClick(view.signs, Qt.Key.Key_G)
    QTest.keyClick(view.signs, Qt.Key.Key_F)
    assert view.signs.signs() == {"trauma", "swelling", "fever"}
    assert view.orientation.value() == Orientation.MEDECIN
    assert "gonflement avec fièvre" in view.suggestion_label.text()
    QTest.keyClick(view.signs, Qt.Key.Key_F)  # untick the fever
    assert view.orientation.value() == Orientation.DENTISTE_GARDE
    # the regulator confirms the on-call dentist (Ctrl+Enter)
    entry = view.on_call_table.entries[0]
    QTest.keyClick(view.signs, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert "Orientation enregistrée" in view.triage_message.text()
    assert await env.journal.flush(timeout=5)
    events = await env.journal.events(dossier.case_id)
    oriented = [e for e in events if e.kind is EventKind.DENTAL_ORIENTED]
    assert len(oriented) == 1
    data = oriented[0].data
    assert data["orientation"] == "DENTISTE_GARDE" and data["suggested"] == "DENTISTE_GARDE"
    assert data["signs"] == ["swelling", "trauma"]
    assert data["phone"] == entry.phone and data["sector"] == entry.sector_code
    assert data["commune"] == "69123"
    assert oriented[0].actor.workstation == "POSTE-TEST"


async def test_confirm_without_choice_or_dossier(
    qtbot: QtBot, env: Env, service: RosterService
) -> None:
    view = make_view(qtbot, env, service)
    assert view.confirm() is None
    assert "Choisissez une orientation" in view.triage_message.text()
    QTest.keyClick(view.orientation, Qt.Key.Key_C)
    result = view.confirm()
    assert result is not None and result.orientation is Orientation.CONSEIL
    assert result.event is None and "rien n'est enregistré" in view.triage_message.text()


async def test_status_always_visible_and_banner_when_stale_or_offline(
    qtbot: QtBot, env: Env, communes: CommuneIndex, clock: Clock
) -> None:
    svc = RosterService(None, communes=communes, sources=(SOURCE,), now=clock)
    try:
        svc.load_demo_if_empty(TODAY)
        synced = datetime(2026, 12, 5, 8, 0, tzinfo=PARIS)
        svc.store.record_source(
            SOURCE, state="unchanged", message="à jour", attempt=synced, success=True
        )
        view = make_view(qtbot, env, svc)
        assert view.last_status is not None
        await until(view.last_status.done)
        # issue 14 §17: « du 07/12/2026 (démo), du 13/12/2026 au … » said two things as one
        assert re.search(
            r"Tableau de garde en vigueur : importé le \d\d/\d\d/\d{4} \(source : [^)]+\), "
            r"gardes du \d\d/\d\d/\d{4} au \d\d/\d\d/\d{4}\.",
            view.status_label.text(),
        ), view.status_label.text()
        assert "Dernière synchronisation réussie : 05/12/2026 08:00" in view.status_label.text()
        assert view.status_banner.isHidden()
        # the source fails after its last success: offline, the cached roster is used
        svc.store.record_source(
            SOURCE,
            state="offline",
            message="injoignable",
            attempt=synced + timedelta(days=1),
            success=False,
        )
        view.refresh_status()
        await until(lambda: view.last_status is not None and view.last_status.done())
        assert view.status_banner.isVisible()
        assert "injoignable" in view.status_banner.text()
        assert svc.status().message_fr in view.status_banner.text()
        # a year later the roster is past: flagged as stale
        clock.t = SUNDAY_MORNING + timedelta(days=400)
        await ask(view, "Lyon")
        assert "périmé" in view.status_banner.text()
        assert view.on_call_table.entries == []
    finally:
        svc.close()


async def test_no_service_yet_then_the_lookup_runs_once_loaded(
    qtbot: QtBot, env: Env, service: RosterService
) -> None:
    view = make_view(qtbot, env, None)
    view.set_service(None, "Tableaux de garde en cours de chargement…")
    assert "chargement" in view.status_label.text()
    view.commune.setText("Lyon")
    view.lookup()
    assert "chargement" in view.answer_title.text()
    view.set_service(service)
    assert view.last_lookup is not None
    await until(view.last_lookup.done)
    assert view.on_call_table.entries == service.on_call("69123")


# ---------------------------------------------------------------------------- main window


@pytest_asyncio.fixture(loop_scope="session")
async def queues(tmp_path: Path, env: Env) -> AsyncIterator[QueueClient]:
    client = QueueClient(
        SqliteBackend(tmp_path / "queues.sqlite", now=env.desk._now, poll_interval=0.02),
        Outbox(tmp_path / "outbox.sqlite"),
        Actor("DENT", "dr.dent", "POSTE-TEST"),
        now=env.desk._now,
        retry_delay=0.05,
        renew_s=3600,
    )
    await client.start()
    yield client
    await client.stop()


async def test_role_dent_lands_on_the_view_and_the_service_starts_lazily(
    qtbot: QtBot, env: Env, queues: QueueClient, service: RosterService
) -> None:
    started: list[bool] = []
    # another role: nothing started, no view
    window = await open_window(qtbot, env, role="MRL", queue_client=queues)
    window.set_roster_starter(lambda: started.append(True))
    assert window.dental_view is None and started == []
    # Ctrl+D opens it and starts the service once
    QTest.keyClick(window, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
    assert window.dental_view is not None and started == [True]
    assert window.tabs.currentWidget() is window.dental_view
    window.set_roster_service(service)
    assert window.dental_view.service is service
    # the DENT lands on it
    env.desk.actor = replace(env.desk.actor, role="DENT")
    dent = await open_window(qtbot, env, role="DENT", queue_client=queues)
    assert dent.dental_view is not None
    assert dent.tabs.currentWidget() is dent.dental_view
    assert dent.dental_view.commune.hasFocus()
    dent.set_roster_starter(lambda: started.append(True))  # already open: starts now
    assert started == [True, True]


async def test_back_to_a_physician_transfers_a_dent_queue_dossier_to_amu(
    qtbot: QtBot, env: Env, queues: QueueClient, service: RosterService
) -> None:
    d: Dossier = env.desk.new_call()
    d.caller.callback = "0612345678"
    d.location.insee = "69266"
    d.location.city = "Villeurbanne"
    d.motive_code = "M03.22"
    d.patient.age, d.priority = "P34Y", "P2"
    d.branch = Branch.DENT
    d.dental_reason = "DENT.CELLULITE"
    transmit(d, env.desk._now(), env.desk.actor)
    await queues.enqueue(d)
    window = await open_window(qtbot, env, role="DENT", queue_client=queues)
    window.set_roster_service(service)
    await queues.submit(queues.operation("claim", d.case_id))
    window.open_dossier_view(d.case_id)
    await until(lambda: window._dossier_view(d.case_id) is not None)
    QTest.keyClick(window, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
    view = window.dental_view
    assert view is not None and view.dossier is not None and view.dossier.case_id == d.case_id
    assert view.commune.text() == "Villeurbanne (69266)"
    assert view.last_lookup is not None
    await until(view.last_lookup.done)
    assert view.orientation.value() == Orientation.MEDECIN  # swelling with fever
    view.confirm()
    assert window.dental_task is not None
    await until(window.dental_task.done)
    items = await queues.backend.snapshot([QueueName.AMU, QueueName.DENT])
    item = next(i for i in items if i.case_id == d.case_id)
    assert item.queue is QueueName.AMU and item.status is ItemStatus.WAITING
    events = await queues.events(d.case_id)
    # the orientation is an event of the room's log (the desk's orient), then the transfer
    assert [e.kind for e in events][-2:] == [EventKind.DENTAL_ORIENTED, EventKind.TRANSFERRED]
    assert events[-2].actor.role == "DENT" and events[-2].data["orientation"] == "dental"
    assert "Orientation dentaire : Médecin (AMU)" in events[-2].data["text"]
    assert "Orientation dentaire : Médecin (AMU)" in str(events[-1].data)
    assert "transféré à la file AMU" in view.triage_message.text()


ROSTER_CSV = (
    "date;debut;fin;secteur;communes;nom;prenom;rpps;adresse;code_postal;ville;telephone;commentaire\n"
    "06/12/2026;09:00;12:00;69-IMPORT;69123|69266;ZZTEST;Alice;;1 rue de Test;69001;Lyon;"
    "04 72 00 00 01;\n"
)


async def test_a_roster_file_is_imported_from_the_view_or_refused_with_every_error(
    qtbot: QtBot, env: Env, service: RosterService, tmp_path: Path
) -> None:
    view = make_view(qtbot, env, service)
    await ask(view, "Lyon")
    before = view.on_call_table.entries
    bad = tmp_path / "garde.csv"
    bad.write_text(
        ROSTER_CSV.replace("06/12/2026", "31/02/2026").replace("04 72 00 00 01", "12"),
        encoding="utf-8",
    )
    view.choose_file = lambda: str(bad)
    view.import_roster()
    assert view.last_import is not None
    await until(view.last_import.done)
    report = view.import_report.toPlainText()
    assert "tableau non importé" in report and "le tableau précédent reste en vigueur" in report
    assert report.count("\n  - ") >= 1 and "ligne 2" in report  # every error, located
    assert "date" in report and "telephone" in report
    await ask(view, "Lyon")
    assert view.on_call_table.entries == before  # nothing changed
    good = tmp_path / "garde-ok.csv"
    good.write_text(ROSTER_CSV, encoding="utf-8")
    view.choose_file = lambda: str(good)
    view.import_roster()
    assert view.last_import is not None
    await until(view.last_import.done)
    assert "Tableau importé" in view.import_report.toPlainText()
    await until(
        lambda: (
            view.last_lookup is not None
            and view.last_lookup.done()
            and any(e.family == "ZZTEST" for e in view.on_call_table.entries)
        )
    )


async def test_a_dental_dossier_view_opens_the_dental_view_on_it(
    qtbot: QtBot, env: Env, queues: QueueClient, service: RosterService
) -> None:
    cases = []
    for branch in (Branch.DENT, Branch.SNP):
        d: Dossier = env.desk.new_call()
        d.caller.callback = "0612345678"
        d.location.insee, d.location.city = "69266", "Villeurbanne"
        d.motive_code, d.patient.age, d.branch = "M03.22", "P34Y", branch
        d.priority = "P2"
        if branch is Branch.DENT:
            d.dental_reason = "DENT.CELLULITE"
        transmit(d, env.desk._now(), env.desk.actor)
        await queues.enqueue(d)
        cases.append(d)
    dental, general = cases
    assert dental.is_dental and not general.is_dental
    window = await open_window(qtbot, env, role="SUP", queue_client=queues)
    window.set_roster_service(service)
    for d in cases:
        window.open_dossier_view(d.case_id)
        await until(lambda d=d: window._dossier_view(d.case_id) is not None)
    assert window._dossier_view(general.case_id).dental_button.isHidden()
    view = window._dossier_view(dental.case_id)
    assert not view.dental_button.isHidden()
    view.dental_button.click()
    assert window.dental_view is not None
    assert window.tabs.currentWidget() is window.dental_view
    assert window.dental_view.dossier is not None
    assert window.dental_view.dossier.case_id == dental.case_id
    assert window.dental_view.commune.text() == "Villeurbanne (69266)"


async def test_a_young_childs_dossier_gets_the_milk_tooth_advice(
    qtbot: QtBot, env: Env, service: RosterService
) -> None:
    dossier = trauma_in_lyon(env, "P4Y")
    view = make_view(qtbot, env, service)
    view.prefill(dossier)
    assert "ne pas la réimplanter" in view.suggestion_label.text()
    dossier.patient.age = "P40M"  # months: still under 6 years
    view.prefill(dossier)
    assert "ne pas la réimplanter" in view.suggestion_label.text()
    dossier.patient.age = "P14Y"
    view.prefill(dossier)
    assert "à réimplanter au plus vite" in view.suggestion_label.text()


@pytest.mark.parametrize("role", ["DENT", "MRL"])
async def test_ctrl_d_from_a_claimed_dossier_opens_the_dental_view_on_it(
    qtbot: QtBot, env: Env, queues: QueueClient, service: RosterService, role: str
) -> None:
    """Issue 14 §16: Ctrl+D from a claimed dossier opened the dental view
    unlinked (commune empty)."""
    d: Dossier = env.desk.new_call()
    d.caller.callback = "0612345678"
    d.location.insee, d.location.city = "69266", "Villeurbanne"
    d.motive_code, d.patient.age, d.priority = "M03.22", "P34Y", "P2"
    d.branch = Branch.DENT if role == "DENT" else Branch.SNP
    d.dental_reason = "DENT.DOULEUR" if role == "DENT" else ""
    transmit(d, env.desk._now(), env.desk.actor)
    await queues.enqueue(d)
    window = await open_window(qtbot, env, role=role, queue_client=queues)
    window.set_roster_service(service)
    panel = window.queue_panel
    assert panel is not None
    await until(lambda: panel.model.item(d.case_id) is not None)
    panel.select(d.case_id)
    qtbot.keyClick(panel.current_view(), Qt.Key.Key_Return)  # claim: the dossier opens
    await until(lambda: window._dossier_view(d.case_id) is not None)
    view = window._dossier_view(d.case_id)
    await until(lambda: window.tabs.currentWidget() is view)
    qtbot.keyClick(view.note, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
    dental = window.dental_view
    assert dental is not None and window.tabs.currentWidget() is dental
    assert dental.dossier is not None and dental.dossier.case_id == d.case_id
    assert dental.commune.text() == "Villeurbanne (69266)"
