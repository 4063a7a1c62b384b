"""Who is at the keyboard, in the window (ui/session_gate.py), driven by
pytest-qt against a real room server with fake clocks: the screen locks
after inactivity and only the same operator unlocks it; « Changer
d'opérateur » hands the workstation over without closing the open call and
each action stays attributed to who made it; the end of shift and a session
the server revoked lock the screen and say so in French; the demo unlocks
with a click."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import pytest_asyncio
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from sas_desk.models.dossier import Actor
from sas_desk.services.queues.remote import Credentials, RoomSession, TokenStore
from sas_desk.ui.keys import type_text
from sas_desk.ui.login_dialog import LoginDialog
from sas_desk.ui.session_gate import (
    DEMO_FR,
    HANDOVER_FR,
    HANDOVER_TITLE_FR,
    REAUTH_TITLE_FR,
    SESSION_CLOSED_FR,
    SHIFT_END_FR,
    UNLOCK_TITLE_FR,
    SessionGate,
)
from sas_desk.ui.session_lock import REFUSED_FR
from tests.integration.queues.room import PASSWORD, RoomServer
from tests.ui.conftest import Env, open_window, until

pytestmark = [pytest.mark.gui, pytest.mark.asyncio(loop_scope="session")]

PARIS = ZoneInfo("Europe/Paris")
NEXT = Actor("ARM", "arm.leroy", "POSTE-GATE")


class Clocks:
    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = datetime(2026, 12, 7, 19, 58, tzinfo=PARIS)

    def monotonic(self) -> float:
        return self.mono

    def now(self) -> datetime:
        return self.wall


@pytest.fixture(scope="module")
def accounts(room: RoomServer) -> RoomServer:
    room.add_accounts([NEXT])
    return room


@pytest_asyncio.fixture(loop_scope="session")
async def session(
    accounts: RoomServer, request: pytest.FixtureRequest
) -> AsyncIterator[RoomSession]:
    name = f"POSTE-GATE-{request.node.name[-12:]}"
    opened = RoomSession(accounts.url, name, tokens=TokenStore(accounts.url, name))
    await opened.login(Credentials("arm.martin", PASSWORD, "ARM"))
    yield opened
    await opened.close()


async def setup(
    qtbot: QtBot, env: Env, room: RoomServer, session: RoomSession, **kw: Any
) -> tuple[Any, SessionGate, LoginDialog, Clocks]:
    window = await open_window(qtbot, env, session=session)
    dialog = LoginDialog(room.url, session.workstation, role="ARM")
    qtbot.addWidget(dialog)
    session.listeners.append(dialog.session_changed)
    clocks = Clocks()
    gate = SessionGate(
        window,
        operator=session.info.operator if session.info else "",
        session=session,
        dialog=dialog,
        clock=clocks.monotonic,
        now=clocks.now,
        tick_ms=3_600_000,
        **kw,
    )
    window.gate = gate
    return window, gate, dialog, clocks


def sign_in(qtbot: QtBot, dialog: LoginDialog, login: str | None, password: str) -> None:
    if login is not None:
        dialog.login.clear()
        type_text(dialog.login, login)
    type_text(dialog.password, password)
    qtbot.keyClick(dialog.password, Qt.Key.Key_Return)


async def test_inactivity_locks_and_only_the_same_operator_unlocks(
    qtbot: QtBot, env: Env, room: RoomServer, session: RoomSession
) -> None:
    window, gate, dialog, clocks = await setup(qtbot, env, room, session)
    sheet = window.current_sheet()
    assert sheet is not None
    type_text(sheet.callback, "0612")
    clocks.mono += 299
    gate.check()
    assert not gate.lock.is_locked
    clocks.mono += 1
    gate.check()
    assert gate.lock.is_locked
    type_text(sheet.callback, "9999")  # swallowed by the cover
    assert sheet.callback.text() == "0612"
    gate.lock.cover.button.click()
    await until(dialog.isVisible)
    assert dialog.title.text() == UNLOCK_TITLE_FR
    assert dialog.login.text() == "arm.martin" and dialog.login.isReadOnly()
    sign_in(qtbot, dialog, None, "pas-le-bon")
    await until(lambda: dialog.error.isVisible() and not dialog.busy, 15)
    assert dialog.error.text() == "Identifiant ou mot de passe incorrect."
    assert gate.lock.is_locked
    qtbot.keyClick(dialog.password, Qt.Key.Key_Escape)  # gives up: still locked
    await until(lambda: gate.lock.cover.error.text() == REFUSED_FR)
    assert gate.lock.is_locked and session.info is not None
    gate.lock.cover.button.click()
    await until(dialog.isVisible)
    sign_in(qtbot, dialog, None, PASSWORD)
    await until(lambda: not gate.lock.is_locked, 15)
    assert not dialog.isVisible() and not dialog.login.isReadOnly()
    type_text(sheet.callback, "3456")  # nothing typed was lost
    assert sheet.callback.text() == "06123456"
    assert window.session_label.text() == "Session : arm.martin (ARM)"


async def test_change_of_operator_keeps_the_call_and_attributes_each_action(
    qtbot: QtBot, env: Env, room: RoomServer, session: RoomSession
) -> None:
    window, gate, dialog, _ = await setup(qtbot, env, room, session)
    first = window.current_sheet()
    assert first is not None
    type_text(first.callback, "0478")  # the call starts: stamped by arm.martin
    old_token = session._access
    changed: list[tuple[str, str]] = []
    gate.operatorChanged.connect(lambda a, b: changed.append((a, b)))
    gate.change_operator()
    assert gate.lock.is_locked and gate.lock.cover.why.text() == HANDOVER_FR
    await until(dialog.isVisible)
    assert not dialog.login.isReadOnly() and dialog.login.text() == ""  # nothing of the previous
    assert dialog.title.text() == HANDOVER_TITLE_FR and not dialog.error.isVisible()
    sign_in(qtbot, dialog, "arm.leroy", PASSWORD)
    await until(lambda: not gate.lock.is_locked, 15)
    assert changed == [("arm.martin", "arm.leroy")]
    assert window.session_label.text() == "Session : arm.leroy (ARM)"
    assert window.current_sheet() is first and first.callback.text() == "0478"
    type_text(first.callback, "1234")
    assert env.desk.actor.operator == "arm.leroy"
    second = window.new_call()
    assert second is not None and second is not first
    type_text(second.callback, "0600")
    case_ids = (first.dossier.case_id, second.dossier.case_id)

    async def creators() -> list[str]:
        out = []
        for case_id in case_ids:
            events = await env.journal.events(case_id)
            out.append(events[0].actor.operator if events else "")
        return out

    deadline = asyncio.get_running_loop().time() + 10
    while await creators() != ["arm.martin", "arm.leroy"]:
        assert asyncio.get_running_loop().time() < deadline, await creators()
        await asyncio.sleep(0.05)
    async with httpx.AsyncClient() as http:  # the previous session is closed on the server
        answer = await http.get(
            f"{room.url}/v1/queues/ARM", headers={"Authorization": f"Bearer {old_token}"}
        )
    assert answer.status_code == 401


async def test_a_session_revoked_by_the_server_locks_and_says_so(
    qtbot: QtBot, env: Env, room: RoomServer, session: RoomSession
) -> None:
    window, gate, dialog, _ = await setup(qtbot, env, room, session)
    async with httpx.AsyncClient() as http:  # the administrator closes it
        revoked = await http.delete(
            f"{room.url}/v1/session", headers={"Authorization": f"Bearer {session._access}"}
        )
    assert revoked.status_code == 204
    request = asyncio.ensure_future(session.request("GET", "/v1/queues/ARM"))
    await until(lambda: gate.lock.is_locked and dialog.isVisible(), 15)
    assert gate.lock.cover.why.text() == SESSION_CLOSED_FR
    assert window.session_label.text() == "Session : fermée"
    sign_in(qtbot, dialog, "arm.leroy", PASSWORD)
    answer = await asyncio.wait_for(request, 15)
    assert answer.status_code == 200
    await until(lambda: not gate.lock.is_locked)
    assert window.session_label.text() == "Session : arm.leroy (ARM)"


async def test_the_end_of_shift_closes_the_session_and_locks(
    qtbot: QtBot, env: Env, room: RoomServer, session: RoomSession
) -> None:
    window, gate, dialog, clocks = await setup(qtbot, env, room, session, shift_ends=("20:00",))
    token = session._access
    clocks.wall = clocks.wall.replace(minute=59)
    gate.check()
    assert not gate.lock.is_locked
    clocks.wall = clocks.wall.replace(hour=20, minute=0, second=30)
    gate.check()
    assert gate.lock.is_locked and gate.lock.cover.why.text() == SHIFT_END_FR
    await until(lambda: session.info is None, 10)
    async with httpx.AsyncClient() as http:
        answer = await http.get(
            f"{room.url}/v1/queues/ARM", headers={"Authorization": f"Bearer {token}"}
        )
    assert answer.status_code == 401
    gate.lock.cover.button.click()
    await until(dialog.isVisible)
    assert not dialog.login.isReadOnly()  # the next shift's operator
    sign_in(qtbot, dialog, "arm.leroy", PASSWORD)
    await until(lambda: not gate.lock.is_locked, 15)
    assert window.session_label.text() == "Session : arm.leroy (ARM)"
    clocks.wall = clocks.wall.replace(hour=21)
    gate.check()  # the same shift end is not seen twice
    assert not gate.lock.is_locked


async def test_the_demo_locks_and_unlocks_with_a_click(qtbot: QtBot, env: Env) -> None:
    window = await open_window(qtbot, env, role="ARM")
    clocks = Clocks()
    gate = SessionGate(window, operator="arm.test", clock=clocks.monotonic, tick_ms=3_600_000)
    assert window.findChild(object, "handoverButton") is None
    clocks.mono += 300
    gate.check()
    assert gate.lock.is_locked and gate.lock.cover.error.text() == DEMO_FR
    gate.lock.cover.button.click()
    await until(lambda: not gate.lock.is_locked)


async def test_the_cover_says_late_urgent_calls_without_patient_fields(
    qtbot: QtBot, env: Env
) -> None:
    from types import SimpleNamespace

    from sas_desk.models.queue import QueueName

    window = await open_window(qtbot, env, role="ARM")
    clocks = Clocks()
    gate = SessionGate(window, operator="arm.test", clock=clocks.monotonic, tick_ms=3_600_000)
    late = [
        SimpleNamespace(queue=QueueName.AMU, motive_label="Douleur thoracique"),
        SimpleNamespace(queue=QueueName.SNP, motive_label="Fièvre"),
    ]
    window.escalation = SimpleNamespace(current=late)  # what the bar found late (it rings)
    gate.check()
    assert not gate.lock.cover.late.isVisible()  # unlocked: the bar itself shows
    clocks.mono += 300
    gate.check()
    assert gate.lock.is_locked and gate.lock.cover.late.isVisible()
    text = gate.lock.cover.late.text()
    assert text.startswith("⚠ 2 appels urgents en retard (files AMU, SNP)")
    assert "Douleur" not in text and "Fièvre" not in text
    window.escalation = SimpleNamespace(current=[])
    gate.check()
    assert not gate.lock.cover.late.isVisible()


async def test_a_long_absence_closes_the_session_and_the_same_operator_logs_in_again(
    qtbot: QtBot, env: Env, room: RoomServer, session: RoomSession
) -> None:
    window, gate, dialog, clocks = await setup(qtbot, env, room, session)
    token = session._access
    clocks.mono += 300
    gate.check()
    assert gate.lock.is_locked and session.info is not None  # 5 min: locked, session open
    clocks.mono += 900
    gate.check()  # 20 min: the session is closed on the server
    await until(lambda: session.info is None, 10)
    assert gate.lock.is_locked and gate.lock.cover.why.text() == ""  # not "closed by the server"
    async with httpx.AsyncClient() as http:
        answer = await http.get(
            f"{room.url}/v1/queues/ARM", headers={"Authorization": f"Bearer {token}"}
        )
    assert answer.status_code == 401
    gate.lock.cover.button.click()
    await until(dialog.isVisible)
    assert dialog.title.text() == REAUTH_TITLE_FR
    assert dialog.login.text() == "arm.martin" and dialog.login.isReadOnly()
    sign_in(qtbot, dialog, None, PASSWORD)
    await until(lambda: not gate.lock.is_locked, 15)
    assert session.info is not None and session.info.operator == "arm.martin"
    assert window.session_label.text() == "Session : arm.martin (ARM)"
