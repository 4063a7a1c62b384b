"""``sas-desk --wall``: the room's wall screen — the supervisor's board full
screen, read-only, in large type, without any case id or patient identity.

It watches every queue as the supervisor would (role SUP) but offers no
action; Échap or Ctrl+Q leaves.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from sas_desk.models.dossier import Actor
from sas_desk.models.queue import WaitLimits
from sas_desk.services import clock
from sas_desk.services.config import Config
from sas_desk.services.queues.client import Outbox, QueueClient

log = logging.getLogger("sas_desk.wall")


async def wall_main(config: Config, *, smoke: bool = False) -> int:
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtGui import QKeySequence, QShortcut

    from sas_desk.app import build_queue_backend, qt_turn
    from sas_desk.services.stats.export import open_source
    from sas_desk.ui import aio
    from sas_desk.ui.board import Board

    limits = WaitLimits(*config.wait_limits)
    client = QueueClient(
        build_queue_backend(config, limits),
        Outbox(config.data_dir / "outbox-wall.sqlite"),
        Actor("SUP", config.operator, config.workstation),
        now=clock.now,
        lease_s=config.lease_s,
        renew_s=config.renew_s,
    )
    await client.start()
    board = Board(
        client,
        open_source(config),
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


def run_wall(config: Config, *, smoke: bool = False) -> int:
    from PySide6.QtWidgets import QApplication

    from sas_desk.ui.aio import event_loop

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("SAS Desk")
    app.setQuitOnLastWindowClosed(False)
    with asyncio.Runner(loop_factory=lambda: event_loop(app)) as runner:
        return runner.run(wall_main(config, smoke=smoke))
