"""The slot search panel repaints only what changed: status and vendor labels
of fixed size reused search after search (no layout climbing to the tab
widgets), no synchronous repaint inside an update, cards drawn from a cache."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QModelIndex, QObject
from PySide6.QtWidgets import QTabWidget
from pytestqt.qtbot import QtBot

from sas_desk.models.search import (
    Candidate,
    CandidateKind,
    Offer,
    SearchQuery,
    SearchUpdate,
    VendorState,
    VendorStatus,
)
from sas_desk.models.slots import Schedule, Slot
from sas_desk.services.geo.resolver import Place
from sas_desk.ui.offer_model import ROW_ROLE, OfferModel
from sas_desk.ui.slot_search import SlotSearchPanel
from tests.ui.conftest import Env, until

pytestmark = [pytest.mark.gui, pytest.mark.asyncio(loop_scope="session")]

NOW = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
VENDORS = ("Alpha", "Bêta", "Gamma")


def offer(n: int) -> Offer:
    start = NOW + timedelta(minutes=15 * (n % 40))
    slots = tuple(
        Slot(f"s{n}-{i}", "Schedule/s", Schedule("s"), start + timedelta(hours=i),
             start + timedelta(hours=i, minutes=15))
        for i in range(3)
    )  # fmt: skip
    who = Candidate(
        CandidateKind.PRACTITIONER, f"8{n:011d}", f"Dr N{n}", VENDORS[n % 3], 2.0, 45, 4
    )
    return Offer(f"{who.vendor}|{n}", who, slots, 1.0 + n / 10, 45.76, 4.83, f"{n} rue X")


def update(step: int, steps: int) -> SearchUpdate:
    vendors = {
        v: VendorStatus(
            v,
            VendorState.OK if step == steps - 1 else VendorState.WAITING,
            steps,
            step + 1,
            10 * step,
        )
        for v in VENDORS
    }
    offers = tuple(offer(n) for n in range(10 * step, 10 * step + 10))
    return SearchUpdate(offers, vendors, 300, done=step == steps - 1, elapsed_s=0.1 * step)


class Updates:
    """A source whose searches give ``steps`` updates, one per turn of the loop."""

    def __init__(self, steps: int = 6) -> None:
        self.steps = steps

    async def search(self, query: SearchQuery) -> AsyncIterator[SearchUpdate]:
        for step in range(self.steps):
            await asyncio.sleep(0)
            yield update(step, self.steps)


class Events(QObject):
    def __init__(self, kind: QEvent.Type) -> None:
        super().__init__()
        self.kind = kind
        self.seen: list[str] = []

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == self.kind:
            self.seen.append(watched.objectName() or type(watched).__name__)
        return False


@pytest.fixture
def panel(qtbot: QtBot, env: Env) -> Iterator[SlotSearchPanel]:
    tabs = QTabWidget()  # as in the main window: the panel is a tab's page
    tabs.setObjectName("sheets")
    panel = SlotSearchPanel(env.resolver, now=lambda: datetime.now(UTC), show_map=False)
    tabs.addTab(panel, "Créneaux")
    qtbot.addWidget(tabs)
    tabs.resize(1200, 700)
    tabs.show()
    qtbot.waitExposed(tabs)
    panel.set_source(Updates())
    panel.set_place(Place("Lyon (69001)", "municipality", "Lyon", "69123", "69001", 45.76, 4.83))
    yield panel  # (the tab widget, which holds the panel, lives until here)
    tabs.close()


async def test_vendor_labels_are_reused_from_one_search_to_the_next(
    panel: SlotSearchPanel,
) -> None:
    task = panel.start_search()
    assert task is not None
    await until(lambda: panel.last_update is not None and panel.last_update.done)
    labels = dict(panel.vendor_labels)
    assert sorted(labels) == sorted(VENDORS)
    assert all("a répondu" in label.text() for label in labels.values())
    task = panel.start_search()  # the next search: the same labels, back to waiting
    assert task is not None
    assert panel.vendor_labels == labels
    assert all(label.parent() is panel.vendor_row for label in labels.values())
    assert all("a répondu" not in label.text() for label in labels.values())
    await until(lambda: panel.last_update is not None and panel.last_update.done)
    assert all(panel.vendor_labels[v] is labels[v] for v in VENDORS)
    assert panel.vendor_row.labels == list(labels.values())  # none added, none deleted
    assert panel.model.rowCount() == 60


async def test_an_update_asks_no_layout_of_the_tabs_and_paints_nothing_at_once(
    panel: SlotSearchPanel, qtbot: QtBot
) -> None:
    panel._reset_results()
    panel.running = True
    panel._apply(update(0, 6))  # first update: the vendors' labels are created
    assert len(panel.vendor_row.labels) == 3
    for _ in range(3):  # the labels' first layout, done before measuring
        QCoreApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)
    layouts = Events(QEvent.Type.LayoutRequest)
    paints = Events(QEvent.Type.Paint)
    tabs = panel.parentWidget()
    while tabs is not None and tabs.objectName() != "sheets":
        tabs = tabs.parentWidget()
    assert tabs is not None
    for widget in (tabs, panel, panel.summary_strip, panel.vendor_row):
        widget.installEventFilter(layouts)
    for widget in (panel.progress, panel.list.viewport(), panel.summary):
        widget.installEventFilter(paints)
    painted = []
    for step in range(1, 5):
        panel._apply(update(step, 6))
        painted.append(list(paints.seen))  # during the update itself: nothing painted
    assert painted == [[], [], [], []]
    assert "terminé" not in panel.summary.text() and "50 lieux" in panel.summary.text()
    await until(lambda: bool(paints.seen))  # painted later, by the event loop
    assert layouts.seen == []  # status and vendors changed: no layout asked above them


async def test_cards_unchanged_are_copied_not_laid_out_again(
    panel: SlotSearchPanel, qtbot: QtBot
) -> None:
    panel._reset_results()
    panel._apply(update(0, 6))
    panel.list.viewport().repaint()
    first = panel.delegate.painted
    assert first > 0
    panel.list.viewport().repaint()  # nothing changed
    assert panel.delegate.painted == first
    panel._apply(update(1, 6))  # ten more places, inserted where the sort puts them
    panel.list.viewport().repaint()
    assert panel.delegate.painted <= first + 10
    panel.list.setCurrentIndex(panel.rows.index(1, 0))  # the selection changes two cards
    before = panel.delegate.painted
    panel.list.viewport().repaint()
    assert panel.delegate.painted == before + 2


@pytest.mark.qt_log_ignore("QObject::disconnect: Unexpected nullptr parameter")
async def test_map_markers_are_added_not_rebuilt(qtbot: QtBot) -> None:
    from sas_desk.ui.offer_model import OfferRow
    from sas_desk.ui.slot_map import SlotMap, group_points

    slot_map = SlotMap()
    qtbot.addWidget(slot_map)
    resets: list[int] = []
    inserted: list[int] = []
    changed: list[int] = []
    slot_map.markers.modelReset.connect(lambda: resets.append(1))
    slot_map.markers.rowsInserted.connect(lambda _p, a, b: inserted.append(b - a + 1))
    slot_map.markers.dataChanged.connect(lambda a, b, _r=(): changed.append(a.row()))
    rows = [OfferRow(o, o.slots) for o in (offer(n) for n in range(60))]
    # places spread over a few kilometres: some share a marker at zoom 12
    rows = [
        OfferRow(replace(r.offer, lat=45.70 + (n % 9) * 0.004, lon=4.80 + (n // 9) * 0.01), r.slots)
        for n, r in enumerate(rows)
    ]
    slot_map.set_offers(rows[:20])
    slot_map._regroup()
    assert len(resets) == 1  # a new list: grouped from the start
    slot_map.set_selected(rows[25].key)
    for batch in (rows[20:40], rows[40:]):
        slot_map.add_offers(batch)
        slot_map._regroup()
    assert len(resets) == 1  # then only added to
    assert sum(inserted) > 0  # new markers added after the others
    points = [(r.key, r.offer.lat, r.offer.lon, r.offer.candidate.sas) for r in rows]
    whole = group_points(points, slot_map._zoom)  # type: ignore[arg-type]
    got = slot_map.markers.groups
    assert [(g.keys, round(g.lat, 9), round(g.lon, 9), g.sas) for g in got] == [
        (g.keys, round(g.lat, 9), round(g.lon, 9), g.sas) for g in whole
    ]
    assert slot_map.markers.rowCount() == len(whole) > 1
    assert changed  # a later place joined an older marker: updated in place
    assert [g.selected for g in got].count(True) == 1
    assert rows[25].key in next(g for g in got if g.selected).keys


class Held:
    """A source whose search stays open until ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def search(self, query: SearchQuery) -> AsyncIterator[SearchUpdate]:
        yield update(0, 2)
        await self.release.wait()
        yield update(1, 2)


