"""The slot search map's base layer and legend (QtLocation offscreen,
software scene graph): the legend shows, the tiles source follows the
setting, offline the simulator's map or a plain background with a note —
and the panel never waits on the network to stay usable."""

from __future__ import annotations

import dataclasses
import socket

import pytest
from PySide6.QtCore import QObject
from pytestqt.qtbot import QtBot

from sas_desk.services import clock
from sas_desk.services.geo.basemap import (
    IGN_ATTRIBUTION,
    IGN_PLAN_V2,
    BaseMap,
    Territory,
    TerritoryCommune,
)
from sas_desk.ui.slot_map import SlotMap
from sas_desk.ui.slot_search import SlotSearchPanel
from tests.ui.conftest import Env, until

pytestmark = [
    pytest.mark.gui,
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.qt_log_ignore("QObject::disconnect: Unexpected nullptr parameter"),
]

CELL = ((45.70, 4.78), (45.70, 4.90), (45.80, 4.90), (45.80, 4.78))
TERRITORY = Territory(
    "Territoire de démonstration (69)",
    "Fond : simulateur SAS Desk (communes de démonstration)",
    (
        TerritoryCommune("Lyon", 45.7578, 4.8351, 522300, 5, CELL),
        TerritoryCommune("Bron", 45.7386, 4.9136, 42000, 5, CELL),
    ),
)


def shown(qtbot: QtBot, base: BaseMap) -> SlotMap:
    slot_map = SlotMap(base)
    qtbot.addWidget(slot_map)
    slot_map.resize(560, 600)
    slot_map.show()
    assert slot_map.ok, slot_map.errors()
    slot_map.set_patient(45.764, 4.8357, 5)
    return slot_map


def child(slot_map: SlotMap, name: str) -> QObject:
    root = slot_map.rootObject()
    assert root is not None
    found = root.findChild(QObject, name)
    assert found is not None, name
    return found


def texts(item: QObject) -> list[str]:
    return [str(t.property("text")) for t in item.findChildren(QObject) if t.property("text")]


async def test_legend_names_every_dot_colour_and_the_group_counts(qtbot: QtBot) -> None:
    slot_map = shown(
        qtbot, BaseMap("territory", attribution=TERRITORY.attribution, territory=TERRITORY)
    )
    legend = child(slot_map, "legend")
    assert legend.property("visible") is True
    labels = texts(legend)
    for wanted in ("Patient", "Rayon 5 km", "Participe au SAS", "Hors SAS", "Sélectionné"):
        assert wanted in labels
    assert "Groupe : nombre de lieux (clic : zoom)" in labels
    # the simulator's map: its cells and names under the dots, its credit, no note
    root = slot_map.rootObject()
    assert root.property("pluginName") == "itemsoverlay"
    # the views create their delegates as the loop turns
    await until(lambda: root.property("territoryItems") == 2 + 2, timeout=10)  # cells, names
    assert child(slot_map, "attribution").property("text") == TERRITORY.attribution
    assert child(slot_map, "noTilesNote").property("text") == ""


async def test_tiles_source_is_given_to_the_osm_plugin_with_its_credit(qtbot: QtBot) -> None:
    slot_map = shown(qtbot, BaseMap("tiles", tiles_url=IGN_PLAN_V2, attribution=IGN_ATTRIBUTION))
    the_map = slot_map.map_item()
    assert the_map is not None and slot_map.rootObject().property("pluginName") == "osm"
    assert (
        slot_map.rootContext()
        .contextProperty("tilesUrl")
        .endswith("TILEMATRIX=%z&TILEROW=%y&TILECOL=%x")
    )
    assert child(slot_map, "attribution").property("text") == IGN_ATTRIBUTION
    assert the_map.property("copyrightsVisible") is False  # ours is drawn, not Qt's OSM credit


async def test_plain_background_says_why_in_french(qtbot: QtBot) -> None:
    note = "Fond de carte IGN injoignable : patient, rayon, lieux et échelle seulement (sans fond)."
    slot_map = shown(qtbot, BaseMap("plain", note=note))
    assert child(slot_map, "noTilesNote").property("text") == note
    assert child(slot_map, "attribution").property("visible") is False
    assert child(slot_map, "legend").property("visible") is True


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("source", "kind", "note"),
    [
        ("simulateur", "territory", ""),
        (
            "url",
            "territory",
            "Serveur de tuiles injoignable : fond de carte hors ligne du simulateur.",
        ),
        ("aucun", "plain", "Fond de carte désactivé (réglage [map] source)."),
    ],
)
async def test_panel_chooses_the_base_map_per_setting_off_the_gui_thread(
    qtbot: QtBot, env: Env, source: str, kind: str, note: str
) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}/{{z}}/{{x}}/{{y}}.png"
    config = dataclasses.replace(env.config, map_source=source, map_tiles_url=dead)
    desk = env.desk
    saved = desk.config
    desk.config = config
    try:
        panel = SlotSearchPanel(
            env.resolver, now=clock.now, desk=desk, simulator_url=env.simulator_url
        )
    finally:
        desk.config = saved
    qtbot.addWidget(panel)
    panel.resize(1200, 700)
    panel.show()
    # the panel is usable at once; the map comes when its base is chosen
    assert panel.where.isEnabled() and panel.map is None
    await until(lambda: panel.map is not None, timeout=10)
    assert panel.map.base.kind == kind and panel.map.base.note == note
    assert child(panel.map, "noTilesNote").property("text") == note


async def test_a_plain_map_is_redrawn_over_the_simulators_once_it_starts(
    qtbot: QtBot, env: Env
) -> None:
    """The demo starts its simulator after the window: an OSNP's panel shown
    first had only a plain background to offer."""
    dead = f"http://127.0.0.1:{_closed_port()}/{{z}}/{{x}}/{{y}}.png"
    config = dataclasses.replace(env.config, map_source="url", map_tiles_url=dead)
    saved, env.desk.config = env.desk.config, config
    try:
        panel = SlotSearchPanel(env.resolver, now=clock.now, desk=env.desk)
    finally:
        env.desk.config = saved
    qtbot.addWidget(panel)
    panel.show()
    await until(lambda: panel.map is not None, timeout=10)
    first = panel.map
    assert first.base.kind == "plain" and "Serveur de tuiles injoignable" in first.base.note
    panel.set_simulator_url(env.simulator_url)
    await until(lambda: panel.map is not None and panel.map is not first, timeout=10)
    assert panel.map.base.kind == "territory"
    assert panel.map_holder.layout().count() == 1  # the plain map left the panel
