"""The one way the UI runs an operation, and the one way it fails.

:func:`run_operation` starts a coroutine on the app's loop and, while it
runs, says so (``progress``); it may be cancelled (the returned task).
What the operation changes on screen is applied by ``on_success`` only, so
a failure keeps the previous state:

- a :class:`~sas_desk.models.errors.KnownError` (refused, out of reach…)
  shows its French text through ``show_error`` and is logged by its class
  only (its text may name what the operator typed);
- anything else is a bug: the log with its traceback and the crash dialog
  (:mod:`sas_desk.ui.crash`), never a traceback on screen;
- a cancellation shows nothing and changes nothing.

:func:`run_long_lived` is the same contract for a task that lives as long as
its owner instead of one the operator started: a queue or board watch, a
periodic sync or purge, an agent, a service started once the window is up.
It has no progress and no result; with ``restart`` it is started again
(after a back-off) whatever ended it — a known error, a bug, or its own
return — so that a view never freezes silently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from sas_desk.models.errors import KnownError
from sas_desk.ui import crash
from sas_desk.ui.aio import spawn

T = TypeVar("T")
log = logging.getLogger("sas_desk.ui")


class Progress(Protocol):
    """Where an operation says it is running (a message line, a status bar)."""

    def show_message(self, text: str, *, info: bool = False, warn: bool = False) -> None: ...


def run_operation(
    work: Coroutine[Any, Any, T],
    *,
    name: str,
    show_error: Callable[[str], object],
    on_success: Callable[[T], object] | None = None,
    on_finally: Callable[[], object] | None = None,
    progress: Progress | None = None,
    label: str = "",
    error_prefix: str = "",
) -> asyncio.Task[None] | None:
    """Run ``work``; see the module.  ``label`` ("Envoi…") is shown on
    ``progress`` while it runs and cleared after, unless something else was
    shown meanwhile.  ``error_prefix`` goes before the French message
    ("Orientation enregistrée localement ; file non mise à jour : ").
    ``on_finally`` runs whatever the outcome (a busy flag released).
    Returns the task (``cancel()`` it to cancel), or None during shutdown."""

    me: list[asyncio.Task[None]] = []  # this operation's task, once spawned

    async def body() -> None:
        shown = False
        if progress is not None and label:
            progress.show_message(label, info=True)
            shown = True
        try:
            try:
                result = await work
            finally:
                if on_finally is not None:
                    on_finally()
                if shown and progress is not None and _showing(progress, label):
                    progress.show_message("")
        except asyncio.CancelledError:
            log.info("%s cancelled", name)
            raise
        except KnownError as exc:
            log.info("%s refused: %s %s", name, type(exc).__name__, getattr(exc, "code", ""))
            show_error(error_prefix + exc.message_fr)
            return
        except Exception as exc:
            if me and me[0].cancelling():  # what a cancelled library raised on its way out
                log.warning("%s cancelled, ended by %s", name, type(exc).__name__)
                raise  # kept on the task, as a cancellation's outcome (spawn shows no crash)
            crash.report(exc, name)
            return
        if on_success is not None:
            try:
                on_success(result)
            except Exception as exc:  # a bug in the caller's own step
                crash.report(exc, name)

    task = spawn(body(), name)
    if task is not None:
        me.append(task)
    if task is None:  # shutting down: the work is dropped
        work.close()
    else:  # cancelled before it started: the work never runs (and is not left unawaited)
        task.add_done_callback(lambda _t: work.close())
    return task


def _showing(progress: Progress, label: str) -> bool:
    text = getattr(progress, "text", None)
    return not callable(text) or text() == label


def run_long_lived(
    start: Callable[[], Coroutine[Any, Any, object]],
    *,
    name: str,
    show_error: Callable[[str], object] | None = None,
    error_prefix: str = "",
    restart: bool = False,
    first_delay_s: float = 0.2,
    max_delay_s: float = 5.0,
) -> asyncio.Task[None] | None:
    """Run ``start()`` for as long as its owner lives (see the module): a
    :class:`KnownError` shows ``error_prefix`` + its French text through
    ``show_error`` (the log only when None) and is logged by its class;
    anything else is a bug, reported to the log and the crash dialog.  With
    ``restart``, ``start()`` is called again after ``first_delay_s``, doubled
    after each short run up to ``max_delay_s`` (a run that lasted longer than
    ``max_delay_s`` was working: the next pause is the first again);
    without, the task ends there.  ``cancel()`` the returned task to stop it
    (the app cancels every task at shutdown).  None during shutdown."""

    async def body() -> None:
        loop = asyncio.get_running_loop()  # kept: a task may be stepped from a nested Qt loop
        delay = first_delay_s
        while True:
            began = time.monotonic()
            try:
                await start()
                log.info("%s ended", name)
            except asyncio.CancelledError:
                raise
            except KnownError as exc:
                log.warning("%s failed: %s %s", name, type(exc).__name__, getattr(exc, "code", ""))
                if show_error is not None:
                    show_error(error_prefix + exc.message_fr)
            except Exception as exc:
                if me and me[0].cancelling():  # what a cancelled library raised on its way out
                    raise
                crash.report(exc, name)
            if not restart:
                return
            if time.monotonic() - began > max_delay_s:
                delay = first_delay_s
            log.info("%s started again in %.1f s", name, delay)
            pause: asyncio.Future[None] = loop.create_future()
            loop.call_later(delay, _resolve, pause)
            await pause
            delay = min(delay * 2, max_delay_s)

    me: list[asyncio.Task[None]] = []
    task = spawn(body(), name)
    if task is not None:
        me.append(task)
    return task


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
