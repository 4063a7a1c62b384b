"""After transmission the ARM still adds to the dossier (issue 14, defect 6):
Enter in the note field and a priority key send an ``update`` to the room;
the regulator holding the dossier sees it highlighted in its timeline, and a
P1 upgrade moves the item up the queue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from sas_desk.models.dossier import Actor, EventKind, Status
from sas_desk.models.queue import QueueName
from sas_desk.services.queues.client import Outbox, QueueClient
from sas_desk.services.queues.sqlite import SqliteBackend
from sas_desk.ui.dossier_view import DossierView
from sas_desk.ui.keys import press, type_text
from tests.ui.conftest import Env, open_window, until
from tests.ui.test_call_sheet import fill_valid, make_sheet

pytestmark = [pytest.mark.gui, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(loop_scope="session")
async def clients(tmp_path: Path, env: Env) -> AsyncIterator[tuple[QueueClient, QueueClient]]:
    made = []
    for role, ws in (("ARM", "POSTE-TEST"), ("MRL", "POSTE-MRL")):
        client = QueueClient(
            SqliteBackend(tmp_path / "queues.sqlite", now=env.desk._now, poll_interval=0.02),
            Outbox(tmp_path / f"outbox-{ws}.sqlite"),
            Actor(role, f"{role.lower()}.test", ws),
            now=env.desk._now,
            retry_delay=0.05,
            renew_s=3600,
        )
        await client.start()
        made.append(client)
    yield made[0], made[1]
    for client in made:
        await client.stop()


async def test_a_note_and_a_priority_after_transmission_reach_the_holder_highlighted(
    qtbot: QtBot, env: Env, clients: tuple[QueueClient, QueueClient]
) -> None:
    arm, mrl = clients
    env.desk.queues = arm
    sheet = await make_sheet(qtbot, env)
    fill_valid(sheet)  # P2
    type_text(sheet.branch, "s")
    sheet.transmit()
    assert sheet.dossier.status is Status.TRANSMITTED
    d = sheet.dossier
    await arm.enqueue(d)
    await mrl.submit(mrl.operation("claim", d.case_id))
    # the fields an ARM needs stay usable; the rest is locked
    assert not sheet.note.isReadOnly() and sheet.callback.isReadOnly()

    sheet.note.setFocus()
    type_text(sheet.note, "rappel : le patient a fait un malaise")
    press(sheet.note, Qt.Key.Key_Return)
    assert sheet.note.text() == ""  # sent, not vanished
    assert d.notes[-1].text == "rappel : le patient a fait un malaise"
    sheet.priority.setFocus()
    type_text(sheet.priority, "1")
    assert d.priority == "P1"
    type_text(sheet.priority, "1")  # the same key again sends nothing
    assert "Priorité P1 envoyée" in sheet.summary.text()

    await until(lambda: not env.desk._sending)  # both updates answered by the room
    events = [e for e in await mrl.events(d.case_id) if e.kind is EventKind.UPDATED]
    assert [e.actor.role for e in events] == ["ARM", "ARM"]  # note, priority: no third
    assert all(e.data["highlight"] for e in events)
    stored = await mrl.dossier(d.case_id)
    assert stored is not None and stored.priority == "P1"
    assert stored.notes[-1].text == "rappel : le patient a fait un malaise"
    (item,) = [i for i in await mrl.backend.snapshot([QueueName.SNP]) if i.case_id == d.case_id]
    assert item.priority == "P1" and item.claim is not None  # re-ranked, still held

    # the regulator's window: its open dossier view re-reads the log on the change
    window = await open_window(qtbot, env, role="MRL", queue_client=mrl)
    window.open_dossier_view(d.case_id)
    await until(lambda: window._dossier_view(d.case_id) is not None)
    view = window._dossier_view(d.case_id)
    assert isinstance(view, DossierView)
    rows = [view.timeline.item(i) for i in range(view.timeline.count())]
    marked = [r.text() for r in rows if r.data(Qt.ItemDataRole.UserRole) == "highlight"]
    assert len(marked) == 2 and all(t.startswith("★") for t in marked)
    assert any("malaise" in t for t in marked) and any("P2 → P1" in t for t in marked)
    assert view.sheet.priority.value() == "P1"

    before = view.timeline.count()
    type_text(sheet.note, "adresse : 3e étage")
    sheet.note.setFocus()
    press(sheet.note, Qt.Key.Key_Return)
    await until(lambda: view.timeline.count() == before + 1, timeout=5)
    last = view.timeline.item(view.timeline.count() - 1)
    assert "3e étage" in last.text() and last.text().startswith("★")
