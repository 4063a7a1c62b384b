"""The simulated vendors against the SAS FHIR guide, over loopback HTTP.

One test per check of the ANS test kit (``sas-fhir-ig.md`` §5) that concerns
the server side, re-expressed in Python, plus our parser and a peer FHIR
client (``fhir.resources``) reading what the simulator serves.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx
import pytest

from sas_desk.services.fhir.bundle import parse_bundle
from sas_desk.simulator.offer import Offer, luhn_ok
from sas_desk.simulator.server import Simulator
from tests.helpers.fhir_sim import (
    FHIR_ACCEPT,
    LOWER,
    NOW,
    UPPER,
    all_resources,
    fixed_clock,
    ps_query,
    resources,
    sos_query,
    walk,
)

SAS = "http://sas.fr/fhir/StructureDefinition/"
IOP = "https://interop.esante.gouv.fr/ig/fhir/sas/StructureDefinition/"
PS_PROFILES = {
    "Bundle": SAS + "BundleAgregateur",
    "Slot": SAS + "FrSlotAgregateur",
    "Schedule": SAS + "FrScheduleAgregateur",
    "Practitioner": SAS + "FrPractitionerAgregateur",
    "PractitionerRole": SAS + "FrPractitionerRoleExerciceAgregateur",
    "Location": SAS + "FrLocationAgregateur",
}
CPTS_PROFILES = {
    **PS_PROFILES,
    "Bundle": IOP + "sas-cpts-bundle-aggregator",
    "Slot": IOP + "sas-cpts-slot-aggregator",
    "HealthcareService": IOP + "sas-cpts-healthcareservice-aggregator",
    "Organization": IOP + "sas-cpts-organization-aggregator",
}
SOS_PROFILES = {
    "Bundle": IOP + "sas-sos-bundle-aggregator",
    "Slot": IOP + "sas-sos-slot-aggregator",
    "Schedule": IOP + "sas-sos-schedule-aggregator",
    "Location": IOP + "sas-sos-location-aggregator",
    "Organization": IOP + "sas-sos-organization-aggregator",
}
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{2}:\d{2}$")
PHONE_RE = re.compile(r"^\+(33|262|590|596|594)\d{9}$")
RPPS_RE = re.compile(r"^8\d{11}$")
STRUCTURE_RE = re.compile(r"^(1\d{9}|3\d{14}|4\d{14})$")
R66 = "https://mos.esante.gouv.fr/NOS/TRE_R66-CategorieEtablissement/FHIR/TRE-R66-CategorieEtablissement"
EXT_SERVICE_TYPE = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Slot.serviceType"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(clock=fixed_clock) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=10, headers=FHIR_ACCEPT) as client:
        yield client


@pytest.fixture(scope="module")
def fx(sim: Simulator, http: httpx.Client) -> dict[str, Any]:
    fixtures: dict[str, Any] = http.get(sim.base_url + "/_meta/fixtures").json()
    return fixtures


def search(http: httpx.Client, base: str, resource: str, query: str) -> dict[str, Any]:
    response = http.get(f"{base}/{resource}?{query}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    bundle: dict[str, Any] = response.json()
    return bundle


@pytest.fixture(scope="module")
def single(http: httpx.Client, fx: dict[str, Any]) -> dict[str, Any]:
    return search(http, fx["base_url"], "Slot", ps_query([fx["single_place"]]))


@pytest.fixture(scope="module")
def two_places(http: httpx.Client, fx: dict[str, Any]) -> dict[str, Any]:
    return search(http, fx["base_url"], "Slot", ps_query([fx["two_places"]]))


@pytest.fixture(scope="module")
def multi(http: httpx.Client, fx: dict[str, Any]) -> dict[str, Any]:
    return search(http, fx["base_url"], "Slot", ps_query(fx["multi"]))


@pytest.fixture(scope="module")
def cpts(http: httpx.Client, fx: dict[str, Any]) -> dict[str, Any]:
    return search(http, fx["base_url"], "Slot", ps_query([fx["cpts"]], cpts=True))


@pytest.fixture(scope="module")
def cpts_multi(http: httpx.Client, fx: dict[str, Any]) -> dict[str, Any]:
    return search(http, fx["base_url"], "Slot", ps_query([fx["cpts_only"]], cpts=True))


@pytest.fixture(scope="module")
def sos(http: httpx.Client, fx: dict[str, Any]) -> dict[str, Any]:
    return search(http, fx["sos_base_url"], "Schedule", sos_query([fx["sos_siret"]]))


@pytest.fixture(scope="module")
def bundles(
    single: dict[str, Any],
    two_places: dict[str, Any],
    multi: dict[str, Any],
    cpts: dict[str, Any],
    cpts_multi: dict[str, Any],
    sos: dict[str, Any],
) -> dict[str, tuple[dict[str, Any], dict[str, str]]]:
    return {
        "single": (single, PS_PROFILES),
        "two_places": (two_places, PS_PROFILES),
        "multi": (multi, PS_PROFILES),
        "cpts": (cpts, CPTS_PROFILES),
        "cpts_multi": (cpts_multi, CPTS_PROFILES),
        "sos": (sos, SOS_PROFILES),
    }


ALL = ("single", "two_places", "multi", "cpts", "cpts_multi", "sos")


# --------------------------------------------------------------------------- the territory


def test_territory_figures_and_ids() -> None:
    offer = Offer(clock=fixed_clock).ensure_built()
    counts = offer.counts()
    kinds = counts["practitioners"]
    assert isinstance(kinds, dict)
    assert kinds["gp"] >= 1500 and kinds["dentist"] >= 200 and kinds["pediatrician"] > 0
    structures = counts["structures"]
    assert isinstance(structures, dict)
    assert structures["CPTS"] > 0 and structures["SOS"] > 0 and structures["CDS"] > 0
    assert counts["two_places"] and counts["en_sus"] and counts["cpts_members"]
    per_vendor = counts["per_vendor"]
    assert isinstance(per_vendor, dict) and len(per_vendor) >= 4
    assert min(per_vendor.values()) > 100
    assert offer.build_seconds is not None and offer.build_seconds < 3.0
    rpps = [p.rpps for p in offer.practitioners]
    assert len(set(rpps)) == len(rpps)
    assert all(len(r) == 11 and r.isdigit() and luhn_ok(r) for r in rpps)
    for s in offer.structures:
        body = s.national_id[1:]
        assert luhn_ok(body), s  # FINESS key / SIRET key
        assert (s.kind == "SOS") == (s.national_id[0] == "3")
    phones = [pl.phone for p in offer.practitioners for pl in p.places]
    phones += [p.en_sus_phone for p in offer.practitioners if p.en_sus_phone]
    assert all(PHONE_RE.match(phone) for phone in phones)
    for p in offer.practitioners:
        for place in p.places:
            assert re.fullmatch(r"\d{5}", place.commune.postcode)
    assert all(p.cpts for p in offer.practitioners if p.cpts_only)


def test_same_seed_same_territory_and_slots() -> None:
    def snapshot(offer: Offer) -> list[Any]:
        offer.ensure_built()
        people = [
            (p.national_id, p.family, p.given, p.vendor, p.sas, p.en_sus_phone,
             [(pl.line, pl.lat, pl.lon, pl.phone) for pl in p.places],
             [c.national_id for c in p.cpts])
            for p in offer.practitioners
        ]  # fmt: skip
        first = offer.practitioners[10].places[0].schedule_id
        day = NOW.date() + timedelta(days=1)
        slots = [(s.id, s.types, s.modes, s.reasons) for s in offer.day_slots(first, day)]
        return [people, [s.national_id for s in offer.structures], slots]

    a, b = snapshot(Offer(7)), snapshot(Offer(7))
    assert a == b
    assert snapshot(Offer(8))[0] != a[0]


def test_density_multiplies_the_free_slots_on_the_same_territory() -> None:
    """The benchmarks' denser territory (bench/ui_search.py --large): the same
    practitioners, about twice the free slots at density 2."""

    def week(offer: Offer) -> tuple[list[str], int]:
        offer.ensure_built()
        ids = [pl.schedule_id for p in offer.practitioners[:200] for pl in p.places]
        days = [NOW.date() + timedelta(days=d) for d in range(3)]
        return ids, sum(len(offer.day_slots(i, d)) for i in ids for d in days)

    ids, normal = week(Offer(7, clock=fixed_clock))
    dense_ids, dense = week(Offer(7, clock=fixed_clock, density=2.0))
    assert dense_ids == ids
    assert 1.6 * normal < dense < 2.4 * normal
    with pytest.raises(ValueError):
        Offer(7, density=0)


def test_meta_lists_the_vendors(sim: Simulator, http: httpx.Client) -> None:
    meta = http.get(sim.base_url + "/_meta").json()
    assert isinstance(meta, list) and len(meta) >= 4
    keys = {"name", "base_url", "practitioner_ids", "sos_sirets", "cpts_practitioner_ids"}
    assert all(set(v) == keys for v in meta)
    ids = [i for v in meta for i in v["practitioner_ids"]]
    assert len(ids) == len(set(ids)) >= 2000
    assert all(RPPS_RE.match(i) for i in ids)
    assert sum(len(v["sos_sirets"]) for v in meta) >= 2
    for v in meta:
        assert v["base_url"] == f"{sim.base_url}/vendors/{v['name']}/fhir"
        assert set(v["cpts_practitioner_ids"]) <= set(v["practitioner_ids"])
    directory = http.get(sim.base_url + "/_meta/directory").json()
    assert directory == {"base_url": sim.base_url + "/directory"}


# --------------------------------------------------------------------------- Bundle-level rules


@pytest.mark.parametrize("name", ALL)
def test_bundle_is_a_searchset_with_total_equal_to_slots(
    name: str, bundles: dict[str, tuple[dict[str, Any], dict[str, str]]]
) -> None:
    bundle, profiles = bundles[name]
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert bundle["meta"]["profile"] == [profiles["Bundle"]]
    slots = resources(bundle, "Slot")
    assert slots, "the fixtures always have slots"
    assert bundle["total"] == len(slots)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert entry["fullUrl"].endswith(f"/{resource['resourceType']}/{resource['id']}")
        assert entry["fullUrl"].startswith("http://127.0.0.1:")


@pytest.mark.parametrize("name", ALL)
def test_every_resource_has_exactly_the_profile_of_the_guide(
    name: str, bundles: dict[str, tuple[dict[str, Any], dict[str, str]]]
) -> None:
    bundle, profiles = bundles[name]
    for resource in all_resources(bundle):
        assert resource["meta"]["profile"] == [profiles[resource["resourceType"]]], resource["id"]


@pytest.mark.parametrize("name", ALL)
def test_times_phones_and_no_empty_element(
    name: str, bundles: dict[str, tuple[dict[str, Any], dict[str, str]]]
) -> None:
    bundle, _ = bundles[name]
    end_of_search = datetime.fromisoformat(UPPER)
    for slot in resources(bundle, "Slot"):
        assert TIME_RE.match(slot["start"]) and TIME_RE.match(slot["end"]), slot["start"]
        start, end = datetime.fromisoformat(slot["start"]), datetime.fromisoformat(slot["end"])
        assert NOW <= start < end and start <= end_of_search
        assert slot["start"][-6:] == "+01:00"  # Paris, winter time
        assert slot["status"] == "free"
        assert slot["comment"].strip().startswith("http://")
        assert {c["code"] for c in slot["appointmentType"]["coding"]} <= {"ROUTINE", "WALKIN"}
    for key, value in walk(bundle):
        assert value not in ("", [], {}, None), f"empty {key}"
        if key == "telecom":
            assert all(PHONE_RE.match(t["value"]) for t in value)


def test_self_link_reproduces_the_request(http: httpx.Client, fx: dict[str, Any]) -> None:
    query = ps_query([fx["single_place"], fx["multi"][0]])
    bundle = search(http, fx["base_url"], "Slot", query)
    (link,) = bundle["link"]
    assert link["relation"] == "self"
    parts = urlsplit(link["url"])
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == fx["base_url"] + "/Slot"
    assert parts.query == query  # the raw string, as sent
    assert Counter(parse_qsl(unquote(parts.query))) == Counter(parse_qsl(unquote(query)))


def test_response_time_under_one_second(http: httpx.Client, fx: dict[str, Any]) -> None:
    started = time.perf_counter()
    search(http, fx["base_url"], "Slot", ps_query([fx["single_place"]]))
    assert time.perf_counter() - started < 1.0


def test_capability_statement(http: httpx.Client, fx: dict[str, Any]) -> None:
    statement = http.get(fx["base_url"] + "/metadata").json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert {r["type"] for r in statement["rest"][0]["resource"]} == {"Slot", "Schedule"}


# --------------------------------------------------------------------------- PS indiv


def test_single_place(single: dict[str, Any], fx: dict[str, Any]) -> None:
    (practitioner,) = resources(single, "Practitioner")
    (role,) = resources(single, "PractitionerRole")
    (schedule,) = resources(single, "Schedule")
    (location,) = role["contained"]
    ident = practitioner["identifier"][0]
    assert ident["system"] == "urn:oid:1.2.250.1.71.4.2.1"
    assert ident["value"] == fx["single_place"] and RPPS_RE.match(ident["value"])
    assert practitioner["name"][0]["family"] and practitioner["name"][0]["given"]
    assert role["practitioner"]["reference"] == f"Practitioner/{practitioner['id']}"
    actors = {a["reference"] for a in schedule["actor"]}
    assert actors == {f"Practitioner/{practitioner['id']}", f"PractitionerRole/{role['id']}"}
    assert role["location"] == [{"reference": "#" + location["id"]}]
    address = location["address"]
    assert address["line"] and address["city"] and re.fullmatch(r"\d{5}", address["postalCode"])
    assert STRUCTURE_RE.match(role["organization"]["identifier"]["value"])
    assert all(
        s["schedule"]["reference"] == f"Schedule/{schedule['id']}"
        for s in resources(single, "Slot")
    )


def test_two_places(two_places: dict[str, Any], fx: dict[str, Any]) -> None:
    (practitioner,) = resources(two_places, "Practitioner")
    roles = resources(two_places, "PractitionerRole")
    schedules = resources(two_places, "Schedule")
    assert len(roles) == 2 and len(schedules) == 2
    assert practitioner["identifier"][0]["value"] == fx["two_places"]
    role_refs = {f"PractitionerRole/{r['id']}" for r in roles}
    for role in roles:
        assert role["practitioner"]["reference"] == f"Practitioner/{practitioner['id']}"
        assert role["location"][0]["reference"] == "#" + role["contained"][0]["id"]
    for schedule in schedules:
        refs = [a["reference"] for a in schedule["actor"]]
        assert [r for r in refs if r.startswith("Practitioner/")] == [
            f"Practitioner/{practitioner['id']}"
        ]
        assert {r for r in refs if r.startswith("PractitionerRole/")} <= role_refs
    used = {s["schedule"]["reference"] for s in resources(two_places, "Slot")}
    assert used == {f"Schedule/{s['id']}" for s in schedules}
    addresses = {r["contained"][0]["address"]["line"][0] for r in roles}
    assert len(addresses) == 2


def test_multi_ps(multi: dict[str, Any], fx: dict[str, Any]) -> None:
    practitioners = resources(multi, "Practitioner")
    assert {p["identifier"][0]["value"] for p in practitioners} == set(fx["multi"])
    assert len(resources(multi, "PractitionerRole")) >= 2
    assert len(resources(multi, "Schedule")) >= 2


def test_slot_types_and_consultation_modes(
    single: dict[str, Any], two_places: dict[str, Any], multi: dict[str, Any]
) -> None:
    types: set[str] = set()
    modes: set[str] = set()
    for bundle in (single, two_places, multi):
        for slot in resources(bundle, "Slot"):
            for sec in slot["meta"]["security"]:
                assert sec["system"].endswith("TRE-R314-TypeCreneau")
                types.add(sec["code"])
            for st in slot["serviceType"]:
                for coding in st.get("coding", []):
                    assert coding["system"] == "http://terminology.hl7.org/CodeSystem/v3-ActCode"
                    modes.add(coding["code"])
    assert types == {"PUBLIC", "PRO", "SNP"}  # never CPTS outside the CPTS variant
    assert {"AMB", "VR"} <= modes <= {"AMB", "HH", "VR"}


# --------------------------------------------------------------------------- CPTS


def _cpts_refs(slot: dict[str, Any]) -> list[str]:
    refs = []
    for st in slot["serviceType"]:
        codes = [c["code"] for c in st.get("coding", []) if c["system"] == R66]
        if codes:
            assert codes == ["604"]
            (ext,) = st["extension"]
            assert ext["url"] == EXT_SERVICE_TYPE
            refs.append(ext["valueReference"]["reference"])
    return refs


def test_cpts_variant(cpts: dict[str, Any]) -> None:
    services = resources(cpts, "HealthcareService")
    organizations = resources(cpts, "Organization")
    assert services and len(services) == len(organizations)
    org_refs = {f"Organization/{o['id']}" for o in organizations}
    assert {s["providedBy"]["reference"] for s in services} == org_refs
    service_refs = {f"HealthcareService/{s['id']}" for s in services}
    cpts_slots = [
        s for s in resources(cpts, "Slot") if "CPTS" in {c["code"] for c in s["meta"]["security"]}
    ]
    assert cpts_slots
    for slot in cpts_slots:
        refs = _cpts_refs(slot)
        assert refs and set(refs) <= service_refs
    for org in organizations:
        assert re.fullmatch(r"1\d{9}", org["identifier"][0]["value"])
        assert org["name"] and org["telecom"]


def test_multi_cpts(cpts_multi: dict[str, Any]) -> None:
    services = resources(cpts_multi, "HealthcareService")
    organizations = resources(cpts_multi, "Organization")
    assert len(services) >= 2 and len(organizations) >= 2
    slots = resources(cpts_multi, "Slot")
    assert all([c["code"] for c in s["meta"]["security"]] == ["CPTS"] for s in slots)
    refs = [_cpts_refs(s) for s in slots]
    assert any(len(set(r)) >= 2 for r in refs)  # one slot for two CPTS
    single_refs = {r[0] for r in refs if len(r) == 1}
    assert len(single_refs) >= 2  # two slots for two CPTS
    assert {f"HealthcareService/{s['id']}" for s in services} == {x for r in refs for x in r}
    assert len({s["providedBy"]["reference"] for s in services}) >= 2


def test_cpts_only_slots_are_not_sent_to_the_ps_search(
    http: httpx.Client, fx: dict[str, Any]
) -> None:
    bundle = search(http, fx["base_url"], "Slot", ps_query([fx["cpts_only"]]))
    assert bundle["total"] == 0 and "entry" not in bundle


# --------------------------------------------------------------------------- SOS


def test_sos_shapes(sos: dict[str, Any], fx: dict[str, Any]) -> None:
    modes = Counter(e["search"]["mode"] for e in sos["entry"])
    schedules = resources(sos, "Schedule")
    assert modes["match"] == len(schedules) >= 1
    locations = {loc["id"]: loc for loc in resources(sos, "Location")}
    (org,) = resources(sos, "Organization")
    assert org["identifier"][0]["value"] == fx["sos_siret"]
    assert re.fullmatch(r"3\d{14}", org["identifier"][0]["value"]) and org["name"]
    for schedule in schedules:
        (actor,) = schedule["actor"]
        assert actor["reference"].removeprefix("Location/") in locations
    for loc in locations.values():
        assert loc["name"] and loc["telecom"]
        assert loc["managingOrganization"]["reference"] == f"Organization/{org['id']}"
        assert re.fullmatch(r"\d{5}", loc["address"]["postalCode"]) and loc["address"]["line"]
        hours = loc["hoursOfOperation"][0]
        assert set(hours["daysOfWeek"]) <= {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
        assert re.fullmatch(r"\d{2}:\d{2}:\d{2}", hours["openingTime"])
    schedule_refs = {f"Schedule/{s['id']}" for s in schedules}
    for slot in resources(sos, "Slot"):
        assert slot["schedule"]["reference"] in schedule_refs
        assert {c["code"] for c in slot["meta"]["security"]} <= {"PUBLIC", "SNP"}


# --------------------------------------------------------------------------- empty and errors


def test_unknown_ids_give_an_empty_bundle(
    sim: Simulator, http: httpx.Client, fx: dict[str, Any]
) -> None:
    meta = http.get(sim.base_url + "/_meta").json()
    elsewhere = next(v for v in meta if v["name"] != fx["vendor"])["practitioner_ids"][0]
    for ids in (["899999999999"], [elsewhere], ["0123456789"]):  # unknown, other vendor, ADELI
        bundle = search(http, fx["base_url"], "Slot", ps_query(ids))
        assert bundle["total"] == 0 and "entry" not in bundle
        assert bundle["link"][0]["relation"] == "self" and bundle["meta"]["profile"]
    bundle = search(http, fx["sos_base_url"], "Schedule", sos_query(["312345678900012"]))
    assert bundle["total"] == 0 and "entry" not in bundle


BAD_PS = {
    "missing upper bound": lambda ids: ps_query(ids).replace(f"&start=le{UPPER}", ""),
    "missing lower bound": lambda ids: ps_query(ids).replace(f"start=ge{LOWER}&", ""),
    "unreadable date": lambda ids: ps_query(ids, upper="2026-13-45T99:00"),
    "no prefix": lambda ids: ps_query(ids).replace("start=ge", "start="),
    "inverted bounds": lambda ids: ps_query(ids, lower=UPPER, upper=LOWER),
    "26 ids": lambda ids: ps_query([f"8{n:011d}" for n in range(26)]),
    "unprefixed RPPS": lambda ids: ps_query([ids[0][1:]]),
    "short id": lambda ids: ps_query(["8123"]),
    "wrong system": lambda ids: ps_query(ids).replace("1.2.250.1.71.4.2.1", "1.2.3"),
    "no identifier": lambda ids: ps_query(ids).split("&schedule.actor")[0],
    "busy status": lambda ids: ps_query(ids).replace("status=free", "status=busy"),
    "bad _count": lambda ids: ps_query(ids).replace("_count=1000", "_count=many"),
}


@pytest.mark.parametrize("case", sorted(BAD_PS))
def test_malformed_slot_search_is_a_400_operation_outcome(
    case: str, http: httpx.Client, fx: dict[str, Any]
) -> None:
    response = http.get(fx["base_url"] + "/Slot?" + BAD_PS[case]([fx["single_place"]]))
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "error" and outcome["issue"][0]["details"]["text"]


@pytest.mark.parametrize(
    "query",
    [
        "actor:Location.organization.identifier=urn:oid:1.2.250.1.71.4.2.2%7C3123",
        sos_query(["312345678900012"]).replace("_has:Slot:schedule:start=ge", "x="),
        sos_query(["12345678900012"]),
    ],
)
def test_malformed_sos_search_is_a_400(query: str, http: httpx.Client, fx: dict[str, Any]) -> None:
    response = http.get(fx["sos_base_url"] + "/Schedule?" + query)
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


def _slot_ids(http: httpx.Client, base: str, query: str) -> set[str]:
    return {s["id"] for s in resources(search(http, base, "Slot", query), "Slot")}


def test_query_variants_the_guide_and_the_kit_send(http: httpx.Client, fx: dict[str, Any]) -> None:
    ids = [fx["single_place"]]
    reference = _slot_ids(http, fx["base_url"], ps_query(ids))
    assert reference
    variants = [
        ps_query(ids, pipe="|"),
        ps_query(ids, lower="2026-03-10T09:00:00", upper="2026-03-12T23:59:59"),  # naive
        ps_query(ids, lower="2026-03-10T09:00:00.000", upper="2026-03-12T23:59:59.000"),
        ps_query(ids, lower="2026-03-10T08:00:00Z", upper="2026-03-12T22:59:59Z"),
        ps_query(ids, lower="2026-03-10T09:00:00%2B01:00", upper="2026-03-12T23:59:59%2B01:00"),
        ps_query(ids, lower="2026-03-10", upper="2026-03-12"),  # dates: whole days
        ps_query(ids).replace("&_count=1000", ""),
    ]
    for query in variants:
        assert _slot_ids(http, fx["base_url"], query) == reference, query
    narrower = _slot_ids(http, fx["base_url"], ps_query(ids, upper="2026-03-10T12:00:00.000+01:00"))
    assert narrower and narrower < reference


# --------------------------------------------------------------------------- readers


@pytest.mark.parametrize("name", ALL)
def test_our_parser_reads_every_resource(
    name: str, bundles: dict[str, tuple[dict[str, Any], dict[str, str]]]
) -> None:
    bundle, _ = bundles[name]
    result = parse_bundle(json.dumps(bundle).encode())
    assert result.skipped == ()
    assert len(result.slots) == bundle["total"]
    assert all(s.location is not None and s.location.coordinates for s in result.slots)
    assert all(s.booking_url for s in result.slots)
    if name.startswith("cpts"):
        assert any(s.services for s in result.slots)


def test_our_parser_reads_a_full_batch_of_25_of_each_vendor(
    sim: Simulator, http: httpx.Client
) -> None:
    meta = http.get(sim.base_url + "/_meta").json()
    for vendor in meta:
        ids = vendor["practitioner_ids"][-25:]
        for cpts_variant in (False, True):
            query = ps_query(ids, cpts=cpts_variant)
            response = http.get(vendor["base_url"] + "/Slot?" + query)
            result = parse_bundle(response.content)
            assert result.skipped == () and len(result.slots) == result.total
            assert result.total > 0
            assert {p.national_id for p in result.practitioners} <= set(ids)
        if vendor["sos_sirets"]:
            response = http.get(vendor["base_url"] + "/Schedule?" + sos_query(vendor["sos_sirets"]))
            result = parse_bundle(response.content)
            assert result.skipped == () and len(result.slots) == result.total > 0


@pytest.mark.parametrize("name", ALL)
def test_a_peer_fhir_client_reads_the_bundles(
    name: str, bundles: dict[str, tuple[dict[str, Any], dict[str, str]]]
) -> None:
    from fhir.resources.R4B.bundle import Bundle

    bundle, _ = bundles[name]
    peer = Bundle.model_validate_json(json.dumps(bundle))
    assert peer.type == "searchset" and peer.total == bundle["total"]
    peer_slots = {
        e.resource.id: (e.resource.start, e.resource.end)
        for e in peer.entry or ()
        if e.resource.__resource_type__ == "Slot"
    }
    ours = {s.id: (s.start, s.end) for s in parse_bundle(bundle).slots}
    assert ours == peer_slots and len(ours) == bundle["total"]
