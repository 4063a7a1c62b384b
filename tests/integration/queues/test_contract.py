"""The queue backend contract (``sas_desk/services/queues/api.py``), run
against every backend: SQLite and PostgreSQL.

Operation times come from a fake clock (``clock``) the tests move by hand,
so leases expire without sleeping.  ``peer`` is another workstation: a
second backend instance on the same store.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from sas_desk.models.dossier import Actor, Branch, Dossier, EventKind
from sas_desk.models.queue import (
    ClaimConflict,
    ItemStatus,
    NotFound,
    NotHolder,
    Operation,
    QueueError,
    QueueItem,
    QueueName,
)
from sas_desk.services.queues.api import DEFAULT_LEASE_S, QueueBackend
from sas_desk.services.queues.sqlite import SqliteBackend
from tests.integration.queues.conftest import Store
from tests.integration.queues.support import (
    ARM,
    DENT,
    MRL,
    MRL2,
    MRU,
    MRU2,
    OSNP,
    SUP,
    T0,
    FakeClock,
    Mirror,
    make_dossier,
    op,
)

pytestmark = pytest.mark.asyncio


async def enqueue(backend: QueueBackend, clock: FakeClock, d: Dossier, **data: Any) -> QueueItem:
    item = await backend.apply(op("enqueue", d.case_id, ARM, clock(), dossier=d.to_dict(), **data))
    assert item is not None
    return item


async def claim(
    backend: QueueBackend, clock: FakeClock, case_id: str, actor: Actor = MRU, **data: Any
) -> QueueItem:
    item = await backend.apply(op("claim", case_id, actor, clock(), **data))
    assert item is not None and item.claim is not None
    return item


async def outcome(backend: QueueBackend, operation: Operation) -> Any:
    """The item returned, or (class, message, claim) of the error raised."""
    try:
        return await backend.apply(operation)
    except QueueError as exc:
        return (type(exc), exc.message_fr, exc.code, getattr(exc, "claim", None))


def ids(items: list[QueueItem]) -> list[str]:
    return [i.case_id for i in items]


def held_by(case_id: str, actor: Actor) -> Callable[[dict[str, QueueItem]], bool]:
    def check(items: dict[str, QueueItem]) -> bool:
        item = items.get(case_id)
        return (
            item is not None
            and item.claim is not None
            and (item.claim.workstation == actor.workstation)
        )

    return check


# ---------------------------------------------------------------------------- enqueue


@pytest.mark.parametrize(
    ("branch", "queue"),
    [(Branch.AMU, QueueName.AMU), (Branch.SNP, QueueName.SNP), (Branch.DENT, QueueName.DENT)],
)
async def test_enqueue_makes_a_waiting_item_from_the_dossier(
    backend: QueueBackend, clock: FakeClock, branch: Branch, queue: QueueName
) -> None:
    d = make_dossier(
        1,
        branch=branch,
        priority="P1",
        motive=("M01.02", "Altération de la conscience"),
        city="Vaulx-en-Velin",
        age="P8Y",
        sex="M",
    )
    item = await enqueue(backend, clock, d)
    assert item.case_id == d.case_id
    assert item.queue is queue
    assert item.status is ItemStatus.WAITING
    assert (item.priority, item.motive_code, item.motive_label) == (
        "P1",
        "M01.02",
        "Altération de la conscience",
    )
    assert (item.commune, item.age, item.sex) == ("Vaulx-en-Velin", "P8Y", "M")
    assert item.waiting_since == T0
    assert item.claim is None and item.alert == ""
    assert await backend.snapshot([queue]) == [item]
    others = [q for q in QueueName if q is not queue]
    assert await backend.snapshot(others) == []
    stored = await backend.dossier(d.case_id)
    assert stored is not None and stored.to_dict() == d.to_dict()


async def test_enqueue_into_an_explicit_queue_and_refusals(
    backend: QueueBackend, clock: FakeClock
) -> None:
    d = make_dossier(1, branch=Branch.AMU)
    item = await enqueue(backend, clock, d, queue="ARM")
    assert item.queue is QueueName.ARM
    lost = make_dossier(2)
    lost.attribution, lost.branch, lost.perimeter = "", None, ""
    with pytest.raises(QueueError):
        await enqueue(backend, clock, lost)
    with pytest.raises(QueueError):
        await enqueue(backend, clock, make_dossier(3), queue="NOWHERE")
    assert ids(await backend.snapshot(QueueName)) == [d.case_id]
    assert await backend.dossier(lost.case_id) is None


async def test_enqueue_twice_gives_one_item_and_one_event(
    backend: QueueBackend, clock: FakeClock
) -> None:
    d = make_dossier(1)
    operation = op("enqueue", d.case_id, ARM, clock(), dossier=d.to_dict())
    first = await backend.apply(operation)
    clock.advance(30)
    again = await backend.apply(operation)
    assert first is not None and again == first
    # the same dossier sent again (another op id) while queued: nothing changes
    other = await backend.apply(op("enqueue", d.case_id, ARM, clock(), dossier=d.to_dict()))
    assert other is not None and other.waiting_since == T0 and other.status is ItemStatus.WAITING
    assert ids(await backend.snapshot([QueueName.AMU])) == [d.case_id]
    assert [e.kind for e in await backend.events(d.case_id)] == [EventKind.ENQUEUED]


async def test_queue_order_is_priority_then_wait(backend: QueueBackend, clock: FakeClock) -> None:
    plan = [(1, "P2"), (2, "NR"), (3, "P0"), (4, "P2"), (5, "P3"), (6, "P1"), (7, "P0")]
    for n, priority in plan:
        await enqueue(backend, clock, make_dossier(n, priority=priority))
        clock.advance(10)
    got = await backend.snapshot([QueueName.AMU])
    assert [(i.priority, i.case_id[-1]) for i in got] == [
        ("P0", "3"),
        ("P0", "7"),
        ("P1", "6"),
        ("P2", "1"),
        ("P2", "4"),
        ("P3", "5"),
        ("NR", "2"),
    ]
    assert got == sorted(got, key=QueueItem.sort_key)


async def test_unknown_case_and_unknown_kind(backend: QueueBackend, clock: FakeClock) -> None:
    with pytest.raises(NotFound):
        await backend.apply(op("claim", "fr.health.samu690.NOPE", MRU, clock()))
    d = make_dossier(1)
    await enqueue(backend, clock, d)
    with pytest.raises(QueueError) as caught:
        await backend.apply(op("teleport", d.case_id, MRU, clock()))
    assert type(caught.value) is QueueError
    assert [e.kind for e in await backend.events(d.case_id)] == [EventKind.ENQUEUED]


# ---------------------------------------------------------------------------- claims


async def test_claim_takes_the_item_with_a_lease(backend: QueueBackend, clock: FakeClock) -> None:
    a, b = make_dossier(1), make_dossier(2)
    await enqueue(backend, clock, a)
    await enqueue(backend, clock, b)
    clock.advance(20)
    item = await claim(backend, clock, a.case_id, lease_s=90)
    assert item.status is ItemStatus.CLAIMED
    assert item.claim is not None
    assert (item.claim.workstation, item.claim.operator, item.claim.role) == (
        MRU.workstation,
        MRU.operator,
        "MRU",
    )
    assert item.claim.claimed_at == clock()
    assert item.claim.expires_at == clock() + timedelta(seconds=90)
    assert item.waiting_since == T0
    default = await claim(backend, clock, b.case_id)
    assert default.claim is not None
    assert default.claim.expires_at == clock() + timedelta(seconds=DEFAULT_LEASE_S)
    shown = await backend.snapshot([QueueName.AMU])
    assert [(i.status, i.claim) for i in shown] == [
        (ItemStatus.CLAIMED, item.claim),
        (ItemStatus.CLAIMED, default.claim),
    ]


async def test_a_second_workstation_gets_a_conflict_naming_the_holder(
    backend: QueueBackend, peer: QueueBackend, clock: FakeClock
) -> None:
    d = make_dossier(1)
    await enqueue(backend, clock, d)
    held = await claim(backend, clock, d.case_id)
    clock.advance(5)
    with pytest.raises(ClaimConflict) as caught:
        await claim(peer, clock, d.case_id, MRU2)
    assert caught.value.claim == held.claim
    assert "dr.durand" in caught.value.message_fr and MRU.workstation in caught.value.message_fr
    (still,) = await peer.snapshot([QueueName.AMU])
    assert still.claim == held.claim
    assert [e.kind for e in await backend.events(d.case_id)] == [
        EventKind.ENQUEUED,
        EventKind.CLAIMED,
    ]


async def test_a_conflict_says_when_in_the_workstations_local_time(
    backend: QueueBackend, peer: QueueBackend, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server may keep UTC (PostgreSQL's TimeZone): the operator reads
    the time of the room."""
    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    try:
        d = make_dossier(1)
        await enqueue(backend, clock, d)
        held = await claim(backend, clock, d.case_id)
        assert held.claim is not None
        with pytest.raises(ClaimConflict) as caught:
            await claim(peer, clock, d.case_id, MRU2)
        paris = held.claim.claimed_at.astimezone(ZoneInfo("Europe/Paris"))
        assert f"depuis {paris:%H:%M:%S}" in caught.value.message_fr
    finally:
        monkeypatch.undo()
        time.tzset()


