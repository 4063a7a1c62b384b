"""The audit row of an operation is written in the operation's own
transaction: a failure between them leaves neither (SQLite and PostgreSQL,
through a real server process)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from tests.helpers.room_server import PG_DSN, RoomDatabase, RoomServer, run_async
from tests.integration.queues.support import ARM, MRU, make_dossier
from tests.server.conftest import PASSWORD

# a failure of the audit insert, after the operation's own writes in the
# same statement or transaction (a full disk, a dropped grant…)
_PG_FAULT = """
CREATE FUNCTION audit_fault() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'audit en panne (test)'; END $$;
CREATE TRIGGER audit_fault BEFORE INSERT ON audit FOR EACH ROW
    WHEN (NEW.action = 'op:claim') EXECUTE FUNCTION audit_fault();
"""
_PG_MEND = "DROP TRIGGER audit_fault ON audit; DROP FUNCTION audit_fault();"
_SQLITE_FAULT = (
    "CREATE TRIGGER audit_fault BEFORE INSERT ON audit WHEN NEW.action = 'op:claim' "
    "BEGIN SELECT RAISE(ABORT, 'audit en panne (test)'); END"
)
_SQLITE_MEND = "DROP TRIGGER audit_fault"


def _sql(db: RoomDatabase, statement: str) -> list[tuple[Any, ...]]:
    if db.kind == "sqlite":
        path = db.dsn.removeprefix("sqlite://")
        conn = sqlite3.connect(path, isolation_level=None, timeout=10)
        try:
            return conn.execute(statement).fetchall()
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True, options=f"-c search_path={db.schema}") as conn:
        cur = conn.execute(statement.encode())
        return cur.fetchall() if cur.description else []


@pytest.fixture
def server(db: RoomDatabase, tmp_path: Path) -> Iterator[RoomServer]:
    async def accounts() -> None:
        for actor in (ARM, MRU):
            await db.add_user(actor.operator, [actor.role], PASSWORD)

    run_async(accounts())
    room = RoomServer.start(db, tmp_path)
    try:
        yield room
    finally:
        assert room.stop() == 0, room.stderr_path.read_text()


def _client(server: RoomServer, actor: Any) -> httpx.Client:
    body = server.login(actor.operator, PASSWORD, actor.role, actor.workstation)
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {body['access_token']}"}
    )


def test_a_failed_audit_row_leaves_no_operation_and_the_replay_lands_once(
    server: RoomServer, db: RoomDatabase
) -> None:
    d = make_dossier(4242)
    case_id = d.case_id
    with _client(server, ARM) as arm, _client(server, MRU) as mru:
        r = arm.post(
            "/v1/ops",
            json={"op_id": uuid4().hex, "kind": "enqueue", "case_id": case_id,
                  "data": {"dossier": d.to_dict()}},
        )  # fmt: skip
        assert r.status_code == 200, r.text
        before = _sql(db, f"SELECT count(*) FROM events WHERE case_id = '{case_id}'")[0][0]

        _sql(db, _PG_FAULT if db.kind == "postgres" else _SQLITE_FAULT)
        claim = {"op_id": uuid4().hex, "kind": "claim", "case_id": case_id, "data": {}}
        r = mru.post("/v1/ops", json=claim)
        # the store failed the write: the server's trouble, said in French, kept
        # by the workstation's outbox (503), never a refusal it would drop
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["code"] in ("server", "integrity")
        assert body["message_fr"] and "Traceback" not in r.text
        # neither the operation nor its audit row
        item = next(i for i in mru.get("/v1/queues/AMU").json()["items"] if i["case_id"] == case_id)
        assert item["status"] == "WAITING" and item["claim"] is None
        assert _sql(db, f"SELECT count(*) FROM events WHERE case_id = '{case_id}'")[0][0] == before
        op_id = claim["op_id"]
        assert _sql(db, f"SELECT count(*) FROM applied_ops WHERE op_id = '{op_id}'")[0][0] == 0
        assert _sql(db, "SELECT count(*) FROM audit WHERE action = 'op:claim'")[0][0] == 0

        _sql(db, _PG_MEND if db.kind == "postgres" else _SQLITE_MEND)
        r = mru.post("/v1/ops", json=claim)  # the outbox sends it again
        assert r.status_code == 200, r.text
        assert r.json()["item"]["claim"]["operator"] == MRU.operator
        again = mru.post("/v1/ops", json=claim)  # and once more: the same answer
        assert again.status_code == 200 and again.json() == r.json()
    claimed = _sql(
        db, f"SELECT count(*) FROM events WHERE case_id = '{case_id}' AND kind = 'CLAIMED'"
    )
    assert claimed[0][0] == 1
    rows = _sql(
        db,
        "SELECT operator, role, workstation, client, outcome FROM audit "
        f"WHERE action = 'op:claim' AND case_id = '{case_id}' ORDER BY seq",
    )
    # the operation's row, then the replay's (audited too, nothing else written)
    assert rows == [(MRU.operator, "MRU", MRU.workstation, "127.0.0.1", "ok")] * 2
