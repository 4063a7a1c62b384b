"""A session the server closes (revoked, account disabled) is disconnected
within a keep-alive period: its open change stream ends with a ``bye`` in
French, and its next request is refused."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from sas_desk.server.store import open_store
from tests.helpers.room_server import RoomDatabase, RoomServer
from tests.helpers.sse import SseReader

PASSWORD = "revocation-test-123"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoomServer]:
    folder = tmp_path_factory.mktemp("revocation")
    db = RoomDatabase.sqlite(folder)

    async def accounts() -> None:
        await db.add_user("arm.martin", ["ARM"], PASSWORD)
        await db.add_user("arm.leroy", ["ARM"], PASSWORD)

    with ThreadPoolExecutor(1) as pool:  # not asyncio.run on the tests' thread
        pool.submit(asyncio.run, accounts()).result()
    config = folder / "server.toml"
    config.write_text("[server]\nkeepalive_s = 0.3\n", encoding="utf-8")
    room = RoomServer.start(db, folder, config=config)
    room.db = db  # type: ignore[attr-defined]
    try:
        yield room
    finally:
        assert room.stop() == 0, room.stderr_path.read_text()


async def closes_the_stream(server: RoomServer, login: str, close: object) -> None:
    session = await asyncio.to_thread(server.login, login, PASSWORD, "ARM", f"P-{login}")
    headers = {"Authorization": f"Bearer {session['access_token']}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=10) as http:
        async with http.stream("GET", "/v1/stream") as stream:
            reader = SseReader(stream)
            assert (await reader.next()).json()["reset"] is True
            keep = await reader.next(comments=True)  # the session is open: keep-alives
            assert keep.comment.strip() == "keep-alive"
            await close(http)  # type: ignore[operator]
            bye = await reader.next(timeout=5)
        assert bye.event == "bye"
        assert bye.json()["reason_fr"].startswith("Session fermée par le serveur de salle")
        # another process's change is seen within the server's 5 s session cache
        deadline = asyncio.get_running_loop().time() + 10
        while (await http.get("/v1/queues/ARM")).status_code != 401:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.2)
        refreshed = await http.post(
            "/v1/session/refresh", json={"refresh_token": session["refresh_token"]}
        )
        assert refreshed.status_code == 401


@pytest.mark.asyncio
async def test_a_revoked_session_hears_bye_and_is_refused(server: RoomServer) -> None:
    async def revoke(http: httpx.AsyncClient) -> None:
        assert (await http.delete("/v1/session")).status_code == 204

    await closes_the_stream(server, "arm.martin", revoke)


@pytest.mark.asyncio
async def test_a_disabled_account_hears_bye_and_is_refused(server: RoomServer) -> None:
    db: RoomDatabase = server.db  # type: ignore[attr-defined]

    async def disable(_: httpx.AsyncClient) -> None:
        store = open_store(db.dsn, db.schema)
        await store.open()
        try:
            assert await store.set_disabled("arm.leroy", True)
        finally:
            await store.close()

    await closes_the_stream(server, "arm.leroy", disable)
