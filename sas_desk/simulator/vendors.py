"""The simulated scheduling vendors ("gestionnaires d'agenda"): the SAS FHIR
slot search of the ANS guide, their booking pages, and the simulator's
``/_meta``, ``/_bookings`` and ``/_admin/directory`` routes.

Each vendor has a FHIR base ``{simulator}/vendors/{name}/fhir``:

``GET [base]/Slot?start=ge…&start=le…&schedule.actor:Practitioner.identifier=urn:oid:1.2.250.1.71.4.2.1|8<RPPS>[,…]&status=free&_include=Slot:schedule&_include:iterate=Schedule:actor``
    individual practitioners (1–25 ids, ``|`` plain or ``%7C``); with
    ``_include=Slot:service-type-reference`` (and
    ``_include:iterate=HealthcareService:organization``) the CPTS variant:
    CPTS profiles, CPTS-visible slots with their 604 ``serviceType`` entries,
    HealthcareServices and CPTS Organizations.  Without it, CPTS-only slots are
    left out and the ``CPTS`` code is not sent.
``GET [base]/Schedule?actor:Location.organization.identifier=urn:oid:1.2.250.1.71.4.2.2|3<SIRET>[,…]&_has:Slot:schedule:start=ge…&_has:Slot:schedule:start=le…&_has:Slot:schedule:status=free&_revinclude=Slot:schedule&_include=Schedule:actor:Location&_include:iterate=Location:organization``
    SOS Médecins associations by SIRET.
``GET [base]/metadata``
    a CapabilityStatement.

Answers: a ``searchset`` Bundle whose ``total`` is the number of Slots, with a
``self`` link repeating the request as sent, ``fullUrl`` on every entry, one
exact ``meta.profile`` on every resource, times
``YYYY-MM-DDTHH:MM:SS.sss±HH:MM`` (Europe/Paris), E.164 phones, no empty
element; unknown ids give an empty Bundle (total 0); a malformed query (a
missing or unreadable date bound, no id, more than 25 ids, an id that is not
a prefixed national id, ``status`` other than ``free``) gives 400 with an
OperationOutcome.  Date bounds may be naive (Paris time) or carry an offset
(``+`` sent raw arrives as a space: it is read back), with or without
milliseconds; slots are offered from now to now + 72 h.  ``_count`` is
accepted and ignored: the guide defines no paging, the answer is one page.

Slot ``comment`` is the booking page ``{simulator}/vendors/{name}/book?slot=ID``;
the SAS platform appends ``&origin=…``.  ``GET`` shows the slot and a confirm
form (without ``origin``: 401, a login page, as a vendor agenda outside the
SAS flow); ``POST`` (same URL, or ``slot`` / ``origin`` in a form body) books
it: it leaves the searches, and ``GET /_bookings`` lists it with its origin.
"""

from __future__ import annotations

import html
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, time, timedelta
from functools import partial
from typing import Any
from urllib.parse import parse_qs, quote

from sas_desk.models.slots import (
    CATEGORY_CDS,
    CATEGORY_CPTS,
    CATEGORY_MSP,
    EXT_SLOT_SERVICE_TYPE,
    OID_IDNAT_PS,
    OID_IDNAT_STRUCT,
    PROFILES,
    SYSTEM_ACT_CODE,
    SYSTEM_APPOINTMENT_TYPE,
    SYSTEM_SLOT_TYPE,
    SYSTEM_SPECIALTY,
    SYSTEM_STRUCTURE_CATEGORY,
    ProfileFamily,
)
from sas_desk.simulator.faults import FaultBoard, FaultSyntaxError, parse_faults
from sas_desk.simulator.offer import PARIS, Offer, Pfg, Place, Practitioner, SimSlot, Structure
from sas_desk.simulator.server import (
    AbortConnection,
    Query,
    Request,
    Response,
    json_response,
)

__all__ = [
    "FHIR_CONTENT_TYPE",
    "MAX_IDS",
    "QueryError",
    "admin_change",
    "fhir_instant",
    "fhir_response",
    "make_admin_handler",
    "make_bookings_handler",
    "make_meta_handler",
    "make_vendor_handler",
    "operation_outcome",
    "parse_bound",
    "with_faults",
]

FHIR_CONTENT_TYPE = "application/fhir+json; charset=utf-8"
HTML_CONTENT_TYPE = "text/html; charset=utf-8"
#: Ids per request: the guide allows 1 to 25.
MAX_IDS = 25

SYSTEM_ID_TYPE = "http://interopsante.org/fhir/CodeSystem/fr-v2-0203"
SYSTEM_ID_TYPE_CORE = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
SYSTEM_LOCATION_ID_TYPE = "http://interopsante.org/fhir/CodeSystem/fr-location-identifier-type"
SYSTEM_PROFESSION = (
    "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
)

