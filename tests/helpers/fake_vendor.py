"""A scriptable scheduling vendor for the search engine's tests: it answers
the guide's Slot/Schedule queries with real searchset Bundles, through
``httpx.MockTransport`` (no socket), and lets the test hold, fail or break
each request.  The real loopback simulator is tested separately."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from sas_desk.models.geo import distance_km
from sas_desk.models.search import Candidate, CandidateKind, Volunteer
from sas_desk.models.slots import SYSTEM_ACT_CODE, SYSTEM_SLOT_TYPE
from sas_desk.services.config import VendorEndpoint
from sas_desk.services.fhir.vendor import VendorClient

PS_OID = "urn:oid:1.2.250.1.71.4.2.1|"
ST_OID = "urn:oid:1.2.250.1.71.4.2.2|"


@dataclass
class Place:
    national_id: str  # 8RPPS, or 3SIRET for SOS
    lat: float
    lon: float
    starts: list[datetime]
    sas: bool = False
    cpts: bool = False
    kind: CandidateKind = CandidateKind.PRACTITIONER
    far_place: tuple[float, float] | None = None  # a second place, with the same slots


def _slot(n: str, schedule: str, start: datetime) -> dict[str, Any]:
    return {
        "resourceType": "Slot",
        "id": n,
        "meta": {"security": [{"system": SYSTEM_SLOT_TYPE, "code": "SNP"}]},
        "serviceType": [{"coding": [{"system": SYSTEM_ACT_CODE, "code": "AMB"}]}],
        "schedule": {"reference": f"Schedule/{schedule}"},
        "status": "free",
        "start": start.isoformat(timespec="milliseconds"),
        "end": (start + timedelta(minutes=20)).isoformat(timespec="milliseconds"),
        "comment": f"https://agenda.example.fr/{n}",
    }


def _location(lid: str, lat: float, lon: float) -> dict[str, Any]:
    return {
        "resourceType": "Location",
        "id": lid,
        "identifier": [{"system": "urn:oid:1.1.1", "value": lid}],
        "address": {"line": ["1 place Bellecour"], "city": "LYON", "postalCode": "69002"},
        "position": {"latitude": lat, "longitude": lon},
    }


def ps_bundle(places: list[Place]) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    for p in places:
        pid = f"p{p.national_id}"
        entries.append(
            {
                "resourceType": "Practitioner",
                "id": pid,
                "identifier": [{"system": PS_OID[:-1], "value": p.national_id}],
                "name": [{"family": "TEST", "given": ["Zoé"]}],
            }
        )
        spots = [(p.lat, p.lon)] + ([p.far_place] if p.far_place else [])
        for k, (lat, lon) in enumerate(spots):
            rid, sid = f"r{p.national_id}-{k}", f"s{p.national_id}-{k}"
            entries.append(
                {
                    "resourceType": "PractitionerRole",
                    "id": rid,
                    "contained": [_location("loc", lat, lon)],
                    "practitioner": {"reference": f"Practitioner/{pid}"},
                    "location": [{"reference": "#loc"}],
                }
            )
            entries.append(
                {
                    "resourceType": "Schedule",
                    "id": sid,
                    "actor": [
                        {"reference": f"Practitioner/{pid}"},
                        {"reference": f"PractitionerRole/{rid}"},
                    ],
                }
            )
            entries += [_slot(f"{sid}-{i}", sid, t) for i, t in enumerate(p.starts)]
    return _searchset(entries)


def sos_bundle(places: list[Place]) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    for p in places:
        oid, lid, sid = f"o{p.national_id}", f"l{p.national_id}", f"s{p.national_id}"
        entries.append(
            {
                "resourceType": "Organization",
                "id": oid,
                "identifier": [{"system": ST_OID[:-1], "value": p.national_id}],
                "name": "SOS Médecins Test",
            }
        )
        loc = _location(lid, p.lat, p.lon) | {
            "name": "PFG",
            "managingOrganization": {"reference": f"Organization/{oid}"},
        }
        entries.append(loc)
        entries.append(
            {"resourceType": "Schedule", "id": sid, "actor": [{"reference": f"Location/{lid}"}]}
        )
        entries += [_slot(f"{sid}-{i}", sid, t) for i, t in enumerate(p.starts)]
    return _searchset(entries)


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": sum(r["resourceType"] == "Slot" for r in resources),
        "link": [{"relation": "self", "url": "https://vendor.example/Slot"}],
        "entry": [
            {"fullUrl": f"https://vendor.example/{r['resourceType']}/{r['id']}", "resource": r}
            for r in resources
        ],
    }


Behaviour = Callable[[httpx.Request], Awaitable[httpx.Response | None]]


@dataclass
class FakeVendor:
    """One vendor. ``before`` may hold a request (await an event), fail it
    (return a response) or let it through (return None)."""

    name: str
    places: dict[str, Place] = field(default_factory=dict)
    before: Behaviour | None = None
    requests: list[httpx.Request] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    cancelled: int = 0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.before is not None:
                response = await self.before(request)
                if response is not None:
                    return response
            params = parse_qsl(urlsplit(str(request.url)).query)
            if request.url.path.endswith("/Schedule"):
                ids = _ids(params, "actor:Location.organization.identifier", ST_OID)
                body = sos_bundle([self.places[i] for i in ids if i in self.places])
            else:
                ids = _ids(params, "schedule.actor:Practitioner.identifier", PS_OID)
                body = ps_bundle([self.places[i] for i in ids if i in self.places])
            return httpx.Response(
                200,
                content=json.dumps(body).encode(),
                headers={"content-type": "application/fhir+json"},
            )
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1

    def client(self, timeout: float = 5.0, **kw: Any) -> VendorClient:
        endpoint = VendorEndpoint(self.name, f"https://{self.name}.example/fhir", timeout=timeout)
        http = httpx.AsyncClient(transport=httpx.MockTransport(self.handle))
        return VendorClient(endpoint, http, **kw)


def _ids(params: list[tuple[str, str]], key: str, prefix: str) -> list[str]:
    values = [v for k, v in params if k == key]
    return [i.removeprefix(prefix) for v in values for i in v.split(",")]


@dataclass
class FakeDirectory:
    """Candidates for every place of every vendor, as the directory orders
    them (SAS participants first, then by distance), within the radius."""

    vendors: list[FakeVendor]
    en_sus: list[Volunteer] = field(default_factory=list)

    def candidates(
        self, lat: float, lon: float, radius_km: float, specialty: str
    ) -> list[Candidate]:
        out = []
        for v in self.vendors:
            for p in v.places.values():
                d = distance_km(lat, lon, p.lat, p.lon)
                if d <= radius_km:
                    out.append(
                        Candidate(
                            p.kind,
                            p.national_id,
                            "TEST",
                            v.name,
                            d,
                            p.lat,
                            p.lon,
                            "",
                            p.sas,
                            p.cpts,
                        )
                    )
        return sorted(out, key=lambda c: (not c.sas, c.distance_km))

    def volunteers(
        self, lat: float, lon: float, radius_km: float, specialty: str
    ) -> list[Volunteer]:
        return [v for v in self.en_sus if v.distance_km <= radius_km]
