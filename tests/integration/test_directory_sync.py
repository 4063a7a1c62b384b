"""Directory sync against a FHIR history feed served over real loopback HTTP
(stdlib ``http.server`` in a thread): paging, ``_since``, DELETE, broken pages
that keep the previous directory and cursor, invalid resources skipped."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import pytest_asyncio

from sas_desk.services.directory import DirectoryStore, DirectorySync, DirectorySyncError
from sas_desk.services.directory.feed import stamp_instant
from sas_desk.services.geo.radius import default_radius_km
from sas_desk.simulator.server import Simulator
from tests.helpers.directory_feed import (
    delete,
    endpoint,
    history,
    organization,
    practitioner,
    put,
    role,
    sos_location,
    stamp,
)
from tests.helpers.fhir_sim import fixed_clock

LYON = (45.7640, 4.8357)


@dataclass
class Feed:
    """A FHIR history feed: entries in order, served ``_since``-inclusive and
    paged with an opaque ``_page`` token; a fault can replace one page."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, dict[str, list[str]], str | None]] = field(default_factory=list)
    fault: Callable[[int], tuple[int, bytes] | None] | None = None  # page number → answer

    def answer(self, path: str, query: dict[str, list[str]], base: str) -> tuple[int, bytes]:
        if not path.endswith("/_history"):
            return 404, b'{"resourceType": "OperationOutcome", "issue": []}'
        count = int(query.get("_count", ["100"])[0])
        page = int(query.get("_page", ["0"])[0])
        since = query.get("_since", [None])[0]
        if "_page" in query:
            since = query.get("_s", [None])[0]
        if self.fault is not None:
            broken = self.fault(page + 1)
            if broken is not None:
                return broken
        limit = stamp_instant(since) if since else None
        selected = [e for e in self.entries if limit is None or _stamp(e) >= limit]
        chunk = selected[page * count : (page + 1) * count]
        next_url = None
        if (page + 1) * count < len(selected):
            params = httpx.QueryParams(
                {"_count": count, "_page": page + 1, **({"_s": since} if since else {})}
            )
            next_url = f"{base}/_history?{params}"
        return 200, json.dumps(history(chunk, next_url)).encode()


def _stamp(entry: dict[str, Any]) -> Any:
    resource = entry.get("resource")
    text = resource["meta"]["lastUpdated"] if resource else entry["response"]["lastModified"]
    return stamp_instant(text)


class FeedServer:
    def __init__(self, feed: Feed) -> None:
        self.feed = feed
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                feed.requests.append((parts.path, query, self.headers.get("Accept")))
                status, body = feed.answer(parts.path, query, server.base_url)
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/directory"

    def __enter__(self) -> FeedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def feed() -> Feed:
    return Feed(
        [
            put(endpoint("ep1", "Agenda Un", "https://one.example/fhir", at=stamp(0))),
            put(organization("cpts1", "1690000011", "604", "CPTS Lyon", at=stamp(1))),
            put(practitioner("p1", "810000000001", "Dupré", ("Éloïse",), at=stamp(2))),
            put(role("r1", "p1", *LYON, sas=True, cpts=("cpts1",), at=stamp(2))),
            put(practitioner("p2", "810000000002", "Martin", ("Paul",), at=stamp(3))),
            put(role("r2", "p2", 45.75, 4.85, at=stamp(3))),
            put(
                organization(
                    "sos1", "312345678900011", "SOS", "SOS Lyon", endpoint_id="ep1", at=stamp(4)
                )
            ),
            put(sos_location("l1", "sos1", 45.76, 4.84, at=stamp(4))),
        ]
    )


@pytest.fixture
def server(feed: Feed) -> Iterator[FeedServer]:
    with FeedServer(feed) as s:
        yield s


@pytest_asyncio.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as http:
        yield http


@pytest.fixture
def store() -> DirectoryStore:
    return DirectoryStore()


def _sync(
    store: DirectoryStore, server: FeedServer, client: httpx.AsyncClient, **kw: Any
) -> DirectorySync:
    return DirectorySync(store, server.base_url, client, page_size=kw.pop("page_size", 3), **kw)


