"""The login to the room server: the role, then Pro Santé Connect or the
establishment's identity provider when ``[identity]`` names them, else the
room's own login and password; Enter submits.

Thin on purpose: the dialog only gathers :class:`Credentials` (or the
session an OpenID Connect login opened, :class:`OpenedSession`) for the
session (``services/queues/remote.py``), which talks to the server, and
shows the French reason of a refusal.  It is a credential provider:
``await dialog.ask(reason)`` shows it and resolves on submit (``None`` when
the operator gives up); the session calls it again after a refusal, and it
closes itself once the session is open.

Unlocking the screen asks the same operator again: :meth:`ask_operator`
shows the locked session's login (read-only) and says why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from sas_desk.services.auth.login import OidcLogin
from sas_desk.services.config import ROLES, IdentitySettings
from sas_desk.services.queues.remote import Credentials, OpenedSession, SessionInfo
from sas_desk.ui.identity_login import IdentityLogin, open_in_system_browser
from sas_desk.ui.widgets import named

Answer = Credentials | OpenedSession | None


class LoginDialog(QDialog):
    def __init__(
        self,
        server: str,
        workstation: str,
        *,
        login: str = "",
        role: str = "",
        identity: IdentitySettings | None = None,
        oidc: OidcLogin | Callable[[], OidcLogin] | None = None,
        opener: Callable[[str], object] = open_in_system_browser,
        parent: QWidget | None = None,
    ) -> None:
        """``identity`` + ``oidc``: the providers to offer (``[identity]``)
        and the client of the room server's OIDC login; with a provider, the
        password form is offered only when no establishment IdP covers the
        staff without an RPPS (local passwords are for the demo and sites
        without an identity provider)."""
        super().__init__(parent)
        self.setObjectName("LoginDialog")
        self.setWindowTitle("SAS Desk — identification")
        self.setMinimumWidth(480)
        self._pending: asyncio.Future[Answer] | None = None
        self._fixed = False  # the login is the locked session's
        outer = QVBoxLayout(self)
        self.title = QLabel("Identification au serveur de salle")
        self.title.setStyleSheet("font-size: 16px; font-weight: bold;")
        outer.addWidget(self.title)
        where = QLabel(f"Serveur : {server}\nPoste : {workstation}")
        where.setStyleSheet("color: #555;")
        outer.addWidget(where)
        self.role = named(QComboBox(), "roleField")
        for code, label in ROLES.items():
            self.role.addItem(f"{code} — {label}", code)
        if role in ROLES:
            self.role.setCurrentIndex(list(ROLES).index(role))
        form = QFormLayout()
        form.addRow("&Rôle", self.role)
        self.login = named(QLineEdit(login), "loginField")
        self.login.setPlaceholderText("identifiant")
        self.password = named(QLineEdit(), "passwordField")
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.oidc: IdentityLogin | None = None
        if identity is not None and oidc is not None and (identity.psc or identity.establishment):
            outer.addLayout(form)
            self.oidc = IdentityLogin(
                oidc, identity, workstation, role_field=self.role, opener=opener, parent=self
            )
            self.oidc.sessionOpened.connect(self._opened)
            outer.addWidget(self.oidc)
        # the room's own passwords, unless the establishment's IdP covers the
        # staff without an RPPS (ARM, OSNP, supervisor)
        self.passwords = self.oidc is None or not (identity is not None and identity.establishment)
        if self.passwords:
            if self.oidc is None:
                local = form
            else:
                local = QFormLayout()
                outer.addWidget(QLabel("Ou avec un compte de la salle :"))
            local.addRow("&Identifiant", self.login)
            local.addRow("&Mot de passe", self.password)
            outer.addLayout(local)
        else:
            self.login.hide()
            self.password.hide()
        self.error = named(QLabel(""), "loginError")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #b00020; font-weight: bold;")
        self.error.hide()
        outer.addWidget(self.error)
        self.state = named(QLabel(""), "loginState")
        self.state.setStyleSheet("color: #555;")
        outer.addWidget(self.state)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.submit_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.submit_button.setText("Se connecter")
        self.submit_button.setObjectName("loginSubmit")
        self.submit_button.setDefault(True)
        self.submit_button.setVisible(self.passwords)
        self.quit_button = buttons.button(QDialogButtonBox.StandardButton.Cancel)
        self.quit_button.setText("Quitter")
        buttons.accepted.connect(self.submit)
        buttons.rejected.connect(self.reject)
        outer.addWidget(buttons)
        # Enter in a field submits (QDialog's default button); Esc gives up
        self.login.returnPressed.connect(self.submit)
        self.password.returnPressed.connect(self.submit)

    # ------------------------------------------------------------ the provider
    async def ask(self, reason_fr: str = "") -> Answer:
        """Show the dialog (with why, after a refusal) and wait for the
        operator's credentials; ``None`` when they give up."""
        loop = asyncio.get_running_loop()
        self._pending = loop.create_future()
        self._show_error(reason_fr)
        self._busy(False)
        self.password.clear()
        if self.oidc is not None:
            self.oidc.reset()
        self.show()
        self.raise_()
        self.activateWindow()
        if not self.passwords:
            self.role.setFocus()
        else:
            (self.password if self.login.text() else self.login).setFocus()
        return await self._pending

    async def ask_operator(self, operator: str, role: str, title_fr: str, reason_fr: str) -> Answer:
        """The same operator again (unlocking the screen): their login
        shown read-only, the role of the locked session; then as
        :meth:`ask`.  The login field and title come back afterwards."""
        self.title.setText(title_fr)
        self.login.setText(operator)
        self._fixed = True
        self.quit_button.setText("Annuler")  # the app goes on, locked
        if role in ROLES:
            self.role.setCurrentIndex(list(ROLES).index(role))
        try:
            return await self.ask(reason_fr)
        finally:
            self._fixed = False
            self.login.setReadOnly(False)
            self.title.setText("Identification au serveur de salle")
            self.quit_button.setText("Quitter")

    async def ask_next(self, title_fr: str, reason_fr: str) -> Answer:
        """The next operator (a change of operator): nothing of the previous
        one's left in the fields (login, RPPS), the title says why."""
        self.title.setText(title_fr)
        self.login.clear()
        if self.oidc is not None:
            self.oidc.rpps.clear()
        self.quit_button.setText("Annuler")  # the previous operator's session stays
        try:
            return await self.ask(reason_fr)
        finally:
            self.title.setText("Identification au serveur de salle")
            self.quit_button.setText("Quitter")

    def _opened(self, response: httpx.Response) -> None:
        """An OpenID Connect login opened a session: the answer for the
        room session to take."""
        if self._pending is not None and not self._pending.done():
            self._pending.set_result(OpenedSession(response))

    def session_changed(self, info: SessionInfo | None) -> None:
        """The session listener: an open session closes the dialog."""
        if info is not None:
            self._busy(False)
            self.password.clear()
            self.hide()

    # ------------------------------------------------------------ internals
    def credentials(self) -> Credentials:
        return Credentials(
            self.login.text().strip(), self.password.text(), str(self.role.currentData() or "")
        )

    def submit(self) -> None:
        if self._pending is None or self._pending.done():
            return
        credentials = self.credentials()
        problem = credentials.problem()
        if problem is not None:
            self._show_error(problem)
            (self.password if credentials.login else self.login).setFocus()
            return
        self._busy(True)
        self._pending.set_result(credentials)

    def reject(self) -> None:
        if self.oidc is not None:
            self.oidc.cancel()
        if self._pending is not None and not self._pending.done():
            self._pending.set_result(None)
        self.hide()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.reject()
        event.ignore()

    def _busy(self, busy: bool) -> None:
        """While the server answers: fields read-only (the focus stays where
        it is), role and button disabled."""
        self.login.setReadOnly(busy or self._fixed)
        self.password.setReadOnly(busy)
        self.role.setEnabled(not busy)
        self.submit_button.setEnabled(not busy)
        self.state.setText("Connexion en cours…" if busy else "")

    @property
    def busy(self) -> bool:
        return self.password.isReadOnly()

    def _show_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.setVisible(bool(text))
