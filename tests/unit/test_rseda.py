"""RS-EDA (createCaseHealth) export and import: schema validity, official
example round trip, errors, and variants.  Pure: no Qt."""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from jsonschema import Draft7Validator

from sas_desk.models.dossier import (
    Branch,
    Caller,
    Decision,
    Dossier,
    Location,
    Note,
    Patient,
    Status,
)
from sas_desk.models.rseda import (
    SCHEMA_ENUMS,
    format_datetime,
    from_rseda,
    parse_datetime,
    to_rseda,
)
from sas_desk.models.validation import ValidationError
from tests.reference import load_example, schema_errors, schema_validator

EXAMPLE = "RS-EDA_partageDossier_DidierMorel.01a.json"
PARIS = timezone(timedelta(hours=2))
T0 = datetime(2026, 7, 14, 21, 30, 12, tzinfo=PARIS)
OWNER = "fr.health.samu690"
LOCAL = "DRFR1569A2619500012"
CASE_ID = f"{OWNER}.{LOCAL}"
PATIENT_ID = f"{OWNER}.patient.{LOCAL}.1"

# Paths of the official example that SAS Desk does not model (the caller's
# split name: the Caller dataclass only keeps the complete name).
UNMODELED = {
    ("initialAlert", "caller", "detailedName", "lastName"),
    ("initialAlert", "caller", "detailedName", "firstName"),
}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def validator() -> Draft7Validator:
    return schema_validator("RS-EDA.schema.json")


@pytest.fixture(scope="module")
def example() -> dict[str, Any]:
    return load_example(EXAMPLE)


def assert_valid(validator: Draft7Validator, message: dict[str, Any]) -> None:
    assert set(message) == {"createCaseHealth"}
    errors = schema_errors(validator, message["createCaseHealth"])
    assert not errors, "RS-EDA invalide :\n" + "\n".join(errors)


# --------------------------------------------------------------------------- builders


def minimal_draft() -> Dossier:
    return Dossier(case_id=CASE_ID, created_at=T0, owner=OWNER)


def full_dossier() -> Dossier:
    """Every modeled field set, in canonical form (E.164 numbers, explicit ids,
    chronological notes, no microseconds) so that it round-trips exactly."""
    return Dossier(
        case_id=CASE_ID,
        created_at=T0,
        owner=OWNER,
        sender_case_id=LOCAL,
        received_at=T0 - timedelta(seconds=40),
        caller=Caller(
            callback="+33612345678",
            caller_type="FAMILLE",
            channel="PERSONNE",
            name="Jeanne Martin",
            language="fr",
            communication="PANIQUE",
            freetext="fille de la patiente",
            contact_detail="+33478000000",
        ),
        patient=Patient(
            patient_id=PATIENT_ID,
            age="P82Y",
            birth_date="1944-03-02",
            sex="F",
            last_name="Martin",
            first_name="Paulette",
            complete_name="Paulette Martin",
        ),
        location=Location(
            address="15 bis Rue de la République",
            number="15 bis",
            way_name="Rue de la République",
            way_type="Rue",
            city="Lyon",
            insee="69381",
            lat=45.7640,
            lon=4.8357,
            precision="EXACTE",
            is_aml=True,
            position_at=T0 - timedelta(seconds=20),
            floor="3",
            access_code="A1234",
            interphone="MARTIN",
            building="Bât. B",
            name="Résidence Les Tilleuls",
            freetext="porte au fond de la cour",
        ),
        motive_code="M03.06",
        motive_label="Problème médical; Douleur thoracique",
        whats_happen=("C02.05.00", "Atteinte aux personnes ; Pathologie / maladie"),
        location_kind=("L01.02.00", "Domicile ; Lieu d'habitation collectif"),
        origin="15",
        priority="P1",
        branch=Branch.AMU,
        perimeter="AMU",
        attribution="DRM.MRU.MU",
        care_level="R1",
        intervention_type="T1",
        notes=[
            Note(
                at=T0 + timedelta(minutes=1), text="Appel de la fille.", role="ARM", medical=False
            ),
            Note(
                at=T0 + timedelta(minutes=2),
                text="Douleur thoracique depuis 30 min, sueurs.",
                role="ARM",
                medical=True,
                note_id=f"{OWNER}.medicalNote.{LOCAL}-1",
                operator="arm.dupont",
            ),
            Note(
                at=T0 + timedelta(minutes=5),
                text="ECG à faire, SMUR engagé.",
                role="MEDECIN",
                medical=True,
                note_id=f"{OWNER}.medicalNote.{LOCAL}-2",
                operator="Dr Durand",
            ),
        ],
        decisions=[
            Decision(
                at=T0 + timedelta(minutes=6),
                decision_type="INTER",
                role="MEDECIN",
                resource_type="SMUR.ADULT",
                medical_transport=True,
                patient_id=PATIENT_ID,
            ),
            Decision(
                at=T0 + timedelta(minutes=7),
                decision_type="ORIENT",
                role="MEDECIN",
                resource_type="SMUR.ADULT",
                orientation_type="URGENCES",
                medical_transport=False,
                patient_id=PATIENT_ID,
            ),
        ],
        status=Status.TRANSMITTED,
    )


