"""Qt item model of the "Dossiers du jour": an adapter over domain dossiers.
Owns no I/O; the window feeds it the dossiers the desk reports changed."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor

from sas_desk.models.codes import codelist
from sas_desk.models.dossier import Dossier, Status
from sas_desk.ui.table_model import RowsModel
from sas_desk.ui.widgets import PRIORITY_COLOURS

COLUMNS = ("Reçu", "Priorité", "Motif", "Commune", "Filière", "Statut", "N° dossier")

Index = QModelIndex | QPersistentModelIndex


class DayModel(RowsModel):
    columns = COLUMNS

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[Dossier] = []
        self._pos: dict[str, int] = {}

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not (0 <= index.row() < len(self._rows)):
            return None
        d = self._rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            received = d.received_at or d.created_at
            return (
                received.strftime("%H:%M:%S"),
                d.priority,
                codelist("motive").label(d.motive_code) if d.motive_code else "",
                d.commune_label,
                d.branch.value if d.branch else "",
                d.status.label,
                d.sender_case_id or d.case_id,
            )[col]
        if role == Qt.ItemDataRole.ForegroundRole and col == 1:
            return QBrush(QColor(PRIORITY_COLOURS.get(d.priority, "#000000")))
        if role == Qt.ItemDataRole.ToolTipRole and col == 2 and d.motive_code:
            return d.motive_label or codelist("motive").label(d.motive_code)
        if role == Qt.ItemDataRole.UserRole:
            return d.case_id
        return None

    # feeding -------------------------------------------------------------
    def reset(self, dossiers: list[Dossier]) -> None:
        self.beginResetModel()
        # the case id carries the day's sequence: calls of the same second
        # keep their order after a restart
        self._rows = sorted(
            (d for d in dossiers if not _empty_shell(d)),
            key=lambda d: (d.created_at, d.case_id),
            reverse=True,
        )
        self._pos = {d.case_id: i for i, d in enumerate(self._rows)}
        self.endResetModel()

    def upsert(self, dossier: Dossier) -> None:
        row = self._pos.get(dossier.case_id)
        if _empty_shell(dossier):
            if row is not None:
                self.beginRemoveRows(QModelIndex(), row, row)
                del self._rows[row]
                self._pos = {d.case_id: i for i, d in enumerate(self._rows)}
                self.endRemoveRows()
            return
        if row is not None:
            self._rows[row] = dossier
            self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))
            return
        self.beginInsertRows(QModelIndex(), 0, 0)
        self._rows.insert(0, dossier)
        self._pos = {d.case_id: i for i, d in enumerate(self._rows)}
        self.endInsertRows()

    def dossier_at(self, row: int) -> Dossier | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None


def _empty_shell(d: Dossier) -> bool:
    """A blank sheet discarded (nothing was typed): no call to list."""
    return d.status is Status.ABANDONED and not d.has_content
