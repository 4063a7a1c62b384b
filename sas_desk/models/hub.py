"""Hub Santé messages: the EDXL-DE envelope, its RC-DE header, end-to-end
acknowledgements (RC-REF) and error reports (RS-ERROR).  Pure: no I/O.

What is built here follows ``reference/notes/hub-sante.md`` §1.5–1.7:

* ``distributionID`` = ``<senderID>_<uuid>``; the RC-DE ``messageId`` repeats it;
* every datetime has an explicit ``±hh:mm`` offset, never ``Z`` (UTC is written
  ``-00:00``, as the RC-DE schema text asks);
* ``distributionKind`` Report/Update/Cancel go to the recipient's ``.message``
  queue, Ack to ``.ack``, Error to ``.info``;
* an error message (``error`` body) carries no RC-DE header.

:func:`parse_envelope` reads what arrives, :func:`check_envelope` is our own
structural validation of what we build (the tests also validate every emitted
message against the national JSON Schemas).  Problems are reported in French
(:class:`HubMessageError`), naming the JSON path.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sas_desk.models.errors import KnownError
from sas_desk.models.limits import InputError, decode_json

__all__ = [
    "ACK_STEPS",
    "DISTRIBUTION_STATUSES",
    "ERROR_CODES",
    "FUNCTIONAL_KINDS",
    "HUB_ID",
    "KINDS",
    "MODELS",
    "Envelope",
    "HubMessageError",
    "ack_body",
    "build_envelope",
    "check_envelope",
    "error_body",
    "error_label",
    "hub_datetime",
    "model_of",
    "new_distribution_id",
    "parse_envelope",
    "queue_suffix",
]

HUB_ID = "fr.health.hub"  # the hub's own sender id (errors 1xx–5xx)
SCHEME = "hubex"
LANGUAGE = "fr-FR"
KINDS = ("Report", "Update", "Cancel", "Ack", "Error")
FUNCTIONAL_KINDS = frozenset({"Report", "Update", "Cancel"})
DISTRIBUTION_STATUSES = ("Actual", "Exercise")
HEADER_STATUSES = ("Actual", "Exercise", "System")
ACK_STEPS = ("RECU", "ERREUR", "INTEGRE", "CONSULTE", "SUPPRIME")

# use-case root key in ``message`` -> model name (EDXL-DE-full oneOf)
MODELS: dict[str, str] = {
    "createCaseHealth": "RS-EDA",
    "createCaseHealthUpdate": "RS-EDA-MAJ",
    "reference": "RC-REF",
    "error": "RS-ERROR",
    "appointment": "RS-SAS-RDV",
    "resourcesRequest": "RS-DR",
    "resourcesResponse": "RS-RR",
    "resourcesInfo": "RS-RI",
    "resourcesStatus": "RS-SR",
    "resourcesEngagement": "RS-ER",
    "createCase": "RC-EDA",
    "resourcesInfoCisu": "RC-RI",
    "emsi": "EMSI",
    "rpis": "RS-RPIS",
    "interventionReport": "RS-BPV",
    "documentLink": "RS-URL",
    "geoPositionsUpdate": "GEO-POS",
    "geoResourcesRequest": "GEO-REQ",
    "geoResourcesDetails": "GEO-RES",
    "technical": "TECHNICAL",
    "technicalNoreq": "TECHNICAL_NOREQ",
    "customContent": "customContent",
    "distributionElement": "RC-DE",
}
_ROOT_OF = {model: key for key, model in MODELS.items()}

# statusCode -> (statusString, French explanation for the operator)
ERROR_CODES: dict[int, tuple[str, str]] = {
    100: ("DELIVERY_MODE_INCONSISTENCY", "message non publié en mode persistant"),
    101: ("NOT_ALLOWED_CONTENT_TYPE", "type de contenu refusé"),
    102: ("UNRECOGNIZED_MESSAGE_FORMAT", "message illisible"),
    200: ("SENDER_INCONSISTENCY", "émetteur incohérent avec la clé de routage"),
    300: ("INVALID_MESSAGE", "message non conforme au modèle national"),
    301: ("SCHEMA_NOT_FOUND", "modèle introuvable côté Hub"),
    400: ("EXPIRED_MESSAGE_BEFORE_ROUTING", "message expiré avant son routage"),
    500: ("DEAD_LETTER_QUEUED", "message expiré ou rejeté chez le destinataire"),
    501: ("UNROUTABLE_MESSAGE", "destinataire inconnu du Hub"),
    600: ("MESSAGE_CONVERSION_ERROR", "conversion de version impossible"),
    700: ("INTERNAL_CLIENT_ERROR", "le partenaire n'a pas pu traiter le message"),
    701: ("CASE_ALREADY_EXISTS", "le dossier existe déjà chez le partenaire"),
    702: ("WRONG_MESSAGE_SEQUENCE", "mise à jour d'un dossier inconnu du partenaire"),
    703: ("UNKNOWN_SENDER", "émetteur inconnu du partenaire"),
    704: ("INSUFFICIENT_DATA", "données insuffisantes"),
    409: ("CONFLICT", "identifiant déjà connu (doublon)"),
}

_OFFSET_DT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[-+]\d{2}:\d{2}", re.ASCII)
_CLIENT_ID = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+", re.ASCII)
_ENVELOPE_KEYS = frozenset(
    {
        "distributionID",
        "senderID",
        "dateTimeSent",
        "dateTimeExpires",
        "distributionStatus",
        "distributionKind",
        "descriptor",
        "content",
    }
)
_HEADER_KEYS = ("messageId", "sender", "sentAt", "kind", "status", "recipient")


class HubMessageError(KnownError, ValueError):
    """A message that cannot be used; ``message_fr`` names the place."""

    def __init__(self, message_fr: str, path: str = "") -> None:
        super().__init__(message_fr)
        self.message_fr = message_fr
        self.path = path


def error_label(code: int) -> str:
    """``statusString`` of a known code, else ``ERROR``."""
    known = ERROR_CODES.get(code)
    return known[0] if known else "ERROR"


def is_client_id(text: str) -> bool:
    return bool(_CLIENT_ID.fullmatch(text))


def queue_suffix(kind: str) -> str:
    """Which recipient queue a ``distributionKind`` lands in."""
    return {"Ack": "ack", "Error": "info"}.get(kind, "message")


def hub_datetime(value: datetime) -> str:
    """``2026-12-07T16:04:05+01:00``: offset always written, seconds only,
    UTC as ``-00:00`` (never ``Z``).  A naive datetime is a programming error."""
    offset = value.utcoffset()
    if offset is None:
        raise ValueError(f"datetime sans fuseau horaire : {value!r}")
    if offset.seconds % 60 or offset.microseconds:
        value, offset = value.astimezone(UTC), timedelta(0)
    text = value.replace(microsecond=0).isoformat(timespec="seconds")
    return text[:-6] + "-00:00" if offset == timedelta(0) else text


def parse_hub_datetime(text: str, path: str) -> datetime:
    if not isinstance(text, str) or not _OFFSET_DT.fullmatch(text):
        raise HubMessageError(
            f"date « {path} » illisible : attendu AAAA-MM-JJThh:mm:ss±hh:mm (sans « Z »)", path
        )
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise HubMessageError(f"date « {path} » invalide (« {text} »)", path) from None


def new_distribution_id(client_id: str, unique: uuid.UUID | None = None) -> str:
    return f"{client_id}_{unique or uuid.uuid4()}"


def model_of(message: dict[str, Any]) -> tuple[str, str]:
    """(root key, model name) of the use case held by an RC-DE ``message``."""
    found = [k for k in message if k in MODELS]
    if len(found) != 1:
        what = "aucun" if not found else f"plusieurs ({', '.join(sorted(found))})"
        raise HubMessageError(
            f"contenu du message : {what} modèle reconnu", "content[0].jsonContent"
        )
    return found[0], MODELS[found[0]]


# --------------------------------------------------------------------------- building


def ack_body(
    distribution_id: str,
    *,
    step: str = "INTEGRE",
    refused: bool | None = None,
    error_distribution_id: str = "",
) -> dict[str, Any]:
    """RC-REF: the end-to-end acknowledgement of ``distribution_id``."""
    if step not in ACK_STEPS:
        raise ValueError(f"étape d'acquittement inconnue : {step}")
    ref: dict[str, Any] = {"distributionID": distribution_id, "step": step}
    if refused is not None:
        ref["refused"] = refused
    if error_distribution_id:
        ref["errorDistributionID"] = error_distribution_id
    return {"reference": ref}


def error_body(
    code: int,
    cause: str,
    referenced_id: str,
    source_message: dict[str, Any] | None = None,
    status_string: str = "",
) -> dict[str, Any]:
    """RS-ERROR: ``code`` (7xx between clients, 409 for an appointment conflict)."""
    err: dict[str, Any] = {
        "errorCode": {"statusCode": code, "statusString": status_string or error_label(code)},
        "errorCause": cause,
        "referencedDistributionID": referenced_id,
    }
    if source_message is not None:
        err["sourceMessage"] = source_message
    return {"error": err}


def build_envelope(
    *,
    sender: str,
    recipient: str,
    body: dict[str, Any],
    sent_at: datetime,
    expires_at: datetime,
    kind: str = "",
    distribution_id: str = "",
    status: str = "Actual",
    cc: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A complete EDXL-DE envelope around one use-case ``body`` (``{root: {...}}``).

    ``kind`` defaults from the body: Ack for ``reference``, Error for
    ``error``, else Report.  Acks carry RC-DE ``status = System`` (as the ANS
    example does); errors carry no RC-DE header.  The result passes
    :func:`check_envelope` (checked here: a bug must not leave the building).
    """
    root, _model = model_of(body)
    kind = kind or {"reference": "Ack", "error": "Error"}.get(root, "Report")
    if kind not in KINDS:
        raise ValueError(f"distributionKind inconnu : {kind}")
    if status not in DISTRIBUTION_STATUSES:
        raise ValueError(f"distributionStatus inconnu : {status}")
    distribution_id = distribution_id or new_distribution_id(sender)
    sent = hub_datetime(sent_at)
    if root == "error":
        message: dict[str, Any] = dict(body)
    else:
        message = {
            "messageId": distribution_id,
            "sender": {"name": sender, "URI": f"{SCHEME}:{sender}"},
            "sentAt": sent,
            "kind": kind,
            "status": "System" if kind == "Ack" else status,
            "recipient": [{"name": r, "URI": f"{SCHEME}:{r}"} for r in (recipient, *cc) if r],
            **body,
        }
    envelope = {
        "distributionID": distribution_id,
        "senderID": sender,
        "dateTimeSent": sent,
        "dateTimeExpires": hub_datetime(expires_at),
        "distributionStatus": status,
        "distributionKind": kind,
        "descriptor": {
            "language": LANGUAGE,
            "explicitAddress": {"explicitAddressScheme": SCHEME, "explicitAddressValue": recipient},
        },
        "content": [{"jsonContent": {"embeddedJsonContent": {"message": message}}}],
    }
    problems = check_envelope(envelope)
    if problems:
        raise ValueError("enveloppe construite invalide : " + " ; ".join(problems))
    return envelope


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Envelope:
    """What SAS Desk reads of a received envelope."""

    distribution_id: str
    sender_id: str
    recipient_id: str
    kind: str
    status: str
    sent_at: datetime
    expires_at: datetime
    root: str  # use-case key: createCaseHealth, appointment, reference, error…
    model: str  # RS-EDA, RS-SAS-RDV, RC-REF, RS-ERROR…
    message: dict[str, Any]  # the RC-DE ``message`` object
    raw: dict[str, Any]  # the whole envelope as received

    @property
    def body(self) -> dict[str, Any]:
        """The use-case object (``message[root]``)."""
        value: dict[str, Any] = self.message[self.root]
        return value

    @property
    def functional(self) -> bool:
        return self.kind in FUNCTIONAL_KINDS


