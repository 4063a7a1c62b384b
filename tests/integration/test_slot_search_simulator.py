"""The slot search end to end on loopback: the simulator's directory feed
synced into a local directory, its four vendors asked over real HTTP (and
HTTPS with client certificates), a vendor failing while the others answer."""

from __future__ import annotations

import asyncio
import ssl
import warnings
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import trustme

from sas_desk.models.search import (
    DENTIST,
    CandidateKind,
    SearchQuery,
    SearchUpdate,
    VendorState,
)
from sas_desk.services.config import VendorEndpoint
from sas_desk.services.directory.store import DirectoryStore
from sas_desk.services.directory.sync import DirectorySync
from sas_desk.services.fhir.candidates import DirectoryCandidates
from sas_desk.services.fhir.search import SlotSearch
from sas_desk.services.fhir.vendor import VendorClient, VendorError
from sas_desk.services.fhir.worker_client import SearchWorker
from sas_desk.services.fhir.worker_protocol import Open
from sas_desk.simulator.server import Simulator

LYON = (45.7640, 4.8357)


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    sim = Simulator()
    sim.start()
    yield sim
    sim.stop()


def meta_of(sim: Simulator) -> list[dict[str, Any]]:
    meta: list[dict[str, Any]] = httpx.get(f"{sim.base_url}/_meta", timeout=30).json()
    return meta


def vendors_of(sim: Simulator, **kw: Any) -> list[VendorEndpoint]:
    return [VendorEndpoint(v["name"], v["base_url"], **kw) for v in meta_of(sim)]


@pytest_asyncio.fixture
async def directory(simulator: Simulator, tmp_path: Path) -> AsyncIterator[DirectoryStore]:
    store = DirectoryStore(tmp_path / "directory.sqlite")
    async with httpx.AsyncClient() as client:
        report = await DirectorySync(store, f"{simulator.base_url}/directory", client).run()
    assert report.added > 1500
    yield store
    store.close()


class ViaWorker:
    """The same engine in the search worker (a child process): ``run`` as
    :meth:`SlotSearch.run`, through the app's side of the pipe."""

    def __init__(self, store: DirectoryStore, endpoints: list[VendorEndpoint], **kw: Any) -> None:
        assert store.path is not None
        self.settings = Open(str(store.path), "", tuple(endpoints), **kw)

    async def run(self, query: SearchQuery) -> AsyncIterator[SearchUpdate]:
        worker = SearchWorker(now=lambda: datetime.now().astimezone())
        try:
            await worker.open(self.settings)
            async for update in worker.search(query):
                yield update
        finally:
            await worker.close()


#: every engine test runs in this process and through the search worker
VIA = pytest.mark.parametrize("via", ["in-process", "worker"])


def engine(
    sim: Simulator,
    store: DirectoryStore,
    endpoints: list[VendorEndpoint],
    via: str = "in-process",
    **kw: Any,
) -> tuple[SlotSearch, list[VendorClient]]:
    if via == "worker":
        return ViaWorker(store, endpoints, **kw), []  # type: ignore[return-value]
    clients = [VendorClient(e) for e in endpoints]
    search = SlotSearch(
        {c.name: c for c in clients},
        DirectoryCandidates(store, endpoints),
        now=lambda: datetime.now().astimezone(),
        **kw,
    )
    return search, clients


async def run(search: SlotSearch, query: SearchQuery) -> list[SearchUpdate]:
    return [u async for u in search.run(query)]


@pytest.mark.asyncio
@VIA
async def test_a_search_around_lyon_gets_slots_from_every_vendor(
    simulator: Simulator, directory: DirectoryStore, via: str
) -> None:
    endpoints = vendors_of(simulator)
    search, clients = engine(simulator, directory, endpoints, via)
    try:
        updates = await asyncio.wait_for(run(search, SearchQuery(*LYON, radius_km=10.0)), 60)
    finally:
        for c in clients:
            await c.aclose()
    final = updates[-1]
    assert final.done
    assert final.candidates >= 100
    assert {s.state for s in final.vendors.values()} == {VendorState.OK}
    offers = {o.key: o for u in updates for o in u.offers}
    vendors_with_slots = {o.candidate.vendor for o in offers.values() if o.slots}
    assert vendors_with_slots == {e.name for e in endpoints}
    now = datetime.now().astimezone()
    for offer in offers.values():
        assert offer.distance_km <= 10.0
        assert all(now - timedelta(minutes=5) <= s.start for s in offer.slots)
        assert all(s.end > s.start for s in offer.slots)
    # SOS Médecins associations come back through the Schedule search
    assert any(o.candidate.kind is CandidateKind.SOS and o.slots for o in offers.values())
    # the first offers on screen are the SAS participants'
    first = next(u for u in updates if u.offers)
    assert all(o.candidate.sas for o in first.offers)


