"""What leaves the room: no name, phone, address, free text, birth date,
case id, operator or workstation in any export, and no count from 1 to 10
that could be read or rebuilt from the totals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sas_desk.models.queue import WaitLimits
from sas_desk.models.stats import SMALL_CELL, SUPPRESSED, Granularity, export_rows, parse_period
from sas_desk.services.stats.export import export_text, make_report
from tests.integration.stats.day import KNOWN_SECRETS

pytestmark = pytest.mark.asyncio(loop_scope="module")
ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("first", "last", "by"),
    [
        ("2026-03-14", "2026-03-14", Granularity.HOUR),
        ("2026-03-13", "2026-03-15", Granularity.DAY),
        ("2026-03-01", "2026-03-31", Granularity.MONTH),
    ],
)
@pytest.mark.parametrize("fmt", ["csv", "json"])
async def test_no_export_contains_a_known_name(played, first, last, by, fmt) -> None:  # type: ignore[no-untyped-def]
    period = parse_period(first, last, by)
    report = await make_report(played.source, period, by, WaitLimits())
    assert any(report.load), "the report itself knows who did what (screen only)"
    text = export_text(report, fmt)
    assert "dossiers" in text
    leaked = [s for s in KNOWN_SECRETS if s.lower() in text.lower()]
    assert leaked == []


async def test_small_cells_are_suppressed_and_cannot_be_rebuilt(played) -> None:  # type: ignore[no-untyped-def]
    period = parse_period("2026-03-14", "2026-03-14", Granularity.DAY)
    report = await make_report(played.source, period, Granularity.DAY, WaitLimits())
    (row,) = export_rows(report)
    (raw,) = report.rows
    assert row["dossiers"] == 11  # 11 is shown
    assert row["filiere_amu"] == SUPPRESSED and row["priorite_p2"] == SUPPRESSED
    assert row["non_decides"] == SUPPRESSED and row["decides"] == SUPPRESSED
    assert row["priorite_p1"] == SUPPRESSED
    # shares and delays on fewer than 11 dossiers are suppressed too
    assert row["delai_transmission_prise_p50_s"] == SUPPRESSED
    assert row["part_mg_liberal_pct"] == SUPPRESSED
    assert row["delai_reception_transmission_p50_s"] == 60  # 11 dossiers: shown
    for column, value in row.items():
        original = raw[column]
        if isinstance(original, int) and 0 < original < SMALL_CELL:
            assert value == SUPPRESSED, column
    for total, parts in report.groups:
        hidden = [p for p in parts if row[p] == SUPPRESSED]
        if hidden and row[total] != SUPPRESSED:
            assert sum(int(raw[p] or 0) for p in hidden) >= SMALL_CELL, (total, hidden)


def sas_desk(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run(
        [sys.executable, "-m", "sas_desk", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_the_command_line_on_the_sqlite_store(sqlite_played, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data_dir = sqlite_played.source.path.parent
    done = sas_desk(
        "--data-dir",
        str(data_dir),
        "stats",
        "--from",
        "2026-03-14",
        "--to",
        "2026-03-14",
        "--format",
        "json",
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["par"] == "day"
    (line,) = doc["lignes"]
    assert line["periode"] == "2026-03-14" and line["dossiers"] == 11
    assert not [s for s in KNOWN_SECRETS if s.lower() in done.stdout.lower()]
    out = tmp_path / "mars.csv"
    done = sas_desk(
        "--data-dir",
        str(data_dir),
        "stats",
        "--from",
        "2026-03-01",
        "--to",
        "2026-03-31",
        "--by",
        "month",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    header, first = out.read_text(encoding="utf-8").splitlines()
    assert header.startswith("periode;dossiers;filiere_amu")
    assert first.startswith("2026-03;13;")


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        ("2026-03-15", "2026-03-14", "la fin (14/03/2026) précède le début (15/03/2026)"),
        ("14/03/2026", "2026-03-14", "format attendu AAAA-MM-JJ"),
        ("2026-02-30", "2026-03-14", "inexistante"),
    ],
)
async def test_a_bad_period_exits_1_with_a_french_message(
    sqlite_played, first, last, message
) -> None:  # type: ignore[no-untyped-def]
    done = sas_desk(
        "--data-dir",
        str(sqlite_played.source.path.parent),
        "stats",
        "--from",
        first,
        "--to",
        last,
    )
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


async def test_the_rollup_command_then_the_same_csv(sqlite_played, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``stats-rollup`` rolls the (long closed) hand-built day up; the report
    then read from the rollup is the very CSV the events gave."""
    import sqlite3

    source = sqlite_played.source.path
    with sqlite3.connect(source) as src, sqlite3.connect(tmp_path / "queues.sqlite") as dst:
        src.backup(dst)  # the file and its write-ahead log
    period = ("stats", "--from", "2026-03-13", "--to", "2026-03-15", "--by", "hour")
    before = sas_desk("--data-dir", str(source.parent), *period)
    done = sas_desk("--data-dir", str(tmp_path), "stats-rollup")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Agrégats à jour : jours du 12/03/2026 au ")
    after = sas_desk("--data-dir", str(tmp_path), *period)
    assert after.returncode == 0 and before.returncode == 0
    assert after.stdout == before.stdout and "2026-03-14 10:00;<11;" in after.stdout
    again = sas_desk("--data-dir", str(tmp_path), "stats-rollup", "--rebuild")
    assert again.returncode == 0 and again.stdout == done.stdout


