"""The simulator's admin and fault endpoints need the token the tests hold,
faults are capped, and ``sas-desk simulator`` stays on loopback unless told
(issue 18)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sas_desk.simulator.faults import MAX_OVERSIZED_MB, FaultSyntaxError, parse_faults
from sas_desk.simulator.server import ADMIN_HEADER, Simulator
from tests.integration.test_cli import ROOT, sas_desk


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator() as running:
        yield running


@pytest.fixture(scope="module")
def slot_url(sim: Simulator) -> str:
    vendor = httpx.get(sim.base_url + "/_meta", trust_env=False).json()[0]
    ids = ",".join(vendor["practitioner_ids"][:2])
    return f"{vendor['base_url']}/Slot?schedule.actor:Practitioner.identifier={ids}"


@pytest.mark.parametrize("token", [None, "", "wrong"])
def test_admin_endpoints_refuse_requests_without_the_token(
    sim: Simulator, token: str | None
) -> None:
    headers = {} if token is None else {ADMIN_HEADER: token}
    change: dict[str, Any] = {"op": "remove-practitioner", "practitioner": "8000"}
    for path in ("/_admin/directory", "/_admin/oidc"):
        answer = httpx.post(sim.base_url + path, json=change, headers=headers, trust_env=False)
        assert answer.status_code == 403, path
    assert sim.identity.psc.quirks.acr != "eidas0"


def test_faults_in_the_query_need_the_token(sim: Simulator, slot_url: str) -> None:
    refused = httpx.get(slot_url + "&_fault=oversized:40", trust_env=False, timeout=10)
    assert refused.status_code == 403 and len(refused.content) < 1000
    allowed = httpx.get(
        slot_url + "&_fault=error:1:503", headers=sim.admin_headers, trust_env=False, timeout=10
    )
    assert allowed.status_code == 503


def test_the_token_is_random_per_simulator() -> None:
    with Simulator() as a, Simulator() as b:
        assert len(a.admin_token) >= 24 and a.admin_token != b.admin_token


def test_oversized_faults_are_capped() -> None:
    assert MAX_OVERSIZED_MB <= 64
    with pytest.raises(FaultSyntaxError):
        parse_faults("oversized:512")
    assert parse_faults(f"oversized:{MAX_OVERSIZED_MB:g}").oversized_mb == MAX_OVERSIZED_MB


SIMULATOR = (sys.executable, "-m", "sas_desk", "simulator")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_non_loopback_host_is_refused_without_allow_remote(tmp_path: Any) -> None:
    result = sas_desk("simulator", "--host", "0.0.0.0", "--port", str(free_port()))
    assert result.returncode == 2
    assert "0.0.0.0" in result.stderr and "--allow-remote" in result.stderr
    assert "Traceback" not in result.stderr


def test_allow_remote_prints_a_usable_url_and_a_warning() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*SIMULATOR, "--host", "0.0.0.0", "--allow-remote", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        assert lines[0].startswith("Simulateur SAS Desk : http://")
        assert "127.0.0.1" not in lines[0] and f":{port}" in lines[0]
        assert lines[1].startswith("Attention : simulateur ouvert au réseau")
        assert lines[2].startswith(f"Jeton d'administration ({ADMIN_HEADER}) : ")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
