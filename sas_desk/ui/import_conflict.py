"""The import conflict, shown to the operator who chooses (issue 18).

An RS-EDA received for a case already stored and different from it is kept
apart (:meth:`sas_desk.services.desk.Desk.import_received`); this dialog
shows what differs, field by field (here / received), and asks which
version to keep.  Keyboard-first: ``E`` keeps the existing version, ``R`` the
received one, ``Échap`` decides later (both stay, the conflict is in the
dossier's timeline).  The choice is applied by the caller through the desk
(:meth:`~sas_desk.services.desk.Desk.resolve_import_conflict`).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from sas_desk.ui.widgets import named


class ImportConflictDialog(QDialog):
    chosen = Signal(str)  # "existing" | "received" ("" : later)

    def __init__(
        self,
        case_id: str,
        received_id: str,
        rows: list[tuple[str, str, str]],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("importConflict")
        self.setWindowTitle("Conflit d'import")
        self.case_id = case_id
        self.received_id = received_id
        self.choice = ""
        outer = QVBoxLayout(self)
        head = QLabel(
            f"Le dossier <b>{case_id}</b> existe déjà et diffère de la version reçue, "
            f"conservée à part sous <b>{received_id}</b>. Rien n'est perdu : la version "
            "écartée reste consultable, abandonnée."
        )
        head.setWordWrap(True)
        outer.addWidget(head)
        self.table = named(QTableWidget(len(rows), 3), "conflictTable")
        self.table.setHorizontalHeaderLabels(["Champ", "Ici", "Reçue"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setWordWrap(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(r, c, item)
        self.table.resizeRowsToContents()
        outer.addWidget(self.table)
        buttons = QHBoxLayout()
        self.keep_existing = named(QPushButton("Garder la version existante  [E]"), "keepExisting")
        self.keep_received = named(QPushButton("Garder la version reçue  [R]"), "keepReceived")
        self.later = named(QPushButton("Décider plus tard  [Échap]"), "decideLater")
        for button in (self.keep_existing, self.keep_received, self.later):
            buttons.addWidget(button)
        outer.addLayout(buttons)
        self.keep_existing.clicked.connect(lambda: self._choose("existing"))
        self.keep_received.clicked.connect(lambda: self._choose("received"))
        self.later.clicked.connect(self.reject)
        for key, choice in ((Qt.Key.Key_E, "existing"), (Qt.Key.Key_R, "received")):
            shortcut = QShortcut(QKeySequence(key), self)
            shortcut.activated.connect(lambda c=choice: self._choose(c))
        self.keep_existing.setDefault(False)
        self.keep_received.setAutoDefault(False)
        self.keep_existing.setAutoDefault(False)
        self.later.setFocus()
        self.resize(720, min(520, 160 + 28 * max(3, len(rows))))

    def _choose(self, choice: str) -> None:
        self.choice = choice
        self.chosen.emit(choice)
        self.accept()
