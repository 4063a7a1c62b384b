"""Searchset Bundle → slots, resolved with their schedule, practitioner, role,
place and organisation.

``parse_bundle(body)`` takes the raw response body (bytes or str) or an
already-decoded dict and returns a :class:`BundleResult`.

What it tolerates (the variants the guide and real vendors produce):

- times with milliseconds and an offset (the guide's form), without
  milliseconds, with ``Z``, or naive (then Europe/Paris wall time);
- text-only specialties, specialties from other code systems;
- absent optional elements (comment, appointmentType, names, phones,
  coordinates…); slot-type codes whose system differs (the guide points the PS
  binding at another value-set URL);
- references written relative (``Schedule/x``), absolute (the entry's
  ``fullUrl``) or versioned (``…/_history/2``).

What it isolates: a resource that breaks the profile in a way that makes it
unusable — no id, a slot that is not free, an unreadable or inverted time, a
slot whose schedule is missing or itself unusable, a practitioner without a
national id (RPPS/ADELI), a structure without a national id, a schedule without
a usable actor — is *skipped*: it is left out of the result, listed in
``BundleResult.skipped`` with its reason, and logged (type, id and reason only:
never names).  Malformed optional or display-only elements (a phone that is not
a phone, coordinates out of range, a booking link that is not http(s)) are
dropped from an otherwise kept resource and logged at debug level.

What it refuses: a body that is not JSON, not a FHIR resource, not a Bundle, or
an OperationOutcome (the vendor's error) raises :class:`BundleError` with a
French message (and the outcome's text).

Speed matters (25-practitioner batches arrive concurrently and a big vendor may
answer thousands of slots): a body is first decoded by msgspec straight into
its wire shape (:mod:`sas_desk.services.fhir.wire`: only the elements read,
types checked in C); a body that does not fit that shape anywhere takes the
tolerant path (``json``, then each Slot read leniently), which gives the same
result for what both can read. Then ``datetime.fromisoformat`` and caches:
per parse for references and specialties; across parses (bounded) for
instants, kinds of slot, and the practitioners, roles, places and structures
a vendor sends answer after answer (under their decoded form and what their
references resolved to in that Bundle). A slot's instants and kind are
shared objects, one per distinct value, rather than deferred: the search
needs every start (window, order) and the cards every type and mode.
"""

from __future__ import annotations

import enum
import gc
import json
import logging
import re
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo
from typing import Any, TypeVar

from sas_desk.models.errors import KnownError
from sas_desk.models.slots import (
    CATEGORY_CPTS,
    EXT_SLOT_SERVICE_TYPE,
    OID_IDNAT_PS,
    OID_IDNAT_STRUCT,
    SYSTEM_ACT_CODE,
    Address,
    AppointmentType,
    ConsultationMode,
    HealthcareService,
    Location,
    OpeningHours,
    Organization,
    Practitioner,
    PractitionerIdKind,
    PractitionerRole,
    Schedule,
    Slot,
    SlotType,
    Specialty,
    StructureIdKind,
)
from sas_desk.models.validation import ValidationError, normalize_phone
from sas_desk.services.fhir import wire

log = logging.getLogger(__name__)

#: Largest Bundle file ``sas-desk fhir parse`` reads (the vendors' answers are
#: capped at the same size, see ``vendor.DEFAULT_MAX_BYTES``).
MAX_BUNDLE_BYTES = 32 * 1024 * 1024

#: How many skipped resources are logged one by one per Bundle (then one summary line).
LOG_SKIPPED_LIMIT = 20


def _paris() -> tzinfo:
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo("Europe/Paris")
    except (ImportError, KeyError, OSError):  # no tz database (e.g. Windows without tzdata)
        from dateutil import tz  # type: ignore[import-untyped]

        paris: tzinfo | None = tz.gettz("Europe/Paris")
        assert paris is not None
        return paris


#: Naive times in a vendor's answer are French wall-clock time.
PARIS = _paris()


# --------------------------------------------------------------------------- results


class SkipReason(enum.StrEnum):
    MALFORMED_ENTRY = "malformed-entry"
    MISSING_ID = "missing-id"
    DUPLICATE = "duplicate"
    NOT_FREE = "not-free"
    INVALID_TIME = "invalid-time"
    END_BEFORE_START = "end-before-start"
    MISSING_SCHEDULE = "missing-schedule"
    UNRESOLVED_REFERENCE = "unresolved-reference"
    INVALID_REFERENCE = "invalid-reference"
    INVALID_IDENTIFIER = "invalid-identifier"
    NO_ACTOR = "no-actor"

    @property
    def label(self) -> str:
        return _SKIP_LABELS[self]


_SKIP_LABELS = {
    SkipReason.MALFORMED_ENTRY: "entrée du Bundle mal formée",
    SkipReason.MISSING_ID: "ressource sans identifiant",
    SkipReason.DUPLICATE: "ressource en double",
    SkipReason.NOT_FREE: "créneau non libre",
    SkipReason.INVALID_TIME: "horaire absent ou illisible",
    SkipReason.END_BEFORE_START: "fin avant le début",
    SkipReason.MISSING_SCHEDULE: "créneau sans agenda",
    SkipReason.UNRESOLVED_REFERENCE: "référence absente du Bundle",
    SkipReason.INVALID_REFERENCE: "référence vers une ressource invalide",
    SkipReason.INVALID_IDENTIFIER: "identifiant national absent ou invalide",
    SkipReason.NO_ACTOR: "agenda sans praticien ni lieu",
}


