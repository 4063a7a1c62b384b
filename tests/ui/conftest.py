"""Fixtures for the UI tests: real journal (SQLite in tmp), real simulator
on loopback, real httpx client — all on the test's qasync loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from sas_desk.models.dossier import Actor
from sas_desk.services import clock
from sas_desk.services.config import Config
from sas_desk.services.desk import Desk
from sas_desk.services.geo.ban import BanGeocoder
from sas_desk.services.geo.resolver import LocationResolver
from sas_desk.services.geo.territory import CommuneIndex
from sas_desk.services.journal.service import Journal
from sas_desk.simulator.server import Simulator
from tests.integration.queues.room import RoomServer


@dataclass
class Env:
    config: Config
    journal: Journal
    desk: Desk
    resolver: LocationResolver
    simulator_url: str


@pytest.fixture(scope="session")
def simulator() -> Iterator[Simulator]:
    sim = Simulator()
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture(scope="session")
def room(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoomServer]:
    """A room server process (SQLite store) with the ARM's account."""
    from tests.integration.queues.conftest import PG_DSN
    from tests.integration.queues.room import room_server
    from tests.integration.queues.support import ARM

    yield from room_server("sqlite", tmp_path_factory.mktemp("room-ui"), PG_DSN, [ARM])


@pytest.fixture(scope="session")
def communes() -> CommuneIndex:
    return CommuneIndex.load()


@pytest_asyncio.fixture(loop_scope="session")
async def env(tmp_path: Path, simulator: Simulator, communes: CommuneIndex) -> AsyncIterator[Env]:
    config = Config(data_dir=tmp_path, workstation="POSTE-TEST", operator="arm.test", role="ARM")
    journal = Journal(config.journal_path, now=clock.now, retry_delay=0.05)
    await journal.open()
    desk = Desk(config, journal, Actor("ARM", "arm.test", "POSTE-TEST"), clock.now)
    await desk.prepare()
    async with httpx.AsyncClient() as client:
        resolver = LocationResolver(communes, BanGeocoder(simulator.base_url, client))
        yield Env(config, journal, desk, resolver, simulator.base_url)
        from sas_desk.ui import aio

        await aio.cancel_all()
        await journal.close()


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait on a condition while the qasync loop runs (no fixed sleeps)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"condition not reached within {timeout:.1f} s")
        await asyncio.sleep(0.01)


async def open_window(qtbot: Any, env: Env, *, role: str | None = None, **kw: object) -> Any:
    """A real main window over the test's services, shown and active;
    ``kw`` are MainWindow's keyword arguments (``queue_client``…)."""
    from dataclasses import replace

    from sas_desk.ui.main_window import MainWindow

    config = replace(env.config, role=role)
    args: dict[str, object] = {"report": None, "unfinished": [], "today": []}
    args.update(kw)
    window = MainWindow(config, env.desk, env.journal, env.resolver, **args)  # type: ignore[arg-type]
    qtbot.addWidget(window)
    window.show()
    window.activateWindow()
    await until(window.isActiveWindow)
    return window
