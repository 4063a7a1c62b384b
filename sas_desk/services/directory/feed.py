"""History Bundle entries of the directory feed → directory rows.

``read_entry(entry)`` turns one ``Bundle.entry`` of a FHIR *history* Bundle
(``docs/fhir-directory.md``) into a :class:`Put` (a row for the store) or a
:class:`Delete`, or raises :class:`InvalidEntry` with a reason.  Pure: no I/O,
no logging of names (callers log the type, id and reason only).

What makes a resource unusable (skipped): no id, an id that differs from
``request.url``, a practitioner without a national id (8+RPPS / 0+ADELI), a
structure without one (1+FINESS, 3+SIRET…), a role without its practitioner,
an SOS place without its association, an endpoint without an http(s) address,
a resource type the directory does not hold.  Malformed optional elements (a
phone that is not one, coordinates out of range, an INSEE code that is not
one) are dropped from an otherwise kept resource.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sas_desk.models.directory import (
    EXT_CPTS,
    EXT_EN_SUS,
    EXT_EN_SUS_PHONE,
    EXT_SAS_PARTICIPATION,
    STRUCTURE_CATEGORIES,
    STRUCTURE_KIND_SOS,
    SYSTEM_PROFESSION,
    SYSTEM_STRUCTURE_KIND,
    StructureKind,
)
from sas_desk.models.slots import (
    OID_IDNAT_PS,
    SYSTEM_SPECIALTY,
    SYSTEM_STRUCTURE_CATEGORY,
)
from sas_desk.services.directory.schema import SEPARATOR, TABLES
from sas_desk.services.fhir.bundle import (
    parse_instant,
    phone_number,
    phone_of,
    practitioner_id_kind,
    structure_identifier,
)


class SkipReason(enum.StrEnum):
    MALFORMED_ENTRY = "malformed-entry"
    UNSUPPORTED_METHOD = "unsupported-method"
    UNSUPPORTED_TYPE = "unsupported-type"
    MISSING_ID = "missing-id"
    ID_MISMATCH = "id-mismatch"
    INVALID_IDENTIFIER = "invalid-identifier"
    MISSING_REFERENCE = "missing-reference"
    INVALID_ADDRESS = "invalid-address"


class InvalidEntry(Exception):
    def __init__(
        self, reason: SkipReason, detail: str, rtype: str | None = None, rid: str | None = None
    ) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail  # English, for the logs; never a name
        self.rtype = rtype
        self.rid = rid


@dataclass(frozen=True, slots=True)
class Put:
    rtype: str
    rid: str
    row: dict[str, Any]
    cpts: tuple[str, ...] = ()  # PractitionerRole: CPTS Organization ids
    stamp: str | None = None  # meta.lastUpdated as sent

    @property
    def table(self) -> str:
        return TABLES[self.rtype]


@dataclass(frozen=True, slots=True)
class Delete:
    rtype: str
    rid: str
    stamp: str | None = None  # entry.response.lastModified, when sent

    @property
    def table(self) -> str:
        return TABLES[self.rtype]


Change = Put | Delete

_INSEE = re.compile(r"[0-9]{5}|2[AB][0-9]{3}")
_LIGATURES = str.maketrans({"œ": "oe", "Œ": "oe", "æ": "ae", "Æ": "ae", "ß": "ss"})
_NON_WORD = re.compile(r"[^\w]+")


def fold(text: str) -> str:
    """Lowercase, no accents, no ligatures, words separated by one space
    (``"Lætitia Dupré-Noël"`` → ``"laetitia dupre noel"``)."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_LIGATURES).casefold())
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(_NON_WORD.sub(" ", bare.replace("_", " ")).split())


def stamp_instant(stamp: str | None) -> datetime | None:
    return parse_instant(stamp) if stamp else None


# --------------------------------------------------------------------------- entries


