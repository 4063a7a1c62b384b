"""Configuration: one TOML file.  No file means the embedded demo.

Lookup order: ``--config PATH`` (must exist and parse), else
``<user config dir>/sas-desk/config.toml`` if present, else the demo.  A bad
file is reported in French and the app refuses to start on a half-read
configuration (a room must know which servers it talks to).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs

from sas_desk.models.errors import KnownError
from sas_desk.models.limits import InputError, decode_utf8
from sas_desk.services.bounded import MAX_CONFIG_BYTES, read_bounded
from sas_desk.services.hub.settings import HubSettings, parse_hub

log = logging.getLogger("sas_desk.config")

APP_NAME = "sas-desk"
ROLES: dict[str, str] = {
    "ARM": "Assistant de régulation médicale",
    "OSNP": "Opérateur de soins non programmés",
    "MRU": "Médecin régulateur urgentiste",
    "MRL": "Médecin régulateur libéral",
    "DENT": "Chirurgien-dentiste régulateur",
    "SUP": "Superviseur de salle",
    "STATS": "Lecteur des statistiques",
}


class ConfigError(KnownError):
    def __init__(self, message_fr: str) -> None:
        super().__init__(message_fr)
        self.message_fr = message_fr


@dataclass(frozen=True)
class VendorEndpoint:
    """A scheduling vendor's FHIR endpoint (``[[vendors]]``), searched for slots.

    TLS: the server certificate is always verified (``ca`` adds the
    organisation's CA); ``client_cert``/``client_key`` give the mTLS client
    certificate the SAS interface requires."""

    name: str
    base_url: str
    client_cert: str = ""
    client_key: str = ""
    ca: str = ""
    timeout: float = 7.0


@dataclass(frozen=True)
class IdentitySettings:
    """``[identity]``: OpenID Connect login through the room server.

    Pro Santé Connect for physicians and dentists (``psc_mode``: ``code``, the
    system browser with a loopback redirect, or ``ciba``, approval on the e-CPS
    app), the establishment's provider for ARMs, OSNPs and supervisors.  The
    room server is the confidential client: its client secrets live in its
    keyring (service ``sas-desk``, user ``oidc:<issuer>``), never here."""

    psc_issuer: str = ""
    psc_client_id: str = ""
    psc_mode: str = "code"
    psc_acr: str = "eidas1"
    psc_scope: str = "openid scope_all"
    establishment_issuer: str = ""
    establishment_client_id: str = ""
    establishment_acr: str = ""  # empty: not checked
    establishment_scope: str = "openid profile"
    establishment_login_claim: str = "preferred_username"  # the claim naming the account

    @property
    def psc(self) -> bool:
        return bool(self.psc_issuer)

    @property
    def establishment(self) -> bool:
        return bool(self.establishment_issuer)


IDENTITY_MODES = ("code", "ciba")


def identity_settings(table: Any, path: Path) -> IdentitySettings:
    """Read and check an ``[identity]`` table; a bad value raises ``_Bad``
    (the loader adds the file and the line)."""
    if not isinstance(table, dict):
        raise ConfigError(f"Configuration ({path}) : [identity] doit être une section (table).")
    known = set(IdentitySettings.__dataclass_fields__)
    values: dict[str, str] = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"Configuration ({path}) : clé inconnue « {key} » dans [identity].")
        if not isinstance(value, str):
            raise _Bad("identity", key, "doit être un texte")
        values[key] = value.strip()
    identity = IdentitySettings(**values)
    for prefix in ("psc", "establishment"):
        if not getattr(identity, f"{prefix}_issuer"):
            continue
        if not _secure_url(getattr(identity, f"{prefix}_issuer")):
            raise _Bad(
                "identity",
                f"{prefix}_issuer",
                "doit être une adresse https:// (http:// seulement sur la boucle locale)",
            )
        if not getattr(identity, f"{prefix}_client_id"):
            raise _Bad("identity", f"{prefix}_client_id", f"est requis avec {prefix}_issuer")
        if "openid" not in getattr(identity, f"{prefix}_scope").split():
            raise _Bad("identity", f"{prefix}_scope", "doit contenir openid")
    if identity.psc_mode not in IDENTITY_MODES:
        raise _Bad("identity", "psc_mode", f"doit valoir code ou ciba (lu : {identity.psc_mode})")
    if not identity.establishment_login_claim:
        raise _Bad("identity", "establishment_login_claim", "ne peut être vide")
    return identity


def load_identity(path: Path) -> IdentitySettings:
    """The ``[identity]`` table of *path* alone (the room server's
    configuration file); :class:`ConfigError` naming file and line."""
    text = read_config_text(path)
    try:
        return identity_settings(parse_toml(text, path).get("identity", {}), path)
    except _Bad as bad:
        line = _line_of(text, bad.section, bad.key)
        raise _refused(
            path, f"ligne {line}" if line else "", f"[{bad.section}] {bad.key} {bad.detail}"
        ) from None


def _secure_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.scheme == "https" and parts.hostname:
        return True
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class Config:
    demo: bool = True
    source: Path | None = None
    data_dir: Path = field(default_factory=lambda: Path(platformdirs.user_data_dir(APP_NAME)))
    # organisation
    owner: str = "fr.health.samu690"  # Hub Santé id of the CRRA
    departement: str = "69"
    samu_letter: str = "A"
    # the room's time zone: every time is stamped and shown in it (overseas
    # centres set theirs, e.g. America/Cayenne, Indian/Reunion)
    timezone: str = "Europe/Paris"
    workstation: str = field(default_factory=socket.gethostname)
    operator: str = field(default_factory=lambda: os.environ.get("USER", "operateur"))
    role: str | None = None  # preset role; None = ask at start
    # geocoding (BAN /search); empty in demo = the built-in simulator
    geocoder_url: str = ""
    geocoder_timeout: float = 3.0
    # simulator (demo)
    simulator_port: int = 0  # 0 = any free port
    # the room server ([room]): empty url = the embedded queues, a SQLite file in
    # the data dir (one machine, no login)
    room_url: str = ""
    room_ca: str = ""  # the room's CA (PEM); empty = the system store
    room_workstation: str = ""  # the name the server knows; empty = ``workstation``
    lease_s: float = 120.0
    renew_s: float = 30.0
    wait_limits: tuple[float, float, float, float] = (
        60.0,
        300.0,
        1200.0,
        3600.0,
    )  # P0..P3, seconds

    # slot search: the vendors' FHIR endpoints and the directory feed
    # (none configured in the demo = the simulator's)
    vendors: tuple[VendorEndpoint, ...] = ()
    directory_url: str = ""
    search_per_vendor: int = 4  # requests in flight per vendor
    search_slow_s: float = 2.0  # a request older than this marks its vendor "slow"
    search_worker: bool = True  # searches run in a child process (False: in the window's)
    # the national platform's contextual search (INT_L01) and the map's tiles
    sas_platform_url: str = "https://sas.sante.fr"
    sas_origin: str = ""  # our identifier in the link; empty = the organisation's owner id
    # the map's base layer: ign (Plan IGN v2, default), url (tiles_url), simulateur, aucun
    # (see services/geo/basemap.py); offline, the simulator's map or a plain background
    map_source: str = "ign"
    map_tiles_url: str = ""  # XYZ template, e.g. https://tiles.samu69.local/{z}/{x}/{y}.png
    map_tiles_cache: str = ""  # empty = <data dir>/tiles
    map_attribution: str = ""  # the credit shown for tiles_url's tiles
    map_probe_timeout: float = 3.0  # seconds a tile has to answer before the fallback
    # login through Pro Santé Connect / the establishment's IdP ([identity])
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    # the screen lock and the end of shift ([session]): locked after
    # lock_after_s without input, a full login after reauth_after_s; at each
    # shift end ("HH:MM", the room's time) the session is closed
    lock_after_s: float = 300.0
    reauth_after_s: float = 1200.0
    shift_ends: tuple[str, ...] = ()
    # a transmitted dossier's local copy is purged once the room acknowledged
    # it and its last change is this old ([retention] local_days); the room
    # server keeps the medical record
    retention_days: float = 1.0

    @property
    def room_station(self) -> str:
        """The workstation's name for the room server."""
        return self.room_workstation or self.workstation

    @property
    def tiles_cache_path(self) -> Path:
        return (
            Path(self.map_tiles_cache).expanduser()
            if self.map_tiles_cache
            else (self.data_dir / "tiles")
        )

    # dental on-call rosters: HTTP(S) sources synced into DATA_DIR/rosters.sqlite
    roster_urls: tuple[str, ...] = ()
    roster_timeout: float = 20.0
    roster_sync_s: float = 3600.0  # the sources are fetched again this often (ETag: cheap)
    # Hub Santé (``[hub]``, see services/hub/settings.py); None = not connected
    hub: HubSettings | None = None

    @property
    def hub_path(self) -> Path:
        return self.data_dir / "hub.sqlite"

    @property
    def directory_path(self) -> Path:
        return self.data_dir / "directory.sqlite"

    @property
    def rosters_path(self) -> Path:
        return self.data_dir / "rosters.sqlite"

    @property
    def journal_path(self) -> Path:
        return self.data_dir / "journal.sqlite"

    @property
    def queues_path(self) -> Path:
        return self.data_dir / "queues.sqlite"

    @property
    def outbox_path(self) -> Path:
        return self.data_dir / "outbox.sqlite"


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def load_config(path: Path | None = None, data_dir: Path | None = None) -> Config:
    explicit = path is not None
    path = path or default_config_path()
    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if not path.exists():
        if explicit:
            raise ConfigError(f"Fichier de configuration introuvable : {path}")
        log.info("no configuration file, starting on the embedded demo")
        return Config(**overrides)
    text = read_config_text(path)
    try:
        return _from_toml(parse_toml(text, path), path, overrides)
    except _Bad as bad:
        line = _line_of(text, bad.section, bad.key)
        raise _refused(
            path, f"ligne {line}" if line else "", f"[{bad.section}] {bad.key} {bad.detail}"
        ) from None


def read_config_text(path: Path) -> str:
    """The file's text: bounded read, strict UTF-8 (a BOM, as Windows editors
    write, is accepted), no NUL."""
    try:
        return decode_utf8(read_bounded(path, MAX_CONFIG_BYTES))
    except InputError as exc:
        raise _refused(path, exc.where, exc.detail_fr, "illisible") from None


_TOML_AT = re.compile(r"(?P<what>.*?) \(at line (?P<line>\d+), column (?P<col>\d+)\)")


def parse_toml(text: str, path: Path) -> dict[str, Any]:
    """TOML, or :class:`ConfigError` naming the file and line (never a
    ``RecursionError`` or integer-size ``ValueError`` traceback)."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_AT.fullmatch(str(exc))
        if found is None:
            raise _refused(path, "", f"syntaxe TOML invalide ({exc})") from None
        raise _refused(
            path,
            f"ligne {found['line']}, colonne {found['col']}",
            f"syntaxe TOML invalide ({found['what']})",
        ) from None
    except RecursionError:
        raise _refused(path, "", "tableaux trop imbriqués") from None
    except ValueError:  # an integer longer than Python converts (4,300 digits)
        digits = re.search(r"\d{100,}", text)
        where = f"ligne {text.count(chr(10), 0, digits.start()) + 1}" if digits else ""
        raise _refused(path, where, "nombre démesuré") from None


def _refused(path: Path, where: str, detail: str, what: str = "invalide") -> ConfigError:
    head = f"{path}, {where}" if where else str(path)
    log.error("configuration refused: %s: %s", head, detail)
    return ConfigError(f"Configuration {what} ({head}) : {detail}.")


# section -> keys it may hold; anything else is a typo that must not be ignored
# (a misspelt ``url`` would silently start the demo simulator in a real room)
_KNOWN_KEYS: dict[str, frozenset[str]] = {
    "organisation": frozenset({"owner", "departement", "samu_letter", "timezone"}),
    "workstation": frozenset({"name", "operator", "role"}),
    "geocoder": frozenset({"url", "timeout"}),
    "demo": frozenset({"enabled", "simulator_port"}),
    "paths": frozenset({"data_dir"}),
    "search": frozenset(
        {"directory_url", "per_vendor", "slow_s", "worker", "sas_platform_url", "sas_origin"}
    ),
    "map": frozenset({"source", "tiles_url", "tiles_cache", "attribution", "probe_timeout"}),
    "rosters": frozenset({"urls", "timeout", "sync_every_s"}),
    "room": frozenset({"url", "ca", "workstation"}),
    "session": frozenset({"lock_after_min", "reauth_after_min", "shift_end"}),
    "retention": frozenset({"local_days"}),
    "queues": frozenset(
        {
            "lease_s",
            "renew_s",
            "wait_p0",
            "wait_p1",
            "wait_p2",
            "wait_p3",
        }
    ),
}


def _from_toml(raw: dict[str, Any], path: Path, overrides: dict[str, Any]) -> Config:
    values: dict[str, Any] = {"source": path}
    if "identity" in raw:
        values["identity"] = identity_settings(raw.pop("identity"), path)
    if "hub" in raw:
        hub = raw.pop("hub")
        if not isinstance(hub, dict):
            raise ConfigError(f"Configuration ({path}) : [hub] doit être une section (table).")
        try:
            values["hub"] = parse_hub(hub)
        except ValueError as exc:
            raise ConfigError(f"Configuration ({path}) : {exc}") from None
    if "vendors" in raw:
        values["vendors"] = _vendors(raw.pop("vendors"), path)
    _no_direct_database(raw, path)
    for section, content in raw.items():
        if section not in _KNOWN_KEYS:
            raise ConfigError(f"Configuration ({path}) : section inconnue [{section}].")
        if not isinstance(content, dict):
            raise ConfigError(
                f"Configuration ({path}) : [{section}] doit être une section (table)."
            )
        for key in content:
            if key not in _KNOWN_KEYS[section]:
                raise ConfigError(
                    f"Configuration ({path}) : clé inconnue « {key} » dans [{section}]."
                )
    org = raw.get("organisation", {})
    ws = raw.get("workstation", {})
    geo = raw.get("geocoder", {})
    demo = raw.get("demo", {})
    paths = raw.get("paths", {})
    queues = raw.get("queues", {})
    values["demo"] = not geo.get("url")
    _take(values, demo, "demo", bool, "demo", key="enabled")
    _take(values, org, "owner", str, "organisation")
    _take(values, org, "departement", str, "organisation")
    _take(values, org, "samu_letter", str, "organisation")
    _take(values, org, "timezone", str, "organisation")
    _take(values, ws, "workstation", str, "workstation", key="name")
    _take(values, ws, "operator", str, "workstation")
    _take(values, ws, "role", str, "workstation")
    _take(values, geo, "geocoder_url", str, "geocoder", key="url")
    _take(values, geo, "geocoder_timeout", float, "geocoder", key="timeout")
    _take(values, demo, "simulator_port", int, "demo")
    _take(values, paths, "data_dir", str, "paths")
    _take(values, queues, "lease_s", float, "queues")
    _take(values, queues, "renew_s", float, "queues")
    if "room" in raw:
        _room(values, raw["room"], demo)
    limits = list(Config.wait_limits)
    for i in range(4):
        one: dict[str, Any] = {}
        _take(one, queues, f"wait_p{i}", float, "queues")
        if f"wait_p{i}" in one:
            limits[i] = one[f"wait_p{i}"]
    values["wait_limits"] = tuple(limits)
    search = raw.get("search", {})
    _take(values, search, "directory_url", str, "search")
    _take(values, search, "search_per_vendor", int, "search", key="per_vendor")
    _take(values, search, "search_slow_s", float, "search", key="slow_s")
    _take(values, search, "search_worker", bool, "search", key="worker")
    _take(values, search, "sas_platform_url", str, "search")
    _take(values, search, "sas_origin", str, "search")
    tiles = raw.get("map", {})
    _take(values, tiles, "map_tiles_url", str, "map", key="tiles_url")
    _take(values, tiles, "map_tiles_cache", str, "map", key="tiles_cache")
    _take(values, tiles, "map_source", str, "map", key="source")
    _take(values, tiles, "map_attribution", str, "map", key="attribution")
    _take(values, tiles, "map_probe_timeout", float, "map", key="probe_timeout")
    if "source" not in tiles and values.get("map_tiles_url"):
        values["map_source"] = "url"  # a tile server given is the one wanted
    if values.get("map_source") == "url" and not values.get("map_tiles_url"):
        raise _Bad("map", "source", "vaut url : tiles_url est alors requis")
    rosters = raw.get("rosters", {})
    _take(values, rosters, "roster_timeout", float, "rosters", key="timeout")
    _take(values, rosters, "roster_sync_s", float, "rosters", key="sync_every_s")
    if "urls" in rosters:
        urls = rosters["urls"]
        if not isinstance(urls, list) or not all(
            isinstance(u, str) and u.startswith(("https://", "http://")) for u in urls
        ):
            raise ConfigError(
                f"Configuration ({path}) : [rosters] urls doit être une liste d'adresses http(s)."
            )
        values["roster_urls"] = tuple(urls)
    _session(values, raw.get("session", {}))
    _take(values, raw.get("retention", {}), "retention_days", float, "retention", key="local_days")
    if values.get("lease_s", Config.lease_s) <= values.get("renew_s", Config.renew_s):
        raise _Bad("queues", "lease_s", "doit dépasser renew_s")
    if "data_dir" in values:
        values["data_dir"] = Path(values["data_dir"]).expanduser()
    if values.get("role") and values["role"] not in ROLES:
        raise ConfigError(f"Configuration ({path}) : rôle inconnu « {values['role']} ».")
    if values.get("room_url"):
        _production(values, path)
    values.update(overrides)
    return Config(**values)


def _production(values: dict[str, Any], path: Path) -> None:
    """A workstation of a real room (``[room]``): every address in https
    (http only on this machine), and the mTLS client keys encrypted (their
    passphrase in the keyring, :func:`key_passphrase`)."""
    named = [
        ("geocoder", "url", values.get("geocoder_url", "")),
        ("search", "directory_url", values.get("directory_url", "")),
        ("search", "sas_platform_url", values.get("sas_platform_url", "")),
        ("map", "tiles_url", values.get("map_tiles_url", "")),
    ]
    named += [("rosters", "urls", url) for url in values.get("roster_urls", ())]
    for section, key, url in named:
        if url and not _secure_url(url.replace("{", "").replace("}", "")):
            raise _Bad(
                section, key, f"en http:// est refusé avec [room] : écrivez https:// ({url})"
            )
    hub = values.get("hub")
    hub_key = (hub.key or hub.cert) if hub is not None and hub.cert else ""
    if hub_key and unencrypted_key(Path(hub_key).expanduser()):
        raise ConfigError(
            f"Configuration ({path}) : [hub] la clé privée {hub_key} n'est pas chiffrée ; avec "
            "[room] elle doit l'être (openssl pkcs8 -topk8 -v2 aes-256-cbc), sa phrase de "
            f"passe dans le trousseau (service « {APP_NAME} », utilisateur « key:{hub_key} »)."
        )
    for n, vendor in enumerate(values.get("vendors", ()), start=1):
        where = f"Configuration ({path}) : [[vendors]] n° {n}"
        if not _secure_url(vendor.base_url):
            raise ConfigError(f"{where} : base_url en http:// est refusé avec [room].")
        if vendor.client_key and unencrypted_key(Path(vendor.client_key).expanduser()):
            raise ConfigError(
                f"{where} : la clé privée {vendor.client_key} n'est pas chiffrée ; avec [room] "
                "elle doit l'être (openssl pkcs8 -topk8 -v2 aes-256-cbc), sa phrase de passe "
                f"dans le trousseau (service « {APP_NAME} », utilisateur « key:"
                f"{vendor.client_key} »)."
            )


def unencrypted_key(path: Path) -> bool:
    """Whether a PEM file holds a private key in the clear (an unreadable
    file is not judged here: loading it says why)."""
    try:
        head = decode_utf8(read_bounded(path, 256 * 1024))
    except (InputError, OSError):
        return False
    if "-----BEGIN ENCRYPTED PRIVATE KEY-----" in head or "Proc-Type: 4,ENCRYPTED" in head:
        return False
    return re.search(r"-----BEGIN (?:RSA |EC |DSA )?PRIVATE KEY-----", head) is not None


def key_passphrase(key_path: str) -> str:
    """The passphrase of an encrypted client key, from the keyring (service
    ``sas-desk``, user ``key:<path as configured>``); "" when none."""
    try:
        import keyring

        return keyring.get_password(APP_NAME, f"key:{key_path}") or ""
    except Exception as exc:  # no usable keyring: the key cannot be opened
        log.warning("keyring unusable for a client key (%s)", type(exc).__name__)
        return ""


_SHIFT_END = re.compile(r"([01]\d|2[0-3]):[0-5]\d")


def _session(values: dict[str, Any], session: dict[str, Any]) -> None:
    """``[session]``: the screen lock's delays (minutes) and the shift ends."""
    minutes: dict[str, Any] = {}
    _take(minutes, session, "lock_after_min", float, "session")
    _take(minutes, session, "reauth_after_min", float, "session")
    lock = minutes.get("lock_after_min", Config.lock_after_s / 60)
    reauth = minutes.get("reauth_after_min", Config.reauth_after_s / 60)
    if reauth < lock:
        raise _Bad("session", "reauth_after_min", "doit valoir au moins lock_after_min")
    values["lock_after_s"], values["reauth_after_s"] = lock * 60, reauth * 60
    if "shift_end" in session:
        ends = session["shift_end"]
        if not isinstance(ends, list) or not all(
            isinstance(e, str) and _SHIFT_END.fullmatch(e) for e in ends
        ):
            raise _Bad(
                "session",
                "shift_end",
                'doit être une liste d\'heures "HH:MM" (ex. ["08:00", "20:00"])',
            )
        values["shift_ends"] = tuple(sorted(set(ends)))


_DIRECT_KEYS = ("dsn", "schema", "sslmode", "sslrootcert", "sslcert", "sslkey")


def _no_direct_database(raw: dict[str, Any], path: Path) -> None:
    """Workstations no longer reach the room's database: they go through
    the room server, which alone knows who acts."""
    queues = raw.get("queues")
    if not isinstance(queues, dict):
        return
    direct = [key for key in _DIRECT_KEYS if key in queues]
    if direct:
        raise _Bad(
            "queues",
            direct[0],
            "n'est plus accepté — les postes ne se connectent plus directement à la base "
            "des files, ils passent par le serveur de salle. Supprimez "
            + ", ".join(direct)
            + ' de [queues] et écrivez à la place :\n[room]\nurl = "https://…"   '
            "# l'adresse du serveur de salle (sas-desk server)\n"
            'ca = "/chemin/ac-salle.pem"   # si son certificat vient de l\'AC de '
            "l'établissement",
        )


def room_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be the room server's address (French, after
    "[room] url"), or None: HTTPS only, except on loopback (a server on this
    machine, tests)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "est illisible"
    if parts.scheme not in ("https", "http") or not host:
        return "doit être une adresse https://…"
    if parts.username or parts.password:
        return "ne doit contenir ni identifiant ni mot de passe"
    if parts.scheme == "http" and not is_loopback(host):
        return "en http:// (non chiffré) est refusé hors de ce poste : écrivez https://…"
    return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _room(values: dict[str, Any], room: dict[str, Any], demo: dict[str, Any]) -> None:
    """``[room]``: production mode.  The server's address (https, or http on
    loopback), its CA; the demo simulator is refused."""
    _take(values, room, "room_url", str, "room", key="url")
    _take(values, room, "room_ca", str, "room", key="ca")
    _take(values, room, "room_workstation", str, "room", key="workstation")
    url = values.get("room_url", "")
    if not url:
        raise _Bad("room", "url", 'est requis (url = "https://…")')
    problem = room_url_problem(url)
    if problem is not None:
        raise _Bad("room", "url", problem)
    if values.get("room_ca"):
        values["room_ca"] = str(Path(values["room_ca"]).expanduser())
    if demo.get("enabled") is True:
        raise _Bad(
            "demo",
            "enabled",
            "= true est refusé avec [room] (poste de production : pas de simulateur "
            "de démonstration)",
        )
    values["demo"] = False


