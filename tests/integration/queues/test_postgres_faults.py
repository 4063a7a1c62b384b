"""The PostgreSQL queue backend when things go wrong: connections killed by
the server in the middle of a stream of claims, a watcher losing its
listening connection, two workstations racing for the same items, leases
running out, schema upgrades.

Needs a PostgreSQL server (``SAS_DESK_TEST_PG_DSN``, default the local
``test`` database as ``postgres``); each test works in a fresh schema that
is dropped afterwards.  Connections are killed with ``pg_terminate_backend``
targeted by ``application_name`` (one per backend instance = workstation).
Some tests create a throw-away login role (needs CREATEROLE) to make the
server refuse a workstation's reconnections for as long as the test wants.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import socket
import statistics
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from psycopg import sql
from psycopg.conninfo import make_conninfo

from sas_desk.models.dossier import Branch, Dossier, EventKind, Status
from sas_desk.models.queue import (
    ChangeSet,
    ClaimConflict,
    ItemStatus,
    NotHolder,
    Operation,
    QueueError,
    QueueName,
)
from sas_desk.services.queues.api import BackendUnavailable
from sas_desk.services.queues.cli import add_db_parser, run_db_command
from sas_desk.services.queues.postgres import LATEST_VERSION, PostgresBackend, upgrade
from tests.conftest import unavailable

DSN = os.environ.get("SAS_DESK_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
TZ = timezone(timedelta(hours=1))
T0 = datetime(2026, 11, 25, 16, 0, 0, tzinfo=TZ)
OWNER = "fr.health.samu690"
TIMEOUT = 20.0  # upper bound for anything awaited; normal runs take milliseconds


class Clock:
    """A frozen clock the test moves by hand."""

    def __init__(self, at: datetime = T0) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def case_id(n: int) -> str:
    return f"{OWNER}.DRFR1569A26329{n:05d}"


def new_dossier(n: int, branch: Branch = Branch.AMU, priority: str = "P2") -> Dossier:
    return Dossier(
        case_id=case_id(n),
        sender_case_id=f"DRFR1569A26329{n:05d}",
        created_at=T0,
        owner=OWNER,
        motive_code="C01.01.00",
        priority=priority,
        branch=branch,
        perimeter=branch.perimeter,
        attribution=branch.attribution,
        status=Status.TRANSMITTED,
        transmitted_at=T0,
    )


def operation(
    kind: str,
    n: int,
    *,
    ws: str = "POSTE-ARM",
    role: str = "ARM",
    operator: str = "",
    at: datetime = T0,
    **data: Any,
) -> Operation:
    return Operation(
        op_id=str(uuid.uuid4()),
        kind=kind,
        case_id=case_id(n),
        at=at,
        role=role,
        operator=operator or f"op.{ws.lower()}",
        workstation=ws,
        data=data,
    )


def enqueue(n: int, *, at: datetime = T0, priority: str = "P2") -> Operation:
    return operation("enqueue", n, at=at, dossier=new_dossier(n, priority=priority).to_dict())


def claim(n: int, ws: str, *, at: datetime = T0, lease_s: float = 120.0) -> Operation:
    return operation("claim", n, ws=ws, role="MRU", at=at, lease_s=lease_s)


async def eventually(predicate: Callable[[], Awaitable[bool]], timeout: float = TIMEOUT) -> None:
    """Poll ``predicate`` until true (a condition, never a fixed wait)."""

    async def poll() -> None:
        while True:
            if await predicate():
                return
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


# --------------------------------------------------------------------------- fixtures


@pytest_asyncio.fixture
async def admin() -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    try:
        conn = await psycopg.AsyncConnection.connect(DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        unavailable(f"PostgreSQL injoignable ({DSN}) : {str(exc).strip().splitlines()[0]}")
        raise  # pragma: no cover - unavailable() does not return
    try:
        yield conn
    finally:
        await conn.close()


@pytest_asyncio.fixture
async def schema(admin: psycopg.AsyncConnection[Any]) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        await admin.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
        )


Factory = Callable[..., PostgresBackend]


@pytest_asyncio.fixture
async def make_backend(schema: str) -> AsyncIterator[Factory]:
    """``make_backend("A")`` → a backend (one workstation) whose connections
    carry the application name ``<schema>-A`` (``<schema>-A/watch`` for
    watchers); all are closed at the end."""
    made: list[PostgresBackend] = []

    def make(tag: str, *, dsn: str = DSN, clock: Clock | None = None, **kw: Any) -> PostgresBackend:
        backend = PostgresBackend(
            dsn,
            now=clock or Clock(),
            schema=schema,
            application_name=f"{schema}-{tag}",
            **kw,
        )
        made.append(backend)
        return backend

    try:
        yield make
    finally:
        for backend in made:
            await backend.close()


@pytest_asyncio.fixture
async def limited_role(admin: psycopg.AsyncConnection[Any], schema: str) -> AsyncIterator[str]:
    """A login role of its own for one workstation, so that the test can make
    the server refuse that workstation's (re)connections (``NOLOGIN``).
    Call :func:`grant` once the schema exists."""
    role = f"{schema}_ws"
    try:
        await admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    except psycopg.errors.InsufficientPrivilege:
        unavailable("le compte PostgreSQL de test ne peut pas créer de rôle (CREATEROLE)")
    try:
        yield role
    finally:
        await admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        await admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


async def grant(admin: psycopg.AsyncConnection[Any], schema: str, role: str) -> None:
    s, r = sql.Identifier(schema), sql.Identifier(role)
    await admin.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, r))
    await admin.execute(
        sql.SQL("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA {} TO {}").format(s, r)
    )
    await admin.execute(sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA {} TO {}").format(s, r))


async def set_login(admin: psycopg.AsyncConnection[Any], role: str, allowed: bool) -> None:
    await admin.execute(
        sql.SQL("ALTER ROLE {} " + ("LOGIN" if allowed else "NOLOGIN")).format(sql.Identifier(role))
    )


async def terminate(admin: psycopg.AsyncConnection[Any], application_name: str) -> list[int]:
    """Kill the server processes of one workstation's connections and wait
    until they are really gone (``pg_terminate_backend`` only signals)."""
    cur = await admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND pid <> pg_backend_pid()",
        (application_name,),
    )
    pids = [row[0] for row in await cur.fetchall()]
    for pid in pids:
        await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

    async def gone() -> bool:
        cur = await admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)
        )
        row = await cur.fetchone()
        return row is not None and row[0] == 0

    await eventually(gone)
    return pids


async def next_change(stream: AsyncIterator[ChangeSet], timeout: float = TIMEOUT) -> ChangeSet:
    return await asyncio.wait_for(anext(stream), timeout)


async def outcome(backend: PostgresBackend, op: Operation) -> tuple[str, Any]:
    """("ok", item) | ("conflict", holder workstation) | ("unavailable", message);
    anything else escapes and fails the test."""
    try:
        item = await backend.apply(op)
    except ClaimConflict as exc:
        return "conflict", exc.claim.workstation
    except BackendUnavailable as exc:
        message = exc.message_fr
    else:
        assert item is not None and item.claim is not None
        return "ok", item.claim.workstation
    assert message.startswith("Serveur des files injoignable"), message
    return "unavailable", message


# --------------------------------------------------------------------------- (a) killed mid-stream


@pytest.mark.asyncio
async def test_claims_survive_connections_killed_mid_stream(
    admin: psycopg.AsyncConnection[Any], schema: str, make_backend: Factory
) -> None:
    arm = make_backend("arm")
    room = make_backend("room", pool_size=4)
    await arm.open()
    for n in range(25):
        await arm.apply(enqueue(n))
    await room.open()

    # 50 claims: two workstations want each of the 25 items
    ops = [claim(n, ws) for n in range(25) for ws in ("POSTE-1", "POSTE-2")]
    random.Random(7).shuffle(ops)
    done = 0
    progress = asyncio.Condition()

    async def one(op: Operation) -> tuple[str, Any]:
        nonlocal done
        try:
            return await outcome(room, op)
        finally:
            async with progress:
                done += 1
                progress.notify_all()

    killed: list[int] = []

    async def killer() -> None:
        for threshold in (3, 12, 25, 40):
            async with progress:
                await progress.wait_for(lambda t=threshold: done >= t)  # type: ignore[misc]
            killed.extend(await terminate(admin, f"{schema}-room"))

    kill_task = asyncio.create_task(killer())
    first = await asyncio.wait_for(asyncio.gather(*(one(op) for op in ops)), TIMEOUT)
    await asyncio.wait_for(kill_task, TIMEOUT)
    print(f"\nclaims: {Counter(kind for kind, _ in first)}, reconnects: {room.reconnects}")
    assert killed, "no connection was killed: the test did not test anything"
    assert room.reconnects >= 1

    # the ones that failed cleanly are retried with the same op_id and complete
    final = list(first)
    for i, (kind, _) in enumerate(first):
        if kind == "unavailable":
            final[i] = await outcome(room, ops[i])
            assert final[i][0] in ("ok", "conflict")

    # replaying everything changes nothing and answers the same
    for op, result in zip(ops, final, strict=True):
        assert await outcome(room, op) == result

    winners: dict[str, str] = {}
    for op, (kind, _) in zip(ops, final, strict=True):
        if kind == "ok":
            assert op.case_id not in winners, f"two successful claims on {op.case_id}"
            winners[op.case_id] = op.workstation
        else:
            assert kind == "conflict"
    assert len(winners) == 25
    for op, (kind, who) in zip(ops, final, strict=True):
        if kind == "conflict":
            assert who == winners[op.case_id] != op.workstation

    items = await arm.snapshot([QueueName.AMU])
    assert {i.case_id: i.claim.workstation for i in items if i.claim} == winners
    assert all(i.status is ItemStatus.CLAIMED for i in items)
    for n in range(25):
        events = await arm.events(case_id(n))
        kinds = Counter(e.kind for e in events)
        assert kinds == {EventKind.ENQUEUED: 1, EventKind.CLAIMED: 1}, (case_id(n), kinds)
        (claimed,) = [e for e in events if e.kind is EventKind.CLAIMED]
        assert claimed.actor.workstation == winners[case_id(n)]


@pytest.mark.asyncio
async def test_reads_and_writes_reconnect_transparently_after_a_kill(
    admin: psycopg.AsyncConnection[Any], schema: str, make_backend: Factory
) -> None:
    backend = make_backend("one")
    await backend.open()
    await backend.apply(enqueue(1))
    assert await terminate(admin, f"{schema}-one")
    assert [i.case_id for i in await backend.snapshot([QueueName.AMU])] == [case_id(1)]
    await terminate(admin, f"{schema}-one")
    item = await backend.apply(claim(1, "POSTE-1"))
    assert item is not None and item.status is ItemStatus.CLAIMED
    await terminate(admin, f"{schema}-one")
    assert (await backend.dossier(case_id(1))) is not None
    assert backend.reconnects == 3


@pytest.mark.asyncio
async def test_apply_reports_unavailable_then_the_same_op_completes_once(
    admin: psycopg.AsyncConnection[Any],
    schema: str,
    make_backend: Factory,
    limited_role: str,
) -> None:
    owner = make_backend("owner")
    await owner.open()
    await owner.apply(enqueue(1))
    await grant(admin, schema, limited_role)
    ws = make_backend("ws", dsn=make_conninfo(DSN, user=limited_role))
    await ws.open()

    # the server throws the workstation out and refuses it back in
    await set_login(admin, limited_role, False)
    await terminate(admin, f"{schema}-ws")
    op = claim(1, "POSTE-1")
    with pytest.raises(BackendUnavailable) as err:
        await ws.apply(op)
    assert err.value.message_fr.startswith("Serveur des files injoignable")
    assert not isinstance(err.value, psycopg.Error)
    with pytest.raises(BackendUnavailable):
        await ws.snapshot([QueueName.AMU])

    await set_login(admin, limited_role, True)
    item = await ws.apply(op)
    assert item is not None and item.claim is not None and item.claim.workstation == "POSTE-1"
    replayed = await ws.apply(op)
    assert replayed == item
    kinds = [e.kind for e in await owner.events(case_id(1))]
    assert kinds == [EventKind.ENQUEUED, EventKind.CLAIMED]


# --------------------------------------------------------------------------- (b) watcher


@pytest.mark.asyncio
async def test_watcher_resyncs_with_a_reset_after_its_connection_is_killed(
    admin: psycopg.AsyncConnection[Any],
    schema: str,
    make_backend: Factory,
    limited_role: str,
) -> None:
    arm = make_backend("arm")
    await arm.open()
    await arm.apply(enqueue(1))
    await grant(admin, schema, limited_role)
    watcher = make_backend("watcher", dsn=make_conninfo(DSN, user=limited_role))
    await watcher.open()

    async with contextlib.aclosing(watcher.watch([QueueName.AMU])) as stream:
        first = await next_change(stream)
        assert first.reset and [i.case_id for i in first.items] == [case_id(1)]

        # cut the listening connection and keep the watcher out while things change
        await set_login(admin, limited_role, False)
        assert await terminate(admin, f"{schema}-watcher/watch")
        await arm.apply(enqueue(2))
        await arm.apply(claim(1, "POSTE-9"))
        await set_login(admin, limited_role, True)

        resync = await next_change(stream)
        assert resync.reset
        by_id = {i.case_id: i for i in resync.items}
        assert set(by_id) == {case_id(1), case_id(2)}
        held = by_id[case_id(1)].claim
        assert held is not None and held.workstation == "POSTE-9"
        assert watcher.reconnects >= 1

        # and it keeps following afterwards
        await arm.apply(operation("release", 1, ws="POSTE-9", role="MRU"))
        after = await next_change(stream)
        assert not after.reset
        assert [(i.case_id, i.status) for i in after.items] == [(case_id(1), ItemStatus.WAITING)]


@pytest.mark.asyncio
async def test_watcher_reports_removals_and_ends_when_the_backend_closes(
    schema: str, make_backend: Factory
) -> None:
    arm = make_backend("arm")
    room = make_backend("room")
    await arm.open()
    await arm.apply(enqueue(1))
    await arm.apply(enqueue(2))
    stream = room.watch([QueueName.AMU])
    first = await next_change(stream)
    assert [i.case_id for i in first.items] == [case_id(1), case_id(2)]
    await arm.apply(claim(1, "POSTE-1"))
    await arm.apply(
        operation("transfer", 1, ws="POSTE-1", role="MRU", to="SNP", reason="pas urgent")
    )
    seen: list[ChangeSet] = []
    while not any(case_id(1) in c.removed for c in seen):
        seen.append(await next_change(stream))
    await room.close()
    with pytest.raises(StopAsyncIteration):
        await next_change(stream)


@pytest.mark.asyncio
async def test_notifications_reach_another_workstation_within_250_ms(
    schema: str, make_backend: Factory
) -> None:
    arm = make_backend("arm")
    room = make_backend("room")
    await arm.open()
    latencies: list[float] = []
    async with contextlib.aclosing(room.watch([QueueName.AMU])) as stream:
        assert (await next_change(stream)).reset
        for n in range(30):
            started = time.perf_counter()
            await arm.apply(enqueue(n))
            committed = time.perf_counter()
            change = await next_change(stream, timeout=1.0)
            received = time.perf_counter()
            assert [i.case_id for i in change.items] == [case_id(n)]
            latencies.append(received - committed)
            assert received - started < 0.25
    print(
        f"\nnotify latency after commit: median {statistics.median(latencies) * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms"
    )
    assert max(latencies) < 0.25


# --------------------------------------------------------------------------- (c) two workstations


@pytest.mark.asyncio
async def test_two_workstations_racing_for_100_items_one_winner_each(
    schema: str, make_backend: Factory
) -> None:
    a = make_backend("A", pool_size=5)
    b = make_backend("B", pool_size=5)
    await a.open()
    await b.open()
    for n in range(100):
        await a.apply(enqueue(n))

    ops = [(a, claim(n, "POSTE-A")) for n in range(100)] + [
        (b, claim(n, "POSTE-B")) for n in range(100)
    ]
    random.Random(3).shuffle(ops)
    results = await asyncio.wait_for(
        asyncio.gather(*(outcome(backend, op) for backend, op in ops)), TIMEOUT
    )
    winners: dict[str, str] = {}
    for (_, op), (kind, _who) in zip(ops, results, strict=True):
        if kind == "ok":
            assert op.case_id not in winners
            winners[op.case_id] = op.workstation
    assert len(winners) == 100
    for (_, op), (kind, who) in zip(ops, results, strict=True):
        if kind == "conflict":
            assert who == winners[op.case_id] != op.workstation
        else:
            assert kind == "ok"
    items = await b.snapshot([QueueName.AMU])
    assert {i.case_id: i.claim.workstation for i in items if i.claim} == winners
    claimed_events = 0
    for n in range(100):
        claimed_events += sum(e.kind is EventKind.CLAIMED for e in await a.events(case_id(n)))
    assert claimed_events == 100


@pytest.mark.asyncio
async def test_the_same_operation_sent_by_two_connections_at_once_applies_once(
    schema: str, make_backend: Factory
) -> None:
    a = make_backend("A")
    b = make_backend("B")
    await a.open()
    await b.open()
    await a.apply(enqueue(1))
    op = claim(1, "POSTE-1")
    results = await asyncio.gather(*(backend.apply(op) for backend in (a, b, a, b)))
    assert all(r == results[0] for r in results)
    kinds = [e.kind for e in await a.events(case_id(1))]
    assert kinds == [EventKind.ENQUEUED, EventKind.CLAIMED]
    # a refused operation is refused again, identically, on replay
    late = claim(1, "POSTE-2")
    for backend in (a, b):
        with pytest.raises(ClaimConflict) as err:
            await backend.apply(late)
        assert err.value.claim.workstation == "POSTE-1"
    release = operation("release", 1, ws="POSTE-3", role="MRU")
    for _ in range(2):
        with pytest.raises(NotHolder):
            await a.apply(release)


def interleave(
    monkeypatch: pytest.MonkeyPatch, schema: str, writes: int, statement: str
) -> list[int]:
    """Make another session commit ``statement`` (on the items table of
    ``schema``) between the unlocked read of an operation and its conditional
    write, ``writes`` times; returns the list of calls made to the rules."""
    from sas_desk.services.queues import postgres

    real = postgres.transition
    calls: list[int] = []

    def racing(op: Operation, item: Any, dossier: Any) -> Any:
        calls.append(item.version if item is not None else -1)
        change = real(op, item, dossier)
        if len(calls) <= writes:
            with psycopg.connect(DSN, autocommit=True) as other:
                other.execute(
                    sql.SQL(statement).format(sql.Identifier(schema, "items")),
                    (op.case_id,),
                )
        return change

    monkeypatch.setattr(postgres, "transition", racing)
    return calls


@pytest.mark.asyncio
async def test_an_item_changed_between_read_and_write_is_decided_again(
    schema: str, make_backend: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim read the item WAITING, but another workstation took it before
    the conditional write: nothing is written, the item is read again -- that
    read refuses the claim on the spot -- and the answer names the real
    holder."""
    a = make_backend("A")
    await a.open()
    await a.apply(enqueue(1))
    calls = interleave(
        monkeypatch,
        schema,
        1,
        "UPDATE {} SET status = 'CLAIMED', claim_workstation = 'POSTE-OTHER', "
        "claim_operator = 'dr.other', claim_role = 'MRU', claimed_at = now(), "
        "expires_at = now() + interval '1 day', version = version + 1 WHERE case_id = %s",
    )
    with pytest.raises(ClaimConflict) as err:
        await a.apply(claim(1, "POSTE-1"))
    assert err.value.claim.workstation == "POSTE-OTHER"
    assert calls == [1]  # decided on version 1; the second read refused it (held)
    kinds = [e.kind for e in await a.events(case_id(1))]
    assert kinds == [EventKind.ENQUEUED]  # the stale decision wrote nothing
    (item,) = await a.snapshot([QueueName.AMU])
    assert item.claim is not None and item.claim.workstation == "POSTE-OTHER"