def read_entry(entry: Any) -> Change:
    if not isinstance(entry, Mapping):
        raise InvalidEntry(SkipReason.MALFORMED_ENTRY, "entry is not an object")
    request = entry.get("request")
    if not isinstance(request, Mapping):
        raise InvalidEntry(SkipReason.MALFORMED_ENTRY, "entry without request")
    method = request.get("method")
    url = request.get("url")
    rtype = rid = None
    if isinstance(url, str):
        parts = url.split("?", 1)[0].strip("/").split("/")
        if len(parts) >= 2:
            rtype, rid = parts[-2], parts[-1]
        elif len(parts) == 1 and parts[0]:
            rtype = parts[0]
    resource = entry.get("resource")
    if method == "DELETE":
        if not rtype or not rid:
            raise InvalidEntry(SkipReason.MALFORMED_ENTRY, "DELETE without Type/id url", rtype)
        if rtype not in TABLES:
            raise InvalidEntry(SkipReason.UNSUPPORTED_TYPE, "not a directory type", rtype, rid)
        response = entry.get("response")
        stamp = response.get("lastModified") if isinstance(response, Mapping) else None
        return Delete(rtype, rid, stamp if isinstance(stamp, str) else None)
    if method not in ("PUT", "POST"):
        raise InvalidEntry(SkipReason.UNSUPPORTED_METHOD, f"method {method!r}", rtype, rid)
    if not isinstance(resource, Mapping):
        raise InvalidEntry(SkipReason.MALFORMED_ENTRY, "PUT without resource", rtype, rid)
    actual_type = resource.get("resourceType")
    actual_id = resource.get("id")
    if not isinstance(actual_type, str) or not actual_type:
        raise InvalidEntry(SkipReason.MALFORMED_ENTRY, "resource without resourceType", rtype, rid)
    if not isinstance(actual_id, str) or not actual_id.strip():
        raise InvalidEntry(SkipReason.MISSING_ID, "resource without id", actual_type, rid)
    if (rtype is not None and rtype != actual_type) or (rid is not None and rid != actual_id):
        raise InvalidEntry(SkipReason.ID_MISMATCH, f"request.url {url!r}", actual_type, actual_id)
    convert = _CONVERTERS.get(actual_type)
    if convert is None:
        raise InvalidEntry(
            SkipReason.UNSUPPORTED_TYPE, "not a directory type", actual_type, actual_id
        )
    meta = resource.get("meta")
    stamp = meta.get("lastUpdated") if isinstance(meta, Mapping) else None
    if not isinstance(stamp, str) or stamp_instant(stamp) is None:
        stamp = None
    try:
        row, cpts = convert(resource)
    except InvalidEntry as exc:
        exc.rtype, exc.rid = actual_type, actual_id
        raise
    row["id"] = actual_id
    row["last_updated"] = stamp
    return Put(actual_type, actual_id, row, cpts, stamp)


# --------------------------------------------------------------------------- values


def _str(value: Any) -> str | None:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return None


def _flag(value: Any, default: bool) -> int:
    return int(value) if isinstance(value, bool) else int(default)


def reference_id(holder: Any, rtype: str) -> str | None:
    """The id of a ``{"reference": "Type/id"}`` (relative, absolute or versioned)."""
    if not isinstance(holder, Mapping):
        return None
    ref = holder.get("reference")
    if not isinstance(ref, str):
        return None
    parts = ref.strip().split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2] == rtype and parts[-1]:
        return parts[-1]
    return None


def _code(concept: Any, system: str) -> str | None:
    """The code of *system* in a CodeableConcept (or a list of them); a coding
    without a system is accepted too."""
    concepts = concept if isinstance(concept, list) else [concept]
    fallback = None
    for c in concepts:
        codings = c.get("coding") if isinstance(c, Mapping) else None
        for coding in codings if isinstance(codings, list) else ():
            if not isinstance(coding, Mapping):
                continue
            code = _str(coding.get("code"))
            if code is None:
                continue
            if coding.get("system") == system:
                return code
            if coding.get("system") is None and fallback is None:
                fallback = code
    return fallback


def _address(raw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"lines": None, "postal_code": None, "city": None, "insee": None}
    if not isinstance(raw, Mapping):
        return out
    lines = raw.get("line")
    if isinstance(lines, list):
        kept = [x.strip() for x in lines if isinstance(x, str) and x.strip()]
        out["lines"] = SEPARATOR.join(" ".join(x.split()) for x in kept) or None
    out["postal_code"] = _str(raw.get("postalCode"))
    out["city"] = _str(raw.get("city"))
    insee = _str(raw.get("district"))
    out["insee"] = insee.upper() if insee and _INSEE.fullmatch(insee.upper()) else None
    return out


def _position(raw: Any) -> tuple[float | None, float | None]:
    if not isinstance(raw, Mapping):
        return None, None
    lat, lon = raw.get("latitude"), raw.get("longitude")
    if (
        isinstance(lat, int | float)
        and isinstance(lon, int | float)
        and not isinstance(lat, bool)
        and not isinstance(lon, bool)
        and -90.0 <= lat <= 90.0
        and -180.0 <= lon <= 180.0
    ):
        return float(lat), float(lon)
    return None, None


