"""BanGeocoder against the real simulator over loopback HTTP (no mock transport)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import pytest_asyncio

from sas_desk.services.geo.ban import BanGeocoder, GeocodingError, GeoResult
from sas_desk.simulator.server import RouteTable, Simulator

PRIVATE_QUERY = "12 rue de la rep lyon"


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    with Simulator() as sim:
        yield sim


@pytest_asyncio.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # trust_env=False: a proxy configured in the environment must not catch loopback.
    async with httpx.AsyncClient(trust_env=False) as http:
        yield http


@pytest.fixture
def geocoder(simulator: Simulator, client: httpx.AsyncClient) -> BanGeocoder:
    return BanGeocoder(simulator.base_url, client)


def _km(a: tuple[float, float], b: tuple[float, float]) -> float:
    dlat = (a[0] - b[0]) * 111.2
    dlon = (a[1] - b[1]) * 111.2 * math.cos(math.radians(a[0]))
    return math.hypot(dlat, dlon)


# --------------------------------------------------------------------------- simulator basics


def test_simulator_lifecycle() -> None:
    sim = Simulator(routes=RouteTable())
    with pytest.raises(RuntimeError):
        _ = sim.base_url
    sim.start()
    try:
        assert sim.base_url.startswith("http://127.0.0.1:")
        assert sim.port > 0
        sim.start()  # idempotent
    finally:
        sim.stop()
    assert not sim.running
    sim.stop()  # idempotent


@pytest.mark.asyncio
async def test_health_and_404(simulator: Simulator, client: httpx.AsyncClient) -> None:
    health = await client.get(f"{simulator.base_url}/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}

    missing = await client.get(f"{simulator.base_url}/nowhere", params={"q": "lyon"})
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/json; charset=utf-8"
    assert missing.json()["code"] == 404

    # Prefixes match whole path segments only.
    assert (await client.get(f"{simulator.base_url}/searchlight?q=lyon")).status_code == 404
    wrong_method = await client.post(f"{simulator.base_url}/search/", params={"q": "lyon"})
    assert wrong_method.status_code == 405


@pytest.mark.asyncio
async def test_raw_response_is_shaped_like_ban(
    simulator: Simulator, client: httpx.AsyncClient
) -> None:
    response = await client.get(
        f"{simulator.base_url}/search/", params={"q": PRIVATE_QUERY, "limit": "3"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    payload = json.loads(response.content.decode("utf-8"))
    assert {"type", "version", "features", "attribution", "licence", "query", "limit"} <= set(
        payload
    )
    assert payload["type"] == "FeatureCollection"
    assert payload["version"] == "draft"
    assert payload["query"] == PRIVATE_QUERY
    assert payload["limit"] == 3
    assert 1 <= len(payload["features"]) <= 3

    first = payload["features"][0]
    assert first["type"] == "Feature"
    assert first["geometry"]["type"] == "Point"
    lon, lat = first["geometry"]["coordinates"]
    props = first["properties"]
    assert {
        "label",
        "score",
        "id",
        "name",
        "postcode",
        "citycode",
        "x",
        "y",
        "city",
        "context",
        "type",
        "importance",
        "housenumber",
        "street",
    } <= set(props)
    assert props["type"] == "housenumber"
    assert props["label"] == "12 Rue de la République 69001 Lyon"
    assert props["name"] == "12 Rue de la République"
    assert props["context"] == "69, Rhône, Auvergne-Rhône-Alpes"
    assert props["id"].startswith("69123_")
    assert 0 < props["score"] <= 1
    # Lambert-93 of central Lyon is about (842 000, 6 519 000).
    assert abs(props["x"] - 842_000) < 3_000
    assert abs(props["y"] - 6_519_000) < 3_000
    assert _km((lat, lon), (45.7615, 4.8358)) < 0.6
    scores = [f["properties"]["score"] for f in payload["features"]]
    assert scores == sorted(scores, reverse=True)

    municipality = (
        await client.get(
            f"{simulator.base_url}/search",
            params={"q": "grenoble", "type": "municipality"},
        )
    ).json()["features"][0]["properties"]
    assert municipality["label"] == "Grenoble"
    assert municipality["id"] == "38185"
    assert municipality["population"] > 100_000
    assert municipality["context"] == "38, Isère, Auvergne-Rhône-Alpes"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "params",
    [{"q": "ab"}, {"q": "  ab  "}, {"q": "--lyon"}, {"q": "x" * 201}, {}],
    ids=["short", "short-padded", "punctuation-first", "too-long", "missing"],
)
async def test_bad_q_is_a_400(
    simulator: Simulator, client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await client.get(f"{simulator.base_url}/search/", params=params)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    body = response.json()
    assert body["code"] == 400
    assert body["message"].startswith("q must contain between 3 and 200 chars")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "params",
    [
        {"q": "lyon", "limit": "abc"},
        {"q": "lyon", "limit": "0"},
        {"q": "lyon", "type": "country"},
        {"q": "lyon", "lat": "45.7"},
        {"q": "lyon", "lat": "north", "lon": "4.8"},
    ],
)
async def test_bad_parameters_are_400(
    simulator: Simulator, client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await client.get(f"{simulator.base_url}/search/", params=params)
    assert response.status_code == 400
    assert response.json()["code"] == 400


@pytest.mark.asyncio
async def test_limit_is_capped_at_20(simulator: Simulator, client: httpx.AsyncClient) -> None:
    payload = (
        await client.get(f"{simulator.base_url}/search/", params={"q": "12 rue", "limit": "50"})
    ).json()
    assert payload["limit"] == 20
    assert len(payload["features"]) == 20


# ---------------------------------------------------------------- geocoder on the simulator


@pytest.mark.asyncio
async def test_prefix_finds_the_commune(geocoder: BanGeocoder) -> None:
    results = await geocoder.search("villeurb")
    assert results
    best = results[0]
    assert (best.kind, best.city, best.citycode, best.postcode) == (
        "municipality",
        "Villeurbanne",
        "69266",
        "69100",
    )
    assert best.label == "Villeurbanne"
    assert best.housenumber is None
    assert best.street is None
    assert _km((best.lat, best.lon), (45.77, 4.88)) < 3
    # Accents, case and abbreviations do not matter.
    for spelling in ("ST ETIENNE", "saint-étienne", "Saint Etienne"):
        first = (await geocoder.search(spelling))[0]
        assert first.citycode == "42218", spelling


@pytest.mark.asyncio
async def test_postcode_query(geocoder: BanGeocoder) -> None:
    results = await geocoder.search("69100")
    assert [r.city for r in results] == ["Villeurbanne"]
    assert results[0].citycode == "69266"  # the INSEE code, not the postcode


@pytest.mark.asyncio
async def test_housenumber_query(geocoder: BanGeocoder) -> None:
    results = await geocoder.search(PRIVATE_QUERY)
    best = results[0]
    assert best.kind == "housenumber"
    assert best.housenumber == "12"
    assert best.street == "Rue de la République"
    assert (best.city, best.citycode, best.postcode) == ("Lyon", "69123", "69001")
    assert best.label == "12 Rue de la République 69001 Lyon"
    # Other towns' "rue de la République" rank below the one in Lyon.
    assert all(r.score < best.score for r in results[1:])
    # Deterministic: same answer twice, and another number lands nearby but elsewhere.
    assert (await geocoder.search(PRIVATE_QUERY))[0] == best
    other = (await geocoder.search("13 rue de la republique lyon"))[0]
    assert other.housenumber == "13"
    assert (other.lat, other.lon) != (best.lat, best.lon)
    assert _km((other.lat, other.lon), (best.lat, best.lon)) < 0.1


@pytest.mark.asyncio
async def test_type_filter(geocoder: BanGeocoder) -> None:
    municipalities = await geocoder.search("saint", type_="municipality", limit=10)
    assert len(municipalities) == 10
    assert all(r.kind == "municipality" for r in municipalities)
    assert all(r.city.startswith("Saint") for r in municipalities)
    streets = await geocoder.search(PRIVATE_QUERY, type_="street")
    assert streets
    assert all(r.kind == "street" for r in streets)
    assert streets[0].street == "Rue de la République"
    assert await geocoder.search("rue de la republique", type_="municipality") == []
    with pytest.raises(ValueError, match="type_"):
        await geocoder.search("lyon", type_="country")


@pytest.mark.asyncio
async def test_limit(geocoder: BanGeocoder) -> None:
    assert len(await geocoder.search("saint", limit=3)) == 3
    assert len(await geocoder.search("saint")) == 6
    assert len(await geocoder.search("12 rue", limit=500)) == 20


@pytest.mark.asyncio
async def test_near_prefers_close_results(geocoder: BanGeocoder) -> None:
    grenoble = await geocoder.search("rue de la republique", near=(45.19, 5.72))
    assert grenoble[0].city == "Grenoble"
    saint_etienne = await geocoder.search("rue de la republique", near=(45.44, 4.39))
    assert saint_etienne[0].city == "Saint-Étienne"


@pytest.mark.asyncio
async def test_short_query_makes_no_request(client: httpx.AsyncClient) -> None:
    # Nothing listens on this address: any request would raise GeocodingError.
    sim = Simulator(routes=RouteTable())
    sim.start()
    url = sim.base_url
    sim.stop()
    geocoder = BanGeocoder(url, client)
    assert await geocoder.search("ly") == []
    assert await geocoder.search("  l  ") == []
    assert await geocoder.search("") == []


# --------------------------------------------------------------------------- error paths


@pytest.mark.asyncio
async def test_server_stopped(client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sim = Simulator()
    sim.start()
    geocoder = BanGeocoder(sim.base_url, client)
    assert await geocoder.search("lyon")
    sim.stop()
    with pytest.raises(GeocodingError) as caught:
        await geocoder.search(PRIVATE_QUERY)
    assert caught.value.message_fr == "Service d'adresses injoignable"
    assert caught.value.reason == "unreachable"
    assert str(caught.value) == caught.value.message_fr
    warnings = [r for r in caplog.records if r.name == "sas_desk.geo"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert f"query length {len(PRIVATE_QUERY)}" in warnings[0].getMessage()
    _assert_query_never_logged(caplog)


class _FakeBanHandler(BaseHTTPRequestHandler):
    """Misbehaving address services, one per path prefix."""

    release: threading.Event

    def do_GET(self) -> None:
        prefix = self.path.split("/")[1]
        if prefix == "hang":
            # Hold the request until the test is over (the client times out first).
            self.release.wait(timeout=30)
            return
        status, body = 200, b""
        if prefix == "garbage":
            body = b"<html>not json{"
        elif prefix == "latin1":
            body = '{"features": "Rhône"}'.encode("latin-1")
        elif prefix == "nofeatures":
            body = b'{"type": "FeatureCollection", "features": {"oops": 1}}'
        elif prefix == "error":
            status, body = 503, b'{"code": 503, "message": "maintenance"}'
        elif prefix == "mixed":
            body = json.dumps({"type": "FeatureCollection", "features": _mixed_features()}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _good_feature(label: str) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [4.8358, 45.7615]},
        "properties": {
            "label": label,
            "score": 0.9,
            "type": "street",
            "name": "Rue de la République",
            "city": "Lyon",
            "citycode": "69123",
            "postcode": "69001",
        },
    }


def _mixed_features() -> list[Any]:
    no_geometry = _good_feature("no geometry")
    del no_geometry["geometry"]
    bad_coordinates = _good_feature("bad coordinates")
    bad_coordinates["geometry"]["coordinates"] = ["4.8", None]
    bad_type = _good_feature("bad type")
    bad_type["properties"]["type"] = "country"
    no_score = _good_feature("no score")
    del no_score["properties"]["score"]
    housenumber_without_number = _good_feature("housenumber without number")
    housenumber_without_number["properties"]["type"] = "housenumber"
    return [
        "not a feature",
        no_geometry,
        _good_feature("Rue de la République 69001 Lyon"),
        bad_coordinates,
        bad_type,
        no_score,
        housenumber_without_number,
    ]


@pytest.fixture
def fake_ban() -> Iterator[str]:
    release = threading.Event()
    handler = type("Handler", (_FakeBanHandler,), {"release": release})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.asyncio
@pytest.mark.parametrize("prefix", ["garbage", "latin1", "nofeatures"])
async def test_invalid_json(
    fake_ban: str, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, prefix: str
) -> None:
    caplog.set_level(logging.DEBUG)
    geocoder = BanGeocoder(f"{fake_ban}/{prefix}", client)
    with pytest.raises(GeocodingError) as caught:
        await geocoder.search(PRIVATE_QUERY)
    assert caught.value.message_fr == "Réponse invalide du service d'adresses"
    assert caught.value.reason == "invalid_response"
    _assert_query_never_logged(caplog)


@pytest.mark.asyncio
async def test_http_error_status(
    fake_ban: str, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    geocoder = BanGeocoder(f"{fake_ban}/error", client)
    with pytest.raises(GeocodingError) as caught:
        await geocoder.search(PRIVATE_QUERY)
    assert caught.value.status == 503
    assert caught.value.message_fr == "Service d'adresses indisponible (erreur 503)"
    assert any("HTTP status 503" in r.getMessage() for r in caplog.records)
    # httpx's own INFO line keeps the path but loses the query string.
    httpx_lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert any("/error/search/?<redacted>" in line for line in httpx_lines), httpx_lines
    _assert_query_never_logged(caplog)


@pytest.mark.asyncio
async def test_timeout(
    fake_ban: str, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    geocoder = BanGeocoder(f"{fake_ban}/hang", client, timeout=0.2)
    with pytest.raises(GeocodingError) as caught:
        await geocoder.search(PRIVATE_QUERY)
    assert caught.value.reason == "timeout"
    assert caught.value.message_fr == "Le service d'adresses ne répond pas (délai dépassé)"
    assert any("timed out after 0.2s" in r.getMessage() for r in caplog.records)
    _assert_query_never_logged(caplog)


@pytest.mark.asyncio
async def test_malformed_features_are_skipped(fake_ban: str, client: httpx.AsyncClient) -> None:
    geocoder = BanGeocoder(f"{fake_ban}/mixed/", client)
    results = await geocoder.search("rue de la republique")
    assert results == [
        GeoResult(
            label="Rue de la République 69001 Lyon",
            kind="street",
            city="Lyon",
            citycode="69123",
            postcode="69001",
            lat=45.7615,
            lon=4.8358,
            score=0.9,
            housenumber=None,
            street="Rue de la République",
        )
    ]


def _assert_query_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        if record.levelno >= logging.INFO:
            message = record.getMessage().lower()
            assert "rue de la rep" not in message, message
            assert "rue+de+la" not in message, message


@pytest.mark.asyncio
async def test_searches_given_up_mid_flight_leave_no_connection_stuck(
    simulator: Simulator,
) -> None:
    """The operator types on: each keystroke gives up the previous lookup.
    httpcore 1.0.9 kept a connection cancelled mid-request in its pool for good
    (encode/httpcore#1093): the shift bench found 61 such connections (and 61
    simulator threads) after 700 calls, and a full pool ends every lookup with
    a timeout.  An abandoned request now ends by itself and its connection
    goes back to the pool."""
    from sas_desk.services.geo import ban

    limits = httpx.Limits(max_connections=5, max_keepalive_connections=5)
    async with httpx.AsyncClient(trust_env=False, limits=limits) as http:
        geocoder = BanGeocoder(simulator.base_url, http)
        for i in range(120):
            task = asyncio.ensure_future(geocoder.search(f"{i} rue de la Republique Lyon"))
            for _ in range(i % 12):  # give up at every stage of the request
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, GeocodingError):
                await task
        left = list(getattr(ban, "_abandoned", ()))  # requests ending by themselves
        if left:
            await asyncio.wait(left, timeout=10)
        assert not getattr(ban, "_abandoned", ())
        pool = http._transport._pool  # type: ignore[attr-defined]
        assert all(c.is_idle() for c in pool.connections), pool.connections
        # the pool (5 connections) still answers
        results = await geocoder.search("Lyon")
        assert results and results[0].city == "Lyon"