def parse_envelope(data: bytes | str | dict[str, Any]) -> Envelope:
    """Read an envelope (bytes as received, text, or already decoded JSON).

    Raises :class:`HubMessageError` (French, with the path) when it is not
    JSON, not an EDXL-DE envelope, or breaks a rule the hub itself enforces
    (offsets, ``distributionID`` prefix, kinds, one recognised use case).
    Unknown members inside the use case are tolerated: the body is the
    partner's, its own checks happen where it is used.
    """
    if isinstance(data, bytes | str):
        try:
            decoded = decode_json(data)  # the house limits: depth, digits, NUL, NaN
        except InputError as exc:
            raise HubMessageError(f"message illisible : {exc.message_fr}") from None
    else:
        decoded = data
    problems = check_envelope(decoded, strict_header=False)
    if problems:
        raise HubMessageError("enveloppe EDXL-DE invalide : " + " ; ".join(problems[:5]))
    message = decoded["content"][0]["jsonContent"]["embeddedJsonContent"]["message"]
    root, model = model_of(message)
    if not isinstance(message[root], dict):
        raise HubMessageError(f"« {root} » doit être un objet JSON", root)
    return Envelope(
        distribution_id=decoded["distributionID"],
        sender_id=decoded["senderID"],
        recipient_id=decoded["descriptor"]["explicitAddress"]["explicitAddressValue"],
        kind=decoded["distributionKind"],
        status=decoded["distributionStatus"],
        sent_at=datetime.fromisoformat(decoded["dateTimeSent"]),
        expires_at=datetime.fromisoformat(decoded["dateTimeExpires"]),
        root=root,
        model=model,
        message=message,
        raw=decoded,
    )


