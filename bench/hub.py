"""Hub Santé agent under a burst, on the machine's real RabbitMQ.

    python bench/hub.py [--messages 1000] [--rate 200] [--url amqp://guest:guest@127.0.0.1:5672/]

A fresh vhost (``rabbitmqctl add_vhost``, deleted after) with the local hub
(``sas-desk simulator hub`` in its own process: the dispatcher hop is part of
every figure).  The SAS platform and a partner centre (this process) publish
half RS-SAS-RDV (new appointments) and half RS-EDA-MAJ (a note on one of 20
known cases) to ``fr.health.samu690``, whose agent runs here on its own data dir.

1. **Latency** at ``--rate`` messages/s: from publish to "stored (hub store or
   journal), RC-REF queued, basic.ack sent" (the agent's ``on_processed``),
   p50/p99.  Goal p99 ≤ 100 ms at 200 messages/s.
2. **Throughput** of a full-speed burst of the same size, first publish → last
   message processed, next to a bare aio-pika consumer that only acks, measured
   in the same run on the same path.  Goal ≥ 0.5× the bare rate.
3. **Integrity**: every message stored once (0 lost, 0 duplicated) and every
   RC-REF confirmed by the broker and received once by its sender.

Ends with ``RESULT {json}``; exit 1 only when the run cannot be trusted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit
from uuid import uuid4

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aio_pika  # noqa: E402

from sas_desk.models import hub  # noqa: E402
from sas_desk.models.dossier import Dossier  # noqa: E402
from sas_desk.services.hub.agent import HubAgent  # noqa: E402
from sas_desk.services.hub.cases import JournalCases  # noqa: E402
from sas_desk.services.hub.processor import HubProcessor, Verdict  # noqa: E402
from sas_desk.services.hub.settings import HubSettings  # noqa: E402
from sas_desk.services.hub.store import AsyncHubStore  # noqa: E402
from sas_desk.services.journal.service import Journal  # noqa: E402

ME, PARTNER, SAS = "fr.health.samu690", "fr.health.samu380", "fr.health.ptfsas"
GOAL_P99_MS = 100.0
GOAL_RATIO = 0.5
CASES = [f"fr.health.samu380.DRFR1538B26341{n:05d}" for n in range(1, 21)]  # 20 open cases


def now() -> datetime:
    return datetime.now().astimezone().replace(microsecond=0)


def ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, check=False)


def appointment(n: int, run: str) -> dict[str, Any]:
    return {
        "appointment": {
            "appointmentId": f"{run}-{n:05d}",
            "method": "CreateAppointment",
            "created": "2026-12-07T10:15:00+01:00",
            "status": "booked",
            "orientationCategory": "PS",
            "start": "2026-12-07T14:00:00+01:00",
            "end": "2026-12-07T14:20:00+01:00",
            "practitioner": {"rppsId": "810005681340", "lastName": "MOREL", "firstName": "Didier"},
            "regulator": {
                "regulatorName": "RICART",
                "regulatorFirstname": "Pauline",
                "regulatorEmail": "pauline.ricart@ghsas.fr",
            },
        }
    }


def update(n: int, run: str) -> dict[str, Any]:
    return {
        "createCaseHealthUpdate": {
            "caseId": CASES[n % len(CASES)],
            "medicalNote": [
                {
                    "medicalNoteId": f"fr.health.samu380.medicalNote.{run}.{n}",
                    "operator": {"role": "MEDECIN", "label": "Dr Regul"},
                    "creation": now().isoformat(),
                    "freetext": f"Note de régulation {n}",
                }
            ],
        }
    }


def envelopes(count: int, run: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for n in range(count):
        sender = SAS if n % 2 == 0 else PARTNER
        body = appointment(n, run) if n % 2 == 0 else update(n, run)
        t = now()
        env = hub.build_envelope(
            sender=sender, recipient=ME, body=body, sent_at=t, expires_at=t + timedelta(hours=1)
        )
        out.append((sender, env))
    return out


class Publishers:
    def __init__(self, url: str) -> None:
        self.url = url

    async def __aenter__(self) -> Publishers:
        self.connection = await aio_pika.connect(self.url)
        self.channel = await self.connection.channel(publisher_confirms=False)
        self.exchange = await self.channel.get_exchange("hubsante")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()

    async def publish(self, sender: str, env: dict[str, Any]) -> None:
        await self.exchange.publish(
            aio_pika.Message(
                json.dumps(env).encode(),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=sender,
        )

    async def count(self, queue: str) -> int:
        q = await self.channel.declare_queue(queue, passive=True)
        return int(q.declaration_result.message_count or 0)


async def bare_burst(url: str, batch: list[tuple[str, dict[str, Any]]]) -> float:
    """Seconds from first publish to the last delivery acked by a consumer that
    does nothing else."""
    done = asyncio.Event()
    seen = 0
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=64)
    queue = await channel.declare_queue(f"{ME}.message", passive=True)

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal seen
        await message.ack()
        seen += 1
        if seen == len(batch):
            done.set()

    await queue.consume(on_message)
    async with Publishers(url) as pub:
        t0 = time.perf_counter()
        for sender, env in batch:
            await pub.publish(sender, env)
        await asyncio.wait_for(done.wait(), 300)
        elapsed = time.perf_counter() - t0
    await connection.close()
    return elapsed


async def measure(url: str, count: int, rate: float, data: Path) -> dict[str, Any]:
    settings = HubSettings(url=url, client_id=ME)
    journal = Journal(data / "journal.sqlite", now=now)
    await journal.open()
    store = AsyncHubStore(data / "hub.sqlite")
    await store.open()
    cases = JournalCases(journal, now)
    processor = HubProcessor(settings, store, cases, now)
    # the cases the updates are about
    for case_id in CASES:
        await cases.create(
            Dossier(case_id=case_id, created_at=now(), owner=PARTNER), f"{PARTNER}_seed", PARTNER
        )
    await cases.flush()
    done_at: dict[str, float] = {}
    outcomes: dict[str, str] = {}

    def on_processed(v: Verdict) -> None:
        done_at.setdefault(v.distribution_id, time.perf_counter())
        outcomes[v.distribution_id] = v.outcome

    agent = HubAgent(settings, processor, on_processed=on_processed)
    connected = asyncio.Event()
    agent.status_listeners.append(lambda st: connected.set() if st.connected else None)
    task = asyncio.create_task(agent.run())
    await asyncio.wait_for(connected.wait(), 30)
    errors: list[str] = []
    result: dict[str, Any] = {}
    try:
        # 1. latency at a steady rate
        paced = envelopes(count, "paced")
        sent_at: dict[str, float] = {}
        async with Publishers(url) as pub:
            t0 = time.perf_counter()
            for i, (sender, env) in enumerate(paced):
                due = t0 + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent_at[env["distributionID"]] = time.perf_counter()
                await pub.publish(sender, env)
            deadline = time.perf_counter() + 120
            while len([d for d in sent_at if d in done_at]) < count:
                if time.perf_counter() > deadline:
                    errors.append("paced run: messages not processed in 120 s")
                    break
                await asyncio.sleep(0.01)
        lat = sorted((done_at[d] - sent_at[d]) * 1000 for d in sent_at if d in done_at)
        result["paced_rate"] = rate
        result["p50_ms"] = round(lat[len(lat) // 2], 1) if lat else None
        result["p99_ms"] = round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1) if lat else None
        result["max_ms"] = round(lat[-1], 1) if lat else None

        # 2. full-speed burst through the agent
        burst = envelopes(count, "burst")
        ids = [e["distributionID"] for _, e in burst]
        async with Publishers(url) as pub:
            t0 = time.perf_counter()
            for sender, env in burst:
                await pub.publish(sender, env)
            deadline = time.perf_counter() + 300
            while not all(d in done_at for d in ids):
                if time.perf_counter() > deadline:
                    errors.append("burst: messages not processed in 300 s")
                    break
                await asyncio.sleep(0.005)
            agent_s = max(done_at.get(d, t0) for d in ids) - t0
        # 3. integrity: every message once, every RC-REF confirmed
        deadline = time.perf_counter() + 120
        while True:
            ledger = await store.run(lambda s: s.ledger(limit=10 * count))
            if len(ledger) >= 2 * count and all(r.state == "confirmed" for r in ledger):
                break
            if time.perf_counter() > deadline:
                errors.append("RC-REFs not all confirmed in 120 s")
                break
            await asyncio.sleep(0.05)
        inbound = await store.run(lambda s: s.inbound(limit=10 * count))
    finally:
        await agent.stop()
        await task
        await store.close()
        await journal.close()

    stored = len(inbound)
    twice = sum(1 for r in inbound if r["deliveries"] > 1)
    bad = [o for o in outcomes.values() if o not in ("appointment_created", "updated")]
    async with Publishers(url) as pub:
        acks = await pub.count(f"{SAS}.ack") + await pub.count(f"{PARTNER}.ack")
    result.update(
        agent_burst_s=round(agent_s, 3),
        agent_rate=round(count / agent_s, 1),
        stored=stored,
        expected=2 * count,
        redelivered=twice,
        refused=len(bad),
        rcref_confirmed=sum(1 for r in ledger if r.state == "confirmed"),
        rcref_in_sender_queues=acks,
    )
    if stored != 2 * count or bad or acks != 2 * count:
        errors.append(f"integrity: stored {stored}, refused {len(bad)}, acks {acks} / {2 * count}")
    result["errors"] = errors
    return result


async def run_all(args: argparse.Namespace, url: str) -> tuple[float, dict[str, Any]]:
    bare_s = await bare_burst(url, envelopes(args.messages, "bare"))
    with tempfile.TemporaryDirectory() as tmp:
        result = await measure(url, args.messages, args.rate, Path(tmp))
    return bare_s, result


def run_bench(args: argparse.Namespace) -> int:
    if shutil.which("rabbitmqctl") is None:
        print("rabbitmqctl not found: run as root on the broker's machine")
        return 1
    vhost = f"sasdesk-bench-{uuid4().hex[:8]}"
    base = urlsplit(args.url)
    url = urlunsplit((base.scheme, base.netloc, "/" + quote(vhost, safe=""), "", ""))
    ctl("add_vhost", vhost)
    ctl("set_permissions", "-p", vhost, base.username or "guest", ".*", ".*", ".*")
    sim = subprocess.Popen(
        [sys.executable, "-m", "sas_desk", "simulator", "hub", "--url", args.url,
         "--vhost", vhost, "--client", ME, "--client", PARTNER, "--client", SAS],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert sim.stdout is not None
        if json.loads(sim.stdout.readline() or "{}").get("hub") != "ready":
            print("hub simulator did not start")
            return 1
        bare_s, result = asyncio.run(run_all(args, url))
    finally:
        sim.terminate()
        sim.communicate(timeout=10)
        ctl("delete_vhost", vhost)
    bare_rate = args.messages / bare_s
    ratio = result["agent_rate"] / bare_rate
    ok_p99 = result["p99_ms"] is not None and result["p99_ms"] <= GOAL_P99_MS
    ok_ratio = ratio >= GOAL_RATIO
    n = args.messages
    print(f"messages per run: {n} (half RS-SAS-RDV, half RS-EDA-MAJ), via the local hub dispatcher")
    print(f"latency at {args.rate:.0f}/s, publish → stored + RC-REF queued + acked:")
    print(f"  p50 {result['p50_ms']} ms   p99 {result['p99_ms']} ms   max {result['max_ms']} ms")
    print(f"  goal p99 ≤ {GOAL_P99_MS:.0f} ms: {'PASS' if ok_p99 else 'FAIL'}")
    print("full-speed burst, first publish → last message processed:")
    print(f"  agent        {result['agent_burst_s']:7.3f} s   {result['agent_rate']:8.1f} msg/s")
    print(f"  bare consumer{bare_s:7.3f} s   {bare_rate:8.1f} msg/s   (only acks)")
    print(f"  ratio {ratio:.2f} (goal ≥ {GOAL_RATIO}): {'PASS' if ok_ratio else 'FAIL'}")
    print(
        f"integrity: stored {result['stored']}/{result['expected']}, redelivered "
        f"{result['redelivered']}, refused {result['refused']}, RC-REF confirmed "
        f"{result['rcref_confirmed']}, RC-REF in the senders' queues {result['rcref_in_sender_queues']}"
    )
    for err in result["errors"]:
        print(f"ERROR: {err}")
    out = {
        **result,
        "messages": n,
        "bare_burst_s": round(bare_s, 3),
        "bare_rate": round(bare_rate, 1),
        "ratio": round(ratio, 2),
        "goal_p99_ms": GOAL_P99_MS,
        "goal_ratio": GOAL_RATIO,
        "pass": ok_p99 and ok_ratio and not result["errors"],
    }
    print("RESULT " + json.dumps(out))
    return 1 if result["errors"] else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=1000)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    return run_bench(p.parse_args())


if __name__ == "__main__":
    sys.exit(main())
