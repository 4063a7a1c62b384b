"""Who is at the keyboard (issue 15): the screen lock, the change of operator,
the end of shift, and a session the room server closed.

:class:`SessionGate` owns the window's :class:`~sas_desk.ui.session_lock.SessionLock`
and, in production mode, stands between the room session and the login
dialog (it is the session's credential provider):

- **inactivity** locks the screen (``[session] lock_after_min``, 5 min); only
  the same operator unlocks it (their login is shown read-only; an OpenID
  Connect login that names someone else is refused and its session closed);
  after ``reauth_after_min`` (20 min) the session is closed on the server and
  the same operator logs in again in full;
- **« Changer d'opérateur »** (menu, or the lock screen) hands the
  workstation to the next operator without closing the open calls: the new
  session replaces the old one, which the server closes; every action from
  then on is the new operator's, the earlier ones stay the previous one's;
- **end of shift** (``[session] shift_end``, the room's time) closes the
  session on the server and locks: the next login may be anyone's;
- **a session the server closed** (revoked, account disabled, expired) is
  seen at the next request (the renewal of leases runs every
  ``[queues] renew_s``) or the stream's: the screen locks and says so in
  French, and the login dialog comes up.

Nothing under the cover is touched: what was typed stays where it was.  In
the demo (no room server) the lock still hides the window; unlocking is a
click (there is no one to ask), and there is no change of operator.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as day_time
from typing import TYPE_CHECKING, Any

import msgspec
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow, QPushButton

from sas_desk.ui.operation import run_operation
from sas_desk.ui.session_lock import SessionLock
from sas_desk.ui.widgets import named

if TYPE_CHECKING:
    # the room session's module (httpx) is loaded where a session is used:
    # the demo's window starts without it (bench/startup.py)
    from sas_desk.services.queues.remote import OpenedSession, RoomSession, SessionInfo
    from sas_desk.ui.login_dialog import Answer, LoginDialog

__all__ = ["SessionGate"]

log = logging.getLogger("sas_desk.ui.session")

HANDOVER_FR = (
    "Changement d'opérateur : le prochain opérateur s'identifie. "
    "Les appels en cours restent ouverts."
)
HANDOVER_TITLE_FR = "Changement d'opérateur : le prochain opérateur s'identifie"
SHIFT_END_FR = "Fin de service : la session est fermée. Identifiez-vous pour continuer."
SESSION_CLOSED_FR = (
    "Session fermée par le serveur de salle (révoquée, compte désactivé ou expirée) : "
    "identifiez-vous."
)
UNLOCK_TITLE_FR = "Poste verrouillé — identifiez-vous"
REAUTH_TITLE_FR = "Reconnexion complète (plus de 20 minutes d'inactivité)"
NOT_SAME_FR = (
    "Ce poste est verrouillé par {operator} : seul {operator} le déverrouille. "
    "Pour prendre le poste, choisissez « Changer d'opérateur »."
)
DEMO_FR = "Démonstration : pas de serveur de salle, le poste se déverrouille sans identification."


class _Opened(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    access_token: str = ""
    operator: str = ""


@dataclass(frozen=True)
class _Expect:
    operator: str
    role: str
    title_fr: str


class SessionGate(QObject):
    operatorChanged = Signal(str, str)  # previous, next (logins)

    def __init__(
        self,
        window: QMainWindow,
        *,
        operator: str,
        session: RoomSession | None = None,
        dialog: LoginDialog | None = None,
        lock_after_s: float = 300.0,
        reauth_after_s: float = 1200.0,
        shift_ends: tuple[str, ...] = (),
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] | None = None,
        tick_ms: int = 1000,
    ) -> None:
        super().__init__(window)
        self._window = window
        self.session = session
        self.dialog = dialog
        self._now = now
        self._shift_ends = tuple(
            day_time(int(end[:2]), int(end[3:5])) for end in shift_ends if len(end) == 5
        )
        self._last_wall = now() if now is not None else None
        self._expect: _Expect | None = None
        self._closing = False  # our own logout: the listener does not say "closed by the server"
        self._busy = False  # an unlock or a handover is asking: it handles the answer
        self._handing = False  # a change of operator is asking: the next operator's login
        self._idle_closed = False  # locked past reauth_after_s: the server session was closed
        self._role = session.info.role if session is not None and session.info else ""
        self._lost = False  # locked because the session is gone: any login unlocks
        self.lock = SessionLock(
            window,
            operator=operator,
            reauthenticate=self._reauthenticate,
            lock_after_s=lock_after_s,
            reauth_after_s=reauth_after_s,
            clock=clock,
            tick_ms=tick_ms,
        )
        lock_now = QAction("Verrouiller le poste", window)
        lock_now.setObjectName("lockNowAction")
        lock_now.setShortcut(QKeySequence("Ctrl+Shift+L"))
        lock_now.triggered.connect(lambda: self.lock.lock())
        window.addAction(lock_now)
        self.handover_button: QPushButton | None = None
        if session is not None:
            self.handover_button = named(QPushButton("Changer d'opérateur"), "handoverButton")
            self.handover_button.clicked.connect(self.change_operator)
            row = self.lock.cover.buttons
            row.insertWidget(row.count() - 1, self.handover_button)  # before the last stretch
            handover = QAction("Changer d'opérateur", window)
            handover.setObjectName("handoverAction")
            handover.setShortcut(QKeySequence("Ctrl+Shift+O"))
            handover.triggered.connect(self.change_operator)
            window.addAction(handover)
            if dialog is not None:
                session.credentials = self._provide
            session.listeners.append(self._on_session)
        else:
            self.lock.locked.connect(lambda: self.lock.cover.error.setText(DEMO_FR))
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.check)
        self._timer.start(tick_ms)

    # ------------------------------------------------------------ clock
    def check(self) -> None:
        """The lock's inactivity check, the late calls said on the cover, then
        the shift ends passed since the last check (the room's wall clock)."""
        self.lock.check()
        self._say_late()
        if (
            self.session is not None
            and self.session.info is not None
            and self.lock.is_locked
            and not (self._lost or self._idle_closed or self._busy)
            and self.lock.idle_s() >= self.lock.reauth_after_s
        ):
            # a long absence: the session is closed on the server, the same
            # operator logs in again in full (their claims' leases lapse)
            log.info("idle past the full re-authentication delay: the session is closed")
            self._idle_closed = True
            self._run(self._close_session(keep_operator=True), "idle-close")
        if self._now is None or self._last_wall is None:
            return
        wall, last = self._now(), self._last_wall
        self._last_wall = wall
        day = last.date()
        while day <= wall.date():
            for end in self._shift_ends:
                at = datetime.combine(day, end, tzinfo=wall.tzinfo)
                if last < at <= wall:
                    self.end_shift()
                    return
            day += timedelta(days=1)

    def _say_late(self) -> None:
        """Under the cover the escalation bar (ui/escalation.py) keeps checking
        and ringing; the cover says how many urgent calls wait too long, and
        in which queues — never who or where."""
        bar = getattr(self._window, "escalation", None)
        late = list(getattr(bar, "current", []) or []) if self.lock.is_locked else []
        label = self.lock.cover.late
        if not late:
            label.hide()
            return
        queues = ", ".join(sorted({item.queue.value for item in late}))
        n = len(late)
        label.setText(
            f"⚠ {n} appel{'s' if n > 1 else ''} urgent{'s' if n > 1 else ''} en retard "
            f"(file{'s' if ',' in queues else ''} {queues}) — déverrouillez pour le prendre"
        )
        label.show()

    # ------------------------------------------------------------ actions
    def end_shift(self) -> None:
        log.info("end of shift: the session is closed")
        self._lost = self.session is not None
        self.lock.lock(SHIFT_END_FR)
        if self.session is not None:
            self._run(self._close_session(), "shift-end")

    def _run(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """The UI's one way to run an operation: a known refusal is said on
        the cover (the screen stays locked), anything else is a bug."""
        run_operation(work, name=name, show_error=self.lock.cover.error.setText)

    async def _close_session(self, *, keep_operator: bool = False) -> None:
        assert self.session is not None
        if not keep_operator:
            self._expect = None  # the next shift's operator may log in
        self._closing = True
        try:
            await self.session.logout()
        finally:
            self._closing = False

    def change_operator(self) -> None:
        if self.session is None:
            return
        if self._busy:
            return
        self.lock.lock(HANDOVER_FR)
        self._run(self._handover(), "change-operator")

    async def _handover(self) -> None:
        assert self.session is not None
        previous = self.lock.operator
        self._expect = None
        self._busy = self._handing = True
        from sas_desk.services.queues.remote import LoginCancelled

        try:
            info = await self.session.relogin(HANDOVER_FR)
        except LoginCancelled:  # the previous operator's session stays, locked
            self.lock.cover.error.setText("Changement d'opérateur abandonné.")
            return
        finally:  # a known refusal (server unreachable…): the runner says it on the cover
            self._busy = self._handing = False
        self._handed(previous, info)

    def _handed(self, previous: str, info: SessionInfo) -> None:
        self._lost = self._idle_closed = False
        self.lock.operator = info.operator
        if info.operator != previous:
            log.info("operator changed at the workstation")
            self.operatorChanged.emit(previous, info.operator)
        self.lock.release()

    async def _reauthenticate(self, reason: str) -> bool:
        if self.session is None:
            return True  # the demo: nobody to ask (the cover says so)
        title = REAUTH_TITLE_FR if reason == "reauth" or self._idle_closed else UNLOCK_TITLE_FR
        if not self._lost:  # inactivity (however long): the same operator only
            self._expect = _Expect(self.lock.operator, self._role, title)
        previous = self.lock.operator
        self._busy = True
        from sas_desk.services.queues.remote import LoginCancelled

        try:
            got = await self.session.relogin(title)
        except LoginCancelled:
            return False
        finally:
            self._expect = None
            self._busy = False
        self._handed(previous, got)  # another operator: after an end of shift or a closed session
        return True

    # ------------------------------------------------------------ session
    def _on_session(self, info: SessionInfo | None) -> None:
        if info is not None:
            self._role = info.role
        if info is None:
            if not self._closing:
                log.info("room session closed: the workstation locks")
                self._expect = None
                self._lost = True
                self.lock.lock(SESSION_CLOSED_FR)
            return
        if self._busy:
            return
        if self._lost or (self._idle_closed and info.operator == self.lock.operator):
            # a login the session asked for by itself (after it was closed)
            self._handed(self.lock.operator, info)

    async def _provide(self, reason_fr: str) -> Answer:
        """The session's credential provider: the dialog, and while the
        screen is locked for inactivity, the same operator only."""
        assert self.dialog is not None and self.session is not None
        from sas_desk.services.queues.remote import Credentials, OpenedSession

        while True:
            expect = self._expect
            if expect is None and self.lock.is_locked and not (self._lost or self._handing):
                # a request asked while the screen is locked for inactivity
                expect = _Expect(self.lock.operator, self._role, REAUTH_TITLE_FR)
            if expect is None and self._handing:
                got = await self.dialog.ask_next(
                    HANDOVER_TITLE_FR, "" if reason_fr == HANDOVER_FR else reason_fr
                )
                return got
            if expect is None:
                return await self.dialog.ask(reason_fr)
            got = await self.dialog.ask_operator(
                expect.operator, expect.role, expect.title_fr, reason_fr
            )
            refused = NOT_SAME_FR.format(operator=expect.operator)
            if isinstance(got, Credentials):
                if got.login.strip() == expect.operator:
                    return got
            elif isinstance(got, OpenedSession):
                opened = _opened(got)
                if opened is None or opened.operator == expect.operator:
                    return got
                await self._close_stray(opened.access_token)
                log.info("unlock refused: another operator identified")
            else:
                return got
            reason_fr = refused

    async def _close_stray(self, access_token: str) -> None:
        """Close on the server a session opened by someone who may not
        unlock this screen."""
        assert self.session is not None
        try:
            await self.session.client.delete(
                "/v1/session", headers={"Authorization": f"Bearer {access_token}"}
            )
        except Exception as exc:  # best effort: it expires on its own
            log.warning("stray session not closed (%s)", type(exc).__name__)


def _opened(got: OpenedSession) -> _Opened | None:
    if got.response.status_code != 200:
        return None  # a refusal: the session says it
    try:
        return msgspec.json.decode(got.response.content, type=_Opened)
    except msgspec.DecodeError:
        return None