def dental_dossier() -> Dossier:
    return Dossier(
        case_id=CASE_ID,
        created_at=T0,
        owner=OWNER,
        sender_case_id=LOCAL,
        received_at=T0,
        caller=Caller(callback="+33611223344", caller_type="SUJET", name="Karim B."),
        patient=Patient(age="P34Y", sex="M"),
        location=Location(city="Villeurbanne", insee="69266"),
        motive_code="M03.22",
        motive_label="Problème médical; Autre douleur",
        priority="P3",
        branch=Branch.DENT,
        perimeter="SNP",
        attribution="DRM.SPE.DENT",
        care_level="R4",
        notes=[
            Note(
                at=T0 + timedelta(minutes=3),
                text="Rage de dent depuis hier, pas de fièvre.",
                role="MEDECIN",
                operator="Dr Lemoine (chirurgien-dentiste)",
            )
        ],
        decisions=[
            Decision(
                at=T0 + timedelta(minutes=4),
                decision_type="ORIENT",
                role="MEDECIN",
                resource_type="LIBERAL.DENT",
                orientation_type="CABINET",
            )
        ],
        status=Status.TRANSMITTED,
    )


def domain(d: Dossier) -> dict[str, Any]:
    """The fields RS-EDA carries, for equality checks after a round trip."""
    data = dataclasses.asdict(d)
    for key in ("revision", "transmitted_at", "inputs"):
        data.pop(key, None)
    data["location"].pop("postcode")
    for decision in data["decisions"]:
        decision.pop("freetext")
    return data


def leaves(obj: Any, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], Any]:
    """Flatten JSON to {path: scalar}."""
    if isinstance(obj, dict):
        out: dict[tuple[Any, ...], Any] = {}
        for k, v in obj.items():
            out.update(leaves(v, (*path, k)))
        return out
    if isinstance(obj, list):
        out = {}
        for i, v in enumerate(obj):
            out.update(leaves(v, (*path, i)))
        return out
    return {path: obj}


def normalised(path: tuple[Any, ...], value: Any) -> Any:
    last = path[-1] if path else None
    if last in ("creation", "reception", "datetime") and isinstance(value, str):
        return parse_datetime(value)
    return value


# --------------------------------------------------------------------------- datetimes


def test_format_datetime_offset_no_microseconds_no_z() -> None:
    assert format_datetime(datetime(2024, 1, 4, 8, 1, 0, 999_999, tzinfo=PARIS)) == (
        "2024-01-04T08:01:00+02:00"
    )
    assert format_datetime(datetime(2024, 1, 4, 8, 1, tzinfo=UTC)) == "2024-01-04T08:01:00+00:00"
    assert format_datetime(datetime(2024, 1, 4, 8, 1, tzinfo=timezone(-timedelta(hours=4)))) == (
        "2024-01-04T08:01:00-04:00"
    )
    odd = timezone(timedelta(minutes=9, seconds=21))
    assert format_datetime(datetime(2024, 1, 4, 8, 1, tzinfo=odd)) == "2024-01-04T07:51:39+00:00"
    with pytest.raises(ValueError, match="fuseau"):
        format_datetime(datetime(2024, 1, 4, 8, 1))


