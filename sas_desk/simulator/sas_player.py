"""The SAS platform's side of flow INT_L02 for the local hub (``--play-sas``).

Every booking made on the simulator's booking pages (``GET {simulator}/_bookings``)
becomes one RS-SAS-RDV ``CreateAppointment`` published by the platform
(``fr.health.ptfsas``) on the hub's ``hubsante`` exchange to the centre —
as the national platform does right after a regulator books a slot
(``reference/notes/hub-sante.md`` §4.3).  The message holds no case id: the
room attaches it (``ui/appointments.py``).

The platform knows who booked (the regulator logged in to it); the simulator's
booking page does not, so ``regulator`` (default: the login of whoever runs
the demo, as ``[workstation] operator`` defaults to) stands for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import aio_pika
import aio_pika.abc

from sas_desk.models import hub

log = logging.getLogger("sas_desk.simulator.sas")

PLATFORM_ID = "fr.health.ptfsas"
POLL_S = 0.5  # how often the booking pages' record is read (a period, not a wait)
_NAMESPACE = uuid.UUID("6f1c8a52-3b0e-4d55-9a51-5a5d0c1e2b70")  # appointment ids from slot ids


def _offset(value: str) -> str:
    """An ISO date-time as the model wants it: seconds and an offset (the
    booking's own; local time when it has none), never Z."""
    when = datetime.fromisoformat(value)
    if when.tzinfo is None:
        when = when.astimezone()
    return when.replace(microsecond=0).isoformat()


def appointment_for(booking: dict[str, Any], regulator: str) -> dict[str, Any]:
    """The RS-SAS-RDV body for one record of ``/_bookings``."""
    national_id = str(booking.get("practitioner") or "")
    given, _, family = str(booking.get("practitioner_name") or "").partition(" ")
    practitioner: dict[str, Any] = {}
    if national_id.startswith("8") and len(national_id) == 12:
        practitioner["rppsId"] = national_id
    if family:
        practitioner.update(firstName=given, lastName=family.upper())
    item: dict[str, Any] = {
        "appointmentId": str(uuid.uuid5(_NAMESPACE, str(booking["slot"]))),
        "method": "CreateAppointment",
        "created": _offset(str(booking["booked_at"])),
        "status": "booked",
        "orientationCategory": "PS",
        "start": _offset(str(booking["start"])),
        "end": _offset(str(booking["end"])),
        "regulator": {
            "regulatorId": regulator,
            "regulatorName": regulator.upper(),
            "regulatorFirstname": "-",
            "regulatorEmail": f"{regulator}@sas.invalid",
        },
    }
    if practitioner:
        item["practitioner"] = practitioner
    if booking.get("structure"):
        item["organization"] = {"name": str(booking["structure"])}
    return {"appointment": item}


class SasPlayer:
    """Publishes an RS-SAS-RDV per new booking; each booking once."""

    def __init__(
        self,
        url: str,
        centre: str,
        bookings: Callable[[], Awaitable[list[dict[str, Any]]]],
        *,
        regulator: str,
        now: Callable[[], datetime] = lambda: datetime.now().astimezone(),
    ) -> None:
        self.url = url
        self.centre = centre
        self.bookings = bookings
        self.regulator = regulator
        self._now = now
        self.seen: set[str] = set()
        self.published: list[dict[str, Any]] = []  # the envelopes, in order
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    async def start(self) -> None:
        self._connection = await aio_pika.connect(self.url, timeout=10)
        channel = await self._connection.channel(publisher_confirms=True)
        self._exchange = await channel.get_exchange("hubsante")

    async def stop(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None

    async def run_once(self) -> list[str]:
        """Publish what was booked since the last call; the appointment ids."""
        out = []
        for booking in await self.bookings():
            slot = str(booking.get("slot") or "")
            if not slot or slot in self.seen:
                continue
            body = appointment_for(booking, self.regulator)
            now = self._now().replace(microsecond=0)
            envelope = hub.build_envelope(
                sender=PLATFORM_ID,
                recipient=self.centre,
                body=body,
                sent_at=now,
                expires_at=now + timedelta(days=1),
            )
            assert self._exchange is not None, "start() first"
            await self._exchange.publish(
                aio_pika.Message(
                    json.dumps(envelope, ensure_ascii=False).encode("utf-8"),
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=PLATFORM_ID,
            )
            self.seen.add(slot)  # once confirmed by the broker
            self.published.append(envelope)
            out.append(str(body["appointment"]["appointmentId"]))
            log.info("sas: appointment published for a booking")
        return out

    async def run(self) -> None:
        while True:
            try:
                await self.run_once()
            except OSError as exc:  # the simulator's HTTP side away: try again
                log.warning("sas: bookings unreadable (%s)", type(exc).__name__)
            await asyncio.sleep(POLL_S)


def http_bookings(simulator_url: str) -> Callable[[], Awaitable[list[dict[str, Any]]]]:
    import httpx

    async def read() -> list[dict[str, Any]]:
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                response = await client.get(simulator_url.rstrip("/") + "/_bookings")
                response.raise_for_status()
                data = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise OSError(str(exc)) from exc
        return [b for b in data if isinstance(b, dict)] if isinstance(data, list) else []

    return read
