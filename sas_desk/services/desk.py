"""The workstation's call-sheet service: creates dossiers, applies edits,
records events and hands everything to the journal.  No Qt: the call-sheet
panel is a thin view over this.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sas_desk.models import dossier as dm
from sas_desk.models.dossier import Actor, Dossier, Event, EventKind, Status
from sas_desk.models.errors import KnownError
from sas_desk.models.queue import QueueError, QueueItem
from sas_desk.models.validation import ValidationError
from sas_desk.services.config import Config
from sas_desk.services.journal.service import Journal
from sas_desk.services.queues.client import QueueClient

if TYPE_CHECKING:  # loaded when first used: not on the path to the first window
    from sas_desk.models.dental import Orientation
    from sas_desk.models.roster import RosterEntry
    from sas_desk.models.search import Offer, Volunteer
    from sas_desk.models.slots import Slot

log = logging.getLogger("sas_desk.desk")

Listener = Callable[[Dossier], None]
ErrorListener = Callable[[Dossier, str], None]
# event kinds of the local journal that are also operations of the room's log
_ORIENTATIONS = {EventKind.ORIENTED: "booking", EventKind.DENTAL_ORIENTED: "dental"}


@dataclass(frozen=True)
class ImportOutcome:
    kind: Literal["new", "same", "conflict"]
    dossier: Dossier  # what the import stored (the copy, for a conflict)
    existing: Dossier | None  # the dossier already stored under that caseId
    message_fr: str


# bookkeeping that differs between two copies of the same content
_META = ("revision",)


def _content(d: Dossier) -> dict[str, Any]:
    data = d.to_dict()
    for key in _META:
        data.pop(key, None)
    return data


_FIELD_FR = {"notes": "notes", "decisions": "décisions", "status": "statut"}


_FIELD_NAMES_FR = {
    "notes": "Notes",
    "decisions": "Décisions",
    "status": "Statut",
    "priority": "Priorité",
    "branch": "Filière",
    "perimeter": "Périmètre",
    "owner": "Centre traitant",
    "care_level": "Niveau de soins",
    "motive_code": "Motif",
    "motive_label": "Libellé du motif",
    "caller": "Appelant",
    "patient": "Patient",
    "location": "Lieu",
    "received_at": "Reçu à",
    "created_at": "Créé à",
    "sender_case_id": "N° chez l'émetteur",
    "whats_happen": "Circonstances",
    "location_kind": "Type de lieu",
    "origin": "Origine",
    "attribution": "Attribution",
    "intervention_type": "Type d'intervention",
    "transmitted_at": "Transmis à",
    "dental_reason": "Motif dentaire",
    # the caller, patient and location blocks, field by field
    "callback": "rappel",
    "caller_type": "type",
    "channel": "canal",
    "name": "nom",
    "language": "langue",
    "communication": "communication",
    "freetext": "commentaire",
    "contact_detail": "coordonnées",
    "patient_id": "identifiant",
    "age": "âge",
    "birth_date": "date de naissance",
    "sex": "sexe",
    "last_name": "nom",
    "first_name": "prénom",
    "complete_name": "nom complet",
    "address": "adresse",
    "number": "numéro",
    "way_name": "voie",
    "way_type": "type de voie",
    "city": "commune",
    "insee": "code INSEE",
    "postcode": "code postal",
    "lat": "latitude",
    "lon": "longitude",
    "precision": "précision",
    "is_aml": "AML",
    "radius_m": "rayon (m)",
    "position_at": "position à",
    "floor": "étage",
    "access_code": "code d'accès",
    "interphone": "interphone",
    "building": "bâtiment",
}


def _shown(value: Any) -> str:
    if value in (None, "", [], {}):
        return "—"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:79] + "…"


def conflict_fields(here: Dossier, received: Dossier) -> list[tuple[str, str, str]]:
    """What differs between the stored dossier and the version received, as
    (French field name, value here, value received): lists as counts, the
    caller / patient / location blocks field by field.  For the operator's
    eyes only (the dialog), never for a log line."""
    left, right = _content(here), _content(received)
    rows: list[tuple[str, str, str]] = []
    for key in sorted(left.keys() | right.keys()):
        a, b = left.get(key), right.get(key)
        if a == b or key == "case_id":
            continue
        name = _FIELD_NAMES_FR.get(key, key)
        if key in ("notes", "decisions"):
            rows.append((name, str(len(a or [])), str(len(b or []))))
        elif isinstance(a, dict) and isinstance(b, dict):
            for sub in sorted(a.keys() | b.keys()):
                if a.get(sub) != b.get(sub):
                    label = _FIELD_NAMES_FR.get(sub, sub)
                    rows.append((f"{name} : {label}", _shown(a.get(sub)), _shown(b.get(sub))))
        else:
            rows.append((name, _shown(a), _shown(b)))
    return rows


class ImportConflictError(KnownError):
    """A conflict that cannot be settled as asked (a version gone, not a pair)."""


def _differences(a: Dossier, b: Dossier) -> str:
    left, right = _content(a), _content(b)
    keys = sorted(k for k in left.keys() | right.keys() if left.get(k) != right.get(k))
    parts = []
    for key in keys[:4]:
        if key in ("notes", "decisions"):
            parts.append(f"{_FIELD_FR[key]} : {len(left[key])} ici, {len(right[key])} reçues")
        else:
            parts.append(_FIELD_FR.get(key, key))
    more = f" et {len(keys) - 4} autres champs" if len(keys) > 4 else ""
    return "champs différents : " + ", ".join(parts) + more


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
        self._error_listeners: list[ErrorListener] = []
        # the room's queues: orientations and the ARM's additions after
        # transmission go to the dossier's log there (None: this desk alone)
        self.queues: QueueClient | None = None
        self._sending: set[asyncio.Task[QueueItem | None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def on_change(self, listener: Listener) -> None:
        """``listener(dossier)`` after every recorded change (not every keystroke)."""
        self._listeners.append(listener)

    def _changed(self, dossier: Dossier) -> None:
        for listener in list(self._listeners):
            listener(dossier)

    def on_queue_error(self, listener: ErrorListener) -> None:
        """``listener(dossier, message_fr)`` when the room refused what this desk sent."""
        self._error_listeners.append(listener)

    async def prepare(self) -> None:
        """Read today's highest sequence so new numbers follow on."""
        # the loop sends go on: a Qt slot may run from a nested event loop,
        # where asyncio.get_running_loop() fails (see queues.sqlite._Wake)
        self._loop = asyncio.get_running_loop()
        today = self._now().date()
        self._seq = _Sequence(today, await self.journal.max_sequence(today))

    def _next_sequence(self, day: date) -> int:
        if self._seq is None or self._seq.day != day:
            self._seq = _Sequence(day, 0)
        self._seq.last += 1
        return self._seq.last

    # ---------------------------------------------------------------- operations
    def new_call(self, *, answered: bool = True) -> Dossier:
        """A new call sheet.  ``answered``: a call is on the line, its
        reception time is now; otherwise (a sheet opened ahead of the next
        call) it is the first keystroke's (:meth:`touch`) or :meth:`answer`'s.
        No priority and no branch: the ARM picks both (a sheet must not leave
        with a priority nobody chose).  Only a call-taking role may do this
        (``ValidationError`` otherwise)."""
        dm.check_may_take_calls(self.actor.role)
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
            received_at=at if answered else None,
            owner=self.config.owner,
            priority="",
        )
        event = Event(case_id, at, EventKind.CREATED, self.actor, {"role": self.actor.role})
        self.journal.submit(dossier, event)
        self._changed(dossier)
        log.info("new call sheet %s", case_id)
        return dossier

    def touch(self, dossier: Dossier) -> None:
        """The sheet was edited (fields already set by the caller): save it.
        The first keystroke on a sheet opened ahead of the call is when the
        call was received."""
        if dossier.received_at is None and dossier.status is Status.DRAFT:
            dossier.received_at = self._now()
        dossier.revision += 1
        self.journal.submit(dossier)

    def answer(self, dossier: Dossier) -> None:
        """A call arrives on a blank sheet (Ctrl+N with one open): its
        reception time is now, not when the sheet was opened."""
        if not dossier.is_blank:
            raise ValueError("answer() is for a blank sheet")
        dossier.received_at = self._now()
        dossier.revision += 1
        self.journal.submit(dossier)
        self._changed(dossier)

    async def previous_calls(
        self, callback: str, current: Dossier, hours: float = 72.0
    ) -> list[Dossier]:
        """The dossiers of the last ``hours`` with the same callback number
        (E.164), newest first, ``current`` left out: shown as the ARM types
        the number (a caller who calls again, a worsening)."""
        now = self._now()
        since = now - timedelta(hours=hours)
        skip = current.case_id

        found: list[Dossier] = []
        day = since.date()
        while day <= now.date():
            found += [
                d
                for d in await self.journal.of_day_with_callback(day, callback)
                if d.case_id != skip
                and since <= (d.received_at or d.created_at) <= now
                and d.has_content
            ]
            day += timedelta(days=1)
        return sorted(found, key=lambda d: (d.received_at or d.created_at, d.case_id), reverse=True)

    def discard_blank(self, dossier: Dossier) -> Event | None:
        """A blank sheet closed, or left from an earlier session: abandoned
        (kept in the log), so it is not an unfinished call forever."""
        if not dossier.is_blank:
            return None
        return self.abandon(dossier, "Fiche vide : aucun appel saisi.")

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

    async def import_received(self, dossier: Dossier) -> ImportOutcome:
        """Import a received dossier without ever losing what is stored.

        A new case is imported.  A known case whose content is identical is
        left alone.  A known case that differs (edited here, or a different
        message under the same caseId) is kept as it is, and the received
        version is stored beside it under ``<caseId>-importN`` with an event on
        both: the operator compares and keeps one (abandons the other)."""
        existing = await self.journal.load(dossier.case_id)
        if existing is None:
            self._import_new(dossier)
            return ImportOutcome("new", dossier, None, f"Dossier importé : {dossier.case_id}")
        if _content(existing) == _content(dossier):
            return ImportOutcome(
                "same",
                existing,
                existing,
                f"Dossier {dossier.case_id} déjà présent, identique : rien à importer.",
            )
        n = 1
        while await self.journal.load(f"{dossier.case_id}-import{n}") is not None:
            n += 1
        copy = replace(dossier, case_id=f"{dossier.case_id}-import{n}")
        at = self._now()
        self.journal.submit(
            copy,
            Event(
                copy.case_id,
                at,
                EventKind.IMPORTED,
                self.actor,
                {"status": copy.status.value, "conflict_with": dossier.case_id},
            ),
        )
        self.journal.submit(
            existing,
            Event(
                existing.case_id,
                at,
                EventKind.IMPORT_CONFLICT,
                self.actor,
                {"received_as": copy.case_id},
            ),
        )
        self._changed(copy)
        log.warning(
            "import of known case %s differs: kept apart as %s", dossier.case_id, copy.case_id
        )
        return ImportOutcome(
            "conflict",
            copy,
            existing,
            f"Conflit : le dossier {dossier.case_id} existe déjà et diffère de la version "
            f"reçue ({_differences(existing, dossier)}). Rien n'est perdu : le dossier "
            f"existant est inchangé et la version reçue est conservée sous {copy.case_id}. "
            "Comparez-les et gardez l'un des deux (abandonnez l'autre).",
        )

    async def resolve_import_conflict(
        self, case_id: str, received_id: str, keep: Literal["existing", "received"]
    ) -> Dossier:
        """The operator settles an import conflict: the version kept stays (or
        becomes) the dossier ``case_id``; the other is kept abandoned under
        ``received_id`` — both versions remain in the journal, nothing is lost.
        An event on each names the choice.  Returns the dossier ``case_id``."""
        prefix = f"{case_id}-import"
        if not received_id.startswith(prefix) or not received_id[len(prefix) :].isdigit():
            raise ImportConflictError(
                f"{received_id} n'est pas une version reçue du dossier {case_id}."
            )
        existing = await self.journal.load(case_id)
        received = await self.journal.load(received_id)
        if existing is None or received is None:
            raise ImportConflictError(
                f"Conflit d'import {case_id} : une des deux versions est introuvable."
            )
        if received.status is Status.ABANDONED:
            raise ImportConflictError(f"Conflit d'import {case_id} : déjà tranché.")
        at = self._now()
        if keep == "existing":
            kept, other = existing, received
        else:  # the contents swap: the version that was here is kept under received_id
            kept = replace(received, case_id=case_id, revision=existing.revision + 1)
            other = replace(existing, case_id=received_id, revision=received.revision)
        other.status = Status.ABANDONED
        other.revision += 1
        data = {"kept": keep, "received_as": received_id}
        self.journal.submit(
            other, Event(received_id, at, EventKind.IMPORT_RESOLVED, self.actor, data)
        )
        self.journal.submit(kept, Event(case_id, at, EventKind.IMPORT_RESOLVED, self.actor, data))
        self._changed(other)
        self._changed(kept)
        log.info("import conflict on %s settled: %s version kept", case_id, keep)
        return kept

    def _import_new(self, dossier: Dossier) -> Event:
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

    # ---------------------------------------------------------------- the room's log
    def record_orientation(
        self, dossier: Dossier, event: Event
    ) -> asyncio.Task[QueueItem | None] | None:
        """A booking outcome (ORIENTED) or a dental orientation
        (DENTAL_ORIENTED): kept in the local journal and, for a transmitted
        dossier, sent to the room as an ``orient`` operation so that every
        workstation sees it in the dossier's timeline (offline: the outbox
        keeps it).  Returns the sending task (None when nothing is sent)."""
        orientation = _ORIENTATIONS[event.kind]
        self.journal.submit(dossier, event)
        details = {k: v for k, v in event.data.items() if k != "text"}
        text = str(event.data.get("text", "")) or event.kind.label
        return self._send(
            dossier,
            "orient",
            {"orientation": orientation, "text": text, "details": details},
        )

    def orient_booking(
        self, dossier: Dossier, slot: Slot, offer: Offer, url: str
    ) -> tuple[Event, asyncio.Task[QueueItem | None] | None]:
        """The operator booked ``slot`` of ``offer`` for this dossier: the
        ORIENTED event (the appointment, where, with whom, through which
        vendor), recorded as :meth:`record_orientation` does."""
        event = Event(
            dossier.case_id,
            self._now(),
            EventKind.ORIENTED,
            self.actor,
            {
                "slot_id": slot.id,
                "start": slot.start.isoformat(),
                "end": slot.end.isoformat(),
                "practitioner": offer.candidate.name,
                "national_id": offer.candidate.national_id,
                "place": offer.address,
                "vendor": offer.candidate.vendor,
                "modes": [m.value for m in slot.modes],
                "booking_url": url,
                "operator": self.actor.operator,
                "text": f"RDV {slot.start:%d/%m %H:%M} — {offer.candidate.name}",
            },
        )
        return event, self.record_orientation(dossier, event)

    def orient_en_sus(
        self, dossier: Dossier, volunteer: Volunteer, start: datetime
    ) -> tuple[Event, asyncio.Task[QueueItem | None] | None]:
        """The operator agreed an appointment on the phone with a practitioner
        accepting patients beyond the published slots ("en sus", surnuméraire):
        the ORIENTED event flagged ``en_sus`` (no slot, no vendor), recorded
        as :meth:`record_orientation` does.  ``start``: from
        :func:`sas_desk.models.search.en_sus_start`."""
        event = Event(
            dossier.case_id,
            self._now(),
            EventKind.ORIENTED,
            self.actor,
            {
                "en_sus": True,
                "start": start.isoformat(),
                "practitioner": volunteer.name,
                "national_id": volunteer.national_id,
                "place": volunteer.address,
                "operator": self.actor.operator,
                "text": f"RDV en sus {start:%d/%m %H:%M} — {volunteer.name}",
            },
        )
        return event, self.record_orientation(dossier, event)

    def orient_dental(
        self,
        dossier: Dossier,
        chosen: Orientation,
        *,
        suggested: Orientation | None,
        signs: Collection[str],
        pain: str,
        commune: str = "",
        entry: RosterEntry | None = None,
        note: str = "",
    ) -> tuple[Event, asyncio.Task[QueueItem | None] | None]:
        """The dental regulator confirmed an orientation: the DENTAL_ORIENTED
        event (what was chosen and suggested, the signs, the pain, the
        on-call dentist when one was given), recorded as
        :meth:`record_orientation` does."""
        from sas_desk.models.dental import orientation_text

        data: dict[str, Any] = {
            "orientation": chosen.value,
            "code": chosen.value,  # the room's event keeps it (statistics)
            "suggested": suggested.value if suggested else "",
            "signs": sorted(signs),
            "pain": pain,
            "commune": commune,
            "text": orientation_text(chosen, entry, signs, pain, note),
        }
        if entry is not None:
            data.update(
                dentist=entry.dentist,
                rpps=entry.rpps or "",
                phone=entry.phone,
                sector=entry.sector_code,
                start=entry.start.isoformat(),
                end=entry.end.isoformat(),
            )
        event = Event(dossier.case_id, self._now(), EventKind.DENTAL_ORIENTED, self.actor, data)
        return event, self.record_orientation(dossier, event)

    def update_transmitted(
        self, dossier: Dossier, note: str = "", priority: str = ""
    ) -> tuple[Event, asyncio.Task[QueueItem | None] | None]:
        """The ARM adds what the caller said after transmission: a note and/or
        a new priority, on the local copy (journal) and in the room
        (``update``: the holder sees it highlighted; a P0/P1 upgrade moves the
        item up its queue).  Raises ``ValidationError`` when there is nothing
        to add."""
        note = note.strip()
        if priority == dossier.priority:
            priority = ""
        if not (note or priority):
            raise ValidationError("Complément vide : note ou nouvelle priorité attendue.", "note")
        if priority and priority not in dm.PRIORITIES:
            raise ValidationError(f"Priorité « {priority} » invalide.", "priority")
        data: dict[str, Any] = {"highlight": True}
        if priority:
            data.update(priority_from=dossier.priority, priority_to=priority)
            dossier.priority = priority
            dossier.revision += 1
        if note:
            data["note_id"] = dm.add_note(dossier, note, self._now(), self.actor).data["note_id"]
            data["text"] = note
        event = Event(dossier.case_id, self._now(), EventKind.UPDATED, self.actor, data)
        self.journal.submit(dossier, event)
        self._changed(dossier)
        sent: dict[str, Any] = {}
        if note:
            sent["note"] = note
        if priority:
            sent["priority"] = priority
        return event, self._send(dossier, "update", sent)

    def _send(
        self, dossier: Dossier, kind: str, data: dict[str, Any]
    ) -> asyncio.Task[QueueItem | None] | None:
        client = self.queues
        if client is None or dossier.status not in (Status.TRANSMITTED, Status.CLOSED):
            return None  # the room does not know this dossier
        op = client.operation(kind, dossier.case_id, **data)

        async def send() -> QueueItem | None:
            try:
                return await client.submit(op)
            except QueueError as exc:
                log.warning("%s of %s refused by the room: %s", kind, dossier.case_id, exc.code)
                for listener in list(self._error_listeners):
                    listener(dossier, exc.message_fr)
                return None

        loop = self._loop or asyncio.get_running_loop()
        task = loop.create_task(send(), name=f"desk-{kind}")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)
        return task
