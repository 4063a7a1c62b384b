"""Hub Santé envelope (EDXL-DE + RC-DE), RC-REF and RS-ERROR: what we build
validates against the national schemas; what we read is checked like the hub
does.  Pure: no broker."""

from __future__ import annotations

import copy
import json
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from sas_desk.models import hub
from sas_desk.models.hub import HubMessageError
from sas_desk.models.rseda import from_rseda, to_rseda
from tests.reference import load_example, schema_errors, schema_validator

pytestmark = pytest.mark.reference

PARIS = timezone(timedelta(hours=1))
T0 = datetime(2026, 12, 7, 16, 4, 5, tzinfo=PARIS)
ME, PARTNER = "fr.health.samu690", "fr.health.samu380"
OFFSET = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[-+]\d{2}:\d{2}")

BODIES = [
    "RS-EDA_partageDossier_DidierMorel.01a.json",
    "RS-EDA-MAJ_partageDossier_MonsieurX.02b.json",
    "RS-SAS-RDV_appointment_PS.01.json",
    "RS-DR_partageRessources_LolaHalimi.03a.json",
    "RS-RR_partageRessources_EnfantsNguyen.04b.json",
    "RC-REF.json",
    "RS-ERROR.json",
]


def full_errors(envelope: dict[str, Any]) -> list[str]:
    return schema_errors(schema_validator("EDXL-DE-full.schema.json"), envelope)


def envelope(body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "sender": ME,
        "recipient": PARTNER,
        "body": body,
        "sent_at": T0,
        "expires_at": T0 + timedelta(hours=1),
    }
    args.update(kw)
    return hub.build_envelope(**args)


@pytest.mark.parametrize("name", BODIES)
def test_every_official_body_enveloped_by_us_validates(name: str) -> None:
    built = envelope(load_example(name))
    assert full_errors(built) == []
    assert hub.check_envelope(built) == []
    root = next(iter(load_example(name)))
    message = built["content"][0]["jsonContent"]["embeddedJsonContent"]["message"]
    assert message[root] == load_example(name)[root]
    if root == "error":
        assert "messageId" not in message  # errors carry no RC-DE header
        assert built["distributionKind"] == "Error"
    else:
        assert message["messageId"] == built["distributionID"]
        assert message["kind"] == built["distributionKind"]
        assert message["sender"] == {"name": ME, "URI": f"hubex:{ME}"}
        assert message["recipient"] == [{"name": PARTNER, "URI": f"hubex:{PARTNER}"}]


def test_envelope_fields_follow_the_hub_rules() -> None:
    unique = uuid.UUID("2608323d-507d-4cbf-bf74-52007f8124ea")
    built = envelope(
        to_rseda(from_rseda(load_example(BODIES[0]))),
        distribution_id=hub.new_distribution_id(ME, unique),
    )
    assert built["distributionID"] == f"{ME}_{unique}"
    assert built["senderID"] == ME
    assert built["distributionKind"] == "Report"
    assert built["distributionStatus"] == "Actual"
    assert built["descriptor"] == {
        "language": "fr-FR",
        "explicitAddress": {"explicitAddressScheme": "hubex", "explicitAddressValue": PARTNER},
    }
    assert built["dateTimeSent"] == "2026-12-07T16:04:05+01:00"
    assert built["dateTimeExpires"] == "2026-12-07T17:04:05+01:00"
    assert "Z" not in json.dumps({k: built[k] for k in ("dateTimeSent", "dateTimeExpires")})
    assert set(built) == {
        "distributionID",
        "senderID",
        "dateTimeSent",
        "dateTimeExpires",
        "distributionStatus",
        "distributionKind",
        "descriptor",
        "content",
    }
    assert full_errors(built) == []


def test_utc_is_written_minus_zero_never_z() -> None:
    at = datetime(2026, 12, 7, 15, 4, 5, 123456, tzinfo=UTC)
    assert hub.hub_datetime(at) == "2026-12-07T15:04:05-00:00"
    built = envelope(hub.ack_body(f"{PARTNER}_x"), sent_at=at, expires_at=at + timedelta(1))
    assert built["dateTimeSent"] == "2026-12-07T15:04:05-00:00"
    message = built["content"][0]["jsonContent"]["embeddedJsonContent"]["message"]
    assert message["sentAt"] == "2026-12-07T15:04:05-00:00"
    assert full_errors(built) == []
    with pytest.raises(ValueError):
        hub.hub_datetime(datetime(2026, 12, 7, 15, 4, 5))


def test_ack_is_rc_ref_integre_with_system_status_on_the_ack_queue() -> None:
    acked = f"{PARTNER}_2607723d-507d-4cbf-bf74-12345f7064cd"
    built = envelope(hub.ack_body(acked), status="Exercise")
    message = built["content"][0]["jsonContent"]["embeddedJsonContent"]["message"]
    assert built["distributionKind"] == "Ack"
    assert built["distributionStatus"] == "Exercise"  # the acked message's status
    assert message["kind"] == "Ack" and message["status"] == "System"
    assert message["reference"] == {"distributionID": acked, "step": "INTEGRE"}
    assert hub.queue_suffix(built["distributionKind"]) == "ack"
    assert full_errors(built) == []
    refused = hub.ack_body(acked, step="ERREUR", refused=True, error_distribution_id=f"{ME}_e")
    assert full_errors(envelope(refused)) == []
    assert schema_errors(schema_validator("RC-REF.schema.json"), refused["reference"]) == []
    with pytest.raises(ValueError):
        hub.ack_body(acked, step="LU")


