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
dossier's timeline).  Then « Partager avec… » (Ctrl+Shift+P):
``16c-share-with`` (the partners of ``[hub] partners``),
``16d-shared-waiting-rc-ref`` (after Enter: « non reçu par le partenaire »
under the timeline), ``16f-shared-case-updates`` (a note and a decision on
the shared case: two « Mise à jour envoyée » lines, the first acknowledged)
and ``16e-rs-error-on-dossier`` (shared again, refused by
an RS-ERROR 701 from the partner: in French, in red; the previous one
acknowledged by its RC-REF).
"""

from __future__ import annotations

import json
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
from sas_desk.models.hub import ack_body, build_envelope, error_body
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


def answer(processor: Any, sender: str, body: dict[str, Any]) -> bytes:
    """A partner's message to this centre, enveloped as the Hub carries it."""
    now = clock.now()
    envelope = build_envelope(
        sender=sender,
        recipient=processor.client_id,
        body=body,
        sent_at=now,
        expires_at=now + timedelta(hours=1),
    )
    return json.dumps(envelope).encode()


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "shots").resolve()
    out.mkdir(parents=True, exist_ok=True)
    from PySide6.QtCore import Qt

    from sas_desk.services.atrest import data_key
    from sas_desk.services.hub.cases import JournalCases
    from sas_desk.services.hub.processor import HubProcessor
    from sas_desk.services.hub.settings import HubSettings
    from sas_desk.services.hub.store import AsyncHubStore
    from sas_desk.services.hub.updates import SharedCaseUpdates
    from sas_desk.services.queues.client import Outbox, QueueClient
    from sas_desk.services.queues.sqlite import SqliteBackend
    from sas_desk.ui.appointments import AppointmentsDialog
    from sas_desk.ui.dossier_view import DossierView
    from sas_desk.ui.keys import press
    from sas_desk.ui.share import ShareDialog
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
            # another workstation of this machine: the queue file's key is the app's
            cipher = data_key(config.data_dir).cipher()
            arm = QueueClient(
                SqliteBackend(config.queues_path, now=clock.now, poll_interval=0.05, cipher=cipher),
                Outbox(Path(tmp) / "outbox-arm.sqlite", cipher=cipher),
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
            settings = HubSettings(
                url="amqp://127.0.0.1:5672/",
                client_id="fr.health.samu690",
                partners=("fr.health.samu380", "fr.health.samu010", "fr.health.samu420"),
            )
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

            # « Partager avec… »: the second partner, then the first (refused)
            window.share_action.trigger()  # Ctrl+Shift+P
            await until(lambda: isinstance(window.share_dialog, ShareDialog), 10)
            share_dialog = window.share_dialog
            await until(share_dialog.isVisible, 5)
            press(share_dialog.partners, Qt.Key.Key_Down)
            await settle(300)
            save(share_dialog, out, "16c-share-with")
            press(share_dialog.partners, Qt.Key.Key_Return)
            await until(lambda: not share_dialog.isVisible(), 10)
            await until(lambda: view.hub_ledger is not None and view.hub_ledger.count() == 1, 10)
            await view.refresh()
            await settle(400)
            save(window, out, "16d-shared-waiting-rc-ref")
            first = (await store.run(lambda s: s.ledger(d.case_id)))[0].distribution_id
            await processor.handle(
                "fr.health.samu690.ack", answer(processor, "fr.health.samu010", ack_body(first))
            )
            window.share_action.trigger()
            await until(lambda: window.share_dialog is not share_dialog, 10)
            again = window.share_dialog
            await until(again.isVisible, 5)
            press(again.partners, Qt.Key.Key_Return)
            await until(lambda: not again.isVisible(), 10)
            await until(lambda: view.hub_ledger.count() == 2, 10)
            second = (await store.run(lambda s: s.ledger(d.case_id)))[1].distribution_id
            refusal = error_body(701, "dossier déjà reçu par téléphone", second)
            await processor.handle(
                "fr.health.samu690.info", answer(processor, "fr.health.samu380", refusal)
            )
            await until(lambda: "refusé" in view.hub_ledger.item(1).text(), 10)
            await until(  # the timeline follows the ledger (no refresh asked)
                lambda: "Erreur 701" in view.timeline.item(view.timeline.count() - 1).text(), 10
            )
            await settle(400)
            save(window, out, "16e-rs-error-on-dossier")

            # the regulator works the shared case: a note, then a decision, each
            # leaves for the partner that has it (samu010) as an RS-EDA-MAJ
            updates = SharedCaseUpdates(processor, mrl.dossier)
            mrl.on_applied(updates.operation_applied)
            view.note.setFocus()
            view.note.setText("Rappel du patient : douleur abdominale stable, pas de fièvre.")
            press(view.note, Qt.Key.Key_Return)
            await until(lambda: view.hub_ledger.count() == 3, 10)
            await mrl.submit(
                mrl.operation(
                    "decide", d.case_id, decisions=[{"decision_type": "CONSEIL"}], care_level="R3"
                )
            )
            await updates.idle()
            await until(lambda: view.hub_ledger.count() == 4, 10)
            rows = await store.run(lambda s: s.ledger(d.case_id))
            await processor.handle(
                "fr.health.samu690.ack",
                answer(processor, "fr.health.samu010", ack_body(rows[2].distribution_id)),
            )
            await until(lambda: "reçu" in view.hub_ledger.item(2).text(), 10)
            await view.refresh()
            await settle(400)
            save(window, out, "16f-shared-case-updates")
            await arm.stop()
            await store.close()
            window.close()

        run(config, RunOptions(on_ready=scenario))


if __name__ == "__main__":
    main()
