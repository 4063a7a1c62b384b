"""The day list's model repaints only what a row shows (issue 18's shift
bench: every keystroke of a sheet reached it, and each repaint re-measured
every row of the day, so each call was slower than the one before)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from PySide6.QtCore import QAbstractTableModel, Qt
from PySide6.QtWidgets import QTableView
from pytestqt.qtbot import QtBot

from sas_desk.models.dossier import Branch, Dossier
from sas_desk.ui.day_model import COLUMNS, DayModel

pytestmark = pytest.mark.gui

PARIS = ZoneInfo("Europe/Paris")


def dossier(n: int) -> Dossier:
    return Dossier(
        case_id=f"fr.health.samu690.DRFR1569A26195{n:05d}",
        created_at=datetime(2026, 12, 7, 8, 0, n, tzinfo=PARIS),
        owner="fr.health.samu690",
        motive_code="M03.06",
    )


def test_a_change_the_row_does_not_show_repaints_nothing(qtbot: QtBot) -> None:
    model = DayModel()
    rows = [dossier(n) for n in range(5)]
    model.reset(rows)
    sheet = rows[2]
    row = 2  # newest first: rows 4, 3, 2…
    changes: list[tuple[int, int, int]] = []
    model.dataChanged.connect(lambda a, b, _r: changes.append((a.row(), a.column(), b.column())))
    sheet.caller.callback = "+33612345678"  # typed, not shown in the list
    sheet.patient.age = "P40Y"
    model.upsert(sheet)
    assert changes == []
    sheet.priority = "P1"  # shown: its cell only
    model.upsert(sheet)
    assert changes == [(row, 1, 1)]
    assert model.data(model.index(row, 1)) == "P1"
    assert model.data(model.index(row, 1), Qt.ItemDataRole.ForegroundRole) is not None
    sheet.motive_label = "Fièvre de l'enfant"  # the tooltip only
    model.upsert(sheet)
    assert changes[-1] == (row, 2, 2)
    assert model.data(model.index(row, 2), Qt.ItemDataRole.ToolTipRole) == "Fièvre de l'enfant"


def test_rows_show_what_their_dossiers_hold_after_inserts(qtbot: QtBot) -> None:
    model = DayModel()
    model.reset([dossier(1)])
    newest = dossier(2)
    model.upsert(newest)
    assert model.rowCount() == 2
    assert model.data(model.index(0, 0)) == "08:00:02"
    assert model.data(model.index(0, len(COLUMNS) - 1)) == newest.case_id
    assert model.data(model.index(1, 0)) == "08:00:01"


class Counted(DayModel):
    """The day model, its calls from the view counted."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = {"data": 0, "multiData": 0}

    def data(self, *args: Any) -> Any:
        self.calls["data"] += 1
        return super().data(*args)

    def multiData(self, *args: Any) -> None:
        self.calls["multiData"] += 1
        super().multiData(*args)


class PerRole(Counted):
    """... answering one role at a time (Qt's default)."""

    def multiData(self, *args: Any) -> None:
        self.calls["multiData"] += 1
        QAbstractTableModel.multiData(self, *args)


def test_a_view_asks_python_once_per_cell_and_paints_the_same(qtbot: QtBot) -> None:
    """Painting the list (each new row at its top repaints every row in view,
    at the first key of each call) asks each cell for seven roles at once;
    the answers are :meth:`DayModel.data`'s: the same picture."""
    rows = [dossier(n) for n in range(50)]
    for n, d in enumerate(rows):
        d.priority = ("P0", "P1", "P2", "P3", "NR", "")[n % 6]
        d.branch = (Branch.AMU, Branch.SNP, None)[n % 3]
    pictures = []
    for cls in (Counted, PerRole):
        model = cls()
        model.reset(rows)
        view = QTableView()
        qtbot.addWidget(view)
        view.setModel(model)
        view.resize(700, 500)
        view.show()
        qtbot.waitExposed(view)
        view.grab()
        model.calls.update(data=0, multiData=0)
        model.upsert(dossier(55))  # a new call: its row on top, every row below moves
        pictures.append(view.grab().toImage())
        if cls is Counted:
            assert model.calls["data"] == 0
            assert 0 < model.calls["multiData"] <= 2 * 51 * len(COLUMNS)
        else:  # seven roles, one call each
            assert model.calls["data"] >= 5 * model.calls["multiData"] > 0
    assert pictures[0] == pictures[1]
