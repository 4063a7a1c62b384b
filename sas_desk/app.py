"""Composition root: reads the configuration, builds the services, runs the
window on one qasync loop, and shuts everything down inside that loop."""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sas_desk.models.dossier import Actor
from sas_desk.models.errors import KnownError
from sas_desk.models.queue import WaitLimits
from sas_desk.services import clock
from sas_desk.services.config import Config, VendorEndpoint
from sas_desk.services.desk import Desk
from sas_desk.services.geo.resolver import LocationResolver
from sas_desk.services.geo.territory import CommuneIndex
from sas_desk.services.journal.service import Journal
from sas_desk.services.queues.api import QueueBackend
from sas_desk.services.queues.client import Outbox, QueueClient

if TYPE_CHECKING:
    from sas_desk.services.atrest import DataKey, KeyGate, RecordCipher
    from sas_desk.services.fhir.worker_client import SearchWorker
    from sas_desk.services.queues.remote import RoomSession
    from sas_desk.simulator.server import Simulator
    from sas_desk.ui.login_dialog import LoginDialog
    from sas_desk.ui.main_window import MainWindow

log = logging.getLogger("sas_desk")


@dataclass
class RunOptions:
    smoke: bool = False
    on_ready: Callable[[object], Awaitable[None]] | None = None  # test/bench hook, gets the window
    on_login: Callable[[object], Awaitable[None]] | None = None  # test hook, gets the login dialog
    # bench/autosave.py's baseline only: the journal and outbox in the clear
    unsealed_for_bench: bool = False


class _LogFile(logging.handlers.RotatingFileHandler):
    """The log file; a disk that fills up or turns read-only stops it (one
    line says so on stderr) instead of printing a traceback per record."""

    failed = False

    def handleError(self, record: logging.LogRecord) -> None:
        if not self.failed:
            self.failed = True
            sys.stderr.write(
                "sas-desk : journal d'exécution impossible à écrire (disque plein ou en "
                "lecture seule) : il continue sur la console seulement.\n"
            )

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)


def setup_logging(data_dir: Path, verbose: bool = False) -> None:
    root = logging.getLogger()
    if any(getattr(h, "_sas_desk", False) for h in root.handlers):
        return
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    stderr = logging.StreamHandler()
    stderr.setLevel(logging.DEBUG if verbose else logging.WARNING)
    stderr.setFormatter(fmt)
    stderr._sas_desk = True  # type: ignore[attr-defined]
    root.addHandler(stderr)
    try:
        logs = data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        handler = _LogFile(
            logs / "sas-desk.log", maxBytes=5_000_000, backupCount=5, encoding="utf-8"
        )
        handler.setFormatter(fmt)
        root.addHandler(handler)
    except OSError as exc:  # read-only data dir: the journal will say so too
        log.warning("no log file in %s (%s)", data_dir, exc.__class__.__name__)


def install_crash_handler(data_dir: Path) -> None:
    """Every unhandled exception (main thread and Qt slots, other threads)
    goes to the log with its traceback and to a crash report in
    ``logs/``; once the window is up (:func:`main`), also to the crash
    dialog, and so do the asyncio loop's.  ``SAS_DESK_RAISE`` also prints
    it as Python would (development)."""
    from sas_desk.ui import crash

    crash.install(data_dir)
    if os.environ.get("SAS_DESK_RAISE"):
        ours = sys.excepthook

        def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
            ours(kind, exc, tb)
            sys.__excepthook__(kind, exc, tb)

        sys.excepthook = hook


def warm_keyring_in_background() -> None:
    """Start choosing the keyring's backend now, in a thread, for the data key
    that :func:`main` reads before opening the journal: the choice (the
    freedesktop backends imported, the desktop's secret service probed;
    nothing at all without a session bus — ``atrest._keyring``) overlaps
    Qt's and the window's imports.  No secret is read here."""
    import threading

    from sas_desk.services.atrest import warm_keyring

    threading.Thread(target=warm_keyring, name="keyring-warmup", daemon=True).start()


