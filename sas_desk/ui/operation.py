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
"""

from __future__ import annotations

import asyncio
import logging
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
