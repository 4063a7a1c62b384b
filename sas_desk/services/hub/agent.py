"""The Hub Santé agent: one AMQP consumer per centre (aio-pika on asyncio).

A plain asyncio service with an injected :class:`HubProcessor` (store, case
sink, clock): the room server, ``sas-desk hub agent``/``receive`` or the
embedded workstation run it the same way::

    agent = HubAgent(settings, processor)
    task = asyncio.create_task(agent.run())
    ...
    await agent.stop()

* connects (the first time too) with exponential backoff, heartbeats from the
  settings; mutual TLS with SASL EXTERNAL on ``amqps://`` (the broker maps the
  certificate's CN to the client id; server certificate and host name checked);
* consumes ``<id>.message``, ``<id>.ack``, ``<id>.info`` (declared passively by
  default: a production client has no configure right); each delivery goes
  through :meth:`HubProcessor.handle` and is acked once stored, nacked without
  requeue when unreadable;
* publishes the durable outbox in order to the ``hubsante`` exchange with the
  own id as routing key, persistent, ``application/json``, priority 0, with
  publisher confirms; the ledger moves ``queued`` → ``sent`` → ``confirmed``.
  A message whose confirm was lost with the connection is published again with
  the same ``distributionID`` (the receiver de-duplicates on it);
* every second, messages past their expiry become ``expired`` (alarm).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aio_pika
import aio_pika.abc

from sas_desk.services.config import key_passphrase
from sas_desk.services.hub.processor import HubProcessor, Verdict
from sas_desk.services.hub.settings import HubSettings
from sas_desk.services.hub.store import Outbound

log = logging.getLogger("sas_desk.hub.agent")

SUFFIXES = ("message", "ack", "info")


@dataclass(frozen=True)
class HubStatus:
    connected: bool
    since: datetime | None  # connected since / offline since
    last_error: str = ""

    @property
    def label_fr(self) -> str:
        if self.connected:
            return "Hub Santé : connecté"
        if self.since is None:
            return "Hub Santé : hors ligne"
        return f"Hub Santé : hors ligne depuis {self.since:%H:%M}"


def connection_url(settings: HubSettings) -> str:
    """The URL given to aio-pika: EXTERNAL auth with TLS, heartbeat."""
    parts = urlsplit(settings.url)
    query = dict(q.split("=", 1) for q in parts.query.split("&") if "=" in q)
    query.setdefault("heartbeat", str(settings.heartbeat_s))
    if settings.tls and settings.cert:
        query["auth"] = "external"
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def tls_context(settings: HubSettings) -> ssl.SSLContext | None:
    """Client context: TLS ≥ 1.2, server certificate and host name verified
    against ``ca`` (else the system store), our certificate for EXTERNAL."""
    if not settings.tls:
        return None
    context = ssl.create_default_context(cafile=settings.ca or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    if settings.cert:
        # an encrypted key's passphrase from the keyring (sas-desk / key:<path>),
        # never a terminal prompt
        key = settings.key
        context.load_cert_chain(
            settings.cert, key or None, password=lambda: key_passphrase(key or settings.cert)
        )
    return context


class HubAgent:
    def __init__(
        self,
        settings: HubSettings,
        processor: HubProcessor,
        *,
        now: Callable[[], datetime] | None = None,
        backoff: tuple[float, float] = (0.5, 30.0),
        prefetch: int = 64,
        on_processed: Callable[[Verdict], None] | None = None,
    ) -> None:
        self.settings = settings
        self.processor = processor
        self._now = now or processor._now
        self._backoff = backoff
        self._prefetch = prefetch
        self._on_processed = on_processed
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self.status = HubStatus(False, None)
        self.status_listeners: list[Callable[[HubStatus], None]] = []
        self.last_activity = 0.0  # loop time of the last delivery handled
        self._inbox: asyncio.Queue[tuple[str, aio_pika.abc.AbstractIncomingMessage]] = (
            asyncio.Queue()
        )
        self.connects = 0

    # ------------------------------------------------------------------ control
    def wake(self) -> None:
        """Something was queued in the outbox: publish now."""
        self._wake.set()

    async def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        connection = self._connection
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    def _set_status(self, connected: bool, error: str = "") -> None:
        if connected != self.status.connected or self.status.since is None:
            self.status = HubStatus(connected, self._now(), error)
            for listener in list(self.status_listeners):
                listener(self.status)
        elif error:
            self.status = HubStatus(connected, self.status.since, error)

    # ------------------------------------------------------------------ main loop
    async def run(self) -> None:
        """Connect, serve, reconnect with backoff until :meth:`stop`."""
        await self.processor.recover()
        delay = self._backoff[0]
        while not self._stop.is_set():
            try:
                await self._session()
                delay = self._backoff[0]
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "hub %s unavailable (%s); retry in %.1f s",
                    self.settings.safe_url,
                    reason,
                    delay,
                )
                self._set_status(False, reason)
            finally:
                self._set_status(False)
            if self._stop.is_set():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            delay = min(delay * 2, self._backoff[1])

    async def _session(self) -> None:
        closed = asyncio.Event()
        # deliveries of this connection only: after a reconnection the broker
        # redelivers what was not acked, the old delivery tags are void
        self._inbox = asyncio.Queue()
        connection = await aio_pika.connect(
            connection_url(self.settings),
            ssl_context=tls_context(self.settings),
            timeout=10,
            client_properties={"connection_name": f"sas-desk hub {self.settings.client_id}"},
        )
        self._connection = connection
        connection.close_callbacks.add(lambda *_: closed.set())
        try:
            channel = await connection.channel(publisher_confirms=True)
            await channel.set_qos(prefetch_count=self._prefetch)
            exchange = await channel.get_exchange(self.settings.exchange, ensure=False)
            for suffix in SUFFIXES:
                name = f"{self.settings.client_id}.{suffix}"
                queue = await channel.declare_queue(
                    name, durable=True, passive=self.settings.passive
                )
                await queue.consume(self._consumer(name))
            self.connects += 1
            self._set_status(True)
            log.info("hub connected to %s as %s", self.settings.safe_url, self.settings.client_id)
            publisher = asyncio.create_task(self._publish_loop(exchange, closed))
            worker = asyncio.create_task(self._process_loop())
            stop = asyncio.create_task(self._stop.wait())
            lost = asyncio.create_task(closed.wait())
            tasks = (publisher, worker, stop, lost)
            try:
                done, _ = await asyncio.wait(set(tasks), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            for task in (publisher, worker):
                if task in done and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            if lost in done and not self._stop.is_set():
                raise ConnectionError("connexion fermée par le serveur")
        finally:
            self._connection = None
            with contextlib.suppress(Exception):
                await connection.close()

    def _consumer(self, queue: str) -> Callable[[aio_pika.abc.AbstractIncomingMessage], Any]:
        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            self._inbox.put_nowait((queue, message))

        return on_message

    async def _process_loop(self) -> None:
        """Hand what arrived together to the processor as one batch (group
        commit), then ack each message (nack the unreadable ones)."""
        while True:
            batch = [await self._inbox.get()]
            while not self._inbox.empty() and len(batch) < self._prefetch:
                batch.append(self._inbox.get_nowait())
            verdicts = await self.processor.handle_batch([(q, m.body) for q, m in batch])
            for (_queue, message), verdict in zip(batch, verdicts, strict=True):
                if verdict.ack:
                    await message.ack()
                else:
                    await message.nack(requeue=False)
                if verdict.answers:
                    self._wake.set()
                if self._on_processed is not None:
                    self._on_processed(verdict)
            self.last_activity = asyncio.get_running_loop().time()

    async def _publish_loop(
        self, exchange: aio_pika.abc.AbstractExchange, closed: asyncio.Event
    ) -> None:
        while not closed.is_set():
            self._wake.clear()
            await self.processor.check_expiry()
            batch = await self.processor.store.run(lambda s: s.to_publish(200))
            if batch:
                await self._publish(exchange, batch)
                continue  # there may be more
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)

    async def _publish(
        self, exchange: aio_pika.abc.AbstractExchange, batch: list[Outbound]
    ) -> None:
        at = self._now().isoformat()
        ids = [row.distribution_id for row in batch]
        await self.processor.store.run(lambda s: s.mark(ids, "sent", at))

        async def one(row: Outbound) -> None:
            message = aio_pika.Message(
                row.envelope.encode("utf-8"),
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                priority=0,
            )
            await exchange.publish(message, routing_key=self.settings.client_id, timeout=30)

        results = await asyncio.gather(*(one(r) for r in batch), return_exceptions=True)
        confirmed = [
            r.distribution_id
            for r, res in zip(batch, results, strict=True)
            if res is None or not isinstance(res, BaseException)
        ]
        at = self._now().isoformat()
        if confirmed:
            await self.processor.store.run(lambda s: s.mark(confirmed, "confirmed", at))
        failures = [res for res in results if isinstance(res, BaseException)]
        if failures:
            raise failures[0]