async def test_the_pdf_report_from_the_command_line(sqlite_played, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data_dir = str(sqlite_played.source.path.parent)
    period = ("stats", "--from", "2026-03-01", "--to", "2026-03-31", "--format", "pdf")
    refused = sas_desk("--data-dir", data_dir, *period)
    assert refused.returncode == 1 and "--out FICHIER.pdf" in refused.stderr
    out = tmp_path / "rapport.pdf"
    done = sas_desk("--data-dir", data_dir, *period, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Rapport écrit : {out} (")
    assert out.read_bytes().startswith(b"%PDF")


async def test_the_telephony_s_calls_from_the_command_line(sqlite_played, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.unit.test_telephony import DAY

    data_dir = str(sqlite_played.source.path.parent)
    period = ("stats", "--from", "2026-03-14", "--to", "2026-03-14", "--format", "json")
    calls = tmp_path / "appels.csv"
    calls.write_text(DAY.replace("2026-03-14T16:00:00+01:00;30;abandonne", "x;30;abandonne"))
    refused = sas_desk("--data-dir", data_dir, *period, "--telephonie", str(calls))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"{calls}, ligne 13, colonne presente_le" in refused.stderr
    calls.write_text(DAY, encoding="utf-8")
    done = sas_desk("--data-dir", data_dir, *period, "--telephonie", str(calls))
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)["lignes"]
    assert (row["tel_presentes"], row["tel_taux_decroche_pct"], row["tel_qs60_pct"]) == (
        12,
        83.3,
        66.7,
    )
    assert "0600000001" not in done.stdout


async def test_the_room_server_s_store_by_dsn(played, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """On the room server's machine: --dsn/--schema reach its PostgreSQL store
    (the rollup, then a report read from it); another DSN is refused."""
    here = ("--data-dir", str(tmp_path))
    if played.kind == "sqlite":
        done = sas_desk(*here, "stats-rollup", "--dsn", "sqlite:///tmp/x.sqlite")
        assert done.returncode == 1 and "postgresql://… attendu" in done.stderr
        return
    store = ("--dsn", played.source.dsn, "--schema", played.source.schema)
    done = sas_desk(*here, "stats-rollup", *store)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Agrégats à jour : jours du 12/03/2026")
    period = ("--from", "2026-03-14", "--to", "2026-03-14", "--format", "json")
    report = sas_desk(*here, "stats", *period, *store)
    assert report.returncode == 0, report.stderr
    (row,) = json.loads(report.stdout)["lignes"]
    assert row["dossiers"] == 11 and row["filiere_amu"] == "<11"
