"""Roster sync against a real loopback HTTP server (stdlib ``http.server`` in
a thread): 200 with validators, 304, HTTP 500, a server that hangs (client
timeout), a truncated body, an invalid roster, no server at all.  Whatever
fails, the roster in force stays, and the status says the cached one is used."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from sas_desk.models.roster import PARIS
from sas_desk.services.geo.territory import CommuneIndex
from sas_desk.services.roster import RosterService, RosterSync

HEADER = "date;debut;fin;secteur;communes;nom;prenom;rpps;adresse;code_postal;ville;telephone;commentaire"
ROSTER = (HEADER + "\n03/01/2027;09:00;12:00;69-C;69123;Distant;;;;;;04 65 71 12 34;\n").encode()
LOCAL = (HEADER + "\n03/01/2027;09:00;12:00;69-C;69123;Local;;;;;;04 65 71 00 01;\n").encode()
ETAG = '"v1"'
MODIFIED = "Sat, 28 Nov 2026 08:00:00 GMT"
SUNDAY = datetime(2027, 1, 3, 10, 0, tzinfo=PARIS)
NOW = datetime(2026, 12, 20, 9, 0, tzinfo=UTC)

Answer = Callable[[BaseHTTPRequestHandler], None]


class Server:
    def __init__(self) -> None:
        self.answer: Answer = self.roster
        self.requests: list[dict[str, str]] = []
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(dict(self.headers.items()))
                outer.answer(self)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/gardes/69.csv"

    @staticmethod
    def roster(h: BaseHTTPRequestHandler, body: bytes = ROSTER) -> None:
        if h.headers.get("If-None-Match") == ETAG:
            h.send_response(304)
            h.end_headers()
            return
        h.send_response(200)
        h.send_header("Content-Type", "text/csv; charset=utf-8")
        h.send_header("Content-Length", str(len(body)))
        h.send_header("ETag", ETAG)
        h.send_header("Last-Modified", MODIFIED)
        h.end_headers()
        h.wfile.write(body)

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


@pytest.fixture
def service(tmp_path: Path, server: Server) -> Iterator[RosterService]:
    svc = RosterService(
        tmp_path / "rosters.sqlite",
        communes=CommuneIndex.load(),
        sources=[server.url],
        now=lambda: NOW,
    )
    svc.import_bytes(LOCAL, "local.csv")
    yield svc
    svc.close()


async def sync(service: RosterService, timeout: float = 5.0) -> list:  # type: ignore[type-arg]
    async with httpx.AsyncClient() as client:
        return await RosterSync(service, client, timeout=timeout, now=lambda: NOW).run()


def who(service: RosterService) -> list[str]:
    return [e.family for e in service.on_call("69123", SUNDAY)]


@pytest.mark.asyncio
async def test_200_then_304(service: RosterService, server: Server) -> None:
    [first] = await sync(service)
    assert (first.state, first.status_code) == ("updated", 200)
    assert who(service) == ["Distant"]
    state = service.store.source(server.url)
    assert state is not None and (state.etag, state.last_modified) == (ETAG, MODIFIED)
    assert state.last_success == NOW
    versions = len(service.store.versions())
    [second] = await sync(service)
    assert (second.state, second.status_code) == ("unchanged", 304)
    assert server.requests[-1]["If-None-Match"] == ETAG
    assert server.requests[-1]["If-Modified-Since"] == MODIFIED
    assert len(service.store.versions()) == versions  # nothing imported
    status = service.status("69")
    assert not status.offline and status.last_sync == NOW
    assert status.message_fr.startswith("Tableau de garde du 20/12/2026 (" + server.url)


@pytest.mark.asyncio
async def test_500_keeps_the_local_roster(service: RosterService, server: Server) -> None:
    def fail(h: BaseHTTPRequestHandler) -> None:
        h.send_response(500)
        h.send_header("Content-Length", "0")
        h.end_headers()

    server.answer = fail
    [result] = await sync(service)
    assert (result.state, result.status_code) == ("failed", 500)
    assert result.message_fr == (
        "Source des tableaux en erreur (HTTP 500) : le tableau local reste utilisé."
    )
    assert who(service) == ["Local"]
    status = service.status("69")
    assert status.offline and status.stale
    assert "Tableau de garde jamais synchronisé." in status.reasons
    assert (
        "Source des tableaux injoignable : tableau local du 20/12/2026 utilisé." in status.reasons
    )


@pytest.mark.asyncio
async def test_hanging_server_times_out(service: RosterService, server: Server) -> None:
    def hang(h: BaseHTTPRequestHandler) -> None:
        server.release.wait(timeout=30)

    server.answer = hang
    [result] = await sync(service, timeout=0.3)
    assert result.state == "offline"
    assert result.message_fr == (
        "Source des tableaux muette (délai dépassé) : le tableau local reste utilisé."
    )
    assert who(service) == ["Local"]


@pytest.mark.asyncio
async def test_truncated_body_is_refused(service: RosterService, server: Server) -> None:
    def truncated(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/csv")
        h.send_header("Content-Length", str(len(ROSTER)))
        h.end_headers()
        h.wfile.write(ROSTER[: len(ROSTER) // 2])
        h.wfile.flush()
        h.connection.shutdown(socket.SHUT_RDWR)
        h.close_connection = True

    server.answer = truncated
    [result] = await sync(service)
    assert result.state == "failed"
    assert result.message_fr == "Tableau reçu tronqué : le tableau local reste utilisé."
    assert who(service) == ["Local"]
    assert len(service.store.versions()) == 1


@pytest.mark.asyncio
async def test_invalid_roster_is_refused(service: RosterService, server: Server) -> None:
    bad = ROSTER.replace(b"04 65 71 12 34", b"12")
    server.answer = lambda h: Server.roster(h, bad)
    [result] = await sync(service)
    assert result.state == "failed"
    assert result.message_fr.startswith(
        "Tableau reçu invalide (1 erreur(s), 1re : ligne 2, colonne telephone"
    )
    assert who(service) == ["Local"]
    state = service.store.source(server.url)
    assert state is not None and state.etag is None  # a bad roster never sets validators


@pytest.mark.asyncio
async def test_too_large_body_is_refused(service: RosterService, server: Server) -> None:
    async with httpx.AsyncClient() as client:
        [result] = await RosterSync(service, client, max_bytes=50, now=lambda: NOW).run()
    assert result.state == "failed"
    assert "trop volumineux" in result.message_fr
    assert who(service) == ["Local"]


@pytest.mark.asyncio
async def test_no_network_uses_the_cached_roster(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/gardes.csv"
    svc = RosterService(
        tmp_path / "r.sqlite", communes=CommuneIndex.load(), sources=[url], now=lambda: NOW
    )
    svc.import_bytes(LOCAL, "local.csv")
    svc.store.record_source(
        url, state="updated", message="", attempt=NOW - timedelta(days=9), success=True
    )
    async with httpx.AsyncClient() as client:
        [result] = await RosterSync(svc, client, now=lambda: NOW).run()
    assert result.state == "offline"
    status = svc.status()
    assert status.offline and status.stale
    assert status.reasons == (
        "Le tableau de garde se termine le 03/01/2027.",
        "Dernière synchronisation réussie il y a 9 jours.",
        "Source des tableaux injoignable : tableau local du 20/12/2026 utilisé.",
    )
    assert [e.family for e in svc.on_call("Lyon", SUNDAY)] == ["Local"]
    svc.close()


@pytest.mark.asyncio
async def test_a_redirect_is_refused_in_a_real_room(service: RosterService, server: Server) -> None:
    """With [room] the app's client does not follow redirects: the roster
    in force stays, and the status says to write the final address."""

    def moved(h: BaseHTTPRequestHandler) -> None:
        h.send_response(302)
        h.send_header("Location", "http://127.0.0.1:9/ailleurs.csv")
        h.send_header("Content-Length", "0")
        h.end_headers()

    server.answer = moved
    async with httpx.AsyncClient(follow_redirects=False) as client:
        [result] = await RosterSync(service, client, now=lambda: NOW).run()
    assert (result.state, result.status_code) == ("failed", 302)
    assert result.message_fr.startswith("Source des tableaux redirigée (HTTP 302)")
    assert who(service) == ["Local"]
