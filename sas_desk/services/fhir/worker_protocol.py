"""The messages between SAS Desk and its search worker (a child process that
runs :class:`~sas_desk.services.fhir.search.SlotSearch`), and their framing.

Frames on the pipe: a 4-byte big-endian length, then one msgspec JSON
message (JSON keeps each datetime's UTC offset, as the vendors wrote it).

    app -> worker   Open(settings) | Search(id, query, now) | Cancel(id)
    worker -> app   Ready(ok, note) | Update(id, ...) | Ended(id) | Failed(id, message)
                    | Alive() | Refused(message)

An :class:`Update` is one :class:`~sas_desk.models.search.SearchUpdate`: the
offers that changed in that step.  The models are encoded generically from
their fields (whatever their kind: dataclass, named tuple or msgspec struct),
with one exception: a slot carries its schedule as a number, the schedule
itself being sent once per search (the slots of one agenda share it; sent
with each slot it would be most of the bytes and of the decoding time).

Every frame read goes through :func:`read_frame` (its size bounded) and
:func:`decode_to_app` / :func:`decode_to_worker`: anything else than one of
these messages is a :class:`WorkerProtocolError` with a French message
naming what was wrong, never a traceback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import typing
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import msgspec

from sas_desk.models.errors import KnownError
from sas_desk.models.search import (
    Band,
    Facets,
    Offer,
    SearchQuery,
    SearchUpdate,
)
from sas_desk.models.slots import ConsultationMode, Schedule, Slot, SlotType
from sas_desk.services.config import VendorEndpoint

__all__ = [
    "MAX_TO_APP",
    "MAX_TO_WORKER",
    "Alive",
    "Cancel",
    "Ended",
    "Failed",
    "Open",
    "Ready",
    "Refused",
    "Search",
    "UpdateDecoder",
    "UpdateEncoder",
    "WireQuery",
    "WorkerProtocolError",
    "decode_to_app",
    "decode_to_worker",
    "encode",
    "frame",
    "read_frame",
]

#: app -> worker: a search's query, the settings (a few hundred bytes).
MAX_TO_WORKER = 1 << 20
#: worker -> app: one update (a batch of 25 practitioners over 72 h is
#: about 0.3 MB once encoded); far more is a broken worker.
MAX_TO_APP = 64 << 20
_HEADER = 4


class WorkerProtocolError(KnownError):
    """A frame that is not one of our messages (or too big): ``message_fr``
    says what, ``fatal`` when the stream can no longer be followed."""

    def __init__(self, message_fr: str, *, fatal: bool = False) -> None:
        super().__init__(message_fr)
        self.fatal = fatal


# --------------------------------------------------------------------------- app -> worker


class Open(msgspec.Struct, tag="open", frozen=True):
    """Open the directory (and sync it from its feed when ``sync``), build
    one HTTP client per vendor; answered by :class:`Ready`."""

    directory_path: str
    directory_url: str
    vendors: tuple[VendorEndpoint, ...]
    per_vendor: int = 4
    slow_after: float = 2.0
    sync: bool = True
    log_dir: str = ""
    flush_s: float = 0.1  # at most one update per this many seconds (merged)


class WireQuery(msgspec.Struct, frozen=True):
    """A :class:`~sas_desk.models.search.SearchQuery`; the facets by name."""

    lat: float
    lon: float
    radius_km: float
    specialty: str
    start: datetime | None = None
    end: datetime | None = None
    types: tuple[SlotType, ...] = ()
    modes: tuple[ConsultationMode, ...] = ()
    bands: tuple[str, ...] = ()

    @classmethod
    def of(cls, query: SearchQuery) -> WireQuery:
        f = query.facets
        return cls(
            query.lat,
            query.lon,
            query.radius_km,
            query.specialty,
            query.start,
            query.end,
            tuple(sorted(f.types)),
            tuple(sorted(f.modes)),
            tuple(sorted(b.name for b in f.bands)),
        )

    def query(self) -> SearchQuery:
        try:
            bands = frozenset(Band[name] for name in self.bands)
        except KeyError as exc:
            raise WorkerProtocolError(
                f"Message de recherche illisible : tranche horaire inconnue ({exc.args[0]!r:.40})."
            ) from None
        return SearchQuery(
            self.lat,
            self.lon,
            self.radius_km,
            self.specialty,
            self.start,
            self.end,
            Facets(frozenset(self.types), frozenset(self.modes), bands),
        )


class Search(msgspec.Struct, tag="search", frozen=True):
    """Run a search (cancelling the one running); ``now`` is the app's clock."""

    id: int
    query: WireQuery
    now: datetime


class Cancel(msgspec.Struct, tag="cancel", frozen=True):
    id: int


# --------------------------------------------------------------------------- worker -> app


class Ready(msgspec.Struct, tag="ready", frozen=True):
    """The directory is usable (``ok``) or not; ``note``: French, "" when all is well."""

    ok: bool
    note: str = ""
    places: int = 0  # practitioners' places in the directory


class Ended(msgspec.Struct, tag="ended", frozen=True):
    """A search stopped before its last update (cancelled or replaced)."""

    id: int


