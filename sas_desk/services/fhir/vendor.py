"""One scheduling vendor's FHIR endpoint, asked exactly as the SAS guide says.

* Practitioners (INT_R01) and CPTS-visible slots (INT_R04)::

    GET [base]/Slot?_include=Slot:schedule&_include:iterate=Schedule:actor
        [&_include=Slot:service-type-reference&_include:iterate=HealthcareService:organization]
        &start=ge<instant>&start=le<instant>
        &schedule.actor:Practitioner.identifier=urn:oid:1.2.250.1.71.4.2.1|8<RPPS>,…  (1–25)
        &status=free&_count=1000

* SOS Médecins associations, by SIRET::

    GET [base]/Schedule?_revinclude=Slot:schedule&_include=Schedule:actor:Location
        &_include:iterate=Location:organization
        &_has:Slot:schedule:start=ge<instant>&_has:Slot:schedule:start=le<instant>
        &_has:Slot:schedule:status=free
        &actor:Location.organization.identifier=urn:oid:1.2.250.1.71.4.2.2|3<SIRET>,…  (1–10)
        &_count=1000

Instants are sent with milliseconds and a numeric offset
(``2026-11-29T16:20:00.000+01:00``), the form of the guide's examples; ``+``
and ``|`` are percent-encoded.  ``Accept: application/fhir+json`` (the
guide's ``application/json+fhir`` is accepted by servers too, but the
standard value is what a modern server expects).

Each vendor has its own HTTP/1.1 connections (:class:`VendorHttp`, on
httpcore, the layer under httpx): its scheme, host, port and headers are
encoded once, and a request is the target bytes we built ourselves -- httpx
validated every character of each 1.4 kB URL in Python, built its request
and response models and ran its cookie, auth and redirect steps for each
request (≈ a quarter of the search's CPU in a profile). ``gzip`` answers are
accepted, as httpx did; proxies come from the environment (``HTTPS_PROXY``,
``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``), as httpx did.

The body is read as a stream and refused beyond ``max_bytes``; it is parsed
on the event loop in steps of a few milliseconds (over 4 MiB: in a worker
thread), so that the loop never waits long for it.  Every failure becomes a
:class:`VendorError` with a French message for the operator.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import urllib.request
import zlib
from collections.abc import AsyncIterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpcore
import httpx

from sas_desk.models.errors import KnownError
from sas_desk.models.slots import OID_IDNAT_PS, OID_IDNAT_STRUCT
from sas_desk.services.config import VendorEndpoint, key_passphrase
from sas_desk.services.fhir.bundle import BundleError, BundleResult, parse_bundle, parse_steps

log = logging.getLogger("sas_desk.fhir.vendor")

#: Answers up to this size (a batch of 25 practitioners over 72 h is about
#: 0.6 MB, 5 ms of parsing) are parsed on the event loop, in steps of a few
#: milliseconds with the loop's other events in between (``parse_steps``).
#: Parsing is pure Python: in a thread it gains no parallelism, only takes
#: turns on the GIL with the loop's thread, which then waits up to the switch
#: interval for every callback -- the desk's window stalled longer
#: (bench/ui_search.py: longest stall 52-75 ms, against 16-27 ms in steps on
#: the loop) and searches took longer.
INLINE_PARSE_MAX = 4 << 20
#: Bigger answers are parsed in one thread, one after the other, so that one
#: huge answer never freezes the window.
_PARSER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fhir-parse")

MAX_IDS_PER_REQUEST = 25  # the guide: 1 to 25 practitioners per Slot request
MAX_SIRETS_PER_REQUEST = 10  # the functional page: "1 à 10 SIRET"
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
FHIR_JSON = "application/fhir+json"
_SAFE = ":,"  # kept as is in parameter values; everything else reserved is encoded


class VendorError(KnownError):
    """A request that brought no usable answer."""

    def __init__(self, message_fr: str, kind: str, outcome_text: str | None = None) -> None:
        super().__init__(message_fr)
        self.message_fr = message_fr
        self.kind = kind  # timeout | http | outcome | body | network | tls | too_big
        self.outcome_text = outcome_text


def instant(value: datetime) -> str:
    """``2026-11-29T16:20:00.000+01:00``: milliseconds and a numeric offset."""
    if value.tzinfo is None:
        raise ValueError("a search bound needs a time zone")
    return value.isoformat(timespec="milliseconds")


class _Encoded(str):
    """A parameter value already percent-encoded."""


def _identifiers(system: str, values: Sequence[str]) -> _Encoded:
    """``system|value,…`` encoded: the system's prefix once, each value on
    its own (an alphanumeric value comes back from ``quote`` as is: ≈ 4×
    faster than encoding the 1.2 kB of 25 identifiers character by character)."""
    prefix = quote(system + "|", safe=_SAFE)
    return _Encoded(",".join(prefix + quote(v, safe=_SAFE) for v in values))


def _query(pairs: Sequence[tuple[str, str]]) -> str:
    return "&".join(
        f"{key}={value if isinstance(value, _Encoded) else quote(value, safe=_SAFE)}"
        for key, value in pairs
    )


def slot_query(
    national_ids: Sequence[str], start: datetime, end: datetime, *, cpts: bool = False
) -> str:
    """The query string of a Slot search for 1–25 prefixed IdNat_PS values."""
    if not 1 <= len(national_ids) <= MAX_IDS_PER_REQUEST:
        raise ValueError(f"1 to {MAX_IDS_PER_REQUEST} practitioners per request")
    pairs = [("_include", "Slot:schedule"), ("_include:iterate", "Schedule:actor")]
    if cpts:
        pairs += [
            ("_include", "Slot:service-type-reference"),
            ("_include:iterate", "HealthcareService:organization"),
        ]
    pairs += [
        ("start", "ge" + instant(start)),
        ("start", "le" + instant(end)),
        ("schedule.actor:Practitioner.identifier", _identifiers(OID_IDNAT_PS, national_ids)),
        ("status", "free"),
        ("_count", "1000"),
    ]
    return _query(pairs)


def sos_query(sirets: Sequence[str], start: datetime, end: datetime) -> str:
    """The query string of a Schedule search for 1–10 prefixed SIRET values."""
    if not 1 <= len(sirets) <= MAX_SIRETS_PER_REQUEST:
        raise ValueError(f"1 to {MAX_SIRETS_PER_REQUEST} associations per request")
    pairs = [
        ("_revinclude", "Slot:schedule"),
        ("_include", "Schedule:actor:Location"),
        ("_include:iterate", "Location:organization"),
        ("_has:Slot:schedule:start", "ge" + instant(start)),
        ("_has:Slot:schedule:start", "le" + instant(end)),
        ("_has:Slot:schedule:status", "free"),
        ("actor:Location.organization.identifier", _identifiers(OID_IDNAT_STRUCT, sirets)),
        ("_count", "1000"),
    ]
    return _query(pairs)


def tls_context(endpoint: VendorEndpoint) -> ssl.SSLContext:
    """Server certificate always verified (system CAs, plus ``ca``); TLS 1.2
    at least; the client certificate when configured (mTLS)."""
    context = ssl.create_default_context(cafile=endpoint.ca or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if endpoint.client_cert:
        # an encrypted key's passphrase comes from the keyring, never a terminal prompt
        key = endpoint.client_key
        try:
            context.load_cert_chain(
                endpoint.client_cert, key or None, password=lambda: key_passphrase(key)
            )
        except (ssl.SSLError, OSError) as exc:
            raise VendorError(
                f"Certificat client de {endpoint.name} inutilisable ({endpoint.client_key}) : "
                "fichier illisible, ou clé chiffrée sans sa phrase de passe dans le trousseau "
                f"(service « sas-desk », utilisateur « key:{key} »).",
                "tls",
            ) from exc
    return context


_PLAIN: ssl.SSLContext | None = None


def _verify(endpoint: VendorEndpoint) -> ssl.SSLContext:
    """The TLS context of one vendor (its identity is its own). A plain-HTTP
    endpoint (the demo's loopback simulator) shares one default context:
    loading the system CAs costs ≈ 40 ms each time."""
    global _PLAIN
    if endpoint.base_url.startswith("https://"):
        return tls_context(endpoint)
    if _PLAIN is None:
        _PLAIN = ssl.create_default_context()
    return _PLAIN


def _tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "SSL" in str(exc) or "CERTIFICATE" in str(exc).upper()


def environment_proxy(url: str) -> httpcore.Proxy | None:
    """The proxy the environment gives for ``url`` (``HTTPS_PROXY`` /
    ``HTTP_PROXY``, else ``ALL_PROXY``; none when ``NO_PROXY`` covers its
    host), as httpx's clients read it."""
    split = urlsplit(url)
    proxies = urllib.request.getproxies()
    address = proxies.get(split.scheme) or proxies.get("all")
    if not address or urllib.request.proxy_bypass(split.hostname or ""):
        return None
    if "://" not in address:
        address = f"http://{address}"
    proxy = urlsplit(address)
    auth = None
    if proxy.username is not None:
        auth = (unquote(proxy.username), unquote(proxy.password or ""))
    netloc = proxy.netloc.rpartition("@")[2]
    return httpcore.Proxy(f"{proxy.scheme}://{netloc}", auth=auth)


class VendorHttp:
    """One vendor's HTTP/1.1 connections: what every request shares (scheme,
    host, port, headers, timeouts) is encoded once; a request is its target,
    bytes already percent-encoded by :func:`slot_query` / :func:`sos_query`.
    Used with an ``async with``-less :meth:`get`: the status, the headers
    wanted and the body's chunks, the response closed in any case."""

    def __init__(self, endpoint: VendorEndpoint) -> None:
        split = urlsplit(endpoint.base_url)
        if split.scheme not in ("http", "https") or not split.hostname:
            raise ValueError(f"not an http(s) URL: {endpoint.base_url!r}")
        self.scheme = split.scheme.encode("ascii")
        self.host = split.hostname.encode("idna")
        self.port = split.port
        self.prefix = split.path.rstrip("/").encode("ascii")
        netloc = split.netloc.rpartition("@")[2].encode("idna")
        self.headers = [
            (b"Host", netloc),
            (b"Accept", FHIR_JSON.encode("ascii")),
            (b"Accept-Encoding", b"gzip"),
            (b"User-Agent", b"sas-desk"),
        ]
        self.extensions = {"timeout": {"connect": min(endpoint.timeout, 5.0)}}
        self.pool = httpcore.AsyncConnectionPool(
            ssl_context=_verify(endpoint),
            proxy=environment_proxy(endpoint.base_url),
            max_connections=16,
            max_keepalive_connections=8,
            keepalive_expiry=5.0,  # httpx's
        )

    def request(self, target: bytes) -> httpcore.Request:
        url = httpcore.URL(
            scheme=self.scheme, host=self.host, port=self.port, target=self.prefix + target
        )
        return httpcore.Request(b"GET", url, headers=self.headers, extensions=self.extensions)

    async def aclose(self) -> None:
        await self.pool.aclose()


class VendorClient:
    def __init__(
        self,
        endpoint: VendorEndpoint,
        client: httpx.AsyncClient | None = None,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.endpoint = endpoint
        self.name = endpoint.name
        self.base_url = endpoint.base_url.rstrip("/")
        # an httpx client given (the tests' mock transports) is asked through
        # httpx; otherwise the vendor's own connections
        self.client = client
        self.http = VendorHttp(endpoint) if client is None else None
        self.max_bytes = max_bytes

    async def aclose(self) -> None:
        if self.http is not None:
            await self.http.aclose()

    async def slots(
        self, national_ids: Sequence[str], start: datetime, end: datetime, *, cpts: bool = False
    ) -> BundleResult:
        query = slot_query(national_ids, start, end, cpts=cpts)
        return await self.get("/Slot?" + query)

    async def sos(self, sirets: Sequence[str], start: datetime, end: datetime) -> BundleResult:
        return await self.get("/Schedule?" + sos_query(sirets, start, end))

    async def get(self, target: str, timeout: float | None = None) -> BundleResult:
        """GET a searchset Bundle at ``target`` (``/Slot?…``: a path under
        the vendor's base URL and its query, percent-encoded); raises
        :class:`VendorError`."""
        limit = timeout if timeout is not None else self.endpoint.timeout
        try:
            async with asyncio.timeout(limit):
                status, body = await self._fetch(target)
        except TimeoutError:
            raise VendorError(f"{self.name} : pas de réponse en {limit:g} s.", "timeout") from None
        return await self._parse(status, body)

    async def _fetch(self, target: str) -> tuple[int, bytes]:
        try:
            if self.http is not None:
                return await self._fetch_own(self.http, target)
            assert self.client is not None
            return await self._fetch_httpx(self.client, target)
        except (httpx.TimeoutException, httpcore.TimeoutException):
            raise VendorError(f"{self.name} : délai de réponse dépassé.", "timeout") from None
        except (
            httpx.HTTPError,
            httpcore.NetworkError,
            httpcore.ProtocolError,
            httpcore.ProxyError,
            httpcore.UnsupportedProtocol,
            OSError,
        ) as exc:
            if _tls_failure(exc):  # TLS 1.3 reports a refused client certificate on read
                log.warning("vendor %s: TLS failure: %s", self.name, exc)
                raise VendorError(
                    f"{self.name} : connexion sécurisée refusée (certificat).", "tls"
                ) from None
            if isinstance(exc, httpx.ConnectError | httpcore.ConnectError | ConnectionRefusedError):
                log.warning("vendor %s unreachable: %s", self.name, exc)
                raise VendorError(f"{self.name} : serveur injoignable.", "network") from None
            log.warning("vendor %s: %s", self.name, type(exc).__name__)
            raise VendorError(
                f"{self.name} : échange interrompu ({type(exc).__name__}).", "network"
            ) from None

    async def _fetch_own(self, http: VendorHttp, target: str) -> tuple[int, bytes]:
        response = await http.pool.handle_async_request(http.request(target.encode("ascii")))
        try:
            declared = encoding = b""
            for key, value in response.headers:
                lower = key.lower()
                if lower == b"content-length":
                    declared = value
                elif lower == b"content-encoding":
                    encoding = value.strip().lower()
            if declared.isdigit() and int(declared) > self.max_bytes and not encoding:
                raise self._too_big()
            if encoding not in (b"", b"identity", b"gzip"):
                raise VendorError(
                    f"{self.name} : réponse illisible (encodage {encoding.decode('latin-1')}).",
                    "body",
                )
            inflate = zlib.decompressobj(wbits=31) if encoding == b"gzip" else None
            chunks: list[bytes] = []
            size = 0
            assert isinstance(response.stream, AsyncIterable)
            async for chunk in response.stream:
                if inflate is not None:
                    chunk = self._inflate(inflate, chunk, self.max_bytes - size)
                size += len(chunk)
                if size > self.max_bytes:
                    raise self._too_big()
                chunks.append(chunk)
            if inflate is not None:
                tail = self._inflate(inflate, inflate.unconsumed_tail, self.max_bytes - size)
                if not inflate.eof:
                    raise VendorError(f"{self.name} : réponse illisible (gzip).", "body")
                chunks.append(tail)
            return response.status, b"".join(chunks)
        finally:
            await response.aclose()

    def _inflate(self, inflate: Any, chunk: bytes, room: int) -> bytes:
        """A gzip chunk inflated, never beyond ``room`` bytes (+1: to know)."""
        try:
            out: bytes = inflate.decompress(chunk, room + 1)
        except zlib.error:
            raise VendorError(f"{self.name} : réponse illisible (gzip).", "body") from None
        if len(out) > room or inflate.unconsumed_tail:
            raise self._too_big()
        return out

    async def _fetch_httpx(self, client: httpx.AsyncClient, target: str) -> tuple[int, bytes]:
        async with client.stream("GET", self.base_url + target) as response:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise self._too_big()
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    raise self._too_big()
                chunks.append(chunk)
            return response.status_code, b"".join(chunks)

    def _too_big(self) -> VendorError:
        log.warning("vendor %s: body over %d bytes, dropped", self.name, self.max_bytes)
        return VendorError(
            f"{self.name} : réponse trop volumineuse (plus de {self.max_bytes // 2**20} Mo).",
            "too_big",
        )

    async def _parse(self, status: int, body: bytes) -> BundleResult:
        try:
            if len(body) <= INLINE_PARSE_MAX:
                result = await _parse_on_loop(body)
            else:
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(_PARSER, parse_bundle, body)
        except BundleError as exc:
            if exc.outcome_text is not None:
                log.warning("vendor %s: HTTP %d OperationOutcome", self.name, status)
                raise VendorError(
                    f"{self.name} : erreur {status} — {exc.outcome_text}",
                    "outcome",
                    exc.outcome_text,
                ) from None
            log.warning("vendor %s: HTTP %d, unreadable body (%s)", self.name, status, exc)
            if status >= 400:
                raise VendorError(f"{self.name} : erreur HTTP {status}.", "http") from None
            raise VendorError(
                f"{self.name} : réponse illisible — {exc.message_fr}", "body"
            ) from None
        if status >= 400:  # a Bundle with an error status: trust the status
            log.warning("vendor %s: HTTP %d with a Bundle", self.name, status)
            raise VendorError(f"{self.name} : erreur HTTP {status}.", "http")
        if result.skipped:
            log.info(
                "vendor %s: %d resources skipped %s",
                self.name,
                len(result.skipped),
                result.skipped_by_reason(),
            )
        return result


async def _parse_on_loop(body: bytes) -> BundleResult:
    steps = parse_steps(body)
    while True:
        await asyncio.sleep(0)  # the loop's other events (a window's timers, paints) first
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def describe(result: BundleResult) -> dict[str, Any]:
    """Counts for logs and reports (no names)."""
    return {
        "slots": len(result.slots),
        "practitioners": len(result.practitioners),
        "skipped": len(result.skipped),
        "total": result.total,
    }
