"""The slot search panel (OSNP's main screen): where, what, the results as
cards filled while vendors answer, facets and sort on what is loaded, each
vendor's state, the "en sus" volunteers, and booking through the vendor's
page with the outcome recorded on the dossier.

Keyboard: Enter in the form searches; Esc cancels the search in flight; in
the list, ↑/↓ go from card to card, ←/→ pick a slot of the card, Entrée (or
1–9) books it; Alt+1 / Alt+2 switch between the cards and the volunteers,
where C (or Ctrl+C) copies the phone number.

Cards are painted by a delegate over :class:`~sas_desk.ui.offer_model.OfferModel`
(no widget per card nor per slot: a search may bring thousands of slots).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import quote

from PySide6.QtCore import (
    QEvent,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    QSize,
    QSortFilterProxyModel,
    QStringListModel,
    Qt,
    QTimer,
    QUrl,
    Signal,
)
from PySide6.QtGui import (
    QColor,
    QDesktopServices,
    QFont,
    QFontMetrics,
    QGuiApplication,
    QKeyEvent,
    QKeySequence,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QPixmap,
    QResizeEvent,
    QShortcut,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QCompleter,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListView,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from sas_desk.models.dossier import Dossier
from sas_desk.models.errors import KnownError
from sas_desk.models.search import (
    GENERAL_MEDICINE,
    SEARCH_SPECIALTIES,
    Band,
    Facets,
    Offer,
    SearchQuery,
    SearchUpdate,
    VendorState,
    VendorStatus,
    Volunteer,
    Window,
    en_sus_start,
    sas_platform_link,
)
from sas_desk.models.slots import ConsultationMode, Slot, SlotType
from sas_desk.models.validation import Age, ValidationError, parse_position
from sas_desk.services.desk import Desk
from sas_desk.services.geo.radius import FALLBACK_RADIUS_KM, default_radius_km
from sas_desk.services.geo.resolver import LocationResolver, Place
from sas_desk.ui.aio import spawn
from sas_desk.ui.offer_model import ROW_ROLE, OfferModel, OfferRow, SortKey
from sas_desk.ui.widgets import Message, named

log = logging.getLogger("sas_desk.ui.search")

DAYS = ("lun.", "mar.", "mer.", "jeu.", "ven.", "sam.", "dim.")
TYPE_BADGES = {
    SlotType.SNP: ("SNP", "#6a1b9a"),
    SlotType.PUBLIC: ("grand public", "#1565c0"),
    SlotType.PRO: ("PS", "#00695c"),
    SlotType.CPTS: ("CPTS", "#ef6c00"),
}
MODE_SHORT = {
    ConsultationMode.AMB: "cabinet",
    ConsultationMode.HH: "domicile",
    ConsultationMode.VR: "téléconsultation",
}
STATE_COLOURS = {
    VendorState.WAITING: "#757575",
    VendorState.SLOW: "#e65100",
    VendorState.OK: "#2e7d32",
    VendorState.TIMEOUT: "#b00020",
    VendorState.ERROR: "#b00020",
}
#: a vendor still answering when the search failed or was cancelled
INTERRUPTED_FR = "interrompu"
CARD_HEIGHT = 86
LIST_BACKGROUND = "#f4f6f9"
#: cards kept painted (a pixmap each, ≈ 240 KB at 700 px): a screenful and a bit
CARD_CACHE = 48
SLOT_W, SLOT_H, SLOT_GAP = 92, 24, 6
DEFAULT_ORIGIN = "sas"
#: updates arriving closer than this are applied together (one relayout and
#: one repaint of the cards instead of one per vendor batch)
FLUSH_S = 0.1
#: with this many places listed, updates are applied at most every
#: FLUSH_LARGE_S: each one costs the list's layout two calls into the model
#: per row (QListView walks every row, asking the model for its index), so
#: past a thousand places the per-update cost is the number of updates
LARGE_ROWS = 600
FLUSH_LARGE_S = 0.25


class SearchSource(Protocol):
    """What the panel needs of :class:`~sas_desk.services.fhir.service.SlotService`."""

    def search(self, query: SearchQuery) -> Any: ...  # AsyncIterator[SearchUpdate]


@dataclass(frozen=True)
class Booking:
    """A slot the operator opened at its vendor, and what came of it."""

    offer: Offer
    slot: Slot
    url: str
    opened_at: datetime

    @property
    def summary(self) -> str:
        """The orientation, as the dossier's closing reason says it."""
        return (
            f"RDV {self.slot.start:%d/%m %H:%M} — {self.offer.candidate.name}"
            f", {self.offer.address} (via {self.offer.candidate.vendor})"
        )


@dataclass(frozen=True)
class EnSusBooking:
    """An appointment agreed on the phone with an "en sus" volunteer."""

    volunteer: Volunteer
    start: datetime

    @property
    def summary(self) -> str:
        """The orientation, as the dossier's closing reason says it."""
        return (
            f"RDV en sus {self.start:%d/%m %H:%M} — {self.volunteer.name}, {self.volunteer.address}"
        )


def slot_label(start: datetime, now: datetime) -> str:
    """``auj. 14:30``, ``dem. 09:00``, ``mer. 10:15``."""
    days = (start.date() - now.astimezone(start.tzinfo).date()).days
    day = "auj." if days <= 0 else "dem." if days == 1 else DAYS[start.weekday()]
    return f"{day} {start:%H:%M}"


def french_phone(e164: str) -> str:
    """``+33612345678`` → ``06 12 34 56 78`` (others unchanged)."""
    if e164.startswith("+33") and len(e164) == 12 and e164[1:].isdigit():
        national = "0" + e164[3:]
        return " ".join(national[i : i + 2] for i in range(0, 10, 2))
    return e164


def booking_url(url: str, origin: str) -> str:
    """The slot's page with the SAS ``origin`` parameter appended."""
    return f"{url}{'&' if '?' in url else '?'}origin={quote(origin, safe='')}"


# ---------------------------------------------------------------------------- cards


def _slot_rects(rect: QRect, count: int) -> list[QRect]:
    """Where the slot buttons of a card go (as many as fit on the last line)."""
    top = rect.top() + CARD_HEIGHT - SLOT_H - 8
    x = rect.left() + 12
    room = rect.right() - 60  # keeps space for "+N"
    out = []
    for _ in range(count):
        if x + SLOT_W > room:
            break
        out.append(QRect(x, top, SLOT_W, SLOT_H))
        x += SLOT_W + SLOT_GAP
    return out