@pytest.mark.asyncio
@VIA
async def test_dentists_are_searched_as_their_own_profession(
    simulator: Simulator, directory: DirectoryStore, via: str
) -> None:
    endpoints = vendors_of(simulator)
    search, clients = engine(simulator, directory, endpoints, via)
    try:
        updates = await run(search, SearchQuery(*LYON, radius_km=15.0, specialty=DENTIST))
    finally:
        for c in clients:
            await c.aclose()
    offers = [o for u in updates for o in u.offers]
    assert offers
    assert all(o.candidate.kind is CandidateKind.PRACTITIONER for o in offers)
    ids = {o.candidate.national_id for o in offers}
    dentists = {
        c.place.national_id
        for c in directory.candidates(*LYON, 15.0, profession="40")  # TRE-G15 40
    }
    assert ids <= dentists


@pytest.mark.asyncio
@VIA
async def test_one_vendor_failing_does_not_hold_the_others(
    simulator: Simulator, directory: DirectoryStore, via: str
) -> None:
    endpoints = vendors_of(simulator)
    broken, hanging = endpoints[0].name, endpoints[1].name
    endpoints[1] = VendorEndpoint(hanging, endpoints[1].base_url, timeout=1.0)
    simulator.set_faults(broken, "error:1:503")
    simulator.set_faults(hanging, "hang")
    search, clients = engine(simulator, directory, endpoints, via)
    try:
        updates = await asyncio.wait_for(run(search, SearchQuery(*LYON, radius_km=8.0)), 30)
    finally:
        simulator.set_faults(broken, None)
        simulator.set_faults(hanging, None)
        for c in clients:
            await c.aclose()
    final = updates[-1]
    assert final.vendors[broken].state is VendorState.ERROR
    assert "503" in final.vendors[broken].message_fr
    assert final.vendors[hanging].state is VendorState.TIMEOUT
    assert final.vendors[hanging].elapsed_s < 1.0 + 0.5  # cut at its own deadline
    assert final.elapsed_s < 7.0  # the others' answers, not the hanging vendor, end it
    others = {e.name for e in endpoints} - {broken, hanging}
    assert {
        n: final.vendors[n] for n in others if final.vendors[n].state is not VendorState.OK
    } == {}
    assert {o.candidate.vendor for u in updates for o in u.offers} == others


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A local CA, the simulator's certificate, a client certificate it
    signed, and a client certificate from another CA."""
    d = tmp_path_factory.mktemp("pki")
    ca, rogue = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_and_cert_chain_pem.write_to_path(str(d / "server.pem"))
    client = ca.issue_cert("sas-desk-client@example.fr", common_name="SAS Desk POSTE-12")
    client.cert_chain_pems[0].write_to_path(str(d / "client.pem"))
    client.private_key_pem.write_to_path(str(d / "client.key"))
    other = rogue.issue_cert("intruder@example.fr")
    other.cert_chain_pems[0].write_to_path(str(d / "other.pem"))
    other.private_key_pem.write_to_path(str(d / "other.key"))
    return {p.stem + p.suffix.replace(".", "_"): p for p in d.iterdir()}


@pytest.fixture(scope="module")
def tls_simulator(pki: dict[str, Path]) -> Iterator[Simulator]:
    sim = Simulator(tls_cert=pki["server_pem"], tls_key=pki["server_pem"], client_ca=pki["ca_pem"])
    sim.start()
    yield sim
    sim.stop()


def tls_vendor(sim: Simulator, pki: dict[str, Path], **kw: Any) -> VendorEndpoint:
    base = next(v for v in vendors_of_tls(sim, pki))
    return VendorEndpoint(base.name, base.base_url, timeout=5.0, **kw)


def vendors_of_tls(sim: Simulator, pki: dict[str, Path]) -> list[VendorEndpoint]:
    context = ssl.create_default_context(cafile=str(pki["ca_pem"]))
    context.load_cert_chain(str(pki["client_pem"]), str(pki["client_key"]))
    meta = httpx.get(f"{sim.base_url}/_meta", verify=context, timeout=30).json()
    return [VendorEndpoint(v["name"], v["base_url"]) for v in meta]


def some_ids(sim: Simulator, pki: dict[str, Path]) -> list[str]:
    context = ssl.create_default_context(cafile=str(pki["ca_pem"]))
    context.load_cert_chain(str(pki["client_pem"]), str(pki["client_key"]))
    meta = httpx.get(f"{sim.base_url}/_meta", verify=context, timeout=30).json()
    return [str(i) for i in meta[0]["practitioner_ids"][:3]]


@pytest.mark.asyncio
async def test_mtls_with_the_organisations_certificate(
    tls_simulator: Simulator, pki: dict[str, Path]
) -> None:
    assert tls_simulator.base_url.startswith("https://")
    endpoint = tls_vendor(
        tls_simulator,
        pki,
        client_cert=str(pki["client_pem"]),
        client_key=str(pki["client_key"]),
        ca=str(pki["ca_pem"]),
    )
    ids = some_ids(tls_simulator, pki)
    client = VendorClient(endpoint)
    now = datetime.now().astimezone()
    try:
        result = await client.slots(ids, now, now + timedelta(days=2))
    finally:
        await client.aclose()
    assert result.total == len(result.slots) > 0
    assert {s.practitioner.national_id for s in result.slots if s.practitioner} <= set(ids)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("what", "settings", "kinds"),
    [
        # TLS 1.3: the server refuses the client after the client's handshake is
        # over; the client sees an alert, or only the connection closing
        ("no client certificate", {"ca": "ca_pem"}, {"tls", "network"}),
        (
            "a client certificate of another CA",
            {"ca": "ca_pem", "cert": "other"},
            {"tls", "network"},
        ),
        ("the server's CA unknown: verification is on by default", {"cert": "client"}, {"tls"}),
    ],
)
async def test_tls_refusals(
    tls_simulator: Simulator,
    pki: dict[str, Path],
    what: str,
    settings: dict[str, str],
    kinds: set[str],
) -> None:
    kw: dict[str, str] = {}
    if "ca" in settings:
        kw["ca"] = str(pki[settings["ca"]])
    if "cert" in settings:
        kw["client_cert"] = str(pki[settings["cert"] + "_pem"])
        kw["client_key"] = str(pki[settings["cert"] + "_key"])
    endpoint = tls_vendor(tls_simulator, pki, **kw)
    client = VendorClient(endpoint)
    now = datetime.now().astimezone()
    try:
        with pytest.raises(VendorError) as err:
            await client.slots(some_ids(tls_simulator, pki), now, now + timedelta(hours=4))
    finally:
        await client.aclose()
    assert err.value.kind in kinds, what
    assert err.value.message_fr.startswith(endpoint.name)


def test_the_simulator_refuses_tls_below_1_2(
    tls_simulator: Simulator, pki: dict[str, Path]
) -> None:
    context = ssl.create_default_context(cafile=str(pki["ca_pem"]))
    context.load_cert_chain(str(pki["client_pem"]), str(pki["client_key"]))
    with warnings.catch_warnings():  # the point is to use what is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    with pytest.raises((ssl.SSLError, httpx.ConnectError)):
        httpx.get(f"{tls_simulator.base_url}/_meta", verify=context, timeout=10)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fault", "kind", "text"),
    [
        ("broken-json", "body", "réponse illisible"),
        ("oversized:3", "too_big", "trop volumineuse"),
        ("error:1:400", "outcome", "erreur 400"),
    ],
)
async def test_a_vendors_broken_answers_become_french_errors(
    simulator: Simulator, fault: str, kind: str, text: str
) -> None:
    endpoint = vendors_of(simulator)[2]
    ids = next(v for v in meta_of(simulator) if v["name"] == endpoint.name)["practitioner_ids"][:5]
    simulator.set_faults(endpoint.name, fault)
    client = VendorClient(endpoint, max_bytes=2 * 2**20)
    now = datetime.now().astimezone()
    try:
        with pytest.raises(VendorError) as err:
            await client.slots(ids, now, now + timedelta(days=2))
    finally:
        simulator.set_faults(endpoint.name, None)
        await client.aclose()
    assert err.value.kind == kind
    assert err.value.message_fr.startswith(f"{endpoint.name} : ") and text in err.value.message_fr