def check_envelope(envelope: Any, *, strict_header: bool = True) -> list[str]:
    """Our own validation of an envelope: a list of French problems, empty
    when it is well formed.

    ``strict_header`` (what we build) also requires the RC-DE header on every
    non-error message, ``messageId`` = ``distributionID``, RC-DE ``kind`` =
    ``distributionKind`` and the use case's own required members.
    """
    if not isinstance(envelope, dict):
        return ["l'enveloppe n'est pas un objet JSON"]
    out: list[str] = []
    for key in sorted(_ENVELOPE_KEYS - set(envelope)):
        out.append(f"« {key} » manquant")
    for key in sorted(set(envelope) - _ENVELOPE_KEYS):
        out.append(f"« {key} » non permis dans l'enveloppe")
    if out:
        return out
    for key in ("distributionID", "senderID"):
        if not isinstance(envelope[key], str) or not envelope[key]:
            out.append(f"« {key} » doit être un texte non vide")
    if not out:
        sender, did = envelope["senderID"], envelope["distributionID"]
        if not did.startswith(sender + "_") or len(did) == len(sender) + 1:
            out.append(f"« distributionID » doit commencer par « {sender}_ »")
    for key in ("dateTimeSent", "dateTimeExpires"):
        value = envelope[key]
        if not isinstance(value, str) or not _OFFSET_DT.fullmatch(value):
            out.append(f"« {key} » : date attendue avec décalage ±hh:mm, sans « Z »")
    if envelope["distributionStatus"] not in DISTRIBUTION_STATUSES:
        out.append("« distributionStatus » doit valoir Actual ou Exercise")
    kind = envelope["distributionKind"]
    if kind not in KINDS:
        out.append("« distributionKind » inconnu (Report, Update, Cancel, Ack, Error)")
    out += _check_descriptor(envelope["descriptor"])
    content = envelope["content"]
    if not isinstance(content, list) or not content:
        return [*out, "« content » doit être une liste non vide"]
    node: Any = content[0]
    for key in ("jsonContent", "embeddedJsonContent", "message"):
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        return [*out, "« content[0].jsonContent.embeddedJsonContent.message » manquant"]
    try:
        root, _model = model_of(node)
    except HubMessageError as exc:
        return [*out, exc.message_fr]
    if root != "error" and (strict_header or any(k in node for k in _HEADER_KEYS)):
        out += _check_header(node, envelope, strict=strict_header)
    if strict_header:
        out += _check_body(root, node[root])
    return out


