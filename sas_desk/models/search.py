"""A slot search: what is asked, the candidates asked for, what comes back
(offers grouped by place), how each vendor is doing, and the facets the
operator filters with ("disponible sous", slot type, consultation mode).

Pure data and rules; the engine that runs a search is
``sas_desk.services.fhir.search``."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import attrgetter
from urllib.parse import quote

from sas_desk.models.errors import KnownError
from sas_desk.models.slots import ConsultationMode, Slot, SlotType

#: the specialty searched when none is given: general medicine (TRE-R38)
GENERAL_MEDICINE = "SM54"
#: the pseudo-specialty of dentists (profession TRE-G15 40, no R38 specialty)
DENTIST = "DENT"

SEARCH_SPECIALTIES: dict[str, str] = {
    GENERAL_MEDICINE: "Médecine générale",
    "SM40": "Pédiatrie",
    DENTIST: "Chirurgien-dentiste",
}


class Band(enum.Enum):
    """ "Disponible sous": how soon a slot starts, counted from now."""

    H0_4 = (0, 4, "0–4 h")
    H4_8 = (4, 8, "4–8 h")
    H8_12 = (8, 12, "8–12 h")
    H12_24 = (12, 24, "12–24 h")
    H24_48 = (24, 48, "24–48 h")
    H48_72 = (48, 72, "48–72 h")

    def __init__(self, low_h: int, high_h: int, label: str) -> None:
        self.low_h = low_h
        self.high_h = high_h
        self.label = label

    @classmethod
    def of(cls, start: datetime, now: datetime) -> Band | None:
        """The band of a slot starting at ``start``; a slot already started
        counts as 0–4 h, one beyond 72 h has none."""
        hours = (start - now).total_seconds() / 3600
        for band in cls:
            if hours < band.high_h:
                return band
        return None


def default_window(now: datetime) -> tuple[datetime, datetime]:
    """Now → the end of the day after tomorrow (the platform's "J, J+1, J+2")."""
    last_day = (now + timedelta(days=2)).replace(hour=23, minute=59, second=59, microsecond=0)
    return now, last_day


class Window(enum.Enum):
    """How far ahead the operator searches (the platform's default: J to J+2)."""

    DEFAULT = ("J, J+1, J+2", 0)
    H4 = ("4 prochaines heures", 4)
    H24 = ("24 prochaines heures", 24)
    H72 = ("72 prochaines heures", 72)

    def __init__(self, label: str, hours: int) -> None:
        self.label = label
        self.hours = hours

    def bounds(self, now: datetime) -> tuple[datetime, datetime]:
        if not self.hours:
            return default_window(now)
        return now, now + timedelta(hours=self.hours)


OID_SPECIALTY_L01 = "urn:oid:1.2.250.1.213.2.28"  # TRE-R38 as the platform's link names it
OID_IDNAT_PS_L01 = "urn:oid:1.2.250.1.71.4.2.1"


def sas_platform_link(
    base_url: str,
    origin: str,
    *,
    specialty: str = GENERAL_MEDICINE,
    street_number: str = "",
    street_name: str = "",
    insee: str = "",
    city: str = "",
    practitioner_rpps: str = "",
) -> str:
    """The national platform's contextual search (flow INT_L01): its search
    page pre-filled with the place (and the patient's own doctor when known).
    Empty parts are left out; the dentists' pseudo-specialty is not sent."""
    parts: list[tuple[str, str]] = [("origin", origin)]
    if practitioner_rpps:
        parts.append(("practitioner", f"{OID_IDNAT_PS_L01}|{practitioner_rpps}"))
    if specialty and specialty != DENTIST:
        parts.append(("specialty", f"{OID_SPECIALTY_L01}|{specialty}"))
    parts += [
        ("streetnumber", street_number),
        ("streetname", street_name),
        ("inseecode", insee),
        ("city", city),
    ]
    query = "&".join(f"{k}={quote(v, safe=':')}" for k, v in parts if v)
    return f"{base_url.rstrip('/')}/sas/recherche?{query}"


@dataclass(frozen=True)
class Facets:
    """What the operator keeps; an empty set keeps everything."""

    types: frozenset[SlotType] = frozenset()
    modes: frozenset[ConsultationMode] = frozenset()
    bands: frozenset[Band] = frozenset()

    def keeps(self, slot: Slot, now: datetime) -> bool:
        if self.types and not self.types.intersection(slot.types):
            return False
        if self.modes and not self.modes.intersection(slot.modes):
            return False
        return not self.bands or Band.of(slot.start, now) in self.bands


@dataclass(frozen=True)
class SearchQuery:
    lat: float
    lon: float
    radius_km: float
    specialty: str = GENERAL_MEDICINE
    start: datetime | None = None  # default: now
    end: datetime | None = None  # default: end of day + 2
    facets: Facets = Facets()

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        start, end = default_window(now)
        return self.start or start, self.end or end


class CandidateKind(enum.StrEnum):
    PRACTITIONER = "PS"  # a practitioner's place, searched on /Slot by IdNat_PS
    SOS = "SOS"  # an SOS Médecins association, searched on /Schedule by SIRET


@dataclass(frozen=True)
class Candidate:
    """Someone to ask for slots: from the directory, in the radius."""

    kind: CandidateKind
    national_id: str  # prefixed: 8RPPS / 0ADELI, or 3SIRET for SOS
    name: str
    vendor: str  # vendor endpoint name
    distance_km: float
    lat: float
    lon: float
    address: str = ""
    sas: bool = False  # takes part in the SAS: asked first
    cpts: bool = False  # member of a CPTS: asked with the CPTS includes
    phone: str = ""


@dataclass(frozen=True)
class Volunteer:
    """A practitioner accepting patients beyond the published slots ("en sus")."""

    national_id: str
    name: str
    phone: str
    distance_km: float
    address: str = ""


class EnSusTimeError(KnownError, ValueError):
    """The time typed for an "en sus" appointment cannot be recorded."""


#: an "en sus" consultation is agreed on the phone for the coming hours: a
#: time further than the SAS's 48 h is a typing slip, one already past by
#: more than this is too (the appointment is recorded as the call ends)
EN_SUS_HORIZON = timedelta(hours=48)
EN_SUS_PAST_TOLERANCE = timedelta(minutes=15)
_EN_SUS_TIME = re.compile(
    r"^\s*(?:(?P<day>\d{1,2})/(?P<month>\d{1,2})(?:/(?P<year>\d{4}))?\s+)?"
    r"(?P<hour>\d{1,2})\s*[:hH]\s*(?P<minute>\d{2})?\s*$"
)


def en_sus_start(text: str, now: datetime) -> datetime:
    """The start of an "en sus" appointment agreed with a volunteer on the
    phone, from what the operator typed, in ``now``'s zone (the room's):
    ``14:30``, ``14h30``, ``14h`` (today, or tomorrow once that time is past)
    or ``08/12 09:15`` (``08/12/2026 09:15``).  Refused with a French message:
    unreadable, more than 15 minutes ago, or beyond 48 hours."""
    m = _EN_SUS_TIME.match(text)
    if m is None:
        raise EnSusTimeError(
            f"Heure du rendez-vous illisible : « {text.strip()[:20]} ». "
            "Tapez par exemple 14:30 ou 08/12 09:15."
        )
    hour, minute = int(m["hour"]), int(m["minute"] or 0)
    try:
        if m["day"] is None:
            start = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
            if start < now - EN_SUS_PAST_TOLERANCE:
                start += timedelta(days=1)
        else:
            year = int(m["year"]) if m["year"] else now.year
            start = now.replace(
                year=year,
                month=int(m["month"]),
                day=int(m["day"]),
                hour=hour,
                minute=minute,
                second=0,
                microsecond=0,
            )
            if m["year"] is None and start < now - timedelta(days=180):
                start = start.replace(year=year + 1)  # 02/01 typed on 31/12
    except ValueError:
        raise EnSusTimeError(
            f"Date ou heure du rendez-vous impossible : « {text.strip()[:20]} »."
        ) from None
    if start < now - EN_SUS_PAST_TOLERANCE:
        raise EnSusTimeError(
            f"Le {start:%d/%m à %H:%M} est passé : tapez l'heure du rendez-vous convenu."
        )
    if start > now + EN_SUS_HORIZON:
        raise EnSusTimeError(
            f"Le {start:%d/%m à %H:%M} est au-delà de 48 h : un rendez-vous en sus se prend "
            "dans les heures qui viennent (vérifiez la date)."
        )
    return start


@dataclass(frozen=True)
class Offer:
    """The slots of one place (a practitioner's place, or an SOS place) found
    so far, with what the list and the map show."""

    key: str  # vendor|national id|place
    candidate: Candidate
    slots: tuple[Slot, ...]
    distance_km: float
    lat: float | None
    lon: float | None
    address: str

    @property
    def first(self) -> datetime | None:
        return self.slots[0].start if self.slots else None


class VendorState(enum.StrEnum):
    WAITING = "waiting"  # requests in flight, none late yet
    SLOW = "slow"  # a request is taking longer than usual
    OK = "ok"  # every request answered
    TIMEOUT = "timeout"  # at least one request ran out of time
    ERROR = "error"  # at least one request failed

    @property
    def label(self) -> str:
        return _STATE_LABELS[self]


_STATE_LABELS = {
    VendorState.WAITING: "en attente",
    VendorState.SLOW: "lent",
    VendorState.OK: "a répondu",
    VendorState.TIMEOUT: "délai dépassé",
    VendorState.ERROR: "en erreur",
}


@dataclass(frozen=True)
class VendorStatus:
    name: str
    state: VendorState
    requests: int  # batches sent
    answered: int  # batches answered (successfully or not)
    slots: int  # slots received
    message_fr: str = ""  # why it failed (with the OperationOutcome's text)
    elapsed_s: float = 0.0  # since the search started, at the last change

    @property
    def done(self) -> bool:
        return self.answered >= self.requests


@dataclass(frozen=True)
class SearchUpdate:
    """One step of a search: the offers that changed (new slots merged in),
    every vendor's status, and, at the end, the volunteers when few
    practitioners have slots."""

    offers: tuple[Offer, ...]
    vendors: dict[str, VendorStatus]
    candidates: int
    done: bool = False
    volunteers: tuple[Volunteer, ...] = ()
    elapsed_s: float = 0.0
    notes: tuple[str, ...] = field(default=())  # French remarks for the operator


_BY_START = attrgetter("start", "id")  # in C: thousands of slots per search


def merge_slots(old: Iterable[Slot], new: Iterable[Slot]) -> tuple[Slot, ...]:
    """Slots of one offer, without duplicates (by id: the one already there
    stays), by start time."""
    seen: dict[str, Slot] = {s.id: s for s in new}
    seen.update({s.id: s for s in old})
    return tuple(sorted(seen.values(), key=_BY_START))
