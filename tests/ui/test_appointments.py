"""SAS appointments to attach (issue #16): the room's list of unattached
RS-SAS-RDV appointments, the one matching the open dossier's orientation put
first and marked, attached with Enter through the Hub processor (nothing
retyped), then shown on the dossier's timeline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from sas_desk.models.dossier import Actor
from sas_desk.services.hub.cases import JournalCases
from sas_desk.services.hub.processor import HubProcessor
from sas_desk.services.hub.settings import HubSettings
from sas_desk.services.hub.store import AsyncHubStore
from sas_desk.services.queues.client import Outbox, QueueClient
from sas_desk.services.queues.sqlite import SqliteBackend
from sas_desk.ui.appointments import AppointmentsDialog
from sas_desk.ui.dossier_view import DossierView
from sas_desk.ui.keys import press, type_text
from tests.ui.conftest import Env, until
from tests.ui.test_call_sheet import fill_valid, make_sheet

pytestmark = [pytest.mark.gui, pytest.mark.asyncio(loop_scope="session")]

REGULATOR = "dr.martin"


def rdv(appointment_id: str, created: datetime, regulator: str, last: str) -> dict[str, Any]:
    return {
        "appointmentId": appointment_id,
        "method": "CreateAppointment",
        "created": created.replace(microsecond=0).isoformat(),
        "status": "booked",
        "orientationCategory": "MSP",
        "start": (created + timedelta(hours=3)).replace(microsecond=0).isoformat(),
        "practitioner": {"rppsId": "810005681340", "lastName": last, "firstName": "Didier"},
        "organization": {"organizationId": "MSP-1", "name": "MSP des Pentes"},
        "regulator": {
            "regulatorId": regulator,
            "regulatorName": "MARTIN",
            "regulatorFirstname": "Anne",
            "regulatorEmail": f"{regulator}@chu.example",
        },
    }


@pytest_asyncio.fixture(loop_scope="session")
async def hub(tmp_path: Path, env: Env) -> AsyncIterator[HubProcessor]:
    store = AsyncHubStore(tmp_path / "hub.sqlite")
    await store.open()
    settings = HubSettings(url="amqp://127.0.0.1:5672/x", client_id="fr.health.samu690")
    yield HubProcessor(settings, store, JournalCases(env.journal, env.desk._now), env.desk._now)
    await store.close()


async def put(processor: HubProcessor, body: dict[str, Any]) -> None:
    await processor.store.run(
        lambda s: s.put_appointment(
            appointment_id=body["appointmentId"],
            status=body["status"],
            start=body["start"],
            created=body["created"],
            body=body,
            distribution_id=f"fr.health.ptfsas_{body['appointmentId']}",
            change="created",
            at=body["created"],
        )
    )


async def test_the_matching_appointment_is_suggested_and_attached_with_enter(
    qtbot: QtBot, env: Env, tmp_path: Path, hub: HubProcessor
) -> None:
    from sas_desk.ui.main_window import MainWindow

    clients = []
    for role, ws, who in (("ARM", "POSTE-TEST", "arm.test"), ("MRL", "POSTE-MRL", REGULATOR)):
        client = QueueClient(
            SqliteBackend(tmp_path / "queues.sqlite", now=env.desk._now, poll_interval=0.02),
            Outbox(tmp_path / f"outbox-{ws}.sqlite"),
            Actor(role, who, ws),
            now=env.desk._now,
            retry_delay=0.05,
            renew_s=3600,
        )
        await client.start()
        clients.append(client)
    arm, mrl = clients
    try:
        env.desk.queues = arm
        sheet = await make_sheet(qtbot, env)
        fill_valid(sheet)
        type_text(sheet.branch, "s")
        sheet.transmit()
        d = sheet.dossier
        await arm.enqueue(d)
        await mrl.submit(mrl.operation("claim", d.case_id))
        await mrl.submit(mrl.operation("decide", d.case_id, care_level="R3", decisions=[]))
        now = env.desk._now()
        # three waiting: another regulator's, one two hours earlier, and this one
        await put(hub, rdv("rdv-other", now, "dr.autre", "MOREL"))
        await put(hub, rdv("rdv-old", now - timedelta(hours=2), REGULATOR, "MOREL"))
        await put(hub, rdv("rdv-mine", now + timedelta(minutes=3), REGULATOR, "MOREL"))

        config = replace(env.config, role="MRL", operator=REGULATOR)
        window = MainWindow(
            config,
            env.desk,
            env.journal,
            env.resolver,
            report=None,
            unfinished=[],
            today=[],
            queue_client=mrl,
        )
        qtbot.addWidget(window)
        window.show()
        window.activateWindow()
        await until(window.isActiveWindow)
        window.hub_processor = hub
        window.open_dossier_view(d.case_id)
        await until(lambda: isinstance(window.tabs.currentWidget(), DossierView))
        view = window.tabs.currentWidget()
        assert isinstance(view, DossierView)
        # the dossier says it before anyone asks
        await until(lambda: "Ctrl+Maj+A" in view.message.text())
        assert view.message.text().startswith("1 rendez-vous SAS reçu correspond")

        press(
            window,
            Qt.Key.Key_A,
            Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
        )
        await until(
            lambda: isinstance(getattr(window, "appointments_dialog", None), AppointmentsDialog)
        )
        dialog: AppointmentsDialog = window.appointments_dialog
        await until(dialog.isVisible)
        table = dialog.table
        assert table.rowCount() == 3  # the room's whole list
        ids = [table.item(r, 0).data(Qt.ItemDataRole.UserRole) for r in range(3)]
        assert ids[0] == "rdv-mine"  # suggested first, and selected
        assert table.item(0, 4).text().startswith("★ suggéré")
        assert table.item(0, 1).text() == "Didier MOREL"
        assert table.item(0, 2).text() == "MSP des Pentes"
        assert table.item(0, 3).text() == "Réservé"
        assert all(table.item(r, 4).text() == "" for r in (1, 2))  # not this regulator / too far
        assert dialog.selected_id() == "rdv-mine"

        press(table, Qt.Key.Key_Return)
        await until(lambda: not dialog.isVisible())
        stored = await hub.store.run(lambda s: s.appointment("rdv-mine"))
        assert stored is not None and stored.case_id == d.case_id
        assert [
            a.appointment_id for a in await hub.store.run(lambda s: s.appointments(unattached=True))
        ] == ["rdv-old", "rdv-other"]
        # on the dossier's timeline, and again when the dossier is opened anew
        await until(
            lambda: any(
                "Rendez-vous SAS" in view.timeline.item(i).text()
                and "Réservé : Didier MOREL (MSP des Pentes), le" in view.timeline.item(i).text()
                for i in range(view.timeline.count())
            )
        )
        assert "Ctrl+Maj+A" not in view.message.text()  # the suggestion is answered
        await view.refresh()
        texts = [view.timeline.item(i).text() for i in range(view.timeline.count())]
        assert sum("Réservé : Didier MOREL" in t for t in texts) == 1
        QApplication.processEvents()
    finally:
        for client in clients:
            await client.stop()


async def test_without_a_dossier_the_list_shows_and_enter_attaches_nothing(
    qtbot: QtBot, env: Env, hub: HubProcessor
) -> None:
    now = env.desk._now()
    await put(hub, rdv("rdv-1", now, REGULATOR, "MOREL"))
    from sas_desk.ui.appointments import unattached

    dialog = AppointmentsDialog(
        hub,
        await unattached(hub),
        dossier=None,
        events=[],
        identities=frozenset({REGULATOR}),
        by=REGULATOR,
    )
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.table.rowCount() == 1 and dialog.table.item(0, 4).text() == ""
    press(dialog.table, Qt.Key.Key_Return)
    assert "Ouvrez d'abord le dossier" in dialog.message.text()
    stored = await hub.store.run(lambda s: s.appointment("rdv-1"))
    assert stored is not None and stored.case_id is None