def _check_descriptor(descriptor: Any) -> list[str]:
    if not isinstance(descriptor, dict):
        return ["« descriptor » doit être un objet"]
    out = [
        f"« descriptor.{k} » non permis"
        for k in sorted(set(descriptor) - {"language", "explicitAddress"})
    ]
    if not isinstance(descriptor.get("language"), str):
        out.append("« descriptor.language » manquant")
    address = descriptor.get("explicitAddress")
    if not isinstance(address, dict):
        return [*out, "« descriptor.explicitAddress » manquant"]
    allowed = {"explicitAddressScheme", "explicitAddressValue"}
    out += [
        f"« descriptor.explicitAddress.{k} » non permis" for k in sorted(set(address) - allowed)
    ]
    for key in sorted(allowed):
        if not isinstance(address.get(key), str) or not address.get(key):
            out.append(f"« descriptor.explicitAddress.{key} » manquant")
    return out


def _check_header(message: dict[str, Any], envelope: dict[str, Any], *, strict: bool) -> list[str]:
    path = "message"
    out = [f"« {path}.{k} » (en-tête RC-DE) manquant" for k in _HEADER_KEYS if k not in message]
    if out:
        return out
    if not isinstance(message["messageId"], str):
        out.append(f"« {path}.messageId » doit être un texte")
    if not isinstance(message["sentAt"], str) or not _OFFSET_DT.fullmatch(message["sentAt"]):
        out.append(f"« {path}.sentAt » : date attendue avec décalage ±hh:mm, sans « Z »")
    if message["kind"] not in KINDS:
        out.append(f"« {path}.kind » inconnu")
    if message["status"] not in HEADER_STATUSES:
        out.append(f"« {path}.status » inconnu (Actual, Exercise, System)")
    for key, many in (("sender", False), ("recipient", True)):
        items = message[key] if many else [message[key]]
        if many and (not isinstance(items, list) or not items):
            out.append(f"« {path}.{key} » doit être une liste non vide")
            continue
        for item in items:
            if (
                not isinstance(item, dict)
                or set(item) != {"name", "URI"}
                or not all(isinstance(v, str) for v in item.values())
            ):
                out.append(f"« {path}.{key} » : attendu {{name, URI}}")
    if strict and not out:
        if message["messageId"] != envelope.get("distributionID"):
            out.append("« messageId » doit reprendre le distributionID")
        if message["kind"] != envelope.get("distributionKind"):
            out.append("« kind » doit reprendre le distributionKind")
    return out


