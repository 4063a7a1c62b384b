"""The app's side of the search worker: a slot search source (what the
slot search panel asks, ``search(query)`` → updates) whose searches run in
a child process (:mod:`sas_desk.services.fhir.worker`).

    worker = SearchWorker(now=clock.now)
    await worker.spawn()                       # at start-up, off the window's path
    note = await worker.open(settings)         # the directory (synced) and the vendors
    async for update in worker.search(query): ...
    await worker.close()

* The child runs at a lower priority and is spawned before it is needed (its
  imports done), so that the first search does not wait for it.
* One search at a time: a newer search cancels the older one in the worker;
  closing a search's stream (``aclose()``, or cancelling the task iterating
  it) tells the worker to cancel it.
* The worker dies (its pipe closes) or hangs (a running search sends a sign
  of life every second; nothing for ``hang_s``): the search running fails
  with :class:`WorkerError` and its French message, the worker is killed if
  need be and started again with the same settings, and the next search
  works.  Nothing else in the app waits on the worker.
* The worker cannot be started at all: :class:`WorkerError` with why, in
  French; each later search tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import sas_desk
from sas_desk.models.errors import KnownError
from sas_desk.models.search import SearchQuery, SearchUpdate
from sas_desk.services.config import VendorEndpoint
from sas_desk.services.fhir.worker_protocol import (
    MAX_TO_APP,
    Alive,
    Cancel,
    Ended,
    Failed,
    Open,
    Ready,
    Refused,
    Search,
    UpdateDecoder,
    WireQuery,
    WorkerProtocolError,
    decode_to_app,
    frame,
    read_frame,
)

log = logging.getLogger("sas_desk.fhir.worker_client")

#: the folder holding our sas_desk package, for the child's imports
_HOME = str(Path(sas_desk.__file__).resolve().parents[1])
WORKER_FLAG = "--search-worker"  # as sas_desk.services.fhir.worker (not imported here)
#: a running search silent this long: the worker hangs
HANG_S = 10.0
#: the worker's "ready" after an Open: a directory sync of a whole region
#: takes a minute or two on a slow feed
OPEN_S = 600.0

#: said in the panel's two-line status (1366 px wide screens): one short
#: sentence, what to do; the technical cause (exit code, protocol error) is
#: in the log only
DIED_FR = "Recherche interrompue par un incident technique : relancez-la (Entrée)."
HUNG_FR = "Recherche interrompue, elle ne répondait plus : relancez-la (Entrée)."
#: a worker lost more than this many times within RESTART_WINDOW_S is not
#: started again at once (a crash loop would eat a core): the next search does
MAX_RESTARTS = 3
RESTART_WINDOW_S = 60.0
NO_START_FR = "Le processus de recherche de créneaux n'a pas pu démarrer ({why})."


class WorkerError(KnownError):
    """The search worker failed the search, or could not start: said in the panel."""


def worker_command(fd: int) -> list[str]:
    """How to start the worker: the frozen build's own executable with the
    flag its entry point understands, else this Python on our package."""
    if getattr(sys, "frozen", False):
        return [sys.executable, WORKER_FLAG, str(fd)]
    return [sys.executable, "-m", "sas_desk", WORKER_FLAG, str(fd)]


class _Lost:
    """Put in a search's queue when the worker is gone."""

    def __init__(self, message_fr: str) -> None:
        self.message_fr = message_fr


_SUPERSEDED = object()  # put in a search's queue when a newer search starts


class _Child:
    """One running worker process and its pipe."""

    def __init__(
        self, proc: subprocess.Popen[bytes], reader: asyncio.StreamReader, writer: Any
    ) -> None:
        self.proc = proc
        self.reader = reader
        self.writer = writer
        self.pump: asyncio.Task[None] | None = None
        self.ready: asyncio.Future[Ready] = asyncio.get_running_loop().create_future()
        self.lost = False

    def send(self, message: Any) -> None:
        if not self.lost and not self.writer.is_closing():
            self.writer.write(frame(message))


