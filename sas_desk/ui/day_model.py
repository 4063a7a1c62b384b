"""Qt item model of the "Dossiers du jour": an adapter over domain dossiers.
Owns no I/O; the window feeds it the dossiers the desk reports changed."""

from __future__ import annotations

from functools import cache
from typing import Any

from PySide6.QtCore import QModelIndex, QModelRoleDataSpan, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor

from sas_desk.models.codes import codelist
from sas_desk.models.dossier import Dossier, Status
from sas_desk.ui.table_model import RowsModel
from sas_desk.ui.widgets import PRIORITY_COLOURS

COLUMNS = ("Reçu", "Priorité", "Motif", "Commune", "Filière", "Statut", "N° dossier")

Index = QModelIndex | QPersistentModelIndex
_DISPLAY = Qt.ItemDataRole.DisplayRole.value
_FOREGROUND = Qt.ItemDataRole.ForegroundRole.value
_TOOLTIP = Qt.ItemDataRole.ToolTipRole.value
_USER = Qt.ItemDataRole.UserRole.value


@cache
def _priority_brush(priority: str) -> QBrush:
    return QBrush(QColor(PRIORITY_COLOURS.get(priority, "#000000")))


def _shown(d: Dossier) -> tuple[str, ...]:
    """What a row shows (its cells, then the motive's tooltip)."""
    received = d.received_at or d.created_at
    motive = codelist("motive").label(d.motive_code) if d.motive_code else ""
    return (
        received.strftime("%H:%M:%S"),
        d.priority,
        motive,
        d.commune_label,
        d.branch.value if d.branch else "",
        d.status.label,
        d.sender_case_id or d.case_id,
        (d.motive_label or motive) if d.motive_code else "",
    )


class DayModel(RowsModel):
    """Each row's cells are computed once per change of its dossier, and a
    change the row does not show (a callback, an age typed) repaints
    nothing: the sheet reports every keystroke here, and each repaint of
    the list cost a pass over all its rows (the shift bench slowed down
    call after call)."""

    columns = COLUMNS

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[Dossier] = []
        self._shown: list[tuple[str, ...]] = []
        self._pos: dict[str, int] = {}

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        row = index.row()
        if not index.isValid() or not (0 <= row < len(self._rows)):
            return None
        return self._value(row, index.column(), int(role))

    def multiData(  # type: ignore[override]  # PySide's stub also admits one QModelRoleData
        self, index: Index, roleDataSpan: QModelRoleDataSpan
    ) -> None:
        """What a view asks to paint or measure a cell: seven roles at once
        (text, font, alignment, colours…), answered in one call into Python
        rather than seven calls to :meth:`data` — a new row at the top of
        the list repaints every row in view, at the first key of each call
        (≈ 2,600 calls into Python, the longest stall of bench/shift.py)."""
        row = index.row()
        inside = index.isValid() and 0 <= row < len(self._rows)
        col = index.column()
        for slot in roleDataSpan:  # type: ignore[attr-defined]  # iterable at run time
            value = self._value(row, col, slot.role()) if inside else None
            if value is None:
                slot.clearData()
            else:
                slot.setData(value)

    def _value(self, row: int, col: int, role: int) -> Any:
        if role == _DISPLAY:
            return self._shown[row][col]
        if role == _FOREGROUND and col == 1:
            return _priority_brush(self._rows[row].priority)
        if role == _TOOLTIP and col == 2 and self._rows[row].motive_code:
            return self._shown[row][-1]
        if role == _USER:
            return self._rows[row].case_id
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
        self._shown = [_shown(d) for d in self._rows]
        self._pos = {d.case_id: i for i, d in enumerate(self._rows)}
        self.endResetModel()

    def upsert(self, dossier: Dossier) -> None:
        row = self._pos.get(dossier.case_id)
        if _empty_shell(dossier):
            if row is not None:
                self.beginRemoveRows(QModelIndex(), row, row)
                del self._rows[row]
                del self._shown[row]
                self._pos = {d.case_id: i for i, d in enumerate(self._rows)}
                self.endRemoveRows()
            return
        shown = _shown(dossier)
        if row is not None:
            self._rows[row] = dossier
            before, self._shown[row] = self._shown[row], shown
            changed = [c for c in range(len(COLUMNS)) if before[c] != shown[c]]
            if before[-1] != shown[-1]:
                changed.append(2)  # the motive's tooltip
            if changed:
                self.dataChanged.emit(self.index(row, min(changed)), self.index(row, max(changed)))
            return
        self.beginInsertRows(QModelIndex(), 0, 0)
        self._rows.insert(0, dossier)
        self._shown.insert(0, shown)
        self._pos = {d.case_id: i for i, d in enumerate(self._rows)}
        self.endInsertRows()

    def dossier_at(self, row: int) -> Dossier | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None


def _empty_shell(d: Dossier) -> bool:
    """A blank sheet discarded (nothing was typed): no call to list."""
    return d.status is Status.ABANDONED and not d.has_content