@dataclass(frozen=True, slots=True)
class Skipped:
    """A resource left out of the result, and why (``detail``: English, for logs)."""

    resource_type: str
    resource_id: str | None
    reason: SkipReason
    detail: str = ""


@dataclass(frozen=True, slots=True, eq=False)
class BundleResult:
    bundle_type: str | None
    total: int | None  # Bundle.total as sent (the guide: number of Slots)
    self_link: str | None
    next_link: str | None  # the guide defines no paging; kept to notice one
    slots: tuple[Slot, ...]
    schedules: tuple[Schedule, ...]
    practitioners: tuple[Practitioner, ...]
    roles: tuple[PractitionerRole, ...]
    locations: tuple[Location, ...]  # standalone Locations (SOS); contained ones are on roles
    organizations: tuple[Organization, ...]
    healthcare_services: tuple[HealthcareService, ...]
    other: tuple[Mapping[str, Any], ...]  # resources of other types, as sent
    skipped: tuple[Skipped, ...]

    def skipped_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s in self.skipped:
            counts[s.reason.value] = counts.get(s.reason.value, 0) + 1
        return counts


class BundleError(KnownError):
    """The body cannot be read as a searchset Bundle: a vendor error."""

    def __init__(self, message_fr: str, outcome_text: str | None = None) -> None:
        super().__init__(message_fr)
        self.message_fr = message_fr
        self.outcome_text = outcome_text


class OperationOutcomeError(BundleError):
    """The vendor answered an OperationOutcome instead of a Bundle."""


# --------------------------------------------------------------------------- entry point


def parse_bundle(body: bytes | bytearray | memoryview | str | Mapping[str, Any]) -> BundleResult:
    """Parse a searchset Bundle; raises :class:`BundleError` for a broken body.

    The cyclic garbage collector is paused meanwhile: decoding and converting
    a big Bundle allocates hundreds of thousands of acyclic objects, and the
    collections they trigger cost about as much as the parse itself.  The switch
    is process-wide: a concurrent parse in another thread may turn it back on a
    little early, which only costs speed; it is never left off."""
    with _gc_paused():
        parser, order = _prepare(body)
        result = _finish(parser, order)
        del parser, order  # before the collector is back: it only ever sees the result
    return result


def _finish(parser: _Parser, order: list[Any]) -> BundleResult:
    for _ in parser.convert_all(order):
        pass
    return parser.result()


def parse_steps(
    body: bytes | bytearray | memoryview | str | Mapping[str, Any],
) -> Generator[None, None, BundleResult]:
    """:func:`parse_bundle` in steps of a few milliseconds (the decoding, then
    :data:`SLICE` entries at a time; a Bundle of no more entries in one step),
    for a caller on an event loop that lets its other work run between two
    ``next()``; the generator returns the result (raises :class:`BundleError`
    like :func:`parse_bundle`)."""
    with _gc_paused():
        parser, order = _prepare(body)
        if len(order) <= SLICE:  # one step: its decoding took well under a millisecond
            result = _finish(parser, order)
            del parser, order  # as in parse_bundle
            return result
    yield
    steps = parser.convert_all(order)
    while True:
        with _gc_paused():
            if next(steps, _SENTINEL) is _SENTINEL:
                return parser.result()
        yield


#: Entries converted per step of :func:`parse_steps` (≈ 5–8 ms: a step short
#: enough for a window, few enough for the collector between steps).
SLICE = 1000


@contextmanager
def _gc_paused() -> Iterator[None]:
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def _prepare(
    body: bytes | bytearray | memoryview | str | Mapping[str, Any],
) -> tuple[_Parser, list[Any]]:
    """Decode and index the entries; the parser and the order to convert them in."""
    if isinstance(body, Mapping):
        data: Any = body
    else:
        typed = wire.decode(body)
        if typed is not None:  # the usual answer: decoded straight into its wire shape
            parser = _Parser({"type": typed.type, "total": typed.total, "link": typed.link})
            return parser, parser.index_wire(typed.entry or [])
        data = _decode(body)
    if not isinstance(data, Mapping):
        raise BundleError("La réponse n'est pas une ressource FHIR (objet JSON attendu).")
    rtype = data.get("resourceType")
    if rtype == "OperationOutcome":
        text = outcome_text(data)
        log.info("vendor answered an OperationOutcome instead of a Bundle")
        raise OperationOutcomeError(f"Le serveur a répondu par une erreur : {text}", text)
    if rtype != "Bundle":
        if isinstance(rtype, str) and rtype:
            raise BundleError(f"La réponse est une ressource {rtype}, pas un Bundle FHIR.")
        raise BundleError("La réponse n'est pas une ressource FHIR (resourceType absent).")
    entries = data.get("entry")
    if entries is None:
        entries = []
    elif not isinstance(entries, list):
        raise BundleError("Bundle mal formé : « entry » n'est pas une liste.")
    parser = _Parser(data)
    return parser, parser.index_entries(entries)


