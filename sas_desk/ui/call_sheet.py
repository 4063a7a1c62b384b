"""The ARM's call sheet (fiche de régulation).

Keyboard-first: Tab walks callback → location → access → motive → age →
sex → priority → branch → patient's name, first name, birth date → caller
type, name, language → note; single keys pick in the
rows; Enter in the note field adds a timestamped note; Ctrl+Enter
transmits.  Every keystroke goes into the dossier's ``inputs`` and to the
journal (no save button, nothing modal).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from datetime import date

from PySide6.QtCore import QSize, QStringListModel, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QCompleter,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from sas_desk.models.codes import Code, codelist
from sas_desk.models.dossier import CALLER_LANGUAGES, Branch, ConfirmationNeeded, Dossier, Status
from sas_desk.models.validation import (
    Age,
    ValidationError,
    age_agrees,
    age_on,
    format_phone,
    format_radius,
    normalize_phone,
    parse_age,
    parse_birth_date,
    parse_position,
)
from sas_desk.services.desk import Desk
from sas_desk.services.geo.resolver import LocationResolver, Place
from sas_desk.ui.operation import run_operation
from sas_desk.ui.widgets import PRIORITY_COLOURS, KeyPicker, Message, named

log = logging.getLogger("sas_desk.ui.sheet")

FIELDS = ("callback", "location", "motive", "age", "priority", "branch", "dental_reason")


def _french_date(iso: str) -> str:
    """``1961-03-12`` → ``12/03/1961`` (as typed on the sheet)."""
    try:
        return date.fromisoformat(iso).strftime("%d/%m/%Y") if iso else ""
    except ValueError:
        return iso


def motive_display(code: Code) -> str:
    return f"{code.code} — {code.full_label}"


SHEET_MIN_HEIGHT = 120  # px the sheet asks of its tab; what does not fit scrolls
NOTE_PLACEHOLDER = "Nouvelle note — Entrée pour l'ajouter"


class CallSheet(QWidget):
    """One dossier on screen.  ``transmitted`` fires after a successful hand-off."""

    transmitted = Signal(str)
    title_changed = Signal(str)
    edited = Signal()  # any field changed (the day list refreshes its row)

    def __init__(
        self,
        desk: Desk,
        resolver: LocationResolver,
        dossier: Dossier,
        parent: QWidget | None = None,
        *,
        read_only: bool = False,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("CallSheet")
        self.desk = desk
        self.resolver = resolver
        self.dossier = dossier
        self._loading = False
        self._summary_failed = False  # the footer lists why a transmission was refused
        self._shown: set[str] = set()  # fields whose message is displayed
        self._places: dict[str, Place] = {}
        self._geo_task: asyncio.Task[None] | None = None  # the lookup in flight
        self._motives = codelist("motive")
        self._motive_index: dict[str, Code] = {motive_display(c): c for c in self._motives}
        # after transmission the ARM still adds notes and changes the priority:
        # each is an ``update`` for the room (not in a sheet opened read-only)
        self._may_update = not read_only
        self._build()
        self._load()
        if read_only or dossier.status is not Status.DRAFT:
            self._set_read_only()

    # ------------------------------------------------------------------ layout
    def _body_hint(self, hint: QSize) -> QSize:
        bar = self.sheet_scroll.verticalScrollBar().sizeHint().width()
        return QSize(hint.width() + bar, hint.height())

    def minimumSizeHint(self) -> QSize:
        """As wide as its rows of keys, as tall as a few lines: the rest
        scrolls (the window never grows beyond the screen for the sheet)."""
        body = self._body_hint(self.sheet_body.minimumSizeHint())
        return QSize(body.width(), min(body.height(), SHEET_MIN_HEIGHT))

    def _follow_focus(self, _old: QWidget | None, new: QWidget | None) -> None:
        if new is not None and self.sheet_body.isAncestorOf(new):
            self.sheet_scroll.ensureWidgetVisible(new, 8, 8)

    def sizeHint(self) -> QSize:
        return self._body_hint(self.sheet_body.sizeHint())

    def _build(self) -> None:
        # the sheet scrolls inside its tab rather than making the window taller
        # than the screen (a dental advice, a confirmation bar and banners above
        # asked for more than a 768-pixel screen has)
        page = QVBoxLayout(self)
        page.setContentsMargins(0, 0, 0, 0)
        self.sheet_scroll = QScrollArea()
        self.sheet_scroll.setObjectName("sheetScroll")
        self.sheet_scroll.setWidgetResizable(True)
        self.sheet_scroll.setFrameShape(QFrame.Shape.NoFrame)
        # up and down only: its width is the rows of keys' (see minimumSizeHint)
        self.sheet_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = self.sheet_body = QWidget()
        body.setObjectName("sheetBody")
        self.sheet_scroll.setWidget(body)
        page.addWidget(self.sheet_scroll)
        app = QApplication.instance()
        if isinstance(app, QApplication):  # the field with the focus is always in view
            app.focusChanged.connect(self._follow_focus)
        outer = QVBoxLayout(body)
        outer.setContentsMargins(10, 8, 10, 8)
        header = QHBoxLayout()
        self.title = QLabel()
        self.title.setObjectName("SheetTitle")
        self.title.setStyleSheet("font-size: 15px; font-weight: bold;")
        self.title.setWordWrap(True)  # beside a regulator's timeline the sheet is narrow
        self.state = QLabel()
        self.state.setObjectName("SheetState")
        header.addWidget(self.title, 1)
        header.addWidget(self.state)
        outer.addLayout(header)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.messages: dict[str, Message] = {}

        def add(label: str, widget: QWidget, key: str) -> None:
            box = QVBoxLayout()
            box.setSpacing(1)
            box.addWidget(widget)
            msg = Message()
            self.messages[key] = msg
            box.addWidget(msg)
            form.addRow(buddy(label, widget), box)

        def buddy(label: str, widget: QWidget) -> QLabel:
            lab = QLabel(label)
            lab.setBuddy(widget)
            return lab

        self.callback = named(QLineEdit(placeholderText="06 12 34 56 78"), "callback")
        self.callback.textEdited.connect(lambda t: self._on_text("callback", t))
        self.callback.editingFinished.connect(lambda: self._reveal("callback"))
        add("Numéro de &rappel", self.callback, "callback")
        # earlier calls from this number (72 h), found as the number is typed
        self.previous = named(QLabel(), "previousCalls")
        self.previous.setWordWrap(True)
        self.previous.setStyleSheet(
            "background: #e3f0ff; border-radius: 3px; padding: 2px 4px; color: #0d3c61;"
        )
        self.previous.hide()
        form.addRow("", self.previous)
        self._previous_for = ""  # the number last looked up
        self._previous_task: asyncio.Task[None] | None = None

        self.location = named(
            QLineEdit(placeholderText="Adresse, commune, code INSEE, ou « lat, lon » (AML)"),
            "location",
        )
        self._loc_model = QStringListModel(self)
        self._loc_completer = QCompleter(self._loc_model, self)
        self._loc_completer.setCompletionMode(QCompleter.CompletionMode.UnfilteredPopupCompletion)
        self._loc_completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self._loc_completer.setMaxVisibleItems(8)
        self.location.setCompleter(self._loc_completer)
        self._loc_completer.activated.connect(self._on_place_chosen)
        self.location.textEdited.connect(lambda t: self._on_text("location", t))
        self.location.editingFinished.connect(lambda: self._reveal("location"))
        self._geo_timer = QTimer(self, singleShot=True, interval=120)
        self._geo_timer.timeout.connect(self._geocode)
        self.place_label = named(QLabel(), "placeLabel")
        self.place_label.setStyleSheet("color: #37474f;")
        self.place_label.setWordWrap(True)
        loc_box = QVBoxLayout()
        loc_box.setSpacing(1)
        loc_box.addWidget(self.location)
        loc_box.addWidget(self.place_label)
        msg = Message()
        self.messages["location"] = msg
        loc_box.addWidget(msg)
        form.addRow(buddy("&Localisation", self.location), loc_box)

        access = QHBoxLayout()
        self.floor = named(QLineEdit(placeholderText="Étage"), "floor")
        self.access_code = named(QLineEdit(placeholderText="Code porte"), "access_code")
        self.interphone = named(QLineEdit(placeholderText="Interphone"), "interphone")
        for w, key in (
            (self.floor, "floor"),
            (self.access_code, "access_code"),
            (self.interphone, "interphone"),
        ):
            w.textEdited.connect(lambda t, k=key: self._on_text(k, t))
            access.addWidget(w)
        form.addRow(buddy("A&ccès", self.floor), access)

        self.motive = named(
            QLineEdit(placeholderText="Code ou libellé : « douleur », « M03.06 »…"), "motive"
        )
        self._motive_model = QStringListModel(self)
        self._motive_completer = QCompleter(self._motive_model, self)
        self._motive_completer.setCompletionMode(
            QCompleter.CompletionMode.UnfilteredPopupCompletion
        )
        self._motive_completer.setMaxVisibleItems(10)
        self.motive.setCompleter(self._motive_completer)
        self._motive_completer.activated.connect(lambda text: self._on_text("motive", text))
        self.motive.textEdited.connect(lambda t: self._on_text("motive", t))
        self.motive.editingFinished.connect(self._settle_motive)
        self.motive_label = named(QLabel(), "motiveLabel")
        self.motive_label.setStyleSheet("color: #37474f;")
        self.motive_label.setWordWrap(True)
        mbox = QVBoxLayout()
        mbox.setSpacing(1)
        mbox.addWidget(self.motive)
        mbox.addWidget(self.motive_label)
        msg = Message()
        self.messages["motive"] = msg
        mbox.addWidget(msg)
        form.addRow(buddy("&Motif", self.motive), mbox)

        patient = QHBoxLayout()
        self.age = named(QLineEdit(placeholderText="Âge : 65, 8 mois, 10 j"), "age")
        self.age.setMaximumWidth(180)
        self.age.textEdited.connect(lambda t: self._on_text("age", t))
        self.age.editingFinished.connect(lambda: self._reveal("age"))
        self.sex = KeyPicker(
            [
                ("M", "Homme", "H", "#455a64"),
                ("F", "Femme", "F", "#455a64"),
                ("O", "Autre", "A", "#455a64"),
                ("UN", "Inconnu", "I", "#455a64"),
            ]
        )
        self.sex.setObjectName("sex")
        self.sex.changed.connect(lambda v: self._on_text("sex", v))
        patient.addWidget(self.age)
        patient.addWidget(self.sex, 1)
        pbox = QVBoxLayout()
        pbox.addLayout(patient)
        msg = Message()
        self.messages["age"] = msg
        pbox.addWidget(msg)
        form.addRow(buddy("Â&ge / sexe", self.age), pbox)

        self.priority = KeyPicker(
            [
                ("P0", "P0 Urgence vitale", "0", PRIORITY_COLOURS["P0"]),
                ("P1", "P1 Prioritaire", "1", PRIORITY_COLOURS["P1"]),
                ("P2", "P2 Non urgent", "2", PRIORITY_COLOURS["P2"]),
                ("P3", "P3 Différé", "3", PRIORITY_COLOURS["P3"]),
                ("NR", "NR Non régulé", "N", PRIORITY_COLOURS["NR"]),
            ]
        )
        self.priority.setObjectName("priority")
        self.priority.changed.connect(lambda v: self._on_text("priority", v))
        add("Pr&iorité", self.priority, "priority")

        self.branch = KeyPicker(
            [
                ("AMU", "AMU urgence", "A", "#b00020"),
                ("SNP", "SNP médecine générale", "S", "#1565c0"),
                ("DENT", "Dentaire", "D", "#6a1b9a"),
            ]
        )
        self.branch.setObjectName("branch")
        self.branch.changed.connect(lambda v: self._on_text("branch", v))
        add("&Filière", self.branch, "branch")

        self.dental_reason = named(QComboBox(), "dental_reason")
        self.dental_reason.addItem("— choisir le motif dentaire —", "")
        for code in codelist("dental_reason"):
            self.dental_reason.addItem(code.label, code.code)
        self.dental_reason.currentIndexChanged.connect(
            lambda _i: self._on_text("dental_reason", str(self.dental_reason.currentData() or ""))
        )
        self.dental_label = buddy("Motif &dentaire", self.dental_reason)
        dbox = QVBoxLayout()
        dbox.setSpacing(1)
        dbox.addWidget(self.dental_reason)
        msg = Message()
        self.messages["dental_reason"] = msg
        dbox.addWidget(msg)
        form.addRow(self.dental_label, dbox)

        # who the patient is: typed once the urgent part is done; the birth
        # date gives the age (the age field follows it)
        ident = QHBoxLayout()
        ident.setSpacing(4)
        self.last_name = named(QLineEdit(placeholderText="Nom"), "last_name")
        self.first_name = named(QLineEdit(placeholderText="Prénom"), "first_name")
        self.birth_date = named(QLineEdit(placeholderText="Né(e) le JJ/MM/AAAA"), "birth_date")
        self.birth_date.setMaximumWidth(150)
        self.last_name.setToolTip("Nom du patient")
        self.first_name.setToolTip("Prénom du patient")
        self.birth_date.setToolTip("Date de naissance (JJ/MM/AAAA) : l'âge en est déduit")
        for key, edit in (
            ("last_name", self.last_name),
            ("first_name", self.first_name),
            ("birth_date", self.birth_date),
        ):
            edit.setMaxLength(80)
            edit.textEdited.connect(lambda t, k=key: self._on_text(k, t))
            ident.addWidget(edit, 0 if key == "birth_date" else 1)
        self.birth_date.editingFinished.connect(self._settle_birth_date)
        ibox = QVBoxLayout()
        ibox.setSpacing(1)
        ibox.addLayout(ident)
        msg = Message()
        self.messages["birth_date"] = msg
        ibox.addWidget(msg)
        form.addRow(buddy("Pa&tient", self.last_name), ibox)

        self.caller_type = named(QComboBox(), "caller_type")
        self.caller_type.addItem("—", "")
        for code in codelist("caller_type"):
            if code.parent is None:
                self.caller_type.addItem(code.label, code.code)
        self.caller_type.currentIndexChanged.connect(
            lambda _i: self._on_text("caller_type", str(self.caller_type.currentData() or ""))
        )
        for combo in (self.caller_type, self.dental_reason):  # long labels: no width forced
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            combo.setMinimumContentsLength(16)
        self.caller_name = named(QLineEdit(placeholderText="Nom de l'appelant"), "caller_name")
        self.caller_name.setMaxLength(80)
        self.caller_name.setToolTip("Nom de l'appelant")
        self.caller_name.textEdited.connect(lambda t: self._on_text("caller_name", t))
        self.language = named(QComboBox(), "language")
        for code, label in CALLER_LANGUAGES:
            self.language.addItem(label, code)
        self.language.setToolTip("Langue parlée par l'appelant")
        self.language.currentIndexChanged.connect(
            lambda _i: self._on_text("language", str(self.language.currentData() or "fr"))
        )
        crow = QHBoxLayout()
        crow.setSpacing(4)
        crow.addWidget(self.caller_type, 1)
        crow.addWidget(self.caller_name, 1)
        crow.addWidget(self.language)
        form.addRow(buddy("&Appelant", self.caller_type), crow)

        outer.addLayout(form)

        notes_title = QLabel("Notes (horodatées)")
        notes_title.setStyleSheet("font-weight: bold; margin-top: 6px;")
        outer.addWidget(notes_title)
        self.notes = named(QListWidget(), "notes")
        self.notes.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.notes.setMinimumHeight(70)
        # the notes take the height left, and give it back first: their list's
        # preferred height would make the scrolled sheet taller than its tab
        self.notes.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)
        self.notes.setWordWrap(True)  # whole notes, also in a narrow dossier view
        self.notes.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        outer.addWidget(self.notes, 1)
        self.note = named(QLineEdit(placeholderText=NOTE_PLACEHOLDER), "note")
        self.note.textEdited.connect(lambda t: self._on_text("note", t))
        self.note.returnPressed.connect(self._add_note)
        outer.addWidget(self.note)
        msg = Message()
        self.messages["note"] = msg
        outer.addWidget(msg)

        # what may leave only once confirmed (unlocated place…): inline, not modal
        self.confirm_bar = named(QFrame(), "confirmBar")
        self.confirm_bar.setStyleSheet(
            "QFrame#confirmBar { background: #fff4d6; border: 1px solid #b35c00;"
            " border-radius: 4px; }"
        )
        cbar = QHBoxLayout(self.confirm_bar)
        cbar.setContentsMargins(8, 4, 8, 4)
        self.confirm_text = named(QLabel(), "confirmText")
        self.confirm_text.setWordWrap(True)
        cbar.addWidget(self.confirm_text, 1)
        self.confirm_button = named(
            QPushButton("Transmettre quand même  (Entrée)"), "confirmTransmit"
        )
        self.confirm_button.clicked.connect(lambda: self._confirmed())
        cancel = named(QPushButton("Corriger  (Échap)"), "confirmCancel")
        cancel.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        cancel.clicked.connect(lambda: self._cancel_confirmation())
        cbar.addWidget(self.confirm_button)
        cbar.addWidget(cancel)
        self.confirm_button.setAutoDefault(True)  # Entrée on it clicks it
        escape = QShortcut(QKeySequence("Escape"), self.confirm_button)
        escape.setContext(Qt.ShortcutContext.WidgetShortcut)
        escape.activated.connect(lambda: self._cancel_confirmation())
        self.confirm_bar.hide()
        self._questions: dict[str, str] = {}
        outer.addWidget(self.confirm_bar)

        bottom = QHBoxLayout()
        self.summary = Message()
        bottom.addWidget(self.summary, 1)
        self.transmit_button = named(QPushButton("Transmettre  (Ctrl+Entrée)"), "transmit")
        self.transmit_button.setStyleSheet("font-weight: bold; padding: 6px 14px;")
        self.transmit_button.clicked.connect(lambda: self.transmit())
        bottom.addWidget(self.transmit_button)
        outer.addLayout(bottom)
        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        outer.addWidget(line)

        # create the suggestion popups' native windows now, not on the first
        # keystroke that shows them (a visible hitch while typing otherwise)
        for completer in (self._loc_completer, self._motive_completer):
            popup = completer.popup()
            if popup is not None:
                popup.winId()
        # the fields typed into (read-only once transmitted, emptied on recycling)
        self._edits = (
            self.callback,
            self.location,
            self.floor,
            self.access_code,
            self.interphone,
            self.motive,
            self.age,
            self.last_name,
            self.first_name,
            self.birth_date,
            self.caller_name,
        )
        for seq in ("Ctrl+Return", "Ctrl+Enter"):
            sc = QShortcut(QKeySequence(seq), self)
            sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            sc.activated.connect(lambda: self.transmit())
        self.setTabOrder(self.callback, self.location)
        for a, b in [
            (self.location, self.floor),
            (self.floor, self.access_code),
            (self.access_code, self.interphone),
            (self.interphone, self.motive),
            (self.motive, self.age),
            (self.age, self.sex),
            (self.sex, self.priority),
            (self.priority, self.branch),
            (self.branch, self.dental_reason),
            (self.dental_reason, self.last_name),
            (self.last_name, self.first_name),
            (self.first_name, self.birth_date),
            (self.birth_date, self.caller_type),
            (self.caller_type, self.caller_name),
            (self.caller_name, self.language),
            (self.language, self.note),
            (self.note, self.transmit_button),
        ]:
            self.setTabOrder(a, b)

    # ------------------------------------------------------------------ loading
    def _load(self) -> None:
        d = self.dossier
        raw = d.inputs
        self._loading = True
        try:
            self.callback.setText(
                raw.get("callback", format_phone(d.caller.callback) if d.caller.callback else "")
            )
            self.location.setText(raw.get("location", d.location.address or d.location.city))
            self.floor.setText(raw.get("floor", d.location.floor))
            self.access_code.setText(raw.get("access_code", d.location.access_code))
            self.interphone.setText(raw.get("interphone", d.location.interphone))
            if "motive" in raw:
                self.motive.setText(raw["motive"])
            elif d.motive_code:
                known = self._motives.get(d.motive_code)
                self.motive.setText(
                    motive_display(known) if known else f"{d.motive_code} — {d.motive_label}"
                )
            if "age" in raw:
                self.age.setText(raw["age"])
            elif d.patient.age:
                try:
                    self.age.setText(Age.from_iso(d.patient.age).display())
                except ValidationError:
                    self.age.setText(d.patient.age)
            self.sex.set_value(raw.get("sex", d.patient.sex))
            self.priority.set_value(d.priority)
            self.branch.set_value(d.branch.value if d.branch else "")
            self.dental_reason.setCurrentIndex(max(self.dental_reason.findData(d.dental_reason), 0))
            index = self.caller_type.findData(d.caller.caller_type)
            self.caller_type.setCurrentIndex(max(index, 0))
            self.last_name.setText(raw.get("last_name", d.patient.last_name))
            self.first_name.setText(raw.get("first_name", d.patient.first_name))
            self.birth_date.setText(raw.get("birth_date", _french_date(d.patient.birth_date)))
            self.caller_name.setText(raw.get("caller_name", d.caller.name))
            self.language.setCurrentIndex(max(self.language.findData(d.caller.language), 0))
            self.note.setText(raw.get("note", ""))
            self._render_notes()
            self._render_place()
            self._render_motive()
            self._sync_dental_row()
            self._show_advice()
        finally:
            self._loading = False
        self._refresh_title()
        # messages for what was already wrong before a crash
        for key in ("callback", "location", "motive", "age", "birth_date"):
            if raw.get(key):
                self._reveal(key)

    def _refresh_title(self) -> None:
        d = self.dossier
        if d.received_at is None:
            title = f"{d.sender_case_id or d.case_id}  —  prête : l'heure de l'appel sera celle de la première saisie"
        else:
            title = f"{d.sender_case_id or d.case_id}  —  reçu à {d.received_at:%H:%M:%S}"
        if d.status is Status.TRANSMITTED and d.transmitted_at:
            title += f"  —  transmis à {d.transmitted_at:%H:%M:%S} ({d.attribution})"
        elif d.status is not Status.DRAFT:
            title += f"  —  {d.status.label}"
        self.title.setText(title)
        self.title_changed.emit(self.tab_title())

    def tab_title(self) -> str:
        d = self.dossier
        mark = "✓ " if d.status is Status.TRANSMITTED else ""
        if d.received_at is None:
            return "Nouvel appel"
        when = d.received_at.strftime("%H:%M")
        return f"{mark}{d.priority} {when} {d.commune_label or ''}".strip()

    def _render_notes(self) -> None:
        self.notes.clear()
        for n in self.dossier.notes:
            self.notes.addItem(f"{n.at:%H:%M:%S}  {n.role}  {n.text}")
        if self.dossier.notes:
            self.notes.scrollToBottom()

    def _render_motive(self) -> None:
        d = self.dossier
        self.motive_label.setText(f"{d.motive_code} — {d.motive_label}" if d.motive_code else "")
        self.motive_label.setVisible(bool(d.motive_code))

    def _render_place(self) -> None:
        loc = self.dossier.location
        parts = []
        if loc.city or loc.insee:
            parts.append(f"{loc.city} ({loc.insee})" if loc.insee else loc.city)
        if loc.has_position:
            assert loc.lat is not None and loc.lon is not None
            parts.append(f"{loc.lat:.5f}, {loc.lon:.5f}")
        if loc.is_aml:
            parts.append(
                f"position AML {format_radius(loc.radius_m)}"
                if loc.radius_m is not None
                else "position AML (rayon inconnu)"
            )
        if loc.precision:
            parts.append(f"précision {loc.precision.lower()}")
        self.place_label.setText(" — ".join(parts) if parts else "Lieu non localisé")

    # ------------------------------------------------------------------ editing
    def _on_text(self, key: str, text: str) -> None:
        if self._loading:
            return
        if self._updatable() and key == "priority":
            if text and text != self.dossier.priority:  # the same key again: nothing new
                self._send_update(priority=text)
            return
        if self.dossier.status is not Status.DRAFT:
            return
        d = self.dossier
        d.inputs[key] = text
        if self._questions:  # the answer was to the sheet as it was
            self._cancel_confirmation(refocus=False)
        apply = getattr(self, f"_apply_{key}", None)
        if apply is not None:
            apply(text)
        if self._summary_failed:  # the footer follows the corrections
            self._show_summary_problems()
        unstamped = d.received_at is None
        self.desk.touch(d)
        if unstamped and d.received_at is not None:  # the call's first keystroke
            self._refresh_title()
        self.edited.emit()
        if key in self._shown:
            self._reveal(key)
        if key in ("priority", "location"):
            self.title_changed.emit(self.tab_title())

    def _apply_callback(self, text: str) -> None:
        try:
            self.dossier.caller.callback = normalize_phone(text)
        except ValidationError:
            self.dossier.caller.callback = text.strip()
            self._look_up_previous("")
            return
        self._look_up_previous(self.dossier.caller.callback)

    def _look_up_previous(self, number: str) -> None:
        """A complete number: its calls of the last 72 h (off the GUI thread)."""
        if number == self._previous_for:
            return
        self._previous_for = number
        if self._previous_task is not None and not self._previous_task.done():
            self._previous_task.cancel()
        if not number:
            self.previous.hide()
            return
        self._previous_task = run_operation(
            self._show_previous(number),
            name="previous-calls",
            show_error=self.previous_error,
        )

    def previous_error(self, text: str) -> None:
        """The journal could not be read: the previous calls are not shown
        (the sheet itself is unaffected)."""
        self.previous.setText(f"Appels précédents indisponibles : {text}")
        self.previous.show()

    async def _show_previous(self, number: str) -> None:
        found = await self.desk.previous_calls(number, self.dossier)
        if number != self._previous_for:
            return  # the operator typed on
        if not found:
            self.previous.hide()
            return
        today = self.desk._now().date()
        lines = []
        for d in found[:4]:
            when = d.received_at or d.created_at
            day = "aujourd'hui" if when.date() == today else f"le {when:%d/%m}"
            what = ", ".join(
                x
                for x in (
                    d.priority,
                    d.motive_label.rsplit(";", 1)[-1].strip() if d.motive_code else "",
                    d.commune_label,
                    d.status.label.lower(),
                )
                if x
            )
            lines.append(f"{day} à {when:%H:%M} — {what}")
        more = f" (et {len(found) - 4} autres)" if len(found) > 4 else ""
        n = len(found)
        self.previous.setText(
            f"⟲ <b>{n} appel{'s' if n > 1 else ''} de ce numéro en 72 h</b>{more} : "
            + " ; ".join(lines)
        )
        self.previous.show()

    def _apply_floor(self, text: str) -> None:
        self.dossier.location.floor = text.strip()

    def _apply_access_code(self, text: str) -> None:
        self.dossier.location.access_code = text.strip()

    def _apply_interphone(self, text: str) -> None:
        self.dossier.location.interphone = text.strip()

    def _apply_location(self, text: str) -> None:
        loc = self.dossier.location
        place = self._places.get(text)
        if place is not None:
            self._set_place(place)
            return
        try:
            pos = parse_position(text)
        except ValidationError:
            pos = None
            loc.lat = loc.lon = None
        if pos is not None:
            loc.lat, loc.lon, loc.is_aml = pos.lat, pos.lon, pos.is_aml
            loc.radius_m = pos.radius_m
            loc.precision = pos.precision
            loc.position_at = self.desk._now()
            loc.address = ""
            commune = self.resolver.nearest_commune(pos.lat, pos.lon)
            loc.city, loc.insee, loc.postcode = (
                (commune.name, commune.insee, commune.postcode) if commune else ("", "", "")
            )
            self._render_place()
            return
        # free text: the address as typed; resolution happens on a suggestion
        loc.address = text.strip()
        loc.is_aml = False
        exact = self.resolver.exact_commune(text)
        if exact is not None:
            self._set_place(exact)
            return
        if loc.precision:  # a place was resolved: the text no longer says it
            loc.lat = loc.lon = loc.radius_m = None
            loc.city = loc.insee = loc.postcode = loc.precision = ""
            loc.number = loc.way_name = ""
        self._render_place()
        self._geo_timer.start()

    def _set_place(self, place: Place) -> None:
        loc = self.dossier.location
        loc.address = place.label if place.kind != "municipality" else ""
        loc.number = place.housenumber or ""
        loc.way_name = place.street or ""
        loc.city, loc.insee, loc.postcode = place.city, place.insee, place.postcode
        loc.lat, loc.lon = place.lat, place.lon
        loc.precision = {"housenumber": "ADRESSE", "street": "RUE"}.get(place.kind, "VILLE")
        loc.position_at = self.desk._now()
        loc.is_aml = False
        loc.radius_m = None
        self._render_place()

    def _on_place_chosen(self, text: str) -> None:
        self.location.setText(text)
        self._on_text("location", text)
        self._reveal("location")

    def _geocode(self) -> None:
        text = self.location.text()
        local = self.resolver.local_suggestions(text)
        self._show_places(local)
        if self._geo_task is not None and not self._geo_task.done():
            self._geo_task.cancel()
        if len(text.strip()) >= 3:
            self._geo_task = run_operation(
                self._remote(text, local),
                name="geocode",
                show_error=self.messages["location"].show_message,
            )

    async def _remote(self, text: str, local: list[Place]) -> None:
        places, error = await self.resolver.remote_suggestions(text)
        if self.location.text() != text:
            return  # the operator typed on
        if error:
            self.messages["location"].show_message(
                error + " Tapez la commune ou collez des coordonnées."
            )
        self._show_places(places + [p for p in local if p.label not in {q.label for q in places}])

    def _show_places(self, places: list[Place]) -> None:
        self._places = {p.label: p for p in places}
        labels = [p.label for p in places]
        if labels != self._loc_model.stringList():
            self._loc_model.setStringList(labels)
        self._open_popup(self._loc_completer, self.location, bool(labels))

    @staticmethod
    def _open_popup(completer: QCompleter, field: QLineEdit, has_rows: bool) -> None:
        """Show the suggestions once; an open popup follows its model by itself
        (re-running complete() on every keystroke re-laid it out each time)."""
        popup = completer.popup()
        if has_rows and field.hasFocus() and (popup is None or not popup.isVisible()):
            completer.complete()

    def _apply_motive(self, text: str) -> None:
        d = self.dossier
        code = self._motive_index.get(text) or self._motives.get(text.strip().upper())
        if code is not None:
            d.motive_code, d.motive_label = code.code, code.full_label
            self._motive_model.setStringList([])
            self._render_motive()
            return
        d.motive_code = d.motive_label = ""
        self._render_motive()
        matches = self._motives.search(text, limit=12)
        labels = [motive_display(c) for c in matches]
        if labels != self._motive_model.stringList():
            self._motive_model.setStringList(labels)
        self._open_popup(self._motive_completer, self.motive, bool(labels))

    def _settle_motive(self) -> None:
        """Leaving the field (Tab, Entrée) with one suggestion only takes it:
        the list offers nothing else to choose."""
        text = self.motive.text()
        if not self.dossier.motive_code and text.strip() and self.dossier.status is Status.DRAFT:
            matches = self._motives.search(text, limit=2)
            if len(matches) == 1:
                popup = self._motive_completer.popup()
                if popup is not None:
                    popup.hide()
                display = motive_display(matches[0])
                self.motive.setText(display)
                self._on_text("motive", display)
        self._reveal("motive")

    def _apply_age(self, text: str) -> None:
        try:
            self.dossier.patient.age = parse_age(text).iso if text.strip() else ""
        except ValidationError:
            self.dossier.patient.age = ""

    def _apply_sex(self, value: str) -> None:
        self.dossier.patient.sex = value

    def _apply_priority(self, value: str) -> None:
        self.dossier.priority = value
        self._show_advice()

    def _apply_branch(self, value: str) -> None:
        self.dossier.branch = Branch(value) if value else None
        self._sync_dental_row()
        self._show_advice()

    def _sync_dental_row(self) -> None:
        dental = self.dossier.branch is Branch.DENT
        self.dental_label.setVisible(dental)
        self.dental_reason.setVisible(dental)
        if not dental:
            self.messages["dental_reason"].show_message("")

    def _show_advice(self) -> None:
        """Non-blocking advice (severity signs, P0 outside AMU), shown in orange;
        an error on the same field wins."""
        advice = self.dossier.warnings()
        for key in ("dental_reason", "branch"):
            if key in advice or key in self._shown or self.messages[key].text().startswith("⚠"):
                self._reveal(key)

    def _apply_dental_reason(self, value: str) -> None:
        self.dossier.dental_reason = value
        self._show_advice()

    def _apply_caller_type(self, value: str) -> None:
        self.dossier.caller.caller_type = value

    def _apply_last_name(self, text: str) -> None:
        self.dossier.patient.last_name = text.strip()

    def _apply_first_name(self, text: str) -> None:
        self.dossier.patient.first_name = text.strip()

    def _apply_birth_date(self, text: str) -> None:
        """While typing: a date whose year has its 4 digits is kept (what was
        typed so far, e.g. ``12/03/19``, is no date of 2019); the age follows
        once the field is left (:meth:`_settle_birth_date`)."""
        try:
            born = parse_birth_date(text, self._today(), short_year=False)
        except ValidationError:
            self.dossier.patient.birth_date = ""
            return
        self.dossier.patient.birth_date = born.isoformat()

    def _settle_birth_date(self) -> None:
        """Leaving the field (Tab, Entrée) or transmitting: a valid birth date
        (two-digit years read as the latest past one) sets the age shown in
        the age field: one age on the sheet, the one the date gives."""
        if self.dossier.status is not Status.DRAFT or self._loading:
            return
        text = self.birth_date.text()
        if text.strip():
            try:
                born = parse_birth_date(text, self._today())
            except ValidationError:
                self.dossier.patient.birth_date = ""
            else:
                self.dossier.patient.birth_date = born.isoformat()
                age = age_on(born, self._today())
                if self.age.text() != age.display():
                    self.age.setText(age.display())
                    self._on_text("age", age.display())
        self._reveal("birth_date")

    def _apply_caller_name(self, text: str) -> None:
        self.dossier.caller.name = text.strip()

    def _apply_language(self, value: str) -> None:
        self.dossier.caller.language = value or "fr"

    def _today(self) -> date:
        return self.desk._now().date()

    # ------------------------------------------------------------------ validation display
    def _field_message(self, key: str) -> str:
        raw = self.dossier.inputs.get(key, "")
        try:
            if key == "callback":
                normalize_phone(raw)
            elif key == "age" and raw.strip():
                age = parse_age(raw)
                born = self.dossier.patient.birth_date
                if born and not age_agrees(age, date.fromisoformat(born), self._today()):
                    told = age_on(date.fromisoformat(born), self._today()).display()
                    return f"L'âge ne correspond pas à la date de naissance ({told})."
            elif key == "birth_date" and raw.strip():
                parse_birth_date(raw, self._today())
            elif key == "location":
                if raw.strip():
                    parse_position(raw)
                if not (raw.strip() or self.dossier.location.has_position):
                    return "Localisation manquante : adresse, commune ou coordonnées."
            elif (
                key == "dental_reason"
                and self.dossier.branch is Branch.DENT
                and not self.dossier.dental_reason
            ):
                return "Motif dentaire manquant."
            elif key == "motive" and not self.dossier.motive_code:
                return (
                    "Choisissez un motif dans la liste (code ou libellé)."
                    if raw.strip()
                    else "Motif manquant."
                )
        except ValidationError as exc:
            return exc.message
        return ""

    def _reveal(self, key: str) -> None:
        if key not in self.messages or (self._loading and not self.dossier.inputs.get(key)):
            return
        self._shown.add(key)
        error = self._field_message(key)
        advice = self.dossier.warnings().get(key, "")
        if error or not advice:
            self.messages[key].show_message(error)
        else:
            self.messages[key].show_message("⚠ " + advice, warn=True)

    # ------------------------------------------------------------------ actions
    def _updatable(self) -> bool:
        return self._may_update and self.dossier.status is Status.TRANSMITTED

    def _send_update(self, note: str = "", priority: str = "") -> None:
        """What the ARM adds after transmission: kept in the sheet and sent to
        the room, where the regulator sees it highlighted."""
        try:
            self.desk.update_transmitted(self.dossier, note=note, priority=priority)
        except ValidationError as exc:
            self.summary.show_message(exc.message)
            return
        self.note.clear()
        self._render_notes()
        self._refresh_title()
        what = "Note" if note else f"Priorité {priority}"
        self.summary.show_message(f"{what} envoyée au régulateur.", info=True)

    def _add_note(self) -> None:
        text = self.note.text()
        if not text.strip():
            return
        if self._updatable():
            self._send_update(note=text)
            return
        self.dossier.inputs["note"] = ""
        self.desk.add_note(self.dossier, text)
        self.note.clear()
        self._render_notes()

    def transmit(self, confirmed: Collection[str] = ()) -> None:
        if self.dossier.status is not Status.DRAFT:
            return
        if self.birth_date.hasFocus():
            self._settle_birth_date()  # Ctrl+Entrée straight from the field
        if self.note.text().strip():
            self._add_note()  # a note typed but not yet added goes with the dossier
        try:
            self.desk.transmit(self.dossier, confirmed)
        except ConfirmationNeeded as exc:
            self._ask_confirmation(exc.questions)
            return
        except ValidationError:
            problems = self.dossier.problems()
            for key, text in problems.items():
                if key in self.messages:
                    self._shown.add(key)
                    self.messages[key].show_message(text)
            self._summary_failed = True
            self._show_summary_problems()
            first = next((k for k in FIELDS if k in problems), None)
            widget = getattr(self, first, None) if first else None
            if isinstance(widget, QWidget):
                widget.setFocus()
            return
        self._questions = {}
        self.confirm_bar.hide()
        self.summary.show_message(
            f"Transmis à {self.dossier.transmitted_at:%H:%M:%S} — {self.dossier.attribution}"
            f" ({codelist('attribution').label(self.dossier.attribution)}).",
            info=True,
        )
        self._set_read_only()
        self._refresh_title()
        self.transmitted.emit(self.dossier.case_id)

    def _show_summary_problems(self) -> None:
        """The footer after a refused transmission: what still prevents it,
        nothing once everything was corrected."""
        problems = self.dossier.problems()
        if problems:
            self.summary.show_message("Impossible de transmettre : " + " ".join(problems.values()))
        else:
            self._summary_failed = False
            self.summary.show_message("")

    def _ask_confirmation(self, questions: dict[str, str]) -> None:
        """Show what is unusual and wait for an explicit answer: Entrée on
        « Transmettre quand même » sends (the answer goes into the log),
        Échap goes back to the field concerned."""
        self._questions = dict(questions)
        self.confirm_text.setText(
            "<b>Confirmer la transmission ?</b><br>" + "<br>".join(questions.values())
        )
        self.confirm_bar.show()
        self.summary.show_message("")
        self.confirm_button.setFocus()
        # the question is seen whole, however far the sheet was scrolled
        QTimer.singleShot(0, self, lambda: self.sheet_scroll.ensureWidgetVisible(self.confirm_bar))

    def _confirmed(self) -> None:
        if self._questions:
            self.transmit(confirmed=tuple(self._questions))

    def _cancel_confirmation(self, *, refocus: bool = True) -> None:
        keys = self._questions
        self._questions = {}
        self.confirm_bar.hide()
        if refocus:
            field = self.callback if "no_callback" in keys else self.location
            field.setFocus()

    def _set_read_only(self) -> None:
        for w in self._edits:
            w.setReadOnly(True)
        for picker in (self.sex, self.branch):
            picker.setReadOnly(True)
        updatable = self._updatable()
        self.note.setReadOnly(not updatable)
        self.priority.setReadOnly(not updatable)
        if updatable:
            self.note.setPlaceholderText("Complément pour le régulateur — Entrée pour l'envoyer")
        self.caller_type.setEnabled(False)
        self.language.setEnabled(False)
        self.dental_reason.setEnabled(False)
        self.transmit_button.setEnabled(False)

    def set_save_state(self, text: str, ok: bool) -> None:
        self.state.setText(text)
        self.state.setStyleSheet("color: #2e7d32;" if ok else "color: #b00020; font-weight: bold;")

    def answered(self) -> None:
        """The desk stamped the call's reception time (Ctrl+N on this blank sheet)."""
        self._refresh_title()

    def focus_first(self) -> None:
        self.callback.setFocus()

    def shutdown(self) -> None:
        """Stop background lookups (the sheet is closing)."""
        self._geo_timer.stop()
        for task in (self._geo_task, self._previous_task):
            if task is not None and not task.done():
                task.cancel()

    # ------------------------------------------------------------------ reuse
    def recycle(self) -> None:
        """The sheet's call is closed and the sheet is kept for the next one
        (building a sheet takes the GUI thread a frame or more; Ctrl+N must
        not): background lookups stopped and every field back as built —
        nothing of this call stays in it, not even in an undo history."""
        self.shutdown()
        self._geo_task = self._previous_task = None
        self._loading = True  # the widgets' signals below are not edits
        try:
            self._summary_failed = False
            self._shown = set()
            self._places = {}
            self._previous_for = ""
            self._questions = {}
            for edit in (*self._edits, self.note):
                edit.setReadOnly(False)
                edit.setText("")  # also forgets the undo history (clear() would not)
            self.note.setPlaceholderText(NOTE_PLACEHOLDER)
            for picker in (self.sex, self.priority, self.branch):
                picker.setReadOnly(False)
                picker.set_value("")
            for combo in (self.dental_reason, self.caller_type, self.language):
                combo.setEnabled(True)
                combo.setCurrentIndex(0)
            self.transmit_button.setEnabled(True)
            for message in (*self.messages.values(), self.summary):
                message.show_message("")
            self.confirm_bar.hide()
            self.confirm_text.clear()
            self.previous.hide()
            self.previous.clear()
            for model, completer in (
                (self._loc_model, self._loc_completer),
                (self._motive_model, self._motive_completer),
            ):
                model.setStringList([])
                popup = completer.popup()
                if popup is not None:
                    popup.hide()
            self.notes.clear()
            self.place_label.clear()
            self.motive_label.clear()
            self.title.clear()  # (the journal's state, self.state, is the window's: kept)
            self.sheet_scroll.verticalScrollBar().setValue(0)
        finally:
            self._loading = False

    def rebind(self, dossier: Dossier, *, read_only: bool = False) -> None:
        """This (recycled) sheet, now ``dossier``'s: as a sheet built for it."""
        self.recycle()
        self.dossier = dossier
        self._may_update = not read_only
        self._load()
        if read_only or dossier.status is not Status.DRAFT:
            self._set_read_only()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)
