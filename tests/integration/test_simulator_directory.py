"""The simulator's booking pages and its directory feed (docs/fhir-directory.md)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from sas_desk.services.fhir.bundle import parse_bundle
from sas_desk.simulator.server import Simulator
from tests.helpers.fhir_sim import fixed_clock, ps_query, resources

EXT = "https://sas-desk.fr/fhir/StructureDefinition/"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(clock=fixed_clock) as simulator:
        yield simulator


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=10) as client:
        yield client


def history(http: httpx.Client, url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """All entries following ``next``, and the pages."""
    entries: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    next_url: str | None = url
    while next_url:
        response = http.get(next_url, headers={"Accept": "application/fhir+json"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/fhir+json")
        page = response.json()
        assert page["resourceType"] == "Bundle" and page["type"] == "history"
        pages.append(page)
        entries.extend(page.get("entry", []))
        next_url = next((lk["url"] for lk in page["link"] if lk["relation"] == "next"), None)
    return entries, pages


def stamp(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(entry["response"]["lastModified"])


# --------------------------------------------------------------------------- booking


def test_booking_takes_the_slot_out_of_the_searches(sim: Simulator, http: httpx.Client) -> None:
    fx = http.get(sim.base_url + "/_meta/fixtures").json()
    query = fx["base_url"] + "/Slot?" + ps_query([fx["single_place"]])
    before = parse_bundle(http.get(query).content)
    slot = before.slots[0]
    assert slot.booking_url and slot.booking_url.startswith(sim.base_url + "/vendors/")

    anonymous = http.get(slot.booking_url)
    assert anonymous.status_code == 401 and "text/html" in anonymous.headers["content-type"]
    page = http.get(slot.booking_url + "&origin=sas")
    assert page.status_code == 200 and "<form" in page.text and 'method="post"' in page.text
    assert "Confirmer" in page.text
    assert http.get(query).json()["total"] == before.total  # a look books nothing

    booked = http.post(slot.booking_url + "&origin=sas")
    assert booked.status_code == 200 and "confirmé" in booked.text
    after = parse_bundle(http.get(query).content)
    assert slot.id not in {s.id for s in after.slots}
    assert after.total == before.total - 1
    assert http.post(slot.booking_url + "&origin=sas").status_code == 409
    assert http.get(slot.booking_url + "&origin=sas").status_code == 409

    (record,) = http.get(sim.base_url + "/_bookings").json()
    assert record["slot"] == slot.id and record["origin"] == "sas"
    assert record["practitioner"] == fx["single_place"]
    assert record["start"] == slot.start.isoformat(timespec="milliseconds")
    assert sim.bookings == [record]


def test_booking_from_the_form_body_and_unknown_slots(sim: Simulator, http: httpx.Client) -> None:
    fx = http.get(sim.base_url + "/_meta/fixtures").json()
    bundle = http.get(fx["base_url"] + "/Slot?" + ps_query([fx["multi"][0]])).json()
    slot_id = resources(bundle, "Slot")[-1]["id"]
    book = f"{sim.base_url}/vendors/{fx['vendor']}/book"
    form = http.post(book, data={"slot": slot_id, "origin": "sas-preprod"})
    assert form.status_code == 200
    assert sim.bookings[0]["origin"] == "sas-preprod"
    assert http.get(f"{book}?slot=nope-202603101000&origin=sas").status_code == 404
    other = "hygie" if fx["vendor"] != "hygie" else "epione"
    wrong_vendor = f"{sim.base_url}/vendors/{other}/book?slot={resources(bundle, 'Slot')[0]['id']}"
    assert http.get(wrong_vendor + "&origin=sas").status_code == 404


# --------------------------------------------------------------------------- directory


def test_directory_feed_pages_and_resources(sim: Simulator, http: httpx.Client) -> None:
    entries, pages = history(http, sim.base_url + "/directory/_history?_count=700")
    assert len(pages) > 2
    assert all(len(p.get("entry", [])) <= 700 for p in pages)
    assert pages[0]["total"] == len(entries)
    assert "next" not in {lk["relation"] for lk in pages[-1]["link"]}
    keys = [e["request"]["url"] for e in entries]
    assert len(keys) == len(set(keys))
    order = [(stamp(e), e["resource"]["resourceType"], e["resource"]["id"]) for e in entries]
    assert order == sorted(order)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        resource = entry["resource"]
        assert entry["request"] == {
            "method": "PUT",
            "url": f"{resource['resourceType']}/{resource['id']}",
        }
        assert resource["meta"]["lastUpdated"] == entry["response"]["lastModified"]
        by_type.setdefault(resource["resourceType"], []).append(resource)

    meta = http.get(sim.base_url + "/_meta").json()
    endpoints = {e["id"]: e for e in by_type["Endpoint"]}
    assert {e["address"] for e in endpoints.values()} == {v["base_url"] for v in meta}
    assert all(e["connectionType"]["code"] == "hl7-fhir-rest" for e in endpoints.values())
    practitioners = {p["id"]: p for p in by_type["Practitioner"]}
    ids = {p["identifier"][0]["value"] for p in practitioners.values()}
    assert ids == {i for v in meta for i in v["practitioner_ids"]}
    organizations = {o["id"]: o for o in by_type["Organization"]}
    kinds = {o["type"][0]["coding"][0]["code"] for o in organizations.values()}
    assert kinds == {"604", "603", "124", "SOS"}
    for role in by_type["PractitionerRole"]:
        assert role["practitioner"]["reference"].removeprefix("Practitioner/") in practitioners
        assert role["endpoint"][0]["reference"].removeprefix("Endpoint/") in endpoints
        if "organization" in role:
            assert role["organization"]["reference"].removeprefix("Organization/") in organizations
        (loc,) = role["contained"]
        assert role["location"] == [{"reference": "#" + loc["id"]}]
        assert len(loc["address"]["postalCode"]) == 5 and len(loc["address"]["district"]) == 5
        assert -90 <= loc["position"]["latitude"] <= 90
        ext = {e["url"].removeprefix(EXT) for e in role["extension"]}
        assert {"sas-participation", "sas-en-sus"} <= ext
        assert role["code"][0]["coding"][0]["code"] in {"10", "40"}
    en_sus = [r for r in by_type["PractitionerRole"] if "sas-en-sus-phone" in str(r["extension"])]
    assert en_sus
    for location in by_type["Location"]:
        ref = location["managingOrganization"]["reference"].removeprefix("Organization/")
        assert organizations[ref]["type"][0]["coding"][0]["code"] == "SOS"


def test_directory_is_read_by_a_peer_fhir_client(sim: Simulator, http: httpx.Client) -> None:
    from fhir.resources.R4B.bundle import Bundle

    page = http.get(sim.base_url + "/directory/_history?_count=1000").text
    peer = Bundle.model_validate_json(page)
    assert peer.type == "history" and len(peer.entry or []) == 1000


def test_incremental_sync_sees_changes_and_deletions(sim: Simulator, http: httpx.Client) -> None:
    entries, _ = history(http, sim.base_url + "/directory/_history?_count=1000")
    since = max(stamp(e) for e in entries)
    fx = http.get(sim.base_url + "/_meta/fixtures").json()
    since_url = f"{sim.base_url}/directory/_history?_since={since.isoformat()}".replace("+", "%2B")

    unchanged, _ = history(http, since_url)
    assert [stamp(e) for e in unchanged] == [since]  # inclusive: only the newest one again

    sim.offer.rename(fx["single_place"], "Nouveaunom", "Alix")
    response = http.post(
        sim.base_url + "/_admin/directory",
        json={"op": "set-en-sus", "practitioner": fx["multi"][0], "phone": "+33639981234"},
        headers=sim.admin_headers,
    )
    assert response.status_code == 200
    sim.offer.remove_practitioner(fx["multi"][1])
    changed, _ = history(http, since_url)
    by_url = {e["request"]["url"]: e for e in changed}
    renamed = by_url[f"Practitioner/p{fx['single_place'][1:]}"]["resource"]
    assert renamed["name"] == [{"family": "Nouveaunom", "given": ["Alix"]}]
    assert renamed["meta"]["versionId"] == "2"
    role = by_url[f"PractitionerRole/r{fx['multi'][0][1:]}-1"]["resource"]
    assert {"url": EXT + "sas-en-sus-phone", "valueString": "+33639981234"} in role["extension"]
    deleted = {u for u, e in by_url.items() if e["request"]["method"] == "DELETE"}
    gone = fx["multi"][1][1:]
    assert deleted == {f"Practitioner/p{gone}", f"PractitionerRole/r{gone}-1"}
    assert all("resource" not in by_url[u] for u in deleted)
    stamps = [stamp(e) for e in changed]
    assert stamps == sorted(stamps) and min(stamps[1:]) > since
    # the vendor no longer knows the removed practitioner
    bundle = http.get(fx["base_url"] + "/Slot?" + ps_query([fx["multi"][1]])).json()
    assert bundle["total"] == 0


@pytest.mark.parametrize(
    ("query", "status"),
    [("_since=yesterday", 400), ("_count=0", 400), ("_count=5000", 400), ("_cursor=x", 400)],
)
def test_directory_bad_queries(sim: Simulator, http: httpx.Client, query: str, status: int) -> None:
    response = http.get(f"{sim.base_url}/directory/_history?{query}")
    assert response.status_code == status
    assert response.json()["resourceType"] == "OperationOutcome"


def test_admin_route_rejects_bad_changes(sim: Simulator, http: httpx.Client) -> None:
    admin = sim.base_url + "/_admin/directory"
    token = sim.admin_headers
    assert http.post(admin, content=b"not json", headers=token).status_code == 400
    assert http.post(admin, json={"op": "explode"}, headers=token).status_code == 400
    assert (
        http.post(
            admin, json={"op": "remove-practitioner", "practitioner": "8"}, headers=token
        ).status_code
        == 404
    )
    assert http.get(admin, headers=token).status_code == 405