async def test_claiming_again_from_the_same_workstation_renews(
    backend: QueueBackend, clock: FakeClock
) -> None:
    d = make_dossier(1)
    await enqueue(backend, clock, d)
    first = await claim(backend, clock, d.case_id, lease_s=120)
    clock.advance(60)
    again = await claim(backend, clock, d.case_id, lease_s=120)
    assert first.claim is not None and again.claim is not None
    assert again.claim.workstation == MRU.workstation
    assert again.claim.claimed_at == first.claim.claimed_at
    assert again.claim.expires_at == clock() + timedelta(seconds=120)
    assert again.version > first.version


async def test_an_expired_lease_may_be_taken_over(backend: QueueBackend, clock: FakeClock) -> None:
    d = make_dossier(1)
    await enqueue(backend, clock, d)
    await claim(backend, clock, d.case_id, lease_s=60)
    clock.advance(59)
    with pytest.raises(ClaimConflict):
        await claim(backend, clock, d.case_id, MRU2)
    clock.advance(2)
    taken = await claim(backend, clock, d.case_id, MRU2)
    assert taken.claim is not None and taken.claim.workstation == MRU2.workstation
    assert taken.claim.claimed_at == clock()


# ---------------------------------------------------------------------------- release, transfer


async def test_release_is_for_the_holder_and_keeps_the_place(
    backend: QueueBackend, peer: QueueBackend, clock: FakeClock
) -> None:
    a, b = make_dossier(1), make_dossier(2)
    await enqueue(backend, clock, a)
    clock.advance(30)
    await enqueue(backend, clock, b)
    clock.advance(30)
    held = await claim(backend, clock, a.case_id)
    with pytest.raises(NotHolder) as caught:
        await peer.apply(op("release", a.case_id, MRU2, clock(), reason="pas à moi"))
    assert caught.value.claim == held.claim
    (b_item,) = [i for i in await backend.snapshot([QueueName.AMU]) if i.case_id == b.case_id]
    with pytest.raises(NotHolder):  # nobody holds it
        await backend.apply(op("release", b.case_id, MRU, clock()))
    clock.advance(30)
    released = await backend.apply(op("release", a.case_id, MRU, clock(), reason="pause"))
    assert released is not None
    assert released.status is ItemStatus.WAITING and released.claim is None
    assert released.waiting_since == T0
    assert ids(await backend.snapshot([QueueName.AMU])) == [a.case_id, b.case_id]
    assert b_item.status is ItemStatus.WAITING


async def test_transfer_moves_to_the_back_of_the_other_queue(
    backend: QueueBackend, clock: FakeClock
) -> None:
    a, b = make_dossier(1), make_dossier(2, branch=Branch.SNP)
    await enqueue(backend, clock, a)
    await enqueue(backend, clock, b)
    await claim(backend, clock, a.case_id)
    with pytest.raises(NotHolder):
        await backend.apply(op("transfer", a.case_id, MRU2, clock(), to="SNP"))
    with pytest.raises(QueueError):
        await backend.apply(op("transfer", a.case_id, MRU, clock(), to="NOWHERE"))
    at = clock.advance(120)
    moved = await backend.apply(
        op("transfer", a.case_id, MRU, at, to="SNP", reason="relève de la MG")
    )
    assert moved is not None
    assert (moved.queue, moved.status, moved.claim) == (QueueName.SNP, ItemStatus.WAITING, None)
    assert moved.waiting_since == at
    assert await backend.snapshot([QueueName.AMU]) == []
    assert ids(await backend.snapshot([QueueName.SNP])) == [b.case_id, a.case_id]


