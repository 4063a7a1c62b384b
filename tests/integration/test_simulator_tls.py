"""The simulator over HTTPS, with and without client certificates (mTLS),
refusing TLS below 1.2; certificates from a local CA (trustme)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from sas_desk.cli import main
from sas_desk.services.fhir.bundle import parse_bundle
from sas_desk.simulator.server import Simulator
from tests.helpers.fhir_sim import fixed_clock, ps_query


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def pki(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pki")
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("sas-desk-client", common_name="sas-desk-client")
    stranger_ca = trustme.CA()
    stranger = stranger_ca.issue_cert("intruder")
    files = {
        "ca": folder / "ca.pem",
        "server_cert": folder / "server.pem",
        "server_key": folder / "server.key",
        "client": folder / "client.pem",
        "stranger": folder / "stranger.pem",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.cert_chain_pems[0].write_to_path(str(files["server_cert"]))
    for blob in server.cert_chain_pems[1:]:
        blob.write_to_path(str(files["server_cert"]), append=True)
    server.private_key_pem.write_to_path(str(files["server_key"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(files["client"]))
    stranger.private_key_and_cert_chain_pem.write_to_path(str(files["stranger"]))
    return files


def client_context(
    pki: dict[str, Path], cert: str | None = None, max_version: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    if cert is not None:
        context.load_cert_chain(str(pki[cert]))
    if max_version is not None:
        context.maximum_version = max_version
    return context


@pytest.fixture(scope="module")
def https(pki: dict[str, Path]) -> Iterator[Simulator]:
    with Simulator(
        clock=fixed_clock, tls_cert=pki["server_cert"], tls_key=pki["server_key"]
    ) as sim:
        yield sim


@pytest.fixture(scope="module")
def mtls(pki: dict[str, Path]) -> Iterator[Simulator]:
    with Simulator(
        clock=fixed_clock,
        tls_cert=pki["server_cert"],
        tls_key=pki["server_key"],
        client_ca=pki["ca"],
    ) as sim:
        yield sim


def fetch(url: str, context: ssl.SSLContext) -> httpx.Response:
    with httpx.Client(verify=context, trust_env=False, timeout=10) as client:
        return client.get(url)


def test_https_serves_the_vendors_and_links_in_https(
    https: Simulator, pki: dict[str, Path]
) -> None:
    assert https.base_url.startswith("https://127.0.0.1:")
    context = client_context(pki)
    fx = fetch(https.base_url + "/_meta/fixtures", context).json()
    assert fx["base_url"].startswith("https://")
    response = fetch(fx["base_url"] + "/Slot?" + ps_query([fx["single_place"]]), context)
    result = parse_bundle(response.content)
    assert result.slots and result.skipped == ()
    assert result.self_link and result.self_link.startswith("https://")
    assert all(s.booking_url and s.booking_url.startswith("https://") for s in result.slots)
    # the server's certificate is checked: a client trusting another CA refuses it
    with pytest.raises(httpx.ConnectError):
        fetch(https.base_url + "/health", ssl.create_default_context())


def test_plain_http_on_the_https_port_gets_nothing(https: Simulator) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(https.base_url.replace("https://", "http://") + "/health", trust_env=False)


def test_tls_below_1_2_is_refused(https: Simulator, pki: dict[str, Path]) -> None:
    context = https.ssl_context
    assert context is not None and context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert (
        fetch(
            https.base_url + "/health", client_context(pki, max_version=ssl.TLSVersion.TLSv1_2)
        ).status_code
        == 200
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1/1.1 are deprecated names
        old = client_context(pki, max_version=ssl.TLSVersion.TLSv1_1)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client really offer TLS 1.1
    with pytest.raises(httpx.ConnectError):
        fetch(https.base_url + "/health", old)
    # control: that client does speak TLS 1.1 to a server that allows it
    files = (pki["server_cert"], pki["server_key"])
    assert _permissive_server_version(files, old) == "TLSv1.1"


def _permissive_server_version(files: tuple[Path, Path], client: ssl.SSLContext) -> str | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.minimum_version = ssl.TLSVersion.TLSv1
        server.set_ciphers("DEFAULT:@SECLEVEL=0")
    server.load_cert_chain(str(files[0]), str(files[1]))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        accepted: list[ssl.SSLSocket] = []

        def accept() -> None:
            conn, _ = listener.accept()
            with contextlib.suppress(ssl.SSLError, OSError):
                accepted.append(server.wrap_socket(conn, server_side=True))

        thread = threading.Thread(target=accept)
        thread.start()
        with (
            socket.create_connection(listener.getsockname()) as raw,
            client.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            version = tls.version()
        thread.join(5)
        for sock in accepted:
            sock.close()
        return version


def test_mtls_accepts_a_client_of_the_ca(mtls: Simulator, pki: dict[str, Path]) -> None:
    context = client_context(pki, cert="client")
    fx = fetch(mtls.base_url + "/_meta/fixtures", context).json()
    response = fetch(fx["base_url"] + "/Slot?" + ps_query([fx["single_place"]]), context)
    assert response.status_code == 200 and parse_bundle(response.content).slots


@pytest.mark.parametrize("cert", [None, "stranger"])
def test_mtls_refuses_clients_without_a_certificate_of_the_ca(
    mtls: Simulator, pki: dict[str, Path], cert: str | None
) -> None:
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        fetch(mtls.base_url + "/health", client_context(pki, cert=cert))
    # the server is still fine for a good client afterwards
    assert fetch(mtls.base_url + "/health", client_context(pki, cert="client")).status_code == 200


def test_tls_options_must_come_together(pki: dict[str, Path]) -> None:
    with pytest.raises(ValueError):
        Simulator(tls_cert=pki["server_cert"])
    with pytest.raises(ValueError):
        Simulator(client_ca=pki["ca"])
    assert main(["simulator", "--port", "0", "--tls-cert", str(pki["server_cert"])]) == 2
