"""The login to the room server: login, password, role; Enter submits.

Thin on purpose: the dialog only gathers :class:`Credentials` for the
session (``services/queues/remote.py``), which talks to the server, and
shows the French reason of a refusal.  It is a credential provider:
``await dialog.ask(reason)`` shows it and resolves on submit (``None`` when
the operator gives up); the session calls it again after a refusal, and it
closes itself once the session is open.
"""

from __future__ import annotations

import asyncio

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

from sas_desk.services.config import ROLES
from sas_desk.services.queues.remote import Credentials, SessionInfo
from sas_desk.ui.widgets import named


class LoginDialog(QDialog):
    def __init__(
        self,
        server: str,
        workstation: str,
        *,
        login: str = "",
        role: str = "",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("LoginDialog")
        self.setWindowTitle("SAS Desk — identification")
        self.setMinimumWidth(440)
        self._pending: asyncio.Future[Credentials | None] | None = None
        outer = QVBoxLayout(self)
        title = QLabel("Identification au serveur de salle")
        title.setStyleSheet("font-size: 16px; font-weight: bold;")
        outer.addWidget(title)
        where = QLabel(f"Serveur : {server}\nPoste : {workstation}")
        where.setStyleSheet("color: #555;")
        outer.addWidget(where)
        form = QFormLayout()
        self.login = named(QLineEdit(login), "loginField")
        self.login.setPlaceholderText("identifiant")
        self.password = named(QLineEdit(), "passwordField")
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.role = named(QComboBox(), "roleField")
        for code, label in ROLES.items():
            self.role.addItem(f"{code} — {label}", code)
        if role in ROLES:
            self.role.setCurrentIndex(list(ROLES).index(role))
        form.addRow("&Identifiant", self.login)
        form.addRow("&Mot de passe", self.password)
        form.addRow("&Rôle", self.role)
        outer.addLayout(form)
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
        buttons.button(QDialogButtonBox.StandardButton.Cancel).setText("Quitter")
        buttons.accepted.connect(self.submit)
        buttons.rejected.connect(self.reject)
        outer.addWidget(buttons)
        # Enter in a field submits (QDialog's default button); Esc gives up
        self.login.returnPressed.connect(self.submit)
        self.password.returnPressed.connect(self.submit)

    # ------------------------------------------------------------ the provider
    async def ask(self, reason_fr: str = "") -> Credentials | None:
        """Show the dialog (with why, after a refusal) and wait for the
        operator's credentials; ``None`` when they give up."""
        loop = asyncio.get_running_loop()
        self._pending = loop.create_future()
        self._show_error(reason_fr)
        self._busy(False)
        self.password.clear()
        self.show()
        self.raise_()
        self.activateWindow()
        (self.password if self.login.text() else self.login).setFocus()
        return await self._pending

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
        if self._pending is not None and not self._pending.done():
            self._pending.set_result(None)
        self.hide()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.reject()
        event.ignore()

    def _busy(self, busy: bool) -> None:
        """While the server answers: fields read-only (the focus stays where
        it is), role and button disabled."""
        self.login.setReadOnly(busy)
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
