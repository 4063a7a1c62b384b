"""The login to the room server: the dialog gathers credentials (Enter
submits), the session asks the real server, refusals come back in French,
and the window then shows who acts in its status bar."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from sas_desk.services.journal.store import OpenReport
from sas_desk.services.private import KEYRING_FR
from sas_desk.services.queues.remote import Credentials, RoomSession, TokenStore
from sas_desk.ui.keys import type_text
from sas_desk.ui.login_dialog import LoginDialog
from tests.integration.queues.room import PASSWORD, RoomServer
from tests.ui.conftest import Env, open_window, until

pytestmark = [pytest.mark.gui, pytest.mark.asyncio(loop_scope="session")]


def dialog_and_session(
    qtbot: QtBot, room: RoomServer, name: str
) -> tuple[LoginDialog, RoomSession]:
    dialog = LoginDialog(room.url, name, role="ARM")
    qtbot.addWidget(dialog)
    session = RoomSession(room.url, name, credentials=dialog.ask, tokens=TokenStore(room.url, name))
    session.listeners.append(dialog.session_changed)
    return dialog, session


def submit(qtbot: QtBot, dialog: LoginDialog, login: str, password: str, role: str) -> None:
    dialog.login.clear()
    type_text(dialog.login, login)
    dialog.role.setCurrentIndex(dialog.role.findData(role))
    type_text(dialog.password, password)
    qtbot.keyClick(dialog.password, Qt.Key.Key_Return)


async def test_enter_submits_refusals_are_french_and_the_session_opens(
    qtbot: QtBot, room: RoomServer
) -> None:
    dialog, session = dialog_and_session(qtbot, room, "POSTE-LOGIN-1")
    opening = asyncio.ensure_future(session.ensure())
    try:
        await until(dialog.isVisible)
        assert dialog.login.hasFocus()  # nothing typed yet: the login first
        submit(qtbot, dialog, "arm.martin", "pas-le-bon", "ARM")
        await until(lambda: dialog.error.isVisible() and not dialog.busy, 15)
        assert dialog.error.text() == "Identifiant ou mot de passe incorrect."
        assert dialog.password.text() == "" and dialog.password.hasFocus()
        assert dialog.login.text() == "arm.martin"  # kept: only the password again
        submit(qtbot, dialog, "arm.martin", PASSWORD, "MRU")  # not one of the account's roles
        await until(lambda: "MRU" in dialog.error.text() and not dialog.busy, 15)
        assert dialog.error.text() == "Le compte arm.martin ne peut pas travailler comme MRU."
        assert not opening.done()
        submit(qtbot, dialog, "arm.martin", PASSWORD, "ARM")
        info = await asyncio.wait_for(opening, 15)
    finally:
        opening.cancel()
        await session.close()
    assert (info.operator, info.role, info.workstation) == ("arm.martin", "ARM", "POSTE-LOGIN-1")
    assert not dialog.isVisible() and dialog.password.text() == ""


async def test_missing_fields_are_said_before_asking_and_escape_gives_up(qtbot: QtBot) -> None:
    dialog = LoginDialog("https://salle.samu69.local", "POSTE-01")
    qtbot.addWidget(dialog)
    asked = asyncio.ensure_future(dialog.ask(""))
    await until(dialog.isVisible)
    qtbot.keyClick(dialog.login, Qt.Key.Key_Return)
    assert dialog.error.text() == "Identifiant et mot de passe requis."
    assert dialog.error.isVisible() and not asked.done() and dialog.login.hasFocus()
    type_text(dialog.login, "dr.durand")
    qtbot.keyClick(dialog.login, Qt.Key.Key_Return)
    assert dialog.password.hasFocus() and not asked.done()
    qtbot.keyClick(dialog.password, Qt.Key.Key_Escape)
    assert await asyncio.wait_for(asked, 5) is None
    assert not dialog.isVisible()
    again = asyncio.ensure_future(dialog.ask("Serveur de salle injoignable."))
    await until(dialog.isVisible)
    assert dialog.error.text() == "Serveur de salle injoignable."
    # the login is kept: the password next (shown again, the offscreen platform
    # does not activate the window: its focus widget says where keys will go)
    assert dialog.focusWidget() is dialog.password
    type_text(dialog.password, "secret")
    dialog.role.setCurrentIndex(dialog.role.findData("MRU"))
    dialog.submit_button.click()
    assert await asyncio.wait_for(again, 5) == Credentials("dr.durand", "secret", "MRU")
    assert dialog.busy  # waiting for the server


async def test_the_window_shows_the_session_and_no_role_picker(
    qtbot: QtBot, env: Env, room: RoomServer, tmp_path: Path
) -> None:
    session = RoomSession(room.url, "POSTE-LOGIN-2", tokens=TokenStore(room.url, "POSTE-LOGIN-2"))
    try:
        await session.login(Credentials("arm.martin", PASSWORD, "ARM"))
        # the data key's notice too (no keyring): one banner says both, not one each
        report = OpenReport(
            tmp_path / "journal.sqlite",
            notice_fr=f"{KEYRING_FR}la clé de chiffrement des données locales est gardée dans le fichier K.",
        )
        window = await open_window(qtbot, env, session=session, report=report)
        assert window.role == "ARM"
        assert window.stack.currentWidget() is not window.picker
        assert window.session_label.text() == "Session : arm.martin (ARM)"
        assert env.desk.actor.operator == "arm.martin"
        # the tests' keyring keeps nothing: the window says the session is in memory only
        notices = [w for w in window._banner_widgets() if w.objectName() == "keyringNotice"]
        assert len(notices) == 1
        text = notices[0].label.text()
        assert text.count(KEYRING_FR) == 1
        assert "données locales est gardée dans le fichier K ; la session du serveur" in text
        assert "Trousseau" not in " ".join(
            w.label.text()
            for w in window._banner_widgets()
            if w is not notices[0] and hasattr(w, "label")
        )
        await session.logout()
        assert window.session_label.text() == "Session : fermée"
    finally:
        await session.close()


async def test_with_pro_sante_connect_alone_the_room_passwords_stay_offered(qtbot: QtBot) -> None:
    """ARMs, OSNPs and supervisors have no RPPS: without an establishment IdP
    they keep the room's passwords; with one, the password form goes."""
    from sas_desk.services.auth.login import OidcLogin
    from sas_desk.services.config import IdentitySettings

    def oidc() -> OidcLogin:
        raise AssertionError("not started here")

    psc = IdentitySettings(psc_issuer="https://psc.example/auth", psc_client_id="c")
    alone = LoginDialog("https://salle", "POSTE-01", identity=psc, oidc=oidc)
    qtbot.addWidget(alone)
    asked = asyncio.ensure_future(alone.ask(""))
    await until(alone.isVisible)
    assert alone.oidc is not None and alone.oidc.psc_button.isVisible()
    assert alone.password.isVisible() and alone.submit_button.isVisible()
    assert not alone.oidc.establishment_button.isVisible()
    alone.reject()
    assert await asyncio.wait_for(asked, 5) is None
    both = LoginDialog(
        "https://salle", "POSTE-01", oidc=oidc,
        identity=IdentitySettings(
            psc_issuer="https://psc.example/auth", psc_client_id="c",
            establishment_issuer="https://idp.chu.example/realms/chu",
            establishment_client_id="c",
        ),
    )  # fmt: skip
    qtbot.addWidget(both)
    both.show()
    assert not both.password.isVisible() and not both.submit_button.isVisible()
