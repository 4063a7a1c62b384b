"""The search worker: a child process of SAS Desk that runs the slot search
(vendor requests, FHIR parsing, merge into offers) so that none of it runs
in the window's interpreter.  The app's side is
:mod:`sas_desk.services.fhir.worker_client`; the messages are those of
:mod:`sas_desk.services.fhir.worker_protocol`.

Started as ``<python> -m sas_desk --search-worker FD`` (or, in the frozen
build, ``<sas-desk> --search-worker FD``): FD is its end of a socket pair.
It lowers its own priority (the window comes first), opens the directory
and the vendor clients on :class:`~sas_desk.services.fhir.search.Open`
(:class:`~sas_desk.services.fhir.service.SlotService`: the engine the
command line and the tests use), runs one search at a time (a new one
cancels the one running) and stops when the app's end of the pipe closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import logging.handlers
import os
import signal
import socket
import sys
from collections.abc import AsyncGenerator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from sas_desk.models.search import Offer, SearchUpdate
from sas_desk.services.fhir.service import SlotService
from sas_desk.services.fhir.worker_protocol import (
    MAX_TO_WORKER,
    Alive,
    Cancel,
    Ended,
    Failed,
    Open,
    Ready,
    Refused,
    Search,
    UpdateEncoder,
    WorkerProtocolError,
    decode_to_worker,
    frame,
    read_frame,
)

log = logging.getLogger("sas_desk.fhir.worker")

#: the command-line flag that makes ``sas-desk`` (frozen or not) a worker
WORKER_FLAG = "--search-worker"
#: how often a running search says it is alive
ALIVE_S = 1.0
#: at most one update to the window per this many seconds (a later one merges
#: what came meanwhile); the panel repaints at most that often anyway
FLUSH_S = 0.1
#: how much lower than the window the worker runs (os.nice): the window gets
#: the CPU first when both want it; 5 starved the worker on a loaded machine
#: (bench/ui_search.py at load 11: a vendor cut at its 7 s deadline)
NICENESS = 2
#: a search over and no other started this long after: the worker gives back
#: what the search used (see Worker._tidy)
TIDY_AFTER_S = 0.3


class Worker:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.service: SlotService | None = None
        self.ready = asyncio.Event()
        self.open_error = ""
        self.flush_s = FLUSH_S
        self.current: tuple[int, asyncio.Task[None]] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._tidy_task: asyncio.Task[None] | None = None
        self.tidied = 0  # times the worker gave its memory back (tests)

    def send(self, message: Any) -> None:
        """One frame, written whole (no interleaving); the transport buffers."""
        if not self.writer.is_closing():
            self.writer.write(frame(message))

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def serve(self) -> None:
        self._spawn(self._alive(), "alive")
        try:
            while True:
                try:
                    body = await read_frame(self.reader, MAX_TO_WORKER)
                    if body is None:
                        break  # the app closed its end: it quit or gave us up
                    message = decode_to_worker(body)
                except (ConnectionError, OSError):
                    break  # the same, less politely
                except WorkerProtocolError as exc:
                    log.warning("message refused: %s", exc.message_fr)
                    self.send(Refused(exc.message_fr))
                    if exc.fatal:
                        break
                    continue
                if isinstance(message, Open):
                    self._spawn(self._open(message), "open")
                elif isinstance(message, Search):
                    self._start(message)
                elif (
                    isinstance(message, Cancel)
                    and self.current is not None
                    and self.current[0] == message.id
                ):
                    self.current[1].cancel()
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self.service is not None:
                await self.service.close()
            self.writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self.writer.wait_closed()

    async def _alive(self) -> None:
        while True:  # a period, not a wait for a result
            await asyncio.sleep(ALIVE_S)
            if self.current is not None and not self.current[1].done():
                self.send(Alive())
                await self.writer.drain()

    async def _open(self, message: Open) -> None:
        self.flush_s = message.flush_s
        if message.log_dir:
            _log_to(Path(message.log_dir))
        service = SlotService(
            Path(message.directory_path),
            message.directory_url,
            message.vendors,
            now=lambda: _no_clock(),
            per_vendor=message.per_vendor,
            slow_after=message.slow_after,
        )
        note = ""
        try:
            await service.open()
        except Exception as exc:  # the directory file cannot be opened at all
            text = getattr(exc, "message_fr", "") or type(exc).__name__
            log.warning("directory not opened: %s", type(exc).__name__)
            self.open_error = f"Annuaire indisponible : {text}"
            self.ready.set()
            self.send(Ready(False, self.open_error))
            return
        self.service = service
        if message.sync and message.directory_url:
            try:
                await service.sync()
            except Exception as exc:  # the feed failed: the previous copy serves
                text = getattr(exc, "message_fr", "") or type(exc).__name__
                log.warning("directory sync failed: %s", type(exc).__name__)
                note = f"Annuaire non synchronisé ({text}) : copie précédente."
        store = service.store
        stats = await asyncio.to_thread(store.stats) if store is not None else None
        self.ready.set()
        self.send(Ready(True, note, stats.places if stats is not None else 0))

    def _start(self, message: Search) -> None:
        if self._tidy_task is not None:
            self._tidy_task.cancel()  # the search first
            self._tidy_task = None
        if self.current is not None:
            self.current[1].cancel()  # a newer search replaces it
        task = self._spawn(self._search(message), f"search-{message.id}")
        self.current = (message.id, task)

    async def _search(self, message: Search) -> None:
        done = False
        batcher: _Batcher | None = None
        try:
            await self.ready.wait()
            if self.service is None:
                self.send(Failed(message.id, self.open_error or "Annuaire non ouvert."))
                return
            stream = cast(
                AsyncGenerator[SearchUpdate, None],
                self.service.search(message.query.query(), now=message.now),
            )
            batcher = _Batcher(self, UpdateEncoder(message.id), self.flush_s)
            async with contextlib.aclosing(stream):
                async for update in stream:
                    batcher.add(update)
                    await self.writer.drain()
                    done = update.done
        except asyncio.CancelledError:
            if batcher is not None:
                batcher.drop()
            self.send(Ended(message.id))
            raise
        except WorkerProtocolError as exc:
            self.send(Failed(message.id, exc.message_fr))
        except Exception as exc:  # a bug: logged here, said there
            log.exception("search %d failed", message.id)
            text = getattr(exc, "message_fr", "") or f"Recherche impossible ({type(exc).__name__})."
            self.send(Failed(message.id, text))
        else:
            if not done:
                self.send(Ended(message.id))
        finally:
            if self.current is not None and self.current[0] == message.id:
                self.current = None
                self._tidy_task = self._spawn(self._tidy(), "tidy")

    async def _tidy(self) -> None:
        """Between searches: the search's cyclic garbage collected (one full
        collection, here where no window waits on it), and the heap's free
        pages given back to the system (``malloc_trim``, in a thread: it
        releases the GIL). A large search allocates ~100 MB of short-lived
        objects; without this the worker's RSS kept the high-water mark of
        its fragmented arenas and crept up search after search
        (bench/ui_search.py --large: +9 % app and worker after 20 searches)."""
        await asyncio.sleep(TIDY_AFTER_S)
        gc.collect()
        await asyncio.to_thread(_trim)
        self.tidied += 1


class _Batcher:
    """A search's updates, sent at most one per ``flush_s``: those that come
    sooner are merged (a later offer carries the place's slots so far, the
    latest vendor states stand), so the window takes one update per frame
    or so however fast the vendors answer.  The first update, the first
    with offers and the last go at once."""

    def __init__(self, worker: Worker, encoder: UpdateEncoder, flush_s: float) -> None:
        self.worker = worker
        self.encoder = encoder
        self.flush_s = flush_s
        self.loop = asyncio.get_running_loop()
        self.pending: SearchUpdate | None = None
        self.offers: dict[str, Offer] = {}
        self.sent_at = -flush_s
        self.timer: asyncio.TimerHandle | None = None
        self.first = True  # no offers sent yet

    def add(self, update: SearchUpdate) -> None:
        for offer in update.offers:
            self.offers[offer.key] = offer
        self.pending = update
        wait = self.sent_at + self.flush_s - self.loop.time()
        first, self.first = self.first and bool(update.offers), self.first and not update.offers
        if update.done or wait <= 0 or first:
            self.flush()
        elif self.timer is None:
            self.timer = self.loop.call_later(wait, self.flush)

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        update, self.pending = self.pending, None
        if update is None:
            return
        update = replace(update, offers=tuple(self.offers.values()))
        self.offers = {}
        self.sent_at = self.loop.time()
        self.worker.send(self.encoder.encode(update))

    def drop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.pending = None


def _trim() -> None:
    """The C heap's free pages back to the system (glibc; elsewhere nothing)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def _no_clock() -> Any:
    raise RuntimeError("the worker's searches use the app's clock (Search.now)")


def _log_to(folder: Path) -> None:
    """The worker's own log file next to the app's (one writer per file)."""
    root = logging.getLogger()
    if any(getattr(h, "_sas_desk_worker", False) for h in root.handlers):
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            folder / "search-worker.log", maxBytes=2_000_000, backupCount=2, encoding="utf-8"
        )
    except OSError:
        return
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler._sas_desk_worker = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.INFO)


async def serve(sock: socket.socket) -> None:
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    await Worker(reader, writer).serve()


def main(argv: list[str]) -> int:
    """``--search-worker FD``: serve the app on that socket until it closes."""
    try:
        fd = int(argv[0])
        sock = socket.socket(fileno=fd)
    except (IndexError, ValueError, OSError):
        print(
            "sas-desk --search-worker : descripteur de connexion manquant ou invalide.",
            file=sys.stderr,
        )
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the app's to handle
    with contextlib.suppress(OSError, AttributeError):
        os.nice(NICENESS)
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("search-worker %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    with contextlib.suppress(ConnectionError):  # the app went away: nothing to say
        asyncio.run(serve(sock))
    return 0
