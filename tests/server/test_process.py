"""``sas-desk server`` as a process: what it refuses to start with, its
administration commands, SIGTERM (streams told why, exit 0) and sessions
that survive a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.helpers.room_server import ROOT, RoomDatabase, RoomServer, run_async
from tests.helpers.sse import SseReader
from tests.server.conftest import make_database

PASSWORD = "un-mot-de-passe-solide"


def sas_desk(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sas_desk", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def test_tls_is_mandatory_off_loopback(tmp_path: Path) -> None:
    r = sas_desk("server", "--dsn", f"sqlite://{tmp_path}/r.sqlite", "--listen", "0.0.0.0:8443")
    assert r.returncode == 1
    assert "TLS obligatoire" in r.stderr
    assert "Traceback" not in r.stderr


def test_the_test_clock_is_refused_off_loopback(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    r = sas_desk(
        "server",
        "--dsn",
        f"sqlite://{tmp_path}/r.sqlite",
        "--listen",
        "10.0.0.1:8443",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(cert),
        env={"SAS_DESK_SERVER_TEST_CLOCK_TOKEN": "t"},
    )
    assert r.returncode == 1 and "horloge de test" in r.stderr


def test_a_postgres_superuser_is_refused_without_the_flag() -> None:
    db = make_database("postgres", Path("."))
    try:
        r = sas_desk("server", "--dsn", db.dsn, "--schema", db.schema, "--listen", "127.0.0.1:0")
    finally:
        db.drop()
    assert r.returncode == 1
    assert "superutilisateur" in r.stderr and "--allow-superuser" in r.stderr


def test_user_add_reads_the_password_from_stdin_and_disable_locks_out(
    db: RoomDatabase, tmp_path: Path
) -> None:
    base = ("--dsn", db.dsn, "--schema", db.schema)
    added = sas_desk(
        "server", "user", "add", "dr.roux", "--role", "DENT", "--role", "SUP",
        "--name", "Dr Roux", "--rpps", "10001234567", *base, stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    again = sas_desk("server", "user", "add", "dr.roux", "--role", "DENT", *base, stdin=PASSWORD)
    assert again.returncode == 1 and "existe déjà" in again.stderr
    short = sas_desk("server", "user", "add", "x", "--role", "ARM", *base, stdin="court\n")
    assert short.returncode == 1 and "trop court" in short.stderr
    listed = sas_desk("server", "user", "list", *base)
    assert '"login": "dr.roux"' in listed.stdout and '"roles": ["DENT", "SUP"]' in listed.stdout
    assert PASSWORD not in listed.stdout
    server = RoomServer.start(db, tmp_path)
    try:
        body = server.login("dr.roux", PASSWORD, "DENT", "POSTE-06")
        auth = {"Authorization": f"Bearer {body['access_token']}"}
        assert httpx.get(f"{server.url}/v1/queues/DENT", headers=auth).status_code == 200
        disabled = sas_desk("server", "user", "disable", "dr.roux", *base)
        assert disabled.returncode == 0, disabled.stderr
        refused = httpx.post(
            f"{server.url}/v1/session",
            json={"login": "dr.roux", "password": PASSWORD, "role": "DENT", "workstation": "P"},
        )
        assert refused.status_code == 401
        # its sessions die too (within the server's 5 s token cache)
        server.wait_until(
            lambda: httpx.get(f"{server.url}/v1/queues/DENT", headers=auth).status_code == 401
        )
    finally:
        assert server.stop() == 0


def test_sigterm_says_bye_to_streams_and_exits_0_and_sessions_survive_a_restart(
    db: RoomDatabase, tmp_path: Path
) -> None:
    run_async(db.add_user("sup.b", ["SUP"], PASSWORD))
    server = RoomServer.start(db, tmp_path)
    body = server.login("sup.b", PASSWORD, "SUP", "POSTE-SUP")
    auth = {"Authorization": f"Bearer {body['access_token']}"}

    async def follow() -> list[tuple[str, object]]:
        async with (
            httpx.AsyncClient(base_url=server.url, headers=auth, timeout=10) as client,
            client.stream("GET", "/v1/stream") as response,
        ):
            reader = SseReader(response)
            first = await reader.next()
            server.process.send_signal(signal.SIGTERM)
            bye = await reader.next()
            return [(first.event, first.json()["reset"]), (bye.event, bye.json())]

    seen = run_async(follow())
    assert seen[0] == ("changes", True)
    event, data = seen[1]
    assert event == "bye"
    assert isinstance(data, dict) and "redémarrage" in data["reason_fr"]
    assert server.stop() == 0
    restarted = RoomServer.start(db, tmp_path)
    try:
        assert httpx.get(f"{restarted.url}/v1/room", headers=auth).status_code == 200
    finally:
        assert restarted.stop() == 0


def test_max_lease_may_only_lower_the_queues_bound(tmp_path: Path) -> None:
    """The queues own the lease bound (MAX_LEASE_S); a server's max_lease_s
    may lower it, never raise it: above it the server does not start."""
    config = tmp_path / "server.toml"
    config.write_text("[server]\nmax_lease_s = 1000\n")
    r = sas_desk("--config", str(config), "server", "--dsn", f"sqlite://{tmp_path}/r.sqlite")
    assert r.returncode == 1
    assert "max_lease_s doit être positif et au plus 900 s" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_lowered_bound_is_the_queues_rule_with_the_servers_figure() -> None:
    import pytest

    from sas_desk.models.queue import QueueError
    from sas_desk.server.app import _bounded
    from sas_desk.server.settings import ServerSettings

    lowered = ServerSettings(dsn="sqlite:///x", max_lease_s=300.0, lease_s=60.0).checked()
    assert _bounded("claim", {}, lowered) == {"lease_s": 60.0}
    assert _bounded("reassign", {"lease_s": 300}, lowered) == {"lease_s": 300.0}
    for lease in (301, 3e9, float("inf"), 0, "60"):
        with pytest.raises(QueueError) as refused:
            _bounded("claim", {"lease_s": lease}, lowered)
        assert refused.value.code == "invalid"
        assert refused.value.message_fr == (
            "Durée de prise en charge invalide : entre 0 et 300 secondes."
        )
    assert _bounded("close", {"lease_s": 3e9}, lowered) == {"lease_s": 3e9}  # not a lease