_PROFILE: dict[tuple[str, ProfileFamily], str] = {
    (rtype, family): url for url, (rtype, family) in PROFILES.items()
}
for _rtype in ("Schedule", "Practitioner", "PractitionerRole", "Location"):
    # the CPTS answer reuses the PS profiles for these (as the guide's example)
    _PROFILE[(_rtype, ProfileFamily.CPTS)] = _PROFILE[(_rtype, ProfileFamily.PS)]


def _profile(rtype: str, family: ProfileFamily) -> dict[str, list[str]]:
    return {"profile": [_PROFILE[(rtype, family)]]}


# --------------------------------------------------------------------------- FHIR helpers


def fhir_instant(dt: datetime) -> str:
    """``2026-03-10T14:30:00.000+01:00`` (Europe/Paris offset)."""
    return dt.astimezone(PARIS).isoformat(timespec="milliseconds")


def fhir_response(status: int, resource: Any, headers: Mapping[str, str] | None = None) -> Response:
    body = json.dumps(resource, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    all_headers = {"Content-Type": FHIR_CONTENT_TYPE}
    if headers:
        all_headers.update(headers)
    return status, all_headers, body


def operation_outcome(status: int, text_fr: str, code: str = "invalid") -> Response:
    """An error answer: an OperationOutcome whose ``details.text`` is shown to users."""
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error" if status < 500 else "fatal",
                "code": code,
                "details": {"text": text_fr},
            }
        ],
    }
    return fhir_response(status, outcome)


class QueryError(ValueError):
    """A malformed search: answered 400 with this (French) text."""