class CardDelegate(QStyledItemDelegate):
    """Paints a card: who (SAS first), distance, address, modes, type badges,
    vendor, and the next slots as buttons; a click on a slot chooses it."""

    slot_clicked = Signal(int, int)  # row, slot index

    def __init__(self, panel: SlotSearchPanel) -> None:
        super().__init__(panel)
        self.panel = panel
        # card key -> (row, what it was painted for, pixmap): a list repaint
        # (each update, each scroll step) copies the pixmaps of the cards that
        # did not change instead of laying out their text again in Python
        self._cache: dict[str, tuple[OfferRow, tuple[Any, ...], QPixmap]] = {}
        self.painted = 0  # cards laid out and drawn (not copied from the cache; tests)
        base = QFont()
        self.bold = QFont(base)
        self.bold.setBold(True)
        self.bold.setPointSizeF(base.pointSizeF() + 1)
        self.small = QFont(base)
        self.small.setPointSizeF(max(7.0, base.pointSizeF() - 1))

    def sizeHint(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        return QSize(option.rect.width() or 400, CARD_HEIGHT)

    def forget(self) -> None:
        """Drop the painted cards (the list was emptied or re-laid)."""
        self._cache.clear()

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        row: OfferRow | None = index.data(ROW_ROLE)
        if row is None:
            return
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        cursor = self.panel.slot_cursor if selected else -1
        device = painter.device()
        ratio = device.devicePixelRatioF() if device is not None else 1.0
        now = self.panel.now()
        # what the pixmap depends on besides the row itself ("auj."/"dem.": the day)
        stamp = (option.rect.width(), option.rect.height(), selected, cursor, ratio, now.date())
        cached = self._cache.get(row.key)
        if cached is not None and cached[0] is row and cached[1] == stamp:
            painter.drawPixmap(option.rect.topLeft(), cached[2])
            return
        pixmap = QPixmap(
            max(1, round(option.rect.width() * ratio)), max(1, round(option.rect.height() * ratio))
        )
        pixmap.setDevicePixelRatio(ratio)
        pixmap.fill(QColor(LIST_BACKGROUND))
        card = QPainter(pixmap)
        try:
            self._paint_card(
                card, QRect(0, 0, option.rect.width(), option.rect.height()), row, selected, cursor
            )
        finally:
            card.end()
        self.painted += 1
        self._cache.pop(row.key, None)
        self._cache[row.key] = (row, stamp, pixmap)
        while len(self._cache) > CARD_CACHE:  # the oldest painted first
            del self._cache[next(iter(self._cache))]
        painter.drawPixmap(option.rect.topLeft(), pixmap)

    def _paint_card(
        self, painter: QPainter, whole: QRect, row: OfferRow, selected: bool, cursor: int
    ) -> None:
        rect = whole.adjusted(4, 3, -4, -3)
        offer, cand = row.offer, row.offer.candidate
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(QColor("#1565c0" if selected else "#c9ced6"), 2 if selected else 1))
        painter.setBrush(QColor("#eef5ff" if selected else "#ffffff"))
        painter.drawRoundedRect(rect, 6, 6)
        x = rect.left() + 12
        y = rect.top() + 6
        fm_small = QFontMetrics(self.small)
        # line 1: SAS badge, name, type badges | distance
        if cand.sas:
            x = self._badge(painter, x, y, "SAS", "#2e7d32") + 6
        painter.setFont(self.bold)
        painter.setPen(QColor("#111"))
        fm = QFontMetrics(self.bold)
        distance = f"{offer.distance_km:.1f} km".replace(".", ",")
        right = rect.right() - 12 - fm.horizontalAdvance(distance)
        types: list[SlotType] = []
        for s in row.slots:
            for t in s.types:
                if t not in types:
                    types.append(t)
        badges_w = sum(fm_small.horizontalAdvance(TYPE_BADGES[t][0]) + 16 for t in types)
        name = fm.elidedText(
            cand.name, Qt.TextElideMode.ElideRight, max(40, right - x - badges_w - 12)
        )
        painter.drawText(QRect(x, y, right - x, 20), Qt.AlignmentFlag.AlignVCenter, name)
        x += fm.horizontalAdvance(name) + 10
        for t in types:
            text, colour = TYPE_BADGES[t]
            x = self._badge(painter, x, y + 1, text, colour) + 4
        painter.setFont(self.bold)
        painter.setPen(QColor("#111"))
        painter.drawText(
            QRect(right, y, rect.right() - 12 - right, 20),
            Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
            distance,
        )
        # line 2: address · modes · vendor
        y += 23
        modes: list[ConsultationMode] = []
        for s in row.slots:
            for m in s.modes:
                if m not in modes:
                    modes.append(m)
        painter.setFont(self.small)
        painter.setPen(QColor("#555"))
        vendor = f"via {cand.vendor}"
        vendor_w = fm_small.horizontalAdvance(vendor)
        detail = " · ".join(
            p for p in (offer.address, ", ".join(MODE_SHORT[m] for m in modes)) if p
        )
        detail = fm_small.elidedText(
            detail, Qt.TextElideMode.ElideRight, rect.width() - vendor_w - 40
        )
        painter.drawText(
            QRect(rect.left() + 12, y, rect.width() - 24, 18), Qt.AlignmentFlag.AlignVCenter, detail
        )
        painter.setPen(QColor("#888"))
        painter.drawText(
            QRect(rect.left() + 12, y, rect.width() - 24, 18),
            Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
            vendor,
        )
        # line 3: the next slots
        now = self.panel.now()
        rects = _slot_rects(whole, len(row.slots))
        painter.setFont(self.small)
        for i, r in enumerate(rects):
            slot = row.slots[i]
            current = i == cursor
            painter.setPen(QPen(QColor("#1565c0"), 2 if current else 1))
            painter.setBrush(QColor("#1565c0") if current else QColor("#e8f0fe"))
            painter.drawRoundedRect(r, 4, 4)
            painter.setPen(QColor("white") if current else QColor("#0d47a1"))
            painter.drawText(r, Qt.AlignmentFlag.AlignCenter, slot_label(slot.start, now))
        more = len(row.slots) - len(rects)
        if more > 0:
            painter.setPen(QColor("#555"))
            last = rects[-1] if rects else QRect(rect.left(), 0, 0, 0)
            painter.drawText(
                QRect(last.right() + 8, last.top(), 60, SLOT_H),
                Qt.AlignmentFlag.AlignVCenter,
                f"+{more}",
            )
        painter.restore()

    def _badge(self, painter: QPainter, x: int, y: int, text: str, colour: str) -> int:
        painter.setFont(self.small)
        w = QFontMetrics(self.small).horizontalAdvance(text) + 12
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(colour))
        painter.drawRoundedRect(QRect(x, y + 2, w, 16), 8, 8)
        painter.setPen(QColor("white"))
        painter.drawText(QRect(x, y + 2, w, 16), Qt.AlignmentFlag.AlignCenter, text)
        return x + w

    def editorEvent(
        self,
        event: QEvent,
        model: Any,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> bool:
        if event.type() == QEvent.Type.MouseButtonRelease and isinstance(event, QMouseEvent):
            row: OfferRow | None = index.data(ROW_ROLE)
            if row is not None:
                pos = event.position().toPoint()
                for i, r in enumerate(_slot_rects(option.rect, len(row.slots))):
                    if r.contains(pos):
                        self.slot_clicked.emit(index.row(), i)
                        return True
        return super().editorEvent(event, model, option, index)


class CardList(QListView):
    """The cards; ←/→ move the slot cursor, Entrée or 1–9 book."""

    book = Signal(int)  # slot index in the current card
    cursor_moved = Signal(int)  # -1 / +1

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key in (Qt.Key.Key_Left, Qt.Key.Key_Right):
            self.cursor_moved.emit(-1 if key == Qt.Key.Key_Left else 1)
            return
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.book.emit(-1)
            return
        text = event.text()
        if (
            len(text) == 1
            and text in "123456789"
            and not event.modifiers()
            & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier)
        ):
            self.book.emit(int(text) - 1)
            return
        super().keyPressEvent(event)


class VolunteerTable(QTableWidget):
    """Practitioners accepting extra patients; C / Ctrl+C copies the phone,
    Entrée records the appointment agreed with the one selected."""

    copied = Signal(str)
    chosen = Signal(int)  # row: record an appointment with this volunteer

    def __init__(self) -> None:
        super().__init__(0, 4)
        self.setHorizontalHeaderLabels(["Praticien", "Téléphone", "Distance", "Adresse"])
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.verticalHeader().hide()
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.volunteers: list[Volunteer] = []

    def set_volunteers(self, volunteers: Sequence[Volunteer]) -> None:
        self.volunteers = list(volunteers)
        self.setRowCount(len(self.volunteers))
        for i, v in enumerate(self.volunteers):
            for j, text in enumerate(
                (
                    v.name,
                    french_phone(v.phone),
                    f"{v.distance_km:.1f} km".replace(".", ","),
                    v.address,
                )
            ):
                self.setItem(i, j, QTableWidgetItem(text))
        if self.volunteers:
            self.selectRow(0)

    def copy_phone(self) -> str:
        row = self.currentRow()
        if not 0 <= row < len(self.volunteers):
            return ""
        phone = self.volunteers[row].phone
        QGuiApplication.clipboard().setText(phone)
        self.copied.emit(phone)
        return phone

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_C and not event.modifiers() & Qt.KeyboardModifier.AltModifier:
            self.copy_phone()
            return
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            if 0 <= self.currentRow() < len(self.volunteers):
                self.chosen.emit(self.currentRow())
            return
        super().keyPressEvent(event)


