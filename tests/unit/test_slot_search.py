"""The slot search engine: exact requests, batches, progressive results,
vendors that are slow, hang, fail or send garbage, cancellation, the "en sus"
volunteers.  Vendors are scripted fakes behind httpx.MockTransport; requests
are held and released by the test (events), never by sleeping."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx
import pytest

from sas_desk.models.search import (
    Band,
    Candidate,
    CandidateKind,
    Facets,
    SearchQuery,
    SearchUpdate,
    VendorState,
    Volunteer,
    default_window,
    merge_slots,
)
from sas_desk.models.slots import (
    ConsultationMode,
    Practitioner,
    PractitionerIdKind,
    Schedule,
    Slot,
    SlotType,
)
from sas_desk.services.fhir.search import SlotSearch, batches
from sas_desk.services.fhir.vendor import (
    VendorError,
    instant,
    slot_query,
    sos_query,
)
from tests.helpers.fake_vendor import FakeDirectory, FakeVendor, Place

TZ = timezone(timedelta(hours=1))
NOW = datetime(2026, 11, 29, 9, 0, tzinfo=TZ)
LYON = (45.7640, 4.8357)


def rpps(n: int) -> str:
    return f"8{10000000000 + n:011d}"


def place(n: int, km_north: float = 1.0, *, sas: bool = False, slots: int = 2, **kw) -> Place:  # type: ignore[no-untyped-def]
    starts = [NOW + timedelta(hours=1 + i) for i in range(slots)]
    return Place(rpps(n), LYON[0] + km_north / 111.2, LYON[1], starts, sas=sas, **kw)


def vendor(name: str, places: list[Place]) -> FakeVendor:
    return FakeVendor(name, {p.national_id: p for p in places})


def engine(*vendors: FakeVendor, timeout: float = 5.0, **kw) -> SlotSearch:  # type: ignore[no-untyped-def]
    clients = {v.name: v.client(timeout=timeout) for v in vendors}
    return SlotSearch(clients, FakeDirectory(list(vendors)), now=lambda: NOW, **kw)


def query(**kw) -> SearchQuery:  # type: ignore[no-untyped-def]
    return SearchQuery(LYON[0], LYON[1], kw.pop("radius_km", 20.0), **kw)


async def collect(search: SlotSearch, q: SearchQuery) -> list[SearchUpdate]:
    return [u async for u in search.run(q)]


# --------------------------------------------------------------------------- requests


def test_slot_query_is_the_guides_request() -> None:
    start = datetime(2026, 11, 29, 16, 20, tzinfo=TZ)
    text = slot_query([rpps(1), rpps(2)], start, start + timedelta(days=2))
    assert text == (
        "_include=Slot:schedule&_include:iterate=Schedule:actor"
        "&start=ge2026-11-29T16:20:00.000%2B01:00&start=le2026-12-01T16:20:00.000%2B01:00"
        "&schedule.actor:Practitioner.identifier="
        "urn:oid:1.2.250.1.71.4.2.1%7C810000000001,urn:oid:1.2.250.1.71.4.2.1%7C810000000002"
        "&status=free&_count=1000"
    )
    params = parse_qsl(slot_query([rpps(1)], start, start, cpts=True))
    assert ("_include", "Slot:service-type-reference") in params
    assert ("_include:iterate", "HealthcareService:organization") in params
    assert [v for k, v in params if k == "start"] == [
        "ge2026-11-29T16:20:00.000+01:00",
        "le2026-11-29T16:20:00.000+01:00",
    ]


def test_sos_query_searches_schedules_by_siret() -> None:
    start = datetime(2026, 11, 29, 16, 20, tzinfo=TZ)
    params = parse_qsl(sos_query(["334173748400020"], start, start + timedelta(hours=4)))
    assert params[:3] == [
        ("_revinclude", "Slot:schedule"),
        ("_include", "Schedule:actor:Location"),
        ("_include:iterate", "Location:organization"),
    ]
    assert ("_has:Slot:schedule:status", "free") in params
    assert (
        "actor:Location.organization.identifier",
        "urn:oid:1.2.250.1.71.4.2.2|334173748400020",
    ) in params


def test_request_size_and_time_zone_are_enforced() -> None:
    start = datetime(2026, 11, 29, 16, 20, tzinfo=TZ)
    with pytest.raises(ValueError):
        slot_query([rpps(i) for i in range(26)], start, start)
    with pytest.raises(ValueError):
        slot_query([], start, start)
    with pytest.raises(ValueError):
        sos_query([f"3{i:014d}" for i in range(11)], start, start)
    with pytest.raises(ValueError):
        instant(datetime(2026, 11, 29, 16, 20))
    assert instant(datetime(2026, 7, 1, 8, 5, 3, 120000, tzinfo=UTC)) == (
        "2026-07-01T08:05:03.120+00:00"
    )


def test_default_window_is_now_to_the_end_of_the_day_after_tomorrow() -> None:
    start, end = default_window(NOW)
    assert start == NOW
    assert end == datetime(2026, 12, 1, 23, 59, 59, tzinfo=TZ)


def test_bands_of_availability() -> None:
    assert Band.of(NOW + timedelta(minutes=10), NOW) is Band.H0_4
    assert Band.of(NOW - timedelta(minutes=10), NOW) is Band.H0_4
    assert Band.of(NOW + timedelta(hours=4), NOW) is Band.H4_8
    assert Band.of(NOW + timedelta(hours=47, minutes=59), NOW) is Band.H24_48
    assert Band.of(NOW + timedelta(hours=72), NOW) is None


def test_merging_slots_keeps_the_ones_already_there_and_sorts_by_start() -> None:
    who = Schedule("sch1", Practitioner("p1", rpps(1), PractitionerIdKind.RPPS), None, None)

    def at(sid: str, hour: int, url: str) -> Slot:
        start = NOW.replace(hour=hour)
        return Slot(
            sid, "Schedule/sch1", who, start, start + timedelta(minutes=15), booking_url=url
        )

    old = (at("b", 11, "old"), at("a", 10, "old"))
    merged = merge_slots(old, [at("b", 11, "new"), at("c", 9, "new"), at("d", 10, "new")])
    assert [(s.id, s.booking_url) for s in merged] == [
        ("c", "new"),
        ("a", "old"),
        ("d", "new"),  # same start as "a": by id
        ("b", "old"),
    ]


def test_batches_per_vendor_and_kind_in_the_order_asked() -> None:
    def cand(n: int, v: str, kind: CandidateKind = CandidateKind.PRACTITIONER, cpts=False):  # type: ignore[no-untyped-def]
        return Candidate(kind, rpps(n), "", v, float(n), 0.0, 0.0, cpts=cpts)

    cands = [cand(n, "A") for n in range(30)] + [cand(100 + n, "B") for n in range(3)]
    cands.insert(26, cand(200, "A", cpts=True))
    cands += [cand(300 + n, "A", CandidateKind.SOS) for n in range(12)]
    plan = batches(cands)
    assert [(b.vendor, b.kind.value, b.cpts, len(b.candidates)) for b in plan] == [
        ("A", "PS", False, 25),
        ("A", "PS", True, 6),  # the CPTS member's batch carries the CPTS includes
        ("B", "PS", False, 3),
        ("A", "SOS", False, 10),
        ("A", "SOS", False, 2),
    ]
    assert plan[0].ids == [rpps(n) for n in range(25)]
    assert rpps(200) in plan[1].ids


# --------------------------------------------------------------------------- search


@pytest.mark.asyncio
async def test_results_arrive_as_each_vendor_answers() -> None:
    fast = vendor("rapide", [place(1, sas=True), place(2, 2.0)])
    gate = asyncio.Event()

    async def held(_: httpx.Request) -> None:
        await gate.wait()

    slow = vendor("lent", [place(3, 0.5)])
    slow.before = held
    search = engine(fast, slow)
    seen: list[SearchUpdate] = []
    async for update in search.run(query()):
        seen.append(update)
        if any(o.candidate.vendor == "rapide" for o in update.offers):
            # the fast vendor's places are on screen while the slow one still works
            assert update.vendors["lent"].state is VendorState.WAITING
            assert not update.done
            gate.set()
    assert seen[0].offers == () and seen[0].candidates == 3
    final = seen[-1]
    assert final.done
    assert {s.name: s.state for s in final.vendors.values()} == {
        "rapide": VendorState.OK,
        "lent": VendorState.OK,
    }
    offers = {o.candidate.national_id: o for u in seen for o in u.offers}
    assert set(offers) == {rpps(1), rpps(2), rpps(3)}
    assert [s.start for s in offers[rpps(1)].slots] == [
        NOW + timedelta(hours=1),
        NOW + timedelta(hours=2),
    ]
    assert offers[rpps(2)].distance_km == pytest.approx(2.0, abs=0.05)
    assert final.vendors["rapide"].slots == 4


@pytest.mark.asyncio
async def test_a_hanging_vendor_is_cut_at_its_deadline_and_the_others_complete() -> None:
    ok = vendor("ok", [place(1)])
    stuck = vendor("bloque", [place(n, 1 + n / 10) for n in range(2, 40)])  # 2 batches

    async def hang(_: httpx.Request) -> None:
        await asyncio.Event().wait()

    stuck.before = hang
    search = engine(ok, stuck, timeout=0.3, per_vendor=1)
    began = time.monotonic()
    updates = await asyncio.wait_for(collect(search, query()), 10)
    took = time.monotonic() - began
    final = updates[-1]
    assert final.done
    assert final.vendors["ok"].state is VendorState.OK
    assert final.vendors["bloque"].state is VendorState.TIMEOUT
    assert "0.3 s" in final.vendors["bloque"].message_fr
    assert final.vendors["bloque"].answered == final.vendors["bloque"].requests == 2
    # one deadline for the vendor, not one per batch queued behind the bound
    assert took < 0.3 + 0.5
    assert stuck.cancelled == 1 and stuck.in_flight == 0


@pytest.mark.asyncio
async def test_a_vendor_late_to_answer_is_reported_slow_first() -> None:
    gate = asyncio.Event()

    async def held(_: httpx.Request) -> None:
        await gate.wait()

    late = vendor("tardif", [place(1)])
    late.before = held
    search = engine(late, slow_after=0.05)
    states = []
    async for update in search.run(query()):
        states.append(update.vendors["tardif"].state)
        if update.vendors["tardif"].state is VendorState.SLOW:
            gate.set()
    assert states[0] is VendorState.WAITING
    assert VendorState.SLOW in states
    assert states[-1] is VendorState.OK


@pytest.mark.parametrize(
    ("response", "kind", "text"),
    [
        (
            httpx.Response(
                400,
                json={
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {
                            "severity": "error",
                            "code": "invalid",
                            "diagnostics": "Paramètre start manquant",
                        }
                    ],
                },
            ),
            "outcome",
            "Paramètre start manquant",
        ),
        (
            httpx.Response(200, content=b'{"resourceType": "Bundle", "entry": [{'),
            "body",
            "illisible",
        ),
        (httpx.Response(503, content=b"<html>down</html>"), "http", "erreur HTTP 503"),
    ],
)
@pytest.mark.asyncio
async def test_a_failing_vendor_is_marked_with_its_reason_and_the_others_answer(
    response: httpx.Response, kind: str, text: str
) -> None:
    good = vendor("bon", [place(1)])
    bad = vendor("mauvais", [place(2)])

    async def fail(_: httpx.Request) -> httpx.Response:
        return response

    bad.before = fail
    final = (await collect(engine(good, bad), query()))[-1]
    assert final.vendors["bon"].state is VendorState.OK
    assert final.vendors["mauvais"].state is VendorState.ERROR
    assert text in final.vendors["mauvais"].message_fr
    assert final.vendors["mauvais"].message_fr.startswith("mauvais : ")


@pytest.mark.asyncio
async def test_an_oversized_body_is_refused_without_reading_it_all() -> None:
    big = vendor("enorme", [place(1)])

    async def huge(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b" " * (3 * 2**20))

    big.before = huge
    client = big.client(max_bytes=2**20)
    with pytest.raises(VendorError) as err:
        await client.slots([rpps(1)], NOW, NOW + timedelta(hours=1))
    assert err.value.kind == "too_big"
    assert "trop volumineuse" in err.value.message_fr


@pytest.mark.asyncio
async def test_requests_to_one_vendor_are_bounded() -> None:
    many = vendor("gros", [place(n, n / 100) for n in range(1, 201)])  # 8 batches
    final = (await collect(engine(many, per_vendor=3), query()))[-1]
    assert final.vendors["gros"].requests == 8
    assert 1 <= many.max_in_flight <= 3
    assert len({o.candidate.national_id for o in final.offers}) <= 25


@pytest.mark.asyncio
async def test_closing_the_search_cancels_the_requests_in_flight() -> None:
    gate = asyncio.Event()
    reached = asyncio.Event()

    async def held(_: httpx.Request) -> None:
        reached.set()
        await gate.wait()

    v = vendor("v", [place(n, n / 10) for n in range(1, 60)])  # 3 batches
    v.before = held
    search = engine(v)
    run = search.run(query())
    first = await anext(run)
    assert not first.done
    await asyncio.wait_for(reached.wait(), 5)
    await run.aclose()
    assert v.in_flight == 0
    assert v.cancelled == 3


@pytest.mark.asyncio
async def test_volunteers_are_offered_when_few_practitioners_have_slots() -> None:
    few = vendor("v", [place(1), place(2, slots=0)])
    search = engine(few)
    search.directory.en_sus = [  # type: ignore[attr-defined]
        Volunteer(rpps(9), "Dr Volontaire", "+33472000000", 3.0),
        Volunteer(rpps(10), "Dr Loin", "+33472000001", 50.0),
    ]
    final = (await collect(search, query()))[-1]
    assert [v.national_id for v in final.volunteers] == [rpps(9)]
    assert any("en sus" in n for n in final.notes)
    many = vendor("w", [place(n) for n in range(1, 7)])
    final = (await collect(engine(many), query()))[-1]
    assert final.volunteers == ()


@pytest.mark.asyncio
async def test_slots_beyond_the_radius_window_or_facets_are_left_out() -> None:
    far = place(1, 1.0, far_place=(LYON[0] + 0.9, LYON[1]))  # second practice 100 km north
    late = place(2, 1.5)
    late.starts.append(NOW + timedelta(days=5))
    v = vendor("v", [far, late])
    updates = await collect(engine(v), query())
    offers = {o.key: o for u in updates for o in u.offers}
    assert len(offers) == 2  # the far practice of rpps(1) is not an offer
    assert all(o.distance_km < 2 for o in offers.values())
    assert max(s.start for o in offers.values() for s in o.slots) < NOW + timedelta(days=3)
    # the query's facets: slot types and modes, and the "disponible sous" bands
    kept = await collect(engine(v), query(facets=Facets(modes=frozenset({ConsultationMode.VR}))))
    assert all(not u.offers for u in kept)
    soon = await collect(engine(v), query(facets=Facets(bands=frozenset({Band.H0_4}))))
    starts = [s.start for u in soon for o in u.offers for s in o.slots]
    assert starts and all(s - NOW < timedelta(hours=4) for s in starts)
    snp = await collect(engine(v), query(facets=Facets(types=frozenset({SlotType.SNP}))))
    assert sum(len(o.slots) for u in snp for o in u.offers) == 4


@pytest.mark.asyncio
async def test_sos_associations_are_searched_on_schedules() -> None:
    sos = Place("3" + "3" * 14, LYON[0] + 0.01, LYON[1], [NOW + timedelta(hours=2)])
    sos.kind = CandidateKind.SOS
    v = vendor("sosv", [sos, place(1)])
    updates = await collect(engine(v), query())
    paths = sorted(r.url.path for r in v.requests)
    assert paths == ["/fhir/Schedule", "/fhir/Slot"]
    schedule_q = next(r for r in v.requests if r.url.path.endswith("/Schedule"))
    assert "_revinclude=Slot:schedule" in unquote(str(schedule_q.url))
    offers = {o.candidate.national_id: o for u in updates for o in u.offers}
    assert offers[sos.national_id].slots[0].organization is not None
    assert offers[sos.national_id].candidate.kind is CandidateKind.SOS


@pytest.mark.asyncio
async def test_cpts_members_are_asked_with_the_cpts_includes() -> None:
    member = place(1, cpts=True)
    v = vendor("v", [member, place(2)])
    w = vendor("w", [place(3)])
    await collect(engine(v, w), query())
    includes = {
        r.url.host: tuple(
            val for key, val in parse_qsl(urlsplit(str(r.url)).query) if key == "_include"
        )
        for r in v.requests + w.requests
    }
    assert includes == {
        "v.example": ("Slot:schedule", "Slot:service-type-reference"),
        "w.example": ("Slot:schedule",),
    }


@pytest.mark.asyncio
async def test_nobody_in_the_radius_ends_at_once_with_a_note() -> None:
    v = vendor("v", [place(1, 80.0)])
    updates = await collect(engine(v), query(radius_km=10.0))
    assert updates[-1].done and updates[-1].candidates == 0
    assert v.requests == []
    assert any("Aucun praticien" in n for n in updates[-1].notes)


@pytest.mark.asyncio
async def test_a_body_that_is_not_a_bundle_is_a_vendor_error() -> None:
    v = vendor("v", [place(1)])

    async def garbage(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=json.dumps({"resourceType": "Patient"}).encode())

    v.before = garbage
    final = (await collect(engine(v), query()))[-1]
    assert final.vendors["v"].state is VendorState.ERROR
    assert final.vendors["v"].message_fr == (
        "v : réponse illisible — La réponse est une ressource Patient, pas un Bundle FHIR."
    )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("error", "kind", "text"),
    [
        (httpx.ConnectError("All connection attempts failed"), "network", "injoignable"),
        (httpx.ReadTimeout("timed out"), "timeout", "délai de réponse dépassé"),
        (httpx.RemoteProtocolError("peer closed connection"), "network", "échange interrompu"),
    ],
)
async def test_transport_failures_become_french_vendor_errors(
    error: Exception, kind: str, text: str
) -> None:
    v = vendor("v", [place(1)])

    async def fail(_: httpx.Request) -> httpx.Response:
        raise error

    v.before = fail
    with pytest.raises(VendorError) as err:
        await v.client().slots([rpps(1)], NOW, NOW + timedelta(hours=1))
    assert err.value.kind == kind
    assert err.value.message_fr.startswith("v : ") and text in err.value.message_fr


def test_sas_platform_contextual_link() -> None:
    from sas_desk.models.search import sas_platform_link

    assert sas_platform_link(
        "https://sas.sante.fr/",
        "fr.health.samu690",
        street_number="12",
        street_name="Rue de la Paix",
        insee="69266",
        city="Villeurbanne",
        practitioner_rpps="10101288385",
    ) == (
        "https://sas.sante.fr/sas/recherche?origin=fr.health.samu690"
        "&practitioner=urn:oid:1.2.250.1.71.4.2.1%7C10101288385"
        "&specialty=urn:oid:1.2.250.1.213.2.28%7CSM54&streetnumber=12"
        "&streetname=Rue%20de%20la%20Paix&inseecode=69266&city=Villeurbanne"
    )
    # empty parts are left out; dentists have no R38 specialty to send
    assert sas_platform_link("https://x.fr", "o", specialty="DENT", city="Bron") == (
        "https://x.fr/sas/recherche?origin=o&city=Bron"
    )


def test_search_windows() -> None:
    from sas_desk.models.search import Window

    assert Window.DEFAULT.bounds(NOW) == default_window(NOW)
    assert Window.H4.bounds(NOW) == (NOW, NOW + timedelta(hours=4))
    assert Window.H72.bounds(NOW)[1] - NOW == timedelta(hours=72)


@pytest.mark.asyncio
async def test_the_window_holds_whatever_offset_the_vendor_writes_times_in() -> None:
    """Slot times come with any offset (here UTC, +05:00, +01:00): each is
    kept or dropped by the instant it denotes, at the edges of the window."""
    start, end = default_window(NOW)
    minute = timedelta(minutes=1)
    utc, east, paris_winter = UTC, timezone(timedelta(hours=5)), timezone(timedelta(hours=1))
    edge = place(1, slots=0)
    edge.starts = [
        (end - minute).astimezone(utc),  # in
        (end - 2 * minute).astimezone(east),  # in
        (end + minute).astimezone(paris_winter),  # out
        (end + minute).astimezone(utc),  # out
        (start + 30 * minute).astimezone(east),  # in
    ]
    updates = await collect(engine(vendor("v", [edge])), query())
    kept = sorted(s.start for u in updates for o in u.offers for s in o.slots)
    assert kept == sorted([edge.starts[0], edge.starts[1], edge.starts[4]])


@pytest.mark.asyncio
async def test_answers_are_parsed_on_the_loop_unless_they_are_big(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    from sas_desk.services.fhir import vendor as vendor_module

    where: list[str] = []
    real, real_steps = vendor_module.parse_bundle, vendor_module.parse_steps

    def recording(body: bytes) -> object:
        where.append(threading.current_thread().name)
        return real(body)

    def recording_steps(body: bytes) -> Any:
        steps = real_steps(body)
        while True:
            where.append(threading.current_thread().name)
            try:
                next(steps)
            except StopIteration as done:
                return done.value
            yield

    monkeypatch.setattr(vendor_module, "parse_bundle", recording)
    monkeypatch.setattr(vendor_module, "parse_steps", recording_steps)
    v = vendor("v", [place(1), place(2)])
    small = await collect(engine(v), query())
    assert where and set(where) == {threading.main_thread().name}
    where.clear()
    monkeypatch.setattr(vendor_module, "INLINE_PARSE_MAX", 10)
    big = await collect(engine(v), query())
    assert where and all(name.startswith("fhir-parse") for name in where)
    slots = [sorted(s.id for u in run for o in u.offers for s in o.slots) for run in (small, big)]
    assert slots[0] == slots[1] and slots[0]
