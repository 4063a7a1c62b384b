"""``sas-desk hub …``: the Hub Santé agent from the command line.

sas-desk [--config C] [--data-dir D] hub status
sas-desk [--config C] [--data-dir D] hub receive [--once] [--timeout S]
sas-desk [--config C] [--data-dir D] hub send CASE_ID --to RECIPIENT [--timeout S]
sas-desk [--config C] [--data-dir D] hub appointments [--unattached]
sas-desk [--config C] [--data-dir D] hub attach APPOINTMENT_ID CASE_ID
sas-desk [--config C] [--data-dir D] hub ledger [--case CASE_ID]

One JSON line per item on stdout; errors in French on stderr, exit code 1.
Only argparse at import time: aio-pika is imported when a command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sas_desk.services.config import Config
    from sas_desk.services.hub.processor import HubProcessor, Verdict
    from sas_desk.services.hub.store import AsyncHubStore
    from sas_desk.services.journal.service import Journal


def add_hub_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("hub", help="Hub Santé : messages avec les partenaires et la PTF SAS")
    actions = p.add_subparsers(dest="hub_action", required=True)
    actions.add_parser("status", help="connexion, messages reçus et envoyés, alarmes")
    rec = actions.add_parser(
        "receive", help="reçoit et traite les messages (une ligne JSON chacun)"
    )
    rec.add_argument(
        "--once", action="store_true", help="s'arrête quand les files restent vides une seconde"
    )
    rec.add_argument("--timeout", type=float, help="durée maximale en secondes")
    send = actions.add_parser("send", help="partage un dossier (RS-EDA) avec un partenaire")
    send.add_argument("case_id")
    send.add_argument("--to", required=True, help="identifiant Hub du partenaire")
    send.add_argument("--timeout", type=float, default=30.0, help="attente de la confirmation")
    appts = actions.add_parser("appointments", help="rendez-vous SAS reçus (RS-SAS-RDV)")
    appts.add_argument("--unattached", action="store_true", help="seulement ceux à rattacher")
    attach = actions.add_parser("attach", help="rattache un rendez-vous SAS à un dossier")
    attach.add_argument("appointment_id")
    attach.add_argument("case_id")
    ledger = actions.add_parser("ledger", help="messages envoyés et leur état")
    ledger.add_argument("--case", help="seulement ceux d'un dossier")


def _fail(message: str) -> int:
    print(f"sas-desk : {message}", file=sys.stderr)
    return 1


def _line(record: dict[str, Any]) -> None:
    print(json.dumps(record, ensure_ascii=False), flush=True)


@dataclass
class _Parts:
    journal: Journal
    store: AsyncHubStore
    processor: HubProcessor


@contextlib.asynccontextmanager
async def open_parts(config: Config, client_id: str = "") -> AsyncIterator[_Parts]:
    """Journal + hub store + processor over the data dir (no connection)."""
    from sas_desk.services import clock
    from sas_desk.services.hub.cases import JournalCases
    from sas_desk.services.hub.processor import HubProcessor
    from sas_desk.services.hub.settings import HubSettings
    from sas_desk.services.hub.store import AsyncHubStore
    from sas_desk.services.journal.service import Journal

    settings = config.hub or HubSettings(
        url="amqp://127.0.0.1/", client_id=client_id or config.owner
    )
    from sas_desk.services.atrest import data_key

    key = await asyncio.to_thread(data_key, config.data_dir)  # the app's records, sealed
    journal = Journal(config.journal_path, now=clock.now, cipher=key.cipher())
    store = AsyncHubStore(config.hub_path)
    try:
        if await journal.open() is None:
            assert journal.open_error is not None
            raise OSError(journal.open_error.message_fr)
        await store.open()
        cases = JournalCases(journal, clock.now, config.workstation)
        yield _Parts(journal, store, HubProcessor(settings, store, cases, clock.now))
    finally:
        with contextlib.suppress(Exception):
            await store.close()
        await journal.close()


async def run_hub_command(config: Config, args: argparse.Namespace) -> int:
    from sas_desk.services.hub.store import HubStoreError

    action = args.hub_action
    if action in ("status", "receive", "send") and config.hub is None:
        return _fail("Hub Santé non configuré : ajoutez une section [hub] (url, client_id…).")
    try:
        async with open_parts(config) as parts:
            if action == "appointments":
                return await _appointments(parts, args.unattached)
            if action == "attach":
                try:
                    await parts.processor.attach(args.appointment_id, args.case_id, config.operator)
                except ValueError as exc:
                    return _fail(str(exc))
                _line({"appointmentId": args.appointment_id, "caseId": args.case_id})
                return 0
            if action == "ledger":
                rows = await parts.store.run(lambda s: s.ledger(args.case))
                for row in rows:
                    _line(row.record())
                return 0
            if action == "status":
                return await _status(config, parts)
            if action == "receive":
                return await _receive(config, parts, args.once, args.timeout)
            if action == "send":
                return await _send(config, parts, args.case_id, args.to, args.timeout)
    except (OSError, HubStoreError) as exc:
        return _fail(getattr(exc, "message_fr", None) or str(exc))
    return _fail(f"action inconnue : {action}")  # pragma: no cover - argparse restricts it


async def _appointments(parts: _Parts, unattached: bool) -> int:
    from sas_desk.models.appointment import parse_appointment, to_record

    rows = await parts.store.run(lambda s: s.appointments(unattached=unattached))
    for row in rows:
        _line(to_record(parse_appointment({"appointment": row.body}), row.case_id))
    return 0


async def _probe(config: Config) -> str:
    """'' when the broker accepts us, else the French reason."""
    import aio_pika

    from sas_desk.services.hub.agent import connection_url, tls_context

    assert config.hub is not None
    try:
        connection = await aio_pika.connect(
            connection_url(config.hub), ssl_context=tls_context(config.hub), timeout=5
        )
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    await connection.close()
    return ""


async def _status(config: Config, parts: _Parts) -> int:
    assert config.hub is not None
    counts = await parts.store.run(lambda s: s.counts())
    why = await _probe(config)
    record = {
        "client_id": config.hub.client_id,
        "url": config.hub.safe_url,
        "connected": not why,
        "label": "Hub Santé : connecté" if not why else "Hub Santé : hors ligne",
        "reason": why or None,
        **counts,
    }
    _line(record)
    return 0 if not why else _fail(f"Hub Santé injoignable ({config.hub.safe_url}) : {why}")


async def _run_agent(
    config: Config, parts: _Parts, until: Any, timeout: float | None, printer: Any = None
) -> tuple[bool, Any]:
    """Run the agent until ``until(agent)`` is true or the timeout."""
    from sas_desk.services.hub.agent import HubAgent

    assert config.hub is not None
    agent = HubAgent(config.hub, parts.processor, backoff=(0.5, 5.0), on_processed=printer)
    task = asyncio.create_task(agent.run())
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    reached = False
    try:
        while not task.done():
            if await until(agent):
                reached = True
                break
            if deadline is not None and loop.time() >= deadline:
                break
            await asyncio.sleep(0.05)
    finally:
        await agent.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return reached, agent


async def _receive(config: Config, parts: _Parts, once: bool, timeout: float | None) -> int:
    def printer(verdict: Verdict) -> None:
        _line(verdict.record())

    if once and timeout is None:
        timeout = 60.0
    loop = asyncio.get_running_loop()
    state = {"since": 0.0}

    async def quiet(agent: Any) -> bool:
        if not once or not agent.status.connected:
            state["since"] = 0.0
            return False
        now = loop.time()
        if not state["since"]:
            state["since"] = now
        idle_from = max(state["since"], agent.last_activity)
        if now - idle_from < 1.0:
            return False
        pending = await parts.store.run(lambda s: s.to_publish(1))
        return not pending

    reached, agent = await _run_agent(config, parts, quiet, timeout, printer)
    if once and not reached:
        if not agent.connects:
            return _fail(f"Hub Santé injoignable : {agent.status.last_error or 'délai dépassé'}")
        return _fail("délai dépassé avant que les files ne se vident")
    if not once and not agent.connects:
        return _fail(f"Hub Santé injoignable : {agent.status.last_error or 'délai dépassé'}")
    return 0


async def _send(config: Config, parts: _Parts, case_id: str, to: str, timeout: float) -> int:
    try:
        did = await parts.processor.share_case(case_id, to)
    except ValueError as exc:
        return _fail(str(exc))

    async def confirmed(agent: Any) -> bool:
        row = await parts.store.run(lambda s: s.outbound(did))
        return row is not None and row.state not in ("queued", "sent")

    reached, agent = await _run_agent(config, parts, confirmed, timeout)
    row = await parts.store.run(lambda s: s.outbound(did))
    assert row is not None
    _line(row.record())
    if not reached:
        why = agent.status.last_error or "délai dépassé"
        return _fail(
            f"message {did} en attente dans la boîte d'envoi (Hub Santé injoignable : {why}) ; "
            "il partira à la prochaine connexion."
        )
    return 0


async def import_document(config: Config, document: Any) -> int:
    """``dossier import-rseda`` for RS-EDA-MAJ and RS-SAS-RDV (and any Hub
    message), enveloped or bare, through the agent's own processing."""
    from sas_desk.models.hub import HubMessageError

    async with open_parts(config) as parts:
        try:
            verdict = await parts.processor.import_document(document)
        except HubMessageError as exc:
            return _fail(exc.message_fr)
    if verdict.outcome == "duplicate":
        print(f"Message déjà importé : {verdict.distribution_id}", file=sys.stderr)
        print(verdict.distribution_id)
        return 0
    if verdict.outcome == "refused":
        return _fail(f"message refusé : {verdict.detail}")
    if verdict.model == "RS-EDA-MAJ":
        print(
            f"Dossier mis à jour : {verdict.case_id} ({verdict.detail or 'rien de nouveau'})",
            file=sys.stderr,
        )
        print(verdict.case_id)
    elif verdict.model == "RS-SAS-RDV":
        print(
            f"Rendez-vous SAS enregistré : {verdict.appointment_id} ({verdict.outcome})",
            file=sys.stderr,
        )
        print(verdict.appointment_id)
    else:
        print(f"Message {verdict.model} : {verdict.outcome}", file=sys.stderr)
        print(verdict.distribution_id)
    return 0
