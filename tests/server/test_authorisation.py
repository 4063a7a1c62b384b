"""The read/do matrix of docs/room-api.md, over HTTP, allowed and refused,
through a real server process (SQLite and PostgreSQL).

A dossier is placed in each queue by one ARM; every other role then reads
each queue and each dossier: allowed exactly where the matrix says, 403 with
code ``forbidden`` and a French message elsewhere."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import uuid4

import httpx
import pytest

from sas_desk.models.dossier import Actor
from sas_desk.models.queue import QueueName
from tests.helpers.room_server import RoomServer, run_async
from tests.helpers.sse import SseReader
from tests.integration.queues.support import ARM, DENT, MRL, MRU, MRU2, OSNP, SUP, make_dossier
from tests.server.conftest import ARM2, client, token

READERS = (ARM2, MRU, MRL, OSNP, DENT, SUP)
# the matrix: which queues each role reads (snapshot, stream, dossiers in them)
MATRIX: dict[str, set[QueueName]] = {
    "ARM": {QueueName.ARM},
    "MRU": {QueueName.AMU},
    "MRL": {QueueName.SNP},
    "OSNP": {QueueName.OSNP},
    "DENT": {QueueName.DENT},
    "SUP": set(QueueName),
}
CELLS = [(actor, queue) for actor in READERS for queue in QueueName]


def cell_id(cell: object) -> str:
    if isinstance(cell, Actor):
        return cell.role
    return str(cell)


def enqueue(server: RoomServer, queue: QueueName) -> str:
    d = make_dossier(uuid4().int % 10**5)
    with client(server, ARM) as arm:
        r = arm.post(
            "/v1/ops",
            json={
                "op_id": uuid4().hex,
                "kind": "enqueue",
                "case_id": d.case_id,
                "data": {"dossier": d.to_dict(), "queue": queue.value},
            },
        )
    assert r.status_code == 200, r.text
    return str(d.case_id)


@pytest.fixture(scope="module")
def placed(room_server: RoomServer) -> dict[QueueName, str]:
    """One dossier waiting in each queue, transmitted by ARM (not ARM2)."""
    return {queue: enqueue(room_server, queue) for queue in QueueName}


@pytest.fixture
def http(room_server: RoomServer) -> Iterator[dict[Actor, httpx.Client]]:
    clients: dict[Actor, httpx.Client] = {}
    try:
        yield clients
    finally:
        for c in clients.values():
            c.close()


def as_(room_server: RoomServer, clients: dict[Actor, httpx.Client], actor: Actor) -> httpx.Client:
    if actor not in clients:
        clients[actor] = client(room_server, actor)
    return clients[actor]


def refused(r: httpx.Response) -> bool:
    if r.status_code != 403:
        return False
    body = r.json()
    assert body["code"] == "forbidden" and body["message_fr"], body
    return True


@pytest.mark.parametrize(("actor", "queue"), CELLS, ids=cell_id)
def test_queue_snapshot_and_stream_follow_the_matrix(
    room_server: RoomServer,
    http: dict[Actor, httpx.Client],
    placed: dict[QueueName, str],
    actor: Actor,
    queue: QueueName,
) -> None:
    c = as_(room_server, http, actor)
    allowed = queue in MATRIX[actor.role]
    snap = c.get(f"/v1/queues/{queue.value}")
    if allowed:
        assert snap.status_code == 200, snap.text
        assert placed[queue] in {i["case_id"] for i in snap.json()["items"]}
    else:
        assert refused(snap), snap.text
    if not allowed:  # an allowed stream would stay open: its content is tested below
        assert refused(c.get("/v1/stream", params={"queue": queue.value}))


@pytest.mark.parametrize(("actor", "queue"), CELLS, ids=cell_id)
def test_dossier_and_events_follow_the_matrix(
    room_server: RoomServer,
    http: dict[Actor, httpx.Client],
    placed: dict[QueueName, str],
    actor: Actor,
    queue: QueueName,
) -> None:
    c = as_(room_server, http, actor)
    case_id = placed[queue]
    allowed = queue in MATRIX[actor.role]
    for path in (f"/v1/dossiers/{case_id}", f"/v1/dossiers/{case_id}/events"):
        r = c.get(path)
        if allowed:
            assert r.status_code == 200, (path, r.text)
        else:
            assert refused(r), (path, r.text)


def test_the_transmitting_arm_reads_what_it_transmitted(
    room_server: RoomServer, http: dict[Actor, httpx.Client], placed: dict[QueueName, str]
) -> None:
    arm = as_(room_server, http, ARM)
    for case_id in placed.values():
        assert arm.get(f"/v1/dossiers/{case_id}").status_code == 200


def test_an_operator_keeps_reading_what_it_acted_on_after_it_moved(
    room_server: RoomServer, http: dict[Actor, httpx.Client]
) -> None:
    case_id = enqueue(room_server, QueueName.AMU)
    mru, mru2, mrl = (as_(room_server, http, a) for a in (MRU, MRU2, MRL))
    for kind, data in (("claim", {}), ("transfer", {"to": "SNP", "reason": "médecine générale"})):
        r = mru.post(
            "/v1/ops",
            json={"op_id": uuid4().hex, "kind": kind, "case_id": case_id, "data": data},
        )
        assert r.status_code == 200, r.text
    assert mru.get(f"/v1/dossiers/{case_id}/events").status_code == 200  # acted on it
    assert refused(mru2.get(f"/v1/dossiers/{case_id}"))  # another MRU: no longer its queue
    assert mrl.get(f"/v1/dossiers/{case_id}").status_code == 200  # now in SNP


def test_the_stream_carries_only_the_roles_queues(
    room_server: RoomServer, placed: dict[QueueName, str]
) -> None:
    async def first_reset(actor: Actor) -> set[str]:
        auth = {"Authorization": f"Bearer {token(room_server, actor)}"}
        async with (
            httpx.AsyncClient(base_url=room_server.url, headers=auth) as c,
            c.stream("GET", "/v1/stream") as response,
        ):
            message = await SseReader(response).next()
            assert message.json()["reset"] is True
            return {i["queue"] for i in message.json()["items"]}

    for actor in READERS:
        # one dossier was placed in each queue: exactly the role's queues show
        assert run_async(first_reset(actor)) == {q.value for q in MATRIX[actor.role]}


def test_only_the_supervisor_reassigns_and_decisions_are_medical(
    room_server: RoomServer, http: dict[Actor, httpx.Client]
) -> None:
    case_id = enqueue(room_server, QueueName.OSNP)
    osnp, sup = as_(room_server, http, OSNP), as_(room_server, http, SUP)

    def do(c: httpx.Client, kind: str, **data: object) -> httpx.Response:
        return c.post(
            "/v1/ops", json={"op_id": uuid4().hex, "kind": kind, "case_id": case_id, "data": data}
        )

    assert do(osnp, "claim").status_code == 200
    assert refused(do(osnp, "decide", care_level="R2"))
    assert refused(do(osnp, "reassign", to_workstation="POSTE-X", to_operator="x", to_role="OSNP"))
    moved = do(sup, "reassign", to_workstation="", to_operator="", to_role="")
    assert moved.status_code == 200 and moved.json()["item"]["status"] == "WAITING"
    dent = as_(room_server, http, DENT)
    assert refused(do(dent, "claim"))  # outside its queue
