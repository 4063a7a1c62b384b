"""The Hub Santé agent on the machine's real RabbitMQ, through the local hub
simulator (its dispatcher routes by ``explicitAddressValue`` and checks the
sender).  Each test has a vhost of its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import aio_pika
import pytest
import pytest_asyncio

from sas_desk.models import hub
from sas_desk.models.dossier import Dossier, EventKind
from sas_desk.models.rseda import from_rseda
from sas_desk.services.hub.agent import HubAgent
from sas_desk.services.hub.cases import JournalCases
from sas_desk.services.hub.processor import HubProcessor, Verdict
from sas_desk.services.hub.settings import HubSettings
from sas_desk.services.hub.store import AsyncHubStore
from sas_desk.services.journal.service import Journal
from sas_desk.simulator.hub import HubSimulator
from tests.helpers.rabbit import close_connections, own_vhost, until
from tests.reference import load_example, schema_errors, schema_validator

pytestmark = [pytest.mark.reference, pytest.mark.asyncio]

ME, PARTNER, SAS = "fr.health.samu690", "fr.health.samu380", "fr.health.ptfsas"
EDA = "RS-EDA_partageDossier_DidierMorel.01a.json"
MAJ = "RS-EDA-MAJ_partageDossier_MonsieurX.02b.json"
RDV = "RS-SAS-RDV_appointment_PS.01.json"


class Clock:
    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now().astimezone().replace(microsecond=0) + self.offset


@dataclass
class Node:
    """One centre: journal + hub store + processor + agent (running)."""

    client_id: str
    settings: HubSettings
    journal: Journal
    store: AsyncHubStore
    processor: HubProcessor
    agent: HubAgent
    task: asyncio.Task[None] | None = None
    seen: list[Verdict] = field(default_factory=list)

    async def dossier(self, case_id: str) -> Dossier | None:
        return await self.journal.load(case_id)

    def ledger(self) -> list[Any]:
        return self.store.sync.ledger()


async def make_node(
    data_dir: Path, client_id: str, url: str, clock: Clock, start: bool = True
) -> Node:
    settings = HubSettings(url=url, client_id=client_id, partners=(PARTNER,))
    journal = Journal(data_dir / "journal.sqlite", now=clock.now)
    await journal.open()
    store = AsyncHubStore(data_dir / "hub.sqlite")
    await store.open()
    processor = HubProcessor(settings, store, JournalCases(journal, clock.now), clock.now)
    node = Node(client_id, settings, journal, store, processor, None)  # type: ignore[arg-type]
    node.agent = HubAgent(settings, processor, backoff=(0.05, 0.5), on_processed=node.seen.append)
    if start:
        node.task = asyncio.create_task(node.agent.run())
        await until(lambda: node.agent.status.connected, what=f"{client_id} connected")
    return node


async def close_node(node: Node) -> None:
    await node.agent.stop()
    if node.task is not None:
        with contextlib.suppress(asyncio.CancelledError):
            await node.task
    await node.store.close()
    await node.journal.close()


@pytest_asyncio.fixture
async def broker() -> AsyncIterator[str]:
    with own_vhost() as url:
        simulator = HubSimulator(url, [ME, PARTNER, SAS])
        await simulator.start()
        try:
            yield url
        finally:
            await simulator.stop()


class Partner:
    """A bare AMQP client for another centre or the SAS platform."""

    def __init__(self, url: str, client_id: str) -> None:
        self.url, self.client_id = url, client_id

    async def __aenter__(self) -> Partner:
        self.connection = await aio_pika.connect(self.url)
        self.channel = await self.connection.channel()
        self.exchange = await self.channel.get_exchange("hubsante")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()

    def envelope(self, body: dict[str, Any], to: str = ME, **kw: Any) -> dict[str, Any]:
        now = datetime.now().astimezone()
        return hub.build_envelope(
            sender=self.client_id,
            recipient=to,
            body=body,
            sent_at=now,
            expires_at=now + timedelta(hours=1),
            **kw,
        )

    async def publish(self, envelope: dict[str, Any]) -> None:
        await self.exchange.publish(
            aio_pika.Message(
                json.dumps(envelope).encode(),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=self.client_id,
        )

    async def drain(self, suffix: str, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Exactly ``count`` messages from our ``.suffix`` queue (then checks
        nothing more arrives within 0.3 s)."""
        queue = await self.channel.get_queue(f"{self.client_id}.{suffix}")
        out: list[dict[str, Any]] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while len(out) < count:
            message = await queue.get(fail=False, no_ack=True)
            if message is None:
                assert asyncio.get_running_loop().time() < deadline, f"{len(out)}/{count} {suffix}"
                await asyncio.sleep(0.02)
                continue
            out.append(json.loads(message.body))
        await asyncio.sleep(0.3)
        extra = await queue.get(fail=False, no_ack=True)
        assert extra is None, f"unexpected extra message: {extra.body[:200]!r}"
        return out

    async def drain_distinct(
        self, suffix: str, count: int, timeout: float = 15.0
    ) -> list[dict[str, Any]]:
        """``count`` messages with distinct distributionIDs; transport
        duplicates (same distributionID) are dropped, anything else extra fails."""
        queue = await self.channel.get_queue(f"{self.client_id}.{suffix}")
        seen: list[dict[str, Any]] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while len(_distinct_by_id(seen)) < count:
            message = await queue.get(fail=False, no_ack=True)
            if message is None:
                assert asyncio.get_running_loop().time() < deadline, f"{len(seen)}/{count}"
                await asyncio.sleep(0.02)
                continue
            seen.append(json.loads(message.body))
        await asyncio.sleep(0.3)
        while (message := await queue.get(fail=False, no_ack=True)) is not None:
            seen.append(json.loads(message.body))
        distinct = _distinct_by_id(seen)
        assert len(distinct) == count, f"{len(distinct)} distinct, {count} expected"
        return distinct


