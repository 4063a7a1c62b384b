"""Async client for the national address API (BAN ``/search/``).

Works against the real service (api-adresse.data.gouv.fr) and against the
local simulator (:mod:`sas_desk.simulator.ban`).  Qt-free: the UI owns the
``httpx.AsyncClient`` and the event loop.

Addresses typed by the operator are patient data: they are never logged at
INFO or above, only their length.  httpx itself logs every request URL at
INFO on the ``httpx`` logger, query string included; creating a
:class:`BanGeocoder` installs :class:`RedactQueryStrings` on that logger so
those lines keep the path but drop the query.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Any

import httpx

from sas_desk.models.errors import KnownError
from sas_desk.models.limits import InputError, decode_json

__all__ = [
    "KINDS",
    "MAX_LIMIT",
    "BanGeocoder",
    "GeoResult",
    "GeocodingError",
    "RedactQueryStrings",
    "install_httpx_redaction",
]

logger = logging.getLogger("sas_desk.geo")

# Requests whose caller gave up (the operator typed on), left to end by themselves:
# httpcore 1.0.9 keeps a connection cancelled mid-request in its pool for good
# (encode/httpcore#1093), so a request is never cancelled, only abandoned.  Held
# here until done (the loop keeps only weak references to tasks).
_abandoned: set[asyncio.Task[httpx.Response]] = set()


def _forget(task: asyncio.Task[httpx.Response]) -> None:
    _abandoned.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: an abandoned request's failure is nobody's


async def _uncancelled(request: asyncio.Task[httpx.Response]) -> httpx.Response:
    try:
        return await asyncio.shield(request)
    except asyncio.CancelledError:
        if not request.done():
            _abandoned.add(request)
            request.add_done_callback(_forget)
        raise


KINDS = ("municipality", "street", "housenumber")
MIN_QUERY_LENGTH = 3
MAX_QUERY_LENGTH = 200
MAX_LIMIT = 20


@dataclass(frozen=True)
class GeoResult:
    """One suggestion.  ``street`` is set for streets and house numbers."""

    label: str
    kind: str  # "municipality" | "street" | "housenumber"
    city: str
    citycode: str
    postcode: str
    lat: float
    lon: float
    score: float
    housenumber: str | None
    street: str | None


class GeocodingError(KnownError):
    """The address search failed; ``message_fr`` can be shown to the operator as is.

    ``reason`` is one of ``"unreachable"``, ``"timeout"``, ``"http_status"``,
    ``"invalid_response"``; ``status`` is the HTTP status when there was one.
    """

    def __init__(self, message_fr: str, *, reason: str, status: int | None = None) -> None:
        super().__init__(message_fr)
        self.message_fr = message_fr
        self.reason = reason
        self.status = status


MSG_UNREACHABLE = "Service d'adresses injoignable"
MSG_TIMEOUT = "Le service d'adresses ne répond pas (délai dépassé)"
MSG_INVALID = "Réponse invalide du service d'adresses"
MSG_REJECTED = "Recherche d'adresse refusée par le service d'adresses"
MSG_BUSY = "Service d'adresses saturé, réessayez dans un instant"
MSG_UNAVAILABLE = "Service d'adresses indisponible (erreur {status})"


class RedactQueryStrings(logging.Filter):
    """Replace the query string of any URL argument of a log record by ``?<redacted>``.

    Meant for the ``httpx`` logger, whose INFO line ``HTTP Request: GET <url> ...``
    would otherwise carry the address being searched.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(_redact(arg) for arg in record.args)
        return True


def _redact(arg: object) -> object:
    if isinstance(arg, httpx.URL):
        return str(arg.copy_with(query=None)) + "?<redacted>" if arg.query else arg
    return arg


def install_httpx_redaction() -> None:
    """Add :class:`RedactQueryStrings` to the ``httpx`` logger (once)."""
    httpx_logger = logging.getLogger("httpx")
    if not any(isinstance(f, RedactQueryStrings) for f in httpx_logger.filters):
        httpx_logger.addFilter(RedactQueryStrings())


