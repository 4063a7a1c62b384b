"""The queue panel, two workstations sharing one real SQLite queue store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import pytest_asyncio
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QLabel
from pytestqt.modeltest import ModelTester
from pytestqt.qtbot import QtBot

from sas_desk.models.dossier import Actor, Branch, Dossier, EventKind, transmit
from sas_desk.models.queue import ItemStatus, QueueName, WaitLimits, queues_for_role
from sas_desk.services.queues.client import Outbox, QueueClient
from sas_desk.services.queues.sqlite import SqliteBackend
from sas_desk.ui.dossier_view import DossierView
from sas_desk.ui.keys import press, type_text
from sas_desk.ui.queue_panel import QueuePanel
from tests.helpers.flaky import FlakyBackend
from tests.ui.conftest import Env, until

pytestmark = [pytest.mark.gui, pytest.mark.asyncio(loop_scope="session")]
TZ = timezone(timedelta(hours=1))


class Clock:
    def __init__(self) -> None:
        self.t = datetime.now(TZ).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.t


@dataclass
class Station:
    client: QueueClient
    panel: QueuePanel
    flaky: FlakyBackend


@pytest_asyncio.fixture(loop_scope="session")
async def room(
    tmp_path: Path, qtbot: QtBot
) -> AsyncIterator[tuple[Clock, Station, Station, Station]]:
    clock = Clock()
    stations = []
    for name, role in (("POSTE-MRL-1", "MRL"), ("POSTE-MRL-2", "MRL"), ("POSTE-SUP", "SUP")):
        flaky = FlakyBackend(
            SqliteBackend(tmp_path / "queues.sqlite", now=clock, poll_interval=0.02)
        )
        client = QueueClient(
            flaky,
            Outbox(tmp_path / f"outbox-{name}.sqlite"),
            Actor(role, name.lower(), name),
            now=clock,
            retry_delay=0.05,
            renew_s=3600,
        )
        await client.start()
        panel = QueuePanel(
            client, queues_for_role(role), WaitLimits(), clock, supervisor=role == "SUP"
        )
        qtbot.addWidget(panel)
        panel.show()
        panel.start()
        stations.append(Station(client, panel, flaky))
    yield clock, stations[0], stations[1], stations[2]
    for s in stations:
        s.panel.stop()
        await s.client.stop()


def dossier(n: int, clock: Clock, branch: Branch = Branch.SNP, priority: str = "P2") -> Dossier:
    d = Dossier(
        case_id=f"fr.health.samu690.DRFR1569A26329{n:05d}",
        sender_case_id=f"DRFR1569A26329{n:05d}",
        created_at=clock(),
        received_at=clock(),
        owner="fr.health.samu690",
    )
    d.caller.callback = "06 12 34 56 78"
    d.location.city, d.location.insee = "Villeurbanne", "69266"
    d.motive_code, d.motive_label = "M03.14", "Fièvre, problème infectieux"
    d.patient.age, d.patient.sex = "P4Y", "F"
    d.priority, d.branch = priority, branch
    transmit(d, clock(), Actor("ARM", "arm.test", "POSTE-ARM"))
    return d


def rows(panel: QueuePanel, queue: QueueName) -> list[list[str]]:
    proxy = panel.views[queue].model()
    return [
        [str(proxy.index(r, c).data() or "") for c in range(proxy.columnCount())]
        for r in range(proxy.rowCount())
    ]


def held(panel: QueuePanel, case_id: str) -> bool:
    """The item shows in ``panel`` as held by someone."""
    item = panel.model.item(case_id)
    return item is not None and item.claim is not None


async def test_an_item_shows_everywhere_and_a_claim_is_exclusive(
    room: tuple[Clock, Station, Station, Station], qtmodeltester: ModelTester
) -> None:
    clock, a, b, sup = room
    await a.client.enqueue(dossier(1, clock))
    for station in (a, b, sup):
        await until(lambda s=station: len(rows(s.panel, QueueName.SNP)) == 1, timeout=10)
    assert rows(a.panel, QueueName.SNP)[0][2] == "Fièvre, problème infectieux"
    assert rows(a.panel, QueueName.SNP)[0][4] == "4 ans F"
    assert a.panel.tabs.tabText(0) == "SNP  (1)"
    assert a.panel.tabs.tabToolTip(0) == "SNP — médecine générale"
    qtmodeltester.check(a.panel.model)

    a.panel.select("fr.health.samu690.DRFR1569A2632900001")
    a.panel.act("claim")
    await until(lambda: rows(b.panel, QueueName.SNP)[0][5].startswith("poste-mrl-1"), timeout=10)
    b.panel.select("fr.health.samu690.DRFR1569A2632900001")
    b.panel.act("claim")
    await until(lambda: "déjà pris par poste-mrl-1" in b.panel.message.text(), timeout=10)
    assert "POSTE-MRL-1" in b.panel.message.text()
    item = b.panel.model.item("fr.health.samu690.DRFR1569A2632900001")
    assert item is not None and item.status is ItemStatus.CLAIMED
    qtmodeltester.check(b.panel.model)


async def test_priority_order_and_supervision_strip(
    room: tuple[Clock, Station, Station, Station],
) -> None:
    clock, a, _b, sup = room
    await a.client.enqueue(dossier(2, clock, priority="P3"))
    clock.t += timedelta(seconds=30)
    await a.client.enqueue(dossier(3, clock, priority="P1"))
    await a.client.enqueue(dossier(4, clock, branch=Branch.AMU, priority="P0"))
    await until(lambda: len(rows(a.panel, QueueName.SNP)) == 2, timeout=10)
    assert [r[0] for r in rows(a.panel, QueueName.SNP)] == ["P1", "P3"]
    await until(lambda: len(rows(sup.panel, QueueName.AMU)) == 1, timeout=10)
    clock.t += timedelta(minutes=6)  # P0 limit 1 min, P1 5 min: both late
    sup.panel._tick()
    strip = sup.panel.strip.text()
    assert "AMU 1" in strip and "SNP 2" in strip
    assert "2 en retard" in strip
    assert "P3 06:30" in strip


async def test_transfer_hand_back_and_booking_move_between_queues(
    room: tuple[Clock, Station, Station, Station],
) -> None:
    clock, a, _b, sup = room
    case = dossier(5, clock)
    await a.client.enqueue(case)
    await until(lambda: len(rows(a.panel, QueueName.SNP)) == 1, timeout=10)
    a.panel.select(case.case_id)
    a.panel.act("claim")
    await until(lambda: held(a.panel, case.case_id), timeout=10)
    a.panel.select(case.case_id)
    a.panel.act("request_booking")
    await until(
        lambda: any(
            case.case_id == i.case_id and i.queue is QueueName.OSNP for i in sup.panel.model.items()
        ),
        timeout=10,
    )
    await until(lambda: a.panel.model.item(case.case_id) is None, timeout=10)  # left the SNP view
    kinds = [e.kind for e in await a.client.events(case.case_id)]
    assert kinds[-2:] == [EventKind.CLAIMED, EventKind.BOOKING_REQUESTED]
    # the supervisor moves it on with a reason, from the keyboard
    sup.panel.select(case.case_id)
    sup.panel.act("transfer")
    assert sup.panel.transfer_bar.isVisible()
    sup.panel.transfer_to.setCurrentIndex(sup.panel.transfer_to.findData("ARM"))
    sup.panel.transfer_reason.setText("rappeler le patient")
    sup.panel.transfer_reason.returnPressed.emit()
    await until(
        lambda: any(
            case.case_id == i.case_id and i.queue is QueueName.ARM for i in sup.panel.model.items()
        ),
        timeout=10,
    )
    events = await sup.client.events(case.case_id)
    assert events[-1].kind is EventKind.TRANSFERRED
    assert events[-1].actor.workstation == "POSTE-SUP"


async def test_hand_back_asks_what_to_call_back_for_and_keeps_it_when_refused(
    room: tuple[Clock, Station, Station, Station],
) -> None:
    clock, a, b, sup = room
    case = dossier(6, clock)
    await a.client.enqueue(case)
    for station in (a, b):
        await until(lambda s=station: s.panel.model.item(case.case_id) is not None, timeout=10)
    b.panel.select(case.case_id)
    b.panel.act("claim")
    await until(lambda: held(a.panel, case.case_id), timeout=10)
    # not the holder: refused, and what was typed is still there to send again
    a.panel.select(case.case_id)
    a.panel.act("hand_back")
    assert a.panel.hand_back_bar.isVisible()
    assert a.panel.focusWidget() is a.panel.hand_back_reason  # typed into straight away
    a.panel.hand_back_reason.setText("rappeler : résultat de la prise de sang")
    a.panel.hand_back_reason.returnPressed.emit()
    await until(lambda: "Vous ne tenez pas ce dossier" in a.panel.message.text(), timeout=10)
    a.panel.act("hand_back")
    assert a.panel.hand_back_reason.text() == "rappeler : résultat de la prise de sang"
    # the holder: no reason, nothing sent; with one, the item goes to the ARM's queue
    b.panel.select(case.case_id)
    b.panel.act("hand_back")
    b.panel.hand_back_reason.returnPressed.emit()
    assert "pourquoi l'ARM doit rappeler" in b.panel.message.text()
    assert b.panel.hand_back_bar.isVisible()
    b.panel.hand_back_reason.setText("rappeler pour donner l'adresse de la garde")
    b.panel.hand_back_reason.returnPressed.emit()
    await until(
        lambda: (i := sup.panel.model.item(case.case_id)) is not None and i.queue is QueueName.ARM,
        timeout=10,
    )
    events = await b.client.events(case.case_id)
    assert events[-1].kind is EventKind.HANDED_BACK
    assert events[-1].data["reason"] == "rappeler pour donner l'adresse de la garde"
    assert not b.panel.hand_back_bar.isVisible() and b.panel.hand_back_reason.text() == ""


async def test_the_supervisor_reassigns_a_claim_from_the_keyboard(
    room: tuple[Clock, Station, Station, Station],
) -> None:
    clock, a, b, sup = room
    held, other = dossier(8, clock), dossier(9, clock)
    for case in (held, other):
        await a.client.enqueue(case)
    for station in (a, b, sup):  # every workstation sees both before anyone acts
        await until(lambda s=station: len(rows(s.panel, QueueName.SNP)) == 2, timeout=10)
    assert sup.panel.action_buttons["reassign"].text() == "Réattribuer…\nCtrl+E"
    assert "reassign" not in a.panel.action_buttons  # regulators cannot
    for station, case in ((a, held), (b, other)):
        assert station.panel.select(case.case_id)
        station.panel.act("claim")
    await until(
        lambda: all(
            (i := sup.panel.model.item(c.case_id)) is not None and i.claim is not None
            for c in (held, other)
        ),
        timeout=10,
    )
    # the regulators at work are offered; the current holder is not
    sup.panel.select(held.case_id)
    sup.panel.act("reassign")
    assert sup.panel.reassign_bar.isVisible()
    offered = [sup.panel.reassign_to.itemData(i) for i in range(sup.panel.reassign_to.count())]
    assert offered == ["", "POSTE-MRL-2"]
    assert sup.panel.reassign_to.currentText() == ""  # a choice is required
    sup.panel.reassign_to.setCurrentIndex(1)
    sup.panel._confirm_reassign()
    await until(
        lambda: (
            (i := b.panel.model.item(held.case_id)) is not None
            and i.claim is not None
            and i.claim.workstation == "POSTE-MRL-2"
        ),
        timeout=10,
    )
    item = b.panel.model.item(held.case_id)
    assert item is not None and item.claim is not None
    assert (item.claim.operator, item.claim.role) == ("poste-mrl-2", "MRL")
    # another workstation may see the change before the supervisor's own
    # answer is in: the next action on the dossier waits for that answer
    await until(lambda: held.case_id not in sup.panel.busy, timeout=10)
    # a workstation typed in takes the role of the queue; then back to the queue
    sup.panel.select(held.case_id)
    sup.panel.act("reassign")
    sup.panel.reassign_to.setEditText("poste-mrl-9")
    sup.panel._confirm_reassign()
    await until(
        lambda: (
            (i := a.panel.model.item(held.case_id)) is not None
            and i.claim is not None
            and (i.claim.workstation, i.claim.role) == ("POSTE-MRL-9", "MRL")
        ),
        timeout=10,
    )
    await until(lambda: held.case_id not in sup.panel.busy, timeout=10)
    sup.panel.select(held.case_id)
    sup.panel.act("reassign")
    sup.panel.reassign_to.setCurrentIndex(0)
    sup.panel._confirm_reassign()
    await until(
        lambda: (
            (i := a.panel.model.item(held.case_id)) is not None and i.status is ItemStatus.WAITING
        ),
        timeout=10,
    )
    events = [e for e in await sup.client.events(held.case_id) if e.kind is EventKind.REASSIGNED]
    assert [e.actor.workstation for e in events] == ["POSTE-SUP"] * 3
    assert [(e.data.get("to") or {}).get("workstation") for e in events] == [
        "POSTE-MRL-2",
        "POSTE-MRL-9",
        None,
    ]


async def test_server_down_shows_offline_and_nothing_is_lost(
    room: tuple[Clock, Station, Station, Station],
) -> None:
    clock, a, b, _sup = room
    a.flaky.down = True
    case = dossier(6, clock)
    assert await a.client.enqueue(case) is None
    assert a.client.state.pending == 1 and not a.client.state.online
    a.flaky.down = False
    await until(lambda: a.client.state.pending == 0, timeout=5)
    await until(lambda: b.panel.model.item(case.case_id) is not None, timeout=10)


async def test_the_head_is_selected_and_f2_takes_the_next(
    room: tuple[Clock, Station, Station, Station], qtbot: QtBot
) -> None:
    """Issue 14 §12: Entrée works before any click; one key takes the head."""
    clock, a, b, _sup = room
    late, urgent = dossier(20, clock, priority="P3"), dossier(21, clock, priority="P1")
    await a.client.enqueue(late)
    clock.t += timedelta(seconds=5)
    await a.client.enqueue(urgent)
    await until(lambda: len(rows(a.panel, QueueName.SNP)) == 2, timeout=10)
    a.panel.activateWindow()
    await until(a.panel.isActiveWindow)
    item = a.panel.selected()
    assert item is not None and item.case_id == urgent.case_id  # the head, unclicked
    opened: list[str] = []
    a.panel.open_dossier.connect(opened.append)
    a.panel.setFocus()
    focus = QApplication.focusWidget()
    assert focus is a.panel.views[QueueName.SNP]
    press(focus, Qt.Key.Key_Return)  # Entrée on the head claims it
    await until(lambda: opened == [urgent.case_id], timeout=10)
    # the other workstation: F2 takes the next free one, whatever is selected
    b.panel.activateWindow()
    await until(b.panel.isActiveWindow)
    await until(lambda: held(b.panel, urgent.case_id), timeout=10)
    b.panel.select(urgent.case_id)
    press(b.panel.views[QueueName.SNP], Qt.Key.Key_F2)
    await until(lambda: "Prendre : fait" in b.panel.message.text(), timeout=10)
    item = b.panel.model.item(late.case_id)
    assert item is not None and item.claim is not None
    assert item.claim.workstation == "POSTE-MRL-2"
    press(b.panel.views[QueueName.SNP], Qt.Key.Key_F2)
    assert "Aucun dossier en attente" in b.panel.message.text()


async def test_keyboard_claim_opens_the_dossier(
    room: tuple[Clock, Station, Station, Station], qtbot: QtBot
) -> None:
    clock, a, _b, _sup = room
    case = dossier(7, clock)
    await a.client.enqueue(case)
    await until(lambda: a.panel.model.item(case.case_id) is not None, timeout=10)
    opened: list[str] = []
    a.panel.open_dossier.connect(opened.append)
    a.panel.select(case.case_id)
    view = a.panel.current_view()
    assert view is not None
    qtbot.keyClick(view, Qt.Key.Key_Return)  # Enter on a free item claims it
    await until(lambda: opened == [case.case_id], timeout=10)
    item = a.panel.model.item(case.case_id)
    assert item is not None and item.claim is not None and item.claim.workstation == "POSTE-MRL-1"


@pytest.mark.parametrize(
    ("role", "offered"),
    [
        ("ARM", ["take_next", "claim", "release", "transfer", "close"]),
        ("OSNP", ["take_next", "claim", "release", "transfer", "hand_back", "close"]),
        (
            "MRU",
            ["take_next", "claim", "release", "transfer", "request_booking", "hand_back", "close"],
        ),
        (
            "MRL",
            ["take_next", "claim", "release", "transfer", "request_booking", "hand_back", "close"],
        ),
        ("DENT", ["take_next", "claim", "release", "transfer", "hand_back", "close"]),
        ("SUP", ["take_next", "claim", "release", "transfer", "hand_back", "close", "reassign"]),
    ],
)
async def test_each_role_is_offered_only_what_it_may_do(
    tmp_path: Path, qtbot: QtBot, role: str, offered: list[str]
) -> None:
    clock = Clock()
    client = QueueClient(
        SqliteBackend(tmp_path / "queues.sqlite", now=clock),
        Outbox(tmp_path / "outbox.sqlite"),
        Actor(role, "op.test", "POSTE-TEST"),
        now=clock,
    )
    panel = QueuePanel(client, queues_for_role(role), WaitLimits(), clock, supervisor=role == "SUP")
    qtbot.addWidget(panel)
    assert list(panel.action_buttons) == offered
    shortcuts = {a.shortcut().toString() for a in panel.actions()}
    assert ("Ctrl+B" in shortcuts) == ("request_booking" in offered)  # no key to what is hidden


async def test_dossier_view_keeps_a_refused_note_and_offers_decisions_to_regulators(
    tmp_path: Path, qtbot: QtBot, env: Env
) -> None:
    clock = Clock()
    backend = SqliteBackend(tmp_path / "queues.sqlite", now=clock, poll_interval=0.02)
    case = dossier(8, clock)  # an SNP dossier
    views: dict[str, DossierView] = {}
    clients = []
    for role in ("MRU", "MRL", "ARM"):
        client = QueueClient(
            backend,
            Outbox(tmp_path / f"outbox-{role}.sqlite"),
            Actor(role, f"{role}.t", role),
            now=clock,
        )
        await client.start()
        clients.append(client)
        if role == "MRU":
            await client.enqueue(case)
        stored = await client.dossier(case.case_id)
        assert stored is not None
        view = DossierView(
            client, env.desk, env.resolver, stored, await client.events(stored.case_id)
        )
        qtbot.addWidget(view)
        view.show()
        views[role] = view
    try:
        assert views["MRL"].decision_form.isVisibleTo(views["MRL"])
        assert not views["ARM"].decision_form.isVisibleTo(views["ARM"])
        assert views["ARM"].findChild(QLabel, "noDecision").isVisibleTo(views["ARM"])
        # a note on a dossier outside one's queues is refused: the text stays to be sent again
        mru = views["MRU"]
        mru.note.setText("Rappeler à 14 h é à ç")
        mru.note.returnPressed.emit()
        await until(lambda: "hors de vos files" in mru.message.text(), timeout=10)
        assert mru.note.text() == "Rappeler à 14 h é à ç" and not mru.note.isReadOnly()
        # the regulator of its queue: stored, then the field is empty again
        mrl = views["MRL"]
        mrl.note.setText("Fièvre depuis 3 jours")
        mrl.note.returnPressed.emit()
        await until(lambda: mrl.note.text() == "", timeout=10)
        kinds = [e.kind for e in await clients[1].events(case.case_id)]
        assert kinds == [EventKind.ENQUEUED, EventKind.MEDICAL_NOTE]
        assert "Note ajoutée" in mrl.message.text()
    finally:
        for client in clients:
            await client.stop()


async def test_a_decision_starts_empty_and_needs_care_level_and_type(
    tmp_path: Path, qtbot: QtBot, env: Env
) -> None:
    """Issue 14 §5: claim, Ctrl+Entrée untouched must not record a decision."""
    clock = Clock()
    backend = SqliteBackend(tmp_path / "queues.sqlite", now=clock, poll_interval=0.02)
    client = QueueClient(
        backend, Outbox(tmp_path / "outbox.sqlite"), Actor("MRL", "mrl.t", "POSTE-MRL"), now=clock
    )
    await client.start()
    try:
        case = dossier(9, clock)
        await client.enqueue(case)
        await client.submit(client.operation("claim", case.case_id, lease_s=600))
        stored = await client.dossier(case.case_id)
        assert stored is not None
        view = DossierView(
            client, env.desk, env.resolver, stored, await client.events(case.case_id)
        )
        qtbot.addWidget(view)
        view.show()
        view.activateWindow()
        await until(view.isActiveWindow)
        assert view.care_level.currentData() == "" and view.decision_type.currentData() == ""
        view.note.setFocus()
        press(view.note, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
        assert "Niveau de soins manquant" in view.message.text()
        assert "Type de décision manquant" in view.message.text()
        assert view.care_level.hasFocus()  # straight to the first thing missing
        type_text(view.care_level, "R3")
        press(view.care_level, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
        assert view.decision_type.hasFocus()
        type_text(view.decision_type, "C")  # CONSEIL
        assert view.decision_type.currentData() == "CONSEIL"
        kinds = [e.kind for e in await client.events(case.case_id)]
        assert EventKind.DECIDED not in kinds  # nothing was recorded on defaults
        press(view.decision_type, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
        await until(lambda: "Décision enregistrée" in view.message.text(), timeout=10)
        events = await client.events(case.case_id)
        assert events[-1].kind is EventKind.DECIDED
        assert events[-1].data["care_level"] == "R3"
        assert events[-1].data["decisions"] == ["CONSEIL"]
    finally:
        await client.stop()


async def test_an_action_on_a_dossier_still_answering_is_said_not_dropped(
    room: tuple[Clock, Station, Station, Station],
) -> None:
    clock, a, _b, _sup = room
    case = dossier(30, clock)
    await a.client.enqueue(case)
    await until(lambda: a.panel.model.item(case.case_id) is not None, timeout=10)
    a.panel.busy.add(case.case_id)  # an earlier action's answer not in yet
    assert a.panel.run("claim", case.case_id) is None
    assert "déjà en cours" in a.panel.message.text()
    a.panel.busy.discard(case.case_id)
