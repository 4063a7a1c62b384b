// The slot search map's legend: what the dots, their colours and the numbers
// on them mean (used by slot_map.qml; same colours as its markers).
import QtQuick

Rectangle {
    id: legend
    property real radiusKm: 0
    property bool hasPatient: false
    width: rows.implicitWidth + 12
    height: rows.implicitHeight + 8
    radius: 4
    color: "#e6ffffff"
    border.color: "#c8c8c8"

    component Entry: Row {
        property alias label: text.text
        default property alias symbol: holder.data
        spacing: 6
        Item { id: holder; width: 18; height: 16 }
        Text { id: text; font.pixelSize: 11; color: "#222"; anchors.verticalCenter: parent.verticalCenter }
    }
    component Dot: Rectangle {
        anchors.centerIn: parent
        width: 12; height: 12; radius: 6
        border.color: "white"; border.width: 2
    }

    Column {
        id: rows
        x: 6; y: 4
        spacing: 1
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
            label: "Rayon de recherche (" + legend.radiusKm.toLocaleString(Qt.locale("fr_FR"), "f", legend.radiusKm % 1 ? 1 : 0) + " km)"
            visible: legend.hasPatient
            Rectangle {
                anchors.centerIn: parent
                width: 16; height: 10; radius: 5
                color: "#201565c0"; border.color: "#1565c0"; border.width: 2
            }
        }
        Entry { label: "Participe au SAS"; Dot { color: "#2e7d32" } }
        Entry { label: "Hors SAS"; Dot { color: "#1565c0" } }
        Entry { label: "Lieu sélectionné"; Dot { color: "#ff6f00" } }
        Entry {
            label: "Lieux regroupés (nombre) : cliquer pour zoomer"
            Rectangle {
                anchors.centerIn: parent
                width: 16; height: 16; radius: 8
                color: "#2e7d32"; border.color: "white"; border.width: 2
                Text { anchors.centerIn: parent; text: "3"; color: "white"; font.pixelSize: 9; font.bold: true }
            }
        }
    }
}
