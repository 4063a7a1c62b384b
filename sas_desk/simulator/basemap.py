"""``GET /basemap``: an offline base map of the simulator's territory.

Drawn from the simulator's own data, with no network and no Qt: each demo
commune (name, position, population, its département's default search
radius) and a cell around it — the points of the territory closer to it than
to any other commune (a Voronoi cell in a local kilometre projection,
clipped to the territory's box).  The desk's map draws the cells, the names
and the attribution in QML (:mod:`sas_desk.services.geo.basemap`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from sas_desk.services.geo.radius import default_radius_km
from sas_desk.services.geo.territory import Commune, load_communes

__all__ = ["ATTRIBUTION", "make_basemap_handler", "territory_document", "voronoi_cells"]

ATTRIBUTION = "Fond : simulateur SAS Desk (communes de démonstration)"
MARGIN_KM = 8.0
KM_PER_DEG_LAT = 110.57

Point = tuple[float, float]


def _clip(polygon: list[Point], a: Point, b: Point) -> list[Point]:
    """The part of convex ``polygon`` closer to ``a`` than to ``b``."""
    nx, ny = b[0] - a[0], b[1] - a[1]
    mx, my = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2

    def side(p: Point) -> float:  # <= 0: on a's side
        return (p[0] - mx) * nx + (p[1] - my) * ny

    out: list[Point] = []
    for i, p in enumerate(polygon):
        q = polygon[(i + 1) % len(polygon)]
        sp, sq = side(p), side(q)
        if sp <= 0:
            out.append(p)
        if (sp < 0 < sq) or (sq < 0 < sp):
            t = sp / (sp - sq)
            out.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
    return out


def voronoi_cells(
    sites: Sequence[Point], box: tuple[float, float, float, float]
) -> list[list[Point]]:
    """The Voronoi cell of each site, clipped to ``box`` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    cells = []
    for i, site in enumerate(sites):
        cell: list[Point] = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        for j, other in enumerate(sites):
            if j != i and other != site and cell:
                cell = _clip(cell, site, other)
        cells.append(cell)
    return cells


def territory_document(communes: Sequence[Commune]) -> dict[str, Any]:
    if not communes:
        return {"title": "", "attribution": ATTRIBUTION, "communes": []}
    lat0 = sum(c.lat for c in communes) / len(communes)
    km_lon = 111.32 * math.cos(math.radians(lat0))

    def to_km(lat: float, lon: float) -> Point:
        return lon * km_lon, lat * KM_PER_DEG_LAT

    def to_deg(p: Point) -> list[float]:
        return [round(p[1] / KM_PER_DEG_LAT, 5), round(p[0] / km_lon, 5)]

    sites = [to_km(c.lat, c.lon) for c in communes]
    box = (
        min(x for x, _ in sites) - MARGIN_KM,
        min(y for _, y in sites) - MARGIN_KM,
        max(x for x, _ in sites) + MARGIN_KM,
        max(y for _, y in sites) + MARGIN_KM,
    )
    departements = sorted({c.departement for c in communes})
    return {
        "title": "Territoire de démonstration (" + ", ".join(departements) + ")",
        "attribution": ATTRIBUTION,
        "communes": [
            {
                "insee": c.insee,
                "name": c.name,
                "lat": c.lat,
                "lon": c.lon,
                "population": c.population,
                "radius_km": default_radius_km(c.departement),
                "cell": [to_deg(p) for p in cell],
            }
            for c, cell in zip(communes, voronoi_cells(sites, box), strict=True)
        ],
    }


def make_basemap_handler(
    communes: Sequence[Commune] | None = None,
) -> Callable[[dict[str, list[str]], object], tuple[int, dict[str, str], bytes]]:
    """The ``/basemap`` route: one JSON document, built once."""
    body: bytes | None = None

    def handler(query: dict[str, list[str]], request: object) -> tuple[int, dict[str, str], bytes]:
        nonlocal body
        if body is None:
            doc = territory_document(communes if communes is not None else load_communes())
            body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Cache-Control": "max-age=3600",
        }
        return 200, headers, body

    return handler
