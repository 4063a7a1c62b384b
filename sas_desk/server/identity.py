"""The ``[identity]`` table of the room server's configuration file (OIDC
login, see :mod:`sas_desk.server.oidc`), read without importing the web stack."""

from __future__ import annotations

from pathlib import Path

from sas_desk.server.settings import SettingsError
from sas_desk.services.config import ConfigError, IdentitySettings, load_identity

__all__ = ["identity_from_file"]


def identity_from_file(path: Path | None) -> IdentitySettings | None:
    """The ``[identity]`` table of the server's configuration file, if it
    names a provider; :class:`SettingsError` (French, file and line) if bad."""
    if path is None:
        return None
    try:
        identity = load_identity(path)
    except ConfigError as exc:
        raise SettingsError(exc.message_fr) from None
    return identity if identity.psc or identity.establishment else None
