"""« Partager avec… » and the outbound ledger on the dossier (Hub Santé, issue #16).

From an open dossier (Ctrl+Maj+P) a small dialog lists the partner centres of
``[hub] partners``; Entrée shares the dossier as an RS-EDA through the Hub
processor (queued in the durable outbox, sent by the agent).  Under the
dossier's timeline, one line per message shared says where it is: waiting
for the partner's RC-REF, received, refused (the RS-ERROR in French) or
expired (in red: phone the partner).  The lines are read from the Hub store
off the GUI thread when the store says this dossier's ledger changed
(:attr:`AsyncHubStore.listeners`: a message shared, acknowledged, refused,
expired) — no timer — and repainted only when they change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QKeyEvent
from PySide6.QtWidgets import QDialog, QLabel, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from sas_desk.models.dossier import Dossier
from sas_desk.models.hub import ERROR_CODES
from sas_desk.services.hub.appointments import LedgerRow, LocalSharing, Sharing
from sas_desk.services.hub.processor import HubProcessor
from sas_desk.services.hub.store import Outbound
from sas_desk.ui.operation import run_operation
from sas_desk.ui.widgets import Message, named

log = logging.getLogger("sas_desk.ui.share")

SHARED_MODELS = ("RS-EDA", "RS-EDA-MAJ")
ALARM_COLOUR = "#b00020"


def ledger_line(row: Outbound | LedgerRow) -> tuple[str, bool]:
    """What the dossier says about one message shared; True when it is an
    alarm (refused, expired: the operator phones the partner)."""
    what = "Partagé avec" if row.model == "RS-EDA" else "Mise à jour envoyée à"
    head = f"{what} {row.recipient}"
    if row.state in ("queued", "sent", "confirmed"):
        return f"{head} — non reçu par le partenaire", False
    if row.state == "acknowledged":
        seen = " — consulté" if row.step == "CONSULTE" else ""
        return f"{head} — reçu (RC-REF){seen}", False
    if row.state == "refused":
        return f"{head} — refusé par le partenaire", True
    if row.state == "error":
        return f"{head} — refusé : {error_fr(row.error)}", True
    if row.state == "expired":
        return f"{head} — expiré : appelez le partenaire", True
    return f"{head} — {row.state}", False


def error_fr(stored: str) -> str:
    """« 702 WRONG_MESSAGE_SEQUENCE : cause » (as the processor keeps it) in French."""
    code_text, _, cause = stored.partition(" : ")
    number = code_text.split(" ", 1)[0]
    explanation = ERROR_CODES.get(int(number), ("", ""))[1] if number.isdigit() else ""
    if not explanation:
        return stored or "erreur signalée par le Hub"
    return f"{explanation} (erreur {number})" + (f" — {cause}" if cause else "")


def sharing_of(found: HubProcessor | Sharing) -> Sharing:
    """The embedded agent's processor, or already a sharing (room mode)."""
    return LocalSharing(found) if isinstance(found, HubProcessor) else found


async def shared_lines(found: HubProcessor | Sharing, case_id: str) -> list[tuple[str, bool]]:
    rows = await sharing_of(found).ledger(case_id)
    return [ledger_line(r) for r in rows if r.model in SHARED_MODELS]


