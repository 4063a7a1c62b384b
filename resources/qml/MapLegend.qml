// The slot search map's legend, a strip under the map (no dot hidden under
// it): what the symbols, their colours and the numbers on them mean. Its
// entries wrap to the map's width; the base map's credit ends it. Same colours as slot_map.qml's markers.
import QtQuick

Rectangle {
    id: legend
    property real radiusKm: 0
    property bool hasPatient: false
    property string credit: ""
    height: flow.implicitHeight + 8
    color: "#f7f7f5"
    border.color: "#d0d0d0"

    component Entry: Row {
        property alias label: text.text
        default property alias symbol: holder.data
        spacing: 4
        Item { id: holder; width: 16; height: 16 }
        Text { id: text; font.pixelSize: 11; color: "#222"; anchors.verticalCenter: parent.verticalCenter }
    }
    component Dot: Rectangle {
        anchors.centerIn: parent
        width: 12; height: 12; radius: 6
        border.color: "white"; border.width: 2
    }

    Flow {
        id: flow
        x: 6; y: 4
        width: legend.width - 12
        spacing: 10
        Entry {
            label: "Patient"
            visible: legend.hasPatient
            Rectangle {
                anchors.centerIn: parent
                width: 10; height: 10; rotation: 45
                color: "#b00020"; border.color: "white"; border.width: 2
            }
        }
        Entry {
            label: "Rayon " + legend.radiusKm.toLocaleString(Qt.locale("fr_FR"), "f", legend.radiusKm % 1 ? 1 : 0) + " km"
            visible: legend.hasPatient
            Rectangle {
                anchors.centerIn: parent
                width: 16; height: 10; radius: 5
                color: "#201565c0"; border.color: "#1565c0"; border.width: 2
            }
        }
        Entry { label: "Participe au SAS"; Dot { color: "#2e7d32" } }
        Entry { label: "Hors SAS"; Dot { color: "#1565c0" } }
        Entry { label: "Sélectionné"; Dot { color: "#ff6f00" } }
        Entry {
            label: "Groupe : nombre de lieux (clic : zoom)"
            Rectangle {
                anchors.centerIn: parent
                width: 16; height: 16; radius: 8
                color: "#2e7d32"; border.color: "white"; border.width: 2
                Text { anchors.centerIn: parent; text: "3"; color: "white"; font.pixelSize: 9; font.bold: true }
            }
        }
        Text {
            objectName: "attribution"
            visible: text !== ""
            text: legend.credit
            height: 16
            verticalAlignment: Text.AlignVCenter
            font.pixelSize: 10
            color: "#555"
        }
    }
}
