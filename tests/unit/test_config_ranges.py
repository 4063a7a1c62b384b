"""Every setting has a range; a refusal names the file, the line and the key
(issue 18).  A configuration saved with a UTF-8 BOM is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from sas_desk.services import config as config_module
from sas_desk.services.config import ConfigError, load_config


@pytest.fixture(autouse=True)
def no_user_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(config_module, "default_config_path", lambda: tmp_path / "absent.toml")


def refused(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.message_fr


HEAD = "# poste de test\n# (trois lignes d'en-tête)\n\n"


@pytest.mark.parametrize(
    ("body", "line", "fragment"),
    [
        ("[queues]\nlease_s = 120\nrenew_s = -1\n", 6, "[queues] renew_s doit valoir au moins 1"),
        ("[queues]\nrenew_s = 0\n", 5, "[queues] renew_s doit valoir au moins 1"),
        ("[queues]\nlease_s = -5\n", 5, "[queues] lease_s doit valoir au moins 5"),
        ("[queues]\nlease_s = nan\n", 5, "[queues] lease_s doit valoir au moins 5 secondes"),
        ("[queues]\nlease_s = inf\n", 5, "[queues] lease_s"),
        ("[queues]\nwait_p2 = -60\n", 5, "[queues] wait_p2 doit être positif"),
        ("[queues]\n\nwait_p0 = nan\n", 6, "[queues] wait_p0 doit être positif"),
        ("[demo]\nsimulator_port = 99999\n", 5, "[demo] simulator_port doit valoir au moins 0"),
        ("[demo]\nsimulator_port = -1\n", 5, "[demo] simulator_port"),
        (
            '[geocoder]\nurl = "ftp://ban.example/search"\n',
            5,
            "[geocoder] url doit être une adresse http(s)",
        ),
        ('[geocoder]\nurl = "https://"\n', 5, "[geocoder] url doit être une adresse http(s)"),
        ("[geocoder]\ntimeout = -1\n", 5, "[geocoder] timeout doit être positif"),
        ("[geocoder]\ntimeout = 1e9\n", 5, "[geocoder] timeout doit être positif et au plus 120"),
        ('[queues]\nschema = "sas_desk"\n', 5, "[queues] schema n'est plus accepté"),
        ('[queues]\nlease_s = 90\nsslmode = "maybe"\n', 6, "[queues] sslmode n'est plus accepté"),
        (
            '[room]\nurl = "http://salle.local"\n',
            5,
            "[room] url en http:// (non chiffré) est refusé",
        ),
        (
            '[demo]\nenabled = true\n[room]\nurl = "https://s"\n',
            5,
            "[demo] enabled = true est refusé",
        ),
        ("[search]\nslow_s = -2\n", 5, "[search] slow_s doit être positif"),
        ("[search]\nper_vendor = 100000\n", 5, "[search] per_vendor doit valoir au moins 1"),
        ('[search]\ndirectory_url = "file:///etc"\n', 5, "[search] directory_url doit être"),
        ("[rosters]\ntimeout = 0\n", 5, "[rosters] timeout doit être positif"),
        ("[rosters]\nsync_every_s = 5\n", 5, "[rosters] sync_every_s doit valoir au moins 60"),
        ("[queues]\nlease_s = 20\nrenew_s = 30\n", 5, "[queues] lease_s doit dépasser renew_s"),
        ('[organisation]\ndepartement = "6"\n', 5, "[organisation] departement doit être un code"),
        ('[organisation]\nsamu_letter = "ab"\n', 5, "[organisation] samu_letter doit être une"),
        ('[workstation]\nname = ""\n', 5, "[workstation] name doit être un nom de 1 à 63"),
        ('[workstation]\noperator = "a\\u0000b"\n', 5, "[workstation] operator ne doit pas"),
        (
            '[room]\nurl = "https://s"\nworkstation = "P\\n"\n',
            6,
            "[room] workstation ne doit pas contenir",
        ),
        ('[organisation]\nowner = "fr health/samu"\n', 5, "[organisation] owner doit être"),
        (
            '[[vendors]]\nname = "A"\nbase_url = "https://a"\n\n'
            '[[vendors]]\nname = "B"\nbase_url = "https://b"\ntimeout = -1\n',
            11,
            "[vendors n° 2] timeout doit être positif",
        ),
    ],
)
def test_out_of_range_setting_names_file_line_and_key(
    tmp_path: Path, body: str, line: int, fragment: str
) -> None:
    message = refused(tmp_path, HEAD + body)
    assert message.startswith(f"Configuration invalide ({tmp_path / 'config.toml'}, ligne {line})")
    assert fragment in message


def test_the_bounds_themselves_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        HEAD + "[queues]\nlease_s = 5\nrenew_s = 1\nwait_p0 = 0.5\n"
        '[demo]\nsimulator_port = 65535\n[geocoder]\ntimeout = 120\nurl = "http://127.0.0.1:1/"\n',
        encoding="utf-8",
    )
    cfg = load_config(path)
    assert (cfg.lease_s, cfg.renew_s, cfg.wait_limits[0]) == (5.0, 1.0, 0.5)
    assert (cfg.simulator_port, cfg.geocoder_timeout) == (65535, 120.0)


def test_a_config_saved_with_a_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"\xef\xbb\xbf" + '[workstation]\noperator = "Hélène"\n'.encode())
    assert load_config(path).operator == "Hélène"


def test_syntax_errors_are_french_with_line_and_column(tmp_path: Path) -> None:
    message = refused(tmp_path, '[geocoder]\ntimeout = 3\nurl = "x\n')
    assert message.startswith(
        f"Configuration invalide ({tmp_path / 'config.toml'}, ligne 3, colonne"
    )
    assert "syntaxe TOML invalide" in message


def test_a_nul_byte_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[workstation]\noperator = "a\x00b"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert f"({path}, ligne 2)" in caught.value.message_fr and "NUL" in caught.value.message_fr
