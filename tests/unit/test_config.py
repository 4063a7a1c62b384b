"""Configuration: the embedded demo, a full TOML file, and every refusal."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from pathlib import Path

import pytest

from sas_desk.services import config as config_module
from sas_desk.services.config import ROLES, Config, ConfigError, load_config
from sas_desk.services.fhir.service import SlotService

FULL = """\
[organisation]
owner = "fr.health.samu380"
departement = "38"
samu_letter = "B"

[workstation]
name = "POSTE-12"
operator = "amartin"
role = "MRU"

[geocoder]
url = "https://geo.example.org/search"
timeout = 5

[demo]
enabled = false
simulator_port = 8765

[paths]
data_dir = "{data_dir}"
"""


@pytest.fixture(autouse=True)
def no_user_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Never read the developer's own config file: the default path is absent."""
    absent = tmp_path / "user-config" / "config.toml"
    monkeypatch.setattr(config_module, "default_config_path", lambda: absent)
    return absent


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def refused(path: Path, data_dir: Path | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, data_dir)
    assert info.value.message_fr == str(info.value)
    return info.value.message_fr


# --------------------------------------------------------------------------- demo


def test_no_file_gives_the_demo(tmp_path: Path) -> None:
    cfg = load_config(None, tmp_path / "data")
    assert cfg.demo is True
    assert cfg.source is None
    assert cfg.data_dir == tmp_path / "data"
    assert cfg.journal_path == tmp_path / "data" / "journal.sqlite"
    assert cfg.owner == "fr.health.samu690"
    assert cfg.departement == "69"
    assert cfg.samu_letter == "A"
    assert cfg.role is None
    assert cfg.geocoder_url == ""
    assert cfg.geocoder_timeout == 3.0
    assert cfg.simulator_port == 0
    assert cfg.workstation
    assert cfg.operator


def test_no_file_without_data_dir_uses_the_platform_default() -> None:
    cfg = load_config()
    assert cfg.demo is True
    assert cfg.data_dir == Config().data_dir
    assert cfg.data_dir.is_absolute()


def test_default_path_is_read_when_present(no_user_config: Path, tmp_path: Path) -> None:
    no_user_config.parent.mkdir(parents=True)
    no_user_config.write_text('[organisation]\ndepartement = "42"\n', encoding="utf-8")
    cfg = load_config(None, tmp_path / "data")
    assert cfg.source == no_user_config
    assert cfg.departement == "42"
    assert cfg.demo is True  # no geocoder URL: the built-in simulator


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "sas.toml"
    message = refused(missing)
    assert message.startswith("Fichier de configuration introuvable")
    assert str(missing) in message


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = load_config(None, tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.role = "ARM"  # type: ignore[misc]


# --------------------------------------------------------------------------- full file


def test_full_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "journal-data"
    path = write(tmp_path, FULL.format(data_dir=data_dir.as_posix()))
    cfg = load_config(path)
    assert cfg == Config(
        demo=False,
        source=path,
        data_dir=data_dir,
        owner="fr.health.samu380",
        departement="38",
        samu_letter="B",
        workstation="POSTE-12",
        operator="amartin",
        role="MRU",
        geocoder_url="https://geo.example.org/search",
        geocoder_timeout=5.0,
        simulator_port=8765,
    )
    assert isinstance(cfg.geocoder_timeout, float)
    assert isinstance(cfg.data_dir, Path)
    assert cfg.journal_path == data_dir / "journal.sqlite"


def test_command_line_data_dir_wins_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, FULL.format(data_dir=(tmp_path / "from-file").as_posix()))
    cfg = load_config(path, tmp_path / "from-cli")
    assert cfg.data_dir == tmp_path / "from-cli"


def test_data_dir_expands_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USERPROFILE", str(tmp_path))
    cfg = load_config(write(tmp_path, '[paths]\ndata_dir = "~/sas"\n'))
    assert cfg.data_dir == tmp_path / "sas"


