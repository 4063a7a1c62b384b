"""Where a workstation finds the SAS appointments to attach, and shares a
dossier with a partner (issue #16).

One interface for the two modes, so that « Rendez-vous SAS à rattacher »
(Ctrl+Maj+A) and the suggestion on an open dossier work the same:

* :class:`LocalAppointments`: the embedded agent's store and processor
  (single workstation);
* :class:`RoomAppointments`: the room server's agent, through its API
  (``GET /v1/hub/appointments``, ``POST …/attach``); who attaches is the
  session's operator, decided by the server.

:meth:`attach` raises :class:`ValueError` with a French message when the
appointment or the dossier is unknown; a room server out of reach is
:class:`~sas_desk.services.queues.api.BackendUnavailable` (French too).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from sas_desk.models.appointment import Appointment, parse_appointment
from sas_desk.services.hub.processor import HubProcessor
from sas_desk.services.queues.api import BackendUnavailable
from sas_desk.services.queues.remote import RoomSession

log = logging.getLogger("sas_desk.hub.appointments")

NO_HUB_FR = "Hub Santé non configuré sur le serveur de la salle : aucun rendez-vous SAS reçu."


class AppointmentSource(Protocol):
    async def unattached(self) -> list[Appointment]: ...

    async def attach(self, appointment_id: str, case_id: str, by: str) -> None: ...


def _readable(rows: list[tuple[str, dict[str, Any]]]) -> list[Appointment]:
    out = []
    for appointment_id, body in rows:
        try:
            out.append(parse_appointment({"appointment": body}))
        except ValueError:  # stored once valid; a later rule change must not hide the list
            log.warning("appointment %s no longer readable", appointment_id)
    return out


class LocalAppointments:
    def __init__(self, processor: HubProcessor) -> None:
        self.processor = processor

    async def unattached(self) -> list[Appointment]:
        stored = await self.processor.store.run(lambda s: s.appointments(unattached=True))
        return _readable([(row.appointment_id, row.body) for row in stored])

    async def attach(self, appointment_id: str, case_id: str, by: str) -> None:
        await self.processor.attach(appointment_id, case_id, by)


class RoomAppointments:
    def __init__(self, session: RoomSession) -> None:
        self.session = session

    async def unattached(self) -> list[Appointment]:
        response = await self.session.request(
            "GET", "/v1/hub/appointments", params={"unattached": "true"}
        )
        if response.status_code == 404:  # the server runs no Hub agent
            return []
        if response.status_code != 200:
            raise BackendUnavailable(_refusal(response))
        rows = response.json().get("appointments", [])
        return _readable(
            [
                (str(r.get("appointmentId", "")), r["body"])
                for r in rows
                if isinstance(r, dict) and isinstance(r.get("body"), dict)
            ]
        )

    async def attach(self, appointment_id: str, case_id: str, by: str) -> None:
        # ``by`` is not sent: the server attaches as the session's operator
        response = await self.session.request(
            "POST", f"/v1/hub/appointments/{appointment_id}/attach", json={"case_id": case_id}
        )
        if response.status_code == 200:
            return
        if response.status_code in (403, 404, 422):
            raise ValueError(_refusal(response))
        raise BackendUnavailable(_refusal(response))


def _refusal(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message_fr"), str):
        text: str = body["message_fr"]
        return text
    if response.status_code == 404:
        return NO_HUB_FR
    return f"Serveur de salle : réponse inattendue ({response.status_code})."


# --------------------------------------------------------------------------- sharing


@dataclass(frozen=True)
class LedgerRow:
    """One message sent about a dossier, as its ledger line needs it."""

    recipient: str
    model: str
    state: str
    step: str = ""
    error: str = ""


class Sharing(Protocol):
    """« Partager avec… » and the dossier's ledger, embedded or room mode."""

    async def partners(self) -> tuple[str, ...]: ...

    async def share(self, case_id: str, recipient: str) -> str: ...

    async def ledger(self, case_id: str) -> list[LedgerRow]: ...


class LocalSharing:
    def __init__(self, processor: HubProcessor) -> None:
        self.processor = processor

    async def partners(self) -> tuple[str, ...]:
        return self.processor.settings.partners

    async def share(self, case_id: str, recipient: str) -> str:
        return await self.processor.share_case(case_id, recipient)

    async def ledger(self, case_id: str) -> list[LedgerRow]:
        rows = await self.processor.store.run(lambda s: s.ledger(case_id))
        return [LedgerRow(r.recipient, r.model, r.state, r.step, r.error) for r in rows]


class RoomSharing:
    """Through the room server's agent (``POST /v1/hub/share``,
    ``GET /v1/hub/ledger``): the server shares as the session's operator."""

    def __init__(self, session: RoomSession) -> None:
        self.session = session
        self._partners: tuple[str, ...] | None = None

    async def partners(self) -> tuple[str, ...]:
        if self._partners is None:
            response = await self.session.request("GET", "/v1/hub/partners")
            if response.status_code == 404:  # the server runs no Hub agent
                return ()
            if response.status_code != 200:
                raise BackendUnavailable(_refusal(response))
            self._partners = tuple(str(p) for p in response.json().get("partners", []))
        return self._partners

    async def share(self, case_id: str, recipient: str) -> str:
        response = await self.session.request(
            "POST", "/v1/hub/share", json={"case_id": case_id, "to": recipient}
        )
        if response.status_code == 200:
            return str(response.json()["distributionID"])
        if response.status_code in (403, 404, 422):
            raise ValueError(_refusal(response))
        raise BackendUnavailable(_refusal(response))

    async def ledger(self, case_id: str) -> list[LedgerRow]:
        response = await self.session.request("GET", "/v1/hub/ledger", params={"case_id": case_id})
        if response.status_code == 404:  # no Hub agent, or a dossier the room lost
            return []
        if response.status_code != 200:
            raise BackendUnavailable(_refusal(response))
        body: dict[str, Any] = response.json()
        return [
            LedgerRow(
                str(m.get("recipient", "")),
                str(m.get("model", "")),
                str(m.get("state", "")),
                str(m.get("step") or ""),
                str(m.get("error") or ""),
            )
            for m in body.get("messages", [])
            if isinstance(m, dict)
        ]
