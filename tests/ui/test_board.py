"""The supervisor's board over a real SQLite queue store: what it shows,
the late items first, acting through the queue client, and the wall mode."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import pytest_asyncio
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QTableWidget
from pytestqt.qtbot import QtBot

from sas_desk.models.dossier import Actor, EventKind
from sas_desk.models.queue import AgeState, ItemStatus, QueueName, WaitLimits
from sas_desk.services.queues.client import Outbox, QueueClient
from sas_desk.services.queues.sqlite import SqliteBackend
from sas_desk.services.stats.sqlite import SqliteStatsSource
from sas_desk.ui.board import STATE_COLOURS, Board
from tests.helpers.board_room import PATIENT, Room, case_id
from tests.ui.conftest import Env, open_window, until

pytestmark = [pytest.mark.gui, pytest.mark.asyncio(loop_scope="session")]
TZ = timezone(timedelta(hours=1))
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Setup:
    now: datetime
    backend: SqliteBackend
    client: QueueClient
    source: SqliteStatsSource
    path: Path


@pytest_asyncio.fixture(loop_scope="session")
async def room(tmp_path: Path) -> AsyncIterator[Setup]:
    # mid-afternoon today in the room's zone: the played hours stay on one day
    # (just after midnight, "today's" outcomes lost the hours before it)
    now = datetime.now(TZ).replace(hour=15, minute=0, second=0, microsecond=0)
    path = tmp_path / "queues.sqlite"
    backend = SqliteBackend(path, now=lambda: now, poll_interval=0.02)
    await backend.open()
    await Room(backend, now).play()
    client = QueueClient(
        SqliteBackend(path, now=lambda: now, poll_interval=0.02),
        Outbox(tmp_path / "outbox.sqlite"),
        Actor("SUP", "sup.bernard", "POSTE-SUP"),
        now=lambda: now,
        renew_s=3600,
    )
    await client.start()
    source = SqliteStatsSource(path)
    yield Setup(now, backend, client, source, path)
    await client.stop()
    await source.close()
    await backend.close()


def texts(table: QTableWidget) -> list[list[str]]:
    return [
        [table.item(r, c).text() if table.item(r, c) else "" for c in range(table.columnCount())]
        for r in range(table.rowCount())
    ]


async def shown(qtbot: QtBot, room: Setup, *, wall: bool = False) -> Board:
    board = Board(room.client, room.source, WaitLimits(), lambda: room.now, wall=wall)
    qtbot.addWidget(board)
    board.resize(1366, 768)
    board.show()
    board.start()
    await until(lambda: board.figures is not None and len(board.figures.late) == 4, timeout=10)
    await until(lambda: board.snp_series.count() > 0, timeout=10)
    return board


async def test_the_board_shows_the_room_late_items_first(qtbot: QtBot, room: Setup) -> None:
    board = await shown(qtbot, room)
    late = texts(board.late_table)
    assert [r[0] for r in late] == [
        "Urgent en retard",
        "Poste muet",
        "Rappel dû",
        "RDV < 48 h menacé",
    ]
    assert late[0][1:4] == ["AMU", "P1", "10:00"]
    assert late[0][6] == case_id("P1LATE").rsplit(".", 1)[-1]
    # waiting per queue and priority, coloured by the waiting limits
    amu = list(QueueName).index(QueueName.AMU)
    p1 = board.queues_table.item(amu, 1)
    assert p1.text() == "1 · 10:00"
    assert p1.background().color() == STATE_COLOURS[AgeState.LATE]
    p2 = board.queues_table.item(amu, 2)
    assert p2.text() == "2 · 09:00"  # LOST (9 min) and AMUOK (2 min), not late
    snp = list(QueueName).index(QueueName.SNP)
    assert board.queues_table.item(snp, 5).text() == "1"  # HELD
    # staff: who holds what since when, the silent workstation first
    staff = {r[0]: r for r in texts(board.staff_table)}
    assert staff["POSTE-MRU-9"][6] == "muet (bail perdu)"
    assert staff["POSTE-MRL-1"][1:4] == ["dr.leroy", "MRL", "1"]
    assert staff["POSTE-MRL-1"][5] == "3"  # decided in the last hour
    assert texts(board.staff_table)[0][0] == "POSTE-MRU-9"
    # the last hour's flow and today's SNP outcomes
    flow = board.flow_sets["DECIDED"]
    assert sum(flow.at(i) for i in range(flow.count())) == 4
    assert board.flow_axis.count() == 6
    outcomes = {s.property("code"): int(s.value()) for s in board.snp_series.slices()}
    assert outcomes["CONSEIL"] == 2 and outcomes["URGENCES"] == 1
    assert "en retard" in board.summary.text()
    # the figures were computed off the GUI thread
    assert board.compute_threads and threading.main_thread().name not in board.compute_threads
    # no patient name anywhere on the board
    for table in (board.late_table, board.staff_table, board.queues_table):
        assert PATIENT not in str(texts(table))
    board.stop()


async def test_acting_from_the_board_goes_through_the_queue_client(
    qtbot: QtBot, room: Setup
) -> None:
    board = await shown(qtbot, room)
    opened: list[str] = []
    board.open_dossier.connect(opened.append)
    board.late_table.selectRow(0)
    board.act("open")
    assert opened == [case_id("P1LATE")]
    # reassign the late P1 to dr.durand's workstation? not on position: the list
    # offers the workstations at work (POSTE-MRL-1 holds an item)
    index = board.reassign_to.findText("POSTE-MRL-1", Qt.MatchFlag.MatchStartsWith)
    assert index > 0
    board.reassign_to.setCurrentIndex(index)
    board.late_table.selectRow(0)
    task = board.act("reassign")
    assert task is not None
    await task
    item = next(
        i for i in await room.backend.snapshot([QueueName.AMU]) if i.case_id == case_id("P1LATE")
    )
    assert item.status is ItemStatus.CLAIMED and item.claim is not None
    assert item.claim.workstation == "POSTE-MRL-1" and item.claim.role == "MRL"
    last = (await room.backend.events(case_id("P1LATE")))[-1]
    assert last.kind is EventKind.REASSIGNED and last.actor.role == "SUP"
    assert "Réattribué" in board.message.text()
    # release what a workstation holds: select it in the staff table
    await until(
        lambda: any(r[0] == "POSTE-MRL-1" and r[3] == "2" for r in texts(board.staff_table)),
        timeout=10,
    )
    row = next(i for i, r in enumerate(texts(board.staff_table)) if r[0] == "POSTE-MRL-1")
    board.staff_table.selectRow(row)
    assert board.selected_case() == case_id("HELD")  # the oldest it holds
    task = board.act("release")
    assert task is not None
    await task
    held = next(
        i for i in await room.backend.snapshot([QueueName.SNP]) if i.case_id == case_id("HELD")
    )
    assert held.status is ItemStatus.WAITING
    # a refusal shows the state machine's French message
    board.staff_table.clearSelection()
    board.late_table.clearSelection()
    assert board.act("release") is None
    assert "Sélectionnez" in board.message.text()
    board.stop()


async def test_the_wall_is_read_only_large_and_without_case_ids(qtbot: QtBot, room: Setup) -> None:
    office = Board(room.client, room.source, WaitLimits(), lambda: room.now)
    qtbot.addWidget(office)
    board = await shown(qtbot, room, wall=True)
    assert board.font().pointSizeF() > office.font().pointSizeF() * 1.5
    assert board.action_buttons == {}
    assert board.late_table.selectionMode() == board.late_table.SelectionMode.NoSelection
    assert board.act("release") is None
    every_text = str(texts(board.late_table)) + str(texts(board.staff_table))
    every_text += " ".join(label.text() for label in board.findChildren(QLabel))
    for name in ("P1LATE", "HELD", "CALLBACK", "LOST", "BOOKING"):
        assert case_id(name).rsplit(".", 1)[-1] not in every_text
    assert PATIENT not in every_text
    board.stop()


async def test_the_supervisor_lands_on_the_board(qtbot: QtBot, room: Setup, env: Env) -> None:
    from dataclasses import replace

    from PySide6.QtWidgets import QTabBar

    env.config = replace(env.config, data_dir=room.path.parent)  # the room's queue file
    env.desk._now = lambda: room.now  # the room's afternoon
    window = await open_window(qtbot, env, role="SUP", queue_client=room.client)
    board = window.tabs.widget(0)
    assert isinstance(board, Board)
    assert window.tabs.tabText(0) == "Tableau de salle"
    assert window.tabs.tabBar().tabButton(0, QTabBar.ButtonPosition.RightSide) is None
    await until(lambda: board.figures is not None and len(board.figures.late) >= 3, timeout=10)
    opened: list[str] = []
    window.open_dossier_view = opened.append  # type: ignore[method-assign]
    board.open_dossier.disconnect()
    board.open_dossier.connect(window.open_dossier_view)
    board.late_table.selectRow(0)
    board.act("open")
    assert opened == [case_id("P1LATE")]
    window.set_role("MRU")  # another role: no board
    assert not any(isinstance(window.tabs.widget(i), Board) for i in range(window.tabs.count()))
    window.close()


async def test_the_statistics_reader_lands_on_the_statistics_only(
    qtbot: QtBot, room: Setup, env: Env
) -> None:
    from dataclasses import replace

    from sas_desk.ui.stats_view import StatsView

    env.config = replace(env.config, data_dir=room.path.parent)
    window = await open_window(qtbot, env, role="STATS", queue_client=room.client)
    assert [window.tabs.tabText(i) for i in range(window.tabs.count())] == ["Statistiques"]
    assert isinstance(window.tabs.currentWidget(), StatsView)
    assert window.queue_panel is None  # no queue to work
    window.set_role("SUP")  # the supervisor: the board and the statistics
    assert [window.tabs.tabText(i) for i in range(2)] == ["Tableau de salle", "Statistiques"]
    window.close()


async def test_the_wall_screen_starts_from_the_command_line(tmp_path: Path) -> None:
    import asyncio
    import os
    import subprocess
    import sys

    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "sas_desk", "--data-dir", str(tmp_path), "--wall", "--smoke"],
        cwd=ROOT,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "WALL OK" in done.stdout and "queues=sqlite" in done.stdout
