"""Roster sources over HTTP(S): conditional GET, validate, swap in.

For each configured URL: ``GET`` with ``If-None-Match`` / ``If-Modified-Since``
from the last successful fetch.  ``304``: nothing to do (the sync counts as
successful).  ``200``: the body (at most :data:`~.formats.MAX_BYTES`, read as
it streams) is parsed and checked like a file import, then put in force in
one transaction (in a worker thread).  Anything else — timeout, connection
refused, HTTP error, truncated body, an invalid roster — leaves the roster in
force untouched and is recorded with a French message; the status then says
that the cached roster is used.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx

from sas_desk.services.roster.formats import MAX_BYTES, RosterFormatError, _too_big
from sas_desk.services.roster.service import ImportReport, RosterImportError, RosterService
from sas_desk.services.roster.store import RosterError

log = logging.getLogger("sas_desk.roster")

__all__ = ["RosterSync", "SourceResult"]

_TYPES = {"text/calendar": ".ics", "application/json": ".json", "text/csv": ".csv"}


@dataclass(frozen=True)
class SourceResult:
    url: str
    state: str  # updated | unchanged | failed | offline
    message_fr: str
    report: ImportReport | None = None
    status_code: int | None = None


class _Refused(Exception):
    def __init__(self, state: str, message_fr: str, status: int | None = None) -> None:
        super().__init__(message_fr)
        self.state, self.message_fr, self.status = state, message_fr, status


class RosterSync:
    """Fetches every source of *service* with the caller's ``AsyncClient``."""

    def __init__(
        self,
        service: RosterService,
        client: httpx.AsyncClient,
        *,
        timeout: float = 20.0,
        max_bytes: int = MAX_BYTES,
        in_thread: bool = True,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.service = service
        self.client = client
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.in_thread = in_thread
        self._now = now

    async def run(self) -> list[SourceResult]:
        return [await self.fetch(url) for url in self.service.sources]

    async def fetch(self, url: str) -> SourceResult:
        store = self.service.store
        attempt = self._now()
        previous = store.source(url)
        headers = {"Accept": "text/csv, text/calendar, application/json;q=0.9, */*;q=0.5"}
        if previous is not None and previous.version_id is not None:
            if previous.etag:
                headers["If-None-Match"] = previous.etag
            if previous.last_modified:
                headers["If-Modified-Since"] = previous.last_modified
        try:
            status, body, etag, modified, name = await self._get(url, headers)
            if status == 304:
                store.record_source(
                    url,
                    state="unchanged",
                    message="Tableau de garde à jour (inchangé).",
                    attempt=attempt,
                    success=True,
                )
                log.info("roster source %s: not modified", url)
                return SourceResult(
                    url, "unchanged", "Tableau de garde à jour (inchangé).", None, 304
                )
            try:
                if self.in_thread:
                    report = await asyncio.to_thread(self._import, body, name, url)
                else:
                    report = self._import(body, name, url)
            except RosterImportError as exc:
                first = str(exc.issues[0]) if exc.issues else ""
                raise _Refused(
                    "failed",
                    f"Tableau reçu invalide ({len(exc.issues)} erreur(s), 1re : {first}) : "
                    "le tableau précédent reste en vigueur.",
                    status,
                ) from None
            except RosterError as exc:
                raise _Refused("failed", exc.message_fr, status) from None
        except _Refused as exc:
            store.record_source(
                url, state=exc.state, message=exc.message_fr, attempt=attempt, success=False
            )
            log.warning("roster source %s: %s (%s)", url, exc.state, exc.status)
            return SourceResult(url, exc.state, exc.message_fr, None, exc.status)
        message = (
            f"Tableau de garde mis à jour : {report.entries} gardes (version {report.version.id})."
        )
        store.record_source(
            url,
            state="updated",
            message=message,
            attempt=attempt,
            success=True,
            etag=etag,
            last_modified=modified,
            version_id=report.version.id,
        )
        log.info("roster source %s: version %d", url, report.version.id)
        return SourceResult(url, "updated", message, report, status)

    def _import(self, body: bytes, name: str, url: str) -> ImportReport:
        return self.service.import_bytes(
            body, name, origin="sync", source=url, max_bytes=self.max_bytes
        )

    async def _get(
        self, url: str, headers: dict[str, str]
    ) -> tuple[int, bytes, str | None, str | None, str]:
        try:
            async with self.client.stream(
                "GET", url, headers=headers, timeout=self.timeout
            ) as response:
                status = response.status_code
                if status == 304:
                    return status, b"", None, None, ""
                if 300 <= status < 400:
                    raise _Refused(
                        "failed",
                        f"Source des tableaux redirigée (HTTP {status}) : redirection refusée, "
                        "écrivez l'adresse finale dans [rosters] urls ; le tableau local reste "
                        "utilisé.",
                        status,
                    )
                if status != 200:
                    raise _Refused(
                        "failed",
                        f"Source des tableaux en erreur (HTTP {status}) : "
                        "le tableau local reste utilisé.",
                        status,
                    )
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > self.max_bytes:
                    raise _Refused("failed", _refusal(int(declared), self.max_bytes), status)
                chunks: list[bytes] = []
                received = 0
                async for chunk in response.aiter_raw():
                    received += len(chunk)
                    if received > self.max_bytes:
                        raise _Refused("failed", _refusal(received, self.max_bytes), status)
                    chunks.append(chunk)
                body = b"".join(chunks)
                if declared and declared.isdigit() and len(body) != int(declared):
                    raise _Refused(
                        "failed",
                        "Tableau reçu tronqué : le tableau local reste utilisé.",
                        status,
                    )
                content_type = response.headers.get("content-type", "").split(";")[0].strip()
                path = urlsplit(url).path
                name = path.rsplit("/", 1)[-1] or "tableau"
                if "." not in name and content_type in _TYPES:
                    name += _TYPES[content_type]
                return (
                    status,
                    body,
                    response.headers.get("etag"),
                    response.headers.get("last-modified"),
                    name,
                )
        except httpx.TimeoutException:
            raise _Refused(
                "offline",
                "Source des tableaux muette (délai dépassé) : le tableau local reste utilisé.",
            ) from None
        except httpx.RemoteProtocolError:
            raise _Refused(
                "failed", "Tableau reçu tronqué : le tableau local reste utilisé."
            ) from None
        except httpx.HTTPError as exc:
            log.info("roster source %s unreachable: %s", url, exc.__class__.__name__)
            raise _Refused(
                "offline", "Source des tableaux injoignable : le tableau local reste utilisé."
            ) from None


def _refusal(size: int, max_bytes: int) -> str:
    text = str(RosterFormatError([_too_big(size, max_bytes)]).issues[0])
    return f"Tableau reçu refusé ({text}) : le tableau local reste utilisé."
