"""Login through Pro Santé Connect or the establishment's identity provider.

A panel the login dialog embeds (next to the password form): the role, the
RPPS when PSC runs in CIBA mode, one button per configured provider.  The
work is :class:`~sas_desk.services.auth.login.OidcLogin`'s (the room server
is the confidential client); the panel only shows where the login stands —
"finish in the browser", or the binding message to approve on the e-CPS app —
and the French reason of a refusal.  ``sessionOpened`` carries the room
server's answer (the ``SessionBody``) for the session holder to take.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
from PySide6.QtCore import QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from sas_desk.services.auth.broker import national_id
from sas_desk.services.auth.errors import AuthError
from sas_desk.services.auth.login import OidcLogin
from sas_desk.services.config import ROLES, IdentitySettings
from sas_desk.services.queues.api import BackendUnavailable
from sas_desk.ui.aio import spawn
from sas_desk.ui.widgets import named

__all__ = ["IdentityLogin"]

WAIT_BROWSER_FR = "Terminez la connexion dans le navigateur qui vient de s'ouvrir…"
WAIT_ECPS_FR = "Validez la demande sur votre application e-CPS :"
CANCELLED_FR = "Connexion annulée."


def open_in_system_browser(url: str) -> None:
    QDesktopServices.openUrl(QUrl(url))


class IdentityLogin(QWidget):
    sessionOpened = Signal(object)  # httpx.Response: the room server's SessionBody

    def __init__(
        self,
        login: OidcLogin | Callable[[], OidcLogin],
        identity: IdentitySettings,
        workstation: str,
        *,
        role: str = "",
        role_field: QComboBox | None = None,
        opener: Callable[[str], object] = open_in_system_browser,
        parent: QWidget | None = None,
    ) -> None:
        """``login``: the OIDC client, or a function giving it when a login
        starts (the room session's HTTP client exists once it is open);
        ``role_field``: the role picker of the dialog that embeds the panel
        (else the panel has its own)."""
        super().__init__(parent)
        self.setObjectName("IdentityLogin")
        self._login = login
        self._identity = identity
        self._workstation = workstation
        self.opener = opener
        self._task: asyncio.Task[None] | None = None
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        form = QFormLayout()
        if role_field is None:
            self.role = named(QComboBox(), "identityRole")
            for code, label in ROLES.items():
                self.role.addItem(f"{code} — {label}", code)
            if role in ROLES:
                self.role.setCurrentIndex(list(ROLES).index(role))
            form.addRow("&Rôle", self.role)
        else:
            self.role = role_field
        self.rpps = named(QLineEdit(), "rppsField")
        self.rpps.setPlaceholderText("11 chiffres")
        self.rpps.setMaxLength(12)
        form.addRow("N° &RPPS", self.rpps)
        self.rpps.setVisible(identity.psc_mode == "ciba")
        form.labelForField(self.rpps).setVisible(identity.psc_mode == "ciba")
        outer.addLayout(form)
        buttons = QHBoxLayout()
        self.psc_button = named(QPushButton("Pro Santé Connect (CPS / e-CPS)"), "pscButton")
        self.psc_button.setVisible(identity.psc)
        self.psc_button.clicked.connect(lambda: self._start("psc"))
        self.establishment_button = named(
            QPushButton("Compte de l'établissement"), "establishmentButton"
        )
        self.establishment_button.setVisible(identity.establishment)
        self.establishment_button.clicked.connect(lambda: self._start("etablissement"))
        self.cancel_button = named(QPushButton("Annuler"), "identityCancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        for button in (self.psc_button, self.establishment_button, self.cancel_button):
            buttons.addWidget(button)
        outer.addLayout(buttons)
        self.state = named(QLabel(""), "identityState")
        self.state.setWordWrap(True)
        outer.addWidget(self.state)
        self.binding = named(QLabel(""), "bindingMessage")
        self.binding.setStyleSheet("font-size: 22px; font-weight: bold; letter-spacing: 2px;")
        self.binding.hide()
        outer.addWidget(self.binding)
        self.error = named(QLabel(""), "identityError")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #b00020; font-weight: bold;")
        self.error.hide()
        outer.addWidget(self.error)

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    def _show_error(self, message: str) -> None:
        self.error.setText(message)
        self.error.setVisible(bool(message))

    def _start(self, provider: str) -> None:
        if self.busy:
            return
        self._show_error("")
        hint = ""
        ciba = provider == "psc" and self._identity.psc_mode == "ciba"
        if ciba:
            try:  # the same rule as the server's
                hint = national_id(self.rpps.text())
            except AuthError as exc:
                self._show_error(exc.message_fr)
                self.rpps.setFocus()
                return
        self._task = spawn(self._run(provider, hint, ciba), name=f"login-{provider}")

    def _show_binding(self, message: str) -> None:
        self.state.setText(WAIT_ECPS_FR)
        self.binding.setText(message)
        self.binding.show()

    def _busy(self, on: bool) -> None:
        for widget in (self.psc_button, self.establishment_button, self.role, self.rpps):
            widget.setEnabled(not on)
        self.cancel_button.setEnabled(on)
        if not on:
            self.binding.hide()

    def _client(self) -> OidcLogin:
        return self._login if isinstance(self._login, OidcLogin) else self._login()

    async def _run(self, provider: str, hint: str, ciba: bool) -> None:
        role = str(self.role.currentData())
        self._busy(True)
        try:
            response: httpx.Response
            login = self._client()
            if ciba:
                self.state.setText("Demande envoyée à Pro Santé Connect…")
                response = await login.with_ciba(
                    role=role,
                    workstation=self._workstation,
                    login_hint=hint,
                    on_binding_message=self._show_binding,
                    provider=provider,
                )
            else:
                self.state.setText(WAIT_BROWSER_FR)
                response = await login.with_browser(
                    role=role,
                    workstation=self._workstation,
                    opener=self.opener,
                    provider=provider,
                )
        except AuthError as exc:
            self.state.setText("")
            self._show_error(exc.message_fr)
        except BackendUnavailable as exc:
            self.state.setText("")
            self._show_error(exc.message_fr)
        except asyncio.CancelledError:
            self.state.setText(CANCELLED_FR)
        else:
            self.state.setText("Connecté.")
            self.sessionOpened.emit(response)
        finally:
            self._busy(False)

    def reset(self) -> None:
        """Asked again: no word left from the previous login."""
        self.state.setText("")
        self.binding.hide()
        self._show_error("")

    def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