# --------------------------------------------------------------------------- export


def test_minimal_draft_exact_body() -> None:
    assert to_rseda(minimal_draft()) == {
        "createCaseHealth": {
            "caseId": CASE_ID,
            "creation": "2026-07-14T21:30:12+02:00",
            "qualification": {
                "origin": "15",
                "healthMotive": {"code": "M07.00", "label": "Non renseigné"},
                "details": {"status": "ACTIF", "priority": "P2"},
            },
            "location": {},
            "owner": OWNER,
        }
    }


def test_full_dossier_mapping() -> None:
    case = to_rseda(full_dossier())["createCaseHealth"]
    assert case["senderCaseId"] == LOCAL
    assert case["perimeter"] == "AMU"
    assert case["interventionType"] == "T1"
    assert case["qualification"] == {
        "origin": "15",
        "whatsHappen": {
            "code": "C02.05.00",
            "label": "Atteinte aux personnes ; Pathologie / maladie",
        },
        "locationKind": {"code": "L01.02.00", "label": "Domicile ; Lieu d'habitation collectif"},
        "healthMotive": {"code": "M03.06", "label": "Problème médical; Douleur thoracique"},
        "details": {
            "status": "ACTIF",
            "attribution": "DRM.MRU.MU",
            "priority": "P1",
            "careLevel": "R1",
        },
    }
    assert case["location"] == {
        "name": "Résidence Les Tilleuls",
        "detailedAddress": {
            "complete": "15 bis Rue de la République",
            "number": "15 bis",
            "wayName": {
                "complete": "Rue de la République",
                "type": "Rue",
                "name": "de la République",
            },
        },
        "city": {"name": "Lyon", "inseeCode": "69381"},
        "access": {
            "floor": "3",
            "interphone": "MARTIN",
            "accessCode": ["A1234"],
            "buildingName": "Bât. B",
        },
        "geometry": {
            "datetime": "2026-07-14T21:29:52+02:00",
            "point": {
                "coord": {"lat": 45.764, "lon": 4.8357, "precision": "EXACTE"},
                "isAml": True,
            },
        },
        "freetext": "porte au fond de la cour",
    }
    alert = case["initialAlert"]
    assert alert["reception"] == "2026-07-14T21:29:32+02:00"
    assert alert["notes"] == [
        {"creation": "2026-07-14T21:31:12+02:00", "freetext": "Appel de la fille."}
    ]
    assert alert["caller"] == {
        "callerContact": {"channel": "PERSONNE", "type": "TEL", "detail": "+33478000000"},
        "callbackContact": {"channel": "PERSONNE", "type": "TEL", "detail": "+33612345678"},
        "language": "fr",
        "type": "FAMILLE",
        "communication": "PANIQUE",
        "freetext": "fille de la patiente",
        "detailedName": {"complete": "Jeanne Martin"},
    }
    assert case["patient"] == [
        {
            "patientId": PATIENT_ID,
            "identity": {
                "strictFeatures": {"birthDate": "1944-03-02", "sex": "F"},
                "nonStrictFeatures": {
                    "complete": "Paulette Martin",
                    "lastName": "Martin",
                    "firstName": "Paulette",
                },
            },
            "detail": {"age": "P82Y"},
        }
    ]
    assert [n["medicalNoteId"] for n in case["medicalNote"]] == [
        f"{OWNER}.medicalNote.{LOCAL}-1",
        f"{OWNER}.medicalNote.{LOCAL}-2",
    ]
    assert case["medicalNote"][1] == {
        "patientId": PATIENT_ID,
        "operator": {"role": "MEDECIN", "label": "Dr Durand"},
        "medicalNoteId": f"{OWNER}.medicalNote.{LOCAL}-2",
        "creation": "2026-07-14T21:35:12+02:00",
        "freetext": "ECG à faire, SMUR engagé.",
    }
    assert case["decision"] == [
        {
            "patientId": PATIENT_ID,
            "creation": "2026-07-14T21:36:12+02:00",
            "operator": {"role": "MEDECIN"},
            "decisionType": "INTER",
            "resourceType": "SMUR.ADULT",
            "medicalTransport": True,
        },
        {
            "patientId": PATIENT_ID,
            "creation": "2026-07-14T21:37:12+02:00",
            "operator": {"role": "MEDECIN"},
            "decisionType": "ORIENT",
            "resourceType": "SMUR.ADULT",
            "medicalTransport": False,
            "orientationType": "URGENCES",
        },
    ]


