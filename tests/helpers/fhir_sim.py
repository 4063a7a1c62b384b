"""Shared helpers for the simulator tests: the SAS FHIR queries as the guide
writes them, and Bundle walking."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")
#: A Tuesday morning: office hours, the next 72 h cover three working days.
NOW = datetime(2026, 3, 10, 9, 0, tzinfo=PARIS)
LOWER = "2026-03-10T09:00:00.000+01:00"
UPPER = "2026-03-12T23:59:59.000+01:00"

PS_OID = "urn:oid:1.2.250.1.71.4.2.1"
STRUCT_OID = "urn:oid:1.2.250.1.71.4.2.2"
FHIR_ACCEPT = {"Accept": "application/json+fhir"}  # what the ANS test kit sends


def fixed_clock() -> datetime:
    return NOW


def ps_query(
    ids: Iterable[str],
    *,
    cpts: bool = False,
    pipe: str = "%7C",
    lower: str = LOWER,
    upper: str = UPPER,
    extra: str = "",
) -> str:
    """The PS (or CPTS) slot search of the guide, as a query string."""
    idents = ",".join(f"{PS_OID}{pipe}{i}" for i in ids)
    query = "_include=Slot:schedule&_include:iterate=Schedule:actor"
    if cpts:
        query += (
            "&_include=Slot:service-type-reference&_include:iterate=HealthcareService:organization"
        )
    query += f"&start=ge{lower}&start=le{upper}"
    query += f"&schedule.actor:Practitioner.identifier={idents}&status=free&_count=1000"
    return query + extra


def sos_query(
    sirets: Iterable[str], *, lower: str = LOWER, upper: str = UPPER, extra: str = ""
) -> str:
    idents = ",".join(f"{STRUCT_OID}%7C{s}" for s in sirets)
    return (
        "_revinclude=Slot:schedule&_include=Schedule:actor:Location"
        "&_include:iterate=Location:organization"
        f"&_has:Slot:schedule:start=ge{lower}&_has:Slot:schedule:start=le{upper}"
        f"&_has:Slot:schedule:status=free&actor:Location.organization.identifier={idents}"
        "&_count=1000" + extra
    )


def resources(bundle: dict[str, Any], rtype: str | None = None) -> list[dict[str, Any]]:
    return [
        e["resource"]
        for e in bundle.get("entry", [])
        if rtype is None or e["resource"]["resourceType"] == rtype
    ]


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair in a JSON tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def all_resources(bundle: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The entries' resources and the resources they contain."""
    for resource in resources(bundle):
        yield resource
        yield from resource.get("contained", [])
