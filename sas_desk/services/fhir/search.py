"""The slot search: candidates from the directory, asked of their vendors
concurrently, results yielded as each batch answers.

    async for update in SlotSearch(vendors, directory).run(query):
        ...  # update.offers: places whose slots changed; update.vendors: who answered

* Candidates in the radius come from the directory, SAS participants first,
  then by distance; they are cut into batches per vendor (25 practitioners
  per Slot request, with the CPTS includes when one of them is a CPTS
  member, 10 SOS associations per Schedule request), in that order, so the
  nearest participants are asked first.
* Requests run concurrently across vendors and batches, at most
  ``per_vendor`` in flight for one vendor.  Each vendor has one deadline for
  the whole search (its endpoint's timeout, 7 s by default, from the start):
  a hanging vendor never holds the others, and the search ends at that
  deadline at the latest, with the vendor marked "timeout".
* A vendor with a request older than ``slow_after`` is reported "slow" while
  it still answers nothing.  Errors carry their French message (with the
  OperationOutcome text).
* The final update says ``done`` and brings the "en sus" volunteers when
  fewer than :data:`FEW_PRACTITIONERS` practitioners have slots.
* Closing the generator (``aclose()``, or cancelling the task iterating it)
  cancels every request in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Protocol

from sas_desk.models.geo import distance_km
from sas_desk.models.search import (
    Candidate,
    CandidateKind,
    Facets,
    Offer,
    SearchQuery,
    SearchUpdate,
    VendorState,
    VendorStatus,
    Volunteer,
    merge_slots,
)
from sas_desk.models.slots import Slot
from sas_desk.services.fhir.bundle import BundleResult
from sas_desk.services.fhir.vendor import (
    MAX_IDS_PER_REQUEST,
    MAX_SIRETS_PER_REQUEST,
    VendorClient,
    VendorError,
)

log = logging.getLogger("sas_desk.fhir.search")

FEW_PRACTITIONERS = 5  # fewer with slots than this: offer the "en sus" volunteers


class CandidateSource(Protocol):
    """What the search needs from the directory."""

    def candidates(
        self, lat: float, lon: float, radius_km: float, specialty: str
    ) -> Sequence[Candidate]: ...

    def volunteers(
        self, lat: float, lon: float, radius_km: float, specialty: str
    ) -> Sequence[Volunteer]: ...


@dataclass(frozen=True)
class Batch:
    vendor: str
    kind: CandidateKind
    cpts: bool
    candidates: tuple[Candidate, ...]

    @property
    def ids(self) -> list[str]:
        return [c.national_id for c in self.candidates]


def batches(candidates: Sequence[Candidate]) -> list[Batch]:
    """Cut the candidates (already in the order to ask them) into requests:
    per vendor and kind of request, 25 practitioners or 10 SOS associations
    each; a batch is emitted in the order its first candidate came.  A batch
    with a CPTS member is asked with the CPTS includes (they only add the
    CPTS-visible slots and their services): one request, not two."""
    open_: dict[tuple[str, CandidateKind], list[Candidate]] = {}
    out: list[tuple[int, Batch]] = []
    first: dict[tuple[str, CandidateKind], int] = {}

    def close(key: tuple[str, CandidateKind], group: list[Candidate]) -> None:
        cpts = key[1] is CandidateKind.PRACTITIONER and any(c.cpts for c in group)
        out.append((first[key], Batch(key[0], key[1], cpts, tuple(group))))

    for n, c in enumerate(candidates):
        key = (c.vendor, c.kind)
        size = MAX_SIRETS_PER_REQUEST if c.kind is CandidateKind.SOS else MAX_IDS_PER_REQUEST
        group = open_.setdefault(key, [])
        if not group:
            first[key] = n
        group.append(c)
        if len(group) == size:
            close(key, group)
            open_[key] = []
    for key, group in open_.items():
        if group:
            close(key, group)
    out.sort(key=lambda pair: pair[0])
    return [b for _, b in out]


@dataclass
class _Vendor:
    name: str
    deadline: float  # monotonic
    requests: int = 0
    answered: int = 0
    slots: int = 0
    errors: list[VendorError] = field(default_factory=list)
    in_flight: dict[int, float] = field(default_factory=dict)  # batch number -> sent at
    slow: bool = False
    changed_at: float = 0.0

    def status(self, started: float) -> VendorStatus:
        timeouts = [e for e in self.errors if e.kind == "timeout"]
        others = [e for e in self.errors if e.kind != "timeout"]
        if others:
            state, message = VendorState.ERROR, others[0].message_fr
        elif timeouts:
            state, message = VendorState.TIMEOUT, timeouts[0].message_fr
        elif self.answered >= self.requests:
            state, message = VendorState.OK, ""
        elif self.slow:
            state, message = VendorState.SLOW, ""
        else:
            state, message = VendorState.WAITING, ""
        return VendorStatus(
            self.name,
            state,
            self.requests,
            self.answered,
            self.slots,
            message,
            round(self.changed_at - started, 3),
        )


class SlotSearch:
    def __init__(
        self,
        vendors: Mapping[str, VendorClient],
        directory: CandidateSource,
        *,
        now: Callable[[], datetime],
        per_vendor: int = 4,
        slow_after: float = 2.0,
    ) -> None:
        self.vendors = vendors
        self.directory = directory
        self._now = now
        self.per_vendor = max(1, per_vendor)
        self.slow_after = slow_after

    async def run(self, query: SearchQuery) -> AsyncIterator[SearchUpdate]:
        started = time.monotonic()
        now = self._now()
        start, end = query.window(now)
        candidates = await asyncio.to_thread(
            self.directory.candidates, query.lat, query.lon, query.radius_km, query.specialty
        )
        by_id = {(c.vendor, c.national_id): c for c in candidates}
        plan = batches(candidates)
        states: dict[str, _Vendor] = {}
        notes: list[str] = []
        for b in plan:
            if b.vendor not in states:
                client = self.vendors.get(b.vendor)
                timeout = client.endpoint.timeout if client is not None else 0.0
                states[b.vendor] = _Vendor(b.vendor, started + timeout, changed_at=started)
            states[b.vendor].requests += 1
        offers: dict[str, Offer] = {}
        events: asyncio.Queue[tuple[int, Batch, BundleResult | VendorError]] = asyncio.Queue()
        gates = {name: asyncio.Semaphore(self.per_vendor) for name in states}
        tasks: list[asyncio.Task[None]] = []

        def snapshot() -> dict[str, VendorStatus]:
            return {name: v.status(started) for name, v in states.items()}

        async def ask(n: int, batch: Batch) -> None:
            vendor = states[batch.vendor]
            client = self.vendors.get(batch.vendor)
            outcome: BundleResult | VendorError
            if client is None:
                outcome = VendorError(
                    f"{batch.vendor} : éditeur absent de la configuration.", "config"
                )
                await events.put((n, batch, outcome))
                return
            try:
                async with gates[batch.vendor]:
                    left = vendor.deadline - time.monotonic()
                    if left <= 0:
                        raise VendorError(
                            f"{batch.vendor} : pas de réponse en {client.endpoint.timeout:g} s.",
                            "timeout",
                        )
                    vendor.in_flight[n] = time.monotonic()
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for may
                    # swallow a cancellation that races with the answer
                    async with asyncio.timeout(left):
                        if batch.kind is CandidateKind.SOS:
                            outcome = await client.sos(batch.ids, start, end)
                        else:
                            outcome = await client.slots(batch.ids, start, end, cpts=batch.cpts)
            except TimeoutError:
                outcome = VendorError(
                    f"{batch.vendor} : pas de réponse en {client.endpoint.timeout:g} s.",
                    "timeout",
                )
            except VendorError as exc:
                outcome = exc
            except Exception as exc:  # a bug must not end the whole search silently
                log.exception("vendor %s: batch %d failed", batch.vendor, n)
                outcome = VendorError(
                    f"{batch.vendor} : erreur inattendue ({type(exc).__name__}).", "bug"
                )
            finally:
                vendor.in_flight.pop(n, None)
            await events.put((n, batch, outcome))

        try:
            for n, batch in enumerate(plan):
                tasks.append(asyncio.create_task(ask(n, batch), name=f"slots-{batch.vendor}-{n}"))
            log.info(
                "slot search: %d candidates, %d requests to %d vendors, radius %.0f km",
                len(candidates),
                len(plan),
                len(states),
                query.radius_km,
            )
            yield SearchUpdate((), snapshot(), len(candidates), elapsed_s=0.0)
            remaining = len(plan)
            final_offers: tuple[Offer, ...] = ()
            while remaining:
                wake = self._next_slow_check(states)
                try:
                    async with asyncio.timeout(wake):
                        n, batch, outcome = await events.get()
                except TimeoutError:
                    if self._mark_slow(states):
                        yield SearchUpdate(
                            (),
                            snapshot(),
                            len(candidates),
                            elapsed_s=time.monotonic() - started,
                        )
                    continue
                remaining -= 1
                vendor = states[batch.vendor]
                vendor.answered += 1
                vendor.changed_at = time.monotonic()
                changed: list[Offer] = []
                if isinstance(outcome, VendorError):
                    vendor.errors.append(outcome)
                else:
                    changed, kept = self._merge(
                        outcome, batch, by_id, query, now, start, end, offers
                    )
                    vendor.slots += kept
                if remaining:
                    self._mark_slow(states)
                    yield SearchUpdate(
                        tuple(changed),
                        snapshot(),
                        len(candidates),
                        elapsed_s=time.monotonic() - started,
                    )
                else:
                    final_offers = tuple(changed)
            with_slots = {o.candidate.national_id for o in offers.values() if o.slots}
            volunteers: tuple[Volunteer, ...] = ()
            if len(with_slots) < FEW_PRACTITIONERS:
                volunteers = tuple(
                    await asyncio.to_thread(
                        self.directory.volunteers,
                        query.lat,
                        query.lon,
                        query.radius_km,
                        query.specialty,
                    )
                )
                if volunteers:
                    notes.append(
                        f"Peu de créneaux ({len(with_slots)} praticien(s)) : "
                        f"{len(volunteers)} volontaire(s) acceptent des patients en sus."
                    )
            if not candidates:
                notes.append("Aucun praticien de cette spécialité dans le rayon de recherche.")
            elapsed = time.monotonic() - started
            log.info(
                "slot search done in %.2f s: %d places with slots, %s",
                elapsed,
                len(with_slots),
                {name: s.state.value for name, s in snapshot().items()},
            )
            yield SearchUpdate(
                final_offers,
                snapshot(),
                len(candidates),
                done=True,
                volunteers=volunteers,
                elapsed_s=elapsed,
                notes=tuple(notes),
            )
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ helpers
    def _next_slow_check(self, states: Mapping[str, _Vendor]) -> float | None:
        """Seconds until a request in flight turns its vendor slow (None: never)."""
        now = time.monotonic()
        due = [
            sent + self.slow_after - now
            for v in states.values()
            if not v.slow
            for sent in v.in_flight.values()
        ]
        return max(0.0, min(due)) + 0.001 if due else (self.slow_after if states else None)

    def _mark_slow(self, states: Mapping[str, _Vendor]) -> bool:
        now = time.monotonic()
        changed = False
        for v in states.values():
            late = any(now - sent >= self.slow_after for sent in v.in_flight.values())
            if late and not v.slow:
                v.slow, v.changed_at, changed = True, now, True
        return changed

    @staticmethod
    def _place_of(
        slot: Slot,
        batch: Batch,
        asked: set[str],
        by_id: Mapping[tuple[str, str], Candidate],
        query: SearchQuery,
        places: dict[str, tuple[Candidate, float, float | None, float | None, str]],
        dropped: dict[str, int],
    ) -> str:
        """The offer key of a schedule's slots, or "" when they are dropped
        (someone not asked for, a place beyond the radius)."""
        if batch.kind is CandidateKind.SOS:
            org = slot.organization
            who = org.national_id if org is not None else None
        else:
            who = slot.practitioner.national_id if slot.practitioner is not None else None
        if who is None or who not in asked:
            dropped["not_asked"] += 1
            return ""
        candidate = by_id[(batch.vendor, who)]
        place = slot.location
        lat = lon = None
        distance = candidate.distance_km
        if place is not None and place.coordinates is not None:
            lat, lon = place.coordinates
            distance = distance_km(query.lat, query.lon, lat, lon)
            if distance > query.radius_km:
                dropped["radius"] += 1
                return ""
        place_key = (
            slot.role.id if slot.role is not None else (place.id if place else slot.schedule.id)
        )
        key = f"{batch.vendor}|{who}|{place_key}"
        if key not in places:
            address = place.address.text if place is not None else candidate.address
            places[key] = (candidate, distance, lat, lon, address or candidate.address)
        return key

    def _merge(
        self,
        result: BundleResult,
        batch: Batch,
        by_id: Mapping[tuple[str, str], Candidate],
        query: SearchQuery,
        now: datetime,
        start: datetime,
        end: datetime,
        offers: dict[str, Offer],
    ) -> tuple[list[Offer], int]:
        """Fold a batch's slots into the offers; returns those that changed and
        the number of slots kept.

        Dropped, with a log line: slots of someone not asked for, outside the
        window, at a place beyond the radius (a second practice far away), or
        not kept by the query's facets (counted per schedule for the first two)."""
        asked = set(batch.ids)
        grouped: dict[str, list[Slot]] = {}
        places: dict[str, tuple[Candidate, float, float | None, float | None, str]] = {}
        dropped = {"not_asked": 0, "window": 0, "radius": 0, "facets": 0}
        facets = query.facets if query.facets != Facets() else None
        # everything about a slot's place is worked out once per schedule: the
        # slots of one agenda share it ("" = the schedule's slots are dropped)
        keys: dict[int, str] = {}
        # the window in each fixed offset the slots use (the parser shares one
        # tzinfo per offset): same-tzinfo comparisons skip the conversion
        windows: dict[int, tuple[datetime, datetime]] = {}
        # the slots of one agenda come one after the other, mostly in one
        # offset: what follows from the schedule and the offset is looked up
        # when they change, not for every slot
        last_schedule: object = None
        last_zone: object = None
        key = ""
        bucket: list[Slot] = []
        low = high = start
        for slot in result.slots:
            schedule = slot.schedule
            if schedule is not last_schedule:
                last_schedule = schedule
                found = keys.get(id(schedule))
                if found is None:
                    found = keys[id(schedule)] = self._place_of(
                        slot, batch, asked, by_id, query, places, dropped
                    )
                key = found
                if key:
                    bucket = grouped.setdefault(key, [])
            if not key:
                continue
            at = slot.start
            zone = at.tzinfo
            if zone is not last_zone:
                last_zone = zone
                window = windows.get(id(zone))
                if window is None:
                    window = windows[id(zone)] = (
                        (start.astimezone(zone), end.astimezone(zone))
                        if isinstance(zone, timezone)
                        else (start, end)
                    )
                low, high = window
            if not low <= at <= high:
                dropped["window"] += 1
                continue
            if facets is not None and not facets.keeps(slot, now):
                dropped["facets"] += 1
                continue
            bucket.append(slot)
        if any(dropped.values()):
            log.info("vendor %s: slots dropped %s", batch.vendor, dropped)
        changed: list[Offer] = []
        for key, slots in grouped.items():
            if not slots:  # none in the window or kept by the facets
                continue
            candidate, distance, lat, lon, address = places[key]
            old = offers.get(key)
            if old is None:
                offer = Offer(
                    key,
                    candidate,
                    merge_slots((), slots),
                    distance,
                    lat if lat is not None else candidate.lat,
                    lon if lon is not None else candidate.lon,
                    address,
                )
            else:
                offer = replace(old, slots=merge_slots(old.slots, slots))
            offers[key] = offer
            changed.append(offer)
        return changed, sum(len(slots) for slots in grouped.values())
