"""Consultation slots and who offers them, as the national SAS slot search
(FHIR R4, ANS "Service d'Accès aux Soins" implementation guide) describes them.

Pure data: frozen dataclasses, no I/O, no Qt.  The FHIR parser
(``sas_desk.services.fhir.bundle``) builds these from vendor Bundles; datetimes
are always timezone-aware.

Three kinds of answers share these objects:

- individual practitioners ("PS indiv"): Slot → Schedule → Practitioner and
  PractitionerRole, the role carrying its consultation place as a *contained*
  Location;
- CPTS: the same, plus one HealthcareService (and its CPTS Organization) per
  CPTS the slot is visible to;
- SOS Médecins: Slot → Schedule → a standalone Location (the fixed consultation
  place) → the association's Organization (SIRET).

The code systems and codes below are those of the guide, carried into our own
constants.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, time

import msgspec

# --------------------------------------------------------------------------- code systems

#: Slot type ("type de créneau"), carried in ``Slot.meta.security``.
SYSTEM_SLOT_TYPE = "https://mos.esante.gouv.fr/NOS/TRE_R314-TypeCreneau/FHIR/TRE-R314-TypeCreneau"
#: Consultation mode, carried in ``Slot.serviceType.coding``.
SYSTEM_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
#: Bookable (ROUTINE) or walk-in (WALKIN), carried in ``Slot.appointmentType``.
SYSTEM_APPOINTMENT_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0276"
#: Ordinal specialties (TRE-R38), e.g. SM54 "médecine générale".
SYSTEM_SPECIALTY = (
    "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale"
)
#: Structure category (TRE-R66); 604 marks the serviceType entry of a CPTS.
SYSTEM_STRUCTURE_CATEGORY = (
    "https://mos.esante.gouv.fr/NOS/TRE_R66-CategorieEtablissement/FHIR/"
    "TRE-R66-CategorieEtablissement"
)
CATEGORY_CPTS = "604"
CATEGORY_MSP = "603"
CATEGORY_CDS = "124"
#: Extension on a CPTS serviceType entry, ``valueReference`` → HealthcareService.
EXT_SLOT_SERVICE_TYPE = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Slot.serviceType"

#: National practitioner ids (IdNat_PS): ``8`` + RPPS, ``0`` + ADELI.
OID_IDNAT_PS = "urn:oid:1.2.250.1.71.4.2.1"
#: National structure ids (IdNat_Struct): ``1`` + FINESS, ``3`` + SIRET,
#: ``4`` + RPPS-rang, ``0`` + ADELI-rang.
OID_IDNAT_STRUCT = "urn:oid:1.2.250.1.71.4.2.2"


class ProfileFamily(enum.StrEnum):
    PS = "PS"
    CPTS = "CPTS"
    SOS = "SOS"


_SAS_FR = "http://sas.fr/fhir/StructureDefinition/"
_INTEROP = "https://interop.esante.gouv.fr/ig/fhir/sas/StructureDefinition/"

#: Profile canonical → (resource type, family).  Informative: the parser keys
#: on resource types and code values, not on profiles (the guide mixes two URL
#: families and the CPTS example reuses the PS Schedule profile).
PROFILES: dict[str, tuple[str, ProfileFamily]] = {
    _SAS_FR + "BundleAgregateur": ("Bundle", ProfileFamily.PS),
    _SAS_FR + "FrSlotAgregateur": ("Slot", ProfileFamily.PS),
    _SAS_FR + "FrScheduleAgregateur": ("Schedule", ProfileFamily.PS),
    _SAS_FR + "FrPractitionerAgregateur": ("Practitioner", ProfileFamily.PS),
    _SAS_FR + "FrPractitionerRoleExerciceAgregateur": ("PractitionerRole", ProfileFamily.PS),
    _SAS_FR + "FrLocationAgregateur": ("Location", ProfileFamily.PS),
    _INTEROP + "sas-cpts-bundle-aggregator": ("Bundle", ProfileFamily.CPTS),
    _INTEROP + "sas-cpts-slot-aggregator": ("Slot", ProfileFamily.CPTS),
    _INTEROP + "sas-cpts-healthcareservice-aggregator": ("HealthcareService", ProfileFamily.CPTS),
    _INTEROP + "sas-cpts-organization-aggregator": ("Organization", ProfileFamily.CPTS),
    _INTEROP + "sas-sos-bundle-aggregator": ("Bundle", ProfileFamily.SOS),
    _INTEROP + "sas-sos-slot-aggregator": ("Slot", ProfileFamily.SOS),
    _INTEROP + "sas-sos-schedule-aggregator": ("Schedule", ProfileFamily.SOS),
    _INTEROP + "sas-sos-location-aggregator": ("Location", ProfileFamily.SOS),
    _INTEROP + "sas-sos-organization-aggregator": ("Organization", ProfileFamily.SOS),
}


class SlotType(enum.StrEnum):
    """Who may book the slot (TRE-R314)."""

    PUBLIC = "PUBLIC"
    PRO = "PRO"
    SNP = "SNP"
    CPTS = "CPTS"

    @property
    def label(self) -> str:
        return _SLOT_TYPE_LABELS[self]


_SLOT_TYPE_LABELS = {
    SlotType.PUBLIC: "Grand public",
    SlotType.PRO: "Professionnels de santé",
    SlotType.SNP: "Régulation (soins non programmés)",
    SlotType.CPTS: "CPTS",
}


class ConsultationMode(enum.StrEnum):
    """Where the consultation happens (v3-ActCode)."""

    AMB = "AMB"  # at the practice
    HH = "HH"  # home visit
    VR = "VR"  # teleconsultation

    @property
    def label(self) -> str:
        return _MODE_LABELS[self]


_MODE_LABELS = {
    ConsultationMode.AMB: "Au cabinet",
    ConsultationMode.HH: "Visite à domicile",
    ConsultationMode.VR: "Téléconsultation",
}


class AppointmentType(enum.StrEnum):
    """Bookable slot or walk-in consultation (v2-0276)."""

    ROUTINE = "ROUTINE"
    WALKIN = "WALKIN"

    @property
    def label(self) -> str:
        return "Sur rendez-vous" if self is AppointmentType.ROUTINE else "Sans rendez-vous"


class PractitionerIdKind(enum.StrEnum):
    RPPS = "RPPS"  # national id "8" + 11 digits
    ADELI = "ADELI"  # national id "0" + 9 characters


class StructureIdKind(enum.StrEnum):
    FINESS = "FINESS"  # "1" + 9 characters
    SIRET = "SIRET"  # "3" + 14 digits
    RPPS_RANG = "RPPS_RANG"  # "4" + 14 digits
    ADELI_RANG = "ADELI_RANG"  # "0" + …


#: Specialty labels for the codes SAS Desk shows most (TRE-R38); any other
#: code is displayed as itself.
SPECIALTY_LABELS: dict[str, str] = {
    "SM05": "Chirurgie générale",
    "SM41": "Pneumologie",
    "SM54": "Médecine générale",
}


# --------------------------------------------------------------------------- value objects


@dataclass(frozen=True, slots=True)
class Specialty:
    """One ``Slot.specialty``: a code (TRE-R38 or another system), a text, or both."""

    code: str | None = None
    system: str | None = None
    text: str | None = None

    @property
    def label(self) -> str:
        if self.text:
            return self.text
        if self.code is None:
            return ""
        if self.system in (None, SYSTEM_SPECIALTY):
            return SPECIALTY_LABELS.get(self.code, self.code)
        return self.code


@dataclass(frozen=True, slots=True)
class Address:
    lines: tuple[str, ...] = ()
    city: str | None = None
    postal_code: str | None = None

    @property
    def text(self) -> str:
        town = " ".join(p for p in (self.postal_code, self.city) if p)
        return ", ".join(p for p in (*self.lines, town) if p)


@dataclass(frozen=True, slots=True)
class OpeningHours:
    """One ``Location.hoursOfOperation`` entry (SOS fixed consultation places)."""

    days: tuple[str, ...]  # mon … sun
    all_day: bool = False
    opening: time | None = None
    closing: time | None = None


# --------------------------------------------------------------------------- resources


@dataclass(frozen=True, slots=True)
class Organization:
    """A CPTS (FINESS) or an SOS Médecins association (SIRET), or another structure."""

    id: str
    national_id: str  # prefixed IdNat_Struct value, e.g. "3334173748400020"
    id_kind: StructureIdKind | None
    name: str | None = None
    phone: str | None = None  # E.164

    @property
    def siret(self) -> str | None:
        return self.national_id[1:] if self.id_kind is StructureIdKind.SIRET else None

    @property
    def finess(self) -> str | None:
        return self.national_id[1:] if self.id_kind is StructureIdKind.FINESS else None


@dataclass(frozen=True, slots=True)
class Location:
    """A consultation place: contained in a PractitionerRole (PS, CPTS) or a
    standalone resource (SOS fixed consultation place, with its association)."""

    id: str
    identifier: str | None = None  # vendor-internal or IdNat_Struct value
    identifier_system: str | None = None
    name: str | None = None
    address: Address = Address()
    latitude: float | None = None
    longitude: float | None = None
    phone: str | None = None  # E.164
    organization: Organization | None = None  # SOS: managingOrganization
    hours: tuple[OpeningHours, ...] = ()

    @property
    def coordinates(self) -> tuple[float, float] | None:
        if self.latitude is None or self.longitude is None:
            return None
        return (self.latitude, self.longitude)


@dataclass(frozen=True, slots=True)
class Practitioner:
    id: str
    national_id: str  # prefixed IdNat_PS value: "8" + RPPS or "0" + ADELI
    id_kind: PractitionerIdKind
    family: str | None = None
    given: tuple[str, ...] = ()
    phone: str | None = None  # E.164

    @property
    def rpps(self) -> str | None:
        return self.national_id[1:] if self.id_kind is PractitionerIdKind.RPPS else None

    @property
    def adeli(self) -> str | None:
        return self.national_id[1:] if self.id_kind is PractitionerIdKind.ADELI else None

    @property
    def display_name(self) -> str:
        name = " ".join((*self.given, self.family or "")).strip()
        return name or self.national_id


@dataclass(frozen=True, slots=True)
class PractitionerRole:
    """One consultation place of a practitioner (one Schedule per role)."""

    id: str
    practitioner: Practitioner | None
    location: Location | None
    organization_id: str | None = None  # prefixed IdNat_Struct value of the structure
    organization_kind: StructureIdKind | None = None
    phone: str | None = None  # E.164


@dataclass(frozen=True, slots=True)
class HealthcareService:
    """The CPTS service a slot is made visible to (one per CPTS Organization)."""

    id: str
    organization: Organization | None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Schedule:
    """Agenda of one consultation place: a practitioner and one role (PS,
    CPTS), or one fixed consultation place (SOS)."""

    id: str
    practitioner: Practitioner | None = None
    role: PractitionerRole | None = None
    location: Location | None = None  # SOS actor

    @property
    def place(self) -> Location | None:
        if self.location is not None:
            return self.location
        return self.role.location if self.role is not None else None


class Slot(msgspec.Struct, frozen=True, gc=False):
    """A free consultation slot, resolved with its schedule and the rest.

    A msgspec struct, not a frozen dataclass like the rest: a search builds
    thousands of them, and a struct is built in C, in a fraction of the time
    (immutable, hashable and compared by value all the same). Untracked by
    the cyclic collector (``gc=False``: a slot refers to its schedule and to
    values, never back to itself), so the thousands of slots on screen add
    nothing to the collections of the window's process."""

    id: str
    schedule_ref: str
    schedule: Schedule
    start: datetime  # timezone-aware
    end: datetime  # timezone-aware, after start
    types: tuple[SlotType, ...] = ()
    modes: tuple[ConsultationMode, ...] = ()
    specialties: tuple[Specialty, ...] = ()
    reasons: tuple[str, ...] = ()  # free-text serviceType entries ("Visite de contrôle")
    appointment_type: AppointmentType | None = None
    booking_url: str | None = None  # Slot.comment (http/https only)
    status: str = "free"
    services: tuple[HealthcareService, ...] = ()  # CPTS the slot is visible to

    @property
    def practitioner(self) -> Practitioner | None:
        return self.schedule.practitioner

    @property
    def role(self) -> PractitionerRole | None:
        return self.schedule.role

    @property
    def location(self) -> Location | None:
        return self.schedule.place

    @property
    def organization(self) -> Organization | None:
        """The SOS association running the place, if any."""
        place = self.schedule.location
        return place.organization if place is not None else None

    @property
    def bookable(self) -> bool:
        return self.appointment_type is not AppointmentType.WALKIN and bool(self.booking_url)

    @property
    def duration_minutes(self) -> float:
        return (self.end - self.start).total_seconds() / 60
