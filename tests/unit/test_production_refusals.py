"""Production mode (issue 15): a workstation configuration with ``[room]``
refuses plain-http addresses off this machine and unencrypted mTLS client
keys; an encrypted key opens with its passphrase from the keyring (no
terminal prompt, no traceback); the room server refuses a remote PostgreSQL
without ``sslmode=verify-full``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from keyring.backend import KeyringBackend

from sas_desk.server.settings import ServerSettings, SettingsError, postgres_tls_problem
from sas_desk.services.config import Config, ConfigError, VendorEndpoint, load_config
from sas_desk.services.fhir.vendor import VendorError, tls_context

ROOM = '[room]\nurl = "https://salle.samu69.local:8443"\n'


class MemoryKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.store.pop((service, username), None)


@pytest.fixture
def ring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    memory = MemoryKeyring()
    keyring.set_keyring(memory)
    yield memory
    keyring.set_keyring(previous)


def client_pair(folder: Path, passphrase: str | None) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "poste-arm-03")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    cert_path, key_path = folder / "client.pem", folder / "client.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    return cert_path, key_path


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[geocoder]\nurl = "http://ban.samu69.local"\n', "[geocoder] url en http://"),
        ('[search]\ndirectory_url = "http://annuaire.local/fhir"\n', "[search] directory_url"),
        ('[map]\ntiles_url = "http://tuiles.local/{z}/{x}/{y}.png"\n', "[map] tiles_url"),
        ('[rosters]\nurls = ["http://gardes.local/69.csv"]\n', "[rosters] urls en http://"),
        (
            '[[vendors]]\nname = "A"\nbase_url = "http://fhir.example/sas"\n',
            "[[vendors]] n° 1 : base_url en http:// est refusé avec [room]",
        ),
    ],
)
def test_plain_http_is_refused_with_a_room(tmp_path: Path, table: str, message: str) -> None:
    load(tmp_path, table)  # the demo accepts it
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, ROOM + table)
    assert message in caught.value.message_fr


def test_loopback_http_stays_accepted_with_a_room(tmp_path: Path) -> None:
    config = load(tmp_path, ROOM + '[geocoder]\nurl = "http://127.0.0.1:8080"\n')
    assert config.geocoder_url == "http://127.0.0.1:8080"


def vendor(cert: Path, key: Path) -> str:
    return (
        '[[vendors]]\nname = "AgendaPlus"\nbase_url = "https://fhir.example/sas"\n'
        f'client_cert = "{cert}"\nclient_key = "{key}"\n'
    )


def test_an_unencrypted_client_key_is_refused_with_a_room(tmp_path: Path) -> None:
    cert, key = client_pair(tmp_path, None)
    assert load(tmp_path, vendor(cert, key)).vendors  # the demo: accepted
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, ROOM + vendor(cert, key))
    message = caught.value.message_fr
    assert f"la clé privée {key} n'est pas chiffrée" in message
    assert f"utilisateur « key:{key} »" in message


def test_an_encrypted_key_opens_with_its_passphrase_from_the_keyring(
    tmp_path: Path, ring: MemoryKeyring
) -> None:
    cert, key = client_pair(tmp_path, "phrase-de-passe-igc")
    config = load(tmp_path, ROOM + vendor(cert, key))
    endpoint: VendorEndpoint = config.vendors[0]
    with pytest.raises(VendorError) as caught:  # nothing in the keyring: said, no prompt
        tls_context(endpoint)
    assert caught.value.kind == "tls"
    assert "clé chiffrée sans sa phrase de passe dans le trousseau" in caught.value.message_fr
    ring.set_password("sas-desk", f"key:{key}", "phrase-de-passe-igc")
    assert tls_context(endpoint) is not None


@pytest.mark.parametrize(
    ("dsn", "refused"),
    [
        ("postgresql://sas@127.0.0.1:5432/salle", False),
        ("postgresql:///salle?host=/var/run/postgresql", False),
        ("postgresql://sas@db.chu.local/salle?sslmode=verify-full", False),
        ("postgresql://sas@db.chu.local/salle", True),
        ("postgresql://sas@db.chu.local/salle?sslmode=require", True),
        ("sqlite:///var/lib/sas-desk/salle.sqlite", False),
    ],
)
def test_a_remote_postgresql_needs_verify_full(dsn: str, refused: bool) -> None:
    assert bool(postgres_tls_problem(dsn)) is refused
    if refused:
        with pytest.raises(SettingsError) as caught:
            ServerSettings(dsn=dsn).checked()
        assert "sslmode=verify-full" in caught.value.message_fr


def test_a_server_beyond_loopback_refuses_the_demo_identity_providers() -> None:
    from typing import Any

    from sas_desk.server.oidc import open_logins
    from sas_desk.services.auth.demo import DEMO_PSC_SECRET
    from sas_desk.services.config import IdentitySettings

    store: Any = object()  # not reached: the refusal comes first
    simulator = IdentitySettings(
        psc_issuer="http://127.0.0.1:8080/auth/realms/esante-wallet", psc_client_id="c"
    )
    with pytest.raises(SettingsError) as caught:
        open_logins(simulator, store, secret=lambda *_: "s", loopback=False)
    assert "simulateur de démonstration" in caught.value.message_fr
    real = IdentitySettings(psc_issuer="https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet", psc_client_id="c")  # fmt: skip
    with pytest.raises(SettingsError):
        open_logins(real, store, secret=lambda *_: DEMO_PSC_SECRET, loopback=False)
    assert open_logins(real, store, secret=lambda *_: "le-vrai-secret", loopback=False)
    assert open_logins(simulator, store, secret=lambda *_: DEMO_PSC_SECRET, loopback=True)


def hub(cert: Path, key: Path) -> str:
    return (
        '[hub]\nurl = "amqps://hub.esante.gouv.fr:5671/"\nclient_id = "fr.health.samu690"\n'
        f'cert = "{cert}"\nkey = "{key}"\n'
    )


def test_the_hub_key_is_refused_in_the_clear_and_opened_from_the_keyring(
    tmp_path: Path, ring: MemoryKeyring
) -> None:
    from sas_desk.services.hub.agent import tls_context as hub_tls

    cert, key = client_pair(tmp_path, None)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, ROOM + hub(cert, key))
    assert f"[hub] la clé privée {key} n'est pas chiffrée" in caught.value.message_fr
    sealed_dir = tmp_path / "sealed"
    sealed_dir.mkdir()
    cert, key = client_pair(sealed_dir, "phrase-hub")
    config = load(tmp_path, ROOM + hub(cert, key))
    assert config.hub is not None
    ring.set_password("sas-desk", f"key:{key}", "phrase-hub")
    assert hub_tls(config.hub) is not None  # the passphrase came from the keyring
