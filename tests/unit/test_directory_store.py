"""The local directory: schema, upserts and deletes, candidates (order, filters,
bounding-box edges), SOS places, "en sus" volunteers, name search."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from sas_desk.models.directory import StructureKind
from sas_desk.models.slots import PractitionerIdKind, StructureIdKind
from sas_desk.services.directory import DirectoryError, DirectoryStore, bounding_box
from sas_desk.services.directory.feed import InvalidEntry, SkipReason, fold, read_entry
from sas_desk.services.directory.schema import SCHEMA_VERSION
from sas_desk.services.geo.resolver import distance_km
from tests.helpers.directory_feed import (
    delete,
    endpoint,
    organization,
    practitioner,
    put,
    role,
    sos_location,
    stamp,
)

LYON = (45.7640, 4.8357)
SOURCE = "https://directory.example/fhir"


def offset(lat: float, lon: float, km: float, bearing_deg: float) -> tuple[float, float]:
    """The point *km* away from (lat, lon) on *bearing_deg* (great circle)."""
    r = km / 6371.0088
    p1, l1, b = math.radians(lat), math.radians(lon), math.radians(bearing_deg)
    p2 = math.asin(math.sin(p1) * math.cos(r) + math.cos(p1) * math.sin(r) * math.cos(b))
    l2 = l1 + math.atan2(
        math.sin(b) * math.sin(r) * math.cos(p1), math.cos(r) - math.sin(p1) * math.sin(p2)
    )
    return math.degrees(p2), (math.degrees(l2) + 540.0) % 360.0 - 180.0


def apply(
    store: DirectoryStore,
    entries: list[dict[str, Any]],
    *,
    cursor: str | None = None,
    replace: bool = False,
) -> Any:
    changes = [read_entry(e) for e in entries]
    return store.apply(
        changes,
        source=SOURCE,
        cursor=cursor,
        synced_at="2026-11-30T08:00:00+00:00",
        replace=replace,
    )


def nid(n: int) -> str:
    """The prefixed national id of practitioner p<n>: "8" + an 11-digit RPPS."""
    return f"8{10_000_000_000 + n}"


def gp(n: int, lat: float, lon: float, **kw: Any) -> list[dict[str, Any]]:
    """A practitioner p<n> (national id ``nid(n)``) and its role r<n>."""
    given = kw.pop("given", ("Jeanne",))
    family = kw.pop("family", "Martin")
    return [
        put(practitioner(f"p{n}", nid(n), family, given)),
        put(role(f"r{n}", f"p{n}", lat, lon, **kw)),
    ]


@pytest.fixture
def store() -> DirectoryStore:
    s = DirectoryStore()
    apply(
        s,
        [
            put(endpoint("ep1", "Agenda Un", "https://one.example/fhir/")),
            put(endpoint("ep2", "Agenda Deux", "https://two.example/fhir", status="off")),
            put(organization("cpts1", "1690000011", "604", "CPTS Lyon Centre")),
            put(organization("cds1", "1690000029", "124", "Centre de santé X")),
        ],
    )
    return s


# --------------------------------------------------------------------------- schema


def test_schema_version_tables_and_indexes(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "directory.sqlite"
    with DirectoryStore(path) as s:
        assert s.schema_version == SCHEMA_VERSION == 1
        apply(s, gp(1, *LYON), cursor=stamp(0))
    conn = sqlite3.connect(path)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {
            "endpoints",
            "practitioners",
            "places",
            "place_cpts",
            "organizations",
            "sos_places",
            "sync_state",
            "practitioners_fts",
        } <= tables
        plan = " ".join(
            str(r[-1])
            for r in conn.execute(
                "EXPLAIN QUERY PLAN SELECT id, lat, lon, sas, practitioner_id FROM places "
                "WHERE lat BETWEEN 45 AND 46 AND lon BETWEEN 4 AND 5 AND active = 1 "
                "AND specialty IN ('SM54')"
            )
        )
        # the box query is answered from the index alone
        assert "COVERING INDEX idx_places_box (lat>? AND lat<?)" in plan
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()
    # reopened: the data and the cursor are still there
    with DirectoryStore(path) as s:
        assert s.stats().places == 1
        assert s.cursor(SOURCE) == stamp(0)
        assert s.cursor("https://other.example/fhir") is None  # another source: full sync
        assert s.notice_fr == ""


def test_a_newer_or_damaged_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "directory.sqlite"
    with DirectoryStore(path) as s:
        apply(s, gp(1, *LYON), cursor=stamp(0))
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with DirectoryStore(path) as s:
        assert "recréé" in s.notice_fr
        assert s.stats().places == 0 and s.cursor(SOURCE) is None
        assert s.schema_version == SCHEMA_VERSION
    path.write_bytes(b"this is not a database" * 100)
    with DirectoryStore(path) as s:
        assert "resynchronisé" in s.notice_fr
        assert s.stats().practitioners == 0


def test_an_unwritable_folder_is_a_french_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DirectoryError) as err:
        DirectoryStore(blocker / "sub" / "directory.sqlite")
    assert err.value.reason == "io"
    assert err.value.message_fr == "Erreur de l'annuaire local (NotADirectoryError)."


# --------------------------------------------------------------------------- writes


def test_upsert_counts_and_contents(store: DirectoryStore) -> None:
    counts = apply(store, gp(1, *LYON, at=stamp(1)) + gp(2, 45.75, 4.85), cursor=stamp(1))
    assert (counts.added, counts.updated, counts.unchanged, counts.deleted) == (4, 0, 0, 0)
    # replay of the same entries (``_since`` is inclusive): unchanged
    counts = apply(store, gp(1, *LYON, at=stamp(1)), cursor=stamp(1))
    assert (counts.added, counts.updated, counts.unchanged) == (0, 0, 2)
    # a change of the role: updated, and the new values are served
    counts = apply(
        store,
        [put(role("r1", "p1", *LYON, specialty="SM40", sas=True, at=stamp(2)))],
        cursor=stamp(2),
    )
    assert (counts.added, counts.updated) == (0, 1)
    (place,) = store.places_of(nid(1))
    assert place.specialty == "SM40" and place.sas_participation
    assert place.practitioner.id_kind is PractitionerIdKind.RPPS
    assert place.practitioner.rpps == "10000000001"
    assert place.address.lines == ("1 rue de la République",)
    assert place.address.postal_code == "69001" and place.insee == "69123"
    assert place.endpoint is not None and place.endpoint.base_url == "https://one.example/fhir"
    assert store.cursor(SOURCE) == stamp(2)
    stats = store.stats()
    assert (stats.practitioners, stats.places, stats.endpoints, stats.organizations) == (2, 2, 2, 2)


def test_later_change_of_the_same_resource_wins(store: DirectoryStore) -> None:
    apply(
        store,
        [
            *gp(1, *LYON, specialty="SM54"),
            put(role("r1", "p1", *LYON, specialty="SM40", at=stamp(5))),
            delete("PractitionerRole", "r2"),
        ],
    )
    assert [p.specialty for p in store.places_of(nid(1))] == ["SM40"]
    apply(store, [put(role("r1", "p1", *LYON)), delete("PractitionerRole", "r1")])
    assert store.places_of(nid(1)) == []


def test_deletes(store: DirectoryStore) -> None:
    apply(store, gp(1, *LYON, cpts=("cpts1",)) + gp(2, *LYON))
    counts = apply(
        store,
        [
            delete("PractitionerRole", "r1"),
            delete("Practitioner", "p2"),
            delete("Practitioner", "unknown"),
            delete("Endpoint", "ep2"),
        ],
    )
    assert counts.deleted == 3
    assert store.candidates(*LYON, 5) == []  # r1 removed; r2's practitioner removed
    assert [e.id for e in store.endpoints()] == ["ep1"]
    stats = store.stats()
    assert (stats.practitioners, stats.places) == (1, 1)
    # the membership rows of a deleted place are gone too
    assert store._db.execute("SELECT count(*) FROM place_cpts").fetchone()[0] == 0
    # a practitioner coming back makes its places candidates again
    apply(store, [put(practitioner("p2", nid(2)))])
    assert [c.place.id for c in store.candidates(*LYON, 5)] == ["r2"]


def test_replace_removes_what_the_full_feed_no_longer_has(store: DirectoryStore) -> None:
    apply(store, gp(1, *LYON) + gp(2, *LYON), cursor=stamp(1))
    counts = apply(
        store,
        [put(endpoint("ep1", "Agenda Un", "https://one.example/fhir")), *gp(2, *LYON)],
        replace=True,
    )
    assert counts.deleted == 5  # p1, r1, ep2, cpts1, cds1
    assert store.stats().places == 1
    assert store.cursor(SOURCE) is None  # a full sync without stamps leaves no cursor


def test_a_failed_apply_changes_nothing(
    store: DirectoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply(store, gp(1, *LYON), cursor=stamp(1))
    real = store._db.table

    def table(name: str, **kw: Any) -> Any:
        if name == "place_cpts":
            raise sqlite3.OperationalError("database or disk is full")
        return real(name, **kw)

    monkeypatch.setattr(store._db, "table", table)
    with pytest.raises(DirectoryError) as err:
        apply(
            store,
            [*gp(2, 45.7, 4.8, cpts=("cpts1",)), delete("PractitionerRole", "r1")],
            cursor=stamp(9),
        )
    assert err.value.reason == "full" and "Disque plein" in err.value.message_fr
    monkeypatch.undo()
    assert [c.place.id for c in store.candidates(*LYON, 30)] == ["r1"]
    assert store.places_of(nid(2)) == []
    assert store.cursor(SOURCE) == stamp(1)


# --------------------------------------------------------------------------- candidates


def test_candidates_sas_first_then_distance(store: DirectoryStore) -> None:
    entries: list[dict[str, Any]] = []
    layout = [(1, 1.0, False), (2, 2.0, True), (3, 3.0, False), (4, 4.0, True), (5, 0.5, None)]
    for n, km, sas in layout:
        entries += gp(n, *offset(*LYON, km, 45.0 * n), sas=sas)
    apply(store, entries)
    found = store.candidates(*LYON, 10)
    assert [c.place.id for c in found] == ["r2", "r4", "r5", "r1", "r3"]
    assert [c.sas_participation for c in found] == [True, True, False, False, False]
    for c, expected in zip(found, (2.0, 4.0, 0.5, 1.0, 3.0), strict=True):
        assert c.distance_km == pytest.approx(expected, abs=1e-6)
    assert [c.place.id for c in store.candidates(*LYON, 10, limit=3)] == ["r2", "r4", "r5"]
    assert store.candidates(*LYON, 10, limit=0) == []
    assert [c.place.id for c in store.candidates(*LYON, 2.5)] == ["r2", "r5", "r1"]
    assert store.candidates(*LYON, 0) == []


def test_cached_places_follow_each_sync(store: DirectoryStore) -> None:
    apply(store, gp(1, *LYON) + gp(2, *LYON))
    assert store.preload() == 2
    (first, _) = store.candidates(*LYON, 1)
    assert not first.sas_participation
    apply(store, [put(role("r1", "p1", *LYON, sas=True, cpts=("cpts1",), at=stamp(3)))])
    (first, _) = store.candidates(*LYON, 1)
    assert first.sas_participation and [s.id for s in first.cpts] == ["cpts1"]
    apply(store, [put(organization("cpts1", "1690000011", "604", "CPTS renommée", at=stamp(4)))])
    assert store.candidates(*LYON, 1)[0].cpts[0].name == "CPTS renommée"
    apply(store, [put(practitioner("p1", nid(1), active=False, at=stamp(5)))])
    assert [c.place.id for c in store.candidates(*LYON, 1)] == ["r2"]
    apply(store, [put(practitioner("p2", nid(2), "Nouveau-Nom", at=stamp(6)))])
    assert [c.practitioner.family for c in store.candidates(*LYON, 1)] == ["Nouveau-Nom"]
    store.drop_caches()
    assert [c.place.id for c in store.candidates(*LYON, 1)] == ["r2"]
    assert store.preload() == 1


def test_candidate_carries_endpoint_cpts_and_structure(store: DirectoryStore) -> None:
    apply(
        store,
        gp(1, *LYON, cpts=("cpts1", "missing"), organization="cds1", endpoint_id="ep2")
        + gp(2, *LYON, endpoint_id="nowhere"),
    )
    first, second = store.candidates(*LYON, 1)
    assert first.place.id == "r1"
    assert [s.finess for s in first.cpts] == ["690000011"]
    assert first.cpts[0].kind is StructureKind.CPTS
    assert (
        first.place.organization is not None and first.place.organization.kind is StructureKind.CDS
    )
    assert first.endpoint is not None and first.endpoint.name == "Agenda Deux"
    assert not first.endpoint.active  # status "off": the search decides
    assert first.practitioner.national_id == nid(1)
    assert second.endpoint is None and second.cpts == ()


def test_candidate_filters(store: DirectoryStore) -> None:
    apply(
        store,
        gp(1, *LYON, specialty="SM54")
        + gp(2, *LYON, specialty="SM40")
        + gp(3, *LYON, profession="40", specialty=None)
        + gp(4, *LYON, active=False)
        + gp(5, None, None)
        + [put(practitioner("p6", nid(6), active=False)), put(role("r6", "p6", *LYON))]
        + [put(role("r7", "p-missing", *LYON))],
    )
    ids = lambda **kw: [c.place.id for c in store.candidates(*LYON, 5, **kw)]  # noqa: E731
    assert ids() == ["r1", "r2", "r3"]
    assert ids(specialty="SM54") == ["r1"]
    assert ids(specialty=["SM54", "SM40"]) == ["r1", "r2"]
    assert ids(profession="40") == ["r3"]
    assert ids(profession="10", specialty="SM40") == ["r2"]
    assert ids(profession="10", specialty="SM99") == []


def test_en_sus_volunteers(store: DirectoryStore) -> None:
    apply(
        store,
        gp(1, *offset(*LYON, 2, 0), en_sus=True, en_sus_phone="06 12 34 56 78")
        + gp(2, *offset(*LYON, 1, 90), en_sus=True)
        + gp(3, *LYON, en_sus=False)
        + gp(4, *offset(*LYON, 30, 0), en_sus=True),
    )
    found = store.en_sus_volunteers(*LYON, 10)
    assert [c.place.id for c in found] == ["r2", "r1"]
    assert found[1].place.callback_phone == "+33612345678"  # the dedicated number, E.164
    assert found[0].place.callback_phone == "+33478000000"  # else the practice


def test_box_edges_along_the_axes(store: DirectoryStore) -> None:
    entries: list[dict[str, Any]] = []
    for n, bearing in enumerate((0, 90, 180, 270), start=1):
        entries += gp(n, *offset(*LYON, 19.999, bearing))
        entries += gp(n + 10, *offset(*LYON, 20.001, bearing))
    entries += gp(30, *offset(*LYON, 20 * math.sqrt(2) * 0.99, 45))  # in the box, not the circle
    apply(store, entries)
    assert sorted(c.place.id for c in store.candidates(*LYON, 20)) == ["r1", "r2", "r3", "r4"]


def test_longitude_scaling_at_high_latitude(store: DirectoryStore) -> None:
    centre = (80.0, 25.0)
    radius = 100.0
    # the circle's easternmost point lies poleward of the centre's latitude
    bearing = math.degrees(
        math.acos(math.tan(math.radians(centre[0])) * math.tan(radius / 6371.0088))
    )
    lat, lon = offset(*centre, radius - 0.01, bearing)
    naive_dlon = math.degrees(radius / 6371.0088) / math.cos(math.radians(centre[0]))
    assert lon > centre[1] + naive_dlon  # a box scaled at the centre's latitude would miss it
    apply(store, gp(1, lat, lon) + gp(2, *offset(*centre, radius + 0.01, bearing)))
    assert [c.place.id for c in store.candidates(*centre, radius)] == ["r1"]


def test_antimeridian() -> None:
    _, _, ranges = bounding_box(-17.0, 179.95, 20)
    assert len(ranges) == 2 and ranges[1][0] == -180.0
    s = DirectoryStore()
    apply(s, gp(1, -17.0, -179.95) + gp(2, -17.0, 179.9) + gp(3, -17.0, 0.0))
    assert [c.place.id for c in s.candidates(-17.0, 179.95, 20)] == ["r2", "r1"]
    assert [c.place.id for c in s.candidates(-17.0, -179.98, 20)] == ["r1", "r2"]


def test_bounding_box_shape() -> None:
    lat_min, lat_max, ((_, hi),) = bounding_box(*LYON, 20)
    assert lat_max - LYON[0] == pytest.approx(20 / 111.195, rel=1e-4)
    assert hi - LYON[1] == pytest.approx(20 / (111.195 * math.cos(math.radians(LYON[0]))), rel=1e-3)
    assert lat_max - LYON[0] == pytest.approx(LYON[0] - lat_min)
    # a circle around a pole spans every longitude
    assert bounding_box(89.9, 0.0, 50)[2] == ((-180.0, 180.0),)
    # the corners of the box are outside the circle, its edges' midpoints on it
    assert distance_km(*LYON, lat_max, hi) > 20
    assert distance_km(*LYON, lat_max, LYON[1]) == pytest.approx(20, abs=1e-3)


# --------------------------------------------------------------------------- SOS


def test_sos_associations_within_the_radius(store: DirectoryStore) -> None:
    apply(
        store,
        [
            put(
                organization(
                    "sos1", "312345678900011", "SOS", "SOS Médecins Lyon", endpoint_id="ep1"
                )
            ),
            put(organization("sos2", "398765432100012", "SOS", "SOS Médecins Autre")),
            put(organization("sos3", "311111111100013", "SOS", "SOS fermée", active=False)),
            put(sos_location("l1", "sos1", *offset(*LYON, 6, 10))),
            put(sos_location("l2", "sos1", *offset(*LYON, 2, 200))),
            put(sos_location("l3", "sos2", *offset(*LYON, 4, 90))),
            put(sos_location("l4", "sos2", *offset(*LYON, 40, 90))),
            put(sos_location("l5", "sos3", *LYON)),
            put(sos_location("l6", "sos2", *LYON, status="inactive")),
        ],
    )
    found = store.sos_associations(*LYON, 10)
    assert [c.association.siret for c in found] == ["12345678900011", "98765432100012"]
    first = found[0]
    assert [p.id for p in first.places] == ["l2", "l1"]
    assert first.distance_km == pytest.approx(2.0, abs=1e-6)
    assert first.association.endpoint is not None and first.association.endpoint.id == "ep1"
    assert first.association.id_kind is StructureIdKind.SIRET
    assert [p.id for p in found[1].places] == ["l3"]
    assert store.structure("312345678900011") == first.association
    assert [s.id for s in store.structures(StructureKind.SOS)] == ["sos2", "sos1", "sos3"]


# --------------------------------------------------------------------------- name search


def test_search_by_name_ignores_case_accents_and_hyphens(store: DirectoryStore) -> None:
    apply(
        store,
        gp(1, *LYON, family="Dupré-Noël", given=("Éloïse",))
        + gp(2, *LYON, family="Martin", given=("Jean-Pierre",))
        + gp(3, *LYON, family="Martinez", given=("Lætitia",))
        + gp(4, *LYON, family="Durand", given=("Chloé",), active=False)
        + [put(practitioner("p5", nid(5), "Dupré", ("Éloïse",), active=False))]
        + [put(role("r5", "p5", *LYON))],
    )
    name = lambda text: [p.id for p in store.search_by_name(text)]  # noqa: E731
    assert name("eloise dupre") == ["r1"]
    assert name("ÉLOÏSE") == ["r1"]
    assert name("dupre noel") == ["r1"]
    assert name("Dupré-Noël") == ["r1"]
    assert name("jean pierre") == ["r2"]
    assert sorted(name("mart")) == ["r2", "r3"]  # best FTS rank first
    assert name("laetitia") == ["r3"]
    assert name("Lætitia Martinez") == ["r3"]
    assert name("chloe") == []  # inactive place
    assert name("zzz") == []
    assert name("") == []
    for hostile in ('"', "OR", "*", "martin AND", "NEAR(a b)", "a'b", "-"):
        store.search_by_name(hostile)  # never an FTS syntax error
    assert name(nid(2)[1:]) == ["r2"]  # RPPS without its prefix
    assert name(nid(3)) == ["r3"]
    assert [p.id for p in store.search_by_name("mart", limit=1)] == name("mart")[:1]


def test_fold() -> None:
    assert fold("Lætitia  DUPRÉ-Noël") == "laetitia dupre noel"
    assert fold("O'Brien_Œuvre") == "o brien oeuvre"


# --------------------------------------------------------------------------- feed entries


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("not an object", SkipReason.MALFORMED_ENTRY),
        ({"resource": {}}, SkipReason.MALFORMED_ENTRY),
        ({"request": {"method": "PATCH", "url": "Practitioner/x"}}, SkipReason.UNSUPPORTED_METHOD),
        (put(practitioner("x", "123")), SkipReason.INVALID_IDENTIFIER),
        (put(practitioner("x", "8123")), SkipReason.INVALID_IDENTIFIER),
        (put(organization("o", "9999", "604")), SkipReason.INVALID_IDENTIFIER),
        (put(endpoint("e", "V", "ftp://vendor.example")), SkipReason.INVALID_ADDRESS),
        (put(sos_location("l", None, *LYON)), SkipReason.MISSING_REFERENCE),
        (put({"resourceType": "Patient", "id": "x"}), SkipReason.UNSUPPORTED_TYPE),
        (delete("Patient", "x"), SkipReason.UNSUPPORTED_TYPE),
        (
            {
                "request": {"method": "PUT", "url": "Practitioner/a"},
                "resource": practitioner("b", nid(1)),
            },
            SkipReason.ID_MISMATCH,
        ),
        (
            {
                "request": {"method": "PUT", "url": "Practitioner/a"},
                "resource": {"resourceType": "Practitioner"},
            },
            SkipReason.MISSING_ID,
        ),
    ],
)
def test_invalid_entries(entry: Any, reason: SkipReason) -> None:
    with pytest.raises(InvalidEntry) as err:
        read_entry(entry)
    assert err.value.reason is reason


def test_role_without_practitioner_is_invalid() -> None:
    resource = role("r", "p", *LYON)
    del resource["practitioner"]
    with pytest.raises(InvalidEntry) as err:
        read_entry(put(resource))
    assert (err.value.reason, err.value.rtype, err.value.rid) == (
        SkipReason.MISSING_REFERENCE,
        "PractitionerRole",
        "r",
    )


def test_bad_optional_elements_are_dropped() -> None:
    resource = role("r", "p", 95.0, 4.0, phone="12", insee="ABCDE", en_sus_phone="15")
    change = read_entry(put(resource))
    row = change.row  # type: ignore[union-attr]
    assert (row["lat"], row["lon"], row["phone"], row["insee"], row["en_sus_phone"]) == (
        None,
        None,
        None,
        None,
        None,
    )
    adeli = read_entry(put(practitioner("a", "0691234567")))
    assert adeli.row["id_kind"] == "ADELI"  # type: ignore[union-attr]