async def test_supervisor_releases_closes_transfers_and_reassigns(
    backend: QueueBackend, peer: QueueBackend, clock: FakeClock
) -> None:
    a, b, c, d, e = (make_dossier(n) for n in range(1, 6))
    for x in (a, b, c, d, e):
        await enqueue(backend, clock, x)
        await claim(backend, clock, x.case_id)
    clock.advance(10)
    released = await peer.apply(op("release", a.case_id, SUP, clock(), reason="poste bloqué"))
    assert released is not None and released.status is ItemStatus.WAITING
    assert released.claim is None and released.waiting_since == T0
    assert await peer.apply(op("close", b.case_id, SUP, clock(), reason="doublon")) is None
    moved = await peer.apply(op("transfer", c.case_id, SUP, clock(), to="DENT"))
    assert moved is not None and moved.queue is QueueName.DENT and moved.claim is None
    with pytest.raises(QueueError):  # not a supervisor
        await peer.apply(
            op(
                "reassign",
                d.case_id,
                MRU2,
                clock(),
                to_workstation=MRU2.workstation,
                to_operator=MRU2.operator,
                to_role="MRU",
            )
        )
    clock.advance(10)
    reassigned = await peer.apply(
        op(
            "reassign",
            d.case_id,
            SUP,
            clock(),
            to_workstation=MRU2.workstation,
            to_operator=MRU2.operator,
            to_role="MRU",
        )
    )
    assert reassigned is not None and reassigned.claim is not None
    assert reassigned.status is ItemStatus.CLAIMED
    assert (reassigned.claim.workstation, reassigned.claim.operator, reassigned.claim.role) == (
        MRU2.workstation,
        MRU2.operator,
        "MRU",
    )
    assert reassigned.claim.claimed_at == clock()
    assert reassigned.claim.expires_at == clock() + timedelta(seconds=DEFAULT_LEASE_S)
    with pytest.raises(NotHolder):  # the former holder lost it
        await backend.apply(op("close", d.case_id, MRU, clock()))
    back = await peer.apply(op("reassign", e.case_id, SUP, clock(), to_workstation=""))
    assert back is not None and back.status is ItemStatus.WAITING and back.claim is None
    shown = {i.case_id: i for i in await backend.snapshot(QueueName)}
    assert set(shown) == {a.case_id, c.case_id, d.case_id, e.case_id}
    kinds = [ev.kind for ev in await backend.events(d.case_id)]
    assert kinds == [EventKind.ENQUEUED, EventKind.CLAIMED, EventKind.REASSIGNED]


# ---------------------------------------------------------------------------- decide, notes


DECISIONS = [
    {"decision_type": "CONSEIL", "freetext": "Conseils donnés, rappeler si aggravation"},
    {
        "decision_type": "ORIENT",
        "resource_type": "LIBERAL.MG",
        "orientation_type": "CABINET",
        "medical_transport": False,
        "freetext": "",
    },
]


async def test_decide_updates_the_server_dossier(backend: QueueBackend, clock: FakeClock) -> None:
    d = make_dossier(1)
    await enqueue(backend, clock, d)
    await claim(backend, clock, d.case_id)
    at = clock.advance(240)
    item = await backend.apply(
        op(
            "decide",
            d.case_id,
            MRU,
            at,
            care_level="R3",
            decisions=DECISIONS,
            note="Douleur thoracique atypique, ECG à faire en cabinet.",
        )
    )
    assert item is not None and item.status is ItemStatus.CLAIMED
    assert item.claim is not None and item.claim.workstation == MRU.workstation
    stored = await backend.dossier(d.case_id)
    assert stored is not None
    assert stored.care_level == "R3"
    assert [
        (x.decision_type, x.resource_type, x.orientation_type, x.medical_transport, x.role, x.at)
        for x in stored.decisions
    ] == [
        ("CONSEIL", "", "", None, "MEDECIN", at),
        ("ORIENT", "LIBERAL.MG", "CABINET", False, "MEDECIN", at),
    ]
    assert stored.decisions[0].freetext == "Conseils donnés, rappeler si aggravation"
    note = stored.notes[-1]
    assert (note.text, note.role, note.medical, note.operator, note.at) == (
        "Douleur thoracique atypique, ECG à faire en cabinet.",
        "MEDECIN",
        True,
        MRU.operator,
        at,
    )
    assert stored.motive_code == d.motive_code  # the ARM's sheet is kept


@pytest.mark.parametrize(
    "data",
    [
        {"care_level": "R9", "decisions": DECISIONS},
        {"care_level": "R2", "decisions": [{"decision_type": "TELEPORT"}]},
        {"care_level": "R2", "decisions": [{"decision_type": "INTER", "resource_type": "UFO"}]},
        {
            "care_level": "R2",
            "decisions": [
                DECISIONS[0],
                {"decision_type": "ORIENT", "orientation_type": "LUNE"},
            ],
        },
        # a decision without the care level (models.dossier.decision_problems)
        {"decisions": [DECISIONS[0]]},
    ],
    ids=[
        "care-level",
        "decision-type",
        "resource-type",
        "orientation-type",
        "no-care-level",
    ],
)
async def test_decide_refuses_unknown_codes_and_changes_nothing(
    backend: QueueBackend, clock: FakeClock, data: dict[str, Any]
) -> None:
    d = make_dossier(1)
    await enqueue(backend, clock, d)
    held = await claim(backend, clock, d.case_id)
    with pytest.raises(QueueError) as caught:
        await backend.apply(op("decide", d.case_id, MRU, clock(), note="note perdue", **data))
    assert caught.value.message_fr
    stored = await backend.dossier(d.case_id)
    assert stored is not None
    assert (stored.care_level, stored.decisions, stored.notes) == ("", [], [])
    assert await backend.snapshot([QueueName.AMU]) == [held]
    assert [e.kind for e in await backend.events(d.case_id)] == [
        EventKind.ENQUEUED,
        EventKind.CLAIMED,
    ]


