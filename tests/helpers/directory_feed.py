"""Builders for directory feed resources and history Bundles (docs/fhir-directory.md)."""

from __future__ import annotations

from typing import Any

from sas_desk.models.directory import (
    EXT_CPTS,
    EXT_EN_SUS,
    EXT_EN_SUS_PHONE,
    EXT_SAS_PARTICIPATION,
    SYSTEM_PROFESSION,
    SYSTEM_STRUCTURE_KIND,
)
from sas_desk.models.slots import (
    OID_IDNAT_PS,
    OID_IDNAT_STRUCT,
    SYSTEM_SPECIALTY,
    SYSTEM_STRUCTURE_CATEGORY,
)

T0 = "2026-11-30T08:00:00.000+01:00"


def stamp(minute: int) -> str:
    return f"2026-11-30T08:{minute:02d}:00.000+01:00"


def endpoint(
    rid: str, name: str, address: str, *, status: str = "active", at: str = T0
) -> dict[str, Any]:
    return {
        "resourceType": "Endpoint",
        "id": rid,
        "meta": {"lastUpdated": at},
        "status": status,
        "name": name,
        "address": address,
        "connectionType": {
            "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
            "code": "hl7-fhir-rest",
        },
    }


def practitioner(
    rid: str,
    national_id: str,
    family: str | None = "Martin",
    given: tuple[str, ...] = ("Jeanne",),
    *,
    active: bool = True,
    at: str = T0,
) -> dict[str, Any]:
    name: dict[str, Any] = {}
    if family is not None:
        name["family"] = family
    if given:
        name["given"] = list(given)
    return {
        "resourceType": "Practitioner",
        "id": rid,
        "meta": {"lastUpdated": at},
        "identifier": [{"system": OID_IDNAT_PS, "value": national_id}],
        "name": [name],
        "active": active,
    }


def role(
    rid: str,
    practitioner_id: str,
    lat: float | None,
    lon: float | None,
    *,
    profession: str = "10",
    specialty: str | None = "SM54",
    endpoint_id: str | None = "ep1",
    sas: bool | None = None,
    en_sus: bool | None = None,
    en_sus_phone: str | None = None,
    cpts: tuple[str, ...] = (),
    organization: str | None = None,
    phone: str | None = "+33478000000",
    insee: str = "69123",
    active: bool = True,
    at: str = T0,
) -> dict[str, Any]:
    location: dict[str, Any] = {
        "resourceType": "Location",
        "id": "loc",
        "address": {
            "line": ["1 rue de la République"],
            "postalCode": "69001",
            "city": "Lyon",
            "district": insee,
        },
    }
    if lat is not None and lon is not None:
        location["position"] = {"latitude": lat, "longitude": lon}
    extensions: list[dict[str, Any]] = []
    if sas is not None:
        extensions.append({"url": EXT_SAS_PARTICIPATION, "valueBoolean": sas})
    if en_sus is not None:
        extensions.append({"url": EXT_EN_SUS, "valueBoolean": en_sus})
    if en_sus_phone is not None:
        extensions.append({"url": EXT_EN_SUS_PHONE, "valueString": en_sus_phone})
    for org in cpts:
        extensions.append({"url": EXT_CPTS, "valueReference": {"reference": f"Organization/{org}"}})
    resource: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "id": rid,
        "meta": {"lastUpdated": at},
        "contained": [location],
        "active": active,
        "practitioner": {"reference": f"Practitioner/{practitioner_id}"},
        "code": [{"coding": [{"system": SYSTEM_PROFESSION, "code": profession}]}],
        "location": [{"reference": "#loc"}],
    }
    if specialty is not None:
        resource["specialty"] = [{"coding": [{"system": SYSTEM_SPECIALTY, "code": specialty}]}]
    if phone is not None:
        resource["telecom"] = [{"system": "phone", "value": phone}]
    if organization is not None:
        resource["organization"] = {"reference": f"Organization/{organization}"}
    if endpoint_id is not None:
        resource["endpoint"] = [{"reference": f"Endpoint/{endpoint_id}"}]
    if extensions:
        resource["extension"] = extensions
    return resource


def organization(
    rid: str,
    national_id: str,
    kind: str,  # "604" CPTS, "603" MSP, "124" CDS, "SOS"
    name: str = "Structure",
    *,
    endpoint_id: str | None = None,
    active: bool = True,
    at: str = T0,
) -> dict[str, Any]:
    coding = (
        {"system": SYSTEM_STRUCTURE_KIND, "code": "SOS"}
        if kind == "SOS"
        else {"system": SYSTEM_STRUCTURE_CATEGORY, "code": kind}
    )
    resource: dict[str, Any] = {
        "resourceType": "Organization",
        "id": rid,
        "meta": {"lastUpdated": at},
        "identifier": [{"system": OID_IDNAT_STRUCT, "value": national_id}],
        "type": [{"coding": [coding]}],
        "name": name,
        "telecom": [{"system": "phone", "value": "04 72 00 00 00"}],
        "active": active,
    }
    if endpoint_id is not None:
        resource["endpoint"] = [{"reference": f"Endpoint/{endpoint_id}"}]
    return resource


def sos_location(
    rid: str,
    organization_id: str | None,
    lat: float,
    lon: float,
    *,
    name: str = "Point fixe de garde",
    status: str = "active",
    at: str = T0,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Location",
        "id": rid,
        "meta": {"lastUpdated": at},
        "status": status,
        "name": name,
        "address": {
            "line": ["3 place X"],
            "postalCode": "69003",
            "city": "Lyon",
            "district": "69123",
        },
        "position": {"latitude": lat, "longitude": lon},
        "telecom": [{"system": "phone", "value": "+33426000000"}],
    }
    if organization_id is not None:
        resource["managingOrganization"] = {"reference": f"Organization/{organization_id}"}
    return resource


def put(resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "fullUrl": f"https://directory.example/{resource['resourceType']}/{resource['id']}",
        "resource": resource,
        "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
    }


def delete(rtype: str, rid: str, at: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"request": {"method": "DELETE", "url": f"{rtype}/{rid}"}}
    if at is not None:
        entry["response"] = {"status": "204", "lastModified": at}
    return entry


def history(entries: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "history",
        "link": [{"relation": "self", "url": "https://directory.example/_history"}],
        "entry": entries,
    }
    if next_url is not None:
        bundle["link"].append({"relation": "next", "url": next_url})
    return bundle
