"""The SAS Desk simulator: a real HTTP(S) server on loopback.

It stands in for the external services SAS Desk talks to, so the desk can be
demonstrated and tested offline with its real HTTP clients:

- ``GET /search``: the national address API (BAN), see :mod:`.ban`;
- ``{simulator}/vendors/{name}/fhir``: one FHIR base per simulated scheduling
  vendor ("gestionnaire d'agenda"): ``GET [base]/Slot`` (PS and CPTS),
  ``GET [base]/Schedule`` (SOS Médecins), ``GET [base]/metadata``; booking pages
  at ``{simulator}/vendors/{name}/book?slot=ID&origin=…`` (see :mod:`.vendors`);
- ``GET /directory/_history``: the practitioner directory feed of
  ``docs/fhir-directory.md`` (see :mod:`.directory`);
- ``GET /_meta``: the vendors, as ``[{"name", "base_url", "practitioner_ids",
  "sos_sirets", "cpts_practitioner_ids"}]`` (prefixed national ids: ``8`` +
  RPPS, ``3`` + SIRET); ``GET /_meta/directory``: ``{"base_url": …}`` of the
  directory feed; ``GET /_meta/fixtures``: the members guaranteed to have slots;
- ``GET /_bookings``: the slots booked through the booking pages, with the
  ``origin`` each booking came with;
- ``POST /_admin/directory``: change the territory (JSON body, see
  :func:`sas_desk.simulator.vendors.admin_change`) so an incremental directory
  sync sees it; the same from Python through ``Simulator.offer``;
- the identity providers (Pro Santé Connect, with its e-CPS approval page, and
  an establishment IdP), see :mod:`.oidc`;
- ``GET /basemap``: an offline base map of the territory (commune cells,
  names, default search radii) for the desk's map, see :mod:`.basemap`;
- ``GET /health``.

``/_admin/…`` and any request with a ``_fault`` query need the simulator's
admin token in the ``X-Simulator-Token`` header (``Simulator.admin_token``;
``sas-desk simulator`` prints it): 403 otherwise.  ``sas-desk simulator``
serves on loopback only unless ``--allow-remote``.

The territory (:mod:`.offer`) is seeded (``seed=``) and its clock injectable
(``clock=``); faults are injected per vendor (:mod:`.faults`); HTTPS with an
optional client-certificate requirement (mTLS) is enabled by ``tls_cert`` /
``tls_key`` / ``client_ca`` (TLS 1.2 minimum).

Routes live in a :class:`RouteTable` mapping a path prefix to a handler
``(query, request) -> (status, headers, body)``; :func:`default_routes`
builds the table the simulator serves.  To add a service, write its handler
module and register it in :func:`default_routes`.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import secrets
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, urlsplit

from sas_desk.simulator import ban
from sas_desk.simulator.faults import HANG_LIMIT_S, FaultBoard, FaultSpec
from sas_desk.simulator.offer import DEFAULT_SEED, Offer

if TYPE_CHECKING:
    from sas_desk.simulator.oidc import IdentityProviders

__all__ = [
    "AbortConnection",
    "Handler",
    "Request",
    "Response",
    "Route",
    "RouteTable",
    "Simulator",
    "TLSFiles",
    "default_routes",
    "error_response",
    "json_response",
    "serve_forever",
]

logger = logging.getLogger("sas_desk.simulator")

Query = dict[str, list[str]]
Response = tuple[int, dict[str, str], bytes]

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
_MAX_BODY = 10 * 1024 * 1024
_HANDSHAKE_TIMEOUT_S = 10.0


def _sleep(seconds: float | None) -> bool:
    time.sleep(min(seconds if seconds is not None else HANG_LIMIT_S, HANG_LIMIT_S))
    return True


class AbortConnection(Exception):
    """Raised by a handler to close the connection without any answer."""


@dataclass(frozen=True)
class Request:
    """What a handler may need beyond the query string."""

    method: str
    path: str
    query: Query
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    raw_query: str = ""  # the query string as sent (still percent-encoded)
    scheme: str = "http"
    #: ``pause(seconds)`` waits (``None``: until aborted); ``False`` when the
    #: wait was cut short because the simulator stops or the client left.
    pause: Callable[[float | None], bool] = _sleep

    @property
    def origin(self) -> str:
        """``scheme://host[:port]`` as the client addressed the simulator."""
        host = self.headers.get("host") or "127.0.0.1"
        return f"{self.scheme}://{host}"


