"""Regulator queues on PostgreSQL under a whole room: 50 workstations, one server.

    python bench/queues.py [--workstations N] [--seconds S] [--contested N] [--procs P] [--quick]
                           [--via-server]

Needs a PostgreSQL server (``--dsn``, else ``SAS_DESK_BENCH_PG_DSN``, else
``SAS_DESK_TEST_PG_DSN``, else ``postgresql://postgres@127.0.0.1:5432/test``)
and, for the side-by-side comparison, ``pip install pgqueuer`` (not a
dependency of SAS Desk; without it the comparison is skipped and said so).

Every workstation is its own ``PostgresBackend`` (its own pool and connection,
``application_name=bench-wsNN``).  They run as tasks on ONE asyncio loop in
this process (``--procs 1``, the default), or spread round-robin over P
processes, one loop each (``--procs P``): the server always sees one session
per workstation, but the client side of many workstations shares one Python
thread, so the output gives the client processes' CPU and the loop lag — a
client bottleneck shows there.  A few *observer* backends watch every queue
(``watch()``, one LISTEN connection each, at least one per process); the
regulators read the head of their queue from an observer's mirror in their
process (a real workstation has its own watch: 50 more LISTEN connections
would not fit in the default ``max_connections`` of 100 next to the pools).

1. **Mixed phase** (``--seconds``, 60 s): ARM stations enqueue transmitted
   dossiers (AMU, SNP or DENT, weighted by the number of regulators of each
   queue, and held back while their queue already has a backlog); MRU, MRL and
   dental regulators claim one of the first three WAITING items of their
   queue, decide, then close it (MRL: half of them request a booking instead,
   which moves the item to OSNP, where OSNP stations claim and close it).
   Each station waits ``--think-ms`` (250 ms × 0.5–1.5) between two operations:
   ≈ 170 operations/s for 50 stations, two orders of magnitude above a
   real room at its peak (a few per second); ``--think-ms 0`` runs flat out.
2. **Contested phase**: rounds of ``--batch`` new AMU items; once they are
   queued every workstation, as an emergency regulator (only the roles working
   a queue may claim in it), tries to claim every one of them, all in the same
   order (everyone clicks the head of the queue), until ``--contested`` attempts
   (10,000) have been made, with the longest lease (``MAX_LEASE_S``): the
   winners still hold their items when the database is checked (through the
   server, whose own task expires leases, a 120 s lease ran out on a loaded
   machine before the check).  Afterwards the database is checked: one CLAIMED
   event and one successful claim outcome per item, held by the client's
   winner, every refusal naming that holder; and the whole event log is
   replayed to find any moment two workstations held one item.
3. **Peer**: the same contested dequeue load through pgqueuer's own dequeue
   (``FOR UPDATE SKIP LOCKED``): as many consumers as workstations, each with
   its own psycopg connection, spread over the same processes, racing over as
   many jobs per round as we made claim attempts per round.

4. **Through the room server** (``--via-server``): after the three phases
   above, the same room again (phases 1 and 2, a schema of its own) through a
   ``sas-desk server`` process on loopback: accounts made with ``sas-desk
   server user add`` (one per role, allowed MRU too), every workstation a
   :class:`RemoteBackend` with its own session (its workstation name; a second
   session of the same account as MRU for the contested phase: the server
   takes the role from the session, never from the operation), every
   observer a supervisor following ``/v1/stream`` (SSE).  The database
   checks are the same; then both passes side by side with their ratio.
   The RESULT line holds the server pass's keys (the goals are judged
   there), ``direct_*`` for the baseline, the peer's (measured once, in the
   direct pass), the ratios and ``via_server``.

Also printed: each phase's CPU (client processes, postgres, the rest of the
machine), the event loop's lag, and what the workstations' server sessions
were doing (``pg_stat_activity`` every 50 ms: idle, running, waiting for a
lock, or holding locks while waiting for the client's next round trip).

Goals: claim p99 ≤ 25 ms (every claim attempt, both phases), change visible in
another workstation's watch p99 ≤ 250 ms, 0 double claims.

Exit code 0 when the measurement completed (goals met or not), 1 when it
cannot be trusted (an unexpected error from the backend, a change never seen
by an observer, the database disagreeing with what the clients were told),
2 on bad arguments.  Everything is created in schemas with a random suffix,
dropped at the end even on error.  The last line is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import multiprocessing
import os
import queue
import random
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from psycopg import sql

from sas_desk.models.dossier import Actor, Branch, Dossier, Status
from sas_desk.models.queue import (
    ClaimConflict,
    ItemStatus,
    Operation,
    QueueError,
    QueueItem,
    QueueName,
)
from sas_desk.services.queues.api import MAX_LEASE_S, BackendUnavailable, QueueBackend
from sas_desk.services.queues.postgres import PostgresBackend, upgrade
from sas_desk.services.queues.remote import Credentials, RemoteBackend, RoomSession, TokenStore

GOAL_CLAIM_P99_MS = 25.0
GOAL_VISIBLE_P99_MS = 250.0
GOAL_DOUBLE_CLAIMS = 0
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
OWNER = "fr.health.samu690"
PEER = "pgqueuer"
# Why pgqueuer rather than procrastinate (both well kept, both dequeue with
# SELECT … FOR UPDATE SKIP LOCKED): pgqueuer drives psycopg 3's
# AsyncConnection directly — the driver and connection kind SAS Desk uses —
# and its dequeue is one SQL statement callable on its own
# (``Queries.dequeue``), so the comparison is one connection and one
# primitive against one connection and one ``apply(claim)``.  Procrastinate
# goes through its own connector and a psycopg_pool and dequeues inside a
# PL/pgSQL function (``procrastinate_fetch_job``) wrapped in a worker
# framework.  pgqueuer also puts every object it creates in a schema of our
# choosing (``DBSettings(db_schema=…)``), so cleaning up is one DROP SCHEMA.
PEER_WHY = (
    "drives psycopg 3 AsyncConnection like SAS Desk, its dequeue is one "
    "SELECT … FOR UPDATE SKIP LOCKED statement callable on its own, and it installs "
    "into a schema of our choosing"
)
# share of each role among the workstations
ROLE_SHARE = (("ARM", 5), ("MRU", 8), ("MRL", 6), ("DENT", 3), ("OSNP", 3))
ROLE_QUEUE = {
    "MRU": QueueName.AMU,
    "MRL": QueueName.SNP,
    "DENT": QueueName.DENT,
    "OSNP": QueueName.OSNP,
}
QUEUE_BRANCH = {QueueName.AMU: Branch.AMU, QueueName.SNP: Branch.SNP, QueueName.DENT: Branch.DENT}
MOTIVES = (
    ("M01.03", "Détresse respiratoire"),
    ("M02.00", "Douleur thoracique"),
    ("M01.00", "Malaise"),
)
CITIES = ("Villeurbanne", "Lyon", "Vénissieux", "Bron", "Caluire-et-Cuire")
PRIORITY_WEIGHTS = (("P0", 1), ("P1", 3), ("P2", 8), ("P3", 6), ("NR", 2))
HEARTBEAT_S = 0.005
BARRIER_TIMEOUT_S = 600.0
RELEASING = {
    "RELEASED",
    "TRANSFERRED",
    "BOOKING_REQUESTED",
    "HANDED_BACK",
    "CLOSED",
    "LEASE_EXPIRED",
}


def now() -> datetime:
    return datetime.now().astimezone()


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (``nan`` for no value)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def fmt(value: float, unit: str = " ms") -> str:
    return "—" if math.isnan(value) else f"{value:.1f}{unit}"


def rounded(value: float, digits: int = 2) -> float | None:
    return None if math.isnan(value) else round(value, digits)


def row(label: str, values: list[float], extra: str = "") -> str:
    if not values:
        return f"{label:20} {0:7d}"
    return (
        f"{label:20} {len(values):7d} {fmt(pct(values, 50)):>9} {fmt(pct(values, 99)):>9} "
        f"{fmt(max(values)):>9}{extra}"
    )


# --------------------------------------------------------------------------- CPU


def _ticks() -> float:
    return float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0


def _postgres_stats() -> dict[int, list[int]]:
    """utime, stime, cutime, cstime (ticks) of every ``postgres`` process."""
    found: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        if raw[raw.find("(") + 1 : raw.rfind(")")] == "postgres":
            fields = raw[raw.rfind(")") + 2 :].split()
            found[int(entry.name)] = [int(f) for f in fields[11:15]]
    return found


def postgres_cpu() -> float | None:
    """CPU seconds of every ``postgres`` process on the machine (Linux):
    their own time plus the time of the backends already gone (the
    postmaster's cutime + cstime, its reaped children).  A backend reaped
    while the scan runs would be missed (or counted twice): the scan is
    repeated until no reaping happened during it."""
    if not Path("/proc").is_dir():
        return None
    stats = _postgres_stats()
    for _ in range(5):
        again = _postgres_stats()
        if {p: v[2:] for p, v in again.items() if p in stats} == {
            p: v[2:] for p, v in stats.items() if p in again
        } and set(stats) == set(again):
            break
        stats = again
    return sum(sum(v) for v in stats.values()) / _ticks()


def machine_busy() -> float | None:
    """Busy CPU seconds of the whole machine (Linux)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    values = [int(v) for v in first[1:8]] + [0] * 7
    # user nice system idle iowait irq softirq: idle and iowait are not busy,
    # steal (the hypervisor's) is left out
    return (sum(values[:7]) - values[3] - values[4]) / _ticks()


def process_cpu(pid: int | None) -> float | None:
    """CPU seconds (user + system) of one process (Linux): the room server."""
    if pid is None:
        return None
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _ticks()


class CpuMeter:
    """CPU of this process (and, in process 0, of postgres, the room server
    when there is one, and the machine) over each phase."""

    def __init__(
        self,
        machine: bool,
        server_pid: int | None = None,
        dsn: str = "",
        own_sessions: str = "",
    ) -> None:
        self.machine = machine
        self.server_pid = server_pid
        self.dsn = dsn
        self.own_sessions = own_sessions  # application_name pattern of this run's sessions
        self.phases: dict[str, list[float | None]] = {}
        self._start: list[float | None] = []
        self._pids: list[int] = []

    def start(self) -> None:
        self._pids = self._own_pids()
        self._start = self._sample()

    def _own_pids(self) -> list[int]:
        """The postgres backends of this run's sessions (pools and LISTEN
        connections live through a phase): their CPU alone, where the
        machine-wide postgres figure also counts anyone else's queries."""
        if not (self.machine and self.dsn and self.own_sessions):
            return []
        try:
            with psycopg.connect(self.dsn, autocommit=True, application_name="bench-cpu") as c:
                rows = c.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name ~ %s",
                    (self.own_sessions,),
                ).fetchall()
        except psycopg.Error:
            return []
        return [int(r[0]) for r in rows]

    def stop(self, phase: str) -> None:
        end = self._sample()
        self.phases[phase] = [
            None if a is None or b is None else b - a for a, b in zip(self._start, end, strict=True)
        ]

    def _sample(self) -> list[float | None]:
        sample: list[float | None] = [time.monotonic(), time.process_time()]
        sample += [postgres_cpu(), machine_busy()] if self.machine else [None, None]
        sample.append(process_cpu(self.server_pid) if self.machine else None)
        own = [process_cpu(pid) for pid in self._pids]
        sample.append(sum(x for x in own if x is not None) if self._pids else None)
        return sample


