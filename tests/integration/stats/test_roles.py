"""The statistics reader (STATS): reads the statistics, acts on nothing —
refused by the queues' state machine itself (every store, the room server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sas_desk.models.dossier import Actor
from sas_desk.models.queue import QueueError, QueueName, forbidden_reason
from sas_desk.models.stats import may_read_staff_load, may_read_stats
from sas_desk.services.queues.sqlite import SqliteBackend
from tests.integration.queues.support import ARM, FakeClock, make_dossier, op

STATS = Actor("STATS", "direction.durand", "POSTE-DIR")


def test_who_reads_the_statistics() -> None:
    assert [
        r for r in ("ARM", "OSNP", "MRU", "MRL", "DENT", "SUP", "STATS") if may_read_stats(r)
    ] == [
        "SUP",
        "STATS",
    ]
    assert may_read_staff_load("SUP") and not may_read_staff_load("STATS")
    for kind in ("claim", "note", "decide", "close", "release", "orient", "update", "enqueue"):
        for queue in QueueName:
            assert forbidden_reason("STATS", kind, queue) is not None


@pytest.mark.asyncio
async def test_the_machine_refuses_every_operation_of_the_reader(tmp_path: Path) -> None:
    clock = FakeClock()
    backend = SqliteBackend(tmp_path / "queues.sqlite", now=clock)
    await backend.open()
    try:
        d = make_dossier(1)
        with pytest.raises(QueueError) as refused:
            await backend.apply(op("enqueue", d.case_id, STATS, clock(), dossier=d.to_dict()))
        assert refused.value.code == "forbidden" and "STATS" in refused.value.message_fr
        await backend.apply(op("enqueue", d.case_id, ARM, clock(), dossier=d.to_dict()))
        for kind, data in (("claim", {"lease_s": 60}), ("note", {"text": "x"})):
            with pytest.raises(QueueError) as refused:
                await backend.apply(op(kind, d.case_id, STATS, clock(), **data))
            assert refused.value.code == "forbidden"
    finally:
        await backend.close()