def _decode(body: bytes | bytearray | memoryview | str) -> Any:
    try:
        if isinstance(body, str):
            return json.loads(body.removeprefix("\ufeff"))
        return json.loads(bytes(body) if isinstance(body, memoryview) else body)
    except UnicodeDecodeError as exc:
        raise BundleError("La réponse n'est pas du texte UTF-8.") from exc
    except json.JSONDecodeError as exc:
        if not (body.strip() if isinstance(body, str) else bytes(body).strip()):
            raise BundleError("La réponse est vide.") from exc
        raise BundleError(
            f"La réponse n'est pas un JSON valide (ligne {exc.lineno}, colonne {exc.colno})."
        ) from exc
    except RecursionError as exc:
        raise BundleError("La réponse est un JSON trop profondément imbriqué.") from exc
    except ValueError as exc:  # an integer of more than 4,300 digits (int() refuses it)
        raise BundleError("La réponse contient un nombre démesuré.") from exc


def outcome_text(outcome: Mapping[str, Any]) -> str:
    """Readable text of an OperationOutcome: its issues' texts, joined."""
    texts: list[str] = []
    issues = outcome.get("issue")
    if isinstance(issues, list):
        for issue in issues:
            if not isinstance(issue, dict):
                continue
            details = issue.get("details")
            text = details.get("text") if isinstance(details, dict) else None
            diag = issue.get("diagnostics")
            for t in (text, diag):
                if isinstance(t, str) and t.strip() and t.strip() not in texts:
                    texts.append(t.strip())
            if text is None and diag is None:
                code = issue.get("code")
                if isinstance(code, str):
                    texts.append(code)
    return " ; ".join(texts) or "erreur sans description"


# --------------------------------------------------------------------------- values


#: Instants and slot kinds are remembered across parses: the vendors send the
#: same few hundred instants (a grid over the next days) and the same few
#: hundred kinds of slot, answer after answer, search after search (a search
#: near Lyon on the simulator: 4,517 slots, 835 kinds, each parse met ~60 % of
#: them for the first time when every parse kept its own). Emptied when full,
#: so a long session or an odd vendor cannot make them grow without bound
#: (a kind's key is its JSON text, ≈ 0.5 KB: 10,000 kinds ≈ 7 MB at most).
_TIMES_LIMIT = 50_000
_KINDS_LIMIT = 10_000
_TIMES: dict[str, datetime | None] = {}
_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_instant(value: str) -> datetime | None:
    """A FHIR instant/dateTime with a time → aware datetime (naive: Europe/Paris).
    ``None`` when it is not a date and time."""
    if len(value) < 16 or value[10] not in "Tt":
        return None  # a bare date has no time: not a slot bound
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        fixed = value.strip().replace("t", "T", 1)
        if fixed[-1:] in ("z", "Z"):
            fixed = fixed[:-1] + "+00:00"
        fixed = _FRACTION.sub(r"\1", fixed)
        try:
            dt = datetime.fromisoformat(fixed)
        except ValueError:
            return None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=PARIS)
    offset = dt.utcoffset()
    shared = _ZONES.get(offset)
    if shared is None:
        shared = _ZONES.setdefault(offset, dt.tzinfo)
    # one tzinfo object per offset: instants that share it compare and sort
    # without converting (Python's fast path), as the search does thousands of times
    return dt if dt.tzinfo is shared else dt.replace(tzinfo=shared)


_ZONES: dict[timedelta | None, tzinfo] = {}


_SLOT_TYPES = {t.value: t for t in SlotType}
_MODES = {m.value: m for m in ConsultationMode}
_APPOINTMENT_TYPES = {a.value: a for a in AppointmentType}
_SENTINEL: Any = object()
_PHONE_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
_RPPS = re.compile(r"8[0-9]{11}")
_ADELI = re.compile(r"0[0-9A-Za-z]{9}")
_STRUCTURE_IDS: tuple[tuple[re.Pattern[str], StructureIdKind], ...] = (
    (re.compile(r"1[0-9A-Za-z]{9}"), StructureIdKind.FINESS),
    (re.compile(r"3[0-9]{14}"), StructureIdKind.SIRET),
    (re.compile(r"4[0-9]{14}"), StructureIdKind.RPPS_RANG),
    (re.compile(r"0[0-9A-Za-z]{9,14}"), StructureIdKind.ADELI_RANG),
)


def structure_id_kind(value: str) -> StructureIdKind | None:
    for pattern, kind in _STRUCTURE_IDS:
        if pattern.fullmatch(value):
            return kind
    return None


def practitioner_id_kind(value: str) -> PractitionerIdKind | None:
    """``8``+11 digits: RPPS; ``0``+9 characters: ADELI (IdNat_PS values)."""
    if _RPPS.fullmatch(value):
        return PractitionerIdKind.RPPS
    if _ADELI.fullmatch(value):
        return PractitionerIdKind.ADELI
    return None


def structure_identifier(identifiers: Any) -> tuple[str, StructureIdKind] | None:
    """The first usable IdNat_Struct value of an ``identifier`` list (an
    identifier without system is taken as one), with its kind."""
    for ident in identifiers if isinstance(identifiers, list) else ():
        if not isinstance(ident, Mapping) or ident.get("system", OID_IDNAT_STRUCT) != (
            OID_IDNAT_STRUCT
        ):
            continue
        value = _str(ident.get("value"))
        kind = structure_id_kind(value) if value else None
        if value and kind is not None:
            return value, kind
    return None


def phone_number(value: Any) -> str | None:
    """A phone number as E.164 (national forms converted), or ``None``."""
    if not isinstance(value, str):
        return None
    if _PHONE_E164.fullmatch(value):
        return value
    try:
        return normalize_phone(value)
    except ValidationError:
        log.debug("dropping a phone number that is not one")
        return None


