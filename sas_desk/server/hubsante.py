"""The room server's Hub Santé agent and its API (issue #16, room mode).

When the server's configuration file has a ``[hub]`` table, the agent runs
inside the server: one consumer for the centre, its store next to the
room's (``[server] hub_store``, by default ``hub.sqlite`` beside a SQLite
room file).  What it brings goes to the room's log through
:class:`~sas_desk.services.hub.cases.RoomCases` (operation ``hub``), so every
workstation's timeline shows it; what the room's regulators do to a shared
case leaves as RS-EDA-MAJ (:class:`~sas_desk.services.hub.updates.SharedCaseUpdates`,
fed by ``POST /v1/ops``).

The API for the workstations:

* ``GET /v1/hub/appointments[?unattached=true]``: the SAS appointments
  received (the JSON records of ``sas-desk hub appointments``);
* ``POST /v1/hub/appointments/{appointmentId}/attach`` ``{"case_id": …}``:
  attach one to a dossier, as the session's operator (never a name sent in
  the body); the appointment then shows on the dossier's timeline everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sas_desk.models.appointment import parse_appointment, to_record
from sas_desk.models.queue import Operation
from sas_desk.server.settings import ServerSettings, SettingsError
from sas_desk.services.config import ConfigError, parse_toml, read_config_text
from sas_desk.services.hub.agent import HubAgent
from sas_desk.services.hub.cases import RoomCases
from sas_desk.services.hub.processor import HubProcessor
from sas_desk.services.hub.settings import HubSettings, parse_hub
from sas_desk.services.hub.store import AsyncHubStore, HubStoreError
from sas_desk.services.hub.updates import SharedCaseUpdates
from sas_desk.services.queues.api import QueueBackend

log = logging.getLogger("sas_desk.server.hub")

__all__ = ["HubSante", "hub_from_file", "open_hub", "store_path"]


def hub_from_file(path: Path | None) -> HubSettings | None:
    """The ``[hub]`` table of the server's configuration file, if any;
    :class:`SettingsError` (French, naming the file) when it is bad."""
    if path is None:
        return None
    try:
        raw = parse_toml(read_config_text(path), path)
    except ConfigError as exc:
        raise SettingsError(exc.message_fr) from None
    table = raw.get("hub")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise SettingsError(f"Configuration ({path}) : [hub] doit être une table.")
    try:
        return parse_hub(table)
    except ValueError as exc:
        raise SettingsError(f"Configuration ({path}) : {exc}") from None


def store_path(settings: ServerSettings) -> Path:
    """Where the server's Hub store lives: ``hub_store``, else beside the
    SQLite room file; a PostgreSQL room names it."""
    if settings.hub_store:
        return Path(settings.hub_store).expanduser()
    room_file = settings.sqlite_path
    if room_file is None:
        raise SettingsError(
            "Serveur : [hub] configuré avec une base PostgreSQL : indiquez [server] hub_store "
            "(chemin du fichier SQLite de l'agent Hub Santé)."
        )
    return room_file.parent / "hub.sqlite"


@dataclass
class HubSante:
    """The agent, its store and processor, the updates to partners."""

    settings: HubSettings
    path: Path
    backend: QueueBackend
    now: Any  # Callable[[], datetime]: the server's clock
    store: AsyncHubStore = field(init=False)
    processor: HubProcessor = field(init=False)
    agent: HubAgent = field(init=False)
    updates: SharedCaseUpdates = field(init=False)
    task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Raises :class:`HubStoreError` (French) when the store cannot open."""
        self.store = AsyncHubStore(self.path)
        await self.store.open()
        self.processor = HubProcessor(
            self.settings, self.store, RoomCases(self.backend, self.now), self.now
        )
        self.agent = HubAgent(self.settings, self.processor)
        self.updates = SharedCaseUpdates(self.processor, self.backend.dossier, self.agent.wake)

    def start(self) -> None:
        self.task = asyncio.create_task(self.agent.run(), name="hub-sante-agent")

    def applied(self, op: Operation) -> None:
        """A workstation's operation the room applied: updates to partners."""
        self.updates.operation_applied(op)

    async def appointments(self, unattached: bool) -> list[dict[str, Any]]:
        rows = await self.store.run(lambda s: s.appointments(unattached=unattached))
        out = []
        for row in rows:
            try:
                record = to_record(parse_appointment({"appointment": row.body}), row.case_id)
            except ValueError:
                log.warning("appointment %s no longer readable", row.appointment_id)
                continue
            # the message itself too: a workstation matches it to its dossiers
            # (models.appointment.best_matches) as the embedded mode does
            out.append({**record, "body": row.body})
        return out

    async def attached(self, appointment_id: str) -> dict[str, Any] | None:
        row = await self.store.run(lambda s: s.appointment(appointment_id))
        if row is None:
            return None
        return to_record(parse_appointment({"appointment": row.body}), row.case_id)

    async def close(self) -> None:
        await self.agent.stop()
        if self.task is not None:  # run() returns once stopped
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self.task, 10)
        await self.updates.idle()
        await self.store.close()


async def open_hub(
    settings: ServerSettings, hub: HubSettings, backend: QueueBackend, now: Any
) -> HubSante:
    """Raises :class:`SettingsError` (French) when its store cannot open."""
    sante = HubSante(hub, store_path(settings), backend, now)
    try:
        await sante.open()
    except HubStoreError as exc:
        raise SettingsError(f"Serveur : {exc.message_fr}") from None
    return sante
