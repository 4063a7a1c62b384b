"""The Dossier de régulation: branch mapping, checks before transmission,
operations (transmit, notes), case ids and the journal's JSON form."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from sas_desk.models.dossier import (
    PRIORITIES,
    Actor,
    Branch,
    Caller,
    ConfirmationNeeded,
    Decision,
    Dossier,
    Event,
    EventKind,
    Location,
    Note,
    Patient,
    Status,
    add_note,
    decision_problems,
    new_case_ids,
    transmit,
)
from sas_desk.models.validation import ValidationError

PARIS = timezone(timedelta(hours=1))
T0 = datetime(2024, 12, 1, 12, 0, 5, tzinfo=PARIS)
T1 = T0 + timedelta(minutes=3)
OWNER = "fr.health.samu690"
LOCAL = "DRFR1569A2433600012"
CASE_ID = f"{OWNER}.{LOCAL}"
ARM = Actor("ARM", "amartin", "POSTE-07")
MRU = Actor("MRU", "dr.durand", "POSTE-02")

CASE_ID_RE = re.compile(r"^fr\.health\.samu690\.DRFR1569A\d{2}\d{3}\d{5}$")
HUB_CASE_ID_RE = re.compile(r"^([a-zA-Z0-9_-]+\.?){4,10}$")


def draft() -> Dossier:
    return Dossier(case_id=CASE_ID, sender_case_id=LOCAL, created_at=T0, owner=OWNER)


def complete() -> Dossier:
    """A draft that can be transmitted: every required field is valid."""
    d = draft()
    d.caller.callback = "06 12 34 56 78"
    d.location.address = "12 rue de la République, Lyon"
    d.location.city, d.location.insee = "Lyon", "69123"
    d.motive_code = "M03.06"
    d.motive_label = "Douleur thoracique"
    d.priority = "P1"
    d.branch = Branch.AMU
    return d


def full() -> Dossier:
    """Every field filled in, for the serialisation round trip."""
    d = complete()
    d.received_at = T0 - timedelta(seconds=20)
    d.caller = Caller(
        callback="+33612345678",
        caller_type="FAMILLE",
        channel="PERSONNE",
        name="Mme Caller",
        language="fr",
        communication="PANIQUE",
        freetext="fille de la patiente",
        contact_detail="+33478123456",
    )
    d.patient = Patient(
        patient_id=f"{OWNER}.patient.{LOCAL}.1",
        age="P65Y",
        birth_date="1959-03-12",
        sex="F",
        last_name="Dupont",
        first_name="Marie",
        complete_name="Marie Dupont",
    )
    d.location = Location(
        address="12 rue de la République 69002 Lyon",
        number="12",
        way_name="de la République",
        way_type="rue",
        city="Lyon",
        insee="69123",
        postcode="69002",
        lat=45.764,
        lon=4.8357,
        precision="ADRESSE EXACTE",
        is_aml=True,
        position_at=T0 + timedelta(seconds=5),
        floor="3",
        access_code="A1234",
        interphone="Dupont",
        building="B",
        name="Résidence Les Tilleuls",
        freetext="porte au fond de la cour",
    )
    d.whats_happen = ("C07.13.02", "Douleur thoracique")
    d.location_kind = ("L01.01.00", "Domicile")
    d.origin = "15"
    d.care_level = "R2"
    d.intervention_type = "T1"
    d.notes = [
        Note(at=T0 + timedelta(minutes=1), text="Douleur depuis 1 h", role="ARM", note_id="n1"),
        Note(
            at=T0 + timedelta(minutes=2),
            text="ECG demandé",
            role="MEDECIN",
            medical=False,
            operator="dr.durand",
        ),
    ]
    d.decisions = [
        Decision(
            at=T1,
            decision_type="INTER",
            resource_type="SMUR",
            orientation_type="URGENCES",
            medical_transport=True,
            freetext="SMUR Lyon",
            patient_id=d.patient.patient_id,
        ),
        Decision(at=T1 + timedelta(minutes=1), decision_type="CONSEIL", medical_transport=None),
    ]
    d.revision = 7
    d.inputs = {"callback": "06 12 34 56 78", "age": "65 ans", "position": "45.764, 4.8357"}
    return d


# --------------------------------------------------------------------------- branch


@pytest.mark.parametrize(
    ("branch", "perimeter", "attribution"),
    [
        (Branch.AMU, "AMU", "DRM.MRU.MU"),
        (Branch.SNP, "SNP", "DRM.MRL.MG"),
        (Branch.DENT, "SNP", "DRM.SPE.DENT"),
    ],
)
def test_branch_perimeter_and_attribution(branch: Branch, perimeter: str, attribution: str) -> None:
    assert branch.perimeter == perimeter
    assert branch.attribution == attribution
    assert Branch.from_attribution(attribution, perimeter) is branch
    assert Branch.from_attribution(attribution, None) is branch
    assert branch.label


@pytest.mark.parametrize(
    ("attribution", "perimeter", "expected"),
    [
        ("DRM.SPE.DENT", None, Branch.DENT),
        ("DRM.SPE.DENT", "AMU", Branch.DENT),  # the attribution wins
        ("DRM.MRL", None, Branch.SNP),
        ("DRM.MRL.INDISPMG", None, Branch.SNP),
        ("DRM.MRU", "SNP", Branch.AMU),
        ("DRM.MRU.SSE", None, Branch.AMU),
        # no useful attribution: the perimeter decides
        (None, "AMU", Branch.AMU),
        ("", "SNP", Branch.SNP),
        ("DRM.SPE.PEDIA", "AMU", Branch.AMU),
        ("DR.DREG.DRINFO", "SNP", Branch.SNP),
        (None, None, None),
        ("DRM.SPE.PEDIA", None, None),
        (None, "NEONAT", None),
    ],
)
def test_branch_from_attribution(
    attribution: str | None, perimeter: str | None, expected: Branch | None
) -> None:
    assert Branch.from_attribution(attribution, perimeter) is expected


def test_status_labels_are_french() -> None:
    assert Status.DRAFT.label == "En cours de saisie"
    assert Status.TRANSMITTED.label == "Transmis"
    assert {s.label for s in Status} >= {"Clôturé", "Abandonné"}


# --------------------------------------------------------------------------- problems


def test_problems_of_an_empty_dossier() -> None:
    problems = draft().problems()
    assert set(problems) == {"callback", "location", "motive", "branch"}
    assert problems["callback"] == "Numéro de rappel manquant."
    assert "Localisation manquante" in problems["location"]
    assert problems["motive"] == "Motif de recours manquant."
    assert "Filière manquante" in problems["branch"]


def test_default_priority_is_p2() -> None:
    d = draft()
    assert d.priority == "P2"
    assert "priority" not in d.problems()
    assert d.status is Status.DRAFT
    assert d.is_open


@pytest.mark.parametrize(
    ("care", "kind", "resource", "expected"),
    [
        ("", "", "", {"care_level", "decision_type"}),  # nothing taken by default
        ("R3", "", "", {"decision_type"}),
        ("", "CONSEIL", "", {"care_level"}),
        ("R9", "CONSEIL", "", {"care_level"}),
        ("R3", "NIMPORTE", "", {"decision_type"}),
        ("R2", "INTER", "", {"resource_type"}),
        ("R2", "ORIENT", "LIBERAL.MG", set()),
        ("R4", "CONSEIL", "", set()),
    ],
)
def test_a_decision_states_its_care_level_and_type(
    care: str, kind: str, resource: str, expected: set[str]
) -> None:
    problems = decision_problems(care, kind, resource)
    assert set(problems) == expected
    assert all(text.endswith(".") or text.endswith("».") for text in problems.values())


def test_unusual_dossiers_leave_only_once_confirmed_and_the_answer_is_logged() -> None:
    actor = Actor("ARM", "arm", "POSTE")
    d = complete()
    d.location = Location(address="Trifouillis-les-Oies")
    d.priority = "P1"
    d.caller.callback = ""  # a P1 may leave without a number, once confirmed
    assert d.problems() == {}
    assert set(d.confirmations("69")) == {"unlocated", "no_callback"}
    with pytest.raises(ConfirmationNeeded) as caught:
        transmit(d, T1, actor, departement="69", confirmed=("unlocated",))
    assert set(caught.value.questions) == {"no_callback"}
    assert d.status is Status.DRAFT
    event = transmit(d, T1, actor, departement="69", confirmed=("unlocated", "no_callback"))
    assert set(event.data["confirmed"]) == {"unlocated", "no_callback"}
    assert d.status is Status.TRANSMITTED and d.caller.callback == ""


@pytest.mark.parametrize(
    ("insee", "lat", "departement", "expected"),
    [
        ("69123", 45.76, "69", set()),
        ("38185", 45.19, "69", {"out_of_territory"}),
        ("", 45.76, "69", {"out_of_territory"}),  # a position near no commune of ours
        ("38185", 45.19, "", set()),  # no territory given: nothing to compare
    ],
)
def test_a_place_outside_the_centre_asks_confirmation(
    insee: str, lat: float, departement: str, expected: set[str]
) -> None:
    d = complete()
    d.location = Location(insee=insee, lat=lat, lon=4.8)
    assert set(d.confirmations(departement)) == expected


def test_a_p2_without_callback_is_still_refused() -> None:
    d = complete()
    d.caller.callback, d.priority = "", "P2"
    assert "callback" in d.problems()


def test_problems_of_a_complete_dossier() -> None:
    assert complete().problems() == {}
    assert full().problems() == {}


def _no_callback(d: Dossier) -> None:
    d.caller.callback = ""
    d.priority = "P2"  # a P0/P1 asks for confirmation instead


def _blank_callback(d: Dossier) -> None:
    d.caller.callback = "   "
    d.priority = "P2"


def _bad_callback(d: Dossier) -> None:
    d.caller.callback = "15"


def _no_location(d: Dossier) -> None:
    d.location = Location(address="  ")


def _bad_insee(d: Dossier) -> None:
    d.location.insee = "20004"


def _bad_position(d: Dossier) -> None:
    d.location.lat, d.location.lon = 51.5074, -0.1278


def _no_motive(d: Dossier) -> None:
    d.motive_code = ""


def _unknown_motive(d: Dossier) -> None:
    d.motive_code, d.motive_label = "M99.99", ""


def _bad_age(d: Dossier) -> None:
    d.patient.age = "65 ans"


def _no_priority(d: Dossier) -> None:
    d.priority = ""


def _bad_priority(d: Dossier) -> None:
    d.priority = "P5"


def _no_branch(d: Dossier) -> None:
    d.branch = None


@pytest.mark.parametrize(
    ("spoil", "field", "fragment"),
    [
        (_no_callback, "callback", "manquant"),
        (_blank_callback, "callback", "manquant"),
        (_bad_callback, "callback", "numéro court"),
        (_no_location, "location", "Localisation manquante"),
        (_bad_insee, "location", "Corse"),
        (_bad_position, "location", "hors de France"),
        (_no_motive, "motive", "manquant"),
        (_unknown_motive, "motive", "« M99.99 » inconnu"),
        (_bad_age, "age", "illisible"),
        (_no_priority, "priority", "Priorité manquante"),
        (_bad_priority, "priority", "Priorité manquante"),
        (_no_branch, "branch", "Filière manquante"),
    ],
)
def test_problems_single_missing_field(spoil, field: str, fragment: str) -> None:  # type: ignore[no-untyped-def]
    d = complete()
    spoil(d)
    problems = d.problems()
    assert list(problems) == [field]
    assert fragment in problems[field]


@pytest.mark.parametrize(
    ("insee", "lat", "lon"),
    [("69123", None, None), ("", 45.764, 4.8357), ("2A004", None, None)],
)
def test_location_by_commune_or_position_is_enough(
    insee: str, lat: float | None, lon: float | None
) -> None:
    d = complete()
    d.location = Location(insee=insee, lat=lat, lon=lon)
    assert d.problems() == {}


def test_half_position_is_not_a_location() -> None:
    d = complete()
    d.location = Location(lat=45.764)
    assert not d.location.has_position
    assert "location" in d.problems()


def test_unknown_motive_with_a_label_is_accepted() -> None:
    d = complete()
    d.motive_code, d.motive_label = "M99.99", "Motif local"
    assert d.problems() == {}


@pytest.mark.parametrize("priority", PRIORITIES)
def test_every_priority_is_accepted(priority: str) -> None:
    d = complete()
    d.priority = priority
    assert d.problems() == {}


def test_commune_label() -> None:
    d = draft()
    assert d.commune_label == ""
    d.location.insee = "69123"
    assert d.commune_label == "69123"
    d.location.city = "Lyon"
    assert d.commune_label == "Lyon"


# --------------------------------------------------------------------------- transmit


@pytest.mark.parametrize(
    ("branch", "perimeter", "attribution"),
    [
        (Branch.AMU, "AMU", "DRM.MRU.MU"),
        (Branch.SNP, "SNP", "DRM.MRL.MG"),
        (Branch.DENT, "SNP", "DRM.SPE.DENT"),
    ],
)
def test_transmit(branch: Branch, perimeter: str, attribution: str) -> None:
    d = complete()
    d.branch = branch
    if branch is Branch.DENT:
        d.dental_reason = "DENT.DOULEUR"  # the dental branch needs its sub-reason
    d.revision = 3
    event = transmit(d, T1, ARM)
    assert d.status is Status.TRANSMITTED
    assert not d.is_open
    assert d.perimeter == perimeter
    assert d.attribution == attribution
    assert d.transmitted_at == T1
    assert d.revision == 4
    assert d.caller.callback == "+33612345678"
    assert event == Event(
        CASE_ID,
        T1,
        EventKind.TRANSMITTED,
        ARM,
        {
            "branch": branch.value,
            "perimeter": perimeter,
            "attribution": attribution,
            "priority": "P1",
            "motive": "M03.06",
        },
    )
    assert event.kind.label == "Dossier transmis"


def test_transmit_normalises_an_overseas_callback() -> None:
    d = complete()
    d.caller.callback = "0692 12 34 56"
    transmit(d, T1, ARM)
    assert d.caller.callback == "+262692123456"


def test_transmit_refused_leaves_the_dossier_unchanged() -> None:
    d = complete()
    d.branch = None
    d.caller.callback = "06 12 34 56 78"
    before = d.to_dict()
    with pytest.raises(ValidationError) as info:
        transmit(d, T1, ARM)
    assert info.value.field == "branch"
    assert "Filière manquante" in info.value.message
    assert d.to_dict() == before
    assert d.status is Status.DRAFT


def test_transmit_refusal_lists_every_problem() -> None:
    d = draft()
    before = copy.deepcopy(d)
    with pytest.raises(ValidationError) as info:
        transmit(d, T1, ARM)
    message = info.value.message
    for fragment in ("Numéro de rappel manquant", "Localisation manquante", "Motif", "Filière"):
        assert fragment in message
    assert info.value.field == "callback"
    assert d == before


def test_second_transmit_is_refused() -> None:
    d = complete()
    transmit(d, T1, ARM)
    after_first = d.to_dict()
    with pytest.raises(ValidationError) as info:
        transmit(d, T1 + timedelta(minutes=1), MRU)
    assert info.value.field == "status"
    assert "déjà été transmis" in info.value.message
    assert d.to_dict() == after_first


@pytest.mark.parametrize(
    ("status", "fragment"),
    [(Status.CLOSED, "clôturé"), (Status.ABANDONED, "abandonnée")],
)
def test_transmit_refused_when_closed_or_abandoned(status: Status, fragment: str) -> None:
    d = complete()
    d.status = status
    with pytest.raises(ValidationError) as info:
        transmit(d, T1, ARM)
    assert info.value.field == "status"
    assert fragment in info.value.message
    assert d.perimeter == d.attribution == ""
    assert d.transmitted_at is None


# --------------------------------------------------------------------------- notes


def test_add_note_by_arm() -> None:
    d = draft()
    event = add_note(d, "  Douleur depuis 1 h  ", T1, ARM)
    assert len(d.notes) == 1
    note = d.notes[0]
    assert note.at == T1
    assert note.text == "Douleur depuis 1 h"
    assert note.role == "ARM"
    assert note.medical is True
    assert note.operator == "amartin"
    assert note.note_id == f"{OWNER}.medicalNote.{LOCAL}-1"
    assert d.revision == 1
    assert event.kind is EventKind.NOTE_ADDED
    assert event.dossier_id == CASE_ID
    assert event.at == T1
    assert event.actor is ARM
    assert event.data == {"note_id": note.note_id, "role": "ARM"}


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("ARM", "ARM"),
        ("OSNP", "ARM"),
        ("SUP", "ARM"),
        ("MRU", "MEDECIN"),
        ("MRL", "MEDECIN"),
        ("DENT", "MEDECIN"),
        ("", "INCONNU"),
    ],
)
def test_add_note_role_mapping(role: str, expected: str) -> None:
    d = draft()
    event = add_note(d, "note", T1, Actor(role, "op", "POSTE"))
    assert d.notes[-1].role == expected
    assert event.data["role"] == expected


def test_add_note_by_mru_then_arm_numbers_the_notes() -> None:
    d = draft()
    add_note(d, "Avis médical", T1, MRU)
    add_note(d, "Rappel famille", T1 + timedelta(minutes=1), ARM, medical=False)
    assert [(n.role, n.medical, n.operator) for n in d.notes] == [
        ("MEDECIN", True, "dr.durand"),
        ("ARM", False, "amartin"),
    ]
    assert [n.note_id for n in d.notes] == [
        f"{OWNER}.medicalNote.{LOCAL}-1",
        f"{OWNER}.medicalNote.{LOCAL}-2",
    ]
    assert d.notes[1].at > d.notes[0].at
    assert d.revision == 2


def test_add_note_without_sender_case_id_uses_the_case_id_tail() -> None:
    d = Dossier(case_id=CASE_ID, created_at=T0, owner=OWNER)
    add_note(d, "note", T1, ARM)
    assert d.notes[0].note_id == f"{OWNER}.medicalNote.{LOCAL}-1"


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_note_refused(text: str) -> None:
    d = draft()
    with pytest.raises(ValidationError) as info:
        add_note(d, text, T1, ARM)
    assert info.value.field == "note"
    assert info.value.message == "Note vide."
    assert d.notes == []
    assert d.revision == 0


# --------------------------------------------------------------------------- case ids


def test_new_case_ids() -> None:
    at = datetime(2024, 12, 1, 12, 0, tzinfo=PARIS)  # day 336 of a leap year
    case_id, local = new_case_ids(OWNER, "69", "A", at, 12)
    assert local == "DRFR1569A2433600012"
    assert case_id == f"{OWNER}.{local}"
    assert CASE_ID_RE.match(case_id)
    assert HUB_CASE_ID_RE.match(case_id)


@pytest.mark.parametrize(
    ("at", "sequence", "local"),
    [
        (datetime(2025, 1, 1, 0, 0, 1, tzinfo=PARIS), 1, "DRFR1569A2500100001"),
        (datetime(2025, 12, 31, 23, 59, tzinfo=PARIS), 99999, "DRFR1569A2536599999"),
        (datetime(2024, 12, 31, 23, 59, tzinfo=UTC), 345, "DRFR1569A2436600345"),
    ],
)
def test_new_case_ids_layout(at: datetime, sequence: int, local: str) -> None:
    case_id, got = new_case_ids(OWNER, "69", "A", at, sequence)
    assert got == local
    assert CASE_ID_RE.match(case_id)
    assert HUB_CASE_ID_RE.match(case_id)


# --------------------------------------------------------------------------- (de)serialise


def test_round_trip_of_a_full_dossier() -> None:
    d = full()
    data = d.to_dict()
    assert json.loads(json.dumps(data)) == data  # plain JSON
    back = Dossier.from_dict(json.loads(json.dumps(data)))
    assert back == d
    assert back.to_dict() == data
    assert back.whats_happen == ("C07.13.02", "Douleur thoracique")
    assert isinstance(back.location_kind, tuple)
    assert back.branch is Branch.AMU
    assert back.status is Status.DRAFT
    assert back.created_at == T0
    assert back.created_at.utcoffset() == timedelta(hours=1)
    assert back.location.position_at == T0 + timedelta(seconds=5)
    assert back.notes[1].medical is False
    assert back.decisions[0].medical_transport is True
    assert back.decisions[1].medical_transport is None
    assert back.inputs == d.inputs


def test_round_trip_of_a_transmitted_dossier() -> None:
    d = full()
    transmit(d, T1, ARM)
    back = Dossier.from_dict(json.loads(json.dumps(d.to_dict())))
    assert back == d
    assert back.status is Status.TRANSMITTED
    assert back.transmitted_at == T1
    assert back.perimeter == "AMU"


def test_round_trip_of_an_empty_dossier() -> None:
    d = draft()
    back = Dossier.from_dict(d.to_dict())
    assert back == d
    assert back.branch is None
    assert back.whats_happen is None
    assert back.received_at is None


def test_to_dict_encodes_dates_enums_and_tuples() -> None:
    data = full().to_dict()
    assert data["created_at"] == T0.isoformat()
    assert data["status"] == "DRAFT"
    assert data["branch"] == "AMU"
    assert data["whats_happen"] == ["C07.13.02", "Douleur thoracique"]
    assert data["notes"][0]["at"] == (T0 + timedelta(minutes=1)).isoformat()
    assert data["location"]["position_at"] == (T0 + timedelta(seconds=5)).isoformat()


def test_from_dict_does_not_modify_its_input() -> None:
    data = full().to_dict()
    kept = copy.deepcopy(data)
    Dossier.from_dict(data)
    assert data == kept


def test_from_dict_ignores_unknown_keys_and_fills_defaults() -> None:
    data = {"case_id": CASE_ID, "created_at": T0.isoformat(), "owner": OWNER, "legacy": 1}
    d = Dossier.from_dict(data)
    assert d == Dossier(case_id=CASE_ID, created_at=T0, owner=OWNER)
    assert d.caller == Caller()
    assert d.notes == []


def test_every_dossier_field_survives_the_round_trip() -> None:
    d = full()
    back = Dossier.from_dict(d.to_dict())
    for f in dataclasses.fields(Dossier):
        assert getattr(back, f.name) == getattr(d, f.name), f.name


# --------------------------------------------------------------------------- events


def test_event_to_row() -> None:
    event = Event(
        CASE_ID,
        T1,
        EventKind.TRANSMITTED,
        MRU,
        {"at": T0, "status": Status.TRANSMITTED, "codes": ("A", "B"), "n": 1},
        seq=5,
    )
    assert event.to_row() == {
        "dossier_id": CASE_ID,
        "at": T1.isoformat(),
        "kind": "TRANSMITTED",
        "role": "MRU",
        "operator": "dr.durand",
        "workstation": "POSTE-02",
        "data": {"at": T0.isoformat(), "status": "TRANSMITTED", "codes": ["A", "B"], "n": 1},
    }
    json.dumps(event.to_row())


def test_event_kinds_have_french_labels() -> None:
    labels = {k: k.label for k in EventKind}
    assert labels[EventKind.CREATED] == "Dossier créé"
    assert labels[EventKind.NOTE_ADDED] == "Note ajoutée"
    assert len(set(labels.values())) == len(labels)


def test_dental_branch_requires_its_sub_reason_and_advises_on_severity() -> None:
    d = complete()
    d.branch = Branch.DENT
    assert d.problems() == {"dental_reason": "Motif dentaire manquant."}
    d.dental_reason = "DENT.CELLULITE"
    assert d.problems() == {}
    assert "médecin (AMU)" in d.warnings()["dental_reason"]
    d.dental_reason = "DENT.TRAUMA"
    assert d.warnings() == {}


def test_p0_outside_amu_is_a_warning_not_a_problem() -> None:
    d = complete()
    d.priority = "P0"
    d.branch = Branch.SNP
    assert d.problems() == {}
    assert "AMU" in d.warnings()["branch"]
