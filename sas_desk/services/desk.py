"""The workstation's call-sheet service: creates dossiers, applies edits,
records events and hands everything to the journal.  No Qt: the call-sheet
panel is a thin view over this.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import date, datetime

from sas_desk.models import dossier as dm
from sas_desk.models.dossier import Actor, Dossier, Event, EventKind, Status
from sas_desk.services.config import Config
from sas_desk.services.journal.service import Journal

log = logging.getLogger("sas_desk.desk")

Listener = Callable[[Dossier], None]


@dataclass
class _Sequence:
    day: date
    last: int


class Desk:
    def __init__(
        self, config: Config, journal: Journal, actor: Actor, now: Callable[[], datetime]
    ) -> None:
        self.config = config
        self.journal = journal
        self.actor = actor
        self._now = now
        self._seq: _Sequence | None = None
        self._listeners: list[Listener] = []

    def on_change(self, listener: Listener) -> None:
        """``listener(dossier)`` after every recorded change (not every keystroke)."""
        self._listeners.append(listener)

    def _changed(self, dossier: Dossier) -> None:
        for listener in list(self._listeners):
            listener(dossier)

    async def prepare(self) -> None:
        """Read today's highest sequence so new numbers follow on."""
        today = self._now().date()
        self._seq = _Sequence(today, await self.journal.max_sequence(today))

    def _next_sequence(self, day: date) -> int:
        if self._seq is None or self._seq.day != day:
            self._seq = _Sequence(day, 0)
        self._seq.last += 1
        return self._seq.last

    # ---------------------------------------------------------------- operations
    def new_call(self) -> Dossier:
        """A new call sheet; the reception time is stamped now.  No priority
        and no branch: the ARM picks both (a sheet must not leave with a
        priority nobody chose)."""
        at = self._now()
        case_id, local = dm.new_case_ids(
            self.config.owner,
            self.config.departement,
            self.config.samu_letter,
            at,
            self._next_sequence(at.date()),
        )
        dossier = Dossier(
            case_id=case_id,
            sender_case_id=local,
            created_at=at,
            received_at=at,
            owner=self.config.owner,
            priority="",
        )
        event = Event(case_id, at, EventKind.CREATED, self.actor, {"role": self.actor.role})
        self.journal.submit(dossier, event)
        self._changed(dossier)
        log.info("new call sheet %s", case_id)
        return dossier

    def touch(self, dossier: Dossier) -> None:
        """The sheet was edited (fields already set by the caller): save it."""
        dossier.revision += 1
        self.journal.submit(dossier)

    def add_note(self, dossier: Dossier, text: str) -> Event:
        event = dm.add_note(dossier, text, self._now(), self.actor)
        self.journal.submit(dossier, event)
        self._changed(dossier)
        return event

    def transmit(self, dossier: Dossier, confirmed: Collection[str] = ()) -> Event:
        """Raises ``ValidationError`` (French) when the sheet is incomplete,
        ``ConfirmationNeeded`` for what the operator has not ``confirmed``
        (unlocated place, outside the centre's département, P0/P1 with no
        callback number); what was confirmed goes into the event."""
        event = dm.transmit(
            dossier,
            self._now(),
            self.actor,
            departement=self.config.departement,
            confirmed=confirmed,
        )
        self.journal.submit(dossier, event)
        self._changed(dossier)
        log.info(
            "dossier %s transmitted to %s%s",
            dossier.case_id,
            dossier.attribution,
            f" (confirmed: {', '.join(event.data['confirmed'])})"
            if "confirmed" in event.data
            else "",
        )
        return event

    def resume(self, dossier: Dossier) -> Event:
        event = Event(
            dossier.case_id,
            self._now(),
            EventKind.RESUMED,
            self.actor,
            {"revision": dossier.revision},
        )
        self.journal.submit(dossier, event)
        return event

    def abandon(self, dossier: Dossier, reason: str = "") -> Event:
        dossier.status = Status.ABANDONED
        dossier.revision += 1
        event = Event(
            dossier.case_id, self._now(), EventKind.ABANDONED, self.actor, {"reason": reason}
        )
        self.journal.submit(dossier, event)
        self._changed(dossier)
        return event

    def import_dossier(self, dossier: Dossier) -> Event:
        event = Event(
            dossier.case_id,
            self._now(),
            EventKind.IMPORTED,
            self.actor,
            {"status": dossier.status.value},
        )
        self.journal.submit(dossier, event)
        self._changed(dossier)
        return event
