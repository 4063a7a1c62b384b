"""``sas-desk simulator hub --play-sas`` on the machine's real RabbitMQ (a
vhost of its own): a slot booked on the simulator's booking page becomes one
RS-SAS-RDV from the SAS platform, routed by the local hub to the centre, whose
agent stores it unattached and acknowledges it to the platform."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import httpx
import pytest
import pytest_asyncio

from sas_desk.models.appointment import parse_appointment
from sas_desk.simulator.hub import HubSimulator
from sas_desk.simulator.sas_player import PLATFORM_ID, SasPlayer, http_bookings
from sas_desk.simulator.server import Simulator
from tests.helpers.fhir_sim import fixed_clock, ps_query, resources
from tests.helpers.rabbit import own_vhost, until
from tests.integration.test_hub_agent import ME, PARTNER, Clock, close_node, full_errors, make_node

pytestmark = [pytest.mark.reference]


@pytest_asyncio.fixture
async def broker() -> AsyncIterator[str]:
    with own_vhost() as url:
        simulator = HubSimulator(url, [ME, PARTNER, PLATFORM_ID])
        await simulator.start()
        try:
            yield url
        finally:
            await simulator.stop()


@pytest.mark.asyncio
async def test_a_booking_becomes_one_appointment_for_the_centre(
    broker: str, tmp_path: Path
) -> None:
    node = await make_node(tmp_path, ME, broker, Clock())
    with Simulator(clock=fixed_clock) as sim:
        async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
            fx = (await http.get(sim.base_url + "/_meta/fixtures")).json()
            query = fx["base_url"] + "/Slot?" + ps_query([fx["single_place"]])
            slot = resources((await http.get(query)).json(), "Slot")[0]
            page = slot["comment"]
            booked = await http.post(page + "&origin=sas")
            assert booked.status_code == 200
        player = SasPlayer(broker, ME, http_bookings(sim.base_url), regulator="dr.martin")
        await player.start()
        try:
            (appointment_id,) = await player.run_once()
            assert await player.run_once() == []  # each booking once
            (envelope,) = player.published
            assert full_errors(envelope) == []  # EDXL-DE-full
            assert envelope["senderID"] == PLATFORM_ID
            await until(lambda: len(node.seen) == 1, what="appointment processed")
            (verdict,) = node.seen
            assert verdict.outcome == "appointment_created"
            stored = node.store.sync.appointment(appointment_id)
            assert stored is not None and stored.case_id is None  # waits to be attached
            a = parse_appointment({"appointment": stored.body})
            (record,) = sim.bookings
            assert a.practitioner_rpps == record["practitioner"] == fx["single_place"]
            assert a.start.isoformat() == record["start"][:19] + record["start"][23:]  # its offset
            assert a.regulator_id == "dr.martin" and a.status == "booked"
            given, family = record["practitioner_name"].split(" ", 1)
            assert a.practitioner_name == f"{given} {family.upper()}"  # named, not just an id
            # the centre acknowledged it to the platform (RC-REF on its .ack)
            connection = await aio_pika.connect(broker)
            try:
                channel = await connection.channel()
                queue = await channel.get_queue(f"{PLATFORM_ID}.ack")
                acks = []
                for _ in range(500):
                    message = await queue.get(fail=False, no_ack=True)
                    if message is not None:
                        acks.append(json.loads(message.body))
                        break
                    await asyncio.sleep(0.02)
                assert len(acks) == 1
                ref = acks[0]["content"][0]["jsonContent"]["embeddedJsonContent"]["message"]
                assert ref["reference"]["distributionID"] == envelope["distributionID"]
            finally:
                with contextlib.suppress(Exception):
                    await connection.close()
        finally:
            await player.stop()
            await close_node(node)


def test_play_sas_needs_a_centre_to_send_to() -> None:
    from tests.integration.test_hub_cli import run

    alone = run(
        "simulator",
        "hub",
        "--url",
        "amqp://guest:guest@127.0.0.1:5672/",
        "--play-sas",
        "--client",
        PLATFORM_ID,
    )
    assert alone.returncode == 2
    assert alone.stderr.strip() == "Simulateur Hub : --play-sas demande un --client centre."