class Failed(msgspec.Struct, tag="failed", frozen=True):
    id: int
    message_fr: str


class Alive(msgspec.Struct, tag="alive", frozen=True):
    """Sent every second while a search runs: a worker that goes quiet hangs."""


class Refused(msgspec.Struct, tag="refused", frozen=True):
    """The worker could not read a message it was sent."""

    message_fr: str


# --------------------------------------------------------------------------- generic wire types


def _fields(cls: type) -> list[tuple[str, Any]]:
    """The constructor fields of a model class, in order, with their types."""
    hints = typing.get_type_hints(cls)
    if hasattr(cls, "__struct_fields__"):
        names: Sequence[str] = cls.__struct_fields__
    elif dataclasses.is_dataclass(cls):
        names = [f.name for f in dataclasses.fields(cls) if f.init]
    elif hasattr(cls, "_fields"):  # a named tuple
        names = cls._fields
    else:  # pragma: no cover - a model kind nobody uses yet
        raise TypeError(f"{cls.__name__}: no fields to encode")
    return [(name, hints[name]) for name in names]


def _maker(cls: type, names: Sequence[str]) -> Callable[[Sequence[Any]], Any]:
    """How to build one from its field values in order: positionally when the
    class takes them so (named tuple, struct, dataclass: a slot is built
    thousands of times a search), else by name."""
    kw_only = dataclasses.is_dataclass(cls) and any(f.kw_only for f in dataclasses.fields(cls))
    if not kw_only:
        return lambda values: cls(*values)
    return lambda values: cls(**dict(zip(names, values, strict=True)))


_SLOT_FIELDS = _fields(Slot)
_SLOT_NAMES = [name for name, _ in _SLOT_FIELDS]
#: the fields that differ from one slot to the next, sent as they are; every
#: other field (schedule, instants, types, modes, specialties, reasons…) takes
#: far fewer values than there are slots over a whole search (a large search:
#: 64,000 slots, a few thousand distinct starts): each value is sent once, in
#: a table, and the slots carry its number — the window decodes each instant
#: once, not twice per slot, and its slots share them
_PER_SLOT = frozenset({"id", "booking_url"})
#: tabled by identity, not by value: the parser shares one object per agenda
#: and per instant written (hashing a schedule walks its practitioner and
#: place; two equal instants may carry different UTC offsets, kept as written)
_BY_IDENTITY = frozenset({"schedule", "start", "end"})
_TABLED = [(n, t) for n, t in _SLOT_FIELDS if n not in _PER_SLOT]
_TABLED_NAMES = [n for n, _ in _TABLED]
#: which slot fields are numbers into which table (None: the value itself)
_TABLE_OF = [_TABLED_NAMES.index(n) if n in _TABLED_NAMES else None for n in _SLOT_NAMES]


def _slot_builder() -> Callable[..., tuple[Slot, ...]]:
    """``build(wire_slots, *tables)``: the slots of one offer, each built in
    one call with its table values looked up — generated once from Slot's
    fields (a generic loop over the fields cost ≈ 1.5 µs a slot more, 100 ms
    of the window's thread for a 64,000-slot search)."""
    kw_only = dataclasses.is_dataclass(Slot) and any(f.kw_only for f in dataclasses.fields(Slot))
    values = []
    for name, table in zip(_SLOT_NAMES, _TABLE_OF, strict=True):
        value = f"w.{name}" if table is None else f"t{table}[w.{name}]"
        values.append(f"{name}={value}" if kw_only else value)
    tables = ", ".join(f"t{n}" for n in range(len(_TABLED)))
    source = (
        f"def build(wires, {tables}):\n"
        f"    return tuple([Slot({', '.join(values)}) for w in wires])\n"
    )
    scope: dict[str, Any] = {"Slot": Slot}
    exec(compile(source, "<worker_protocol slot builder>", "exec"), scope)
    build: Callable[..., tuple[Slot, ...]] = scope["build"]
    return build


_build_slots = _slot_builder()

WireSlot: Any = msgspec.defstruct(
    "WireSlot",
    [(n, int if n in _TABLED_NAMES else t) for n, t in _SLOT_FIELDS],
    array_like=True,
)
#: the values added to each table by one update
Tables: Any = msgspec.defstruct(
    "Tables",
    [(n, list[t]) for n, t in _TABLED],  # type: ignore[valid-type]
    array_like=True,
)

_OFFER_FIELDS = _fields(Offer)
_OFFER_NAMES = [name for name, _ in _OFFER_FIELDS]
_make_offer = _maker(Offer, _OFFER_NAMES)
WireOffer: Any = msgspec.defstruct(
    "WireOffer",
    [(n, list[WireSlot] if n == "slots" else t) for n, t in _OFFER_FIELDS],
    array_like=True,
)

_UPDATE_FIELDS = [(n, t) for n, t in _fields(SearchUpdate) if n != "offers"]
_UPDATE_NAMES = [name for name, _ in _UPDATE_FIELDS]
Update: Any = msgspec.defstruct(
    "Update",
    [("id", int), ("tables", Tables), ("offers", list[WireOffer]), *_UPDATE_FIELDS],
    tag="update",
)