class LedgerList(QListWidget):
    """The dossier's shared messages, one line each; hidden when none."""

    def __init__(self, source: HubProcessor | Sharing, case_id: str) -> None:
        super().__init__()
        self.setObjectName("hubLedger")
        self.sharing = sharing_of(source)
        self.case_id = case_id
        self.lines: list[tuple[str, bool]] = []
        self._busy = False
        self._read_once = False
        # a partner's answer changed a line: the dossier's timeline shows it too
        self.on_change: Callable[[], object] | None = None
        self.setVisible(False)
        self.setMaximumHeight(90)
        # whole lines, wrapped: the French refusal is what the operator reads
        self.setWordWrap(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setResizeMode(QListWidget.ResizeMode.Adjust)
        self._again = False
        self.reads = 0  # how many times the store was read (tests)
        if isinstance(self.sharing, LocalSharing):
            # embedded: the store says when this dossier's lines changed; in
            # room mode the room's log does (the open view refreshes, and
            # reads its ledger again: MainWindow._refresh_open_views)
            listeners = self.sharing.processor.store.listeners
            changed = self._store_changed
            listeners.append(changed)
            # a closed dossier stops listening
            self.destroyed.connect(lambda *_: _discard(listeners, changed))

    def _store_changed(self, case_ids: frozenset[str]) -> None:
        if self.case_id in case_ids:
            self.poll()

    def poll(self) -> None:
        if self._busy:  # a read is on its way: read once more after it
            self._again = True
            return
        self._busy = True
        self._again = False
        self.reads += 1
        run_operation(
            shared_lines(self.sharing, self.case_id),
            name="hub-ledger",
            show_error=lambda text: log.info("ledger not read"),
            on_success=self.show_lines,
            on_finally=self._done,
        )

    def _done(self) -> None:
        self._busy = False
        if self._again:
            self.poll()

    def show_lines(self, lines: list[tuple[str, bool]]) -> None:
        first, self._read_once = not self._read_once, True
        if lines == self.lines:
            return  # repaint only what changed
        self.lines = lines
        if not first and self.on_change is not None:
            self.on_change()
        self.clear()
        for text, alarm in lines:
            item = QListWidgetItem(text)
            if alarm:
                item.setForeground(QBrush(QColor(ALARM_COLOUR)))
                font = item.font()
                font.setBold(True)
                item.setFont(font)
            self.addItem(item)
        self.setVisible(bool(lines))
        self.scrollToBottom()  # the latest message in view (the list is short)


class ShareDialog(QDialog):
    """« Partager avec… »: ↑/↓ to choose the partner, Entrée to share, Échap to close."""

    shared = Signal(str, str)  # recipient, distributionID

    def __init__(
        self,
        source: HubProcessor | Sharing,
        dossier: Dossier,
        parent: QWidget | None = None,
        *,
        partners: tuple[str, ...] | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("ShareDialog")
        self.setWindowTitle("Partager avec…")
        self.sharing = sharing_of(source)
        self.dossier = dossier
        col = QVBoxLayout(self)
        label = dossier.sender_case_id or dossier.case_id
        if partners is None:  # the embedded agent's settings (no wait)
            assert isinstance(self.sharing, LocalSharing)
            partners = self.sharing.processor.settings.partners
        head = (
            f"Partager le dossier <b>{label}</b> : ↑/↓ pour choisir, Entrée pour envoyer."
            if partners
            else "Aucun partenaire configuré : ajoutez-les dans [hub] partners."
        )
        self.head = named(QLabel(head), "shareHead")
        self.head.setWordWrap(True)
        col.addWidget(self.head)
        self.partners = named(QListWidget(), "partners")
        for p in partners:
            self.partners.addItem(p)
        col.addWidget(self.partners, 1)
        self.message = Message()
        col.addWidget(self.message)
        if partners:
            self.partners.setCurrentRow(0)
        self.partners.setFocus()
        self.resize(420, 260)
        self._sending = False

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.share_selected()
            return
        super().keyPressEvent(event)

    def share_selected(self) -> None:
        item = self.partners.currentItem()
        if item is None or self._sending:
            return
        self._sending = True
        run_operation(
            self._share(item.text()),
            name="share-case",
            show_error=self.message.show_message,
            on_finally=self._sent,
        )

    def _sent(self) -> None:
        self._sending = False

    async def _share(self, recipient: str) -> None:
        try:
            did = await self.sharing.share(self.dossier.case_id, recipient)
        except ValueError as exc:  # French: unknown dossier, bad recipient
            self.message.show_message(f"Dossier non partagé : {exc}")
            return
        self.shared.emit(recipient, did)
        self.accept()


def _discard(listeners: list[Any], listener: Any) -> None:
    if listener in listeners:
        listeners.remove(listener)


def install_ledger(view: Any, processor: HubProcessor | Sharing) -> LedgerList:
    """Put the ledger under a dossier view's timeline and read it once now;
    when a line changes, the view's timeline is read again (acks, errors)."""
    ledger = LedgerList(processor, view.dossier.case_id)
    ledger.on_change = lambda: run_operation(
        view.refresh(), name="refresh-dossier", show_error=view.message.show_message
    )
    view.add_hub_ledger(ledger)
    ledger.poll()
    return ledger


async def open_share(window: Any, view: Any, on_shared: Callable[[str, str], Any]) -> ShareDialog:
    sharing = window.sharing()
    dialog = ShareDialog(sharing, view.dossier, parent=window, partners=await sharing.partners())
    dialog.shared.connect(on_shared)
    dialog.show()
    dialog.activateWindow()
    return dialog
