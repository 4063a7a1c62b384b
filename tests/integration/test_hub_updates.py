"""Updates as the regulator works a shared case (issue #16): once a dossier
was shared with a partner, each note and decision the room applies sends that
partner an RS-EDA-MAJ through the durable outbox — once, in order, valid
against the national schemas — on the machine's real RabbitMQ."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sas_desk.models.dossier import Branch, EventKind
from sas_desk.services.hub.updates import SharedCaseUpdates
from sas_desk.services.queues.client import Outbox, QueueClient
from sas_desk.services.queues.sqlite import SqliteBackend
from tests.helpers.board_room import ARM, MRU, dossier
from tests.helpers.rabbit import until
from tests.integration.test_hub_agent import (
    ME,
    PARTNER,
    Clock,
    broker,  # noqa: F401 (fixture)
    close_node,
    full_errors,
    make_node,
    message_of,
)

pytestmark = [pytest.mark.reference, pytest.mark.asyncio]


def client(path: Path, actor: object, clock: Clock) -> QueueClient:
    return QueueClient(
        SqliteBackend(path / "queues.sqlite", now=clock.now, poll_interval=0.02),
        Outbox(path / f"outbox-{actor.workstation}.sqlite"),  # type: ignore[attr-defined]
        actor,  # type: ignore[arg-type]
        now=clock.now,
        retry_delay=0.05,
        renew_s=3600,
    )


async def test_note_and_decision_on_a_shared_case_reach_the_partner_once_in_order(
    broker: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    clock = Clock()
    me = await make_node(tmp_path / "me", ME, broker, clock)
    partner = await make_node(tmp_path / "partner", PARTNER, broker, clock)
    (tmp_path / "room").mkdir()
    arm, mru = client(tmp_path / "room", ARM, clock), client(tmp_path / "room", MRU, clock)
    await arm.start()
    await mru.start()
    try:
        d = dossier("AMUOK", Branch.AMU, "P2", clock.now(), ("M01.00", "Douleur thoracique"))
        await arm.enqueue(d)
        await me.processor.cases.create(d, f"{ME}_local", ME)
        await me.processor.cases.flush()
        updates = SharedCaseUpdates(me.processor, mru.dossier, me.agent.wake)
        mru.on_applied(updates.operation_applied)

        # before it is shared, the regulator's work goes nowhere
        await mru.submit(mru.operation("claim", d.case_id, lease_s=900))
        await mru.submit(mru.operation("note", d.case_id, text="Appel du médecin traitant"))
        await updates.idle()
        assert me.store.sync.ledger(d.case_id) == []

        shared = await me.processor.share_case(d.case_id, PARTNER)
        me.agent.wake()
        await until(
            lambda: getattr(me.store.sync.outbound(shared), "state", "") == "acknowledged",
            what="the partner's RC-REF of the RS-EDA",
        )

        # a note: one RS-EDA-MAJ with what the partner lacks — the RS-EDA left
        # from this workstation's copy, without the note made in the room before
        await mru.submit(mru.operation("note", d.case_id, text="Douleur irradiant au bras"))
        await updates.idle()
        # a decision: a second one, with the decision and the care level only
        await mru.submit(
            mru.operation(
                "decide", d.case_id, care_level="R2", decisions=[{"decision_type": "CONSEIL"}]
            )
        )
        await updates.idle()
        # the same change seen again (a retry, a second listener): nothing more
        assert await me.processor.send_updates(d.case_id, await mru.dossier(d.case_id)) == []

        rows = [r for r in me.store.sync.ledger(d.case_id) if r.model == "RS-EDA-MAJ"]
        assert len(rows) == 2
        await until(
            lambda: all(
                getattr(me.store.sync.outbound(r.distribution_id), "state", "") == "acknowledged"
                for r in rows
            ),
            what="the partner's RC-REF of both updates",
        )
        bodies = []
        for row in rows:
            envelope = json.loads(row.envelope)
            assert full_errors(envelope) == []
            assert envelope["descriptor"]["explicitAddress"]["explicitAddressValue"] == PARTNER
            bodies.append(message_of(envelope)["createCaseHealthUpdate"])
        first, second = bodies
        assert [n["freetext"] for n in first["medicalNote"]] == [
            "Appel du médecin traitant",
            "Douleur irradiant au bras",
        ]
        assert "decision" not in first
        assert [x["decisionType"] for x in second["decision"]] == ["CONSEIL"]
        assert second["qualification"]["details"] == {"careLevel": "R2"}
        assert "medicalNote" not in second

        # the partner applied them in the order sent, each once
        received = [
            (row["distribution_id"], row["outcome"])
            for row in reversed(partner.store.sync.inbound())
            if row["model"] == "RS-EDA-MAJ"
        ]
        assert received == [(r.distribution_id, "updated") for r in rows]
        theirs = await partner.dossier(d.case_id)
        assert theirs is not None
        texts = [n.text for n in theirs.notes if n.medical]
        assert texts == ["Appel du médecin traitant", "Douleur irradiant au bras"]
        assert [x.decision_type for x in theirs.decisions] == ["CONSEIL"]
        assert theirs.care_level == "R2"

        # on our dossier: one HUB_SHARED line per message, saying what it carried
        events = await me.journal.events(d.case_id)
        sent = [e.data for e in events if e.kind is EventKind.HUB_SHARED]
        assert [(s["model"], s["ref"]) for s in sent] == [("RS-EDA", shared)] + [
            ("RS-EDA-MAJ", r.distribution_id) for r in rows
        ]
        assert sent[1]["text"] == "Mise à jour envoyée : 2 notes médicales"
        assert sent[2]["text"] == "Mise à jour envoyée : Niveau de soins R2, Décision CONSEIL"
    finally:
        await mru.stop()
        await arm.stop()
        await close_node(partner)
        await close_node(me)
