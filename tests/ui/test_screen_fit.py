"""Every screen fits a 1366×768 laptop (issue 14 §15): the main window's
minimum size, with what each role works in open, is within it."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from sas_desk.models.dossier import Actor, Branch, Dossier, transmit
from sas_desk.services.queues.client import Outbox, QueueClient
from sas_desk.services.queues.sqlite import SqliteBackend
from sas_desk.ui.main_window import MainWindow
from tests.ui.conftest import Env, open_window, until

pytestmark = [pytest.mark.gui, pytest.mark.asyncio(loop_scope="session")]

SCREEN = (1366, 768)


def fits(window: MainWindow) -> tuple[int, int]:
    """The window's minimum size once laid out with what is on screen, and
    its status bar's (text off screen there is text nobody reads)."""
    window.layout().activate()
    hint = window.minimumSizeHint()
    return hint.width(), hint.height()


def sample(env: Env, branch: Branch) -> Dossier:
    d = env.desk.new_call()
    d.caller.callback = "0612345678"
    d.location.insee, d.location.city = "69266", "Villeurbanne"
    d.location.lat, d.location.lon = 45.7719, 4.8902
    d.motive_code, d.patient.age, d.patient.sex = "M03.14", "P4Y", "F"
    d.priority, d.branch = "P2", branch
    if branch is Branch.DENT:
        d.dental_reason = "DENT.DOULEUR"
    transmit(d, env.desk._now(), env.desk.actor)
    return d


@pytest.mark.parametrize("role", ["ARM", "OSNP", "MRL", "DENT", "SUP"])
async def test_each_roles_screen_fits_1366_by_768(
    qtbot: QtBot, env: Env, tmp_path: Path, role: str
) -> None:
    client = QueueClient(
        SqliteBackend(tmp_path / "queues.sqlite", now=env.desk._now, poll_interval=0.02),
        Outbox(tmp_path / "outbox.sqlite"),
        Actor(role, "op.test", "POSTE-TEST"),
        now=env.desk._now,
    )
    await client.start()
    try:
        branch = {"DENT": Branch.DENT, "MRL": Branch.SNP, "SUP": Branch.AMU}.get(role, Branch.SNP)
        case = sample(env, branch)
        await client.enqueue(case)
        window = await open_window(qtbot, env, role=role, queue_client=client)
        window.save_label.setText("Journal : enregistré à 23:59:59")
        if role in ("MRL", "DENT", "SUP"):  # a dossier open beside the queues
            await client.submit(client.operation("claim", case.case_id, lease_s=600))
            window.open_dossier_view(case.case_id)
            await until(lambda: window._dossier_view(case.case_id) is not None)
        if role == "MRL":
            window.open_slot_search()
        width, height = fits(window)
        assert width <= SCREEN[0] and height <= SCREEN[1], (width, height)
    finally:
        await client.stop()


async def test_beside_an_open_dossier_the_queue_shows_every_column_and_the_reason_field_is_usable(
    qtbot: QtBot, env: Env, tmp_path: Path
) -> None:
    """Issue 14 §13: « Âge / sexe » and « Pris par » scrolled out of view when
    a dossier was open; the transfer reason field was ~4 characters wide."""
    client = QueueClient(
        SqliteBackend(tmp_path / "queues.sqlite", now=env.desk._now, poll_interval=0.02),
        Outbox(tmp_path / "outbox.sqlite"),
        Actor("MRL", "dr.martin-dupontel", "POSTE-MRL-07"),
        now=env.desk._now,
    )
    await client.start()
    try:
        case = sample(env, Branch.SNP)
        await client.enqueue(case)
        window = await open_window(qtbot, env, role="MRL", queue_client=client)
        window.resize(*SCREEN)
        panel = window.queue_panel
        assert panel is not None
        await until(lambda: panel.model.item(case.case_id) is not None)
        panel.setFocus()
        qtbot.keyClick(panel.current_view(), Qt.Key.Key_Return)  # claim: the dossier opens
        await until(lambda: window._dossier_view(case.case_id) is not None)
        view = window._dossier_view(case.case_id)
        await until(
            lambda: (i := panel.model.item(case.case_id)) is not None and i.claim is not None
        )
        table = panel.current_view()
        assert table is not None
        window.layout().activate()
        qtbot.waitUntil(lambda: table.horizontalScrollBar().maximum() == 0, timeout=2000)
        header = table.horizontalHeader()
        last = header.sectionViewportPosition(5) + header.sectionSize(5)
        assert last <= table.viewport().width()  # « Pris par » in view
        assert header.sectionSize(4) >= table.fontMetrics().horizontalAdvance("4 ans F")
        # the ARM's sheet beside the timeline: no sideways scrolling either
        assert view._scroll.horizontalScrollBar().maximum() == 0
        panel.select(case.case_id)
        qtbot.keyClick(panel.current_view(), Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier)
        assert panel.transfer_reason.isVisible() and panel.transfer_reason.hasFocus()
        width = panel.transfer_reason.width()
        assert width >= panel.transfer_reason.fontMetrics().horizontalAdvance("x" * 25), width
    finally:
        await client.stop()


async def test_a_call_sheet_with_everything_shown_and_banners_above_still_fits(
    qtbot: QtBot, env: Env
) -> None:
    """A dental sheet with its advice, the confirmation bar and two banners
    above made the window 805 px tall on a 768-px screen (the room mode's
    screenshots): the sheet scrolls inside its tab instead."""
    window = await open_window(qtbot, env, role="ARM")
    sheet = window.new_call()
    assert sheet is not None
    sheet.confirm_bar.show()
    for i in range(3):
        window.banner(
            f"Avis n° {i + 1} : une ligne assez longue pour être lue en entier.", "warning"
        )
    width, height = fits(window)
    assert width <= SCREEN[0] and height <= SCREEN[1], (width, height)
    # however much the sheet holds, it asks its tab for a few lines only, and scrolls
    assert sheet.minimumSizeHint().height() <= 150, sheet.minimumSizeHint()
    assert sheet.sheet_scroll.widget().minimumSizeHint().height() > 300  # (it holds that much)