class EnSusStrip(QFrame):
    """The time of the appointment agreed on the phone with an "en sus"
    volunteer: Entrée records it, Échap cancels."""

    submitted = Signal(str)
    cancelled = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("enSusStrip")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet("#enSusStrip { background: #e8f4ea; border-radius: 4px; }")
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 4, 8, 4)
        self.label = named(QLabel(), "enSusQuestion")
        self.label.setWordWrap(True)
        row.addWidget(self.label, 1)
        self.time = named(QLineEdit(), "enSusTime")
        self.time.setPlaceholderText("14:30 ou 08/12 09:15")
        self.time.setMaxLength(20)
        self.time.setFixedWidth(150)
        self.time.setAccessibleName("Heure du rendez-vous en sus")
        self.time.returnPressed.connect(lambda: self.submitted.emit(self.time.text()))
        row.addWidget(self.time)
        self.record = named(QPushButton("Enregistrer  [Entrée]"), "enSusRecord")
        self.record.clicked.connect(lambda: self.submitted.emit(self.time.text()))
        row.addWidget(self.record)
        self.error = named(QLabel(), "enSusError")
        self.error.setStyleSheet("color: #b00020;")
        self.error.setWordWrap(True)
        self.error.hide()
        row.addWidget(self.error, 1)
        self.time.textEdited.connect(lambda _text: self.error.hide())  # no stale refusal
        self.hide()

    def ask(self, volunteer: Volunteer) -> None:
        self.label.setText(
            f"Rendez-vous en sus avec <b>{html.escape(volunteer.name)}</b> "
            f"({html.escape(french_phone(volunteer.phone))}) — heure convenue :"
        )
        self.time.clear()
        self.error.hide()
        self.show()
        self.time.setFocus()

    def refuse(self, message_fr: str) -> None:
        self.error.setText(message_fr)
        self.error.show()
        self.time.selectAll()
        self.time.setFocus()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape:
            self.cancelled.emit()
            return
        super().keyPressEvent(event)


class BookingStrip(QFrame):
    """After the vendor page opened: booked (O) or not (N)?"""

    answered = Signal(bool)

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("bookingStrip")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet("#bookingStrip { background: #fff4d6; border-radius: 4px; }")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 4, 8, 4)
        self.label = named(QLabel(), "bookingQuestion")
        self.label.setWordWrap(True)
        row.addWidget(self.label, 1)
        self.yes = named(QPushButton("Rendez-vous pris  [O]"), "bookedYes")
        self.no = named(QPushButton("Non réservé  [N]"), "bookedNo")
        self.copy = named(QPushButton("Copier l'adresse  [C]"), "bookingCopy")
        self.copy.clicked.connect(self.copy_url)
        self.copy.hide()
        self.yes.clicked.connect(lambda: self.answered.emit(True))
        self.no.clicked.connect(lambda: self.answered.emit(False))
        row.addWidget(self.copy)
        row.addWidget(self.yes)
        row.addWidget(self.no)
        self.url = ""
        self.hide()

    def ask(self, text: str, url: str, *, opened: bool) -> None:
        """Ask for the outcome; when no browser could be opened, say so and
        offer the page's address to copy (C) into a browser by hand."""
        self.url = url
        if not opened:
            text = (
                "<b>Aucun navigateur n'a pu être ouvert.</b> Copiez l'adresse de la page "
                f"(C) et ouvrez-la dans un navigateur : <code>{html.escape(url)}</code><br>{text}"
            )
        self.label.setText(text)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.copy.setVisible(not opened)
        self.show()
        self.setFocus()

    def copy_url(self) -> None:
        QGuiApplication.clipboard().setText(self.url)
        self.copy.setText("Adresse copiée  [C]")

    def keyPressEvent(self, event: QKeyEvent) -> None:
        text = event.text().upper()
        if text == "C" and self.copy.isVisible():
            self.copy_url()
            return
        if text == "O":
            self.answered.emit(True)
            return
        if text == "N" or event.key() == Qt.Key.Key_Escape:
            self.answered.emit(False)
            return
        super().keyPressEvent(event)


# ---------------------------------------------------------------------------- status


