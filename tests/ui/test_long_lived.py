"""The runner's long-lived way (ui/operation.run_long_lived, issue 14): a
watch, a sync, an agent that lives as long as its owner.  A known error is
said in French and the task starts again; a bug reaches the crash dialog
(and, for a watch, it starts again: never a silently frozen view); a
cancellation stops it quietly.  The app's slot service lets only known
errors stay in its panel: anything else is a bug."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from sas_desk import app
from sas_desk.models.errors import KnownError
from sas_desk.services.config import Config, VendorEndpoint
from sas_desk.ui import crash
from sas_desk.ui.operation import run_long_lived
from tests.ui.conftest import Env, open_window, until

pytestmark = [pytest.mark.gui, pytest.mark.asyncio(loop_scope="session")]


@pytest.fixture
def reports(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, BaseException]]:
    seen: list[tuple[str, BaseException]] = []
    monkeypatch.setattr(crash, "report", lambda exc, where="": seen.append((where, exc)))
    return seen


async def test_a_known_error_is_said_and_the_watch_starts_again(
    reports: list[tuple[str, BaseException]],
) -> None:
    shown: list[str] = []
    runs: list[int] = []
    forever = asyncio.Event()

    async def watch() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise KnownError("Serveur de salle injoignable.")
        await forever.wait()

    task = run_long_lived(
        watch,
        name="t-watch",
        show_error=shown.append,
        error_prefix="Suivi : ",
        restart=True,
        first_delay_s=0.01,
    )
    assert task is not None
    await until(lambda: len(runs) == 2)
    assert shown == ["Suivi : Serveur de salle injoignable."] and reports == []
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(runs) == 2 and reports == []  # cancelled quietly, not started again


async def test_a_bug_reaches_the_crash_path_and_a_watch_still_starts_again(
    reports: list[tuple[str, BaseException]],
) -> None:
    shown: list[str] = []
    runs: list[int] = []

    async def watch() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise ZeroDivisionError("a bug in the watch")
        await asyncio.Event().wait()

    task = run_long_lived(
        watch, name="t-bug", show_error=shown.append, restart=True, first_delay_s=0.01
    )
    assert task is not None
    await until(lambda: len(runs) == 3)
    assert [where for where, _ in reports] == ["t-bug", "t-bug"]
    assert all(isinstance(exc, ZeroDivisionError) for _, exc in reports)
    assert shown == []  # a bug is never shown as a French message with its text
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_without_restart_the_task_ends_after_its_error(
    reports: list[tuple[str, BaseException]],
) -> None:
    shown: list[str] = []
    runs: list[int] = []

    async def sync() -> None:
        runs.append(1)
        raise KnownError("Tableau de garde illisible.")

    task = run_long_lived(sync, name="t-once", show_error=shown.append)
    assert task is not None
    await asyncio.wait_for(task, 5)
    assert runs == [1] and shown == ["Tableau de garde illisible."] and reports == []


class _Service:
    """A SlotService whose directory sync fails with ``fail``."""

    def __init__(self, fail: BaseException) -> None:
        self.fail = fail
        self.store: object | None = object()  # a previous copy of the directory

    async def open(self) -> None:
        return None

    async def sync(self) -> None:
        raise self.fail

    async def close(self) -> None:
        return None


async def _slots_with(
    qtbot: QtBot, env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail: BaseException
) -> object:
    from sas_desk.services.fhir import service

    window = await open_window(qtbot, env, role="OSNP")
    config = Config(
        data_dir=tmp_path,
        workstation="POSTE-TEST",
        role="OSNP",
        vendors=(VendorEndpoint("v1", "http://127.0.0.1:9/fhir"),),
        directory_url="http://127.0.0.1:9/annuaire",
    )
    monkeypatch.setattr(
        service.SlotService, "from_config", classmethod(lambda cls, *a, **k: _Service(fail))
    )
    shown: list[tuple[object, str]] = []
    monkeypatch.setattr(window, "set_slot_source", lambda src, note: shown.append((src, note)))
    await app._start_slots(config, None, window)
    return shown


async def test_the_slot_service_keeps_the_previous_directory_on_a_known_error(
    qtbot: QtBot, env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sas_desk.services.directory.sync import DirectorySyncError

    shown = await _slots_with(
        qtbot,
        env,
        tmp_path,
        monkeypatch,
        DirectorySyncError("Annuaire injoignable.", page=1, url="http://127.0.0.1:9/annuaire"),
    )
    assert shown[-1][1] == "Annuaire non synchronisé (Annuaire injoignable.) : copie précédente."


async def test_a_bug_in_the_slot_service_is_not_swallowed(
    qtbot: QtBot, env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # on to the runner that started it (the app's run_long_lived), hence the
    # crash dialog — not "Annuaire non synchronisé (ZeroDivisionError)" in the panel
    with pytest.raises(ZeroDivisionError):
        await _slots_with(qtbot, env, tmp_path, monkeypatch, ZeroDivisionError("bug"))
