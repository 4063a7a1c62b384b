"""The Hub Santé agent embedded in the app: its status in the status bar, and
an alarm banner for a message a partner did not acknowledge in time (real
RabbitMQ, own vhost, the local hub simulator)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from sas_desk import app as app_module
from sas_desk.models.rseda import from_rseda
from sas_desk.services.hub.settings import HubSettings
from sas_desk.simulator.hub import HubSimulator
from tests.helpers.rabbit import own_vhost
from tests.reference import load_example
from tests.ui.conftest import Env, open_window

pytestmark = [pytest.mark.gui, pytest.mark.reference, pytest.mark.asyncio(loop_scope="session")]

ME, PARTNER = "fr.health.samu690", "fr.health.samu380"


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


async def test_the_embedded_agent_connects_and_raises_the_alarm(
    qtbot: QtBot, env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    with own_vhost() as url:
        simulator = HubSimulator(url, [ME, PARTNER])
        await simulator.start()
        hub = HubSettings(url=url, client_id=ME)
        config = dataclasses.replace(env.config, hub=hub)
        window = await open_window(qtbot, env)
        alarms: list[Any] = []
        original = window.hub_alarm
        monkeypatch.setattr(window, "hub_alarm", lambda text: alarms.append(text) or original(text))
        task = asyncio.create_task(app_module._run_hub(config, env.journal, window))
        try:
            await _until(
                lambda: (
                    window.hub_label is not None
                    and window.hub_label.text() == "Hub Santé : connecté"
                )
            )
            # a case shared with a partner that never acknowledged it, now past
            # its expiry: the agent's watch raises the alarm
            from sas_desk.models import hub as hubmsg
            from sas_desk.services import clock
            from sas_desk.services.hub.store import AsyncHubStore

            dossier = from_rseda(load_example("RS-EDA_partageDossier_DidierMorel.01a.json"))
            sent = clock.now() - timedelta(hours=1)
            envelope = hubmsg.build_envelope(
                sender=ME,
                recipient=PARTNER,
                body={
                    "createCaseHealth": {
                        "caseId": dossier.case_id,
                        "owner": ME,
                        "creation": "2026-12-07T10:00:00+01:00",
                        "qualification": {},
                        "location": {},
                    }
                },
                sent_at=sent,
                expires_at=sent + timedelta(minutes=5),
            )
            did = envelope["distributionID"]
            store = AsyncHubStore(config.hub_path)
            await store.open()

            def confirmed(s: Any) -> None:
                s.enqueue(
                    envelope=envelope,
                    model="RS-EDA",
                    case_id=dossier.case_id,
                    ref=None,
                    expires_ts=(sent + timedelta(minutes=5)).timestamp(),
                    at=sent.isoformat(),
                )
                s.mark([did], "confirmed", sent.isoformat())

            await store.atomic(confirmed)
            await store.close()
            await _until(lambda: bool(alarms), timeout=20)
            assert "non reçu par fr.health.samu380" in alarms[0]
            assert "téléphonez" in alarms[0]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await simulator.stop()
    assert window.hub_label is not None


async def _until(condition: Any, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)
