"""Incremental sync of the local directory from its FHIR source.

``GET {base}/_history?_since={cursor}&_count={n}``, then every ``next`` link
verbatim, until there is none (``docs/fhir-directory.md``).  The whole answer
is read first and applied in **one transaction** with the new cursor (the
greatest ``meta.lastUpdated`` seen): a sync that fails anywhere (network, a
broken page, the disk) leaves the previous directory and cursor as they were.

- A broken page (HTTP error, not JSON, not a history Bundle, an
  OperationOutcome, a ``next`` link that loops) aborts the sync:
  :class:`DirectorySyncError` with a French message, and one log line naming
  the page, its URL and the problem.
- An unusable entry or resource is skipped: counted by reason in the report
  and logged with its type, id and reason (never a name).
- No cursor yet, or a cursor from another source (or ``full=True``): a full
  sync, which *replaces* the directory.

The ``httpx.AsyncClient`` is the caller's: TLS options (client certificate,
CA) and proxies are set there.  Applying (and then preloading the place
objects for the candidate queries) runs in a worker thread by default, so
that a full sync does not hold the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn

import httpx

from sas_desk.models.limits import InputError, decode_json
from sas_desk.services.directory.feed import Change, InvalidEntry, read_entry, stamp_instant
from sas_desk.services.directory.store import ApplyCounts, DirectoryError, DirectoryStore
from sas_desk.services.fhir.bundle import outcome_text

log = logging.getLogger("sas_desk.directory")

#: How many skipped entries are logged one by one per sync (then one summary line).
LOG_SKIPPED_LIMIT = 50
FHIR_JSON = "application/fhir+json"


class DirectorySyncError(DirectoryError):
    """The feed could not be read: the sync was abandoned, nothing changed."""

    def __init__(self, message_fr: str, *, page: int, url: str, status: int | None = None) -> None:
        super().__init__(message_fr, "feed")
        self.page = page
        self.url = url
        self.status = status


@dataclass(frozen=True, slots=True)
class SyncReport:
    source: str
    full: bool  # no usable cursor: the directory was replaced
    pages: int
    entries: int
    added: int
    updated: int
    unchanged: int  # replayed entries (``_since`` is inclusive)
    deleted: int
    skipped: int
    duration_s: float
    cursor: str | None  # the cursor stored for the next sync
    skipped_reasons: Mapping[str, int] = field(default_factory=dict)


class DirectorySync:
    """Syncs *store* from the directory feed at *base_url*."""

    def __init__(
        self,
        store: DirectoryStore,
        base_url: str,
        client: httpx.AsyncClient,
        *,
        page_size: int = 500,
        timeout: float = 30.0,
        apply_in_thread: bool = True,
        preload: bool = True,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.base_url = base_url.rstrip("/")
        self.client = client
        self.page_size = page_size
        self.timeout = timeout
        self.apply_in_thread = apply_in_thread
        self.preload = preload  # build the place objects after applying (fast first search)
        self._now = now

    async def run(self, *, full: bool = False) -> SyncReport:
        started = time.monotonic()
        since = None if full else self.store.cursor(self.base_url)
        replace = since is None
        url: str | None = f"{self.base_url}/_history"
        params: dict[str, str] | None = {"_count": str(self.page_size)}
        if since is not None:
            params = {"_since": since, **(params or {})}
        visited: set[str] = set()
        changes: list[Change] = []
        skipped: Counter[str] = Counter()
        best: tuple[datetime, str] | None = None
        pages = entries = 0
        while url is not None:
            pages += 1
            request_url = str(httpx.URL(url, params=params)) if params else url
            if request_url in visited:
                self._abort(
                    pages,
                    request_url,
                    "« next » link loops back to a page already read",
                    "la source renvoie vers une page déjà lue",
                )
            visited.add(request_url)
            bundle = await self._page(pages, request_url)
            for entry in bundle.get("entry") or ():
                entries += 1
                stamp = _entry_stamp(entry)
                instant = stamp_instant(stamp)
                if (
                    stamp is not None
                    and instant is not None
                    and (best is None or instant > best[0])
                ):
                    best = (instant, stamp)
                try:
                    changes.append(read_entry(entry))
                except InvalidEntry as exc:
                    skipped[exc.reason.value] += 1
                    if sum(skipped.values()) <= LOG_SKIPPED_LIMIT:
                        log.warning(
                            "directory sync: skipped %s/%s: %s (%s)",
                            exc.rtype or "?",
                            exc.rid or "?",
                            exc.reason.value,
                            exc.detail,
                        )
            url = _next_link(bundle, request_url)
            params = None
        if sum(skipped.values()) > LOG_SKIPPED_LIMIT:
            log.warning(
                "directory sync: %d entries skipped in all: %s",
                sum(skipped.values()),
                dict(skipped),
            )
        cursor = best[1] if best is not None else since
        if best is not None and since is not None:
            previous = stamp_instant(since)
            if previous is not None and previous > best[0]:
                cursor = since  # never move the cursor back
        apply = functools.partial(
            self.store.apply,
            changes,
            source=self.base_url,
            cursor=cursor,
            synced_at=self._now().isoformat(timespec="seconds"),
            replace=replace,
        )

        def apply_and_preload() -> ApplyCounts:
            counts = apply()
            if self.preload:
                self.store.preload()
            return counts

        if self.apply_in_thread:
            counts = await asyncio.to_thread(apply_and_preload)
        else:
            counts = apply_and_preload()
        report = SyncReport(
            source=self.base_url,
            full=replace,
            pages=pages,
            entries=entries,
            added=counts.added,
            updated=counts.updated,
            unchanged=counts.unchanged,
            deleted=counts.deleted,
            skipped=sum(skipped.values()),
            duration_s=time.monotonic() - started,
            cursor=cursor,
            skipped_reasons=dict(skipped),
        )
        log.info(
            "directory sync from %s: %s, %d page(s), %d entries: +%d ~%d =%d -%d, %d skipped, "
            "%.3f s, cursor %s",
            self.base_url,
            "full" if replace else "incremental",
            pages,
            entries,
            report.added,
            report.updated,
            report.unchanged,
            report.deleted,
            report.skipped,
            report.duration_s,
            cursor,
        )
        return report

    # ------------------------------------------------------------------ pages

    def _abort(
        self, page: int, url: str, detail: str, message: str, status: int | None = None
    ) -> NoReturn:
        log.error("directory sync aborted on page %d (%s): %s", page, url, detail)
        raise DirectorySyncError(
            f"Mise à jour de l'annuaire interrompue (page {page}) : {message}. "
            "L'annuaire précédent est conservé.",
            page=page,
            url=url,
            status=status,
        )

    async def _page(self, page: int, url: str) -> Mapping[str, Any]:
        try:
            response = await self.client.get(
                url, headers={"Accept": FHIR_JSON}, timeout=self.timeout
            )
        except httpx.TimeoutException as exc:
            self._abort(
                page,
                url,
                f"timeout ({exc.__class__.__name__})",
                "la source de l'annuaire ne répond pas",
            )
        except httpx.HTTPError as exc:
            self._abort(
                page,
                url,
                f"transport error {exc.__class__.__name__}: {exc}",
                "la source de l'annuaire est injoignable",
            )
        data: Any = None
        decode_error: str | None = None
        try:
            data = decode_json(response.content)
        except InputError as exc:  # syntax, depth, a 5,000-digit integer, NUL…
            decode_error = exc.message_fr
        if response.status_code >= 400:
            text = (
                outcome_text(data)
                if isinstance(data, Mapping) and data.get("resourceType") == "OperationOutcome"
                else None
            )
            self._abort(
                page,
                url,
                f"HTTP {response.status_code}" + (f", OperationOutcome: {text}" if text else ""),
                f"erreur HTTP {response.status_code} de la source" + (f" ({text})" if text else ""),
                response.status_code,
            )
        if decode_error is not None:
            self._abort(
                page, url, f"not JSON: {decode_error}", "la réponse n'est pas un JSON valide"
            )
        if not isinstance(data, Mapping):
            self._abort(page, url, "not a JSON object", "la réponse n'est pas une ressource FHIR")
        rtype = data.get("resourceType")
        if rtype == "OperationOutcome":
            text = outcome_text(data)
            self._abort(
                page, url, f"OperationOutcome: {text}", f"la source signale une erreur ({text})"
            )
        if rtype != "Bundle":
            self._abort(
                page,
                url,
                f"resourceType {rtype!r}, not a Bundle",
                "la réponse n'est pas un Bundle FHIR",
            )
        if data.get("type") != "history":
            self._abort(
                page,
                url,
                f"Bundle type {data.get('type')!r}, not history",
                "la réponse n'est pas un historique FHIR",
            )
        if not isinstance(data.get("entry", []), list):
            self._abort(page, url, "Bundle.entry is not a list", "Bundle mal formé")
        return data


def _entry_stamp(entry: Any) -> str | None:
    if not isinstance(entry, Mapping):
        return None
    resource = entry.get("resource")
    meta = resource.get("meta") if isinstance(resource, Mapping) else None
    stamp = meta.get("lastUpdated") if isinstance(meta, Mapping) else None
    if stamp is None:
        response = entry.get("response")
        stamp = response.get("lastModified") if isinstance(response, Mapping) else None
    return stamp if isinstance(stamp, str) else None


def _next_link(bundle: Mapping[str, Any], current: str) -> str | None:
    links = bundle.get("link")
    for link in links if isinstance(links, list) else ():
        if isinstance(link, Mapping) and link.get("relation") == "next":
            target = link.get("url")
            if isinstance(target, str) and target.strip():
                target = target.strip()
                if target.lower().startswith(("https://", "http://")):
                    return target  # opaque: used verbatim
                return str(httpx.URL(current).join(target))  # relative to the page
    return None
