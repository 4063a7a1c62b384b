"""The practitioner directory: who to ask for slots, where they practise, and
which vendor serves them (``docs/fhir-directory.md``).

Pure data: frozen dataclasses and the FHIR codes of our directory feed; the
store and the sync live in ``sas_desk.services.directory``.  Practitioners
and addresses reuse the slot-search objects (:mod:`sas_desk.models.slots`), so
that a candidate and the slots found for it share one identity (the prefixed
national id ``8``+RPPS / ``0``+ADELI).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sas_desk.models.slots import (
    CATEGORY_CDS,
    CATEGORY_CPTS,
    CATEGORY_MSP,
    Address,
    Practitioner,
    StructureIdKind,
)

# --------------------------------------------------------------------------- feed codes

#: Our extensions and code systems (``docs/fhir-directory.md``).
SAS_DESK_EXTENSION_BASE = "https://sas-desk.fr/fhir/StructureDefinition/"
SAS_DESK_CODESYSTEM_BASE = "https://sas-desk.fr/fhir/CodeSystem/"
EXT_SAS_PARTICIPATION = SAS_DESK_EXTENSION_BASE + "sas-participation"
EXT_EN_SUS = SAS_DESK_EXTENSION_BASE + "sas-en-sus"
EXT_EN_SUS_PHONE = SAS_DESK_EXTENSION_BASE + "sas-en-sus-phone"
EXT_CPTS = SAS_DESK_EXTENSION_BASE + "sas-cpts"
SYSTEM_STRUCTURE_KIND = SAS_DESK_CODESYSTEM_BASE + "structure-kind"
STRUCTURE_KIND_SOS = "SOS"

#: Health professions (TRE-G15), ``PractitionerRole.code``.
SYSTEM_PROFESSION = (
    "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
)
PROFESSION_PHYSICIAN = "10"  # médecin
PROFESSION_DENTIST = "40"  # chirurgien-dentiste
PROFESSION_LABELS: dict[str, str] = {
    PROFESSION_PHYSICIAN: "Médecin",
    PROFESSION_DENTIST: "Chirurgien-dentiste",
}

#: TRE-R38 ordinal specialties the directory uses most.
SPECIALTY_GENERAL_PRACTICE = "SM54"
SPECIALTY_PEDIATRICS = "SM40"

ENDPOINT_CONNECTION_SYSTEM = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
ENDPOINT_CONNECTION_FHIR_REST = "hl7-fhir-rest"


class StructureKind(enum.StrEnum):
    """What an Organization of the directory is."""

    CPTS = "CPTS"  # communauté professionnelle territoriale de santé (FINESS)
    MSP = "MSP"  # maison de santé pluriprofessionnelle
    CDS = "CDS"  # centre de santé
    SOS = "SOS"  # SOS Médecins association (SIRET)
    OTHER = "OTHER"

    @property
    def label(self) -> str:
        return _STRUCTURE_LABELS[self]


_STRUCTURE_LABELS = {
    StructureKind.CPTS: "CPTS",
    StructureKind.MSP: "Maison de santé pluriprofessionnelle",
    StructureKind.CDS: "Centre de santé",
    StructureKind.SOS: "SOS Médecins",
    StructureKind.OTHER: "Structure",
}

#: TRE-R66 category → kind.
STRUCTURE_CATEGORIES: dict[str, StructureKind] = {
    CATEGORY_CPTS: StructureKind.CPTS,
    CATEGORY_MSP: StructureKind.MSP,
    CATEGORY_CDS: StructureKind.CDS,
}


# --------------------------------------------------------------------------- objects


@dataclass(frozen=True, slots=True)
class VendorEndpoint:
    """A scheduling vendor's FHIR base (``{base_url}/Slot``, ``{base_url}/Schedule``)."""

    id: str
    name: str
    base_url: str
    active: bool = True  # FHIR Endpoint.status "active"; anything else: not to be called


@dataclass(frozen=True, slots=True)
class Structure:
    """A CPTS, SOS Médecins association, centre de santé or MSP."""

    id: str
    national_id: str  # prefixed IdNat_Struct: "1"+FINESS, "3"+SIRET, …
    id_kind: StructureIdKind | None
    kind: StructureKind
    name: str | None = None
    phone: str | None = None  # E.164
    endpoint: VendorEndpoint | None = None  # SOS: the vendor serving its schedules
    active: bool = True

    @property
    def siret(self) -> str | None:
        return self.national_id[1:] if self.id_kind is StructureIdKind.SIRET else None

    @property
    def finess(self) -> str | None:
        return self.national_id[1:] if self.id_kind is StructureIdKind.FINESS else None


@dataclass(frozen=True, slots=True)
class PracticePlace:
    """One place of practice of a practitioner (a PractitionerRole)."""

    id: str  # the PractitionerRole id
    practitioner: Practitioner
    profession: str | None  # TRE-G15 code
    specialty: str | None  # TRE-R38 code
    address: Address
    insee: str | None  # INSEE code of the commune
    latitude: float | None
    longitude: float | None
    phone: str | None  # E.164, the practice
    organization: Structure | None  # centre de santé, MSP
    endpoint: VendorEndpoint | None  # the vendor serving this practitioner's agenda
    sas_participation: bool = False
    en_sus: bool = False  # accepts patients beyond its published slots
    en_sus_phone: str | None = None  # E.164, the number to call for that
    cpts: tuple[Structure, ...] = ()  # CPTS memberships
    active: bool = True

    @property
    def national_id(self) -> str:
        return self.practitioner.national_id

    @property
    def callback_phone(self) -> str | None:
        """The number to call for an "en sus" request: the dedicated one, else the practice."""
        return self.en_sus_phone or self.phone


@dataclass(frozen=True, slots=True)
class Candidate:
    """A place of practice within the search radius, with its distance."""

    place: PracticePlace
    distance_km: float

    @property
    def practitioner(self) -> Practitioner:
        return self.place.practitioner

    @property
    def endpoint(self) -> VendorEndpoint | None:
        return self.place.endpoint

    @property
    def sas_participation(self) -> bool:
        return self.place.sas_participation

    @property
    def cpts(self) -> tuple[Structure, ...]:
        return self.place.cpts


@dataclass(frozen=True, slots=True)
class SosPlace:
    """A fixed consultation place of an SOS Médecins association (a Location)."""

    id: str
    name: str | None
    address: Address
    insee: str | None
    latitude: float
    longitude: float
    phone: str | None
    distance_km: float


@dataclass(frozen=True, slots=True)
class SosCandidate:
    """An SOS Médecins association with at least one fixed place in the radius."""

    association: Structure  # .siret, .endpoint
    places: tuple[SosPlace, ...]  # its places within the radius, nearest first

    @property
    def distance_km(self) -> float:
        return self.places[0].distance_km
