"""``sas-desk --wall`` in production mode ([room] url): it logs in to the
room server like a workstation, opens only on a supervisor's session, and its
board reads the room server's queues and statistics (not a local file)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from sas_desk.app import RunOptions
from sas_desk.models.queue import QueueName, wall_refusal
from sas_desk.services.config import Config
from sas_desk.ui.keys import type_text
from sas_desk.wall import run_wall
from tests.integration.queues.room import PASSWORD, RoomServer, Sessions
from tests.integration.queues.support import ARM, SUP, make_dossier, op, real_clock
from tests.ui.conftest import until


@pytest.fixture(scope="module")
def room_with_sup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoomServer]:
    """A room server process (SQLite store) with an ARM's and a supervisor's accounts."""
    from tests.integration.queues.conftest import PG_DSN
    from tests.integration.queues.room import room_server

    yield from room_server("sqlite", tmp_path_factory.mktemp("room-wall"), PG_DSN, [ARM, SUP])


def test_only_a_supervisor_drives_the_wall() -> None:
    assert wall_refusal("SUP") is None
    for role in ("ARM", "MRL", "STATS", ""):
        refusal = wall_refusal(role)
        assert refusal is not None and "SUP" in refusal


def _login(login: str, role: str) -> Any:
    async def on_login(dialog: Any) -> None:
        await until(dialog.isVisible)
        type_text(dialog.login, login)
        type_text(dialog.password, PASSWORD)
        dialog.role.setCurrentIndex(dialog.role.findData(role))
        QTest.keyClick(dialog.password, Qt.Key.Key_Return)

    return on_login


def test_the_wall_logs_in_as_supervisor_and_shows_the_rooms_queues(
    room_with_sup: RoomServer, tmp_path: Path
) -> None:
    """A dossier transmitted by an ARM on another workstation shows on the
    wall, read through the room server (the wall's data dir has no queue
    file); the board's statistics are the server's."""
    from sas_desk.services.stats.remote import RemoteStatsSource

    config = Config(
        data_dir=tmp_path, workstation="MUR-SALLE", room_url=room_with_sup.url, demo=False
    )
    dossier = make_dossier(41, priority="P1")
    seen: dict[str, Any] = {}

    async def on_ready(board: Any) -> None:
        sessions = Sessions(room_with_sup)
        try:
            arm = sessions.backend(ARM)
            await arm.apply(
                op("enqueue", dossier.case_id, ARM, real_clock(), dossier=dossier.to_dict())
            )

            def counted() -> bool:
                cell = board.figures and board.figures.cell(QueueName.AMU, "P1")
                return bool(cell and cell.waiting >= 1)

            await until(counted, timeout=15)
        finally:
            await sessions.close()
        seen["backend"] = board.client.backend.name
        seen["source"] = type(board.source).__name__
        seen["actions"] = board.action_buttons
        board.close()

    options = RunOptions(on_login=_login(SUP.operator, "SUP"), on_ready=on_ready)
    assert run_wall(config, options=options) == 0
    assert seen == {"backend": "remote", "source": RemoteStatsSource.__name__, "actions": {}}
    assert not (tmp_path / "queues.sqlite").exists()


def test_the_wall_refuses_a_session_that_is_not_a_supervisors(
    room_with_sup: RoomServer, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    config = Config(
        data_dir=tmp_path, workstation="MUR-SALLE-2", room_url=room_with_sup.url, demo=False
    )
    ready: list[Any] = []

    async def on_ready(board: Any) -> None:
        ready.append(board)
        await asyncio.sleep(0)
        board.close()

    options = RunOptions(on_login=_login(ARM.operator, "ARM"), on_ready=on_ready)
    assert run_wall(config, options=options) == 1
    assert ready == []
    err = capfd.readouterr().err
    assert "tableau de salle s'ouvre avec un compte de superviseur" in err