@pytest.mark.asyncio
async def test_an_item_that_keeps_changing_is_decided_under_the_row_lock(
    schema: str, make_backend: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sas_desk.services.queues.postgres import _OPTIMISTIC_TRIES

    a = make_backend("A")
    await a.open()
    await a.apply(enqueue(1))
    calls = interleave(
        monkeypatch,
        schema,
        _OPTIMISTIC_TRIES,
        "UPDATE {} SET version = version + 1 WHERE case_id = %s",
    )
    item = await a.apply(claim(1, "POSTE-1"))
    assert item is not None and item.claim is not None
    assert item.claim.workstation == "POSTE-1"
    # every optimistic try lost, then one decision under the lock
    assert len(calls) == _OPTIMISTIC_TRIES + 1
    assert calls[-1] == 1 + _OPTIMISTIC_TRIES
    kinds = [e.kind for e in await a.events(case_id(1))]
    assert kinds == [EventKind.ENQUEUED, EventKind.CLAIMED]


# --------------------------------------------------------------------------- (d) leases


@pytest.mark.asyncio
async def test_a_silent_workstation_loses_its_claim_to_the_head_of_the_queue(
    schema: str, make_backend: Factory
) -> None:
    clock = Clock()
    a = make_backend("A", clock=clock)
    b = make_backend("B", clock=clock)
    await a.open()
    await b.open()
    await a.apply(enqueue(1, at=T0))
    await a.apply(enqueue(2, at=T0 + timedelta(seconds=30)))
    await a.apply(enqueue(3, at=T0 + timedelta(seconds=40)))
    claimed_at = T0 + timedelta(minutes=1)
    await a.apply(claim(1, "POSTE-MUET", at=claimed_at, lease_s=120))
    await a.apply(claim(3, "POSTE-VIVANT", at=claimed_at, lease_s=120))

    clock.at = claimed_at + timedelta(seconds=100)
    assert await a.renew("POSTE-VIVANT", clock(), 120) == 1
    assert await a.expire(clock()) == []

    clock.at = claimed_at + timedelta(seconds=121)
    expired, again = await asyncio.gather(a.expire(clock()), b.expire(clock()))
    assert len(expired) + len(again) == 1
    (item,) = expired or again
    assert item.case_id == case_id(1)
    assert item.status is ItemStatus.WAITING and item.claim is None
    assert item.waiting_since == T0
    assert item.alert == "Prise en charge expirée : poste POSTE-MUET muet"
    assert await a.expire(clock() + timedelta(seconds=1)) == []

    queue = await b.snapshot([QueueName.AMU])
    assert [i.case_id for i in queue] == [case_id(1), case_id(2), case_id(3)]
    assert queue[0].alert and queue[2].claim is not None  # the renewed one is kept
    events = await b.events(case_id(1))
    assert [e.kind for e in events] == [
        EventKind.ENQUEUED,
        EventKind.CLAIMED,
        EventKind.LEASE_EXPIRED,
    ]
    assert events[-1].actor.workstation == "POSTE-MUET"
    # someone else may now take it, and the alert goes away
    taken = await b.apply(claim(1, "POSTE-2", at=clock()))
    assert taken is not None and taken.alert == ""


# --------------------------------------------------------------------------- (e) schema


@pytest.mark.asyncio
async def test_upgrade_creates_then_is_idempotent(
    admin: psycopg.AsyncConnection[Any], schema: str, make_backend: Factory
) -> None:
    assert await upgrade(DSN, schema) == (0, LATEST_VERSION)
    assert await upgrade(DSN, schema) == (LATEST_VERSION, LATEST_VERSION)
    backend = make_backend("A")
    await backend.open()
    assert backend.schema_versions == (LATEST_VERSION, LATEST_VERSION)
    cur = await admin.execute(
        sql.SQL("SELECT version FROM {} ORDER BY version").format(
            sql.Identifier(schema, "schema_version")
        )
    )
    assert [r[0] for r in await cur.fetchall()] == list(range(1, LATEST_VERSION + 1))

    # the event log is append-only, even for the table owner
    await backend.apply(enqueue(1))
    events = sql.Identifier(schema, "events")
    for statement in (
        sql.SQL("UPDATE {} SET kind = 'CLOSED'").format(events),
        sql.SQL("DELETE FROM {}").format(events),
        sql.SQL("TRUNCATE {}").format(events),
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await admin.execute(statement)
    assert len(await backend.events(case_id(1))) == 1


@pytest.mark.asyncio
async def test_open_migrates_an_empty_schema_and_refuses_a_newer_one(
    admin: psycopg.AsyncConnection[Any], schema: str, make_backend: Factory
) -> None:
    backend = make_backend("A")
    await backend.open()
    assert backend.schema_versions == (0, LATEST_VERSION)
    await admin.execute(
        sql.SQL("INSERT INTO {} (version, description) VALUES (%s, 'futur')").format(
            sql.Identifier(schema, "schema_version")
        ),
        (LATEST_VERSION + 1,),
    )
    newer = make_backend("B")
    with pytest.raises(BackendUnavailable) as err:
        await newer.open()
    assert "plus récente" in err.value.message_fr
    with pytest.raises(BackendUnavailable):
        await upgrade(DSN, schema)


@pytest.mark.asyncio
async def test_cli_db_upgrade(schema: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_db_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["db", "upgrade", "--dsn", DSN, "--schema", schema])
    assert await run_db_command(args) == 0
    assert await run_db_command(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"Schéma {schema} : version 0 → {LATEST_VERSION}",
        f"Schéma {schema} : version {LATEST_VERSION} → {LATEST_VERSION}",
    ]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.asyncio
async def test_unreachable_server_is_reported_in_french_without_the_password(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    dsn = f"postgresql://sas:s3cr3t-pw@127.0.0.1:{closed_port()}/sas"
    backend = PostgresBackend(dsn, now=Clock(), schema="sas_desk", connect_timeout=2)
    caplog.set_level(logging.DEBUG, logger="sas_desk")
    try:
        with pytest.raises(BackendUnavailable) as err:
            await backend.open()
        assert err.value.message_fr.startswith("Serveur des files injoignable")
        with pytest.raises(BackendUnavailable):
            await backend.apply(enqueue(1))
        assert "s3cr3t" not in backend.safe_dsn
    finally:
        await backend.close()
    with pytest.raises(BackendUnavailable):
        await backend.apply(enqueue(1))  # closed for good

    parser = argparse.ArgumentParser()
    add_db_parser(parser.add_subparsers(dest="command"))
    assert await run_db_command(parser.parse_args(["db", "upgrade", "--dsn", dsn])) == 1
    err_out = capsys.readouterr().err
    assert "injoignable" in err_out
    assert "s3cr3t" not in err_out + caplog.text


# --------------------------------------------------------------------------- semantics seen from the server


@pytest.mark.asyncio
async def test_decisions_are_checked_against_the_code_lists(
    schema: str, make_backend: Factory
) -> None:
    backend = make_backend("A")
    await backend.open()
    await backend.apply(enqueue(1))
    await backend.apply(claim(1, "POSTE-1"))

    def decide(**data: Any) -> Operation:
        return operation("decide", 1, ws="POSTE-1", role="MRU", **data)

    bad = [
        decide(care_level="R9", decisions=[]),
        decide(care_level="R2", decisions=[{"decision_type": "NIMPORTE"}]),
        decide(care_level="R2", decisions=[{"decision_type": "ORIENT", "orientation_type": "X"}]),
        decide(care_level="R2", decisions=[{"decision_type": "INTER", "resource_type": "OVNI"}]),
    ]
    for op in bad:
        with pytest.raises(QueueError) as err:
            await backend.apply(op)
        assert type(err.value) is QueueError and err.value.message_fr
    with pytest.raises(NotHolder):
        await backend.apply(
            operation("decide", 1, ws="POSTE-2", role="MRU", care_level="R2", decisions=[])
        )
    item = await backend.apply(
        decide(
            care_level="R3",
            decisions=[{"decision_type": "INTER", "resource_type": "SMUR", "freetext": "SMUR"}],
            note="Douleur thoracique typique, SMUR engagé.",
        )
    )
    assert item is not None and item.status is ItemStatus.CLAIMED
    dossier = await backend.dossier(case_id(1))
    assert dossier is not None and dossier.care_level == "R3"
    assert [d.resource_type for d in dossier.decisions] == ["SMUR"]
    assert dossier.notes[-1].role == "MEDECIN"
    kinds = [e.kind for e in await backend.events(case_id(1))]
    assert kinds == [EventKind.ENQUEUED, EventKind.CLAIMED, EventKind.DECIDED]


@pytest.mark.asyncio
async def test_password_comes_from_the_keyring_when_the_dsn_has_none(
    schema: str, make_backend: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keyring

    asked: list[tuple[str, str]] = []

    def get_password(service: str, username: str) -> str | None:
        asked.append((service, username))
        return "mot-de-passe"  # ignored by a trust server, but sent

    monkeypatch.setattr(keyring, "get_password", get_password)
    dsn = make_conninfo(DSN, user="postgres", host="127.0.0.1")
    backend = make_backend("A", dsn=dsn)
    await backend.open()
    await backend.apply(enqueue(1))
    assert asked == [("sas-desk", "postgres:postgres@127.0.0.1")]  # looked up once
    assert "mot-de-passe" not in backend.safe_dsn

    with_password = make_backend("B", dsn=make_conninfo(DSN, password="dans-le-dsn"))
    await with_password.open()
    assert len(asked) == 1  # the DSN's own password wins, no keyring lookup
    assert "dans-le-dsn" not in with_password.safe_dsn


@pytest.mark.asyncio
async def test_refusals_are_committed_without_waiting_for_the_wal_flush(
    admin: psycopg.AsyncConnection[Any], schema: str, make_backend: Factory
) -> None:
    """A refused claim and a stored no-op answer are single autocommit
    statements that turn ``synchronous_commit`` off for their own transaction
    only (so their commit does not wait for the disk); a claim that is not
    refused leaves the setting alone for the write that follows."""
    from sas_desk.services.queues import postgres

    a = make_backend("A")
    await a.open()
    await a.apply(enqueue(1))
    await a.apply(enqueue(2))
    await a.apply(claim(1, "POSTE-1"))
    await admin.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))

    async def setting_after(statement: str, params: Any) -> tuple[Any, str]:
        async with admin.transaction(force_rollback=True):
            row = await (await admin.execute(statement, params)).fetchone()
            shown = await (await admin.execute("SHOW synchronous_commit")).fetchone()
        assert shown is not None
        return row, shown[0]

    def read(n: int) -> dict[str, Any]:
        return {
            "case_id": case_id(n),
            "op_id": f"op-{n}",
            "stamp": T0,
            "workstation": "POSTE-2",
            "at": T0,
            "queues": ["AMU"],  # an MRU's
        }

    refused, setting = await setting_after(postgres._READ_OR_REFUSE_CLAIM[False], read(1))
    assert refused is not None and setting == "off"
    waiting, setting = await setting_after(postgres._READ_OR_REFUSE_CLAIM[False], read(2))
    assert waiting is not None and setting == "off"  # wrote nothing: nothing to flush
    stored, setting = await setting_after(
        postgres._RECORD_OUTCOME, ("op-x", "note", case_id(1), T0, psycopg.types.json.Jsonb({}))
    )
    assert stored is not None and setting == "off"
    async with admin.transaction(force_rollback=True):
        shown = await (await admin.execute("SHOW synchronous_commit")).fetchone()
    assert shown is not None and shown[0] == "on"  # outside those statements: untouched
    with pytest.raises(ClaimConflict):
        await a.apply(claim(1, "POSTE-2"))
