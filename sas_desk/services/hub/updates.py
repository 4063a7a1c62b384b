"""RS-EDA-MAJ to partners as the regulator works a case we shared (issue #16).

The room's operations that change what a partner holds of a dossier — a
note, a decision, an ARM's update (note, priority), a booking request with
its note — are followed here, where they are applied (the queue client's
:meth:`~sas_desk.services.queues.client.QueueClient.on_applied`, or the room
server once it applied an operation), never in a widget.  For each, the
dossier as the room now holds it goes to :meth:`HubProcessor.send_updates`,
which queues in the durable outbox what each partner lacks; the agent is
woken to publish it.

One change at a time, in the order they were applied: each reads the
dossier after the previous one queued its update, so a partner never gets an
older priority after a newer one, and a change seen twice is sent once (the
processor compares with what the partner already holds).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sas_desk.models.dossier import Dossier
from sas_desk.models.queue import Operation
from sas_desk.services.hub.processor import HubProcessor

log = logging.getLogger("sas_desk.hub.updates")

# the operations that change what a partner holds of the dossier
UPDATE_KINDS = frozenset({"note", "decide", "update", "request_booking", "close"})


class SharedCaseUpdates:
    def __init__(
        self,
        processor: HubProcessor,
        dossier: Callable[[str], Awaitable[Dossier | None]],
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.processor = processor
        self._dossier = dossier
        self._wake = wake
        self._lock = asyncio.Lock()  # FIFO: changes are sent in the order applied
        self._tasks: set[asyncio.Task[list[str]]] = set()

    def operation_applied(self, op: Operation) -> asyncio.Task[list[str]] | None:
        """An operation the room applied (a queue client's listener)."""
        if op.kind not in UPDATE_KINDS:
            return None
        return self.changed(op.case_id)

    def changed(self, case_id: str) -> asyncio.Task[list[str]]:
        task = asyncio.get_running_loop().create_task(self._send(case_id), name="hub-update")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _send(self, case_id: str) -> list[str]:
        async with self._lock:
            try:
                dossier = await self._dossier(case_id)
                if dossier is None:
                    return []
                queued = await self.processor.send_updates(case_id, dossier)
            except Exception:
                # the change stays in the room: the next one carries it too
                log.exception("hub: update of %s not queued", case_id)
                return []
        if queued:
            self._wake()
        return queued

    async def idle(self) -> None:
        """Wait for the updates under way (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
