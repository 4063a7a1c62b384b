"""The regulators' queue panel: one tab per visible queue, live waiting
times, keyboard actions, and a supervision strip."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import shiboken6
from PySide6.QtCore import QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from sas_desk.models.dossier import EventKind
from sas_desk.models.queue import (
    PRIORITY_RANK,
    ROLE_QUEUES,
    AgeState,
    QueueItem,
    QueueName,
    WaitLimits,
    next_to_take,
    role_may,
)
from sas_desk.models.validation import format_phone
from sas_desk.services.queues.client import QueueClient
from sas_desk.ui.operation import run_long_lived, run_operation
from sas_desk.ui.queue_model import (
    COMMUNE_COLUMN,
    MOTIVE_COLUMN,
    QueueFilter,
    QueueModel,
    format_wait,
)
from sas_desk.ui.widgets import Message, named

log = logging.getLogger("sas_desk.ui.queues")

ACTIONS: tuple[tuple[str, str, str], ...] = (
    ("claim", "Prendre", "Ctrl+P"),
    ("release", "Libérer", "Ctrl+L"),
    ("transfer", "Transférer…", "Ctrl+T"),
    ("request_booking", "Demander un RDV (OSNP)", "Ctrl+B"),
    ("hand_back", "Rendre à l'ARM", "Ctrl+H"),
    ("close", "Clôturer", "Ctrl+K"),
)
SUPERVISOR_ACTIONS: tuple[tuple[str, str, str], ...] = (("reassign", "Réattribuer…", "Ctrl+E"),)
TAKE_NEXT = ("take_next", "Prendre le suivant", "F2")  # the head of my queues, from anywhere
BACK_TO_QUEUE = ""  # reassign choice: no holder, the item waits in its queue again


WATCH_INTERRUPTED_FR = "Suivi des files interrompu, reprise en cours : "


def _inline_bar(
    title: str, fields: list[tuple[QWidget, int]], ok_text: str, on_ok: Callable[[], None]
) -> QWidget:
    """A hidden inline form (not a modal dialog): the title and the first
    fields on one row; the last field (what is typed) with OK and Annuler on
    a row of its own, so that it keeps a usable width in a narrow list."""
    bar_widget = QWidget()
    rows = QVBoxLayout(bar_widget)
    rows.setContentsMargins(0, 0, 0, 0)
    rows.setSpacing(2)
    top = QHBoxLayout()
    top.addWidget(QLabel(title))
    *first, (typed, _stretch) = fields
    for widget, stretch in first:
        top.addWidget(widget, stretch)
    top.addStretch(0 if first else 1)
    rows.addLayout(top)
    bar = QHBoxLayout()
    typed.setMinimumWidth(180)
    bar.addWidget(typed, 1)
    ok = QPushButton(ok_text)
    ok.clicked.connect(on_ok)
    bar.addWidget(ok)
    cancel = QPushButton("Annuler")
    cancel.clicked.connect(bar_widget.hide)
    bar.addWidget(cancel)
    rows.addLayout(bar)
    bar_widget.hide()
    return bar_widget


class _ReasonForm:
    """An inline form that sends one operation, with the reason it requires,
    on the item it was opened for.  What was typed stays when the operation
    is refused (opened again on the same item) and goes once it is done."""

    def __init__(
        self,
        panel: QueuePanel,
        kind: str,
        name: str,
        title: str,
        placeholder: str,
        ok_text: str,
        missing: str,
        fields: Sequence[tuple[QWidget, int]] = (),
        data: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        self._panel = panel
        self.kind = kind
        self._missing = missing
        self._data = data
        self.reason = named(QLineEdit(), name)
        self.reason.setPlaceholderText(placeholder)
        self.reason.returnPressed.connect(self.confirm)
        self.bar = _inline_bar(title, [*fields, (self.reason, 1)], ok_text, self.confirm)
        self.case_id = ""

    def open(self, case_id: str) -> None:
        self.bar.show()
        if case_id != self.case_id:
            self.reason.clear()
        self.reason.setFocus()
        self.case_id = case_id

    def confirm(self) -> None:
        reason = self.reason.text().strip()
        if not reason:
            self._panel.message.show_message(self._missing)
            return
        self.bar.hide()
        self._panel.run(self.kind, self.case_id, reason=reason, **self._data())

    def done(self, case_id: str) -> None:
        if case_id == self.case_id:
            self.reason.clear()


class QueuePanel(QWidget):
    open_dossier = Signal(str)  # case id: show the dossier view
    items_changed = Signal(list)  # case ids another change set touched (open views refresh)
    status = Signal(str)

    def __init__(
        self,
        client: QueueClient,
        queues: tuple[QueueName, ...],
        limits: WaitLimits,
        now: Callable[[], datetime],
        *,
        supervisor: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("QueuePanel")
        self.client = client
        self.queues = queues
        self.limits = limits
        self._now = now
        self.supervisor = supervisor
        self.model = QueueModel(limits, now)
        self._watch: asyncio.Task[None] | None = None
        self._callbacks_read: set[tuple[str, int]] = set()
        self._lookups: set[asyncio.Task[None]] = set()  # callback lookups in flight
        self.busy: set[str] = set()  # case ids with an action in flight

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.strip = named(QLabel(), "supervisionStrip")
        self.strip.setWordWrap(True)
        self.strip.setStyleSheet("background: #eceff1; padding: 4px; border-radius: 3px;")
        layout.addWidget(self.strip)
        self.tabs = named(QTabWidget(), "queueTabs")
        self.views: dict[QueueName, QTableView] = {}
        self._following_head: set[QTableView] = set()  # current row = head, not chosen
        self._setting_head = False
        for queue in queues:
            proxy = QueueFilter(queue)
            proxy.setSourceModel(self.model)
            proxy.sort(0)
            view = named(QTableView(), f"queue_{queue.value}")
            view.setModel(proxy)
            view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
            view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
            view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
            view.verticalHeader().hide()
            # motive and commune share what is left, elided (whole in the
            # tooltip): age/sex and holder stay in view beside an open dossier
            header = view.horizontalHeader()
            header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
            for column in (MOTIVE_COLUMN, COMMUNE_COLUMN):
                header.setSectionResizeMode(column, QHeaderView.ResizeMode.Stretch)
            header.setMinimumSectionSize(36)
            header.setStretchLastSection(False)
            view.setTextElideMode(Qt.TextElideMode.ElideRight)
            view.setWordWrap(False)  # one line a dossier, elided
            if queue is QueueName.ARM:
                # a call-back: the number and why it came back are read whole
                header.setSectionResizeMode(COMMUNE_COLUMN, QHeaderView.ResizeMode.ResizeToContents)
                view.setWordWrap(True)
                view.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
            view.activated.connect(self._activated)
            # the head is selected: Entrée and the action keys work at once
            view.selectionModel().currentChanged.connect(
                lambda *_, v=view: self._on_current_changed(v)
            )
            for signal in (proxy.rowsInserted, proxy.rowsRemoved, proxy.modelReset):
                signal.connect(lambda *_, v=view: self._keep_current(v))
            proxy.layoutChanged.connect(lambda *_, v=view: self._keep_current(v))
            self.tabs.addTab(view, queue.label)
            self.views[queue] = view
        self.tabs.currentChanged.connect(lambda _i: self._follow_tab())
        self._follow_tab()
        layout.addWidget(self.tabs, 1)

        # transfer and hand-back bars (inline, not modal), a reason each
        self.transfer_to = named(QComboBox(), "transferTo")
        for q in QueueName:
            self.transfer_to.addItem(q.label, q.value)
        self.transfer = _ReasonForm(
            self,
            "transfer",
            "transferReason",
            "Transférer vers",
            "Motif du transfert (obligatoire) — Entrée pour valider",
            "Transférer",
            "Indiquez le motif du transfert.",
            fields=[(self.transfer_to, 0)],
            data=lambda: {"to": str(self.transfer_to.currentData())},
        )
        self.hand_back = _ReasonForm(  # what the ARM is to call the patient back for
            self,
            "hand_back",
            "handBackReason",
            "Rendre à l'ARM",
            "Motif du rappel pour l'ARM (obligatoire) — Entrée pour valider",
            "Rendre",
            "Indiquez pourquoi l'ARM doit rappeler le patient.",
        )
        self._reason_forms = {f.kind: f for f in (self.transfer, self.hand_back)}
        self.transfer_bar, self.transfer_reason = self.transfer.bar, self.transfer.reason
        self.hand_back_bar, self.hand_back_reason = self.hand_back.bar, self.hand_back.reason
        layout.addWidget(self.transfer_bar)
        layout.addWidget(self.hand_back_bar)

        # reassign bar (supervisor): the regulators holding claims, or any
        # workstation typed in, or back to the queue with no holder
        self.reassign_to = named(QComboBox(), "reassignTo")
        self.reassign_to.setEditable(True)
        self.reassign_to.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        typed = self.reassign_to.lineEdit()
        assert typed is not None  # editable combo box
        typed.setPlaceholderText("Poste (ex. POSTE-MRL-07)")
        typed.returnPressed.connect(self._confirm_reassign)
        self.reassign_bar = _inline_bar(
            "Réattribuer à", [(self.reassign_to, 1)], "Réattribuer", self._confirm_reassign
        )
        layout.addWidget(self.reassign_bar)
        self._reassign_case = ""

        # two rows of three, the key under the name: the list stays narrow
        # enough to sit beside an open dossier
        buttons = QGridLayout()
        self.action_buttons: dict[str, QPushButton] = {}
        # what the role may do: no booking request from an ARM, no hand-back
        # to itself; reassigning is the supervisor's
        role = client.actor.role
        actions = [a for a in ACTIONS + SUPERVISOR_ACTIONS if role_may(role, a[0])]
        if role_may(role, "claim"):
            actions.insert(0, TAKE_NEXT)
        for i, (kind, text, keys) in enumerate(actions):
            action = QAction(text, self)
            action.setShortcut(QKeySequence(keys))
            action.setShortcutContext(
                Qt.ShortcutContext.WindowShortcut
                if kind == "take_next"
                else Qt.ShortcutContext.WidgetWithChildrenShortcut
            )
            action.triggered.connect(lambda _=False, k=kind: self.act(k))
            self.addAction(action)
            button = named(QPushButton(f"{text}\n{keys}"), f"action_{kind}")
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.clicked.connect(lambda _=False, k=kind: self.act(k))
            buttons.addWidget(button, i // 3, i % 3)
            self.action_buttons[kind] = button
        layout.addLayout(buttons)
        self.message = Message()
        self.message.setObjectName("queueMessage")
        layout.addWidget(self.message)

        self.model.rowsInserted.connect(self._refresh_counts)
        self.model.rowsRemoved.connect(self._refresh_counts)
        self.model.modelReset.connect(self._refresh_counts)
        self.model.dataChanged.connect(lambda *_: self._refresh_strip())
        self._timer = QTimer(self, interval=1000)
        self._timer.timeout.connect(self._tick)
        self._timer.start()
        self._refresh_counts()

    # ------------------------------------------------------------------ watch
    def start(self) -> None:
        """Follow the queues for as long as the panel lives (the runner's
        long-lived way): a watch that fails or ends is started again (it
        begins with a full reset, so the table resyncs) instead of leaving
        a silently frozen table; a bug also reaches the crash dialog."""
        if self._watch is None or self._watch.done():
            self._watch = run_long_lived(
                self._follow,
                name="queue-watch",
                show_error=self.message.show_message,
                error_prefix=WATCH_INTERRUPTED_FR,
                restart=True,
            )

    async def _follow(self) -> None:
        async for changes in self.client.watch(self.queues):
            self.model.apply(changes)
            self._look_up_callbacks(changes.items)
            if not changes.reset:
                self.items_changed.emit([i.case_id for i in changes.items])

    def _look_up_callbacks(self, items: Sequence[QueueItem]) -> None:
        """An ARM queue item is a call to make again: the number to call and
        why it came back are read from the dossier and its log (once per
        version of the item)."""
        for item in items:
            if item.queue is not QueueName.ARM:
                continue
            key = (item.case_id, item.version)
            if key in self._callbacks_read:
                continue
            self._callbacks_read.add(key)
            task = run_operation(
                self._callback_info(item.case_id),
                name="arm-callback-info",
                show_error=self._lookup_error,
                on_success=functools.partial(self._show_callback_info, item.case_id),
            )
            if task is not None:
                self._lookups.add(task)
                task.add_done_callback(self._lookups.discard)

    def _show_callback_info(self, case_id: str, text: str) -> None:
        if shiboken6.isValid(self.strip):  # the answer may come after the panel is gone
            self.model.set_callback_info(case_id, text)

    def _lookup_error(self, text: str) -> None:
        if shiboken6.isValid(self.message):
            self.message.show_message(text)

    async def _callback_info(self, case_id: str) -> str:
        dossier = await self.client.dossier(case_id)
        events = await self.client.events(case_id)
        parts = []
        if dossier is not None and dossier.caller.callback:
            parts.append(f"☎ {format_phone(dossier.caller.callback)}")
        back = [e for e in events if e.kind is EventKind.HANDED_BACK]
        if back:
            reason = str(back[-1].data.get("reason", "")).strip()
            parts.append(f"retour : {reason}" if reason else "retour sans motif")
        return " · ".join(parts)

    def stop(self) -> None:
        """Stop following the queues (safe to call twice, or once Qt is done with us)."""
        if self._watch is not None and not self._watch.done():
            self._watch.cancel()
        for task in list(self._lookups):
            task.cancel()
        if shiboken6.isValid(self._timer):
            self._timer.stop()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.stop()
        super().closeEvent(event)

    # ------------------------------------------------------------------ display
    def _tick(self) -> None:
        self.model.tick()
        self._refresh_strip()

    def _refresh_counts(self, *_: Any) -> None:
        counts = {q: 0 for q in self.queues}
        for item in self.model.items():
            if item.queue in counts:
                counts[item.queue] += 1
        for i, queue in enumerate(self.queues):
            # short labels so a supervisor's five tabs fit; the full name is the tooltip
            self.tabs.setTabText(i, f"{queue.value}  ({counts[queue]})")
            self.tabs.setTabToolTip(i, queue.label)
        self._refresh_strip()

    def _refresh_strip(self) -> None:
        now = self._now()
        items = self.model.items()
        per_queue = ", ".join(
            f"{q.value} {sum(1 for i in items if i.queue is q)}" for q in self.queues
        )
        oldest: dict[str, float] = {}
        late = 0
        for item in items:
            waited = item.waited(now)
            if item.claim is None:
                oldest[item.priority] = max(oldest.get(item.priority, 0.0), waited.total_seconds())
            if self.limits.state(item.priority, waited) is AgeState.LATE and item.claim is None:
                late += 1
        waits = "  ".join(
            f"{p} {format_wait(s)}"
            for p, s in sorted(oldest.items(), key=lambda kv: PRIORITY_RANK.get(kv[0], 9))
        )
        alerts = sum(1 for i in items if i.alert)
        text = f"<b>Files</b> : {per_queue} — <b>plus longue attente</b> : {waits or '—'}"
        text += f" — <b style='color:#b00020'>{late} en retard</b>" if late else " — 0 en retard"
        if alerts:
            text += f" — <b style='color:#b00020'>{alerts} alerte(s) poste muet</b>"
        self.strip.setText(text)

    # ------------------------------------------------------------------ selection
    def current_view(self) -> QTableView | None:
        w = self.tabs.currentWidget()
        return w if isinstance(w, QTableView) else None

    def selected(self) -> QueueItem | None:
        view = self.current_view()
        if view is None:
            return None
        index = view.currentIndex()
        if not index.isValid():
            rows = view.selectionModel().selectedRows() if view.selectionModel() else []
            if not rows:
                return None
            index = rows[0]
        item = index.siblingAtColumn(0).data(Qt.ItemDataRole.UserRole + 1)
        return item if isinstance(item, QueueItem) else None

    def select(self, case_id: str) -> bool:
        for queue, view in self.views.items():
            proxy = view.model()
            for row in range(proxy.rowCount()):
                item = proxy.index(row, 0).data(Qt.ItemDataRole.UserRole + 1)
                if isinstance(item, QueueItem) and item.case_id == case_id:
                    self.tabs.setCurrentIndex(self.queues.index(queue))
                    view.setCurrentIndex(proxy.index(row, 0))
                    view.setFocus()
                    return True
        return False

    def _keep_current(self, view: QTableView) -> None:
        """No row chosen by the operator (start, or the chosen one left):
        the head is current, and stays the head as the queue changes."""
        proxy = view.model()
        current = view.currentIndex()
        if proxy.rowCount() == 0:
            return
        if not current.isValid() or (view in self._following_head and current.row() != 0):
            self._setting_head = True
            try:
                view.setCurrentIndex(proxy.index(0, 0))
            finally:
                self._setting_head = False
            self._following_head.add(view)

    def _on_current_changed(self, view: QTableView) -> None:
        if not self._setting_head:  # the operator moved: their choice stays
            self._following_head.discard(view)

    def _follow_tab(self) -> None:
        """Focus given to the panel goes to the table of the tab shown."""
        view = self.current_view()
        if view is not None:
            had_focus = self.tabs.hasFocus() or any(v.hasFocus() for v in self.views.values())
            self.setFocusProxy(view)
            if had_focus:
                view.setFocus()

    def take_next(self) -> None:
        """Claim the head of my queues (the first free item, all tabs together)."""
        item = next_to_take(self.model.items(), self.queues)
        if item is None:
            self.message.show_message("Aucun dossier en attente dans vos files.", info=True)
            return
        self.select(item.case_id)
        self.run("claim", item.case_id, lease_s=self.client.lease_s)

    def _activated(self, index: QModelIndex) -> None:
        item = index.siblingAtColumn(0).data(Qt.ItemDataRole.UserRole + 1)
        if not isinstance(item, QueueItem):
            return
        mine = item.claim is not None and item.claim.workstation == self.client.actor.workstation
        if mine or self.supervisor:
            self.open_dossier.emit(item.case_id)
        else:
            self.act("claim")

    # ------------------------------------------------------------------ actions
    def act(self, kind: str) -> None:
        if kind == "take_next":
            self.take_next()
            return
        item = self.selected()
        if item is None:
            self.message.show_message("Sélectionnez d'abord un dossier dans la file.")
            return
        form = self._reason_forms.get(kind)
        if form is not None:
            form.open(item.case_id)
            return
        if kind == "reassign":
            self._open_reassign(item)
            return
        data: dict[str, Any] = {}
        if kind == "claim":
            data["lease_s"] = self.client.lease_s
        if kind in ("release", "close"):
            data["reason"] = ""
        self.run(kind, item.case_id, **data)

    def holders(self) -> dict[str, tuple[str, str]]:
        """Workstations holding a claim in the watched queues → (operator, role):
        the regulators at work, to whom a supervisor may hand a dossier."""
        found: dict[str, tuple[str, str]] = {}
        for item in self.model.items():
            if item.claim is not None:
                found[item.claim.workstation] = (item.claim.operator, item.claim.role)
        return dict(sorted(found.items()))

    def _open_reassign(self, item: QueueItem) -> None:
        self._reassign_case = item.case_id
        self.reassign_to.clear()
        self.reassign_to.addItem("Remettre en file (aucun titulaire)", BACK_TO_QUEUE)
        current = item.claim.workstation if item.claim is not None else None
        for workstation, (operator, role) in self.holders().items():
            if workstation != current:
                label = f"{workstation} — {operator or '?'} ({role})"
                self.reassign_to.addItem(label, workstation)
        if self.reassign_to.count() > 1:  # make the supervisor choose
            self.reassign_to.setCurrentIndex(-1)
            self.reassign_to.setEditText("")
        self.reassign_bar.show()
        self.reassign_to.setFocus()

    def _confirm_reassign(self) -> None:
        """Reassign to the chosen holder, to a workstation typed in, or back to
        the queue.  A typed workstation takes the role working the item's queue."""
        text = self.reassign_to.currentText().strip()
        index = self.reassign_to.findText(text) if text else self.reassign_to.currentIndex()
        if not text and index < 0:
            self.message.show_message("Choisissez un poste, ou « Remettre en file ».")
            return
        item = self.model.item(self._reassign_case)
        if item is None:
            self.reassign_bar.hide()
            self.message.show_message("Ce dossier n'est plus dans les files affichées.")
            return
        data: dict[str, Any] = {"lease_s": self.client.lease_s}
        workstation = str(self.reassign_to.itemData(index)) if index >= 0 else text.upper()
        if workstation != BACK_TO_QUEUE:
            operator, role = self.holders().get(workstation, ("", ""))
            if not role:
                role = next(
                    (r for r, qs in ROLE_QUEUES.items() if r != "SUP" and item.queue in qs), ""
                )
            data.update(to_workstation=workstation, to_operator=operator, to_role=role)
        self.reassign_bar.hide()
        self.run("reassign", item.case_id, **data)

    def run(self, kind: str, case_id: str, **data: Any) -> asyncio.Task[None] | None:
        if case_id in self.busy:  # said, never dropped in silence
            self.message.show_message(
                "Une action est déjà en cours sur ce dossier : attendez sa réponse."
            )
            return None
        self.busy.add(case_id)
        op = self.client.operation(kind, case_id, **data)
        return run_operation(
            self.client.submit(op),
            name=f"queue-{kind}",
            show_error=self.message.show_message,
            on_success=lambda item: self._done(kind, case_id, item),
            on_finally=lambda: self.busy.discard(case_id),
        )

    def _done(self, kind: str, case_id: str, item: QueueItem | None) -> None:
        form = self._reason_forms.get(kind)
        if form is not None:
            form.done(case_id)
        labels = {k: t for k, t, _ in ACTIONS + SUPERVISOR_ACTIONS}
        self.message.show_message(
            f"{labels.get(kind, kind).rstrip('…')} : fait ({case_id.rsplit('.', 1)[-1]}).",
            info=True,
        )
        if item is not None:
            from sas_desk.models.queue import ChangeSet

            visible = item.queue in self.queues
            self.model.apply(
                ChangeSet(items=(item,) if visible else (), removed=() if visible else (case_id,))
            )
        if kind == "claim":
            self.open_dossier.emit(case_id)
