"""The main window: role picker, banners, "Dossiers du jour", call sheets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QModelIndex, QSettings, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QGuiApplication, QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGridLayout,
    QHeaderView,
    QLabel,
    QMainWindow,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from sas_desk.models.dossier import CALL_TAKING_ROLES, Dossier, Status
from sas_desk.models.queue import WaitLimits, queues_for_role, role_may
from sas_desk.models.validation import ValidationError
from sas_desk.services.config import ROLES, Config
from sas_desk.services.desk import Desk
from sas_desk.services.geo.resolver import LocationResolver
from sas_desk.services.journal.service import Journal, SaveState
from sas_desk.services.journal.store import OpenReport
from sas_desk.services.private import KEYRING_FR
from sas_desk.services.queues.client import LinkState, QueueClient
from sas_desk.ui.call_sheet import CallSheet
from sas_desk.ui.day_model import DayModel
from sas_desk.ui.dossier_view import DossierView
from sas_desk.ui.escalation import EscalationBar
from sas_desk.ui.operation import run_operation
from sas_desk.ui.queue_panel import QueuePanel
from sas_desk.ui.widgets import Banner, named

if TYPE_CHECKING:
    from sas_desk.services.queues.remote import RoomSession, SessionInfo
    from sas_desk.ui.dental_view import DentalOrientation, DentalView
    from sas_desk.ui.session_gate import SessionGate
    from sas_desk.ui.slot_search import SlotSearchPanel

log = logging.getLogger("sas_desk.ui")
LIST_MIN_WIDTH = 360  # the queue list beside an open dossier: priority, wait, motive
ROLE_KEYS = {"ARM": "1", "OSNP": "2", "MRU": "3", "MRL": "4", "DENT": "5", "SUP": "6", "STATS": "7"}


NOT_IN_QUEUE = "Orientation enregistrée localement ; file non mise à jour : "


class RolePicker(QWidget):
    picked = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("RolePicker")
        outer = QVBoxLayout(self)
        outer.addStretch(1)
        title = QLabel("Qui travaille sur ce poste ?")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        title.setStyleSheet("font-size: 20px; font-weight: bold; margin-bottom: 12px;")
        outer.addWidget(title)
        grid = QGridLayout()
        holder = QWidget()
        holder.setMaximumWidth(960)
        holder.setLayout(grid)
        self.buttons: dict[str, QPushButton] = {}
        for i, (code, label) in enumerate(ROLES.items()):
            button = QPushButton(f"{ROLE_KEYS[code]}   {code} — {label}")
            button.setObjectName(f"role_{code}")
            button.setMinimumHeight(44)
            button.setStyleSheet("text-align: left; padding-left: 14px; font-size: 14px;")
            button.clicked.connect(lambda _=False, c=code: self.picked.emit(c))
            grid.addWidget(button, i // 2, i % 2)
            self.buttons[code] = button
        outer.addWidget(holder, 0, Qt.AlignmentFlag.AlignHCenter)
        hint = QLabel(
            "Touches 1 à 6. Le rôle reste affiché dans la barre d'état et peut être changé (Ctrl+Maj+R)."
        )
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        hint.setStyleSheet("color: #555; margin-top: 10px;")
        outer.addWidget(hint)
        outer.addStretch(2)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._by_key = {key: code for code, key in ROLE_KEYS.items()}

    def keyPressEvent(self, event: QKeyEvent) -> None:
        code = self._by_key.get(event.text())
        if code is not None:
            self.picked.emit(code)
            return
        super().keyPressEvent(event)


class MainWindow(QMainWindow):
    role_changed = Signal(str)

    def __init__(
        self,
        config: Config,
        desk: Desk,
        journal: Journal,
        resolver: LocationResolver,
        *,
        report: OpenReport | None,
        unfinished: list[Dossier],
        today: list[Dossier],
        simulator_url: str = "",
        queue_client: QueueClient | None = None,
        limits: WaitLimits | None = None,
        session: RoomSession | None = None,
        restoring: bool = False,
    ) -> None:
        """``restoring``: the journal holds unfinished sheets that cannot be
        read yet (the window paints before the data key is read, app.main):
        the ARM's first sheet waits for :meth:`restore`, which offers them."""
        super().__init__()
        self._restoring = restoring
        self.session = session  # production: the room server's session
        self.gate: SessionGate | None = None  # the screen lock, operator changes (app.py)
        self.setObjectName("MainWindow")
        self.config = config
        self.desk = desk
        self.journal = journal
        self.resolver = resolver
        # a sheet left blank by an earlier session is no unfinished call
        self.unfinished = [d for d in unfinished if not d.is_blank]
        self._blank_left = [d for d in unfinished if d.is_blank]
        self.queue_client = queue_client
        self.limits = limits or WaitLimits()
        self.queue_panel: QueuePanel | None = None
        self.escalation: EscalationBar | None = None  # late P0/P1 of the queues followed
        self.slot_panel: SlotSearchPanel | None = None
        self.simulator_url = ""  # the demo simulator's, once started
        self.slot_source: Any = None  # the SlotService, once the app built it
        self.orientation_task: asyncio.Task[None] | None = None  # booking → queue (tests)
        self.view_refresh: asyncio.Task[None] | None = None  # the last view refresh (tests)
        self._slot_starter: Callable[[], object] | None = None
        self._slot_note = "Annuaire des praticiens en cours de chargement…"
        self.dental_view: DentalView | None = None
        self.roster_service: Any = None  # the RosterService, once the app built it
        self._roster_starter: Callable[[], object] | None = None
        self._roster_ready = False
        self.dental_task: asyncio.Task[None] | None = None  # the last orientation sent
        self._roster_note = "Tableaux de garde en cours de chargement…"
        self._offline_banner: Banner | None = None
        self._last_save_ok: bool | None = None
        self._last_save_second = -1
        # a closed call's sheet, emptied, for the next Ctrl+N (see close_sheet)
        self._spare_sheet: CallSheet | None = None
        self.role = ""
        self.setWindowTitle("SAS Desk — " + ("démonstration" if config.demo else config.owner))
        screen = QGuiApplication.primaryScreen()
        room = screen.availableGeometry() if screen is not None else None
        # the whole screen up to 1920×1080: a dossier beside the list needs ≈ 1,600 px
        self.resize(
            min(1920, room.width()) if room else 1400, min(1080, room.height()) if room else 900
        )

        self.stack = QStackedWidget()
        self.picker = RolePicker()
        self.picker.picked.connect(self.set_role)
        self.stack.addWidget(self.picker)

        work = QWidget()
        layout = QVBoxLayout(work)
        layout.setContentsMargins(6, 6, 6, 6)
        self.banners = QVBoxLayout()
        layout.addLayout(self.banners)
        split = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        day_title = QLabel("Dossiers du jour")
        day_title.setStyleSheet("font-weight: bold; font-size: 14px;")
        left_layout.addWidget(day_title)
        self.day_model = DayModel()
        self.day_model.reset(today)
        self.day_view = named(QTableView(), "dayList")
        self.day_view.setModel(self.day_model)
        self.day_view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.day_view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.day_view.verticalHeader().hide()
        self.day_view.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents
        )
        self.day_view.horizontalHeader().setStretchLastSection(True)
        # sized on the rows in view (the newest), not on every row of the day:
        # each change of a row re-measured up to 1,000 rows (Qt's default)
        self.day_view.horizontalHeader().setResizeContentsPrecision(0)
        self.day_view.activated.connect(self._open_from_list)
        self.day_view.doubleClicked.connect(self._open_from_list)
        left_layout.addWidget(self.day_view)
        self.left_tabs = named(QTabWidget(), "leftTabs")
        self.left_tabs.addTab(left, "Dossiers du jour")
        split.addWidget(self.left_tabs)

        self.tabs = named(QTabWidget(), "sheets")
        self.tabs.setTabsClosable(True)
        self.tabs.tabCloseRequested.connect(self.close_sheet)
        self.tabs.currentChanged.connect(
            lambda i: self.make_room(w) if (w := self.tabs.widget(i)) is not None else None
        )
        self.empty = QLabel(
            "Ctrl+N : nouvel appel\nDouble-clic ou Entrée sur un dossier du jour pour l'ouvrir"
        )
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setStyleSheet("color: #777; font-size: 16px;")
        self.right = QStackedWidget()
        self.right.addWidget(self.empty)
        self.right.addWidget(self.tabs)
        split.addWidget(self.right)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        split.setSizes([660, 740])  # the queue tabs of a supervisor fit without scrolling
        self.split = split
        layout.addWidget(split, 1)
        self.stack.addWidget(work)
        self.setCentralWidget(self.stack)

        bar = self.statusBar()
        self.role_button = named(QPushButton("Rôle : —"), "roleButton")
        self.role_button.setFlat(True)
        self.role_button.clicked.connect(self.show_role_picker)
        bar.addWidget(self.role_button)
        self.session_label = named(QLabel(""), "sessionLabel")
        self._cold_offline: Banner | None = None  # started while the room server was down
        if session is not None:
            bar.addWidget(self.session_label)
        bar.addWidget(
            QLabel(f"Poste : {config.room_station if session is not None else config.workstation}")
        )
        mode = (
            "Démonstration (simulateur local)" if config.demo else f"Organisation : {config.owner}"
        )
        self.mode_label = named(QLabel(mode), "modeLabel")
        bar.addWidget(self.mode_label)
        if simulator_url:
            self.set_simulator_url(simulator_url)
        self.save_label = named(QLabel("Journal : prêt"), "saveLabel")
        bar.addPermanentWidget(self.save_label)
        self.hub_label: QLabel | None = None  # shown once [hub] is configured
        self.hub_processor: Any = None  # HubProcessor of the embedded agent (app.py)
        # room mode: the room server's appointments (services/hub/appointments.py)
        self.room_appointments: Any = None
        self.room_sharing: Any = None

        new_call = QAction("Nouvel appel", self)
        new_call.setShortcut(QKeySequence("Ctrl+N"))
        new_call.triggered.connect(self.new_call)
        close_tab = QAction("Fermer la fiche", self)
        close_tab.setShortcut(QKeySequence("Ctrl+W"))
        close_tab.triggered.connect(lambda: self.close_sheet(self.tabs.currentIndex()))
        change_role = QAction("Changer de rôle" if session is None else "Changer de session", self)
        change_role.setShortcut(QKeySequence("Ctrl+Shift+R"))
        change_role.triggered.connect(self.show_role_picker)
        focus_list = QAction("Dossiers du jour", self)
        focus_list.setShortcut(QKeySequence("F6"))
        focus_list.triggered.connect(lambda: self.day_view.setFocus())
        slot_search = QAction("Recherche de créneaux", self)
        slot_search.setShortcut(QKeySequence("Ctrl+F"))
        slot_search.triggered.connect(lambda: self.open_slot_search())
        self.slot_search_action = slot_search
        dental = QAction("Garde dentaire et tri", self)
        dental.setShortcut(QKeySequence("Ctrl+D"))
        dental.triggered.connect(lambda: self.open_dental_view())
        self.dental_action = dental
        appointments = QAction("Rendez-vous SAS à rattacher", self)
        appointments.setShortcut(QKeySequence("Ctrl+Shift+A"))
        appointments.triggered.connect(self.open_appointments)
        self.appointments_action = appointments
        share = QAction("Partager avec…", self)
        share.setShortcut(QKeySequence("Ctrl+Shift+P"))
        share.triggered.connect(self.open_share)
        self.share_action = share
        self.share_dialog: Any = None  # ui/share.ShareDialog, while one is shown
        self._share_banner: Banner | None = None  # « Dossier envoyé », one for all shares
        quit_action = QAction("Quitter", self)
        quit_action.setShortcut(QKeySequence("Ctrl+Q"))
        quit_action.triggered.connect(self.close)
        import_rseda = QAction("Importer un dossier RS-EDA…", self)
        import_rseda.setShortcut(QKeySequence("Ctrl+Shift+I"))
        import_rseda.triggered.connect(self.ask_import_rseda)
        self.import_action = import_rseda
        self.conflict_dialog: Any = None  # ImportConflictDialog, while one is shown
        menu = self.menuBar().addMenu("&Dossier")
        for action in (new_call, close_tab, focus_list, import_rseda, change_role, quit_action):
            menu.addAction(action)
            self.addAction(action)
        orientation = self.menuBar().addMenu("&Orientation")
        orientation.addAction(slot_search)
        self.addAction(slot_search)
        orientation.addAction(dental)
        self.addAction(dental)
        orientation.addAction(appointments)
        self.addAction(appointments)
        orientation.addAction(share)
        self.addAction(share)

        journal.add_listener(self._on_save_state)
        if queue_client is not None:
            queue_client.add_listener(self._on_link_state)
            if desk.queues is None:  # orientations and ARM additions go to the room's log
                desk.queues = queue_client
            desk.on_queue_error(self._on_room_refused)
        desk.on_change(self.day_model.upsert)
        for blank in self._blank_left:
            desk.discard_blank(blank)
        if report is not None and report.notice_fr:
            self._notice(report.notice_fr)
        if journal.open_error is not None:
            self.banner(journal.open_error.message_fr, "error")
        self._resume_banner: Banner | None = None
        if session is not None:
            session.listeners.append(self._on_session)
            if session.tokens.notice_fr:
                self._notice(session.tokens.notice_fr)
            self._on_session(session.info)
            if session.info is None and config.role in ROLES:  # opened offline
                self.set_role(config.role)
        elif config.role:
            self.set_role(config.role)
        else:
            self.picker.setFocus()

    # ------------------------------------------------------------------ role
    def set_role(self, role: str) -> None:
        self.role = role
        self.desk.actor = replace(self.desk.actor, role=role)
        self.role_button.setText(f"Rôle : {role} — {ROLES[role]}")
        self.stack.setCurrentIndex(1)
        self.role_changed.emit(role)
        log.info("role set to %s", role)
        self._build_queue_panel(role)
        self._build_board(role)
        # the unfinished sheets are the ARM's: offered to whoever takes the ARM seat
        if role == "ARM" and self.unfinished and self._resume_banner is None:
            self._offer_resume(self.unfinished)
        elif role != "ARM" and self._resume_banner is not None:
            self._resume_banner.deleteLater()
            self._resume_banner = None
        if role == "ARM" and self.tabs.count() == 0 and not self.unfinished:
            if not self._restoring:  # else restore() decides: a sheet to resume, or a new one
                self.new_call(answered=False)  # ready ahead of the call: stamped on its first key
        elif role == "OSNP":  # the OSNP's main screen
            self.open_slot_search()
        elif role == "DENT":  # the dental regulator's main screen
            self.open_dental_view()
        elif role != "ARM":
            if self.queue_panel is not None:
                self.left_tabs.setCurrentWidget(self.queue_panel)
                self.queue_panel.setFocus()
            else:
                self.day_view.setFocus()

    def restore(self, unfinished: list[Dossier], today: list[Dossier]) -> None:
        """What the journal holds, once the data key could open it (after the
        first paint, app.main): the day's dossiers in the list, the sheets
        left unfinished offered to the ARM, those left blank discarded.  The
        sheets opened meanwhile (their keystrokes were kept in memory until
        the key came) stay as they are."""
        opened = [
            w.dossier
            for i in range(self.tabs.count())
            if isinstance(w := self.tabs.widget(i), CallSheet)
        ]
        mine = {d.case_id for d in opened}
        self.day_model.reset([d for d in today if d.case_id not in mine])
        for dossier in opened:
            self.day_model.upsert(dossier)
        left = [d for d in unfinished if d.case_id not in mine]
        self.unfinished = [d for d in left if not d.is_blank]
        for blank in (d for d in left if d.is_blank):
            self.desk.discard_blank(blank)
        self._restoring = False
        if self.role != "ARM":
            return
        if self.unfinished and self._resume_banner is None:
            self._offer_resume(self.unfinished)
        elif not self.unfinished and self.tabs.count() == 0:
            self.new_call(answered=False)

    # ------------------------------------------------------------------ queues
    def _build_queue_panel(self, role: str) -> None:
        if self.queue_client is None:
            return
        self.queue_client.actor = replace(self.queue_client.actor, role=role)
        if self.queue_panel is not None:
            self.queue_panel.stop()
            self.left_tabs.removeTab(self.left_tabs.indexOf(self.queue_panel))
            self.queue_panel.deleteLater()
            self.queue_panel = None
        if self.escalation is not None:
            self.escalation.deleteLater()
            self.escalation = None
        queues = queues_for_role(role)
        if not queues:
            return
        panel = QueuePanel(
            self.queue_client, queues, self.limits, self.desk._now, supervisor=role == "SUP"
        )
        panel.open_dossier.connect(self.open_dossier_view)
        panel.items_changed.connect(self._refresh_open_views)
        self.queue_panel = panel
        # a late P0/P1 of these queues: a banner above everything and a sound
        # (muted per workstation: a setting in the data dir, this machine's)
        self.escalation = EscalationBar(
            panel.model.items,
            self.limits,
            self.desk._now,
            can_claim=role_may(role, "claim"),
            settings=QSettings(
                str(self.config.data_dir / "workstation.ini"), QSettings.Format.IniFormat
            ),
        )
        self.banners.insertWidget(0, self.escalation)
        title = "Files" if role != "ARM" else "Retours ARM"
        index = self.left_tabs.insertTab(0 if role != "ARM" else 1, panel, title)
        if role != "ARM":
            self.left_tabs.setCurrentIndex(index)
        panel.start()

    def _refresh_open_views(self, case_ids: list[str]) -> None:
        """An item changed in the room (an ARM's addition, a decision from
        another workstation): the open dossier views re-read their log."""
        for case_id in case_ids:
            view = self._dossier_view(case_id)
            if view is not None:
                self.view_refresh = run_operation(
                    view.refresh(), name="dossier-refresh", show_error=view.message.show_message
                )
                poll = getattr(view.hub_ledger, "poll", None)
                if self.hub_processor is None and callable(poll):
                    poll()  # room mode: the ledger's news come this way

    def _build_board(self, role: str) -> None:
        """The supervisor's board, first tab of the right side (not closable)."""
        from sas_desk.ui.board import Board
        from sas_desk.ui.stats_view import StatsView

        board = getattr(self, "board", None)
        if isinstance(board, Board):
            board.stop()
            self.tabs.removeTab(self.tabs.indexOf(board))
            board.deleteLater()
            self.board = None
        stats = getattr(self, "stats_view", None)
        if isinstance(stats, StatsView):
            stats.stop()
            self.tabs.removeTab(self.tabs.indexOf(stats))
            stats.deleteLater()
            self.stats_view = None
        from PySide6.QtWidgets import QTabBar

        from sas_desk.services.stats.export import open_source

        # room mode: the statistics are the server's, read through the session
        room = getattr(self.queue_client.backend, "session", None) if self.queue_client else None
        if role == "STATS":  # the statistics screen only
            stats = StatsView(
                open_source(self.config, room), self.limits, self.desk._now, tz=self.config.timezone
            )
            self.tabs.insertTab(0, stats, "Statistiques")
            self.tabs.tabBar().setTabButton(0, QTabBar.ButtonPosition.RightSide, None)
            self.tabs.setCurrentIndex(0)
            self.stats_view = stats
            return
        if role != "SUP" or self.queue_client is None:
            return

        board = Board(
            self.queue_client,
            open_source(self.config, room),
            self.limits,
            self.desk._now,
            owns_source=True,
            tz=self.config.timezone,
        )
        board.open_dossier.connect(self.open_dossier_view)
        index = self.tabs.insertTab(0, board, "Tableau de salle")
        self.tabs.tabBar().setTabButton(index, QTabBar.ButtonPosition.RightSide, None)
        stats = StatsView(
            open_source(self.config, room), self.limits, self.desk._now, tz=self.config.timezone
        )
        self.tabs.insertTab(1, stats, "Statistiques")
        self.tabs.tabBar().setTabButton(1, QTabBar.ButtonPosition.RightSide, None)
        self.stats_view = stats
        self.tabs.setCurrentIndex(index)
        self.right.setCurrentIndex(1)
        self.board = board
        board.start()

    # ------------------------------------------------------------------ import
    def ask_import_rseda(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(
            self, "Importer un dossier RS-EDA", "", "Messages RS-EDA (*.json);;Tous (*)"
        )
        if path:
            self.import_rseda_file(Path(path))

    def import_rseda_file(self, path: Path) -> asyncio.Task[None] | None:
        """Import an RS-EDA file (bounded read); a conflict with a stored case
        asks the operator which version to keep."""
        return run_operation(
            self._import_rseda(path),
            name="import-rseda",
            show_error=self._error_banner,
            on_success=self._on_imported,
        )

    async def _import_rseda(self, path: Path) -> Any:
        from sas_desk.models.rseda import from_rseda
        from sas_desk.services.bounded import MAX_MESSAGE_BYTES, load_json

        body = await asyncio.to_thread(load_json, path, MAX_MESSAGE_BYTES)
        return await self.desk.import_received(from_rseda(body))

    def _on_imported(self, outcome: Any) -> None:
        if outcome.kind != "conflict":
            self.banner(outcome.message_fr, "info").setObjectName("importNotice")
            return
        self.show_import_conflict(outcome.existing, outcome.dossier)

    def show_import_conflict(self, existing: Dossier, received: Dossier) -> None:
        from sas_desk.services.desk import conflict_fields
        from sas_desk.ui.import_conflict import ImportConflictDialog

        dialog = ImportConflictDialog(
            existing.case_id, received.case_id, conflict_fields(existing, received), self
        )
        self.conflict_dialog = dialog
        dialog.chosen.connect(
            lambda keep: self._settle_import(existing.case_id, received.case_id, keep)
        )
        dialog.rejected.connect(
            lambda: self.banner(
                f"Conflit d'import sur {existing.case_id} laissé en attente : les deux versions "
                f"sont conservées ({received.case_id}).",
                "warning",
            )
        )
        dialog.finished.connect(lambda _r: setattr(self, "conflict_dialog", None))
        dialog.open()

    def _settle_import(self, case_id: str, received_id: str, keep: str) -> None:
        which = "existante" if keep == "existing" else "reçue"
        run_operation(
            self.desk.resolve_import_conflict(case_id, received_id, keep),  # type: ignore[arg-type]
            name="import-conflict",
            show_error=self._error_banner,
            on_success=lambda _d: self.banner(
                f"Dossier {case_id} : version {which} gardée ; l'autre est conservée, "
                f"abandonnée, sous {received_id}.",
                "info",
            ).setObjectName("importSettled"),
        )

    def open_dossier_view(self, case_id: str) -> None:
        run_operation(
            self._open_dossier_view(case_id), name="open-dossier", show_error=self._error_banner
        )

    async def _open_dossier_view(self, case_id: str) -> None:
        assert self.queue_client is not None
        for i in range(self.tabs.count()):
            w = self.tabs.widget(i)
            if isinstance(w, DossierView) and w.dossier.case_id == case_id:
                self.tabs.setCurrentIndex(i)
                await w.refresh()
                return
        dossier = await self.queue_client.dossier(case_id)
        events = await self.queue_client.events(case_id)
        if dossier is None:
            self.banner(f"Dossier {case_id} introuvable sur le serveur des files.", "error")
            return
        view = DossierView(self.queue_client, self.desk, self.resolver, dossier, events)
        view.search_slots.connect(self.open_slot_search)
        if self.hub_processor is None and self.appointment_source() is not None:
            from sas_desk.ui import appointments

            # room mode: the appointment is on the room's log already; the suggestion
            await appointments.hint_on(self, view, events)
            from sas_desk.ui import share

            share.install_ledger(view, self.sharing())
        if self.hub_processor is not None:  # the appointments the room attached to it
            from sas_desk.ui import appointments

            view.extra_events = lambda case_id: appointments.hub_events(self.journal, case_id)
            view.show_events(
                appointments.merge_events(events, await view.extra_events(dossier.case_id))
            )
            await appointments.hint_on(self, view, events)
            from sas_desk.ui import share

            share.install_ledger(view, self.hub_processor)
        view.dental.connect(self.open_dental_view)
        index = self.tabs.addTab(
            view, f"{dossier.priority} {dossier.commune_label or dossier.sender_case_id}"
        )
        self.tabs.setCurrentIndex(index)
        self.right.setCurrentIndex(1)
        self.make_room(view)
        view.note.setFocus()

    # ------------------------------------------------------------------ slot search
    def set_slot_starter(self, start: Callable[[], object]) -> None:
        """How to build the slot service (directory sync, vendor clients): run
        when the slot search is first opened, not at start-up — the sync of
        thousands of practitioners would stall a call sheet being typed."""
        self._slot_starter = start
        if self.slot_panel is not None:  # already open (the OSNP lands on it)
            self._start_slots()

    def _start_slots(self) -> None:
        start, self._slot_starter = self._slot_starter, None
        if start is not None:
            start()

    def set_slot_source(self, source: Any, note: str = "") -> None:
        """The slot service once its directory is usable (``None`` + a
        French note while it is not)."""
        if source is not None:
            self.slot_source = source
        self._slot_note = note
        if self.slot_panel is not None:
            self.slot_panel.set_source(source, note)

    def searching(self) -> bool:
        """A slot search is filling its cards (no full garbage collection then)."""
        return self.slot_panel is not None and self.slot_panel.running

    def open_slot_search(self, dossier: Dossier | None = None) -> SlotSearchPanel:
        """The slot search tab; from a dossier (the current sheet or view by
        default) with its location prefilled."""
        from sas_desk.ui.slot_search import SlotSearchPanel

        if dossier is None:
            current = self.tabs.currentWidget()
            if isinstance(current, DossierView | CallSheet):
                dossier = current.dossier
        panel = self.slot_panel
        if panel is None:
            panel = SlotSearchPanel(
                self.resolver, now=self.desk._now, desk=self.desk, simulator_url=self.simulator_url
            )
            panel.booked.connect(self._on_booked)
            panel.en_sus_booked.connect(self._on_booked)
            ready = self.slot_source is not None and not self._slot_note.startswith("Annuaire des")
            panel.set_source(self.slot_source if ready else None, self._slot_note)
            self.slot_panel = panel
            self.tabs.addTab(panel, "Créneaux")
            self._start_slots()
        if dossier is not None and (dossier.location.has_position or dossier.location.insee):
            panel.prefill(dossier)
        self.tabs.setCurrentWidget(panel)
        self.right.setCurrentIndex(1)
        panel.where.setFocus()
        panel.where.selectAll()
        return panel

    # ------------------------------------------------------------------ dental roster
    def set_roster_starter(self, start: Callable[[], object]) -> None:
        """How to open the roster service (and load the demo, sync the
        sources): run when the dental view is first opened, never at start-up."""
        self._roster_starter = start
        if self.dental_view is not None:  # already open (the DENT lands on it)
            self._start_rosters()

    def _start_rosters(self) -> None:
        start, self._roster_starter = self._roster_starter, None
        if start is not None:
            start()

    def set_roster_service(self, service: Any, note: str = "") -> None:
        """The roster service once usable (``None`` + a French note while not)."""
        if service is not None:
            self.roster_service = service
        self._roster_ready = service is not None
        self._roster_note = note
        if self.dental_view is not None:
            self.dental_view.set_service(service, note)

    def roster_status_changed(self) -> None:
        """A sync ended: the view re-reads the status (and its answer)."""
        if self.dental_view is not None:
            self.dental_view.refresh_status()

    def open_dental_view(self, dossier: Dossier | None = None) -> DentalView:
        """The dental regulator's view; from a dossier (the one on screen by
        default, whatever its branch: a physician holding it may want the
        on-call dentist too) with its commune and reason prefilled."""
        from sas_desk.ui.dental_view import DentalView

        if dossier is None:
            current = self.tabs.currentWidget()
            if isinstance(current, DossierView | CallSheet):
                dossier = current.dossier
        view = self.dental_view
        if view is None:
            view = DentalView(self.resolver.index, desk=self.desk)
            view.oriented.connect(self._on_dental_oriented)
            view.set_service(self.roster_service if self._roster_ready else None, self._roster_note)
            self.dental_view = view
            self.tabs.addTab(view, "Garde dentaire")
            self._start_rosters()
        self.tabs.setCurrentWidget(view)
        self.right.setCurrentIndex(1)
        self.make_room(view)
        if dossier is not None:
            view.prefill(dossier)
        if view.commune.text() and view.answer is not None:
            view.on_call_table.setFocus()
        else:
            view.focus_commune()
        return view

    def _on_dental_oriented(self, result: DentalOrientation) -> None:
        """A dossier from the queues gets the orientation as a medical note;
        "back to a physician" transfers it to the AMU queue."""
        from sas_desk.ui.dental_view import Orientation

        dossier = result.dossier
        view = self._dossier_view(dossier.case_id) if dossier is not None else None
        if dossier is None or view is None or self.queue_client is None:
            return
        to_amu = result.orientation is Orientation.MEDECIN
        self.dental_task = run_operation(
            self._dental_to_queue(view, result.text, to_amu, result.sent),
            name="dental-orientation",
            show_error=self._warning_banner,
            error_prefix=NOT_IN_QUEUE,
        )

    def make_room(self, widget: QWidget) -> None:
        """Widen the right-hand side to what ``widget`` asks for (a dossier
        opened from a queue must not hide behind the list), leaving the list
        at least ``LIST_MIN_WIDTH``; never narrows it (the operator's own
        splitter position stays when it already fits)."""
        sizes = self.split.sizes()
        total = sum(sizes)
        want = min(widget.sizeHint().width(), total - LIST_MIN_WIDTH)
        if total > 0 and sizes[1] < want:
            self.split.setSizes([total - want, want])

    def _dossier_view(self, case_id: str) -> DossierView | None:
        for i in range(self.tabs.count()):
            w = self.tabs.widget(i)
            if isinstance(w, DossierView) and w.dossier.case_id == case_id:
                return w
        return None

    def _on_room_refused(self, dossier: Dossier, message_fr: str) -> None:
        self.banner(
            f"Dossier {dossier.sender_case_id or dossier.case_id} : {message_fr}", "warning"
        )

    async def _dental_to_queue(
        self, view: DossierView, text: str, to_amu: bool, sent: Any = None
    ) -> None:
        """The orientation itself went to the room's log (``sent``: the desk's
        ``orient``); "back to a physician" then transfers the dossier."""
        assert self.queue_client is not None
        if to_amu:
            await self.queue_client.after_orientation(
                view.dossier.case_id, "transfer", text, sent, to="AMU"
            )
        elif sent is not None:
            await sent
        if to_amu and self.dental_view is not None:
            self.dental_view.triage_message.show_message(
                "Dossier transféré à la file AMU (médecin régulateur).", info=True
            )
        await view.refresh()

    def _on_booked(self, booking: Any) -> None:
        """A booking the operator confirmed, or an appointment agreed with an
        "en sus" volunteer (``booking.summary`` says which): the orientation
        went to the room's log (the desk's ``orient``); a dossier from the
        queues then leaves the OSNP queue."""
        panel = self.slot_panel
        dossier = panel.dossier if panel is not None else None
        if dossier is None or panel is None or self.queue_client is None:
            return
        if not any(
            isinstance(w := self.tabs.widget(i), DossierView)
            and w.dossier.case_id == dossier.case_id
            for i in range(self.tabs.count())
        ):
            return  # not a dossier from the queues
        text = f"Orientation : {booking.summary}"
        self.orientation_task = run_operation(
            self.queue_client.after_orientation(
                dossier.case_id, "close", text, panel.orientation_sent
            ),
            name="orientation",
            show_error=self._warning_banner,
            error_prefix=NOT_IN_QUEUE,
        )

    def _on_transmitted(self, case_id: str) -> None:
        sheet = next(
            (
                w
                for i in range(self.tabs.count())
                if isinstance(w := self.tabs.widget(i), CallSheet) and w.dossier.case_id == case_id
            ),
            None,
        )
        if sheet is None or self.queue_client is None:
            return
        run_operation(
            self.queue_client.enqueue(sheet.dossier),
            name="enqueue",
            show_error=self._error_banner,
            error_prefix="Dossier transmis localement mais pas mis en file : ",
        )

    def _on_link_state(self, state: LinkState) -> None:
        if state.online and not state.pending:
            if self._offline_banner is not None:
                self._offline_banner.deleteLater()
                self._offline_banner = None
        else:
            text = (
                f"Hors ligne — {state.pending} action{'s' if state.pending > 1 else ''} en attente"
            )
            if state.message_fr:
                text += f" ({state.message_fr})"
            if self._offline_banner is None:
                self._offline_banner = self.banner(text, "error")
                self._offline_banner.setObjectName("offlineBanner")
            else:
                self._offline_banner.label.setText(text)
        for message in state.failed:
            self.banner(f"Action refusée par le serveur au rejeu : {message}", "error")

    def set_hub_status(self, label: str, connected: bool) -> None:
        """Hub Santé indicator: « connecté » / « hors ligne depuis HH:MM »."""
        if self.hub_label is None:
            self.hub_label = named(QLabel(), "hubLabel")
            self.statusBar().addPermanentWidget(self.hub_label)
        self.hub_label.setText(label)
        self.hub_label.setStyleSheet("" if connected else "color: #b00020; font-weight: bold;")

    def appointment_source(self) -> Any:
        """Where the SAS appointments come from: the embedded agent, else the
        room server's (room mode), else None (no Hub Santé)."""
        if self.hub_processor is not None:
            from sas_desk.services.hub.appointments import LocalAppointments

            return LocalAppointments(self.hub_processor)
        if self.room_appointments is None and self.session is not None:
            from sas_desk.services.hub.appointments import RoomAppointments

            self.room_appointments = RoomAppointments(self.session)
        return self.room_appointments

    def open_appointments(self) -> None:
        """The room's SAS appointments to attach (Ctrl+Shift+A), suggested for
        the open dossier; see ui/appointments.py."""
        if self.appointment_source() is None:
            self.banner("Hub Santé non configuré : aucun rendez-vous SAS reçu.", "warning")
            return
        from sas_desk.ui import appointments

        view = self.tabs.currentWidget()
        run_operation(
            appointments.open_for(self, view if isinstance(view, DossierView) else None),
            name="appointments",
            show_error=self._error_banner,
        )

    def open_share(self) -> None:
        """« Partager avec… » (Ctrl+Maj+P): the open dossier to a partner
        centre of ``[hub] partners``; see ui/share.py."""
        if self.sharing() is None:
            self.banner("Hub Santé non configuré : partage impossible.", "warning")
            return
        view = self.tabs.currentWidget()
        if not isinstance(view, DossierView):
            self.banner("Ouvrez d'abord le dossier à partager.", "warning")
            return
        from sas_desk.ui import share

        def shared(recipient: str, distribution_id: str) -> None:
            label = view.dossier.sender_case_id or view.dossier.case_id
            self.share_notice(
                f"Dossier {label} envoyé à {recipient} : en attente de son accusé de réception."
            )

        async def show() -> None:
            self.share_dialog = await share.open_share(self, view, shared)

        run_operation(show(), name="share-dialog", show_error=self._error_banner)

    def sharing(self) -> Any:
        """« Partager avec… » and the ledger: the embedded agent, else the room
        server's (room mode), else None (no Hub Santé)."""
        if self.hub_processor is not None:
            from sas_desk.services.hub.appointments import LocalSharing

            return LocalSharing(self.hub_processor)
        if self.room_sharing is None and self.session is not None:
            from sas_desk.services.hub.appointments import RoomSharing

            self.room_sharing = RoomSharing(self.session)
        return self.room_sharing

    def share_notice(self, text: str) -> Banner:
        """« Dossier envoyé » in one banner, updated by each share (they stacked
        up, one per share, pushing the window's content down)."""
        banner = self._share_banner
        if banner is not None:
            try:
                banner.label.setText(text)
                return banner
            except RuntimeError:  # closed with its ×: deleted
                pass
        banner = self.banner(text, "info")
        banner.setObjectName("shareBanner")
        self._share_banner = banner
        banner.destroyed.connect(lambda *_: setattr(self, "_share_banner", None))
        return banner

    def hub_alarm(self, text: str) -> Banner:
        """A message the partner did not acknowledge in time: phone them."""
        return self.banner(text, "error")

    def set_simulator_url(self, url: str) -> None:
        """The demo's simulator is started once the window is up: its address
        joins the mode shown in the status bar then."""
        self.mode_label.setText(f"Démonstration (simulateur local) — {url}")
        self.simulator_url = url  # its offline base map serves the slot search map
        if self.slot_panel is not None:
            self.slot_panel.set_simulator_url(url)

    def show_role_picker(self) -> None:
        """The demo's role picker; in production the role is the session's:
        changing it is a new login."""
        if self.session is not None:
            if self.gate is not None:  # the next login replaces the session, screen covered
                self.gate.change_operator()
            else:
                run_operation(
                    self._switch_session(), name="switch-session", show_error=self._error_banner
                )
            return
        self.stack.setCurrentIndex(0)
        self.picker.setFocus()

    # ------------------------------------------------------------------ room session
    def room_offline(self, reason_fr: str) -> None:
        """Started while the room server did not answer: said until the
        session opens (by itself, with what the operator typed)."""
        self.session_label.setText("Session : hors ligne")
        self.session_label.setStyleSheet("color: #b00020; font-weight: bold;")
        if self._cold_offline is None:
            self._cold_offline = self.banner(reason_fr, "warning")
            self._cold_offline.setObjectName("roomOfflineBanner")

    def _on_session(self, info: SessionInfo | None) -> None:
        """The session's operator and role in the status bar; a new login
        with another role changes the work view."""
        if info is None:
            self.session_label.setText("Session : fermée")
            self.session_label.setStyleSheet("color: #b00020; font-weight: bold;")
            return
        if self._cold_offline is not None:  # the server answered: online again
            self._cold_offline.deleteLater()
            self._cold_offline = None
        self.session_label.setText(f"Session : {info.operator} ({info.role})")
        self.session_label.setStyleSheet("")
        self.desk.actor = replace(self.desk.actor, operator=info.operator)
        if self.queue_client is not None:
            self.queue_client.actor = replace(self.queue_client.actor, operator=info.operator)
        if info.role != self.role and info.role in ROLES:
            self.set_role(info.role)

    async def _switch_session(self) -> None:
        assert self.session is not None
        await self.session.logout()
        await self.session.ensure()

    # ------------------------------------------------------------------ banners
    def _error_banner(self, text: str) -> None:
        self.banner(text, "error")

    def _warning_banner(self, text: str) -> None:
        self.banner(text, "warning")

    def _notice(self, text: str) -> Banner:
        """A start-up notice; what the keyring could not keep (the data key,
        the room session) is said in one banner, not one each (two banners
        made the window taller than a 768-pixel screen)."""
        if not text.startswith(KEYRING_FR):
            return self.banner(text, "warning")
        for w in self._banner_widgets():
            if isinstance(w, Banner) and w.objectName() == "keyringNotice":
                said = w.label.text().removesuffix(".")
                w.label.setText(f"{said} ; {text.removeprefix(KEYRING_FR)}")
                return w
        b = self.banner(text, "warning")
        b.setObjectName("keyringNotice")
        return b

    def banner(self, text: str, level: str = "info") -> Banner:
        b = Banner(text, level)
        b.setObjectName(f"banner_{level}")
        self.banners.addWidget(b)
        return b

    def _offer_resume(self, drafts: list[Dossier]) -> None:
        last = max(d.created_at for d in drafts)
        n = len(drafts)
        text = (
            f"{n} fiche{'s' if n > 1 else ''} non terminée{'s' if n > 1 else ''} retrouvée{'s' if n > 1 else ''} "
            f"(dernier appel reçu à {last:%H:%M}). Rien n'a été perdu."
        )
        b = self.banner(text, "warning")
        b.setObjectName("resumeBanner")
        self._resume_banner = b
        resume = b.add_action("Reprendre (Ctrl+R)", lambda: self.resume_all(b))
        resume.setObjectName("resumeButton")
        resume.setShortcut(QKeySequence("Ctrl+R"))

    def resume_all(self, banner: Banner | None = None) -> None:
        for d in self.unfinished:
            self.desk.resume(d)
            self.open_sheet(d)
        self.unfinished = []
        if banner is not None:
            banner.deleteLater()
        self._resume_banner = None

    # ------------------------------------------------------------------ sheets
    def new_call(self, *, answered: bool = True) -> CallSheet | None:
        """Ctrl+N: a sheet for the call on the line — the blank one already
        open if any (stamped now), else a new one.  Refused, with a word in
        the status bar, to a role that does not take calls."""
        if not self.role:
            self.show_role_picker()
            return None
        blank = next(
            (
                w
                for i in range(self.tabs.count())
                if isinstance(w := self.tabs.widget(i), CallSheet) and w.dossier.is_blank
            ),
            None,
        )
        if blank is not None:
            if answered:
                self.desk.answer(blank.dossier)
                blank.answered()
            self.tabs.setCurrentWidget(blank)
            self.right.setCurrentIndex(1)
            blank.focus_first()
            return blank
        try:
            dossier = self.desk.new_call(answered=answered)
        except ValidationError as exc:
            self.statusBar().showMessage(exc.message, 10000)
            return None
        sheet = self.open_sheet(dossier)
        sheet.focus_first()
        return sheet

    def open_sheet(self, dossier: Dossier) -> CallSheet:
        for i in range(self.tabs.count()):
            existing = self.tabs.widget(i)
            if isinstance(existing, CallSheet) and existing.dossier.case_id == dossier.case_id:
                self.tabs.setCurrentIndex(i)
                return existing
        read_only = self.role not in CALL_TAKING_ROLES or dossier.status is not Status.DRAFT
        sheet = self._spare_sheet
        if sheet is not None:  # a closed call's sheet: no widget built at the key press
            self._spare_sheet = None
            sheet.rebind(dossier, read_only=read_only)
        else:
            sheet = CallSheet(self.desk, self.resolver, dossier, read_only=read_only)
            sheet.title_changed.connect(lambda t, s=sheet: self._retitle(s, t))
            sheet.transmitted.connect(self._on_transmitted)
            sheet.edited.connect(lambda s=sheet: self.day_model.upsert(s.dossier))
        index = self.tabs.addTab(sheet, sheet.tab_title())
        if self._last_save_ok is not None:
            sheet.set_save_state(
                "✓ enregistré" if self._last_save_ok else "⚠ en mémoire seulement",
                self._last_save_ok,
            )
        self.tabs.setCurrentIndex(index)
        self.right.setCurrentIndex(1)
        self.day_model.upsert(dossier)
        return sheet

    def _retitle(self, sheet: CallSheet, title: str) -> None:
        i = self.tabs.indexOf(sheet)
        if i >= 0:
            self.tabs.setTabText(i, title)

    def close_sheet(self, index: int) -> None:
        """Closing a sheet never loses it: a draft stays in the journal and in
        the list of the day, from where it reopens."""
        widget = self.tabs.widget(index)
        if widget is None:
            return
        self.tabs.removeTab(index)
        if isinstance(widget, CallSheet):
            widget.shutdown()
            self.desk.discard_blank(widget.dossier)  # nothing typed: no call to resume
            if self._spare_sheet is None:  # kept, emptied, for the next call
                widget.recycle()
                self._spare_sheet = widget
            else:
                widget.deleteLater()
        else:
            widget.deleteLater()
        if self.tabs.count() == 0:
            self.right.setCurrentIndex(0)

    def current_sheet(self) -> CallSheet | None:
        w = self.tabs.currentWidget()
        return w if isinstance(w, CallSheet) else None

    def _open_from_list(self, index: QModelIndex) -> None:
        dossier = self.day_model.dossier_at(index.row())
        if dossier is not None:
            self.open_sheet(dossier)

    # ------------------------------------------------------------------ journal state
    def _on_save_state(self, state: SaveState) -> None:
        """Journal feedback.  Called after every write (often one per
        keystroke): restyle only when ok/error flips, and refresh the clock
        text at most once a second."""
        changed = self._last_save_ok is not state.ok
        self._last_save_ok = state.ok
        if state.ok:
            if changed or state.at.second != self._last_save_second:
                self.save_label.setText(f"Journal : enregistré à {state.at:%H:%M:%S}")
                self._last_save_second = state.at.second
        else:
            self.save_label.setText(f"Journal : NON ENREGISTRÉ — {state.message_fr}")
        if not changed:
            return
        self.save_label.setStyleSheet("" if state.ok else "color: #b00020; font-weight: bold;")
        if state.ok:
            for w in self._banner_widgets():
                if w.objectName() == "journalError":
                    w.deleteLater()
        elif not any(w.objectName() == "journalError" for w in self._banner_widgets()):
            b = self.banner(state.message_fr, "error")
            b.setObjectName("journalError")
        for i in range(self.tabs.count()):
            sheet = self.tabs.widget(i)
            if isinstance(sheet, CallSheet):
                sheet.set_save_state(
                    "✓ enregistré" if state.ok else "⚠ en mémoire seulement", state.ok
                )

    def _banner_widgets(self) -> list[QWidget]:
        out = []
        for i in range(self.banners.count()):
            item = self.banners.itemAt(i)
            w = item.widget() if item is not None else None
            if w is not None:
                out.append(w)
        return out

    def closeEvent(self, event: QCloseEvent) -> None:
        log.info("main window closed")
        super().closeEvent(event)
