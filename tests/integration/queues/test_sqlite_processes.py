"""The SQLite queue file shared by real OS processes (one per workstation):
a claim made in another process shows in this one's watch within 250 ms,
and two processes racing for the same items never both win one.  Also what
the file refuses (locked, too new, out of reach) comes out as
``BackendUnavailable`` with a French message, never as an sqlite3 error."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sas_desk.models.dossier import EventKind
from sas_desk.models.queue import ClaimConflict, QueueItem, QueueName
from sas_desk.services.queues.api import BackendUnavailable
from sas_desk.services.queues.sqlite import SqliteBackend
from tests.integration.queues.support import (
    ARM,
    MRU,
    Mirror,
    make_dossier,
    op,
    real_clock,
)

pytestmark = pytest.mark.asyncio

ROOT = Path(__file__).resolve().parents[3]
OTHER = "POSTE-B"


class Worker:
    """``tests.integration.queues.support`` running in its own process."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def line(self, timeout: float = 30.0) -> str:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not raw:
            raise AssertionError(f"worker ended early: {await self.stderr()}")
        return raw.decode().rstrip("\n")

    async def stderr(self) -> str:
        assert self.proc.stderr is not None
        return (await self.proc.stderr.read()).decode()[-3000:]

    def go(self, start: float = 0.0, step: float = 0.0) -> None:
        """Start claiming now, or claim case *n* at monotonic time ``start + n * step``."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"GO {start!r} {step!r}\n".encode() if start else b"GO\n")

    async def results(self, count: int) -> list[dict[str, Any]]:
        out = [json.loads(await self.line()) for _ in range(count)]
        assert await self.line() == "DONE"
        return out


@contextlib.asynccontextmanager
async def worker(path: Path, *case_ids: str) -> AsyncIterator[Worker]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.queues.support",
        str(path),
        OTHER,
        *case_ids,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    w = Worker(proc)
    try:
        assert await w.line() == "READY"
        yield w
        assert await asyncio.wait_for(proc.wait(), 30) == 0, await w.stderr()
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.communicate()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "queues.sqlite"


async def test_a_claim_in_another_process_shows_in_the_watch(path: Path) -> None:
    """Claims made by another process show in this one's watch through the
    change spy: the watch's own safety poll is set to an hour, so a change
    seen within the wait's timeout came by the spy (the latencies are
    printed; how fast is bench/queues.py's, not a test's, to measure)."""
    loop = asyncio.get_running_loop()
    here = SqliteBackend(path, now=real_clock, idle_poll=3600.0)
    try:
        dossiers = [make_dossier(n) for n in range(1, 6)]
        for d in dossiers:
            await here.apply(op("enqueue", d.case_id, ARM, real_clock(), dossier=d.to_dict()))
        async with (
            contextlib.aclosing(here.watch([QueueName.AMU])) as changes,
            worker(path, *(d.case_id for d in dossiers)) as other,
        ):
            mirror = Mirror(changes)
            assert (await mirror.next()).reset and len(mirror.items) == 5
            other.go()
            seen: dict[str, float] = {}
            while len(seen) < len(dossiers):
                await mirror.next(timeout=5)
                for case_id, item in mirror.items.items():
                    if case_id not in seen and item.claim and item.claim.workstation == OTHER:
                        seen[case_id] = loop.time()
            claims = await other.results(len(dossiers))
        latencies = [seen[c["case_id"]] - c["t0"] for c in claims]
        print("sqlite: watch latency across processes (ms):", [round(x * 1000) for x in latencies])
        assert all(c["won"] for c in claims)
        snapshot = await here.snapshot([QueueName.AMU])
        assert {i.case_id: i for i in snapshot} == mirror.items
    finally:
        await here.close()


async def test_two_processes_racing_for_50_items_never_both_win(path: Path) -> None:
    here = SqliteBackend(path, now=real_clock)
    try:
        dossiers = [make_dossier(n) for n in range(1, 51)]
        for d in dossiers:
            await here.apply(op("enqueue", d.case_id, ARM, real_clock(), dossier=d.to_dict()))
        mine: dict[str, str] = {}
        async with worker(path, *(d.case_id for d in dossiers)) as other:
            # both processes claim item n at the same instant (one monotonic clock
            # for the machine): every item is contended
            loop = asyncio.get_running_loop()
            start, step = loop.time() + 0.3, 0.02
            other.go(start, step)
            for n, d in enumerate(dossiers):
                await asyncio.sleep(max(0.0, start + n * step - loop.time()))
                try:
                    item = await here.apply(op("claim", d.case_id, MRU, real_clock()))
                except ClaimConflict as exc:
                    mine[d.case_id] = f"lost to {exc.claim.workstation}"
                else:
                    assert isinstance(item, QueueItem) and item.claim is not None
                    mine[d.case_id] = "won"
            theirs = {r["case_id"]: r for r in await other.results(len(dossiers))}
        holders = {}
        for d in dossiers:
            here_won = mine[d.case_id] == "won"
            there_won = theirs[d.case_id]["won"]
            assert here_won != there_won, (d.case_id, mine[d.case_id], theirs[d.case_id])
            winner = MRU.workstation if here_won else OTHER
            if not here_won:
                assert mine[d.case_id] == f"lost to {OTHER}"
            assert theirs[d.case_id]["holder"] == winner
            holders[d.case_id] = winner
        snapshot = await here.snapshot([QueueName.AMU])
        assert {i.case_id: i.claim.workstation if i.claim else None for i in snapshot} == holders
        for d in dossiers:
            kinds = [e.kind for e in await here.events(d.case_id)]
            assert kinds == [EventKind.ENQUEUED, EventKind.CLAIMED]
        won_here = sum(1 for w in holders.values() if w == MRU.workstation)
        print(f"sqlite: this process won {won_here}/50, the other {50 - won_here}/50")
    finally:
        await here.close()


# ---------------------------------------------------------------------------- refusals


async def test_a_locked_file_is_unavailable_and_the_retry_applies_once(path: Path) -> None:
    here = SqliteBackend(path, now=real_clock, busy_timeout=0.2)
    try:
        d = make_dossier(1)
        await here.apply(op("enqueue", d.case_id, ARM, real_clock(), dossier=d.to_dict()))
        blocker = sqlite3.connect(str(path), isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")  # another program holds the write lock
            claiming = op("claim", d.case_id, MRU, real_clock())
            with pytest.raises(BackendUnavailable) as caught:
                await here.apply(claiming)
            assert "occupées" in caught.value.message_fr
            assert not isinstance(caught.value.__cause__, BackendUnavailable)
            blocker.execute("ROLLBACK")
        finally:
            blocker.close()
        (waiting,) = await here.snapshot([QueueName.AMU])
        assert waiting.claim is None  # nothing half-applied
        item = await here.apply(claiming)  # the outbox sends it again
        assert item is not None and item.claim is not None
        assert await here.apply(claiming) == item
        kinds = [e.kind for e in await here.events(d.case_id)]
        assert kinds == [EventKind.ENQUEUED, EventKind.CLAIMED]
    finally:
        await here.close()


async def test_a_file_from_a_newer_version_is_refused(path: Path) -> None:
    first = SqliteBackend(path, now=real_clock)
    await first.open()
    await first.close()
    conn = sqlite3.connect(str(path))
    try:
        conn.execute("PRAGMA user_version = 99")
        conn.commit()
    finally:
        conn.close()
    later = SqliteBackend(path, now=real_clock)
    try:
        with pytest.raises(BackendUnavailable) as caught:
            await later.open()
        assert "version plus récente" in caught.value.message_fr
    finally:
        await later.close()


async def test_a_file_out_of_reach_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("", encoding="utf-8")
    here = SqliteBackend(blocker / "queues.sqlite", now=real_clock)
    try:
        with pytest.raises(BackendUnavailable) as caught:
            await here.open()
        assert caught.value.message_fr.startswith("Impossible d'ouvrir le fichier des files")
        with pytest.raises(BackendUnavailable):
            await here.snapshot([QueueName.AMU])
    finally:
        await here.close()
    with pytest.raises(BackendUnavailable):  # closed
        await here.snapshot([QueueName.AMU])


async def test_an_idle_watch_does_not_keep_the_loop_busy(path: Path) -> None:
    """The file is watched for other connections' commits off the event loop
    (the change spy's thread): with the loop's own safety poll set to an hour,
    another instance's claim still shows (the spy woke the watch), and
    the loop handed the backend's thread only the polls that found a change."""
    here = SqliteBackend(path, now=real_clock, idle_poll=3600.0)
    there = SqliteBackend(path, now=real_clock)
    submits = 0
    run = here._run

    async def counting(fn: Any) -> Any:
        nonlocal submits
        submits += 1
        return await run(fn)

    here._run = counting  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    try:
        d = make_dossier(1)
        await there.apply(op("enqueue", d.case_id, ARM, real_clock(), dossier=d.to_dict()))
        async with contextlib.aclosing(here.watch([QueueName.AMU])) as changes:
            mirror = Mirror(changes)
            assert (await mirror.next()).reset and len(mirror.items) == 1
            for n in range(3):  # each claim or release by the other instance shows
                began = loop.time()
                if n % 2 == 0:
                    await there.apply(op("claim", d.case_id, MRU, real_clock()))
                else:
                    await there.apply(op("release", d.case_id, MRU, real_clock()))
                shown = await mirror.until(
                    lambda items, n=n: (items[d.case_id].claim is not None) == (n % 2 == 0),
                    timeout=5,
                )
                print(f"sqlite: change {n} shown after {(shown - began) * 1000:.0f} ms")
        # the reset, the spy's first look, then a poll or two per change
        print("sqlite: loop -> thread submits for 3 changes:", submits)
        assert submits <= 12, submits
    finally:
        await here.close()
        await there.close()
