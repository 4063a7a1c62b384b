"""One clock (issue 14 §18): the window stamps and shows every time in the
room's zone (``[organisation] timezone``), not the machine's."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pytestqt.qtbot import QtBot

from sas_desk.models.queue import Claim
from sas_desk.services import clock
from sas_desk.ui.keys import type_text
from tests.ui.conftest import Env, open_window

pytestmark = [pytest.mark.gui, pytest.mark.asyncio(loop_scope="session")]

CAYENNE = ZoneInfo("America/Cayenne")  # UTC−3 all year: never the machine's by chance


@pytest.fixture
def cayenne() -> Iterator[None]:
    before, zone = os.environ.get("TZ"), clock.zone()
    clock.use_zone("America/Cayenne")
    yield
    clock.use_zone(before)
    clock._zone = zone  # exactly as it was


async def test_calls_are_stamped_and_shown_in_the_rooms_zone(
    qtbot: QtBot, env: Env, cayenne: None
) -> None:
    env.desk._now = clock.now
    window = await open_window(qtbot, env, role="ARM")
    sheet = window.current_sheet()
    assert sheet is not None
    type_text(sheet.callback, "06")
    received = sheet.dossier.received_at
    assert received is not None and received.utcoffset() == timedelta(hours=-3)
    assert abs(received - datetime.now(CAYENNE)) < timedelta(seconds=5)
    assert f"reçu à {received:%H:%M:%S}" in sheet.title.text()
    assert window.day_model.index(0, 0).data() == f"{received:%H:%M:%S}"


async def test_times_kept_in_utc_elsewhere_are_shown_in_the_rooms_zone(cayenne: None) -> None:
    """A server keeping UTC: its 12:00 is 09:00 in Cayenne (the queue's tooltip)."""
    at = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    claim = Claim("POSTE-MRL-07", "dr.martin", "MRL", at, at + timedelta(minutes=5))
    assert claim.describe().endswith("depuis 09:00:00")
    assert clock.now().utcoffset() == timedelta(hours=-3)