class SearchWorker:
    def __init__(
        self,
        *,
        now: Callable[[], datetime],
        command: Callable[[int], Sequence[str]] | None = None,
        hang_s: float = HANG_S,
        open_s: float = OPEN_S,
        turn: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``turn``: awaited after each update, so that the window paints
        between two (the app's waits for a Qt event-loop turn; by default
        one asyncio turn)."""
        self._now = now
        self._turn = turn or _asyncio_turn
        self._command = command
        self.hang_s = hang_s
        self.open_s = open_s
        self._child: _Child | None = None
        self._settings: Open | None = None
        self._synced = False
        self._starting: asyncio.Task[_Child] | None = None
        self._ids = itertools.count(1)
        self._queues: dict[int, asyncio.Queue[Any]] = {}
        self._closed = False
        self.restarts = 0  # workers started again after one was lost
        self._lost_at: list[float] = []  # when the last workers were lost (monotonic)
        #: searches the worker said were over before their end (cancelled, replaced, failed)
        self.ended: set[int] = set()
        self.last_search = 0  # the number of the latest search
        self.places = 0  # practitioners' places in the directory, once open
        #: set each time a worker is started and ready (tests wait on it)
        self.started = asyncio.Event()

    # ------------------------------------------------------------------ life
    @property
    def pid(self) -> int | None:
        child = self._child
        return child.proc.pid if child is not None and not child.lost else None

    @property
    def vendors(self) -> tuple[VendorEndpoint, ...]:
        """The vendors the worker was given (none before :meth:`open`), as
        the in-process service's ``vendors``."""
        return self._settings.vendors if self._settings is not None else ()

    async def spawn(self) -> None:
        """Start the process (its imports done while nobody waits for it);
        :class:`WorkerError` when it cannot be started."""
        if self._child is None or self._child.lost:
            await self._ensure()

    async def open(self, settings: Open) -> str:
        """Give the worker its directory and vendors, and wait until the
        directory is usable: the French note to show ("" when all is well);
        :class:`WorkerError` when it is not usable."""
        self._settings = settings
        child = await self._ensure(open_it=False)
        ready = await self._open(child, settings)
        self._synced = True
        self.places = ready.places
        if not ready.ok:
            raise WorkerError(ready.note or "Annuaire indisponible.")
        return ready.note

    async def _open(self, child: _Child, settings: Open) -> Ready:
        child.send(settings)
        try:
            async with asyncio.timeout(self.open_s):
                return await asyncio.shield(child.ready)
        except TimeoutError:
            self._lose(child, HUNG_FR)
            raise WorkerError(HUNG_FR) from None
        except _LostError as exc:
            raise WorkerError(exc.message_fr) from None

    async def _ensure(self, *, open_it: bool = True) -> _Child:
        """The running worker, started (and given its settings) if need be."""
        if self._closed:
            raise WorkerError("Recherche de créneaux arrêtée (fermeture de l'application).")
        child = self._child
        if child is not None and not child.lost and (not open_it or child.ready.done()):
            return child
        if self._starting is None or self._starting.done():
            self._starting = asyncio.create_task(self._start(open_it), name="search-worker-start")
        return await asyncio.shield(self._starting)

    async def _start(self, open_it: bool) -> _Child:
        child = self._child
        if child is None or child.lost:
            child = await self._launch()
            self._child = child
        if open_it and self._settings is not None and not child.ready.done():
            settings = self._settings
            if self._synced:  # a restart: the directory is already up to date
                settings = Open(**{**_fields(settings), "sync": False})
            await self._open(child, settings)
        self.started.set()
        return child

    async def _launch(self) -> _Child:
        if os.name != "posix":
            raise WorkerError(NO_START_FR.format(why="système non pris en charge"))
        mine, theirs = socket.socketpair()
        env = dict(os.environ)
        if not getattr(sys, "frozen", False):  # the child imports the same sas_desk as we do
            env["PYTHONPATH"] = os.pathsep.join(p for p in (_HOME, env.get("PYTHONPATH")) if p)
        try:
            command = list((self._command or worker_command)(theirs.fileno()))
            popen = asyncio.ensure_future(
                asyncio.to_thread(
                    subprocess.Popen,
                    command,
                    pass_fds=(theirs.fileno(),),
                    stdin=subprocess.DEVNULL,
                    env=env,
                )
            )
            try:
                proc = await asyncio.shield(popen)
            except asyncio.CancelledError:  # closing while it starts: stopped once started
                mine.close()
                popen.add_done_callback(_abandon)
                raise
        except OSError as exc:
            mine.close()
            log.error("search worker not started: %s", type(exc).__name__)
            raise WorkerError(NO_START_FR.format(why=_why_fr(exc))) from None
        finally:
            theirs.close()
        try:
            reader, writer = await asyncio.open_unix_connection(sock=mine, limit=1 << 20)
        except BaseException:  # closing meanwhile: the started process is stopped and reaped
            mine.close()
            proc.kill()
            asyncio.get_running_loop().run_in_executor(None, _stop, proc)
            raise
        child = _Child(proc, reader, writer)
        child.pump = asyncio.create_task(self._pump(child), name="search-worker-pump")
        log.info("search worker started (pid %d)", proc.pid)
        return child

    async def close(self) -> None:
        """Stop the worker (its pipe closed: it ends; killed if it does not)."""
        self._closed = True
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
            with contextlib.suppress(BaseException):
                await self._starting
        child, self._child = self._child, None
        if child is None:
            return
        child.lost = True
        child.writer.close()
        if child.pump is not None:
            child.pump.cancel()
            with contextlib.suppress(BaseException):
                await child.pump
        await asyncio.to_thread(_stop, child.proc)

    # ------------------------------------------------------------------ messages
    async def _pump(self, child: _Child) -> None:
        """Read the worker's frames and hand each to its search."""
        try:
            while True:
                body = await read_frame(child.reader, MAX_TO_APP)
                if body is None:
                    break
                message = decode_to_app(body)
                if isinstance(message, Ready):
                    if not child.ready.done():
                        child.ready.set_result(message)
                elif isinstance(message, Refused):
                    log.error("the search worker refused a message: %s", message.message_fr)
                else:
                    if isinstance(message, Alive):
                        for waiting in self._queues.values():
                            waiting.put_nowait(message)
                        continue
                    if isinstance(message, Ended | Failed):
                        self.ended.add(message.id)
                    queue = self._queues.get(message.id)
                    if queue is not None:
                        queue.put_nowait(message)
        except WorkerProtocolError as exc:
            log.error("search worker: %s", exc.message_fr)
        except (ConnectionError, OSError) as exc:
            log.warning("search worker pipe: %s", type(exc).__name__)
        if not child.lost:
            code = await asyncio.to_thread(_stop, child.proc, 2.0)
            log.error("search worker lost (exit code %s)", code)
            self._lose(child, DIED_FR)

    def _lose(self, child: _Child, message_fr: str) -> None:
        """The worker is gone or useless: every search running fails, the
        process is killed, another is started with the same settings."""
        if child.lost:
            return
        child.lost = True
        self.started.clear()
        child.writer.close()
        was_ready = _was_ready(child)
        if not child.ready.done():
            child.ready.set_exception(_LostError(message_fr))
            child.ready.exception()  # retrieved: no "never retrieved" warning
        for queue in self._queues.values():
            queue.put_nowait(_Lost(message_fr))
        if child.pump is not None and child.pump is not asyncio.current_task():
            child.pump.cancel()
        with contextlib.suppress(OSError):
            child.proc.kill()
        asyncio.get_running_loop().run_in_executor(None, _stop, child.proc)  # reaped
        if self._closed or not was_ready:
            return  # one that never got ready would fail again: the next search tries
        now = time.monotonic()
        self._lost_at = [t for t in self._lost_at if now - t < RESTART_WINDOW_S] + [now]
        if len(self._lost_at) > MAX_RESTARTS:  # dying again and again: on demand only
            log.error("search worker lost %d times in %.0f s", len(self._lost_at), RESTART_WINDOW_S)
            return
        self.restarts += 1
        if self._starting is None or self._starting.done():
            self._starting = asyncio.create_task(self._start(True), name="search-worker-restart")
            self._starting.add_done_callback(_quiet)

    # ------------------------------------------------------------------ searches
    async def search(self, query: SearchQuery) -> AsyncIterator[SearchUpdate]:
        if self._settings is None:  # the worker would wait for its directory forever
            raise WorkerError("Recherche de créneaux : l'annuaire n'a pas encore été ouvert.")
        child = await self._ensure()
        search_id = self.last_search = next(self._ids)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for older in self._queues.values():  # a newer search: the worker drops the older one
            older.put_nowait(_SUPERSEDED)
        self._queues = {search_id: queue}
        decoder = UpdateDecoder()
        child.send(Search(search_id, WireQuery.of(query), self._now()))
        finished = False
        try:
            while True:
                try:
                    async with asyncio.timeout(self.hang_s):
                        message = await queue.get()
                except TimeoutError:
                    log.error("search worker silent for %.0f s: killed", self.hang_s)
                    self._lose(child, HUNG_FR)
                    raise WorkerError(HUNG_FR) from None
                if isinstance(message, Alive):
                    continue
                if isinstance(message, _Lost):
                    finished = True
                    raise WorkerError(message.message_fr)
                if isinstance(message, Failed):
                    finished = True
                    raise WorkerError(message.message_fr)
                if isinstance(message, Ended) or message is _SUPERSEDED:
                    finished = True
                    return
                try:
                    update = decoder.decode(message)
                except WorkerProtocolError as exc:
                    log.error("search worker update unreadable: %s", exc.message_fr)
                    self._lose(child, DIED_FR)
                    finished = True
                    raise WorkerError(DIED_FR) from None
                if update.done:
                    finished = True
                yield update
                if finished:
                    return
                await self._turn()
        finally:
            if self._queues.get(search_id) is queue:
                del self._queues[search_id]
            if not finished:
                child.send(Cancel(search_id))


class _LostError(Exception):
    def __init__(self, message_fr: str) -> None:
        super().__init__(message_fr)
        self.message_fr = message_fr


def _fields(settings: Open) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in settings.__struct_fields__}


async def _asyncio_turn() -> None:
    await asyncio.sleep(0)


def _why_fr(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "programme introuvable"
    if isinstance(exc, PermissionError):
        return "exécution refusée"
    return f"erreur système {exc.errno or type(exc).__name__}"


def _was_ready(child: _Child) -> bool:
    return child.ready.done() and child.ready.exception() is None


def _abandon(popen: asyncio.Future[subprocess.Popen[bytes]]) -> None:
    if not popen.cancelled() and popen.exception() is None:
        proc = popen.result()
        proc.kill()
        asyncio.get_running_loop().run_in_executor(None, _stop, proc)


def _quiet(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("search worker not restarted: %s", task.exception())


def _stop(proc: subprocess.Popen[bytes], grace: float = 2.0) -> int | None:
    """Reap the process, killing it if it does not end within ``grace`` s."""
    try:
        return proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()
