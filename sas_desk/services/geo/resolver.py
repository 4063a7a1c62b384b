"""Where is the patient?  Local commune lookups (instant, offline) merged
with the address geocoder's answers (network, may fail)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # httpx is imported with the geocoder, after the window is up
    from sas_desk.services.geo.ban import BanGeocoder, GeoResult
from sas_desk.models.geo import distance_km
from sas_desk.services.geo.territory import Commune, CommuneIndex, normalize

log = logging.getLogger("sas_desk.geo")


@dataclass(frozen=True)
class Place:
    label: str
    kind: str  # municipality | street | housenumber
    city: str
    insee: str
    postcode: str
    lat: float
    lon: float
    housenumber: str | None = None
    street: str | None = None
    source: str = "local"  # local | ban

    @classmethod
    def of_commune(cls, commune: Commune) -> Place:
        return cls(
            label=f"{commune.name} ({commune.postcode}) — INSEE {commune.insee}",
            kind="municipality",
            city=commune.name,
            insee=commune.insee,
            postcode=commune.postcode,
            lat=commune.lat,
            lon=commune.lon,
        )

    @classmethod
    def of_result(cls, result: GeoResult) -> Place:
        label = result.label
        if result.kind == "municipality":
            label = f"{result.city} ({result.postcode}) — INSEE {result.citycode}"
        return cls(
            label=label,
            kind=result.kind,
            city=result.city,
            insee=result.citycode,
            postcode=result.postcode,
            lat=result.lat,
            lon=result.lon,
            housenumber=result.housenumber,
            street=result.street,
            source="ban",
        )


class LocationResolver:
    def __init__(self, index: CommuneIndex, geocoder: BanGeocoder | None) -> None:
        self.index = index
        self.geocoder = geocoder

    def local_suggestions(self, text: str, limit: int = 6) -> list[Place]:
        if len(text.strip()) < 2:
            return []
        return [Place.of_commune(c) for c in self.index.lookup(text, limit)]

    def exact_commune(self, text: str) -> Place | None:
        """A commune typed in full (name, INSEE code or "Name (postcode) — INSEE code")."""
        query = text.strip()
        if not query:
            return None
        commune = self.index.by_insee(query)
        if commune is None:
            wanted = normalize(query)
            matches = [c for c in self.index.search_name(query, 3) if normalize(c.name) == wanted]
            commune = matches[0] if len(matches) == 1 else None
        return Place.of_commune(commune) if commune else None

    async def remote_suggestions(self, text: str, limit: int = 6) -> tuple[list[Place], str]:
        """Geocoder answers, or ([], French error) when it cannot answer."""
        if self.geocoder is None:
            return [], ""
        from sas_desk.services.geo.ban import GeocodingError

        try:
            results = await self.geocoder.search(text, limit=limit)
        except GeocodingError as exc:
            return [], exc.message_fr
        return [Place.of_result(r) for r in results], ""

    def nearest_commune(self, lat: float, lon: float, max_km: float = 15.0) -> Commune | None:
        """Nearest known commune centroid (offline reverse geocoding, coarse)."""
        best: tuple[float, Commune] | None = None
        for commune in self.index:
            d = distance_km(lat, lon, commune.lat, commune.lon)
            if best is None or d < best[0]:
                best = (d, commune)
        if best is None or best[0] > max_km:
            return None
        return best[1]
