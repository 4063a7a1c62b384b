"""Qt list model of the slot search's offers (one row per place), with the
facets and the sort applied on what is loaded.

The model owns no I/O: the search panel hands it the offers of each
:class:`~sas_desk.models.search.SearchUpdate`.  While a search fills it, new
places are *inserted* where the sort puts them (a binary search: the rows on
screen are never re-sorted; the view keeps the operator's current card and
scroll position); a facet or sort change re-filters the offers already on
hand in one reset.
"""

from __future__ import annotations

import enum
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt, QTimer

from sas_desk.models.search import Facets, Offer
from sas_desk.models.slots import Slot

Index = QModelIndex | QPersistentModelIndex
ROW_ROLE = Qt.ItemDataRole.UserRole + 1


class SortKey(enum.Enum):
    EARLIEST = "earliest"
    DISTANCE = "distance"

    @property
    def label(self) -> str:
        return "Premier créneau" if self is SortKey.EARLIEST else "Distance"


@dataclass(frozen=True, slots=True)
class OfferRow:
    """One card: a place's offer and the slots the facets keep."""

    offer: Offer
    slots: tuple[Slot, ...]

    @property
    def key(self) -> str:
        return self.offer.key


def _sort_key(row: OfferRow, sort: SortKey) -> tuple[Any, ...]:
    sas = not row.offer.candidate.sas  # SAS participants first
    first = row.slots[0].start.timestamp() if row.slots else float("inf")
    if sort is SortKey.EARLIEST:
        return (sas, first, row.offer.distance_km, row.key)
    return (sas, row.offer.distance_km, first, row.key)


#: offers released per turn of the event loop after a clear (see ``clear``):
#: ≈ 1.5 ms for 25 places of 35 slots
RELEASE_CHUNK = 25
#: an update whose new rows go to more places than this is laid in one go
MAX_INSERT_RUNS = 4


