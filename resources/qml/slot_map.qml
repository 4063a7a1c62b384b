// The slot search map: the patient, the search circle, the places found
// (grouped when they overlap), the selection shared with the list.
// Context properties set by sas_desk/ui/slot_map.py: baseKind (tiles,
// territory, plain), tilesUrl, tilesCache, attribution, baseNote, territory
// (the simulator's commune cells), markers (list model), bridge (pick / zoomed).
import QtQuick
import QtLocation
import QtPositioning

Rectangle {
    id: root
    color: "#eef1f4"
    property real patientLat: 45.764
    property real patientLon: 4.8357
    property real radiusMeters: 5000
    property bool hasPatient: false
    readonly property bool tiled: tilesUrl !== ""
    readonly property alias zoom: map.zoomLevel
    readonly property string pluginName: map.plugin ? map.plugin.name : ""  // tests
    property int territoryItems: 0  // the simulator map's cells and names created (tests)

    function fit() {
        map.fitViewportToGeoShape(
            QtPositioning.circle(QtPositioning.coordinate(patientLat, patientLon), radiusMeters), 24)
    }
    function centreOn(lat, lon) { map.center = QtPositioning.coordinate(lat, lon) }

    Plugin {
        id: tilePlugin
        name: "osm"
        PluginParameter { name: "osm.mapping.custom.host"; value: tilesUrl }
        PluginParameter { name: "osm.mapping.providersrepository.disabled"; value: true }
        PluginParameter { name: "osm.mapping.cache.directory"; value: tilesCache }
        PluginParameter { name: "osm.useragent"; value: "SAS Desk" }
    }
    Plugin { id: plainPlugin; name: "itemsoverlay" }

    Map {
        id: map
        objectName: "map"
        anchors { left: parent.left; right: parent.right; top: parent.top; bottom: legend.top }
        plugin: root.tiled ? tilePlugin : plainPlugin
        color: "#eef1f4"
        activeMapType: root.tiled ? supportedMapTypes[supportedMapTypes.length - 1] : supportedMapTypes[0]
        center: QtPositioning.coordinate(root.patientLat, root.patientLon)
        zoomLevel: 12
        copyrightsVisible: false  // the base map's attribution is drawn below
        onZoomLevelChanged: zoomTimer.restart()

        Timer { id: zoomTimer; interval: 120; onTriggered: bridge.zoomed(map.zoomLevel) }
        WheelHandler {
            acceptedDevices: PointerDevice.Mouse | PointerDevice.TouchPad
            rotationScale: 1 / 120
            property: "zoomLevel"
        }
        DragHandler {
            target: null
            onTranslationChanged: (delta) => map.pan(-delta.x, -delta.y)
        }

        // the simulator's offline base map: one cell per commune, its name
        MapItemView {
            objectName: "territoryCells"
            model: territory
            delegate: MapPolygon {
                z: -2
                path: modelData.path
                color: ["#f3efe2", "#e9f0e0", "#f1e6e0", "#e4ecf1", "#efe9f3"][index % 5]
                border.color: "#b9b3a6"
                border.width: 1
                Component.onCompleted: root.territoryItems += 1
                Component.onDestruction: root.territoryItems -= 1
            }
        }
        MapItemView {
            objectName: "territoryNames"
            model: territory
            delegate: MapQuickItem {
                z: -1
                coordinate: QtPositioning.coordinate(modelData.lat, modelData.lon)
                anchorPoint.x: label.width / 2
                anchorPoint.y: label.height / 2
                visible: map.zoomLevel >= 12.5 || modelData.population >= 20000
                         || (map.zoomLevel >= 11 && modelData.population >= 4000)
                Component.onCompleted: root.territoryItems += 1
                Component.onDestruction: root.territoryItems -= 1
                sourceItem: Text {
                    id: label
                    text: modelData.name
                    color: "#5d5a52"
                    font.pixelSize: modelData.population >= 100000 ? 13 : 11
                    font.italic: true
                    style: Text.Outline
                    styleColor: "#ffffff"
                }
            }
        }

        MapCircle {
            visible: root.hasPatient
            center: QtPositioning.coordinate(root.patientLat, root.patientLon)
            radius: root.radiusMeters
            color: "#201565c0"
            border.color: "#1565c0"
            border.width: 2
        }

        MapItemView {
            model: markers
            delegate: MapQuickItem {
                coordinate: QtPositioning.coordinate(model.lat, model.lon)
                anchorPoint.x: dot.width / 2
                anchorPoint.y: dot.height / 2
                z: model.selected ? 10 : 1
                sourceItem: Rectangle {
                    id: dot
                    width: model.count > 1 ? 26 : (model.selected ? 20 : 14)
                    height: width
                    radius: width / 2
                    color: model.selected ? "#ff6f00" : (model.sas ? "#2e7d32" : "#1565c0")
                    border.color: "white"
                    border.width: 2
                    Text {
                        anchors.centerIn: parent
                        visible: model.count > 1
                        text: model.count
                        color: "white"
                        font.pixelSize: 11
                        font.bold: true
                    }
                    TapHandler { onTapped: bridge.pick(model.key, model.count) }
                }
            }
        }

        MapQuickItem {
            visible: root.hasPatient
            coordinate: QtPositioning.coordinate(root.patientLat, root.patientLon)
            anchorPoint.x: 9
            anchorPoint.y: 9
            z: 20
            sourceItem: Item {
                width: 18; height: 18
                Rectangle {
                    anchors.centerIn: parent
                    width: 13; height: 13; rotation: 45
                    color: "#b00020"; border.color: "white"; border.width: 2
                }
            }
        }
    }

    // scale bar (256-px tiles: metres per pixel at the centre's latitude)
    Item {
        id: scale
        anchors.left: parent.left
        anchors.bottom: legend.top
        anchors.margins: 10
        width: bar.width
        height: 24
        readonly property real mpp: 156543.03392 * Math.cos(map.center.latitude * Math.PI / 180)
                                    / Math.pow(2, map.zoomLevel)
        readonly property var steps: [20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000]
        readonly property real metres: {
            var best = steps[0]
            for (var i = 0; i < steps.length; ++i)
                if (steps[i] / mpp <= 140) best = steps[i]
            return best
        }
        Rectangle {
            id: bar
            objectName: "scaleBar"
            anchors.bottom: parent.bottom
            width: scale.metres / scale.mpp
            height: 4
            color: "#333"
        }
        Text {
            objectName: "scaleText"
            anchors.bottom: bar.top
            anchors.left: bar.left
            text: scale.metres >= 1000 ? (scale.metres / 1000) + " km" : scale.metres + " m"
            font.pixelSize: 11
            color: "#333"
        }
    }

    MapLegend {
        id: legend
        objectName: "legend"
        anchors { left: parent.left; right: parent.right; bottom: parent.bottom }
        radiusKm: root.radiusMeters / 1000
        hasPatient: root.hasPatient
        credit: attribution  // the base map's, required by its licence
    }

    Rectangle {
        visible: note.text !== ""
        anchors.top: parent.top
        anchors.left: parent.left
        anchors.right: parent.right
        anchors.margins: 6
        height: note.implicitHeight + 8
        radius: 4
        color: "#e0ffffff"
        Text {
            id: note
            objectName: "noTilesNote"
            anchors.fill: parent
            anchors.margins: 4
            wrapMode: Text.WordWrap
            font.pixelSize: 11
            color: "#555"
            text: baseNote !== "" ? baseNote
                  : (baseKind === "plain" ? "Pas de fond de carte : patient, rayon, lieux et échelle seulement." : "")
        }
    }
}
