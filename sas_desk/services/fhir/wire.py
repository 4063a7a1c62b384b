"""The wire shape of a SAS searchset Bundle, for msgspec's typed decoder.

Decoding straight into these structures reads only what the parser uses
(unknown elements are skipped, not built) and checks every type in C: on
the 16 answers of a ``bench/search.py`` search (6.4 MB), about a quarter of
a bare ``msgspec.json.decode`` into dicts. Every resource type the parser
reads is typed, down to the elements its converter reads (no dict is
built); the resources a slot leads to are frozen, so that equal ones hash
alike and the parser remembers their conversion across answers. Field
names are FHIR's (camelCase), so that msgspec matches them as sent. The
body's bytes are decoded, never a str made of them (msgspec would encode
it back to UTF-8 first: the answer decoded twice); their UTF-8 is checked
apart, the skipped elements included.

The parts of a Slot that say what kind of slot it is (``meta``,
``serviceType``, ``specialty``, ``appointmentType``) are kept as their JSON
text (``msgspec.Raw``: a slice of the body, nothing built): the slots of one
agenda, and the answers of one vendor, repeat a few hundred kinds, which
the parser works out once each, the text being the key (``kind_key``), and
reads into a :class:`Kind` only for a kind it has not met (``kind_of``).
Building those elements for every slot cost half the decoding, and
comparing them as structures the longest part of the conversion.

The typed decode is all or nothing: one element of an unexpected type
anywhere else fails it. :func:`decode` then returns ``None`` and the caller
falls back to the tolerant path (``json`` + per-resource checks), where
:func:`slot_of` reads one Slot dict and :func:`resource_of` any other
resource, dropping the elements that do not fit instead of refusing the
resource: the converters read the same structures on both paths. The kind
elements are read that way in both paths (:func:`kind_of`).
"""

from __future__ import annotations

import copy
import re
from typing import Any, TypeVar

import msgspec


class Coding(msgspec.Struct, frozen=True, gc=False):
    system: str | None = None
    code: str | None = None


class Reference(msgspec.Struct, frozen=True, gc=False):
    reference: str | None = None


class Extension(msgspec.Struct, frozen=True, gc=False):
    url: str | None = None
    valueReference: Reference | None = None


class Concept(msgspec.Struct, frozen=True, gc=False):
    coding: tuple[Coding, ...] | None = None
    text: str | None = None
    extension: tuple[Extension, ...] | None = None


class Meta(msgspec.Struct, frozen=True, gc=False):
    security: tuple[Coding, ...] | None = None


class Kind(msgspec.Struct, frozen=True, gc=False):
    """The elements of a Slot that say what kind of slot it is."""

    meta: Meta | None = None
    serviceType: tuple[Concept, ...] | None = None
    specialty: tuple[Concept, ...] | None = None
    appointmentType: Concept | None = None


_KIND_FIELDS = Kind.__struct_fields__
_ABSENT = msgspec.Raw()


class Slot(msgspec.Struct, tag="Slot", tag_field="resourceType", gc=False):
    id: str | None = None
    status: str | None = None
    start: str | None = None
    end: str | None = None
    schedule: Reference | None = None
    comment: str | None = None
    # the Kind's elements as sent (empty when absent)
    meta: msgspec.Raw = _ABSENT
    serviceType: msgspec.Raw = _ABSENT
    specialty: msgspec.Raw = _ABSENT
    appointmentType: msgspec.Raw = _ABSENT


class Identifier(msgspec.Struct, frozen=True, gc=False):
    system: str | None = None
    value: str | None = None


class HumanName(msgspec.Struct, frozen=True, gc=False):
    family: str | None = None
    given: tuple[str, ...] | None = None


class ContactPoint(msgspec.Struct, frozen=True, gc=False):
    system: str | None = None
    value: str | None = None


class Address(msgspec.Struct, frozen=True, gc=False):
    line: tuple[str, ...] | None = None
    city: str | None = None
    postalCode: str | None = None


class Position(msgspec.Struct, frozen=True, gc=False):
    latitude: float | None = None
    longitude: float | None = None


class Hours(msgspec.Struct, frozen=True, gc=False):
    daysOfWeek: tuple[str, ...] | None = None
    allDay: bool | None = None
    openingTime: str | None = None
    closingTime: str | None = None


class StructureReference(msgspec.Struct, frozen=True, gc=False):
    """``PractitionerRole.organization``: the structure by its national id."""

    reference: str | None = None
    identifier: Identifier | None = None


class Place(msgspec.Struct, frozen=True, gc=False):
    """The elements read from a Location (standalone or contained)."""

    resourceType: str | None = None  # a contained resource says its type
    id: str | None = None
    identifier: tuple[Identifier, ...] | None = None
    name: str | None = None
    address: Address | None = None
    position: Position | None = None
    telecom: tuple[ContactPoint, ...] | None = None
    managingOrganization: Reference | None = None
    hoursOfOperation: tuple[Hours, ...] | None = None


# The resources a Slot leads to, each with the elements its converter reads;
# frozen: equal resources hash alike (the parser remembers conversions).


class Resource(msgspec.Struct, tag_field="resourceType", frozen=True, gc=False):
    id: str | None = None


class Schedule(Resource, tag="Schedule", frozen=True, gc=False):
    actor: tuple[Reference, ...] | None = None


class Practitioner(Resource, tag="Practitioner", frozen=True, gc=False):
    identifier: tuple[Identifier, ...] | None = None
    name: tuple[HumanName, ...] | None = None
    telecom: tuple[ContactPoint, ...] | None = None


