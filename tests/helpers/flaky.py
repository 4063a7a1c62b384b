"""A real backend behind a switch: ``down = True`` makes every call fail as
an unreachable server would (BackendUnavailable), to test the outbox."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import datetime

from sas_desk.models.dossier import Dossier, Event
from sas_desk.models.queue import ChangeSet, Operation, QueueItem, QueueName
from sas_desk.services.queues.api import BackendUnavailable, QueueBackend


class FlakyBackend(QueueBackend):
    def __init__(self, inner: QueueBackend) -> None:
        self.inner = inner
        self.name = f"flaky-{inner.name}"
        self.down = False
        self.applied: list[str] = []  # op ids that reached the inner backend

    def _check(self) -> None:
        if self.down:
            raise BackendUnavailable("Serveur des files injoignable (test).")

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def apply(self, op: Operation) -> QueueItem | None:
        self._check()
        self.applied.append(op.op_id)
        return await self.inner.apply(op)

    async def snapshot(self, queues: Iterable[QueueName]) -> list[QueueItem]:
        self._check()
        return await self.inner.snapshot(queues)

    def watch(self, queues: Iterable[QueueName]) -> AsyncIterator[ChangeSet]:
        return self.inner.watch(queues)

    async def renew(self, workstation: str, at: datetime, lease_s: float = 120.0) -> int:
        self._check()
        return await self.inner.renew(workstation, at, lease_s)

    async def expire(self, at: datetime) -> list[QueueItem]:
        self._check()
        return await self.inner.expire(at)

    async def dossier(self, case_id: str) -> Dossier | None:
        self._check()
        return await self.inner.dossier(case_id)

    async def events(self, case_id: str) -> list[Event]:
        self._check()
        return await self.inner.events(case_id)
