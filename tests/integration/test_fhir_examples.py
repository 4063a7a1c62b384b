"""Every official example of the SAS implementation guide
(``../shared/reference/sas-ig-examples``) through our Bundle parser, with the
counts read from the files; the same Bundles read by a peer FHIR client
(fhir.resources) agree with ours; and ``sas-desk fhir parse`` on one of them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from sas_desk.cli import main
from sas_desk.models.slots import (
    AppointmentType,
    ConsultationMode,
    PractitionerIdKind,
    SlotType,
    Specialty,
    StructureIdKind,
)
from sas_desk.services.fhir import wire
from sas_desk.services.fhir.bundle import BundleError, BundleResult, SkipReason, parse_bundle
from tests.helpers.bundles import assert_same
from tests.reference import reference_dir

pytestmark = pytest.mark.reference

CEST = timezone(timedelta(hours=2))

# Counted from the files: entries by resource type, contained Locations, total.
#   PSIndiv: 4 Slot, 3 Schedule, 2 Practitioner, 3 PractitionerRole (3 contained Locations)
#   CPTS1:   1 Slot, 1 Schedule, 1 Practitioner, 1 PractitionerRole, 1 HealthcareService,
#            1 Organization
#   SOS:     4 Slot, 3 Schedule, 3 Location, 2 Organization (Schedules are the "match" entries)
#   LRM7:    a *transaction* Bundle (the historical RDV → LRM variant): 1 Appointment,
#            1 Practitioner, 1 Organization, 1 PractitionerRole, no Slot.  Its Organization
#            carries an unprefixed FINESS ("010012961"): no IdNat_Struct value, so it is
#            skipped (the slot-search profiles require the prefix).
EXPECTED: dict[str, dict[str, Any]] = {
    "Bundle-ExampleBundlePSIndiv.json": {
        "bundle_type": "searchset",
        "total": 4,
        "slots": 4,
        "schedules": 3,
        "practitioners": 2,
        "roles": 3,
        "locations": 0,
        "organizations": 0,
        "healthcare_services": 0,
        "other": 0,
        "skipped": [],
    },
    "Bundle-ExampleBundleCPTS1.json": {
        "bundle_type": "searchset",
        "total": 1,
        "slots": 1,
        "schedules": 1,
        "practitioners": 1,
        "roles": 1,
        "locations": 0,
        "organizations": 1,
        "healthcare_services": 1,
        "other": 0,
        "skipped": [],
    },
    "Bundle-ExampleBundleAgregateurSOS.json": {
        "bundle_type": "searchset",
        "total": 4,
        "slots": 4,
        "schedules": 3,
        "practitioners": 0,
        "roles": 0,
        "locations": 3,
        "organizations": 2,
        "healthcare_services": 0,
        "other": 0,
        "skipped": [],
    },
    "Bundle-ExampleBundleAppointmentLRM7.json": {
        "bundle_type": "transaction",
        "total": None,
        "slots": 0,
        "schedules": 0,
        "practitioners": 1,
        "roles": 1,
        "locations": 0,
        "organizations": 0,
        "healthcare_services": 0,
        "other": 1,
        "skipped": [("Organization", "ExampleSasOrganization3", SkipReason.INVALID_IDENTIFIER)],
    },
}

# The other example files: single resources, not Bundles.
NOT_BUNDLES = [
    "Appointment-1.json",
    "Appointment-12345678.json",
    "Appointment-2.json",
    "CapabilityStatement-SAS-GestionnaireAgenda-PsIndiv.json",
    "Practitioner-ExamplePractitionerRegul1.json",
    "Practitioner-ExamplePractitionerRegul3.json",
    "Practitioner-ExamplePractitionerRegul4.json",
    "SearchParameter-cptsslot-sp-servicetype.json",
    "Slot-ExampleSlotPSIndiv5.json",
]


def examples_dir() -> Path:
    return reference_dir() / "sas-ig-examples"


def parse_example(name: str) -> BundleResult:
    return parse_bundle((examples_dir() / name).read_bytes())


def counts(result: BundleResult) -> dict[str, Any]:
    return {
        "bundle_type": result.bundle_type,
        "total": result.total,
        "slots": len(result.slots),
        "schedules": len(result.schedules),
        "practitioners": len(result.practitioners),
        "roles": len(result.roles),
        "locations": len(result.locations),
        "organizations": len(result.organizations),
        "healthcare_services": len(result.healthcare_services),
        "other": len(result.other),
        "skipped": [(s.resource_type, s.resource_id, s.reason) for s in result.skipped],
    }


def test_every_example_bundle_is_covered() -> None:
    present = sorted(p.name for p in examples_dir().glob("Bundle-*.json"))
    assert present == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_bundle_parses_with_the_expected_counts(name: str) -> None:
    assert counts(parse_example(name)) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_typed_decoder_and_tolerant_path_agree_on_the_example(name: str) -> None:
    """The slot searchsets take the typed decoder (``wire``); the booking
    transaction (Appointment resources) the tolerant path; both give what the
    tolerant path (``json`` + dict walking) gives."""
    raw = (examples_dir() / name).read_bytes()
    assert (wire.decode(raw) is not None) is ("Appointment" not in name)
    assert_same(parse_bundle(raw), parse_bundle(json.loads(raw)))


@pytest.mark.parametrize("name", NOT_BUNDLES)
def test_examples_that_are_not_bundles_are_refused_naming_their_type(name: str) -> None:
    resource_type = name.split("-", 1)[0]
    with pytest.raises(BundleError) as err:
        parse_example(name)
    assert (
        err.value.message_fr == f"La réponse est une ressource {resource_type}, pas un Bundle FHIR."
    )


def test_every_example_file_is_either_a_bundle_or_refused() -> None:
    others = {p.name for p in examples_dir().glob("*.json")} - set(EXPECTED)
    assert sorted(others) == NOT_BUNDLES


def test_ps_indiv_example_in_detail() -> None:
    result = parse_example("Bundle-ExampleBundlePSIndiv.json")
    by_id = {s.id: s for s in result.slots}
    s1, s2, s3, s4 = (by_id[f"ExampleSlotPSIndiv{n}"] for n in (1, 2, 3, 4))
    # Dr THOMAS: two places (two roles, two schedules), one Practitioner object
    assert s1.practitioner is s2.practitioner
    assert s1.practitioner is not None and s1.practitioner.national_id == "810100050075"
    assert s1.practitioner.id_kind is PractitionerIdKind.RPPS
    assert s1.practitioner.display_name == "Sébastien THOMAS"
    assert s1.role is not None and s2.role is not None and s1.role.id != s2.role.id
    assert s1.location is not None and s1.location.address.lines == ("1 rue Mme DELMAS",)
    assert s2.location is not None and s2.location.address.lines == ("30 rue Mme DELMAS",)
    assert (s1.location.address.city, s1.location.address.postal_code) == ("AGEN", "47000")
    assert s1.role.organization_id == "1810004421"
    assert s2.role.organization_id == "1810004956"
    assert s1.role.organization_kind is StructureIdKind.FINESS
    assert s1.start == datetime(2021, 11, 5, 9, 0, tzinfo=UTC)
    assert s1.end == datetime(2021, 11, 5, 9, 30, tzinfo=UTC)
    assert s1.types == (SlotType.PUBLIC,)
    assert s1.modes == (ConsultationMode.AMB, ConsultationMode.VR)
    assert [sp.code for sp in s1.specialties] == ["SM54", "SM05"]
    assert s1.reasons == ("Visite de contrôle",)
    assert s1.appointment_type is AppointmentType.ROUTINE
    assert s1.booking_url == "https://exemple.com/rdv/com/"
    # the PRO walk-in slot has no booking link
    assert s2.types == (SlotType.PRO,)
    assert s2.appointment_type is AppointmentType.WALKIN and s2.booking_url is None
    assert s2.specialties[0].code == "SM54" and s2.specialties[0].text == "Médecine générale"
    # Dr MARCEL: a coded and a text-only specialty; teleconsultation, then home visit
    assert s3.practitioner is not None and s3.practitioner.rpps == "10002673899"
    assert s3.types == (SlotType.PUBLIC, SlotType.PRO)
    assert s3.modes == (ConsultationMode.VR,) and s4.modes == (ConsultationMode.HH,)
    assert s3.specialties[1] == Specialty(None, None, "Pneumologie")
    assert s3.reasons == ("Visite de contrôle", "Consultation de suivi pneumologie")
    assert s3.role is not None and s3.role.phone == "+33658913859"
    assert s3.schedule is s4.schedule
    assert result.self_link is not None and "_count=1000" in result.self_link


def test_the_text_only_specialty_slot_example_added_to_the_ps_bundle() -> None:
    """``Slot-ExampleSlotPSIndiv5`` (PRO, walk-in, text-only specialty, no link)
    belongs to Dr THOMAS's second schedule: added to the PS Bundle, it resolves."""
    body = json.loads((examples_dir() / "Bundle-ExampleBundlePSIndiv.json").read_bytes())
    extra = json.loads((examples_dir() / "Slot-ExampleSlotPSIndiv5.json").read_bytes())
    body["entry"].append({"resource": extra})
    result = parse_bundle(body)
    assert len(result.slots) == 5 and result.skipped == ()
    s5 = result.slots[-1]
    assert s5.id == "ExampleSlotPSIndiv5"
    assert s5.specialties == (Specialty(None, None, "Médecine générale"),)
    assert s5.appointment_type is AppointmentType.WALKIN and s5.booking_url is None
    assert s5.types == (SlotType.PRO,) and s5.reasons == ("Visite urgente",)
    assert s5.practitioner is not None and s5.practitioner.national_id == "810100050075"
    assert s5.location is not None and s5.location.address.lines == ("30 rue Mme DELMAS",)


