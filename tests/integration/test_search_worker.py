"""The search worker, a real child process, against the loopback simulator:
searches stream through it, a closed search is cancelled in the worker, a
newer search replaces the older one, a killed or hung worker fails the
search in French and is started again, a worker that cannot start says so,
and a message it cannot read is refused without killing it."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from sas_desk.models.search import SearchQuery, SearchUpdate, VendorState
from sas_desk.services.config import VendorEndpoint
from sas_desk.services.directory.store import DirectoryStore
from sas_desk.services.directory.sync import DirectorySync
from sas_desk.services.fhir.worker_client import DIED_FR, SearchWorker, WorkerError
from sas_desk.services.fhir.worker_protocol import Open
from sas_desk.simulator.server import Simulator

LYON = (45.7640, 4.8357)
pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    sim = Simulator()
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def directory(simulator: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulator's directory, synced once into a file the workers open."""
    path = tmp_path_factory.mktemp("directory") / "directory.sqlite"

    async def sync() -> None:
        with DirectoryStore(path) as store:
            async with httpx.AsyncClient() as client:
                await DirectorySync(store, simulator.directory_url, client).run()

    asyncio.run(sync())
    return path


def endpoints(sim: Simulator, timeout: float = 7.0) -> tuple[VendorEndpoint, ...]:
    meta = httpx.get(f"{sim.base_url}/_meta", timeout=30).json()
    return tuple(VendorEndpoint(v["name"], v["base_url"], timeout=timeout) for v in meta)


def settings(sim: Simulator, directory: Path, timeout: float = 7.0) -> Open:
    return Open(str(directory), "", endpoints(sim, timeout))  # no feed: the file as it is


def now() -> datetime:
    return datetime.now().astimezone()


@pytest_asyncio.fixture
async def worker(simulator: Simulator, directory: Path) -> AsyncIterator[SearchWorker]:
    w = SearchWorker(now=now, hang_s=3.0)
    await w.spawn()
    assert await w.open(settings(simulator, directory)) == ""
    yield w
    await w.close()


@pytest.fixture
def hanging(simulator: Simulator) -> Iterator[str]:
    """One vendor that never answers (cut at its 7 s deadline)."""
    name = endpoints(simulator)[1].name
    simulator.set_faults(name, "hang")
    yield name
    simulator.set_faults(name, None)


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"condition not reached within {timeout:.1f} s")
        await asyncio.sleep(0.01)


def lyon(radius_km: float = 8.0) -> SearchQuery:
    return SearchQuery(*LYON, radius_km=radius_km)


async def first_offers(stream: AsyncIterator[SearchUpdate]) -> SearchUpdate:
    async with asyncio.timeout(30):
        async for update in stream:
            if update.offers:
                return update
    raise AssertionError("no offers")


async def whole(stream: AsyncIterator[SearchUpdate]) -> list[SearchUpdate]:
    async with asyncio.timeout(60):
        return [u async for u in stream]


async def test_a_search_streams_through_the_worker(worker: SearchWorker) -> None:
    updates = await whole(worker.search(lyon()))
    assert updates[-1].done and updates[-1].candidates > 50
    assert {s.state for s in updates[-1].vendors.values()} == {VendorState.OK}
    offers = {o.key: o for u in updates for o in u.offers}
    assert sum(len(o.slots) for o in offers.values()) > 100
    assert all(o.distance_km <= 8.0 for o in offers.values())
    assert worker.pid is not None and worker.pid != os.getpid()


async def test_closing_a_search_cancels_it_in_the_worker(
    worker: SearchWorker, simulator: Simulator, hanging: str
) -> None:
    stream = worker.search(lyon())
    await first_offers(stream)
    search_id = worker.last_search
    await stream.aclose()  # the hanging vendor would hold it 7 s more
    await until(lambda: search_id in worker.ended, timeout=5.0)
    simulator.set_faults(hanging, None)
    pid = worker.pid
    updates = await whole(worker.search(lyon(3.0)))  # the same worker goes on
    assert updates[-1].done and worker.pid == pid and worker.restarts == 0


async def test_a_newer_search_cancels_the_older_one(worker: SearchWorker, hanging: str) -> None:
    older = worker.search(lyon())
    await first_offers(older)
    older_id = worker.last_search
    newer = worker.search(lyon(5.0))
    update = await first_offers(newer)
    assert not update.done
    await until(lambda: older_id in worker.ended, timeout=5.0)  # cancelled by the worker
    assert [u async for u in older] == []  # and over for its reader
    rest = await whole(newer)
    assert rest[-1].done and rest[-1].vendors[hanging].state is VendorState.TIMEOUT