def build_queue_backend(
    config: Config,
    limits: WaitLimits,
    session: RoomSession | None = None,
    cipher: RecordCipher | KeyGate | None = None,
) -> QueueBackend:
    """The room server when ``[room] url`` is set (``session``: the
    workstation's session with it), else the embedded queues: the SQLite
    file in the data dir (processes of one machine, no login), its patient
    data sealed with ``cipher`` (the workstation's key)."""
    if config.room_url:
        from sas_desk.services.queues.remote import RemoteBackend, RoomSession

        if session is None:
            session = RoomSession(config.room_url, config.room_station, ca=config.room_ca)
        return RemoteBackend(session)
    from sas_desk.services.queues.sqlite import SqliteBackend

    return SqliteBackend(config.queues_path, now=clock.now, limits=limits, cipher=cipher)


def run(config: Config, options: RunOptions) -> int:
    from PySide6.QtWidgets import QApplication

    from sas_desk.ui.aio import event_loop

    clock.use_zone(config.timezone)  # one clock: the room's, before Qt reads the zone

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("SAS Desk")
    app.setOrganizationName("sas-desk")
    app.setDesktopFileName("sas-desk")  # matches packaging/sas-desk.desktop (Wayland)
    app.setQuitOnLastWindowClosed(False)
    with asyncio.Runner(loop_factory=lambda: event_loop(app)) as runner:
        return runner.run(main(app, config, options))


async def qt_turn() -> None:
    """Resolve after Qt has handled what is already queued (a 0 ms timer
    fires after pending posted events, layouts and paints)."""
    from PySide6.QtCore import QTimer

    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def fire() -> None:
        if not done.done():
            done.set_result(None)

    QTimer.singleShot(0, fire)
    await done


def _start_simulator(port: int) -> Simulator:
    """Import and start the demo simulator (in a worker thread)."""
    from sas_desk.simulator.server import Simulator

    simulator = Simulator(port=port)
    simulator.start()
    return simulator


def _warm_imports() -> None:
    """Load httpx's async stack off the UI thread: loaded lazily by the first
    request, it froze the window for ~100 ms (measured by bench/autosave.py)."""
    import anyio._backends._asyncio  # noqa: F401
    import h11  # noqa: F401
    import httpcore._async.connection_pool  # noqa: F401


async def _start_slots(
    config: Config,
    simulator: Simulator | None,
    window: MainWindow,
    worker: SearchWorker | None = None,
) -> None:
    """The slot search's directory and vendors, once the window is up: the
    demo simulator's, or those of the configuration.  The directory is synced
    in the background; searches wait for it (the previous copy serves when
    the feed fails).  With a search worker, the directory, the sync and the
    searches are the worker's (a child process); else they run here."""
    from sas_desk.services.fhir.service import SlotService, SlotServiceError, demo_sources

    if simulator is not None:
        try:
            directory_url, vendors = await demo_sources(simulator.base_url)
        except SlotServiceError as exc:
            window.set_slot_source(None, exc.message_fr)
            return
    elif config.vendors:
        directory_url, vendors = config.directory_url, list(config.vendors)
    else:
        window.set_slot_source(None, "Recherche de créneaux : aucun éditeur d'agenda configuré.")
        return
    if worker is not None:
        await _open_worker(config, directory_url, vendors, window, worker)
        return
    service = SlotService.from_config(config, directory_url, vendors, now=clock.now)
    window.slot_source = service  # closed at shutdown even while syncing
    window.set_slot_source(None, "Annuaire des praticiens en cours de synchronisation…")
    try:
        await service.open()
        await service.sync()
    except KnownError as exc:  # the feed failed (said in French): the previous copy serves
        # anything else is a bug: it goes on to the crash dialog (run_long_lived)
        message = exc.message_fr
        log.warning("directory sync failed: %s", type(exc).__name__)
        if service.store is None:
            window.set_slot_source(None, f"Annuaire indisponible : {message}")
            return
        window.set_slot_source(service, f"Annuaire non synchronisé ({message}) : copie précédente.")
        return
    window.set_slot_source(service, "")


