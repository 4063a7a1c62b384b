"""``sas-desk simulator hub`` and ``sas-desk hub …`` run as a user would:
subprocesses on a real data dir and the machine's RabbitMQ (own vhost)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from sas_desk.models import hub
from tests.helpers.rabbit import own_vhost
from tests.reference import hub_sante_dir, load_example, schema_errors, schema_validator

pytestmark = pytest.mark.reference

ROOT = Path(__file__).resolve().parents[2]
ME, PARTNER, SAS = "fr.health.samu690", "fr.health.samu380", "fr.health.ptfsas"
EDA = "RS-EDA_partageDossier_DidierMorel.01a.json"
RDV = "RS-SAS-RDV_appointment_PS.01.json"


def run(
    *args: str, config: Path | None = None, data: Path | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "sas_desk"]
    if config is not None:
        cmd += ["--config", str(config)]
    if data is not None:
        cmd += ["--data-dir", str(data)]
    return subprocess.run(
        [*cmd, *args],
        cwd=ROOT,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


@pytest.fixture
def hub_url() -> Iterator[str]:
    """A vhost with the hub simulator running as ``sas-desk simulator hub``."""
    with own_vhost() as url:
        base, vhost = url.rsplit("/", 1)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sas_desk",
                "simulator",
                "hub",
                "--url",
                base + "/",
                "--vhost",
                vhost,
                "--client",
                ME,
                "--client",
                PARTNER,
                "--client",
                SAS,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            ready = json.loads(proc.stdout.readline() or "{}")
            assert ready.get("hub") == "ready", proc.stderr.read() if proc.stderr else ""
            assert ready["clients"] == [ME, PARTNER, SAS]
            yield url
        finally:
            proc.terminate()
            proc.communicate(timeout=10)  # also closes the pipes


def config_file(tmp_path: Path, url: str, client_id: str = ME) -> Path:
    path = tmp_path / f"{client_id}.toml"
    path.write_text(
        f'[hub]\nurl = "{url}"\nclient_id = "{client_id}"\npartners = ["{PARTNER}"]\n',
        encoding="utf-8",
    )
    return path


async def _publish(url: str, sender: str, bodies: list[dict[str, Any]]) -> list[str]:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange("hubsante")
        ids = []
        for body in bodies:
            now = datetime.now().astimezone()
            env = hub.build_envelope(
                sender=sender,
                recipient=ME,
                body=body,
                sent_at=now,
                expires_at=now + timedelta(hours=1),
            )
            ids.append(env["distributionID"])
            await exchange.publish(
                aio_pika.Message(
                    json.dumps(env).encode(),
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=sender,
            )
        return ids
    finally:
        await connection.close()


async def _take(url: str, queue_name: str, count: int) -> list[dict[str, Any]]:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(queue_name)
        out: list[dict[str, Any]] = []
        for _ in range(500):
            message = await queue.get(fail=False, no_ack=True)
            if message is None:
                if len(out) >= count:
                    break
                await asyncio.sleep(0.02)
                continue
            out.append(json.loads(message.body))
        return out
    finally:
        await connection.close()


def test_receive_appointments_attach_send_status(hub_url: str, tmp_path: Path) -> None:
    config, data = config_file(tmp_path, hub_url), tmp_path / "data"
    (rdv_id,) = asyncio.run(_publish(hub_url, SAS, [load_example(RDV)]))
    (eda_id,) = asyncio.run(_publish(hub_url, PARTNER, [load_example(EDA)]))
    received = lines(run("hub", "receive", "--once", "--timeout", "60", config=config, data=data))
    by_id = {r["distributionID"]: r for r in received}
    appointment_id = load_example(RDV)["appointment"]["appointmentId"]
    case_id = load_example(EDA)["createCaseHealth"]["caseId"]
    assert by_id[rdv_id] == {
        "distributionID": rdv_id,
        "kind": "Report",
        "model": "RS-SAS-RDV",
        "outcome": "appointment_created",
        "caseId": None,
        "appointmentId": appointment_id,
        "detail": "booked 2025-06-17T14:00:00+02:00",
    }
    assert by_id[eda_id]["outcome"] == "integrated" and by_id[eda_id]["caseId"] == case_id
    # the RC-REFs left before --once returned
    acks = asyncio.run(_take(hub_url, f"{SAS}.ack", 1))
    assert [
        a["content"][0]["jsonContent"]["embeddedJsonContent"]["message"]["reference"][
            "distributionID"
        ]
        for a in acks
    ] == [rdv_id]
    assert schema_errors(schema_validator("EDXL-DE-full.schema.json"), acks[0]) == []

    unattached = lines(run("hub", "appointments", "--unattached", config=config, data=data))
    assert [(a["appointmentId"], a["caseId"], a["status"]) for a in unattached] == [
        (appointment_id, None, "booked")
    ]
    assert unattached[0]["practitioner"] == "Didier MOREL"
    assert lines(run("hub", "attach", appointment_id, case_id, config=config, data=data)) == [
        {"appointmentId": appointment_id, "caseId": case_id}
    ]
    assert lines(run("hub", "appointments", "--unattached", config=config, data=data)) == []
    assert lines(run("hub", "appointments", config=config, data=data))[0]["caseId"] == case_id

    sent = lines(run("hub", "send", case_id, "--to", PARTNER, config=config, data=data))
    assert sent[0]["state"] == "confirmed" and sent[0]["recipient"] == PARTNER
    shared = asyncio.run(_take(hub_url, f"{PARTNER}.message", 1))
    assert shared[0]["distributionID"] == sent[0]["distributionID"]
    assert schema_errors(schema_validator("EDXL-DE-full.schema.json"), shared[0]) == []

    status = lines(run("hub", "status", config=config, data=data))[0]
    assert status["connected"] is True and status["client_id"] == ME
    assert status["appointments"] == {"attached": 1}
    assert status["outbound"]["confirmed"] == 3  # two RC-REF and the shared case
    ledger = lines(run("hub", "ledger", "--case", case_id, config=config, data=data))
    assert [(r["model"], r["state"]) for r in ledger] == [
        ("RC-REF", "confirmed"),
        ("RS-EDA", "confirmed"),
    ]


def test_hub_commands_refuse_in_french(hub_url: str, tmp_path: Path) -> None:
    config, data = config_file(tmp_path, hub_url), tmp_path / "data"
    unknown = run(
        "hub", "send", "fr.health.samu690.NOPE", "--to", PARTNER, config=config, data=data
    )
    assert unknown.returncode == 1 and "dossier introuvable" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    bad_to = run("hub", "send", "x", "--to", "pas un id", config=config, data=data)
    assert bad_to.returncode == 1 and "destinataire" in bad_to.stderr
    none = run("hub", "status", data=data)
    assert none.returncode == 1 and "[hub]" in none.stderr
    attach = run("hub", "attach", "nope", "fr.health.samu690.X", config=config, data=data)
    assert attach.returncode == 1 and "rendez-vous introuvable" in attach.stderr
    down = config_file(tmp_path, "amqp://guest:guest@127.0.0.1:1/none", "fr.health.samu111")
    offline = run("hub", "status", config=down, data=data)
    assert offline.returncode == 1 and "injoignable" in offline.stderr
    assert json.loads(offline.stdout)["connected"] is False


def test_dossier_import_accepts_updates_and_appointments_enveloped_or_bare(tmp_path: Path) -> None:
    data = tmp_path / "data"
    examples = hub_sante_dir() / "examples"
    rdv = run("dossier", "import-rseda", str(examples / RDV), data=data)
    assert rdv.returncode == 0, rdv.stderr
    assert rdv.stdout.strip() == load_example(RDV)["appointment"]["appointmentId"]
    assert "Rendez-vous SAS enregistré" in rdv.stderr
    case_id = load_example(EDA)["createCaseHealth"]["caseId"]
    maj = {
        "createCaseHealthUpdate": {
            "caseId": case_id,
            "qualification": {"details": {"priority": "P1"}},
        }
    }
    now = datetime.now().astimezone()
    enveloped = hub.build_envelope(
        sender=PARTNER, recipient=ME, body=maj, sent_at=now, expires_at=now + timedelta(hours=1)
    )
    maj_file = tmp_path / "maj.json"
    maj_file.write_text(json.dumps(enveloped), encoding="utf-8")
    early = run("dossier", "import-rseda", str(maj_file), data=data)
    assert early.returncode == 1 and "702" in early.stderr and "inconnu" in early.stderr
    assert run("dossier", "import-rseda", str(examples / EDA), data=data).returncode == 0
    maj_file2 = tmp_path / "maj2.json"
    enveloped["distributionID"] = enveloped["distributionID"] + "b"
    enveloped["content"][0]["jsonContent"]["embeddedJsonContent"]["message"]["messageId"] += "b"
    maj_file2.write_text(json.dumps(enveloped), encoding="utf-8")
    applied = run("dossier", "import-rseda", str(maj_file2), data=data)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.strip() == case_id and "Priorité : P0 → P1" in applied.stderr
    exported = run("dossier", "export-rseda", case_id, data=data)
    assert (
        json.loads(exported.stdout)["createCaseHealth"]["qualification"]["details"]["priority"]
        == "P1"
    )
    again = run("dossier", "import-rseda", str(maj_file2), data=data)
    assert again.returncode == 0 and "déjà importé" in again.stderr
    listed = lines(run("hub", "appointments", data=data))
    assert [a["appointmentId"] for a in listed] == [
        load_example(RDV)["appointment"]["appointmentId"]
    ]
