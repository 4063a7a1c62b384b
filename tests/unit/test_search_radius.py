"""Default search radius by département: our resource file, code handling, fallback."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from sas_desk.paths import resource
from sas_desk.services.geo.radius import (
    FALLBACK_RADIUS_KM,
    DepartementRadius,
    default_radius_km,
    departement_code,
    departement_radius,
    load_radius_table,
)
from tests.reference import REPO_ROOT, reference_dir


@pytest.mark.parametrize(
    ("code", "km"),
    [
        ("69", 5),  # Rhône
        ("38", 10),  # Isère
        ("2A", 30),  # Corse-du-Sud
        ("2B", 40),  # Haute-Corse
        ("971", 10),  # Guadeloupe
        ("01", 20),
        ("04", 50),
        ("75", 5),
    ],
)
def test_default_radius_of_departements(code: str, km: int) -> None:
    assert default_radius_km(code) == km


def test_rows_carry_the_national_figures() -> None:
    assert departement_radius("69") == DepartementRadius(
        "69", "Rhône", 5, 81, (45.870278, 4.641389)
    )
    assert departement_radius("38") == DepartementRadius(
        "38", "Isère", 10, 126, (45.263333, 5.576111)
    )
    assert departement_radius("2A") == DepartementRadius(
        "2A", "Corse-du-Sud", 30, 109, (41.863611, 8.988056)
    )
    # overseas: a city radius but no département-level circle in the table
    assert departement_radius("971") == DepartementRadius("971", "Guadeloupe", 10, None, None)
    assert departement_radius("973") == DepartementRadius("973", "Guyane", None, None, None)


@pytest.mark.parametrize("code", ["973", "976", "97302", "97600", "97611"])
def test_zero_in_the_table_falls_back(code: str) -> None:
    assert FALLBACK_RADIUS_KM == 20
    assert default_radius_km(code) == FALLBACK_RADIUS_KM
    row = departement_radius(code)
    assert row is not None and row.city_default_radius_km is None
    assert row.radius_km == FALLBACK_RADIUS_KM


@pytest.mark.parametrize(
    ("code", "dep"),
    [
        ("69123", "69"),  # Lyon, INSEE
        ("69001", "69"),  # Lyon 1er, postcode
        ("38185", "38"),
        (" 38000 ", "38"),
        ("2A004", "2A"),  # Ajaccio, INSEE
        ("2a004", "2A"),
        ("2B033", "2B"),  # Bastia, INSEE
        ("20000", "2A"),  # Ajaccio, postcode
        ("20167", "2A"),
        ("20100", "2A"),  # Sartène
        ("20200", "2B"),  # Bastia
        ("20600", "2B"),  # Bastia / Furiani
        ("20250", "2B"),  # Corte
        ("20A", "2A"),  # the national table's own spelling
        ("20B", "2B"),
        ("97105", "971"),  # Basse-Terre, INSEE
        ("97100", "971"),  # postcode
        ("97209", "972"),
        ("97302", "973"),
        ("97411", "974"),
        ("97600", "976"),
        ("971", "971"),
        ("1", "01"),
        ("01", "01"),
        ("01053", "01"),
        ("95", "95"),
    ],
)
def test_departement_of_codes(code: str, dep: str) -> None:
    assert departement_code(code) == dep


def test_insee_and_postcode_give_the_same_radius() -> None:
    assert default_radius_km("2A004") == default_radius_km("20000") == 30
    assert default_radius_km("2B033") == default_radius_km("20200") == 40
    assert default_radius_km("97105") == default_radius_km("97100") == 10
    assert default_radius_km("69123") == default_radius_km("69003") == 5


def test_codes_outside_the_table_fall_back() -> None:
    # Saint-Pierre-et-Miquelon, Saint-Barthélemy (INSEE 977xx), Monaco's postcode
    for code in ("975", "97502", "97701", "98000"):
        assert departement_radius(code) is None
        assert default_radius_km(code) == FALLBACK_RADIUS_KM


@pytest.mark.parametrize(
    "code", ["", "20", "00", "96", "2C", "6900", "690011", "ABCDE", "00100", "97", "Lyon"]
)
def test_malformed_codes_are_refused_in_french(code: str) -> None:
    with pytest.raises(ValueError, match="invalide"):
        default_radius_km(code)


def test_resource_file_shape() -> None:
    data = json.loads(resource("search_radius.json").read_text(encoding="utf-8"))
    rows = data["departements"]
    assert len(rows) == 101
    assert data["fallback_radius_km"] == FALLBACK_RADIUS_KM
    codes = [r["code"] for r in rows]
    assert codes == sorted(codes) and len(set(codes)) == 101
    assert {"2A", "2B", "971", "972", "973", "974", "976"} <= set(codes)
    classes = {r["city_default_radius_km"] for r in rows}
    assert classes == {None, 5, 10, 20, 30, 40, 50}
    assert [r["code"] for r in rows if r["city_default_radius_km"] is None] == ["973", "976"]
    table = load_radius_table()
    assert len(table.by_code) == 101


def _builder() -> object:
    path = REPO_ROOT / "scripts" / "build_search_radius.py"
    spec = importlib.util.spec_from_file_location("build_search_radius", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_search_radius", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.reference
def test_resource_matches_the_national_table() -> None:
    src = reference_dir() / "sas-search-radius.csv"
    builder = _builder()
    expected = builder.dumps(builder.convert(src))  # type: ignore[attr-defined]
    assert resource("search_radius.json").read_text(encoding="utf-8") == expected
    with src.open(encoding="utf-8", newline="") as fh:
        national = {row["department_code"]: row for row in csv.DictReader(fh)}
    assert len(national) == 101
    for code, row in national.items():
        radius = int(row["city_default_radius_km"])
        assert default_radius_km(code) == (radius or FALLBACK_RADIUS_KM), code
        ours = departement_radius(code)
        assert ours is not None and ours.county_radius_km == (int(row["county_radius_km"]) or None)


def test_builder_refuses_a_bad_table(tmp_path: Path) -> None:
    src = tmp_path / "radius.csv"
    src.write_text(
        "department_code,department_name,county_radius_km,barycentre_lat,barycentre_lon,"
        "city_default_radius_km\n"
        "69,Rhône,81,45.87,4.64,5\n69,Rhône,81,45.87,4.64,5\n",
        encoding="utf-8",
    )
    builder = _builder()
    with pytest.raises(ValueError, match="repeated"):
        builder.convert(src)  # type: ignore[attr-defined]
    src.write_text("department_code,department_name\n69,Rhône\n", encoding="utf-8")
    with pytest.raises(ValueError, match="missing column"):
        builder.convert(src)  # type: ignore[attr-defined]