def test_defaults_filled_when_ids_and_labels_missing() -> None:
    d = full_dossier()
    d.patient.patient_id = ""
    d.motive_label = ""
    d.notes[1].note_id = ""
    d.decisions[0].patient_id = ""
    d.location.position_at = None
    d.location.precision = ""
    d.caller.callback = "06 12 34 56 78"
    d.caller.contact_detail = ""
    d.created_at = T0.replace(microsecond=123_456)
    case = to_rseda(d)["createCaseHealth"]
    assert case["creation"] == "2026-07-14T21:30:12+02:00"
    assert case["patient"][0]["patientId"] == PATIENT_ID
    assert case["qualification"]["healthMotive"] == {
        "code": "M03.06",
        "label": "Problème médical; Douleur thoracique",
    }
    assert case["medicalNote"][0]["medicalNoteId"] == f"{OWNER}.medicalNote.{LOCAL}.1"
    assert all(n["patientId"] == PATIENT_ID for n in case["medicalNote"])
    assert case["decision"][0]["patientId"] == PATIENT_ID
    geometry = case["location"]["geometry"]
    assert geometry["datetime"] == "2026-07-14T21:29:32+02:00"  # reception time
    assert geometry["point"]["coord"]["precision"] == "INCONNUE"
    caller = case["initialAlert"]["caller"]
    assert caller["callerContact"]["detail"] == "+33612345678"
    assert "callbackContact" not in caller


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (Status.DRAFT, "ACTIF"),
        (Status.TRANSMITTED, "ACTIF"),
        (Status.CLOSED, "CLOTURE"),
        (Status.ABANDONED, "CLOTURE"),
    ],
)
def test_status_mapping(status: Status, expected: str) -> None:
    d = minimal_draft()
    d.status = status
    assert to_rseda(d)["createCaseHealth"]["qualification"]["details"]["status"] == expected


def test_commune_without_5_digit_insee_goes_to_freetext() -> None:
    d = minimal_draft()
    d.location = Location(city="Ajaccio", insee="2A004", freetext="3e étage")
    loc = to_rseda(d)["createCaseHealth"]["location"]
    assert "city" not in loc
    assert loc["freetext"] == "3e étage\nCommune : Ajaccio (INSEE 2A004)"
    d.location = Location(city="Saint-Machin")
    assert to_rseda(d)["createCaseHealth"]["location"] == {"freetext": "Commune : Saint-Machin"}
    d.location = Location(insee="69123")
    assert to_rseda(d)["createCaseHealth"]["location"] == {"city": {"inseeCode": "69123"}}


def test_dental_dossier_mapping() -> None:
    case = to_rseda(dental_dossier())["createCaseHealth"]
    assert case["perimeter"] == "SNP"
    assert case["qualification"]["details"]["attribution"] == "DRM.SPE.DENT"
    assert case["decision"][0]["resourceType"] == "LIBERAL.DENT"
    assert case["decision"][0]["orientationType"] == "CABINET"
    assert case["medicalNote"][0]["operator"] == {
        "role": "MEDECIN",
        "label": "Dr Lemoine (chirurgien-dentiste)",
    }
    back = from_rseda(to_rseda(dental_dossier()))
    assert back.branch is Branch.DENT
    assert back.status is Status.TRANSMITTED


# --------------------------------------------------------------------------- schema validity


