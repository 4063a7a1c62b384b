"""Pictures of a workstation started while its room server is down, then
of the same window once the server is back (production mode, SQLite store).

    xvfb-run -a -s "-screen 0 1366x768x24" python scripts/shot_room_offline.py [OUT_DIR]

Saves ``13-room-offline`` (the login answered by nobody: the window open
offline, its banner, a transmission kept in the outbox) and
``13b-room-back-online`` (the server started again: the session opened by
itself, the banner gone, the outbox empty).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from screenshots import login_as, save, settle, until

from sas_desk.app import RunOptions, run
from sas_desk.models.dossier import Actor
from sas_desk.services.config import Config


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "shots").resolve()
    out.mkdir(parents=True, exist_ok=True)
    from tests.integration.queues.room import RoomServer
    from tests.integration.queues.support import make_dossier

    with tempfile.TemporaryDirectory(prefix="sas-desk-offline-") as tmp:
        room = RoomServer("sqlite", f"sqlite:///{tmp}/room.sqlite", "unused", Path(tmp))
        room.start()
        room.add_accounts([Actor("ARM", "arm.durand", "POSTE-ARM-03")])
        room.stop()  # down before the workstation starts

        async def scenario(window) -> None:  # type: ignore[no-untyped-def]
            await until(lambda: window.findChild(object, "roomOfflineBanner") is not None, 15)
            client = window.queue_client
            await client.enqueue(make_dossier(12))
            await until(lambda: client.state.pending == 1, 15)
            await settle(400)
            save(window, out, "13-room-offline")
            await asyncio.get_running_loop().run_in_executor(None, room.start)
            await until(lambda: client.state.online and client.state.pending == 0, 30)
            await until(lambda: window.findChild(object, "roomOfflineBanner") is None, 15)
            await settle(400)
            save(window, out, "13b-room-back-online")
            window.close()

        config = Config(
            data_dir=Path(tmp), workstation="POSTE-ARM-03", room_url=room.url, demo=False
        )
        try:
            run(config, RunOptions(on_login=login_as("arm.durand", "ARM"), on_ready=scenario))
        finally:
            room.stop()


if __name__ == "__main__":
    main()
