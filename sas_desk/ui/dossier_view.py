"""A regulator's view of a dossier from the queues: the ARM's sheet
(read-only), the event timeline, medical notes and the decision form."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from sas_desk.models.codes import codelist
from sas_desk.models.dossier import Dossier, Event, decision_problems
from sas_desk.models.queue import role_may
from sas_desk.services.desk import Desk
from sas_desk.services.geo.resolver import LocationResolver
from sas_desk.services.queues.client import QueueClient
from sas_desk.ui.call_sheet import CallSheet
from sas_desk.ui.operation import run_operation
from sas_desk.ui.widgets import Message, named

log = logging.getLogger("sas_desk.ui.dossier")

RIGHT_WIDTH = 420  # timeline, medical note and decision
HIGHLIGHT_FILL = "#fff3c4"  # an ARM's addition after transmission, in the timeline


def _combo(name: str, list_name: str, *, with_code: bool = True) -> QComboBox:
    """A code list to choose from, nothing chosen at first.  ``with_code``:
    the code is shown before the label (R3, CONSEIL…); otherwise the label
    alone, which then fits the column (the code is in the tooltip)."""
    combo = named(QComboBox(), name)
    combo.addItem("—", "")
    for code in codelist(list_name):
        combo.addItem(f"{code.code} — {code.label}" if with_code else code.label, code.code)
        combo.setItemData(
            combo.count() - 1, f"{code.code} — {code.label}", Qt.ItemDataRole.ToolTipRole
        )
    # long labels must not widen the column (the open list shows them whole)
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(18)
    return combo


class DossierView(QWidget):
    changed = Signal(str)
    search_slots = Signal(object)  # this dossier: open the slot search on it
    dental = Signal(object)  # this (dental) dossier: open the dental view on it

    def __init__(
        self,
        client: QueueClient,
        desk: Desk,
        resolver: LocationResolver,
        dossier: Dossier,
        events: list[Event],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("DossierView")
        self.client = client
        self.dossier = dossier
        # more of the dossier's events kept elsewhere (the Hub agent's, ui/appointments.py)
        self.extra_events: Callable[[str], Awaitable[list[Event]]] | None = None
        outer = QHBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        split = QSplitter(Qt.Orientation.Horizontal)
        self.sheet = CallSheet(desk, resolver, dossier, read_only=True)
        scroll = QScrollArea()  # the sheet may be narrower than its rows of keys
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.sheet)
        split.addWidget(scroll)

        right = QWidget()
        col = QVBoxLayout(right)
        col.addWidget(QLabel("<b>Chronologie du dossier</b>"))
        self.timeline = named(QListWidget(), "timeline")
        # whole lines, wrapped: a hand-back's reason is what the ARM calls back for
        self.timeline.setWordWrap(True)
        self.timeline.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.timeline.setResizeMode(QListWidget.ResizeMode.Adjust)
        col.addWidget(self.timeline, 1)
        self._timeline_col = col
        self.hub_ledger: QWidget | None = None  # messages shared with partners (ui/share.py)

        self.may_decide = role_may(client.actor.role, "decide")
        col.addWidget(QLabel("<b>Note médicale</b>" if self.may_decide else "<b>Note</b>"))
        self.note = named(QLineEdit(), "medicalNote")
        self.note.setPlaceholderText(
            f"{'Note du régulateur' if self.may_decide else 'Note'} — Entrée pour l'ajouter"
        )
        self.note.returnPressed.connect(self.add_note)
        col.addWidget(self.note)

        # the decision is a regulator's: other roles read the dossier and
        # may annotate it, without a form they could not send
        decision = QWidget()
        self.decision_form = decision
        decision_col = QVBoxLayout(decision)
        decision_col.setContentsMargins(0, 0, 0, 0)
        decision_col.addWidget(QLabel("<b>Décision</b>"))
        form = QFormLayout()
        self.care_level = _combo("careLevel", "care_level")
        self.decision_type = _combo("decisionType", "decision_type")  # nothing preselected
        self.resource_type = _combo("resourceType", "resource_type", with_code=False)
        self.orientation_type = _combo("orientationType", "orientation_type", with_code=False)
        self.decision_note = named(QLineEdit(), "decisionNote")
        form.addRow("Niveau de soins", self.care_level)
        form.addRow("Type de décision", self.decision_type)
        form.addRow("Ressource", self.resource_type)
        form.addRow("Orientation", self.orientation_type)
        form.addRow("Commentaire", self.decision_note)
        decision_col.addLayout(form)
        self.decide_button = named(QPushButton("Enregistrer la décision  (Ctrl+Entrée)"), "decide")
        self.decide_button.clicked.connect(self.decide)
        decision_col.addWidget(self.decide_button)
        col.addWidget(decision)
        decision.setHidden(not self.may_decide)
        if not self.may_decide:
            col.addWidget(
                named(
                    QLabel("Décision : réservée au médecin ou au dentiste régulateur."),
                    "noDecision",
                )
            )
        self.slots_button = named(
            QPushButton("Chercher un créneau pour ce patient  (Ctrl+F)"), "searchSlots"
        )
        self.slots_button.clicked.connect(lambda: self.search_slots.emit(self.dossier))
        col.addWidget(self.slots_button)
        self.dental_button = named(
            QPushButton("Dentiste de garde et tri dentaire  (Ctrl+D)"), "dentalButton"
        )
        self.dental_button.clicked.connect(lambda: self.dental.emit(self.dossier))
        col.addWidget(self.dental_button)
        # hidden, not shown: shown before its window is, a child becomes a top-level window
        self.dental_button.setHidden(not dossier.is_dental)  # dental dossiers only
        self.message = Message()
        col.addWidget(self.message)
        split.addWidget(right)
        right.setMaximumWidth(RIGHT_WIDTH + 40)  # the ARM's sheet gets the room
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 0)
        self._scroll = scroll
        split.setSizes([self.sheet.minimumSizeHint().width(), RIGHT_WIDTH])
        outer.addWidget(split)
        for seq in ("Ctrl+Return", "Ctrl+Enter"):
            sc = QShortcut(QKeySequence(seq), right)
            sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            sc.activated.connect(self.decide)
        self.show_events(events)

    def sizeHint(self) -> QSize:
        """Wide enough for the whole sheet (its rows of keys) beside the
        timeline and the decision: the main window makes this room when the
        dossier opens."""
        bar = self._scroll.verticalScrollBar().sizeHint().width()
        width = self.sheet.minimumSizeHint().width() + bar + 2 * self._scroll.frameWidth()
        return QSize(width + RIGHT_WIDTH + 12, super().sizeHint().height())

    def show_events(self, events: list[Event]) -> None:
        self.timeline.clear()
        for e in events:
            who = f"{e.actor.operator} ({e.actor.role}, {e.actor.workstation})"
            detail = ""
            for key in ("queue", "to", "reason", "text", "decision_type", "care_level"):
                value = e.data.get(key)
                if isinstance(value, dict):  # e.g. a reassignment target
                    value = value.get("operator") or value.get("workstation") or ""
                if value:
                    detail += f" — {value}"
            if e.data.get("priority_to"):
                detail += f" — priorité {e.data.get('priority_from', '')} → {e.data['priority_to']}"
            row = QListWidgetItem(f"{e.at.astimezone():%H:%M:%S}  {e.kind.label}  {who}{detail}")
            if e.data.get("highlight"):  # the ARM added something: the holder must see it
                row.setText("★ " + row.text())
                row.setBackground(QColor(HIGHLIGHT_FILL))
                font = row.font()
                font.setBold(True)
                row.setFont(font)
                row.setData(Qt.ItemDataRole.UserRole, "highlight")
            self.timeline.addItem(row)
        self.timeline.scrollToBottom()

    def add_note(self) -> None:
        """Sends the note; it leaves its field only once stored (refused or
        offline, it stays there to send again)."""
        text = self.note.text().strip()
        if not text or self.note.isReadOnly():  # empty, or already on its way
            return
        self.note.setReadOnly(True)
        self._submit("note", text=text)

    def decide(self) -> None:
        if not self.may_decide:  # Ctrl+Entrée with no form shown
            return
        decision: dict[str, Any] = {
            "decision_type": str(self.decision_type.currentData() or ""),
            "resource_type": str(self.resource_type.currentData() or ""),
            "orientation_type": str(self.orientation_type.currentData() or ""),
            "freetext": self.decision_note.text().strip(),
        }
        care = str(self.care_level.currentData() or "")
        problems = decision_problems(care, decision["decision_type"], decision["resource_type"])
        if problems:
            self.message.show_message("Décision non enregistrée : " + " ".join(problems.values()))
            fields = {
                "care_level": self.care_level,
                "decision_type": self.decision_type,
                "resource_type": self.resource_type,
            }
            fields[next(iter(problems))].setFocus()
            return
        self._submit("decide", care_level=care, decisions=[decision], note=decision["freetext"])

    def _submit(self, kind: str, **data: Any) -> asyncio.Task[None] | None:
        return run_operation(
            self._apply(kind, data),
            name=f"dossier-{kind}",
            show_error=self.message.show_message,
            on_finally=lambda: self.note.setReadOnly(False) if kind == "note" else None,
        )

    async def _apply(self, kind: str, data: dict[str, Any]) -> None:
        """Known errors (refused, server down) propagate to the runner, which
        shows them and keeps the form as typed."""
        await self.client.submit(self.client.operation(kind, self.dossier.case_id, **data))
        if kind == "note":
            self.note.setReadOnly(False)
            if self.note.text().strip() == data["text"]:
                self.note.clear()
        self.message.show_message(
            "Décision enregistrée." if kind == "decide" else "Note ajoutée.", info=True
        )
        await self.refresh()
        self.changed.emit(self.dossier.case_id)

    def add_hub_ledger(self, ledger: QWidget) -> None:
        """The Hub's outbound ledger for this dossier, under its timeline."""
        self._timeline_col.insertWidget(self._timeline_col.indexOf(self.timeline) + 1, ledger)
        self.hub_ledger = ledger

    async def refresh(self) -> None:
        dossier = await self.client.dossier(self.dossier.case_id)
        events = await self.client.events(self.dossier.case_id)
        if self.extra_events is not None:
            more = await self.extra_events(self.dossier.case_id)
            events = sorted([*events, *more], key=lambda e: e.at)
        if dossier is not None:
            self.dossier = dossier
            self.sheet.dossier = dossier
            self.sheet._render_notes()
            self.sheet.priority.set_value(dossier.priority)  # an ARM may have raised it
        self.show_events(events)
