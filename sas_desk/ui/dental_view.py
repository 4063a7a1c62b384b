"""The dental regulator's view: who is on call for the patient's commune (now
or at a given time), the next periods, a search by dentist name, the status
of the roster in use, and a dental triage aid whose confirmed orientation is
recorded on the dossier.

Keyboard: Alt+1 commune, Alt+2 date and time, Alt+3 dentist search, Alt+4
triage signs; Enter runs the lookup; C (or Ctrl+C) in a table copies the
dentist's phone; in the signs list, the letter of a sign toggles it, 0/1/2
set the pain; C/J/G/M pick the orientation; Ctrl+Enter records it.

The roster queries run in a worker thread: the store is shared with the
sync, whose import holds it for a moment.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QStringListModel, Qt, Signal
from PySide6.QtGui import QGuiApplication, QKeyEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QCompleter,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from sas_desk.models.codes import codelist
from sas_desk.models.dental import (
    PAIN,
    REASON_SIGNS,
    SIGNS,
    Orientation,
    Suggestion,
    french_when,
    orientation_text,
    parse_when,
    period_text,
    short_period,
    suggest,
)
from sas_desk.models.dossier import Dossier, Event
from sas_desk.models.roster import PARIS, RosterEntry, is_on_call_day
from sas_desk.models.validation import Age, ValidationError, format_phone
from sas_desk.services.geo.territory import CommuneIndex
from sas_desk.ui.operation import run_operation
from sas_desk.ui.widgets import KeyPicker, Message, named

if TYPE_CHECKING:
    from sas_desk.services.desk import Desk
    from sas_desk.services.roster.service import RosterService, RosterStatus

log = logging.getLogger("sas_desk.ui.dental")

_DAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")


# ---------------------------------------------------------------------------- triage


@dataclass(frozen=True)
class DentalOrientation:
    """What the regulator confirmed (the view's ``oriented`` signal)."""

    dossier: Dossier | None
    orientation: Orientation
    suggested: Orientation | None
    text: str
    entry: RosterEntry | None = None
    event: Event | None = None
    sent: Any = None  # the desk's task sending it to the room's log (None: not sent)


# ---------------------------------------------------------------------------- helpers


class EntryTable(QTableWidget):
    """Roster entries; C / Ctrl+C copies the phone of the current row."""

    copied = Signal(str)
    COLUMNS = ("Période", "Dentiste", "Téléphone", "Secteur", "Adresse")

    def __init__(self, name: str) -> None:
        super().__init__(0, len(self.COLUMNS))
        self.setObjectName(name)
        self.setHorizontalHeaderLabels(list(self.COLUMNS))
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setTabKeyNavigation(False)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWordWrap(False)
        self.verticalHeader().hide()
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.entries: list[RosterEntry] = []
        copy = QShortcut(QKeySequence.StandardKey.Copy, self)
        copy.setContext(Qt.ShortcutContext.WidgetShortcut)
        copy.activated.connect(self.copy_phone)

    def set_entries(self, entries: Sequence[RosterEntry]) -> None:
        self.entries = list(entries)
        self.setRowCount(len(self.entries))
        for i, e in enumerate(self.entries):
            cells = (
                short_period(e),
                f"Dr {e.dentist}",
                format_phone(e.phone) if e.phone else "",
                e.sector_name,
                e.full_address(),
            )
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(f"{period_text(e)} — secteur {e.sector_name} ({e.sector_code})")
                self.setItem(i, j, item)
        if self.entries:
            self.selectRow(0)
        self.setMaximumHeight(
            self.horizontalHeader().height() + 6 + max(1, len(self.entries)) * 30
            if len(self.entries) <= 6
            else 16777215
        )

    def current_entry(self) -> RosterEntry | None:
        row = self.currentRow()
        return self.entries[row] if 0 <= row < len(self.entries) else None

    def copy_phone(self) -> str:
        entry = self.current_entry()
        if entry is None or not entry.phone:
            return ""
        QGuiApplication.clipboard().setText(entry.phone)
        self.copied.emit(entry.phone)
        return entry.phone

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_C and not event.modifiers() & (
            Qt.KeyboardModifier.AltModifier | Qt.KeyboardModifier.ControlModifier
        ):
            self.copy_phone()
            return
        super().keyPressEvent(event)


class SignList(QWidget):
    """The triage signs: checkboxes toggled by their letter while the list
    has focus; 0/1/2 set the pain level."""

    changed = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("triageSigns")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(2)
        self.boxes: dict[str, QCheckBox] = {}
        self._keys: dict[str, str] = {}
        for code, label, key in SIGNS:
            box = named(QCheckBox(f"[{key}]  {label}"), f"sign_{code}")
            box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            box.toggled.connect(lambda _=False: self.changed.emit())
            layout.addWidget(box)
            self.boxes[code] = box
            self._keys[key] = code
        pain_row = QHBoxLayout()
        pain_row.addWidget(QLabel("Douleur [0 1 2]"))
        self.pain = named(
            KeyPicker(
                [
                    ("0", "aucune", "0", ""),
                    ("1", "supportable", "1", ""),
                    ("2", "insupportable", "2", "#b35c00"),
                ]
            ),
            "pain",
        )
        self.pain.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.pain.changed.connect(lambda _v: self.changed.emit())
        pain_row.addWidget(self.pain, 1)
        layout.addLayout(pain_row)
        self.setStyleSheet("SignList:focus { border: 1px solid #1565c0; }")

    def signs(self) -> frozenset[str]:
        return frozenset(code for code, box in self.boxes.items() if box.isChecked())

    def set_signs(self, signs: Sequence[str], pain: str = "") -> None:
        for code, box in self.boxes.items():
            box.blockSignals(True)
            box.setChecked(code in signs)
            box.blockSignals(False)
        self.pain.set_value(pain)
        self.changed.emit()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        text = event.text().upper()
        if text and not event.modifiers() & (
            Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier
        ):
            if text in self._keys:
                box = self.boxes[self._keys[text]]
                box.setChecked(not box.isChecked())
                return
            if text in PAIN:
                self.pain.set_value("" if self.pain.value() == text else text, emit=True)
                return
        super().keyPressEvent(event)


# ---------------------------------------------------------------------------- the view


@dataclass
class _Answer:
    insee: str
    label: str
    at: datetime | None  # None: now
    whole_day: bool
    now: datetime
    on_call: list[RosterEntry] = field(default_factory=list)
    upcoming: list[RosterEntry] = field(default_factory=list)
    status: RosterStatus | None = None


class DentalView(QWidget):
    """The dental regulator's screen (one per window, as a tab)."""

    oriented = Signal(object)  # DentalOrientation

    def __init__(
        self,
        communes: CommuneIndex,
        *,
        desk: Desk | None = None,
        next_limit: int = 3,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("DentalView")
        self.communes = communes
        self.desk = desk
        self.next_limit = next_limit
        self.service: RosterService | None = None
        self.dossier: Dossier | None = None
        self.answer: _Answer | None = None
        self.status: RosterStatus | None = None
        self.last_lookup: asyncio.Task[None] | None = None
        self.last_search: asyncio.Task[None] | None = None
        self.last_status: asyncio.Task[None] | None = None
        self._seq = 0
        self._search_seq = 0
        self._pending_lookup = False

        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        # roster status: always visible; a banner when stale or offline
        self.status_label = named(
            QLabel("Tableaux de garde en cours de chargement…"), "rosterStatus"
        )
        self.status_label.setWordWrap(True)
        self.status_label.setStyleSheet("color: #555;")
        outer.addWidget(self.status_label)
        self.status_banner = named(QLabel(), "rosterBanner")
        self.status_banner.setWordWrap(True)
        self.status_banner.setStyleSheet(
            "background: #fff4d6; border: 1px solid #e0b040; border-radius: 4px; padding: 4px;"
        )
        self.status_banner.hide()
        outer.addWidget(self.status_banner)
        # importing a roster file (CSV, iCalendar, JSON): all or nothing
        imports = QHBoxLayout()
        self.import_button = named(
            QPushButton("Importer un tableau de garde…  (Ctrl+I)"), "rosterImport"
        )
        self.import_button.clicked.connect(self.import_roster)
        imports.addWidget(self.import_button)
        imports.addStretch(1)
        outer.addLayout(imports)
        self.import_report = named(QPlainTextEdit(), "rosterImportReport")
        self.import_report.setReadOnly(True)
        self.import_report.setMaximumHeight(140)
        self.import_report.hide()
        outer.addWidget(self.import_report)
        self.choose_file = self._choose_file  # replaced in tests
        self.last_import: asyncio.Task[None] | None = None
        self.dossier_label = named(QLabel(), "dentalDossier")
        self.dossier_label.setWordWrap(True)
        self.dossier_label.setStyleSheet("color: #1565c0; font-weight: bold;")
        self.dossier_label.hide()
        outer.addWidget(self.dossier_label)

        form = QGridLayout()
        self.commune = named(QLineEdit(), "dentalCommune")
        self.commune.setPlaceholderText("Commune du patient (nom ou code INSEE)")
        self._commune_model = QStringListModel(self)
        self._completer = QCompleter(self._commune_model, self)
        self._completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self._completer.setCompletionMode(QCompleter.CompletionMode.UnfilteredPopupCompletion)
        self.commune.setCompleter(self._completer)
        self.commune.textEdited.connect(self._suggest_communes)
        self.commune.returnPressed.connect(self.lookup)
        self.when = named(QLineEdit(), "dentalWhen")
        self.when.setPlaceholderText("maintenant — ou JJ/MM[/AAAA] HH:MM")
        self.when.returnPressed.connect(self.lookup)
        self.lookup_button = named(QPushButton("Qui est de garde ?  (Entrée)"), "dentalLookup")
        self.lookup_button.clicked.connect(self.lookup)
        form.addWidget(QLabel("Commune  (Alt+1)"), 0, 0)
        form.addWidget(self.commune, 0, 1)
        form.addWidget(QLabel("Quand  (Alt+2)"), 0, 2)
        form.addWidget(self.when, 0, 3)
        form.addWidget(self.lookup_button, 0, 4)
        form.setColumnStretch(1, 3)
        form.setColumnStretch(3, 2)
        outer.addLayout(form)
        self.message = Message()
        outer.addWidget(self.message)

        split = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        col = QVBoxLayout(left)
        col.setContentsMargins(0, 0, 6, 0)

        self.answer_title = named(
            QLabel("Saisissez la commune du patient puis Entrée."), "answerTitle"
        )
        self.answer_title.setWordWrap(True)
        self.answer_title.setStyleSheet("font-size: 14px; font-weight: bold; margin-top: 6px;")
        col.addWidget(self.answer_title)
        self.card = named(QLabel(), "onCallCard")
        self.card.setWordWrap(True)
        self.card.setTextFormat(Qt.TextFormat.RichText)
        self.card.setStyleSheet(
            "QLabel { background: #eef6ee; border: 1px solid #9cc59c; border-radius: 6px;"
            " padding: 8px; } QLabel:focus { border: 2px solid #1565c0; }"
        )
        self.card.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.card.hide()
        col.addWidget(self.card)
        self.on_call_table = EntryTable("onCallTable")
        col.addWidget(self.on_call_table)
        self.next_title = named(QLabel("<b>Prochaines gardes</b>"), "nextTitle")
        self.next_title.setWordWrap(True)
        col.addWidget(self.next_title)
        self.next_table = EntryTable("nextTable")
        col.addWidget(self.next_table)

        search_row = QHBoxLayout()
        search_row.addWidget(QLabel("<b>Dentiste</b>  (Alt+3)"))
        self.search = named(QLineEdit(), "dentistSearch")
        self.search.setPlaceholderText("Nom du dentiste : ses prochaines gardes")
        self.search.setClearButtonEnabled(True)
        self.search.textEdited.connect(self.search_dentist)
        search_row.addWidget(self.search, 1)
        col.addLayout(search_row)
        self.search_table = EntryTable("searchTable")
        col.addWidget(self.search_table, 1)
        for table in (self.on_call_table, self.next_table, self.search_table):
            table.copied.connect(self._on_copied)
        self.on_call_table.currentCellChanged.connect(self._on_current_changed)
        split.addWidget(left)

        right = QFrame()
        right.setObjectName("triagePanel")
        right.setFrameShape(QFrame.Shape.StyledPanel)
        tri = QVBoxLayout(right)
        tri.addWidget(QLabel("<b>Aide au tri dentaire</b>  (Alt+4 : lettres pour cocher)"))
        self.signs = SignList()
        self.signs.changed.connect(self._update_suggestion)
        tri.addWidget(self.signs)
        self.suggestion_label = named(QLabel("Cochez les signes présents."), "triageSuggestion")
        self.suggestion_label.setWordWrap(True)
        self.suggestion_label.setTextFormat(Qt.TextFormat.RichText)
        self.suggestion_label.setStyleSheet(
            "QLabel { background: #f4f6f9; border-radius: 4px; padding: 6px; }"
        )
        tri.addWidget(self.suggestion_label)
        tri.addWidget(QLabel("<b>Orientation retenue</b>"))
        self.orientation = named(
            KeyPicker(
                [
                    (Orientation.CONSEIL.value, "Conseil", "C", "#2e7d32"),
                    (Orientation.DENTISTE_JOUR.value, "Dentiste du jour", "J", "#1565c0"),
                    (Orientation.DENTISTE_GARDE.value, "Dentiste de garde", "G", "#1565c0"),
                    (Orientation.MEDECIN.value, "Médecin (AMU)", "M", "#b00020"),
                ]
            ),
            "orientation",
        )
        _two_rows(self.orientation)
        tri.addWidget(self.orientation)
        self.orientation_note = named(QLineEdit(), "orientationNote")
        self.orientation_note.setPlaceholderText("Commentaire (facultatif)")
        tri.addWidget(self.orientation_note)
        self.confirm_button = named(
            QPushButton("Enregistrer l'orientation  (Ctrl+Entrée)"), "confirmOrientation"
        )
        self.confirm_button.clicked.connect(self.confirm)
        tri.addWidget(self.confirm_button)
        self.triage_message = Message()
        tri.addWidget(self.triage_message)
        tri.addStretch(1)
        right.setMinimumWidth(460)
        right.setMaximumWidth(540)
        split.addWidget(right)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        outer.addWidget(split, 1)

        for seq, slot in (
            ("Alt+1", self.focus_commune),
            ("Alt+2", self.when.setFocus),
            ("Alt+3", self.search.setFocus),
            ("Alt+4", self.signs.setFocus),
            ("Ctrl+Return", self.confirm),
            ("Ctrl+Enter", self.confirm),
            ("Ctrl+I", self.import_roster),
        ):
            sc = QShortcut(QKeySequence(seq), self)
            sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            sc.activated.connect(slot)
        self.setTabOrder(self.commune, self.when)
        self.setTabOrder(self.when, self.lookup_button)
        self.setTabOrder(self.lookup_button, self.on_call_table)
        self.setTabOrder(self.on_call_table, self.next_table)
        self.setTabOrder(self.next_table, self.search)
        self.setTabOrder(self.search, self.search_table)
        self.setTabOrder(self.search_table, self.signs)
        self.setTabOrder(self.signs, self.orientation)
        self.setTabOrder(self.orientation, self.orientation_note)
        self.setTabOrder(self.orientation_note, self.confirm_button)

    # ------------------------------------------------------------------ import
    def _choose_file(self) -> str:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Importer un tableau de garde",
            "",
            "Tableaux de garde (*.csv *.ics *.json);;Tous les fichiers (*)",
        )
        return path

    def import_roster(self) -> None:
        """Import a roster file chosen by the regulator: the report (counts,
        overlaps, duplicates, gaps) or every error is shown; on refusal the
        roster in force stays."""
        if self.service is None:
            self._show_import(["Tableaux de garde pas encore chargés : réessayez dans un instant."])
            return
        path = self.choose_file()
        if not path:
            return
        self.import_button.setEnabled(False)
        self._show_import([f"Import de « {Path(path).name} » en cours…"])
        self.last_import = run_operation(
            self._import(self.service, Path(path)),
            name="roster-import",
            show_error=lambda text: self._show_import([text], error=True),
            on_finally=lambda: self.import_button.setEnabled(True),
        )

    async def _import(self, service: RosterService, path: Path) -> None:
        """A refused file is listed problem by problem; any other known
        error (disk, read-only store) goes to the runner, which says it."""
        from sas_desk.services.roster.service import RosterImportError

        try:
            report = await asyncio.to_thread(service.import_file, path)
        except RosterImportError as exc:
            log.info("roster import refused: %d issues", len(exc.issues))
            self._show_import(exc.lines_fr(), error=True)
            return
        log.info("roster imported: version %s", report.version.id)
        self._show_import(report.lines_fr())
        self.refresh_status()
        if self.answer is not None:
            self.lookup()

    def _show_import(self, lines: Sequence[str], *, error: bool = False) -> None:
        self.import_report.setPlainText("\n".join(lines))
        colour = "#b71c1c" if error else "#1b5e20"
        self.import_report.setStyleSheet(f"color: {colour};")
        self.import_report.show()

    # ------------------------------------------------------------------ service
    def set_service(self, service: RosterService | None, note: str = "") -> None:
        """The roster service once usable (``None`` and a French note while
        it is loading or when it failed)."""
        self.service = service
        if service is None:
            self.status_label.setText(note or "Tableaux de garde en cours de chargement…")
            return
        self.refresh_status()
        if self._pending_lookup:
            self._pending_lookup = False
            self.lookup()

    def now(self) -> datetime:
        if self.service is not None:
            return self.service.now()
        return datetime.now(PARIS)

    def refresh_status(self) -> None:
        """Re-read the roster status (after a sync)."""
        if self.service is None:
            return
        dep = self.answer.insee[:2] if self.answer is not None else None
        self.last_status = run_operation(
            self._refresh_status(self.service, dep),
            name="roster-status",
            show_error=self.status_label.setText,
        )

    async def _refresh_status(self, service: RosterService, dep: str | None) -> None:
        status = await asyncio.to_thread(service.status, dep)
        if status.version is None and dep is not None:  # a commune outside every roster
            status = await asyncio.to_thread(service.status, None)
        self._show_status(status)

    def _show_status(self, status: RosterStatus) -> None:
        self.status = status
        v = status.version
        if v is None:
            text = "Aucun tableau de garde dentaire chargé."
        else:
            span = ""
            if v.first_day and v.last_day:
                span = f", gardes du {v.first_day:%d/%m/%Y} au {v.last_day:%d/%m/%Y}"
            imported = v.imported_at.astimezone(PARIS)
            text = (
                f"Tableau de garde en vigueur : importé le {imported:%d/%m/%Y} "
                f"(source : {v.source}){span}."
            )
            if self.service is not None and self.service.sources:
                text += (
                    f"  Dernière synchronisation réussie : "
                    f"{status.last_sync.astimezone(PARIS):%d/%m/%Y %H:%M}."
                    if status.last_sync
                    else "  Jamais synchronisé."
                )
            else:
                text += "  Pas de source de synchronisation configurée."
        self.status_label.setText(text)
        flagged = status.stale or status.offline
        if flagged:
            self.status_banner.setText("⚠ " + status.message_fr)
            red = status.offline or status.version is None
            self.status_banner.setStyleSheet(
                "background: %s; border: 1px solid %s; border-radius: 4px; padding: 4px;"
                % (("#fde2e1", "#d08080") if red else ("#fff4d6", "#e0b040"))
            )
        self.status_banner.setVisible(flagged)

    # ------------------------------------------------------------------ dossier
    def prefill(self, dossier: Dossier) -> None:
        """A dental dossier: its commune, and the signs its reason implies."""
        self.dossier = dossier
        loc = dossier.location
        label = dossier.sender_case_id or dossier.case_id
        reason = dossier.dental_reason
        self.dossier_label.setText(
            f"Dossier {label} — {dossier.priority}"
            + (f" — {codelist('dental_reason').label(reason)}" if reason else "")
        )
        self.dossier_label.show()
        if loc.insee:
            commune = self.communes.by_insee(loc.insee)
            self.commune.setText(f"{commune.name} ({commune.insee})" if commune else loc.insee)
        elif loc.city:
            self.commune.setText(loc.city)
        self.signs.set_signs(REASON_SIGNS.get(reason, ()))
        if self.commune.text():
            self.lookup()

    # ------------------------------------------------------------------ lookup
    def focus_commune(self) -> None:
        self.commune.setFocus()
        self.commune.selectAll()

    def _suggest_communes(self, text: str) -> None:
        found = self.communes.lookup(text, 8) if len(text.strip()) >= 2 else []
        self._commune_model.setStringList([f"{c.name} ({c.insee})" for c in found])

    def _resolve(self, text: str) -> tuple[str, str] | None:
        raw = text.strip()
        match = re.search(r"\((\w{5})\)\s*$", raw)
        code = match.group(1) if match else None
        if code is None:
            if self.service is not None:
                code = self.service.resolve_commune(raw)
            else:
                found = self.communes.lookup(raw, 1)
                code = found[0].insee if found else None
        if code is None:
            return None
        commune = self.communes.by_insee(code)
        return code, (f"{commune.name} ({code})" if commune else code)

    def lookup(self) -> None:
        """Who is on call for the commune at the time asked (Enter)."""
        text = self.commune.text().strip()
        popup = self._completer.popup()
        if popup is not None:
            popup.hide()
        if not text:
            self.message.show_message("Saisissez la commune du patient (nom ou code INSEE).")
            self.commune.setFocus()
            return
        resolved = self._resolve(text)
        if resolved is None:
            self.message.show_message(f"Commune inconnue : « {text} ».")
            return
        now = self.now()
        when = parse_when(self.when.text(), now)
        if when is None:
            self.message.show_message(
                "Date ou heure illisible : JJ/MM/AAAA HH:MM, HH:MM, ou vide pour maintenant."
            )
            self.when.setFocus()
            return
        self.message.show_message("")
        if self.service is None:
            self._pending_lookup = True
            self.answer_title.setText("Tableaux de garde en cours de chargement…")
            return
        insee, label = resolved
        at, whole_day = when
        self._seq += 1
        self.last_lookup = run_operation(
            self._lookup(self.service, self._seq, _Answer(insee, label, at, whole_day, now)),
            name="dental-lookup",
            show_error=self.message.show_message,
        )

    async def _lookup(self, service: RosterService, seq: int, answer: _Answer) -> None:
        def run() -> _Answer:
            if answer.whole_day:
                assert answer.at is not None
                day = answer.at.date()
                periods = service.next_on_call(
                    answer.insee, answer.at.replace(second=0) - _SECOND, limit=12
                )
                answer.on_call = [e for e in periods if e.day == day]
                last = max((e.start for e in answer.on_call), default=answer.at)
                answer.upcoming = service.next_on_call(answer.insee, last, limit=self.next_limit)
            else:
                at = answer.at or answer.now
                answer.on_call = service.on_call(answer.insee, at)
                after = max((e.end for e in answer.on_call), default=at)
                # the next periods after the current one (or after the instant)
                answer.upcoming = service.next_on_call(
                    answer.insee, after - _SECOND, limit=self.next_limit
                )
            answer.status = service.status(answer.insee[:2])
            if answer.status.version is None:
                answer.status = service.status(None)
            return answer

        done = await asyncio.to_thread(run)
        if seq != self._seq:
            return  # a newer lookup was started
        self._show_answer(done)

    def _show_answer(self, answer: _Answer) -> None:
        self.answer = answer
        if answer.status is not None:
            self._show_status(answer.status)
        when = french_when(answer.at) if answer.at is not None else "maintenant"
        if answer.whole_day:
            assert answer.at is not None
            day = answer.at.astimezone(PARIS)
            when_text = f"le {_DAYS[day.weekday()]} {day:%d/%m/%Y}"
        else:
            when_text = "maintenant" if answer.at is None else f"le {when}"
        self.on_call_table.set_entries(answer.on_call)
        if answer.on_call:
            n = len({e.dentist_key for e in answer.on_call})
            who = "Dentiste de garde" if n == 1 else f"{n} dentistes de garde"
            self.answer_title.setText(f"{who} pour {answer.label}, {when_text} :")
            self._show_card(answer.on_call[0])
            # one dentist: the card says it all; several: the table picks one
            self.on_call_table.setVisible(len(answer.on_call) > 1)
        else:
            reference = answer.at or answer.now
            day_note = (
                ""
                if is_on_call_day(reference.astimezone(PARIS).date())
                else " (la permanence dentaire est due les dimanches et jours fériés)"
            )
            self.answer_title.setText(
                f"Aucun dentiste de garde pour {answer.label} {when_text}{day_note}."
            )
            self.card.hide()
            self.on_call_table.hide()
        self.next_table.set_entries(answer.upcoming)
        if answer.upcoming:
            first = answer.upcoming[0]
            self.next_title.setText(
                f"<b>Prochaine garde</b> : {period_text(first)} — Dr {first.dentist}, "
                f"{format_phone(first.phone)}"
            )
        else:
            self.next_title.setText("<b>Prochaines gardes</b> : aucune dans le tableau en vigueur.")
        self._update_suggestion()
        if answer.on_call and (self.commune.hasFocus() or self.when.hasFocus()):
            # C copies the phone from there
            (self.on_call_table if len(answer.on_call) > 1 else self.card).setFocus()

    def _show_card(self, e: RosterEntry) -> None:
        phone = format_phone(e.phone) if e.phone else "—"
        notes = f"<br><i>{_esc(e.notes)}</i>" if e.notes else ""
        self.card.setText(
            f"<span style='font-size:16px'><b>Dr {_esc(e.dentist)}</b></span>"
            f" — secteur {_esc(e.sector_name)} ({_esc(e.sector_code)})<br>"
            f"<span style='font-size:20px; font-weight:bold'>☎ {phone}</span>"
            "&nbsp;&nbsp;<span style='color:#555'>[C] copier</span><br>"
            f"{_esc(e.full_address())}<br>"
            f"Garde : {period_text(e)}{notes}"
        )
        self.card.show()

    def _on_current_changed(self, row: int, *_: int) -> None:
        if 0 <= row < len(self.on_call_table.entries):
            self._show_card(self.on_call_table.entries[row])

    def current_on_call(self) -> RosterEntry | None:
        if self.answer is None or not self.answer.on_call:
            return None
        if self.on_call_table.isVisible():
            return self.on_call_table.current_entry() or self.answer.on_call[0]
        return self.answer.on_call[0]

    def copy_phone(self) -> str:
        """Copy the phone of the dentist shown on the card (C on the commune
        field once answered, or in any table)."""
        entry = self.current_on_call()
        if entry is None or not entry.phone:
            return ""
        QGuiApplication.clipboard().setText(entry.phone)
        self._on_copied(entry.phone)
        return entry.phone

    def _on_copied(self, phone: str) -> None:
        self.message.show_message(f"Numéro copié : {format_phone(phone)}", info=True)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_C and not event.modifiers():
            self.copy_phone()
            return
        super().keyPressEvent(event)

    # ------------------------------------------------------------------ search
    def search_dentist(self, text: str) -> None:
        if self.service is None:
            return
        self._search_seq += 1
        self.last_search = run_operation(
            self._search(self.service, self._search_seq, text),
            name="dentist-search",
            show_error=self.message.show_message,
        )

    async def _search(self, service: RosterService, seq: int, text: str) -> None:
        if len(text.strip()) < 2:
            found: list[RosterEntry] = []
        else:
            found = await asyncio.to_thread(service.search_dentist, text, limit=30)
        if seq == self._search_seq:
            self.search_table.set_entries(found)
            if text.strip() and not found and len(text.strip()) >= 2:
                self.message.show_message(
                    f"Aucune garde à venir pour un dentiste « {text.strip()} ».", warn=True
                )
            elif found:
                self.message.show_message("")

    # ------------------------------------------------------------------ triage
    def reference_time(self) -> datetime:
        if self.answer is not None:
            return self.answer.at or self.answer.now
        return self.now()

    def suggestion(self) -> Suggestion:
        on_call_day = is_on_call_day(self.reference_time().astimezone(PARIS).date())
        return suggest(
            self.signs.signs(),
            self.signs.pain.value(),
            on_call_day=on_call_day,
            age_years=self.patient_age(),
        )

    def patient_age(self) -> float | None:
        """The dossier's patient age in years, when valid."""
        if self.dossier is None or not self.dossier.patient.age:
            return None
        try:
            return Age.from_iso(self.dossier.patient.age).years
        except ValidationError:
            return None

    def _update_suggestion(self) -> None:
        s = self.suggestion()
        if s.orientation is None:
            text = "Cochez les signes présents (lettres entre crochets) et la douleur (0, 1, 2)."
        else:
            colour = "#b00020" if s.orientation is Orientation.MEDECIN else "#1565c0"
            text = f"Suggestion : <b style='color:{colour}'>{s.orientation.label}</b>"
            if s.reasons:
                text += f"<br>Car : {_esc(', '.join(s.reasons))}."
        for line in s.advice:
            text += f"<br>• {_esc(line)}"
        self.suggestion_label.setText(text)
        if s.orientation is not None:
            self.orientation.set_value(s.orientation.value)

    def confirm(self) -> DentalOrientation | None:
        """Record the orientation chosen (Ctrl+Enter) on the dossier."""
        value = self.orientation.value()
        if not value:
            self.triage_message.show_message("Choisissez une orientation (C, J, G ou M).")
            return None
        chosen = Orientation(value)
        s = self.suggestion()
        entry = self.current_on_call() if chosen is Orientation.DENTISTE_GARDE else None
        if chosen is Orientation.DENTISTE_GARDE and entry is None and self.next_table.entries:
            entry = self.next_table.current_entry()
        signs = self.signs.signs()
        pain = self.signs.pain.value()
        text = orientation_text(chosen, entry, signs, pain, self.orientation_note.text())
        event: Event | None = None
        sent: Any = None
        if self.dossier is not None and self.desk is not None:
            event, sent = self.desk.orient_dental(
                self.dossier,
                chosen,
                suggested=s.orientation,
                signs=signs,
                pain=pain,
                commune=self.answer.insee if self.answer else "",
                entry=entry,
                note=self.orientation_note.text(),
            )
            self.triage_message.show_message(
                f"Orientation enregistrée dans le dossier "
                f"{self.dossier.sender_case_id or self.dossier.case_id} : {chosen.short}.",
                info=True,
            )
            log.info("dental orientation %s recorded on %s", chosen.value, self.dossier.case_id)
        else:
            self.triage_message.show_message(
                f"Orientation : {chosen.short} (aucun dossier ouvert : rien n'est enregistré).",
                warn=True,
            )
        result = DentalOrientation(self.dossier, chosen, s.orientation, text, entry, event, sent)
        self.oriented.emit(result)
        return result


_SECOND = timedelta(seconds=1)


def _two_rows(picker: KeyPicker) -> None:
    """Lay a key picker's buttons out on two rows (the triage column is narrow)."""
    row = picker.layout()
    assert isinstance(row, QHBoxLayout)
    buttons = [b for b in picker.findChildren(QPushButton) if b.parent() is picker]
    grid = QGridLayout()
    grid.setSpacing(4)
    for i, button in enumerate(buttons):
        row.removeWidget(button)
        button.setMinimumWidth(190)
        grid.addWidget(button, i // 2, i % 2)
    row.insertLayout(0, grid, 1)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def in_dental_branch(dossier: Dossier) -> bool:
    return dossier.is_dental


__all__ = [
    "DentalOrientation",
    "DentalView",
    "Orientation",
    "Suggestion",
    "in_dental_branch",
    "parse_when",
    "suggest",
]
