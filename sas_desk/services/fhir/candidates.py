"""The directory seen by the slot search: practitioners' places, SOS
Médecins associations and "en sus" volunteers around a point, each with the
name of the vendor endpoint to ask."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sas_desk.models.directory import VendorEndpoint as DirectoryEndpoint
from sas_desk.models.search import DENTIST, GENERAL_MEDICINE, Candidate, CandidateKind, Volunteer
from sas_desk.services.config import VendorEndpoint
from sas_desk.services.directory.store import DirectoryStore

log = logging.getLogger("sas_desk.fhir.candidates")

PROFESSION_PHYSICIAN = "10"  # TRE-G15
PROFESSION_DENTIST = "40"


def _norm(url: str) -> str:
    return url.rstrip("/").lower()


class DirectoryCandidates:
    """:class:`~sas_desk.services.fhir.search.CandidateSource` over the local
    directory.  A place's vendor is the configured endpoint with the same base
    URL (else the same name); places of a vendor nobody configured keep its
    directory name, and the search reports that vendor as not configured."""

    def __init__(self, store: DirectoryStore, vendors: Sequence[VendorEndpoint]) -> None:
        self.store = store
        self._by_url = {_norm(v.base_url): v.name for v in vendors}
        self._names = {v.name for v in vendors}

    def vendor_name(self, endpoint: DirectoryEndpoint | None) -> str | None:
        if endpoint is None or not endpoint.active:
            return None
        found = self._by_url.get(_norm(endpoint.base_url))
        if found is not None:
            return found
        return endpoint.name

    @staticmethod
    def _filters(specialty: str) -> tuple[str, str | None]:
        if specialty == DENTIST:
            return PROFESSION_DENTIST, None
        return PROFESSION_PHYSICIAN, specialty

    def candidates(
        self, lat: float, lon: float, radius_km: float, specialty: str
    ) -> list[Candidate]:
        profession, r38 = self._filters(specialty)
        out: list[Candidate] = []
        seen: set[tuple[str, str]] = set()
        no_vendor = 0
        for c in self.store.candidates(lat, lon, radius_km, profession=profession, specialty=r38):
            vendor = self.vendor_name(c.endpoint)
            if vendor is None:
                no_vendor += 1
                continue
            key = (vendor, c.place.national_id)
            if key in seen:  # a second place in the radius: asked once, both found
                continue
            seen.add(key)
            place = c.place
            out.append(
                Candidate(
                    CandidateKind.PRACTITIONER,
                    place.national_id,
                    place.practitioner.display_name,
                    vendor,
                    c.distance_km,
                    place.latitude or lat,
                    place.longitude or lon,
                    place.address.text,
                    sas=place.sas_participation,
                    cpts=bool(place.cpts),
                    phone=place.phone or "",
                )
            )
        if specialty == GENERAL_MEDICINE:  # SOS Médecins: general practitioners
            for sos in self.store.sos_associations(lat, lon, radius_km):
                vendor = self.vendor_name(sos.association.endpoint)
                if vendor is None:
                    no_vendor += 1
                    continue
                nearest = sos.places[0]
                out.append(
                    Candidate(
                        CandidateKind.SOS,
                        sos.association.national_id,
                        sos.association.name or "SOS Médecins",
                        vendor,
                        nearest.distance_km,
                        nearest.latitude,
                        nearest.longitude,
                        nearest.address.text,
                        sas=True,  # SOS Médecins associations take part in the SAS
                        phone=sos.association.phone or nearest.phone or "",
                    )
                )
        if no_vendor:
            log.info("%d places in the radius have no vendor endpoint to ask", no_vendor)
        out.sort(key=lambda c: (not c.sas, c.distance_km))
        return out

    def volunteers(
        self, lat: float, lon: float, radius_km: float, specialty: str
    ) -> list[Volunteer]:
        profession, r38 = self._filters(specialty)
        out: list[Volunteer] = []
        seen: set[str] = set()
        for c in self.store.en_sus_volunteers(
            lat, lon, radius_km, profession=profession, specialty=r38
        ):
            phone = c.place.callback_phone
            if not phone or c.place.national_id in seen:
                continue
            seen.add(c.place.national_id)
            out.append(
                Volunteer(
                    c.place.national_id,
                    c.place.practitioner.display_name,
                    phone,
                    c.distance_km,
                    c.place.address.text,
                )
            )
        return out

    def names(self) -> set[str]:
        return set(self._names)
