"""The head of a regulator's queues: what « Prendre le suivant » takes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sas_desk.models.queue import Claim, ItemStatus, QueueItem, QueueName, next_to_take

T0 = datetime(2026, 12, 7, 3, 0, tzinfo=timezone(timedelta(hours=1)))


def item(n: int, queue: QueueName, priority: str, minutes: int, held: bool = False) -> QueueItem:
    claim = Claim("POSTE-X", "x", "MRL", T0, T0 + timedelta(minutes=5)) if held else None
    return QueueItem(
        case_id=f"case-{n}",
        queue=queue,
        status=ItemStatus.CLAIMED if held else ItemStatus.WAITING,
        priority=priority,
        waiting_since=T0 - timedelta(minutes=minutes),
        claim=claim,
    )


def test_the_next_is_the_most_urgent_then_the_longest_waiting_free_item() -> None:
    items = [
        item(1, QueueName.SNP, "P3", 50),
        item(2, QueueName.SNP, "P1", 2),
        item(3, QueueName.SNP, "P1", 9),
        item(4, QueueName.SNP, "P0", 30, held=True),  # someone has it
        item(5, QueueName.AMU, "P0", 1),  # not my queue
    ]
    head = next_to_take(items, (QueueName.SNP,))
    assert head is not None and head.case_id == "case-3"
    both = next_to_take(items, (QueueName.SNP, QueueName.AMU))
    assert both is not None and both.case_id == "case-5"


def test_nothing_free_means_no_next() -> None:
    assert next_to_take([item(1, QueueName.SNP, "P2", 5, held=True)], (QueueName.SNP,)) is None
    assert next_to_take([], (QueueName.SNP,)) is None
