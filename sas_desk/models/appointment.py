"""SAS appointments received from the national platform (Hub Santé model
RS-SAS-RDV, root key ``appointment``, flow INT_L02).  Pure: no I/O.

Rules of the receiving LRM (``reference/notes/hub-sante.md`` §4.3):

* the key is ``appointmentId``; every ``UpdateAppointment`` carries the whole
  current state and replaces it;
* an update for an unknown id is a creation; a cancellation is an update with
  ``status = cancelled``;
* a second ``CreateAppointment`` for a known id is a conflict, answered with an
  RS-ERROR the platform understands (409 CONFLICT, as in the SAS IG);
* the message holds no case id: the appointment waits to be attached to a
  dossier by a person (``case_id`` stays empty until then).
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sas_desk.models.dossier import Event, EventKind
from sas_desk.models.errors import KnownError

STATUSES: dict[str, str] = {
    "pending": "En attente",
    "booked": "Réservé",
    "fulfilled": "Honoré",
    "noshow": "Non honoré",
    "cancelled": "Annulé",
}
METHODS = ("CreateAppointment", "UpdateAppointment")
CATEGORIES = ("CPTS", "MSP", "CDS", "SOS", "PS", "PDM")
_OFFSET_DT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[-+]\d{2}:\d{2}", re.ASCII)
_RPPS = re.compile(r"81[0-9]{10}", re.ASCII)


class AppointmentError(KnownError, ValueError):
    """An unusable RS-SAS-RDV: ``message_fr`` names the field."""

    def __init__(self, message_fr: str, path: str = "") -> None:
        super().__init__(message_fr)
        self.message_fr = message_fr
        self.path = path


@dataclass(frozen=True)
class Appointment:
    appointment_id: str
    method: str
    created: datetime
    start: datetime
    status: str
    regulator_name: str
    regulator_firstname: str
    regulator_email: str
    regulator_id: str = ""
    end: datetime | None = None
    category: str = ""
    practitioner_rpps: str = ""
    practitioner_name: str = ""  # "Didier MOREL"
    speciality: str = ""
    organization_id: str = ""
    organization_name: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def status_label(self) -> str:
        return STATUSES.get(self.status, self.status)

    @property
    def practitioner_label(self) -> str:
        return self.practitioner_name or self.organization_name


class Change(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    CREATED_FROM_UPDATE = "created_from_update"  # update for an unknown id
    DUPLICATE = "duplicate"  # CreateAppointment for a known id: refused (409)
    UNCHANGED = "unchanged"  # same state again


def parse_appointment(body: dict[str, Any]) -> Appointment:
    """``{"appointment": {...}}`` or the inner object → :class:`Appointment`.

    Checks what the schema requires (id, method, dates with offsets, status,
    regulator) with French messages; unknown optional codes are kept."""
    item = body.get("appointment", body) if isinstance(body, dict) else None
    if not isinstance(item, dict):
        raise AppointmentError("RS-SAS-RDV : « appointment » doit être un objet JSON")

    def text(obj: dict[str, Any], key: str, path: str, required: bool = False) -> str:
        value = obj.get(key)
        if value is None or value == "":
            if required:
                raise AppointmentError(f"RS-SAS-RDV : « {path} » manquant", path)
            return ""
        if not isinstance(value, str):
            raise AppointmentError(f"RS-SAS-RDV : « {path} » doit être un texte", path)
        return value

    def when(key: str, required: bool = True) -> datetime | None:
        value = text(item, key, f"appointment.{key}", required)
        if not value:
            return None
        if not _OFFSET_DT.fullmatch(value):
            raise AppointmentError(
                f"RS-SAS-RDV : date « appointment.{key} » illisible "
                "(attendu AAAA-MM-JJThh:mm:ss±hh:mm)",
                f"appointment.{key}",
            )
        return datetime.fromisoformat(value)

    def sub(key: str) -> dict[str, Any]:
        value = item.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise AppointmentError(
                f"RS-SAS-RDV : « appointment.{key} » doit être un objet", f"appointment.{key}"
            )
        return value

    appointment_id = text(item, "appointmentId", "appointment.appointmentId", True).strip()
    method = text(item, "method", "appointment.method", True)
    if method not in METHODS:
        raise AppointmentError(
            f"RS-SAS-RDV : méthode « {method} » inconnue (CreateAppointment ou UpdateAppointment)",
            "appointment.method",
        )
    status = text(item, "status", "appointment.status", True)
    if status not in STATUSES:
        raise AppointmentError(f"RS-SAS-RDV : statut « {status} » inconnu", "appointment.status")
    regulator = sub("regulator")
    if not regulator:
        raise AppointmentError("RS-SAS-RDV : « appointment.regulator » manquant", "regulator")
    practitioner = sub("practitioner")
    organization = sub("organization")
    rpps = text(practitioner, "rppsId", "appointment.practitioner.rppsId")
    if rpps and not _RPPS.fullmatch(rpps):
        raise AppointmentError(
            f"RS-SAS-RDV : RPPS « {rpps} » invalide (81 suivi de 10 chiffres)",
            "appointment.practitioner.rppsId",
        )
    names = (
        text(practitioner, "firstName", "appointment.practitioner.firstName"),
        text(practitioner, "lastName", "appointment.practitioner.lastName"),
    )
    created, start = when("created"), when("start")
    assert created is not None and start is not None
    return Appointment(
        appointment_id=appointment_id,
        method=method,
        created=created,
        start=start,
        end=when("end", required=False),
        status=status,
        category=text(item, "orientationCategory", "appointment.orientationCategory"),
        practitioner_rpps=rpps,
        practitioner_name=" ".join(n for n in names if n),
        speciality=text(practitioner, "specialityCode", "appointment.practitioner.specialityCode"),
        organization_id=text(
            organization, "organizationId", "appointment.organization.organizationId"
        ),
        organization_name=text(organization, "name", "appointment.organization.name"),
        regulator_name=text(
            regulator, "regulatorName", "appointment.regulator.regulatorName", True
        ),
        regulator_firstname=text(
            regulator, "regulatorFirstname", "appointment.regulator.regulatorFirstname", True
        ),
        regulator_email=text(
            regulator, "regulatorEmail", "appointment.regulator.regulatorEmail", True
        ),
        regulator_id=text(regulator, "regulatorId", "appointment.regulator.regulatorId"),
        raw=item,
    )


def classify(incoming: Appointment, known: Appointment | None) -> Change:
    """What receiving ``incoming`` does to the stored state ``known``."""
    if known is None:
        return (
            Change.CREATED if incoming.method == "CreateAppointment" else Change.CREATED_FROM_UPDATE
        )
    if incoming.method == "CreateAppointment":
        return Change.DUPLICATE
    if incoming.raw == known.raw:
        return Change.UNCHANGED
    return Change.UPDATED


def to_record(a: Appointment, case_id: str | None) -> dict[str, Any]:
    """One JSON line of ``sas-desk hub appointments``."""
    return {
        "appointmentId": a.appointment_id,
        "status": a.status,
        "start": a.start.isoformat(),
        "end": a.end.isoformat() if a.end else None,
        "practitioner": a.practitioner_label,
        "rpps": a.practitioner_rpps or None,
        "category": a.category or None,
        "created": a.created.isoformat(),
        "regulator": f"{a.regulator_firstname} {a.regulator_name}".strip(),
        "regulatorEmail": a.regulator_email,
        "caseId": case_id,
    }


def timeline_text(a: Appointment) -> str:
    """French line for the dossier's timeline."""
    who = a.practitioner_label or "praticien non précisé"
    if a.organization_name and a.organization_name != who:
        who += f" ({a.organization_name})"
    # the timeline's label already says « Rendez-vous SAS »
    return f"{a.status_label} : {who}, le {a.start:%d/%m/%Y à %H:%M}"