def messy_draft() -> Dossier:
    """A draft as typed: raw values, unknown codes, half-filled blocks."""
    return Dossier(
        case_id=CASE_ID,
        created_at=T0,
        owner=OWNER,
        caller=Caller(
            callback="06 12",  # not a number yet: sent as typed
            caller_type="VOISIN",
            channel="TELEPATHIE",
            language="français",
            communication="??",
            name="   ",
        ),
        patient=Patient(age="65 ans", birth_date="02/03/1944", sex="X", first_name="Paul"),
        location=Location(
            number="4",
            way_name="Chemin des Vignes",
            way_type="impasse",
            insee="2B033",
            lat=float("nan"),
            lon=4.8,
            precision="PRESQUE",
        ),
        motive_code="DENT.DOULEUR",
        motive_label="Douleur dentaire",
        whats_happen=("X1", "?"),
        location_kind=("L01.00.00", ""),
        origin="BOUCHE-A-OREILLE",
        priority="P9",
        perimeter="ZZZ",
        attribution="DRM.FOO",
        care_level="R9",
        intervention_type="T9",
        notes=[
            Note(at=T0, text="  ", medical=False),
            Note(at=T0, text="Note sans rôle", role="", medical=True),
            Note(at=T0, text="Note d'un rôle local", role="OSNP", medical=True),
        ],
        decisions=[
            Decision(at=T0, decision_type="PEUT-ETRE"),
            Decision(at=T0, decision_type="CONSEIL", role="REGULATEUR", resource_type="VELO"),
        ],
    )


@pytest.mark.reference
@pytest.mark.parametrize(
    "build", [minimal_draft, full_dossier, dental_dossier, messy_draft], ids=lambda f: f.__name__
)
def test_exports_are_schema_valid(validator: Draft7Validator, build: Any) -> None:
    assert_valid(validator, to_rseda(build()))


@pytest.mark.reference
def test_closest_valid_body_of_a_messy_draft(validator: Draft7Validator) -> None:
    case = to_rseda(messy_draft())["createCaseHealth"]
    assert_valid(validator, {"createCaseHealth": case})
    assert case["qualification"]["healthMotive"] == {"code": "M07.00", "label": "Non renseigné"}
    assert case["qualification"]["locationKind"] == {"code": "L01.00.00", "label": "L01.00.00"}
    assert case["qualification"]["details"] == {"status": "ACTIF"}
    assert "origin" not in case["qualification"]
    assert "whatsHappen" not in case["qualification"]
    assert "perimeter" not in case
    assert "interventionType" not in case
    assert case["location"]["detailedAddress"] == {
        "complete": "4 Chemin des Vignes",
        "number": "4",
        "wayName": {"complete": "Chemin des Vignes", "type": "impasse"},
    }
    assert case["location"]["freetext"] == "Commune : (INSEE 2B033)"
    assert "geometry" not in case["location"]
    assert case["initialAlert"]["caller"] == {
        "callerContact": {"channel": "PERSONNE", "type": "TEL", "detail": "06 12"}
    }
    assert case["patient"][0]["identity"] == {
        "nonStrictFeatures": {"complete": "Paul", "firstName": "Paul"}
    }
    assert [n["operator"]["role"] for n in case["medicalNote"]] == ["INCONNU", "AUTRE"]
    assert case["decision"] == [
        {
            "patientId": f"{OWNER}.patient.{LOCAL}.1",
            "creation": "2026-07-14T21:30:12+02:00",
            "operator": {"role": "AUTRE"},
            "decisionType": "CONSEIL",
        }
    ]


@pytest.mark.reference
def test_imported_example_exports_valid(
    validator: Draft7Validator, example: dict[str, Any]
) -> None:
    assert_valid(validator, example)  # sanity: the validator accepts the official example
    assert_valid(validator, to_rseda(from_rseda(example)))


@pytest.mark.reference
def test_enum_sets_match_schema() -> None:
    schema = schema_validator("RS-EDA.schema.json").schema
    for pointer, values in SCHEMA_ENUMS.items():
        node: Any = schema
        for part in pointer.strip("/").split("/"):
            node = node[part]
        assert values == frozenset(node), pointer


# --------------------------------------------------------------------------- official example


