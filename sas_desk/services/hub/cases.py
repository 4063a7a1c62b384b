"""Where the Hub Santé agent puts dossiers: an injected :class:`CaseSink`.

The workstation's embedded mode and the command line use :class:`JournalCases`
(the local journal, through the same ``Desk.import_dossier`` path as
``sas-desk dossier import-rseda``); the room server will provide its own sink
over its store.  Every write records an event whose data carries the
``distributionID`` it came from, so that re-processing a message after a
crash finds it already applied (:meth:`CaseSink.applied`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from sas_desk.models.dossier import Actor, Dossier, Event, EventKind
from sas_desk.models.rseda_update import apply_update
from sas_desk.services.journal.service import Journal

log = logging.getLogger("sas_desk.hub.cases")

SOURCE = "distribution_id"


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
