"""The simulator's offline base map over loopback HTTP, and the fallback to
it when the tiles chosen do not answer (a closed local port: no Internet)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from sas_desk.services.geo.basemap import choose_base_map, parse_territory
from sas_desk.simulator.server import Simulator


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    with Simulator() as sim:
        yield sim


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_basemap_endpoint_answers_the_territory(simulator: Simulator) -> None:
    with httpx.Client(trust_env=False) as client:
        response = client.get(simulator.base_url + "/basemap")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    territory = parse_territory(response.content)
    names = {c.name for c in territory.communes}
    assert len(territory.communes) == 83 and {"Lyon", "Villeurbanne"} <= names
    lyon = next(c for c in territory.communes if c.name == "Lyon")
    assert lyon.population > 500_000 and lyon.radius_km == 5 and len(lyon.cell) >= 3
    assert territory.title.startswith("Territoire de démonstration")


@pytest.mark.asyncio
async def test_unreachable_tiles_fall_back_to_the_simulators_map(simulator: Simulator) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/{{z}}/{{x}}/{{y}}.png"
    base = await choose_base_map("url", tiles_url=dead, simulator_url=simulator.base_url)
    assert base.kind == "territory" and base.territory is not None
    assert base.note == "Serveur de tuiles injoignable : fond de carte hors ligne du simulateur."
    plain = await choose_base_map("url", tiles_url=dead)
    assert plain.kind == "plain" and "sans fond" in plain.note
