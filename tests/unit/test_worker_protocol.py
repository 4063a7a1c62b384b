"""The search worker's messages: a search's updates cross the pipe unchanged
(each schedule sent once per search), a query keeps its facets, and what is
not one of our messages is refused with a French message, never a traceback."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from sas_desk.models.search import Band, Facets, SearchQuery, SearchUpdate
from sas_desk.models.slots import ConsultationMode, SlotType
from sas_desk.services.config import VendorEndpoint
from sas_desk.services.fhir import worker_protocol as wp
from tests.unit.test_slot_search import collect, engine, place, query, vendor

TZ = timezone(timedelta(hours=1))


async def a_search() -> list[SearchUpdate]:
    near = [place(n, km_north=n / 10, slots=3, sas=n % 3 == 0) for n in range(40)]
    return await collect(engine(vendor("epione", near), vendor("hygie", [place(99)])), query())


@pytest.mark.asyncio
async def test_a_searchs_updates_cross_the_pipe_unchanged() -> None:
    updates = await a_search()
    assert any(u.offers for u in updates) and updates[-1].done
    encoder, decoder = wp.UpdateEncoder(7), wp.UpdateDecoder()
    for update in updates:
        body = wp.frame(encoder.encode(update))[4:]
        message = wp.decode_to_app(body)
        assert message.id == 7
        assert decoder.decode(message) == update
    # each slot's schedule was sent once, with the first slot of its agenda
    schedules = {id(s.schedule) for u in updates for o in u.offers for s in o.slots}
    assert len(decoder.schedules) == len(schedules) > 1
    # the slots of one place share their schedule on this side too
    offer = next(o for u in updates for o in u.offers if len(o.slots) > 1)
    decoded = [d for d in decoder.schedules if d == offer.slots[0].schedule]
    assert len(decoded) == 1


@pytest.mark.asyncio
async def test_what_repeats_crosses_once_and_a_slot_naming_an_unknown_value_is_refused() -> None:
    updates = [u for u in await a_search() if u.offers]
    encoder = wp.UpdateEncoder(1)
    first = wp.decode_to_app(wp.encode(encoder.encode(updates[0])))
    tables = _fields(first.tables)
    assert tables["specialties"] == [updates[0].offers[0].slots[0].specialties]  # one value
    assert tables["types"] and tables["modes"]
    # a slot whose values were sent with an earlier update (never received here)
    later = wp.decode_to_app(wp.encode(encoder.encode(updates[1])))
    with pytest.raises(wp.WorkerProtocolError) as err:
        wp.UpdateDecoder().decode(later)
    assert err.value.message_fr == (
        "Résultats illisibles du processus de recherche : valeur de créneau inconnue."
    )


@pytest.mark.asyncio
async def test_each_instant_crosses_once_with_the_offset_it_was_written_with() -> None:
    updates = [u for u in await a_search() if u.offers]
    update = updates[0]
    slots = [s for o in update.offers for s in o.slots]
    # the same instant written with another UTC offset: equal, not the same
    other = msgspec.structs.replace(slots[1], start=slots[0].start.astimezone(UTC))
    assert other.start == slots[0].start and other.start.utcoffset() != slots[0].start.utcoffset()
    first = update.offers[0]
    update = replace(
        update, offers=(replace(first, slots=(*first.slots, other)), *update.offers[1:])
    )
    encoder, decoder = wp.UpdateEncoder(1), wp.UpdateDecoder()
    message = wp.decode_to_app(wp.encode(encoder.encode(update)))
    sent = _fields(message.tables)
    instants = {id(s.start) for o in update.offers for s in o.slots}
    assert len(sent["start"]) == len(instants) < sum(len(o.slots) for o in update.offers)
    got = decoder.decode(message)
    assert got == update
    assert got.offers[0].slots[-1].start.utcoffset() == timedelta(0)  # as written
    decoded = {id(s.start) for o in got.offers for s in o.slots}
    assert len(decoded) == len(instants)  # the window's slots share them too


def _fields(message: object) -> dict[str, object]:
    return {n: getattr(message, n) for n in message.__struct_fields__}  # type: ignore[attr-defined]


def test_a_query_keeps_its_window_and_facets() -> None:
    start = datetime(2026, 11, 29, 9, 0, tzinfo=TZ)
    q = SearchQuery(
        45.76,
        4.83,
        12.5,
        "SM40",
        start,
        start + timedelta(hours=4),
        Facets(
            frozenset({SlotType.SNP, SlotType.CPTS}),
            frozenset({ConsultationMode.VR}),
            frozenset({Band.H0_4, Band.H24_48}),
        ),
    )
    search = wp.decode_to_worker(wp.encode(wp.Search(3, wp.WireQuery.of(q), start)))
    assert isinstance(search, wp.Search) and search.id == 3 and search.now == start
    assert search.query.query() == q
    assert search.query.query().start.utcoffset() == timedelta(hours=1)  # type: ignore[union-attr]


def test_the_settings_cross_with_the_vendors_tls_files() -> None:
    vendors = (VendorEndpoint("epione", "https://e.example/fhir", "c.pem", "c.key", "ca.pem", 3.0),)
    opened = wp.decode_to_worker(wp.encode(wp.Open("/d/directory.sqlite", "https://f", vendors)))
    assert isinstance(opened, wp.Open) and opened.vendors == vendors


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"type": "search", "id": "x"}', "Message mal formé reçu par le processus de recherche"),
        (b'{"type": "search", "id": 1}', "Message mal formé"),
        (b'{"type": "launch-missiles"}', "Message mal formé"),
        (b'{"type": ', "Message illisible reçu par le processus de recherche"),
        (b"\xff\xfe", "Message illisible"),
        (
            b'{"type":"search","id":1,"now":"2026-11-29T09:00:00+01:00","query":'
            b'{"lat":1,"lon":2,"radius_km":3,"specialty":"SM54","types":["VIP"]}}',
            "(champ $.query.types[0])",
        ),
    ],
)
def test_a_malformed_message_is_refused_in_french(body: bytes, says: str) -> None:
    with pytest.raises(wp.WorkerProtocolError) as err:
        wp.decode_to_worker(body)
    assert says in err.value.message_fr and not err.value.fatal
    assert "Traceback" not in err.value.message_fr


def test_an_unknown_band_is_refused_in_french() -> None:
    wire = wp.WireQuery(1.0, 2.0, 3.0, "SM54", bands=("H99",))
    with pytest.raises(wp.WorkerProtocolError) as err:
        wire.query()
    assert "tranche horaire inconnue" in err.value.message_fr


@pytest.mark.asyncio
async def test_frames_are_bounded_and_a_cut_frame_is_refused() -> None:
    def stream(data: bytes) -> asyncio.StreamReader:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return reader

    framed = wp.frame(wp.Cancel(4))
    assert await wp.read_frame(stream(framed), 100) == framed[4:]
    assert await wp.read_frame(stream(b""), 100) is None  # a clean end
    with pytest.raises(wp.WorkerProtocolError) as err:
        await wp.read_frame(stream((10**9).to_bytes(4, "big") + b"{}"), wp.MAX_TO_WORKER)
    assert err.value.fatal and "trop volumineux" in err.value.message_fr
    for cut in (framed[:2], framed[:-1]):
        with pytest.raises(wp.WorkerProtocolError) as err:
            await wp.read_frame(stream(cut), 100)
        assert err.value.fatal and "tronqué" in err.value.message_fr
