"""Room mode of the Hub Santé agent (issue #16): the agent runs inside the
room server ([hub] in its configuration), on the machine's real RabbitMQ.
An SAS appointment received by the server is listed for every workstation,
attached through the server API as the session's operator, and shows — with
its later changes — on the dossier's timeline seen from another workstation.
What only the agent writes (operation ``hub``) is refused from a workstation."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
import pytest_asyncio

from sas_desk.services.hub.appointments import LedgerRow, RoomAppointments, RoomSharing
from sas_desk.simulator.hub import HubSimulator
from tests.helpers.rabbit import own_vhost
from tests.helpers.room_server import RoomDatabase, RoomServer, run_async
from tests.integration.queues.support import ARM, MRL, MRU, MRU2, make_dossier
from tests.integration.test_hub_agent import (
    ME,
    PARTNER,
    RDV,
    SAS,
    Partner,
    full_errors,
    message_of,
)
from tests.reference import load_example
from tests.server.conftest import PASSWORD, Sessions
from tests.server.test_stats_api import session_as

pytestmark = [pytest.mark.reference, pytest.mark.asyncio]


@pytest_asyncio.fixture
async def hub_room(tmp_path: Path) -> AsyncIterator[tuple[RoomServer, str]]:
    with own_vhost() as url:
        simulator = HubSimulator(url, [ME, SAS, PARTNER])
        await simulator.start()
        db = RoomDatabase.sqlite(tmp_path)

        async def accounts() -> None:
            for actor in (ARM, MRU, MRU2, MRL):
                await db.add_user(actor.operator, [actor.role], PASSWORD, name=actor.operator)

        run_async(accounts())
        config = tmp_path / "server.toml"
        config.write_text(f'[hub]\nurl = "{url}"\nclient_id = "{ME}"\npartners = ["{PARTNER}"]\n')
        server = await asyncio.to_thread(RoomServer.start, db, tmp_path, config=config)
        try:
            yield server, url
        finally:
            code = await asyncio.to_thread(server.stop)
            await simulator.stop()
            assert code == 0, server.stderr_path.read_text()


async def polled(
    get: Callable[[], Any], ok: Callable[[Any], bool], what: str, timeout: float = 15.0
) -> Any:
    """The first answer of ``get()`` that ``ok`` accepts (fails after ``timeout``)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await get()
        if ok(value):
            return value
        assert asyncio.get_running_loop().time() < deadline, f"{what}: {value}"
        await asyncio.sleep(0.1)


async def op(client: httpx.AsyncClient, kind: str, case_id: str, **data: Any) -> httpx.Response:
    return await client.post(
        "/v1/ops", json={"op_id": uuid4().hex, "kind": kind, "case_id": case_id, "data": data}
    )