def _take(
    values: dict[str, Any], section: dict[str, Any], attr: str, kind: type, name: str, key: str = ""
) -> None:
    key = key or attr
    if key not in section:
        return
    value = section[key]
    # TOML booleans are Python ints: ``timeout = true`` is not a number
    if isinstance(value, bool) and kind is not bool:
        raise _Bad(name, key, f"doit être de type {kind.__name__}")
    if kind is float and isinstance(value, int):
        value = float(value)
    if not isinstance(value, kind):
        raise _Bad(name, key, f"doit être de type {kind.__name__}")
    if isinstance(value, str) and _CONTROL.search(value):
        raise _Bad(name, key, "ne doit pas contenir de caractère de contrôle (NUL, tabulation…)")
    rule = _RULES.get((name.split(" n° ")[0], key))
    problem = rule(value) if rule is not None else ""
    if problem:
        raise _Bad(name, key, problem)
    values[attr] = value


class _Bad(Exception):
    """A setting is refused: *section*, *key* and the French reason; the
    loader adds the file and the line."""

    def __init__(self, section: str, key: str, detail: str) -> None:
        super().__init__(f"[{section}] {key} {detail}")
        self.section, self.key, self.detail = section, key, detail


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value).replace(".", ",")


def _between(low: float, high: float, unit: str = "", above: bool = False) -> Rule:
    """*low* ≤ value ≤ *high* (or *low* < value with *above*); NaN is refused."""
    u = f" {unit}" if unit else ""

    def rule(value: Any) -> str:
        ok = (low < value if above else low <= value) and value <= high
        if ok:  # False for NaN as well
            return ""
        if above and low == 0:
            return f"doit être positif et au plus {_number(high)}{u} (lu : {value})"
        return (
            f"doit valoir au moins {_number(low)}{u} et au plus {_number(high)}{u} (lu : {value})"
        )

    return rule