def cpu_per_attempt(
    per_proc: list[dict[str, list[float | None]]], phase: str, attempts: int
) -> dict[str, float]:
    """CPU milliseconds per attempt of the phase: the client processes, the
    room server (when there is one) and postgres -- what each attempt costs
    the machine, whatever else runs on it (a capacity bound, unlike the
    latencies, which a loaded machine stretches)."""
    found = [p[phase] for p in per_proc if phase in p]
    if not found or not attempts:
        return {}
    out = {"clients": 1000 * sum(f[1] or 0.0 for f in found) / attempts}
    server = next((f[4] for f in found if len(f) > 4 and f[4] is not None), None)
    if server is not None:
        out["room server"] = 1000 * server / attempts
    pg = next((f[2] for f in found if f[2] is not None), None)
    if pg is not None:
        out["postgres"] = 1000 * pg / attempts
    own = next((f[5] for f in found if len(f) > 5 and f[5] is not None), None)
    if own is not None:
        out["postgres (this run's sessions)"] = 1000 * own / attempts
    return out


def cpu_line(per_proc: list[dict[str, list[float | None]]], phase: str) -> str:
    found = [p[phase] for p in per_proc if phase in p]
    if not found:
        return "?"
    wall = max(f[0] or 0.0 for f in found) or 1e-9
    own = sum(f[1] or 0.0 for f in found)
    n = len(found)
    parts = [
        f"client {'process' if n == 1 else f'{n} processes'} {100 * own / wall:.0f}% of a core"
        + ("" if n == 1 else " in all")
    ]
    pg = next((f[2] for f in found if f[2] is not None), None)
    busy = next((f[3] for f in found if f[3] is not None), None)
    server = next((f[4] for f in found if len(f) > 4 and f[4] is not None), None)
    cores = os.cpu_count() or 1
    if server is not None:
        parts.append(f"room server {100 * server / wall:.0f}%")
    if pg is not None:
        parts.append(f"postgres {100 * pg / wall:.0f}%")
    if busy is not None:
        parts.append(f"machine {100 * busy / wall / cores:.0f}% busy ({cores} cores)")
        if pg is not None:  # other processes: someone else's load skews the figures
            others = busy - pg - own - (server or 0.0)
            parts.append(f"other processes {max(0.0, 100 * others / wall):.0f}%")
    return ", ".join(parts)


# --------------------------------------------------------------------------- records


class Applied(NamedTuple):
    """A successful apply(): what the other workstations should see, and
    when it returned on the workstation that made it."""

    case_id: str
    version: int
    at: float  # time.monotonic() (system-wide on Linux) when apply() returned
    removed: bool  # closed: leaves every queue
    phase: str


class Attempt(NamedTuple):
    case_id: str
    workstation: str
    won: bool
    ms: float
    holder: str  # the winner, or the holder named by ClaimConflict


@dataclass
class Stats:
    """What one process measured; plain data so that it crosses processes."""

    ops: Counter[str] = field(default_factory=Counter)  # mixed phase, by kind
    op_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    claim_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    races: Counter[str] = field(default_factory=Counter)  # expected refusals
    errors: Counter[str] = field(default_factory=Counter)  # unexpected ones
    applied: list[Applied] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)  # contested phase
    lag: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    idle_polls: int = 0
    held_back: int = 0
    phase: str = "setup"

    def error(self, what: str, exc: BaseException) -> None:
        message = getattr(exc, "message_fr", None) or str(exc)
        self.errors[f"{what}: {type(exc).__name__}: {message}"] += 1

    def plain(self) -> dict[str, Any]:
        return {
            "ops": dict(self.ops),
            "op_ms": dict(self.op_ms),
            "claim_ms": dict(self.claim_ms),
            "races": dict(self.races),
            "errors": dict(self.errors),
            "applied": [tuple(a) for a in self.applied],
            "attempts": [tuple(a) for a in self.attempts],
            "lag": dict(self.lag),
            "idle_polls": self.idle_polls,
            "held_back": self.held_back,
        }

    def absorb(self, raw: dict[str, Any]) -> None:
        self.ops.update(raw["ops"])
        self.races.update(raw["races"])
        self.errors.update(raw["errors"])
        for mine, theirs in (
            (self.op_ms, raw["op_ms"]),
            (self.claim_ms, raw["claim_ms"]),
            (self.lag, raw["lag"]),
        ):
            for key, values in theirs.items():
                mine[key].extend(values)
        self.applied.extend(Applied(*a) for a in raw["applied"])
        self.attempts.extend(Attempt(*a) for a in raw["attempts"])
        self.idle_polls += raw["idle_polls"]
        self.held_back += raw["held_back"]


