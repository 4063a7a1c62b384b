"""Where the Hub Santé agent puts dossiers: an injected :class:`CaseSink`.

The workstation's embedded mode and the command line use :class:`JournalCases`
(the local journal, through the same ``Desk.import_dossier`` path as
``sas-desk dossier import-rseda``); the room server's agent uses
:class:`RoomCases` (the room's queues: every workstation sees what it
writes).  Every write records an event whose data carries the
``distributionID`` it came from, so that re-processing a message after a
crash finds it already applied (:meth:`CaseSink.applied`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from sas_desk.models.dossier import Actor, Dossier, Event, EventKind
from sas_desk.models.queue import NotFound, Operation, QueueError, QueueName, queue_for_attribution
from sas_desk.models.rseda_update import apply_update
from sas_desk.models.validation import ValidationError
from sas_desk.services.journal.service import Journal
from sas_desk.services.queues.api import QueueBackend

log = logging.getLogger("sas_desk.hub.cases")

SOURCE = "distribution_id"
# who writes the room's log for the Hub (services/queues/machine.py ``hub``)
HUB_ROLE = "HUB"
HUB_WORKSTATION = "hub-sante"


class CaseSink(Protocol):
    async def load(self, case_id: str) -> Dossier | None: ...

    async def applied(self, case_id: str, distribution_id: str) -> bool:
        """Whether a message was already applied to that case (crash recovery)."""
        ...

    async def create(self, dossier: Dossier, distribution_id: str, sender: str) -> None: ...

    async def update(
        self, case_id: str, body: dict[str, Any], distribution_id: str, sender: str
    ) -> list[str] | None:
        """Apply an RS-EDA-MAJ; ``None`` when the case is unknown."""
        ...

    async def record(self, case_id: str, kind: EventKind, data: dict[str, Any]) -> bool:
        """Put a Hub event on a dossier's timeline; False when unknown."""
        ...

    async def flush(self) -> None:
        """Make every write above durable; raises :class:`OSError` when it
        cannot (the message then stays unprocessed and is not acked)."""
        ...


class JournalCases:
    """A :class:`CaseSink` over the workstation's local journal."""

    def __init__(
        self, journal: Journal, now: Callable[[], datetime], workstation: str = "hub"
    ) -> None:
        self.journal = journal
        self._now = now
        self._workstation = workstation
        # written since the last flush(): handed to the journal together there,
        # so that a batch touching a case ten times serialises it once
        self._held: dict[str, Dossier] = {}
        self._events: list[Event] = []

    def _actor(self, sender: str) -> Actor:
        return Actor("HUB", sender, self._workstation)

    async def load(self, case_id: str) -> Dossier | None:
        held = self._held.get(case_id)
        return held if held is not None else await self.journal.load(case_id)

    async def applied(self, case_id: str, distribution_id: str) -> bool:
        events = [e for e in self._events if e.dossier_id == case_id]
        events += await self.journal.events(case_id)
        return any(e.data.get(SOURCE) == distribution_id for e in events)

    async def create(self, dossier: Dossier, distribution_id: str, sender: str) -> None:
        # the same event as ``Desk.import_dossier`` (``dossier import-rseda``),
        # with where it came from
        event = Event(
            dossier.case_id,
            self._now(),
            EventKind.IMPORTED,
            self._actor(sender),
            {"status": dossier.status.value, SOURCE: distribution_id, "sender": sender},
        )
        await self._write(dossier, event)

    async def update(
        self, case_id: str, body: dict[str, Any], distribution_id: str, sender: str
    ) -> list[str] | None:
        dossier = await self.load(case_id)
        if dossier is None:
            return None
        changes = apply_update(dossier, body, self._now())
        event = Event(
            case_id,
            self._now(),
            EventKind.HUB_UPDATE,
            self._actor(sender),
            {SOURCE: distribution_id, "sender": sender, "changes": changes},
        )
        await self._write(dossier, event)
        return changes

    async def record(self, case_id: str, kind: EventKind, data: dict[str, Any]) -> bool:
        dossier = await self.load(case_id)
        if dossier is None:
            return False
        event = Event(case_id, self._now(), kind, self._actor(str(data.get("sender", ""))), data)
        await self._write(dossier, event)
        return True

    async def _write(self, dossier: Dossier, event: Event) -> None:
        self._held[dossier.case_id] = dossier  # handed over and made durable by flush()
        self._events.append(event)

    async def flush(self) -> None:
        held, events = self._held, self._events
        self._held, self._events = {}, []
        for case_id, dossier in held.items():
            self.journal.submit(dossier, *(e for e in events if e.dossier_id == case_id))
        done = await self.journal.flush(timeout=10)
        state = self.journal.last_state
        if not done or (state is not None and not state.ok):
            raise OSError(state.message_fr if state else "journal indisponible")


class RoomCases:
    """A :class:`CaseSink` over the room's queues (the room server's agent):
    every write is an operation of the room's log, so that what the Hub
    brings — a partner's case, its updates, an SAS appointment attached or
    changed, acknowledgements and errors — reaches every workstation's
    timeline.  The writes are durable when applied (:meth:`flush` has nothing
    left to do)."""

    def __init__(self, backend: QueueBackend, now: Callable[[], datetime]) -> None:
        self.backend = backend
        self._now = now

    def _op(self, kind: str, case_id: str, operator: str, **data: Any) -> Operation:
        return Operation(
            op_id=str(uuid.uuid4()),
            kind=kind,
            case_id=case_id,
            at=self._now(),
            role=HUB_ROLE,
            operator=operator or "hub",
            workstation=HUB_WORKSTATION,
            data=data,
        )

    async def load(self, case_id: str) -> Dossier | None:
        return await self.backend.dossier(case_id)

    async def applied(self, case_id: str, distribution_id: str) -> bool:
        events = await self.backend.events(case_id)
        return any(
            e.data.get(SOURCE) == distribution_id
            or (isinstance(e.data.get("data"), dict) and e.data["data"].get(SOURCE))
            == distribution_id
            for e in events
        )

    async def create(self, dossier: Dossier, distribution_id: str, sender: str) -> None:
        data: dict[str, Any] = {"dossier": dossier.to_dict()}
        if queue_for_attribution(dossier.attribution) is None:
            data["queue"] = QueueName.ARM.value  # no attribution: the ARM sorts it
        await self.backend.apply(self._op("enqueue", dossier.case_id, sender, **data))
        await self.record(
            dossier.case_id,
            EventKind.HUB_UPDATE,
            {SOURCE: distribution_id, "sender": sender, "changes": ["Dossier reçu du partenaire"]},
        )

    async def update(
        self, case_id: str, body: dict[str, Any], distribution_id: str, sender: str
    ) -> list[str] | None:
        op = self._op(
            "hub",
            case_id,
            sender,
            event=EventKind.HUB_UPDATE.value,
            data={SOURCE: distribution_id, "sender": sender},
            update=body,
        )
        try:
            await self.backend.apply(op)
        except NotFound:
            return None
        except QueueError as exc:
            if exc.code == "invalid":
                raise ValidationError(exc.message_fr, "createCaseHealthUpdate") from None
            raise
        events = await self.backend.events(case_id)
        mine = [e for e in events if e.op_id == op.op_id]
        return list(mine[0].data.get("changes", [])) if mine else []

    async def record(self, case_id: str, kind: EventKind, data: dict[str, Any]) -> bool:
        operator = str(data.get("attached_by") or data.get("sender") or "")
        op = self._op("hub", case_id, operator, event=kind.value, data=data)
        try:
            await self.backend.apply(op)
        except NotFound:
            return False
        return True

    async def flush(self) -> None:
        return None
