"""The slot search panel over the search worker (a child process), as the
app wires it: results fill the panel; the worker killed mid-search is said
in French in the panel, started again, and the next search works; a worker
that cannot start is said by the panel while the rest of the window works."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from pytestqt.qtbot import QtBot

from sas_desk.app import _open_worker
from sas_desk.models.search import VendorState
from sas_desk.services import clock
from sas_desk.services.config import Config
from sas_desk.services.fhir.service import demo_sources
from sas_desk.services.fhir.worker_client import DIED_FR, SearchWorker
from sas_desk.services.geo.resolver import Place
from sas_desk.simulator.server import Simulator
from sas_desk.ui.slot_search import INTERRUPTED_FR, SlotSearchPanel
from tests.ui.conftest import Env, open_window, until

pytestmark = [pytest.mark.gui, pytest.mark.asyncio(loop_scope="session")]

LYON = Place("Lyon (69001)", "municipality", "Lyon", "69123", "69001", 45.7640, 4.8357)


@pytest_asyncio.fixture(loop_scope="session")
async def window_and_worker(
    qtbot: QtBot, env: Env, simulator: Simulator, tmp_path: Path
) -> AsyncIterator[tuple[object, SearchWorker]]:
    """A window whose slot search is the worker's, set up as the app does
    (the worker syncs the simulator's directory itself)."""
    window = await open_window(qtbot, env, role="OSNP")
    worker = SearchWorker(now=clock.now, hang_s=5.0)
    await worker.spawn()
    directory_url, vendors = await demo_sources(simulator.base_url)
    config = Config(data_dir=tmp_path, workstation="POSTE-TEST", role="OSNP")
    await _open_worker(config, directory_url, vendors, window, worker)  # type: ignore[arg-type]
    assert window.slot_source is worker  # type: ignore[attr-defined]
    yield window, worker
    await worker.close()


def search_lyon(panel: SlotSearchPanel, radius_km: int = 8) -> None:
    panel.open_url = lambda url: True
    panel.set_place(LYON)
    panel.radius.setValue(radius_km)
    assert panel.start_search() is not None


async def test_a_killed_worker_is_said_in_the_panel_and_the_next_search_works(
    window_and_worker: tuple[object, SearchWorker],
    simulator: Simulator,
    qtbot: QtBot,
    caplog: pytest.LogCaptureFixture,
) -> None:
    window, worker = window_and_worker
    window.resize(1366, 740)  # type: ignore[attr-defined]
    panel: SlotSearchPanel = window.open_slot_search()  # type: ignore[attr-defined]
    names = [v.name for v in (await demo_sources(simulator.base_url))[1]]
    hanging = names[0]
    simulator.set_faults(hanging, "hang")
    try:
        search_lyon(panel)
        await until(lambda: panel.model.rowCount() > 0, timeout=30)
        killed = worker.pid
        assert killed is not None
        with caplog.at_level(logging.ERROR, logger="sas_desk.fhir.worker_client"):
            os.kill(killed, signal.SIGKILL)
            await until(lambda: not panel.running, timeout=10)
    finally:
        simulator.set_faults(hanging, None)
    text = panel.summary.text()
    assert text == DIED_FR, text  # a short sentence; the technical cause in the log only
    assert "exit code -9" in caplog.text
    assert "b00020" in panel.summary.styleSheet()
    # at 1366 px it fits the status's two lines (the exit code in it made three)
    qtbot.waitUntil(lambda: panel.summary.width() > 300, timeout=5000)
    assert panel.summary.heightForWidth(panel.summary.width()) <= panel.summary_strip.height()
    assert panel.model.rowCount() > 0  # what came before stays on screen
    # the hanging vendor no longer says it is waiting: the search ended
    label = panel.vendor_labels[hanging]
    assert INTERRUPTED_FR in label.text() and "en attente" not in label.text(), label.text()
    assert panel.last_update is not None
    answered = [n for n, v in panel.last_update.vendors.items() if v.state is VendorState.OK]
    assert all(INTERRUPTED_FR not in panel.vendor_labels[n].text() for n in answered)
    await until(worker.started.is_set, timeout=30)
    search_lyon(panel, 5)
    await until(lambda: panel.last_update is not None and panel.last_update.done, timeout=30)
    assert panel.model.slot_count > 0 and "terminé" in panel.summary.text()
    assert worker.pid not in (None, killed) and worker.restarts == 1


async def test_a_worker_that_cannot_start_is_said_and_the_window_works(
    qtbot: QtBot, env: Env, simulator: Simulator, tmp_path: Path
) -> None:
    window = await open_window(qtbot, env, role="ARM")
    missing = SearchWorker(now=clock.now, command=lambda fd: ["/nonexistent/sas-desk", str(fd)])
    directory_url, vendors = await demo_sources(simulator.base_url)
    config = Config(data_dir=tmp_path, workstation="POSTE-TEST", role="OSNP")
    await _open_worker(config, directory_url, vendors, window, missing)
    panel: SlotSearchPanel = window.open_slot_search()
    search_lyon(panel)
    await until(lambda: "n'a pas pu démarrer" in panel.summary.text(), timeout=5)
    assert panel.summary.text() == (
        "Recherche de créneaux indisponible. Le processus de recherche de créneaux "
        "n'a pas pu démarrer (programme introuvable)."
    )
    # the rest of the window does not wait on it: a new call sheet opens and takes text
    window.new_call()
    sheet = window.current_sheet()
    sheet.motive.setText("douleur thoracique")
    assert sheet.motive.text() == "douleur thoracique"
    panel.cancel(quiet=True)
    await missing.close()
