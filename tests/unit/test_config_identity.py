"""``[identity]``: Pro Santé Connect and the establishment's IdP settings, and
every refusal with a French message naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from sas_desk.services.config import ConfigError, IdentitySettings, load_config, load_identity

GOOD = """\
[identity]
psc_issuer = "https://auth.bas.psc.esante.gouv.fr/auth/realms/esante-wallet"
psc_client_id = "sas-desk-samu69"
psc_mode = "ciba"
establishment_issuer = "https://idp.chu.example/realms/agents"
establishment_client_id = "sas-desk"
establishment_login_claim = "email"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def refused(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, data_dir=path.parent)
    assert str(path) in caught.value.message_fr
    return caught.value.message_fr


def test_full_identity_table(tmp_path: Path) -> None:
    identity = load_config(write(tmp_path, GOOD), data_dir=tmp_path).identity
    assert identity.psc and identity.establishment
    assert identity.psc_mode == "ciba"
    assert identity.psc_acr == "eidas1"
    assert identity.psc_scope == "openid scope_all"
    assert identity.establishment_login_claim == "email"


def test_no_identity_table_means_no_oidc(tmp_path: Path) -> None:
    identity = load_config(
        write(tmp_path, '[organisation]\nowner = "x"\n'), data_dir=tmp_path
    ).identity
    assert identity == IdentitySettings()
    assert not identity.psc and not identity.establishment


def test_loopback_http_issuer_allowed(tmp_path: Path) -> None:
    text = '[identity]\npsc_issuer = "http://127.0.0.1:8080/auth/realms/esante-wallet"\npsc_client_id = "c"\n'
    assert load_config(write(tmp_path, text), data_dir=tmp_path).identity.psc


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('psc_issuer = "http://psc.example/realm"\npsc_client_id = "c"', "ligne 2) : [identity] psc_issuer doit être une adresse https://"),
        ('psc_issuer = "https://psc.example/realm"', "[identity] psc_client_id est requis avec psc_issuer"),
        ('establishment_issuer = "ftp://idp"\nestablishment_client_id = "c"', "[identity] establishment_issuer doit être"),
        ('psc_mode = "device"', "ligne 2) : [identity] psc_mode doit valoir code ou ciba (lu : device)"),
        ('psc_secret = "x"', "clé inconnue « psc_secret » dans [identity]"),
        ("psc_client_id = 12", "ligne 2) : [identity] psc_client_id doit être un texte"),
        ('psc_issuer = "https://p/r"\npsc_client_id = "c"\npsc_scope = "scope_all"', "ligne 4) : [identity] psc_scope doit contenir openid"),
        ('establishment_login_claim = ""', "[identity] establishment_login_claim ne peut être vide"),
    ],
)  # fmt: skip
def test_identity_refusals(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in refused(write(tmp_path, f"[identity]\n{text}\n"))


def test_load_identity_alone_for_the_room_server(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nlisten = "127.0.0.1:8443"\n\n' + GOOD)
    assert load_identity(path).psc_mode == "ciba"
    bad = write(tmp_path, '[identity]\npsc_mode = "sms"\n')
    with pytest.raises(ConfigError) as caught:
        load_identity(bad)
    assert f"({bad}, ligne 2)" in caught.value.message_fr


def test_identity_must_be_a_table(tmp_path: Path) -> None:
    assert "[identity] doit être une section" in refused(write(tmp_path, 'identity = "psc"\n'))