async def test_a_decision_may_rely_on_the_care_level_already_stated(
    backend: QueueBackend, clock: FakeClock
) -> None:
    d = make_dossier(1)
    await enqueue(backend, clock, d)
    await claim(backend, clock, d.case_id)
    with pytest.raises(QueueError) as refused:
        await backend.apply(op("decide", d.case_id, MRU, clock(), decisions=DECISIONS[:1]))
    assert refused.value.code == "invalid"
    assert refused.value.message_fr == "Niveau de soins manquant (R1 à R4)."
    await backend.apply(op("decide", d.case_id, MRU, clock(), care_level="R4"))
    await backend.apply(op("decide", d.case_id, MRU, clock(), decisions=DECISIONS[:1]))
    stored = await backend.dossier(d.case_id)
    assert stored is not None
    assert stored.care_level == "R4"
    assert [x.decision_type for x in stored.decisions] == ["CONSEIL"]


async def test_decide_is_for_the_holder(backend: QueueBackend, clock: FakeClock) -> None:
    d = make_dossier(1)
    await enqueue(backend, clock, d)
    with pytest.raises(NotHolder):
        await backend.apply(op("decide", d.case_id, MRU, clock(), care_level="R2"))
    await claim(backend, clock, d.case_id)
    with pytest.raises(NotHolder):
        await backend.apply(op("decide", d.case_id, MRU2, clock(), care_level="R2"))
    stored = await backend.dossier(d.case_id)
    assert stored is not None and stored.care_level == ""


async def test_notes_are_added_to_the_dossier(backend: QueueBackend, clock: FakeClock) -> None:
    d = make_dossier(1, branch=Branch.SNP)
    await enqueue(backend, clock, d)
    at = clock.advance(15)
    item = await backend.apply(op("note", d.case_id, MRL, at, text="  Rappel du patient à 15h. "))
    assert item is not None and item.status is ItemStatus.WAITING and item.claim is None
    with pytest.raises(QueueError):
        await backend.apply(op("note", d.case_id, MRL, clock(), text="   "))
    supervisor = await backend.apply(op("note", d.case_id, SUP, clock(), text="Vu superviseur"))
    assert supervisor is not None
    stored = await backend.dossier(d.case_id)
    assert stored is not None
    assert [(n.text, n.role, n.operator, n.medical) for n in stored.notes] == [
        ("Rappel du patient à 15h.", "MEDECIN", MRL.operator, True),
        ("Vu superviseur", "ARM", SUP.operator, True),
    ]
    assert stored.notes[0].at == at
    kinds = [e.kind for e in await backend.events(d.case_id)]
    assert kinds == [EventKind.ENQUEUED, EventKind.MEDICAL_NOTE, EventKind.MEDICAL_NOTE]


# ---------------------------------------------------------------------------- booking, hand back, close


async def test_request_booking_goes_to_osnp_and_hand_back_to_arm(
    backend: QueueBackend, clock: FakeClock
) -> None:
    a, b = make_dossier(1, branch=Branch.SNP), make_dossier(2, branch=Branch.DENT)
    await enqueue(backend, clock, a)
    await enqueue(backend, clock, b)
    await claim(backend, clock, a.case_id, MRL)
    await claim(backend, clock, b.case_id, DENT)
    with pytest.raises(NotHolder):
        await backend.apply(op("request_booking", a.case_id, MRL2, clock()))
    at = clock.advance(300)
    booked = await backend.apply(op("request_booking", a.case_id, MRL, at, note="RDV MG sous 24 h"))
    assert booked is not None
    assert (booked.queue, booked.status, booked.claim) == (QueueName.OSNP, ItemStatus.WAITING, None)
    assert booked.waiting_since == at
    stored = await backend.dossier(a.case_id)
    assert stored is not None and stored.notes[-1].text == "RDV MG sous 24 h"
    with pytest.raises(NotHolder):
        await backend.apply(op("hand_back", b.case_id, MRL, clock()))
    at = clock.advance(60)
    handed = await backend.apply(op("hand_back", b.case_id, DENT, at, reason="rappeler"))
    assert handed is not None
    assert (handed.queue, handed.status, handed.claim) == (QueueName.ARM, ItemStatus.WAITING, None)
    assert handed.waiting_since == at
    assert ids(await backend.snapshot([QueueName.OSNP])) == [a.case_id]
    assert ids(await backend.snapshot([QueueName.ARM])) == [b.case_id]
    assert await backend.snapshot([QueueName.SNP, QueueName.DENT]) == []
    # the booking operator takes it and closes it: out of every queue
    await claim(backend, clock, a.case_id, OSNP)
    assert await backend.apply(op("close", a.case_id, OSNP, clock(), reason="RDV pris")) is None


async def test_each_role_acts_within_its_remit(backend: QueueBackend, clock: FakeClock) -> None:
    """A role claims in the queues it works (the supervisor in all); a
    decision is a regulator's, a booking request a physician's.  Such a
    refusal says so whoever holds the item, changes nothing, leaves no event
    and is given again for the same op_id."""
    amu = make_dossier(1)
    snp, dent = make_dossier(2, branch=Branch.SNP), make_dossier(3, branch=Branch.DENT)
    for d in (amu, snp, dent):
        await enqueue(backend, clock, d)

    async def forbidden(kind: str, case_id: str, actor: Actor, **data: Any) -> str:
        sent = op(kind, case_id, actor, clock(), **data)
        before = await backend.events(case_id)
        refused = await outcome(backend, sent)
        assert refused[0] is QueueError and refused[2] == "forbidden", (kind, actor, refused)
        assert await outcome(backend, sent) == refused  # the same op_id: the same answer
        assert await backend.events(case_id) == before
        return str(refused[1])

    message = await forbidden("claim", amu.case_id, MRL)
    assert message == (
        "Ce dossier est dans la file AMU — urgence, hors de vos files : prise en charge impossible."
    )
    await claim(backend, clock, amu.case_id, MRU)
    await forbidden("claim", amu.case_id, DENT)  # held: still not DENT's, not "taken by"
    with pytest.raises(ClaimConflict):
        await claim(backend, clock, amu.case_id, MRU2)
    await forbidden("claim", snp.case_id, ARM)
    if not backend.name.startswith("remote"):
        # through the room server an operator without a role has no session at
        # all (POST /v1/session refuses it: the server's authentication tests)
        await forbidden("claim", snp.case_id, Actor("", "inconnu", "POSTE-99"))  # no role
    # holding an item does not make one a physician
    await claim(backend, clock, dent.case_id, SUP)  # the supervisor claims anywhere
    assert "médecin régulateur" in await forbidden("decide", dent.case_id, SUP, care_level="R4")
    await backend.apply(op("release", dent.case_id, SUP, clock()))
    await claim(backend, clock, dent.case_id, DENT)
    await forbidden("request_booking", dent.case_id, DENT)  # a dentist orients otherwise
    decided = await backend.apply(op("decide", dent.case_id, DENT, clock(), care_level="R4"))
    assert decided is not None and decided.claim is not None
    assert decided.claim.workstation == DENT.workstation
    await claim(backend, clock, snp.case_id, MRL)
    await backend.apply(op("hand_back", snp.case_id, MRL, clock(), reason="rappeler"))
    await claim(backend, clock, snp.case_id, ARM)  # the ARM's call-back queue
    await forbidden("decide", snp.case_id, ARM, care_level="R4")
    await forbidden("request_booking", snp.case_id, ARM)
    await forbidden("reassign", snp.case_id, ARM, to_workstation=MRL.workstation)
    assert await backend.apply(op("close", snp.case_id, ARM, clock(), reason="rappelé")) is None
    kinds = [e.kind for e in await backend.events(snp.case_id)]
    assert kinds == [
        EventKind.ENQUEUED,
        EventKind.CLAIMED,
        EventKind.HANDED_BACK,
        EventKind.CLAIMED,
        EventKind.CLOSED,
    ]


