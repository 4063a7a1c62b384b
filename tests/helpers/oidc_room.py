"""A room server process with ``[identity]`` pointing at the simulator's
Pro Santé Connect and establishment IdP, and accounts for the simulator's
test users (tests of the OIDC login, server side and UI)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sas_desk.server.store import open_store
from sas_desk.simulator.oidc import DEMO_CLIENT_ID, DEMO_ESTABLISHMENT_SECRET, DEMO_PSC_SECRET
from sas_desk.simulator.server import Simulator
from tests.helpers.room_server import RoomDatabase, RoomServer

# the simulator's PSC professionals (national id = 8 + RPPS)
CLAIRE, PAUL, INES, HUGO, LEA = (
    "810100000011",  # dr.martin: MRL, MRU
    "810100000029",  # dr.bernard: MRU, account disabled
    "810100000037",  # dr.moreau: DENT
    "810100000045",  # known to PSC, no account in the room
    "810100000052",  # no account at start (tests add one)
)
PASSWORD = "inutilise-ici-123"  # the accounts also have a password (unused here)


def start_oidc_room(sim: Simulator, folder: Path) -> RoomServer:
    db = RoomDatabase.sqlite(folder)

    async def accounts() -> None:
        await db.add_user("dr.martin", ["MRL", "MRU"], PASSWORD, name="Dr Martin", rpps=CLAIRE[1:])
        await db.add_user("dr.bernard", ["MRU"], PASSWORD, name="Dr Bernard", rpps=PAUL[1:])
        await db.add_user("dr.moreau", ["DENT"], PASSWORD, name="Dr Moreau", rpps=INES[1:])
        await db.add_user("arm.dupont", ["ARM"], PASSWORD, name="Julie Dupont")
        store = open_store(db.dsn, db.schema)
        await store.open()
        try:
            await store.set_disabled("dr.bernard", True)
        finally:
            await store.close()

    # in a thread of its own: asyncio.run() on the main thread would unset the
    # event loop of the tests that follow (the UI tests share one loop)
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, accounts()).result()
    config = folder / "server.toml"
    config.write_text(
        "[identity]\n"
        f'psc_issuer = "{sim.psc_issuer}"\n'
        f'psc_client_id = "{DEMO_CLIENT_ID}"\n'
        f'establishment_issuer = "{sim.establishment_issuer}"\n'
        f'establishment_client_id = "{DEMO_CLIENT_ID}"\n',
        encoding="utf-8",
    )
    credentials = folder / "credentials"
    credentials.mkdir(mode=0o700)
    (credentials / "oidc-psc").write_text(DEMO_PSC_SECRET)
    (credentials / "oidc-etablissement").write_text(DEMO_ESTABLISHMENT_SECRET)
    return RoomServer.start(
        db, folder, config=config, env={"CREDENTIALS_DIRECTORY": str(credentials)}
    )