def _http_url(value: Any) -> str:
    if not value:
        return ""
    parts = urlsplit(str(value))
    if parts.scheme in ("http", "https") and parts.netloc:
        return ""
    return "doit être une adresse http(s)"


def _time_zone(value: Any) -> str:
    try:
        ZoneInfo(str(value))
    except (ValueError, ZoneInfoNotFoundError):
        return (
            "doit être un fuseau horaire IANA (ex. Europe/Paris, America/Cayenne, Indian/Reunion)"
        )
    return ""


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _pattern(regex: str, what: str) -> Rule:
    compiled = re.compile(regex)

    def rule(value: Any) -> str:
        return "" if compiled.fullmatch(str(value)) else f"doit être {what}"

    return rule


Rule = Callable[[Any], str]

DAY_S = 86_400.0
# (section, key) -> rule: every number has a range, every URL a scheme.
_RULES: dict[tuple[str, str], Rule] = {
    ("organisation", "owner"): _pattern(
        r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+){0,9}",
        "un identifiant Hub Santé (ex. fr.health.samu690)",
    ),
    ("organisation", "departement"): _pattern(
        r"\d{2}|2[AB]|97[1-6]", "un code de département (69, 2A, 974…)"
    ),
    ("organisation", "samu_letter"): _pattern(r"[A-Z]", "une lettre majuscule"),
    ("organisation", "timezone"): _time_zone,
    ("workstation", "name"): _pattern(r"\S.{0,62}", "un nom de 1 à 63 caractères"),
    ("workstation", "operator"): _pattern(r"\S.{0,62}", "un nom de 1 à 63 caractères"),
    ("geocoder", "url"): _http_url,
    ("session", "lock_after_min"): _between(1, 60, "minutes"),
    ("retention", "local_days"): _between(0.01, 30, "jours"),
    ("session", "reauth_after_min"): _between(1, 24 * 60, "minutes"),
    ("geocoder", "timeout"): _between(0, 120, "secondes", above=True),
    ("demo", "simulator_port"): _between(0, 65535),
    ("queues", "lease_s"): _between(5, DAY_S, "secondes"),
    ("queues", "renew_s"): _between(1, 3600, "secondes"),
    **{("queues", f"wait_p{i}"): _between(0, 7 * DAY_S, "secondes", above=True) for i in range(4)},
    ("search", "directory_url"): _http_url,
    ("search", "per_vendor"): _between(1, 64),
    ("search", "slow_s"): _between(0, 60, "secondes", above=True),
    ("search", "sas_platform_url"): _http_url,
    ("map", "tiles_url"): _http_url,
    ("map", "source"): _pattern(r"ign|url|simulateur|aucun", "ign, url, simulateur ou aucun"),
    ("map", "attribution"): _pattern(r".{0,120}", "un texte de 120 caractères au plus"),
    ("map", "probe_timeout"): _between(0, 30, "secondes", above=True),
    ("rosters", "timeout"): _between(0, 600, "secondes", above=True),
    ("rosters", "sync_every_s"): _between(60, 7 * DAY_S, "secondes"),
    ("vendors", "base_url"): _http_url,
    ("vendors", "timeout"): _between(0, 120, "secondes", above=True),
}