def test_float_timeout_is_kept(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[geocoder]\ntimeout = 2.5\n"))
    assert cfg.geocoder_timeout == 2.5


@pytest.mark.parametrize(
    ("text", "demo"),
    [
        ("", True),
        ('[geocoder]\nurl = "https://geo.example.org/search"\n', False),
        ('[geocoder]\nurl = ""\n', True),
        ('[geocoder]\nurl = "https://geo.example.org/search"\n[demo]\nenabled = true\n', True),
        ("[demo]\nenabled = false\n", False),
    ],
)
def test_demo_follows_the_geocoder_unless_told(tmp_path: Path, text: str, demo: bool) -> None:
    cfg = load_config(write(tmp_path, text), tmp_path)
    assert cfg.demo is demo


def test_partial_file_keeps_the_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[workstation]\noperator = "bleroy"\n'), tmp_path)
    assert cfg.operator == "bleroy"
    assert cfg.owner == "fr.health.samu690"
    assert cfg.role is None
    assert cfg.geocoder_timeout == 3.0


@pytest.mark.parametrize("role", sorted(ROLES))
def test_every_known_role_is_accepted(tmp_path: Path, role: str) -> None:
    cfg = load_config(write(tmp_path, f'[workstation]\nrole = "{role}"\n'), tmp_path)
    assert cfg.role == role


# --------------------------------------------------------------------------- refusals


def test_unknown_section(tmp_path: Path) -> None:
    path = write(tmp_path, '[organisation]\nowner = "x"\n\n[serveur]\nport = 1\n')
    message = refused(path)
    assert "section inconnue [serveur]" in message
    assert str(path) in message


def test_unknown_key(tmp_path: Path) -> None:
    # a misspelt "url" must not silently start the demo simulator
    message = refused(write(tmp_path, '[geocoder]\nulr = "https://geo.example.org"\n'))
    assert "clé inconnue « ulr » dans [geocoder]" in message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[organisation]\ndepartement = 69\n", "[organisation] departement doit être de type str"),
        ("[organisation]\nowner = true\n", "[organisation] owner doit être de type str"),
        ("[workstation]\nname = 12\n", "[workstation] name doit être de type str"),
        ('[geocoder]\ntimeout = "3"\n', "[geocoder] timeout doit être de type float"),
        ("[geocoder]\ntimeout = true\n", "[geocoder] timeout doit être de type float"),
        ("[geocoder]\nurl = 8080\n", "[geocoder] url doit être de type str"),
        ("[demo]\nsimulator_port = 80.5\n", "[demo] simulator_port doit être de type int"),
        ('[demo]\nsimulator_port = "8080"\n', "[demo] simulator_port doit être de type int"),
        ("[demo]\nsimulator_port = true\n", "[demo] simulator_port doit être de type int"),
        ('[demo]\nenabled = "false"\n', "[demo] enabled doit être de type bool"),
        ("[demo]\nenabled = 0\n", "[demo] enabled doit être de type bool"),
        ("[paths]\ndata_dir = 5\n", "[paths] data_dir doit être de type str"),
    ],
)
def test_wrong_type(tmp_path: Path, text: str, fragment: str) -> None:
    assert fragment in refused(write(tmp_path, text))


@pytest.mark.parametrize("text", ['organisation = "samu69"\n', "geocoder = 3\n", "demo = [1, 2]\n"])
def test_section_that_is_not_a_table(tmp_path: Path, text: str) -> None:
    assert "doit être une section" in refused(write(tmp_path, text))


