"""Regenerate SAS Desk's search-radius file from the national SAS radius table.

Developer tool, not used at run time.  It reads the CSV export of the SAS
platform's 2025 radius table (``../shared/reference/sas-search-radius.csv`` by
default: one row per département) and writes our own JSON format into
``resources/search_radius.json``:

    {"name": "search_radius", "title": ..., "source": ..., "fallback_radius_km": 20,
     "departements": [
        {"code": "01", "name": "Ain", "city_default_radius_km": 20,
         "county_radius_km": 108, "barycentre": [46.0994, 5.3489]}, ...]}

``city_default_radius_km`` is the default radius of a city, postcode or
address search in the département; ``county_radius_km`` and ``barycentre``
(WGS 84 latitude, longitude) describe a search over the whole département.  A
0 in the national table means "no value": it becomes ``null`` here (Guyane and
Mayotte have no radius at all; Guadeloupe, Martinique and La Réunion no
département-level circle).  ``fallback_radius_km`` is the radius SAS Desk uses
when the table has none (see ``sas_desk.services.geo.radius``).

Usage: python scripts/build_search_radius.py [RADIUS_CSV]
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "resources" / "search_radius.json"

#: The median class of the national table (10 km: 30 départements, 20 km: 24,
#: 5 km: 6, 30 km and more: 39): used where the table gives no radius.
FALLBACK_RADIUS_KM = 20

_CODE = re.compile(r"\d{2}|2[AB]|97[1-6]")
_COLUMNS = (
    "department_code",
    "department_name",
    "county_radius_km",
    "barycentre_lat",
    "barycentre_lon",
    "city_default_radius_km",
)


def _positive_int(raw: str, where: str) -> int | None:
    value = float(raw)
    if value < 0 or value != int(value):
        raise ValueError(f"{where}: not a whole number of km: {raw!r}")
    return int(value) or None  # 0 = no value in the national table


def convert(src: Path) -> dict[str, object]:
    with src.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{src.name}: missing column(s) {', '.join(missing)}")
        rows = list(reader)
    departements = []
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        where = f"{src.name}:{line}"
        code = row["department_code"].strip().upper()
        if not _CODE.fullmatch(code) or code in seen:
            raise ValueError(f"{where}: bad or repeated département code {code!r}")
        seen.add(code)
        lat, lon = float(row["barycentre_lat"]), float(row["barycentre_lon"])
        departements.append(
            {
                "code": code,
                "name": row["department_name"].strip(),
                "city_default_radius_km": _positive_int(row["city_default_radius_km"], where),
                "county_radius_km": _positive_int(row["county_radius_km"], where),
                "barycentre": None if lat == 0 and lon == 0 else [round(lat, 6), round(lon, 6)],
            }
        )
    departements.sort(key=lambda d: str(d["code"]))
    return {
        "name": "search_radius",
        "title": "Rayon de recherche par défaut par département (SAS, 2025)",
        "source": "Table nationale des rayons de recherche du SAS, 2025 (SAS_Rayons_zones_de_recherche_2025)",
        "fallback_radius_km": FALLBACK_RADIUS_KM,
        "departements": departements,
    }


def dumps(data: dict[str, object]) -> str:
    """JSON text with one line per département (readable diffs)."""
    head = {k: v for k, v in data.items() if k != "departements"}
    lines = [json.dumps(head, ensure_ascii=False, indent=1)[:-2] + ',\n "departements": [']
    rows = [json.dumps(d, ensure_ascii=False) for d in data["departements"]]  # type: ignore[attr-defined]
    lines.append(",\n".join(f"  {row}" for row in rows))
    lines.append(" ]\n}\n")
    return "\n".join(lines)


def main() -> None:
    src = (
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else ROOT.parent / "shared/reference/sas-search-radius.csv"
    )
    data = convert(src)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(dumps(data), encoding="utf-8")
    print(f"search_radius: {len(data['departements'])} départements")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
