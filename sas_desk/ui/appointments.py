"""SAS appointments to attach (Hub Santé RS-SAS-RDV, issue #16).

The platform's appointment message carries no case id: this dialog lists the
room's unattached appointments (time, practitioner, structure, status) and,
when a dossier is open, puts first the ones the matching rule
(:func:`sas_desk.models.appointment.best_matches`) suggests for it.  Enter
attaches the selected appointment to that dossier through the Hub processor
(nothing retyped); the appointment then shows on the dossier's timeline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QKeyEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from sas_desk.models.appointment import (
    Appointment,
    Match,
    best_matches,
    orientation_hints,
)
from sas_desk.models.dossier import Dossier, Event, EventKind
from sas_desk.services.hub.appointments import AppointmentSource, LocalAppointments
from sas_desk.services.hub.processor import HubProcessor
from sas_desk.services.journal.service import Journal
from sas_desk.services.queues.api import BackendUnavailable
from sas_desk.ui.operation import run_operation
from sas_desk.ui.widgets import Message, named

log = logging.getLogger("sas_desk.ui.appointments")

SUGGESTED_FILL = "#fff3c4"
COLUMNS = ("Heure", "Praticien", "Structure", "Statut", "Suggestion")
# what the Hub agent writes on a dossier, shown on its timeline with the room's events
HUB_KINDS = frozenset(
    {
        EventKind.APPOINTMENT,
        EventKind.HUB_UPDATE,
        EventKind.HUB_SHARED,
        EventKind.HUB_ACK,
        EventKind.HUB_ERROR,
        EventKind.HUB_ALARM,
    }
)


async def hub_events(journal: Journal, case_id: str) -> list[Event]:
    """The Hub's events on a dossier (kept in the local journal by the agent)."""
    return [e for e in await journal.events(case_id) if e.kind in HUB_KINDS]


def merge_events(room: list[Event], hub: list[Event]) -> list[Event]:
    return sorted([*room, *hub], key=lambda e: e.at)


def source_of(found: HubProcessor | AppointmentSource) -> AppointmentSource:
    """The embedded agent's processor, or already a source (room mode)."""
    return LocalAppointments(found) if isinstance(found, HubProcessor) else found


async def unattached(found: HubProcessor | AppointmentSource) -> list[Appointment]:
    return await source_of(found).unattached()


class AppointmentsDialog(QDialog):
    """« Rendez-vous SAS à rattacher »: ↑/↓ to choose, Entrée to attach to the
    open dossier, Échap to close."""

    attached = Signal(str, str)  # appointment id, case id

    def __init__(
        self,
        source: HubProcessor | AppointmentSource,
        appointments: list[Appointment],
        *,
        dossier: Dossier | None,
        events: list[Event],
        identities: frozenset[str],
        by: str,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("AppointmentsDialog")
        self.setWindowTitle("Rendez-vous SAS à rattacher")
        self.source = source_of(source)
        self.dossier = dossier
        self.by = by
        hints = orientation_hints(events) if dossier is not None else []
        self.matches: dict[str, Match] = {
            m.appointment_id: m for m in best_matches(appointments, hints, identities)
        }
        order = {aid: i for i, aid in enumerate(self.matches)}
        # suggested first (best first), then the others by time
        self.appointments = sorted(
            appointments,
            key=lambda a: (order.get(a.appointment_id, len(order)), a.start, a.appointment_id),
        )
        col = QVBoxLayout(self)
        if dossier is None:
            head = "Aucun dossier ouvert : ouvrez le dossier pour y rattacher un rendez-vous."
        else:
            label = dossier.sender_case_id or dossier.case_id
            head = f"Rattacher au dossier <b>{label}</b> : ↑/↓ pour choisir, Entrée pour rattacher."
        self.head = named(QLabel(head), "appointmentsHead")
        self.head.setWordWrap(True)
        col.addWidget(self.head)
        self.table = named(QTableWidget(len(self.appointments), len(COLUMNS)), "appointments")
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        for row, a in enumerate(self.appointments):
            m = self.matches.get(a.appointment_id)
            cells = (
                f"{a.start.astimezone():%d/%m %H:%M}",
                a.practitioner_name or "—",
                a.organization_name or "—",
                a.status_label,
                f"★ suggéré : {m.reason_fr}" if m else "",
            )
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, a.appointment_id)
                if m:
                    item.setBackground(QBrush(QColor(SUGGESTED_FILL)))
                self.table.setItem(row, column, item)
        if not self.appointments:
            col.addWidget(named(QLabel("Aucun rendez-vous en attente de rattachement."), "empty"))
        col.addWidget(self.table, 1)
        self.message = Message()
        col.addWidget(self.message)
        if self.appointments:
            self.table.selectRow(0)
        self.table.setFocus()
        self.resize(900, 360)

    def selected_id(self) -> str:
        row = self.table.currentRow()
        item = self.table.item(row, 0) if row >= 0 else None
        return str(item.data(Qt.ItemDataRole.UserRole)) if item is not None else ""

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.attach_selected()
            return
        super().keyPressEvent(event)

    def attach_selected(self) -> None:
        appointment_id = self.selected_id()
        if not appointment_id:
            return
        if self.dossier is None:
            self.message.show_message("Ouvrez d'abord le dossier auquel rattacher ce rendez-vous.")
            return
        case_id = self.dossier.case_id
        run_operation(
            self._attach(appointment_id, case_id),
            name="attach-appointment",
            show_error=self.message.show_message,
        )

    async def _attach(self, appointment_id: str, case_id: str) -> None:
        try:
            await self.source.attach(appointment_id, case_id, self.by)
        except ValueError as exc:  # French: unknown appointment or dossier
            self.message.show_message(f"Rendez-vous non rattaché : {exc}")
            return
        self.attached.emit(appointment_id, case_id)
        self.accept()