Handler = Callable[[Query, Request], Response]


def json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    all_headers = {"Content-Type": JSON_CONTENT_TYPE}
    if headers:
        all_headers.update(headers)
    return status, all_headers, body


def error_response(status: int, message: str) -> Response:
    return json_response(status, {"code": status, "message": message})


@dataclass(frozen=True)
class Route:
    prefix: str
    handler: Handler
    methods: frozenset[str]

    def matches(self, path: str) -> bool:
        if self.prefix == "/":
            return True
        return path == self.prefix or path.startswith(self.prefix + "/")


#: The header carrying :attr:`RouteTable.admin_token`.
ADMIN_HEADER = "X-Simulator-Token"


def _privileged(request: Request) -> bool:
    return request.path.startswith("/_admin") or "_fault" in request.query


class RouteTable:
    """Path prefix -> handler.  The longest matching prefix wins.

    A prefix matches on whole path segments: ``/search`` serves ``/search``,
    ``/search/`` and ``/search/anything`` but not ``/searchlight``.
    """

    def __init__(self, admin_token: str | None = None) -> None:
        self._routes: list[Route] = []
        #: Required (header :data:`ADMIN_HEADER`) by ``/_admin/…`` and by any
        #: ``_fault`` query: whoever can reach the port cannot reshape the
        #: territory nor make the simulator build huge answers.
        self.admin_token = admin_token or secrets.token_urlsafe(24)

    def add(self, prefix: str, handler: Handler, *, methods: Iterable[str] = ("GET",)) -> None:
        if not prefix.startswith("/"):
            raise ValueError(f"route prefix must start with '/': {prefix!r}")
        normalized = prefix.rstrip("/") or "/"
        if any(route.prefix == normalized for route in self._routes):
            raise ValueError(f"route already registered: {normalized}")
        route = Route(normalized, handler, frozenset(m.upper() for m in methods))
        self._routes.append(route)
        self._routes.sort(key=lambda r: len(r.prefix), reverse=True)

    def resolve(self, path: str) -> Route | None:
        for route in self._routes:
            if route.matches(path):
                return route
        return None

    @property
    def prefixes(self) -> list[str]:
        return sorted(route.prefix for route in self._routes)

    def dispatch(self, request: Request) -> Response:
        route = self.resolve(request.path)
        if route is None:
            return error_response(404, f"no route for {request.path}")
        if _privileged(request) and not hmac.compare_digest(
            request.headers.get(ADMIN_HEADER.lower(), "").encode(), self.admin_token.encode()
        ):
            logger.warning("simulator: %s %s refused (admin token)", request.method, request.path)
            return error_response(403, f"admin token required ({ADMIN_HEADER} header)")
        if request.method not in route.methods:
            allowed = ", ".join(sorted(route.methods))
            status, headers, body = error_response(405, f"method {request.method} not allowed")
            return status, {**headers, "Allow": allowed}, body
        return route.handler(request.query, request)


def _health(query: Query, request: Request) -> Response:
    del query, request
    return json_response(200, {"status": "ok"})


