"""The slot search map: a QtLocation ``Map`` (QML, in a QQuickWidget) with
the patient, the search circle and the places found, grouped when they
overlap at the current zoom; a click on a marker selects its card and the
card selected in the list lights its marker.

Behind them, the base map chosen off the GUI thread
(:func:`sas_desk.services.geo.basemap.choose_base_map`, ``[map] source``):
tiles (IGN "Plan IGN v2" by default, or the organisation's XYZ server) with a
disk cache and their attribution; offline, the demo simulator's map of its
territory drawn in QML (commune cells and names); else a plain background
(the ``itemsoverlay`` plugin) and a French note saying why.  A legend tells
the dots apart.

Imported when the search panel is first shown: QtQuick and QtLocation stay
off the start-up path.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QByteArray,
    QMetaObject,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    QTimer,
    QUrl,
    Signal,
    Slot,
)
from PySide6.QtGui import QGuiApplication
from PySide6.QtPositioning import QGeoCoordinate
from PySide6.QtQuick import QQuickWindow, QSGRendererInterface
from PySide6.QtQuickWidgets import QQuickWidget

from sas_desk.paths import resource
from sas_desk.services.geo.basemap import BaseMap
from sas_desk.ui.offer_model import OfferRow

log = logging.getLogger("sas_desk.ui.map")

CELL_PX = 34  # markers closer than this on screen are grouped
Index = QModelIndex | QPersistentModelIndex


@dataclass
class Group:
    keys: list[str]
    lat: float
    lon: float
    sas: bool
    selected: bool = False


def _pixel(lat: float, lon: float, zoom: float) -> tuple[float, float]:
    """Web Mercator pixel coordinates (256-px tiles) at ``zoom``."""
    size = 256 * 2**zoom
    s = math.sin(math.radians(max(-85.0, min(85.0, lat))))
    x = (lon + 180) / 360 * size
    y = (0.5 - math.log((1 + s) / (1 - s)) / (4 * math.pi)) * size
    return x, y


class Grouper:
    """Groups (key, lat, lon, sas) points falling in one ``cell``-pixel
    square at ``zoom``, point after point: a point added later joins its
    square's group, or makes a new group after the others.  A group keeps
    its points' order (its first key is the best card)."""

    def __init__(self, zoom: float, cell: int = CELL_PX) -> None:
        self.zoom = zoom
        self.cell = cell
        self.groups: list[Group] = []
        self.count = 0  # points grouped
        self._rows: dict[tuple[int, int], int] = {}
        self._sums: list[list[float]] = []

    def add(self, points: Iterable[tuple[str, float, float, bool]]) -> tuple[int, set[int]]:
        """Group ``points``; returns the first new group's row and the rows of
        the groups already there that changed."""
        first_new = len(self.groups)
        changed: set[int] = set()
        for key, lat, lon, sas in points:
            x, y = _pixel(lat, lon, self.zoom)
            square = (int(x // self.cell), int(y // self.cell))
            row = self._rows.get(square)
            self.count += 1
            if row is None:
                self._rows[square] = len(self.groups)
                self.groups.append(Group([key], lat, lon, sas))
                self._sums.append([lat, lon])
                continue
            group, sums = self.groups[row], self._sums[row]
            group.keys.append(key)
            sums[0] += lat
            sums[1] += lon
            group.lat = sums[0] / len(group.keys)
            group.lon = sums[1] / len(group.keys)
            group.sas = group.sas or sas
            if row < first_new:
                changed.add(row)
        return first_new, changed


def group_points(
    points: Sequence[tuple[str, float, float, bool]], zoom: float, cell: int = CELL_PX
) -> list[Group]:
    """Group (key, lat, lon, sas) points falling in one ``cell``-pixel square;
    a group keeps its points' order (its first key is the best card)."""
    grouper = Grouper(zoom, cell)
    grouper.add(points)
    return grouper.groups


class MarkerModel(QAbstractListModel):
    NAMES = (b"lat", b"lon", b"count", b"key", b"selected", b"sas")

    def __init__(self) -> None:
        super().__init__()
        self.groups: list[Group] = []

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.groups)

    def roleNames(self) -> dict[int, QByteArray]:
        base = int(Qt.ItemDataRole.UserRole) + 1
        return {base + i: QByteArray(name) for i, name in enumerate(self.NAMES)}

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.groups):
            return None
        g = self.groups[index.row()]
        n = int(role) - int(Qt.ItemDataRole.UserRole) - 1
        if not 0 <= n < len(self.NAMES):
            return None
        return (g.lat, g.lon, len(g.keys), g.keys[0], g.selected, g.sas)[n]

    def reset(self, groups: list[Group]) -> None:
        self.beginResetModel()
        self.groups = groups
        self.endResetModel()

    def extend(self, groups: Sequence[Group]) -> None:
        """New groups after the others (the map makes their markers only)."""
        if groups:
            first = len(self.groups)
            self.beginInsertRows(QModelIndex(), first, first + len(groups) - 1)
            self.groups.extend(groups)
            self.endInsertRows()

    def changed(self, rows: Iterable[int]) -> None:
        """Groups changed in place (a point joined them): their markers update."""
        for row in sorted(rows):
            self.dataChanged.emit(self.index(row), self.index(row))

    def select(self, key: str) -> int:
        """Light the group holding ``key``; returns its row (-1: none)."""
        found = -1
        for i, g in enumerate(self.groups):
            now = bool(key) and key in g.keys
            if now:
                found = i
            if now != g.selected:
                g.selected = now
                self.dataChanged.emit(self.index(i), self.index(i))
        return found


