"""``[hub]``: the Hub Santé connection settings and every refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from sas_desk.services import config as config_module
from sas_desk.services.config import ConfigError, load_config
from sas_desk.services.hub.agent import connection_url, tls_context
from sas_desk.services.hub.settings import DEFAULT_EXPIRY_S, HubSettings

FULL = """\
[hub]
url = "amqps://messaging.hub.esante.gouv.fr:5671/15-15_v2.0"
client_id = "fr.health.samu690"
cert = "/etc/sas-desk/hub/client.pem"
key = "/etc/sas-desk/hub/client.key"
ca = "/etc/sas-desk/hub/chain.pem"
partners = ["fr.health.samu380", "fr.health.ptfsas"]
status = "Exercise"
heartbeat_s = 20

[hub.expiry]
RS-EDA = 600
RC-REF = 120
"""


@pytest.fixture(autouse=True)
def no_user_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(config_module, "default_config_path", lambda: tmp_path / "absent.toml")


def load(tmp_path: Path, text: str) -> HubSettings | None:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, tmp_path / "data").hub


def refused(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return info.value.message_fr


def test_no_hub_section_means_no_hub(tmp_path: Path) -> None:
    assert load(tmp_path, "[organisation]\nowner = 'fr.health.samu690'\n") is None
    assert load_config(None, tmp_path).hub is None


def test_full_section(tmp_path: Path) -> None:
    hub = load(tmp_path, FULL)
    assert hub is not None
    assert hub.client_id == "fr.health.samu690"
    assert hub.exchange == "hubsante"  # default
    assert hub.vhost == "15-15_v2.0"
    assert hub.tls and hub.passive
    assert hub.partners == ("fr.health.samu380", "fr.health.ptfsas")
    assert hub.status == "Exercise"
    assert hub.expiry_for("RS-EDA") == 600
    assert hub.expiry_for("RC-REF") == 120
    assert hub.expiry_for("RS-SAS-RDV") == DEFAULT_EXPIRY_S["RS-SAS-RDV"]
    url = connection_url(hub)
    assert "auth=external" in url and "heartbeat=20" in url
    assert url.startswith("amqps://messaging.hub.esante.gouv.fr:5671/15-15_v2.0?")
    cfg = load_config(tmp_path / "config.toml", tmp_path / "data")
    assert cfg.hub_path == tmp_path / "data" / "hub.sqlite"


def test_local_broker_without_tls_and_credentials_kept_out_of_logs(tmp_path: Path) -> None:
    hub = load(
        tmp_path,
        '[hub]\nurl = "amqp://guest:secret@127.0.0.1:5672/dev"\nclient_id = "fr.health.samu690"\n',
    )
    assert hub is not None and not hub.tls and tls_context(hub) is None
    assert hub.safe_url == "amqp://127.0.0.1:5672/dev"
    assert "auth=external" not in connection_url(hub)


def test_tls_context_verifies_the_server(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("fr.health.samu690")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "client.pem"))
    hub = HubSettings(
        url="amqps://hub.example:5671/v",
        client_id="fr.health.samu690",
        cert=str(tmp_path / "client.pem"),
        key=str(tmp_path / "client.pem"),
        ca=str(tmp_path / "ca.pem"),
    )
    context = tls_context(hub)
    assert context is not None and context.check_hostname
    import ssl

    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('[hub]\nclient_id = "fr.health.samu690"\n', "url et client_id sont requis"),
        ('[hub]\nurl = "amqps://h:5671/v"\nclient_id = "fr.health.samu690"\n', "cert et key"),
        ('[hub]\nurl = "amqp://hub.example.org/v"\nclient_id = "fr.health.samu690"\n', "amqp://"),
        ('[hub]\nurl = "https://hub.example.org/v"\nclient_id = "fr.health.samu690"\n', "amqps://"),
        ('[hub]\nurl = "amqp://127.0.0.1/v"\nclient_id = "samu 690"\n', "client_id"),
        ('[hub]\nurl = "amqp://127.0.0.1/v"\nclient_id = "fr.health.x"\nuser = "a"\n', "« user »"),
        (
            '[hub]\nurl = "amqp://127.0.0.1/v"\nclient_id = "fr.health.x"\nstatus = "Test"\n',
            "status",
        ),
        (
            '[hub]\nurl = "amqp://127.0.0.1/v"\nclient_id = "fr.health.x"\npartners = "a"\n',
            "partners",
        ),
        ('[hub]\nurl = "amqp://127.0.0.1/v"\nclient_id = "fr.health.x"\npassive = 1\n', "passive"),
        (
            '[hub]\nurl = "amqp://127.0.0.1/v"\nclient_id = "fr.health.x"\n[hub.expiry]\nRS-XYZ = 5\n',
            "RS-XYZ",
        ),
        (
            '[hub]\nurl = "amqp://127.0.0.1/v"\nclient_id = "fr.health.x"\n[hub.expiry]\nRS-EDA = 0\n',
            "RS-EDA",
        ),
        ('[hub]\nurl = 5\nclient_id = "fr.health.x"\n', "url doit être un texte"),
        ('hub = "amqp://127.0.0.1"\n', "[hub] doit être une section"),
    ],
)
def test_bad_hub_settings_are_refused_in_french(tmp_path: Path, text: str, fragment: str) -> None:
    message = refused(tmp_path, text)
    assert fragment in message
    assert "config.toml" in message
