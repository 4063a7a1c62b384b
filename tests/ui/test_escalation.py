"""Issue 14, late-call escalation: a P0/P1 nobody took past its waiting
limit raises a banner and a sound on every workstation of its queue and on
the supervisor's, until it is claimed; the sound can be muted on one
workstation (kept in its settings).  And the ARM's queue shows the number to
call back and why the dossier came back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from PySide6.QtCore import QPoint, QSettings, Qt
from PySide6.QtWidgets import QPushButton
from pytestqt.qtbot import QtBot

from sas_desk.models.dossier import Actor, Branch
from sas_desk.models.queue import QueueName, WaitLimits, escalated, queues_for_role
from sas_desk.services.queues.client import Outbox, QueueClient
from sas_desk.services.queues.sqlite import SqliteBackend
from sas_desk.ui.escalation import EscalationBar
from sas_desk.ui.keys import press, type_text
from sas_desk.ui.queue_panel import QueuePanel
from tests.ui.conftest import Env, open_window, until
from tests.ui.test_queue_panel import Clock, dossier, rows

pytestmark = [pytest.mark.gui, pytest.mark.asyncio(loop_scope="session")]
LIMITS = WaitLimits()


@dataclass
class Post:
    name: str
    client: QueueClient
    panel: QueuePanel
    bar: EscalationBar
    rings: list[int] = field(default_factory=list)


@pytest_asyncio.fixture(loop_scope="session")
async def room(tmp_path: Path, qtbot: QtBot) -> AsyncIterator[tuple[Clock, dict[str, Post]]]:
    clock = Clock()
    posts: dict[str, Post] = {}
    for name, role in (
        ("POSTE-MRL-1", "MRL"),
        ("POSTE-MRL-2", "MRL"),
        ("POSTE-SUP", "SUP"),
        ("POSTE-ARM", "ARM"),
    ):
        client = QueueClient(
            SqliteBackend(tmp_path / "queues.sqlite", now=clock, poll_interval=0.02),
            Outbox(tmp_path / f"outbox-{name}.sqlite"),
            Actor(role, name.lower(), name),
            now=clock,
            retry_delay=0.05,
            renew_s=3600,
        )
        await client.start()
        panel = QueuePanel(client, queues_for_role(role), LIMITS, clock, supervisor=role == "SUP")
        settings = QSettings(str(tmp_path / f"{name}.ini"), QSettings.Format.IniFormat)
        rings: list[int] = []
        bar = EscalationBar(
            panel.model.items, LIMITS, clock, settings=settings, ring=lambda r=rings: r.append(1)
        )
        qtbot.addWidget(panel)
        qtbot.addWidget(bar)
        panel.show()
        panel.start()
        posts[name] = Post(name, client, panel, bar, rings)
    yield clock, posts
    for p in posts.values():
        p.panel.stop()
        await p.client.stop()


async def test_a_late_p1_rings_everywhere_until_claimed_and_mute_is_per_workstation(
    room: tuple[Clock, dict[str, Post]], qtbot: QtBot, tmp_path: Path
) -> None:
    clock, posts = room
    mrl1, mrl2, sup = posts["POSTE-MRL-1"], posts["POSTE-MRL-2"], posts["POSTE-SUP"]
    p1 = dossier(1, clock, Branch.SNP, "P1")
    p2 = dossier(2, clock, Branch.SNP, "P2")
    await mrl1.client.enqueue(p1)
    await mrl1.client.enqueue(p2)
    for post in (mrl1, mrl2, sup):
        await until(lambda p=post: len(p.panel.model.items()) == 2, timeout=10)
        post.bar.check()
        assert post.bar.isHidden() and post.rings == []  # within its limit: nothing
    clock.t += timedelta(seconds=LIMITS.P1 + 1)  # the P1 is now late (the P2 is not)
    for post in (mrl1, mrl2, sup):
        await until(lambda p=post: not p.bar.isHidden(), timeout=5)
        assert [i.case_id for i in post.bar.current] == [p1.case_id]
        assert "P1 non pris depuis 05:01" in post.bar.label.text()
        assert post.rings == [1]  # rang at once
    # the ARM's workstation does not follow the SNP queue: no banner there
    posts["POSTE-ARM"].bar.check()
    assert posts["POSTE-ARM"].bar.isHidden()
    # MRL-2 mutes its sound (its setting), the banner stays
    qtbot.mouseClick(mrl2.bar.mute, Qt.MouseButton.LeftButton)
    assert mrl2.bar.muted() and mrl2.bar.mute.text() == "Son coupé — réactiver"
    assert not mrl1.bar.muted()  # another workstation's setting is its own
    # a P0 arrives and is late at once: rings where not muted
    p0 = dossier(3, clock, Branch.SNP, "P0")
    await mrl1.client.enqueue(p0)
    clock.t += timedelta(seconds=LIMITS.P0 + 1)
    for post in (mrl1, sup):
        await until(lambda p=post: len(p.bar.current) == 2 and len(p.rings) == 2, timeout=10)
        assert "P0 non pris" in post.bar.label.text() and "1 autre(s)" in post.bar.label.text()
    await until(lambda: len(mrl2.bar.current) == 2, timeout=10)
    assert mrl2.rings == [1] and not mrl2.bar.isHidden()  # muted: no sound, still the banner
    # the regulators take them with F2 (the head of their queues: the P0, then the P1)
    mrl1.panel.activateWindow()
    await until(mrl1.panel.isActiveWindow)
    press(mrl1.panel.views[QueueName.SNP], Qt.Key.Key_F2)
    await until(lambda: [i.case_id for i in sup.bar.current] == [p1.case_id], timeout=10)
    mrl2.panel.activateWindow()
    await until(mrl2.panel.isActiveWindow)
    press(mrl2.panel.views[QueueName.SNP], Qt.Key.Key_F2)
    for post in (mrl1, mrl2, sup):
        await until(lambda p=post: p.bar.isHidden(), timeout=10)
    assert escalated(sup.panel.model.items(), clock(), LIMITS) == []
    # the mute survives a restart of that workstation
    again = EscalationBar(
        lambda: [],
        LIMITS,
        clock,
        settings=QSettings(str(tmp_path / "POSTE-MRL-2.ini"), QSettings.Format.IniFormat),
    )
    qtbot.addWidget(again)
    assert again.muted() and again.mute.isChecked()


async def test_the_arm_queue_shows_the_number_to_call_back_and_why(
    room: tuple[Clock, dict[str, Post]], qtbot: QtBot
) -> None:
    clock, posts = room
    mrl, arm = posts["POSTE-MRL-1"], posts["POSTE-ARM"]
    case = dossier(4, clock, Branch.SNP, "P2")
    await mrl.client.enqueue(case)
    await until(lambda: mrl.panel.model.item(case.case_id) is not None, timeout=10)
    mrl.panel.activateWindow()
    await until(mrl.panel.isActiveWindow)
    view = mrl.panel.views[QueueName.SNP]
    press(view, Qt.Key.Key_F2)  # the MRL takes it
    await until(lambda: "Prendre : fait" in mrl.panel.message.text(), timeout=10)
    mrl.panel.select(case.case_id)
    press(view, Qt.Key.Key_H, Qt.KeyboardModifier.ControlModifier)  # Ctrl+H: back to the ARM
    assert mrl.panel.hand_back_bar.isVisible()
    type_text(mrl.panel.hand_back_reason, "Rappeler : patient injoignable")
    press(mrl.panel.hand_back_reason, Qt.Key.Key_Return)
    await until(lambda: arm.panel.model.item(case.case_id) is not None, timeout=10)
    await until(lambda: "☎" in rows(arm.panel, QueueName.ARM)[0][2], timeout=10)
    motive = rows(arm.panel, QueueName.ARM)[0][2]
    assert "☎ 06 12 34 56 78" in motive
    assert "retour : Rappeler : patient injoignable" in motive
    assert "Fièvre" in motive  # the motive is still there


async def test_the_window_shows_the_banner_above_everything(
    room: tuple[Clock, dict[str, Post]], env: Env, qtbot: QtBot
) -> None:
    """The main window of a regulator: the banner sits above the work area,
    whatever is open, and says how to take the call."""
    clock, posts = room
    clock.t -= timedelta(minutes=10)  # enqueued ten minutes ago (the window reads real time)
    late = dossier(5, clock, Branch.SNP, "P0")
    await posts["POSTE-MRL-1"].client.enqueue(late)
    window = await open_window(qtbot, env, role="MRL", queue_client=posts["POSTE-MRL-2"].client)
    bar = window.escalation
    assert bar is not None
    await until(lambda: not bar.isHidden(), timeout=10)
    assert (
        "P0 non pris depuis" in bar.label.text() and "F2 : prendre le suivant" in bar.label.text()
    )
    top = bar.mapTo(window, QPoint(0, 0)).y()
    assert top < window.tabs.mapTo(window, QPoint(0, 0)).y()
    assert bar.findChildren(QPushButton) == [bar.mute]  # no close button: it stays until taken
