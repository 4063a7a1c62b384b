"""The vendors' own HTTP connections (``VendorHttp``, on httpcore): what a
real server may send that the simulator does not — gzip answers, an
encoding we did not ask for, a gzip body inflating beyond the limit — and
the proxy taken from the environment, as httpx's clients did."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
import pytest_asyncio

from sas_desk.services.config import VendorEndpoint
from sas_desk.services.fhir.vendor import VendorClient, VendorError, environment_proxy

BUNDLE = json.dumps({"resourceType": "Bundle", "type": "searchset", "total": 0}).encode()


class Server:
    """A loopback HTTP/1.1 server answering every request with ``answer``
    (status line, headers and body, raw), keeping the requests' heads."""

    def __init__(self) -> None:
        self.answer = b""
        self.heads: list[bytes] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                writer.write(self.answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def reply(self, body: bytes, *headers: str) -> None:
        lines = [
            "HTTP/1.1 200 OK",
            "Content-Type: application/fhir+json",
            f"Content-Length: {len(body)}",
            *headers,
        ]
        self.answer = ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest_asyncio.fixture
async def server() -> AsyncIterator[Server]:
    s = Server()
    listening = await asyncio.start_server(s.handle, "127.0.0.1", 0)
    s.port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield s


def client_of(server: Server, **kw: int) -> VendorClient:
    return VendorClient(VendorEndpoint("v", f"http://127.0.0.1:{server.port}/fhir/"), **kw)


async def ask(client: VendorClient) -> int:
    now = datetime.now().astimezone()
    try:
        result = await client.slots(["810000000001"], now, now + timedelta(hours=4))
    finally:
        await client.aclose()
    return result.total or 0


@pytest.mark.asyncio
async def test_a_plain_answer_and_the_request_sent(server: Server) -> None:
    server.reply(BUNDLE)
    assert await ask(client_of(server)) == 0
    head = server.heads[0].decode()
    assert head.startswith("GET /fhir/Slot?_include=Slot:schedule&")
    assert (
        "schedule.actor:Practitioner.identifier=urn:oid:1.2.250.1.71.4.2.1%7C810000000001" in head
    )
    assert f"Host: 127.0.0.1:{server.port}\r\n" in head
    assert "Accept: application/fhir+json\r\n" in head and "Accept-Encoding: gzip\r\n" in head


@pytest.mark.asyncio
async def test_a_gzip_answer_is_inflated(server: Server) -> None:
    server.reply(gzip.compress(BUNDLE), "Content-Encoding: gzip")
    assert await ask(client_of(server)) == 0


@pytest.mark.asyncio
async def test_a_gzip_answer_inflating_past_the_limit_is_refused(server: Server) -> None:
    padded = BUNDLE[:-1] + b', "x": "' + b" " * (3 << 20) + b'"}'
    squeezed = gzip.compress(padded)
    assert len(squeezed) < 1 << 20  # small on the wire, 3 MB inflated
    server.reply(squeezed, "Content-Encoding: gzip")
    with pytest.raises(VendorError) as err:
        await ask(client_of(server, max_bytes=2 << 20))
    assert err.value.kind == "too_big" and "trop volumineuse" in err.value.message_fr


@pytest.mark.asyncio
async def test_an_encoding_not_asked_for_is_said(server: Server) -> None:
    server.reply(b"\x00\x01", "Content-Encoding: br")
    with pytest.raises(VendorError) as err:
        await ask(client_of(server))
    assert err.value.kind == "body" and "encodage br" in err.value.message_fr


@pytest.mark.asyncio
async def test_broken_gzip_is_an_unreadable_answer(server: Server) -> None:
    server.reply(b"\x1f\x8b\x08\x00garbage", "Content-Encoding: gzip")
    with pytest.raises(VendorError) as err:
        await ask(client_of(server))
    assert err.value.kind == "body" and "gzip" in err.value.message_fr


def test_the_proxy_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    assert environment_proxy("https://vendor.example.fr/fhir") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://user:p%40ss@proxy.chu.fr:3128")
    proxy = environment_proxy("https://vendor.example.fr/fhir")
    assert proxy is not None
    assert (proxy.url.host, proxy.url.port) == (b"proxy.chu.fr", 3128)
    assert proxy.auth == (b"user", b"p@ss")
    assert environment_proxy("http://vendor.example.fr/fhir") is None  # https only
    monkeypatch.setenv("ALL_PROXY", "proxy.chu.fr:8080")
    plain = environment_proxy("http://vendor.example.fr/fhir")
    assert plain is not None and plain.url.scheme == b"http" and plain.url.port == 8080
    monkeypatch.setenv("NO_PROXY", ".example.fr")
    assert environment_proxy("https://vendor.example.fr/fhir") is None