@pytest.mark.asyncio
async def test_full_sync_follows_next_links(
    store: DirectoryStore, server: FeedServer, feed: Feed, client: httpx.AsyncClient
) -> None:
    report = await _sync(store, server, client).run()
    assert report.full and report.pages == 3 and report.entries == 8
    assert (report.added, report.updated, report.deleted, report.skipped) == (8, 0, 0, 0)
    assert report.cursor == stamp(4)
    assert report.duration_s > 0
    assert store.cursor(server.base_url) == stamp(4)
    # first request: _count, no _since; then the next links verbatim; FHIR JSON asked
    assert [q.get("_since") for _, q, _ in feed.requests] == [None, None, None]
    assert [q.get("_page") for _, q, _ in feed.requests] == [None, ["1"], ["2"]]
    assert feed.requests[0][1]["_count"] == ["3"]
    assert {accept for _, _, accept in feed.requests} == {"application/fhir+json"}
    found = store.candidates(*LYON, 5)
    assert [c.place.id for c in found] == ["r1", "r2"]  # SAS participant first
    assert [s.finess for s in found[0].cpts] == ["690000011"]
    assert (
        found[0].endpoint is not None and found[0].endpoint.base_url == "https://one.example/fhir"
    )
    (sos,) = store.sos_associations(*LYON, 5)
    assert sos.association.siret == "12345678900011"
    assert [p.id for p in store.search_by_name("eloise")] == ["r1"]


@pytest.mark.asyncio
async def test_incremental_sync_since_the_cursor_with_deletes(
    store: DirectoryStore, server: FeedServer, feed: Feed, client: httpx.AsyncClient
) -> None:
    await _sync(store, server, client).run()
    feed.requests.clear()
    feed.entries += [
        put(role("r2", "p2", 45.75, 4.85, sas=True, at=stamp(6))),
        put(practitioner("p3", "810000000003", "Petit", ("Ana",), at=stamp(7))),
        put(role("r3", "p3", 45.77, 4.83, at=stamp(7))),
        delete("PractitionerRole", "r1", at=stamp(8)),
    ]
    report = await _sync(store, server, client).run()
    assert not report.full
    # _since is the stored cursor, sent intact (its "+01:00" offset encoded)
    assert feed.requests[0][1]["_since"] == [stamp(4)]
    # the replayed entries of the cursor's instant are harmless
    assert (report.added, report.updated, report.unchanged, report.deleted) == (2, 1, 2, 1)
    assert report.cursor == stamp(8) == store.cursor(server.base_url)
    assert [c.place.id for c in store.candidates(*LYON, 5)] == ["r2", "r3"]
    assert store.places_of("810000000001") == []
    # nothing new: the cursor stays
    report = await _sync(store, server, client).run()
    assert (report.added, report.updated, report.deleted) == (0, 0, 0)
    assert report.cursor == stamp(8)


def _not_json(page: int) -> tuple[int, bytes] | None:
    return (200, b'{"resourceType": "Bundle", "type": "hist') if page == 2 else None


def _outcome_500(page: int) -> tuple[int, bytes] | None:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "exception", "diagnostics": "base indisponible"}],
    }
    return (500, json.dumps(body).encode()) if page == 2 else None


def _outcome_200(page: int) -> tuple[int, bytes] | None:
    body = {"resourceType": "OperationOutcome", "issue": [{"details": {"text": "quota dépassé"}}]}
    return (200, json.dumps(body).encode()) if page == 2 else None


