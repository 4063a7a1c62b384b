"""``sas-desk roster import|who|status`` run as a user would (subprocesses on a
real data dir), and the ``[rosters]`` configuration section."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sas_desk.services.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fixtures" / "rosters"
HEADER = "date;debut;fin;secteur;communes;nom;prenom;rpps;adresse;code_postal;ville;telephone;commentaire"


def sas_desk(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "sas_desk", "--data-dir", str(data_dir), *args]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_import_then_who(tmp_path: Path) -> None:
    roster = tmp_path / "gardes.csv"
    roster.write_text(
        HEADER + "\n"
        "03/01/2027;09:00;12:00;69-C;69123|69266;Lefèvre;Éloïse;;3 rue Pasteur;69007;Lyon;"
        "04 65 71 12 34;\n"
        "03/01/2027;09:00;12:00;69-C;69123|69266;Lefèvre;Éloïse;;3 rue Pasteur;69007;Lyon;"
        "04 65 71 12 34;\n"
        "10/01/2027;09:00;12:00;69-C;69123;Roux;;;;;;04 65 71 12 35;\n",
        encoding="utf-8",
    )
    done = sas_desk("roster", "import", str(roster), data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Tableau importé (version 1, CSV, utf-8) : 2 gardes, 1 secteurs")
    assert "Doublons ignorés : 1" in lines
    assert "Dimanches et jours fériés sans dentiste de garde : 0" in lines
    assert (tmp_path / "rosters.sqlite").exists()

    who = sas_desk(
        "roster", "who", "--commune", "Villeurbanne", "--at", "2027-01-03 11:00", data_dir=tmp_path
    )
    assert who.returncode == 0, who.stderr
    records = [json.loads(line) for line in who.stdout.splitlines()]
    assert [(r["dentist"], r["phone"], r["phone_display"]) for r in records] == [
        ("Éloïse Lefèvre", "+33465711234", "04 65 71 12 34")
    ]
    assert records[0]["start"] == "2027-01-03T09:00:00+01:00"
    assert records[0]["address"] == "3 rue Pasteur, 69007 Lyon"

    none = sas_desk(
        "roster", "who", "--commune", "69266", "--at", "2027-01-10 10:00", data_dir=tmp_path
    )
    assert none.returncode == 1 and none.stdout == ""
    assert none.stderr.strip() == (
        "sas-desk : aucun dentiste de garde pour la commune 69266 le 10/01/2027 10:00."
    )
    sector = sas_desk(
        "roster", "who", "--sector", "69-C", "--at", "2027-01-10 10:00", data_dir=tmp_path
    )
    assert sector.returncode == 0 and json.loads(sector.stdout)["family"] == "Roux"


def test_import_lists_every_error_and_keeps_the_previous_roster(tmp_path: Path) -> None:
    good = tmp_path / "ok.csv"
    good.write_text(HEADER + "\n24/01/2027;09:00;12:00;69-C;69123;Ancien;;;;;;04 65 71 00 01;\n")
    assert sas_desk("roster", "import", str(good), data_dir=tmp_path).returncode == 0
    bad = sas_desk("roster", "import", str(CORPUS / "many_errors.csv"), data_dir=tmp_path)
    assert bad.returncode == 1 and bad.stdout == ""
    err = bad.stderr.splitlines()
    assert err[0] == (
        "many_errors.csv : 4 erreurs, tableau non importé (le tableau précédent reste en vigueur)."
    )
    assert err[1:] == [
        "  - ligne 2, colonne date : date impossible « 32/01/2027 »",
        "  - ligne 4, colonne telephone : numéro invalide « 12 » (« 12 » est un numéro court : "
        "il ne permet pas de rappeler l'appelant)",
        "  - ligne 5, colonne fin : fin (08:00) avant ou égale au début (09:00) : pour une garde "
        "qui passe minuit, écrivez « 08:00+1 »",
        "  - ligne 5, colonne communes : « 99999 » est un code de pays étranger, pas une commune",
    ]
    who = sas_desk(
        "roster", "who", "--commune", "Lyon", "--at", "2027-01-24 09:30", data_dir=tmp_path
    )
    assert who.returncode == 0 and json.loads(who.stdout)["family"] == "Ancien"


def test_who_rejects_a_bad_time_and_an_unknown_commune(tmp_path: Path) -> None:
    bad_at = sas_desk("roster", "who", "--commune", "Lyon", "--at", "demain", data_dir=tmp_path)
    assert bad_at.returncode == 2
    assert "date et heure illisibles « demain »" in bad_at.stderr
    unknown = sas_desk("roster", "who", "--commune", "Gotham", data_dir=tmp_path)
    assert unknown.returncode == 1
    assert unknown.stderr.strip().endswith("commune inconnue : « Gotham ».")


def test_rosters_config_section(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[rosters]\nurls = ["https://cdo69.example/gardes.ics"]\ntimeout = 5\n')
    config = load_config(path, tmp_path)
    assert config.roster_urls == ("https://cdo69.example/gardes.ics",)
    assert config.roster_timeout == 5.0
    assert config.rosters_path == tmp_path / "rosters.sqlite"
    path.write_text('[rosters]\nurls = ["ftp://x"]\n')
    with pytest.raises(ConfigError, match=r"\[rosters\] urls doit être une liste d'adresses http"):
        load_config(path)
    path.write_text('[rosters]\nurl = "https://x"\n')
    with pytest.raises(ConfigError, match="clé inconnue « url » dans \\[rosters\\]"):
        load_config(path)