class BanGeocoder:
    """``search()`` wraps ``GET {base_url}/search/`` with French error messages."""

    def __init__(self, base_url: str, client: httpx.AsyncClient, timeout: float = 3.0) -> None:
        self._url = base_url.rstrip("/") + "/search/"
        self._client = client
        self._timeout = timeout
        install_httpx_redaction()

    @property
    def url(self) -> str:
        return self._url

    async def search(
        self,
        q: str,
        *,
        limit: int = 6,
        type_: str | None = None,
        near: tuple[float, float] | None = None,
    ) -> list[GeoResult]:
        """Suggestions for *q*, best first.

        Returns ``[]`` without any request for queries shorter than three
        characters.  *near* is ``(lat, lon)`` and favours close results.
        Raises :class:`GeocodingError` when the service cannot answer.
        """
        text = _clean_query(q)
        if len(text) < MIN_QUERY_LENGTH:
            return []
        if type_ is not None and type_ not in KINDS:
            raise ValueError(f"type_ must be one of {', '.join(KINDS)}, not {type_!r}")
        params: dict[str, str] = {"q": text, "limit": str(max(1, min(limit, MAX_LIMIT)))}
        if type_ is not None:
            params["type"] = type_
        if near is not None:
            params["lat"] = f"{near[0]:.6f}"
            params["lon"] = f"{near[1]:.6f}"

        try:
            response = await _uncancelled(
                asyncio.ensure_future(
                    self._client.get(self._url, params=params, timeout=httpx.Timeout(self._timeout))
                )
            )
        except httpx.TimeoutException as exc:
            self._log_failure(f"timed out after {self._timeout:g}s ({type(exc).__name__})", text)
            raise GeocodingError(MSG_TIMEOUT, reason="timeout") from exc
        except httpx.HTTPError as exc:
            self._log_failure(f"transport error {type(exc).__name__}", text)
            raise GeocodingError(MSG_UNREACHABLE, reason="unreachable") from exc

        if response.status_code != 200:
            status = response.status_code
            self._log_failure(f"HTTP status {status}", text)
            if status == 400:
                message = MSG_REJECTED
            elif status == 429:
                message = MSG_BUSY
            else:
                message = MSG_UNAVAILABLE.format(status=status)
            raise GeocodingError(message, reason="http_status", status=status)

        try:
            payload = decode_json(response.content)
        except InputError as exc:  # not JSON, too deep, a 5,000-digit integer…
            self._log_failure(
                f"body refused ({exc.detail_fr}, {len(response.content)} bytes)", text
            )
            raise GeocodingError(MSG_INVALID, reason="invalid_response", status=200) from exc

        features = payload.get("features") if isinstance(payload, dict) else None
        if not isinstance(features, list):
            self._log_failure("JSON body has no 'features' list", text)
            raise GeocodingError(MSG_INVALID, reason="invalid_response", status=200)

        results: list[GeoResult] = []
        skipped = 0
        for feature in features:
            result = _parse_feature(feature)
            if result is None:
                skipped += 1
            else:
                results.append(result)
        if skipped:
            logger.debug("skipped %d malformed feature(s) out of %d", skipped, len(features))
        return results

    def _log_failure(self, what: str, query: str) -> None:
        # Never the query text: only its length.
        logger.warning(
            "address search failed: %s from %s (query length %d)", what, self._url, len(query)
        )


def _clean_query(q: str) -> str:
    text = " ".join(q.split())
    # The API wants the query to start with a letter or a digit.
    start = 0
    while start < len(text) and not text[start].isalnum():
        start += 1
    return text[start : start + MAX_QUERY_LENGTH].strip()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _parse_feature(feature: Any) -> GeoResult | None:
    """A :class:`GeoResult`, or ``None`` when the feature is malformed."""
    if not isinstance(feature, dict):
        return None
    geometry, properties = feature.get("geometry"), feature.get("properties")
    if not isinstance(geometry, dict) or not isinstance(properties, dict):
        return None
    coordinates = geometry.get("coordinates")
    if not isinstance(coordinates, list) or len(coordinates) < 2:
        return None
    lon, lat = _number(coordinates[0]), _number(coordinates[1])
    if lon is None or lat is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None

    kind = _text(properties.get("type"))
    label = _text(properties.get("label"))
    city = _text(properties.get("city"))
    citycode = _text(properties.get("citycode"))
    score = _number(properties.get("score"))
    if kind not in KINDS or not label or city is None or citycode is None or score is None:
        return None
    postcode = _text(properties.get("postcode")) or ""

    housenumber = _text(properties.get("housenumber")) if kind == "housenumber" else None
    if kind == "housenumber" and not housenumber:
        return None
    street: str | None = None
    if kind == "housenumber":
        street = _text(properties.get("street"))
    elif kind == "street":
        street = _text(properties.get("name"))

    return GeoResult(
        label=label,
        kind=kind,
        city=city,
        citycode=citycode,
        postcode=postcode,
        lat=lat,
        lon=lon,
        score=score,
        housenumber=housenumber,
        street=street,
    )