@pytest.mark.reference
def test_import_official_example(example: dict[str, Any]) -> None:
    d = from_rseda(example)
    assert d.case_id == "fr.health.samu770.DRFR157702400400055"
    assert d.sender_case_id == "DRFR157702400400055"
    assert d.owner == "fr.health.samu770"
    assert d.created_at == datetime(2024, 1, 4, 8, 1, tzinfo=timezone(timedelta(hours=1)))
    assert d.received_at == datetime(2024, 1, 4, 7, 0, tzinfo=UTC)
    assert d.branch is Branch.AMU
    assert d.status is Status.TRANSMITTED
    assert (d.perimeter, d.attribution, d.priority) == ("AMU", "DRM.MRU.MU", "P0")
    assert d.origin == "CTA-PI"
    assert d.intervention_type == "T1"
    assert d.motive_code == "M01.02"
    assert d.motive_label == "Détresse vitale; Altération de la conscience; Dont inconscient, coma"
    assert d.location_kind == (
        "L01.01.04",
        "Domicile ; Maison particulière, pavillon ;  dépendance",
    )
    assert d.caller.callback == "+33607080915"
    assert d.caller.contact_detail == ""
    assert d.caller.name == "Sébastien Morel "  # verbatim, trailing space included
    assert d.caller.caller_type == "FAMILLE"
    assert d.patient.age == "P65Y"
    assert (d.patient.first_name, d.patient.last_name, d.patient.sex) == ("Didier", "Morel", "M")
    assert d.location.insee == "77360"
    assert (d.location.lat, d.location.lon) == (48.8668403, 2.6320988)
    assert d.location.way_name == "Rue Louis Aristide Verdier"
    assert [(n.medical, n.role) for n in d.notes] == [(False, "ARM"), (True, "ARM"), (True, "ARM")]
    assert d.notes[1].note_id == "fr.health.samu770.medicalNote.45db215"
    assert d.decisions == []


@pytest.mark.reference
def test_official_example_round_trip_fields(example: dict[str, Any]) -> None:
    src = example["createCaseHealth"]
    out = to_rseda(from_rseda(example))["createCaseHealth"]

    for key in ("caseId", "senderCaseId", "owner", "perimeter", "interventionType"):
        assert out[key] == src[key], key
    assert parse_datetime(out["creation"]) == parse_datetime(src["creation"])

    q_src, q_out = src["qualification"], out["qualification"]
    for key in ("whatsHappen", "locationKind", "healthMotive", "origin"):
        assert q_out[key] == q_src[key], key
    for key in ("priority", "attribution"):
        assert q_out["details"][key] == q_src["details"][key], key

    l_src, l_out = src["location"], out["location"]
    assert l_out["detailedAddress"] == l_src["detailedAddress"]
    assert l_out["city"] == l_src["city"]
    assert l_out["freetext"] == l_src["freetext"]
    assert l_out["geometry"]["point"] == l_src["geometry"]["point"]
    assert parse_datetime(l_out["geometry"]["datetime"]) == parse_datetime(
        l_src["geometry"]["datetime"]
    )

    a_src, a_out = src["initialAlert"], out["initialAlert"]
    assert parse_datetime(a_out["reception"]) == parse_datetime(a_src["reception"])
    assert a_out["notes"] == a_src["notes"]
    caller_src, caller_out = a_src["caller"], a_out["caller"]
    for key in ("callerContact", "language", "freetext", "type"):
        assert caller_out[key] == caller_src[key], key
    assert caller_out["detailedName"]["complete"] == caller_src["detailedName"]["complete"]

    assert out["patient"] == src["patient"]
    assert out["medicalNote"] == src["medicalNote"]


@pytest.mark.reference
def test_official_example_round_trip_recursive(example: dict[str, Any]) -> None:
    src = leaves(example["createCaseHealth"])
    out = leaves(to_rseda(from_rseda(example))["createCaseHealth"])
    for path, value in src.items():
        if path in UNMODELED:
            continue
        assert path in out, f"absent après aller-retour : {path}"
        assert normalised(path, out[path]) == normalised(path, value), path
    # nothing invented except the case status SAS Desk always states
    assert set(out) - set(src) == {("qualification", "details", "status")}


@pytest.mark.reference
def test_round_trip_is_stable(example: dict[str, Any]) -> None:
    once = to_rseda(from_rseda(example))
    assert to_rseda(from_rseda(once)) == once


# --------------------------------------------------------------------------- import errors


@pytest.mark.parametrize("body", [None, [], "createCaseHealth", 42])
def test_import_rejects_non_object(body: Any) -> None:
    with pytest.raises(ValidationError, match="Message RS-EDA invalide : le message n'est pas"):
        from_rseda(body)