def phone_of(telecom: Any) -> str | None:
    """The first phone of a ``telecom`` list, as E.164."""
    for point in telecom if isinstance(telecom, list) else ():
        if isinstance(point, Mapping) and point.get("system", "phone") == "phone":
            found = phone_number(point.get("value"))
            if found is not None:
                return found
    return None


def _str(value: Any) -> str | None:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return None


def _coordinate(value: float | None, bound: float) -> float | None:
    return value if value is not None and -bound <= value <= bound else None


def _phone(telecom: tuple[wire.ContactPoint, ...] | None) -> str | None:
    """The first phone of a typed ``telecom``, as E.164 (see :func:`phone_of`)."""
    for point in telecom or ():
        if point.system in (None, "phone"):
            found = phone_number(point.value)
            if found is not None:
                return found
    return None


def _clock_time(value: Any) -> time | None:
    if not isinstance(value, str):
        return None
    try:
        return time.fromisoformat(value)
    except ValueError:
        return None


# --------------------------------------------------------------------------- parser

_T = TypeVar("_T")

_KNOWN = frozenset(
    {
        "Slot",
        "Schedule",
        "Practitioner",
        "PractitionerRole",
        "Location",
        "Organization",
        "HealthcareService",
    }
)


#: types, modes, specialties, reasons, appointment type, and the references
#: to the CPTS services the slot is visible to (resolved in each Bundle)
_SlotKind = tuple[
    tuple[SlotType, ...],
    tuple[ConsultationMode, ...],
    tuple[Specialty, ...],
    tuple[str, ...],
    AppointmentType | None,
    tuple[str, ...],
]


_KINDS: dict[bytes, _SlotKind] = {}  # see _TIMES; the key: wire.kind_key

#: Practitioners, roles, places and structures are remembered across parses
#: too, under the typed resource as decoded (frozen: hashed and compared in
#: C) and, for what they lead to, the objects the reference resolved to in
#: that Bundle: a vendor sends the same few hundred of them answer after
#: answer, and converting them cost as much as the thousands of slots.
#: Emptied when full, like the kinds (a role with its contained place is
#: ≈ 1 KB of objects: 10,000 of each ≈ 10–20 MB at most, in the process
#: that parses, the search worker).
_RESOURCES_LIMIT = 10_000
_PRACTITIONERS: dict[wire.Practitioner, Practitioner] = {}
_ROLES: dict[tuple[wire.PractitionerRole, int, int], PractitionerRole] = {}
_PLACES: dict[tuple[wire.Location | wire.Place, int], Location] = {}
_ORGANIZATIONS: dict[wire.Organization, Organization] = {}
_K = TypeVar("_K")
_V = TypeVar("_V")


def _remember(cache: dict[_K, _V], key: _K, value: _V) -> _V:
    if len(cache) >= _RESOURCES_LIMIT:
        cache.clear()
    cache[key] = value
    return value


_HTTP = ("https://", "http://")
_WireSlot = wire.Slot


