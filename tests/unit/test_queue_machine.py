"""The queue state machine (services/queues/machine.py) without a store."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, timedelta

import pytest

from sas_desk.models.dossier import Actor, Event, EventKind
from sas_desk.models.queue import Claim, ItemStatus, QueueError, QueueItem, QueueName
from sas_desk.services.queues import machine
from tests.integration.queues.support import MRU, SUP, T0, make_dossier, op


def held_item(alert: str = "") -> QueueItem:
    return QueueItem(
        case_id=make_dossier(1).case_id,
        queue=QueueName.AMU,
        status=ItemStatus.CLAIMED,
        priority="P2",
        waiting_since=T0,
        claim=Claim(MRU.workstation, MRU.operator, MRU.role, T0, T0 + timedelta(seconds=120)),
        version=3,
        alert=alert,
    )


def test_a_release_clears_the_alert_and_keeps_the_place() -> None:
    item = held_item(alert="Prise en charge expirée : poste POSTE-09 muet")
    change = machine.transition(op("release", item.case_id, SUP, T0, reason="x"), item, None)
    assert change.item is not None and change.result == change.item
    assert (change.item.status, change.item.claim, change.item.alert) == (
        ItemStatus.WAITING,
        None,
        "",
    )
    assert change.item.waiting_since == T0 and change.item.version == 4
    assert change.event is not None and change.event.kind is EventKind.RELEASED


def test_the_machine_does_not_modify_its_arguments() -> None:
    d = make_dossier(1)
    item = held_item()
    before_item, before_dossier = copy.deepcopy(item), copy.deepcopy(d)
    change = machine.transition(
        op("decide", d.case_id, MRU, T0, care_level="R3", note="avis"), item, d
    )
    assert change.dossier is not None and change.dossier.care_level == "R3"
    assert d == before_dossier and item == before_item


def test_times_in_event_data_are_utc_whatever_the_offset() -> None:
    item = held_item()
    change = machine.transition(op("claim", item.case_id, MRU, T0, lease_s=60), item, None)
    assert change.event is not None
    assert (
        change.event.data["expires_at"] == (T0 + timedelta(seconds=120)).astimezone(UTC).isoformat()
    )


@pytest.mark.parametrize("lease", [3e9, float("inf"), 0, -1, 900.5, True])
def test_lease_end_is_bounded(lease: float) -> None:
    with pytest.raises(QueueError) as refused:
        machine.lease_end(T0, lease)
    assert refused.value.code == "invalid"


def test_the_hash_covers_every_field_and_ignores_the_offset() -> None:
    ev = Event("c", T0, EventKind.CLAIMED, Actor("MRU", "dr", "P1"), {"a": 1}, op_id="o")
    h = machine.event_hash(ev, "")
    assert h == machine.event_hash(replace(ev, at=T0.astimezone(UTC)), "")
    for changed in (
        replace(ev, at=T0 + timedelta(microseconds=1)),
        replace(ev, kind=EventKind.RELEASED),
        replace(ev, actor=Actor("MRU", "dr2", "P1")),
        replace(ev, data={"a": 2}),
        replace(ev, op_id="p"),
        replace(ev, dossier_id="d"),
    ):
        assert machine.event_hash(changed, "") != h
    assert machine.event_hash(ev, "x") != h


def test_verify_chain_accepts_unchained_events_only_before_the_chain() -> None:
    actor = Actor("MRU", "dr", "P1")
    old = Event("c", T0, EventKind.ENQUEUED, actor, seq=1)
    first = machine.seal(Event("c", T0, EventKind.CLAIMED, actor, seq=2), "")
    second = machine.seal(replace(first, prev_hash="", hash="", seq=3), first.hash)
    assert machine.verify_chain("c", [old, first, second], second.hash) == []
    late = replace(old, seq=4)
    (brk,) = machine.verify_chain("c", [first, second, late], second.hash)
    assert brk.seq == 4
    (cut,) = machine.verify_chain("c", [old, first], second.hash)
    assert cut.seq is None