async def test_close_removes_from_the_queues(backend: QueueBackend, clock: FakeClock) -> None:
    a, b = make_dossier(1), make_dossier(2)
    await enqueue(backend, clock, a)
    await enqueue(backend, clock, b)
    with pytest.raises(NotHolder):  # nobody holds it and not a supervisor
        await backend.apply(op("close", a.case_id, MRU, clock()))
    await claim(backend, clock, a.case_id)
    with pytest.raises(NotHolder):
        await backend.apply(op("close", a.case_id, MRU2, clock()))
    assert await backend.apply(op("close", a.case_id, MRU, clock(), reason="conseil")) is None
    assert ids(await backend.snapshot(QueueName)) == [b.case_id]
    with pytest.raises(QueueError):
        await claim(backend, clock, a.case_id, MRU2)
    assert await backend.dossier(a.case_id) is not None
    kinds = [e.kind for e in await backend.events(a.case_id)]
    assert kinds == [EventKind.ENQUEUED, EventKind.CLAIMED, EventKind.CLOSED]


# ---------------------------------------------------------------------------- idempotency


async def test_replaying_every_kind_of_operation_changes_nothing(
    backend: QueueBackend, peer: QueueBackend, clock: FakeClock
) -> None:
    d = make_dossier(1)
    cid = d.case_id

    def step(kind: str, actor: Actor, **data: Any) -> Operation:
        return op(kind, cid, actor, clock.advance(10), **data)

    history = [
        step("enqueue", ARM, dossier=d.to_dict()),
        step("claim", MRU),
        step("claim", MRU2),  # refused: ClaimConflict
        step("note", MRU, text="Patient rappelé"),
        step("decide", MRU, care_level="R2", decisions=DECISIONS[:1]),
        step("decide", MRU, care_level="R7"),  # refused: invalid code
        step("release", MRU, reason="pause"),
        step("claim", MRU2),
        step("transfer", MRU2, to="SNP", reason="MG"),
        step("claim", MRL),
        step("request_booking", MRL, note="RDV"),
        step("claim", OSNP),
        step("hand_back", OSNP, reason="rappeler"),
        step(
            "reassign", SUP, to_workstation=ARM.workstation, to_operator=ARM.operator, to_role="ARM"
        ),
        step("close", ARM, reason="fin"),
    ]
    first = []
    for operation in history:
        got = await outcome(backend, operation)
        before = len(await backend.events(cid))
        assert await outcome(peer, operation) == got, operation.kind
        assert await outcome(backend, operation) == got, operation.kind
        assert len(await backend.events(cid)) == before, operation.kind
        first.append(got)
    conflict = first[2]
    assert conflict[0] is ClaimConflict and conflict[3].workstation == MRU.workstation
    assert first[5][0] is QueueError
    events = await backend.events(cid)
    dossier = await backend.dossier(cid)
    # the whole history again, later, from another workstation: same outcomes
    # (the refused claim is still refused, though the item is closed by now)
    clock.advance(3600)
    assert [await outcome(peer, o) for o in history] == first
    assert await backend.events(cid) == events
    assert await backend.dossier(cid) == dossier
    assert await backend.snapshot(QueueName) == []
    assert len(events) == len(history) - 2


# ---------------------------------------------------------------------------- events


async def test_one_event_per_applied_operation_with_its_actor(
    backend: QueueBackend, clock: FakeClock
) -> None:
    d = make_dossier(1)
    plan: list[tuple[str, Actor, dict[str, Any], EventKind]] = [
        ("enqueue", ARM, {"dossier": d.to_dict()}, EventKind.ENQUEUED),
        ("claim", MRU, {}, EventKind.CLAIMED),
        ("decide", MRU, {"care_level": "R1"}, EventKind.DECIDED),
        ("transfer", MRU, {"to": "SNP"}, EventKind.TRANSFERRED),
        ("claim", MRL, {}, EventKind.CLAIMED),
        ("note", MRL, {"text": "ok"}, EventKind.MEDICAL_NOTE),
        ("close", MRL, {}, EventKind.CLOSED),
    ]
    times = []
    for kind, actor, data, _ in plan:
        times.append(clock.advance(7))
        await backend.apply(op(kind, d.case_id, actor, times[-1], **data))
        if kind == "claim":  # refused operations leave no event
            other = MRU2 if actor.role == "MRU" else MRL2  # a colleague of the same queue
            with pytest.raises(ClaimConflict):
                await backend.apply(op("claim", d.case_id, other, clock()))
            with pytest.raises(NotHolder):
                await backend.apply(op("release", d.case_id, other, clock()))
            with pytest.raises(QueueError) as refused:  # a role from another queue
                await backend.apply(op("claim", d.case_id, DENT, clock()))
            assert refused.value.code == "forbidden"
    events = await backend.events(d.case_id)
    assert [(e.kind, e.actor, e.at, e.dossier_id) for e in events] == [
        (kind, actor, at, d.case_id) for (_, actor, _, kind), at in zip(plan, times, strict=True)
    ]
    seqs = [e.seq for e in events]
    assert all(s is not None for s in seqs) and seqs == sorted(seqs)