def test_cpts_example_in_detail() -> None:
    result = parse_example("Bundle-ExampleBundleCPTS1.json")
    [s] = result.slots
    assert s.types == (SlotType.PUBLIC, SlotType.CPTS)
    assert s.start == datetime(2024, 6, 12, 16, 40, tzinfo=CEST)
    assert s.reasons == ("Visite de contrôle",)  # the 604 entry is not a reason
    [service] = s.services
    assert service.id == "ExampleHealthcareServiceCPTS1"
    assert service.organization is result.organizations[0]
    assert service.organization.finess == "950047225"
    assert service.organization.name == "CPTS AXE MAJEUR"
    assert service.organization.phone == "+33102030405"
    # the role's structure: an RPPS-rang value with no type or system
    assert s.role is not None and s.role.organization_id == "412345678912345"
    assert s.role.organization_kind is StructureIdKind.RPPS_RANG
    assert s.location is not None and s.location.address.city == "Aussonne"


def test_sos_example_in_detail() -> None:
    result = parse_example("Bundle-ExampleBundleAgregateurSOS.json")
    by_id = {s.id: s for s in result.slots}
    assert sorted(by_id) == [f"ExampleSlotSOS{n}" for n in (1, 2, 3, 4)]
    s1, s3, s4 = by_id["ExampleSlotSOS1"], by_id["ExampleSlotSOS3"], by_id["ExampleSlotSOS4"]
    assert s1.practitioner is None
    assert s1.types == (SlotType.PUBLIC, SlotType.SNP)
    assert s1.location is not None and s1.location.name == "Centre de consultation Rennes Nord"
    assert s1.location.phone == "+33193246789"
    assert s1.location.hours[0].days == ("tue", "wed", "thu", "fri", "sat", "sun")
    assert s1.organization is not None and s1.organization.siret == "34173748400020"
    assert s3.organization is not None and s3.organization.national_id == "392080466300010"
    assert s3.location is s4.location
    assert s1.booking_url == "http://www.editeur.com/agenda-pfg/creneau1"
    assert {o.id_kind for o in result.organizations} == {StructureIdKind.SIRET}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_peer_fhir_client_reads_the_same_slots(name: str) -> None:
    """fhir.resources (R4B models, the closest it has to R4) on the same bytes:
    same slot ids, same instants, same schedule references."""
    from fhir.resources.R4B.bundle import Bundle

    raw = (examples_dir() / name).read_bytes()
    peer = Bundle.model_validate_json(raw)
    peer_slots = {
        e.resource.id: (e.resource.start, e.resource.end, e.resource.schedule.reference)
        for e in peer.entry or ()
        if e.resource.__resource_type__ == "Slot"
    }
    ours = {s.id: (s.start, s.end, s.schedule_ref) for s in parse_bundle(raw).slots}
    assert ours == peer_slots
    assert len(ours) == EXPECTED[name]["slots"]