class PractitionerRole(Resource, tag="PractitionerRole", frozen=True, gc=False):
    practitioner: Reference | None = None
    organization: StructureReference | None = None
    location: tuple[Reference, ...] | None = None
    contained: tuple[Place, ...] | None = None
    telecom: tuple[ContactPoint, ...] | None = None


class Location(Resource, tag="Location", frozen=True, gc=False):
    identifier: tuple[Identifier, ...] | None = None
    name: str | None = None
    address: Address | None = None
    position: Position | None = None
    telecom: tuple[ContactPoint, ...] | None = None
    managingOrganization: Reference | None = None
    hoursOfOperation: tuple[Hours, ...] | None = None


class Organization(Resource, tag="Organization", frozen=True, gc=False):
    identifier: tuple[Identifier, ...] | None = None
    name: str | None = None
    telecom: tuple[ContactPoint, ...] | None = None


class HealthcareService(Resource, tag="HealthcareService", frozen=True, gc=False):
    providedBy: Reference | None = None
    name: str | None = None


Other = Schedule | Practitioner | PractitionerRole | Location | Organization | HealthcareService
OTHER_TYPES: dict[str, type[Resource]] = {
    cls.__name__: cls
    for cls in (Schedule, Practitioner, PractitionerRole, Location, Organization, HealthcareService)
}


class Entry(msgspec.Struct, gc=False):
    fullUrl: str | None = None
    resource: (
        Slot
        | Schedule
        | Practitioner
        | PractitionerRole
        | Location
        | Organization
        | HealthcareService
        | None
    ) = None


class Bundle(msgspec.Struct, gc=False):
    resourceType: str | None = None
    type: Any = None
    total: Any = None
    link: Any = None
    entry: list[Entry] | None = None


_DECODER = msgspec.json.Decoder(Bundle)


def decode(body: bytes | bytearray | memoryview | str) -> Bundle | None:
    """The typed Bundle, or ``None`` when anything in it does not fit (not
    JSON, not a Bundle, a resource type or an element of another shape): the
    tolerant path then decides."""
    if isinstance(body, memoryview):
        body = body.tobytes()
    if not isinstance(body, str) and not body.isascii():
        # the elements skipped unread must be valid UTF-8 too; the text is
        # only checked, not kept: msgspec reads the bytes (handed a str, it
        # would encode it back to UTF-8 first, which cost as much as the
        # decoding itself)
        try:
            str(body, "utf-8")
        except UnicodeDecodeError:
            return None
    try:
        bundle = _DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if bundle.resourceType != "Bundle":
        return None
    return bundle


def resource_type(resource: Slot | Other) -> str:
    return type(resource).__name__


def kind_key(slot: Slot) -> bytes:
    """The text of the slot's kind elements: equal for slots of one kind as
    a vendor sends them (NUL never occurs in JSON text)."""
    return b"\0".join((slot.meta, slot.serviceType, slot.specialty, slot.appointmentType))


_ANY = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()


def kind_of(slot: Slot) -> Kind:
    """The slot's kind elements read leniently (see :func:`slot_of`)."""
    data = {}
    for name in _KIND_FIELDS:
        raw = getattr(slot, name)
        if raw:
            data[name] = _ANY.decode(raw)
    return _lenient(data, Kind, Kind())


_PATH = re.compile(r"\.(\w+)|\[(\d+)\]")
_AT = re.compile(r"- at `\$(.*)`$")
_MAX_DROPS = 64
_S = TypeVar("_S", bound=msgspec.Struct)


def slot_of(data: dict[str, Any]) -> Slot:
    """One Slot dict read leniently: an element of the wrong shape (a code
    that is a number, a list that is an object…) is left out, the rest kept;
    whether what is left makes a usable slot is the converter's call. The
    kind elements are kept as JSON text, read by :func:`kind_of`. The dict
    is not modified."""
    rid = data.get("id")
    core = {k: v for k, v in data.items() if k not in _KIND_FIELDS}
    slot = _lenient(core, Slot, Slot(id=rid if isinstance(rid, str) else None))
    for name in _KIND_FIELDS:
        value = data.get(name)
        if value is not None:
            try:
                setattr(slot, name, msgspec.Raw(_ENCODER.encode(value)))
            except (TypeError, ValueError, OverflowError, msgspec.MsgspecError):
                pass  # not a JSON value: left out
    return slot


def resource_of(rtype: str, data: dict[str, Any]) -> Resource:
    """A resource dict (of one of :data:`OTHER_TYPES`) read leniently, as
    :func:`slot_of` reads a Slot. The dict is not modified."""
    cls = OTHER_TYPES[rtype]
    rid = data.get("id")
    return _lenient(data, cls, cls(id=rid if isinstance(rid, str) else None))


def _lenient(data: dict[str, Any], into: type[_S], fallback: _S) -> _S:
    """``data`` converted to ``into``, leaving out what does not fit."""
    copied = False
    for _ in range(_MAX_DROPS):
        try:
            return msgspec.convert(data, into)
        except msgspec.ValidationError as exc:
            path = _error_path(str(exc))
            if not path:
                break
            if not copied:
                data, copied = copy.deepcopy(data), True
            _drop(data, path)
    return fallback


def _error_path(message: str) -> list[str | int]:
    found = _AT.search(message)
    if found is None:
        return []
    return [int(i) if i else name for name, i in _PATH.findall(found.group(1))]


def _drop(data: Any, path: list[str | int]) -> None:
    for step in path[:-1]:
        data = data[step]
    last = path[-1]
    if isinstance(data, dict):
        data.pop(last, None)
    elif isinstance(data, list) and isinstance(last, int) and last < len(data):
        del data[last]
