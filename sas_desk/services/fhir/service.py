"""The slot search as the rest of SAS Desk uses it: the local directory (kept
in sync with its feed), one HTTP client per vendor, and searches.

    slots = SlotService.from_config(config, directory_url, vendors, now=clock.now)
    await slots.open()          # the directory file (in a thread)
    report = await slots.sync() # incremental; the previous directory stays on failure
    async for update in slots.search(query): ...
    await slots.close()

In the demo, :func:`demo_sources` reads the simulator's ``/_meta``: its
vendors and its directory feed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from pathlib import Path

import httpx

from sas_desk.models.errors import KnownError
from sas_desk.models.search import SearchQuery, SearchUpdate
from sas_desk.services.config import Config, VendorEndpoint
from sas_desk.services.directory.store import DirectoryStore
from sas_desk.services.directory.sync import DirectorySync, SyncReport
from sas_desk.services.fhir.candidates import DirectoryCandidates
from sas_desk.services.fhir.search import SlotSearch
from sas_desk.services.fhir.vendor import VendorClient

log = logging.getLogger("sas_desk.fhir.service")


class SlotServiceError(KnownError):
    def __init__(self, message_fr: str) -> None:
        super().__init__(message_fr)
        self.message_fr = message_fr


async def demo_sources(simulator_url: str) -> tuple[str, list[VendorEndpoint]]:
    """The demo simulator's directory feed and vendor endpoints."""
    base = simulator_url.rstrip("/")
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.get(f"{base}/_meta")
            response.raise_for_status()
            meta = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        log.error("demo simulator %s: no vendor list (%s)", base, type(exc).__name__)
        raise SlotServiceError("Simulateur injoignable : pas d'éditeurs d'agenda.") from exc
    vendors = [VendorEndpoint(str(v["name"]), str(v["base_url"])) for v in meta]
    return f"{base}/directory", vendors


class SlotService:
    def __init__(
        self,
        directory_path: Path,
        directory_url: str,
        vendors: Sequence[VendorEndpoint],
        *,
        now: Callable[[], datetime],
        per_vendor: int = 4,
        slow_after: float = 2.0,
    ) -> None:
        self.directory_path = directory_path
        self.directory_url = directory_url
        self.vendors = tuple(vendors)
        self._now = now
        self.per_vendor = per_vendor
        self.slow_after = slow_after
        self.store: DirectoryStore | None = None
        self._clients: dict[str, VendorClient] = {}
        self._feed: httpx.AsyncClient | None = None
        self.last_sync: SyncReport | None = None

    @classmethod
    def from_config(
        cls,
        config: Config,
        directory_url: str,
        vendors: Sequence[VendorEndpoint],
        *,
        now: Callable[[], datetime],
    ) -> SlotService:
        """The service with the config's directory file and ``[search]`` settings;
        the feed and vendors as the caller found them (config or demo)."""
        return cls(
            config.directory_path,
            directory_url,
            vendors,
            now=now,
            per_vendor=config.search_per_vendor,
            slow_after=config.search_slow_s,
        )

    async def open(self) -> None:
        self.store = await asyncio.to_thread(DirectoryStore, self.directory_path)
        self._clients = {v.name: VendorClient(v) for v in self.vendors}

    def _require(self) -> DirectoryStore:
        if self.store is None:
            raise SlotServiceError("Annuaire non ouvert.")
        return self.store

    async def sync(self, *, full: bool = False) -> SyncReport:
        """Bring the directory up to date (the previous copy stays in use when
        the feed fails: :class:`~sas_desk.services.directory.sync.DirectorySyncError`)."""
        store = self._require()
        if not self.directory_url:
            raise SlotServiceError("Aucune source d'annuaire configurée ([search] directory_url).")
        if self._feed is None:
            self._feed = httpx.AsyncClient(timeout=30, headers={"Accept": "application/fhir+json"})
        report = await DirectorySync(store, self.directory_url, self._feed).run(full=full)
        self.last_sync = report
        log.info(
            "directory synced: +%d ~%d -%d, %d skipped, %.2f s",
            report.added,
            report.updated,
            report.deleted,
            report.skipped,
            report.duration_s,
        )
        return report

    def search(
        self, query: SearchQuery, *, now: datetime | None = None
    ) -> AsyncIterator[SearchUpdate]:
        """One search; ``now``: the time it starts from when the caller's clock
        is not this service's (the search worker gets the app's)."""
        engine = SlotSearch(
            self._clients,
            DirectoryCandidates(self._require(), self.vendors),
            now=self._now if now is None else (lambda: now),
            per_vendor=self.per_vendor,
            slow_after=self.slow_after,
        )
        return engine.run(query)

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients = {}
        if self._feed is not None:
            await self._feed.aclose()
            self._feed = None
        if self.store is not None:
            self.store.close()
            self.store = None
