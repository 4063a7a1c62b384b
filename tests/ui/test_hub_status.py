"""The Hub Santé indicator of the main window: its status in the status bar,
and an alarm banner for a message a partner did not acknowledge in time."""

from __future__ import annotations

import pytest
from pytestqt.qtbot import QtBot

from tests.ui.conftest import Env, open_window

pytestmark = [pytest.mark.gui, pytest.mark.asyncio(loop_scope="session")]


async def test_status_bar_and_alarm_banner(qtbot: QtBot, env: Env) -> None:
    window = await open_window(qtbot, env)
    assert window.hub_label is None  # no [hub]: no indicator
    window.set_hub_status("Hub Santé : hors ligne depuis 16:10", False)
    assert window.hub_label is not None
    assert window.hub_label.text() == "Hub Santé : hors ligne depuis 16:10"
    assert "bold" in window.hub_label.styleSheet()
    window.set_hub_status("Hub Santé : connecté", True)
    assert window.hub_label.text() == "Hub Santé : connecté"
    assert window.hub_label.styleSheet() == ""
    banner = window.hub_alarm("Hub Santé : RS-EDA non reçu par fr.health.samu380")
    assert banner.objectName() == "banner_error"
