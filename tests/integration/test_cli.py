"""The command line, run as a user would (subprocesses on a real data dir)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.reference import hub_sante_dir, schema_errors, schema_validator

ROOT = Path(__file__).resolve().parents[2]


def sas_desk(*args: str, data_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "sas_desk"]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run(
        [*cmd, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.reference
def test_import_then_export_the_official_rseda_example(tmp_path: Path) -> None:
    example = hub_sante_dir() / "examples" / "RS-EDA_partageDossier_DidierMorel.01a.json"
    imported = sas_desk("dossier", "import-rseda", str(example), data_dir=tmp_path)
    assert imported.returncode == 0, imported.stderr
    case_id = imported.stdout.strip().splitlines()[-1]
    assert case_id == "fr.health.samu770.DRFR157702400400055"
    exported = sas_desk("dossier", "export-rseda", case_id, data_dir=tmp_path)
    assert exported.returncode == 0, exported.stderr
    body = json.loads(exported.stdout)
    assert "createCaseHealth" in body
    assert schema_errors(schema_validator("RS-EDA.schema.json"), body["createCaseHealth"]) == []
    original = json.loads(example.read_text(encoding="utf-8"))["createCaseHealth"]
    case = body["createCaseHealth"]
    assert case["caseId"] == original["caseId"]
    assert case["qualification"]["healthMotive"] == original["qualification"]["healthMotive"]
    assert case["location"]["city"] == original["location"]["city"]
    assert (
        case["initialAlert"]["caller"]["callerContact"]
        == original["initialAlert"]["caller"]["callerContact"]
    )
    assert [n["freetext"] for n in case["medicalNote"]] == [
        n["freetext"] for n in original["medicalNote"]
    ]
    # the import is in the dossier's log
    from sas_desk.models.dossier import EventKind
    from sas_desk.services import clock
    from sas_desk.services.atrest import data_key
    from sas_desk.services.journal.store import JournalStore

    # sealed at rest: read with the workstation's key (a file beside the data dir here)
    cipher = data_key(tmp_path).cipher()
    store = JournalStore(tmp_path / "journal.sqlite", now=clock.now, cipher=cipher)
    assert [e.kind for e in store.events(case_id)] == [EventKind.IMPORTED]
    store.close()


def test_import_refuses_bad_files_with_french_messages(tmp_path: Path) -> None:
    missing = sas_desk("dossier", "import-rseda", str(tmp_path / "nope.json"), data_dir=tmp_path)
    assert missing.returncode == 1
    assert "fichier illisible" in missing.stderr
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{ pas du json", encoding="utf-8")
    bad_json = sas_desk("dossier", "import-rseda", str(garbage), data_dir=tmp_path)
    assert bad_json.returncode == 1
    assert f"{garbage}, ligne 1 : JSON invalide" in bad_json.stderr
    wrong = tmp_path / "wrong.json"
    wrong.write_text(
        json.dumps({"createCaseHealth": {"creation": "2024-01-04T08:01:00+01:00"}}),
        encoding="utf-8",
    )
    no_case = sas_desk("dossier", "import-rseda", str(wrong), data_dir=tmp_path)
    assert no_case.returncode == 1
    assert "caseId" in no_case.stderr
    assert "Traceback" not in no_case.stderr


def test_export_of_an_unknown_dossier(tmp_path: Path) -> None:
    result = sas_desk("dossier", "export-rseda", "fr.health.samu690.NOPE", data_dir=tmp_path)
    assert result.returncode == 1
    assert "introuvable" in result.stderr


def test_smoke_starts_and_exits_zero(tmp_path: Path) -> None:
    result = sas_desk("--smoke", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "SMOKE OK" in result.stdout
    assert (tmp_path / "journal.sqlite").exists()


def app_scenario(mode: str, data_dir: Path) -> dict[str, Any]:
    """Run the app with a scenario of ``tests.helpers.typing_app`` and return
    the JSON it printed on its ``MODE `` line."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    result = subprocess.run(
        [sys.executable, "-m", "tests.helpers.typing_app", mode, str(data_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    tag = mode.upper() + " "
    line = next(x for x in result.stdout.splitlines() if x.startswith(tag))
    found: dict[str, Any] = json.loads(line.removeprefix(tag))
    return found


def test_demo_starts_its_simulator_after_the_window_and_geocodes(tmp_path: Path) -> None:
    """The simulator is started once the window is up (start-up time): the
    demo must still get its address and answer the geocoder through it."""
    demo = app_scenario("demo", tmp_path)
    assert demo["mode"].startswith("Démonstration (simulateur local) — http://127.0.0.1:")
    assert demo["error"] == ""
    assert demo["places"], demo
    lyon = {"69123"} | {f"6938{n}" for n in range(1, 10)}  # the commune or an arrondissement
    assert demo["places"][0]["insee"] in lyon


def test_the_slot_search_is_built_when_first_opened_not_at_start(tmp_path: Path) -> None:
    slots = app_scenario("slots", tmp_path)
    assert slots["before"] is False  # nothing synced while the first call is typed
    assert slots["places"] > 1500  # opening the search synced the demo directory


def test_missing_config_file_is_refused_in_french(tmp_path: Path) -> None:
    result = sas_desk("--config", str(tmp_path / "absent.toml"), "--smoke", data_dir=tmp_path)
    assert result.returncode == 1
    assert "introuvable" in result.stderr


def test_damaged_journal_never_prevents_start(tmp_path: Path) -> None:
    (tmp_path / "journal.sqlite").write_bytes(b"\x00garbage" * 1000)
    result = sas_desk("--smoke", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    aside = list(tmp_path.glob("journal.sqlite.endommage-*"))
    assert len(aside) == 1
    assert aside[0].read_bytes() == b"\x00garbage" * 1000


def test_simulator_runs_alone(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sas_desk", "simulator", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in line
        import httpx

        answer = httpx.get(
            f"http://127.0.0.1:{port}/search/", params={"q": "villeurbanne", "limit": 1}, timeout=5
        )
        assert answer.status_code == 200
        feature = answer.json()["features"][0]
        assert feature["properties"]["citycode"] == "69266"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def test_slots_search_in_the_demo_prints_offers_then_vendors_then_a_summary(
    tmp_path: Path,
) -> None:
    result = sas_desk(
        "slots", "search", "--commune", "Villeurbanne", "--radius", "3", data_dir=tmp_path
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    offers = [x for x in lines if "slots" in x and "kind" in x]
    vendors = [x for x in lines if "state" in x]
    summary = lines[-1]["summary"]
    assert offers and all(o["distance_km"] <= 3.0 for o in offers)
    assert all(o["slots"][0]["booking_url"].startswith("http://127.0.0.1:") for o in offers)
    assert {v["state"] for v in vendors} == {"ok"} and len(vendors) == 4
    assert summary["candidates"] > 0 and summary["slots"] == sum(v["slots"] for v in vendors)
    assert (tmp_path / "directory.sqlite").exists()  # the demo synced its directory


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--commune", "Atlantide"), "commune inconnue du territoire"),
        (("--near", "abc"), "position illisible"),
        (("--commune", "Lyon", "--specialty", "XX"), "spécialité inconnue"),
    ],
)
def test_slots_search_refuses_bad_input_in_french(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = sas_desk("slots", "search", *args, data_dir=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr


ENGLISH = ("usage:", "show this help", "positional arguments", "error:", "required", "refused")


def test_help_and_errors_speak_french(tmp_path: Path) -> None:
    """Issue 14 §11: argparse's English help, -v undescribed."""
    shown = sas_desk("--help")
    assert shown.returncode == 0
    assert shown.stdout.startswith("utilisation : sas-desk")
    assert "affiche cette aide et quitte" in shown.stdout
    assert "journal détaillé" in shown.stdout  # -v, --verbose is described
    sub = sas_desk("fhir", "parse", "--help")
    wrong = sas_desk("dossier", "import-rseda")  # the file is missing
    for out in (shown.stdout, sub.stdout, wrong.stderr):
        assert not [w for w in ENGLISH if w in out], out
    assert wrong.returncode == 2
    assert "erreur : arguments obligatoires manquants : file" in wrong.stderr


def test_fhir_parse_refusal_is_one_french_line(tmp_path: Path) -> None:
    """Issue 14 §11: an English warning line came before the French one."""
    bad = tmp_path / "bundle.json"
    bad.write_text('{"resourceType": "Patient"}', encoding="utf-8")
    run = sas_desk("fhir", "parse", str(bad))
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sas-desk : "), run.stderr
    assert not [w for w in ENGLISH if w in run.stderr]
