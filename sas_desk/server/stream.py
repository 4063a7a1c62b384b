"""The change stream's engine: one ``watch()`` over every queue, a ring of
numbered change sets, and each subscriber's view of it filtered to the
queues its role reads.

Every change set the backend yields becomes one :class:`Entry` numbered
``n`` (ids ``<boot>.<n>`` on the wire: a restarted server has another boot,
so a client's old id means "send me a reset").  Entries remember where each
item was before, so a subscriber is told ``removed`` when an item leaves its
queues (moved elsewhere, closed) and hears nothing of queues it may not read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass

from sas_desk.models.queue import ChangeSet, ItemStatus, QueueItem, QueueName, ordered
from sas_desk.services.queues.api import BackendUnavailable, QueueBackend

log = logging.getLogger("sas_desk.server.stream")

_BACKOFF_START = 0.2
_BACKOFF_MAX = 5.0


@dataclass(frozen=True)
class Entry:
    n: int
    reset: bool
    items: tuple[tuple[QueueItem, QueueName | None], ...]  # the item, its queue before
    removed: tuple[tuple[str, QueueName | None], ...]  # case id, its queue before


@dataclass(frozen=True)
class Changes:
    id: str
    changes: ChangeSet


@dataclass(frozen=True)
class KeepAlive:
    pass


@dataclass(frozen=True)
class Bye:
    reason_fr: str


StreamMessage = Changes | KeepAlive | Bye


def _view(entry: Entry, queues: Collection[QueueName]) -> ChangeSet | None:
    """What a subscriber reading ``queues`` sees of ``entry`` (None: nothing)."""
    if entry.reset:
        return ChangeSet(
            items=tuple(ordered([i for i, _ in entry.items if i.queue in queues])), reset=True
        )
    items: list[QueueItem] = []
    removed: list[str] = []
    for item, before in entry.items:
        if item.queue in queues:
            items.append(item)
        elif before in queues:
            removed.append(item.case_id)
    removed.extend(case_id for case_id, before in entry.removed if before in queues)
    if not items and not removed:
        return None
    return ChangeSet(items=tuple(items), removed=tuple(removed))


class Hub:
    """Follows the backend's changes once for every subscriber."""

    def __init__(self, backend: QueueBackend, ring_size: int = 2048) -> None:
        self.backend = backend
        self.boot = secrets.token_hex(4)
        self.n = 0
        self.ring: deque[Entry] = deque(maxlen=ring_size)
        self.state: dict[str, QueueItem] = {}  # every WAITING / CLAIMED item
        self.ready = asyncio.Event()
        self.closing: str | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.on_entry: Callable[[Entry], None] | None = None

    # ---------------------------------------------------------------- producer
    def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name="sas-desk-server-hub")

    async def _follow(self) -> None:
        backoff = _BACKOFF_START
        while self.closing is None:
            try:
                async for changes in self.backend.watch(tuple(QueueName)):
                    self.apply(changes)
                    backoff = _BACKOFF_START
                    if self.closing is not None:
                        return
            except BackendUnavailable as exc:
                log.warning("change watch interrupted: %s", exc.message_fr)
            except Exception:
                log.exception("change watch failed")
            if self.closing is not None:
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)

    def apply(self, changes: ChangeSet) -> Entry:
        """Number ``changes``, fold it into the state, wake the subscribers."""
        before = self.state
        if changes.reset:
            now = {i.case_id: i for i in changes.items if i.status is not ItemStatus.CLOSED}
            items = tuple(
                (i, before[i.case_id].queue if i.case_id in before else None) for i in now.values()
            )
            removed: tuple[tuple[str, QueueName | None], ...] = tuple(
                (cid, item.queue) for cid, item in before.items() if cid not in now
            )
            self.state = now
        else:
            entries: list[tuple[QueueItem, QueueName | None]] = []
            gone: list[tuple[str, QueueName | None]] = []
            for item in changes.items:
                old = before.get(item.case_id)
                if old is not None and old.version > item.version:
                    continue  # an older copy than the one already applied
                if item.status is ItemStatus.CLOSED:
                    if old is not None:
                        del before[item.case_id]
                        gone.append((item.case_id, old.queue))
                    continue
                before[item.case_id] = item
                entries.append((item, old.queue if old is not None else None))
            for case_id in changes.removed:
                old = before.pop(case_id, None)
                gone.append((case_id, old.queue if old is not None else None))
            items, removed = tuple(entries), tuple(gone)
        self.n += 1
        entry = Entry(self.n, changes.reset, items, removed)
        self.ring.append(entry)
        if changes.reset:
            self.ready.set()
        if self.on_entry is not None:
            self.on_entry(entry)
        self._notify()
        return entry

    def _notify(self) -> None:
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    async def close(self, reason_fr: str) -> None:
        self.begin_close(reason_fr)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def begin_close(self, reason_fr: str) -> None:
        """Every stream says ``bye`` with ``reason_fr`` and ends."""
        if self.closing is None:
            self.closing = reason_fr
            self._notify()

    # ---------------------------------------------------------------- subscribers
    def event_id(self, n: int) -> str:
        return f"{self.boot}.{n}"

    def resume_point(self, last_event_id: str | None) -> int | None:
        """The entry number to resume after, or None when a reset is needed."""
        if not last_event_id:
            return None
        boot, _, number = last_event_id.partition(".")
        if boot != self.boot or not number.isdigit():
            return None
        n = int(number)
        oldest = self.ring[0].n if self.ring else self.n + 1
        if n > self.n or n < oldest - 1:
            return None
        return n

    def snapshot(self, queues: Collection[QueueName]) -> ChangeSet:
        return ChangeSet(
            items=tuple(ordered([i for i in self.state.values() if i.queue in queues])),
            reset=True,
        )

    async def follow(
        self,
        queues: Collection[QueueName],
        last_event_id: str | None,
        keepalive_s: float,
        ready_timeout_s: float = 10.0,
    ) -> AsyncIterator[StreamMessage]:
        """A subscriber's messages: a reset (or the missed increments after
        ``last_event_id``), then increments, keep-alives, and ``Bye``."""
        if not self.ready.is_set():
            try:
                async with asyncio.timeout(ready_timeout_s):
                    await self.ready.wait()
            except TimeoutError:
                yield Bye("Le serveur de la salle n'a pas encore l'état des files : reconnexion.")
                return
        cursor = self.resume_point(last_event_id)
        if cursor is None:
            cursor = self.n
            yield Changes(self.event_id(cursor), self.snapshot(queues))
        while True:
            if self.closing is not None:
                yield Bye(self.closing)
                return
            if cursor < self.n:
                oldest = self.ring[0].n if self.ring else self.n + 1
                if cursor + 1 < oldest:  # fell behind the ring: start again
                    cursor = self.n
                    yield Changes(self.event_id(cursor), self.snapshot(queues))
                    continue
                start = cursor + 1 - oldest
                for entry in list(self.ring)[start:]:
                    cursor = entry.n
                    view = _view(entry, queues)
                    if view is not None:
                        yield Changes(self.event_id(entry.n), view)
                continue
            wake = self._wake
            try:
                async with asyncio.timeout(keepalive_s):
                    await wake.wait()
            except TimeoutError:
                yield KeepAlive()
