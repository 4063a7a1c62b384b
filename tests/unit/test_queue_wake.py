"""The SQLite queue watcher's wake-up works when its task is stepped without
a running asyncio loop -- as qasync does from a nested Qt event loop (a modal
dialog, a test driving keys) -- where ``asyncio.timeout`` fails."""

from __future__ import annotations

import asyncio

import pytest

from sas_desk.services.queues.sqlite import _Wake


def step(coro) -> object:  # type: ignore[no-untyped-def]
    """One step of a coroutine, outside any running loop."""
    return coro.send(None)


def test_a_wake_up_ends_the_wait_without_a_running_loop() -> None:
    loop = asyncio.new_event_loop()
    try:
        wake = _Wake(loop)
        waiting = wake.wait(60.0)
        step(waiting)  # suspended on its future: no running loop needed
        wake.set()
        with pytest.raises(StopIteration):
            step(waiting)
        assert wake.is_set()
        wake.clear()
        assert not wake.is_set()
    finally:
        loop.close()


def test_the_timeout_ends_the_wait() -> None:
    loop = asyncio.new_event_loop()
    try:
        wake = _Wake(loop)
        loop.run_until_complete(asyncio.wait_for(wake.wait(0.01), 5))
        assert not wake.is_set()
    finally:
        loop.close()


def test_asyncio_timeout_itself_needs_a_running_loop() -> None:
    async def timed() -> None:
        async with asyncio.timeout(60.0):
            await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="no running event loop"):
        step(timed())