def _searchset(page: int) -> tuple[int, bytes] | None:
    return (
        (200, json.dumps({"resourceType": "Bundle", "type": "searchset"}).encode())
        if page == 2
        else None
    )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fault", "log_part", "message_part"),
    [
        (_not_json, "not JSON", "pas un JSON valide"),
        (_outcome_500, "HTTP 500, OperationOutcome: base indisponible", "erreur HTTP 500"),
        (_outcome_200, "OperationOutcome: quota dépassé", "quota dépassé"),
        (_searchset, "Bundle type 'searchset', not history", "pas un historique FHIR"),
    ],
)
async def test_a_broken_page_keeps_the_previous_directory_and_cursor(
    store: DirectoryStore,
    server: FeedServer,
    feed: Feed,
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    fault: Callable[[int], tuple[int, bytes] | None],
    log_part: str,
    message_part: str,
) -> None:
    await _sync(store, server, client).run()
    before = store.stats()
    feed.entries += [
        put(role("r2", "p2", 45.75, 4.85, sas=True, at=stamp(6))),
        delete("PractitionerRole", "r1", at=stamp(7)),
        put(practitioner("p4", "810000000004", at=stamp(8))),
        put(role("r4", "p4", *LYON, at=stamp(8))),
    ]
    feed.fault = fault
    caplog.set_level(logging.INFO, logger="sas_desk.directory")
    with pytest.raises(DirectorySyncError) as err:
        await _sync(store, server, client).run()
    assert err.value.page == 2 and "_page=1" in err.value.url
    assert message_part in err.value.message_fr
    assert "L'annuaire précédent est conservé" in err.value.message_fr
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "aborted on page 2" in line and server.base_url in line and log_part in line
    # page 1 (the r2 change, r1's deletion) was read but nothing was applied
    assert store.stats() == before
    assert store.cursor(server.base_url) == stamp(4)
    assert [c.place.id for c in store.candidates(*LYON, 5)] == ["r1", "r2"]
    assert not store.candidates(*LYON, 5)[1].sas_participation
    # the feed mended, the next sync catches up from the same cursor
    feed.fault = None
    report = await _sync(store, server, client).run()
    assert report.deleted == 1 and store.cursor(server.base_url) == stamp(8)
    assert [c.place.id for c in store.candidates(*LYON, 5)] == ["r2", "r4"]


@pytest.mark.asyncio
async def test_a_looping_next_link_aborts(store: DirectoryStore, client: httpx.AsyncClient) -> None:
    def loop(request: httpx.Request) -> httpx.Response:
        body = history(
            [put(endpoint("ep1", "A", "https://a.example"))],
            "https://feed.example/_history?_page=x",
        )
        return httpx.Response(200, json=body)

    async with httpx.AsyncClient(transport=httpx.MockTransport(loop)) as mock:
        with pytest.raises(DirectorySyncError) as err:
            await DirectorySync(store, "https://feed.example", mock).run()
    assert err.value.page == 3 and "page déjà lue" in err.value.message_fr
    assert store.stats().endpoints == 0


