"""``sas-desk --wall``: the room's wall screen — the supervisor's board full
screen, read-only, in large type, without any case id or patient identity.

It watches every queue as the supervisor would (role SUP) but offers no
action; Échap or Ctrl+Q leaves.  In production mode (``[room] url``) it logs
in to the room server first, with the same dialog as a workstation (Pro Santé
Connect, the establishment's identity provider or a local password): the
server decides who may watch the room, and only a supervisor's session opens
the wall; its board then reads the room server's queues and statistics.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import replace
from typing import TYPE_CHECKING

from sas_desk.models.dossier import Actor
from sas_desk.models.queue import WaitLimits, wall_refusal
from sas_desk.services import clock
from sas_desk.services.config import Config
from sas_desk.services.queues.client import Outbox, QueueClient

if TYPE_CHECKING:
    from sas_desk.app import RunOptions

log = logging.getLogger("sas_desk.wall")


async def wall_main(
    config: Config, *, smoke: bool = False, options: RunOptions | None = None
) -> int:
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtGui import QKeySequence, QShortcut

    from sas_desk.app import RunOptions, _open_session, build_queue_backend, qt_turn
    from sas_desk.services.stats.export import open_source
    from sas_desk.ui import aio
    from sas_desk.ui.board import Board

    options = options or RunOptions(smoke=smoke)
    smoke = smoke or options.smoke
    session = None
    dialog = None  # production: the login dialog, kept for the session's re-authentication
    if config.room_url:  # production: the room server says who watches
        opened = await _open_session(replace(config, role=config.role or "SUP"), options)
        if opened is None:
            return 0  # the login was abandoned
        session, config, dialog, _offline = opened
        refusal = wall_refusal(config.role or "")
        if refusal is not None:
            log.warning("wall refused for role %s", config.role)
            print(f"sas-desk --wall : {refusal}", file=sys.stderr)
            await session.close()
            dialog.deleteLater()
            return 1
    limits = WaitLimits(*config.wait_limits)
    cipher = None
    if not config.room_url:  # the embedded queue file is sealed with this machine's key
        from sas_desk.services.atrest import data_key

        cipher = (await asyncio.to_thread(data_key, config.data_dir)).cipher()
    client = QueueClient(
        build_queue_backend(config, limits, session, cipher),
        Outbox(config.data_dir / "outbox-wall.sqlite", cipher=cipher),
        Actor("SUP", config.operator, config.workstation),
        now=clock.now,
        lease_s=config.lease_s,
        renew_s=config.renew_s,
    )
    await client.start()
    board = Board(
        client,
        open_source(config, session),
        limits,
        clock.now,
        wall=True,
        owns_source=True,
        tz=config.timezone,
    )
    board.setWindowTitle("SAS Desk — tableau de salle")
    closed = asyncio.Event()
    QCoreApplication.instance().lastWindowClosed.connect(closed.set)  # type: ignore[union-attr]
    for keys in ("Escape", "Ctrl+Q"):
        shortcut = QShortcut(QKeySequence(keys), board)
        shortcut.activated.connect(board.close)
    try:
        board.showFullScreen()
        board.start()
        if options.on_ready is not None:
            await options.on_ready(board)
        if smoke:
            await qt_turn()
            print(f"WALL OK {board.width()}x{board.height()} queues={client.backend.name}")
            board.close()
            return 0
        await closed.wait()
        return 0
    finally:
        board.stop()
        await aio.cancel_all()
        await client.stop()
        board.deleteLater()
        if dialog is not None:
            dialog.deleteLater()


def run_wall(config: Config, *, smoke: bool = False, options: RunOptions | None = None) -> int:
    from PySide6.QtWidgets import QApplication

    from sas_desk.ui.aio import event_loop

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("SAS Desk")
    app.setQuitOnLastWindowClosed(False)
    with asyncio.Runner(loop_factory=lambda: event_loop(app)) as runner:
        return runner.run(wall_main(config, smoke=smoke, options=options))
