"""The room API's wire format: what the server writes, the client reads back
as the same domain objects and the same refusals."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import msgspec
import pytest

from sas_desk.models.dossier import Actor, Event, EventKind
from sas_desk.models.queue import (
    ChangeSet,
    Claim,
    ClaimConflict,
    ItemStatus,
    NotFound,
    NotHolder,
    QueueError,
    QueueItem,
    QueueName,
)
from sas_desk.services.queues import wire

PARIS = timezone(timedelta(hours=1))
T0 = datetime(2026, 12, 7, 3, 0, 0, 123456, tzinfo=PARIS)
CLAIM = Claim("POSTE-02", "dr.durand", "MRU", T0, T0 + timedelta(seconds=120))
ITEM = QueueItem(
    case_id="fr.health.samu690.DRFR1569A2634100001",
    queue=QueueName.AMU,
    status=ItemStatus.CLAIMED,
    priority="P1",
    waiting_since=T0 - timedelta(minutes=3),
    motive_code="M01.03",
    motive_label="Détresse respiratoire",
    commune="Villeurbanne",
    age="P67Y",
    sex="F",
    claim=CLAIM,
    version=4,
    alert="",
)


def roundtrip(value: object, kind: type) -> object:
    return msgspec.json.decode(msgspec.json.encode(value), type=kind)


def test_item_and_changes_come_back_equal() -> None:
    body = roundtrip(wire.item_body(ITEM), wire.ItemBody)
    assert wire.item_from_body(body) == ITEM  # type: ignore[arg-type]
    changes = ChangeSet(items=(ITEM,), removed=("x",), reset=True)
    back = roundtrip(wire.changes_body(changes), wire.ChangeSetBody)
    assert wire.changes_from_body(back) == changes  # type: ignore[arg-type]


def test_event_comes_back_equal() -> None:
    event = Event(ITEM.case_id, T0, EventKind.CLAIMED, Actor("MRU", "dr.durand", "P2"), {"a": 1}, 7)
    back = roundtrip(wire.event_body(event), wire.EventBody)
    assert wire.event_from_body(back) == event  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "status"),
    [
        (lambda: ClaimConflict(CLAIM), 409),
        (lambda: NotHolder(ITEM.case_id, CLAIM), 409),
        (lambda: NotHolder(ITEM.case_id, None), 409),
        (lambda: NotFound(ITEM.case_id), 404),
        (lambda: QueueError("Hors de vos files.", "forbidden"), 403),
        (lambda: QueueError("Durée invalide.", "invalid"), 422),
    ],
)
def test_refusals_come_back_as_the_same_error(make: Callable[[], QueueError], status: int) -> None:
    # built here, not at collection: a claim's message says its time in the
    # zone of the moment
    exc = make()
    assert wire.http_status(exc) == status
    body = roundtrip(wire.error_body(exc, ITEM.case_id), wire.ErrorBody)
    again = wire.error_from_body(body)  # type: ignore[arg-type]
    assert type(again) is type(exc)
    assert (again.message_fr, again.code) == (exc.message_fr, exc.code)
    assert getattr(again, "claim", None) == getattr(exc, "claim", None)


def test_a_body_naming_the_actor_carries_no_actor() -> None:
    raw = b'{"op_id":"1","kind":"claim","case_id":"c","operator":"sup.x","role":"SUP","at":"2020-01-01T00:00:00+00:00"}'
    op = msgspec.json.decode(raw, type=wire.OperationRequest)
    assert not hasattr(op, "operator") and not hasattr(op, "role") and not hasattr(op, "at")