class ProgressLine(QWidget):
    """A thin progress bar of fixed size that repaints when the event loop
    gets to it (``QProgressBar.setValue`` repaints at once, synchronously:
    inside each search update it also flushed every pending repaint of the
    cards, twice a flush)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFixedSize(180, 10)
        self.setAccessibleName("Progression de la recherche")
        self._min, self._max, self._value = 0, 1, 0

    def minimum(self) -> int:
        return self._min

    def maximum(self) -> int:
        return self._max

    def value(self) -> int:
        return self._value

    def setRange(self, low: int, high: int) -> None:
        if (low, high) != (self._min, self._max):
            self._min, self._max = low, high
            self._value = max(low, min(self._value, high))
            self.update()

    def setValue(self, value: int) -> None:
        value = max(self._min, min(value, self._max))
        if value != self._value:
            self._value = value
            self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor("#dde3ea"))
        painter.drawRoundedRect(self.rect(), 4, 4)
        if self._max <= self._min:  # under way, nothing counted yet
            painter.setBrush(QColor("#90caf9"))
            painter.drawRoundedRect(self.rect(), 4, 4)
        elif self._value > self._min:
            part = (self._value - self._min) / (self._max - self._min)
            bar = QRect(0, 0, max(8, round(self.width() * part)), self.height())
            painter.setBrush(QColor("#1565c0"))
            painter.drawRoundedRect(bar, 4, 4)
        painter.end()


class LabelStrip(QWidget):
    """Labels side by side, of a fixed size set here from the strip's width.

    A widget whose minimum and maximum sizes are equal asks no new layout of
    its parents when its content changes (Qt re-lays out only what may change
    size): a status label updated ten times a second then repaints itself,
    where a label of the layout re-laid the panel, the tab widgets and the
    window (≈ 28 ms each time)."""

    def __init__(
        self, name: str, *, lines: int = 1, spacing: int = 12, wrap_below: int = 0
    ) -> None:
        super().__init__()
        self.setObjectName(name)
        self.labels: list[QLabel] = []
        self._spacing = spacing
        self._lines = lines
        # labels narrower than this get a second line (the strip's height
        # changes with the window's width or the number of labels, never
        # with their text)
        self._wrap_below = wrap_below
        self._line = self.fontMetrics().lineSpacing() + 2
        self.setFixedHeight(self._line * lines)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)

    def add(self, label: QLabel) -> QLabel:
        label.setParent(self)
        label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.labels.append(label)
        self._place()
        label.show()
        return label

    def sizeHint(self) -> QSize:
        return QSize(200, self.height())

    def minimumSizeHint(self) -> QSize:
        return QSize(0, self.height())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._place()

    def _place(self) -> None:
        n = len(self.labels)
        if not n:
            return
        each = max(0, (self.width() - self._spacing * (n - 1)) // n)
        if self._wrap_below:
            lines = 2 if each < self._wrap_below else 1
            if self.height() != self._line * lines:
                self.setFixedHeight(self._line * lines)
        for i, label in enumerate(self.labels):
            label.setFixedSize(each, self.height())
            label.move(i * (each + self._spacing), 0)


# ---------------------------------------------------------------------------- panel


class SlotSearchPanel(QWidget):
    selection_changed = Signal(str)  # offer key ("" = none)
    search_finished = Signal()
    booked = Signal(object)  # Booking, once the operator confirmed it
    en_sus_booked = Signal(object)  # EnSusBooking, once its time was recorded (same .summary)

    def __init__(
        self,
        resolver: LocationResolver,
        *,
        now: Callable[[], datetime],
        desk: Desk | None = None,
        open_url: Callable[[QUrl], object] | None = None,
        origin: str = DEFAULT_ORIGIN,
        show_map: bool = True,
        tiles_url: str = "",
        tiles_cache: str = "",
        simulator_url: str = "",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("SlotSearchPanel")
        self.resolver = resolver
        self.now = now
        self.desk = desk
        self.open_url = open_url or QDesktopServices.openUrl
        self.origin = origin
        self.dossier: Dossier | None = None
        self.place: Place | None = None
        self.slot_cursor = 0
        self.updates = 0  # search updates applied (tests, bench)
        self.last_update: SearchUpdate | None = None
        self.running = False
        self.pending_booking: Booking | None = None
        self.orientation_sent: Any = None  # the desk's task sending the last booking to the room
        self._source: SearchSource | None = None
        self._source_ready = asyncio.Event() if _loop_running() else None
        self._source_note = "Annuaire des praticiens en cours de chargement…"
        self._task: asyncio.Task[None] | None = None
        self._pending: list[SearchUpdate] = []
        self._last_flush = 0.0
        self._geo_task: asyncio.Task[None] | None = None
        self._places: dict[str, Place] = {}
        self._radius_touched = False
        self._default_radius = FALLBACK_RADIUS_KM
        self._who = ""  # the dossier searched for, before the place
        self._show_map = show_map
        config = desk.config if desk is not None else None
        # the base map ([map] source): chosen off the GUI thread when the map is first shown
        self._map_source = "url" if tiles_url else "ign"
        self._map_attribution = ""
        self._map_probe_s = 3.0
        if config is not None and not tiles_url:
            self._map_source = config.map_source
            tiles_url = config.map_tiles_url
            tiles_cache = tiles_cache or str(config.tiles_cache_path)
            self._map_attribution = config.map_attribution
            self._map_probe_s = config.map_probe_timeout
        self._tiles_url = tiles_url
        self._tiles_cache = tiles_cache
        self.simulator_url = simulator_url  # the demo's, for its offline base map
        self.base_map: Any = None  # BaseMap, once chosen
        self._base_task: asyncio.Task[None] | None = None
        self.map: Any = None  # SlotMap, created when the panel is first shown
        self._build()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        outer.setSpacing(4)

        form = QHBoxLayout()
        where = QLabel("&Lieu")
        self.where = named(
            QLineEdit(placeholderText="Adresse, commune, code INSEE ou « lat, lon »"), "searchWhere"
        )
        where.setBuddy(self.where)
        self._where_model = QStringListModel(self)
        self._completer = QCompleter(self._where_model, self)
        self._completer.setCompletionMode(QCompleter.CompletionMode.UnfilteredPopupCompletion)
        self._completer.setMaxVisibleItems(8)
        self.where.setCompleter(self._completer)
        self._completer.activated.connect(self._on_place_chosen)
        self.where.textEdited.connect(self._on_where_edited)
        self.where.returnPressed.connect(self.start_search)
        self._flush_timer = QTimer(self, singleShot=True)
        self._flush_timer.timeout.connect(self._flush)
        self._geo_timer = QTimer(self, singleShot=True, interval=150)
        self._geo_timer.timeout.connect(self._suggest)
        self.where.setMinimumWidth(220)  # an address must stay readable beside the buttons
        form.addWidget(where)
        form.addWidget(self.where, 3)

        self.specialty = named(QComboBox(), "searchSpecialty")
        for code, label in SEARCH_SPECIALTIES.items():
            self.specialty.addItem(label, code)
        spec_label = QLabel("&Spécialité")
        spec_label.setBuddy(self.specialty)
        form.addWidget(spec_label)
        form.addWidget(self.specialty, 1)

        self.radius = named(QSpinBox(), "searchRadius")
        self.radius.setRange(1, 100)
        self.radius.setSuffix(" km")
        self.radius.setValue(FALLBACK_RADIUS_KM)
        self.radius.valueChanged.connect(self._on_radius_edited)
        self.radius.lineEdit().returnPressed.connect(self.start_search)
        radius_label = QLabel("&Rayon")
        radius_label.setBuddy(self.radius)
        form.addWidget(radius_label)
        form.addWidget(self.radius)

        self.window_choice = named(QComboBox(), "searchWindow")
        for choice in Window:
            self.window_choice.addItem(choice.label, choice)
        window_label = QLabel("&Quand")
        window_label.setBuddy(self.window_choice)
        form.addWidget(window_label)
        form.addWidget(self.window_choice)

        self.search_button = named(QPushButton("Rechercher  (Entrée)"), "searchButton")
        self.search_button.setDefault(True)
        self.search_button.clicked.connect(self.start_search)
        self.cancel_button = named(QPushButton("Annuler  (Échap)"), "cancelButton")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        self.platform_button = named(QPushButton("Plateforme SAS  (Ctrl+Maj+P)"), "platformButton")
        self.platform_button.setToolTip(
            "Ouvre la recherche de la plateforme nationale SAS, pré-remplie avec ce lieu"
        )
        self.platform_button.clicked.connect(self.open_platform)
        outer.addLayout(form)

        # the place found, and the national platform's link for it
        place_row = QHBoxLayout()
        self.place_label = named(QLabel(), "searchPlace")
        self.place_label.setWordWrap(True)
        self.place_label.setStyleSheet("color: #555;")
        place_row.addWidget(self.place_label, 1)
        # the buttons on this row: the fields' row stays within a 1366 px screen
        place_row.addWidget(self.search_button)
        place_row.addWidget(self.cancel_button)
        place_row.addWidget(self.platform_button)
        self.message = Message()
        outer.addLayout(place_row)
        outer.addWidget(self.message)

        # facets and sort: applied at once on what is loaded
        facets = QHBoxLayout()
        facets.setSpacing(2)
        self.band_buttons: dict[Band, QToolButton] = {}
        self.type_buttons: dict[SlotType, QToolButton] = {}
        self.mode_buttons: dict[ConsultationMode, QToolButton] = {}
        facets.addWidget(QLabel("Disponible sous"))
        for band in Band:
            self.band_buttons[band] = self._toggle(facets, band.label, f"band_{band.name}")
        facets.addStretch(1)
        outer.addLayout(facets)
        facets = QHBoxLayout()  # types and modes on a row of their own (screen width)
        facets.setSpacing(2)
        facets.addWidget(QLabel("Type"))
        for t in SlotType:
            self.type_buttons[t] = self._toggle(
                facets, TYPE_BADGES[t][0], f"type_{t.value}", t.label
            )
        facets.addSpacing(10)
        facets.addWidget(QLabel("Mode"))
        for m in ConsultationMode:
            self.mode_buttons[m] = self._toggle(facets, MODE_SHORT[m], f"mode_{m.value}", m.label)
        facets.addStretch(1)
        outer.addLayout(facets)
        self.sort = named(QComboBox(), "searchSort")
        for key in SortKey:
            self.sort.addItem(key.label, key)
        self.sort.currentIndexChanged.connect(self._apply_view)
        sort_label = QLabel("&Tri")
        sort_label.setBuddy(self.sort)

        # the status and the vendors' states change ten times a second while a
        # search runs: labels of fixed size (see LabelStrip), reused search after search
        status = QHBoxLayout()
        self.progress = named(ProgressLine(), "searchProgress")
        self.summary_strip = LabelStrip("searchSummaryStrip", lines=2)
        self.summary = self.summary_strip.add(
            named(QLabel("Saisissez un lieu puis Entrée."), "searchSummary")
        )
        self.summary.setWordWrap(True)
        status.addWidget(self.progress)
        status.addWidget(self.summary_strip, 1)
        status.addWidget(sort_label)
        status.addWidget(self.sort)
        outer.addLayout(status)
        self.vendor_row = LabelStrip("vendorRow", lines=1, wrap_below=260)
        self.vendor_labels: dict[str, QLabel] = {}
        outer.addWidget(self.vendor_row)
        self.vendor_errors = named(QLabel(), "vendorErrors")
        self.vendor_errors.setStyleSheet("color: #b00020;")
        self.vendor_errors.setWordWrap(True)
        self.vendor_errors.hide()
        outer.addWidget(self.vendor_errors)
        self.notes = named(QLabel(), "searchNotes")
        self.notes.setWordWrap(True)
        self.notes.setStyleSheet("color: #b35c00;")
        self.notes.hide()
        outer.addWidget(self.notes)

        self.booking = BookingStrip()
        self.booking.answered.connect(self._on_booking_answer)
        outer.addWidget(self.booking)
        self.en_sus = EnSusStrip()
        self.en_sus.submitted.connect(self._on_en_sus_time)
        self.en_sus.cancelled.connect(self._close_en_sus)
        outer.addWidget(self.en_sus)
        self.en_sus_volunteer: Volunteer | None = None

        self.split = QSplitter(Qt.Orientation.Horizontal)
        self.tabs = named(QTabWidget(), "searchTabs")
        self.model = OfferModel(self.now)
        # the list sees the model through a pass-through proxy (no sort, no
        # filter: its rows are the model's rows): QListView asks its model for
        # every row's index at each layout, and QAbstractListModel.index asks
        # our Python rowCount each time — two calls per row, ≈ 3,600 per
        # layout of 1,800 places; the proxy answers them in C++ (10 calls
        # into Python per layout, an insertion 51 -> 5 ms at 1,800 places)
        self.rows = QSortFilterProxyModel(self)
        self.rows.setSourceModel(self.model)
        self.list = named(CardList(), "offerList")
        self.list.setModel(self.rows)
        self.delegate = CardDelegate(self)
        self.model.modelReset.connect(self.delegate.forget)
        self.list.setItemDelegate(self.delegate)
        self.list.setUniformItemSizes(True)
        self.list.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setMouseTracking(False)
        self.list.setStyleSheet(f"QListView {{ background: {LIST_BACKGROUND}; border: none; }}")
        self.list.selectionModel().currentChanged.connect(self._on_current)
        self.delegate.slot_clicked.connect(self._on_slot_clicked)
        self.list.book.connect(self._book_current)
        self.list.cursor_moved.connect(self._move_cursor)
        self.tabs.addTab(self.list, "Créneaux")
        self.volunteers = named(VolunteerTable(), "volunteers")
        self.volunteers.copied.connect(
            lambda phone: self.message.show_message(f"Numéro copié : {phone}", info=True)
        )
        self.volunteers.chosen.connect(self._ask_en_sus)
        self.tabs.addTab(self.volunteers, "En sus")
        self.split.addWidget(self.tabs)
        self.map_holder = QWidget()
        QVBoxLayout(self.map_holder).setContentsMargins(0, 0, 0, 0)
        self.split.addWidget(self.map_holder)
        self.split.setStretchFactor(0, 3)
        self.split.setStretchFactor(1, 2)
        self.split.setSizes([620, 420])
        if not self._show_map:
            self.map_holder.hide()
        outer.addWidget(self.split, 1)

        for seq, slot in (
            ("Esc", self.cancel),
            ("Alt+1", lambda: self._show_tab(0)),
            ("Alt+2", lambda: self._show_tab(1)),
            ("Ctrl+L", self.where.setFocus),
            ("Ctrl+Shift+P", self.open_platform),
        ):
            sc = QShortcut(QKeySequence(seq), self)
            sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            sc.activated.connect(slot)
        copy = QShortcut(QKeySequence.StandardKey.Copy, self.volunteers)
        copy.setContext(Qt.ShortcutContext.WidgetShortcut)
        copy.activated.connect(self.volunteers.copy_phone)
        self.setTabOrder(self.where, self.specialty)
        self.setTabOrder(self.specialty, self.radius)
        self.setTabOrder(self.radius, self.search_button)
        self.setTabOrder(self.search_button, self.list)

    def _toggle(self, row: QHBoxLayout, text: str, name: str, tip: str = "") -> QToolButton:
        button = named(QToolButton(), name)
        button.setText(text)
        button.setCheckable(True)
        button.setToolTip(tip or text)
        button.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        button.toggled.connect(self._apply_view)
        row.addWidget(button)
        return button

    def _show_tab(self, i: int) -> None:
        self.tabs.setCurrentIndex(i)
        (self.list if i == 0 else self.volunteers).setFocus()

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if self._show_map and self.map is None:
            QTimer.singleShot(0, self._create_map)

    def _create_map(self) -> None:
        if self.map is not None or not self._show_map:
            return
        if self.base_map is None:
            if self._base_task is None:
                self._base_task = spawn(self._choose_base_map(), "base-map")
            if self._base_task is not None:
                return  # the map comes when its base is chosen
            from sas_desk.services.geo.basemap import BaseMap

            self.base_map = BaseMap("plain", note="Fond de carte non chargé.")
        from sas_desk.ui.slot_map import SlotMap

        self.map = SlotMap(base=self.base_map, cache_dir=self._tiles_cache)
        self.map.setObjectName("slotMap")
        self.map.picked.connect(self.select_key)
        layout = self.map_holder.layout()
        assert layout is not None
        layout.addWidget(self.map)
        self._sync_map(full=True)

    async def _choose_base_map(self) -> None:
        from sas_desk.services.geo.basemap import choose_base_map

        while True:
            simulator_url = self.simulator_url
            base = await choose_base_map(
                self._map_source,
                tiles_url=self._tiles_url,
                attribution=self._map_attribution,
                simulator_url=simulator_url,
                timeout=self._map_probe_s,
            )
            # the demo's simulator started meanwhile: its map may serve
            if base.kind != "plain" or simulator_url == self.simulator_url:
                break
        self.base_map = base
        self._base_task = None
        self._create_map()

    def set_simulator_url(self, url: str) -> None:
        """The demo's simulator, started after the window: a map drawn on a
        plain background for want of it is drawn again over its base map."""
        self.simulator_url = url
        current = self.map
        if current is None or current.base.kind != "plain" or self._map_source == "aucun":
            return
        self.map = None
        self.base_map = None
        current.setParent(None)
        current.deleteLater()
        self._create_map()

    # ------------------------------------------------------------------ source
    def set_source(self, source: SearchSource | None, note: str = "") -> None:
        """The slot service, once its directory is usable (``None`` with a
        French note while it is not)."""
        self._source = source
        self._source_note = note
        if self._source_ready is None and _loop_running():
            self._source_ready = asyncio.Event()
        if self._source_ready is not None:
            if source is not None:
                self._source_ready.set()
            else:
                self._source_ready.clear()
        if note and not self.running:
            self.summary.setText(note)

    # ------------------------------------------------------------------ place
    def prefill(self, dossier: Dossier) -> None:
        """From a dossier: its location and commune; the orientation it books
        is recorded on it."""
        self.dossier = dossier
        loc = dossier.location
        if loc.lat is not None and loc.lon is not None:
            label = loc.address or (f"{loc.city} ({loc.postcode})" if loc.city else "")
            place = Place(
                label=label or f"{loc.lat:.5f}, {loc.lon:.5f}",
                kind="housenumber" if loc.address else "municipality",
                city=loc.city,
                insee=loc.insee,
                postcode=loc.postcode,
                lat=loc.lat,
                lon=loc.lon,
            )
            self.where.setText(place.label)
            self._set_place(place)
        elif loc.insee or loc.city:
            exact = self.resolver.exact_commune(loc.insee or loc.city)
            if exact is not None:
                self.where.setText(exact.label)
                self._set_place(exact)
        who = f"Dossier {dossier.sender_case_id or dossier.case_id}"
        if dossier.patient.age:
            try:
                age = Age.from_iso(dossier.patient.age).display()
            except ValidationError:
                age = dossier.patient.age
            who += f" — patient de {age}"
        self._who = who
        if self.place is not None:
            self._render_place_label()
        else:
            self.place_label.setText(who)

    def set_place(self, place: Place) -> None:
        self.where.setText(place.label)
        self._set_place(place)

    def _set_place(self, place: Place) -> None:
        self.place = place
        code = place.insee or place.postcode
        if code:
            try:
                radius = default_radius_km(code)
            except ValueError:
                radius = FALLBACK_RADIUS_KM
            self.radius.blockSignals(True)
            self.radius.setValue(radius)
            self.radius.blockSignals(False)
            self._radius_touched = False
        self._default_radius = self.radius.value()
        self._render_place_label()
        self.message.show_message("")
        if self.map is not None:
            self.map.set_patient(place.lat, place.lon, self.radius.value())

    def _render_place_label(self) -> None:
        """The place, and the radius searched beside the département's
        default (one figure only when they agree)."""
        place = self.place
        if place is None:
            return
        where = f"{place.city} ({place.insee})" if place.insee else "cette position"
        at = f"{place.lat:.5f}, {place.lon:.5f}"
        radius = self.radius.value()
        default = self._default_radius
        said = (
            f"rayon par défaut de {where} : {radius} km"
            if radius == default
            else f"rayon choisi : {radius} km (par défaut à {where} : {default} km)"
        )
        text = f"{place.label}{'' if place.label == at else ' — ' + at} — {said}"
        self.place_label.setText(f"{self._who} — {text}" if self._who else text)

    def _on_radius_edited(self, value: int) -> None:
        self._radius_touched = True
        self._render_place_label()
        if self.map is not None and self.place is not None:
            self.map.set_patient(self.place.lat, self.place.lon, value)

    def _on_where_edited(self, text: str) -> None:
        self.place = None
        try:
            pos = parse_position(text)
        except ValidationError as exc:
            self.message.show_message(exc.message)
            return
        if pos is not None:
            commune = self.resolver.nearest_commune(pos.lat, pos.lon)
            self._set_place(
                Place(
                    label=f"{pos.lat:.5f}, {pos.lon:.5f}",
                    kind="position",
                    city=commune.name if commune else "",
                    insee=commune.insee if commune else "",
                    postcode=commune.postcode if commune else "",
                    lat=pos.lat,
                    lon=pos.lon,
                )
            )
            return
        exact = self.resolver.exact_commune(text)
        if exact is not None:
            self._set_place(exact)
        self._geo_timer.start()

    def _on_place_chosen(self, text: str) -> None:
        place = self._places.get(text)
        if place is not None:
            self.where.setText(text)
            self._set_place(place)

    def _suggest(self) -> None:
        text = self.where.text()
        local = self.resolver.local_suggestions(text)
        self._show_places(local)
        if self._geo_task is not None and not self._geo_task.done():
            self._geo_task.cancel()
        if len(text.strip()) >= 3:
            self._geo_task = spawn(self._remote(text, local), "search-geocode")

    async def _remote(self, text: str, local: list[Place]) -> None:
        places, error = await self.resolver.remote_suggestions(text)
        if self.where.text() != text:
            return
        if error:
            self.message.show_message(
                error + " Tapez la commune ou collez des coordonnées.", warn=True
            )
        seen = {p.label for p in places}
        self._show_places(places + [p for p in local if p.label not in seen])

    def _show_places(self, places: list[Place]) -> None:
        self._places = {p.label: p for p in places}
        labels = [p.label for p in places]
        if labels != self._where_model.stringList():
            self._where_model.setStringList(labels)
        popup = self._completer.popup()
        if labels and self.where.hasFocus() and (popup is None or not popup.isVisible()):
            self._completer.complete()

    # ------------------------------------------------------------------ search
    def query(self) -> SearchQuery | None:
        if self.place is None:
            text = self.where.text().strip()
            place = self._places.get(text) or self.resolver.exact_commune(text)
            if place is None and self._places:
                place = next(iter(self._places.values()))
            if place is None:
                self.message.show_message(
                    "Lieu non reconnu : choisissez une suggestion, une commune ou collez « lat, lon »."
                )
                self.where.setFocus()
                return None
            self.where.setText(place.label)
            self._set_place(place)
        assert self.place is not None
        choice = self.window_choice.currentData()
        start, end = (choice if isinstance(choice, Window) else Window.DEFAULT).bounds(self.now())
        return SearchQuery(
            self.place.lat,
            self.place.lon,
            float(self.radius.value()),
            str(self.specialty.currentData() or GENERAL_MEDICINE),
            start=start,
            end=end,
        )

    def platform_link(self) -> str | None:
        """The national platform's contextual search (INT_L01) for the
        dossier's place, else the place chosen here; ``None`` without one."""
        config = self.desk.config if self.desk is not None else None
        base = config.sas_platform_url if config is not None else "https://sas.sante.fr"
        origin = (config.sas_origin or config.owner) if config is not None else "sas-desk"
        specialty = str(self.specialty.currentData() or GENERAL_MEDICINE)
        loc = self.dossier.location if self.dossier is not None else None
        if loc is not None and (loc.insee or loc.city):
            street = " ".join(p for p in (loc.way_type, loc.way_name) if p)
            return sas_platform_link(
                base,
                origin,
                specialty=specialty,
                street_number=loc.number,
                street_name=street,
                insee=loc.insee,
                city=loc.city,
            )
        if self.place is not None:
            return sas_platform_link(
                base,
                origin,
                specialty=specialty,
                street_number=self.place.housenumber or "",
                street_name=self.place.street or "",
                insee=self.place.insee,
                city=self.place.city,
            )
        return None

    def open_platform(self) -> None:
        link = self.platform_link()
        if link is None:
            self.message.show_message("Choisissez d'abord un lieu pour la plateforme SAS.")
            return
        log.info("opening the SAS platform's contextual search")
        if self.open_url(QUrl(link)) is False:
            QGuiApplication.clipboard().setText(link)
            self.message.show_message(
                "Aucun navigateur n'a pu être ouvert : l'adresse de la plateforme SAS est "
                "copiée, collez-la dans un navigateur.",
                warn=True,
            )
            return
        self.message.show_message(
            "Recherche ouverte dans la plateforme SAS (navigateur).", info=True
        )

    def start_search(self) -> asyncio.Task[None] | None:
        """Search around the place; a search in flight is cancelled first."""
        popup = self._completer.popup()
        if popup is not None and popup.isVisible():
            popup.hide()
        query = self.query()
        if query is None:
            return None
        self.cancel(quiet=True)
        self._reset_results()
        if self.map is not None:
            self.map.set_patient(query.lat, query.lon, query.radius_km)
        self._task = spawn(self._run(query), "slot-search")
        return self._task

    def cancel(self, quiet: bool = False) -> None:
        if self.pending_booking is not None and self.booking.isVisible() and not quiet:
            self._on_booking_answer(False)
            return
        if self.en_sus.isVisible() and not quiet:  # Échap leaves the en sus time first
            self._close_en_sus()
            return
        if self._task is not None and not self._task.done():
            # the task may take a while to unwind (requests being torn down):
            # the panel is free at once, and ignores whatever it still says
            self._task.cancel()
            self._flush()  # what came so far stays on screen
            self.running = False
            self.cancel_button.setEnabled(False)
            if not quiet:
                self._finish(
                    f"Recherche annulée — {self.model.rowCount()} lieux déjà reçus restent affichés.",
                    ended=True,
                )
        self._task = None

    def _reset_results(self) -> None:
        self._flush_timer.stop()
        self._pending = []
        self._last_flush = 0.0
        self.model.clear()
        self.updates = 0
        self.last_update = None
        self.slot_cursor = 0
        if self.volunteers.volunteers:
            self.volunteers.set_volunteers([])
        self.en_sus_volunteer = None  # a new search: the volunteers change
        self.en_sus.hide()
        if self.tabs.tabText(1) != "En sus":
            self.tabs.setTabText(1, "En sus")
        self.notes.hide()
        self.vendor_errors.hide()
        for name, label in self.vendor_labels.items():  # kept: no relayout
            label.setText(self._vendor_text(name, None))
            label.setToolTip("")
        self.progress.setRange(0, 0)
        if self.map is not None:
            self.map.set_offers([])

    async def _run(self, query: SearchQuery) -> None:
        self.running = True
        self.cancel_button.setEnabled(True)
        self._started = asyncio.get_running_loop().time()
        try:
            if self._source is None:
                self.summary.setText(self._source_note or "Recherche de créneaux indisponible.")
                if self._source_ready is None:
                    self._source_ready = asyncio.Event()
                await self._source_ready.wait()
            assert self._source is not None
            self.summary.setText("Recherche en cours…")
            log.info(
                "slot search from the panel: radius %.0f km, specialty %s",
                query.radius_km,
                query.specialty,
            )
            stream = self._source.search(query)
            async with contextlib.aclosing(stream):
                async for update in stream:
                    if asyncio.current_task() is not self._task:
                        break  # cancelled or replaced (a swallowed cancellation)
                    self._queue(update)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a known error has its French message
            message = (
                getattr(exc, "message_fr", "") or f"Recherche impossible ({type(exc).__name__})."
            )
            log.warning("slot search failed: %s", type(exc).__name__)
            if asyncio.current_task() is self._task:
                self._flush()  # what came before it, now: not over the message, later
            self._finish(message, error=True, ended=True)
        finally:
            if self._task is None or self._task is asyncio.current_task():
                self.running = False  # (not when a newer search took over)
                self.cancel_button.setEnabled(False)

    def _queue(self, update: SearchUpdate) -> None:
        self._pending.append(update)
        now = time.monotonic()
        interval = FLUSH_LARGE_S if self.model.rowCount() >= LARGE_ROWS else FLUSH_S
        if update.done or now - self._last_flush >= interval:
            self._flush()
        elif not self._flush_timer.isActive():
            self._flush_timer.start(int((interval - (now - self._last_flush)) * 1000) + 1)

    def _flush(self) -> None:
        """Apply the updates received since the last one, as one."""
        self._flush_timer.stop()
        pending, self._pending = self._pending, []
        if not pending:
            return
        last = pending[-1]
        if len(pending) > 1:
            offers: dict[str, Offer] = {}
            for u in pending:
                for o in u.offers:
                    offers[o.key] = o  # a later update carries the place's slots so far
            last = replace(last, offers=tuple(offers.values()))
        self._last_flush = time.monotonic()
        self._apply(last)

    def _apply(self, update: SearchUpdate) -> None:
        self.updates += 1
        self.last_update = update
        had_rows = self.model.rowCount() > 0
        inserted = self.model.merge(update.offers) if update.offers else []
        if not had_rows and self.model.rowCount() and not self.list.currentIndex().isValid():
            self.list.setCurrentIndex(self.rows.index(0, 0))
        self._show_vendors(update.vendors)
        requests = sum(v.requests for v in update.vendors.values())
        answered = sum(v.answered for v in update.vendors.values())
        self.progress.setRange(0, max(1, requests))
        self.progress.setValue(answered if requests else 1)
        if self.map is not None and inserted:
            self.map.add_offers([self.model.row_for(k) for k in inserted])
        if update.done:
            self.volunteers.set_volunteers(update.volunteers)
            if update.volunteers:
                self.tabs.setTabText(1, f"En sus ({len(update.volunteers)})")
            if update.notes:
                text = " ".join(update.notes)
                if update.volunteers:
                    text += (
                        " Voir l'onglet « En sus » (Alt+2 ; C copie le numéro, Entrée note "
                        "le rendez-vous convenu)."
                    )
                self.notes.setText(text)
                self.notes.show()
            self._finish(self._summary(update, done=True))
            self.search_finished.emit()
        else:
            self.summary.setText(self._summary(update, done=False))

    def _summary(self, update: SearchUpdate, *, done: bool) -> str:
        shown = self.model.rowCount()
        text = (
            f"{shown} lieu{'x' if shown > 1 else ''}, {self.model.slot_count} créneaux"
            f" ({update.candidates} praticiens interrogés)"
        )
        if self.model.loaded != shown:
            text += f" — {self.model.loaded - shown} masqués par les filtres"
        return (
            f"{text} — terminé en {update.elapsed_s:.1f} s".replace(".", ",")
            if done
            else f"{text} — en cours…"
        )

    def _finish(self, text: str, *, error: bool = False, ended: bool = False) -> None:
        """The search is over; ``ended``: before its end (failed, cancelled),
        so the vendors still answering say they will not."""
        if ended:
            self._interrupt_vendors()
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.summary.setText(text)
        style = "color: #b00020;" if error else ""
        if style != self.summary.styleSheet():
            self.summary.setStyleSheet(style)
        self.cancel_button.setEnabled(False)

    @staticmethod
    def _vendor_text(name: str, status: VendorStatus | None) -> str:
        state = status.state if status is not None else VendorState.WAITING
        text = f"<span style='color:{STATE_COLOURS[state]}'>●</span> <b>{name}</b> : {state.label}"
        if status is None:
            return text
        if state is VendorState.OK:
            text += f" ({status.slots} créneaux)"
        elif status.requests:
            text += f" ({status.answered}/{status.requests})"
        return text

    def _interrupt_vendors(self) -> None:
        """The vendors that had not finished answering say the search ended
        (their labels are kept, of a fixed size: only their text changes)."""
        known = self.last_update.vendors if self.last_update is not None else {}
        for name, label in self.vendor_labels.items():
            status = known.get(name)
            if status is not None and status.state not in (VendorState.WAITING, VendorState.SLOW):
                continue  # answered, or failed: its own end stays said
            text = f"<span style='color:{STATE_COLOURS[VendorState.WAITING]}'>●</span> <b>{name}</b> : {INTERRUPTED_FR}"
            if status is not None and status.requests:
                text += f" ({status.answered}/{status.requests})"
            if text != label.text():
                label.setText(text)
            label.setToolTip(INTERRUPTED_FR)

    def _show_vendors(self, vendors: dict[str, VendorStatus]) -> None:
        errors = []
        for name, status in vendors.items():
            label = self.vendor_labels.get(name)
            if label is None:  # a vendor first seen: its label stays for the next searches
                label = named(QLabel(), f"vendor_{name}")
                label.setWordWrap(True)  # many vendors: two lines, never wider than the screen
                self.vendor_row.add(label)
                self.vendor_labels[name] = label
            text = self._vendor_text(name, status)
            if text != label.text():
                label.setText(text)
            tip = status.message_fr or status.state.label
            if tip != label.toolTip():  # (the text changes with each batch, the tip seldom)
                label.setToolTip(tip)
            if status.message_fr:
                errors.append(status.message_fr)
        text = " ".join(errors)
        if text != self.vendor_errors.text():
            self.vendor_errors.setText(text)
        self.vendor_errors.setVisible(bool(text))

    # ------------------------------------------------------------------ view
    def facets(self) -> Facets:
        return Facets(
            types=frozenset(t for t, b in self.type_buttons.items() if b.isChecked()),
            modes=frozenset(m for m, b in self.mode_buttons.items() if b.isChecked()),
            bands=frozenset(band for band, b in self.band_buttons.items() if b.isChecked()),
        )

    def _apply_view(self, *_: object) -> None:
        key = self.current_key()
        sort = self.sort.currentData()
        self.model.set_view(self.facets(), sort if isinstance(sort, SortKey) else None)
        row = self.model.row_of(key) if key else -1
        self.list.setCurrentIndex(
            self.rows.index(max(0, row), 0) if self.model.rowCount() else QModelIndex()
        )
        if self.list.currentIndex().isValid():
            self.list.scrollTo(self.list.currentIndex())
        if self.last_update is not None:
            self.summary.setText(self._summary(self.last_update, done=not self.running))
        self._sync_map(full=True)

    def _sync_map(self, *, full: bool = False) -> None:
        if self.map is None:
            return
        if self.place is not None:
            self.map.set_patient(self.place.lat, self.place.lon, self.radius.value())
        if full:
            self.map.set_offers(self.model.rows())
        self.map.set_selected(self.current_key())

    def current_key(self) -> str:
        row = self.model.row_at(self.list.currentIndex().row())
        return row.key if row is not None else ""

    def current_row(self) -> OfferRow | None:
        return self.model.row_at(self.list.currentIndex().row())

    def select_key(self, key: str) -> None:
        row = self.model.row_of(key)
        if row >= 0:
            index = self.rows.index(row, 0)
            self.list.setCurrentIndex(index)
            self.list.scrollTo(index, QAbstractItemView.ScrollHint.PositionAtCenter)
            self.tabs.setCurrentIndex(0)

    def _on_current(self, current: QModelIndex, previous: QModelIndex) -> None:
        self.slot_cursor = 0
        key = self.current_key()
        if self.map is not None:
            self.map.set_selected(key)
        self.selection_changed.emit(key)

    def _move_cursor(self, step: int) -> None:
        row = self.current_row()
        if row is None:
            return
        shown = len(_slot_rects(self.list.visualRect(self.list.currentIndex()), len(row.slots)))
        self.slot_cursor = max(0, min(self.slot_cursor + step, max(0, shown - 1)))
        self.list.viewport().update(self.list.visualRect(self.list.currentIndex()))

    def _on_slot_clicked(self, row: int, slot_index: int) -> None:
        self.list.setCurrentIndex(self.rows.index(row, 0))
        self.slot_cursor = slot_index
        self.choose(row, slot_index)

    def _book_current(self, slot_index: int) -> None:
        row = self.list.currentIndex().row()
        if row < 0:
            return
        self.choose(row, self.slot_cursor if slot_index < 0 else slot_index)

    # ------------------------------------------------------------------ booking
    def choose(self, row: int, slot_index: int) -> Booking | None:
        """Open the slot's booking page (with ``origin``) in the browser, then
        ask for the outcome."""
        offer_row = self.model.row_at(row)
        if offer_row is None or not 0 <= slot_index < len(offer_row.slots):
            return None
        slot = offer_row.slots[slot_index]
        if not slot.booking_url:
            self.message.show_message(
                "Ce créneau n'a pas de lien de réservation : appelez le cabinet.", warn=True
            )
            return None
        url = booking_url(slot.booking_url, self.origin)
        booking = Booking(offer_row.offer, slot, url, self.now())
        self.pending_booking = booking
        log.info(
            "booking page opened: vendor %s, slot %s", offer_row.offer.candidate.vendor, slot.id
        )
        opened = self.open_url(QUrl(url)) is not False  # QDesktopServices: False = no browser
        if not opened:
            log.warning("no web browser could be opened for the booking page")
        what = f"<b>{offer_row.offer.candidate.name}</b>, {slot_label(slot.start, self.now())} ({slot.start:%d/%m})"
        self.booking.copy.setText("Copier l'adresse  [C]")
        self.booking.ask(
            (f"Page de réservation ouverte dans le navigateur : {what}." if opened else f"{what} :")
            + " Le rendez-vous est-il pris ?",
            url,
            opened=opened,
        )
        return booking

    def _on_booking_answer(self, booked: bool) -> None:
        booking = self.pending_booking
        self.pending_booking = None
        self.booking.hide()
        self.list.setFocus()
        if booking is None:
            return
        if not booked:
            self.message.show_message(
                "Rendez-vous non pris : choisissez un autre créneau.", warn=True
            )
            return
        self._remove_slot(booking)
        recorded = ""
        if self.dossier is not None and self.desk is not None:
            _event, self.orientation_sent = self.desk.orient_booking(
                self.dossier, booking.slot, booking.offer, booking.url
            )
            recorded = f" Orientation enregistrée dans le dossier {self.dossier.sender_case_id}."
        log.info(
            "booking confirmed: vendor %s, slot %s", booking.offer.candidate.vendor, booking.slot.id
        )
        self.message.show_message(
            f"Rendez-vous pris : {booking.offer.candidate.name}, "
            f"{booking.slot.start:%d/%m à %H:%M}.{recorded}",
            info=True,
        )
        self.booked.emit(booking)

    # ------------------------------------------------------------------ en sus
    def _ask_en_sus(self, row: int) -> None:
        if not 0 <= row < len(self.volunteers.volunteers):
            return
        self.en_sus_volunteer = self.volunteers.volunteers[row]
        self.en_sus.ask(self.en_sus_volunteer)

    def _close_en_sus(self) -> None:
        self.en_sus_volunteer = None
        self.en_sus.hide()
        self.volunteers.setFocus()

    def _on_en_sus_time(self, text: str) -> EnSusBooking | None:
        """The time typed for the appointment agreed with the volunteer:
        refused in the strip (French, the strip stays), or recorded in the
        dossier as an "en sus" orientation."""
        volunteer = self.en_sus_volunteer
        if volunteer is None:
            return None
        try:
            start = en_sus_start(text, self.now())
        except KnownError as exc:
            self.en_sus.refuse(exc.message_fr)
            return None
        self._close_en_sus()
        recorded = ""
        if self.dossier is not None and self.desk is not None:
            _event, self.orientation_sent = self.desk.orient_en_sus(self.dossier, volunteer, start)
            recorded = f" Orientation enregistrée dans le dossier {self.dossier.sender_case_id}."
        log.info("en sus appointment recorded")
        self.message.show_message(
            f"Rendez-vous en sus : {volunteer.name}, {start:%d/%m à %H:%M}.{recorded}", info=True
        )
        booking = EnSusBooking(volunteer, start)
        self.en_sus_booked.emit(booking)
        return booking

    def _remove_slot(self, booking: Booking) -> None:
        """The booked slot leaves the cards at once (the vendor has it busy)."""
        offer = next((o for o in self.model.all_offers() if o.key == booking.offer.key), None)
        if offer is None:
            return
        current = self.current_key()
        self.model.replace_offer(
            replace(offer, slots=tuple(s for s in offer.slots if s.id != booking.slot.id))
        )
        row = self.model.row_of(current)
        if row >= 0:
            self.list.setCurrentIndex(self.rows.index(row, 0))


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