class LogCounter(logging.Handler):
    """Warnings and errors logged by SAS Desk during the run."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.seen[f"{record.levelname} {record.name}: {record.getMessage()}"] += 1


# --------------------------------------------------------------------------- room server


class MemoryTokens(TokenStore):
    """A bench workstation keeps its refresh token in memory (no keyring)."""

    async def load(self) -> str | None:
        return self._memory

    async def save(self, token: str) -> None:
        self._memory = token

    async def clear(self) -> None:
        self._memory = None


def account_roles(role: str) -> list[str]:
    """The roles of the bench account of ``role``: its own, and MRU for the
    contested phase (every workstation claims as an emergency regulator)."""
    return [role] if role in ("MRU", "SUP") else [role, "MRU"]


class RoomServerProcess:
    """``sas-desk server`` on loopback (port chosen by the system) over a
    schema of its own; its accounts made with ``sas-desk server user add``
    (one per role, argon2 with the server's own parameters)."""

    def __init__(self, dsn: str, schema: str, log_path: Path) -> None:
        self.dsn = dsn
        self.schema = schema
        self.log_path = log_path
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        root = Path(__file__).resolve().parent.parent
        self.cwd = root
        self.env = {**os.environ, "PYTHONPATH": str(root)}

    def _db(self) -> list[str]:
        return ["--dsn", self.dsn, "--schema", self.schema]

    def add_accounts(self) -> dict[str, tuple[str, str]]:
        accounts: dict[str, tuple[str, str]] = {}
        for role in [r for r, _ in ROLE_SHARE] + ["SUP"]:
            login, password = f"bench.{role.lower()}", secrets.token_urlsafe(18)
            roles = [arg for r in account_roles(role) for arg in ("--role", r)]
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "sas_desk",
                    "server",
                    "user",
                    "add",
                    login,
                    *roles,
                    *self._db(),
                ],
                input=password + "\n",
                capture_output=True,
                text=True,
                cwd=self.cwd,
                env=self.env,
                timeout=120,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"server user add {login}: {done.stderr.strip()}")
            accounts[role] = (login, password)
        return accounts

    def start(self) -> str:
        with self.log_path.open("w") as err:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "sas_desk",
                    "server",
                    *self._db(),
                    "--listen",
                    "127.0.0.1:0",
                    "--allow-superuser",
                ],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                cwd=self.cwd,
                env=self.env,
            )
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            assert self.process is not None and self.process.stdout is not None
            for line in self.process.stdout:
                lines.put(line.strip())

        threading.Thread(target=pump, daemon=True).start()
        try:
            first = lines.get(timeout=60)
        except queue.Empty:
            first = ""
        if not first.startswith("LISTEN "):
            self.stop()
            raise RuntimeError(f"room server did not start: {first} {self.log_path.read_text()}")
        self.url = first.split()[1]
        return self.url

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def stop(self) -> int | None:
        """SIGTERM (streams told ``bye``, in-flight requests finish); its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log_lines(self) -> list[str]:
        try:
            return [line for line in self.log_path.read_text().splitlines() if line.strip()]
        except OSError:
            return []


# --------------------------------------------------------------------------- room


class Observer:
    """A workstation that only watches every queue: records when each
    (case_id, version) first shows up in its ``watch()`` stream."""

    def __init__(self, name: str, backend: QueueBackend) -> None:
        self.name = name
        self.backend = backend
        self.items: dict[str, QueueItem] = {}
        self.seen: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self.removed: dict[str, float] = {}
        self.sets = 0
        self.resets = 0
        self.last_change = time.monotonic()
        self.ready = asyncio.Event()

    async def run(self) -> None:
        changes = self.backend.watch(list(QueueName))
        async with contextlib.aclosing(changes):
            async for change in changes:
                t = time.monotonic()
                self.sets += 1
                self.last_change = t
                if change.reset:
                    self.resets += 1
                    self.items = {}
                for item in change.items:
                    self.items[item.case_id] = item
                    self.seen[item.case_id].append((item.version, t))
                for case_id in change.removed:
                    self.items.pop(case_id, None)
                    self.removed.setdefault(case_id, t)
                self.ready.set()

    def waiting(self, name: QueueName) -> list[QueueItem]:
        found = [
            i for i in self.items.values() if i.queue is name and i.status is ItemStatus.WAITING
        ]
        found.sort(key=QueueItem.sort_key)
        return found

    def plain(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seen": dict(self.seen),
            "removed": self.removed,
            "sets": self.sets,
            "resets": self.resets,
        }


@dataclass
class Station:
    name: str
    role: str
    backend: QueueBackend
    observer: Observer
    rng: random.Random
    # the contested phase's backend: every workstation claims as an emergency
    # regulator (MRU).  Direct: the same backend (the role travels in the
    # operation).  Through the server the role is the session's: a second
    # session of the same account and workstation, opened as MRU.
    contest: QueueBackend | None = None

    def op(self, kind: str, case_id: str, *, role: str = "", **data: Any) -> Operation:
        actor = Actor(role or self.role, f"op.{self.name}", self.name)
        return Operation(
            op_id=uuid.uuid4().hex,
            kind=kind,
            case_id=case_id,
            at=now(),
            role=actor.role,
            operator=actor.operator,
            workstation=actor.workstation,
            data=data,
        )


def allocate_roles(count: int) -> list[str]:
    """Roles of ``count`` workstations in the proportions of ROLE_SHARE
    (largest remainder, at least one of each once there are enough)."""
    total = sum(w for _, w in ROLE_SHARE)
    exact = [(role, count * w / total) for role, w in ROLE_SHARE]
    counts = {role: int(x) for role, x in exact}
    if count >= len(ROLE_SHARE):
        for role, _ in ROLE_SHARE:
            counts[role] = max(1, counts[role])
    order = sorted(exact, key=lambda rx: rx[1] - int(rx[1]), reverse=True)
    i = 0
    while sum(counts.values()) < count:
        counts[order[i % len(order)][0]] += 1
        i += 1
    while sum(counts.values()) > count:
        counts[max(counts, key=lambda r: counts[r])] -= 1
    return [role for role, _ in ROLE_SHARE for _ in range(counts[role])]


def make_dossier(case_id: str, name: QueueName, rng: random.Random, at: datetime) -> Dossier:
    """A transmitted dossier, as the ARM puts it in a queue."""
    d = Dossier(
        case_id=case_id, sender_case_id=case_id.rsplit(".", 1)[-1], created_at=at, owner=OWNER
    )
    branch = QUEUE_BRANCH[name]
    city = rng.choice(CITIES)
    d.caller.callback = f"+336{rng.randrange(10**8):08d}"
    d.location.city = city
    d.location.insee = "69266"
    d.location.address = f"{rng.randrange(1, 200)} rue Francis de Pressensé, {city}"
    d.motive_code, d.motive_label = rng.choice(MOTIVES)
    d.patient.age = f"P{rng.randrange(1, 99)}Y"
    d.patient.sex = rng.choice("MF")
    d.priority = rng.choices([p for p, _ in PRIORITY_WEIGHTS], [w for _, w in PRIORITY_WEIGHTS])[0]
    d.branch = branch
    d.perimeter = branch.perimeter
    d.attribution = branch.attribution
    if branch is Branch.DENT:
        d.dental_reason = "DENT.DOULEUR"
    d.status = Status.TRANSMITTED
    d.transmitted_at = at
    d.revision = 3
    return d


def decision(rng: random.Random) -> dict[str, Any]:
    data: dict[str, Any]
    if rng.random() < 0.5:
        data = {"care_level": "R4", "decisions": [{"decision_type": "CONSEIL"}]}
    else:
        data = {
            "care_level": rng.choice(("R1", "R2")),
            "decisions": [{"decision_type": "INTER", "resource_type": "SMUR.ADULT"}],
        }
    if rng.random() < 0.3:
        data["note"] = "Bilan : patient conscient, respire, douleur 6/10."
    return data


def contested_ids(tag: str, rounds: int, batch: int) -> list[list[str]]:
    return [[f"{OWNER}.BENCH{tag}C{r:03d}{k:04d}" for k in range(batch)] for r in range(rounds)]


class Sync:
    """Phase barrier shared by the processes (nothing to do with one)."""

    def __init__(self, barrier: Any | None) -> None:
        self.barrier = barrier

    async def wait(self) -> None:
        if self.barrier is not None:
            await asyncio.to_thread(self.barrier.wait, BARRIER_TIMEOUT_S)

    def abort(self) -> None:
        if self.barrier is not None:
            self.barrier.abort()


class Room:
    """The workstations and observers of one process."""

    def __init__(self, cfg: dict[str, Any], proc: int, stats: Stats) -> None:
        self.cfg = cfg
        self.proc = proc
        self.procs = cfg["procs"]
        self.stats = stats
        self.stations: list[Station] = []
        self.observers: list[Observer] = []
        self.observer_tasks: list[asyncio.Task[None]] = []
        self.logins: list[tuple[RoomSession, Credentials]] = []
        self.serial = 0
        roles = allocate_roles(cfg["workstations"])
        self.roles = roles
        self.regulators = Counter(ROLE_QUEUE[r] for r in roles if r in ROLE_QUEUE)

    def backend(self, name: str, role: str) -> QueueBackend:
        """A workstation's backend: its own PostgresBackend, or (``--via-server``)
        its own session with the room server, logged in by :meth:`open`."""
        url = self.cfg.get("server_url")
        if not url:
            return PostgresBackend(
                self.cfg["dsn"],
                now=now,
                schema=self.cfg["schema"],
                application_name=name,
                pool_size=self.cfg["pool"],
            )
        login, password = self.cfg["accounts"][role]
        session = RoomSession(url, name, tokens=MemoryTokens(url, name), timeout=60.0)
        self.logins.append((session, Credentials(login, password, role)))
        return RemoteBackend(session)

    def new_case_id(self) -> str:
        self.serial += 1
        return f"{OWNER}.BENCH{self.cfg['tag']}M{self.proc}{self.serial:06d}"

    async def open(self) -> None:
        for i in range(self.cfg["observers"]):
            if i % self.procs == self.proc:
                name = f"bench-obs{i}"
                self.observers.append(Observer(name, self.backend(name, "SUP")))
        via_server = bool(self.cfg.get("server_url"))
        for i, role in enumerate(self.roles):
            if i % self.procs != self.proc:
                continue
            name = f"bench-ws{i:02d}"
            rng = random.Random(f"{self.cfg['seed']}:{name}")
            obs = self.observers[len(self.stations) % len(self.observers)]
            backend = self.backend(name, role)
            contest = self.backend(name, "MRU") if via_server and role != "MRU" else backend
            self.stations.append(Station(name, role, backend, obs, rng, contest))
        await asyncio.gather(*(b.open() for b in self.backends()))
        # the logins (argon2 on the server) before anything is timed
        gate = asyncio.Semaphore(4)

        async def login(session: RoomSession, credentials: Credentials) -> None:
            async with gate:
                await session.login(credentials)

        await asyncio.gather(*(login(s, c) for s, c in self.logins))
        for obs in self.observers:
            self.observer_tasks.append(asyncio.create_task(obs.run(), name=obs.name))
        async with asyncio.timeout(10):
            await asyncio.gather(*(o.ready.wait() for o in self.observers))

    def backends(self) -> list[QueueBackend]:
        found = [o.backend for o in self.observers]
        for st in self.stations:
            found += [st.backend] if st.contest in (None, st.backend) else [st.backend, st.contest]
        return found

    async def close(self) -> None:
        await asyncio.gather(*(b.close() for b in self.backends()), return_exceptions=True)
        for task in self.observer_tasks:
            with contextlib.suppress(BaseException):
                async with asyncio.timeout(5):
                    await task

    async def quiet(self, idle_s: float = 0.5, limit_s: float = 5.0) -> None:
        """Wait until no observer of this process received anything for ``idle_s``."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if time.monotonic() - max(o.last_change for o in self.observers) >= idle_s:
                return
            await asyncio.sleep(0.05)

    async def apply(
        self,
        st: Station,
        op: Operation,
        prev_version: int = 0,
        backend: QueueBackend | None = None,
    ) -> QueueItem | None:
        """``apply()`` on the station's backend, timed; a successful result
        is recorded for the visibility check.  Refusals are raised."""
        phase = self.stats.phase
        t0 = time.monotonic()
        try:
            item = await (backend or st.backend).apply(op)
        finally:
            t1 = time.monotonic()
            ms = (t1 - t0) * 1000
            if phase == "mixed":
                self.stats.ops[op.kind] += 1
                self.stats.op_ms[op.kind].append(ms)
            if op.kind == "claim":
                self.stats.claim_ms[phase].append(ms)
        if item is not None:
            self.stats.applied.append(Applied(op.case_id, item.version, t1, False, phase))
        else:  # closed: leaves every queue
            self.stats.applied.append(Applied(op.case_id, prev_version + 1, t1, True, phase))
        return item

    async def think(self, st: Station) -> None:
        await asyncio.sleep(self.cfg["think_ms"] / 1000 * st.rng.uniform(0.5, 1.5))

    # ----------------------------------------------------------------- mixed phase
    async def arm(self, st: Station, end: float) -> None:
        names = [q for q in (QueueName.AMU, QueueName.SNP, QueueName.DENT) if self.regulators[q]]
        weights = [self.regulators[q] for q in names]
        while time.monotonic() < end and names:
            name = st.rng.choices(names, weights)[0]
            # an ARM does not flood a queue nobody keeps up with
            if len(st.observer.waiting(name)) >= 3 * self.regulators[name] + 2:
                self.stats.held_back += 1
                await self.think(st)
                continue
            case_id = self.new_case_id()
            dossier = make_dossier(case_id, name, st.rng, now())
            try:
                await self.apply(st, st.op("enqueue", case_id, dossier=dossier.to_dict()))
            except (QueueError, BackendUnavailable) as exc:
                self.stats.error("enqueue", exc)
            await self.think(st)

    async def regulator(self, st: Station, end: float) -> None:
        name = ROLE_QUEUE[st.role]
        while time.monotonic() < end:
            heads = st.observer.waiting(name)[:3]
            if not heads:
                self.stats.idle_polls += 1
                await self.think(st)
                continue
            try:
                item = await self.apply(st, st.op("claim", st.rng.choice(heads).case_id))
            except ClaimConflict:
                self.stats.races["claim refused: someone else got it first"] += 1
                await self.think(st)
                continue
            except (QueueError, BackendUnavailable) as exc:
                if isinstance(exc, QueueError) and exc.code == "closed":
                    self.stats.races["claim refused: closed meanwhile"] += 1
                else:
                    self.stats.error("claim", exc)
                await self.think(st)
                continue
            assert item is not None
            version = item.version
            try:
                if st.role != "OSNP":
                    await self.think(st)
                    item = await self.apply(st, st.op("decide", item.case_id, **decision(st.rng)))
                    assert item is not None
                    version = item.version
                await self.think(st)
                if st.role == "MRL" and st.rng.random() < 0.5:
                    await self.apply(
                        st, st.op("request_booking", item.case_id, note="RDV médecin traitant")
                    )
                else:
                    await self.apply(st, st.op("close", item.case_id, reason="bench"), version)
            except (QueueError, BackendUnavailable) as exc:
                self.stats.error("decide/close", exc)
            await self.think(st)

    async def mixed(self) -> float:
        self.stats.phase = "mixed"
        start = time.monotonic()
        end = start + self.cfg["seconds"]
        await asyncio.gather(
            *(
                self.arm(st, end) if st.role == "ARM" else self.regulator(st, end)
                for st in self.stations
            )
        )
        return time.monotonic() - start

    # ----------------------------------------------------------------- contested phase
    async def claim_all(self, st: Station, case_ids: list[str]) -> None:
        for case_id in case_ids:
            t0 = time.monotonic()
            try:
                claim = st.op("claim", case_id, role="MRU", lease_s=MAX_LEASE_S)
                item = await self.apply(st, claim, backend=st.contest)
            except ClaimConflict as exc:
                ms = (time.monotonic() - t0) * 1000
                self.stats.attempts.append(
                    Attempt(case_id, st.name, False, ms, exc.claim.workstation)
                )
            except (QueueError, BackendUnavailable) as exc:
                self.stats.error("contested claim", exc)
            else:
                ms = (time.monotonic() - t0) * 1000
                holder = item.claim.workstation if item and item.claim else "?"
                self.stats.attempts.append(Attempt(case_id, st.name, True, ms, holder))

    async def enqueue_round(self, ids: list[str]) -> None:
        self.stats.phase = "contested-enqueue"
        arms = [s for s in self.stations if s.role == "ARM"] or self.stations
        calls = []
        for k, case_id in enumerate(ids):
            st = arms[k % len(arms)]
            d = make_dossier(case_id, QueueName.AMU, st.rng, now())
            calls.append(self.apply(st, st.op("enqueue", case_id, dossier=d.to_dict())))
        await asyncio.gather(*calls)
        self.stats.phase = "contested"

    async def contested(self, rounds: list[list[str]], sync: Sync) -> float:
        """Every station of every process claims every item of each round;
        returns the time spent racing (the enqueueing left out)."""
        racing = 0.0
        for ids in rounds:
            if self.proc == 0:
                await self.enqueue_round(ids)
            await sync.wait()  # the items are queued
            self.stats.phase = "contested"
            t0 = time.monotonic()
            await asyncio.gather(*(self.claim_all(st, ids) for st in self.stations))
            await sync.wait()  # every process is done with this round
            racing += time.monotonic() - t0
        return racing


