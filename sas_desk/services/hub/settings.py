"""The ``[hub]`` section of the configuration (Hub Santé connection).

```toml
[hub]
url = "amqps://messaging.hub.esante.gouv.fr:5671/15-15_v2.0"   # the vhost is the path
client_id = "fr.health.samu690"
cert = "/etc/sas-desk/hub/client.pem"     # IGC Santé client certificate (EXTERNAL auth)
key = "/etc/sas-desk/hub/client.key"
ca = "/etc/sas-desk/hub/igc-sante-chain.pem"
exchange = "hubsante"                     # default
partners = ["fr.health.samu380", "fr.health.ptfsas"]
passive = true                            # declare queues passively (no configure right)
status = "Actual"                         # or "Exercise" (training rooms)

[hub.expiry]                              # seconds before dateTimeExpires, per model
RS-EDA = 3600
RC-REF = 600
```

``amqps://`` needs ``cert`` and ``key`` (the broker maps the certificate's CN
to the user: no password).  Plain ``amqp://`` is refused except on loopback
(development and tests with a local RabbitMQ).  Parsing raises
:class:`ValueError` with a French message; ``config.py`` names the file.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from sas_desk.models.hub import DISTRIBUTION_STATUSES, is_client_id

# seconds between dateTimeSent and dateTimeExpires, per model (``[hub.expiry]``)
DEFAULT_EXPIRY_S: dict[str, int] = {
    "RS-EDA": 3600,
    "RS-EDA-MAJ": 3600,
    "RC-REF": 3600,
    "RS-ERROR": 86400,
    "RS-SAS-RDV": 240,  # the SAS IG's example: 4 minutes, real-time flow
    "RS-DR": 3600,
    "RS-RR": 3600,
}
KEYS = frozenset(
    {
        "url",
        "client_id",
        "cert",
        "key",
        "ca",
        "exchange",
        "partners",
        "passive",
        "status",
        "expiry",
        "heartbeat_s",
    }
)


@dataclass(frozen=True)
class HubSettings:
    url: str
    client_id: str
    cert: str = ""
    key: str = ""
    ca: str = ""
    exchange: str = "hubsante"
    partners: tuple[str, ...] = ()
    passive: bool = True
    status: str = "Actual"
    heartbeat_s: int = 30
    expiry_s: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_EXPIRY_S))

    def expiry_for(self, model: str) -> int:
        return self.expiry_s.get(model, DEFAULT_EXPIRY_S.get(model, 3600))

    @property
    def tls(self) -> bool:
        return self.url.startswith("amqps://")

    @property
    def vhost(self) -> str:
        path = urlsplit(self.url).path
        return unquote(path[1:]) if len(path) > 1 else "/"

    @property
    def safe_url(self) -> str:
        """The URL without credentials, for logs and status lines."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"


def parse_hub(raw: dict[str, Any]) -> HubSettings:
    """Read ``[hub]``; raises :class:`ValueError` (French) on any bad value."""
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise ValueError(f"clé inconnue « {unknown[0]} » dans [hub]")
    values: dict[str, Any] = {}
    for key in ("url", "client_id", "cert", "key", "ca", "exchange", "status"):
        if key in raw:
            if not isinstance(raw[key], str):
                raise ValueError(f"[hub] {key} doit être un texte")
            values[key] = raw[key].strip()
    if not values.get("url") or not values.get("client_id"):
        raise ValueError("[hub] url et client_id sont requis")
    url = values["url"]
    parts = urlsplit(url)
    if parts.scheme not in ("amqps", "amqp") or not parts.hostname:
        raise ValueError(
            f"[hub] url doit être une adresse amqps://hôte:5671/vhost (lu : {parts.scheme or url})"
        )
    if parts.scheme == "amqp" and not _loopback(parts.hostname):
        raise ValueError(
            "[hub] url : amqp:// sans TLS n'est permis qu'en local (127.0.0.1) ; utilisez amqps://"
        )
    try:
        _ = parts.port
    except ValueError:
        raise ValueError("[hub] url : port invalide") from None
    if not is_client_id(values["client_id"]):
        raise ValueError(
            f"[hub] client_id « {values['client_id']} » invalide (ex. fr.health.samu690)"
        )
    if parts.scheme == "amqps" and not (values.get("cert") and values.get("key")):
        raise ValueError(
            "[hub] cert et key (certificat client IGC Santé) sont requis avec amqps://"
        )
    if bool(values.get("cert")) != bool(values.get("key")):
        raise ValueError("[hub] cert et key vont ensemble")
    if values.get("status", "Actual") not in DISTRIBUTION_STATUSES:
        raise ValueError("[hub] status doit valoir Actual ou Exercise")
    if "exchange" in values and not values["exchange"]:
        raise ValueError("[hub] exchange ne peut pas être vide")
    if "passive" in raw:
        if not isinstance(raw["passive"], bool):
            raise ValueError("[hub] passive doit valoir true ou false")
        values["passive"] = raw["passive"]
    if "heartbeat_s" in raw:
        beat = raw["heartbeat_s"]
        if isinstance(beat, bool) or not isinstance(beat, int) or not 0 <= beat <= 600:
            raise ValueError("[hub] heartbeat_s doit être un entier entre 0 et 600")
        values["heartbeat_s"] = beat
    if "partners" in raw:
        partners = raw["partners"]
        if not isinstance(partners, list) or not all(
            isinstance(p, str) and is_client_id(p) for p in partners
        ):
            raise ValueError(
                "[hub] partners doit être une liste d'identifiants (fr.health.samuXXX)"
            )
        values["partners"] = tuple(partners)
    expiry = dict(DEFAULT_EXPIRY_S)
    if "expiry" in raw:
        table = raw["expiry"]
        if not isinstance(table, dict):
            raise ValueError("[hub.expiry] doit être une table « modèle = secondes »")
        for model, seconds in table.items():
            if model not in DEFAULT_EXPIRY_S:
                raise ValueError(f"[hub.expiry] modèle inconnu « {model} »")
            if (
                isinstance(seconds, bool)
                or not isinstance(seconds, int)
                or not 1 <= seconds <= 86400
            ):
                raise ValueError(f"[hub.expiry] {model} : entier de 1 à 86400 secondes attendu")
            expiry[model] = seconds
    values["expiry_s"] = expiry
    return HubSettings(**values)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