async def test_events_are_append_only(
    backend: QueueBackend, store: Store, clock: FakeClock
) -> None:
    d = make_dossier(1)
    await enqueue(backend, clock, d)
    await claim(backend, clock, d.case_id)
    before = await backend.events(d.case_id)
    assert store.tamper("UPDATE") is not None, "an UPDATE of events was accepted"
    assert store.tamper("DELETE") is not None, "a DELETE of events was accepted"
    assert await backend.events(d.case_id) == before


async def test_the_log_is_hash_chained_and_breaks_are_reported(
    backend: QueueBackend, store: Store, clock: FakeClock
) -> None:
    """Each event carries the hash of the previous event of its dossier;
    ``verify_log`` finds an event deleted, altered, or cut off the end by
    someone who disabled the append-only guard (a schema owner)."""
    if backend.name.startswith("remote"):
        pytest.skip(
            "by design: tampering needs the store's owner (the server's database, "
            "not reachable from a workstation; its RemoteBackend refuses verify_log); "
            "covered by the sqlite and postgres params"
        )
    a, b, c, e = make_dossier(1), make_dossier(2), make_dossier(3), make_dossier(4)
    for d in (a, b, c, e):
        await enqueue(backend, clock, d)
        await claim(backend, clock, d.case_id)
        await backend.apply(op("release", d.case_id, MRU, clock.advance(1), reason="pause"))
    await backend.expire(clock.advance(1))  # nothing to expire: no event
    log = await backend.events(a.case_id)
    assert [ev.prev_hash for ev in log] == ["", log[0].hash, log[1].hash]
    assert all(len(ev.hash) == 64 for ev in log) and len({ev.hash for ev in log}) == 3
    assert await backend.verify_log() == []

    middle = (await backend.events(b.case_id))[1]
    store.unguarded(f"DELETE FROM {{events}} WHERE seq = {middle.seq}")
    altered = (await backend.events(c.case_id))[1]
    store.unguarded(f"UPDATE {{events}} SET operator = 'dr.someone.else' WHERE seq = {altered.seq}")
    last = (await backend.events(e.case_id))[-1]
    store.unguarded(f"DELETE FROM {{events}} WHERE seq = {last.seq}")

    breaks = await backend.verify_log()
    found = {(x.case_id, x.seq) for x in breaks}
    after_middle = (await backend.events(b.case_id))[1]
    assert (b.case_id, after_middle.seq) in found  # its predecessor is gone
    assert (c.case_id, altered.seq) in found  # content changed
    assert (e.case_id, None) in found  # the end of the log is gone
    assert not any(x.case_id == a.case_id for x in breaks)
    assert all(x.what_fr for x in breaks)


async def test_leases_are_bounded(backend: QueueBackend, clock: FakeClock) -> None:
    """A lease is finite, positive and at most MAX_LEASE_S: a client once sent
    3e9 seconds and held an item for a century.  The same rule through the
    room server (refused, never cut); a number JSON cannot carry (inf, NaN)
    is refused by the remote backend before the wire, with its own words."""
    from sas_desk.services.queues.api import MAX_LEASE_S

    d = make_dossier(1)
    await enqueue(backend, clock, d)
    for lease in (3e9, float("inf"), float("nan"), MAX_LEASE_S + 1, 0, -1, "60"):
        with pytest.raises(QueueError) as refused:
            await backend.apply(op("claim", d.case_id, MRU, clock(), lease_s=lease))
        assert refused.value.code == "invalid"
        json_cannot = isinstance(lease, float) and not math.isfinite(lease)
        if not (backend.name.startswith("remote") and json_cannot):
            assert "secondes" in refused.value.message_fr
        with pytest.raises(QueueError) as refused:
            await backend.apply(
                op("reassign", d.case_id, SUP, clock(), to_workstation="P", lease_s=lease)
            )
        assert refused.value.code == "invalid"
    item = await claim(backend, clock, d.case_id, lease_s=MAX_LEASE_S)
    assert item.claim is not None
    assert item.claim.expires_at == clock() + timedelta(seconds=MAX_LEASE_S)
    for lease in (3e9, float("inf"), 0):
        with pytest.raises(QueueError) as refused:
            await backend.renew(MRU.workstation, clock(), lease)
        assert refused.value.code == "invalid"
    (shown,) = await backend.snapshot([QueueName.AMU])
    assert shown.claim == item.claim


async def test_motive_label_falls_back_to_the_code_list(
    backend: QueueBackend, clock: FakeClock
) -> None:
    from sas_desk.models.codes import codelist

    d = make_dossier(1, motive=("M01.03", ""))
    item = await enqueue(backend, clock, d)
    assert item.motive_label == codelist("motive").label("M01.03") != ""


# ---------------------------------------------------------------------------- one dossier log