_REQUIRED: dict[str, tuple[str, ...]] = {
    "createCaseHealth": ("caseId", "creation", "qualification", "location", "owner"),
    "createCaseHealthUpdate": ("caseId",),
    "reference": ("distributionID",),
    "error": ("errorCode", "errorCause", "referencedDistributionID"),
    "appointment": ("appointmentId", "method", "created", "start", "status", "regulator"),
}
_ALLOWED: dict[str, frozenset[str]] = {
    "reference": frozenset({"distributionID", "refused", "errorDistributionID", "step"}),
    "error": frozenset({"errorCode", "errorCause", "referencedDistributionID", "sourceMessage"}),
}


def _check_body(root: str, body: Any) -> list[str]:
    if not isinstance(body, dict):
        return [f"« {root} » doit être un objet"]
    out = [f"« {root}.{k} » manquant" for k in _REQUIRED.get(root, ()) if k not in body]
    allowed = _ALLOWED.get(root)
    if allowed is not None:
        out += [f"« {root}.{k} » non permis" for k in sorted(set(body) - allowed)]
    if root == "reference" and body.get("step", "INTEGRE") not in ACK_STEPS:
        out.append("« reference.step » inconnu")
    if root == "error":
        code = body.get("errorCode")
        if (
            not isinstance(code, dict)
            or set(code) != {"statusCode", "statusString"}
            or not isinstance(code.get("statusCode"), int | float)
            or isinstance(code.get("statusCode"), bool)
            or not isinstance(code.get("statusString"), str)
        ):
            out.append("« error.errorCode » : attendu {statusCode (nombre), statusString}")
    return out


def root_key(model: str) -> str:
    """Use-case key of a model name (``RS-EDA`` → ``createCaseHealth``)."""
    return _ROOT_OF[model]


def body_root(body: dict[str, Any]) -> str:
    """The use-case key of a bare body or of an RC-DE message."""
    return model_of(body)[0]


def unwrap(document: Any) -> tuple[dict[str, Any], Envelope | None]:
    """A file's content: an envelope (then parsed) or a bare body
    (``{"appointment": {...}}`` or an RC-DE ``{"message": {...}}``).
    Returns the ``message`` object holding the use case, and the envelope."""
    if isinstance(document, dict) and "content" in document and "distributionID" in document:
        env = parse_envelope(document)
        return env.message, env
    if isinstance(document, dict) and isinstance(document.get("message"), dict):
        document = document["message"]
    if not isinstance(document, dict):
        raise HubMessageError("le message n'est pas un objet JSON")
    model_of(document)
    return document, None