# ---------------------------------------------------------------------- matching
# An RS-SAS-RDV has no case id: the room attaches it to a dossier by hand.  The
# suggestion compares it with what the dossier says about its orientation.
MATCH_WINDOW = timedelta(minutes=30)  # ``created`` ≈ the orientation decision


@dataclass(frozen=True)
class OrientationHint:
    """What a dossier tells about one orientation decision: when, and with
    whom when a slot was booked (an ``ORIENTED`` event); a bare decision
    (``DECIDED``) has no practitioner."""

    case_id: str
    decided_at: datetime
    practitioner: str = ""
    practitioner_id: str = ""  # RPPS (national id) of the booked slot's practitioner


@dataclass(frozen=True)
class Match:
    case_id: str
    appointment_id: str
    minutes_apart: int
    same_practitioner: bool

    @property
    def reason_fr(self) -> str:
        who = "même praticien, " if self.same_practitioner else ""
        return f"{who}même régulateur, {self.minutes_apart} min d'écart avec la décision"


def orientation_hints(events: list[Event]) -> list[OrientationHint]:
    """A dossier's orientation decisions, from its timeline: each booked slot
    (``ORIENTED``: when, practitioner, national id) and each medical decision
    (``DECIDED``: when only)."""
    out = []
    for e in events:
        if e.kind is EventKind.ORIENTED:
            out.append(
                OrientationHint(
                    e.dossier_id,
                    e.at,
                    str(e.data.get("practitioner") or ""),
                    str(e.data.get("national_id") or ""),
                )
            )
        elif e.kind is EventKind.DECIDED:
            out.append(OrientationHint(e.dossier_id, e.at))
    return out