@pytest.mark.parametrize(
    "text",
    [
        "[organisation\nowner = 'x'\n",
        "[organisation]\nowner = \n",
        '[organisation]\nowner = "x"\nowner = "y"\n',
        "[geocoder]\ntimeout = 3,5\n",
    ],
)
def test_bad_toml_syntax(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    message = refused(path)
    assert message.startswith("Configuration invalide")
    assert str(path) in message


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[workstation]\noperator = "Hélène"\n'.encode("latin-1"))
    assert refused(path).startswith("Configuration illisible")


def test_directory_instead_of_a_file(tmp_path: Path) -> None:
    folder = tmp_path / "config.toml"
    folder.mkdir()
    assert refused(folder).startswith("Configuration illisible")


@pytest.mark.parametrize("role", ["CHEF", "arm", "Médecin"])
def test_unknown_role(tmp_path: Path, role: str) -> None:
    message = refused(write(tmp_path, f'[workstation]\nrole = "{role}"\n'))
    assert f"rôle inconnu « {role} »" in message


def test_readme_example_is_accepted(tmp_path: Path) -> None:
    readme = Path(__file__).resolve().parents[2] / "README.md"
    blocks = re.findall(r"```toml\n(.*?)```", readme.read_text(encoding="utf-8"), re.S)
    assert blocks, "the README documents the configuration file"
    cfg = load_config(write(tmp_path, blocks[0]), tmp_path)
    assert cfg.source is not None
    assert cfg.demo is False  # a geocoder URL is configured
    assert cfg.role is None or cfg.role in ROLES


VENDORS = """\
[search]
directory_url = "https://annuaire.example.org/fhir"
per_vendor = 2
slow_s = 1.5

[[vendors]]
name = "AgendaPlus"
base_url = "https://fhir.agendaplus.example/sas"
client_cert = "/etc/sas-desk/client.pem"
client_key = "/etc/sas-desk/client.key"
ca = "/etc/sas-desk/igc-sante.pem"
timeout = 5

[[vendors]]
name = "MedAgenda"
base_url = "https://medagenda.example/fhir"
"""


def test_vendor_endpoints_and_search_settings(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, VENDORS))
    assert [v.name for v in cfg.vendors] == ["AgendaPlus", "MedAgenda"]
    first, second = cfg.vendors
    assert first.client_cert == "/etc/sas-desk/client.pem"
    assert first.ca == "/etc/sas-desk/igc-sante.pem"
    assert first.timeout == 5.0
    assert (second.client_cert, second.ca, second.timeout) == ("", "", 7.0)
    assert cfg.directory_url == "https://annuaire.example.org/fhir"
    assert (cfg.search_per_vendor, cfg.search_slow_s) == (2, 1.5)
    assert Config().vendors == ()  # the demo takes the simulator's
    service = SlotService.from_config(cfg, cfg.directory_url, cfg.vendors, now=datetime.now)
    assert (service.per_vendor, service.slow_after) == (2, 1.5)
    assert service.directory_path == cfg.directory_path and service.vendors == cfg.vendors


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('[[vendors]]\nname = "A"\n', "name et base_url sont requis"),
        ('[[vendors]]\nname = "A"\nbase_url = "ftp://x"\n', "adresse http(s)"),
        (
            '[[vendors]]\nname = "A"\nbase_url = "https://x"\nverify = false\n',
            "clé inconnue « verify »",
        ),
        (
            '[[vendors]]\nname = "A"\nbase_url = "https://x"\nclient_cert = "c.pem"\n',
            "client_cert et client_key vont ensemble",
        ),
        (
            '[[vendors]]\nname = "A"\nbase_url = "https://x"\ntimeout = 0\n',
            "timeout doit être positif",
        ),
        (
            '[[vendors]]\nname = "A"\nbase_url = "https://x"\n'
            '[[vendors]]\nname = "A"\nbase_url = "https://y"\n',
            "deux éditeurs portent le nom « A »",
        ),
        ('vendors = "https://x"\n', "liste de tables"),
        ("[search]\nper_vendor = 0\n", "per_vendor doit valoir au moins 1"),
        (
            '[[vendors]]\nname = "A"\nbase_url = "https://x"\ntimeout = "7"\n',
            "doit être de type float",
        ),
    ],
)
def test_bad_vendor_tables_are_refused_in_french(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert fragment in err.value.message_fr


def test_map_tiles_and_sas_platform_settings(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            '[map]\ntiles_url = "https://tiles.example/{z}/{x}/{y}.png"\n'
            '[search]\nsas_platform_url = "https://sas.test"\nsas_origin = "SAMU069"\n',
        ),
        tmp_path / "data",
    )
    assert cfg.map_tiles_url == "https://tiles.example/{z}/{x}/{y}.png"
    assert cfg.tiles_cache_path == tmp_path / "data" / "tiles"
    assert (cfg.sas_platform_url, cfg.sas_origin) == ("https://sas.test", "SAMU069")
    assert Config().sas_platform_url == "https://sas.sante.fr"
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, '[map]\ntiles_url = "tiles/{z}"\n'))
    assert "[map] tiles_url doit être une adresse http(s)" in err.value.message_fr