async def _open_worker(
    config: Config,
    directory_url: str,
    vendors: Sequence[VendorEndpoint],
    window: MainWindow,
    worker: SearchWorker,
) -> None:
    """Give the search worker its directory and vendors (it syncs the
    directory); the panel gets it once the directory is usable.  A worker
    that cannot start or open the directory: the panel says why."""
    from sas_desk.services.fhir.worker_client import WorkerError
    from sas_desk.services.fhir.worker_protocol import Open

    settings = Open(
        str(config.directory_path),
        directory_url,
        tuple(vendors),
        per_vendor=config.search_per_vendor,
        slow_after=config.search_slow_s,
        log_dir=str(config.data_dir / "logs"),
    )
    window.set_slot_source(None, "Annuaire des praticiens en cours de synchronisation…")
    try:
        note = await worker.open(settings)
    except WorkerError as exc:
        log.warning("search worker not ready: %s", exc.message_fr)
        window.set_slot_source(None, f"Recherche de créneaux indisponible. {exc.message_fr}")
        return
    window.set_slot_source(worker, note)


async def _start_rosters(config: Config, window: MainWindow, communes: CommuneIndex) -> None:
    """The dental roster service, once the dental view is first opened: the
    store opened (and the demo roster loaded) in a worker thread, then the
    configured sources synced in the background, again every
    ``[rosters] sync_every_s`` (one hour by default)."""
    from sas_desk.services.roster.service import RosterService
    from sas_desk.services.roster.store import RosterError

    def open_service() -> RosterService:
        service = RosterService(
            config.rosters_path, communes=communes, sources=config.roster_urls, now=clock.now
        )
        if config.demo:
            try:
                service.load_demo_if_empty()
            except RosterError as exc:  # the view says there is no roster
                log.warning("demo roster not loaded: %s", exc.reason)
        return service

    try:
        service = await asyncio.to_thread(open_service)
    except RosterError as exc:
        window.set_roster_service(None, f"Tableaux de garde indisponibles : {exc.message_fr}")
        return
    window.set_roster_service(service, "")
    if not config.roster_urls:
        return
    import httpx

    from sas_desk.services.roster.sync import RosterSync

    loop = asyncio.get_running_loop()
    ssl_context = await loop.run_in_executor(None, httpx.create_ssl_context)
    await loop.run_in_executor(None, _warm_imports)
    # a real room's sources are named exactly: a redirect is refused, not followed
    async with httpx.AsyncClient(
        verify=ssl_context, follow_redirects=not config.room_url
    ) as client:
        sync = RosterSync(service, client, timeout=config.roster_timeout)
        while True:  # cancelled at shutdown
            results = await sync.run()
            log.info("roster sync: %s", ", ".join(r.state for r in results))
            window.roster_status_changed()
            await asyncio.sleep(config.roster_sync_s)  # a period, not a wait for a result


def embedded_hub(config: Config) -> bool:
    """Whether this workstation runs its own Hub Santé agent: with ``[hub]``
    and no room server. In room mode the server's agent is the centre's one
    consumer (two would share the centre's queues, each message landing in one
    of them); the desk uses it through the server's API."""
    return config.hub is not None and not config.room_url


async def _run_hub(
    config: Config, journal: Journal, window: MainWindow, queues: QueueClient
) -> None:
    """The Hub Santé agent inside the app: its status in the status bar, an
    error banner for each message a partner did not acknowledge in time; the
    room's changes to a shared case go to the partners (RS-EDA-MAJ)."""
    from sas_desk.services.hub.agent import HubAgent
    from sas_desk.services.hub.cases import JournalCases
    from sas_desk.services.hub.processor import HubProcessor
    from sas_desk.services.hub.store import AsyncHubStore, HubStoreError, Outbound
    from sas_desk.services.hub.updates import SharedCaseUpdates

    assert config.hub is not None
    store = AsyncHubStore(config.hub_path)
    try:
        await store.open()
    except HubStoreError as exc:
        window.set_hub_status("Hub Santé : base locale inaccessible", False)
        window.banner(exc.message_fr, "error")
        await store.close()
        return
    cases = JournalCases(journal, clock.now, config.workstation)
    processor = HubProcessor(config.hub, store, cases, clock.now)

    def alarm(row: Outbound) -> None:
        window.hub_alarm(
            f"Hub Santé : {row.model} non reçu par {row.recipient} avant expiration "
            f"({row.case_id or 'sans dossier'}) — téléphonez au partenaire."
        )

    processor.alarm_listeners.append(alarm)
    window.hub_processor = processor  # appointments to attach (ui/appointments.py)
    agent = HubAgent(config.hub, processor)
    agent.status_listeners.append(lambda st: window.set_hub_status(st.label_fr, st.connected))
    updates = SharedCaseUpdates(processor, queues.dossier, agent.wake)
    queues.on_applied(updates.operation_applied)
    window.set_hub_status("Hub Santé : connexion…", False)
    try:
        await agent.run()
    finally:
        await agent.stop()
        await store.close()


