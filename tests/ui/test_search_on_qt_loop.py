"""The slot search engine on the app's qasync loop: closing or cancelling a
search with a vendor hanging ends it at once, not at the vendor's deadline
(Python 3.11's ``wait_for`` could swallow such a cancellation)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from sas_desk.models.search import SearchQuery
from sas_desk.services.fhir.search import SlotSearch
from tests.helpers.fake_vendor import FakeDirectory, FakeVendor, Place

pytestmark = [pytest.mark.gui, pytest.mark.asyncio(loop_scope="session")]
TZ = timezone(timedelta(hours=1))
NOW = datetime(2026, 11, 29, 9, 0, tzinfo=TZ)
LYON = (45.7640, 4.8357)


def hanging_search() -> tuple[SlotSearch, FakeVendor, asyncio.Event]:
    reached = asyncio.Event()

    async def hang(_: httpx.Request) -> None:
        reached.set()
        await asyncio.Event().wait()

    places = [
        Place(f"8{10000000000 + n:011d}", LYON[0] + n / 1000, LYON[1], [NOW + timedelta(hours=1)])
        for n in range(60)
    ]
    vendor = FakeVendor("bloque", {p.national_id: p for p in places}, before=hang)
    search = SlotSearch(
        {vendor.name: vendor.client(timeout=7.0)}, FakeDirectory([vendor]), now=lambda: NOW
    )
    return search, vendor, reached


async def test_closing_a_search_with_a_hanging_vendor_is_immediate() -> None:
    search, vendor, reached = hanging_search()
    stream = search.run(SearchQuery(*LYON, radius_km=20.0))
    first = await anext(stream)
    assert not first.done
    await asyncio.wait_for(reached.wait(), 5)
    began = time.monotonic()
    await stream.aclose()
    assert time.monotonic() - began < 1.0  # not the 7 s deadline
    assert vendor.in_flight == 0 and vendor.cancelled == 3


async def test_cancelling_the_task_that_follows_a_search_is_immediate() -> None:
    search, vendor, reached = hanging_search()
    updates: list[object] = []

    async def follow() -> None:
        async for update in search.run(SearchQuery(*LYON, radius_km=20.0)):
            updates.append(update)

    task = asyncio.get_running_loop().create_task(follow())
    await asyncio.wait_for(reached.wait(), 5)
    began = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - began < 1.0
    assert vendor.in_flight == 0 and vendor.cancelled == 3
    assert len(updates) == 1  # the first (empty) update only