@pytest.mark.asyncio
async def test_relative_next_link_and_unreachable_source(store: DirectoryStore) -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if "_page" in str(request.url):
            return httpx.Response(
                200, json=history([put(endpoint("ep2", "B", "https://b.example"))])
            )
        return httpx.Response(
            200, json=history([put(endpoint("ep1", "A", "https://a.example"))], "_history?_page=2")
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as mock:
        report = await DirectorySync(store, "https://feed.example/dir/", mock).run()
    assert seen[1] == "https://feed.example/dir/_history?_page=2"
    assert report.pages == 2 and [e.id for e in store.endpoints()] == ["ep1", "ep2"]
    assert report.cursor == stamp(0)

    async with httpx.AsyncClient(trust_env=False) as http:
        with pytest.raises(DirectorySyncError) as err:
            await DirectorySync(store, "http://127.0.0.1:9/dir", http, timeout=2).run()
    assert "injoignable" in err.value.message_fr or "ne répond pas" in err.value.message_fr
    assert store.stats().endpoints == 2


@pytest.mark.asyncio
async def test_invalid_resources_are_skipped_and_logged_without_names(
    store: DirectoryStore,
    server: FeedServer,
    feed: Feed,
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    feed.entries += [
        put(practitioner("bad", "12345", "Secretname", ("Hidden",), at=stamp(5))),
        put({**role("r9", "p1", *LYON, at=stamp(5)), "practitioner": {"display": "Dr Secretname"}}),
        {"request": {"method": "PUT", "url": "Practitioner/zz"}},
        put({"resourceType": "Patient", "id": "pat", "meta": {"lastUpdated": stamp(9)}}),
    ]
    caplog.set_level(logging.INFO, logger="sas_desk.directory")
    report = await _sync(store, server, client).run()
    assert report.skipped == 4 and report.added == 8
    assert report.skipped_reasons == {
        "invalid-identifier": 1,
        "missing-reference": 1,
        "malformed-entry": 1,
        "unsupported-type": 1,
    }
    # a skipped entry still moves the cursor: it will not be asked for again
    assert report.cursor == stamp(9)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "skipped Practitioner/bad: invalid-identifier" in text
    assert "skipped PractitionerRole/r9: missing-reference" in text
    for name in ("Secretname", "Hidden", "Dupré", "Éloïse", "Martin"):
        assert name not in text
    assert store.places_of("810000000001")[0].id == "r1"


@pytest.mark.asyncio
async def test_another_source_means_a_full_replacing_sync(
    store: DirectoryStore, server: FeedServer, feed: Feed, client: httpx.AsyncClient
) -> None:
    def other(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json=history([put(practitioner("p7", "810000000007", at=stamp(1)))])
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(other)) as mock:
        await DirectorySync(store, "https://elsewhere.example", mock).run()
    report = await _sync(store, server, client).run()
    assert report.full and report.deleted == 1 and report.added == 8
    assert store.stats().practitioners == 2
    assert store.cursor("https://elsewhere.example") is None
    # full=True asks for everything again, even with a cursor
    feed.requests.clear()
    report = await _sync(store, server, client).run(full=True)
    assert report.full and feed.requests[0][1].get("_since") is None
    assert (report.added, report.unchanged, report.deleted) == (0, 8, 0)


# --------------------------------------------------------------------------- the real simulator


@pytest.mark.asyncio
async def test_sync_from_the_simulator_and_candidates_around_lyon(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    with Simulator(clock=fixed_clock) as sim:
        store = DirectoryStore(tmp_path / "directory.sqlite")
        report = await DirectorySync(store, sim.directory_url, client, page_size=1000).run()
        assert report.full and report.skipped == 0 and report.pages >= 2
        stats = store.stats()
        assert stats.places >= 1700 and stats.endpoints >= 4 and stats.sos_places > 0
        meta = (await client.get(sim.base_url + "/_meta")).json()
        served = {v["base_url"].rstrip("/"): set(v["practitioner_ids"]) for v in meta}

        radius = default_radius_km("69123")  # Lyon: the Rhône's 5 km
        assert radius == 5
        found = store.candidates(*LYON, radius, specialty="SM54")
        assert len(found) >= 10
        keys = [(not c.sas_participation, c.distance_km) for c in found]
        assert keys == sorted(keys)  # SAS participants first, then by distance
        assert any(c.sas_participation for c in found) and not all(
            c.sas_participation for c in found
        )
        for c in found:
            assert c.distance_km <= radius and c.place.specialty == "SM54"
            assert c.endpoint is not None
            # the vendor the directory names serves that practitioner's agenda
            assert c.practitioner.national_id in served[c.endpoint.base_url]
        assert any(c.cpts for c in store.candidates(*LYON, 20))
        assert store.sos_associations(*LYON, 20)
        assert all(a.association.siret for a in store.sos_associations(*LYON, 20))

        # a change in the territory reaches the directory incrementally
        target = found[-1]
        response = await client.post(
            sim.base_url + "/_admin/directory",
            headers=sim.admin_headers,
            json={
                "op": "rename",
                "practitioner": target.practitioner.national_id,
                "family": "Zéphyrin-Ölund",
                "given": "Anaïs",
            },
        )
        assert response.status_code == 200
        response = await client.post(
            sim.base_url + "/_admin/directory",
            headers=sim.admin_headers,
            json={"op": "deactivate-place", "role": found[0].place.id},
        )
        assert response.status_code == 200
        again = await DirectorySync(store, sim.directory_url, client).run()
        assert not again.full and again.updated >= 2 and again.skipped == 0
        assert again.entries < 20  # only what changed (and the cursor's instant)
        assert [p.id for p in store.search_by_name("zephyrin olund anais")] == [
            p.id for p in store.places_of(target.practitioner.national_id) if p.active
        ]
        assert found[0].place.id not in {
            c.place.id for c in store.candidates(*LYON, radius, specialty="SM54")
        }
        store.close()
