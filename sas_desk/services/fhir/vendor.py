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

The body is read as a stream and refused beyond ``max_bytes``; it is parsed
on the event loop in steps of a few milliseconds (over 4 MiB: in a worker
thread), so that the loop never waits long for it.  Every failure becomes a
:class:`VendorError` with a French message for the operator.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any
from urllib.parse import quote

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


def _query(pairs: Sequence[tuple[str, str]]) -> str:
    return "&".join(f"{key}={quote(value, safe=_SAFE)}" for key, value in pairs)


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
        (
            "schedule.actor:Practitioner.identifier",
            ",".join(f"{OID_IDNAT_PS}|{i}" for i in national_ids),
        ),
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
        (
            "actor:Location.organization.identifier",
            ",".join(f"{OID_IDNAT_STRUCT}|{s}" for s in sirets),
        ),
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


def make_client(endpoint: VendorEndpoint) -> httpx.AsyncClient:
    """An HTTP client for one vendor (its TLS identity is its own).

    A plain-HTTP endpoint (the demo's loopback simulator) shares one default
    context: httpx builds one anyway, and loading the system CAs costs ≈ 40 ms
    each time."""
    global _PLAIN
    if endpoint.base_url.startswith("https://"):
        verify = tls_context(endpoint)
    else:
        if _PLAIN is None:
            _PLAIN = ssl.create_default_context()
        verify = _PLAIN
    return httpx.AsyncClient(
        verify=verify,
        # the whole exchange is bounded by the deadline of VendorClient.get;
        # read/write timeouts of httpx would only add a timer to every read
        timeout=httpx.Timeout(None, connect=min(endpoint.timeout, 5.0)),
        headers={"Accept": FHIR_JSON},
        follow_redirects=False,
        limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
    )


def _tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "SSL" in str(exc) or "CERTIFICATE" in str(exc).upper()


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
        self._own_client = client is None
        self.client = client if client is not None else make_client(endpoint)
        self.max_bytes = max_bytes

    async def aclose(self) -> None:
        if self._own_client:
            await self.client.aclose()

    async def slots(
        self, national_ids: Sequence[str], start: datetime, end: datetime, *, cpts: bool = False
    ) -> BundleResult:
        query = slot_query(national_ids, start, end, cpts=cpts)
        return await self.get(f"{self.base_url}/Slot?{query}")

    async def sos(self, sirets: Sequence[str], start: datetime, end: datetime) -> BundleResult:
        return await self.get(f"{self.base_url}/Schedule?{sos_query(sirets, start, end)}")

    async def get(self, url: str, timeout: float | None = None) -> BundleResult:
        """GET a searchset Bundle; raises :class:`VendorError`."""
        limit = timeout if timeout is not None else self.endpoint.timeout
        try:
            async with asyncio.timeout(limit):
                status, body = await self._fetch(url)
        except TimeoutError:
            raise VendorError(f"{self.name} : pas de réponse en {limit:g} s.", "timeout") from None
        return await self._parse(status, body)

    async def _fetch(self, url: str) -> tuple[int, bytes]:
        try:
            async with self.client.stream("GET", url) as response:
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
        except httpx.TimeoutException:
            raise VendorError(f"{self.name} : délai de réponse dépassé.", "timeout") from None
        except (httpx.HTTPError, OSError) as exc:
            if _tls_failure(exc):  # TLS 1.3 reports a refused client certificate on read
                log.warning("vendor %s: TLS failure: %s", self.name, exc)
                raise VendorError(
                    f"{self.name} : connexion sécurisée refusée (certificat).", "tls"
                ) from None
            if isinstance(exc, httpx.ConnectError | ConnectionRefusedError):
                log.warning("vendor %s unreachable: %s", self.name, exc)
                raise VendorError(f"{self.name} : serveur injoignable.", "network") from None
            log.warning("vendor %s: %s", self.name, type(exc).__name__)
            raise VendorError(
                f"{self.name} : échange interrompu ({type(exc).__name__}).", "network"
            ) from None

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
