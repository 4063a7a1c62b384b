"""The room server's settings: command line, or a ``[server]`` TOML table.

Every bad value is a :class:`SettingsError` with a French message naming
where it came from; the command prints it and exits 1.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from sas_desk.models.errors import KnownError
from sas_desk.services.config import ConfigError, parse_toml, read_config_text
from sas_desk.services.queues.api import MAX_LEASE_S

TEST_CLOCK_ENV = "SAS_DESK_SERVER_TEST_CLOCK_TOKEN"


class SettingsError(KnownError):
    def __init__(self, message_fr: str) -> None:
        super().__init__(message_fr)
        self.message_fr = message_fr


@dataclass(frozen=True)
class ServerSettings:
    dsn: str = ""
    schema: str = "sas_desk"
    host: str = "127.0.0.1"
    port: int = 8443
    tls_cert: Path | None = None
    tls_key: Path | None = None
    allow_superuser: bool = False
    lease_s: float = 120.0  # a claim's lease when the client names none
    # the longest lease a client may ask for: the queues' bound (MAX_LEASE_S),
    # which a room may only lower
    max_lease_s: float = MAX_LEASE_S
    access_ttl_s: float = 900.0  # access token: 15 minutes
    refresh_ttl_s: float = 12 * 3600.0  # refresh token: one shift
    expire_every_s: float = 2.0  # the lease expiry loop's period
    keepalive_s: float = 15.0  # SSE comment line period
    ring_size: int = 2048  # change sets kept for Last-Event-ID resume
    max_failures: int = 5  # failed logins within lockout_s lock the login...
    lockout_s: float = 60.0  # ...for lockout_s
    shutdown_grace_s: float = 10.0  # in-flight requests get this long on SIGTERM
    test_clock_token: str = ""  # PUT /_test/clock (loopback only)
    hub_store: str = ""  # the Hub Santé agent's store ([hub]); beside a SQLite room by default

    @property
    def sqlite_path(self) -> Path | None:
        """``sqlite:///path/to/file`` selects the SQLite store."""
        return sqlite_path(self.dsn)

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def checked(self) -> ServerSettings:
        """Refuses an incomplete or unsafe configuration (French message)."""
        if not self.dsn:
            raise SettingsError("Serveur : adresse de la base (--dsn) manquante.")
        if not (self.dsn.startswith(("postgresql://", "postgres://", "sqlite://"))):
            raise SettingsError(
                "Serveur : --dsn attendu sous la forme postgresql://… ou sqlite:///chemin."
            )
        if self.sqlite_path is not None and not str(self.sqlite_path):
            raise SettingsError("Serveur : chemin du fichier SQLite manquant (sqlite:///chemin).")
        problem = postgres_tls_problem(self.dsn)
        if problem:
            raise SettingsError(problem)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SettingsError("Serveur : --tls-cert et --tls-key vont ensemble.")
        if not self.tls and not self.loopback:
            raise SettingsError(
                f"Serveur : TLS obligatoire pour écouter sur {self.host} "
                "(--tls-cert et --tls-key) ; sans TLS, seulement sur la boucle locale "
                "(127.0.0.1 ou ::1)."
            )
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not path.is_file():
                raise SettingsError(f"Serveur : fichier TLS introuvable : {path}.")
        if not 0 < self.max_lease_s <= MAX_LEASE_S:
            raise SettingsError(
                f"Serveur : max_lease_s doit être positif et au plus {MAX_LEASE_S:.0f} s "
                "(la borne des files : le serveur peut seulement l'abaisser)."
            )
        if not 0 < self.lease_s <= self.max_lease_s:
            raise SettingsError("Serveur : lease_s doit être positif et au plus max_lease_s.")
        if self.test_clock_token and not self.loopback:
            raise SettingsError(
                f"Serveur : {TEST_CLOCK_ENV} (horloge de test) interdit hors boucle locale."
            )
        return self


def postgres_tls_problem(dsn: str) -> str:
    """A PostgreSQL server off this machine is reached with its certificate
    and name verified (``sslmode=verify-full``); "" when fine."""
    if not dsn.startswith(("postgresql://", "postgres://")):
        return ""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(dsn)
    except ProgrammingError:  # psycopg says what is wrong when it connects
        return ""
    hosts = [h for h in str(params.get("host") or "").split(",") if h]
    remote = [h for h in hosts if not h.startswith("/") and not is_loopback(h)]
    if remote and params.get("sslmode") != "verify-full":
        return (
            f"Serveur : la base PostgreSQL {remote[0]} est hors de cette machine : "
            "ajoutez sslmode=verify-full (et sslrootcert) à --dsn, le certificat et le nom "
            "du serveur de base sont alors vérifiés."
        )
    return ""


def sqlite_path(dsn: str) -> Path | None:
    """``sqlite:///abs/path`` (or ``sqlite:////abs/path``, or
    ``sqlite://relative/path``): the SQLite file; None for another DSN."""
    if not dsn.startswith("sqlite://"):
        return None
    rest = dsn.removeprefix("sqlite://")
    return Path(rest[1:] if rest.startswith("//") else rest)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT``."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise SettingsError(f"Serveur : --listen « {value} » invalide (attendu HOTE:PORT).")
    return host.strip("[]"), int(port)


_FLOAT_KEYS = {f.name for f in fields(ServerSettings) if f.type == "float"}
_INT_KEYS = {f.name for f in fields(ServerSettings) if f.type == "int"}
_TOML_KEYS = {f.name for f in fields(ServerSettings)} - {"host", "port", "test_clock_token"} | {
    "listen"
}


def from_toml(path: Path) -> ServerSettings:
    """The ``[server]`` table of a TOML file (other tables are ignored)."""
    try:  # the workstation's bounded reader: size, BOM, NUL, depth, huge integers
        raw = parse_toml(read_config_text(path), path)
    except ConfigError as exc:
        raise SettingsError(exc.message_fr) from None
    table = raw.get("server", {})
    if not isinstance(table, dict):
        raise SettingsError(f"Configuration ({path}) : [server] doit être une table.")
    values: dict[str, Any] = {}
    for key, value in table.items():
        where = f"Configuration ({path}) : [server] {key}"
        if key not in _TOML_KEYS:
            raise SettingsError(f"Configuration ({path}) : clé inconnue « {key} » dans [server].")
        if key == "listen":
            if not isinstance(value, str):
                raise SettingsError(f"{where} : texte HOTE:PORT attendu.")
            values["host"], values["port"] = parse_listen(value)
        elif key in ("tls_cert", "tls_key"):
            if not isinstance(value, str):
                raise SettingsError(f"{where} : chemin attendu.")
            values[key] = (path.parent / value).expanduser()
        elif key == "allow_superuser":
            if not isinstance(value, bool):
                raise SettingsError(f"{where} : true ou false attendu.")
            values[key] = value
        elif key in _FLOAT_KEYS or key in _INT_KEYS:
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise SettingsError(f"{where} : nombre positif attendu.")
            values[key] = int(value) if key in _INT_KEYS else float(value)
        else:
            if not isinstance(value, str):
                raise SettingsError(f"{where} : texte attendu.")
            values[key] = value
    return ServerSettings(**values)


def with_environment(settings: ServerSettings) -> ServerSettings:
    token = os.environ.get(TEST_CLOCK_ENV, "")
    return replace(settings, test_clock_token=token) if token else settings