def test_map_base_layer_settings(tmp_path: Path) -> None:
    assert (Config().map_source, Config().map_probe_timeout) == ("ign", 3.0)
    # a tile server given without a source is the one wanted
    cfg = load_config(write(tmp_path, '[map]\ntiles_url = "https://t.example/{z}/{x}/{y}.png"\n'))
    assert cfg.map_source == "url"
    cfg = load_config(
        write(
            tmp_path,
            '[map]\nsource = "simulateur"\nattribution = "© SAMU 69"\nprobe_timeout = 1.5\n',
        )
    )
    assert (cfg.map_source, cfg.map_attribution, cfg.map_probe_timeout) == (
        "simulateur",
        "© SAMU 69",
        1.5,
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            '[map]\nsource = "osm"\n',
            "ligne 2) : [map] source doit être ign, url, simulateur ou aucun",
        ),
        ('[map]\nsource = "url"\n', "[map] source vaut url : tiles_url est alors requis"),
        ("[map]\n\nprobe_timeout = -1\n", "ligne 3) : [map] probe_timeout doit être positif"),
        ("[map]\nprobe_timeout = nan\n", "[map] probe_timeout doit être positif"),
        ('[map]\nattribution = "' + "x" * 121 + '"\n', "[map] attribution doit être un texte"),
        ("[map]\nsource = 3\n", "[map] source doit être de type str"),
    ],
)
def test_bad_map_settings_are_refused_naming_the_line(
    tmp_path: Path, text: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert fragment in err.value.message_fr


def test_roster_sync_period(tmp_path: Path) -> None:
    cfg = load_config(
        write(tmp_path, '[rosters]\nurls = ["https://cdo.example/69.csv"]\nsync_every_s = 900\n')
    )
    assert cfg.roster_sync_s == 900.0
    assert Config().roster_sync_s == 3600.0
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "[rosters]\nsync_every_s = 5\n"))
    assert "au moins 60 secondes" in err.value.message_fr


def test_the_rooms_time_zone_defaults_to_paris_and_overseas_centres_set_theirs(
    tmp_path: Path,
) -> None:
    """Issue 14 §18: one clock, the room's (``[organisation] timezone``)."""
    assert load_config(None, tmp_path).timezone == "Europe/Paris"
    path = write(tmp_path, '[organisation]\ntimezone = "America/Cayenne"\n')
    assert load_config(path, tmp_path).timezone == "America/Cayenne"
    message = refused(write(tmp_path, '[organisation]\ntimezone = "Mars/Olympus"\n'))
    assert "[organisation] timezone" in message and "fuseau horaire IANA" in message


# ---------------------------------------------------------------------------- [room]


