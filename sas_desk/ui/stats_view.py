"""The statistics screen (role SUP): a period, a granularity, the report's
table and its volumes as a chart; exports as CSV with the privacy rules.

The report is read by the statistics source (async) and built on a worker
thread; the GUI thread only fills the table model and the chart.  The table
shows the whole report (inside the room); the export is what may leave it
(:func:`sas_desk.models.stats.export_rows`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from PySide6.QtCharts import (
    QBarCategoryAxis,
    QBarSeries,
    QBarSet,
    QChart,
    QChartView,
    QStackedBarSeries,
    QValueAxis,
)
from PySide6.QtCore import (
    QAbstractTableModel,
    QDate,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import (
    QComboBox,
    QDateEdit,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from sas_desk.models.queue import WaitLimits
from sas_desk.models.stats import (
    DEFAULT_TZ,
    THEMES,
    Granularity,
    Report,
    Theme,
    build_report,
    parse_period,
    series_label,
    telephony_rows,
    theme,
    theme_groups,
)
from sas_desk.models.telephony import Call
from sas_desk.services.stats import StatsSource, StatsUnavailable
from sas_desk.services.stats.export import read_calls, write_csv
from sas_desk.ui.operation import run_operation
from sas_desk.ui.widgets import Message, named

log = logging.getLogger("sas_desk.ui.stats")

BRANCH_COLOURS = {"AMU": "#c62828", "SNP": "#1565c0", "DENT": "#2e7d32"}
PALETTE = ("#1565c0", "#ef6c00", "#2e7d32", "#6a1b9a", "#c62828", "#00838f", "#9e9d24", "#5d4037")


def chart_columns(report: Report, chosen: Theme) -> tuple[list[str], bool]:
    """The columns the chart draws for ``chosen``, and whether stacked: the
    theme's first group of counts (they add up), else its delays' p90, else
    its counts (not shares, not delay sample sizes) side by side."""
    groups = theme_groups(report, chosen)
    if groups:
        return list(groups[0][1]), True
    shown = chosen.columns(report.columns)[1:]
    p90 = [c for c in shown if c.endswith("_p90_s")]
    if p90:
        return p90, False
    return [c for c in shown if not c.endswith(("_pct", "_n")) and c != "dossiers"], False


class ReportModel(QAbstractTableModel):
    """Rows = periods, columns = the report's columns (French names)."""

    def __init__(self) -> None:
        super().__init__()
        self.report: Report | None = None
        self.theme = THEMES[0]
        self.columns: list[str] = []  # the theme's columns of the report

    def set_report(self, report: Report | None, chosen: Theme | None = None) -> None:
        self.beginResetModel()
        self.report = report
        if chosen is not None:
            self.theme = chosen
        self.columns = self.theme.columns(report.columns) if report else []
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return len(self.report.rows) if self.report and not parent.isValid() else 0

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return len(self.columns) if self.report and not parent.isValid() else 0

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = 0) -> Any:
        if self.report is None or not index.isValid():
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            value = self.report.rows[index.row()][self.columns[index.column()]]
            return "—" if value is None else str(value)
        if role == Qt.ItemDataRole.TextAlignmentRole and index.column() > 0:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if self.report is None or role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal:
            return self.columns[section]
        return None


