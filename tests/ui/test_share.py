"""« Partager avec… » from the dossier (issue #16): Ctrl+Maj+P lists the
partners of ``[hub] partners``, Entrée shares the dossier through the Hub
processor, and the dossier's ledger line follows the message: waiting for
the partner's RC-REF, received, or refused with the RS-ERROR in French."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from sas_desk.models import hub as hubmodel
from sas_desk.models.dossier import Actor
from sas_desk.services.hub.cases import JournalCases
from sas_desk.services.hub.processor import HubProcessor
from sas_desk.services.hub.settings import HubSettings
from sas_desk.services.hub.store import AsyncHubStore
from sas_desk.services.queues.client import Outbox, QueueClient
from sas_desk.services.queues.sqlite import SqliteBackend
from sas_desk.ui import share
from sas_desk.ui.dossier_view import DossierView
from sas_desk.ui.keys import press, type_text
from sas_desk.ui.widgets import Banner
from tests.ui.conftest import Env, until
from tests.ui.test_call_sheet import fill_valid, make_sheet

pytestmark = [pytest.mark.gui, pytest.mark.asyncio(loop_scope="session")]

ME = "fr.health.samu690"
PARTNERS = ("fr.health.samu380", "fr.health.samu010")


@pytest_asyncio.fixture(loop_scope="session")
async def hub(tmp_path: Path, env: Env) -> AsyncIterator[HubProcessor]:
    store = AsyncHubStore(tmp_path / "hub.sqlite")
    await store.open()
    settings = HubSettings(url="amqp://127.0.0.1:5672/x", client_id=ME, partners=PARTNERS)
    yield HubProcessor(settings, store, JournalCases(env.journal, env.desk._now), env.desk._now)
    await store.close()


def answer(processor: HubProcessor, sender: str, body: dict[str, object]) -> bytes:
    now = processor._now()
    envelope = hubmodel.build_envelope(
        sender=sender, recipient=ME, body=body, sent_at=now, expires_at=now + timedelta(hours=1)
    )
    return json.dumps(envelope).encode()


def ledger_texts(view: DossierView) -> list[str]:
    ledger = view.hub_ledger
    assert isinstance(ledger, share.LedgerList)
    return [ledger.item(i).text() for i in range(ledger.count())] if ledger.isVisible() else []


async def test_share_with_enter_then_the_ledger_follows_rc_ref_and_rs_error(
    qtbot: QtBot, env: Env, tmp_path: Path, hub: HubProcessor, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sas_desk.ui.main_window import MainWindow

    client = QueueClient(
        SqliteBackend(tmp_path / "queues.sqlite", now=env.desk._now, poll_interval=0.02),
        Outbox(tmp_path / "outbox.sqlite"),
        Actor("ARM", "arm.test", "POSTE-TEST"),
        now=env.desk._now,
        retry_delay=0.05,
        renew_s=3600,
    )
    await client.start()
    try:
        env.desk.queues = client
        sheet = await make_sheet(qtbot, env)
        fill_valid(sheet)
        type_text(sheet.branch, "s")
        sheet.transmit()
        d = sheet.dossier
        await client.enqueue(d)
        window = MainWindow(
            replace(env.config, role="ARM"),
            env.desk,
            env.journal,
            env.resolver,
            report=None,
            unfinished=[],
            today=[],
            queue_client=client,
        )
        qtbot.addWidget(window)
        window.show()
        window.activateWindow()
        await until(window.isActiveWindow)
        window.hub_processor = hub
        window.open_dossier_view(d.case_id)
        await until(lambda: isinstance(window.tabs.currentWidget(), DossierView))
        view = window.tabs.currentWidget()
        assert isinstance(view, DossierView)
        await until(lambda: isinstance(view.hub_ledger, share.LedgerList))
        assert ledger_texts(view) == []  # nothing shared yet: no line

        ctrl_shift = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
        press(window, Qt.Key.Key_P, ctrl_shift)
        await until(lambda: isinstance(window.share_dialog, share.ShareDialog))
        dialog: share.ShareDialog = window.share_dialog
        await until(dialog.isVisible)
        names = [dialog.partners.item(i).text() for i in range(dialog.partners.count())]
        assert names == list(PARTNERS)
        press(dialog.partners, Qt.Key.Key_Down)
        press(dialog.partners, Qt.Key.Key_Return)
        await until(lambda: not dialog.isVisible())
        rows = await hub.store.run(lambda s: s.ledger(d.case_id))
        assert [(r.recipient, r.model, r.state) for r in rows] == [
            ("fr.health.samu010", "RS-EDA", "queued")
        ]
        first = rows[0].distribution_id
        await until(
            lambda: (
                ledger_texts(view)
                == ["Partagé avec fr.health.samu010 — non reçu par le partenaire"]
            )
        )

        # the partner's RC-REF arrives: the line says so
        verdict = await hub.handle(
            f"{ME}.ack", answer(hub, "fr.health.samu010", hubmodel.ack_body(first))
        )
        assert verdict.outcome == "acknowledged"
        await until(
            lambda: ledger_texts(view) == ["Partagé avec fr.health.samu010 — reçu (RC-REF)"]
        )

        # shared again with the first partner, refused with an RS-ERROR: in French, in red
        window.activateWindow()
        await until(window.isActiveWindow)
        press(window, Qt.Key.Key_P, ctrl_shift)
        await until(lambda: window.share_dialog is not dialog and window.share_dialog.isVisible())
        second_dialog: share.ShareDialog = window.share_dialog
        press(second_dialog.partners, Qt.Key.Key_Return)
        await until(lambda: not second_dialog.isVisible())
        await until(lambda: len(ledger_texts(view)) == 2)
        rows = await hub.store.run(lambda s: s.ledger(d.case_id))
        second = rows[1].distribution_id
        body = hubmodel.error_body(701, "dossier déjà reçu", second)
        await hub.handle(f"{ME}.info", answer(hub, "fr.health.samu380", body))
        refused = (
            "Partagé avec fr.health.samu380 — refusé : le dossier existe déjà chez le "
            "partenaire (erreur 701) — dossier déjà reçu"
        )
        await until(lambda: ledger_texts(view)[1:] == [refused])
        # and on the dossier's timeline, without reopening it
        await until(
            lambda: any(
                "Erreur 701 (le dossier existe déjà chez le partenaire)"
                in view.timeline.item(i).text()
                for i in range(view.timeline.count())
            )
        )
        ledger = view.hub_ledger
        assert isinstance(ledger, share.LedgerList)
        assert ledger.item(1).foreground().color().name() == share.ALARM_COLOUR
        assert ledger.item(0).foreground().color().name() != share.ALARM_COLOUR

        # a third share nobody acknowledges: past its expiry, the line asks to phone
        window.activateWindow()
        await until(window.isActiveWindow)
        press(window, Qt.Key.Key_P, ctrl_shift)
        await until(lambda: window.share_dialog.isVisible())
        third_dialog: share.ShareDialog = window.share_dialog
        press(third_dialog.partners, Qt.Key.Key_Return)
        await until(lambda: not third_dialog.isVisible())
        await until(lambda: len(ledger_texts(view)) == 3)
        assert ledger_texts(view)[2].endswith("non reçu par le partenaire")
        later = HubProcessor(
            hub.settings, hub.store, hub.cases, lambda: hub._now() + timedelta(hours=2)
        )
        expired = await later.check_expiry()
        assert [r.recipient for r in expired] == ["fr.health.samu380"]
        await until(
            lambda: (
                ledger_texts(view)[2:]
                == ["Partagé avec fr.health.samu380 — expiré : appelez le partenaire"]
            )
        )
        assert ledger.item(2).foreground().color().name() == share.ALARM_COLOUR
        assert ledger_texts(view)[:2] == ["Partagé avec fr.health.samu010 — reçu (RC-REF)", refused]

        # three shares, one « envoyé » banner saying the last one
        notices = [b for b in window.findChildren(Banner) if b.objectName() == "shareBanner"]
        assert len(notices) == 1
        assert "envoyé à fr.health.samu380" in notices[0].label.text()
        # the ledger is read when its dossier's lines change, not on a timer:
        # another dossier's share does not read it, this one's does
        reads = ledger.reads
        other = await hub.store.run(lambda s: s.ledger(d.case_id))
        assert len(other) == 3
        await hub.store.atomic(
            lambda s: s.enqueue(
                envelope={**json.loads(other[0].envelope), "distributionID": f"{ME}_autre"},
                model="RS-EDA",
                case_id="fr.health.samu690.AUTRE",
                ref=None,
                expires_ts=0.0,
                at="",
            )
        )
        assert ledger.reads == reads
        await hub.share_case(d.case_id, "fr.health.samu010")
        await until(lambda: ledger.reads == reads + 1 and len(ledger_texts(view)) == 4)
    finally:
        await client.stop()


async def test_an_expired_share_asks_to_phone_and_a_bad_recipient_is_refused_in_french(
    qtbot: QtBot, hub: HubProcessor
) -> None:
    row = share.Outbound(
        seq=1,
        distribution_id=f"{ME}_x",
        created_at="",
        recipient="fr.health.samu380",
        kind="Report",
        model="RS-EDA",
        case_id="c",
        ref=None,
        expires_at="",
        state="expired",
        step="",
        error="",
        alarm=True,
        attempts=1,
        envelope="",
    )
    assert share.ledger_line(row) == (
        "Partagé avec fr.health.samu380 — expiré : appelez le partenaire",
        True,
    )
    assert share.error_fr("999 WHATEVER : x") == "999 WHATEVER : x"
    with pytest.raises(ValueError, match="destinataire"):
        await hub.share_case("c", "pas-un-id")