class OfferModel(QAbstractListModel):
    def __init__(self, now: Callable[[], datetime]) -> None:
        super().__init__()
        self._now = now
        self._offers: dict[str, Offer] = {}
        self._rows: dict[str, OfferRow] = {}  # offers with at least one kept slot
        self._order: list[str] = []  # row keys, in the sort's order
        self._keys: list[tuple[Any, ...]] = []  # their sort keys (same order)
        self._sort_keys: dict[str, tuple[Any, ...]] = {}
        self._index: dict[str, int] = {}
        self._index_stale = False
        self._released: list[Any] = []  # a previous search's objects, freed a chunk at a time
        self._release_timer = QTimer(self, singleShot=True, interval=0)
        self._release_timer.timeout.connect(self._release_some)
        self.facets = Facets()
        self.sort_key = SortKey.EARLIEST
        self.slot_count = 0  # slots shown (kept by the facets)

    # ------------------------------------------------------------------ Qt API
    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._order)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._order):
            return None
        row = self._rows[self._order[index.row()]]
        if role == ROW_ROLE:
            return row
        if role == Qt.ItemDataRole.DisplayRole:
            return row.offer.candidate.name
        if role == Qt.ItemDataRole.AccessibleTextRole:
            first = row.slots[0].start.strftime("%H:%M") if row.slots else ""
            return (
                f"{row.offer.candidate.name}, {row.offer.distance_km:.1f} km, "
                f"{len(row.slots)} créneaux, premier à {first}"
            )
        return None

    # ------------------------------------------------------------------ access
    def row_at(self, i: int) -> OfferRow | None:
        return self._rows[self._order[i]] if 0 <= i < len(self._order) else None

    def row_of(self, key: str) -> int:
        if self._index_stale:
            self._index = {k: i for i, k in enumerate(self._order)}
            self._index_stale = False
        return self._index.get(key, -1)

    def row_for(self, key: str) -> OfferRow | None:
        """The card of ``key`` (``None``: not shown)."""
        return self._rows.get(key)

    def rows(self) -> list[OfferRow]:
        return [self._rows[k] for k in self._order]

    @property
    def loaded(self) -> int:
        """Places received (with or without slots kept by the facets)."""
        return len(self._offers)

    @property
    def loaded_slots(self) -> int:
        return sum(len(o.slots) for o in self._offers.values())

    def all_offers(self) -> list[Offer]:
        return list(self._offers.values())

    # ------------------------------------------------------------------ changes
    def clear(self) -> None:
        """Empty the list at once; the previous offers (tens of thousands of
        objects with a large search) are freed a chunk per turn of the event
        loop afterwards, not in one pause."""
        self.beginResetModel()
        old = self._offers
        self._offers = {}
        self._rows = {}
        self._order = []
        self._keys = []
        self._sort_keys = {}
        self._index = {}
        self._index_stale = False
        self.slot_count = 0
        self.endResetModel()
        if old:
            self._released.extend(old.values())
            del old
            self._release_timer.start()

    def _release_some(self) -> None:
        del self._released[-RELEASE_CHUNK:]
        if self._released:
            self._release_timer.start()

    @property
    def releasing(self) -> int:
        """Offers of a previous search not yet freed (tests)."""
        return len(self._released)

    def _row(self, offer: Offer, now: datetime) -> OfferRow | None:
        if self.facets == Facets():
            slots = offer.slots
        else:
            keeps = self.facets.keeps
            slots = tuple(s for s in offer.slots if keeps(s, now))
        return OfferRow(offer, slots) if slots else None

    def merge(self, offers: Iterable[Offer]) -> list[str]:
        """Take the offers of an update (new places, or places with more
        slots); returns the keys of the rows inserted.

        A new row is inserted where the sort puts it (a binary search on the
        rows' sort keys: what is on screen is not re-sorted); a row whose
        sort key changed (an earlier slot arrived) moves to its new place;
        the others are only repainted."""
        now = self._now()
        fresh: list[tuple[tuple[Any, ...], str]] = []  # new rows: (sort key, key)
        changed: list[str] = []
        keys, order = self._keys, self._order
        for offer in {o.key: o for o in offers}.values():
            self._offers[offer.key] = offer
            old = self._rows.get(offer.key)
            row = self._row(offer, now)
            if row is None:
                if old is not None:  # cannot happen while slots only accumulate
                    self._remove(offer.key)
                continue
            self._rows[offer.key] = row
            self.slot_count += len(row.slots) - (len(old.slots) if old is not None else 0)
            sort_key = _sort_key(row, self.sort_key)
            if old is None:
                fresh.append((sort_key, offer.key))
                continue
            changed.append(offer.key)
            old_key = self._sort_keys[offer.key]
            if old_key == sort_key:
                continue
            self._sort_keys[offer.key] = sort_key
            src = bisect_left(keys, old_key)
            dst = bisect_left(keys, sort_key)  # counted before the move
            if dst in (src, src + 1):  # its place does not change
                keys[src] = sort_key
                continue
            self.beginMoveRows(QModelIndex(), src, src, QModelIndex(), dst)
            del keys[src], order[src]
            at = dst if dst < src else dst - 1
            keys.insert(at, sort_key)
            order.insert(at, offer.key)
            self._index_stale = True
            self.endMoveRows()
        inserted = self._insert(sorted(fresh))
        for key in changed:
            i = self.row_of(key)
            self.dataChanged.emit(self.index(i), self.index(i))
        return inserted

    def _insert(self, fresh: list[tuple[tuple[Any, ...], str]]) -> list[str]:
        """Insert new rows (sorted by key) where the sort puts them: the rows
        falling between the same two rows on screen go in at once; past a
        few such runs, all in one layout change (each insertion costs the
        view dozens of calls back into the model)."""
        keys, order = self._keys, self._order
        runs: list[tuple[int, int, int]] = []  # (row, first, end) in fresh
        i = 0
        while i < len(fresh):
            at = bisect_left(keys, fresh[i][0])
            j = i + 1
            limit = keys[at] if at < len(keys) else None
            while j < len(fresh) and (limit is None or fresh[j][0] < limit):
                j += 1
            runs.append((at, i, j))
            i = j
        self._sort_keys.update((key, k) for k, key in fresh)
        self._index_stale = bool(fresh) or self._index_stale
        if len(runs) > MAX_INSERT_RUNS:
            self._merge_in_one_layout(fresh)
            return [key for _, key in fresh]
        shift = 0
        for at, i, j in runs:
            run = fresh[i:j]
            self.beginInsertRows(QModelIndex(), at + shift, at + shift + len(run) - 1)
            keys[at + shift : at + shift] = [k for k, _ in run]
            order[at + shift : at + shift] = [key for _, key in run]
            self.endInsertRows()
            shift += len(run)
        return [key for _, key in fresh]

    def _merge_in_one_layout(self, fresh: list[tuple[tuple[Any, ...], str]]) -> None:
        self.layoutAboutToBeChanged.emit()
        persistent = self.persistentIndexList()
        held = [self._order[p.row()] if p.isValid() else None for p in persistent]
        merged = list(zip(self._keys, self._order, strict=True))
        merged.extend(fresh)
        merged.sort()  # two sorted runs: a linear merge for Python's sort
        self._keys = [k for k, _ in merged]
        self._order = [key for _, key in merged]
        self._index_stale = True
        self.changePersistentIndexList(
            persistent,
            [self.index(self.row_of(k)) if k is not None else QModelIndex() for k in held],
        )
        self.layoutChanged.emit()

    def _remove(self, key: str) -> None:
        del self._rows[key]
        i = bisect_left(self._keys, self._sort_keys.pop(key))
        self.beginRemoveRows(QModelIndex(), i, i)
        del self._keys[i], self._order[i]
        self._index_stale = True
        self.endRemoveRows()

    def replace_offer(self, offer: Offer) -> None:
        """An offer that lost slots (one was booked): re-laid in one reset."""
        self._offers[offer.key] = offer
        self.set_view()

    def set_view(self, facets: Facets | None = None, sort: SortKey | None = None) -> None:
        """Apply facets and sort to everything loaded (one reset)."""
        if facets is not None:
            self.facets = facets
        if sort is not None:
            self.sort_key = sort
        now = self._now()
        self.beginResetModel()
        rows = {}
        for key, offer in self._offers.items():
            row = self._row(offer, now)
            if row is not None:
                rows[key] = row
        self._rows = rows
        self._sort_keys = {k: _sort_key(r, self.sort_key) for k, r in rows.items()}
        self._order = sorted(rows, key=self._sort_keys.__getitem__)
        self._keys = [self._sort_keys[k] for k in self._order]
        self._index_stale = True
        self.slot_count = sum(len(r.slots) for r in rows.values())
        self.endResetModel()
