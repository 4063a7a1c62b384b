"""The cards' model: rows inserted where the sort puts them, never a full
re-sort, and always the order a full sort would give."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PySide6.QtCore import QPersistentModelIndex
from PySide6.QtTest import QAbstractItemModelTester
from pytestqt.qtbot import QtBot

from sas_desk.models.search import Candidate, CandidateKind, Facets, Offer
from sas_desk.models.slots import Schedule, Slot
from sas_desk.ui.offer_model import OfferModel, SortKey, _sort_key

pytestmark = pytest.mark.gui

NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
SCHEDULE = Schedule("sch")


def offer(place: int, minutes: list[int], *, sas: bool, km: float) -> Offer:
    slots = tuple(
        Slot(f"s{place}-{m}", "Schedule/sch", SCHEDULE, NOW + timedelta(minutes=m),
             NOW + timedelta(minutes=m + 15))
        for m in sorted(set(minutes))
    )  # fmt: skip
    who = Candidate(CandidateKind.PRACTITIONER, f"8{place:011d}", f"Dr {place}", "v", km, 45, 4)
    return Offer(f"v|{place}", replace_sas(who, sas), slots, km, 45.0, 4.0, "")


def replace_sas(c: Candidate, sas: bool) -> Candidate:
    from dataclasses import replace

    return replace(c, sas=sas)


# an update: some places (0–29), each with its slots so far (minutes from now)
updates = st.lists(
    st.lists(
        st.tuples(
            st.integers(0, 29),
            st.lists(st.integers(0, 600), min_size=1, max_size=4),
        ),
        max_size=8,
    ),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    updates=updates,
    accumulate=st.booleans(),
    sort=st.sampled_from(list(SortKey)),
    sas=st.sets(st.integers(0, 29)),
)
def test_inserted_and_moved_rows_keep_the_order_of_a_full_sort(
    qtbot: QtBot,
    updates: list[list[tuple[int, list[int]]]],
    accumulate: bool,
    sort: SortKey,
    sas: set[int],
) -> None:
    model = OfferModel(lambda: NOW)
    model.set_view(sort=sort)
    tester = QAbstractItemModelTester(model)  # fails on inconsistent signals
    seen: dict[int, list[int]] = {}
    for update in updates:
        offers = {}
        for place, minutes in update:
            # a later update carries the place's slots so far (they accumulate);
            # or not (a slot taken elsewhere): rows then move down too
            old = set(seen.get(place, [])) if accumulate else set()
            seen[place] = sorted(old | set(minutes))
            offers[place] = offer(place, seen[place], sas=place in sas, km=(place * 7) % 13 + 0.5)
        current = model.index(0) if model.rowCount() else None
        kept = QPersistentModelIndex(current) if current is not None else None
        key_before = model.row_at(0).key if current is not None else ""  # type: ignore[union-attr]
        inserted = model.merge(offers.values())
        rows = model.rows()
        assert [r.key for r in rows] == sorted(
            (r.key for r in rows),
            key=lambda k: _sort_key(model.row_for(k), sort),  # type: ignore[arg-type]
        )
        assert {r.key for r in rows} == {f"v|{p}" for p in seen}
        assert set(inserted) <= {f"v|{p}" for p in offers}
        assert model.slot_count == sum(len(m) for m in seen.values())
        for i, r in enumerate(rows):
            assert model.row_of(r.key) == i
        if kept is not None:  # the operator's card follows its row
            assert kept.isValid() and model.row_at(kept.row()).key == key_before  # type: ignore[union-attr]
    # the same offers in one reset give the same order
    incremental = [r.key for r in model.rows()]
    model.set_view(Facets(), sort)
    assert [r.key for r in model.rows()] == incremental
    del tester


def test_clear_empties_at_once_and_frees_the_old_offers_in_chunks(qtbot: QtBot) -> None:
    model = OfferModel(lambda: NOW)
    model.merge(offer(p, [p], sas=False, km=1.0) for p in range(450))
    assert model.rowCount() == 450
    model.clear()
    assert model.rowCount() == 0 and model.slot_count == 0 and model.loaded == 0
    assert model.releasing == 450  # not freed in the clear itself
    qtbot.waitUntil(lambda: model.releasing == 0, timeout=5000)


@pytest.mark.parametrize("fresh", [3, 12], ids=["insertions", "one-layout"])
def test_new_rows_between_the_old_ones_keep_the_current_card(qtbot: QtBot, fresh: int) -> None:
    """A few new rows go in by insertions, many scattered ones in one layout
    change: either way the operator's card (a persistent index) follows its row."""
    model = OfferModel(lambda: NOW)
    tester = QAbstractItemModelTester(model)
    model.merge(offer(p, [10 * p], sas=False, km=1.0) for p in range(0, 40, 2))
    current = QPersistentModelIndex(model.index(7))
    key = model.row_at(7).key  # type: ignore[union-attr]
    layouts: list[int] = []
    model.layoutChanged.connect(lambda *_: layouts.append(1))
    inserted = model.merge(offer(p, [10 * p], sas=False, km=1.0) for p in range(1, 2 * fresh, 2))
    assert len(inserted) == fresh
    assert [r.key for r in model.rows()] == [
        f"v|{p}" for p in sorted([*range(0, 40, 2), *range(1, 2 * fresh, 2)])
    ]
    assert layouts == ([1] if fresh > 4 else [])
    assert current.isValid() and model.row_at(current.row()).key == key  # type: ignore[union-attr]
    del tester