def _line_of(text: str, section: str, key: str) -> int | None:
    """Line of ``key =`` in ``[section]`` (or the n-th ``[[vendors]]``), if written so."""
    table, _, nth = section.partition(" n° ")
    wanted = int(nth) if nth.isdigit() else 1
    seen = 0
    inside = False
    assign = re.compile(rf"""\s*(?:{re.escape(key)}|"{re.escape(key)}"|'{re.escape(key)}')\s*=""")
    for number, line in enumerate(text.splitlines(), start=1):
        header = re.match(r"\s*(\[\[?)\s*([^\]]+?)\s*\]", line)
        if header:
            if header.group(1) == "[[":
                seen += header.group(2) == table
                inside = header.group(2) == table and seen == wanted
            else:
                inside = header.group(2) == table
        elif inside and assign.match(line):
            return number
    return None


_VENDOR_KEYS = frozenset({"name", "base_url", "client_cert", "client_key", "ca", "timeout"})


def _vendors(raw: Any, path: Path) -> tuple[VendorEndpoint, ...]:
    """``[[vendors]]`` tables: name and https base URL required, unique names."""
    if not isinstance(raw, list) or not all(isinstance(v, dict) for v in raw):
        raise ConfigError(f"Configuration ({path}) : [[vendors]] doit être une liste de tables.")
    out: list[VendorEndpoint] = []
    for n, table in enumerate(raw, start=1):
        where = f"[[vendors]] n° {n}"
        unknown = sorted(set(table) - _VENDOR_KEYS)
        if unknown:
            raise ConfigError(
                f"Configuration ({path}) : clé inconnue « {unknown[0]} » dans {where}."
            )
        values: dict[str, Any] = {}
        for key in ("name", "base_url", "client_cert", "client_key", "ca"):
            _take(values, table, key, str, f"vendors n° {n}")
        _take(values, table, "timeout", float, f"vendors n° {n}")
        if not values.get("name") or not values.get("base_url"):
            raise ConfigError(f"Configuration ({path}) : {where} : name et base_url sont requis.")
        if bool(values.get("client_cert")) != bool(values.get("client_key")):
            raise ConfigError(
                f"Configuration ({path}) : {where} : client_cert et client_key vont ensemble."
            )
        if any(v.name == values["name"] for v in out):
            raise ConfigError(
                f"Configuration ({path}) : deux éditeurs portent le nom « {values['name']} »."
            )
        out.append(VendorEndpoint(**values))
    return tuple(out)
