"""Typed shim over qasync and a small task registry.

qasync ships no type information; this module is the only place that
imports it for slots, so mypy stays useful everywhere else.  Tasks started
from the UI are kept (strong references) so that they are not garbage
collected and can be cancelled at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import qasync

from sas_desk.models.errors import KnownError

P = ParamSpec("P")
R = TypeVar("R")
log = logging.getLogger("sas_desk.ui")

_tasks: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, R], name: str = "") -> asyncio.Task[R] | None:
    """Run ``coro`` on the running app loop; exceptions are never lost: a bug
    goes to the crash dialog and the log (UI operations use
    :func:`sas_desk.ui.operation.run_operation`, which also shows known errors).

    Without a running loop (only during shutdown) the work is dropped."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        coro.close()
        log.debug("no running loop, %s dropped", name or "task")
        return None
    task = loop.create_task(coro, name=name or None)
    _tasks.add(task)
    task.add_done_callback(_done)
    return task


def _done(task: asyncio.Task[Any]) -> None:
    _tasks.discard(task)
    if task.cancelled():
        return
    exc = task.exception()
    if exc is None:
        return
    if task.cancelling():  # raised on the way out of a cancellation: not a bug to show
        log.warning(
            "background task %s cancelled, ended by %s", task.get_name(), type(exc).__name__
        )
        return
    if isinstance(exc, KnownError):  # known, but nobody said it: at least the log
        log.error("background task %s failed: %s", task.get_name(), type(exc).__name__)
        return
    from sas_desk.ui import crash  # a bug: the log with its traceback, and the dialog

    crash.report(exc, task.get_name())


async def cancel_all() -> None:
    pending = [t for t in _tasks if not t.done()]
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


def async_slot(*types: type) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Any]]:
    """``@async_slot(str)`` — a Qt slot that runs a coroutine on the loop."""

    def wrap(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Any]:
        return qasync.asyncSlot(*types)(fn)  # type: ignore[no-any-return]

    return wrap


def event_loop(app: Any) -> asyncio.AbstractEventLoop:
    return qasync.QEventLoop(app)  # type: ignore[no-any-return]
