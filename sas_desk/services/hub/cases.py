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

    def _actor(self, sender: str) -> Actor:
        return Actor("HUB", sender, self._workstation)

    async def load(self, case_id: str) -> Dossier | None:
        return await self.journal.load(case_id)

    async def applied(self, case_id: str, distribution_id: str) -> bool:
        return any(
            e.data.get(SOURCE) == distribution_id for e in await self.journal.events(case_id)
        )

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
        dossier = await self.journal.load(case_id)
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
        dossier = await self.journal.load(case_id)
        if dossier is None:
            return False
        event = Event(case_id, self._now(), kind, self._actor(str(data.get("sender", ""))), data)
        await self._write(dossier, event)
        return True

    async def _write(self, dossier: Dossier, event: Event) -> None:
        self.journal.submit(dossier, event)  # durable at the next flush()

    async def flush(self) -> None:
        done = await self.journal.flush(timeout=10)
        state = self.journal.last_state
        if not done or (state is not None and not state.ok):
            raise OSError(state.message_fr if state else "journal indisponible")