class Bridge(QObject):
    picked = Signal(str, int)
    zoom_changed = Signal(float)

    @Slot(str, int)
    def pick(self, key: str, count: int) -> None:
        self.picked.emit(key, count)

    @Slot(float)
    def zoomed(self, zoom: float) -> None:
        self.zoom_changed.emit(zoom)


def base_map_properties(base: BaseMap) -> dict[str, Any]:
    """The QML context properties of the base layer: Qt's ``osm`` plugin
    wants ``%z/%x/%y`` where the settings write ``{z}/{x}/{y}``."""
    tiles = base.tiles_url if base.kind == "tiles" else ""
    for axis in "zxy":
        tiles = tiles.replace("{" + axis + "}", "%" + axis)
    territory = base.territory
    cells = [
        {
            "name": c.name,
            "lat": c.lat,
            "lon": c.lon,
            "population": c.population,
            "path": [{"latitude": lat, "longitude": lon} for lat, lon in c.cell],
        }
        for c in (territory.communes if territory is not None else ())
    ]
    return {
        "baseKind": base.kind,
        "tilesUrl": tiles,
        "attribution": base.attribution,
        "baseNote": base.note,
        "territory": cells,
    }


_software_set = False


def _use_software_rendering() -> None:
    """Offscreen (tests, screenshots) and virtual displays have no GPU: the
    software scene graph renders the map items everywhere."""
    global _software_set
    if _software_set:
        return
    _software_set = True
    if QGuiApplication.platformName() in ("offscreen", "minimal", "xcb", "vnc"):
        QQuickWindow.setGraphicsApi(QSGRendererInterface.GraphicsApi.Software)