class _Invalid(Exception):
    """Internal: the resource being converted is unusable."""

    def __init__(self, reason: SkipReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class _Parser:
    def __init__(self, bundle: Mapping[str, Any]) -> None:
        self.bundle = bundle
        self.index: dict[str, Any] = {}  # "Type/id" → resource (a dict)
        self.slot_ids: set[str] = set()  # of the typed decoder's slots (not indexed)
        self.full_urls: dict[str, str] = {}  # fullUrl → "Type/id"
        self.ref_keys: dict[str, str | None] = {}  # reference text → "Type/id"
        self.done: dict[str, Any] = {}  # "Type/id" → converted object, or None if skipped
        self.reasons: dict[str, SkipReason] = {}  # "Type/id" → why it was skipped
        self.specialties: dict[tuple[Any, Any, Any], Specialty] = {}
        # the slots of one agenda repeat their schedule and CPTS services
        self.schedule_refs: dict[str, tuple[Schedule | None, SkipReason | None]] = {}
        self.service_refs: dict[tuple[str, ...], tuple[HealthcareService, ...]] = {}
        self.skipped: list[Skipped] = []
        self.other: list[Mapping[str, Any]] = []
        self.buckets: dict[str, list[Any]] = {t: [] for t in _KNOWN}

    # ---- bookkeeping

    def skip(self, rtype: str, rid: str | None, reason: SkipReason, detail: str) -> None:
        self.skipped.append(Skipped(rtype, rid, reason, detail))
        if len(self.skipped) <= LOG_SKIPPED_LIMIT:
            log.warning("skipped %s/%s: %s (%s)", rtype, rid, reason.value, detail)

    def key_of(self, ref: str) -> str | None:
        key = self.ref_keys.get(ref, _SENTINEL)
        if key is _SENTINEL:
            key = self.full_urls.get(ref)
            if key is None:
                parts = ref.split("/")
                if len(parts) >= 4 and parts[-2] == "_history":
                    parts = parts[:-2]
                key = f"{parts[-2]}/{parts[-1]}" if len(parts) >= 2 else None
            self.ref_keys[ref] = key
        return key  # type: ignore[no-any-return]

    def follow(
        self, ref: str, rtype: str, convert: Callable[[str, Any], _T]
    ) -> tuple[_T | None, SkipReason | None]:
        """The converted resource a reference points to, or why there is none."""
        key = self.key_of(ref)
        if key is None or key.partition("/")[0] != rtype:
            return None, SkipReason.UNRESOLVED_REFERENCE
        obj = self.done.get(key, _SENTINEL)
        if obj is _SENTINEL:
            raw = self.index.get(key)
            if raw is None:
                return None, SkipReason.UNRESOLVED_REFERENCE
            obj = self.convert(key, raw, convert)
        if obj is None:
            return None, SkipReason.INVALID_REFERENCE
        return obj, None

    def optional(
        self,
        owner_type: str,
        owner_id: str,
        holder: wire.Reference | None,
        rtype: str,
        convert: Callable[[str, Any], _T],
    ) -> _T | None:
        """What an optional reference of the owner points to; ``None`` when it
        is absent or unusable (then logged at debug level: the owner stays)."""
        ref = holder.reference if holder is not None else None
        if not ref:
            return None
        found, why = self.follow(ref, rtype, convert)
        if why is not None:
            log.debug("%s/%s: %s %s left out (%s)", owner_type, owner_id, rtype, ref, why.value)
        return found

    def convert(self, key: str, raw: Any, convert: Callable[[str, Any], _T]) -> _T | None:
        self.done[key] = None  # a reference cycle resolves to "invalid", never recurses
        rtype, _, rid = key.partition("/")
        if isinstance(raw, dict):  # the tolerant path: read as the typed one would
            raw = wire.resource_of(rtype, raw)
        try:
            obj: _T | None = convert(rid, raw)
        except _Invalid as exc:
            self.skip(rtype, rid, exc.reason, exc.detail)
            self.reasons[key] = exc.reason
            obj = None
        self.done[key] = obj
        return obj

    # ---- main loop

    def index_entries(self, entries: list[Any]) -> list[Any]:
        """Entries as decoded by ``json`` (the tolerant path)."""
        order: list[Any] = []
        for n, entry in enumerate(entries):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            rtype = resource.get("resourceType") if isinstance(resource, dict) else None
            if not isinstance(rtype, str) or not rtype:
                self.skip("entry", str(n), SkipReason.MALFORMED_ENTRY, "no resource")
                continue
            assert isinstance(resource, dict)
            if rtype not in _KNOWN:
                self.other.append(resource)
                continue
            self.add(n, rtype, resource.get("id"), resource, entry.get("fullUrl"), order)
        return order

    def index_wire(self, entries: list[wire.Entry]) -> list[Any]:
        """Entries as decoded by the typed decoder (``wire``): Slots stay
        structures, in the order as they are (nothing refers to a slot: no
        index, no fullUrl); the resources they lead to are read by their
        converters with ``.get``, as the tolerant path's dicts."""
        order: list[Any] = []  # (type, key) or a wire.Slot
        slot_ids = self.slot_ids
        for n, entry in enumerate(entries):
            resource = entry.resource
            if resource is None:
                self.skip("entry", str(n), SkipReason.MALFORMED_ENTRY, "no resource")
            elif isinstance(resource, wire.Slot):
                rid = resource.id
                if not rid:
                    self.skip("Slot", None, SkipReason.MISSING_ID, f"entry {n}")
                elif rid in slot_ids:
                    self.skip("Slot", rid, SkipReason.DUPLICATE, f"entry {n}")
                else:
                    slot_ids.add(rid)
                    order.append(resource)
            else:  # read by its converter with .get, as a dict
                self.add(
                    n, wire.resource_type(resource), resource.id, resource, entry.fullUrl, order
                )
        return order

    def add(
        self,
        n: int,
        rtype: str,
        rid: Any,
        resource: Any,
        full_url: Any,
        order: list[Any],
    ) -> None:
        if not isinstance(rid, str) or not rid:
            self.skip(rtype, None, SkipReason.MISSING_ID, f"entry {n}")
            return
        key = f"{rtype}/{rid}"
        if key in self.index:
            self.skip(rtype, rid, SkipReason.DUPLICATE, f"entry {n}")
            return
        self.index[key] = resource
        if isinstance(full_url, str) and full_url:
            self.full_urls[full_url] = key
        order.append((rtype, key))

    def convert_all(self, order: list[Any]) -> Iterator[None]:
        """Convert the entries in order, pausing (yield) every :data:`SLICE`."""
        converters: dict[str, Callable[[str, Any], Any]] = {
            "Slot": self.slot,
            "Schedule": self.schedule,
            "Practitioner": self.practitioner,
            "PractitionerRole": self.role,
            "Location": self.location,
            "Organization": self.organization,
            "HealthcareService": self.healthcare_service,
        }
        buckets = self.buckets
        done = self.done
        index = self.index
        slots, slot = buckets["Slot"], self.slot
        for first in range(0, len(order), SLICE):
            if first:
                yield
            for item in order[first : first + SLICE]:
                if item.__class__ is _WireSlot:  # the thousands, from the typed decoder
                    rid = item.id
                    try:
                        slots.append(slot(rid, item))  # type: ignore[arg-type]  # rid: indexed, not empty
                    except _Invalid as exc:
                        self.skip("Slot", rid, exc.reason, exc.detail)
                    continue
                rtype, key = item
                if rtype == "Slot":  # from a dict: nothing refers to a slot, no bookkeeping
                    rid = key[5:]
                    try:
                        slots.append(slot(rid, wire.slot_of(index[key])))
                    except _Invalid as exc:
                        self.skip(rtype, rid, exc.reason, exc.detail)
                    continue
                obj = done.get(key, _SENTINEL)
                if obj is _SENTINEL:
                    obj = self.convert(key, index[key], converters[rtype])
                if obj is not None:
                    buckets[rtype].append(obj)

    def result(self) -> BundleResult:
        buckets = self.buckets
        if len(self.skipped) > LOG_SKIPPED_LIMIT:
            log.warning(
                "skipped %d resources in all (%s)",
                len(self.skipped),
                ", ".join(f"{k}: {v}" for k, v in self._counts().items()),
            )
        total = self.bundle.get("total")
        if total is not None and (isinstance(total, bool) or not isinstance(total, int)):
            log.info("ignoring a Bundle.total that is not an integer")
            total = None
        btype = self.bundle.get("type")
        if btype != "searchset":
            log.info("Bundle of type %r, not searchset", btype)
        return BundleResult(
            bundle_type=btype if isinstance(btype, str) else None,
            total=total,
            self_link=self._link("self"),
            next_link=self._link("next"),
            slots=tuple(buckets["Slot"]),
            schedules=tuple(buckets["Schedule"]),
            practitioners=tuple(buckets["Practitioner"]),
            roles=tuple(buckets["PractitionerRole"]),
            locations=tuple(buckets["Location"]),
            organizations=tuple(buckets["Organization"]),
            healthcare_services=tuple(buckets["HealthcareService"]),
            other=tuple(self.other),
            skipped=tuple(self.skipped),
        )

    def _counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s in self.skipped:
            counts[s.reason.value] = counts.get(s.reason.value, 0) + 1
        return counts

    def _link(self, relation: str) -> str | None:
        links = self.bundle.get("link")
        if isinstance(links, list):
            for link in links:
                if isinstance(link, dict) and link.get("relation") == relation:
                    return _str(link.get("url"))
        return None

    # ---- Slot (the hot path: plain dict walking, caches)

    def time(self, value: Any) -> datetime | None:
        if not isinstance(value, str):
            return None
        dt = _TIMES.get(value, _SENTINEL)
        if dt is _SENTINEL:
            dt = parse_instant(value)
            if len(_TIMES) >= _TIMES_LIMIT:
                _TIMES.clear()
            _TIMES[value] = dt
        return dt  # type: ignore[no-any-return]

    def slot(self, rid: str, r: wire.Slot) -> Slot:
        status = r.status
        if status != "free":
            raise _Invalid(SkipReason.NOT_FREE, f"status {status!r}")
        start = _TIMES.get(r.start) or self.time(r.start)  # type: ignore[arg-type]
        end = _TIMES.get(r.end) or self.time(r.end)  # type: ignore[arg-type]
        if start is None or end is None:
            which = "start" if start is None else "end"
            raise _Invalid(SkipReason.INVALID_TIME, f"{which} missing or not a date-time")
        if end <= start:
            raise _Invalid(SkipReason.END_BEFORE_START, "end not after start")
        ref = r.schedule.reference if r.schedule is not None else None
        if not ref:
            raise _Invalid(SkipReason.MISSING_SCHEDULE, "no schedule reference")
        found = self.schedule_refs.get(ref)
        if found is None:  # the slots of one agenda all refer to it
            found = self.schedule_refs[ref] = self.follow(ref, "Schedule", self.schedule)
        schedule, why = found
        if schedule is None:
            assert why is not None
            raise _Invalid(why, f"schedule {ref}")

        key = b"\0".join((r.meta, r.serviceType, r.specialty, r.appointmentType))  # wire.kind_key
        kind = _KINDS.get(key)
        if kind is None:
            kind = self._kind(wire.kind_of(r), key)
        types, modes, specialties, reasons, appointment_type, service_refs = kind
        services = self.services(rid, service_refs) if service_refs else ()

        booking_url = None
        comment = r.comment
        if comment:
            comment = comment.strip()
            if comment.startswith(_HTTP) or comment[:8].lower().startswith(_HTTP):
                booking_url = comment
            elif comment:
                log.debug("Slot/%s: comment is not an http(s) link, no booking URL", rid)

        return Slot(
            rid,
            ref,
            schedule,
            start,
            end,
            types,
            modes,
            specialties,
            reasons,
            appointment_type,
            booking_url,
            status,
            services,
        )

    def _kind(self, r: wire.Kind, key: bytes) -> _SlotKind:
        """What kind of slot it is: types, modes, specialties, free-text
        reasons, appointment type and the CPTS it is visible to (the
        references); remembered under ``key`` for every parse."""
        types: tuple[SlotType, ...] = ()
        security = r.meta.security if r.meta is not None else None
        if security:
            found: list[SlotType] = []
            for coding in security:
                st = _SLOT_TYPES.get(coding.code)  # type: ignore[arg-type]
                if st is not None and st not in found:
                    system = coding.system
                    if system is None or "TypeCreneau" in system:
                        found.append(st)
            types = tuple(found)

        modes: list[ConsultationMode] = []
        reasons: list[str] = []
        service_refs: list[str] = []
        for concept in r.serviceType or ():
            known = False
            for coding in concept.coding or ():
                code = coding.code
                mode = _MODES.get(code)  # type: ignore[arg-type]
                if mode is not None and coding.system in (None, SYSTEM_ACT_CODE):
                    known = True
                    if mode not in modes:
                        modes.append(mode)
                elif code == CATEGORY_CPTS:
                    known = True
            if concept.extension and _cpts_refs(concept.extension, service_refs):
                known = True
            text = concept.text
            if not known and text:
                text = text.strip()
                if text and text not in reasons:
                    reasons.append(text)

        specialties: tuple[Specialty, ...] = ()
        if r.specialty:
            found_specialties = []
            for concept in r.specialty:
                specialty = self.specialty(concept)
                if specialty is not None:
                    found_specialties.append(specialty)
            specialties = tuple(found_specialties)

        appointment_type = None
        if r.appointmentType is not None:
            for coding in r.appointmentType.coding or ():
                appointment_type = _APPOINTMENT_TYPES.get(coding.code)  # type: ignore[arg-type]
                if appointment_type is not None:
                    break

        kind = (
            types,
            tuple(modes),
            specialties,
            tuple(reasons),
            appointment_type,
            tuple(service_refs),
        )
        if len(_KINDS) >= _KINDS_LIMIT:
            _KINDS.clear()
        _KINDS[key] = kind
        return kind

    def services(self, rid: str, refs: tuple[str, ...]) -> tuple[HealthcareService, ...]:
        """The CPTS services these references lead to in this Bundle."""
        found = self.service_refs.get(refs)
        if found is None:
            out: list[HealthcareService] = []
            for ref in refs:
                service, _why = self.follow(ref, "HealthcareService", self.healthcare_service)
                if service is None:
                    log.debug("Slot/%s: CPTS service %s not usable", rid, ref)
                elif service not in out:
                    out.append(service)
            found = self.service_refs[refs] = tuple(out)
        return found

    def specialty(self, concept: wire.Concept) -> Specialty | None:
        code = system = None
        for coding in concept.coding or ():
            if coding.code is not None:
                code, system = coding.code, coding.system
                break
        text = concept.text
        if code is None and not text:
            return None
        key = (code, system, text)
        found = self.specialties.get(key)
        if found is None:
            found = self.specialties[key] = Specialty(code, system, text)
        return found

    # ---- Schedule and who it belongs to (``r``: the typed resource, as
    # decoded, or read leniently from a dict on the tolerant path)

    def schedule(self, rid: str, r: wire.Schedule) -> Schedule:
        practitioner: Practitioner | None = None
        role: PractitionerRole | None = None
        location: Location | None = None
        problems: list[tuple[SkipReason, str]] = []
        for actor in r.actor or ():
            ref = actor.reference
            if not ref:
                continue
            key = self.key_of(ref) or ""
            why: SkipReason | None
            if key.startswith("Practitioner/"):
                found_p, why = self.follow(ref, "Practitioner", self.practitioner)
                practitioner = practitioner or found_p
            elif key.startswith("PractitionerRole/"):
                found_r, why = self.follow(ref, "PractitionerRole", self.role)
                role = role or found_r
            elif key.startswith("Location/"):
                found_l, why = self.follow(ref, "Location", self.location)
                location = location or found_l
            else:
                why = SkipReason.UNRESOLVED_REFERENCE
            if why is not None:
                problems.append((why, ref))
        if practitioner is None and role is not None:
            practitioner = role.practitioner
        if practitioner is None and location is None:
            if problems:
                why, ref = problems[0]
                raise _Invalid(why, f"actor {ref}")
            raise _Invalid(SkipReason.NO_ACTOR, "no Practitioner or Location actor")
        for why, ref in problems:
            log.debug("Schedule/%s: actor %s left out (%s)", rid, ref, why.value)
        return Schedule(rid, practitioner, role, location)

    def practitioner(self, rid: str, r: wire.Practitioner) -> Practitioner:
        found = _PRACTITIONERS.get(r)
        if found is not None:
            return found
        national_id = kind = None
        for ident in r.identifier or ():
            if ident.system != OID_IDNAT_PS:
                continue
            value = ident.value
            kind = practitioner_id_kind(value) if value is not None else None
            if kind is not None:
                national_id = value
                break
        if national_id is None or kind is None:
            raise _Invalid(SkipReason.INVALID_IDENTIFIER, "no IdNat_PS 8+RPPS or 0+ADELI")
        family = None
        given: tuple[str, ...] = ()
        if r.name:
            name = r.name[0]
            family = _str(name.family)
            given = tuple(g.strip() for g in name.given or () if g.strip())
        found = Practitioner(rid, national_id, kind, family, given, _phone(r.telecom))
        return _remember(_PRACTITIONERS, r, found)

    def role(self, rid: str, r: wire.PractitionerRole) -> PractitionerRole:
        practitioner = self.optional(
            "PractitionerRole", rid, r.practitioner, "Practitioner", self.practitioner
        )
        location = None
        for holder in r.location or ():
            ref = holder.reference
            if not ref:
                continue
            if ref.startswith("#"):
                location = self._contained_location(rid, r, ref[1:])
            else:
                location, _why = self.follow(ref, "Location", self.location)
            if location is not None:
                break
        if location is None:
            log.debug("PractitionerRole/%s: no usable location", rid)
        # the practitioner and place by identity: the remembered role holds
        # them, so their ids cannot be reused while it is remembered
        key = (r, id(practitioner), id(location))
        found = _ROLES.get(key)
        if found is not None:
            return found
        org_id = org_kind = None
        org = r.organization
        ident = org.identifier if org is not None else None
        if ident is not None and ident.system in (None, OID_IDNAT_STRUCT):
            org_id = _str(ident.value)
            org_kind = structure_id_kind(org_id) if org_id else None
        found = PractitionerRole(rid, practitioner, location, org_id, org_kind, _phone(r.telecom))
        return _remember(_ROLES, key, found)

    def _contained_location(
        self, role_id: str, role: wire.PractitionerRole, lid: str
    ) -> Location | None:
        for res in role.contained or ():
            if res.resourceType == "Location" and res.id == lid:
                return self.place(lid, res, None)
        log.debug("PractitionerRole/%s: contained location #%s not found", role_id, lid)
        return None

    def location(self, rid: str, r: wire.Location) -> Location:
        organization = self.optional(
            "Location", rid, r.managingOrganization, "Organization", self.organization
        )
        return self.place(rid, r, organization)

    def place(
        self, rid: str, r: wire.Location | wire.Place, organization: Organization | None
    ) -> Location:
        key = (r, id(organization))  # as for roles
        found = _PLACES.get(key)
        if found is not None:
            return found
        identifier = identifier_system = None
        if r.identifier:
            identifier = _str(r.identifier[0].value)
            identifier_system = _str(r.identifier[0].system)
        address = Address()
        if r.address is not None:
            a = r.address
            address = Address(
                tuple(x.strip() for x in a.line or () if x.strip()),
                _str(a.city),
                _str(a.postalCode),
            )
        lat = lon = None
        if r.position is not None:
            lat = _coordinate(r.position.latitude, 90.0)
            lon = _coordinate(r.position.longitude, 180.0)
            if lat is None or lon is None:
                log.debug("Location/%s: position dropped (missing or out of range)", rid)
                lat = lon = None
        hours = tuple(
            OpeningHours(
                h.daysOfWeek or (),
                h.allDay is True,
                _clock_time(h.openingTime),
                _clock_time(h.closingTime),
            )
            for h in r.hoursOfOperation or ()
        )
        found = Location(
            rid,
            identifier,
            identifier_system,
            _str(r.name),
            address,
            lat,
            lon,
            _phone(r.telecom),
            organization,
            hours,
        )
        return _remember(_PLACES, key, found)

    def organization(self, rid: str, r: wire.Organization) -> Organization:
        found = _ORGANIZATIONS.get(r)
        if found is not None:
            return found
        for ident in r.identifier or ():
            if ident.system not in (None, OID_IDNAT_STRUCT):
                continue
            value = _str(ident.value)
            kind = structure_id_kind(value) if value else None
            if value and kind is not None:
                found = Organization(rid, value, kind, _str(r.name), _phone(r.telecom))
                return _remember(_ORGANIZATIONS, r, found)
        raise _Invalid(SkipReason.INVALID_IDENTIFIER, "no IdNat_Struct FINESS/SIRET/rang id")

    def healthcare_service(self, rid: str, r: wire.HealthcareService) -> HealthcareService:
        organization = self.optional(
            "HealthcareService", rid, r.providedBy, "Organization", self.organization
        )
        return HealthcareService(rid, organization, _str(r.name))


def _cpts_refs(extensions: tuple[wire.Extension, ...], out: list[str]) -> bool:
    """Adds to ``out`` the CPTS service references of a serviceType's
    extensions; whether it had any such extension."""
    found = False
    for ext in extensions:
        if ext.url != EXT_SLOT_SERVICE_TYPE:
            continue
        found = True
        ref = ext.valueReference.reference if ext.valueReference is not None else None
        if ref and ref not in out:
            out.append(ref)
    return found


# --------------------------------------------------------------------------- report


def slot_record(slot: Slot) -> dict[str, Any]:
    """One slot as a flat JSON-ready dict (``sas-desk fhir parse``)."""
    practitioner = slot.practitioner
    place = slot.location
    role = slot.role
    organization = slot.organization
    return {
        "slot": slot.id,
        "practitioner": practitioner.national_id if practitioner else None,
        "practitioner_name": practitioner.display_name if practitioner else None,
        "start": slot.start.isoformat(timespec="milliseconds"),
        "end": slot.end.isoformat(timespec="milliseconds"),
        "types": [t.value for t in slot.types],
        "modes": [m.value for m in slot.modes],
        "specialties": [s.code or s.text for s in slot.specialties],
        "reasons": list(slot.reasons),
        "appointment_type": slot.appointment_type.value if slot.appointment_type else None,
        "booking_url": slot.booking_url,
        "schedule": slot.schedule.id,
        "role": role.id if role else None,
        "place": place.name if place else None,
        "address": place.address.text if place else None,
        "coordinates": list(place.coordinates) if place and place.coordinates else None,
        "phone": (role.phone if role else None) or (place.phone if place else None),
        # SOS: the association running the place; PS/CPTS: the role's structure
        "organization": organization.national_id
        if organization
        else (role.organization_id if role else None),
        "cpts": [s.organization.national_id for s in slot.services if s.organization],
    }


def summary_record(result: BundleResult) -> dict[str, Any]:
    """Counts of a parsed Bundle, JSON-ready (the last line of ``fhir parse``)."""
    return {
        "bundle_type": result.bundle_type,
        "total": result.total,
        "slots": len(result.slots),
        "practitioners": len(result.practitioners),
        "roles": len(result.roles),
        "schedules": len(result.schedules),
        "locations": len(result.locations),
        "organizations": len(result.organizations),
        "healthcare_services": len(result.healthcare_services),
        "other": len(result.other),
        "skipped": len(result.skipped),
        "skipped_reasons": result.skipped_by_reason(),
        "skipped_resources": [
            {
                "type": s.resource_type,
                "id": s.resource_id,
                "reason": s.reason.value,
                "detail": s.detail,
            }
            for s in result.skipped
        ],
    }