def test_cli_prints_one_json_line_per_slot_then_a_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    example = examples_dir() / "Bundle-ExampleBundlePSIndiv.json"
    assert main(["fhir", "parse", str(example)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5
    records = [json.loads(line) for line in lines]
    first = records[0]
    assert first["slot"] == "ExampleSlotPSIndiv1"
    assert first["practitioner"] == "810100050075"
    assert first["start"] == "2021-11-05T09:00:00.000+00:00"
    assert first["end"] == "2021-11-05T09:30:00.000+00:00"
    assert first["types"] == ["PUBLIC"] and first["modes"] == ["AMB", "VR"]
    assert first["booking_url"] == "https://exemple.com/rdv/com/"
    assert "coordinates" in first and first["coordinates"] is None  # none in the example
    assert [r["practitioner"] for r in records[:4]] == [
        "810100050075",
        "810100050075",
        "810002673899",
        "810002673899",
    ]
    summary = records[-1]["summary"]
    assert (summary["slots"], summary["practitioners"], summary["skipped"]) == (4, 2, 0)
    assert summary["skipped_reasons"] == {}


def test_cli_summary_lists_skipped_resources(capsys: pytest.CaptureFixture[str]) -> None:
    example = examples_dir() / "Bundle-ExampleBundleAppointmentLRM7.json"
    assert main(["fhir", "parse", str(example)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])["summary"]
    assert summary["slots"] == 0 and summary["skipped"] == 1
    assert summary["skipped_reasons"] == {"invalid-identifier": 1}
    assert summary["skipped_resources"][0]["id"] == "ExampleSasOrganization3"


def test_cli_refuses_a_resource_that_is_not_a_bundle_and_an_unreadable_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["fhir", "parse", str(examples_dir() / "Slot-ExampleSlotPSIndiv5.json")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "La réponse est une ressource Slot, pas un Bundle FHIR." in captured.err
    assert main(["fhir", "parse", str(tmp_path / "absent.json")]) == 1
    assert "fichier illisible" in capsys.readouterr().err
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"<html>502 Bad Gateway</html>")
    assert main(["fhir", "parse", str(garbage)]) == 1
    assert "n'est pas un JSON valide" in capsys.readouterr().err
