"""Dossier ↔ Hub Santé RS-EDA ``createCaseHealth`` (the shared call sheet).

Two pure functions, no I/O besides the cached code-list lookup described in
:func:`to_rseda`:

* :func:`to_rseda` builds the message body ``{"createCaseHealth": {...}}``,
  valid against ``RS-EDA.schema.json`` (Hub Santé model 3.4, schema stamp
  26.07.29) for any :class:`~sas_desk.models.dossier.Dossier`, drafts included;
* :func:`from_rseda` reads such a body, or a whole EDXL-DE envelope, back into a
  :class:`~sas_desk.models.dossier.Dossier`.

``to_rseda(from_rseda(msg))`` gives back every field SAS Desk models (see the
tests on the official example ``RS-EDA_partageDossier_DidierMorel.01a``).

Datetimes are written ISO 8601 with an explicit ``±hh:mm`` offset and no
fraction of a second; UTC is ``+00:00``, never ``Z`` (Hub rule).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from sas_desk.models.codes import codelist
from sas_desk.models.dossier import (
    PRIORITIES,
    Branch,
    Caller,
    Decision,
    Dossier,
    Location,
    Note,
    Patient,
    Status,
)
from sas_desk.models.validation import ValidationError, normalize_phone

__all__ = [
    "DEFAULT_MOTIVE",
    "SCHEMA_ENUMS",
    "format_datetime",
    "from_rseda",
    "parse_datetime",
    "to_rseda",
]

ROOT_KEY = "createCaseHealth"

# What one imported message may hold (a real case has a few notes of a few
# lines; these bounds keep one hostile message from bloating the journal).
MAX_TEXT = 10_000  # characters in any one string field
MAX_ITEMS = 200  # notes, medical notes, decisions, access codes…
MAX_CASE_ID = 120
# The Hub's caseId: dot-separated segments of letters, digits, ``_`` and ``-``
# (RS-EDA.schema.json ``^([a-zA-Z0-9_-]+\.?){4,10}$``); no NUL, no ``/``, no ``..``.
_CASE_ID = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+){0,9}\.?")

# National "not filled in" motive: what a draft without a motive is sent with.
DEFAULT_MOTIVE: tuple[str, str] = ("M07.00", "Non renseigné")

# Last line of ``location.freetext`` carrying a commune the schema cannot hold
# in ``location.city`` (``inseeCode`` must be 5 digits, so Corsica's 2A/2B
# codes do not fit; ``city.name`` is not allowed without ``inseeCode``).
_CITY_MARK = "Commune : "
_CITY_LINE = re.compile(r"Commune : (?P<name>.*?) ?(?:\(INSEE (?P<insee>[^()\s]*)\))?")

# --------------------------------------------------------------------------- schema enums
# Values accepted by RS-EDA.schema.json (26.07.29).  A value outside these
# sets would make the whole message invalid, so the exporter leaves it out
# (optional field) or falls back to a neutral code (required field).

_PERIMETERS = frozenset({"AMU", "NEONAT", "PSY", "SNP"})
_INTERVENTION_TYPES = frozenset({"T1", "T2-INTER", "T2-INTRA", "T3", "T4"})
_ORIGINS = frozenset(
    {
        "15",
        "116117",
        "AUTOCOM",
        "112",
        "115",
        "CRRA",
        "AUTREC15",
        "CTA-CONF",
        "CTA-PI",
        "AUTRECTA",
        "CNR",
        "FDO",
        "SNATED",
        "PDSSOS",
        "TELASSIST",
        "CROSS",
        "PUBLIC",
        "DATA",
        "AUTRE",
    }
)
_CASE_STATUSES = frozenset({"PROGRAM", "ACTIF", "ACHEVE", "VALIDE", "CLOTURE", "CLASSE", "ARCHIVE"})
_ATTRIBUTIONS = frozenset(
    {
        "DRM",
        "DRM.MRU",
        "DRM.MRU.MU",
        "DRM.MRU.INDISPMU",
        "DRM.MRU.SSE",
        "DRM.MRU.PLANBLAN",
        "DRM.MRU.PCSAMU",
        "DRM.SPE",
        "DRM.SPE.DENT",
        "DRM.SPE.GERIA",
        "DRM.SPE.PEDIA",
        "DRM.SPE.OBST",
        "DRM.SPE.PSY",
        "DRM.SPE.TOXICOL",
        "DRM.SPE.AUTRESPE",
        "DRM.MRL",
        "DRM.MRL.MG",
        "DRM.MRL.INDISPMG",
        "DRM.MRL.ABSML",
        "DR",
        "DR.DREG",
        "DR.DREG.DRARM",
        "DR.DREG.DRDAC",
        "DR.DREG.DRMED",
        "DR.DREG.DRPHARMA",
        "DR.DREG.DRDENT",
        "DR.DREG.DRINFO",
        "DR.DREG.DOS-SIS",
        "DR.DREG.DOS-FDO",
        "D",
        "D.D-MALV",
        "D.D-MALV.ERR",
        "D.D-MALV.NRP",
        "D.D-MALV.MALV",
        "D.D-MALV.FAX",
        "D.D-MALV.ITERATIF",
        "D.D-IDENT",
        "D.D-IDENT.ADMIN",
        "D.D-IDENT.PERSO",
        "D.D-IDENT.AUTRE",
    }
)
_PRIORITIES = frozenset(PRIORITIES)
_CARE_LEVELS = frozenset({"R1", "R2", "R3", "R4"})
_PRECISIONS = frozenset({"VILLE", "RUE", "ADRESSE", "EXACTE", "INCONNUE"})
_CHANNELS = frozenset({"APPLICATION", "BAU", "DAU", "DEFIBRILLATEUR", "ECALL", "PERSONNE"})
_CALLER_TYPES = frozenset(
    {
        "SUJET",
        "FAMILLE",
        "TIERS",
        "POMPIER",
        "AMBULANC",
        "AMBULANC.AASC",
        "AMBULANC.AUTRESEC",
        "SECOUR",
        "MED",
        "MED.MEDSOS",
        "MED.MRL",
        "MED.EFFML",
        "SANTE",
        "SANTE.INF",
        "SANTE.AIDESOIN",
        "SANTE.SF",
        "SANTE.AIDEDOM",
        "SANTE.PHARMA",
        "SANTE.DENTISTE",
        "SANTE.LABO",
        "FDO-MILI",
        "FDO-MILI.POL",
        "FDO-MILI.GENDARM",
        "FDO-MILI.MILI",
        "ADM-TUTL",
        "VIP",
        "OBJCONNC",
        "AUTRE",
        "INCONNU",
    }
)
_COMMUNICATIONS = frozenset(
    {"AUCUNE", "MUET", "VISION", "LANGUE", "PANIQUE", "HOSTILE", "AGITE", "AUTRE", "IMPOSS"}
)
# ISO 639-1, as enumerated by the schema
# fmt: off
_LANGUAGES = frozenset({
    "aa", "ab", "ae", "af", "ak", "am", "an", "ar", "as", "av", "ay", "az", "ba", "be", "bg", "bi",
    "bm", "bn", "bo", "br", "bs", "ca", "ce", "ch", "co", "cr", "cs", "cu", "cv", "cy", "da", "de",
    "dv", "dz", "ee", "el", "en", "eo", "es", "et", "eu", "fa", "ff", "fi", "fj", "fo", "fr", "fy",
    "ga", "gd", "gl", "gn", "gu", "gv", "ha", "he", "hi", "ho", "hr", "ht", "hu", "hy", "hz", "ia",
    "id", "ie", "ig", "ii", "ik", "io", "is", "it", "iu", "ja", "jv", "ka", "kg", "ki", "kj", "kk",
    "kl", "km", "kn", "ko", "kr", "ks", "ku", "kv", "kw", "ky", "la", "lb", "lg", "li", "ln", "lo",
    "lt", "lu", "lv", "mg", "mh", "mi", "mk", "ml", "mn", "mr", "ms", "mt", "my", "na", "nb", "nd",
    "ne", "ng", "nl", "nn", "no", "nr", "nv", "ny", "oc", "oj", "om", "or", "os", "pa", "pi", "pl",
    "ps", "pt", "qu", "rm", "rn", "ro", "ru", "rw", "sa", "sc", "sd", "se", "sg", "si", "sk", "sl",
    "sm", "sn", "so", "sq", "sr", "ss", "st", "su", "sv", "sw", "ta", "te", "tg", "th", "ti", "tk",
    "tl", "tn", "to", "tr", "ts", "tt", "tw", "ty", "ug", "uk", "ur", "uz", "ve", "vi", "vo", "wa",
    "wo", "xh", "yi", "yo", "za", "zh", "zu",
})
# fmt: on
_SEXES = frozenset({"M", "F", "O", "UN"})
_ROLES = frozenset(
    {"AMBULANCIER", "ARM", "INFIRMIER", "MEDECIN", "PILOTE", "TCM", "AUTRE", "INCONNU"}
)
_DECISION_TYPES = frozenset({"CONSEIL", "PMT", "INTER", "ORIENT", "PASPLUS"})
_RESOURCE_TYPES = frozenset(
    {
        "SMUR",
        "SMUR.ADULT",
        "SMUR.PED",
        "SMUR.UMH-S",
        "SMUR.CUMP",
        "HOSPIT",
        "LIBERAL",
        "LIBERAL.MG",
        "LIBERAL.PHARM",
        "LIBERAL.INF",
        "LIBERAL.KINE",
        "LIBERAL.SOS",
        "LIBERAL.MMG",
        "LIBERAL.MSPD",
        "LIBERAL.MCS",
        "LIBERAL.SPEMED",
        "LIBERAL.DENT",
        "LIBERAL.LABO",
        "LIBERAL.AUTREPRO",
        "TSU",
        "SIS",
        "SIS.MEDSP",
        "SIS.ISP",
        "SIS.SP",
        "AASC",
        "FDO",
        "FDO.PN",
        "FDO.GEND",
        "FDO.PM",
        "FDO.DOUANES",
        "AUTRE",
        "AUTRE.ADM",
        "AUTRE.DAE",
        "AUTRE.AUTRE",
    }
)
_ORIENTATION_TYPES = frozenset(
    {"URGENCES", "REA-USI", "SANTE", "CABINET", "DOMICILE", "EPHAD", "AUTRE"}
)

# Where each set sits in RS-EDA.schema.json (JSON pointer), so that a test can
# catch a schema update.
SCHEMA_ENUMS: dict[str, frozenset[str]] = {
    "/properties/perimeter/enum": _PERIMETERS,
    "/properties/interventionType/enum": _INTERVENTION_TYPES,
    "/definitions/qualification/properties/origin/enum": _ORIGINS,
    "/definitions/caseDetails/properties/status/enum": _CASE_STATUSES,
    "/definitions/caseDetails/properties/attribution/enum": _ATTRIBUTIONS,
    "/definitions/caseDetails/properties/priority/enum": _PRIORITIES,
    "/definitions/caseDetails/properties/careLevel/enum": _CARE_LEVELS,
    "/definitions/coord/properties/precision/enum": _PRECISIONS,
    "/definitions/contact/properties/channel/enum": _CHANNELS,
    "/definitions/caller/properties/type/enum": _CALLER_TYPES,
    "/definitions/caller/properties/communication/enum": _COMMUNICATIONS,
    "/definitions/caller/properties/language/enum": _LANGUAGES,
    "/definitions/insStrictFeatures/properties/sex/enum": _SEXES,
    "/definitions/operator/properties/role/enum": _ROLES,
    "/definitions/decision/properties/decisionType/enum": _DECISION_TYPES,
    "/definitions/decision/properties/resourceType/enum": _RESOURCE_TYPES,
    "/definitions/decision/properties/orientationType/enum": _ORIENTATION_TYPES,
}

# Schema patterns (ECMA regexes; \d is ASCII only there, hence re.ASCII).
_MOTIVE_RE = re.compile(r"M\d{2}\.\d{2}(\.\d{2})?", re.ASCII)
_WHATS_HAPPEN_RE = re.compile(r"C\d{2}(\.\d{2}){2}", re.ASCII)
_LOCATION_KIND_RE = re.compile(r"L\d{2}(\.\d{2}){2}", re.ASCII)
_INSEE_RE = re.compile(r"[0-9]{5}", re.ASCII)
_AGE_RE = re.compile(r"P[0-9]{1,3}[YMWD]", re.ASCII)
_BIRTH_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_PATIENT_ID_RE = re.compile(r"([a-zA-Z0-9_-]+\.){3,8}patient(\.[a-zA-Z0-9_-]+){1,2}", re.ASCII)
_NOTE_ID_RE = re.compile(r"([a-zA-Z0-9_-]+\.){3,8}medicalNote(\.[a-zA-Z0-9_-]+){1,2}", re.ASCII)

# Dossier.status → qualification.details.status.  The schema has no "ANNULE":
# an abandoned sheet is sent as closed (no longer active, not reactivable).
_STATUS_OUT: dict[Status, str] = {
    Status.DRAFT: "ACTIF",
    Status.TRANSMITTED: "ACTIF",
    Status.CLOSED: "CLOTURE",
    Status.ABANDONED: "CLOTURE",
}


# --------------------------------------------------------------------------- datetimes


def format_datetime(value: datetime) -> str:
    """``2024-01-04T08:01:00+01:00``: explicit offset, no microseconds, no ``Z``.

    A naive datetime is a programming error (the domain only holds aware
    ones) and raises :class:`ValueError`.  An offset with seconds, which the
    Hub pattern cannot express, is converted to UTC.
    """
    offset = value.utcoffset()
    if offset is None:
        raise ValueError(f"datetime sans fuseau horaire : {value!r}")
    if offset.seconds % 60 or offset.microseconds:
        value = value.astimezone(UTC)
    return value.replace(microsecond=0).isoformat(timespec="seconds")


def parse_datetime(text: str) -> datetime:
    """Read an ISO 8601 datetime with an offset (``Z`` tolerated on input).

    Raises :class:`ValueError` when unreadable or without an offset.
    """
    value = datetime.fromisoformat(text.strip())
    if value.utcoffset() is None:
        raise ValueError(f"datetime sans fuseau horaire : {text!r}")
    return value


# --------------------------------------------------------------------------- export


def to_rseda(dossier: Dossier) -> dict[str, Any]:
    """Build the RS-EDA message body ``{"createCaseHealth": {...}}``.

    Every field SAS Desk models is mapped; empty optional elements (empty
    strings, lists, objects) are left out because the schema's patterns,
    enums and required members reject them.  Strings are sent verbatim.

    Choices made so that any dossier, even a half-filled draft, gives a
    schema-valid body:

    * ``qualification`` and ``location`` are required.  ``qualification`` always
      has ``details.priority`` and ``details.status`` (DRAFT/TRANSMITTED →
      ``ACTIF``, CLOSED → ``CLOTURE``, ABANDONED → ``CLOTURE`` since the
      schema has no cancelled state) and a ``healthMotive``: without a
      national motive code (``Mxx.xx``) it is the national default
      ``M07.00`` « Non renseigné ».  A known code without a label gets the
      national label from the ``motive`` code list (the only resource read
      here, cached).  A draft without any location sends ``"location": {}``
      (the schema requires the member but none of its contents).
    * ``perimeter`` and ``attribution`` are the dossier's own fields, set by
      :func:`~sas_desk.models.dossier.transmit`; a draft's branch is not sent.
    * Codes outside the schema enums are left out; an unknown operator role
      becomes ``AUTRE`` (``INCONNU`` when empty); a decision whose type is not
      in the enum is left out (``decisionType`` is required).
    * ``city`` is sent only with a 5-digit INSEE code (``inseeCode`` is
      mandatory with ``city.name``, and the pattern excludes Corsica's
      2A/2B).  Otherwise the commune goes in the last line of
      ``location.freetext`` as ``Commune : <name> (INSEE <code>)``, as the
      Hub recommends for what cannot be structured; :func:`from_rseda` reads
      that line back.  ``postcode`` has no RS-EDA field and is not sent.
    * ``detailedAddress.complete`` is the typed address, else
      ``"<number> <way name>"``; ``wayName.complete`` is ``way_name`` and
      ``wayName.name`` is ``way_name`` without its leading ``way_type``.
    * ``geometry.datetime`` is ``position_at``, else the call reception time,
      else the creation time; a missing precision is sent as ``INCONNUE``;
      ``isAml`` only when true.
    * ``initialAlert`` needs a contact number (``callerContact.detail``): the
      number the call came from (``contact_detail``) or else the callback
      number; ``callbackContact`` is added when both are known.  Numbers are
      normalised to E.164 when possible, else sent as typed.  ``reception``
      falls back to the creation time.  Without any number there is no
      ``initialAlert`` (a draft in that state cannot be transmitted anyway),
      so its non-medical notes are not sent.
    * ``patient`` is sent when any patient field is set; an empty or
      non-conforming ``patient_id`` becomes ``{owner}.patient.{senderCaseId}.1``.
      That id is also put on every medical note and on decisions without
      their own ``patient_id``.  Age and birth date are sent only when they
      match the schema patterns.
    * Medical notes without a conforming ``note_id`` get
      ``{owner}.medicalNote.{senderCaseId}.{n}``.  Notes with an empty text
      are skipped.  ``Decision.freetext`` has no RS-EDA field and is not sent.
    """
    d = dossier
    local = _local_id(d)
    patient = _export_patient(d, local)
    patient_id: str = patient.get("patientId", "")
    fallback_at = d.received_at or d.created_at
    case = _compact(
        {
            "caseId": d.case_id,
            "senderCaseId": _text(d.sender_case_id),
            "creation": format_datetime(d.created_at),
            "perimeter": _enum(d.perimeter, _PERIMETERS),
            "interventionType": _enum(d.intervention_type, _INTERVENTION_TYPES),
            "qualification": _export_qualification(d),
            "location": _export_location(d.location, fallback_at),
            "initialAlert": _export_alert(d),
            "owner": d.owner,
            "patient": [patient] if patient else [],
            "medicalNote": _export_medical_notes(d, local, patient_id),
            "decision": _export_decisions(d, patient_id),
            "additionalInformation": _export_additional(d),
        },
        keep=("location", "qualification"),
    )
    return {ROOT_KEY: case}


DENTAL_REASON_KEY = "sasdesk.motifDentaire"


def _export_additional(d: Dossier) -> dict[str, Any]:
    """Site-specific values with no national field, as ``customMap`` pairs
    (at most 3): the local dental sub-classification."""
    if not d.dental_reason:
        return {}
    entry = {
        "key": DENTAL_REASON_KEY,
        "label": "Motif dentaire",
        "value": d.dental_reason,
        "freetext": codelist("dental_reason").label(d.dental_reason),
    }
    return {"customMap": [entry]}


def _import_dental_reason(case: dict[str, Any]) -> str:
    extra = _obj(case, "additionalInformation", "additionalInformation")
    for i, item in enumerate(_list(extra, "customMap", "additionalInformation.customMap")):
        entry = _item([item], 0, f"additionalInformation.customMap[{i}]")
        if entry.get("key") == DENTAL_REASON_KEY:
            return _str(entry, "value", "additionalInformation.customMap.value")
    return ""


def _export_qualification(d: Dossier) -> dict[str, Any]:
    details = _compact(
        {
            "status": _STATUS_OUT.get(d.status, "ACTIF"),
            "attribution": _enum(d.attribution, _ATTRIBUTIONS),
            "priority": _enum(d.priority, _PRIORITIES),
            "careLevel": _enum(d.care_level, _CARE_LEVELS),
        }
    )
    return _compact(
        {
            "origin": _enum(d.origin, _ORIGINS),
            "whatsHappen": _export_coded(d.whats_happen, _WHATS_HAPPEN_RE),
            "locationKind": _export_coded(d.location_kind, _LOCATION_KIND_RE),
            "healthMotive": _export_motive(d),
            "details": details,
        }
    )


def _export_motive(d: Dossier) -> dict[str, Any]:
    code = d.motive_code.strip()
    if not _MOTIVE_RE.fullmatch(code):
        return {"code": DEFAULT_MOTIVE[0], "label": DEFAULT_MOTIVE[1]}
    label = _text(d.motive_label)
    if not label:
        known = codelist("motive").get(code)
        label = known.full_label if known else code
    return {"code": code, "label": label}


def _export_coded(value: tuple[str, str] | None, pattern: re.Pattern[str]) -> dict[str, Any]:
    if value is None:
        return {}
    code = value[0].strip()
    if not pattern.fullmatch(code):
        return {}
    return {"code": code, "label": _text(value[1]) or code}


def _export_location(loc: Location, fallback_at: datetime) -> dict[str, Any]:
    city, city_line = _export_city(loc)
    freetext = "\n".join(part for part in (_text(loc.freetext), city_line) if part)
    return _compact(
        {
            "name": _text(loc.name),
            "detailedAddress": _export_address(loc),
            "city": city,
            "access": _compact(
                {
                    "floor": _text(loc.floor),
                    "interphone": _text(loc.interphone),
                    "accessCode": [loc.access_code] if _text(loc.access_code) else [],
                    "buildingName": _text(loc.building),
                }
            ),
            "geometry": _export_geometry(loc, fallback_at),
            "freetext": freetext,
        }
    )


def _export_city(loc: Location) -> tuple[dict[str, Any], str]:
    """``city`` object, or the freetext line carrying a commune it cannot hold."""
    name = _text(loc.city)
    insee = loc.insee.strip()
    if _INSEE_RE.fullmatch(insee):
        return _compact({"name": name, "inseeCode": insee}), ""
    if not (name or insee):
        return {}, ""
    parts = [name] if name else []
    if insee:
        parts.append(f"(INSEE {insee})")
    return {}, _CITY_MARK + " ".join(parts)


def _export_address(loc: Location) -> dict[str, Any]:
    number = _text(loc.number)
    way = _text(loc.way_name)
    complete = _text(loc.address) or " ".join(p for p in (number, way) if p)
    if not complete:
        return {}
    way_name: dict[str, Any] = {}
    if way:
        way_type = _text(loc.way_type)
        name = ""
        if way_type and way.lower().startswith(way_type.lower() + " "):
            name = way[len(way_type) + 1 :]
        way_name = _compact({"complete": way, "type": way_type, "name": _text(name)})
    return _compact({"complete": complete, "number": number, "wayName": way_name})


def _export_geometry(loc: Location, fallback_at: datetime) -> dict[str, Any]:
    if loc.lat is None or loc.lon is None:
        return {}
    lat, lon = float(loc.lat), float(loc.lon)
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return {}
    precision = loc.precision if loc.precision in _PRECISIONS else "INCONNUE"
    point: dict[str, Any] = {"coord": {"lat": lat, "lon": lon, "precision": precision}}
    if loc.is_aml:
        point["isAml"] = True
    return {"datetime": format_datetime(loc.position_at or fallback_at), "point": point}


def _export_alert(d: Dossier) -> dict[str, Any]:
    c = d.caller
    callback = _phone(c.callback)
    came_from = _phone(c.contact_detail)
    number = came_from or callback
    if not number:
        return {}
    channel = c.channel if c.channel in _CHANNELS else "PERSONNE"
    caller = _compact(
        {
            "callerContact": {"channel": channel, "type": "TEL", "detail": number},
            "callbackContact": (
                {"channel": "PERSONNE", "type": "TEL", "detail": callback}
                if came_from and callback
                else {}
            ),
            "language": _enum(c.language, _LANGUAGES),
            "type": _enum(c.caller_type, _CALLER_TYPES),
            "communication": _enum(c.communication, _COMMUNICATIONS),
            "freetext": _text(c.freetext),
            "detailedName": {"complete": c.name} if _text(c.name) else {},
        }
    )
    notes = [
        {"creation": format_datetime(n.at), "freetext": n.text}
        for n in d.notes
        if not n.medical and _text(n.text)
    ]
    return _compact(
        {
            "reception": format_datetime(d.received_at or d.created_at),
            "notes": notes,
            "caller": caller,
        }
    )


def _export_patient(d: Dossier, local: str) -> dict[str, Any]:
    p = d.patient
    fields = (p.patient_id, p.age, p.birth_date, p.sex, p.last_name, p.first_name, p.complete_name)
    if not any(_text(f) for f in fields):
        return {}
    patient_id = p.patient_id.strip()
    if not _PATIENT_ID_RE.fullmatch(patient_id):
        patient_id = f"{d.owner}.patient.{local}.1"
    first, last = _text(p.first_name), _text(p.last_name)
    complete = _text(p.complete_name) or " ".join(x for x in (first, last) if x)
    birth_date = p.birth_date.strip()
    age = p.age.strip()
    identity = _compact(
        {
            "strictFeatures": _compact(
                {
                    "birthDate": birth_date if _BIRTH_DATE_RE.fullmatch(birth_date) else "",
                    "sex": _enum(p.sex, _SEXES),
                }
            ),
            "nonStrictFeatures": (
                _compact({"complete": complete, "lastName": last, "firstName": first})
                if complete
                else {}
            ),
        }
    )
    return _compact(
        {
            "patientId": patient_id,
            "identity": identity,
            "detail": {"age": age} if _AGE_RE.fullmatch(age) else {},
        }
    )


def _export_medical_notes(d: Dossier, local: str, patient_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for note in d.notes:
        if not note.medical or not _text(note.text):
            continue
        note_id = note.note_id.strip()
        if not _NOTE_ID_RE.fullmatch(note_id):
            note_id = f"{d.owner}.medicalNote.{local}.{len(out) + 1}"
        out.append(
            _compact(
                {
                    "patientId": patient_id,
                    "operator": _compact({"role": _role(note.role), "label": _text(note.operator)}),
                    "medicalNoteId": note_id,
                    "creation": format_datetime(note.at),
                    "freetext": note.text,
                }
            )
        )
    return out


def _export_decisions(d: Dossier, patient_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for x in d.decisions:
        if x.decision_type not in _DECISION_TYPES:
            continue
        out.append(
            _compact(
                {
                    "patientId": _text(x.patient_id) or patient_id,
                    "creation": format_datetime(x.at),
                    "operator": {"role": _role(x.role)},
                    "decisionType": x.decision_type,
                    "resourceType": _enum(x.resource_type, _RESOURCE_TYPES),
                    "medicalTransport": x.medical_transport,
                    "orientationType": _enum(x.orientation_type, _ORIENTATION_TYPES),
                }
            )
        )
    return out


def _local_id(d: Dossier) -> str:
    """senderCaseId, else the last part of caseId, fit for the id patterns."""
    local = d.sender_case_id.strip() or d.case_id.rsplit(".", 1)[-1]
    return re.sub(r"[^A-Za-z0-9_-]", "-", local) or "1"


def _text(value: str) -> str:
    """The string verbatim, or "" when it is blank."""
    return value if value.strip() else ""


def _enum(value: str, allowed: frozenset[str]) -> str:
    return value if value in allowed else ""


def _role(value: str) -> str:
    if value in _ROLES:
        return value
    return "AUTRE" if value.strip() else "INCONNU"


def _phone(value: str) -> str:
    raw = value.strip()
    if not raw:
        return ""
    try:
        return normalize_phone(raw)
    except ValidationError:
        return raw


def _compact(obj: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """Drop ``None``, empty strings, lists and objects (but not ``False``)."""
    return {
        k: v
        for k, v in obj.items()
        if k in keep or not (v is None or (isinstance(v, str | list | dict) and not v))
    }


# --------------------------------------------------------------------------- import


def from_rseda(body: dict[str, Any]) -> Dossier:
    """Read an RS-EDA message into a :class:`Dossier`.

    ``body`` is ``{"createCaseHealth": {...}}``, the RC-DE ``message`` object
    holding it, or a whole EDXL-DE envelope (``content[0].jsonContent.
    embeddedJsonContent.message.createCaseHealth``).  Anything unusable
    (missing ``caseId``, ``creation`` or ``owner``, unreadable date, wrong
    JSON type) raises :class:`ValidationError` with a French message.

    Lenient on content: unknown codes and labels are kept verbatim, as are
    strings (trailing spaces included), E.164 numbers and ISO ages.  Only
    ``patient[0]`` is read.  ``branch`` follows the attribution, else the
    perimeter; the status is TRANSMITTED when either is present, else DRAFT
    (``details.status`` is informational in 15-15 and is not read).  Notes
    from ``initialAlert.notes`` (``medical=False``) and ``medicalNote``
    (``medical=True``) are merged in chronological order; a note or decision
    without a date takes the reception (else creation) time.
    """
    case = _case_body(body)
    case_id = _str(case, "caseId", "caseId")
    if not case_id.strip():
        raise _invalid("caseId manquant", "caseId")
    if len(case_id) > MAX_CASE_ID or len(case_id) < 4 or not _CASE_ID.fullmatch(case_id):
        shown = case_id[:40].encode("unicode_escape").decode("ascii")
        raise _invalid(
            f"caseId « {shown} » refusé (lettres, chiffres, « _ », « - » et points simples)",
            "caseId",
        )
    created_at = _dt(case, "creation", "creation")
    if created_at is None:
        raise _invalid("creation manquant", "creation")
    owner = _str(case, "owner", "owner")
    if not owner.strip():
        raise _invalid("owner manquant", "owner")

    qual = _obj(case, "qualification", "qualification")
    details = _obj(qual, "details", "qualification.details")
    motive = _obj(qual, "healthMotive", "qualification.healthMotive")
    alert = _obj(case, "initialAlert", "initialAlert")
    received_at = _dt(alert, "reception", "initialAlert.reception")
    fallback_at = received_at or created_at

    perimeter = _str(case, "perimeter", "perimeter")
    attribution = _str(details, "attribution", "qualification.details.attribution")

    patients = _list(case, "patient", "patient")
    patient = _import_patient(_item(patients, 0, "patient")) if patients else Patient()

    notes = _import_alert_notes(alert, fallback_at) + _import_medical_notes(case, fallback_at)
    notes.sort(key=lambda n: n.at)

    return Dossier(
        case_id=case_id,
        created_at=created_at,
        owner=owner,
        sender_case_id=_str(case, "senderCaseId", "senderCaseId"),
        received_at=received_at,
        caller=_import_caller(_obj(alert, "caller", "initialAlert.caller")),
        patient=patient,
        location=_import_location(_obj(case, "location", "location")),
        motive_code=_str(motive, "code", "qualification.healthMotive.code"),
        motive_label=_str(motive, "label", "qualification.healthMotive.label"),
        whats_happen=_import_coded(qual, "whatsHappen"),
        location_kind=_import_coded(qual, "locationKind"),
        origin=_str(qual, "origin", "qualification.origin"),
        priority=_str(details, "priority", "qualification.details.priority") or "P2",
        branch=Branch.from_attribution(attribution or None, perimeter or None),
        perimeter=perimeter,
        attribution=attribution,
        care_level=_str(details, "careLevel", "qualification.details.careLevel"),
        intervention_type=_str(case, "interventionType", "interventionType"),
        notes=notes,
        decisions=_import_decisions(case, fallback_at),
        status=Status.TRANSMITTED if (attribution or perimeter) else Status.DRAFT,
        dental_reason=_import_dental_reason(case),
    )


def _case_body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _invalid("le message n'est pas un objet JSON")
    holder: dict[str, Any] = body
    if ROOT_KEY not in body:
        if "content" in body:
            holder = _envelope_message(body)
        elif isinstance(body.get("message"), dict):
            holder = body["message"]
        if ROOT_KEY not in holder:
            found = ", ".join(sorted(str(k) for k in holder)[:5]) or "objet vide"
            raise _invalid(f"createCaseHealth absent (trouvé : {found})", ROOT_KEY)
    case = holder[ROOT_KEY]
    if not isinstance(case, dict):
        raise _invalid("createCaseHealth n'est pas un objet JSON", ROOT_KEY)
    return case


def _envelope_message(envelope: dict[str, Any]) -> dict[str, Any]:
    content = envelope.get("content")
    if not isinstance(content, list) or not content:
        raise _invalid("enveloppe EDXL-DE sans contenu (content)", "content")
    node: Any = content[0]
    for key in ("jsonContent", "embeddedJsonContent", "message"):
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        raise _invalid(
            "enveloppe EDXL-DE sans content[0].jsonContent.embeddedJsonContent.message",
            "content",
        )
    return node


def _import_caller(caller: dict[str, Any]) -> Caller:
    path = "initialAlert.caller"
    contact = _obj(caller, "callerContact", f"{path}.callerContact")
    callback_contact = _obj(caller, "callbackContact", f"{path}.callbackContact")
    came_from = _str(contact, "detail", f"{path}.callerContact.detail")
    callback = _str(callback_contact, "detail", f"{path}.callbackContact.detail")
    if not callback:
        callback, came_from = came_from, ""
    name = _obj(caller, "detailedName", f"{path}.detailedName")
    complete = _str(name, "complete", f"{path}.detailedName.complete")
    if not complete:
        parts = (
            _str(name, "firstName", f"{path}.detailedName.firstName"),
            _str(name, "lastName", f"{path}.detailedName.lastName"),
        )
        complete = " ".join(p for p in parts if p)
    return Caller(
        callback=callback,
        caller_type=_str(caller, "type", f"{path}.type"),
        channel=_str(contact, "channel", f"{path}.callerContact.channel") or "PERSONNE",
        name=complete,
        language=_str(caller, "language", f"{path}.language"),
        communication=_str(caller, "communication", f"{path}.communication"),
        freetext=_str(caller, "freetext", f"{path}.freetext"),
        contact_detail=came_from,
    )


def _import_location(loc: dict[str, Any]) -> Location:
    address = _obj(loc, "detailedAddress", "location.detailedAddress")
    way = _obj(address, "wayName", "location.detailedAddress.wayName")
    city = _obj(loc, "city", "location.city")
    access = _obj(loc, "access", "location.access")
    geometry = _obj(loc, "geometry", "location.geometry")
    point = _obj(geometry, "point", "location.geometry.point")
    coord = _obj(point, "coord", "location.geometry.point.coord")
    lat = _num(coord, "lat", "location.geometry.point.coord.lat")
    lon = _num(coord, "lon", "location.geometry.point.coord.lon")
    if lat is None or lon is None:
        lat = lon = None
    codes = _list(access, "accessCode", "location.access.accessCode")
    access_code = ", ".join(str(c) for c in codes if isinstance(c, str | int) and str(c).strip())
    city_name = _str(city, "name", "location.city.name")
    insee = _str(city, "inseeCode", "location.city.inseeCode")
    freetext = _str(loc, "freetext", "location.freetext")
    if not (city_name or insee):
        freetext, city_name, insee = _split_city_line(freetext)
    return Location(
        address=_str(address, "complete", "location.detailedAddress.complete"),
        number=_str(address, "number", "location.detailedAddress.number"),
        way_name=_str(way, "complete", "location.detailedAddress.wayName.complete"),
        way_type=_str(way, "type", "location.detailedAddress.wayName.type"),
        city=city_name,
        insee=insee,
        lat=lat,
        lon=lon,
        precision=_str(coord, "precision", "location.geometry.point.coord.precision"),
        is_aml=_bool(point, "isAml", "location.geometry.point.isAml") is True,
        position_at=_dt(geometry, "datetime", "location.geometry.datetime"),
        floor=_str(access, "floor", "location.access.floor"),
        access_code=access_code,
        interphone=_str(access, "interphone", "location.access.interphone"),
        building=_str(access, "buildingName", "location.access.buildingName"),
        name=_str(loc, "name", "location.name"),
        freetext=freetext,
    )


def _split_city_line(freetext: str) -> tuple[str, str, str]:
    """(freetext without the commune line, commune name, INSEE code)."""
    lines = freetext.split("\n")
    found = _CITY_LINE.fullmatch(lines[-1])
    if not found:
        return freetext, "", ""
    return "\n".join(lines[:-1]), found.group("name"), found.group("insee") or ""


def _import_patient(p: dict[str, Any]) -> Patient:
    identity = _obj(p, "identity", "patient.identity")
    strict = _obj(identity, "strictFeatures", "patient.identity.strictFeatures")
    names = _obj(identity, "nonStrictFeatures", "patient.identity.nonStrictFeatures")
    detail = _obj(p, "detail", "patient.detail")
    return Patient(
        patient_id=_str(p, "patientId", "patient.patientId"),
        age=_str(detail, "age", "patient.detail.age"),
        birth_date=_str(strict, "birthDate", "patient.identity.strictFeatures.birthDate"),
        sex=_str(strict, "sex", "patient.identity.strictFeatures.sex"),
        last_name=_str(names, "lastName", "patient.identity.nonStrictFeatures.lastName"),
        first_name=_str(names, "firstName", "patient.identity.nonStrictFeatures.firstName"),
        complete_name=_str(names, "complete", "patient.identity.nonStrictFeatures.complete"),
    )


def _import_alert_notes(alert: dict[str, Any], fallback_at: datetime) -> list[Note]:
    out: list[Note] = []
    items = _list(alert, "notes", "initialAlert.notes")
    for i in range(len(items)):
        path = f"initialAlert.notes[{i}]"
        item = _item(items, i, "initialAlert.notes")
        text = _str(item, "freetext", f"{path}.freetext")
        if not text.strip():
            continue
        at = _dt(item, "creation", f"{path}.creation") or fallback_at
        out.append(Note(at=at, text=text, role="ARM", medical=False))
    return out


def _import_medical_notes(case: dict[str, Any], fallback_at: datetime) -> list[Note]:
    out: list[Note] = []
    items = _list(case, "medicalNote", "medicalNote")
    for i in range(len(items)):
        path = f"medicalNote[{i}]"
        item = _item(items, i, "medicalNote")
        text = _str(item, "freetext", f"{path}.freetext")
        if not text.strip():
            continue
        operator = _obj(item, "operator", f"{path}.operator")
        out.append(
            Note(
                at=_dt(item, "creation", f"{path}.creation") or fallback_at,
                text=text,
                role=_str(operator, "role", f"{path}.operator.role") or "INCONNU",
                medical=True,
                note_id=_str(item, "medicalNoteId", f"{path}.medicalNoteId"),
                operator=_str(operator, "label", f"{path}.operator.label"),
            )
        )
    return out


def _import_decisions(case: dict[str, Any], fallback_at: datetime) -> list[Decision]:
    out: list[Decision] = []
    items = _list(case, "decision", "decision")
    for i in range(len(items)):
        path = f"decision[{i}]"
        item = _item(items, i, "decision")
        operator = _obj(item, "operator", f"{path}.operator")
        out.append(
            Decision(
                at=_dt(item, "creation", f"{path}.creation") or fallback_at,
                decision_type=_str(item, "decisionType", f"{path}.decisionType"),
                role=_str(operator, "role", f"{path}.operator.role") or "MEDECIN",
                resource_type=_str(item, "resourceType", f"{path}.resourceType"),
                orientation_type=_str(item, "orientationType", f"{path}.orientationType"),
                medical_transport=_bool(item, "medicalTransport", f"{path}.medicalTransport"),
                patient_id=_str(item, "patientId", f"{path}.patientId"),
            )
        )
    return out


def _import_coded(qual: dict[str, Any], key: str) -> tuple[str, str] | None:
    path = f"qualification.{key}"
    obj = _obj(qual, key, path)
    code = _str(obj, "code", f"{path}.code")
    label = _str(obj, "label", f"{path}.label")
    return (code, label) if (code or label) else None


# --------------------------------------------------------------------------- JSON access


def _invalid(detail: str, field: str = "") -> ValidationError:
    return ValidationError(f"Message RS-EDA invalide : {detail}", field)


def _obj(parent: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid(f"« {path} » doit être un objet JSON", path)
    return value


def _list(parent: dict[str, Any], key: str, path: str) -> list[Any]:
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _invalid(f"« {path} » doit être une liste", path)
    if len(value) > MAX_ITEMS:
        raise _invalid(f"« {path} » : {len(value)} éléments (au plus {MAX_ITEMS})", path)
    return value


def _item(items: list[Any], index: int, path: str) -> dict[str, Any]:
    value = items[index]
    if not isinstance(value, dict):
        raise _invalid(f"« {path}[{index}] » doit être un objet JSON", path)
    return value


def _str(parent: dict[str, Any], key: str, path: str) -> str:
    value = parent.get(key)
    if value is None:
        return ""
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise _invalid(
                f"« {path} » : texte de {len(value)} caractères (au plus {MAX_TEXT})", path
            )
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _invalid(f"« {path} » doit être un texte", path)


def _num(parent: dict[str, Any], key: str, path: str) -> float | None:
    value = parent.get(key)
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.replace(",", "."))
        except ValueError:
            raise _invalid(f"« {path} » doit être un nombre", path) from None
    else:
        raise _invalid(f"« {path} » doit être un nombre", path)
    if not math.isfinite(number):
        raise _invalid(f"« {path} » doit être un nombre fini", path)
    return number


def _bool(parent: dict[str, Any], key: str, path: str) -> bool | None:
    value = parent.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise _invalid(f"« {path} » doit valoir true ou false", path)


def _dt(parent: dict[str, Any], key: str, path: str) -> datetime | None:
    text = _str(parent, key, path)
    if not text.strip():
        return None
    try:
        return parse_datetime(text)
    except ValueError:
        raise _invalid(
            f"date « {path} » illisible (« {text} ») : attendu AAAA-MM-JJThh:mm:ss+hh:mm", path
        ) from None
