"""Async front of the journal: non-blocking autosave with coalescing.

The UI calls :meth:`Journal.submit` on every edit.  Snapshots are coalesced
per dossier (latest revision wins) and written by one dedicated thread that
owns the SQLite connection, so the event loop never waits on the disk.  When
the disk refuses (read-only, full), everything stays queued in memory, the
listeners get a French message, and writing is retried until it works:
nothing typed is lost while the program runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

from sas_desk.models.dossier import Dossier, Event, Status
from sas_desk.services.atrest import KeyGate, RecordCipher, SealError
from sas_desk.services.journal.store import JournalError, JournalStore, OpenReport

log = logging.getLogger("sas_desk.journal")
T = TypeVar("T")


@dataclass(frozen=True)
class SaveState:
    ok: bool
    at: datetime
    pending: int  # dossiers + events still waiting for the disk
    message_fr: str = ""
    reason: str = ""  # JournalError.reason when not ok
    saved: tuple[tuple[str, int], ...] = ()  # (case_id, revision) made durable by this write
    submitted: tuple[float, ...] = ()  # monotonic submit times of what was just written


Listener = Callable[[SaveState], None]


class Journal:
    def __init__(
        self,
        path: Path,
        *,
        now: Callable[[], datetime],
        retry_delay: float = 2.0,
        cipher: RecordCipher | KeyGate | None = None,
    ) -> None:
        """``cipher``: records sealed at rest (services/atrest.py); a
        :class:`KeyGate` when the key comes after the journal opens — what is
        submitted meanwhile stays in memory, written sealed once it is there."""
        self.path = path
        self._now = now
        self._gate = cipher if isinstance(cipher, KeyGate) else None
        self._cipher = None if isinstance(cipher, KeyGate) else cipher
        self._retry_delay = retry_delay
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="journal"
        )
        self._store: JournalStore | None = None
        # latest state per dossier: the live object (serialised at write time,
        # once per batch, not on every keystroke) or a snapshot put back after
        # a failed write; with the time of the first unsaved edit
        self._pending: dict[str, tuple[Dossier | dict[str, Any], float]] = {}
        self._pending_events: list[tuple[Event, float]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._listeners: list[Listener] = []
        self._idle = asyncio.Event()
        self._idle.set()
        self.last_state: SaveState | None = None
        self.report: OpenReport | None = None
        self.open_error: JournalError | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---------------------------------------------------------------- lifecycle
    async def open(self) -> OpenReport | None:
        """Open (and repair) the journal.  Returns the report, or ``None`` when
        the journal cannot be written (``open_error`` says why): the app then
        runs with the sheets in memory and keeps trying."""
        try:
            store = await self._run(
                lambda: JournalStore(self.path, now=self._now, cipher=self._cipher)
            )
        except JournalError as exc:
            self.open_error = exc
            log.error("journal %s unavailable: %s", self.path, exc.reason)
            self._emit(SaveState(False, self._now(), 0, exc.message_fr, exc.reason))
            return None
        self._store = store
        self.open_error = None
        self.report = store.report
        return store.report

    @property
    def available(self) -> bool:
        return self._store is not None

    async def _keyed(self) -> bool:
        """Wait for the key (:class:`KeyGate`); False when none can be had."""
        gate = self._gate
        if gate is None:
            return True
        try:
            self._cipher = await gate.cipher()
        except SealError:
            return False
        self._gate = None
        if self._store is not None:
            self._store.use_cipher(self._cipher)
        return True

    async def close(self) -> None:
        if self._gate is None or not self._gate.failed:  # no key: nothing can be written
            await self.flush(timeout=5.0)
        if self._flushing is not None:
            self._flushing.cancel()
            try:
                await self._flushing
            except asyncio.CancelledError:
                pass
        store = self._store
        if store is not None:
            await self._run(store.close)
        self._executor.shutdown(wait=True)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # ---------------------------------------------------------------- writes
    def submit(self, dossier: Dossier, *events: Event) -> None:
        """Queue a snapshot of ``dossier`` (and events) for the disk.  Never blocks."""
        stamp = time.monotonic()
        previous = self._pending.get(dossier.case_id)
        if previous is None or _revision(previous[0]) <= dossier.revision:
            # keep the oldest submit time: latency is measured from the first unsaved edit
            self._pending[dossier.case_id] = (dossier, previous[1] if previous else stamp)
        self._pending_events.extend((e, stamp) for e in events)
        self._kick()

    def _kick(self) -> None:
        if self._flushing is None or self._flushing.done():
            self._idle.clear()
            self._flushing = self._get_loop().create_task(self._flush_loop(), name="journal-flush")

    async def _flush_loop(self) -> None:
        delay = self._retry_delay
        if not await self._keyed():  # kept in memory, never written in the clear
            log.error("journal: no data key, %d dossier(s) kept in memory", len(self._pending))
            return
        while self._pending or self._pending_events:
            if self._store is None:
                await self.open()
                if self._store is None:
                    await asyncio.sleep(delay)
                    continue
            batch = {cid: (_snapshot(d), t) for cid, (d, t) in self._pending.items()}
            events = list(self._pending_events)
            self._pending.clear()
            self._pending_events.clear()
            store = self._store
            try:
                snapshots = [d for d, _ in batch.values()]
                to_log = [e for e, _ in events]
                await self._run(functools.partial(store.write, snapshots, to_log))
            except JournalError as exc:
                # put everything back (newer edits that arrived meanwhile win)
                for case_id, item in batch.items():
                    current = self._pending.get(case_id)
                    if current is None or _revision(current[0]) < _revision(item[0]):
                        self._pending[case_id] = item
                self._pending_events[:0] = events
                log.error(
                    "journal write failed (%s); %d dossier(s) kept in memory",
                    exc.reason,
                    len(self._pending),
                )
                self._emit(
                    SaveState(False, self._now(), self.pending_count, exc.message_fr, exc.reason)
                )
                await asyncio.sleep(delay)
                continue
            self._emit(
                SaveState(
                    True,
                    self._now(),
                    self.pending_count,
                    saved=tuple((cid, int(d["revision"])) for cid, (d, _) in batch.items()),
                    submitted=tuple(t for _, t in batch.values()) + tuple(t for _, t in events),
                )
            )
        self._idle.set()

    @property
    def pending_count(self) -> int:
        return len(self._pending) + len(self._pending_events)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted is on disk.  False on timeout."""
        if not (self._pending or self._pending_events) and self._idle.is_set():
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _emit(self, state: SaveState) -> None:
        self.last_state = state
        for listener in list(self._listeners):
            try:
                listener(state)
            except Exception:  # a broken listener must not stop saving
                log.exception("journal listener failed")

    # ---------------------------------------------------------------- reads
    async def unfinished(self) -> list[Dossier]:
        return await self._read(lambda s: s.by_status(Status.DRAFT), [])

    async def of_day(self, day: date) -> list[Dossier]:
        return await self._read(lambda s: s.of_day(day), [])

    async def of_day_with_callback(self, day: date, callback: str) -> list[Dossier]:
        """The day's stored dossiers with this callback number, read in the
        journal's thread, decoding only what was written since the last
        lookup (:meth:`JournalStore.of_day_with_callback`)."""
        return await self._read(lambda s: s.of_day_with_callback(day, callback), [])

    async def load(self, case_id: str) -> Dossier | None:
        pending = self._pending.get(case_id)
        if pending is not None:
            return Dossier.from_dict(_snapshot(pending[0]))
        return await self._read(lambda s: s.load(case_id), None)

    async def events(self, case_id: str) -> list[Event]:
        empty: list[Event] = []
        stored = await self._read(lambda s: s.events(case_id), empty)
        return stored + [e for e, _ in self._pending_events if e.dossier_id == case_id]

    async def purge(self, before: datetime, keep: frozenset[str] = frozenset()) -> list[str]:
        """Retention: see :meth:`JournalStore.purge` (nothing when the
        journal is not open)."""
        store = self._store
        if store is None:
            return []
        kept = keep | set(self._pending)  # not written yet: not purged under the writer
        return await self._run(lambda: store.purge(before, kept))

    async def max_sequence(self, day: date) -> int:
        """Case ids are stored in the clear: known before the key."""
        return await self._read(lambda s: s.max_sequence(day), 0, keyed=False)

    async def count_unfinished(self) -> int:
        """Dossiers left as drafts (statuses are in the clear: before the key)."""
        return await self._read(lambda s: s.count_status(Status.DRAFT), 0, keyed=False)

    async def _read(self, fn: Callable[[JournalStore], T], default: T, *, keyed: bool = True) -> T:
        if keyed and not await self._keyed():
            return default
        store = self._store
        if store is None:
            return default
        try:
            return await self._run(lambda: fn(store))
        except JournalError as exc:
            log.error("journal read failed: %s", exc.reason)
            return default

    async def _run(self, fn: Callable[[], T]) -> T:
        return await self._get_loop().run_in_executor(self._executor, fn)

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        """The loop the journal was opened on.  Kept rather than looked up:
        with qasync, Qt may step a task from a nested event loop where asyncio
        does not consider the loop "running"."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop


def _snapshot(item: Dossier | dict[str, Any]) -> dict[str, Any]:
    return item if isinstance(item, dict) else item.to_dict()


def _revision(item: Dossier | dict[str, Any]) -> int:
    return int(item["revision"]) if isinstance(item, dict) else item.revision