RETENTION_EVERY_S = 3600.0


async def _retention(config: Config, journal: Journal, queues: QueueClient) -> None:
    """Purge the local copies of transmitted dossiers the room acknowledged
    (none of their operations left in the outbox) once their last change is
    older than ``[retention] local_days``: at start, then every hour."""
    from datetime import timedelta

    while True:  # cancelled at shutdown
        try:
            waiting = frozenset(op.case_id for op in await queues.outbox.pending())
            before = clock.now() - timedelta(days=config.retention_days)
            await journal.purge(before, waiting)
        except KnownError as exc:  # the journal's disk: tried again in an hour
            log.warning("retention purge failed: %s", getattr(exc, "reason", type(exc).__name__))
        await asyncio.sleep(RETENTION_EVERY_S)  # a period, not a wait for a result


async def _open_session(
    config: Config, options: RunOptions
) -> tuple[RoomSession, Config, LoginDialog, str] | None:
    """Production mode: the login dialog until the room server opens a
    session (or the operator quits: None).  The configuration then carries
    the session's operator and role; the dialog serves again (unlock,
    change of operator).  When the server does not answer the login, the
    workstation starts offline as the operator who typed it (the fourth
    item: why, in French; "" when online): the call sheet works, the outbox
    keeps the transmissions, and the session opens by itself with what was
    typed when the server answers again (the server then decides who acts,
    as always)."""
    from sas_desk.services.auth.login import OidcLogin
    from sas_desk.services.queues.api import BackendUnavailable
    from sas_desk.services.queues.remote import LoginCancelled, RoomSession
    from sas_desk.ui.login_dialog import LoginDialog

    session = RoomSession(config.room_url, config.room_station, ca=config.room_ca)
    dialog = LoginDialog(
        config.room_url,
        config.room_station,
        role=config.role or "",
        identity=config.identity,
        oidc=lambda: OidcLogin(session.client, ""),  # the session's TLS settings
    )
    session.credentials = dialog.ask
    session.listeners.append(dialog.session_changed)
    hook = asyncio.ensure_future(options.on_login(dialog)) if options.on_login else None
    reason = ""
    while True:
        try:
            info = await session.ensure(reason)
            break
        except LoginCancelled:
            log.info("login abandoned: quitting")
            await session.close()
            dialog.deleteLater()
            return None
        except BackendUnavailable as exc:
            typed = session.offline_login
            if typed is None:  # said in the dialog, which asks again
                reason = exc.message_fr
                continue
            dialog.hide()
            if hook is not None:
                await hook
            log.warning("room server unreachable at start: opening offline (%s)", exc.message_fr)
            offline = (
                f"{exc.message_fr} Poste ouvert hors ligne : les fiches d'appel fonctionnent, "
                "les transmissions attendent dans la boîte d'envoi et partiront avec la "
                "connexion, qui se fera d'elle-même au retour du serveur."
            )
            return session, replace(config, operator=typed.login, role=typed.role), dialog, offline
    if hook is not None:
        await hook
    log.info("room session: %s as %s on %s", info.operator, info.role, info.workstation)
    return session, replace(config, operator=info.operator, role=info.role), dialog, ""


def _read_key(data_dir: Path, sealed: bool) -> tuple[DataKey, RecordCipher | None]:
    """The workstation's data key and its cipher (``sealed``), in a worker
    thread: the keyring or the key file, and ``cryptography``'s import, stay
    off the GUI thread, which paints meanwhile."""
    from sas_desk.services import atrest

    key = atrest.data_key(data_dir)
    return key, key.cipher() if sealed else None


