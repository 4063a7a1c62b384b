"""The search worker sends the window at most one update per flush interval:
the first update, the first with offers and the last go at once; those in
between are merged (the latest offer of a place, the latest vendor states)."""

from __future__ import annotations

import asyncio
import gc
from dataclasses import replace
from typing import Any

import msgspec
import pytest

from sas_desk.models.search import SearchUpdate
from sas_desk.services.fhir import worker as w
from sas_desk.services.fhir import worker_protocol as wp
from sas_desk.services.fhir.worker import _Batcher
from tests.unit.test_slot_search import NOW, collect, engine, place, query, vendor


class Sent:
    """A stand-in for the worker: what it would write on the pipe."""

    def __init__(self) -> None:
        self.updates: list[SearchUpdate] = []
        self.decoder = wp.UpdateDecoder()
        self.arrived = asyncio.Event()

    def send(self, message: Any) -> None:
        self.updates.append(self.decoder.decode(wp.decode_to_app(wp.encode(message))))
        self.arrived.set()


@pytest.mark.asyncio
async def test_updates_in_a_burst_are_merged_and_the_last_goes_at_once() -> None:
    near = [place(n, km_north=n / 10, slots=2) for n in range(80)]
    updates = await collect(engine(vendor("epione", near)), query())
    assert len(updates) >= 4 and not updates[0].offers and updates[-1].done
    sent = Sent()
    batcher = _Batcher(sent, wp.UpdateEncoder(1), flush_s=60.0)  # type: ignore[arg-type]
    for update in updates[:-1]:
        batcher.add(update)
    # the first (candidates, no offers yet) and the first with offers went at once
    assert [bool(u.offers) for u in sent.updates] == [False, True]
    assert sent.updates[1] == updates[1]
    batcher.add(updates[-1])  # the last: everything held back, merged, at once
    assert len(sent.updates) == 3
    merged = sent.updates[2]
    assert merged.done and merged.vendors == updates[-1].vendors
    held = {o.key: o for u in updates[2:] for o in u.offers}
    assert {o.key: o for o in merged.offers} == held


@pytest.mark.asyncio
async def test_an_update_held_back_goes_when_the_interval_is_over() -> None:
    updates = await collect(engine(vendor("epione", [place(n) for n in range(60)])), query())
    sent = Sent()
    batcher = _Batcher(sent, wp.UpdateEncoder(1), flush_s=0.05)  # type: ignore[arg-type]
    batcher.add(updates[0])
    batcher.add(updates[1])
    sent.arrived.clear()
    later = replace(updates[2], done=False)
    batcher.add(later)  # within the interval: held
    assert len(sent.updates) == 2
    await asyncio.wait_for(sent.arrived.wait(), 5)  # then sent by the timer
    assert len(sent.updates) == 3 and sent.updates[2] == later
    batcher.drop()


class Pipe:
    """The worker's end of the pipe: frames kept."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.frames.append(data)

    def is_closing(self) -> bool:
        return False

    async def drain(self) -> None:
        return None


class Service:
    """The worker's slot service over fake vendors; each search can be held."""

    def __init__(self) -> None:
        self.engine = engine(vendor("epione", [place(n) for n in range(5)]))
        self.hold = asyncio.Event()
        self.hold.set()

    async def search(self, q: Any, *, now: Any = None) -> Any:
        await self.hold.wait()
        async for update in self.engine.run(q):
            yield update


async def _until(predicate: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"condition not reached within {timeout:.1f} s")
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_between_searches_the_worker_collects_and_gives_memory_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trims: list[int] = []
    monkeypatch.setattr(w, "_trim", lambda: trims.append(1))
    monkeypatch.setattr(w, "TIDY_AFTER_S", 0.05)
    full: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:
            full.append(1)

    worker = w.Worker(None, Pipe())  # type: ignore[arg-type]
    service = Service()
    worker.service = service  # type: ignore[assignment]
    worker.ready.set()
    search = wp.Search(1, wp.WireQuery.of(query()), NOW)
    gc.callbacks.append(seen)
    try:
        # a newer search coming within TIDY_AFTER_S: no tidying in its way
        worker._start(search)
        await _until(lambda: worker.current is None)
        service.hold.clear()
        worker._start(msgspec.structs.replace(search, id=2))
        await asyncio.sleep(0.2)  # (past TIDY_AFTER_S: nothing must happen)
        assert worker.tidied == 0 and trims == []
        service.hold.set()
        await _until(lambda: worker.current is None)
        # the search over and none after it: one full collection, one trim
        await _until(lambda: worker.tidied == 1)
    finally:
        gc.callbacks.remove(seen)
    assert trims == [1] and full