async def test_orientations_go_into_the_dossier_log(
    backend: QueueBackend, peer: QueueBackend, clock: FakeClock
) -> None:
    """A booking (OSNP) and a dental orientation (DENT) are events of the
    server log, seen from any workstation; only the roles that orient, in
    their queues, and not while another workstation holds the item."""
    d = make_dossier(1, branch=Branch.SNP)
    await enqueue(backend, clock, d)
    await claim(backend, clock, d.case_id, MRL)
    await backend.apply(op("request_booking", d.case_id, MRL, clock()))
    booking = {
        "orientation": "booking",
        "text": "RDV 15/03 09:00 — Dr Martin",
        "details": {"slot_id": "s1", "start": "2026-03-15T09:00:00+01:00", "modes": ["CAB"]},
    }
    refusals = [
        (ARM, booking, "forbidden"),  # an ARM does not orient
        (DENT, {**booking, "orientation": "dental"}, "forbidden"),  # not its queue
        (OSNP, {**booking, "orientation": "dental"}, "forbidden"),  # not a dentist
        (OSNP, {**booking, "orientation": "taxi"}, "invalid"),
        (OSNP, {**booking, "text": "  "}, "invalid"),
        (OSNP, {**booking, "details": {"nested": {"a": 1}}}, "invalid"),
        (OSNP, {**booking, "details": {"pain": float("nan")}}, "invalid"),
    ]
    for actor, data, code in refusals:
        with pytest.raises(QueueError) as refused:
            await backend.apply(op("orient", d.case_id, actor, clock(), **data))
        assert refused.value.code == code, (actor.role, data)
    await claim(peer, clock, d.case_id, OSNP)
    colleague = Actor("OSNP", "osnp.autre", "POSTE-08")
    with pytest.raises(NotHolder):  # someone else holds it
        await backend.apply(op("orient", d.case_id, colleague, clock(), **booking))
    item = await peer.apply(op("orient", d.case_id, OSNP, clock.advance(5), **booking))
    assert (
        item is not None and item.claim is not None and item.claim.workstation == OSNP.workstation
    )
    last = (await backend.events(d.case_id))[-1]
    assert (last.kind, last.actor, last.data["text"], last.data["slot_id"]) == (
        EventKind.ORIENTED,
        OSNP,
        "RDV 15/03 09:00 — Dr Martin",
        "s1",
    )

    dental = make_dossier(2, branch=Branch.DENT)
    await enqueue(backend, clock, dental)
    data = {"orientation": "dental", "text": "Orientation dentaire : cabinet", "details": {}}
    item = await backend.apply(op("orient", dental.case_id, DENT, clock(), **data))  # unheld
    assert item is not None and item.claim is None
    (event,) = [e for e in await peer.events(dental.case_id) if e.kind is EventKind.DENTAL_ORIENTED]
    assert event.actor == DENT and event.data["orientation"] == "dental"
    assert await backend.verify_log() == []


async def test_an_arm_update_adds_a_note_and_reranks_the_item(
    backend: QueueBackend, peer: QueueBackend, clock: FakeClock
) -> None:
    """After transmission the ARM adds a note and/or a new priority: the
    dossier gets them, a P1 upgrade moves the item up its queue, and the
    event is flagged for the holder."""
    first, late = make_dossier(1, priority="P2"), make_dossier(2, priority="P3")
    await enqueue(backend, clock, first)
    clock.advance(30)
    await enqueue(backend, clock, late)
    await claim(peer, clock, late.case_id, MRU)
    for actor, data, code in [
        (MRU, {"note": "x"}, "forbidden"),
        (OSNP, {"note": "x"}, "forbidden"),
        (ARM, {}, "invalid"),
        (ARM, {"note": "  "}, "invalid"),
        (ARM, {"priority": "P3"}, "invalid"),  # unchanged: nothing to add
        (ARM, {"priority": "P9"}, "invalid"),
    ]:
        with pytest.raises(QueueError) as refused:
            await backend.apply(op("update", late.case_id, actor, clock(), **data))
        assert refused.value.code == code, (actor.role, data)
    at = clock.advance(10)
    item = await backend.apply(
        op("update", late.case_id, ARM, at, note=" le patient a fait un malaise ", priority="P1")
    )
    assert item is not None and item.priority == "P1"
    assert item.claim is not None and item.claim.workstation == MRU.workstation  # still held
    assert ids(await peer.snapshot([QueueName.AMU])) == [late.case_id, first.case_id]
    stored = await peer.dossier(late.case_id)
    assert stored is not None and stored.priority == "P1"
    assert stored.notes[-1].text == "le patient a fait un malaise"
    assert stored.notes[-1].operator == ARM.operator
    last = (await peer.events(late.case_id))[-1]
    assert (last.kind, last.actor, last.at) == (EventKind.UPDATED, ARM, at)
    assert last.data["highlight"] is True and last.data["upgrade"] is True
    assert (last.data["priority_from"], last.data["priority_to"]) == ("P3", "P1")
    item = await backend.apply(op("update", late.case_id, ARM, clock(), note="rappel : adresse"))
    assert item is not None and item.priority == "P1"
    await peer.apply(op("close", late.case_id, MRU, clock()))
    with pytest.raises(QueueError) as refused:
        await backend.apply(op("update", late.case_id, ARM, clock(), note="trop tard"))
    assert refused.value.code == "closed"


# ---------------------------------------------------------------------------- leases


async def test_renew_extends_only_the_given_workstation(
    backend: QueueBackend, peer: QueueBackend, clock: FakeClock
) -> None:
    a, b, c = make_dossier(1), make_dossier(2), make_dossier(3)
    for x in (a, b, c):
        await enqueue(backend, clock, x)
    await claim(backend, clock, a.case_id)
    await claim(backend, clock, b.case_id)
    other = await claim(peer, clock, c.case_id, MRU2)
    at = clock.advance(60)
    assert await backend.renew(MRU.workstation, at, 120) == 2
    assert await backend.renew("POSTE-INCONNU", at, 120) == 0
    got = {i.case_id: i.claim for i in await backend.snapshot([QueueName.AMU])}
    assert got[a.case_id] is not None and got[a.case_id].expires_at == at + timedelta(seconds=120)
    assert got[b.case_id] is not None and got[b.case_id].expires_at == at + timedelta(seconds=120)
    assert got[c.case_id] == other.claim
    clock.advance(100)  # beyond the first lease, within the renewed one
    with pytest.raises(ClaimConflict):
        await claim(peer, clock, a.case_id, MRU2)


async def test_expire_returns_silent_claims_to_the_head(
    backend: QueueBackend, peer: QueueBackend, clock: FakeClock
) -> None:
    a, b, c = make_dossier(1), make_dossier(2), make_dossier(3)
    for x in (a, b, c):
        await enqueue(backend, clock, x)
        clock.advance(10)
    await claim(backend, clock, a.case_id, lease_s=60)
    kept = await claim(peer, clock, c.case_id, MRU2, lease_s=600)
    assert await backend.expire(clock.advance(59)) == []
    at = clock.advance(2)
    expired = await peer.expire(at)
    assert [(i.case_id, i.status, i.claim) for i in expired] == [
        (a.case_id, ItemStatus.WAITING, None)
    ]
    assert expired[0].waiting_since == T0
    assert expired[0].alert == f"Prise en charge expirée : poste {MRU.workstation} muet"
    shown = await backend.snapshot([QueueName.AMU])
    assert ids(shown) == [a.case_id, b.case_id, c.case_id]
    assert shown[0] == expired[0] and shown[2] == kept
    events = await backend.events(a.case_id)
    assert [e.kind for e in events] == [
        EventKind.ENQUEUED,
        EventKind.CLAIMED,
        EventKind.LEASE_EXPIRED,
    ]
    assert events[-1].at == at and events[-1].actor.workstation == MRU.workstation
    # running it again (any workstation) changes nothing
    assert await backend.expire(at) == []
    assert await peer.expire(clock.advance(1)) == []
    assert len(await backend.events(a.case_id)) == 3
    assert await backend.snapshot([QueueName.AMU]) == shown
    with pytest.raises(NotHolder):  # the silent workstation lost it
        await backend.apply(op("release", a.case_id, MRU, clock()))


