"""The practitioner directory feed of ``docs/fhir-directory.md``, served from
the simulated territory at ``{simulator}/directory``.

``GET /directory/_history[?_since=INSTANT][&_count=N]`` answers a ``history``
Bundle: the *latest* version of every resource changed at or after ``_since``
(inclusive; naive instants are Paris time), ordered by ``meta.lastUpdated``,
then type, then id; ``PUT`` entries carry the resource, ``DELETE`` entries
only ``request`` and ``response.lastModified``.  ``_count`` (1–1000, default
200) sizes a page; a ``next`` link (an opaque URL keeping ``_since`` and a
keyset cursor) is present while more entries follow.  A bad ``_since`` or
``_count`` gets 400 with an OperationOutcome.

Every resource starts at version 1 with ``lastUpdated`` spread one millisecond
apart, one day before the offer's clock at first use; a change through the
offer (:meth:`Offer.rename`, :meth:`Offer.set_en_sus`,
:meth:`Offer.deactivate_place`, :meth:`Offer.remove_practitioner`, or
``POST /_admin/directory``) gives the touched resources a new version stamped
with the clock (strictly after every earlier stamp).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from sas_desk.models.slots import (
    OID_IDNAT_PS,
    OID_IDNAT_STRUCT,
    SYSTEM_SPECIALTY,
    SYSTEM_STRUCTURE_CATEGORY,
)
from sas_desk.simulator.faults import FaultBoard
from sas_desk.simulator.offer import PARIS, Offer, Pfg, Place, Practitioner, Structure
from sas_desk.simulator.server import Query, Request, Response
from sas_desk.simulator.vendors import (
    STRUCTURE_CATEGORY,
    SYSTEM_PROFESSION,
    QueryError,
    fhir_instant,
    fhir_response,
    operation_outcome,
    with_faults,
)

__all__ = ["DEFAULT_COUNT", "MAX_COUNT", "DirectoryFeed", "make_directory_handler"]

DEFAULT_COUNT = 200
MAX_COUNT = 1000

EXTENSION_BASE = "https://sas-desk.fr/fhir/StructureDefinition/"
CODESYSTEM_BASE = "https://sas-desk.fr/fhir/CodeSystem/"
_CONNECTION_TYPE = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
_PAYLOAD_TYPE = "http://terminology.hl7.org/CodeSystem/endpoint-payload-type"
_ORDER = ("Endpoint", "Organization", "Location", "Practitioner", "PractitionerRole")


@dataclass(slots=True)
class _Version:
    number: int
    stamp: datetime
    deleted: bool = False


class DirectoryFeed:
    """Versions of the directory resources, kept in step with the offer."""

    def __init__(self, offer: Offer) -> None:
        self.offer = offer
        self._lock = threading.Lock()
        self._versions: dict[tuple[str, str], _Version] | None = None
        self._order: list[tuple[datetime, str, str]] | None = None
        self._last: datetime | None = None
        offer.on_change(self._on_change)

    # ---- versions

    def _ensure(self) -> dict[tuple[str, str], _Version]:
        with self._lock:
            if self._versions is None:
                offer = self.offer.ensure_built()
                base = offer.now().replace(microsecond=0) - timedelta(days=1)
                versions: dict[tuple[str, str], _Version] = {}
                for n, key in enumerate(self._keys()):
                    versions[key] = _Version(1, base + timedelta(milliseconds=n))
                self._versions = versions
                self._last = max((v.stamp for v in versions.values()), default=base)
            return self._versions

    def _keys(self) -> Iterable[tuple[str, str]]:
        offer = self.offer
        for vendor in offer.vendors:
            yield ("Endpoint", vendor.name)
        for s in offer.structures:
            yield ("Organization", s.id)
        for pfg in offer.pfgs:
            yield ("Location", pfg.id)
        for p in offer.practitioners:
            yield ("Practitioner", p.id)
        for p in offer.practitioners:
            for place in p.places:
                yield ("PractitionerRole", place.id)

    def _on_change(self, changed: Iterable[str], deleted: Iterable[str]) -> None:
        versions = self._ensure()
        with self._lock:
            for ref, is_deleted in [*((c, False) for c in changed), *((d, True) for d in deleted)]:
                rtype, _, rid = ref.partition("/")
                stamp = self._next_stamp()
                version = versions.get((rtype, rid))
                if version is None:
                    versions[(rtype, rid)] = _Version(1, stamp, is_deleted)
                else:
                    version.number += 1
                    version.stamp = stamp
                    version.deleted = is_deleted
            self._order = None

    def _next_stamp(self) -> datetime:
        now = self.offer.now()
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        assert self._last is not None
        stamp = max(now, self._last + timedelta(milliseconds=1))
        self._last = stamp
        return stamp

    def ordered(self) -> list[tuple[datetime, str, str]]:
        versions = self._ensure()
        with self._lock:
            if self._order is None:
                self._order = sorted((v.stamp, rtype, rid) for (rtype, rid), v in versions.items())
            return self._order

    def version(self, rtype: str, rid: str) -> _Version:
        return self._ensure()[(rtype, rid)]

    # ---- resources

    def resource(self, rtype: str, rid: str, origin: str) -> dict[str, Any] | None:
        offer = self.offer
        if rtype == "Endpoint":
            vendor = offer.vendor(rid)
            if vendor is None:
                return None
            return {
                "resourceType": "Endpoint",
                "id": vendor.name,
                "status": "active",
                "connectionType": {"system": _CONNECTION_TYPE, "code": "hl7-fhir-rest"},
                "name": vendor.label,
                "payloadType": [{"coding": [{"system": _PAYLOAD_TYPE, "code": "any"}]}],
                "address": f"{origin}/vendors/{vendor.name}/fhir",
            }
        if rtype == "Organization":
            for s in offer.structures:
                if s.id == rid:
                    return _organization(s)
            return None
        if rtype == "Location":
            for pfg in offer.pfgs:
                if pfg.id == rid:
                    return _pfg_location(pfg)
            return None
        if rtype == "Practitioner":
            p = offer.practitioner("8" + rid[1:])
            return _practitioner(p) if p is not None else None
        if rtype == "PractitionerRole":
            rpps = rid[1:].partition("-")[0]
            p = offer.practitioner("8" + rpps)
            if p is None:
                return None
            for place in p.places:
                if place.id == rid:
                    return _role(place)
        return None


def _address(line: str, commune_name: str, postcode: str, insee: str) -> dict[str, Any]:
    return {"line": [line], "city": commune_name, "district": insee, "postalCode": postcode}


def _phone(value: str) -> list[dict[str, str]]:
    return [{"system": "phone", "value": value}]


def _organization(s: Structure) -> dict[str, Any]:
    if s.kind == "SOS":
        kind_type = {"coding": [{"system": CODESYSTEM_BASE + "structure-kind", "code": "SOS"}]}
    else:
        kind_type = {
            "coding": [{"system": SYSTEM_STRUCTURE_CATEGORY, "code": STRUCTURE_CATEGORY[s.kind]}]
        }
    resource: dict[str, Any] = {
        "resourceType": "Organization",
        "id": s.id,
        "identifier": [{"system": OID_IDNAT_STRUCT, "value": s.national_id}],
        "active": s.active,
        "type": [kind_type],
        "name": s.name,
        "telecom": _phone(s.phone),
    }
    if s.kind == "SOS" and s.vendor:
        resource["endpoint"] = [{"reference": f"Endpoint/{s.vendor}"}]
    return resource


def _pfg_location(pfg: Pfg) -> dict[str, Any]:
    return {
        "resourceType": "Location",
        "id": pfg.id,
        "status": "active" if pfg.association.active else "inactive",
        "name": pfg.name,
        "telecom": _phone(pfg.phone),
        "address": _address(pfg.line, pfg.commune.name, pfg.commune.postcode, pfg.commune.insee),
        "position": {"longitude": pfg.lon, "latitude": pfg.lat},
        "managingOrganization": {"reference": f"Organization/{pfg.association.id}"},
    }


def _practitioner(p: Practitioner) -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "id": p.id,
        "identifier": [{"system": OID_IDNAT_PS, "value": p.national_id}],
        "active": p.active,
        "name": [{"family": p.family, "given": [p.given]}],
    }


def _role(place: Place) -> dict[str, Any]:
    p = place.practitioner
    extensions: list[dict[str, Any]] = [
        {"url": EXTENSION_BASE + "sas-participation", "valueBoolean": p.sas},
        {"url": EXTENSION_BASE + "sas-en-sus", "valueBoolean": p.en_sus_phone is not None},
    ]
    if p.en_sus_phone is not None:
        extensions.append(
            {"url": EXTENSION_BASE + "sas-en-sus-phone", "valueString": p.en_sus_phone}
        )
    extensions.extend(
        {
            "url": EXTENSION_BASE + "sas-cpts",
            "valueReference": {"reference": f"Organization/{c.id}"},
        }
        for c in p.cpts
    )
    location = {
        "resourceType": "Location",
        "id": "loc",
        "address": _address(
            place.line, place.commune.name, place.commune.postcode, place.commune.insee
        ),
        "position": {"longitude": place.lon, "latitude": place.lat},
    }
    resource: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "id": place.id,
        "contained": [location],
        "extension": extensions,
        "active": place.active and p.active,
        "practitioner": {"reference": f"Practitioner/{p.id}"},
    }
    if place.structure is not None:
        resource["organization"] = {"reference": f"Organization/{place.structure.id}"}
    resource["code"] = [{"coding": [{"system": SYSTEM_PROFESSION, "code": p.profession}]}]
    if p.specialty is not None:
        resource["specialty"] = [{"coding": [{"system": SYSTEM_SPECIALTY, "code": p.specialty}]}]
    resource["location"] = [{"reference": "#loc"}]
    resource["telecom"] = _phone(place.phone)
    resource["endpoint"] = [{"reference": f"Endpoint/{p.vendor}"}]
    return resource


# --------------------------------------------------------------------------- HTTP


def _since(query: Query) -> datetime | None:
    values = query.get("_since")
    if not values or not values[0].strip():
        return None
    raw = values[0].strip().replace(" ", "+")
    if raw[-1:] in ("Z", "z"):
        raw = raw[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise QueryError(f"_since illisible : « {values[0]} »") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=PARIS)


def _count(query: Query) -> int:
    values = query.get("_count")
    if not values:
        return DEFAULT_COUNT
    raw = values[0].strip()
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_COUNT:
        raise QueryError(f"_count doit être un entier entre 1 et {MAX_COUNT}")
    return int(raw)


def _cursor(query: Query) -> tuple[datetime, str, str] | None:
    values = query.get("_cursor")
    if not values:
        return None
    stamp, _, rest = values[0].partition("~")
    rtype, _, rid = rest.partition("~")
    try:
        at = datetime.fromisoformat(stamp.replace(" ", "+"))
    except ValueError:
        raise QueryError("_cursor illisible") from None
    if at.tzinfo is None or rtype not in _ORDER or not rid:
        raise QueryError("_cursor illisible")
    return at, rtype, rid


def _history(feed: DirectoryFeed, request: Request) -> Response:
    query = request.query
    since = _since(query)
    count = _count(query)
    cursor = _cursor(query)
    ordered = feed.ordered()
    matching = [item for item in ordered if since is None or item[0] >= since]
    page_from = matching
    if cursor is not None:
        page_from = [item for item in matching if item > cursor]
    page = page_from[:count]
    base = f"{request.origin}/directory"
    self_url = f"{base}/_history" + (f"?{request.raw_query}" if request.raw_query else "")
    links = [{"relation": "self", "url": self_url}]
    if len(page_from) > count:
        last = page[-1]
        params: dict[str, str] = {}
        if since is not None:
            params["_since"] = fhir_instant(since)
        params["_count"] = str(count)
        params["_cursor"] = f"{fhir_instant(last[0])}~{last[1]}~{last[2]}"
        links.append(
            {"relation": "next", "url": f"{base}/_history?{urlencode(params, quote_via=quote)}"}
        )
    entries = []
    for stamp, rtype, rid in page:
        version = feed.version(rtype, rid)
        url = f"{rtype}/{rid}"
        resource = None if version.deleted else feed.resource(rtype, rid, request.origin)
        entry: dict[str, Any] = {"fullUrl": f"{base}/{url}"}
        if resource is None:
            entry["request"] = {"method": "DELETE", "url": url}
            entry["response"] = {"status": "204", "lastModified": fhir_instant(stamp)}
        else:
            resource["meta"] = {
                "versionId": str(version.number),
                "lastUpdated": fhir_instant(stamp),
            }
            entry["resource"] = _meta_first(resource)
            entry["request"] = {"method": "PUT", "url": url}
            entry["response"] = {
                "status": "201" if version.number == 1 else "200",
                "lastModified": fhir_instant(stamp),
            }
        entries.append(entry)
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "history",
        "total": len(matching),
        "link": links,
    }
    if entries:
        bundle["entry"] = entries
    return fhir_response(200, bundle)


def _meta_first(resource: dict[str, Any]) -> dict[str, Any]:
    ordered = {
        "resourceType": resource["resourceType"],
        "id": resource["id"],
        "meta": resource["meta"],
    }
    ordered.update(resource)
    return ordered


def make_directory_handler(
    feed: DirectoryFeed, faults: FaultBoard
) -> Callable[[Query, Request], Response]:
    """``GET /directory/_history``."""

    def handle(query: Query, request: Request) -> Response:
        del query
        if request.path.rstrip("/") != "/directory/_history":
            return operation_outcome(404, "Seul /directory/_history est servi.", "not-found")

        def produce() -> Response:
            try:
                return _history(feed, request)
            except QueryError as exc:
                return operation_outcome(400, f"Requête invalide : {exc}")

        return with_faults(faults, "directory", request, produce)

    return handle
