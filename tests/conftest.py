"""Shared test setup.

- Qt runs offscreen (a developer may override QT_QPA_PLATFORM).
- Async tests run on a qasync loop, so that widgets, httpx and the journal
  share one loop exactly as in the app (pytest-asyncio loop factory hook).
- keyring gets an explicit in-memory backend: headless machines have none.
"""

from __future__ import annotations

import asyncio
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_asyncio_loop_factories(config, item):  # type: ignore[no-untyped-def]
    """Tests that touch Qt (qtbot, or marked ``gui``) run their coroutine on a
    qasync loop, as the app does; the others on a plain asyncio loop."""
    if "qtbot" in getattr(item, "fixturenames", ()) or item.get_closest_marker("gui"):
        return {"qasync": _qasync_loop}
    return {"asyncio": asyncio.new_event_loop}


def _qasync_loop() -> asyncio.AbstractEventLoop:
    from PySide6.QtWidgets import QApplication

    from sas_desk.ui.aio import event_loop

    app = QApplication.instance() or QApplication([])
    return event_loop(app)


@pytest.fixture(autouse=True)
def _room_zone_restored():  # type: ignore[no-untyped-def]
    """A test that runs the app or the command line in-process sets the
    room's time zone for the whole process (``clock.use_zone``: ``TZ``):
    put back what was there, so no later test reads times in another zone."""
    from sas_desk.services import clock

    zone, tz = clock.zone(), os.environ.get("TZ")
    yield
    if clock.zone() != zone or os.environ.get("TZ") != tz:
        clock.use_zone(getattr(zone, "key", None))
        if tz is not None and os.environ.get("TZ") != tz:
            os.environ["TZ"] = tz
            import time

            time.tzset()


def unavailable(reason: str) -> None:
    """A needed service or reference folder is missing: fail in CI, skip elsewhere."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    """Every test that uses Qt is marked ``gui`` (``-m "not gui"`` runs the rest)."""
    for item in items:
        if "qtbot" in getattr(item, "fixturenames", ()) or "/tests/ui/" in str(item.path):
            item.add_marker(pytest.mark.gui)