async def heartbeat(stats: Stats) -> None:
    while True:
        t0 = time.monotonic()
        await asyncio.sleep(HEARTBEAT_S)
        stats.lag[stats.phase].append((time.monotonic() - t0 - HEARTBEAT_S) * 1000)


# what the workstations' (and the peer's consumers') server sessions are doing
_ACTIVITY = """
SELECT CASE
    WHEN state = 'idle' THEN 'idle (between operations)'
    WHEN state = 'idle in transaction'
        THEN 'idle in transaction (locks held, waiting for the client''s next round trip)'
    WHEN wait_event_type = 'Client' THEN 'waiting for the client (' || wait_event || ')'
    WHEN wait_event_type = 'Lock' AND wait_event = 'object'
        THEN 'waiting for a lock (object: the database-wide lock NOTIFY takes to commit)'
    WHEN wait_event_type = 'Lock' THEN 'waiting for a lock (' || wait_event || ')'
    WHEN wait_event IS NULL THEN 'running'
    ELSE 'waiting: ' || wait_event_type || '/' || wait_event
  END, count(*)
FROM pg_stat_activity
WHERE datname = current_database() AND backend_start >= %s
  AND application_name ~ %s
GROUP BY 1
"""


async def activity_sampler(
    cfg: dict[str, Any], stats: Stats, found: dict[str, Counter[str]]
) -> None:
    """Every 50 ms, what the server sessions of this run are doing, by phase
    (only sessions started after the run began: not those of another run)."""
    async with await psycopg.AsyncConnection.connect(
        cfg["dsn"], autocommit=True, application_name="bench-sampler"
    ) as conn:
        since = cfg["server_start"]
        while True:
            await asyncio.sleep(0.05)
            phase = stats.phase
            cur = await conn.execute(_ACTIVITY, (since, cfg["activity_apps"]))
            counts = found.setdefault(phase, Counter())
            for what, n in await cur.fetchall():
                counts[what] += n


# --------------------------------------------------------------------------- peer