def _body(**changes: Any) -> dict[str, Any]:
    case = to_rseda(full_dossier())["createCaseHealth"]
    for key, value in changes.items():
        if value is None:
            case.pop(key, None)
        else:
            case[key] = value
    return {"createCaseHealth": case}


def test_import_rejects_missing_root() -> None:
    with pytest.raises(ValidationError, match="createCaseHealth absent") as info:
        from_rseda({"createCaseHealthUpdate": {"caseId": CASE_ID}})
    assert "createCaseHealthUpdate" in info.value.message
    with pytest.raises(ValidationError, match="createCaseHealth n'est pas un objet"):
        from_rseda({"createCaseHealth": "oui"})


@pytest.mark.parametrize("case_id", [None, "", "   "])
def test_import_rejects_missing_case_id(case_id: str | None) -> None:
    body = _body(caseId=case_id)
    with pytest.raises(ValidationError) as info:
        from_rseda(body)
    assert info.value.message == "Message RS-EDA invalide : caseId manquant"
    assert info.value.field == "caseId"


def test_import_rejects_missing_creation_and_owner() -> None:
    with pytest.raises(ValidationError, match="creation manquant"):
        from_rseda(_body(creation=None))
    with pytest.raises(ValidationError, match="owner manquant"):
        from_rseda(_body(owner=None))


@pytest.mark.parametrize(
    "value", ["04/01/2024 08:01", "2024-01-04T08:01:00", "2024-13-04T08:01:00+01:00"]
)
def test_import_rejects_bad_datetime(value: str) -> None:
    with pytest.raises(ValidationError, match="date « creation » illisible") as info:
        from_rseda(_body(creation=value))
    assert info.value.field == "creation"


def test_import_rejects_bad_nested_datetime_and_types() -> None:
    body = _body()
    body["createCaseHealth"]["medicalNote"][0]["creation"] = "hier"
    with pytest.raises(ValidationError, match=r"date « medicalNote\[0\]\.creation » illisible"):
        from_rseda(body)
    with pytest.raises(ValidationError, match="« qualification » doit être un objet JSON"):
        from_rseda(_body(qualification=["P0"]))
    with pytest.raises(ValidationError, match="« patient » doit être une liste"):
        from_rseda(_body(patient={"patientId": PATIENT_ID}))


def test_import_accepts_z_and_is_lenient_on_codes() -> None:
    body = _body(creation="2026-07-14T19:30:12Z", perimeter="FUTUR", interventionType="T9")
    body["createCaseHealth"]["qualification"]["healthMotive"] = {
        "code": "M99.99",
        "label": "Motif d'une future nomenclature",
    }
    d = from_rseda(body)
    assert d.created_at == T0
    assert (d.perimeter, d.intervention_type) == ("FUTUR", "T9")
    assert (d.motive_code, d.motive_label) == ("M99.99", "Motif d'une future nomenclature")
    assert d.branch is Branch.AMU  # from the attribution


def test_import_status_follows_attribution_or_perimeter() -> None:
    draft = from_rseda(to_rseda(minimal_draft()))
    assert draft.status is Status.DRAFT
    assert draft.branch is None
    body = _body(perimeter="SNP")
    del body["createCaseHealth"]["qualification"]["details"]["attribution"]
    snp = from_rseda(body)
    assert (snp.status, snp.branch) == (Status.TRANSMITTED, Branch.SNP)


def _envelope(message_body: dict[str, Any]) -> dict[str, Any]:
    return {
        "distributionID": f"{OWNER}_2608323d-507d-4cbf-bf74-52007f8124ea",
        "senderID": OWNER,
        "dateTimeSent": "2026-07-14T21:31:00+02:00",
        "dateTimeExpires": "2026-07-15T21:31:00+02:00",
        "distributionStatus": "Exercise",
        "distributionKind": "Report",
        "descriptor": {
            "language": "fr-FR",
            "explicitAddress": {
                "explicitAddressScheme": "hubex",
                "explicitAddressValue": "fr.health.samu770",
            },
        },
        "content": [
            {
                "jsonContent": {
                    "embeddedJsonContent": {
                        "message": {
                            "messageId": f"{OWNER}_2608323d-507d-4cbf-bf74-52007f8124ea",
                            "sender": {"name": OWNER, "URI": f"hubex:{OWNER}"},
                            "sentAt": "2026-07-14T21:31:00+02:00",
                            "kind": "Report",
                            "status": "Exercise",
                            "recipient": [
                                {"name": "fr.health.samu770", "URI": "hubex:fr.health.samu770"}
                            ],
                            **message_body,
                        }
                    }
                }
            }
        ],
    }


