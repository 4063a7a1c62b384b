"""Qt list model of the slot search's offers (one row per place), with the
facets and the sort applied on what is loaded.

The model owns no I/O: the search panel hands it the offers of each
:class:`~sas_desk.models.search.SearchUpdate`.  While a search fills it, new
places are *inserted* where the sort puts them (the view keeps the operator's
current card and scroll position); a facet or sort change re-filters the
offers already on hand in one reset.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt

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


def _is_subsequence(old: list[str], new: list[str]) -> bool:
    it = iter(new)
    return all(any(k == n for n in it) for k in old)


class OfferModel(QAbstractListModel):
    def __init__(self, now: Callable[[], datetime]) -> None:
        super().__init__()
        self._now = now
        self._offers: dict[str, Offer] = {}
        self._rows: dict[str, OfferRow] = {}  # offers with at least one kept slot
        self._order: list[str] = []
        self._index: dict[str, int] = {}
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
        return self._index.get(key, -1)

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
        self.beginResetModel()
        self._offers.clear()
        self._rows.clear()
        self._order = []
        self._index = {}
        self.slot_count = 0
        self.endResetModel()

    def _row(self, offer: Offer, now: datetime) -> OfferRow | None:
        if self.facets == Facets():
            slots = offer.slots
        else:
            keeps = self.facets.keeps
            slots = tuple(s for s in offer.slots if keeps(s, now))
        return OfferRow(offer, slots) if slots else None

    def merge(self, offers: Iterable[Offer]) -> list[str]:
        """Take the offers of an update (new places, or places with more
        slots); returns the keys of the rows inserted."""
        now = self._now()
        changed: list[str] = []
        for offer in offers:
            self._offers[offer.key] = offer
            old = self._rows.get(offer.key)
            row = self._row(offer, now)
            if row is None:
                if old is not None:  # cannot happen while slots only accumulate
                    del self._rows[offer.key]
                continue
            self._rows[offer.key] = row
            self.slot_count += len(row.slots) - (len(old.slots) if old is not None else 0)
            changed.append(offer.key)
        if not changed:
            return []
        new_order = sorted(self._rows, key=lambda k: _sort_key(self._rows[k], self.sort_key))
        old_order = self._order
        if len(new_order) >= len(old_order) and _is_subsequence(old_order, new_order):
            inserted = self._insert_runs(old_order, new_order)
        else:  # a place moved (an earlier slot arrived): re-lay the list
            self.layoutAboutToBeChanged.emit()
            persistent = self.persistentIndexList()
            keys = [self._order[p.row()] if p.isValid() else None for p in persistent]
            self._set_order(new_order)
            self.changePersistentIndexList(
                persistent,
                [
                    self.index(self._index[k])
                    if k is not None and k in self._index
                    else QModelIndex()
                    for k in keys
                ],
            )
            self.layoutChanged.emit()
            inserted = [k for k in new_order if k not in set(old_order)]
        fresh = set(inserted)
        for key in changed:
            if key not in fresh:
                i = self._index[key]
                self.dataChanged.emit(self.index(i), self.index(i))
        return inserted

    def _insert_runs(self, old_order: list[str], new_order: list[str]) -> list[str]:
        """Insert the new keys, consecutive runs at once, keeping the old rows."""
        present = set(old_order)
        inserted: list[str] = []
        current = list(old_order)
        i = 0
        while i < len(new_order):
            if new_order[i] in present:
                i += 1
                continue
            j = i
            while j < len(new_order) and new_order[j] not in present:
                j += 1
            self.beginInsertRows(QModelIndex(), i, j - 1)
            current[i:i] = new_order[i:j]
            self._order = current
            self.endInsertRows()
            inserted.extend(new_order[i:j])
            i = j
        self._set_order(new_order)
        return inserted

    def _set_order(self, order: list[str]) -> None:
        self._order = order
        self._index = {k: i for i, k in enumerate(order)}

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
        self._set_order(sorted(rows, key=lambda k: _sort_key(rows[k], self.sort_key)))
        self.slot_count = sum(len(r.slots) for r in rows.values())
        self.endResetModel()
