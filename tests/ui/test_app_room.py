"""The app in production mode ([room]): the login dialog first, then the
window on the session's role over the room server's queues."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from sas_desk.app import RunOptions, build_queue_backend, run
from sas_desk.models.queue import WaitLimits
from sas_desk.services.config import Config
from sas_desk.ui.keys import type_text
from tests.integration.queues.room import PASSWORD, RoomServer
from tests.ui.conftest import until


def test_the_backend_follows_the_configuration(tmp_path: Path) -> None:
    embedded = build_queue_backend(Config(data_dir=tmp_path), WaitLimits())
    assert embedded.name == "sqlite"
    room = build_queue_backend(
        Config(data_dir=tmp_path, room_url="https://salle.samu69.local:8443"), WaitLimits()
    )
    assert room.name == "remote"


def test_the_app_logs_in_then_opens_on_the_sessions_role(room: RoomServer, tmp_path: Path) -> None:
    config = Config(data_dir=tmp_path, workstation="POSTE-APP", room_url=room.url, demo=False)
    seen: dict[str, Any] = {}

    async def on_login(dialog: Any) -> None:
        await until(dialog.isVisible)
        seen["title"] = dialog.windowTitle()
        type_text(dialog.login, "arm.martin")
        type_text(dialog.password, PASSWORD)
        QTest.keyClick(dialog.password, Qt.Key.Key_Return)

    async def on_ready(window: Any) -> None:
        seen["role"] = window.role
        seen["session"] = window.session_label.text()
        seen["backend"] = window.queue_client.backend.name
        seen["picker"] = window.stack.currentWidget() is window.picker
        window.close()

    assert run(config, RunOptions(on_login=on_login, on_ready=on_ready)) == 0
    assert seen == {
        "title": "SAS Desk — identification",
        "role": "ARM",
        "session": "Session : arm.martin (ARM)",
        "backend": "remote",
        "picker": False,
    }


def test_a_cold_start_while_the_server_is_down_opens_offline_then_logs_in(
    room: RoomServer, tmp_path: Path
) -> None:
    """The room server does not answer when the workstation starts: the
    login opens the window offline (French banner) as who typed it, the
    outbox keeps a transmission, and when the server answers the session
    opens by itself (no dialog) and the transmission lands once."""
    import asyncio

    from sas_desk.models.dossier import EventKind
    from tests.integration.queues.support import make_dossier

    config = Config(data_dir=tmp_path, workstation="POSTE-FROID", room_url=room.url, demo=False)
    seen: dict[str, Any] = {}
    dossier = make_dossier(77)
    room.stop()  # down before the workstation starts

    async def on_login(dialog: Any) -> None:
        await until(dialog.isVisible)
        type_text(dialog.login, "arm.martin")
        type_text(dialog.password, PASSWORD)
        QTest.keyClick(dialog.password, Qt.Key.Key_Return)
        seen["dialog"] = dialog

    async def on_ready(window: Any) -> None:
        await until(lambda: window.findChild(object, "roomOfflineBanner") is not None)
        banner = window.findChild(object, "roomOfflineBanner")
        await until(banner.isVisible)
        seen["banner"] = True
        seen["text"] = banner.label.text() if banner is not None else ""
        seen["role"] = window.role
        seen["offline_session"] = window.session_label.text()
        seen["dialog_hidden"] = not seen["dialog"].isVisible()
        client = window.queue_client
        seen["kept"] = await client.enqueue(dossier) is None and client.state.pending == 1
        await asyncio.get_running_loop().run_in_executor(None, room.start)  # it comes back
        await until(lambda: client.state.pending == 0 and client.state.online, 30)
        await until(lambda: window.session_label.text() == "Session : arm.martin (ARM)", 30)
        seen["dialog_stayed_hidden"] = not seen["dialog"].isVisible()
        seen["banner_gone"] = window.findChild(object, "roomOfflineBanner") is None
        events = await client.backend.events(dossier.case_id)
        seen["events"] = [e.kind for e in events]
        window.close()

    try:
        assert run(config, RunOptions(on_login=on_login, on_ready=on_ready)) == 0
    finally:
        if room.process is None or room.process.poll() is not None:
            room.start()  # the fixture's server, for the tests after this one
    assert seen.pop("dialog") is not None
    text = seen.pop("text")
    assert "Poste ouvert hors ligne" in text and "boîte d'envoi" in text
    assert seen == {
        "banner": True,
        "role": "ARM",
        "offline_session": "Session : hors ligne",
        "dialog_hidden": True,
        "kept": True,
        "dialog_stayed_hidden": True,
        "banner_gone": True,
        "events": [EventKind.ENQUEUED],
    }