class SlotMap(QQuickWidget):
    picked = Signal(str)  # offer key

    def __init__(
        self, base: BaseMap | None = None, *, tiles_url: str = "", cache_dir: str = ""
    ) -> None:
        _use_software_rendering()
        super().__init__()
        self.setResizeMode(QQuickWidget.ResizeMode.SizeRootObjectToView)
        self.setMinimumSize(280, 240)
        if base is None:
            base = BaseMap("tiles", tiles_url=tiles_url) if tiles_url else BaseMap("plain")
        self.base = base
        self.tiles_url = base.tiles_url if base.kind == "tiles" else ""
        self.markers = MarkerModel()
        self.bridge = Bridge(self)
        self.bridge.picked.connect(self._on_pick)
        self.bridge.zoom_changed.connect(self._on_zoom)
        self._points: list[tuple[str, float, float, bool]] = []
        self._grouper: Grouper | None = None
        self._selected = ""
        self._zoom = 12.0
        self._patient: tuple[float, float, float] | None = None
        self._regroup_timer = QTimer(self, singleShot=True, interval=150)
        self._regroup_timer.timeout.connect(self._regroup)
        context = self.rootContext()
        for name, value in base_map_properties(base).items():
            context.setContextProperty(name, value)
        context.setContextProperty("tilesCache", cache_dir)
        context.setContextProperty("markers", self.markers)
        context.setContextProperty("bridge", self.bridge)
        self.setSource(QUrl.fromLocalFile(str(resource("qml", "slot_map.qml"))))
        if self.status() is QQuickWidget.Status.Error:
            log.error("map QML failed: %s", [e.toString() for e in self.errors()])
        self.tiled = bool(self.tiles_url)

    @property
    def ok(self) -> bool:
        return self.rootObject() is not None

    # ------------------------------------------------------------------ inputs
    def set_patient(self, lat: float, lon: float, radius_km: float) -> None:
        if self._patient == (lat, lon, radius_km):
            return
        self._patient = (lat, lon, radius_km)
        root = self.rootObject()
        if root is None:
            return
        root.setProperty("patientLat", lat)
        root.setProperty("patientLon", lon)
        root.setProperty("radiusMeters", radius_km * 1000)
        root.setProperty("hasPatient", True)
        QTimer.singleShot(0, self.fit)

    def fit(self) -> None:
        root = self.rootObject()
        if root is not None and self._patient is not None:
            QMetaObject.invokeMethod(root, "fit")
            zoom = root.property("zoom")
            if isinstance(zoom, float):
                self._on_zoom(zoom)

    def set_offers(self, rows: Sequence[OfferRow | None]) -> None:
        self._points = []
        self._grouper = None  # grouped again from the start
        self.add_offers(rows)

    def add_offers(self, rows: Sequence[OfferRow | None]) -> None:
        for row in rows:
            if row is None or row.offer.lat is None or row.offer.lon is None:
                continue
            self._points.append((row.key, row.offer.lat, row.offer.lon, row.offer.candidate.sas))
        if not self._regroup_timer.isActive():
            self._regroup_timer.start()

    def set_selected(self, key: str) -> None:
        self._selected = key
        self.markers.select(key)

    # ------------------------------------------------------------------ inside
    def _on_zoom(self, zoom: float) -> None:
        if abs(zoom - self._zoom) > 0.01:
            self._zoom = zoom
            self._regroup_timer.start()

    def _regroup(self) -> None:
        """Group the points added since the last time into the markers: new
        markers added, the ones a point joined updated (the QML delegates of
        the others stay); all again after a zoom or a new list."""
        grouper = self._grouper
        selected = self._selected
        if grouper is None or abs(grouper.zoom - self._zoom) > 0.01:
            grouper = self._grouper = Grouper(self._zoom)
            grouper.add(self._points)
            for g in grouper.groups:
                g.selected = bool(selected) and selected in g.keys
            self.markers.reset(list(grouper.groups))
            return
        if grouper.count == len(self._points):
            return
        first_new, changed = grouper.add(self._points[grouper.count :])
        for g in itertools.chain(grouper.groups[first_new:], (grouper.groups[i] for i in changed)):
            g.selected = bool(selected) and selected in g.keys
        self.markers.changed(changed)
        self.markers.extend(grouper.groups[first_new:])

    def _on_pick(self, key: str, count: int) -> None:
        self.set_selected(key)
        self.picked.emit(key)
        if count > 1:  # a group: come closer so its places separate
            group = next((g for g in self.markers.groups if key in g.keys), None)
            the_map = self.map_item()
            if the_map is not None and group is not None:
                the_map.setProperty("center", QGeoCoordinate(group.lat, group.lon))
                the_map.setProperty("zoomLevel", min(18.0, self._zoom + 2))

    def map_item(self) -> QObject | None:
        root = self.rootObject()
        return root.findChild(QObject, "map") if root is not None else None