async def test_an_appointment_is_attached_through_the_server_and_seen_everywhere(
    hub_room: tuple[RoomServer, str],
) -> None:
    server, url = hub_room
    sessions = Sessions(server)
    try:
        arm, mru, mrl = await sessions(ARM), await sessions(MRU), await sessions(MRL)
        other = await sessions(MRU2)  # another workstation of the AMU queue
        d = make_dossier(700 + int(uuid4().int % 200))
        assert (await op(arm, "enqueue", d.case_id, dossier=d.to_dict())).status_code == 200

        # the SAS platform books: the server's agent receives and stores it
        body = load_example(RDV)
        appointment_id = body["appointment"]["appointmentId"]
        async with Partner(url, SAS) as sas:
            await sas.publish(sas.envelope(body))

            async def listed() -> list[dict[str, Any]]:
                r = await mrl.get("/v1/hub/appointments", params={"unattached": "true"})
                assert r.status_code == 200, r.text
                return list(r.json()["appointments"])

            rows = await polled(listed, lambda rows: len(rows) == 1, "appointment listed")
            assert rows[0]["appointmentId"] == appointment_id
            assert rows[0]["caseId"] is None
            assert rows[0]["body"]["practitioner"]["lastName"] == "MOREL"  # matched on the desk

            # the desk of POSTE-02 (Ctrl+Maj+A) lists it and attaches it as the
            # session's operator: the name it passes is not what counts
            desk = RoomAppointments(await session_as(server, MRU))
            try:
                waiting = await desk.unattached()
                assert [a.appointment_id for a in waiting] == [appointment_id]
                assert waiting[0].practitioner_name.endswith("MOREL")
                await desk.attach(appointment_id, d.case_id, by="quelqu.un.autre")
                with pytest.raises(ValueError, match="introuvable"):
                    await desk.attach("inconnu", d.case_id, by=MRU.operator)
            finally:
                await desk.session.close()
            assert await listed() == []
            r = await mru.post(  # a name in the body is ignored by the server too
                f"/v1/hub/appointments/{appointment_id}/attach",
                json={"case_id": d.case_id, "by": "quelqu.un.autre"},
            )
            assert r.status_code == 200, r.text
            assert r.json()["appointment"]["caseId"] == d.case_id

            # another workstation's timeline shows it
            async def events() -> list[dict[str, Any]]:
                r = await other.get(f"/v1/dossiers/{d.case_id}/events")
                assert r.status_code == 200, r.text
                return [e for e in r.json()["events"] if e["kind"] == "APPOINTMENT"]

            seen = await polled(events, lambda e: len(e) >= 1, "attached on the timeline")
            assert len(seen) == 1  # attached twice to the same dossier: one line
            assert seen[0]["data"]["attached_by"] == MRU.operator
            assert seen[0]["data"]["appointment_id"] == appointment_id
            assert "MOREL" in seen[0]["data"]["text"]

            # the platform cancels it: the change reaches the same timeline
            cancelled = copy.deepcopy(body)
            cancelled["appointment"].update(method="UpdateAppointment", status="cancelled")
            await sas.publish(sas.envelope(cancelled))
            seen = await polled(
                events, lambda e: e[-1]["data"]["status"] == "cancelled", "the cancellation"
            )
            assert len(seen) == 2

        # unknown appointment or dossier: 404 in French; a workstation cannot write
        # what only the agent writes
        r = await mru.post("/v1/hub/appointments/inconnu/attach", json={"case_id": d.case_id})
        assert r.status_code == 404 and "introuvable" in r.json()["message_fr"]
        r = await op(mru, "hub", d.case_id, event="APPOINTMENT", data={"text": "faux"})
        assert r.status_code == 403, r.text
        assert len(await events()) == 2
    finally:
        await sessions.close()


async def test_a_case_shared_through_the_server_sends_any_workstations_note(
    hub_room: tuple[RoomServer, str],
) -> None:
    server, url = hub_room
    sessions = Sessions(server)
    try:
        arm, other = await sessions(ARM), await sessions(MRU2)
        d = make_dossier(500 + int(uuid4().int % 200))
        assert (await op(arm, "enqueue", d.case_id, dossier=d.to_dict())).status_code == 200
        async with Partner(url, PARTNER) as partner:
            # « Partager avec… » of POSTE-02's desk, through the server
            desk = RoomSharing(await session_as(server, MRU))
            try:
                assert await desk.partners() == (PARTNER,)
                shared = await desk.share(d.case_id, PARTNER)
                with pytest.raises(ValueError, match="partenaire"):
                    await desk.share(d.case_id, "fr.health.samu999")
            finally:
                await desk.session.close()
            (eda,) = await partner.drain("message", 1)
            assert eda["distributionID"] == shared
            assert full_errors(eda) == []
            assert message_of(eda)["createCaseHealth"]["caseId"] == d.case_id

            # a note from another workstation of the room: the partner gets it
            r = await op(other, "note", d.case_id, text="Rappel : douleur en baisse")
            assert r.status_code == 200, r.text
            (maj,) = await partner.drain("message", 1)
            assert full_errors(maj) == []
            body = message_of(maj)["createCaseHealthUpdate"]
            assert [n["freetext"] for n in body["medicalNote"]] == ["Rappel : douleur en baisse"]

            # the dossier's ledger, through the server: the lines another desk shows
            other_desk = RoomSharing(await session_as(server, MRU2))
            try:
                rows = await other_desk.ledger(d.case_id)
            finally:
                await other_desk.session.close()
            assert rows == [  # nobody answers here: both wait for the partner's RC-REF
                LedgerRow(PARTNER, "RS-EDA", "confirmed"),
                LedgerRow(PARTNER, "RS-EDA-MAJ", "confirmed"),
            ]
            r = await other.get("/v1/hub/ledger", params={"case_id": d.case_id})
            assert r.status_code == 200, r.text
            rows = r.json()["messages"]
            assert [(m["model"], m["recipient"]) for m in rows] == [
                ("RS-EDA", PARTNER),
                ("RS-EDA-MAJ", PARTNER),
            ]
            assert [m["distributionID"] for m in rows] == [
                eda["distributionID"],
                maj["distributionID"],
            ]
    finally:
        await sessions.close()
