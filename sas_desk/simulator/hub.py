"""A local Hub Santé for development, tests and the demo, on a real RabbitMQ.

``sas-desk simulator hub --url amqp://guest:guest@127.0.0.1:5672/ [--vhost V]
--client fr.health.samu690 --client fr.health.ptfsas`` declares the hub's
topology (``reference/notes/hub-sante.md`` §1.3) and runs a dispatcher that
behaves like the national one:

* exchanges ``hubsante`` (topic, clients publish with their own id as routing
  key), ``distribution`` (direct), ``distribution.dlx`` (fanout); queues
  ``dispatch`` (bound ``#``), ``dispatch.dlq``, and per client
  ``<id>.message``/``.ack``/``.info`` with a TTL, the first two dead-lettering
  to ``distribution.dlx``;
* each message of ``dispatch`` is checked — persistent (100), JSON content type
  (101), readable (102), ``senderID`` = routing key (200), a valid envelope
  (300), not expired (400) — then routed by ``explicitAddressValue`` and kind
  to ``<recipient>.message|ack|info`` (mandatory; unroutable → 501), with a
  per-message expiration from ``dateTimeExpires``;
* dead letters (expired or rejected in a client queue) become error 500 for
  their original sender.

Errors are RS-ERROR envelopes from ``fr.health.hub`` on the sender's ``.info``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import aio_pika
import aio_pika.abc
import aio_pika.exceptions

from sas_desk.models import hub

log = logging.getLogger("sas_desk.simulator.hub")

ORIGINAL_SENDER = "x-death-original-routing-key"


def _now() -> datetime:
    return datetime.now().astimezone().replace(microsecond=0)


class HubSimulator:
    def __init__(
        self,
        url: str,
        clients: list[str],
        *,
        ttl_ms: int = 86_400_000,
        now: Callable[[], datetime] = _now,
    ) -> None:
        self.url = url
        self.clients = list(clients)
        self.ttl_ms = ttl_ms
        self._now = now
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._distribution: aio_pika.abc.AbstractExchange | None = None
        self.routed = 0
        self.errors: list[tuple[int, str]] = []  # (code, original sender)

    async def start(self) -> None:
        self._connection = await aio_pika.connect(self.url, timeout=10)
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        self._channel = channel
        await self.declare(channel, self.clients, self.ttl_ms)
        self._distribution = await channel.get_exchange("distribution")
        dispatch = await channel.get_queue("dispatch")
        dlq = await channel.get_queue("dispatch.dlq")
        await channel.set_qos(prefetch_count=64)
        await dispatch.consume(self._on_dispatch)
        await dlq.consume(self._on_dead_letter)
        log.info("hub simulator dispatching for %s", ", ".join(self.clients))

    async def stop(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None

    @staticmethod
    async def declare(
        channel: aio_pika.abc.AbstractChannel, clients: list[str], ttl_ms: int
    ) -> None:
        """The hub's exchanges and queues (idempotent)."""
        topic = await channel.declare_exchange(
            "hubsante", aio_pika.ExchangeType.TOPIC, durable=True
        )
        direct = await channel.declare_exchange(
            "distribution", aio_pika.ExchangeType.DIRECT, durable=True
        )
        dlx = await channel.declare_exchange(
            "distribution.dlx", aio_pika.ExchangeType.FANOUT, durable=True
        )
        dispatch = await channel.declare_queue("dispatch", durable=True)
        await dispatch.bind(topic, "#")
        dlq = await channel.declare_queue("dispatch.dlq", durable=True)
        await dlq.bind(dlx)
        for client in clients:
            for suffix in ("message", "ack", "info"):
                args: dict[str, Any] = {"x-message-ttl": ttl_ms}
                if suffix != "info":  # expired errors are not reported again (no loops)
                    args["x-dead-letter-exchange"] = "distribution.dlx"
                queue = await channel.declare_queue(
                    f"{client}.{suffix}", durable=True, arguments=args
                )
                await queue.bind(direct, f"{client}.{suffix}")

    # ------------------------------------------------------------------ dispatch
    async def _on_dispatch(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        sender = message.routing_key or ""
        try:
            await self._dispatch(message, sender)
        except Exception:
            log.exception("dispatcher failure")
        finally:
            await message.ack()

    async def _dispatch(self, message: aio_pika.abc.AbstractIncomingMessage, sender: str) -> None:
        body = message.body
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            await self._error(sender, 102, f"message illisible : {exc}", _recover_id(body), None)
            return
        did = data.get("distributionID", "") if isinstance(data, dict) else ""
        did = did if isinstance(did, str) else ""
        if message.delivery_mode != aio_pika.DeliveryMode.PERSISTENT and sender.startswith(
            "fr.health"
        ):
            await self._error(sender, 100, "delivery_mode doit valoir 2 (persistant)", did, data)
            return
        if (message.content_type or "") != "application/json":
            await self._error(sender, 101, "content_type doit valoir application/json", did, data)
            return
        if not isinstance(data, dict) or data.get("senderID") != sender:
            await self._error(
                sender, 200, f"senderID différent de la clé de routage « {sender} »", did, data
            )
            return
        problems = hub.check_envelope(data, strict_header=False)
        if problems:
            await self._error(sender, 300, " ; ".join(problems), did, data)
            return
        env = hub.parse_envelope(data)
        now = self._now()
        if env.expires_at <= now:
            await self._error(sender, 400, "dateTimeExpires dépassé avant routage", did, data)
            return
        ttl = min(env.expires_at - now, timedelta(milliseconds=self.ttl_ms))
        key = f"{env.recipient_id}.{hub.queue_suffix(env.kind)}"
        out = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            priority=0,
            expiration=ttl,
            headers={ORIGINAL_SENDER: sender},
        )
        assert self._distribution is not None
        try:
            await self._distribution.publish(out, routing_key=key, mandatory=True)
        except aio_pika.exceptions.DeliveryError:
            await self._error(sender, 501, f"destinataire inconnu : {env.recipient_id}", did, data)
            return
        self.routed += 1

    async def _on_dead_letter(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            headers = message.headers or {}
            sender = headers.get(ORIGINAL_SENDER)
            if not isinstance(sender, str) or sender == hub.HUB_ID:
                return
            try:
                data = json.loads(message.body)
            except (UnicodeDecodeError, json.JSONDecodeError):
                data = None
            did = data.get("distributionID", "") if isinstance(data, dict) else ""
            await self._error(
                sender, 500, "message expiré ou rejeté dans la file du destinataire", did, data
            )

    async def _error(
        self, sender: str, code: int, cause: str, referenced: str, source: Any
    ) -> None:
        self.errors.append((code, sender))
        log.info("hub error %d for %s: %s", code, sender, cause)
        if not hub.is_client_id(sender):
            return
        now = self._now()
        envelope = hub.build_envelope(
            sender=hub.HUB_ID,
            recipient=sender,
            body=hub.error_body(
                code, cause, referenced, source if isinstance(source, dict) else None
            ),
            sent_at=now,
            expires_at=now + timedelta(days=1),
        )
        assert self._distribution is not None
        out = aio_pika.Message(
            json.dumps(envelope, ensure_ascii=False).encode("utf-8"),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers={ORIGINAL_SENDER: hub.HUB_ID},
        )
        try:
            await self._distribution.publish(out, routing_key=f"{sender}.info", mandatory=True)
        except aio_pika.exceptions.DeliveryError:
            log.warning("no .info queue for %s: error %d dropped", sender, code)


def _recover_id(body: bytes) -> str:
    """The hub recovers the distributionID of an unreadable message by regex."""
    import re

    found = re.search(rb'"distributionID"\s*:\s*"([^"]+)"', body)
    return found.group(1).decode("utf-8", "replace") if found else ""


async def serve(
    url: str,
    clients: list[str],
    ttl_ms: int,
    play_sas: tuple[str, Callable[[], Awaitable[list[dict[str, Any]]]], str] | None = None,
) -> None:
    """``play_sas``: (centre, bookings reader, regulator) — also play the SAS
    platform (:mod:`.sas_player`)."""
    simulator = HubSimulator(url, clients, ttl_ms=ttl_ms)
    await simulator.start()
    player = None
    if play_sas is not None:
        from sas_desk.simulator.sas_player import SasPlayer

        centre, bookings, regulator = play_sas
        player = SasPlayer(url, centre, bookings, regulator=regulator)
        await player.start()
        playing = asyncio.get_running_loop().create_task(player.run(), name="play-sas")
    print(
        json.dumps(
            {"hub": "ready", "clients": clients, "exchange": "hubsante"}, ensure_ascii=False
        ),
        flush=True,
    )
    try:
        await asyncio.Event().wait()
    finally:
        if player is not None:
            playing.cancel()
            await player.stop()
        await simulator.stop()
