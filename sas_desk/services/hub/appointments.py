"""Where a workstation finds the SAS appointments to attach (issue #16).

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
