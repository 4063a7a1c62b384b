"""The loopback redirect of a native app (RFC 8252 §7.3): a one-shot HTTP
listener on ``127.0.0.1`` and a port chosen by the system, which receives the
provider's redirect from the system browser and hands its query parameters
(``code``, ``state``, ``iss`` or ``error``) to the login."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

from sas_desk.services.auth.errors import AuthError

__all__ = ["LoopbackReceiver"]

log = logging.getLogger("sas_desk.auth")

_PAGE_DONE = (
    "<!doctype html><html lang='fr'><head><meta charset='utf-8'><title>SAS Desk</title></head>"
    "<body><p>Connexion transmise à SAS Desk. Vous pouvez fermer cet onglet.</p></body></html>"
)
_HEADER_LIMIT = 16 * 1024
_READ_TIMEOUT_S = 10.0


class LoopbackReceiver:
    """``async with LoopbackReceiver() as rx: … rx.redirect_uri … await rx.wait(300)``."""

    def __init__(self, host: str = "127.0.0.1", path: str = "/callback") -> None:
        self._host = host
        self._path = path
        self._server: asyncio.Server | None = None
        self._result: asyncio.Future[dict[str, str]] | None = None
        self._uri = ""

    @property
    def redirect_uri(self) -> str:
        if not self._uri:
            raise RuntimeError("the receiver is not listening")
        return self._uri

    async def __aenter__(self) -> LoopbackReceiver:
        self._result = asyncio.get_running_loop().create_future()
        self._server = await asyncio.start_server(self._handle, self._host, 0)
        port = self._server.sockets[0].getsockname()[1]
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._uri = f"http://{host}:{port}{self._path}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def wait(self, timeout: float) -> dict[str, str]:
        """The redirect's query parameters; :class:`AuthError` ``timeout`` if none came."""
        assert self._result is not None
        try:
            return await asyncio.wait_for(asyncio.shield(self._result), timeout)
        except TimeoutError as exc:
            raise AuthError("timeout", f"no redirect within {timeout:.0f} s") from exc
        finally:
            await self.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT_S)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            writer.close()
            return
        if len(head) > _HEADER_LIMIT:
            await self._answer(writer, 431, "Requête trop longue.")
            return
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        target = urlsplit(parts[1]) if len(parts) == 3 and parts[0] == "GET" else None
        if target is None or target.path != self._path:
            await self._answer(writer, 404, "Adresse inconnue.")
            return
        assert self._result is not None
        if self._result.done():
            await self._answer(writer, 410, "Cette connexion a déjà été reçue.")
            return
        params = {k: v[0] for k, v in parse_qs(target.query, keep_blank_values=True).items()}
        self._result.set_result(params)
        log.info("loopback redirect received (%s)", "error" if "error" in params else "code")
        await self._answer(writer, 200, _PAGE_DONE)

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, status: int, text: str) -> None:
        body = text.encode("utf-8")
        reason = {200: "OK", 404: "Not Found", 410: "Gone", 431: "Too Large"}.get(status, "")
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n".encode(
                "ascii"
            )
            + body
        )
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()