async def peer_phase(
    cfg: dict[str, Any], proc: int, sync: Sync, rounds: int, per_round: int, stats: Stats
) -> dict[str, Any]:
    """pgqueuer's own dequeue (batch of 1, no concurrency limit) by as many
    consumers as workstations, each on its own psycopg AsyncConnection,
    racing over ``per_round`` jobs per round until the queue is empty."""
    out: dict[str, Any] = {
        "ms": [],
        "empty_ms": [],
        "job_ids": [],
        "racing_s": 0.0,
        "version": "",
        "skipped": "",
        "error": "",
    }
    try:
        from importlib.metadata import version

        from pgqueuer.adapters.drivers.psycopg import PsycopgDriver
        from pgqueuer.adapters.persistence.qb import (
            DBSettings,
            QueryBuilderEnvironment,
            QueryQueueBuilder,
        )
        from pgqueuer.adapters.persistence.queries import Queries
        from pgqueuer.ports.repository import EntrypointExecutionParameter
    except ImportError as exc:  # the same in every process: nobody waits
        out["skipped"] = f"{PEER} not installed ({exc}): pip install {PEER}"
        return out
    out["version"] = version(PEER)
    stats.phase = "peer"
    # every object in our schema; the prefix keeps its NOTIFY channel (global
    # to the database) apart from anyone else's pgqueuer
    settings = DBSettings(db_schema=cfg["peer_schema"], prefix=cfg["peer_prefix"])

    def queries(conn: psycopg.AsyncConnection[Any]) -> Any:
        return Queries(
            PsycopgDriver(conn),
            qbe=QueryBuilderEnvironment(settings),
            qbq=QueryQueueBuilder(settings),
        )

    admin = await psycopg.AsyncConnection.connect(
        cfg["dsn"], autocommit=True, application_name=f"bench-pgq-admin{proc}"
    )
    conns: list[psycopg.AsyncConnection[Any]] = []
    try:
        q_admin = queries(admin)
        if proc == 0:
            await q_admin.install()
        await sync.wait()
        for i in range(cfg["workstations"]):
            if i % cfg["procs"] == proc:
                conns.append(
                    await psycopg.AsyncConnection.connect(
                        cfg["dsn"], autocommit=True, application_name=f"bench-pgq{i:02d}"
                    )
                )
        workers = [(queries(c), uuid.uuid4()) for c in conns]
        entry = {"bench": EntrypointExecutionParameter(concurrency_limit=0)}
        heartbeat_timeout = timedelta(seconds=300)

        async def consume(q: Any, qm_id: uuid.UUID, picked: list[Any]) -> None:
            while True:
                t0 = time.monotonic()
                jobs = await q.dequeue(1, entry, qm_id, None, heartbeat_timeout)
                ms = (time.monotonic() - t0) * 1000
                if not jobs:
                    out["empty_ms"].append(ms)
                    return
                out["ms"].append(ms)
                picked.extend(jobs)

        for _ in range(rounds):
            if proc == 0:
                await q_admin.enqueue(["bench"] * per_round, [None] * per_round, [0] * per_round)
            await sync.wait()
            picked: list[Any] = []
            t0 = time.monotonic()
            await asyncio.gather(*(consume(q, qm, picked) for q, qm in workers))
            await sync.wait()
            out["racing_s"] += time.monotonic() - t0
            out["job_ids"].extend(int(job.id) for job in picked)
            # a worker would complete them: out of the timing, keeps the table small
            if picked:
                await q_admin.log_jobs([(job, "successful", None) for job in picked])
            await sync.wait()
    except Exception as exc:  # ours are measured already: report them anyway
        sync.abort()
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        for c in conns:
            with contextlib.suppress(Exception):
                await c.close()
        with contextlib.suppress(Exception):
            await admin.close()
    return out


# --------------------------------------------------------------------------- one process


async def worker(cfg: dict[str, Any], proc: int, barrier: Any | None) -> dict[str, Any]:
    """Everything one process does; returns what it measured as plain data."""
    sync = Sync(barrier)
    stats = Stats()
    logs = LogCounter()
    logging.getLogger("sas_desk").addHandler(logs)
    logging.getLogger("sas_desk").setLevel(logging.WARNING)
    cpu = CpuMeter(
        machine=proc == 0,
        server_pid=cfg.get("server_pid"),
        dsn=cfg["dsn"],
        own_sessions=cfg["own_sessions"],
    )
    res: dict[str, Any] = {"proc": proc, "error": None}
    beat = asyncio.create_task(heartbeat(stats))
    activity: dict[str, Counter[str]] = {}
    sampler = asyncio.create_task(activity_sampler(cfg, stats, activity)) if proc == 0 else None
    room = Room(cfg, proc, stats)
    say = print if proc == 0 else (lambda *_: None)
    try:
        try:
            say(f"opening {cfg['workstations']} workstations and {cfg['observers']} observers …")
            await room.open()
            await sync.wait()
            say(f"mixed phase: {cfg['seconds']:g} s …")
            cpu.start()
            res["mixed_s"] = await room.mixed()
            cpu.stop("mixed")
            stats.phase = "drain"
            await sync.wait()
            await room.quiet()
            rounds = contested_ids(cfg["tag"], cfg["rounds"], cfg["batch"])
            say(
                f"contested phase: {cfg['rounds']} rounds of {cfg['batch']} items × "
                f"{cfg['workstations']} workstations …"
            )
            await sync.wait()
            cpu.start()
            res["contested_s"] = await room.contested(rounds, sync)
            cpu.stop("contested")
            stats.phase = "drain"
            await room.quiet()
            await sync.wait()
            await room.quiet(limit_s=2.0)
        finally:
            res["reconnects"] = sum(getattr(b, "reconnects", 0) for b in room.backends())
            await room.close()
        res["observers"] = [o.plain() for o in room.observers]
        await sync.wait()
        if cfg["peer"]:
            say(
                f"peer: {PEER}, {cfg['workstations']} consumers, {cfg['rounds']} rounds × "
                f"{cfg['per_round']} jobs …"
            )
            cpu.start()
            res["peer"] = await peer_phase(cfg, proc, sync, cfg["rounds"], cfg["per_round"], stats)
            cpu.stop("peer")
    except BaseException as exc:
        sync.abort()  # the other processes stop waiting for this one
        res["error"] = "".join(traceback.format_exception(exc))
        if not isinstance(exc, Exception):
            raise
    finally:
        beat.cancel()
        if sampler is not None:
            sampler.cancel()
            with contextlib.suppress(BaseException):
                await sampler
        logging.getLogger("sas_desk").removeHandler(logs)
    res["stats"] = stats.plain()
    res["cpu"] = cpu.phases
    res["logs"] = dict(logs.seen)
    res["activity"] = {phase: dict(c) for phase, c in activity.items()}
    return res


def worker_process(cfg: dict[str, Any], proc: int, barrier: Any, results: Any) -> None:
    """Entry point of the processes after the first (``--procs``)."""
    try:
        res = asyncio.run(worker(cfg, proc, barrier))
    except BaseException:
        res = {"proc": proc, "error": traceback.format_exc()}
    results.put(res)