def _extensions(resource: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    raw = resource.get("extension")
    return [e for e in raw if isinstance(e, Mapping)] if isinstance(raw, list) else []


# --------------------------------------------------------------------------- resources

_Row = tuple[dict[str, Any], tuple[str, ...]]


def _endpoint(r: Mapping[str, Any]) -> _Row:
    address = _str(r.get("address"))
    if address is None or not address.lower().startswith(("https://", "http://")):
        raise InvalidEntry(SkipReason.INVALID_ADDRESS, "Endpoint.address is not an http(s) URL")
    status = _str(r.get("status")) or "active"
    return {
        "name": _str(r.get("name")) or str(r.get("id")),
        "base_url": address.rstrip("/"),
        "status": status,
    }, ()


def _practitioner(r: Mapping[str, Any]) -> _Row:
    national_id = kind = None
    identifiers = r.get("identifier")
    for ident in identifiers if isinstance(identifiers, list) else ():
        if not isinstance(ident, Mapping) or ident.get("system") != OID_IDNAT_PS:
            continue
        value = _str(ident.get("value"))
        kind = practitioner_id_kind(value) if value else None
        if kind is not None:
            national_id = value
            break
    if national_id is None or kind is None:
        raise InvalidEntry(SkipReason.INVALID_IDENTIFIER, "no IdNat_PS 8+RPPS or 0+ADELI")
    family = None
    given: list[str] = []
    names = r.get("name")
    if isinstance(names, list) and names and isinstance(names[0], Mapping):
        family = _str(names[0].get("family"))
        raw_given = names[0].get("given")
        if isinstance(raw_given, list):
            given = [" ".join(g.split()) for g in raw_given if isinstance(g, str) and g.strip()]
    return {
        "national_id": national_id,
        "id_kind": kind.value,
        "family": family,
        "given": SEPARATOR.join(given) or None,
        "name_key": fold(" ".join([*given, family or ""])),
        "active": _flag(r.get("active"), True),
    }, ()


def _role(r: Mapping[str, Any]) -> _Row:
    practitioner_id = reference_id(r.get("practitioner"), "Practitioner")
    if practitioner_id is None:
        raise InvalidEntry(SkipReason.MISSING_REFERENCE, "no practitioner reference")
    location: Mapping[str, Any] = {}
    locations = r.get("location")
    contained = r.get("contained")
    for holder in locations if isinstance(locations, list) else ():
        ref = holder.get("reference") if isinstance(holder, Mapping) else None
        if not isinstance(ref, str) or not ref.startswith("#"):
            continue
        for res in contained if isinstance(contained, list) else ():
            if (
                isinstance(res, Mapping)
                and res.get("resourceType") == "Location"
                and res.get("id") == ref[1:]
            ):
                location = res
                break
        if location:
            break
    lat, lon = _position(location.get("position"))
    endpoints = r.get("endpoint")
    endpoint_id = None
    for holder in endpoints if isinstance(endpoints, list) else ():
        endpoint_id = reference_id(holder, "Endpoint")
        if endpoint_id:
            break
    sas = en_sus = False
    en_sus_phone = None
    cpts: list[str] = []
    for ext in _extensions(r):
        url = ext.get("url")
        if url == EXT_SAS_PARTICIPATION:
            sas = ext.get("valueBoolean") is True
        elif url == EXT_EN_SUS:
            en_sus = ext.get("valueBoolean") is True
        elif url == EXT_EN_SUS_PHONE:
            en_sus_phone = phone_number(ext.get("valueString"))
        elif url == EXT_CPTS:
            org = reference_id(ext.get("valueReference"), "Organization")
            if org and org not in cpts:
                cpts.append(org)
    return {
        "practitioner_id": practitioner_id,
        "active": _flag(r.get("active"), True),
        "profession": _code(r.get("code"), SYSTEM_PROFESSION),
        "specialty": _code(r.get("specialty"), SYSTEM_SPECIALTY),
        **_address(location.get("address")),
        "lat": lat,
        "lon": lon,
        "phone": phone_of(r.get("telecom")) or phone_of(location.get("telecom")),
        "organization_id": reference_id(r.get("organization"), "Organization"),
        "endpoint_id": endpoint_id,
        "sas": int(sas),
        "en_sus": int(en_sus),
        "en_sus_phone": en_sus_phone,
    }, tuple(cpts)


def _organization(r: Mapping[str, Any]) -> _Row:
    found = structure_identifier(r.get("identifier"))
    if found is None:
        raise InvalidEntry(SkipReason.INVALID_IDENTIFIER, "no IdNat_Struct FINESS/SIRET/rang id")
    national_id, kind = found
    structure = StructureKind.OTHER
    if _code(r.get("type"), SYSTEM_STRUCTURE_KIND) == STRUCTURE_KIND_SOS:
        structure = StructureKind.SOS
    else:
        category = _code(r.get("type"), SYSTEM_STRUCTURE_CATEGORY)
        structure = STRUCTURE_CATEGORIES.get(category or "", StructureKind.OTHER)
    endpoint_id = None
    endpoints = r.get("endpoint")
    for holder in endpoints if isinstance(endpoints, list) else ():
        endpoint_id = reference_id(holder, "Endpoint")
        if endpoint_id:
            break
    return {
        "national_id": national_id,
        "id_kind": kind.value,
        "kind": structure.value,
        "name": _str(r.get("name")),
        "phone": phone_of(r.get("telecom")),
        "endpoint_id": endpoint_id,
        "active": _flag(r.get("active"), True),
    }, ()


def _location(r: Mapping[str, Any]) -> _Row:
    organization_id = reference_id(r.get("managingOrganization"), "Organization")
    if organization_id is None:
        raise InvalidEntry(SkipReason.MISSING_REFERENCE, "no managingOrganization")
    lat, lon = _position(r.get("position"))
    status = _str(r.get("status")) or "active"
    return {
        "organization_id": organization_id,
        "name": _str(r.get("name")),
        **_address(r.get("address")),
        "lat": lat,
        "lon": lon,
        "phone": phone_of(r.get("telecom")),
        "active": int(status == "active"),
    }, ()


_CONVERTERS = {
    "Endpoint": _endpoint,
    "Practitioner": _practitioner,
    "PractitionerRole": _role,
    "Organization": _organization,
    "Location": _location,
}