ToWorker = Open | Search | Cancel
ToApp = typing.Union[Ready, Update, Ended, Failed, Alive, Refused]  # noqa: UP007 - Update is built at run time

_encoder = msgspec.json.Encoder()
_to_worker = msgspec.json.Decoder(ToWorker)
_to_app: msgspec.json.Decoder[Any] = msgspec.json.Decoder(ToApp)


class UpdateEncoder:
    """One search's updates, worker side: each table value is sent once."""

    def __init__(self, search_id: int) -> None:
        self.search_id = search_id
        # value -> its number, per table; schedules by identity (the parser
        # shares one per agenda; hashing one walks its practitioner and place)
        self._known: list[dict[Any, int]] = [{} for _ in _TABLED]
        # by identity (see _BY_IDENTITY): the object kept beside its number,
        # so that its id is not another's during the search
        self._same: dict[int, dict[int, tuple[int, Any]]] = {
            _TABLED_NAMES.index(n): {} for n in _BY_IDENTITY if n in _TABLED_NAMES
        }

    def _number(self, table: int, value: Any, new: list[list[Any]]) -> int:
        same = self._same.get(table)
        if same is not None:
            known = same.get(id(value))
            if known is None:
                known = same[id(value)] = (len(same), value)
                new[table].append(value)
            return known[0]
        numbers = self._known[table]
        n = numbers.get(value)
        if n is None:
            n = numbers[value] = len(numbers)
            new[table].append(value)
        return n

    def encode(self, update: SearchUpdate) -> Any:
        new: list[list[Any]] = [[] for _ in _TABLED]
        offers = []
        for offer in update.offers:
            slots = [
                WireSlot(
                    *(
                        v if t is None else self._number(t, v, new)
                        for v, t in zip(
                            (getattr(slot, n) for n in _SLOT_NAMES), _TABLE_OF, strict=True
                        )
                    )
                )
                for slot in offer.slots
            ]
            offers.append(
                WireOffer(*(slots if n == "slots" else getattr(offer, n) for n in _OFFER_NAMES))
            )
        return Update(
            self.search_id, Tables(*new), offers, *(getattr(update, n) for n in _UPDATE_NAMES)
        )


class UpdateDecoder:
    """One search's updates, app side: the table values received so far."""

    def __init__(self) -> None:
        self.tables: list[list[Any]] = [[] for _ in _TABLED]

    def decode(self, message: Any) -> SearchUpdate:
        tables = self.tables
        for table, added in zip(tables, msgspec.structs.astuple(message.tables), strict=True):
            table.extend(added)
        offers = []
        try:
            for wire in message.offers:
                slots = _build_slots(wire.slots, *tables)
                values = [
                    slots if n == "slots" else v
                    for n, v in zip(_OFFER_NAMES, msgspec.structs.astuple(wire), strict=True)
                ]
                offers.append(_make_offer(values))
        except IndexError:
            raise WorkerProtocolError(
                "Résultats illisibles du processus de recherche : valeur de créneau inconnue."
            ) from None
        return SearchUpdate(tuple(offers), **{n: getattr(message, n) for n in _UPDATE_NAMES})

    @property
    def schedules(self) -> list[Schedule]:
        return self.tables[_TABLED_NAMES.index("schedule")]


# --------------------------------------------------------------------------- framing


def encode(message: Any) -> bytes:
    return _encoder.encode(message)


def frame(message: Any) -> bytes:
    body = _encoder.encode(message)
    return len(body).to_bytes(_HEADER, "big") + body


_AT = re.compile(r" - at `([^`]{0,80})`")


def _refused(where: str, exc: msgspec.MsgspecError) -> WorkerProtocolError:
    found = _AT.search(str(exc))
    detail = f" (champ {found.group(1)})" if found else ""
    kind = "mal formé" if isinstance(exc, msgspec.ValidationError) else "illisible"
    return WorkerProtocolError(f"Message {kind} {where}{detail} : ignoré.")


def decode_to_worker(body: bytes) -> Open | Search | Cancel:
    try:
        message: Open | Search | Cancel = _to_worker.decode(body)
    except msgspec.MsgspecError as exc:
        raise _refused("reçu par le processus de recherche", exc) from None
    return message


def decode_to_app(body: bytes) -> Any:
    try:
        return _to_app.decode(body)
    except msgspec.MsgspecError as exc:
        raise _refused("du processus de recherche", exc) from None


async def read_frame(reader: asyncio.StreamReader, max_bytes: int) -> bytes | None:
    """The next frame's body; None at a clean end of stream.  Refused
    (fatal: the stream cannot be followed after it): a length over
    *max_bytes*, a stream cut inside a frame."""
    try:
        header = await reader.readexactly(_HEADER)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise WorkerProtocolError("Message tronqué (en-tête incomplet).", fatal=True) from None
    size = int.from_bytes(header, "big")
    if size > max_bytes:
        raise WorkerProtocolError(
            f"Message trop volumineux ({size} octets, au plus {max_bytes}) : refusé.",
            fatal=True,
        )
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise WorkerProtocolError("Message tronqué (corps incomplet).", fatal=True) from None