@pytest.mark.parametrize("code", [701, 702, 704, 409, 700, 1234])
def test_client_errors_validate_and_go_to_the_info_queue(code: int) -> None:
    source = envelope(load_example(BODIES[1]))
    body = hub.error_body(code, "cause en français", source["distributionID"], source)
    built = envelope(body)
    assert built["distributionKind"] == "Error"
    assert hub.queue_suffix("Error") == "info"
    err = built["content"][0]["jsonContent"]["embeddedJsonContent"]["message"]["error"]
    assert err["errorCode"]["statusCode"] == code
    assert err["errorCode"]["statusString"] == (hub.error_label(code))
    assert full_errors(built) == []
    assert schema_errors(schema_validator("RS-ERROR.schema.json"), err) == []
    assert hub.error_label(702) == "WRONG_MESSAGE_SEQUENCE"
    assert hub.error_label(1234) == "ERROR"


def test_the_official_full_envelope_parses() -> None:
    raw = load_example("EDXL-DE_full-envelope_RC-EDA.json")
    env = hub.parse_envelope(json.dumps(raw).encode())
    assert env.distribution_id == raw["distributionID"]
    assert (env.sender_id, env.recipient_id) == ("fr.health.samuA", "fr.health.samuB")
    assert (env.kind, env.root, env.model) == ("Report", "createCase", "RC-EDA")
    assert env.functional
    assert env.sent_at == datetime(2022, 7, 25, 10, 4, 34, tzinfo=PARIS)
    assert env.body["caseId"] == "fr.health.samu690.DRFR15690240430050"


def test_what_we_build_parses_back() -> None:
    built = envelope(load_example(BODIES[2]), kind="Update")
    env = hub.parse_envelope(json.dumps(built))
    assert (env.kind, env.model, env.root) == ("Update", "RS-SAS-RDV", "appointment")
    assert env.body == load_example(BODIES[2])["appointment"]
    assert env.expires_at - env.sent_at == timedelta(hours=1)


# rules the hub enforces beyond the JSON Schema (its format "date-time" accepts "Z")
HUB_ONLY = {"distributionID", "dateTimeSent", "plusieurs"}  # ours: one use case only


def _broken(mutate: Any) -> dict[str, Any]:
    built = envelope(load_example(BODIES[0]))
    mutate(built)
    return built


def _message(e: dict[str, Any]) -> dict[str, Any]:
    msg: dict[str, Any] = e["content"][0]["jsonContent"]["embeddedJsonContent"]["message"]
    return msg


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda e: e.pop("senderID"), "senderID"),
        (lambda e: e.update(keyword=[]), "keyword"),
        (lambda e: e.update(distributionID="fr.health.other_1"), "distributionID"),
        (lambda e: e.update(dateTimeSent="2026-12-07T15:04:05Z"), "dateTimeSent"),
        (lambda e: e.update(distributionKind="Notice"), "distributionKind"),
        (lambda e: e.update(distributionStatus="Test"), "distributionStatus"),
        (lambda e: e["descriptor"].update(extra=1), "descriptor.extra"),
        (
            lambda e: e["descriptor"]["explicitAddress"].pop("explicitAddressValue"),
            "explicitAddressValue",
        ),
        (lambda e: e.update(content=[]), "content"),
        (lambda e: _message(e).pop("createCaseHealth"), "modèle"),
        (lambda e: _message(e).update(appointment={}), "plusieurs"),
        (lambda e: _message(e).update(sentAt="hier"), "sentAt"),
    ],
)
def test_bad_envelopes_are_refused_in_french_naming_the_field(mutate: Any, expected: str) -> None:
    bad = _broken(mutate)
    problems = hub.check_envelope(bad)
    assert problems and any(expected in p for p in problems), problems
    with pytest.raises(HubMessageError) as caught:
        hub.parse_envelope(bad)
    assert expected in caught.value.message_fr
    if expected not in HUB_ONLY:
        assert full_errors(bad) != []  # the national schema agrees


def test_strict_check_of_our_own_header() -> None:
    built = envelope(load_example(BODIES[0]))
    _message(built)["messageId"] = "autre"
    assert any("messageId" in p for p in hub.check_envelope(built))
    assert hub.check_envelope(built, strict_header=False) == []
    no_header = copy.deepcopy(built)
    for key in ("messageId", "sender", "sentAt", "kind", "status", "recipient"):
        _message(no_header).pop(key)
    assert any("RC-DE" in p for p in hub.check_envelope(no_header))
    assert full_errors(no_header) != []


def test_unreadable_bytes() -> None:
    with pytest.raises(HubMessageError) as caught:
        hub.parse_envelope(b"\xff{not json")
    assert "illisible" in caught.value.message_fr
    with pytest.raises(HubMessageError):
        hub.parse_envelope(b"[1, 2]")


def test_unwrap_accepts_enveloped_and_bare_bodies() -> None:
    bare = load_example(BODIES[2])
    message, env = hub.unwrap(bare)
    assert env is None and message == bare
    message, env = hub.unwrap({"message": bare})
    assert env is None and "appointment" in message
    built = envelope(bare)
    message, env = hub.unwrap(built)
    assert (
        env is not None
        and env.model == "RS-SAS-RDV"
        and message["appointment"] == bare["appointment"]
    )
    with pytest.raises(HubMessageError):
        hub.unwrap({"nothing": 1})


def test_building_refuses_what_would_not_validate() -> None:
    with pytest.raises(ValueError):
        envelope({"reference": {}})  # distributionID required
    with pytest.raises(ValueError):
        envelope(load_example(BODIES[0]), kind="Notice")
    with pytest.raises(ValueError):
        envelope(load_example(BODIES[0]), status="Test")
    assert OFFSET.fullmatch(envelope(load_example(BODIES[0]))["dateTimeSent"])
