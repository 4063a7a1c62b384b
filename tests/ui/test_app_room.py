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
