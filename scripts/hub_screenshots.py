"""Pictures of the SAS appointments to attach (Hub Santé, issue #16), on the
embedded single workstation of a general-medicine regulator (MRL).

    xvfb-run -a -s "-screen 0 1366x768x24" python scripts/hub_screenshots.py [OUT_DIR]

A dossier is transmitted to the SNP queue (a second, ARM client on the same
embedded store), the regulator takes it and decides; three RS-SAS-RDV
appointments wait unattached in the Hub store (this regulator's, booked
minutes after the decision; another regulator's; one of two hours before).
Saves ``16a-dossier-suggests-an-appointment`` (the dossier just opened says
an appointment matches it), ``16-appointments-to-attach`` (Ctrl+Shift+A on the open dossier: the
suggested appointment first, highlighted, with why) and
``16b-appointment-on-timeline`` (after Enter: the appointment on the
dossier's timeline).
"""

from __future__ import annotations

import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from screenshots import save, settle, until

from sas_desk.app import RunOptions, run
from sas_desk.models.dossier import Actor, Branch
from sas_desk.services import clock
from sas_desk.services.config import Config


def rdv(
    appointment_id: str, created: Any, regulator: str, first: str, last: str, org: str
) -> dict[str, Any]:
    created = created.replace(microsecond=0)
    return {
        "appointmentId": appointment_id,
        "method": "CreateAppointment",
        "created": created.isoformat(),
        "status": "booked",
        "orientationCategory": "MSP",
        "start": (created + timedelta(hours=3)).replace(minute=20, second=0).isoformat(),
        "end": (created + timedelta(hours=3)).replace(minute=40, second=0).isoformat(),
        "practitioner": {"rppsId": "810005681340", "lastName": last, "firstName": first},
        "organization": {"organizationId": "MSP-1", "name": org},
        "regulator": {
            "regulatorId": regulator,
            "regulatorName": regulator.split(".")[-1].upper(),
            "regulatorFirstname": "Anne",
            "regulatorEmail": f"{regulator}@chu-lyon.example",
        },
    }


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "shots").resolve()
    out.mkdir(parents=True, exist_ok=True)
    from PySide6.QtCore import Qt

    from sas_desk.services.hub.cases import JournalCases
    from sas_desk.services.hub.processor import HubProcessor
    from sas_desk.services.hub.settings import HubSettings
    from sas_desk.services.hub.store import AsyncHubStore
    from sas_desk.services.queues.client import Outbox, QueueClient
    from sas_desk.services.queues.sqlite import SqliteBackend
    from sas_desk.ui.appointments import AppointmentsDialog
    from sas_desk.ui.dossier_view import DossierView
    from sas_desk.ui.keys import press
    from tests.integration.queues.support import make_dossier

    with tempfile.TemporaryDirectory(prefix="sas-desk-hub-") as tmp:
        config = Config(
            data_dir=Path(tmp),
            workstation="POSTE-MRL-02",
            operator="a.martin",
            role="MRL",
            demo=False,
        )

        async def scenario(window) -> None:  # type: ignore[no-untyped-def]
            d = make_dossier(12, branch=Branch.SNP, priority="P2", at=clock.now())
            window.journal.submit(d)
            await window.journal.flush(timeout=10)
            arm = QueueClient(
                SqliteBackend(config.queues_path, now=clock.now, poll_interval=0.05),
                Outbox(Path(tmp) / "outbox-arm.sqlite"),
                Actor("ARM", "arm.durand", "POSTE-ARM-03"),
                now=clock.now,
            )
            await arm.start()
            await arm.enqueue(d)
            mrl = window.queue_client
            await mrl.submit(mrl.operation("claim", d.case_id))
            await mrl.submit(mrl.operation("decide", d.case_id, care_level="R3", decisions=[]))
            store = AsyncHubStore(Path(tmp) / "hub.sqlite")
            await store.open()
            settings = HubSettings(url="amqp://127.0.0.1:5672/", client_id="fr.health.samu690")
            cases = JournalCases(window.journal, clock.now, config.workstation)
            processor = HubProcessor(settings, store, cases, clock.now)
            window.hub_processor = processor
            window.set_hub_status("Hub Santé : connecté", True)
            now = clock.now()
            for body in (
                rdv(
                    "rdv-1",
                    now + timedelta(minutes=3),
                    "a.martin",
                    "Didier",
                    "MOREL",
                    "MSP des Pentes",
                ),
                rdv("rdv-2", now, "p.ricart", "Claire", "FAURE", "Centre de santé Gerland"),
                rdv(
                    "rdv-3",
                    now - timedelta(hours=2),
                    "a.martin",
                    "Luc",
                    "BERNARD",
                    "MSP Croix-Rousse",
                ),
            ):
                await store.run(
                    lambda s, b=body: s.put_appointment(
                        appointment_id=b["appointmentId"],
                        status=b["status"],
                        start=b["start"],
                        created=b["created"],
                        body=b,
                        distribution_id="fr.health.ptfsas_" + b["appointmentId"],
                        change="created",
                        at=b["created"],
                    )
                )
            window.open_dossier_view(d.case_id)
            await until(lambda: isinstance(window.tabs.currentWidget(), DossierView), 10)
            view = window.tabs.currentWidget()
            await until(lambda: "Ctrl+Maj+A" in view.message.text(), 10)
            await settle(300)
            save(window, out, "16a-dossier-suggests-an-appointment")
            window.appointments_action.trigger()  # Ctrl+Shift+A (no window manager here)
            await until(
                lambda: isinstance(
                    getattr(window, "appointments_dialog", None), AppointmentsDialog
                ),
                10,
            )
            dialog = window.appointments_dialog
            await until(dialog.isVisible, 5)
            await settle(400)
            save(dialog, out, "16-appointments-to-attach")
            press(dialog.table, Qt.Key.Key_Return)
            await until(lambda: not dialog.isVisible(), 10)
            await until(
                lambda: any(
                    "Rendez-vous SAS" in view.timeline.item(i).text()
                    for i in range(view.timeline.count())
                ),
                10,
            )
            await settle(400)
            save(window, out, "16b-appointment-on-timeline")
            await arm.stop()
            await store.close()
            window.close()

        run(config, RunOptions(on_ready=scenario))


if __name__ == "__main__":
    main()