# ---------------------------------------------------------------------------- watch


async def test_watch_starts_with_a_reset_then_shows_another_workstation_quickly(
    backend: QueueBackend, peer: QueueBackend, clock: FakeClock
) -> None:
    """Another workstation's change shows in the watch by the backend's
    notification (SQLite: the change spy, with the watch's own safety poll
    set to an hour; PostgreSQL: LISTEN/NOTIFY; the room server: its event
    stream) — seen within the wait's timeout.  The latencies are printed;
    how fast is measured by bench/queues.py, not asserted by a test."""
    if isinstance(backend, SqliteBackend):
        backend._idle_poll = 3600.0  # only the change spy can bring the change
    loop = asyncio.get_running_loop()
    a, b, c = make_dossier(1, priority="P3"), make_dossier(2, priority="P0"), make_dossier(3)
    for x in (a, b, c):
        await enqueue(backend, clock, x)
    expected = await backend.snapshot([QueueName.AMU])
    async with contextlib.aclosing(backend.watch([QueueName.AMU])) as changes:
        mirror = Mirror(changes)
        first = await mirror.next()
        assert first.reset and list(first.items) == expected and first.removed == ()
        # the panel is already waiting on the watch when the other workstation acts
        latencies = []
        for case_id in (b.case_id, c.case_id, a.case_id):
            waiting = asyncio.create_task(mirror.until(held_by(case_id, MRU2), timeout=2))
            start = loop.time()
            await claim(peer, clock, case_id, MRU2)
            latencies.append(await waiting - start)
        d = make_dossier(4, priority="P1")
        waiting = asyncio.create_task(mirror.until(lambda items: d.case_id in items, timeout=2))
        start = loop.time()
        await peer.apply(op("enqueue", d.case_id, ARM, clock(), dossier=d.to_dict()))
        latencies.append(await waiting - start)
    print(
        f"{backend.name}: watch latency across instances (ms):",
        [round(x * 1000) for x in latencies],
    )
    assert mirror.items == {i.case_id: i for i in await backend.snapshot([QueueName.AMU])}


async def test_watch_reports_items_leaving_the_watched_queues(
    backend: QueueBackend, peer: QueueBackend, clock: FakeClock
) -> None:
    a, b, c = make_dossier(1), make_dossier(2), make_dossier(3, branch=Branch.SNP)
    for x in (a, b):
        await enqueue(backend, clock, x)
    async with (
        contextlib.aclosing(backend.watch([QueueName.AMU])) as amu_changes,
        contextlib.aclosing(backend.watch([QueueName.AMU, QueueName.SNP])) as both_changes,
    ):
        amu, both = Mirror(amu_changes), Mirror(both_changes)
        assert (await amu.next()).reset and (await both.next()).reset
        assert set(amu.items) == {a.case_id, b.case_id} == set(both.items)
        # a dossier for another queue: never shown in the AMU panel
        await enqueue(peer, clock, c)
        await claim(peer, clock, a.case_id, MRU2)
        await amu.until(held_by(a.case_id, MRU2))
        assert c.case_id not in amu.items
        assert all(c.case_id not in s.items and c.case_id not in s.removed for s in amu.sets)
        await both.until(lambda items: c.case_id in items and held_by(a.case_id, MRU2)(items))
        # closed: removed everywhere
        await peer.apply(op("close", a.case_id, MRU2, clock()))
        await amu.until(lambda items: a.case_id not in items)
        await both.until(lambda items: a.case_id not in items)
        assert any(a.case_id in s.removed for s in amu.sets)
        assert any(a.case_id in s.removed for s in both.sets)
        # transferred to SNP: removed from AMU, still shown where SNP is watched
        await claim(peer, clock, b.case_id, MRU2)
        await peer.apply(op("transfer", b.case_id, MRU2, clock(), to="SNP"))
        await amu.until(lambda items: b.case_id not in items)
        await both.until(
            lambda items: b.case_id in items and items[b.case_id].queue is QueueName.SNP
        )
        assert any(b.case_id in s.removed for s in amu.sets)
        assert not any(b.case_id in s.removed for s in both.sets)
    assert amu.items == {}
    assert both.items == {i.case_id: i for i in await backend.snapshot(QueueName)}


async def test_watch_ends_when_the_backend_closes(store: Store, clock: FakeClock) -> None:
    extra = await store.instance()
    changes = extra.watch([QueueName.AMU])
    assert (await asyncio.wait_for(anext(changes), 5)).reset
    pending = asyncio.ensure_future(anext(changes))
    await extra.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, 5)


# ---------------------------------------------------------------------------- concurrency


async def test_racing_claims_have_exactly_one_winner(
    backend: QueueBackend, peer: QueueBackend, clock: FakeClock
) -> None:
    dossiers = [make_dossier(n) for n in range(1, 31)]
    for x in dossiers:
        await enqueue(backend, clock, x)
    winners = {}
    for x in dossiers:
        results = await asyncio.gather(
            backend.apply(op("claim", x.case_id, MRU, clock())),
            peer.apply(op("claim", x.case_id, MRU2, clock())),
            return_exceptions=True,
        )
        won = [r for r in results if isinstance(r, QueueItem)]
        lost = [r for r in results if isinstance(r, ClaimConflict)]
        assert len(won) == 1 and len(lost) == 1, results
        assert won[0].claim is not None and lost[0].claim == won[0].claim
        winners[x.case_id] = won[0].claim.workstation
    shown = await peer.snapshot([QueueName.AMU])
    assert {i.case_id: i.claim.workstation if i.claim else None for i in shown} == winners
    for x in dossiers[:5]:
        kinds = [e.kind for e in await backend.events(x.case_id)]
        assert kinds == [EventKind.ENQUEUED, EventKind.CLAIMED]
    print(f"{backend.name}: first instance won {list(winners.values()).count(MRU.workstation)}/30")
