"""Builders shared by the queue tests, and a tiny worker process.

As a module it gives dossiers, operations, actors, a settable clock and a
:class:`Mirror` that follows a ``watch``.  Run as a program it is "another
workstation" for the multi-process SQLite tests::

    python -m tests.integration.queues.support FILE WORKSTATION CASE_ID...

It opens the file, prints ``READY``, waits for a line on stdin (``GO``, or
``GO <t> <step>`` to claim case *n* at monotonic time ``t + n * step``), then
claims the cases in order and prints one JSON line per claim (``t0`` / ``t1``: monotonic
clock before and after the claim; the clock is system-wide on Linux, macOS and
Windows, so the parent can compare it with ``loop.time()``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import uuid4

from sas_desk.models.dossier import Actor, Branch, Dossier, Status
from sas_desk.models.queue import ChangeSet, ClaimConflict, Operation, QueueItem

OWNER = "fr.health.samu690"
PARIS = timezone(timedelta(hours=1))
T0 = datetime(2026, 3, 14, 10, 0, 0, tzinfo=PARIS)

ARM = Actor("ARM", "arm.martin", "POSTE-01")
MRU = Actor("MRU", "dr.durand", "POSTE-02")
MRU2 = Actor("MRU", "dr.petit", "POSTE-03")
MRL = Actor("MRL", "dr.leroy", "POSTE-04")
MRL2 = Actor("MRL", "dr.garnier", "POSTE-07")
OSNP = Actor("OSNP", "osnp.moreau", "POSTE-05")
DENT = Actor("DENT", "dr.roux", "POSTE-06")
SUP = Actor("SUP", "sup.bernard", "POSTE-SUP")


class FakeClock:
    """``now()`` for the backends: an aware datetime the test moves by hand."""

    def __init__(self, start: datetime = T0) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> datetime:
        self.current += timedelta(seconds=seconds)
        return self.current


def real_clock() -> datetime:
    return datetime.now(PARIS)


def make_dossier(
    n: int,
    *,
    branch: Branch = Branch.AMU,
    priority: str = "P2",
    motive: tuple[str, str] = ("M01.03", "Détresse respiratoire"),
    city: str = "Villeurbanne",
    age: str = "P67Y",
    sex: str = "F",
    at: datetime = T0,
) -> Dossier:
    """A transmitted dossier (what the ARM puts in a queue)."""
    local = f"DRFR1569A26073{n:05d}"
    d = Dossier(case_id=f"{OWNER}.{local}", sender_case_id=local, created_at=at, owner=OWNER)
    d.caller.callback = "+33612345678"
    d.location.city = city
    d.location.insee = "69266"
    d.location.address = f"{n} rue Francis de Pressensé, {city}"
    d.motive_code, d.motive_label = motive
    d.patient.age = age
    d.patient.sex = sex
    d.priority = priority
    d.branch = branch
    d.perimeter = branch.perimeter
    d.attribution = branch.attribution
    d.status = Status.TRANSMITTED
    d.transmitted_at = at
    d.revision = 3
    return d


def op(
    kind: str, case_id: str, actor: Actor, at: datetime, *, op_id: str = "", **data: Any
) -> Operation:
    return Operation(
        op_id=op_id or uuid4().hex,
        kind=kind,
        case_id=case_id,
        at=at,
        role=actor.role,
        operator=actor.operator,
        workstation=actor.workstation,
        data=data,
    )


class Mirror:
    """What a queue panel would show: the watched items, kept up to date
    from the change sets of one ``watch`` iterator."""

    def __init__(self, changes: AsyncIterator[ChangeSet]) -> None:
        self.changes = changes
        self.items: dict[str, QueueItem] = {}
        self.sets: list[ChangeSet] = []

    def apply(self, change: ChangeSet) -> None:
        self.sets.append(change)
        if change.reset:
            self.items = {}
        for item in change.items:
            self.items[item.case_id] = item
        for case_id in change.removed:
            self.items.pop(case_id, None)

    async def next(self, timeout: float = 5.0) -> ChangeSet:
        change = await asyncio.wait_for(anext(self.changes), timeout)
        self.apply(change)
        return change

    async def until(
        self, predicate: Callable[[dict[str, QueueItem]], bool], timeout: float = 5.0
    ) -> float:
        """Consume change sets until ``predicate(items)`` holds; returns the
        loop time at which it did (fails after ``timeout`` seconds)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self.items):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"watch did not show the change within {timeout} s")
            try:
                await self.next(remaining)
            except TimeoutError:
                raise AssertionError(f"watch did not show the change within {timeout} s") from None
        return loop.time()


# ---------------------------------------------------------------------------- worker process


async def _worker(path: Path, workstation: str, case_ids: list[str]) -> int:
    from sas_desk.services.queues.sqlite import SqliteBackend

    actor = Actor("MRU", f"dr.{workstation.lower()}", workstation)
    backend = SqliteBackend(path, now=real_clock)
    await backend.open()
    loop = asyncio.get_running_loop()
    try:
        print("READY", flush=True)
        words = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        start, step = (float(words[1]), float(words[2])) if len(words) > 2 else (0.0, 0.0)
        for n, case_id in enumerate(case_ids):
            if start:  # in step with the other process: claim n at start + n * step
                await asyncio.sleep(max(0.0, start + n * step - time.monotonic()))
            t0 = time.monotonic()
            result: dict[str, Any] = {"case_id": case_id}
            try:
                item = await backend.apply(op("claim", case_id, actor, real_clock()))
            except ClaimConflict as exc:
                result.update(won=False, holder=exc.claim.workstation)
            else:
                assert item is not None and item.claim is not None
                result.update(won=True, holder=item.claim.workstation)
            result.update(t0=t0, t1=time.monotonic())
            print(json.dumps(result), flush=True)
    finally:
        await backend.close()
    print("DONE", flush=True)
    return 0


def main(argv: list[str]) -> int:
    path, workstation, *case_ids = argv
    return asyncio.run(_worker(Path(path), workstation, case_ids))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