def default_routes(
    offer: Offer | None = None,
    faults: FaultBoard | None = None,
    identity: IdentityProviders | None = None,
) -> RouteTable:
    """The routes the simulator serves (the territory of *offer*, default seed
    if none; faults from *faults*; the identity providers of *identity*)."""
    from sas_desk.simulator.basemap import make_basemap_handler
    from sas_desk.simulator.directory import DirectoryFeed, make_directory_handler
    from sas_desk.simulator.oidc import IdentityProviders
    from sas_desk.simulator.vendors import (
        make_admin_handler,
        make_bookings_handler,
        make_meta_handler,
        make_vendor_handler,
    )

    offer = offer if offer is not None else Offer()
    faults = faults if faults is not None else FaultBoard(offer.seed)
    feed = DirectoryFeed(offer)
    table = RouteTable()
    table.add("/health", _health)
    table.add("/search", ban.make_search_handler(ban.BanDataset.from_resources()))
    table.add("/basemap", make_basemap_handler(offer.communes))
    table.add("/vendors", make_vendor_handler(offer, faults), methods=("GET", "POST"))
    table.add("/directory", make_directory_handler(feed, faults))
    table.add("/_meta", make_meta_handler(offer))
    table.add("/_bookings", make_bookings_handler(offer))
    table.add("/_admin/directory", make_admin_handler(offer), methods=("POST",))
    (identity if identity is not None else IdentityProviders()).register(table)
    return table


# --------------------------------------------------------------------------- HTTP plumbing


class _Server(ThreadingHTTPServer):
    # socketserver's default backlog is 5: a search opening 16 connections at
    # once had SYNs dropped and retried a second later
    request_queue_size = 128
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        routes: RouteTable,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.routes = routes
        self.ssl_context = ssl_context
        self.stopping = threading.Event()
        self._open: set[socket.socket] = set()  # kept-alive connections, closed at stop
        self._open_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _RequestHandler)

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    def finish_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        try:
            self._finish(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)

    def hang_up_all(self) -> None:
        """Close the kept-alive connections: a stopped simulator answers nothing."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _finish(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the connection's own thread: a slow
        # or silent client never holds the accept loop.
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(_HANDSHAKE_TIMEOUT_S)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            logger.info("TLS handshake refused with %s: %s", client_address[0], exc)
            return
        tls.settimeout(None)
        try:
            super().finish_request(tls, client_address)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up early (timeouts, cancelled type-ahead) are normal.
        logger.debug("connection error with %s", client_address[0], exc_info=True)


class _RequestHandler(BaseHTTPRequestHandler):
    server_version = "SASDeskSimulator/1"
    # keep-alive, as real vendors: every answer carries its Content-Length
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        body = b""
        length = self.headers.get("Content-Length")
        if length:
            try:
                size = int(length)
            except ValueError:
                self._send(*error_response(400, "invalid Content-Length"))
                return
            if size < 0 or size > _MAX_BODY:
                self._send(*error_response(413, "request body too large"))
                return
            body = self.rfile.read(size)
        server = cast(_Server, self.server)
        request = Request(
            method=self.command,
            path=parts.path or "/",
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            raw_query=parts.query,
            scheme=server.scheme,
            pause=self._pause,
        )
        try:
            response = server.routes.dispatch(request)
        except AbortConnection:
            self.close_connection = True
            return
        except Exception:
            logger.exception("simulator handler failed for %s %s", request.method, request.path)
            response = error_response(500, "internal simulator error")
        try:
            self._send(*response)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError) as exc:
            logger.debug("client left before the answer: %s", exc)

    def _pause(self, seconds: float | None) -> bool:
        """Wait; ``False`` as soon as the simulator stops or the client hangs up."""
        stopping = cast(_Server, self.server).stopping
        limit = HANG_LIMIT_S if seconds is None else seconds
        deadline = time.monotonic() + limit
        plain = not isinstance(self.connection, ssl.SSLSocket)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return seconds is not None
            if stopping.wait(min(remaining, 0.05)):
                return False
            if plain and self._client_left():
                return False

    def _client_left(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return bool(self.connection.recv(1, socket.MSG_PEEK) == b"")
        except (OSError, ValueError):
            return True

    def _send(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The query string may hold an address: log the path only.
        path = urlsplit(self.path).path if hasattr(self, "path") else "?"
        logger.debug("%s %s -> %s", getattr(self, "command", "?"), path, code)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("simulator: " + format, *args)


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class TLSFiles:
    """PEM files for HTTPS: the server certificate (chain) and key, and
    optionally the CA whose client certificates are *required* (mTLS)."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2  # the guide: TLS 1.2 or above
        context.load_cert_chain(str(self.cert), str(self.key))
        if self.client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=str(self.client_ca))
        return context


