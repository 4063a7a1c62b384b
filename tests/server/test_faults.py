"""The room server killed (SIGKILL) in the middle of contested claims, then
restarted: every operation replayed with its op_id gets the answer it got
(or would have got), each dossier is held by exactly one workstation, and a
stream resumed with an id of the dead server's boot gets a full reset."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx

from sas_desk.models.dossier import Actor
from tests.helpers.room_server import RoomDatabase, RoomServer, run_async
from tests.integration.queues.support import make_dossier

PASSWORD = "un-mot-de-passe-solide"
CLAIMERS = [Actor("MRU", f"dr.{n}", f"POSTE-{n:02d}") for n in range(6)]
CASES = 15


async def _claims(
    server: RoomServer, tokens: dict[str, str], ops: dict[tuple[str, str], str], kill_after: int
) -> dict[tuple[str, str], tuple[int, dict[str, object]]]:
    """Every claimer claims every case (its op ids fixed in ``ops``); the
    server is killed after ``kill_after`` answers.  Returns the answers got."""
    answers: dict[tuple[str, str], tuple[int, dict[str, object]]] = {}
    killed = asyncio.Event()

    async def claimer(actor: Actor) -> None:
        async with httpx.AsyncClient(
            base_url=server.url,
            headers={"Authorization": f"Bearer {tokens[actor.operator]}"},
            timeout=10,
        ) as c:
            for (who, case_id), op_id in ops.items():
                if who != actor.operator:
                    continue
                try:
                    r = await c.post(
                        "/v1/ops",
                        json={"op_id": op_id, "kind": "claim", "case_id": case_id, "data": {}},
                    )
                except httpx.TransportError:
                    return  # the server died under us
                answers[(who, case_id)] = (r.status_code, r.json())
                if len(answers) >= kill_after and not killed.is_set():
                    killed.set()
                    server.process.send_signal(signal.SIGKILL)

    await asyncio.gather(*(claimer(a) for a in CLAIMERS))
    return answers


def _first_changes(response: httpx.Response) -> Any:
    for line in response.iter_lines():
        if line.startswith("data:"):
            return json.loads(line[5:].strip())
    raise AssertionError("no change set")


def test_killed_mid_claims_then_replayed_converges(db: RoomDatabase, tmp_path: Path) -> None:
    async def setup() -> None:
        for actor in CLAIMERS:
            await db.add_user(actor.operator, ["MRU"], PASSWORD)
        await db.add_user("arm.a", ["ARM"], PASSWORD)

    run_async(setup())
    server = RoomServer.start(db, tmp_path)
    arm = server.login("arm.a", PASSWORD, "ARM", "POSTE-ARM")["access_token"]
    case_ids = []
    for n in range(CASES):
        d = make_dossier(n + 1)
        r = httpx.post(
            f"{server.url}/v1/ops",
            headers={"Authorization": f"Bearer {arm}"},
            json={
                "op_id": uuid4().hex,
                "kind": "enqueue",
                "case_id": d.case_id,
                "data": {"dossier": d.to_dict()},
            },
        )
        assert r.status_code == 200
        case_ids.append(d.case_id)
    tokens = {
        a.operator: server.login(a.operator, PASSWORD, "MRU", a.workstation)["access_token"]
        for a in CLAIMERS
    }
    auth = {"Authorization": f"Bearer {tokens[CLAIMERS[0].operator]}"}
    with httpx.stream("GET", f"{server.url}/v1/stream", headers=auth, timeout=10) as s:
        first_id = next(line for line in s.iter_lines() if line.startswith("id:"))[3:].strip()
    ops = {(a.operator, c): uuid4().hex for c in case_ids for a in CLAIMERS}
    before = run_async(_claims(server, tokens, ops, kill_after=len(ops) // 3))
    server.process.wait(10)
    assert server.stop() == -signal.SIGKILL
    assert 0 < len(before) < len(ops)

    restarted = RoomServer.start(db, tmp_path)  # same database, new boot
    try:
        after = run_async(_claims(restarted, tokens, ops, kill_after=len(ops) + 1))
        assert len(after) == len(ops)  # sessions survived the crash
        for key, answer in before.items():
            assert after[key] == answer, key  # a replay gets the same answer
        for case_id in case_ids:
            winners = [
                who for (who, c), (status, _) in after.items() if c == case_id and status == 200
            ]
            assert len(winners) == 1, (case_id, winners)
            losers = {
                s for (who, c), (s, _) in after.items() if c == case_id and who not in winners
            }
            assert losers <= {409}
        with httpx.stream(
            "GET",
            f"{restarted.url}/v1/stream",
            headers={**auth, "Last-Event-ID": first_id},
            timeout=10,
        ) as s:
            reset = _first_changes(s)
        assert reset["reset"] is True
        assert {i["case_id"] for i in reset["items"]} == set(case_ids)
        assert all(i["status"] == "CLAIMED" for i in reset["items"])
    finally:
        assert restarted.stop() == 0