def _name_words(text: str) -> frozenset[str]:
    """The words of a name, case and accents aside, without « Dr »."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return frozenset(re.sub(r"[^a-z0-9]+", " ", plain).split()) - {"dr", "docteur"}


def _rpps(value: str) -> str:
    """The bare RPPS: ``rppsId`` and the directory's IdNat_PS carry it
    prefixed with « 8 » (12 characters); some sources give it bare (11)."""
    value = value.strip()
    return value[1:] if len(value) == 12 and value.startswith("8") else value


def same_practitioner(a: Appointment, hint: OrientationHint) -> bool | None:
    """True/False when both sides name a practitioner, None when one does not.
    The RPPS decides when both carry one; else the names (case, accents, word
    order, a « Dr » and a missing first name aside)."""
    if a.practitioner_rpps and hint.practitioner_id.strip():
        return _rpps(a.practitioner_rpps) == _rpps(hint.practitioner_id)
    theirs, mine = _name_words(a.practitioner_name), _name_words(hint.practitioner)
    if not theirs or not mine:
        return None
    return theirs <= mine or mine <= theirs


def regulator_is(a: Appointment, identities: set[str] | frozenset[str]) -> bool:
    """Whether the appointment was booked by the logged-in regulator: its
    ``regulatorId`` or ``regulatorEmail`` is one of ``identities`` (case aside)."""
    wanted = {i.strip().casefold() for i in identities if i.strip()}
    return bool(
        wanted & {v.strip().casefold() for v in (a.regulator_id, a.regulator_email) if v.strip()}
    )


def match(
    a: Appointment,
    hint: OrientationHint,
    identities: set[str] | frozenset[str],
    window: timedelta = MATCH_WINDOW,
) -> Match | None:
    """The suggestion rule: same regulator, ``created`` within ``window`` of
    the decision, and not a different practitioner (unknown on one side is
    allowed, a different one is not).  A cancelled appointment is never
    suggested."""
    if a.status == "cancelled" or not regulator_is(a, identities):
        return None
    apart = abs(a.created - hint.decided_at)
    if apart > window:
        return None
    same = same_practitioner(a, hint)
    if same is False:
        return None
    return Match(hint.case_id, a.appointment_id, int(apart.total_seconds() // 60), same is True)


def best_matches(
    appointments: list[Appointment],
    hints: list[OrientationHint],
    identities: set[str] | frozenset[str],
) -> list[Match]:
    """Every suggestion, best first: same practitioner before unknown, then
    the closest in time."""
    found = [m for a in appointments for h in hints if (m := match(a, h, identities))]
    found.sort(key=lambda m: (not m.same_practitioner, m.minutes_apart, m.appointment_id))
    seen: set[tuple[str, str]] = set()
    out = []
    for m in found:
        if (m.case_id, m.appointment_id) not in seen:
            seen.add((m.case_id, m.appointment_id))
            out.append(m)
    return out
