"""One state machine, two stores: random sequences of operations applied to
SQLite and to PostgreSQL give the same answers, items, dossiers and logs.

Each example is a list of steps -- operations of every kind by several
actors (roles, workstations) with valid and invalid data, replays of an
earlier ``op_id``, lease renewals and expiries, and a fake clock moving
forward -- applied in the same order to a fresh SQLite file and a fresh
PostgreSQL schema.  After every step both answers must agree; at the end
the queues, the server dossiers and the event logs (sequence numbers
compared by order only) must be identical, hashes included, and both
hash chains must verify.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sas_desk.models.dossier import Actor, Branch, Event
from sas_desk.models.queue import Operation, QueueError, QueueItem, QueueName
from sas_desk.services.queues.api import QueueBackend
from sas_desk.services.queues.sqlite import SqliteBackend
from tests.conftest import unavailable
from tests.integration.queues.support import (
    ARM,
    DENT,
    MRL,
    MRU,
    MRU2,
    OSNP,
    SUP,
    T0,
    FakeClock,
    make_dossier,
)

PG_DSN = os.environ.get("SAS_DESK_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
ACTORS = (ARM, MRU, MRU2, MRL, OSNP, DENT, SUP)
CASES = (
    make_dossier(1, branch=Branch.AMU, priority="P1"),
    make_dossier(2, branch=Branch.SNP, motive=("M01.03", "")),  # label from the code list
    make_dossier(3, branch=Branch.DENT, priority="P3"),
)

# data variants per kind: valid and invalid
LEASES = [None, 120.0, 30, 0, -5, 901, 3e9, float("inf"), float("nan"), "60", True]
DATA: dict[str, list[dict[str, Any]]] = {
    "claim": [{"lease_s": v} if v is not None else {} for v in LEASES],
    "release": [{}, {"reason": "pause"}, {"reason": 3}],
    "transfer": [{"to": "SNP", "reason": "généraliste"}, {"to": "AMU"}, {"to": "XX"}, {}],
    "decide": [
        {"care_level": "R3"},
        {"decisions": [{"decision_type": "CONSEIL", "freetext": "rappeler"}]},
        {"care_level": "R9"},
        {"decisions": [{"decision_type": "NOPE"}]},
        {"decisions": ""},
        {"note": "  douleur thoracique  "},
        {},
    ],
    "request_booking": [{}, {"note": "consultation sous 48 h"}],
    "hand_back": [{"reason": "rappeler"}, {}],
    "close": [{"reason": "fin"}, {}],
    "note": [{"text": "  vu au téléphone "}, {"text": "rappel"}, {"text": ""}, {"text": 5}],
    "reassign": [
        {"to_workstation": "POSTE-03", "to_operator": "dr.petit", "to_role": "MRU"},
        {"to_workstation": ""},
        {"to_workstation": "POSTE-04", "to_role": "MRL", "lease_s": 3e9},
    ],
    "orient": [
        {"orientation": "booking", "text": "RDV demain 9 h", "details": {"slot_id": "s1"}},
        {"orientation": "dental", "text": "cabinet de garde", "details": {"modes": ["CAB"]}},
        {"orientation": "taxi", "text": "x"},
        {"orientation": "booking", "text": ""},
        {"orientation": "booking", "text": "x", "details": {"a": {"b": 1}}},
    ],
    "update": [
        {"note": "malaise", "priority": "P0"},
        {"note": " rappel "},
        {"priority": "P3"},
        {"priority": "P9"},
        {},
    ],
    "hub": [
        {"event": "APPOINTMENT", "data": {"appointment_id": "a1", "text": "RDV 14:00"}},
        {"event": "HUB_ACK", "data": {"ref": "x", "refused": False}},
        {"event": "HUB_UPDATE", "data": {}, "update": {"caseId": "x.y.z.w"}},
        {"event": "NOPE", "data": {}},
        {"event": "HUB_ALARM"},
    ],
    "unknown": [{}],
}
ENQUEUE = [{}, {"queue": "SNP"}, {"queue": "XX"}, {"dossier": "garbage"}]
KINDS = sorted([*DATA, "enqueue"])
WEIGHTED_KINDS = [*KINDS, "claim", "claim", "claim", "decide", "release"]


@dataclass(frozen=True)
class Step:
    what: str  # op | replay | renew | expire | advance
    kind: str = ""
    case: int = 0
    actor: int = 0
    variant: int = 0
    utc: bool = False  # the operation's time in UTC rather than Paris time
    seconds: float = 0.0


# mostly operations; leases need time to pass and someone to expire them
steps = st.builds(
    Step,
    what=st.sampled_from(["op"] * 8 + ["replay", "renew", "expire", "advance", "advance"]),
    kind=st.sampled_from(WEIGHTED_KINDS),
    case=st.integers(0, len(CASES) - 1),
    actor=st.integers(0, len(ACTORS) + 12),  # beyond ACTORS: one who works the item
    variant=st.one_of(st.just(0), st.just(1), st.integers(0, 50)),  # valid data first
    utc=st.booleans(),
    seconds=st.sampled_from([1.0, 45.0, 130.0, 1000.0, 60.0, 0.0, 1e9]),
)


WORKS = {"AMU": (MRU, MRU2), "SNP": (MRL,), "DENT": (DENT,), "OSNP": (OSNP,), "ARM": (ARM,)}


def _actor(step: Step, item: QueueItem | None) -> Actor:
    """The step's actor; past the list, the item's holder or one who works
    its queue (so that many operations get past the remit checks)."""
    if step.actor < len(ACTORS):
        return ACTORS[step.actor]
    if item is None:
        return ARM
    if item.claim is not None and step.actor % 2:
        return Actor(item.claim.role, item.claim.operator, item.claim.workstation)
    choices = WORKS[item.queue.value]
    return choices[step.actor % len(choices)]


def _operation(step: Step, at: datetime, item: QueueItem | None) -> Operation:
    actor = _actor(step, item)
    dossier = CASES[step.case]
    if step.kind == "enqueue":
        data = dict(ENQUEUE[step.variant % len(ENQUEUE)])
        data.setdefault("dossier", dossier.to_dict())
    else:
        variants = DATA[step.kind]
        data = dict(variants[step.variant % len(variants)])
    return Operation(
        op_id=uuid4().hex,
        kind=step.kind,
        case_id=dossier.case_id,
        at=at.astimezone(UTC) if step.utc else at,
        role=actor.role,
        operator=actor.operator,
        workstation=actor.workstation,
        data=data,
    )


async def _answer(call: Any) -> tuple[Any, ...]:
    try:
        result = await call
    except QueueError as exc:
        return ("refused", type(exc).__name__, exc.code, exc.message_fr)
    return ("ok", result)


def _log(events: list[Event]) -> list[tuple[Any, ...]]:
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    return [(e.at, e.kind, e.actor, e.data, e.op_id, e.prev_hash, e.hash) for e in events]


async def _both(backends: list[QueueBackend], make: Any) -> tuple[Any, ...]:
    answers = [await _answer(make(b)) for b in backends]
    assert answers[0] == answers[1], answers
    return answers[0]


async def _run(script: list[Step], path: Path, schema: str) -> None:
    from sas_desk.services.queues.postgres import PostgresBackend

    clock = FakeClock(T0)
    backends: list[QueueBackend] = [
        SqliteBackend(path, now=clock),
        PostgresBackend(PG_DSN, now=clock, schema=schema),
    ]
    try:
        for b in backends:
            await b.open()
        applied: list[Operation] = []
        for step in script:
            if step.what == "advance":
                clock.advance(min(step.seconds, 3600.0))
            elif step.what == "op":
                current = {i.case_id: i for i in await backends[0].snapshot(list(QueueName))}
                op = _operation(step, clock(), current.get(CASES[step.case].case_id))
                applied.append(op)
                answer = await _both(backends, lambda b, op=op: b.apply(op))
                event(f"{op.kind}: {answer[0]}")
            elif step.what == "replay" and applied:
                op = applied[step.variant % len(applied)]
                await _both(backends, lambda b, op=op: b.apply(op))
            elif step.what == "renew":
                ws = ACTORS[step.actor % len(ACTORS)].workstation
                now = clock()
                await _both(backends, lambda b, ws=ws, now=now, s=step.seconds: b.renew(ws, now, s))
            elif step.what == "expire":
                now = clock()
                answer = await _both(backends, lambda b, now=now: b.expire(now))
                event(f"expire: {'some' if answer[1] else 'none'}")
        snapshots = [await b.snapshot(list(QueueName)) for b in backends]
        assert snapshots[0] == snapshots[1]
        for dossier in CASES:
            stored = [await b.dossier(dossier.case_id) for b in backends]
            assert stored[0] == stored[1]
            logs = [_log(await b.events(dossier.case_id)) for b in backends]
            assert logs[0] == logs[1]
        for b in backends:
            assert await b.verify_log() == []
    finally:
        for b in backends:
            await b.close()


@pytest.fixture(scope="module")
def postgres_ready() -> None:
    import psycopg

    try:
        psycopg.connect(PG_DSN, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        unavailable(f"PostgreSQL unreachable (SAS_DESK_TEST_PG_DSN): {exc}")


@settings(
    max_examples=int(os.environ.get("SAS_DESK_MACHINE_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    script=st.lists(steps, min_size=5, max_size=40).map(
        lambda rest: [Step("op", "enqueue", case=n) for n in range(len(CASES))] + rest
    )
)
def test_sqlite_and_postgres_run_the_same_machine(postgres_ready: None, script: list[Step]) -> None:
    import psycopg
    from psycopg import sql

    schema = f"m_{uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            asyncio.run(_run(script, Path(tmp) / "queues.sqlite", schema))
        finally:
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )


def test_the_script_reaches_every_kind() -> None:
    """The strategy covers every operation kind of the API (and an unknown one)."""
    from sas_desk.services.queues.api import OPERATION_KINDS

    assert set(OPERATION_KINDS) <= set(KINDS)