async def main(app: object, config: Config, options: RunOptions) -> int:
    from PySide6.QtCore import QCoreApplication

    from sas_desk.ui import aio, crash

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(crash.loop_handler)
    simulator: Simulator | None = None
    geocoder_url = config.geocoder_url
    client: Any = None  # httpx.AsyncClient, created once the window is up
    session: RoomSession | None = None
    dialog: LoginDialog | None = None
    offline = ""  # why the workstation opened offline (server down at start)
    if config.room_url:  # production: who acts is the room server's session
        opened = await _open_session(config, options)
        if opened is None:
            return 0
        session, config, dialog, offline = opened
    # patient data at rest: the workstation's key (keyring, else a 0600 file
    # beside the data dir), released once the operator is logged in.  Read in
    # a thread while the window is built and painted: the keyring may be slow
    # or ask the desktop to unlock it.  The journal and the outbox open
    # meanwhile (KeyGate): what is typed before the key is kept in memory and
    # written, sealed, once it is there; nothing is written in the clear.
    from sas_desk.services.atrest import KeyGate, SealError

    sealed = not options.unsealed_for_bench
    reading: asyncio.Future[tuple[DataKey, RecordCipher | None]] = loop.run_in_executor(
        None, _read_key, config.data_dir, sealed
    )
    gate = KeyGate()
    journal = Journal(config.journal_path, now=clock.now, cipher=gate)
    actor = Actor(
        role=config.role or "",
        operator=config.operator,
        workstation=config.room_station if session is not None else config.workstation,
    )
    limits = WaitLimits(*config.wait_limits)
    queues = QueueClient(
        build_queue_backend(config, limits, session, gate),
        Outbox(config.outbox_path, cipher=gate),
        actor,
        now=clock.now,
        lease_s=config.lease_s,
        renew_s=config.renew_s,
    )
    window: MainWindow | None = None
    collector: Any = None  # IdleCollector, once the window is up
    search_worker: SearchWorker | None = None
    try:
        # the files open in worker threads (fsyncs on a first start) while the
        # window's modules load on this one
        opening = asyncio.gather(journal.open(), queues.start())
        await asyncio.sleep(0)
        from sas_desk.ui.main_window import MainWindow

        report, _ = await opening
        log.debug("startup: journal open, queues started (%s)", queues.backend.name)
        desk = Desk(config, journal, actor, clock.now)
        desk.queues = queues  # orientations and ARM additions go to the room's log
        await desk.prepare()  # case ids are in the clear: no key needed
        drafts = await journal.count_unfinished()
        resolver = LocationResolver(CommuneIndex.load(), None)
        window = MainWindow(
            config,
            desk,
            journal,
            resolver,
            report=report,
            unfinished=[],
            today=[],
            queue_client=queues,
            limits=limits,
            session=session,
            restoring=drafts > 0,
        )
        from sas_desk.ui.session_gate import SessionGate

        window.gate = SessionGate(
            window,
            operator=config.operator,
            session=session,
            dialog=dialog,
            lock_after_s=config.lock_after_s,
            reauth_after_s=config.reauth_after_s,
            shift_ends=config.shift_ends,
            now=clock.now,
        )
        crash.show_dialog(lambda: journal.available)  # a bug from now on is told on screen
        closed = asyncio.Event()
        QCoreApplication.instance().lastWindowClosed.connect(closed.set)  # type: ignore[union-attr]
        # the banners before show(): the first paint has its final layout (the
        # key file's notice too when the key is already read: no keyring)
        noticed = reading.done() and not reading.cancelled() and reading.exception() is None
        if noticed and reading.result()[0].notice_fr:
            window.banner(reading.result()[0].notice_fr, "warning").setObjectName("dataKeyNotice")
        if offline:
            window.room_offline(offline)
        window.show()
        log.debug("startup: window shown")
        await qt_turn()  # the first paint, then the key
        painted_at = time.monotonic()  # system-wide on Linux: bench/startup.py's first paint
        try:
            key, cipher = await reading
        except (OSError, SealError) as exc:
            gate.fail()
            message = getattr(exc, "message_fr", "") or f"clé illisible ({type(exc).__name__})"
            print(f"sas-desk : données locales indisponibles : {message}", file=sys.stderr)
            log.error("data key unavailable: %s", type(exc).__name__)
            window.close()
            return 1
        gate.set(cipher)
        if key.notice_fr and not noticed:
            window.banner(key.notice_fr, "warning").setObjectName("dataKeyNotice")
        unfinished = await journal.unfinished()
        today = await journal.of_day(clock.now().date())
        log.debug("startup: key read, %d unfinished, %d today", len(unfinished), len(today))
        window.restore(unfinished, today)
        if options.smoke:
            # let Qt lay out and paint through the running loop: calling
            # Qt's event processing from inside a coroutine re-enters other tasks
            # ("Cannot enter into task…") and wedged the shutdown 1 run in 15
            await qt_turn()
            print(
                f"SMOKE OK window={window.width()}x{window.height()} "
                f"journal={'ok' if journal.available else 'memory'} "
                f"queues={queues.backend.name} painted_at={painted_at:.6f}"
            )
            window.close()
            return 0
        # the first paint came before anything else starts: the simulator, the
        # TLS context, the search worker's process, the retention purge and
        # the Hub agent all come after the operator sees the window
        # full garbage collections only when the operator is idle (gc_policy)
        from sas_desk.ui.gc_policy import IdleCollector

        collector = IdleCollector(parent=window, busy=window.searching)
        collector.start(window)
        # the window is up: now the demo simulator and the network side (TLS
        # context, httpx stack), off the path to the first window
        if config.demo and not geocoder_url:
            simulator = await loop.run_in_executor(None, _start_simulator, config.simulator_port)
            geocoder_url = simulator.base_url
            window.set_simulator_url(simulator.base_url)
        if geocoder_url:
            import httpx

            from sas_desk.services.geo.ban import BanGeocoder

            ssl_context = await loop.run_in_executor(None, httpx.create_ssl_context)
            await loop.run_in_executor(None, _warm_imports)
            client = httpx.AsyncClient(
                timeout=httpx.Timeout(config.geocoder_timeout, connect=2.0), verify=ssl_context
            )
            resolver.geocoder = BanGeocoder(geocoder_url, client, timeout=config.geocoder_timeout)
        # what lives as long as the window: the runner's long-lived way
        # (ui/operation.run_long_lived): a known error said, a bug on the crash path
        from sas_desk.ui.operation import run_long_lived

        started_window, started_simulator = window, simulator
        if config.search_worker:  # started now, warm when the search opens
            from sas_desk.services.fhir.worker_client import SearchWorker

            search_worker = SearchWorker(now=clock.now, turn=qt_turn)
            run_long_lived(search_worker.spawn, name="search-worker")
        started_worker = search_worker

        def start_slots() -> None:
            run_long_lived(
                lambda: _start_slots(config, started_simulator, started_window, started_worker),
                name="slot-service",
            )

        window.set_slot_starter(start_slots)

        def start_rosters() -> None:
            run_long_lived(
                lambda: _start_rosters(config, started_window, resolver.index),
                name="roster-service",
                show_error=lambda text: started_window.banner(text, "warning"),
            )

        window.set_roster_starter(start_rosters)
        run_long_lived(lambda: _retention(config, journal, queues), name="retention")
        if embedded_hub(config):  # the embedded Hub Santé agent (single workstation)
            run_long_lived(
                lambda: _run_hub(config, journal, started_window, queues),
                name="hub-agent",
                show_error=lambda text: started_window.banner(text, "error"),
            )
        elif config.hub is not None:
            log.info("room mode: [hub] ignored here, the room server's agent serves the centre")
        if options.on_ready is not None:
            await options.on_ready(window)
        await closed.wait()
        return 0
    finally:
        crash.hide_dialog()
        if collector is not None:
            collector.stop()
        slots_service = window.slot_source if window is not None else None
        roster_service = window.roster_service if window is not None else None
        await aio.cancel_all()
        log.debug("shutdown: background tasks cancelled")
        if slots_service is not None and hasattr(slots_service, "close"):
            await slots_service.close()
        if search_worker is not None and search_worker is not slots_service:
            await search_worker.close()
        if roster_service is not None:
            roster_service.close()
        if not gate.ready:  # ended before the key was read: nothing to write it with
            gate.fail()
        await queues.stop()
        log.debug("shutdown: queues stopped")
        await journal.close()
        log.debug("shutdown: journal closed")
        if client is not None:
            await client.aclose()
        if simulator is not None:
            simulator.stop()
        if window is not None:
            window.deleteLater()