def run_processes(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Process 0 runs here; the others are started with ``spawn``."""
    procs = cfg["procs"]
    if procs == 1:
        return [asyncio.run(worker(cfg, 0, None))]
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(procs)
    results = ctx.Queue()
    children = [
        ctx.Process(target=worker_process, args=(cfg, i, barrier, results), name=f"bench-proc{i}")
        for i in range(1, procs)
    ]
    for child in children:
        child.start()
    out: list[dict[str, Any]] = []
    try:
        out.append(asyncio.run(worker(cfg, 0, barrier)))
        for _ in children:
            try:
                out.append(results.get(timeout=BARRIER_TIMEOUT_S))
            except queue.Empty:
                out.append({"proc": -1, "error": "a process sent no result"})
        for child in children:
            child.join(timeout=30)
    finally:
        for child in children:  # only ours, by their own handle
            if child.is_alive():
                child.terminate()
                child.join(timeout=10)
    return out


# --------------------------------------------------------------------------- checks


@dataclass
class Verdict:
    items: list[str] = field(default_factory=list)
    attempts_client: int = 0
    attempts_db: int = 0
    outcomes_missing: int = 0
    winners: Counter[str] = field(default_factory=Counter)  # client: successful claims
    claimed_events: Counter[str] = field(default_factory=Counter)
    success_outcomes: Counter[str] = field(default_factory=Counter)
    holder_db: dict[str, str | None] = field(default_factory=dict)
    holder_client: dict[str, str] = field(default_factory=dict)
    refusals_naming_other: int = 0
    overlaps: list[str] = field(default_factory=list)
    events_replayed: int = 0

    def counts(self, case_id: str) -> tuple[int, int, int]:
        return (
            self.winners[case_id],
            self.claimed_events[case_id],
            self.success_outcomes[case_id],
        )

    def double_claims(self) -> list[str]:
        return [
            f"{c}: winners/CLAIMED events/successful outcomes = {self.counts(c)}"
            for c in self.items
            if max(self.counts(c)) > 1
        ]

    def inconsistencies(self) -> list[str]:
        """Sources disagreeing, or nobody winning (not double claims)."""
        out = []
        for c in self.items:
            counts = self.counts(c)
            if max(counts) > 1:
                continue
            if counts != (1, 1, 1):
                out.append(f"{c}: winners/CLAIMED events/successful outcomes = {counts}")
            elif self.holder_db.get(c) != self.holder_client.get(c):
                out.append(
                    f"{c}: held by {self.holder_db.get(c)} in the database, "
                    f"the client was told {self.holder_client.get(c)}"
                )
        return out


async def verify(dsn: str, schema: str, stats: Stats, items: list[str]) -> Verdict:
    v = Verdict(items=items)
    for a in stats.attempts:
        v.attempts_client += 1
        if a.won:
            v.winners[a.case_id] += 1
            v.holder_client[a.case_id] = a.workstation
    async with await psycopg.AsyncConnection.connect(
        dsn, autocommit=True, application_name="bench-verify"
    ) as conn:
        await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        cur = await conn.execute(
            "SELECT case_id, count(*) FILTER (WHERE outcome IS NULL),"
            " count(*) FILTER (WHERE outcome ? 'item'), count(*)"
            " FROM applied_ops WHERE kind = 'claim' AND case_id = ANY(%s) GROUP BY case_id",
            (items,),
        )
        for case_id, missing, won, n in await cur.fetchall():
            v.attempts_db += n
            v.outcomes_missing += missing
            v.success_outcomes[case_id] = won
        cur = await conn.execute(
            "SELECT case_id, count(*) FROM events WHERE kind = 'CLAIMED' AND case_id = ANY(%s)"
            " GROUP BY case_id",
            (items,),
        )
        for case_id, n in await cur.fetchall():
            v.claimed_events[case_id] = n
        cur = await conn.execute(
            "SELECT case_id, claim_workstation FROM items WHERE case_id = ANY(%s)", (items,)
        )
        v.holder_db = dict(await cur.fetchall())
        v.refusals_naming_other = sum(
            1 for a in stats.attempts if not a.won and a.holder != v.holder_db.get(a.case_id)
        )
        # the whole log, every case of both phases: never two holders at once
        holder: dict[str, str | None] = {}
        async with conn.transaction(), conn.cursor(name="bench_replay") as named:
            await named.execute(
                "SELECT case_id, kind, workstation, data FROM events ORDER BY case_id, seq"
            )
            async for case_id, kind, ws, data in named:
                v.events_replayed += 1
                current = holder.get(case_id)
                if kind == "CLAIMED":
                    if current is not None and current != ws and not data.get("expired_claim"):
                        v.overlaps.append(f"{case_id}: {ws} claimed it while {current} held it")
                    holder[case_id] = ws
                elif kind in RELEASING:
                    holder[case_id] = None
                elif kind == "REASSIGNED":
                    to = data.get("to")
                    holder[case_id] = to.get("workstation") if to else None
    return v


def visibility(
    applied: list[Applied], observers: list[dict[str, Any]], lost: list[str]
) -> tuple[list[float], int, int]:
    """Latencies (ms) from apply() returning to each observer seeing the
    change (same case, same or newer version; for a close, or a change
    closed before the observer read it, the removal);
    how many were seen before apply() returned (counted as 0); how many never
    (described in ``lost``)."""
    out: list[float] = []
    early = missing = 0
    for record in applied:
        for obs in observers:
            t: float | None = None
            if not record.removed:
                for version, at in obs["seen"].get(record.case_id, ()):
                    if version >= record.version:
                        t = at
                        break
            if t is None:  # closed before the observer read it: the removal covers it
                t = obs["removed"].get(record.case_id)
            if t is None:
                missing += 1
                seen = obs["seen"].get(record.case_id, [])
                lost.append(
                    f"{obs['name']} never saw {record.case_id} "
                    f"{'closed' if record.removed else f'v{record.version}'} ({record.phase}, "
                    f"apply() returned at {record.at:.3f}); it saw versions "
                    f"{[(v, round(t, 3)) for v, t in seen]}, removal "
                    f"{obs['removed'].get(record.case_id)}"
                )
                continue
            delta = (t - record.at) * 1000
            if delta < 0:
                early += 1
                delta = 0.0
            out.append(delta)
    return out, early, missing


# --------------------------------------------------------------------------- database


def connection_budget(dsn: str, needed: int) -> tuple[str, bool, datetime]:
    with psycopg.connect(dsn, autocommit=True, application_name="bench-admin") as conn:

        def show(name: str) -> str:
            found = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
            return str(found[0]) if found else "?"

        max_conn = int(show("max_connections"))
        reserved = int(show("superuser_reserved_connections"))
        found = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        ).fetchone()
        in_use = int(found[0]) - 1 if found else 0  # not this one
        started = conn.execute("SELECT now()").fetchone()
        line = (
            f"PostgreSQL {show('server_version')}, synchronous_commit="
            f"{show('synchronous_commit')}; max_connections {max_conn} ({reserved} reserved), "
            f"{in_use} in use by others, this run needs {needed} at most"
        )
    return line, needed <= max_conn - reserved - in_use, started[0] if started else now()


def drop_schemas(dsn: str, schemas: list[str]) -> list[str]:
    """DROP SCHEMA … CASCADE for each one; returns the problems met."""
    problems = []
    try:
        with psycopg.connect(dsn, autocommit=True, application_name="bench-cleanup") as conn:
            conn.execute("SET lock_timeout = '20s'")
            for schema in schemas:
                try:
                    conn.execute(
                        sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                    )
                except psycopg.Error as exc:
                    problems.append(f"{schema}: {type(exc).__name__}: {exc}")
    except psycopg.Error as exc:
        problems.append(f"cleanup connection: {type(exc).__name__}: {exc}")
    return problems


# --------------------------------------------------------------------------- report


def print_activity(results: list[dict[str, Any]], phase: str) -> None:
    counts: Counter[str] = Counter()
    for res in results:
        counts.update(res.get("activity", {}).get(phase, {}))
    total = sum(counts.values())
    if not total:
        return
    print("server sessions    : what they were doing (pg_stat_activity every 50 ms)")
    for what, n in counts.most_common(6):
        print(f"{100 * n / total:25.1f}% {what}")


def report(cfg: dict[str, Any], results: list[dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """Merges the processes' figures, checks the database, prints it all;
    returns the RESULT dict and whether the run can be trusted."""
    stats = Stats()
    for res in results:
        stats.absorb(res["stats"])
    observers = [o for res in results for o in res.get("observers", [])]
    cpu = [res.get("cpu", {}) for res in results]
    mixed_s = max(res.get("mixed_s", 0.0) for res in results)
    contested_s = results[0].get("contested_s", 0.0)
    items = [c for ids in contested_ids(cfg["tag"], cfg["rounds"], cfg["batch"]) for c in ids]
    v = asyncio.run(verify(cfg["dsn"], cfg["schema"], stats, items))
    logs: Counter[str] = Counter()
    for res in results:
        logs.update(res.get("logs", {}))
    trusted = True
    w = cfg["workstations"]

    # --- mixed phase
    mixed_claims = stats.claim_ms["mixed"]
    ops = sum(stats.ops.values())
    ops_per_s = ops / mixed_s if mixed_s else math.nan
    claims_per_s = len(mixed_claims) / mixed_s if mixed_s else math.nan
    print()
    print(f"== mixed phase: {w} workstations, {mixed_s:.1f} s ==")
    print(f"{'apply()':20} {'count':>7} {'p50':>9} {'p99':>9} {'max':>9}")
    for kind in ("enqueue", "claim", "decide", "request_booking", "close"):
        if stats.op_ms.get(kind):
            print(row(kind, stats.op_ms[kind]))
    print(f"throughput         : {ops_per_s:.0f} operations/s, {claims_per_s:.0f} claims/s")
    races = ", ".join(f"{n} × {what}" for what, n in stats.races.items()) or "none"
    print(f"expected races     : {races}")
    print(
        f"pacing             : {cfg['think_ms']:g} ms (× 0.5–1.5) between two operations of a "
        f"workstation; {stats.idle_polls} looks at an empty queue, {stats.held_back} enqueues "
        "held back (backlog)"
    )
    print(f"CPU                : {cpu_line(cpu, 'mixed')}")
    print_activity(results, "mixed")

    # --- contested phase
    contested = stats.claim_ms["contested"]
    won = [a.ms for a in stats.attempts if a.won]
    lost = [a.ms for a in stats.attempts if not a.won]
    contested_per_s = len(contested) / contested_s if contested_s else math.nan
    print()
    print(
        f"== contested phase: {len(items)} items × {w} workstations = {len(contested)} claim "
        f"attempts, {contested_s:.1f} s of racing =="
    )
    print(f"{'claim':20} {'count':>7} {'p50':>9} {'p99':>9} {'max':>9}")
    print(row("won", won))
    print(row("refused (taken)", lost))
    print(row("all", contested))
    print(f"throughput         : {contested_per_s:.0f} claim attempts/s")
    print(f"CPU                : {cpu_line(cpu, 'contested')}")
    cost = cpu_per_attempt(cpu, "contested", len(contested))
    if cost:
        parts = ", ".join(f"{who} {ms:.2f} ms" for who, ms in cost.items())
        # postgres: this run's own sessions when known (the machine-wide
        # figure also counts other people's queries)
        own = cost.get("postgres (this run's sessions)")
        total = sum(v for k, v in cost.items() if not k.startswith("postgres"))
        total += own if own is not None else cost.get("postgres", 0.0)
        print(
            f"CPU per attempt    : {parts}; {total:.2f} ms in all → at most "
            f"{1000 * (os.cpu_count() or 1) / total:,.0f} attempts/s on {os.cpu_count()} cores "
            "with nothing else running"
            + (
                f"; the room server alone (one Python process, one core at most) caps it at "
                f"{1000 / cost['room server']:,.0f}/s"
                if cost.get("room server")
                else ""
            )
        )
    print_activity(results, "contested")
    doubles = v.double_claims()
    inconsistent = v.inconsistencies()

    def spread(counter: Counter[str]) -> str:
        return ", ".join(f"{k}: {n}" for k, n in sorted(Counter(counter[c] for c in items).items()))

    print(
        f"database check     : {v.attempts_db} claim operations recorded for "
        f"{v.attempts_client} attempts; items by number of winners {{{spread(v.winners)}}}, "
        f"of CLAIMED events {{{spread(v.claimed_events)}}}, of successful outcomes "
        f"{{{spread(v.success_outcomes)}}}"
    )
    print(
        f"                     {len(doubles)} double claims, {len(inconsistent)} other "
        f"inconsistencies, {v.refusals_naming_other} refusals naming someone else than the "
        f"holder, {v.outcomes_missing} operations without outcome"
    )
    print(
        f"whole event log    : {v.events_replayed} events replayed, {len(v.overlaps)} moments "
        "where two workstations held the same item"
    )
    for line in (doubles + inconsistent + v.overlaps)[:10]:
        print(f"  ! {line}")
    if v.attempts_db != v.attempts_client or inconsistent or v.outcomes_missing:
        trusted = False

    # --- visibility
    lost: list[str] = []
    vis, early, missing = visibility(stats.applied, observers, lost)
    print()
    print(
        f"== change visible elsewhere: {len(stats.applied)} changes × {len(observers)} observers =="
    )
    print(
        f"apply() → watch()  : p50 {fmt(pct(vis, 50))}, p99 {fmt(pct(vis, 99))}, max "
        f"{fmt(max(vis) if vis else math.nan)} ({early} seen before apply() returned, counted "
        f"as 0; {missing} never seen)"
    )
    print(
        "observers          : "
        + ", ".join(
            f"{o['name']} {o['sets']} change sets, {o['resets'] - 1} resets after the first"
            for o in observers
        )
    )
    for line in lost[:10]:
        print(f"  ! {line}")
    if missing:
        trusted = False

    # --- claims, loop, errors
    all_claims = mixed_claims + contested
    print()
    print(
        f"all claims         : {len(all_claims)}, p50 {fmt(pct(all_claims, 50))}, p99 "
        f"{fmt(pct(all_claims, 99))} (mixed p99 {fmt(pct(mixed_claims, 99))}, contested p99 "
        f"{fmt(pct(contested, 99))})"
    )
    for phase in ("mixed", "contested"):
        lag = stats.lag.get(phase, [])
        print(
            f"{'loop lag ' + phase:19}: p50 {fmt(pct(lag, 50))}, p99 {fmt(pct(lag, 99))}, max "
            f"{fmt(max(lag) if lag else math.nan)} (5 ms heartbeat, {cfg['procs']} loop(s))"
        )
    print(f"reconnects         : {sum(res.get('reconnects', 0) for res in results)}")
    if stats.errors:
        trusted = False
        print(f"errors             : {sum(stats.errors.values())}")
        for what, n in stats.errors.most_common(10):
            print(f"  [{n}x] {what}")
    else:
        print("errors             : none")
    if logs:
        print("SAS Desk log (warnings and errors):")
        for line, n in logs.most_common(10):
            print(f"  [{n}x] {line}")

    # --- peer
    print()
    peers = [res["peer"] for res in results if res.get("peer")]
    peer_p50 = peer_p99 = ratio_p50 = ratio_p99 = peer_per_s = math.nan
    peer_name = None
    if not cfg["peer"]:
        print(f"== peer: skipped ({cfg.get('peer_skipped', '--no-peer')}) ==")
    elif not peers or peers[0]["skipped"]:
        print(f"== peer: skipped: {peers[0]['skipped'] if peers else '?'} ==")
    else:
        ms = [x for p in peers for x in p["ms"]]
        empty = [x for p in peers for x in p["empty_ms"]]
        job_ids = Counter(j for p in peers for j in p["job_ids"])
        twice = sum(n - 1 for n in job_ids.values() if n > 1)
        racing = peers[0]["racing_s"]
        peer_name = f"{PEER} {peers[0]['version']}"
        peer_p50, peer_p99 = pct(ms, 50), pct(ms, 99)
        peer_per_s = len(ms) / racing if racing else math.nan
        ratio_p50 = pct(contested, 50) / peer_p50 if peer_p50 else math.nan
        ratio_p99 = pct(contested, 99) / peer_p99 if peer_p99 else math.nan
        print(f"== peer: {peer_name}, the same contested load ({cfg['procs']} process(es)) ==")
        print(f"why {PEER}       : {PEER_WHY}")
        print(f"{'':20} {'count':>7} {'p50':>9} {'p99':>9} {'max':>9} {'per s':>8}")
        print(row("ours: apply(claim)", contested, f" {contested_per_s:8.0f}"))
        print(row(f"{PEER}: dequeue", ms, f" {peer_per_s:8.0f}"))
        print(row("  (found nothing)", empty))
        print(
            f"ratio ours/{PEER} : p50 {ratio_p50:.2f}×, p99 {ratio_p99:.2f}×; {len(job_ids)} jobs "
            f"dequeued, {twice} of them twice"
        )
        print(f"CPU                : {cpu_line(cpu, 'peer')}")
        print_activity(results, "peer")
        print(
            "not the same work  : apply(claim) claims THIS item: a read that refuses on the "
            "spot when someone else holds it (outcome stored for idempotency), else one "
            "conditional statement writing the item, the applied op_id, an event and the "
            "NOTIFY (re-read and decided again if the item changed meanwhile); a job queue's "
            "dequeue takes ANY next job, skipping locked rows (one statement: an UPDATE, a log "
            "row, its trigger's NOTIFY)."
        )
        if twice:
            trusted = False
    for p in peers:
        if p.get("error"):
            print(f"peer error: {p['error']}")
            trusted = False

    # --- goals
    claim_p50, claim_p99 = pct(all_claims, 50), pct(all_claims, 99)
    vis_p99 = pct(vis, 99)
    ok_claim = claim_p99 <= GOAL_CLAIM_P99_MS
    ok_vis = vis_p99 <= GOAL_VISIBLE_P99_MS
    ok_double = len(doubles) + len(v.overlaps) <= GOAL_DOUBLE_CLAIMS
    print()
    print(
        f"goal: claim p99 ≤ {GOAL_CLAIM_P99_MS:.0f} ms               "
        f"{'PASS' if ok_claim else 'FAIL'} ({fmt(claim_p99)})"
    )
    print(
        f"goal: visible elsewhere p99 ≤ {GOAL_VISIBLE_P99_MS:.0f} ms   "
        f"{'PASS' if ok_vis else 'FAIL'} ({fmt(vis_p99)})"
    )
    print(
        f"goal: {GOAL_DOUBLE_CLAIMS} double claims                   "
        f"{'PASS' if ok_double else 'FAIL'} ({len(doubles)} in {len(contested)} contested "
        f"claims, {len(v.overlaps)} overlapping holders in the log)"
    )
    if not ok_claim:
        over = [
            name
            for name, values in (("mixed", mixed_claims), ("contested", contested))
            if pct(values, 99) > GOAL_CLAIM_P99_MS
        ]
        where = " and ".join(over) or "combined"
        print(
            f"why: claim p99 {fmt(claim_p99)} > {GOAL_CLAIM_P99_MS:.0f} ms; over the goal in "
            f"the {where} phase{'s' if len(over) > 1 else ''}"
        )
        if "contested" in over and contested_per_s > 0:
            # closed loop: every workstation claims again as soon as it is answered,
            # so the attempts in flight are the workstations (Little's law)
            print(
                f"     the contested phase is a closed loop of {w} workstations: its mean "
                f"latency is {w} / {contested_per_s:,.0f} attempts/s = "
                f"{w / contested_per_s * 1000:.1f} ms (measured "
                f"{statistics.fmean(contested):.1f} ms), set by how many attempts per second "
                "the client processes and the server serve together on this machine"
            )
    if not ok_vis:
        print(f"why: a change took {fmt(vis_p99)} (p99) to reach another workstation's watch")
    if not trusted:
        print("NOT TRUSTED: see the errors and inconsistencies above (exit code 1)")
    result = {
        "workstations": w,
        "seconds": cfg["seconds"],
        "procs": cfg["procs"],
        "observers": cfg["observers"],
        "think_ms": cfg["think_ms"],
        "claim_p50_ms": rounded(claim_p50),
        "claim_p99_ms": rounded(claim_p99),
        "claim_mixed_p99_ms": rounded(pct(mixed_claims, 99)),
        "claim_contested_p50_ms": rounded(pct(contested, 50)),
        "claim_contested_p99_ms": rounded(pct(contested, 99)),
        "ops_per_s": rounded(ops_per_s, 1),
        "claims_per_s": rounded(claims_per_s, 1),
        "contested_claims_per_s": rounded(contested_per_s, 1),
        "visible_p50_ms": rounded(pct(vis, 50)),
        "visible_p99_ms": rounded(vis_p99),
        "contested_claims": len(contested),
        "contested_items": len(items),
        "double_claims": len(doubles),
        "overlaps": len(v.overlaps),
        "errors": sum(stats.errors.values()),
        "peer": peer_name,
        "peer_p50_ms": rounded(peer_p50),
        "peer_p99_ms": rounded(peer_p99),
        "peer_per_s": rounded(peer_per_s, 1),
        "ratio_p50": rounded(ratio_p50),
        "ratio_p99": rounded(ratio_p99),
        "goal_claim_p99_ms": GOAL_CLAIM_P99_MS,
        "goal_visible_p99_ms": GOAL_VISIBLE_P99_MS,
        "trusted": trusted,
        "pass": ok_claim and ok_vis and ok_double and trusted,
        "via_server": bool(cfg.get("server_url")),
        "cpu_ms_per_contested_attempt": {k: round(v, 3) for k, v in cost.items()},
    }
    return result, trusted


# --------------------------------------------------------------------------- main


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", help="PostgreSQL DSN (default: $SAS_DESK_BENCH_PG_DSN, …)")
    parser.add_argument("--workstations", type=int, help="simulated workstations (default 50)")
    parser.add_argument("--seconds", type=float, help="length of the mixed phase (default 60)")
    parser.add_argument(
        "--contested", type=int, help="contested claim attempts, at least (default 10,000)"
    )
    parser.add_argument("--batch", type=int, default=20, help="items per contested round (20)")
    parser.add_argument("--observers", type=int, help="watching observers (default 3)")
    parser.add_argument(
        "--think-ms",
        type=float,
        default=250.0,
        help="pause between two operations of a workstation, × 0.5–1.5 (default 250; 0: flat out)",
    )
    parser.add_argument("--pool", type=int, default=1, choices=(1, 2), help="pool_size (1)")
    parser.add_argument(
        "--procs", type=int, default=1, help="client processes, one asyncio loop each (1)"
    )
    parser.add_argument("--seed", default="sas-desk", help="random seed")
    parser.add_argument("--no-peer", action="store_true", help=f"skip the {PEER} comparison")
    parser.add_argument(
        "--via-server",
        action="store_true",
        help="then the same room through a room server process (HTTP + SSE), compared",
    )
    parser.add_argument(
        "--quick", action="store_true", help="10 workstations, 5 s, 1,000 contested claims"
    )
    args = parser.parse_args(argv)
    quick = {"workstations": 10, "seconds": 5.0, "contested": 1000, "observers": 2}
    full = {"workstations": 50, "seconds": 60.0, "contested": 10_000, "observers": 3}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.workstations < 2:
        parser.error("--workstations must be at least 2")
    if min(args.seconds, args.contested, args.batch, args.observers) <= 0:
        parser.error("--seconds, --contested, --batch and --observers must be positive")
    if args.think_ms < 0:
        parser.error("--think-ms cannot be negative")
    if not 1 <= args.procs <= min(8, args.workstations):
        parser.error("--procs must be between 1 and min(8, --workstations)")
    args.observers = max(args.observers, args.procs)  # one at least in each process
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    suffix = uuid.uuid4().hex[:10]
    per_round = args.batch * args.workstations
    cfg: dict[str, Any] = {
        "dsn": args.dsn
        or os.environ.get("SAS_DESK_BENCH_PG_DSN")
        or os.environ.get("SAS_DESK_TEST_PG_DSN")
        or DEFAULT_DSN,
        "schema": f"bench_q_{suffix}",
        "peer_schema": f"bench_pgq_{suffix}",
        "peer_prefix": f"b{suffix}_",
        "tag": suffix.upper(),
        "workstations": args.workstations,
        "seconds": args.seconds,
        "observers": args.observers,
        "think_ms": args.think_ms,
        "pool": args.pool,
        "procs": args.procs,
        "seed": args.seed,
        "batch": args.batch,
        "per_round": per_round,
        "rounds": max(1, math.ceil(args.contested / per_round)),
        "peer": not args.no_peer,
        "activity_apps": "^bench-(ws|pgq)[0-9]+$",
        "own_sessions": "^bench-(ws|obs)[0-9]+$",
        "server_schema": f"bench_qs_{suffix}",
    }
    dsn = cfg["dsn"]
    # pools + observers (pool + LISTEN each) + the activity sampler + verify or
    # cleanup; then the peer's consumers + one admin connection per process
    ours = args.workstations * args.pool + 2 * args.observers + 2
    needed = max(ours, args.workstations + args.procs + 2)
    try:
        budget, fits, cfg["server_start"] = connection_budget(dsn, needed)
    except psycopg.Error as exc:
        print(f"ERROR: PostgreSQL unreachable: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"server   : {budget}")
    with contextlib.suppress(OSError):
        load = Path("/proc/loadavg").read_text().split()[:3]
        print(f"machine  : {os.cpu_count()} cores, load average {' '.join(load)} before the run")
    print(
        f"client   : {args.procs} process(es), one asyncio loop each (Python "
        f"{sys.version.split()[0]}, psycopg {psycopg.__version__}); every workstation is its "
        f"own PostgresBackend (pool_size={args.pool}, application_name=bench-wsNN), every "
        "observer its own backend + LISTEN connection"
    )
    print(
        f"schemas  : {cfg['schema']} (SAS Desk), {cfg['peer_schema']} ({PEER}); dropped at the end"
    )
    if not fits:
        print(
            "ERROR: not enough free connections on the server: lower --workstations, "
            "--observers or --pool",
            file=sys.stderr,
        )
        return 1

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    results: list[dict[str, Any]] = []
    outcome: tuple[dict[str, Any], bool] | None = None
    server: RoomServerProcess | None = None
    schemas = [cfg["schema"], cfg["peer_schema"]] + (
        [cfg["server_schema"]] if args.via_server else []
    )
    try:
        if args.via_server:
            print()
            print("======== 1. direct: every workstation its own PostgreSQL sessions ========")
        asyncio.run(upgrade(dsn, cfg["schema"]))  # once, before 50 backends look at it
        results = run_processes(cfg)
        failures = [res["error"] for res in results if res.get("error")]
        for failure in failures:
            print(f"ERROR in a client process:\n{failure}", file=sys.stderr)
        if not failures:
            outcome = report(cfg, results)
        if outcome is not None and args.via_server:
            direct = outcome
            outcome = None
            server_cfg = {
                **cfg,
                "schema": cfg["server_schema"],
                "tag": f"S{cfg['tag']}",
                "peer": False,
                "peer_skipped": f"measured once, in the direct pass above ({PEER})",
                # the server's own PostgreSQL sessions (queues pool, store, LISTEN)
                "activity_apps": "^sas-desk-server$",
                "own_sessions": "^sas-desk-server$",
            }
            print()
            print("======== 2. through the room server: HTTP + SSE, one server process ========")
            log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-room-server-{suffix}.log"
            server = RoomServerProcess(dsn, server_cfg["schema"], log_path)
            asyncio.run(upgrade(dsn, server_cfg["schema"]))
            t0 = time.monotonic()
            server_cfg["accounts"] = server.add_accounts()
            server_cfg["server_url"] = server.start()
            server_cfg["server_pid"] = server.pid
            print(
                f"room server: {server_cfg['server_url']} (pid {server.pid}, schema "
                f"{server_cfg['schema']}, log {log_path}); {len(server_cfg['accounts'])} "
                f"accounts made with `sas-desk server user add` (one per role, with MRU for "
                f"the contested phase) in {time.monotonic() - t0:.1f} s; every workstation "
                "logs in (its own session and workstation name; a second session as MRU for "
                "the contested phase), every observer as SUP and follows /v1/stream"
            )
            results = run_processes(server_cfg)
            code = server.stop()
            warnings = [line for line in server.log_lines() if "WARNING" in line or "ERROR" in line]
            print(f"room server stopped (exit code {code}), {len(warnings)} warnings/errors logged")
            for line in warnings[:10]:
                print(f"  server log: {line}")
            failures = [res["error"] for res in results if res.get("error")]
            for failure in failures:
                print(f"ERROR in a client process:\n{failure}", file=sys.stderr)
            if not failures:
                via = report(server_cfg, results)
                outcome = compare(direct, via)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    except Exception:
        traceback.print_exc()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if server is not None:
            server.stop()
        problems = drop_schemas(dsn, schemas)
        if problems:
            print("cleanup problems: " + "; ".join(problems), file=sys.stderr)
        else:
            print(f"cleanup  : schemas {', '.join(schemas)} dropped")
    if outcome is None:
        return 1
    result, trusted = outcome
    print("RESULT " + json.dumps(result))
    return 0 if trusted else 1


def compare(
    direct: tuple[dict[str, Any], bool], via: tuple[dict[str, Any], bool]
) -> tuple[dict[str, Any], bool]:
    """Side by side: the room through its server against direct PostgreSQL,
    measured in the same run.  RESULT: the server pass's keys (the goals
    are judged there), ``direct_*`` for the baseline, and the ratios."""
    d, v = direct[0], via[0]

    def ratio(a: float | None, b: float | None) -> float:
        return a / b if a is not None and b else math.nan

    lines = (
        ("contested claims/s", "contested_claims_per_s", " /s"),
        ("contested p50", "claim_contested_p50_ms", " ms"),
        ("contested p99", "claim_contested_p99_ms", " ms"),
        ("mixed claim p99", "claim_mixed_p99_ms", " ms"),
        ("mixed operations/s", "ops_per_s", " /s"),
        ("visible p99", "visible_p99_ms", " ms"),
    )
    print()
    print("======== through the server vs direct PostgreSQL (same run) ========")
    print(f"{'':22} {'direct':>10} {'server':>10} {'server/direct':>14}")
    for label, key, unit in lines:
        a, b = d.get(key), v.get(key)
        shown = [f"{x:.1f}{unit}" if x is not None else "—" for x in (a, b)]
        print(f"{label:22} {shown[0]:>10} {shown[1]:>10} {ratio(b, a):13.2f}×")
    result = dict(v)
    for key in (
        "contested_claims_per_s",
        "claim_contested_p50_ms",
        "claim_contested_p99_ms",
        "claim_mixed_p99_ms",
        "claim_p99_ms",
        "visible_p99_ms",
        "ops_per_s",
        "double_claims",
        "trusted",
        "pass",
        "cpu_ms_per_contested_attempt",
    ):
        result[f"direct_{key}"] = d.get(key)
    for key in ("peer", "peer_p50_ms", "peer_p99_ms", "peer_per_s", "ratio_p50", "ratio_p99"):
        result[key] = d.get(key)  # the peer ran once, against the direct pass
    result["server_direct_throughput_ratio"] = rounded(
        ratio(v.get("contested_claims_per_s"), d.get("contested_claims_per_s"))
    )
    result["server_direct_p99_ratio"] = rounded(
        ratio(v.get("claim_contested_p99_ms"), d.get("claim_contested_p99_ms"))
    )
    result["via_server"] = True
    return result, direct[1] and via[1]


if __name__ == "__main__":
    sys.exit(main())
