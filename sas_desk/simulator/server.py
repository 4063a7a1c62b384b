"""The SAS Desk simulator: a real HTTP server on loopback.

It stands in for the external services SAS Desk talks to (for now the
national address API; later FHIR vendors, booking pages, ...), so the desk
can be demonstrated and tested offline with its real HTTP clients.

Routes live in a :class:`RouteTable` mapping a path prefix to a handler
``(query, request) -> (status, headers, body)``; :func:`default_routes`
builds the table the simulator serves.  To add a service, write its handler
module and register it in :func:`default_routes`.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from sas_desk.simulator import ban

__all__ = [
    "Handler",
    "Request",
    "Response",
    "Route",
    "RouteTable",
    "Simulator",
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


@dataclass(frozen=True)
class Request:
    """What a handler may need beyond the query string."""

    method: str
    path: str
    query: Query
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""


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


class RouteTable:
    """Path prefix -> handler.  The longest matching prefix wins.

    A prefix matches on whole path segments: ``/search`` serves ``/search``,
    ``/search/`` and ``/search/anything`` but not ``/searchlight``.
    """

    def __init__(self) -> None:
        self._routes: list[Route] = []

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
        if request.method not in route.methods:
            allowed = ", ".join(sorted(route.methods))
            status, headers, body = error_response(405, f"method {request.method} not allowed")
            return status, {**headers, "Allow": allowed}, body
        return route.handler(request.query, request)


def _health(query: Query, request: Request) -> Response:
    del query, request
    return json_response(200, {"status": "ok"})


def default_routes() -> RouteTable:
    """The routes the simulator serves."""
    table = RouteTable()
    table.add("/health", _health)
    table.add("/search", ban.make_search_handler(ban.BanDataset.from_resources()))
    return table


# --------------------------------------------------------------------------- HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], routes: RouteTable) -> None:
        self.routes = routes
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _RequestHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up early (timeouts, cancelled type-ahead) are normal.
        logger.debug("connection error with %s", client_address[0], exc_info=True)


class _RequestHandler(BaseHTTPRequestHandler):
    server_version = "SASDeskSimulator/1"

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
        request = Request(
            method=self.command,
            path=parts.path or "/",
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )
        routes = cast(_Server, self.server).routes
        try:
            response = routes.dispatch(request)
        except Exception:
            logger.exception("simulator handler failed for %s %s", request.method, request.path)
            response = error_response(500, "internal simulator error")
        self._send(*response)

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


class Simulator:
    """The simulator running in a background daemon thread (tests, demo mode).

    >>> with Simulator() as sim:
    ...     url = sim.base_url   # e.g. "http://127.0.0.1:54321"
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, routes: RouteTable | None = None
    ) -> None:
        self._host = host
        self._port = port
        self._routes = routes
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def routes(self) -> RouteTable:
        """The route table (built on first use); add routes before :meth:`start`."""
        if self._routes is None:
            self._routes = default_routes()
        return self._routes

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("simulator is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{_url_host(self._host)}:{self.port}"

    def start(self) -> None:
        """Bind, listen and serve in a daemon thread; returns once connections are accepted."""
        with self._lock:
            if self._server is not None:
                return
            server = _Server((self._host, self._port), self.routes)
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
        server.shutdown()
        server.server_close()
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


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if ":" in host:
        return f"[{host}]"
    return host


def serve_forever(host: str, port: int) -> None:
    """Serve in the foreground until Ctrl-C (``sas-desk simulator --port N``)."""
    server = _Server((host, port), default_routes())
    url = f"http://{_url_host(host)}:{server.server_address[1]}"
    print(f"Simulateur SAS Desk : {url}", flush=True)
    logger.info("simulator listening on %s", url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("simulator interrupted, shutting down")
    finally:
        server.server_close()
