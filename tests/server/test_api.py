"""The room server over HTTP, through a real server process (SQLite and
PostgreSQL): sessions, operations with the actor and time of the server,
reads, the change stream, audit."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from itertools import count
from typing import Any
from uuid import uuid4

import httpx
import pytest

from sas_desk.models.dossier import Branch
from sas_desk.server.store import open_store
from tests.helpers.room_server import RoomServer, run_async
from tests.helpers.sse import SseReader
from tests.integration.queues.support import ARM, DENT, MRU, MRU2, SUP, make_dossier
from tests.server.conftest import PASSWORD, Sessions

_N = count(1)


def new_dossier(branch: Branch = Branch.AMU) -> Any:
    return make_dossier(next(_N) + 10_000 * (uuid4().int % 90 + 1), branch=branch)


async def op(client: httpx.AsyncClient, kind: str, case_id: str, **data: Any) -> httpx.Response:
    return await client.post(
        "/v1/ops", json={"op_id": uuid4().hex, "kind": kind, "case_id": case_id, "data": data}
    )


async def enqueue(as_: Sessions, branch: Branch = Branch.AMU) -> str:
    d = new_dossier(branch)
    r = await op(await as_(ARM), "enqueue", d.case_id, dossier=d.to_dict())
    assert r.status_code == 200, r.text
    return str(d.case_id)


# --------------------------------------------------------------------------- no auth


def test_health_and_document_need_no_token(room_server: RoomServer) -> None:
    assert httpx.get(f"{room_server.url}/healthz").json() == {"status": "ok"}
    doc = httpx.get(f"{room_server.url}/v1/openapi.json").json()
    assert {"/v1/ops", "/v1/session", "/v1/stream", "/v1/room"} <= set(doc["paths"])
    assert "/_test/clock" not in doc["paths"]


# --------------------------------------------------------------------------- sessions


def test_login_answers_who_the_session_is(room_server: RoomServer) -> None:
    body = room_server.login(MRU.operator, PASSWORD, "MRU", "POSTE-02")
    assert (body["operator"], body["role"], body["workstation"]) == (
        MRU.operator,
        "MRU",
        "POSTE-02",
    )
    assert body["expires_in"] == 900
    assert body["access_token"] != body["refresh_token"]


def test_wrong_password_and_unknown_login_get_the_same_answer(room_server: RoomServer) -> None:
    url = f"{room_server.url}/v1/session"
    wrong = httpx.post(
        url, json={"login": MRU2.operator, "password": "x", "role": "MRU", "workstation": "P"}
    )
    unknown = httpx.post(
        url, json={"login": "nobody", "password": PASSWORD, "role": "MRU", "workstation": "P"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["code"] == "unauthorized"


def test_a_role_the_account_does_not_have_is_refused(room_server: RoomServer) -> None:
    r = httpx.post(
        f"{room_server.url}/v1/session",
        json={"login": DENT.operator, "password": PASSWORD, "role": "SUP", "workstation": "P"},
    )
    assert r.status_code == 403
    assert r.json()["code"] == "forbidden"
    assert "SUP" in r.json()["message_fr"]


def test_refresh_rotates_and_logout_revokes(room_server: RoomServer) -> None:
    first = room_server.login("multi", PASSWORD, "SUP", "POSTE-X")
    url = room_server.url
    second = httpx.post(f"{url}/v1/session/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    new = second.json()
    assert new["role"] == "SUP" and new["access_token"] != first["access_token"]
    # the old pair is dead, the new one works
    again = httpx.post(f"{url}/v1/session/refresh", json={"refresh_token": first["refresh_token"]})
    assert again.status_code == 401
    old_auth = {"Authorization": f"Bearer {first['access_token']}"}
    new_auth = {"Authorization": f"Bearer {new['access_token']}"}
    assert httpx.get(f"{url}/v1/room", headers=old_auth).status_code == 401
    assert httpx.get(f"{url}/v1/room", headers=new_auth).status_code == 200
    assert httpx.delete(f"{url}/v1/session", headers=new_auth).status_code == 204
    assert httpx.get(f"{url}/v1/room", headers=new_auth).status_code == 401
    refresh = httpx.post(f"{url}/v1/session/refresh", json={"refresh_token": new["refresh_token"]})
    assert refresh.status_code == 401


def test_five_failures_in_a_minute_lock_the_login(room_server: RoomServer) -> None:
    url = f"{room_server.url}/v1/session"
    login = f"locked.{uuid4().hex[:6]}"
    run_async(room_server.db.add_user(login, ["MRU"], PASSWORD))
    bad = {"login": login, "password": "faux", "role": "MRU", "workstation": "P"}
    assert [httpx.post(url, json=bad).status_code for _ in range(5)] == [401] * 5
    good = {**bad, "password": PASSWORD}
    locked = httpx.post(url, json=good)
    assert locked.status_code == 429
    assert locked.json()["code"] == "locked"
    entries = run_async(_audit(room_server))
    mine = [(e.action, e.outcome) for e in entries if e.operator == login]
    assert mine == [("login", "unauthorized")] * 5 + [("login", "locked")]


async def _audit(server: RoomServer, case_id: str | None = None) -> list[Any]:
    store = open_store(server.db.dsn, server.db.schema)
    await store.open(migrate=False)
    try:
        return await store.audit_entries(case_id)
    finally:
        await store.close()


def test_every_path_but_health_session_and_document_needs_a_token(
    room_server: RoomServer,
) -> None:
    doc = httpx.get(f"{room_server.url}/v1/openapi.json").json()
    open_paths = {("/healthz", "get"), ("/v1/session", "post"), ("/v1/session/refresh", "post")}
    checked = 0
    for path, methods in doc["paths"].items():
        concrete = path.replace("{queue}", "AMU").replace("{case_id}", "X")
        for method in methods:
            if (path, method) in open_paths:
                continue
            for headers in ({}, {"Authorization": "Bearer not-a-token"}):
                r = httpx.request(method, f"{room_server.url}{concrete}", headers=headers, json={})
                assert r.status_code == 401, (method, path, r.text)
                assert r.json()["code"] == "unauthorized"
            checked += 1
    assert checked >= 8


# --------------------------------------------------------------------------- operations


@pytest.mark.asyncio
async def test_the_actor_and_time_come_from_the_session_and_the_server(
    as_: Sessions, room_server: RoomServer
) -> None:
    case_id = await enqueue(as_)
    mru = await as_(MRU)
    at = datetime.fromisoformat("2026-11-02T10:00:00+01:00")
    await asyncio.to_thread(room_server.set_clock, at)
    try:
        r = await mru.post(
            "/v1/ops",
            json={
                "op_id": uuid4().hex,
                "kind": "claim",
                "case_id": case_id,
                "operator": "someone.else",
                "role": "SUP",
                "workstation": "POSTE-99",
                "at": "2020-01-01T00:00:00+00:00",
                "data": {"lease_s": 300, "operator": "someone.else", "at": "2020-01-01"},
            },
        )
    finally:
        await asyncio.to_thread(room_server.set_clock, datetime.now().astimezone())
    assert r.status_code == 200, r.text
    claim = r.json()["item"]["claim"]
    assert (claim["operator"], claim["role"], claim["workstation"]) == (
        MRU.operator,
        "MRU",
        MRU.workstation,
    )
    assert datetime.fromisoformat(claim["claimed_at"]) == at
    # the lease asked (within the bound) runs from the server's time
    assert datetime.fromisoformat(claim["expires_at"]) == at + timedelta(seconds=300)
    events = (await mru.get(f"/v1/dossiers/{case_id}/events")).json()["events"]
    claimed = [e for e in events if e["kind"] == "CLAIMED"]
    assert [(e["operator"], e["role"], datetime.fromisoformat(e["at"])) for e in claimed] == [
        (MRU.operator, "MRU", at)
    ]


@pytest.mark.asyncio
async def test_refusals_carry_status_code_and_french_message(as_: Sessions) -> None:
    case_id = await enqueue(as_)
    mru, mru2 = await as_(MRU), await as_(MRU2)
    assert (await op(mru, "claim", case_id)).status_code == 200
    taken = await op(mru2, "claim", case_id)
    assert taken.status_code == 409
    body = taken.json()
    assert body["code"] == "claimed" and body["claim"]["operator"] == MRU.operator
    assert "déjà pris" in body["message_fr"]
    missing = await op(mru, "claim", "fr.health.samu690.INCONNU")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    bad = await mru.post("/v1/ops", json={"op_id": "x"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid"


@pytest.mark.asyncio
async def test_replaying_an_op_id_gives_the_same_answer(as_: Sessions) -> None:
    case_id = await enqueue(as_)
    mru = await as_(MRU)
    body = {"op_id": uuid4().hex, "kind": "claim", "case_id": case_id, "data": {}}
    first = await mru.post("/v1/ops", json=body)
    second = await mru.post("/v1/ops", json=body)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()


@pytest.mark.asyncio
async def test_a_lease_over_the_bound_is_refused_not_cut(as_: Sessions) -> None:
    """One rule for leases, the queues' (rules.checked_lease): over the bound
    (MAX_LEASE_S, 900 s, the server's default max_lease_s) an operation or a
    renewal is refused with the French message naming the bound, and
    nothing changes; a client once sent 3e9 s."""
    from sas_desk.services.queues.api import MAX_LEASE_S

    case_id = await enqueue(as_)
    mru = await as_(MRU)
    for lease in (3e9, MAX_LEASE_S + 1, 0, -5):
        r = await op(mru, "claim", case_id, lease_s=lease)
        assert r.status_code == 422, r.text
        body = r.json()
        assert body["code"] == "invalid"
        assert body["message_fr"] == (
            f"Durée de prise en charge invalide : entre 0 et {MAX_LEASE_S:.0f} secondes."
        )
    items = (await mru.get("/v1/queues/AMU")).json()["items"]
    assert next(i for i in items if i["case_id"] == case_id)["status"] == "WAITING"
    events = (await mru.get(f"/v1/dossiers/{case_id}/events")).json()["events"]
    assert [e["kind"] for e in events if e["kind"] == "CLAIMED"] == []
    assert (await op(mru, "claim", case_id, lease_s=MAX_LEASE_S)).status_code == 200
    r = await mru.post("/v1/renew", json={"lease_s": 1e9})
    assert r.status_code == 422 and r.json()["code"] == "invalid"


@pytest.mark.asyncio
async def test_renew_extends_the_sessions_workstation_leases(as_: Sessions) -> None:
    case_id = await enqueue(as_)
    mru2 = await as_(MRU2)
    assert (await op(mru2, "claim", case_id, lease_s=60)).status_code == 200
    r = await mru2.post("/v1/renew", json={"lease_s": 400})
    assert r.status_code == 200 and r.json()["renewed"] >= 1
    item = next(
        i for i in (await mru2.get("/v1/queues/AMU")).json()["items"] if i["case_id"] == case_id
    )
    lease = datetime.fromisoformat(item["claim"]["expires_at"]) - datetime.now().astimezone()
    assert timedelta(seconds=300) < lease <= timedelta(seconds=400)


# --------------------------------------------------------------------------- reads and audit


@pytest.mark.asyncio
async def test_dossier_reads_are_audited(as_: Sessions, room_server: RoomServer) -> None:
    case_id = await enqueue(as_)
    mru = await as_(MRU)
    r = await mru.get(f"/v1/dossiers/{case_id}")
    assert r.status_code == 200 and r.json()["dossier"]["case_id"] == case_id
    assert (await mru.get(f"/v1/dossiers/{case_id}/events")).status_code == 200
    entries = await _audit(room_server, case_id)
    actions = [(e.action, e.operator, e.role, e.workstation, e.outcome) for e in entries]
    assert actions == [
        ("op:enqueue", ARM.operator, "ARM", ARM.workstation, "ok"),
        ("read:dossier", MRU.operator, "MRU", MRU.workstation, "ok"),
        ("read:events", MRU.operator, "MRU", MRU.workstation, "ok"),
    ]
    assert all(e.client == "127.0.0.1" for e in entries)


@pytest.mark.asyncio
async def test_the_audit_trail_refuses_update_and_delete(room_server: RoomServer) -> None:
    store = open_store(room_server.db.dsn, room_server.db.schema)
    await store.open(migrate=False)
    try:
        from sas_desk.server.store import StoreUnavailable

        for statement in ("UPDATE audit SET action = 'x'", "DELETE FROM audit"):
            with pytest.raises(StoreUnavailable):
                await store.run(lambda tx, s=statement: tx.execute(s))  # type: ignore[misc]
        assert await store.audit_entries()  # still there
    finally:
        await store.close()


# --------------------------------------------------------------------------- the stream


@pytest.mark.asyncio
async def test_the_stream_sends_a_reset_then_the_changes_of_the_roles_queues(
    as_: Sessions, room_server: RoomServer
) -> None:
    mru, dent = await as_(MRU), await as_(DENT)
    async with (
        mru.stream("GET", "/v1/stream") as amu_stream,
        dent.stream("GET", "/v1/stream") as dent_stream,
    ):
        assert amu_stream.status_code == dent_stream.status_code == 200
        amu, dental = SseReader(amu_stream), SseReader(dent_stream)
        first = await amu.next()
        assert first.event == "changes" and first.json()["reset"] is True
        assert {i["queue"] for i in first.json()["items"]} <= {"AMU"}
        assert (await dental.next()).json()["reset"] is True
        case_id = await enqueue(as_)
        change = await amu.next()
        assert change.json()["reset"] is False
        assert [i["case_id"] for i in change.json()["items"]] == [case_id]
        dent_case = await enqueue(as_, Branch.DENT)
        seen = await dental.next()
        assert [i["case_id"] for i in seen.json()["items"]] == [dent_case]  # not the AMU one
        # resume after the reset: the missed increment comes again, no reset
        async with mru.stream(
            "GET", "/v1/stream", headers={"Last-Event-ID": first.id}
        ) as resumed_stream:
            resumed = await SseReader(resumed_stream).next()
            assert resumed.json()["reset"] is False
            assert [i["case_id"] for i in resumed.json()["items"]] == [case_id]
        # an id from another boot: a fresh reset
        async with mru.stream(
            "GET", "/v1/stream", headers={"Last-Event-ID": "deadbeef.3"}
        ) as other_boot:
            reset = await SseReader(other_boot).next()
            assert reset.json()["reset"] is True
            assert case_id in {i["case_id"] for i in reset.json()["items"]}


@pytest.mark.asyncio
async def test_a_role_may_not_stream_a_queue_outside_its_remit(as_: Sessions) -> None:
    dent = await as_(DENT)
    r = await dent.get("/v1/stream", params={"queue": "AMU"})
    assert r.status_code == 403 and r.json()["code"] == "forbidden"


@pytest.mark.asyncio
async def test_room_view_is_the_supervisors(as_: Sessions) -> None:
    await enqueue(as_)
    sup, mru = await as_(SUP), await as_(MRU)
    r = await sup.get("/v1/room")
    assert r.status_code == 200
    amu = next(q for q in r.json()["queues"] if q["queue"] == "AMU")
    assert amu["waiting"] >= 1 and amu["oldest_waiting_since"]
    assert (await mru.get("/v1/room")).status_code == 403