def test_room_selects_production_with_its_ca(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            '[workstation]\nname = "POSTE-12"\n\n'
            '[room]\nurl = "https://salle.samu38.local:8443"\nca = "~/ac-salle.pem"\n',
        )
    )
    assert cfg.room_url == "https://salle.samu38.local:8443"
    assert cfg.room_ca == str(Path("~/ac-salle.pem").expanduser())
    assert cfg.room_station == "POSTE-12"
    assert cfg.demo is False  # production: no simulator, even without a geocoder
    named = load_config(
        write(tmp_path, '[room]\nurl = "https://salle"\nworkstation = "SALLE-ARM-03"\n')
    )
    assert named.room_station == "SALLE-ARM-03" and named.room_ca == ""


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8443", "http://localhost:9000/", "http://[::1]:8080"]
)
def test_room_over_plain_http_on_loopback_only(tmp_path: Path, url: str) -> None:
    assert load_config(write(tmp_path, f'[room]\nurl = "{url}"\n')).room_url == url


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://salle.samu38.local", "[room] url en http:// (non chiffré) est refusé"),
        ("http://10.0.0.5:8443", "[room] url en http:// (non chiffré) est refusé"),
        ("ftp://salle", "[room] url doit être une adresse https://…"),
        ("salle.samu38.local", "[room] url doit être une adresse https://…"),
        ("https://bob:secret@salle", "ni identifiant ni mot de passe"),
        ("", "[room] url est requis"),
    ],
)
def test_room_url_refusals(tmp_path: Path, url: str, fragment: str) -> None:
    message = refused(write(tmp_path, f'[room]\nurl = "{url}"\n'))
    assert fragment in message and "[room]" in message
    assert "secret" not in message  # a password in the address is never echoed


def test_room_refuses_the_demo_simulator(tmp_path: Path) -> None:
    message = refused(write(tmp_path, '[demo]\nenabled = true\n\n[room]\nurl = "https://salle"\n'))
    assert "[demo] enabled = true est refusé avec [room]" in message


@pytest.mark.parametrize("key", ["dsn", "schema", "sslmode", "sslrootcert"])
def test_direct_database_is_refused_with_what_to_write_instead(tmp_path: Path, key: str) -> None:
    message = refused(
        write(tmp_path, f'[queues]\n{key} = "postgresql://sas@queues.local/regulation"\n')
    )
    assert f"[queues] {key} n'est plus accepté" in message
    assert '[room]\nurl = "https://…"' in message
    assert "postgresql://" not in message  # the old DSN (and any password in it) not echoed


def test_queue_timings_stay_in_queues(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[queues]\nlease_s = 90\nrenew_s = 20\nwait_p0 = 30\n"))
    assert (cfg.lease_s, cfg.renew_s, cfg.wait_limits[0]) == (90.0, 20.0, 30.0)
    assert cfg.room_url == "" and not hasattr(cfg, "queues_dsn")


# ---------------------------------------------------------------------------- [session]


def test_session_lock_delays_and_shift_ends(tmp_path: Path) -> None:
    default = load_config(write(tmp_path, "[session]\n"))
    assert (default.lock_after_s, default.reauth_after_s, default.shift_ends) == (300, 1200, ())
    config = load_config(
        write(
            tmp_path,
            '[session]\nlock_after_min = 2\nreauth_after_min = 15\nshift_end = ["20:00", "08:00"]\n',
        )
    )
    assert (config.lock_after_s, config.reauth_after_s) == (120, 900)
    assert config.shift_ends == ("08:00", "20:00")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("lock_after_min = 0", "ligne 2) : [session] lock_after_min doit valoir au moins 1"),
        ("lock_after_min = 30\nreauth_after_min = 10", "ligne 3) : [session] reauth_after_min"),
        ('shift_end = ["25:00"]', "ligne 2) : [session] shift_end doit être une liste d'heures"),
        ('shift_end = "20:00"', "ligne 2) : [session] shift_end doit être une liste d'heures"),
        ("lock_after = 5", "clé inconnue « lock_after » dans [session]"),
    ],
)
def test_session_settings_refused_with_file_line_and_key(
    tmp_path: Path, body: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, f"[session]\n{body}\n"))
    assert message in caught.value.message_fr


def test_retention_local_days(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "[retention]\n")).retention_days == 1.0
    assert load_config(write(tmp_path, "[retention]\nlocal_days = 3\n")).retention_days == 3.0
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "[retention]\nlocal_days = 0\n"))
    assert "ligne 2) : [retention] local_days doit valoir au moins" in caught.value.message_fr
