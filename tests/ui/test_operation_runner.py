"""One way to run an operation and one way to fail (issue 14): a known
error shows its French text and keeps what was on screen; anything else is
a bug that reaches the log (with its traceback) and the crash dialog, which
tells the operator nothing typed is lost, and never shows a traceback."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QDate, Qt
from PySide6.QtWidgets import QPushButton
from pytestqt.qtbot import QtBot

from sas_desk.models.errors import KnownError
from sas_desk.models.queue import QueueError, WaitLimits
from sas_desk.models.stats import Granularity, Period, RawStats
from sas_desk.services.queues.api import BackendUnavailable
from sas_desk.services.stats import StatsUnavailable
from sas_desk.ui import crash
from sas_desk.ui.operation import run_operation
from sas_desk.ui.stats_view import StatsView
from tests.integration.queues.support import FakeClock
from tests.ui.conftest import until

pytestmark = [pytest.mark.gui, pytest.mark.asyncio(loop_scope="session")]


async def test_user_facing_errors_share_one_base() -> None:
    from sas_desk.models.validation import ValidationError
    from sas_desk.services.auth.errors import AuthError
    from sas_desk.services.journal.store import JournalError

    for exc in (
        QueueError("Dossier déjà pris."),
        BackendUnavailable(),
        StatsUnavailable("Base des files illisible."),
        ValidationError("Numéro de rappel invalide.", "callback"),
        JournalError("Disque plein.", "full"),
        AuthError("invalid", "detail for the log"),
    ):
        assert isinstance(exc, KnownError)
        assert exc.message_fr and "Traceback" not in exc.message_fr
    # the log keeps the technical detail, the operator reads French
    auth = AuthError("invalid", "code=42")
    assert auth.message_fr == "Demande de connexion invalide." and "code=42" in str(auth)


class _Source:
    """A statistics source whose store goes away after the first report."""

    def __init__(self) -> None:
        self.fail: BaseException | None = None

    async def raw(self, period: Period, by: Granularity, limits: WaitLimits) -> RawStats:
        if self.fail is not None:
            raise self.fail
        return RawStats()

    async def activity(self, *_: object) -> list[object]:
        return []

    async def close(self) -> None:
        return None


@pytest.fixture
def dialog_on() -> Iterator[None]:
    crash.show_dialog(lambda: True)
    yield
    crash.hide_dialog()


async def _press(qtbot: QtBot, view: StatsView) -> None:
    button = view.findChild(QPushButton, "statsRun")
    assert button is not None
    button.setFocus()
    qtbot.keyClick(button, Qt.Key.Key_Space)
    assert view.task is not None
    await asyncio.wait_for(asyncio.shield(view.task), 10)


async def test_a_known_error_is_told_in_french_and_keeps_the_report_shown(
    qtbot: QtBot, dialog_on: None
) -> None:
    source = _Source()
    view = StatsView(source, WaitLimits(), lambda: FakeClock()())  # type: ignore[arg-type]
    qtbot.addWidget(view)
    view.show()
    view.first.setDate(QDate(2026, 3, 13))
    view.last.setDate(QDate(2026, 3, 15))
    await _press(qtbot, view)
    shown = view.report
    assert shown is not None and view.model.rowCount() == 3
    source.fail = StatsUnavailable("Base des statistiques injoignable.")
    view.first.setDate(QDate(2026, 3, 1))
    await _press(qtbot, view)
    assert view.message.text() == "Base des statistiques injoignable."
    assert view.report is shown and view.model.rowCount() == 3  # the previous state kept
    d = crash.dialog()
    assert d is None or not d.isVisible()  # a known error is no crash
    view.stop()


async def test_a_bug_in_an_operation_reaches_the_log_and_the_crash_dialog(
    qtbot: QtBot, caplog: pytest.LogCaptureFixture, dialog_on: None
) -> None:
    source = _Source()
    source.fail = ZeroDivisionError("division by zero in the stats")
    view = StatsView(source, WaitLimits(), lambda: FakeClock()())  # type: ignore[arg-type]
    qtbot.addWidget(view)
    view.show()
    view.first.setDate(QDate(2026, 3, 13))
    view.last.setDate(QDate(2026, 3, 15))
    with caplog.at_level(logging.CRITICAL, logger="sas_desk.crash"):
        await _press(qtbot, view)
        await until(lambda: (d := crash.dialog()) is not None and d.isVisible())
    d = crash.dialog()
    assert d is not None
    text = d.text()
    assert "erreur inattendue" in text and "stats-report" in text
    assert "Rien de ce que vous avez saisi n'est perdu" in text
    assert "Traceback" not in text and "ZeroDivisionError" not in text
    assert "Traceback" not in view.message.text() and "division" not in view.message.text()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "Traceback" in logged and "ZeroDivisionError" in logged
    assert view.report is None  # nothing half-applied
    # Enter closes it: the operator goes back to the call
    qtbot.keyClick(d, Qt.Key.Key_Return)
    await until(lambda: not d.isVisible())
    view.stop()


async def test_threads_loop_and_main_thread_hooks_all_reach_the_dialog(
    qtbot: QtBot, tmp_path: Path, caplog: pytest.LogCaptureFixture, dialog_on: None
) -> None:
    saved = sys.excepthook, threading.excepthook
    crash.install(tmp_path)
    try:
        with caplog.at_level(logging.CRITICAL, logger="sas_desk.crash"):
            # another thread
            def worker() -> None:
                raise LookupError("in a worker thread")

            t = threading.Thread(target=worker, name="roster-sync")
            t.start()
            t.join(5)
            await until(lambda: (d := crash.dialog()) is not None and d.isVisible())
            d = crash.dialog()
            assert d is not None and "fil roster-sync" in d.text()
            # the asyncio loop: an exception nobody awaited
            loop = asyncio.get_running_loop()
            loop.set_exception_handler(crash.loop_handler)
            try:
                loop.call_exception_handler(
                    {"message": "lost", "exception": KeyError("in a callback")}
                )
            finally:
                loop.set_exception_handler(None)
            # the main thread (and Qt slots): sys.excepthook
            try:
                raise IndexError("in a slot")
            except IndexError as exc:
                sys.excepthook(type(exc), exc, exc.__traceback__)
            await until(lambda: d.count == 3)
        assert "3 fois" in d.text() and "Traceback" not in d.text()
        logged = "\n".join(r.getMessage() for r in caplog.records)
        for needle in ("LookupError", "KeyError", "IndexError"):
            assert needle in logged
        reports = list((tmp_path / "logs").glob("crash-*.txt"))
        assert len(reports) == 3 and all("Traceback" in p.read_text() for p in reports)
    finally:
        sys.excepthook, threading.excepthook = saved


async def test_a_cancelled_operation_changes_nothing_and_says_nothing(qtbot: QtBot) -> None:
    shown: list[str] = []
    applied: list[object] = []
    started = asyncio.Event()

    async def slow() -> int:
        started.set()
        await asyncio.Event().wait()
        return 1

    task = run_operation(slow(), name="slow", show_error=shown.append, on_success=applied.append)
    assert task is not None
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert shown == [] and applied == []


async def test_an_error_raised_while_cancelling_is_no_crash(
    qtbot: QtBot, caplog: pytest.LogCaptureFixture, dialog_on: None
) -> None:
    """A library that raises on its way out of a cancellation (httpx closing
    a connection) is the cancellation's doing, not a bug to show."""
    started = asyncio.Event()

    async def clumsy() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise RuntimeError("closing the connection failed") from None

    task = run_operation(clumsy(), name="lookup", show_error=lambda _t: None)
    assert task is not None
    await asyncio.wait_for(started.wait(), 5)
    with caplog.at_level(logging.WARNING):
        task.cancel()
        await asyncio.wait([task], timeout=5)
    assert task.done()
    assert not [r for r in caplog.records if r.levelno >= logging.CRITICAL]
    assert any("lookup cancelled, ended by RuntimeError" in r.getMessage() for r in caplog.records)
    d = crash.dialog()
    assert d is None or not d.isVisible()
