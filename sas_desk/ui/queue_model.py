"""Qt item model of queue items: an adapter over ``QueueItem``s fed by the
change sets of the queue watch.  Owns no I/O."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from PySide6.QtCore import (
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QBrush, QColor

from sas_desk.models.codes import codelist
from sas_desk.models.queue import AgeState, ChangeSet, QueueItem, QueueName, WaitLimits
from sas_desk.models.validation import Age, ValidationError
from sas_desk.ui.table_model import RowsModel
from sas_desk.ui.widgets import PRIORITY_COLOURS

COLUMNS = ("Priorité", "Attente", "Motif", "Commune", "Âge / sexe", "Pris par")
WAIT_COLUMN = 1
MOTIVE_COLUMN = 2
COMMUNE_COLUMN = 3
AGE_BACKGROUND = {AgeState.OK: None, AgeState.DUE: "#ffe0b2", AgeState.LATE: "#ffcdd2"}
ItemRole = Qt.ItemDataRole.UserRole + 1
QueueRole = Qt.ItemDataRole.UserRole + 2
SortRole = Qt.ItemDataRole.UserRole + 3

Index = QModelIndex | QPersistentModelIndex


def format_wait(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 3600:
        return f"{seconds // 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d}"


def age_sex(item: QueueItem) -> str:
    text = ""
    if item.age:
        try:
            text = Age.from_iso(item.age).display()
        except ValidationError:
            text = item.age
    sex = {"M": "H", "F": "F", "O": "A", "UN": "?"}.get(item.sex, "")
    return f"{text} {sex}".strip()


class QueueModel(RowsModel):
    columns = COLUMNS

    def __init__(self, limits: WaitLimits, now: Any) -> None:
        super().__init__()
        self.limits = limits
        self._now = now
        self._rows: list[QueueItem] = []
        self._pos: dict[str, int] = {}
        # what the ARM needs to call back, per case id (ARM queue only):
        # the callback number and why the dossier came back
        self.callback_info: dict[str, str] = {}

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not (0 <= index.row() < len(self._rows)):
            return None
        item = self._rows[index.row()]
        col = index.column()
        now: datetime = self._now()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return item.priority + (" ⚠" if item.alert else "")
            if col == 1:
                return format_wait(item.waited(now).total_seconds())
            if col == 2:
                motive = (
                    codelist("motive").label(item.motive_code)
                    if item.motive_code
                    else item.motive_label
                )
                extra = self.callback_info.get(item.case_id, "")
                return f"{extra} · {motive}" if extra else motive
            if col == 3:
                return item.commune
            if col == 4:
                return age_sex(item)
            if col == 5:
                # who; the workstation and since when are in the tooltip
                return (item.claim.operator or item.claim.workstation) if item.claim else ""
        if role == Qt.ItemDataRole.ForegroundRole and col == 0:
            return QBrush(QColor(PRIORITY_COLOURS.get(item.priority, "#000000")))
        if role == Qt.ItemDataRole.BackgroundRole and col == WAIT_COLUMN:
            colour = AGE_BACKGROUND[self.limits.state(item.priority, item.waited(now))]
            return QBrush(QColor(colour)) if colour else None
        if role == Qt.ItemDataRole.ToolTipRole:
            state = self.limits.state(item.priority, item.waited(now))
            tip = f"{item.case_id} — {state.label}"
            if item.motive_code or item.motive_label:
                tip += f"\n{item.motive_label or codelist('motive').label(item.motive_code)}"
            if item.commune:
                tip += f"\n{item.commune}"
            if item.claim:
                tip += f"\nPris par {item.claim.describe()}"
            if item.alert:
                tip += f"\n{item.alert}"
            if item.case_id in self.callback_info:
                tip += f"\n{self.callback_info[item.case_id]}"
            return tip
        if role == ItemRole:
            return item
        if role == QueueRole:
            return item.queue.value
        if role == SortRole:
            return item.sort_key()
        return None

    # feeding -----------------------------------------------------------------
    def apply(self, changes: ChangeSet) -> None:
        """Apply a change set (a reset replaces everything)."""
        if changes.reset:
            self.beginResetModel()
            self._rows = list(changes.items)
            self._reindex()
            self.endResetModel()
            return
        for case_id in changes.removed:
            row = self._pos.get(case_id)
            if row is not None:
                self.beginRemoveRows(QModelIndex(), row, row)
                del self._rows[row]
                self._reindex()
                self.endRemoveRows()
        for item in changes.items:
            row = self._pos.get(item.case_id)
            if row is None:
                self.beginInsertRows(QModelIndex(), len(self._rows), len(self._rows))
                self._rows.append(item)
                self._reindex()
                self.endInsertRows()
            elif item.version >= self._rows[row].version:
                self._rows[row] = item
                self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    def set_callback_info(self, case_id: str, text: str) -> None:
        """The callback number and hand-back reason of an ARM queue item."""
        if self.callback_info.get(case_id) == text:
            return
        self.callback_info[case_id] = text
        row = self._pos.get(case_id)
        if row is not None:
            self.dataChanged.emit(self.index(row, MOTIVE_COLUMN), self.index(row, MOTIVE_COLUMN))

    def tick(self) -> None:
        """Waiting times move: refresh that column only."""
        if self._rows:
            self.dataChanged.emit(
                self.index(0, WAIT_COLUMN),
                self.index(len(self._rows) - 1, WAIT_COLUMN),
                [Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.BackgroundRole],
            )

    def _reindex(self) -> None:
        self._pos = {item.case_id: i for i, item in enumerate(self._rows)}

    def items(self) -> list[QueueItem]:
        return list(self._rows)

    def item(self, case_id: str) -> QueueItem | None:
        row = self._pos.get(case_id)
        return self._rows[row] if row is not None else None


class QueueFilter(QSortFilterProxyModel):
    """One queue's rows, in queue order (priority, then wait)."""

    def __init__(self, queue: QueueName) -> None:
        super().__init__()
        self.queue = queue
        self.setSortRole(SortRole)
        self.setDynamicSortFilter(True)

    def filterAcceptsRow(self, source_row: int, source_parent: Index) -> bool:
        model = self.sourceModel()
        return bool(model.index(source_row, 0, source_parent).data(QueueRole) == self.queue.value)

    def lessThan(self, left: Index, right: Index) -> bool:
        a = left.model().index(left.row(), 0).data(SortRole)
        b = right.model().index(right.row(), 0).data(SortRole)
        return bool(a < b)
