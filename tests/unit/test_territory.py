"""The demo territory data and its lookups."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from sas_desk.services.geo.territory import (
    Commune,
    CommuneIndex,
    Street,
    TerritoryDataError,
    departement_context,
    load_communes,
    load_streets,
    normalize,
)

INSEE_RE = re.compile(r"^(\d{5}|2[AB]\d{3})$")
DEPARTEMENTS = ("69", "38", "42", "26")
# Union of the four départements, with a little margin.
LAT_RANGE = (44.10, 46.35)
LON_RANGE = (3.65, 6.40)


@pytest.fixture(scope="module")
def communes() -> list[Commune]:
    return load_communes()


@pytest.fixture(scope="module")
def streets() -> list[Street]:
    return load_streets()


@pytest.fixture(scope="module")
def index(communes: list[Commune]) -> CommuneIndex:
    return CommuneIndex(communes)


# --------------------------------------------------------------------------- data file


def test_enough_communes_per_departement(communes: list[Commune]) -> None:
    assert len(communes) >= 60
    counts = Counter(c.departement for c in communes)
    assert set(counts) == set(DEPARTEMENTS)
    for departement in DEPARTEMENTS:
        assert counts[departement] >= 14, departement


def test_codes_are_well_formed_and_unique(communes: list[Commune]) -> None:
    for commune in communes:
        assert INSEE_RE.match(commune.insee), commune
        assert commune.insee.startswith(commune.departement), commune
        assert re.fullmatch(r"\d{5}", commune.postcode), commune
        assert commune.postcode.startswith(commune.departement), commune
        assert commune.name.strip() == commune.name != ""
        assert commune.population > 0
    insee_codes = [c.insee for c in communes]
    assert len(insee_codes) == len(set(insee_codes))
    names = [c.name for c in communes]
    assert len(names) == len(set(names))


def test_coordinates_inside_the_territory(communes: list[Commune]) -> None:
    for commune in communes:
        assert LAT_RANGE[0] <= commune.lat <= LAT_RANGE[1], commune
        assert LON_RANGE[0] <= commune.lon <= LON_RANGE[1], commune


def test_lyon_arrondissements_are_not_listed(communes: list[Commune]) -> None:
    assert not [c for c in communes if "69381" <= c.insee <= "69389"]


@pytest.mark.parametrize(
    ("insee", "name", "postcode"),
    [
        ("69123", "Lyon", "69001"),
        ("69266", "Villeurbanne", "69100"),
        ("38185", "Grenoble", "38000"),
        ("42218", "Saint-Étienne", "42000"),
        ("26362", "Valence", "26000"),
        ("38421", "Saint-Martin-d'Hères", "38400"),
        ("42187", "Roanne", "42300"),
        ("26198", "Montélimar", "26200"),
    ],
)
def test_known_codes(index: CommuneIndex, insee: str, name: str, postcode: str) -> None:
    commune = index.by_insee(insee)
    assert commune is not None
    assert (commune.name, commune.postcode) == (name, postcode)


def test_big_towns_are_the_most_populated(index: CommuneIndex) -> None:
    biggest = {d: index.by_departement(d)[0].name for d in DEPARTEMENTS}
    assert biggest == {
        "69": "Lyon",
        "38": "Grenoble",
        "42": "Saint-Étienne",
        "26": "Valence",
    }


def test_streets_belong_to_known_communes_and_sit_near_them(
    streets: list[Street], index: CommuneIndex
) -> None:
    per_commune = Counter(s.insee for s in streets)
    for insee in ("69123", "69266", "38185", "42218", "26362"):
        assert 8 <= per_commune[insee] <= 15, insee
    for street in streets:
        commune = index.by_insee(street.insee)
        assert commune is not None, street
        # Within ~5 km of the commune's centroid.
        assert abs(street.lat - commune.lat) < 0.05, street
        assert abs(street.lon - commune.lon) < 0.07, street
    keys = [(s.insee, normalize(s.name)) for s in streets]
    assert len(keys) == len(set(keys))


def test_context_string() -> None:
    assert departement_context("69") == "69, Rhône, Auvergne-Rhône-Alpes"
    assert departement_context("26") == "26, Drôme, Auvergne-Rhône-Alpes"


# --------------------------------------------------------------------------- loader errors


def test_loader_rejects_a_bad_insee_code(tmp_path: Path) -> None:
    path = tmp_path / "communes.csv"
    path.write_text(
        "insee;name;postcode;departement;lat;lon;population\n"
        "69123;Lyon;69001;69;45.75;4.83;500000\n"
        "6912;Broken;69001;69;45.75;4.83;1\n",
        encoding="utf-8",
    )
    with pytest.raises(TerritoryDataError, match=r"communes\.csv:3: invalid INSEE code"):
        load_communes(path)


def test_loader_rejects_duplicates_and_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "communes.csv"
    path.write_text(
        "insee;name;postcode;departement;lat;lon;population\n"
        "69123;Lyon;69001;69;45.75;4.83;500000\n"
        "\n"
        "69123;Lyon bis;69001;69;45.75;4.83;1\n",
        encoding="utf-8",
    )
    with pytest.raises(TerritoryDataError, match="duplicate INSEE code 69123"):
        load_communes(path)
    path.write_text("insee;name;lat;lon\n", encoding="utf-8")
    with pytest.raises(TerritoryDataError, match="missing column"):
        load_communes(path)


def test_loader_reads_a_custom_file(tmp_path: Path) -> None:
    path = tmp_path / "streets.csv"
    path.write_text("insee;street;lat;lon\n69123;Rue Neuve;45.7650;4.8350\n", encoding="utf-8")
    assert load_streets(path) == [Street("69123", "Rue Neuve", 45.765, 4.835)]


# --------------------------------------------------------------------------- normalize


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Saint-Étienne", "saint etienne"),
        ("St-Étienne", "saint etienne"),
        ("ST ETIENNE", "saint etienne"),
        ("Ste-Foy-lès-Lyon", "sainte foy les lyon"),
        ("Saint-Martin-d'Hères", "saint martin d heres"),
        ("Saint-Martin-d’Hères", "saint martin d heres"),
        ("  Échirolles   ", "echirolles"),
        ("L'Isle-d'Abeau", "l isle d abeau"),
        ("12, rue de la République", "12 rue de la republique"),
        ("Cœur", "coeur"),
        ("Stalingrad", "stalingrad"),  # "st" only as a whole word
        ("", ""),
    ],
)
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


# --------------------------------------------------------------------------- CommuneIndex


def test_index_by_insee_and_postcode(index: CommuneIndex) -> None:
    villeurbanne = index.by_insee("69266")
    assert villeurbanne is not None
    assert villeurbanne.name == "Villeurbanne"
    assert index.by_insee(" 69266 ") == villeurbanne
    assert index.by_insee("69100") is None  # a postcode, not an INSEE code here
    assert [c.name for c in index.by_postcode("69100")] == ["Villeurbanne"]
    # Roanne and Mably share 42300: biggest first.
    assert [c.name for c in index.by_postcode("42300")] == ["Roanne", "Mably"]
    assert index.by_postcode("75001") == []
    assert "38185" in index
    assert "99999" not in index
    assert len(index) == len(list(index)) >= 60


def test_index_name_prefix(index: CommuneIndex) -> None:
    assert [c.insee for c in index.search_name("villeurb")] == ["69266"]
    assert [c.name for c in index.search_name("VILLEURBANNE")] == ["Villeurbanne"]
    assert index.search_name("st etienne")[0].insee == "42218"
    assert index.search_name("saint-martin-d’h")[0].insee == "38421"
    # A word inside the name also matches, after whole-name prefixes.
    assert [c.name for c in index.search_name("etienne")] == ["Saint-Étienne"]
    lyon_matches = [c.name for c in index.search_name("lyon")]
    assert lyon_matches[0] == "Lyon"
    assert "Sainte-Foy-lès-Lyon" in lyon_matches
    # Whole-name prefixes, biggest first, and the limit is honoured.
    saints = index.search_name("saint", limit=3)
    assert [c.name for c in saints] == ["Saint-Étienne", "Saint-Priest", "Saint-Martin-d'Hères"]
    assert index.search_name("zzz") == []
    assert index.search_name("  ") == []


def test_index_exact_name_comes_first(index: CommuneIndex) -> None:
    # "Vienne" must come before bigger communes whose name merely starts with it.
    assert index.search_name("vienne")[0].name == "Vienne"
    assert index.search_name("die")[0].name == "Die"
    assert [c.name for c in index.search_name("die")] == ["Die", "Dieulefit"]


def test_index_lookup_dispatches_on_digits(index: CommuneIndex) -> None:
    assert [c.name for c in index.lookup("69266")] == ["Villeurbanne"]
    assert [c.name for c in index.lookup("69100")] == ["Villeurbanne"]
    assert [c.name for c in index.lookup("38000")] == ["Grenoble"]
    partial = index.lookup("4218", limit=20)
    assert [c.insee for c in partial] == ["42187", "42186", "42184", "42189", "42183"]
    rhone = index.lookup("69", limit=100)
    assert rhone
    assert all(c.departement == "69" for c in rhone)
    assert rhone[0].name == "Lyon"
    assert [c.name for c in index.lookup("gren")] == ["Grenoble"]
    assert index.lookup("") == []