async def kinds_when(node: Node, case_id: str, count: int) -> list[EventKind]:
    """The dossier's event kinds once it has ``count`` events (15 s at most)."""
    for _ in range(750):
        kinds = [e.kind for e in await node.journal.events(case_id)]
        if len(kinds) >= count:
            return kinds
        await asyncio.sleep(0.02)
    raise AssertionError(f"{case_id}: {kinds}, expected {count} events")


def _distinct_by_id(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for m in messages:
        out.setdefault(m["distributionID"], m)
    return list(out.values())


def full_errors(envelope: dict[str, Any]) -> list[str]:
    return schema_errors(schema_validator("EDXL-DE-full.schema.json"), envelope)


def message_of(envelope: dict[str, Any]) -> dict[str, Any]:
    msg: dict[str, Any] = envelope["content"][0]["jsonContent"]["embeddedJsonContent"]["message"]
    return msg


# --------------------------------------------------------------------------- tests


async def test_official_examples_are_received_processed_and_acknowledged(
    broker: str, tmp_path: Path
) -> None:
    node = await make_node(tmp_path / "me", ME, broker, Clock())
    try:
        async with Partner(broker, PARTNER) as samu, Partner(broker, SAS) as sas:
            eda = samu.envelope(load_example(EDA))
            rdv = sas.envelope(load_example(RDV))
            maj = samu.envelope(load_example(MAJ))  # a case we do not know
            dr = samu.envelope(load_example("RS-DR_partageRessources_LolaHalimi.03a.json"))
            for partner, env in ((samu, eda), (sas, rdv), (samu, maj), (samu, dr)):
                await partner.publish(env)
            await until(lambda: len(node.seen) == 4, what="4 messages processed")
            outcomes = {v.distribution_id: v.outcome for v in node.seen}
            assert outcomes == {
                eda["distributionID"]: "integrated",
                rdv["distributionID"]: "appointment_created",
                maj["distributionID"]: "refused",
                dr["distributionID"]: "stored",
            }
            case_id = load_example(EDA)["createCaseHealth"]["caseId"]
            dossier = await node.dossier(case_id)
            assert dossier is not None and dossier.owner == "fr.health.samu770"
            events = await node.journal.events(case_id)
            assert [e.kind for e in events] == [EventKind.IMPORTED]
            assert events[0].data["distribution_id"] == eda["distributionID"]
            appts = node.store.sync.appointments(unattached=True)
            assert [a.appointment_id for a in appts] == [
                load_example(RDV)["appointment"]["appointmentId"]
            ]
            # answers: RC-REF INTEGRE for the case and the DR (RECU), error 702 + refused ack
            acks = await samu.drain("ack", 3)
            errors = await samu.drain("info", 1)
            sas_acks = await sas.drain("ack", 1)
            for env in (*acks, *errors, *sas_acks):
                assert full_errors(env) == []
                assert env["senderID"] == ME and env["distributionID"].startswith(ME + "_")
            steps = {
                message_of(a)["reference"]["distributionID"]: message_of(a)["reference"]
                for a in acks
            }
            assert steps[eda["distributionID"]] == {
                "distributionID": eda["distributionID"],
                "step": "INTEGRE",
            }
            assert steps[dr["distributionID"]]["step"] == "RECU"
            assert steps[maj["distributionID"]]["refused"] is True
            err = message_of(errors[0])["error"]
            assert err["errorCode"] == {"statusCode": 702, "statusString": "WRONG_MESSAGE_SEQUENCE"}
            assert err["referencedDistributionID"] == maj["distributionID"]
            assert (
                steps[maj["distributionID"]]["errorDistributionID"] == errors[0]["distributionID"]
            )
            assert message_of(sas_acks[0])["reference"]["step"] == "INTEGRE"
            # a person opens the dossier: RC-REF CONSULTE, once
            assert await node.processor.consulted(case_id) == [eda["distributionID"]]
            assert await node.processor.consulted(case_id) == []
            node.agent.wake()
            consulted = await samu.drain("ack", 1)
            assert message_of(consulted[0])["reference"] == {
                "distributionID": eda["distributionID"],
                "step": "CONSULTE",
            }
            assert full_errors(consulted[0]) == []
            # the ledger: every answer confirmed by the broker, nothing waits
            await until(lambda: {r.state for r in node.ledger()} == {"confirmed"}, what="confirms")
            assert len(node.ledger()) == 6
            # the case again: 701; the update of a known case: applied
            maj_known = samu.envelope(
                {
                    "createCaseHealthUpdate": {
                        "caseId": case_id,
                        "owner": ME,
                        "freetext": "prise en charge",
                    }
                }
            )
            await samu.publish(samu.envelope(load_example(EDA)))
            await samu.publish(maj_known)
            await until(lambda: len(node.seen) == 6, what="6 messages")
            assert [v.outcome for v in node.seen[4:]] == ["refused", "updated"]
            errors = await samu.drain("info", 1)
            assert message_of(errors[0])["error"]["errorCode"]["statusCode"] == 701
            dossier = await node.dossier(case_id)
            assert dossier is not None and dossier.owner == ME
            assert [e.kind for e in await node.journal.events(case_id)][-1] is EventKind.HUB_UPDATE
    finally:
        await close_node(node)


async def test_duplicates_change_nothing(broker: str, tmp_path: Path) -> None:
    node = await make_node(tmp_path / "me", ME, broker, Clock())
    try:
        async with Partner(broker, SAS) as sas:
            rdv = sas.envelope(load_example(RDV))
            for _ in range(3):
                await sas.publish(rdv)
            await until(lambda: len(node.seen) == 3, what="3 deliveries")
            assert [v.outcome for v in node.seen] == [
                "appointment_created",
                "duplicate",
                "duplicate",
            ]
            assert len(await sas.drain("ack", 1)) == 1  # one RC-REF, not three
            # a second CreateAppointment for the same id (a new message): 409
            await sas.publish(sas.envelope(load_example(RDV)))
            await until(lambda: len(node.seen) == 4, what="4 deliveries")
            assert node.seen[3].outcome == "refused"
            err = message_of((await sas.drain("info", 1))[0])["error"]
            assert err["errorCode"] == {"statusCode": 409, "statusString": "CONFLICT"}
            # UpdateAppointment replaces the whole state; cancelled is an update
            update = load_example(RDV)
            update["appointment"].update(method="UpdateAppointment", status="cancelled")
            update["appointment"].pop("end")
            await sas.publish(sas.envelope(update))
            await until(lambda: len(node.seen) == 5, what="5 deliveries")
            assert node.seen[4].outcome == "appointment_updated"
            stored = node.store.sync.appointment(update["appointment"]["appointmentId"])
            assert stored is not None and stored.body == update["appointment"]
            history = node.store.sync.appointment_history(update["appointment"]["appointmentId"])
            assert [h[2] for h in history] == ["created", "updated"]
        rows = node.store.sync.inbound()
        assert len(rows) == 3 and {r["deliveries"] for r in rows} == {3, 1}
    finally:
        await close_node(node)


async def test_redelivery_after_the_agent_is_killed_between_persist_and_ack(
    broker: str, tmp_path: Path
) -> None:
    clock = Clock()
    first = await make_node(tmp_path / "me", ME, broker, clock)
    persisted = asyncio.Event()
    never = asyncio.Event()

    async def die_after_persist(todo: list[Any]) -> list[Verdict]:
        persisted.set()
        await never.wait()  # killed here: persisted, not processed, not acked
        raise AssertionError("unreachable")

    first.processor._apply_all = die_after_persist  # type: ignore[method-assign]
    async with Partner(broker, PARTNER) as samu:
        eda = samu.envelope(load_example(EDA))
        await samu.publish(eda)
        await asyncio.wait_for(persisted.wait(), 15)
        # kill: the task dies, the connection goes without a basic.ack
        assert first.task is not None
        first.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first.task
        connection = first.agent._connection
        if connection is not None:
            await connection.close()
        await first.store.close()
        await first.journal.close()

        second = await make_node(tmp_path / "me", ME, broker, clock)
        try:
            await until(lambda: len(second.seen) == 1, what="the redelivery")
            assert second.seen[0].outcome == "duplicate"  # recovered at start, then redelivered
            rows = second.store.sync.inbound()
            assert [(r["state"], r["outcome"], r["deliveries"]) for r in rows] == [
                ("done", "integrated", 2)
            ]
            case_id = load_example(EDA)["createCaseHealth"]["caseId"]
            assert [e.kind for e in await second.journal.events(case_id)] == [EventKind.IMPORTED]
            acks = await samu.drain("ack", 1)  # exactly one RC-REF
            assert message_of(acks[0])["reference"]["distributionID"] == eda["distributionID"]
        finally:
            await close_node(second)


async def test_a_shared_case_is_acknowledged_or_refused_and_expires_with_an_alarm(
    broker: str, tmp_path: Path
) -> None:
    clock = Clock()
    me = await make_node(tmp_path / "me", ME, broker, clock)
    partner = await make_node(tmp_path / "partner", PARTNER, broker, clock)
    try:
        dossier = from_rseda(load_example(EDA))
        await me.processor.cases.create(dossier, f"{ME}_local", ME)
        sent = await me.processor.share_case(dossier.case_id, PARTNER)
        me.agent.wake()
        await until(
            lambda: getattr(me.store.sync.outbound(sent), "state", "") == "acknowledged",
            what="the partner's RC-REF",
        )
        row = me.store.sync.outbound(sent)
        assert row is not None and row.step == "INTEGRE" and row.case_id == dossier.case_id
        assert full_errors(json.loads(row.envelope)) == []
        assert await partner.dossier(dossier.case_id) is not None
        kinds = await kinds_when(me, dossier.case_id, 3)
        assert kinds == [EventKind.IMPORTED, EventKind.HUB_SHARED, EventKind.HUB_ACK]
        # again: the partner has it → 701 on the dossier, refused in the ledger
        again = await me.processor.share_case(dossier.case_id, PARTNER)
        me.agent.wake()
        await until(
            lambda: getattr(me.store.sync.outbound(again), "state", "") == "error",
            what="error 701",
        )
        await kinds_when(me, dossier.case_id, 6)  # error + refused RC-REF
        events = await me.journal.events(dossier.case_id)
        errors = [e for e in events if e.kind is EventKind.HUB_ERROR]
        assert errors and errors[-1].data["code"] == 701
        # an unknown recipient: the hub answers 501, shown on the dossier
        lost = await me.processor.share_case(dossier.case_id, "fr.health.samu999")
        me.agent.wake()
        await until(
            lambda: getattr(me.store.sync.outbound(lost), "state", "") == "error", what="501"
        )
        await kinds_when(me, dossier.case_id, 8)
        events = await me.journal.events(dossier.case_id)
        assert [e.data["code"] for e in events if e.kind is EventKind.HUB_ERROR] == [701, 501]
        # nobody answers: the partner stops; past the expiry, an alarm
        await close_node(partner)
        silent = await me.processor.share_case(dossier.case_id, PARTNER)
        me.agent.wake()
        await until(lambda: getattr(me.store.sync.outbound(silent), "state", "") == "confirmed")
        clock.offset = timedelta(seconds=me.settings.expiry_for("RS-EDA") + 1)
        await until(lambda: getattr(me.store.sync.outbound(silent), "state", "") == "expired")
        row = me.store.sync.outbound(silent)
        assert row is not None and row.alarm
        alarms: list[Any] = []
        for _ in range(750):  # the alarm reaches the dossier's timeline
            events = await me.journal.events(dossier.case_id)
            alarms = [e for e in events if e.kind is EventKind.HUB_ALARM]
            if alarms:
                break
            await asyncio.sleep(0.02)
        assert [a.data["ref"] for a in alarms] == [silent], [e.kind for e in events]
        assert "téléphonez" in alarms[0].data["text"]
    finally:
        await close_node(me)


async def test_connection_closed_by_the_server_mid_burst_loses_and_duplicates_nothing(
    broker: str, tmp_path: Path
) -> None:
    clock = Clock()
    me = await make_node(tmp_path / "me", ME, broker, clock)
    try:
        async with Partner(broker, SAS) as sas:
            base = load_example(RDV)["appointment"]
            sent = []
            for n in range(200):
                body = {"appointment": {**base, "appointmentId": f"appt-{n:04d}"}}
                env = sas.envelope(body)
                sent.append(env["distributionID"])
                await sas.publish(env)
                if n == 60:
                    await until(lambda: len(me.seen) > 20, what="burst started")
                    assert close_connections(broker, "sas-desk hub") == 1
            await until(
                lambda: len(me.store.sync.appointments()) == 200, timeout=30, what="all stored"
            )
            await until(
                lambda: {r.state for r in me.ledger()} == {"confirmed"} and len(me.ledger()) == 200,
                timeout=30,
                what="200 RC-REF confirmed",
            )
            assert me.agent.connects >= 2  # it did reconnect
            acks = await sas.drain_distinct("ack", 200, timeout=30)
            refs = [message_of(a)["reference"]["distributionID"] for a in acks]
            # one RC-REF per message, none lost; an RC-REF whose confirm was lost
            # with the connection may travel twice with the same distributionID
            assert sorted(refs) == sorted(sent)
            rows = me.store.sync.inbound(1000)
            assert len(rows) == 200 and {r["outcome"] for r in rows} == {"appointment_created"}
    finally:
        await close_node(me)


async def test_the_local_hub_answers_every_error_code_to_the_sender(
    broker: str, tmp_path: Path
) -> None:
    async with Partner(broker, PARTNER) as samu:
        good = samu.envelope(load_example(EDA))

        async def raw(body: bytes, **props: Any) -> None:
            message = aio_pika.Message(body, **props)
            await samu.exchange.publish(message, routing_key=PARTNER)

        persistent = {"content_type": "application/json", "delivery_mode": 2}
        await raw(json.dumps(good).encode(), content_type="application/json", delivery_mode=1)
        await raw(json.dumps(good).encode(), content_type="text/plain", delivery_mode=2)
        await raw(b'{"distributionID": "fr.health.samu380_x", oops', **persistent)
        await raw(
            json.dumps(Partner(broker, SAS).envelope(load_example(EDA))).encode(), **persistent
        )
        broken = samu.envelope(load_example(EDA))
        broken.pop("descriptor")
        await raw(json.dumps(broken).encode(), **persistent)
        past = datetime.now().astimezone() - timedelta(hours=2)
        expired = hub.build_envelope(
            sender=PARTNER,
            recipient=ME,
            body=load_example(EDA),
            sent_at=past,
            expires_at=past + timedelta(hours=1),
        )
        await raw(json.dumps(expired).encode(), **persistent)
        await samu.publish(samu.envelope(load_example(EDA), to="fr.health.samu999"))
        # expires in the recipient's queue (nobody consumes it): dead letter → 500
        soon = datetime.now().astimezone()
        short = hub.build_envelope(
            sender=PARTNER,
            recipient=ME,
            body=load_example(EDA),
            sent_at=soon,
            expires_at=soon + timedelta(seconds=1),
        )
        await samu.publish(short)
        errors = await samu.drain("info", 8, timeout=20)
    by_code = {message_of(e)["error"]["errorCode"]["statusCode"]: e for e in errors}
    assert sorted(by_code) == [100, 101, 102, 200, 300, 400, 500, 501]
    for env in errors:
        assert env["senderID"] == hub.HUB_ID and env["distributionKind"] == "Error"
        assert full_errors(env) == []

    def ref(code: int) -> str:
        return str(message_of(by_code[code])["error"]["referencedDistributionID"])

    assert ref(100) == good["distributionID"] and ref(102) == "fr.health.samu380_x"
    assert ref(500) == short["distributionID"]
    assert "descriptor" in message_of(by_code[300])["error"]["errorCause"]


async def test_the_outbox_waits_for_the_broker_and_leaves_exactly_once(tmp_path: Path) -> None:
    """No broker at start (the vhost does not exist yet): the agent retries with
    backoff, the shared case waits in the durable outbox, and leaves once."""
    from tests.helpers import rabbit

    with rabbit.own_vhost() as probe:
        pass  # the broker is reachable (else unavailable()); the probe vhost is gone
    name = f"sasdesk-test-late-{uuid4().hex[:8]}"
    url = rabbit.vhost_url(name)
    clock = Clock()
    me = await make_node(tmp_path / "me", ME, url, clock, start=False)
    me.task = asyncio.create_task(me.agent.run())
    try:
        dossier = from_rseda(load_example(EDA))
        await me.processor.cases.create(dossier, f"{ME}_local", ME)
        sent = await me.processor.share_case(dossier.case_id, PARTNER)
        me.agent.wake()
        await until(lambda: bool(me.agent.status.last_error), what="a failed connection")
        assert not me.agent.status.connected
        assert "hors ligne" in me.agent.status.label_fr
        assert getattr(me.store.sync.outbound(sent), "state", "") == "queued"
        assert rabbit._ctl("add_vhost", name).returncode == 0
        rabbit._ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        simulator = HubSimulator(url, [ME, PARTNER])
        await simulator.start()
        try:
            await until(lambda: me.agent.status.connected, timeout=20, what="reconnection")
            await until(lambda: getattr(me.store.sync.outbound(sent), "state", "") == "confirmed")
            async with Partner(url, PARTNER) as samu:
                received = await samu.drain("message", 1)
            assert received[0]["distributionID"] == sent
            assert me.store.sync.outbound(sent).attempts == 1  # type: ignore[union-attr]
        finally:
            await simulator.stop()
    finally:
        await close_node(me)
        rabbit._ctl("delete_vhost", name)
    assert probe