def _tls_files(
    cert: str | Path | None, key: str | Path | None, client_ca: str | Path | None
) -> TLSFiles | None:
    if cert is None and key is None:
        if client_ca is not None:
            raise ValueError("client_ca needs a server certificate and key (tls_cert, tls_key)")
        return None
    if cert is None or key is None:
        raise ValueError("HTTPS needs both tls_cert and tls_key")
    return TLSFiles(Path(cert), Path(key), Path(client_ca) if client_ca is not None else None)


class Simulator:
    """The simulator running in a background daemon thread (tests, demo mode).

    >>> with Simulator() as sim:
    ...     url = sim.base_url   # e.g. "http://127.0.0.1:54321"

    ``seed`` draws the territory, ``clock`` (aware datetimes) says what "now"
    is for the slots, ``faults`` maps a vendor name (or ``directory``) to a
    fault specification (:mod:`sas_desk.simulator.faults`); ``demo`` is a
    ``[demo]``-style mapping whose ``simulator_seed`` and ``simulator_faults``
    keys are read the same way (explicit arguments win).  ``tls_cert`` and
    ``tls_key`` switch to HTTPS, ``client_ca`` then requires client
    certificates signed by that CA. ``density`` multiplies the share of free
    slots of every place (1: the demo territory; the benchmarks' large mode).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        routes: RouteTable | None = None,
        seed: int | None = None,
        clock: Callable[[], datetime] | None = None,
        faults: Mapping[str, str | FaultSpec] | None = None,
        demo: Mapping[str, Any] | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        client_ca: str | Path | None = None,
        density: float = 1.0,
    ) -> None:
        demo = demo or {}
        if seed is None:
            raw_seed = demo.get("simulator_seed", DEFAULT_SEED)
            if isinstance(raw_seed, bool) or not isinstance(raw_seed, int):
                raise ValueError(f"simulator_seed must be an integer, not {raw_seed!r}")
            seed = raw_seed
        all_faults: dict[str, str | FaultSpec] = {}
        demo_faults = demo.get("simulator_faults", {})
        if not isinstance(demo_faults, Mapping):
            raise ValueError("simulator_faults must map a vendor name to a fault specification")
        all_faults.update({str(k): v for k, v in demo_faults.items()})
        all_faults.update(faults or {})
        self._host = host
        self._port = port
        self.offer = Offer(seed, clock=clock, density=density)
        self.faults = FaultBoard(seed, all_faults)
        from sas_desk.simulator.oidc import IdentityProviders

        self.identity = IdentityProviders()
        self._tls = _tls_files(tls_cert, tls_key, client_ca)
        self._routes = routes
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def routes(self) -> RouteTable:
        """The route table (built on first use); add routes before :meth:`start`."""
        if self._routes is None:
            self._routes = default_routes(self.offer, self.faults, self.identity)
        return self._routes

    def set_faults(self, target: str, spec: str | FaultSpec | None) -> None:
        """Change a vendor's (or ``directory``'s) faults while running; ``None`` clears."""
        self.faults.set(target, spec)

    @property
    def bookings(self) -> list[dict[str, str]]:
        return self.offer.bookings

    @property
    def tls(self) -> TLSFiles | None:
        return self._tls

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The server's TLS context while running over HTTPS."""
        return self._server.ssl_context if self._server is not None else None

    @property
    def directory_url(self) -> str:
        return f"{self.base_url}/directory"

    @property
    def psc_issuer(self) -> str:
        """The simulated Pro Santé Connect realm (see :mod:`.oidc`)."""
        from sas_desk.simulator.oidc import PSC_REALM

        return self.base_url + PSC_REALM

    @property
    def establishment_issuer(self) -> str:
        """The simulated establishment identity provider (see :mod:`.oidc`)."""
        from sas_desk.simulator.oidc import ESTABLISHMENT_REALM

        return self.base_url + ESTABLISHMENT_REALM

    def vendor_url(self, name: str) -> str:
        return f"{self.base_url}/vendors/{name}/fhir"

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("simulator is not running")
        return int(self._server.server_address[1])

    @property
    def admin_token(self) -> str:
        """What ``/_admin/…`` and ``_fault`` requests send in :data:`ADMIN_HEADER`."""
        return self.routes.admin_token

    @property
    def admin_headers(self) -> dict[str, str]:
        return {ADMIN_HEADER: self.routes.admin_token}

    @property
    def base_url(self) -> str:
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{_url_host(self._host)}:{self.port}"

    def start(self) -> None:
        """Bind, listen and serve in a daemon thread; returns once connections are accepted."""
        with self._lock:
            if self._server is not None:
                return
            context = self._tls.context() if self._tls is not None else None
            server = _Server((self._host, self._port), self.routes, context)
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.02},
                name=f"sas-desk-simulator-{server.server_address[1]}",
                daemon=True,
            )
            thread.start()
            self._server, self._thread = server, thread
        # The socket listens since the server was built: the backlog queues
        # connections until the thread enters its accept loop.
        logger.info("simulator listening on %s", self.base_url)

    def stop(self) -> None:
        """Stop serving and close the listening socket (idempotent)."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None:
            return
        server.stopping.set()  # wakes hanging and delayed requests
        server.shutdown()
        server.server_close()
        server.hang_up_all()
        if thread is not None:
            thread.join()
        logger.info("simulator stopped")

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _public_host(host: str) -> str:
    """A host name others can use for a wildcard bind; the address itself otherwise."""
    if host in ("", "0.0.0.0", "::"):
        return socket.getfqdn()
    return f"[{host}]" if ":" in host else host


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if ":" in host:
        return f"[{host}]"
    return host


def serve_forever(
    host: str,
    port: int,
    *,
    tls_cert: str | Path | None = None,
    tls_key: str | Path | None = None,
    client_ca: str | Path | None = None,
    allow_remote: bool = False,
) -> None:
    """Serve in the foreground until Ctrl-C (``sas-desk simulator --port N``).
    Only on a loopback address unless *allow_remote* (then the printed URL is
    one the network can use, not 127.0.0.1)."""
    tls = _tls_files(tls_cert, tls_key, client_ca)
    if not allow_remote and not _is_loopback(host):
        raise ValueError(
            f"l'adresse « {host} » exposerait le simulateur (données fictives, pages "
            "d'administration) au réseau : servez sur 127.0.0.1, ou ajoutez --allow-remote "
            "en connaissance de cause."
        )
    routes = default_routes()
    server = _Server((host, port), routes, tls.context() if tls else None)
    shown = _url_host(host) if _is_loopback(host) else _public_host(host)
    url = f"{server.scheme}://{shown}:{server.server_address[1]}"
    print(f"Simulateur SAS Desk : {url}", flush=True)
    if not _is_loopback(host):
        print(f"Attention : simulateur ouvert au réseau sur {host}.", flush=True)
    print(f"Jeton d'administration ({ADMIN_HEADER}) : {routes.admin_token}", flush=True)
    logger.info("simulator listening on %s", url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("simulator interrupted, shutting down")
    finally:
        server.stopping.set()
        server.server_close()