async def test_a_worker_killed_mid_search_is_said_and_restarted(
    worker: SearchWorker, simulator: Simulator, hanging: str
) -> None:
    stream = worker.search(lyon())
    await first_offers(stream)
    killed = worker.pid
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    with pytest.raises(WorkerError) as err:
        await whole(stream)
    assert err.value.message_fr == DIED_FR  # the technical cause is the log's
    simulator.set_faults(hanging, None)
    await asyncio.wait_for(worker.started.wait(), 30)
    updates = await whole(worker.search(lyon()))
    assert updates[-1].done and {s.state for s in updates[-1].vendors.values()} == {VendorState.OK}
    assert worker.pid not in (None, killed) and worker.restarts == 1


async def test_a_hung_worker_is_said_killed_and_restarted(
    worker: SearchWorker, simulator: Simulator, hanging: str
) -> None:
    stream = worker.search(lyon())
    await first_offers(stream)
    stuck = worker.pid
    assert stuck is not None
    os.kill(stuck, signal.SIGSTOP)  # alive but silent
    with pytest.raises(WorkerError) as err:
        await whole(stream)
    assert "ne répondait plus" in err.value.message_fr
    simulator.set_faults(hanging, None)
    updates = await whole(worker.search(lyon(3.0)))
    assert updates[-1].done and worker.pid != stuck
    await until(lambda: not exists(stuck), timeout=5.0)  # killed and reaped (in a thread)


def exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_worker_that_cannot_start_says_so(simulator: Simulator, directory: Path) -> None:
    missing = SearchWorker(now=now, command=lambda fd: ["/nonexistent/sas-desk", str(fd)])
    with pytest.raises(WorkerError) as err:
        await missing.spawn()
    assert err.value.message_fr.startswith(
        "Le processus de recherche de créneaux n'a pas pu démarrer"
    )
    with pytest.raises(WorkerError) as err:  # not opened: said at once, not a wait
        await whole(missing.search(lyon()))
    assert "l'annuaire n'a pas encore été ouvert" in err.value.message_fr
    missing._settings = settings(simulator, directory)  # as if opened once
    with pytest.raises(WorkerError) as err:  # each search tries again, and says so again
        await whole(missing.search(lyon()))
    assert "n'a pas pu démarrer" in err.value.message_fr
    await missing.close()

    quits = SearchWorker(now=now, command=lambda fd: [sys.executable, "-c", "pass"])
    await quits.spawn()
    with pytest.raises(WorkerError) as err:
        await asyncio.wait_for(quits.open(settings(simulator, directory)), 30)
    assert err.value.message_fr == DIED_FR
    await quits.close()


async def test_a_message_the_worker_cannot_read_is_refused_in_french(
    worker: SearchWorker, caplog: pytest.LogCaptureFixture
) -> None:
    child: Any = worker._child
    body = b'{"type": "search", "id": "not a number"}'
    with caplog.at_level(logging.ERROR, logger="sas_desk.fhir.worker_client"):
        child.writer.write(len(body).to_bytes(4, "big") + body)
        await until(lambda: "refused a message" in caplog.text, timeout=10)
    assert "Message mal formé reçu par le processus de recherche (champ $.id)" in caplog.text
    pid = worker.pid
    updates = await whole(worker.search(lyon(3.0)))  # the same worker, still working
    assert updates[-1].done and worker.pid == pid


GARBAGE = """
import os, socket, sys
s = socket.socket(fileno=int(sys.argv[1]))
body = b'{"type": "update", "id": []}'
s.sendall(len(body).to_bytes(4, "big") + body)
s.recv(1)
"""


async def test_a_worker_speaking_garbage_is_said_and_dropped(
    simulator: Simulator, directory: Path, caplog: pytest.LogCaptureFixture
) -> None:
    w = SearchWorker(now=now, command=lambda fd: [sys.executable, "-c", GARBAGE, str(fd)])
    await w.spawn()
    with (
        caplog.at_level(logging.ERROR, logger="sas_desk.fhir.worker_client"),
        pytest.raises(WorkerError) as err,
    ):
        await asyncio.wait_for(w.open(settings(simulator, directory)), 30)
    assert err.value.message_fr == DIED_FR  # said shortly; what went wrong, in the log
    assert "Message mal formé du processus de recherche (champ $.id)" in caplog.text
    await w.close()


async def test_a_worker_dying_again_and_again_is_started_on_demand_only(
    worker: SearchWorker,
) -> None:
    for n in range(1, 5):
        await asyncio.wait_for(worker.started.wait(), 30)
        pid = worker.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await until(lambda pid=pid: worker.pid != pid, timeout=10)  # lost
        if n <= 3:
            assert worker.restarts == n
    # the 4th loss within a minute: not started again at once...
    await until(lambda: not exists(pid), timeout=5)
    assert worker.restarts == 3 and worker.pid is None and not worker.started.is_set()
    # ...but the next search starts one, and works
    updates = await whole(worker.search(lyon(3.0)))
    assert updates[-1].done and worker.pid is not None