async def open_appointments(
    parent: QWidget,
    source: AppointmentSource,
    *,
    dossier: Dossier | None,
    events: list[Event],
    identities: frozenset[str],
    by: str,
    on_attached: Callable[[str, str], Any],
) -> AppointmentsDialog:
    """Read the unattached appointments (off the GUI thread) and show the dialog."""
    dialog = AppointmentsDialog(
        source,
        await source.unattached(),
        dossier=dossier,
        events=events,
        identities=identities,
        by=by,
        parent=parent,
    )
    dialog.attached.connect(on_attached)
    dialog.show()
    dialog.activateWindow()
    return dialog


async def open_for(window: Any, view: Any) -> AppointmentsDialog:
    """From the main window: the open dossier view (or None) gives the
    dossier and its orientation; the logged-in regulator is the window's
    operator (and the room session's); attaching refreshes that view."""
    from sas_desk.ui.dossier_view import DossierView

    dossier: Dossier | None = None
    events: list[Event] = []
    if isinstance(view, DossierView):
        dossier = view.dossier
        events = await view.client.events(dossier.case_id)
    operator = str(window.config.operator)

    def attached(appointment_id: str, case_id: str) -> None:
        window.banner(f"Rendez-vous SAS rattaché au dossier {case_id}.", "info")
        if isinstance(view, DossierView) and view.dossier.case_id == case_id:
            if "Ctrl+Maj+A" in view.message.text():  # the suggestion is answered
                view.message.show_message("")
            if window.hub_processor is not None:  # embedded: the Hub's events are local
                view.extra_events = lambda cid: hub_events(window.journal, cid)
            run_operation(view.refresh(), name="refresh-dossier", show_error=window._error_banner)

    dialog = await open_appointments(
        window,
        window.appointment_source(),
        dossier=dossier,
        events=events,
        identities=identities_of(window),
        by=operator,
        on_attached=attached,
    )
    window.appointments_dialog = dialog
    return dialog


def identities_of(window: Any) -> frozenset[str]:
    """The logged-in regulator: the workstation's operator and, in production,
    the room session's."""
    identities = {str(window.config.operator)}
    info = getattr(window.session, "info", None)
    if info is not None:
        identities.add(str(info.operator))
    return frozenset(identities)


async def hint_on(window: Any, view: Any, events: list[Event]) -> list[Match]:
    """On a dossier just opened: say so when appointments waiting to be
    attached match its orientation (the suggestion, before anyone asks)."""
    try:
        waiting = await window.appointment_source().unattached()
    except BackendUnavailable as exc:  # the room server away: the dossier opens anyway
        log.info("appointments not read: %s", exc.message_fr)
        return []
    found = best_matches(
        waiting,
        orientation_hints(events),
        identities_of(window),
    )
    if found:
        count = len(found)
        view.message.show_message(
            f"{count} rendez-vous SAS reçu{'s' if count > 1 else ''} correspond"
            f"{'ent' if count > 1 else ''} à ce dossier : Ctrl+Maj+A pour le rattacher.",
            info=True,
        )
    return found
