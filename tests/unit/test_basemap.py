"""The map's base layer: which one per ``[map] source``, the fallback when
tiles do not answer, and the simulator's territory document read by a
bounded reader (no network: httpx mock transports)."""

from __future__ import annotations

import json

import httpx
import pytest

from sas_desk.models.limits import InputError
from sas_desk.services.geo.basemap import (
    IGN_ATTRIBUTION,
    IGN_PLAN_V2,
    choose_base_map,
    parse_territory,
)
from sas_desk.services.geo.territory import load_communes
from sas_desk.simulator.basemap import territory_document, voronoi_cells

SIM = "http://127.0.0.1:9/"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 40


def transport(tiles: str, seen: list[str]) -> httpx.MockTransport:
    """Tiles answer ``ok`` (a PNG), ``down`` (connection refused) or ``html``
    (a captive portal's page); the simulator serves its territory."""
    doc = json.dumps(territory_document(load_communes()[:6])).encode()

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path == "/basemap":
            return httpx.Response(200, content=doc)
        if tiles == "down":
            raise httpx.ConnectError("refused", request=request)
        if tiles == "html":
            return httpx.Response(
                200, text="<html>portail</html>", headers={"content-type": "text/html"}
            )
        return httpx.Response(200, content=PNG, headers={"content-type": "image/png"})

    return httpx.MockTransport(handle)


@pytest.mark.asyncio
async def test_ign_tiles_when_a_tile_answers() -> None:
    seen: list[str] = []
    base = await choose_base_map("ign", simulator_url=SIM, transport=transport("ok", seen))
    assert base.kind == "tiles" and base.tiles_url == IGN_PLAN_V2
    assert base.attribution == IGN_ATTRIBUTION and base.note == ""
    # one probe, of the Plan IGN v2 layer's tile 0/0/0; the simulator is not asked
    assert len(seen) == 1 and "LAYER=GEOGRAPHICALGRIDSYSTEMS.PLANIGNV2" in seen[0]
    assert "TILEMATRIX=0&TILEROW=0&TILECOL=0" in seen[0]


@pytest.mark.asyncio
@pytest.mark.parametrize("tiles", ["down", "html"])
async def test_offline_falls_back_to_the_simulator_map(tiles: str) -> None:
    seen: list[str] = []
    base = await choose_base_map("ign", simulator_url=SIM, transport=transport(tiles, seen))
    assert base.kind == "territory" and base.territory is not None
    assert [c.name for c in base.territory.communes][:2] == ["Lyon", "Villeurbanne"]
    assert base.note == "Fond de carte IGN injoignable : fond de carte hors ligne du simulateur."
    assert base.attribution.startswith("Fond : simulateur SAS Desk")


@pytest.mark.asyncio
async def test_offline_without_simulator_is_a_plain_map_with_a_french_note() -> None:
    base = await choose_base_map("ign", transport=transport("down", []))
    assert base.kind == "plain" and base.tiles_url == ""
    assert base.note.startswith("Fond de carte IGN injoignable : patient, rayon")


@pytest.mark.asyncio
async def test_the_organisations_tile_server_and_its_credit() -> None:
    seen: list[str] = []
    url = "https://tuiles.samu69.example/{z}/{x}/{y}.png"
    base = await choose_base_map(
        "url", tiles_url=url, attribution="© SAMU 69", transport=transport("ok", seen)
    )
    assert (base.kind, base.tiles_url, base.attribution) == ("tiles", url, "© SAMU 69")
    assert seen == ["https://tuiles.samu69.example/0/0/0.png"]
    down = await choose_base_map("url", tiles_url=url, transport=transport("down", []))
    assert down.kind == "plain" and down.note.startswith("Serveur de tuiles injoignable")


@pytest.mark.asyncio
async def test_simulator_and_none_ask_no_tile() -> None:
    seen: list[str] = []
    base = await choose_base_map("simulateur", simulator_url=SIM, transport=transport("ok", seen))
    assert base.kind == "territory" and base.note == ""
    assert seen == ["http://127.0.0.1:9/basemap"]
    seen.clear()
    none = await choose_base_map("aucun", simulator_url=SIM, transport=transport("ok", seen))
    assert none.kind == "plain" and "désactivé" in none.note and seen == []
    # the simulator's map asked for in a room without simulator: said so
    alone = await choose_base_map("simulateur", transport=transport("ok", []))
    assert alone.kind == "plain" and alone.note.startswith(
        "Fond de carte du simulateur indisponible"
    )


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (b"[]", "$"),
        (b'{"communes": 3}', "$.communes"),
        (b'{"communes": [{"name": "Lyon", "lat": 95, "lon": 4}]}', "$.communes[0].lat"),
        (b'{"communes": [{"name": 7, "lat": 45, "lon": 4}]}', "$.communes[0].name"),
        (
            b'{"communes": [{"name": "L", "lat": 45, "lon": 4, "cell": [[1]]}]}',
            "$.communes[0].cell[0]",
        ),
        (b'{"communes": [{"name": "L", "lat": true, "lon": 4}]}', "$.communes[0].lat"),
    ],
)
def test_a_bad_territory_is_refused_naming_where(data: bytes, where: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_territory(data, "fond de carte du simulateur")
    assert caught.value.where == where
    assert "fond de carte du simulateur" in caught.value.message_fr


@pytest.mark.parametrize(
    "data", [b"[" * 100_000, b"9" * 5001, b"\xff\xfe", b"{}" + b"\0", b"x" * 3_000_000]
)
def test_hostile_territory_bytes_are_a_known_error(data: bytes) -> None:
    with pytest.raises(InputError):
        parse_territory(data)


def test_each_commune_lies_in_its_own_cell() -> None:
    doc = territory_document(load_communes())
    back = parse_territory(json.dumps(doc).encode())
    assert len(back.communes) == 83
    for commune in back.communes:
        assert len(commune.cell) >= 3
        lats = [p[0] for p in commune.cell]
        lons = [p[1] for p in commune.cell]
        assert min(lats) <= commune.lat <= max(lats) and min(lons) <= commune.lon <= max(lons)
        assert commune.radius_km > 0


def test_voronoi_cells_split_the_box_between_two_sites() -> None:
    left, right = voronoi_cells([(1.0, 1.0), (3.0, 1.0)], (0.0, 0.0, 4.0, 2.0))
    assert sorted(left) == sorted([(0.0, 0.0), (2.0, 0.0), (2.0, 2.0), (0.0, 2.0)])
    assert sorted(right) == sorted([(2.0, 0.0), (4.0, 0.0), (4.0, 2.0), (2.0, 2.0)])
