"""The workstation runs its own Hub Santé agent only alone (issue #16): in
room mode the room server's agent is the centre's one consumer — two would
share the centre's queues, each message landing in one of them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sas_desk.app import embedded_hub
from sas_desk.services.config import Config
from sas_desk.services.hub.settings import HubSettings


def test_the_embedded_agent_runs_alone_not_in_room_mode(tmp_path: Path) -> None:
    alone = Config(data_dir=tmp_path, workstation="POSTE-1", operator="a", role="MRL")
    hub = HubSettings(url="amqp://127.0.0.1:5672/x", client_id="fr.health.samu690")
    assert not embedded_hub(alone)
    assert embedded_hub(replace(alone, hub=hub))
    room = replace(alone, hub=hub, room_url="https://salle.samu69.local:8443")
    assert not embedded_hub(room)