def with_faults(
    board: FaultBoard, target: str, request: Request, produce: Callable[[], Response]
) -> Response:
    """Run *produce* under the faults configured for *target* plus the
    request's ``_fault`` (see :mod:`sas_desk.simulator.faults`)."""
    raw = request.query.get("_fault")
    try:
        query_spec = parse_faults(",".join(raw)) if raw else None
    except FaultSyntaxError as exc:
        return operation_outcome(400, f"Paramètre _fault invalide : {exc}")
    spec = board.get(target)
    if query_spec is not None:
        spec = spec.combine(query_spec)
    if not spec.active:
        return produce()
    if spec.hang:
        request.pause(None)
        raise AbortConnection
    delay = spec.latency_s(board.rng(target))
    if delay > 0 and not request.pause(delay):
        raise AbortConnection
    if spec.error_rate and board.draw(target) < spec.error_rate:
        return operation_outcome(
            spec.error_status, "Erreur simulée du serveur de l'éditeur.", "exception"
        )
    status, headers, body = produce()
    if spec.broken_json:
        body = body[: max(1, len(body) // 2)]
    if spec.oversized_mb:
        target_size = int(spec.oversized_mb * 1024 * 1024)
        if len(body) < target_size:
            body = body + b" " * (target_size - len(body))
    return status, headers, body


# --------------------------------------------------------------------------- query parsing


def _first(query: Query, name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _parse_datetime(text: str, upper: bool) -> datetime:
    raw = text.strip().replace(" ", "+")  # a raw "+" in a query string decodes as a space
    if len(raw) == 10:
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            raise QueryError(f"date illisible : « {text} »") from None
        bound = datetime.combine(day, time.max if upper else time.min, tzinfo=PARIS)
        return bound
    if len(raw) < 16 or raw[10] not in "Tt":
        raise QueryError(f"date illisible : « {text} »")
    if raw[-1:] in ("Z", "z"):
        raw = raw[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise QueryError(f"date illisible : « {text} »") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=PARIS)
    return value


def parse_bound(values: Iterable[str], name: str) -> tuple[datetime, datetime]:
    """The ``ge``/``gt`` and ``le``/``lt`` bounds of a repeated date parameter."""
    lower: datetime | None = None
    upper: datetime | None = None
    for value in values:
        prefix, rest = value[:2].lower(), value[2:]
        if prefix in ("ge", "gt"):
            bound = _parse_datetime(rest, upper=False)
            if prefix == "gt":
                bound += timedelta(microseconds=1)
            lower = bound if lower is None else max(lower, bound)
        elif prefix in ("le", "lt"):
            bound = _parse_datetime(rest, upper=True)
            if prefix == "lt":
                bound -= timedelta(microseconds=1)
            upper = bound if upper is None else min(upper, bound)
        else:
            raise QueryError(f"{name} : préfixe ge ou le attendu (« {value} »)")
    if lower is None or upper is None:
        raise QueryError(f"{name} : les deux bornes sont obligatoires ({name}=ge… et {name}=le…)")
    if lower > upper:
        raise QueryError(f"{name} : la borne basse est après la borne haute")
    return lower, upper


def _identifiers(query: Query, name: str, system: str, pattern: Callable[[str], bool]) -> list[str]:
    values = query.get(name)
    if not values or not any(v.strip() for v in values):
        raise QueryError(f"paramètre {name} obligatoire")
    ids: list[str] = []
    for value in values:
        for token in value.split(","):
            token = token.strip()
            if not token:
                raise QueryError(f"{name} : identifiant vide")
            if "|" in token:
                token_system, _, token_value = token.partition("|")
                if token_system and token_system != system:
                    raise QueryError(f"{name} : système d'identifiant inattendu « {token_system} »")
            else:
                token_value = token
            if not pattern(token_value):
                raise QueryError(f"{name} : identifiant mal formé « {token_value} »")
            if token_value not in ids:
                ids.append(token_value)
    if len(ids) > MAX_IDS:
        raise QueryError(f"{name} : {len(ids)} identifiants, {MAX_IDS} au plus par requête")
    return ids


def _ps_id(value: str) -> bool:
    return (len(value) == 12 and value[0] == "8" and value.isdigit()) or (
        len(value) == 10 and value[0] == "0" and value.isalnum()
    )


def _siret_id(value: str) -> bool:
    return len(value) == 15 and value[0] == "3" and value.isdigit()


def _check_status(query: Query, name: str) -> None:
    for value in query.get(name, ()):
        if value.strip() != "free":
            raise QueryError(f"{name} : seule la valeur « free » est prise en charge")


def _check_count(query: Query) -> None:
    raw = _first(query, "_count")
    if raw is not None and not raw.strip().isdigit():
        raise QueryError("_count doit être un entier positif")


# --------------------------------------------------------------------------- resources


class _Render:
    """Builds the resources of one answer (one vendor, one request)."""

    def __init__(self, offer: Offer, vendor: str, origin: str, family: ProfileFamily) -> None:
        self.offer = offer
        self.vendor = vendor
        self.origin = origin
        self.family = family
        self.base = f"{origin}/vendors/{vendor}/fhir"
        self.intrn_system = f"https://sas-desk.fr/simulateur/{vendor}/lieu"

    def entry(self, resource: dict[str, Any], mode: str) -> dict[str, Any]:
        return {
            "fullUrl": f"{self.base}/{resource['resourceType']}/{resource['id']}",
            "resource": resource,
            "search": {"mode": mode},
        }

    def slot(self, slot: SimSlot, specialty: dict[str, Any] | None) -> dict[str, Any] | None:
        cpts_variant = self.family is ProfileFamily.CPTS
        types = slot.types if cpts_variant else tuple(t for t in slot.types if t != "CPTS")
        if not types:
            return None
        service_type: list[dict[str, Any]] = [
            {"coding": [{"system": SYSTEM_ACT_CODE, "code": mode}]} for mode in slot.modes
        ]
        if cpts_variant and "CPTS" in slot.types:
            for cpts in slot.cpts:
                service_type.append(
                    {
                        "extension": [
                            {
                                "url": EXT_SLOT_SERVICE_TYPE,
                                "valueReference": {
                                    "reference": f"HealthcareService/{cpts.healthcare_service_id}"
                                },
                            }
                        ],
                        "coding": [{"system": SYSTEM_STRUCTURE_CATEGORY, "code": CATEGORY_CPTS}],
                    }
                )
        service_type.extend({"text": reason} for reason in slot.reasons)
        resource: dict[str, Any] = {
            "resourceType": "Slot",
            "id": slot.id,
            "meta": {
                **_profile("Slot", self.family),
                "security": [{"system": SYSTEM_SLOT_TYPE, "code": t} for t in types],
            },
            "serviceType": service_type,
        }
        if specialty is not None:
            resource["specialty"] = [specialty]
        resource["appointmentType"] = {
            "coding": [{"system": SYSTEM_APPOINTMENT_TYPE, "code": slot.appointment_type}]
        }
        resource["schedule"] = {"reference": f"Schedule/{slot.schedule_id}"}
        resource["status"] = "free"
        resource["start"] = fhir_instant(slot.start)
        resource["end"] = fhir_instant(slot.end)
        resource["comment"] = (
            f"{self.origin}/vendors/{self.vendor}/book?slot={quote(slot.id, safe='')}"
        )
        return resource

    def schedule(self, place: Place) -> dict[str, Any]:
        return {
            "resourceType": "Schedule",
            "id": place.schedule_id,
            "meta": _profile("Schedule", self.family),
            "actor": [
                {"reference": f"Practitioner/{place.practitioner.id}"},
                {"reference": f"PractitionerRole/{place.id}"},
            ],
        }

    def practitioner(self, p: Practitioner) -> dict[str, Any]:
        return {
            "resourceType": "Practitioner",
            "id": p.id,
            "meta": _profile("Practitioner", self.family),
            "identifier": [
                {
                    "type": {"coding": [{"system": SYSTEM_ID_TYPE, "code": "IDNPS"}]},
                    "system": OID_IDNAT_PS,
                    "value": p.national_id,
                }
            ],
            "name": [{"family": p.family, "given": [p.given]}],
        }

    def role(self, place: Place) -> dict[str, Any]:
        location = {
            "resourceType": "Location",
            "id": place.location_id,
            "meta": _profile("Location", self.family),
            "identifier": [
                {
                    "type": {"coding": [{"system": SYSTEM_LOCATION_ID_TYPE, "code": "INTRN"}]},
                    "system": self.intrn_system,
                    "value": place.id,
                }
            ],
            "address": {
                "line": [place.line],
                "city": place.commune.name,
                "postalCode": place.commune.postcode,
            },
            "position": {"longitude": place.lon, "latitude": place.lat},
        }
        return {
            "resourceType": "PractitionerRole",
            "id": place.id,
            "meta": _profile("PractitionerRole", self.family),
            "contained": [location],
            "practitioner": {"reference": f"Practitioner/{place.practitioner.id}"},
            "organization": {
                "identifier": {
                    "type": {"coding": [{"system": SYSTEM_ID_TYPE, "code": "IDNST"}]},
                    "system": OID_IDNAT_STRUCT,
                    "value": place.structure_national_id,
                }
            },
            "location": [{"reference": f"#{place.location_id}"}],
            "telecom": [{"system": "phone", "value": place.phone}],
        }

    def healthcare_service(self, cpts: Structure) -> dict[str, Any]:
        return {
            "resourceType": "HealthcareService",
            "id": cpts.healthcare_service_id,
            "meta": _profile("HealthcareService", ProfileFamily.CPTS),
            "providedBy": {"reference": f"Organization/{cpts.id}"},
            "name": cpts.name,
        }

    def cpts_organization(self, cpts: Structure) -> dict[str, Any]:
        return {
            "resourceType": "Organization",
            "id": cpts.id,
            "meta": _profile("Organization", ProfileFamily.CPTS),
            "identifier": [
                {
                    "type": {"coding": [{"system": SYSTEM_ID_TYPE_CORE, "code": "IDNST"}]},
                    "system": OID_IDNAT_STRUCT,
                    "value": cpts.national_id,
                }
            ],
            "name": cpts.name,
            "telecom": [{"system": "phone", "value": cpts.phone}],
        }

    def sos_schedule(self, pfg: Pfg) -> dict[str, Any]:
        return {
            "resourceType": "Schedule",
            "id": pfg.schedule_id,
            "meta": _profile("Schedule", ProfileFamily.SOS),
            "actor": [{"reference": f"Location/{pfg.id}"}],
        }

    def sos_location(self, pfg: Pfg) -> dict[str, Any]:
        return {
            "resourceType": "Location",
            "id": pfg.id,
            "meta": _profile("Location", ProfileFamily.SOS),
            "identifier": [
                {
                    "type": {"coding": [{"system": SYSTEM_LOCATION_ID_TYPE, "code": "INTRN"}]},
                    "system": self.intrn_system,
                    "value": pfg.id,
                }
            ],
            "status": "active",
            "name": pfg.name,
            "telecom": [{"system": "phone", "value": pfg.phone}],
            "address": {
                "line": [pfg.line],
                "city": pfg.commune.name,
                "postalCode": pfg.commune.postcode,
            },
            "position": {"longitude": pfg.lon, "latitude": pfg.lat},
            "managingOrganization": {"reference": f"Organization/{pfg.association.id}"},
            "hoursOfOperation": [
                {
                    "daysOfWeek": list(pfg.days),
                    "openingTime": pfg.opening.isoformat(timespec="seconds"),
                    "closingTime": pfg.closing.isoformat(timespec="seconds"),
                }
            ],
        }

    def sos_organization(self, association: Structure) -> dict[str, Any]:
        return {
            "resourceType": "Organization",
            "id": association.id,
            "meta": _profile("Organization", ProfileFamily.SOS),
            "identifier": [
                {
                    "type": {"coding": [{"system": SYSTEM_LOCATION_ID_TYPE, "code": "IDNST"}]},
                    "system": OID_IDNAT_STRUCT,
                    "value": association.national_id,
                }
            ],
            "name": association.name,
            "telecom": [{"system": "phone", "value": association.phone}],
        }

    def bundle(self, request: Request, entries: list[dict[str, Any]], total: int) -> dict[str, Any]:
        url = f"{request.origin}{request.path}"
        if request.raw_query:
            url += "?" + request.raw_query
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "meta": _profile("Bundle", self.family),
            "type": "searchset",
            "total": total,
            "link": [{"relation": "self", "url": url}],
        }
        if entries:
            bundle["entry"] = entries
        return bundle


def _specialty(p: Practitioner) -> dict[str, Any]:
    if p.specialty is None:
        return {"text": "Chirurgie dentaire"}  # text-only, as the guide tolerates
    return {"coding": [{"system": SYSTEM_SPECIALTY, "code": p.specialty}]}


_GP_SPECIALTY: dict[str, Any] = {"coding": [{"system": SYSTEM_SPECIALTY, "code": "SM54"}]}


# --------------------------------------------------------------------------- searches


def _slot_search(offer: Offer, vendor: str, request: Request) -> Response:
    query = request.query
    lower, upper = parse_bound(query.get("start", ()), "start")
    ids = _identifiers(query, "schedule.actor:Practitioner.identifier", OID_IDNAT_PS, _ps_id)
    _check_status(query, "status")
    _check_count(query)
    includes = set(query.get("_include", ())) | set(query.get("_include:iterate", ()))
    cpts_variant = "Slot:service-type-reference" in includes
    family = ProfileFamily.CPTS if cpts_variant else ProfileFamily.PS
    render = _Render(offer, vendor, request.origin, family)
    with_schedule = "Slot:schedule" in includes
    with_actors = "Schedule:actor" in includes
    with_org = "HealthcareService:organization" in includes

    slots: list[bytes] = []
    places: list[Place] = []
    services: dict[str, Structure] = {}
    for national_id in ids:
        p = offer.practitioner(national_id)
        if p is None or p.vendor != vendor:
            continue  # unknown here: nothing, not an error
        specialty = _specialty(p)
        for place in p.places:
            found = False
            for slot in offer.slots_for(place.schedule_id, lower, upper):
                encoded = _slot_entry(render, slot, specialty)
                if encoded is None:
                    continue
                found = True
                slots.append(encoded)
                if cpts_variant:
                    for cpts in slot.cpts:
                        services.setdefault(cpts.id, cpts)
            if found:
                places.append(place)

    total = len(slots)
    included: list[bytes] = []
    if with_schedule:
        included.extend(
            _include(render, "Schedule", place.schedule_id, partial(render.schedule, place))
            for place in places
        )
        if with_actors:
            seen: set[str] = set()
            for place in places:
                who = place.practitioner
                if who.id not in seen:
                    seen.add(who.id)
                    included.append(
                        _include(render, "Practitioner", who.id, partial(render.practitioner, who))
                    )
            included.extend(
                _include(render, "PractitionerRole", place.schedule_id, partial(render.role, place))
                for place in places
            )
    if cpts_variant and services:
        included.extend(
            _include(render, "HealthcareService", c.id, partial(render.healthcare_service, c))
            for c in services.values()
        )
        if with_org:
            included.extend(
                _include(render, "Organization", c.id, partial(render.cpts_organization, c))
                for c in services.values()
            )
    slots.extend(included)
    return _spliced_response(render.bundle(request, [], total), slots)


# A slot's entry never changes (a booked slot is simply no longer listed),
# nor do the schedules, practitioners, roles and CPTS it brings along: their
# JSON is encoded once per answer form (origin, vendor, profile family) and
# reused, so that the simulator's own CPU stays small next to the latency a
# test or a benchmark asks of it (it shares the machine with the client).
_ENTRY_CACHE: dict[tuple[str, str, str], bytes | None] = {}
_ENTRY_CACHE_MAX = 400_000
_ENTRY_LOCK = threading.Lock()


def _encoded(
    render: _Render, key: str, mode: str, build: Callable[[], dict[str, Any] | None]
) -> bytes | None:
    """An entry of ``mode`` ("match", "include") built by ``build`` and
    encoded once per answer form; ``None`` when there is no such entry."""
    cache_key = (render.base, render.family.value, key)
    try:
        return _ENTRY_CACHE[cache_key]
    except KeyError:
        pass
    resource = build()
    encoded = (
        None
        if resource is None
        else json.dumps(
            render.entry(resource, mode), ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8")
    )
    with _ENTRY_LOCK:
        if len(_ENTRY_CACHE) >= _ENTRY_CACHE_MAX:
            _ENTRY_CACHE.clear()
        _ENTRY_CACHE[cache_key] = encoded
    return encoded


def _slot_entry(render: _Render, slot: SimSlot, specialty: dict[str, Any]) -> bytes | None:
    return _encoded(render, slot.id, "match", partial(render.slot, slot, specialty))


def _include(render: _Render, kind: str, key: str, build: Callable[[], dict[str, Any]]) -> bytes:
    """An ``include`` entry (schedule, practitioner, role, CPTS…), encoded once."""
    encoded = _encoded(render, f"{kind}/{key}", "include", build)
    assert encoded is not None
    return encoded


def _spliced_response(bundle: dict[str, Any], first: list[bytes]) -> Response:
    """The Bundle's JSON with the pre-encoded entries ``first`` ahead of its own."""
    if not first:
        return fhir_response(200, bundle)
    rest = bundle.pop("entry", [])
    head = json.dumps(bundle, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    parts = [*first]
    parts.extend(
        json.dumps(e, ensure_ascii=False, separators=(",", ":")).encode("utf-8") for e in rest
    )
    body = head[:-1] + b',"entry":[' + b",".join(parts) + b"]}"
    return 200, {"Content-Type": FHIR_CONTENT_TYPE}, body


def _schedule_search(offer: Offer, vendor: str, request: Request) -> Response:
    query = request.query
    lower, upper = parse_bound(
        query.get("_has:Slot:schedule:start", ()), "_has:Slot:schedule:start"
    )
    sirets = _identifiers(
        query, "actor:Location.organization.identifier", OID_IDNAT_STRUCT, _siret_id
    )
    _check_status(query, "_has:Slot:schedule:status")
    _check_count(query)
    includes = set(query.get("_include", ())) | set(query.get("_include:iterate", ()))
    with_slots = "Slot:schedule" in query.get("_revinclude", ())
    with_location = bool(includes & {"Schedule:actor:Location", "Schedule:actor"})
    with_org = "Location:organization" in includes
    render = _Render(offer, vendor, request.origin, ProfileFamily.SOS)

    schedules: list[dict[str, Any]] = []
    slots: list[dict[str, Any]] = []
    matched: list[Pfg] = []
    for siret in sirets:
        association = offer.sos_association(siret)
        if association is None or association.vendor != vendor:
            continue
        for pfg in offer.pfgs_of(association):
            found = [
                render.slot(slot, _GP_SPECIALTY)
                for slot in offer.slots_for(pfg.schedule_id, lower, upper)
            ]
            kept = [s for s in found if s is not None]
            if not kept:
                continue  # _has: only schedules with a free slot in the window
            matched.append(pfg)
            schedules.append(render.sos_schedule(pfg))
            slots.extend(kept)
    entries = [render.entry(s, "match") for s in schedules]
    if with_slots:
        entries.extend(render.entry(s, "include") for s in slots)
    if with_location:
        entries.extend(render.entry(render.sos_location(pfg), "include") for pfg in matched)
        if with_org:
            seen: dict[str, Structure] = {}
            for pfg in matched:
                seen.setdefault(pfg.association.id, pfg.association)
            entries.extend(
                render.entry(render.sos_organization(a), "include") for a in seen.values()
            )
    return fhir_response(200, render.bundle(request, entries, len(slots) if with_slots else 0))


def _capability_statement(offer: Offer, vendor: str, request: Request) -> Response:
    label = offer.vendor(vendor)
    statement = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-01-01",
        "publisher": label.label if label else vendor,
        "kind": "instance",
        "software": {"name": "SAS Desk simulator"},
        "implementation": {
            "description": f"Simulateur d'éditeur d'agenda {label.label if label else vendor}",
            "url": f"{request.origin}/vendors/{vendor}/fhir",
        },
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "resource": [
                    {
                        "type": "Slot",
                        "interaction": [{"code": "search-type"}],
                        "searchInclude": [
                            "Slot:schedule",
                            "Schedule:actor",
                            "Slot:service-type-reference",
                            "HealthcareService:organization",
                        ],
                        "searchParam": [
                            {"name": "start", "type": "date"},
                            {"name": "status", "type": "token"},
                            {"name": "schedule.actor:Practitioner.identifier", "type": "token"},
                        ],
                    },
                    {
                        "type": "Schedule",
                        "interaction": [{"code": "search-type"}],
                        "searchInclude": ["Schedule:actor:Location", "Location:organization"],
                        "searchRevInclude": ["Slot:schedule"],
                        "searchParam": [
                            {"name": "actor:Location.organization.identifier", "type": "token"},
                        ],
                    },
                ],
            }
        ],
    }
    return fhir_response(200, statement)


# --------------------------------------------------------------------------- booking pages


def _page(status: int, title: str, body: str) -> Response:
    text = (
        '<!DOCTYPE html>\n<html lang="fr"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )
    return status, {"Content-Type": HTML_CONTENT_TYPE}, text.encode("utf-8")


def _describe(offer: Offer, slot: SimSlot) -> str:
    owner = offer.schedule_owner(slot.schedule_id)
    start = slot.start.astimezone(PARIS)
    minutes = int((slot.end - slot.start).total_seconds() // 60)
    when = f"le {start:%d/%m/%Y} à {start:%H:%M} ({minutes} min)"
    if isinstance(owner, Place):
        who = f"Dr {owner.practitioner.given} {owner.practitioner.family}"
        where = f"{owner.line}, {owner.commune.postcode} {owner.commune.name}"
    elif isinstance(owner, Pfg):
        who = owner.name
        where = f"{owner.line}, {owner.commune.postcode} {owner.commune.name}"
    else:
        who = where = ""
    return f"<p>{html.escape(who)}</p><p>{html.escape(where)}</p><p>Créneau {html.escape(when)}</p>"


def _booking(offer: Offer, vendor: str, request: Request) -> Response:
    params: dict[str, list[str]] = {k: list(v) for k, v in request.query.items()}
    if request.method == "POST" and request.body:
        try:
            form = parse_qs(request.body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            form = {}
        for key, values in form.items():
            params.setdefault(key, values)
    slot_id = (_first(params, "slot") or "").strip()
    origin = (_first(params, "origin") or "").strip()
    if not origin:
        return _page(
            401,
            "Connexion requise",
            "<p>Identifiez-vous pour accéder à l'agenda (accès régulateur via le SAS uniquement).</p>",
        )
    slot = offer.find_slot(slot_id) if slot_id else None
    owner = offer.schedule_owner(slot.schedule_id) if slot is not None else None
    serves = (
        isinstance(owner, Place)
        and owner.practitioner.vendor == vendor
        and owner.practitioner.active
    ) or (isinstance(owner, Pfg) and owner.association.vendor == vendor)
    if slot is None or not serves:
        return _page(404, "Créneau introuvable", "<p>Ce créneau n'existe pas dans cet agenda.</p>")
    if offer.is_booked(slot.id) or slot.start < offer.now():
        return _page(409, "Créneau indisponible", "<p>Ce créneau n'est plus disponible.</p>")
    if request.method == "GET":
        action = (
            f"book?slot={quote(slot.id, safe='')}&amp;origin={html.escape(quote(origin, safe=''))}"
        )
        confirm = (
            f'<form method="post" action="{action}">'
            f'<input type="hidden" name="slot" value="{html.escape(slot.id)}">'
            f'<input type="hidden" name="origin" value="{html.escape(origin)}">'
            '<button type="submit">Confirmer le rendez-vous</button></form>'
        )
        return _page(200, "Prendre ce rendez-vous", _describe(offer, slot) + confirm)
    record = offer.book(slot.id, origin, vendor)
    if record is None:
        return _page(409, "Créneau indisponible", "<p>Ce créneau vient d'être réservé.</p>")
    return _page(200, "Rendez-vous confirmé", _describe(offer, slot))


# --------------------------------------------------------------------------- handlers


def make_vendor_handler(offer: Offer, faults: FaultBoard) -> Callable[[Query, Request], Response]:
    """``/vendors/{name}/fhir/…`` and ``/vendors/{name}/book``."""

    def handle(query: Query, request: Request) -> Response:
        del query
        parts = [p for p in request.path.split("/") if p]
        # ["vendors", name, "fhir", Type] or ["vendors", name, "book"]
        if len(parts) < 3 or offer.vendor(parts[1]) is None:
            return operation_outcome(404, "Éditeur inconnu du simulateur.", "not-found")
        vendor = parts[1]
        if parts[2] == "book" and len(parts) == 3:
            return _booking(offer, vendor, request)
        if parts[2] != "fhir" or len(parts) != 4:
            return operation_outcome(404, "Ressource inconnue.", "not-found")
        if request.method != "GET":
            return operation_outcome(
                405, "Seule la recherche (GET) est prise en charge.", "not-supported"
            )
        kind = parts[3]
        searches = {
            "Slot": _slot_search,
            "Schedule": _schedule_search,
            "metadata": _capability_statement,
        }
        search = searches.get(kind)
        if search is None:
            return operation_outcome(
                404, f"Type de ressource non pris en charge : {kind}", "not-supported"
            )

        def produce() -> Response:
            offer.ensure_built()
            try:
                return search(offer, vendor, request)
            except QueryError as exc:
                return operation_outcome(400, f"Requête invalide : {exc}")

        return with_faults(faults, vendor, request, produce)

    return handle


def make_meta_handler(offer: Offer) -> Callable[[Query, Request], Response]:
    """``/_meta`` (the vendors), ``/_meta/directory``, ``/_meta/fixtures``, ``/_meta/offer``."""

    def handle(query: Query, request: Request) -> Response:
        del query
        offer.ensure_built()
        origin = request.origin
        sub = request.path.rstrip("/").removeprefix("/_meta").strip("/")
        if sub == "directory":
            return json_response(200, {"base_url": f"{origin}/directory"})
        if sub == "fixtures":
            fx = offer.fixtures
            return json_response(
                200,
                {
                    "vendor": fx.vendor,
                    "base_url": f"{origin}/vendors/{fx.vendor}/fhir",
                    "single_place": fx.single_place,
                    "two_places": fx.two_places,
                    "multi": list(fx.multi),
                    "cpts": fx.cpts,
                    "cpts_only": fx.cpts_only,
                    "en_sus": fx.en_sus,
                    "sos_vendor": fx.sos_vendor,
                    "sos_base_url": f"{origin}/vendors/{fx.sos_vendor}/fhir",
                    "sos_siret": fx.sos_siret,
                },
            )
        if sub == "offer":
            return json_response(
                200, {"counts": offer.counts(), "build_seconds": offer.build_seconds}
            )
        if sub:
            return json_response(404, {"code": 404, "message": f"no route for {request.path}"})
        vendors = []
        for v in offer.vendors:
            members = offer.practitioners_of(v.name)
            vendors.append(
                {
                    "name": v.name,
                    "base_url": f"{origin}/vendors/{v.name}/fhir",
                    "practitioner_ids": [p.national_id for p in members],
                    "sos_sirets": [s.national_id for s in offer.sos_of(v.name)],
                    "cpts_practitioner_ids": [p.national_id for p in members if p.cpts],
                }
            )
        return json_response(200, vendors)

    return handle


def make_bookings_handler(offer: Offer) -> Callable[[Query, Request], Response]:
    def handle(query: Query, request: Request) -> Response:
        del query, request
        return json_response(200, offer.bookings)

    return handle


def admin_change(offer: Offer, change: Mapping[str, Any]) -> None:
    """Apply one territory change (``POST /_admin/directory`` body):

    - ``{"op": "rename", "practitioner": "8…", "family": "…", "given": "…"}``
    - ``{"op": "set-en-sus", "practitioner": "8…", "phone": "+33…" | null}``
    - ``{"op": "deactivate-place", "role": "r…-1"}``
    - ``{"op": "remove-practitioner", "practitioner": "8…"}``

    Raises ``KeyError`` for an unknown practitioner or role, ``ValueError`` for
    a malformed change."""
    op = change.get("op")
    if op == "rename":
        family = change.get("family")
        given = change.get("given")
        if not isinstance(family, str) or not family.strip():
            raise ValueError("rename needs a family name")
        if given is not None and not isinstance(given, str):
            raise ValueError("given must be a string")
        offer.rename(str(change.get("practitioner")), family.strip(), given)
    elif op == "set-en-sus":
        phone = change.get("phone")
        if phone is not None and not isinstance(phone, str):
            raise ValueError("phone must be a string or null")
        offer.set_en_sus(str(change.get("practitioner")), phone)
    elif op == "deactivate-place":
        offer.deactivate_place(str(change.get("role")))
    elif op == "remove-practitioner":
        offer.remove_practitioner(str(change.get("practitioner")))
    else:
        raise ValueError(f"unknown op {op!r}")


def make_admin_handler(offer: Offer) -> Callable[[Query, Request], Response]:
    def handle(query: Query, request: Request) -> Response:
        del query
        try:
            change = json.loads(request.body or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError):
            return json_response(400, {"code": 400, "message": "body is not JSON"})
        if not isinstance(change, dict):
            return json_response(400, {"code": 400, "message": "a JSON object is expected"})
        offer.ensure_built()
        try:
            admin_change(offer, change)
        except KeyError as exc:
            return json_response(404, {"code": 404, "message": f"unknown: {exc.args[0]}"})
        except ValueError as exc:
            return json_response(400, {"code": 400, "message": str(exc)})
        return json_response(200, {"ok": True})

    return handle


# structure kinds → TRE-R66 category (used by the directory)
STRUCTURE_CATEGORY = {"CPTS": CATEGORY_CPTS, "MSP": CATEGORY_MSP, "CDS": CATEGORY_CDS}