class StatsView(QWidget):
    """Period, granularity, report table and volumes chart."""

    loaded = Signal()

    def __init__(
        self,
        source: StatsSource | None,
        limits: WaitLimits,
        now: Callable[[], datetime],
        parent: QWidget | None = None,
        *,
        tz: str = DEFAULT_TZ,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("StatsView")
        self.tz = tz
        self.source = source
        self.limits = limits
        self._now = now
        self.report: Report | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="stats-view"
        )
        self.task: asyncio.Task[None] | None = None

        layout = QVBoxLayout(self)
        bar = QHBoxLayout()
        today = QDate.currentDate()
        self.first = named(QDateEdit(today.addDays(-(today.day() - 1))), "statsFrom")
        self.last = named(QDateEdit(today), "statsTo")
        for edit in (self.first, self.last):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("dd/MM/yyyy")
        self.by = named(QComboBox(), "statsBy")
        for g in (Granularity.DAY, Granularity.HOUR, Granularity.MONTH):
            self.by.addItem(f"par {g.label}", g.value)
        self.theme = named(QComboBox(), "statsTheme")
        for t in THEMES:
            self.theme.addItem(t.label, t.key)
        self.theme.setToolTip("Les indicateurs affichés dans le tableau et le graphique")
        # as narrow as « Issues SNP » whatever the labels: the statistics share
        # the window's right side with the board (every screen fits 1366 px)
        self.theme.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.theme.setMinimumContentsLength(12)
        self.theme.currentIndexChanged.connect(lambda _i: self._show_theme())
        run = named(QPushButton("Calculer"), "statsRun")
        run.clicked.connect(self.run)
        export = named(QPushButton("Exporter (CSV, secret statistique)…"), "statsExport")
        export.clicked.connect(self.export_dialog)
        pdf = named(QPushButton("Rapport PDF…"), "statsPdf")
        pdf.clicked.connect(self.pdf_dialog)
        phone = named(QPushButton("Appels (téléphonie)…"), "statsCalls")
        phone.setToolTip("Fichier CSV presente_le;attente_s;issue : taux de décroché, QS 60 s")
        phone.clicked.connect(self.calls_dialog)
        self.calls: list[Call] | None = None
        bar.addWidget(QLabel("Du"))
        bar.addWidget(self.first)
        bar.addWidget(QLabel("au"))
        bar.addWidget(self.last)
        bar.addWidget(self.by)
        bar.addWidget(run)
        bar.addWidget(QLabel("Afficher"))
        bar.addWidget(self.theme)
        bar.addStretch(1)
        layout.addLayout(bar)
        # what leaves the room on a second row: the screen shares the window's
        # right side with the board, and every screen fits 1366 px
        outputs = QHBoxLayout()
        outputs.addStretch(1)
        outputs.addWidget(phone)
        outputs.addWidget(export)
        outputs.addWidget(pdf)
        layout.addLayout(outputs)
        self.message = Message()
        layout.addWidget(self.message)

        split = QSplitter(Qt.Orientation.Vertical)
        self.chart = QChart()
        self.chart.setTitle("Dossiers par filière")
        self.chart.legend().setAlignment(Qt.AlignmentFlag.AlignBottom)
        self.chart_view = named(QChartView(self.chart), "statsChart")
        self.chart_view.setRenderHint(QPainter.RenderHint.Antialiasing)
        split.addWidget(self.chart_view)
        self.model = ReportModel()
        self.table = named(QTableView(), "statsTable")
        self.table.setModel(self.model)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        split.addWidget(self.table)
        split.setSizes([300, 400])
        layout.addWidget(split, 1)

    def period_text(self) -> tuple[str, str]:
        return (
            self.first.date().toString("yyyy-MM-dd"),
            self.last.date().toString("yyyy-MM-dd"),
        )

    def run(self) -> asyncio.Task[None] | None:
        """The report for the chosen period: a refused period or an
        unreachable store is said, the table shown keeps the previous one."""
        self.task = run_operation(
            self._run(),
            name="stats-report",
            show_error=self.message.show_message,
            on_success=self.show_report,
            progress=self.message,
            label="Calcul en cours…",
        )
        return self.task

    async def _run(self) -> Report:
        by = Granularity(self.by.currentData())
        first, last = self.period_text()
        period = parse_period(first, last, by, self.tz)
        if self.source is None:
            raise StatsUnavailable("Statistiques indisponibles sur ce poste.")
        raw = await self.source.raw(period, by, self.limits)
        if self.calls is not None:
            raw.calls = telephony_rows(self.calls, period, by)
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, build_report, raw, period, by
        )

    def calls_dialog(self) -> None:
        name, _ = QFileDialog.getOpenFileName(
            self, "Appels de la téléphonie", "", "CSV (*.csv *.txt)"
        )
        if name:
            self.load_calls(Path(name))

    def load_calls(self, path: Path) -> asyncio.Task[None] | None:
        """The telephony's call records (read on the worker thread, bounded):
        the next reports carry the telephony columns; a bad file is said and
        the calls already loaded are kept."""

        async def read() -> list[Call]:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, read_calls, path)

        def loaded(calls: list[Call]) -> None:
            self.calls = calls
            self.message.show_message(
                f"{len(calls)} appel(s) lu(s) dans {path.name} : recalculez le rapport.", info=True
            )

        self.task = run_operation(
            read(),
            name="stats-calls",
            show_error=self.message.show_message,
            on_success=loaded,
            progress=self.message,
            label="Lecture des appels…",
        )
        return self.task

    def chosen_theme(self) -> Theme:
        return theme(str(self.theme.currentData() or ""))

    def _show_theme(self) -> None:
        """Another family of indicators: the same report, other columns and
        chart (nothing is read again)."""
        if self.report is not None:
            self.model.set_report(self.report, self.chosen_theme())
            self._chart(self.report)

    def show_report(self, report: Report) -> None:
        self.report = report
        self.model.set_report(report, self.chosen_theme())
        self._chart(report)
        total = sum(int(r["dossiers"] or 0) for r in report.rows)
        self.message.show_message(
            f"{total} dossier(s) du {report.period.first:%d/%m/%Y} au "
            f"{report.period.last:%d/%m/%Y}, {len(report.rows)} ligne(s).",
            info=True,
        )
        self.loaded.emit()

    def _chart(self, report: Report) -> None:
        """The chosen theme's chart: its first group of counts stacked per
        period (the branches for every indicator and the volumes), else its
        delays' p90 or its counts side by side."""
        chosen = self.chosen_theme()
        self.chart.removeAllSeries()
        for axis in self.chart.axes():
            self.chart.removeAxis(axis)
        columns, stacked = chart_columns(report, chosen)
        series = QStackedBarSeries() if stacked else QBarSeries()
        for i, column in enumerate(columns):
            branch = column.removeprefix("filiere_").upper()
            bar_set = QBarSet(series_label(column))
            bar_set.setColor(QColor(BRANCH_COLOURS.get(branch, PALETTE[i % len(PALETTE)])))
            bar_set.append([float(r[column] or 0) for r in report.rows])
            series.append(bar_set)
        self.chart.setTitle(chosen.label if chosen.key != "tout" else "Dossiers par filière")
        self.chart.addSeries(series)
        labels = [_short(str(r["periode"]), report.by) for r in report.rows]
        axis = QBarCategoryAxis()
        axis.append(labels)
        self.chart.addAxis(axis, Qt.AlignmentFlag.AlignBottom)
        series.attachAxis(axis)
        values = QValueAxis()
        values.setLabelFormat("%d")
        if stacked:
            top = max((sum(int(r[c] or 0) for c in columns) for r in report.rows), default=0)
        else:
            top = max((int(r[c] or 0) for r in report.rows for c in columns), default=0)
        values.setRange(0, max(1, top))
        values.applyNiceNumbers()
        self.chart.addAxis(values, Qt.AlignmentFlag.AlignLeft)
        series.attachAxis(values)

    def export_dialog(self) -> None:
        if self.report is None:
            self.message.show_message("Calculez d'abord un rapport.")
            return
        first, last = self.period_text()
        name, _ = QFileDialog.getSaveFileName(
            self, "Exporter", f"sas-{first}-{last}.csv", "CSV (*.csv)"
        )
        if name:
            self.export(Path(name))

    def export(self, path: Path) -> bool:
        """The export rows (privacy rules applied) to ``path``."""
        if self.report is None:
            return False
        try:
            with path.open("w", encoding="utf-8", newline="") as out:
                rows = write_csv(self.report, out)
        except OSError as exc:
            self.message.show_message(f"Export impossible : {path} ({exc.strerror}).")
            return False
        self.message.show_message(f"{rows} ligne(s) exportée(s) dans {path}.", info=True)
        return True

    def pdf_dialog(self) -> None:
        if self.report is None:
            self.message.show_message("Calculez d'abord un rapport.")
            return
        first, last = self.period_text()
        name, _ = QFileDialog.getSaveFileName(
            self, "Rapport PDF", f"sas-rapport-{first}-{last}.pdf", "PDF (*.pdf)"
        )
        if name:
            self.export_pdf(Path(name))

    def export_pdf(self, path: Path) -> asyncio.Task[None] | None:
        """The activity report of the period shown as PDF (the export rows:
        privacy rules applied), written on a worker thread."""
        self.task = run_operation(
            self._pdf(path),
            name="stats-pdf",
            show_error=self.message.show_message,
            on_success=lambda pages: self.message.show_message(
                f"Rapport PDF écrit dans {path} ({pages} page(s)).", info=True
            ),
            progress=self.message,
            label="Rapport PDF en cours…",
        )
        return self.task

    async def _pdf(self, path: Path) -> int:
        from sas_desk.ui.stats_pdf import write_pdf

        detail = self.report
        if detail is None or self.source is None:
            raise StatsUnavailable("Calculez d'abord un rapport.")
        month = Granularity.MONTH
        period = parse_period(
            f"{detail.period.first}", f"{detail.period.last}", month, detail.period.tz
        )
        raw = await self.source.raw(period, month, self.limits)
        if self.calls is not None:
            raw.calls = telephony_rows(self.calls, period, month)
        loop = asyncio.get_running_loop()
        summary = await loop.run_in_executor(self._executor, build_report, raw, period, month)
        made_at = self._now().astimezone(period.zone)
        try:
            return await loop.run_in_executor(
                self._executor, write_pdf, path, summary, detail, "Salle de régulation", made_at
            )
        except OSError as exc:
            raise StatsUnavailable(f"Rapport PDF impossible : {path} ({exc}).") from None

    def stop(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _short(period: str, by: Granularity) -> str:
    """An axis label: ``14h``, ``07`` (day of the month), ``03/25``."""
    if by is Granularity.HOUR:
        return f"{period[11:13]}h"
    if by is Granularity.DAY:
        return period[8:10]
    return f"{period[5:7]}/{period[2:4]}"
