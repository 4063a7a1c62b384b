"""The slot search map's base layer: which one, decided off the GUI thread.

``[map] source`` says what the operator should see behind the dots:

- ``ign`` (default): the IGN Géoplateforme "Plan IGN v2" WMTS tiles (public,
  no key), with their attribution, when a tile answers;
- ``url``: the organisation's own XYZ tile server (``[map] tiles_url``);
- ``simulateur``: the demo simulator's offline map of its territory (commune
  cells, names and default search radii, ``GET {simulator}/basemap``);
- ``aucun``: no base map.

When the tiles chosen do not answer (offline room, proxy), the simulator's
map serves if the demo runs, else a plain background; the map says which in
French.  :func:`choose_base_map` probes one tile with a short timeout: it
runs on the app's loop (httpx, non-blocking), never on the GUI thread's
time, and never raises.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from sas_desk.models.limits import InputError, decode_json

__all__ = [
    "IGN_ATTRIBUTION",
    "IGN_PLAN_V2",
    "SOURCES",
    "BaseMap",
    "Territory",
    "TerritoryCommune",
    "choose_base_map",
    "parse_territory",
]

log = logging.getLogger("sas_desk.map")

#: The Géoplateforme's WMTS "Plan IGN v2" (Web Mercator "PM" matrix set,
#: 256-px PNG tiles), as an XYZ template (``{z}``, ``{x}``, ``{y}``).
IGN_PLAN_V2 = (
    "https://data.geopf.fr/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0"
    "&LAYER=GEOGRAPHICALGRIDSYSTEMS.PLANIGNV2&STYLE=normal&TILEMATRIXSET=PM"
    "&FORMAT=image/png&TILEMATRIX={z}&TILEROW={y}&TILECOL={x}"
)
IGN_ATTRIBUTION = "Plan IGN v2 © IGN – Géoplateforme"
SOURCES = ("ign", "url", "simulateur", "aucun")

#: The simulator's territory document is ~60 kB; anything far larger is not it.
MAX_TERRITORY_BYTES = 2 * 1024 * 1024
MAX_COMMUNES = 5000
MAX_CELL_POINTS = 200


@dataclass(frozen=True)
class TerritoryCommune:
    name: str
    lat: float
    lon: float
    population: int
    radius_km: float
    cell: tuple[tuple[float, float], ...]  # (lat, lon) polygon around the commune


@dataclass(frozen=True)
class Territory:
    title: str
    attribution: str
    communes: tuple[TerritoryCommune, ...]


@dataclass(frozen=True)
class BaseMap:
    """What the map draws behind the dots."""

    kind: Literal["tiles", "territory", "plain"]
    tiles_url: str = ""  # XYZ template ({z}/{x}/{y})
    attribution: str = ""
    territory: Territory | None = None
    note: str = ""  # French, shown over the map (why not the base map chosen)


def tile_url(template: str, z: int, x: int, y: int) -> str:
    return template.replace("{z}", str(z)).replace("{x}", str(x)).replace("{y}", str(y))


def _number(value: Any, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError("nombre attendu", where)
    number = float(value)
    if not (math.isfinite(number) and low <= number <= high):
        raise InputError(f"doit être entre {low:g} et {high:g}", where)
    return number


def _text(value: Any, where: str, limit: int = 200) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise InputError(f"texte de {limit} caractères au plus attendu", where)
    return value


def parse_territory(data: bytes, source: str = "fond de carte") -> Territory:
    """The simulator's ``/basemap`` document, or :class:`InputError` (French,
    with the JSON path)."""
    if len(data) > MAX_TERRITORY_BYTES:
        raise InputError("document trop volumineux", source=source)
    try:
        doc = decode_json(data)
        if not isinstance(doc, dict):
            raise InputError("objet JSON attendu", "$")
        raw = doc.get("communes")
        if not isinstance(raw, list) or len(raw) > MAX_COMMUNES:
            raise InputError(f"liste de {MAX_COMMUNES} communes au plus attendue", "$.communes")
        communes = []
        for i, item in enumerate(raw):
            at = f"$.communes[{i}]"
            if not isinstance(item, dict):
                raise InputError("objet attendu", at)
            cell_raw = item.get("cell", [])
            if not isinstance(cell_raw, list) or len(cell_raw) > MAX_CELL_POINTS:
                raise InputError(f"{MAX_CELL_POINTS} points au plus attendus", f"{at}.cell")
            cell = []
            for j, point in enumerate(cell_raw):
                if not isinstance(point, list) or len(point) != 2:
                    raise InputError("[lat, lon] attendu", f"{at}.cell[{j}]")
                cell.append(
                    (
                        _number(point[0], f"{at}.cell[{j}][0]", -90, 90),
                        _number(point[1], f"{at}.cell[{j}][1]", -180, 180),
                    )
                )
            communes.append(
                TerritoryCommune(
                    _text(item.get("name"), f"{at}.name"),
                    _number(item.get("lat"), f"{at}.lat", -90, 90),
                    _number(item.get("lon"), f"{at}.lon", -180, 180),
                    int(_number(item.get("population", 0), f"{at}.population", 0, 1e8)),
                    _number(item.get("radius_km", 0), f"{at}.radius_km", 0, 500),
                    tuple(cell),
                )
            )
        return Territory(
            _text(doc.get("title", ""), "$.title"),
            _text(doc.get("attribution", ""), "$.attribution"),
            tuple(communes),
        )
    except InputError as exc:
        raise InputError(exc.detail_fr, exc.where, source) from None


async def _tiles_answer(client: httpx.AsyncClient, template: str) -> bool:
    """One tile (0/0/0) answers with an image."""
    try:
        response = await client.get(tile_url(template, 0, 0, 0))
    except httpx.HTTPError as exc:
        log.info("map tiles unreachable: %s", type(exc).__name__)
        return False
    kind = response.headers.get("content-type", "")
    if response.status_code != 200 or not kind.startswith("image/"):
        log.info("map tiles refused: HTTP %d %s", response.status_code, kind[:40])
        return False
    return True


async def _territory(
    simulator_url: str, timeout: float, transport: httpx.AsyncBaseTransport | None
) -> Territory | None:
    url = simulator_url.rstrip("/") + "/basemap"
    try:
        # the demo's simulator is on loopback: no proxy of the environment
        async with httpx.AsyncClient(
            timeout=timeout, transport=transport, trust_env=False
        ) as client:
            response = await client.get(url)
        response.raise_for_status()
        return parse_territory(response.content, "fond de carte du simulateur")
    except (httpx.HTTPError, InputError) as exc:
        log.warning(
            "simulator base map unusable: %s", getattr(exc, "message_fr", type(exc).__name__)
        )
        return None


async def choose_base_map(
    source: str,
    *,
    tiles_url: str = "",
    attribution: str = "",
    simulator_url: str = "",
    timeout: float = 3.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> BaseMap:
    """The base map to draw for ``[map] source`` (see the module's docstring);
    within about two ``timeout``\\ s whatever the network does, never raises."""
    async with httpx.AsyncClient(
        timeout=timeout, transport=transport, headers={"User-Agent": "SAS Desk"}
    ) as client:
        note = ""
        if source == "aucun":
            return BaseMap("plain", note="Fond de carte désactivé (réglage [map] source).")
        if source in ("ign", "url"):
            template = IGN_PLAN_V2 if source == "ign" else tiles_url
            credit = IGN_ATTRIBUTION if source == "ign" else attribution
            if template and await _tiles_answer(client, template):
                return BaseMap("tiles", tiles_url=template, attribution=credit)
            note = (
                "Fond de carte IGN injoignable"
                if source == "ign"
                else "Serveur de tuiles injoignable"
            )
        territory = await _territory(simulator_url, timeout, transport) if simulator_url else None
        if territory is not None:
            return BaseMap(
                "territory",
                attribution=territory.attribution,
                territory=territory,
                note=f"{note} : fond de carte hors ligne du simulateur." if note else "",
            )
        if source == "simulateur":
            note = "Fond de carte du simulateur indisponible"
        return BaseMap(
            "plain", note=f"{note} : patient, rayon, lieux et échelle seulement (sans fond)."
        )
