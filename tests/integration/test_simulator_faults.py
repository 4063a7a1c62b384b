"""Fault injection on one simulated vendor while the others answer."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from sas_desk.services.fhir.bundle import BundleError, OperationOutcomeError, parse_bundle
from sas_desk.simulator.faults import FaultSpec, FaultSyntaxError, parse_faults
from sas_desk.simulator.server import ADMIN_HEADER, Simulator
from tests.helpers.fhir_sim import fixed_clock, ps_query

SLOW = "hygie"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(clock=fixed_clock) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def meta(sim: Simulator) -> dict[str, dict[str, Any]]:
    vendors = httpx.get(sim.base_url + "/_meta", trust_env=False).json()
    return {v["name"]: v for v in vendors}


@pytest.fixture(autouse=True)
def no_configured_faults(sim: Simulator) -> Iterator[None]:
    yield
    for name in ("asclepia", "hygie", "panacee", "epione", "directory"):
        sim.set_faults(name, None)


def url(meta: dict[str, dict[str, Any]], vendor: str, extra: str = "") -> str:
    v = meta[vendor]
    return f"{v['base_url']}/Slot?{ps_query(v['practitioner_ids'][:5], extra=extra)}"


def get(target: str, timeout: float = 10.0, token: str = "") -> httpx.Response:
    """``token``: the simulator's admin token, which ``_fault`` queries need."""
    headers = {ADMIN_HEADER: token} if token else {}
    return httpx.get(target, timeout=timeout, trust_env=False, headers=headers)


def test_fault_syntax() -> None:
    spec = parse_faults("latency:300; error:0.25:503 ,broken-json,oversized:1.5MB")
    assert spec.latency_ms == (300, 300)
    assert (spec.error_rate, spec.error_status) == (0.25, 503)
    assert spec.broken_json and spec.oversized_mb == 1.5 and not spec.hang
    assert parse_faults("latency:100-200").latency_ms == (100, 200)
    assert parse_faults("hang").hang and parse_faults("") == FaultSpec()
    for bad in (
        "latency",
        "latency:x",
        "error:2",
        "error:0.5:200",
        "hang:3",
        "oversized:0",
        "boom",
    ):
        with pytest.raises(FaultSyntaxError):
            parse_faults(bad)


def test_latency_on_one_vendor_only(sim: Simulator, meta: dict[str, dict[str, Any]]) -> None:
    sim.set_faults(SLOW, "latency:400")
    with ThreadPoolExecutor(2) as pool:
        started = time.perf_counter()
        slow = pool.submit(get, url(meta, SLOW))
        fast = get(url(meta, "asclepia"))
        fast_done = time.perf_counter() - started
        assert fast.status_code == 200 and not slow.done()
        assert slow.result().status_code == 200
        assert time.perf_counter() - started >= 0.4
    assert fast_done < 0.4


def test_latency_from_the_query_string(sim: Simulator, meta: dict[str, dict[str, Any]]) -> None:
    started = time.perf_counter()
    response = get(url(meta, "epione", "&_fault=latency:250"), token=sim.admin_token)
    assert response.status_code == 200 and time.perf_counter() - started >= 0.25
    assert parse_bundle(response.content).skipped == ()


def test_error_rate(sim: Simulator, meta: dict[str, dict[str, Any]]) -> None:
    response = get(url(meta, SLOW, "&_fault=error:1:503"), token=sim.admin_token)
    assert response.status_code == 503
    with pytest.raises(OperationOutcomeError, match="Erreur simulée"):
        parse_bundle(response.content)
    sim.set_faults(SLOW, "error:0.5")
    statuses = [get(url(meta, SLOW)).status_code for _ in range(30)]
    assert set(statuses) == {200, 500}
    assert 5 <= statuses.count(500) <= 25
    assert get(url(meta, "panacee")).status_code == 200


def test_hang_while_others_answer_and_stop_is_prompt(meta: dict[str, dict[str, Any]]) -> None:
    with Simulator(clock=fixed_clock, faults={SLOW: "hang"}) as local:
        vendors = {v["name"]: v for v in get(local.base_url + "/_meta").json()}
        hung: Future[httpx.Response]
        with ThreadPoolExecutor(1) as pool:
            hung = pool.submit(get, url(vendors, SLOW), 30.0)
            assert get(url(vendors, "asclepia")).status_code == 200
            with pytest.raises(httpx.ReadTimeout):
                get(url(vendors, SLOW), 0.3)
            assert not hung.done()
            started = time.perf_counter()
            local.stop()
            assert time.perf_counter() - started < 2.0
            with pytest.raises(httpx.TransportError):
                hung.result(timeout=5)


def test_hang_ends_when_the_client_leaves() -> None:
    with Simulator(clock=fixed_clock) as local:
        vendors = {v["name"]: v for v in get(local.base_url + "/_meta").json()}
        threads_before = threading.active_count()
        with pytest.raises(httpx.ReadTimeout):
            get(url(vendors, SLOW, "&_fault=hang"), 0.2, token=local.admin_token)
        deadline = time.monotonic() + 5
        while threading.active_count() > threads_before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert threading.active_count() <= threads_before


def test_broken_json(sim: Simulator, meta: dict[str, dict[str, Any]]) -> None:
    response = get(url(meta, SLOW, "&_fault=broken-json"), token=sim.admin_token)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    with pytest.raises(BundleError):
        parse_bundle(response.content)
    assert get(url(meta, "asclepia")).json()["resourceType"] == "Bundle"


def test_oversized_body(sim: Simulator, meta: dict[str, dict[str, Any]]) -> None:
    sim.set_faults(SLOW, "oversized:3")
    response = get(url(meta, SLOW))
    assert len(response.content) == 3 * 1024 * 1024
    assert int(response.headers["content-length"]) == 3 * 1024 * 1024
    assert json.loads(response.content)["resourceType"] == "Bundle"  # padded, still valid
    assert len(get(url(meta, "asclepia")).content) < 1024 * 1024


def test_bad_fault_in_the_query_is_a_400(sim: Simulator, meta: dict[str, dict[str, Any]]) -> None:
    response = get(url(meta, SLOW, "&_fault=explode"), token=sim.admin_token)
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


def test_faults_from_a_demo_style_mapping() -> None:
    demo = {"simulator_seed": 7, "simulator_faults": {SLOW: "error:1"}, "enabled": True}
    with Simulator(clock=fixed_clock, demo=demo) as local:
        assert local.offer.seed == 7
        vendors = {v["name"]: v for v in get(local.base_url + "/_meta").json()}
        assert get(url(vendors, SLOW)).status_code == 500
        assert get(url(vendors, "asclepia")).status_code == 200
        history = get(
            local.base_url + "/directory/_history?_count=1&_fault=error:1", token=local.admin_token
        )
        assert history.status_code == 500
    with pytest.raises(FaultSyntaxError):
        Simulator(demo={"simulator_faults": {SLOW: "sometimes"}})
    with pytest.raises(ValueError):
        Simulator(demo={"simulator_seed": "seven"})
