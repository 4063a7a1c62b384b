"""Pictures of one dossier log shared by the room: a booking recorded on
one workstation, seen on another workstation's dossier timeline
(production mode: a room server on a SQLite store, three workstations in
turn, each on a data dir of its own, each logged in through the dialog).

    xvfb-run -a -s "-screen 0 1366x768x24" python scripts/shot_room_booking.py [OUT_DIR]

POSTE-ARM-03 puts a dossier in the SNP queue; POSTE-MRL-07 takes it and asks
for an appointment (it moves to the OSNP queue); POSTE-OSNP-02 takes it and
records the appointment it booked (the desk's ``orient_booking`` path: the
ORIENTED event goes to the room as an ``orient`` operation, then the item is
closed, as the slot search does once the operator answers "booked"; the
vendor search itself needs the demo simulator, absent in production mode):
``23-room-booking-osnp``.  POSTE-MRL-07, another machine, opens the dossier
again (the regulator reads the dossiers he acted on): its timeline shows the appointment, by whom and
from which workstation: ``24-room-booking-seen-by-regulator``.
"""

from __future__ import annotations

import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from screenshots import login_as, save, settle, until

from sas_desk.app import RunOptions, run
from sas_desk.models.dossier import Actor, Branch
from sas_desk.models.queue import QueueName
from sas_desk.services.config import Config

ARM = Actor("ARM", "arm.durand", "POSTE-ARM-03")
OSNP = Actor("OSNP", "osnp.leroy", "POSTE-OSNP-02")
MRL = Actor("MRL", "dr.martin", "POSTE-MRL-07")


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "shots").resolve()
    out.mkdir(parents=True, exist_ok=True)
    from tests.integration.queues.room import RoomServer
    from tests.integration.queues.support import make_dossier

    dossier = make_dossier(
        41,
        branch=Branch.SNP,
        priority="P2",
        motive=("M03.14", "Fièvre, problème infectieux"),
        at=datetime.now(UTC),
    )
    case_id = dossier.case_id

    async def arm(window) -> None:  # type: ignore[no-untyped-def]
        client = window.queue_client
        await client.enqueue(dossier, QueueName.SNP)
        await until(lambda: client.state.online and client.state.pending == 0, 15)
        window.close()

    async def ask_booking(window) -> None:  # type: ignore[no-untyped-def]
        panel = window.queue_panel
        await until(lambda: any(i.case_id == case_id for i in panel.model.items()), 15)
        panel.select(case_id)
        panel.act("claim")
        await until(lambda: window._dossier_view(case_id) is not None, 15)
        panel.select(case_id)
        panel.act("request_booking")
        await until(lambda: all(i.case_id != case_id for i in panel.model.items()), 15)
        window.close()

    async def osnp(window) -> None:  # type: ignore[no-untyped-def]
        from sas_desk.models.dossier import Event, EventKind

        panel = window.queue_panel
        await until(lambda: any(i.case_id == case_id for i in panel.model.items()), 15)
        panel.select(case_id)
        panel.act("claim")
        await until(lambda: window._dossier_view(case_id) is not None, 15)
        view = window._dossier_view(case_id)
        desk = window.desk
        tomorrow = desk._now().astimezone() + timedelta(days=1)
        start = tomorrow.replace(hour=9, minute=30, second=0, microsecond=0)
        text = f"RDV {start:%d/%m %H:%M} — Dr Claire Moreau"
        event = Event(
            case_id,
            desk._now(),
            EventKind.ORIENTED,
            desk.actor,
            {
                "slot_id": "shot-slot-1",
                "start": start.isoformat(),
                "end": (start + timedelta(minutes=15)).isoformat(),
                "practitioner": "Dr Claire Moreau",
                "place": "Maison de santé, 12 avenue Roger Salengro, Villeurbanne",
                "vendor": "Agenda-A",
                "modes": ["PHYSICAL"],
                "operator": desk.actor.operator,
                "text": text,
            },
        )
        sent = desk.record_orientation(view.dossier, event)
        await window.queue_client.after_orientation(
            case_id, "close", f"Orientation : {text} (via Agenda-A)", sent
        )
        await view.refresh()
        await until(lambda: window.queue_client.state.pending == 0, 15)
        await settle(400)
        save(window, out, "23-room-booking-osnp")
        window.close()

    async def regulator(window) -> None:  # type: ignore[no-untyped-def]
        window.open_dossier_view(case_id)
        await until(lambda: window._dossier_view(case_id) is not None, 15)
        await settle(500)
        save(window, out, "24-room-booking-seen-by-regulator")
        window.close()

    with tempfile.TemporaryDirectory(prefix="sas-desk-booking-") as tmp:
        room = RoomServer("sqlite", f"sqlite:///{tmp}/room.sqlite", "unused", Path(tmp))
        room.start()
        try:
            room.add_accounts([ARM, OSNP, MRL])
            turns = [(ARM, arm), (MRL, ask_booking), (OSNP, osnp), (MRL, regulator)]
            for actor, scenario in turns:
                data = Path(tmp) / actor.workstation  # one machine each
                data.mkdir(exist_ok=True)
                config = Config(
                    data_dir=data, workstation=actor.workstation, room_url=room.url, demo=False
                )
                login = login_as(actor.operator, actor.role)
                run(config, RunOptions(on_login=login, on_ready=scenario))
        finally:
            room.stop()


if __name__ == "__main__":
    main()
