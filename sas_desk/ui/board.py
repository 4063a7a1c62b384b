"""The supervisor's board (role SUP) and the room's wall screen (``--wall``).

The GUI thread only paints: the items come from the queue client's watch,
the last hour's events and today's outcomes from the statistics source
(async), and :func:`sas_desk.models.board.board_figures` runs on a worker
thread; the widget then updates a few fixed tables and two charts.  Acting
from the board (open, reassign, release) sends the same queue operations as
the queue panel, through the same client: the rules stay in the state
machine.  The wall mode is read-only, in large type, without any case id.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import threading
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import shiboken6
from PySide6.QtCharts import (
    QBarCategoryAxis,
    QBarSeries,
    QBarSet,
    QChart,
    QChartView,
    QPieSeries,
    QValueAxis,
)
from PySide6.QtCore import QMargins, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QBrush, QCloseEvent, QColor, QFont, QKeySequence, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from sas_desk.models.board import (
    BOARD_PRIORITIES,
    FLOW_KINDS,
    FLOW_SPAN,
    BoardFigures,
    LateItem,
    RecentEvent,
    StaffRow,
    board_figures,
)
from sas_desk.models.queue import AgeState, QueueItem, QueueName, WaitLimits
from sas_desk.models.stats import Granularity, Period, SnpOutcome, build_report
from sas_desk.services.queues.client import QueueClient
from sas_desk.services.stats import StatsSource, StatsUnavailable
from sas_desk.ui.aio import spawn
from sas_desk.ui.operation import run_long_lived, run_operation
from sas_desk.ui.queue_model import format_wait
from sas_desk.ui.widgets import Message, named

log = logging.getLogger("sas_desk.ui.board")

STATE_COLOURS = {
    AgeState.OK: QColor("#e8f5e9"),
    AgeState.DUE: QColor("#ffe0b2"),
    AgeState.LATE: QColor("#ef9a9a"),
}
EMPTY_COLOUR = QColor("#f5f5f5")
FLOW_COLOURS = ("#1e88e5", "#8e24aa", "#43a047", "#757575")
REFRESH_MS = 2000
OUTCOMES_EVERY_S = 60.0


class Board(QWidget):
    """The room at a glance; ``client`` None = no queues (nothing to watch)."""

    open_dossier = Signal(str)
    painted = Signal()

    def __init__(
        self,
        client: QueueClient | None,
        source: StatsSource | None,
        limits: WaitLimits,
        now: Callable[[], datetime],
        *,
        wall: bool = False,
        tz: str = "Europe/Paris",
        owns_source: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("Board")
        self.client = client
        self.source = source
        self.limits = limits
        self._now = now
        self.wall = wall
        self.tz = tz
        self._owns_source = owns_source
        self.items: dict[str, QueueItem] = {}
        self.events: list[RecentEvent] = []
        self.outcomes: dict[str, int] = {}
        self.figures: BoardFigures | None = None
        self.compute_threads: set[str] = set()  # where the figures were computed
        self.paints = 0
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="board"
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._refreshing = False
        self._dirty = True
        self._outcomes_at = 0.0
        self.busy: set[str] = set()

        chart_font = QFont(self.font())
        if wall:
            font = QFont(self.font())
            font.setPointSizeF(font.pointSizeF() * 1.6)
            self.setFont(font)
            chart_font.setPointSizeF(chart_font.pointSizeF() * 1.15)
        self._chart_font = chart_font

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(6)
        header = QHBoxLayout()
        self.title = named(QLabel("Tableau de salle"), "boardTitle")
        title_font = QFont(self.font())
        title_font.setBold(True)
        title_font.setPointSizeF(title_font.pointSizeF() * 1.25)
        self.title.setFont(title_font)
        header.addWidget(self.title)
        header.addStretch(1)
        self.summary = named(QLabel(""), "boardSummary")
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        header.addWidget(self.summary)
        layout.addLayout(header)

        grid = QGridLayout()
        grid.setSpacing(6)
        # waiting per queue and priority
        self.queues_table = named(
            QTableWidget(len(QueueName), len(BOARD_PRIORITIES) + 1), "boardQueues"
        )
        self.queues_table.setHorizontalHeaderLabels([*BOARD_PRIORITIES, "Pris"])
        self.queues_table.setVerticalHeaderLabels([q.value for q in QueueName])
        for row, queue in enumerate(QueueName):
            self.queues_table.verticalHeaderItem(row).setToolTip(queue.label)
        self._read_only(self.queues_table, selectable=False)
        self.queues_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.queues_table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        grid.addWidget(
            self._boxed("Attente par file et priorité (plus longue attente)", self.queues_table),
            0,
            0,
        )
        # the late items first
        late_columns = ["Alerte", "File", "Prio.", "Attente", "Motif", "Tenu par"]
        if not wall:
            late_columns.append("Dossier")
        self.late_table = named(QTableWidget(0, len(late_columns)), "boardLate")
        self.late_table.setHorizontalHeaderLabels(late_columns)
        self._read_only(self.late_table, selectable=not wall)
        self._columns(self.late_table, stretch=late_columns.index("Motif"))
        self.late_table.doubleClicked.connect(lambda _i: self.act("open"))
        grid.addWidget(self._boxed("En retard d'abord", self.late_table), 0, 1)
        # staff on position
        staff_columns = ["Poste", "Opérateur", "Rôle", "Tient", "Depuis", "Décidés 1 h", "État"]
        if wall:  # large type: the room reads workstations and roles
            staff_columns = ["Poste", "Rôle", "Tient", "Depuis", "Déc. 1 h", "État"]
        self.staff_table = named(QTableWidget(0, len(staff_columns)), "boardStaff")
        self.staff_table.setHorizontalHeaderLabels(staff_columns)
        self._read_only(self.staff_table, selectable=not wall)
        self._columns(self.staff_table, stretch=0 if wall else staff_columns.index("Opérateur"))
        for table in (self.late_table, self.staff_table):
            table.itemSelectionChanged.connect(lambda t=table: self._only_one_selection(t))
        grid.addWidget(self._boxed("Postes en activité", self.staff_table), 1, 0)
        # charts: the last hour's flow, today's SNP outcomes
        charts = QHBoxLayout()
        self.flow_chart = QChart()
        self.flow_chart.setTitle("Flux de la dernière heure")
        self.flow_chart.legend().setAlignment(Qt.AlignmentFlag.AlignBottom)
        self.flow_chart.setMargins(QMargins(2, 2, 2, 2))
        self.flow_series = QBarSeries()
        self.flow_sets: dict[str, QBarSet] = {}
        for (kind, label), colour in zip(FLOW_KINDS, FLOW_COLOURS, strict=True):
            bar_set = QBarSet(label)
            bar_set.setColor(QColor(colour))
            self.flow_sets[kind] = bar_set
            self.flow_series.append(bar_set)
        self.flow_chart.addSeries(self.flow_series)
        self.flow_axis = QBarCategoryAxis()
        self.flow_chart.addAxis(self.flow_axis, Qt.AlignmentFlag.AlignBottom)
        self.flow_series.attachAxis(self.flow_axis)
        self.flow_values = QValueAxis()
        self.flow_values.setLabelFormat("%d")
        self.flow_values.setTickType(QValueAxis.TickType.TicksDynamic)
        self.flow_values.setTickAnchor(0)
        self.flow_chart.addAxis(self.flow_values, Qt.AlignmentFlag.AlignLeft)
        self.flow_series.attachAxis(self.flow_values)
        self.flow_view = named(QChartView(self.flow_chart), "boardFlow")
        self.flow_view.setRenderHint(QPainter.RenderHint.Antialiasing)
        charts.addWidget(self.flow_view, 3)
        self.snp_chart = QChart()
        self.snp_chart.setTitle("SNP aujourd'hui : issues")
        self.snp_chart.legend().hide()  # labels on the slices: a legend would be elided
        self.snp_chart.setMargins(QMargins(2, 2, 2, 2))
        self.snp_series = QPieSeries()
        self.snp_series.setPieSize(0.5)
        self.snp_chart.addSeries(self.snp_series)
        self.snp_view = named(QChartView(self.snp_chart), "boardSnp")
        self.snp_view.setRenderHint(QPainter.RenderHint.Antialiasing)
        charts.addWidget(self.snp_view, 2)
        if wall:  # charts keep their own fonts: a little larger on the wall
            chart_title = QFont(chart_font)
            chart_title.setBold(True)
            for chart in (self.flow_chart, self.snp_chart):
                chart.setTitleFont(chart_title)
                chart.legend().setFont(chart_font)
            for axis in (self.flow_axis, self.flow_values):
                axis.setLabelsFont(chart_font)
        charts_box = QWidget()
        charts_box.setLayout(charts)
        charts.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(charts_box, 1, 1)
        grid.setColumnStretch(0, 5)
        grid.setColumnStretch(1, 6)
        grid.setRowStretch(0, 1)
        grid.setRowStretch(1, 1)
        layout.addLayout(grid, 1)

        # acting from the board (not on the wall)
        self.action_buttons: dict[str, QPushButton] = {}
        self.reassign_to = named(QComboBox(), "boardReassignTo")
        self.message = Message()
        self.message.setObjectName("boardMessage")
        if not wall:
            bar = QHBoxLayout()
            for kind, text, keys in (
                ("open", "Ouvrir", "Return"),
                ("release", "Libérer", "Ctrl+L"),
                ("reassign", "Réattribuer à", "Ctrl+E"),
            ):
                action = QAction(text, self)
                action.setShortcut(QKeySequence(keys))
                action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
                action.triggered.connect(lambda _=False, k=kind: self.act(k))
                self.addAction(action)
                shown = "Entrée" if keys == "Return" else keys
                button = named(QPushButton(f"{text} ({shown})"), f"board_{kind}")
                button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
                button.clicked.connect(lambda _=False, k=kind: self.act(k))
                bar.addWidget(button)
                self.action_buttons[kind] = button
                if kind == "reassign":
                    bar.addWidget(self.reassign_to, 1)
            bar.addWidget(self.message, 2)
            layout.addLayout(bar)
        else:
            self.reassign_to.hide()
            layout.addWidget(self.message)

        self._timer = QTimer(self, interval=REFRESH_MS)
        self._timer.timeout.connect(self._tick)

    # ------------------------------------------------------------------ layout helpers
    @staticmethod
    def _read_only(table: QTableWidget, *, selectable: bool) -> None:
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.verticalHeader().setVisible(table.objectName() == "boardQueues")
        if selectable:
            table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
            table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        else:
            table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
            table.setFocusPolicy(Qt.FocusPolicy.NoFocus)

    @staticmethod
    def _columns(table: QTableWidget, *, stretch: int) -> None:
        """Columns fit their contents; one takes the rest (and elides): no
        horizontal scrolling, on the wall either."""
        header = table.horizontalHeader()
        for col in range(table.columnCount()):
            mode = (
                QHeaderView.ResizeMode.Stretch
                if col == stretch
                else (QHeaderView.ResizeMode.ResizeToContents)
            )
            header.setSectionResizeMode(col, mode)
        table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        table.setWordWrap(False)

    def _boxed(self, title: str, widget: QWidget) -> QWidget:
        box = QWidget()
        inner = QVBoxLayout(box)
        inner.setContentsMargins(0, 0, 0, 0)
        inner.setSpacing(2)
        label = QLabel(f"<b>{title}</b>")
        inner.addWidget(label)
        inner.addWidget(widget, 1)
        return box

    # ------------------------------------------------------------------ life
    def start(self) -> None:
        if self._tasks:
            return
        if self.client is not None:  # a failed watch starts again with a reset
            task = run_long_lived(self._follow, name="board-watch", restart=True)
            if task is not None:
                self._tasks.append(task)
        self._timer.start()
        self._tick()

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        if shiboken6.isValid(self._timer):
            self._timer.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._owns_source and self.source is not None:
            source, self.source = self.source, None
            spawn(source.close(), "board-source-close")

    def closeEvent(self, event: QCloseEvent) -> None:
        self.stop()
        super().closeEvent(event)

    async def _follow(self) -> None:
        """Follow every queue (started again by the runner when it fails)."""
        assert self.client is not None
        async for changes in self.client.watch(tuple(QueueName)):
            if changes.reset:
                self.items = {}
            for item in changes.items:
                self.items[item.case_id] = item
            for case_id in changes.removed:
                self.items.pop(case_id, None)
            self._dirty = True
            self._tick()

    def _tick(self) -> None:
        if self._refreshing:
            self._dirty = True
            return
        self._refreshing = True
        if spawn(self.refresh(), "board-refresh") is None:
            self._refreshing = False

    async def refresh(self) -> None:
        """Read what changed, compute the figures off the GUI thread, paint."""
        try:
            self._dirty = False
            now = self._now()
            loop = asyncio.get_running_loop()
            if self.source is not None:
                try:
                    self.events = await self.source.activity(now - FLOW_SPAN, now)
                    if loop.time() - self._outcomes_at > OUTCOMES_EVERY_S or not self._outcomes_at:
                        self.outcomes = await self._today_outcomes(now)
                        self._outcomes_at = loop.time()
                except StatsUnavailable as exc:
                    self.message.show_message(exc.message_fr)
            items = list(self.items.values())
            events = list(self.events)
            figures = await loop.run_in_executor(self._executor, self._compute, items, events, now)
            if shiboken6.isValid(self):
                self.paint(figures)
        except RuntimeError:  # the executor is shut down: the board is closing
            return
        finally:
            self._refreshing = False

    def _compute(
        self, items: list[QueueItem], events: list[RecentEvent], now: datetime
    ) -> BoardFigures:
        self.compute_threads.add(threading.current_thread().name)
        return board_figures(items, events, now, self.limits)

    async def _today_outcomes(self, now: datetime) -> dict[str, int]:
        assert self.source is not None
        period = Period(_local_day(now, self.tz), _local_day(now, self.tz), self.tz)
        raw = await self.source.raw(period, Granularity.DAY, self.limits)
        report = await asyncio.get_running_loop().run_in_executor(
            self._executor, build_report, raw, period, Granularity.DAY
        )
        row = report.rows[0] if report.rows else {}
        return {o.value: int(row.get(f"snp_{o.value.lower()}") or 0) for o in SnpOutcome}

    # ------------------------------------------------------------------ painting
    def paint(self, fig: BoardFigures) -> None:
        self.figures = fig
        self.paints += 1
        self.title.setText(f"Tableau de salle — {fig.at.astimezone():%H:%M:%S}")
        t = fig.totals
        late = t.get("retard", 0)
        late_text = f"<b style='color:#b00020'>{late} en retard</b>" if late else "0 en retard"
        self.summary.setText(
            f"<b>{t.get('attente', 0)}</b> en attente · <b>{t.get('pris', 0)}</b> pris · "
            f"{late_text} · <b>{t.get('postes', 0)}</b> poste(s)"
        )
        self._paint_queues(fig)
        self._paint_late(fig.late)
        self._paint_staff(fig.staff)
        self._paint_flow(fig)
        self._paint_outcomes()
        self.painted.emit()

    def _paint_queues(self, fig: BoardFigures) -> None:
        table = self.queues_table
        for row, queue in enumerate(QueueName):
            held = 0
            for col, priority in enumerate(BOARD_PRIORITIES):
                cell = fig.cell(queue, priority)
                text, colour = "—", EMPTY_COLOUR
                if cell is not None:
                    held += cell.held
                    if cell.waiting:
                        text = f"{cell.waiting} · {format_wait(cell.longest_s)}"
                        colour = STATE_COLOURS[cell.state]
                self._set(table, row, col, text, colour, centre=True)
            self._set(
                table,
                row,
                len(BOARD_PRIORITIES),
                str(held) if held else "—",
                EMPTY_COLOUR,
                centre=True,
            )

    def _paint_late(self, late: tuple[LateItem, ...]) -> None:
        table = self.late_table
        selected = self.selected_case()
        table.setRowCount(len(late))
        for row, x in enumerate(late):
            colour = (
                STATE_COLOURS[AgeState.LATE]
                if x.reason <= 1 or x.state is AgeState.LATE
                else STATE_COLOURS[AgeState.DUE]
            )
            values = [
                x.reason.label,
                x.queue.value,
                x.priority,
                format_wait(x.waited_s),
                x.motive,
                x.holder,
            ]
            if not self.wall:
                values.append(x.short_id)
            for col, value in enumerate(values):
                item = self._set(table, row, col, value, colour if col == 0 else None)
                item.setData(Qt.ItemDataRole.UserRole, x.case_id if not self.wall else None)
        if selected:
            self._reselect(table, selected)

    def _paint_staff(self, staff: tuple[StaffRow, ...]) -> None:
        table = self.staff_table
        table.setRowCount(len(staff))
        current = self.reassign_to.currentData()
        self.reassign_to.blockSignals(True)
        self.reassign_to.clear()
        self.reassign_to.addItem("Remettre en file (aucun titulaire)", "")
        for row, s in enumerate(staff):
            since = s.since.astimezone().strftime("%H:%M") if s.since else ""
            state = "muet (bail perdu)" if s.silent else "actif"
            values = [
                s.workstation,
                s.operator,
                s.role,
                str(len(s.held)),
                since,
                str(s.decided_last_hour),
                state,
            ]
            if self.wall:
                del values[1]
            for col, value in enumerate(values):
                last = col == len(values) - 1
                colour = STATE_COLOURS[AgeState.LATE] if (s.silent and last) else None
                item = self._set(table, row, col, value, colour)
                held = s.held[0][0] if s.held and not self.wall else None
                item.setData(Qt.ItemDataRole.UserRole, held)
            if not s.silent and s.role != "SUP":
                self.reassign_to.addItem(
                    f"{s.workstation} — {s.operator or '?'} ({s.role})",
                    (s.workstation, s.operator, s.role),
                )
        index = self.reassign_to.findData(current) if current is not None else -1
        self.reassign_to.setCurrentIndex(max(0, index))
        self.reassign_to.blockSignals(False)

    def _paint_flow(self, fig: BoardFigures) -> None:
        labels = [f"{slot.astimezone():%H:%M}" for slot in fig.flow.slots]
        if self.flow_axis.categories() != labels:
            self.flow_axis.setCategories(labels)
        top = 1
        for kind, bar_set in self.flow_sets.items():
            values = fig.flow.series.get(kind, ())
            if bar_set.count() != len(values):
                bar_set.remove(0, bar_set.count())
                bar_set.append([float(v) for v in values])
            else:
                for i, v in enumerate(values):
                    if bar_set.at(i) != v:
                        bar_set.replace(i, float(v))
            top = max(top, *values) if values else top
        step = max(1, math.ceil(top / 5))  # whole numbers on the axis
        self.flow_values.setTickInterval(step)
        self.flow_values.setRange(0, step * math.ceil(top / step))

    def _paint_outcomes(self) -> None:
        shown = {
            o.value: n for o, n in ((o, self.outcomes.get(o.value, 0)) for o in SnpOutcome) if n
        }
        current = {s.property("code"): int(s.value()) for s in self.snp_series.slices()}
        if shown == current:
            return
        self.snp_series.clear()
        for outcome in SnpOutcome:
            n = shown.get(outcome.value)
            if not n:
                continue
            pie = self.snp_series.append(f"{outcome.short} {n}", n)
            pie.setProperty("code", outcome.value)
            pie.setLabelVisible(True)
            pie.setLabelFont(self._chart_font)
        if not shown:
            self.snp_chart.setTitle("SNP aujourd'hui : aucune issue encore")
        else:
            self.snp_chart.setTitle(f"SNP aujourd'hui : {sum(shown.values())} dossier(s)")

    @staticmethod
    def _set(
        table: QTableWidget,
        row: int,
        col: int,
        text: str,
        colour: QColor | None,
        *,
        centre: bool = False,
    ) -> QTableWidgetItem:
        item = table.item(row, col)
        if item is None:
            item = QTableWidgetItem()
            if centre:
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
            table.setItem(row, col, item)
        if item.text() != text:
            item.setText(text)
        brush = QBrush(colour) if colour is not None else QBrush()
        if item.background() != brush:
            item.setBackground(brush)
        return item

    @staticmethod
    def _reselect(table: QTableWidget, case_id: str) -> None:
        for row in range(table.rowCount()):
            item = table.item(row, 0)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == case_id:
                table.selectRow(row)
                return

    # ------------------------------------------------------------------ acting
    def selected_case(self) -> str | None:
        """The case of the selected late item, or the oldest one held by the
        selected workstation."""
        for table in (self.late_table, self.staff_table):
            rows = table.selectionModel().selectedRows()
            if rows:
                item = table.item(rows[0].row(), 0)
                case_id = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
                return str(case_id) if case_id else None
        return None

    def _only_one_selection(self, table: QTableWidget) -> None:
        other = self.staff_table if table is self.late_table else self.late_table
        if table.selectionModel().selectedRows() and other.selectionModel().selectedRows():
            other.clearSelection()

    def act(self, kind: str) -> asyncio.Task[None] | None:
        """Open, release or reassign the selected item: the queue panel's
        operations through the same client (the server checks the rules)."""
        if self.wall:
            return None
        case_id = self.selected_case()
        if case_id is None:
            self.message.show_message("Sélectionnez d'abord un dossier (retard ou poste).")
            return None
        if kind == "open":
            self.open_dossier.emit(case_id)
            return None
        data: dict[str, Any] = {}
        if kind == "release":
            data["reason"] = ""
        elif kind == "reassign":
            assert self.client is not None
            data["lease_s"] = self.client.lease_s
            target = self.reassign_to.currentData()
            if target:
                workstation, operator, role = target
                data.update(to_workstation=workstation, to_operator=operator, to_role=role)
        return self.run(kind, case_id, **data)

    def run(self, kind: str, case_id: str, **data: Any) -> asyncio.Task[None] | None:
        if self.client is None or case_id in self.busy:
            return None
        self.busy.add(case_id)
        client = self.client
        return run_operation(
            client.submit(client.operation(kind, case_id, **data)),
            name=f"board-{kind}",
            show_error=self.message.show_message,
            on_success=lambda item: self._done(kind, case_id, item),
            on_finally=lambda: self.busy.discard(case_id),
        )

    def _done(self, kind: str, case_id: str, item: QueueItem | None) -> None:
        label = {"release": "Libéré", "reassign": "Réattribué"}.get(kind, kind)
        self.message.show_message(f"{label} : {case_id.rsplit('.', 1)[-1]}.", info=True)
        if item is not None:
            self.items[item.case_id] = item
        self._tick()


def _local_day(now: datetime, tz: str) -> date:
    from zoneinfo import ZoneInfo

    return now.astimezone(ZoneInfo(tz)).date()