@pytest.mark.qt_log_ignore("QObject::disconnect: Unexpected nullptr parameter")
async def test_the_window_says_when_a_search_fills_the_screen(qtbot: QtBot, env: Env) -> None:
    """What the idle collector asks before a full collection (app.py wires
    ``busy=window.searching``)."""
    from tests.ui.conftest import open_window

    window = await open_window(qtbot, env, role="OSNP")
    panel = window.slot_panel
    assert panel is not None and not window.searching()
    source = Held()
    panel.set_source(source)
    panel.set_place(Place("Lyon (69001)", "municipality", "Lyon", "69123", "69001", 45.76, 4.83))
    task = panel.start_search()
    assert task is not None
    await until(lambda: panel.updates >= 1)
    assert window.searching()
    source.release.set()
    await task
    assert not window.searching()


async def test_with_many_places_listed_updates_are_applied_less_often(
    panel: SlotSearchPanel, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sas_desk.ui.slot_search as ui

    clock = [1000.0]
    monkeypatch.setattr(ui.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(ui, "LARGE_ROWS", 20)
    panel._queue(update(0, 9))  # the first goes at once
    clock[0] += ui.FLUSH_S + 0.01
    panel._queue(update(1, 9))  # few places: the next, one FLUSH_S later
    assert panel.updates == 2 and panel.model.rowCount() == 20
    clock[0] += ui.FLUSH_S + 0.01
    panel._queue(update(2, 9))  # 20 places listed: held until FLUSH_LARGE_S
    assert panel.updates == 2 and panel._flush_timer.isActive()
    clock[0] += ui.FLUSH_LARGE_S
    panel._queue(update(3, 9))  # both go together
    assert panel.updates == 3 and panel.model.rowCount() == 40
    panel._queue(update(8, 9))  # the last never waits
    assert panel.updates == 4 and panel.last_update is not None and panel.last_update.done


async def test_the_list_shows_the_models_rows_through_a_proxy_that_answers_the_layout(
    qtbot: QtBot, env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = [0]
    counted = OfferModel.rowCount

    def counting(self: OfferModel, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        calls[0] += 1
        return counted(self, parent)

    monkeypatch.setattr(OfferModel, "rowCount", counting)  # before the panel builds its model
    panel = SlotSearchPanel(env.resolver, now=lambda: datetime.now(UTC), show_map=False)
    qtbot.addWidget(panel)
    panel.resize(1000, 700)
    panel.show()
    qtbot.waitExposed(panel)
    for step in range(30):  # 300 places, in the order the sort gives
        panel._apply(replace(update(step, 31), done=False))
    panel.list.doItemsLayout()
    calls[0] = 0
    panel._apply(replace(update(30, 31), done=False))  # ten more, here and there
    panel.list.doItemsLayout()  # the layout the view would do at the next turn
    panel.list.viewport().repaint()
    assert panel.model.rowCount() == 310
    # the list's row i is the model's row i (the proxy neither sorts nor filters)
    shown = [panel.rows.index(i, 0).data(ROW_ROLE) for i in range(panel.rows.rowCount())]
    assert [r.offer.key for r in shown] == [r.offer.key for r in panel.model.rows()]
    # the layout's questions answered in C++: about one call into Python per
    # row (the proxy's mapping) where the view alone made three (942 here)
    assert 0 < calls[0] < 1.5 * panel.model.rowCount(), calls[0]