def test_import_accepts_envelope_and_message_forms() -> None:
    body = to_rseda(full_dossier())
    expected = domain(from_rseda(body))
    envelope = _envelope(body)
    assert domain(from_rseda(envelope)) == expected
    assert domain(from_rseda(envelope["content"][0]["jsonContent"]["embeddedJsonContent"])) == (
        expected
    )


def test_import_rejects_broken_envelopes() -> None:
    with pytest.raises(ValidationError, match="enveloppe EDXL-DE sans contenu"):
        from_rseda({"distributionID": "x", "content": []})
    with pytest.raises(ValidationError, match=r"content\[0\]\.jsonContent"):
        from_rseda({"content": [{"xmlContent": {}}]})
    with pytest.raises(ValidationError, match="createCaseHealth absent"):
        from_rseda(_envelope({"reference": {"distributionID": "x"}}))


@pytest.mark.reference
def test_envelope_is_valid_edxl(validator: Draft7Validator) -> None:
    """Our export fits the full envelope schema, whose $refs span every file."""
    envelope = _envelope(to_rseda(full_dossier()))
    errors = schema_errors(schema_validator("EDXL-DE-full.schema.json"), envelope)
    assert not errors, "\n".join(errors)
    assert from_rseda(envelope).case_id == CASE_ID


# --------------------------------------------------------------------------- variants


def _overseas(d: Dossier) -> None:
    d.caller.callback = "+590690123456"
    d.caller.contact_detail = "+590590123456"
    d.location.city, d.location.insee = "Les Abymes", "97101"
    d.location.lat, d.location.lon = 16.2711, -61.5045


def _corsica(d: Dossier) -> None:
    d.location.city, d.location.insee = "Ajaccio", "2A004"
    d.location.lat, d.location.lon = 41.9192, 8.7386


def _corsica_bare(d: Dossier) -> None:
    d.location.city, d.location.insee, d.location.freetext = "", "2B033", ""


def _months(d: Dossier) -> None:
    d.patient.age = "P8M"
    d.patient.birth_date = ""


def _sex_unknown(d: Dossier) -> None:
    d.patient.sex = "UN"
    d.patient.complete_name = ""
    d.patient.first_name = ""
    d.patient.last_name = ""


def _no_caller_split(d: Dossier) -> None:
    d.caller.contact_detail = ""
    d.caller.channel = "ECALL"
    d.location.is_aml = False
    d.decisions[0].medical_transport = None


VARIANTS = [_overseas, _corsica, _corsica_bare, _months, _sex_unknown, _no_caller_split]


@pytest.mark.reference
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda f: f.__name__.strip("_"))
def test_variant_round_trip(validator: Draft7Validator, variant: Any) -> None:
    original = full_dossier()
    variant(original)
    message = to_rseda(original)
    assert_valid(validator, message)
    back = from_rseda(copy.deepcopy(message))
    assert domain(back) == domain(original)
    assert to_rseda(back) == message


def test_dental_reason_travels_in_custom_map(validator: Draft7Validator) -> None:
    from sas_desk.models.dossier import Branch

    d = full_dossier()
    d.branch = Branch.DENT
    d.dental_reason = "DENT.TRAUMA"
    case = to_rseda(d)["createCaseHealth"]
    assert schema_errors(validator, case) == []
    entry = case["additionalInformation"]["customMap"][0]
    assert entry["value"] == "DENT.TRAUMA"
    assert entry["freetext"].startswith("Traumatisme dentaire")
    assert from_rseda({"createCaseHealth": case}).dental_reason == "DENT.TRAUMA"
