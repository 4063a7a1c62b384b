"""The searchset Bundle parser: variants the guide tolerates, resources that
break the profile (skipped with their reason), broken bodies.  Pure: no Qt,
no network."""

from __future__ import annotations

import copy
import gc
import json
import logging
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from sas_desk.models.slots import (
    SYSTEM_ACT_CODE,
    SYSTEM_SLOT_TYPE,
    SYSTEM_SPECIALTY,
    AppointmentType,
    ConsultationMode,
    PractitionerIdKind,
    SlotType,
    Specialty,
    StructureIdKind,
)
from sas_desk.services.fhir import wire
from sas_desk.services.fhir.bundle import (
    PARIS,
    BundleError,
    BundleResult,
    OperationOutcomeError,
    SkipReason,
    parse_bundle,
    parse_instant,
    slot_record,
)
from tests.helpers.bundles import assert_same

RPPS = "810100050075"
FAMILY = "THOMAS-ZZTEST"  # searched for in the logs: names are never logged
CEST = timezone(timedelta(hours=2))


# --------------------------------------------------------------------------- builders


def slot(sid: str = "s1", schedule: str = "Schedule/sch1", **over: Any) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Slot",
        "id": sid,
        "meta": {
            "profile": ["http://sas.fr/fhir/StructureDefinition/FrSlotAgregateur"],
            "security": [
                {"system": SYSTEM_SLOT_TYPE, "code": "PUBLIC"},
                {"system": SYSTEM_SLOT_TYPE, "code": "SNP"},
            ],
        },
        "serviceType": [
            {"coding": [{"system": SYSTEM_ACT_CODE, "code": "AMB"}]},
            {"coding": [{"system": SYSTEM_ACT_CODE, "code": "VR"}]},
            {"text": "Visite de contrôle"},
        ],
        "specialty": [{"coding": [{"system": SYSTEM_SPECIALTY, "code": "SM54"}]}],
        "appointmentType": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v2-0276", "code": "ROUTINE"}
            ]
        },
        "schedule": {"reference": schedule},
        "status": "free",
        "start": "2026-07-14T10:00:00.000+02:00",
        "end": "2026-07-14T10:20:00.000+02:00",
        "comment": "https://agenda.example.fr/rdv/1",
    }
    res.update(over)
    return res


def schedule(
    sid: str = "sch1", actors: tuple[str, ...] = ("Practitioner/p1", "PractitionerRole/r1")
):
    return {"resourceType": "Schedule", "id": sid, "actor": [{"reference": a} for a in actors]}


def practitioner(pid: str = "p1", value: str = RPPS, **over: Any) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Practitioner",
        "id": pid,
        "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.1", "value": value}],
        "name": [{"family": FAMILY, "given": ["Sébastien"]}],
    }
    res.update(over)
    return res


def role(rid: str = "r1", pid: str = "p1", **over: Any) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "id": rid,
        "contained": [
            {
                "resourceType": "Location",
                "id": "loc",
                "identifier": [{"system": "urn:oid:1.1.1", "value": "42"}],
                "address": {"line": ["1 rue de la Gare"], "city": "AGEN", "postalCode": "47000"},
                "position": {"latitude": 44.2, "longitude": 0.62},
            }
        ],
        "practitioner": {"reference": f"Practitioner/{pid}"},
        "organization": {
            "identifier": {"system": "urn:oid:1.2.250.1.71.4.2.2", "value": "1810004421"}
        },
        "location": [{"reference": "#loc"}],
        "telecom": [{"system": "phone", "value": "+33658913859"}],
    }
    res.update(over)
    return res


def bundle(*resources: Any, total: Any = None, **over: Any) -> dict[str, Any]:
    entries = [
        {"fullUrl": f"https://v.example/{r['resourceType']}/{r.get('id')}", "resource": r}
        if isinstance(r, dict) and "resourceType" in r
        else r
        for r in resources
    ]
    b: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": sum(
            1 for r in resources if isinstance(r, dict) and r.get("resourceType") == "Slot"
        )
        if total is None
        else total,
        "link": [{"relation": "self", "url": "https://v.example/Slot?status=free"}],
        "entry": entries,
    }
    b.update(over)
    return b


def ps(*slots: dict[str, Any]) -> dict[str, Any]:
    return bundle(*(slots or (slot(),)), schedule(), practitioner(), role())


def reasons(result: BundleResult) -> list[tuple[str, str | None, SkipReason]]:
    return [(s.resource_type, s.resource_id, s.reason) for s in result.skipped]


# --------------------------------------------------------------------------- the nominal answer


def test_a_ps_slot_is_resolved_with_its_schedule_practitioner_role_and_place() -> None:
    result = parse_bundle(ps())
    assert result.skipped == ()
    assert (result.bundle_type, result.total) == ("searchset", 1)
    assert result.self_link == "https://v.example/Slot?status=free"
    [s] = result.slots
    assert s.id == "s1" and s.schedule_ref == "Schedule/sch1"
    assert s.start == datetime(2026, 7, 14, 10, 0, tzinfo=CEST)
    assert s.end - s.start == timedelta(minutes=20)
    assert s.types == (SlotType.PUBLIC, SlotType.SNP)
    assert s.modes == (ConsultationMode.AMB, ConsultationMode.VR)
    assert s.reasons == ("Visite de contrôle",)
    assert s.specialties == (Specialty("SM54", SYSTEM_SPECIALTY, None),)
    assert s.specialties[0].label == "Médecine générale"
    assert s.appointment_type is AppointmentType.ROUTINE
    assert s.booking_url == "https://agenda.example.fr/rdv/1" and s.bookable
    assert s.practitioner is not None
    assert s.practitioner.national_id == RPPS and s.practitioner.rpps == RPPS[1:]
    assert s.practitioner.id_kind is PractitionerIdKind.RPPS
    assert s.practitioner.display_name == f"Sébastien {FAMILY}"
    assert s.role is not None and s.role.phone == "+33658913859"
    assert s.role.organization_id == "1810004421"
    assert s.role.organization_kind is StructureIdKind.FINESS
    assert s.location is not None
    assert s.location.address.text == "1 rue de la Gare, 47000 AGEN"
    assert s.location.coordinates == (44.2, 0.62)
    assert [p.id for p in result.practitioners] == ["p1"]
    assert [r.id for r in result.roles] == ["r1"]
    assert [x.id for x in result.schedules] == ["sch1"]
    # one object per resource: the slot shares the listed practitioner
    assert s.practitioner is result.practitioners[0]


def test_bytes_str_and_dict_bodies_give_the_same_slots() -> None:
    body = ps()
    raw = json.dumps(body, ensure_ascii=False)
    results = [
        parse_bundle(body),
        parse_bundle(raw),
        parse_bundle(raw.encode("utf-8")),
        parse_bundle("\ufeff" + raw),
        parse_bundle(b"\xef\xbb\xbf" + raw.encode("utf-8")),
    ]
    assert {slot_record(r.slots[0])["start"] for r in results} == {"2026-07-14T10:00:00.000+02:00"}
    assert all(len(r.slots) == 1 and not r.skipped for r in results)


def test_a_well_formed_body_takes_the_typed_decoder() -> None:
    raw = json.dumps(ps()).encode()
    typed = wire.decode(raw)
    assert typed is not None and typed.entry is not None
    assert [wire.resource_type(e.resource) for e in typed.entry if e.resource] == [
        "Slot",
        "Schedule",
        "Practitioner",
        "PractitionerRole",
    ]
    assert_same(parse_bundle(raw), parse_bundle(ps()))


def wrong_shapes() -> dict[str, Any]:
    return bundle(
        slot(
            "s1",
            comment=42,
            meta={"security": "PUBLIC"},
            serviceType=[{"coding": [{"code": 7}, {"code": "VR"}]}, {"text": "Suivi"}, "AMB"],
        ),
        slot("s2", start=20260714, schedule="Schedule/sch1"),
        slot("s3", status=["free"]),
        slot("s4"),
        schedule(),
        practitioner(),
        role(),
    )


def test_elements_of_the_wrong_shape_are_dropped_and_the_rest_kept() -> None:
    raw = json.dumps(wrong_shapes()).encode()
    assert wire.decode(raw) is None  # the typed decode refuses: the tolerant path decides
    result = parse_bundle(raw)
    assert [s.id for s in result.slots] == ["s1", "s4"]
    s1 = result.slots[0]
    assert s1.booking_url is None and s1.types == ()
    assert s1.modes == (ConsultationMode.VR,) and s1.reasons == ("Suivi",)
    assert reasons(result) == [
        ("Slot", "s2", SkipReason.INVALID_TIME),
        ("Slot", "s3", SkipReason.NOT_FREE),
    ]


def test_the_shared_caches_are_emptied_when_full_and_the_slots_stay_right(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sas_desk.services.fhir import bundle as bundle_module

    monkeypatch.setattr(bundle_module, "_KINDS_LIMIT", 2)
    monkeypatch.setattr(bundle_module, "_TIMES_LIMIT", 3)
    reasons_sent = [f"Motif {n}" for n in range(5)]
    slots = [
        slot(
            f"s{n}",
            serviceType=[{"text": text}],
            start=f"2026-07-14T1{n}:00:00.000+02:00",
            end=f"2026-07-14T1{n}:20:00.000+02:00",
        )
        for n, text in enumerate(reasons_sent)
    ]
    result = parse_bundle(json.dumps(ps(*slots)).encode())
    assert [s.reasons for s in result.slots] == [(text,) for text in reasons_sent]
    assert [s.start.hour for s in result.slots] == [10, 11, 12, 13, 14]
    assert len(bundle_module._KINDS) <= 2 and len(bundle_module._TIMES) <= 3


def test_what_a_slot_leads_to_is_remembered_across_parses_with_what_it_refers_to() -> None:
    first = parse_bundle(json.dumps(ps()).encode())
    again = parse_bundle(json.dumps(ps()).encode())
    # the same resources sent again: the same objects, not rebuilt
    assert again.slots[0].practitioner is first.slots[0].practitioner
    assert again.slots[0].role is first.slots[0].role
    # the same role as sent, but its practitioner changed in this Bundle:
    # the role leads to this Bundle's practitioner, not the remembered one
    renamed = practitioner(name=[{"family": "AUTRE-ZZTEST", "given": ["Lou"]}])
    other = parse_bundle(json.dumps(bundle(slot(), schedule(), renamed, role())).encode())
    [s] = other.slots
    assert s.practitioner is not None and s.practitioner.family == "AUTRE-ZZTEST"
    assert s.role is not None and s.role.practitioner is s.practitioner
    assert s.role != first.slots[0].role
    # a practitioner without a national id is refused every time, never remembered
    broken = practitioner(identifier=[])
    for _ in range(2):
        result = parse_bundle(json.dumps(bundle(slot(), schedule(), broken, role())).encode())
        assert result.slots == () and result.practitioners == ()
        assert ("Practitioner", "p1", SkipReason.INVALID_IDENTIFIER) in reasons(result)


def test_the_remembered_resources_are_forgotten_when_full_and_the_slots_stay_right(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sas_desk.services.fhir import bundle as bundle_module

    monkeypatch.setattr(bundle_module, "_RESOURCES_LIMIT", 2)
    for n in range(5):
        named = practitioner(name=[{"family": f"NOM{n}-ZZTEST"}])
        result = parse_bundle(json.dumps(bundle(slot(), schedule(), named, role())).encode())
        [s] = result.slots
        assert s.practitioner is not None and s.practitioner.family == f"NOM{n}-ZZTEST"
        assert s.role is not None and s.role.practitioner is s.practitioner
    assert len(bundle_module._PRACTITIONERS) <= 2 and len(bundle_module._ROLES) <= 2


def test_odd_shapes_around_the_slot_read_the_same_typed_and_tolerant() -> None:
    """A contained resource that is not a Location, a coordinate that is a
    boolean, a name that is not an object: the typed decode refuses the
    second and the third, the tolerant path reads each resource leniently
    into the same structures; both keep and drop the same things."""
    with_other = role(
        contained=[
            {"resourceType": "Organization", "id": "loc", "name": "pas un lieu"},
            role()["contained"][0],
        ]
    )
    raw = json.dumps(
        ps() | {"entry": bundle(slot(), schedule(), practitioner(), with_other)["entry"]}
    )
    assert wire.decode(raw.encode()) is not None
    result = parse_bundle(raw.encode())
    assert result.slots[0].location is not None
    assert result.slots[0].location.address.city == "AGEN"
    assert_same(result, parse_bundle(json.loads(raw)))
    odd_place = copy.deepcopy(role())
    odd_place["contained"][0]["position"] = {"latitude": True, "longitude": 0.62}
    odd_name = practitioner(name=["SÉBASTIEN"], telecom=[{"system": "phone", "value": 33}])
    b = bundle(slot(), schedule(), odd_name, odd_place)
    assert wire.decode(json.dumps(b).encode()) is None
    odd = parse_bundle(json.dumps(b).encode())
    [s] = odd.slots
    assert s.location is not None and s.location.coordinates is None
    assert s.location.address.city == "AGEN"
    assert s.practitioner is not None and s.practitioner.family is None
    assert s.practitioner.phone is None and s.practitioner.national_id == RPPS
    assert_same(odd, parse_bundle(b))


def test_a_wrong_shape_in_what_says_the_kind_of_slot_is_dropped_on_the_typed_path() -> None:
    """Those elements are read as text first, then leniently, once per kind."""
    odd = slot(
        "s1",
        meta={"security": "PUBLIC"},
        serviceType=[{"coding": [{"code": 7}, {"code": "VR"}]}, {"text": "Suivi"}, "AMB"],
        specialty=[{"coding": [{"code": "SM54"}]}],
    )
    raw = json.dumps(bundle(odd, slot("s2"), schedule(), practitioner(), role())).encode()
    assert wire.decode(raw) is not None
    result = parse_bundle(raw)
    s1, s2 = result.slots
    assert s1.types == () and s1.modes == (ConsultationMode.VR,) and s1.reasons == ("Suivi",)
    assert [sp.code for sp in s1.specialties] == ["SM54"]
    assert s2.types == (SlotType.PUBLIC, SlotType.SNP) and not result.skipped
    assert_same(result, parse_bundle(json.loads(raw)))


@pytest.mark.parametrize("seed", range(40))
def test_odd_kind_elements_read_the_same_from_bytes_and_from_a_dict(seed: int) -> None:
    """Elements of the wrong shape at random places of what says the kind of
    slot: the typed path (text read per kind) and the tolerant one (dicts)
    keep and drop the same things."""
    import random

    rng = random.Random(seed)
    odd_values: list[Any] = [7, "x", None, [], {}, [1, "a"], {"code": 3}, True]
    slots = []
    for n in range(6):
        s = slot(f"s{n}")
        for _ in range(rng.randint(1, 3)):
            name = rng.choice(["meta", "serviceType", "specialty", "appointmentType"])
            path: list[Any] = [name]
            value = s[name]
            while isinstance(value, dict | list) and value and rng.random() < 0.7:
                step = rng.choice(list(value) if isinstance(value, dict) else range(len(value)))
                path.append(step)
                value = value[step]
            holder: Any = s
            for step in path[:-1]:
                holder = holder[step]
            holder[path[-1]] = rng.choice(odd_values)
        slots.append(s)
    b = ps(*slots)
    typed = parse_bundle(json.dumps(b).encode())
    assert [x.id for x in typed.slots] == [f"s{n}" for n in range(6)]  # none refused for it
    assert_same(typed, parse_bundle(copy.deepcopy(b)))


def test_a_wrong_shape_in_a_body_is_read_as_from_a_dict_and_the_dict_is_kept() -> None:
    b = wrong_shapes()
    before = copy.deepcopy(b)
    assert_same(parse_bundle(json.dumps(b).encode()), parse_bundle(b))
    assert b == before


def test_invalid_utf8_in_an_element_the_parser_does_not_read_is_still_refused() -> None:
    with pytest.raises(BundleError, match="UTF-8"):
        parse_bundle(json.dumps(ps()).encode()[:-1] + b', "id": "\xff"}')


def test_slot_record_is_json_ready() -> None:
    record = slot_record(parse_bundle(ps()).slots[0])
    assert json.loads(json.dumps(record)) == record
    assert record["practitioner"] == RPPS
    assert record["types"] == ["PUBLIC", "SNP"] and record["modes"] == ["AMB", "VR"]
    assert record["coordinates"] == [44.2, 0.62]
    assert record["organization"] == "1810004421"


# --------------------------------------------------------------------------- tolerated variants


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-06-12T16:40:00.000+02:00", datetime(2024, 6, 12, 16, 40, tzinfo=CEST)),
        ("2024-06-12T16:40:00+02:00", datetime(2024, 6, 12, 16, 40, tzinfo=CEST)),
        ("2024-06-12T14:40:00.000Z", datetime(2024, 6, 12, 14, 40, tzinfo=UTC)),
        ("2024-06-12T14:40:00.25z", datetime(2024, 6, 12, 14, 40, 0, 250000, tzinfo=UTC)),
        (
            "2024-06-12T14:40:00.123456789+00:00",
            datetime(2024, 6, 12, 14, 40, 0, 123456, tzinfo=UTC),
        ),
        ("2024-06-12t14:40:00+00:00", datetime(2024, 6, 12, 14, 40, tzinfo=UTC)),
    ],
)
def test_instants_with_or_without_milliseconds_and_offsets(text: str, expected: datetime) -> None:
    parsed = parse_instant(text)
    assert parsed == expected
    assert parsed is not None and parsed.utcoffset() == expected.utcoffset()


def test_naive_times_are_paris_wall_clock_time_summer_and_winter() -> None:
    summer = parse_instant("2026-07-14T10:00:00.000")
    winter = parse_instant("2026-01-14T10:00:00")
    assert summer is not None and winter is not None
    assert summer.tzinfo is PARIS and summer.utcoffset() == timedelta(hours=2)
    assert winter.utcoffset() == timedelta(hours=1)
    assert summer.astimezone(UTC).hour == 8 and winter.astimezone(UTC).hour == 9
    result = parse_bundle(ps(slot(start="2026-07-14T10:00:00.000", end="2026-07-14T10:20:00.000")))
    assert result.slots[0].start == datetime(2026, 7, 14, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize("text", ["2026-07-14", "demain 10h", "2026-07-14T25:00:00+02:00", ""])
def test_a_date_without_time_or_garbage_is_not_an_instant(text: str) -> None:
    assert parse_instant(text) is None


def test_text_only_and_foreign_specialties_are_kept() -> None:
    s = slot(
        specialty=[
            {"text": "Médecine générale"},
            {"coding": [{"system": "urn:other", "code": "GP"}]},
            {"coding": [{"system": SYSTEM_SPECIALTY, "code": "SM41"}], "text": "Pneumologie"},
            {},
        ]
    )
    [parsed] = parse_bundle(ps(s)).slots
    assert parsed.specialties == (
        Specialty(None, None, "Médecine générale"),
        Specialty("GP", "urn:other", None),
        Specialty("SM41", SYSTEM_SPECIALTY, "Pneumologie"),
    )
    assert [x.label for x in parsed.specialties] == ["Médecine générale", "GP", "Pneumologie"]


def test_absent_optional_elements_leave_a_usable_slot() -> None:
    bare_slot = {
        "resourceType": "Slot",
        "id": "bare",
        "schedule": {"reference": "Schedule/sch1"},
        "status": "free",
        "start": "2026-07-14T10:00:00.000+02:00",
        "end": "2026-07-14T10:30:00.000+02:00",
    }
    bare_practitioner = {
        "resourceType": "Practitioner",
        "id": "p1",
        "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "0751234567"}],
    }
    bare_role = {"resourceType": "PractitionerRole", "id": "r1"}
    result = parse_bundle(bundle(bare_slot, schedule(), bare_practitioner, bare_role))
    assert result.skipped == ()
    [s] = result.slots
    assert (s.types, s.modes, s.specialties, s.reasons) == ((), (), (), ())
    assert s.appointment_type is None and s.booking_url is None and not s.bookable
    assert s.practitioner is not None and s.practitioner.id_kind is PractitionerIdKind.ADELI
    assert s.practitioner.adeli == "751234567" and s.practitioner.display_name == "0751234567"
    assert s.role is not None and s.location is None and s.role.phone is None
    assert slot_record(s)["coordinates"] is None


def test_walkin_slot_without_link_is_not_bookable() -> None:
    s = slot(appointmentType={"coding": [{"code": "WALKIN"}]})
    del s["comment"]
    [parsed] = parse_bundle(ps(s)).slots
    assert parsed.appointment_type is AppointmentType.WALKIN
    assert not parsed.bookable


def test_references_may_be_absolute_or_versioned() -> None:
    b = bundle(
        slot("s1", schedule="https://v.example/Schedule/sch1"),
        slot("s2", schedule="Schedule/sch1/_history/3"),
        schedule(actors=("https://v.example/Practitioner/p1", "PractitionerRole/r1")),
        practitioner(),
        role(),
    )
    result = parse_bundle(b)
    assert [s.id for s in result.slots] == ["s1", "s2"]
    assert all(s.practitioner is not None and s.practitioner.id == "p1" for s in result.slots)


def test_slot_types_keep_known_codes_of_the_type_system_only() -> None:
    s = slot()
    s["meta"]["security"] = [
        {"system": SYSTEM_SLOT_TYPE, "code": "PRO"},
        {"system": SYSTEM_SLOT_TYPE, "code": "private"},  # the test kit's non-standard value
        {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "PUBLIC"},
        {
            "system": "https://mos.esante.gouv.fr/NOS/JDV_J165-TypeCreneau-SAS/FHIR/JDV-J165-TypeCreneau-SAS",
            "code": "SNP",
        },
        {"code": "PRO"},
        "garbage",
    ]
    [parsed] = parse_bundle(ps(s)).slots
    assert parsed.types == (SlotType.PRO, SlotType.SNP)


def test_display_only_elements_that_are_malformed_are_dropped_not_the_resource() -> None:
    bad_role = role(
        telecom=[{"system": "phone", "value": "pas un numéro"}],
        contained=[
            {
                "resourceType": "Location",
                "id": "loc",
                "address": {"line": ["2 rue X"], "city": "AGEN", "postalCode": "47000"},
                "position": {"latitude": 144.2, "longitude": 0.62},
            }
        ],
    )
    national_phone = practitioner(telecom=[{"system": "phone", "value": "05 53 00 00 00"}])
    result = parse_bundle(
        bundle(slot(comment="javascript:alert(1)"), schedule(), national_phone, bad_role)
    )
    assert result.skipped == ()
    [s] = result.slots
    assert s.booking_url is None
    assert s.role is not None and s.role.phone is None
    assert s.location is not None and s.location.coordinates is None
    assert s.practitioner is not None and s.practitioner.phone == "+33553000000"


def test_cpts_slot_lists_the_cpts_it_is_visible_to() -> None:
    def cpts_entry(n: int) -> dict[str, Any]:
        return {
            "extension": [
                {
                    "url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-Slot.serviceType",
                    "valueReference": {"reference": f"HealthcareService/hs{n}"},
                }
            ],
            "coding": [
                {
                    "system": "https://mos.esante.gouv.fr/NOS/TRE_R66-CategorieEtablissement/FHIR/TRE-R66-CategorieEtablissement",
                    "code": "604",
                }
            ],
            "text": "CPTS",  # label of the coding, not a reason
        }

    s = slot()
    s["serviceType"] += [cpts_entry(1), cpts_entry(2), cpts_entry(9)]  # hs9: not in the Bundle
    services = [
        {
            "resourceType": "HealthcareService",
            "id": f"hs{n}",
            "providedBy": {"reference": f"Organization/o{n}"},
        }
        for n in (1, 2)
    ]
    orgs = [
        {
            "resourceType": "Organization",
            "id": f"o{n}",
            "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.2", "value": f"19500472{n}5"}],
            "name": f"CPTS {n}",
        }
        for n in (1, 2)
    ]
    result = parse_bundle(bundle(s, schedule(), practitioner(), role(), *services, *orgs))
    [parsed] = result.slots
    assert [x.organization.finess for x in parsed.services if x.organization] == [
        "9500472" + "15",
        "9500472" + "25",
    ]
    assert parsed.reasons == ("Visite de contrôle",)
    assert slot_record(parsed)["cpts"] == ["1950047215", "1950047225"]
    assert len(result.healthcare_services) == 2 and len(result.organizations) == 2


def test_a_cpts_slot_kind_is_not_carried_to_another_bundle_with_other_services() -> None:
    """Kinds of slots are remembered across parses, except those that refer
    to the Bundle's own CPTS services: the same serviceType elsewhere points
    to another HealthcareService."""

    def one(org_suffix: str, name: str) -> BundleResult:
        s = slot()
        s["serviceType"] += [
            {
                "extension": [
                    {
                        "url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-Slot.serviceType",
                        "valueReference": {"reference": "HealthcareService/hs1"},
                    }
                ],
                "text": "CPTS",
            }
        ]
        service = {
            "resourceType": "HealthcareService",
            "id": "hs1",
            "providedBy": {"reference": "Organization/o1"},
        }
        org = {
            "resourceType": "Organization",
            "id": "o1",
            "identifier": [
                {"system": "urn:oid:1.2.250.1.71.4.2.2", "value": "19500472" + org_suffix}
            ],
            "name": name,
        }
        return parse_bundle(
            json.dumps(bundle(s, schedule(), practitioner(), role(), service, org)).encode()
        )

    first, second = one("15", "CPTS A"), one("25", "CPTS B")
    assert [x.organization.finess for x in first.slots[0].services if x.organization] == [
        "950047215"
    ]
    assert [x.organization.finess for x in second.slots[0].services if x.organization] == [
        "950047225"
    ]


def test_kinds_and_instants_met_in_one_bundle_are_reused_in_the_next() -> None:
    body = json.dumps(ps(slot("s1"))).encode()
    first = parse_bundle(body).slots[0]
    again = parse_bundle(body).slots[0]
    assert again.types is first.types and again.start is first.start  # the same objects
    assert again == first


def test_sos_slot_is_resolved_through_its_location_to_the_association() -> None:
    place = {
        "resourceType": "Location",
        "id": "pfg",
        "name": "Centre de consultation",
        "address": {"line": ["3 place X"], "city": "RENNES", "postalCode": "35000"},
        "managingOrganization": {"reference": "Organization/sos"},
        "telecom": [{"system": "phone", "value": "+33299000000"}],
        "hoursOfOperation": [
            {"daysOfWeek": ["mon", "tue"], "openingTime": "08:00:00", "closingTime": "20:00:00"}
        ],
    }
    sos = {
        "resourceType": "Organization",
        "id": "sos",
        "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.2", "value": "334173748400020"}],
        "name": "SOS Médecins",
    }
    result = parse_bundle(
        bundle(slot(schedule="Schedule/ss"), schedule("ss", ("Location/pfg",)), place, sos)
    )
    [s] = result.slots
    assert s.practitioner is None and s.role is None
    assert s.location is not None and s.location.name == "Centre de consultation"
    assert s.location.hours[0].days == ("mon", "tue")
    assert s.location.hours[0].opening is not None and s.location.hours[0].opening.hour == 8
    assert s.organization is not None and s.organization.siret == "34173748400020"
    assert s.organization.id_kind is StructureIdKind.SIRET
    assert slot_record(s)["organization"] == "334173748400020"
    assert slot_record(s)["phone"] == "+33299000000"


def test_other_resource_types_are_kept_as_sent() -> None:
    appointment = {"resourceType": "Appointment", "id": "a1", "status": "booked"}
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "warning"}]}
    result = parse_bundle(bundle(appointment, outcome, *ps()["entry"]))
    assert [o["resourceType"] for o in result.other] == ["Appointment", "OperationOutcome"]
    assert len(result.slots) == 1


# --------------------------------------------------------------------------- what breaks the profile


def test_unusable_slots_are_skipped_with_their_reason_and_the_others_kept() -> None:
    b = bundle(
        slot("ok"),
        slot("busy", status="busy"),
        slot("dateonly", start="2026-07-14"),
        slot("noend", end=None),
        slot("inverted", start="2026-07-14T11:00:00+02:00", end="2026-07-14T10:00:00+02:00"),
        slot("nosched", schedule={}),
        slot("elsewhere", schedule="Schedule/unknown"),
        slot("wrongtype", schedule="Practitioner/p1"),
        schedule(),
        practitioner(),
        role(),
    )
    b["entry"][5]["resource"]["schedule"] = {"display": "no reference"}
    result = parse_bundle(b)
    assert [s.id for s in result.slots] == ["ok"]
    assert reasons(result) == [
        ("Slot", "busy", SkipReason.NOT_FREE),
        ("Slot", "dateonly", SkipReason.INVALID_TIME),
        ("Slot", "noend", SkipReason.INVALID_TIME),
        ("Slot", "inverted", SkipReason.END_BEFORE_START),
        ("Slot", "nosched", SkipReason.MISSING_SCHEDULE),
        ("Slot", "elsewhere", SkipReason.UNRESOLVED_REFERENCE),
        ("Slot", "wrongtype", SkipReason.UNRESOLVED_REFERENCE),
    ]
    assert result.skipped_by_reason() == {
        "not-free": 1,
        "invalid-time": 2,
        "end-before-start": 1,
        "missing-schedule": 1,
        "unresolved-reference": 2,
    }
    assert result.total == 8  # as sent: the vendor counted them all
    assert all(s.reason.label for s in result.skipped)


def test_a_practitioner_without_national_id_takes_its_schedule_and_slots_out() -> None:
    b = bundle(
        slot("s-bad", schedule="Schedule/sch-bad"),
        slot("s-ok"),
        schedule("sch-bad", ("Practitioner/p-bad", "PractitionerRole/r-bad")),
        practitioner("p-bad", value="10101288385"),  # RPPS without its "8" prefix
        role("r-bad", pid="p-bad"),
        schedule(),
        practitioner(),
        role(),
    )
    result = parse_bundle(b)
    assert [s.id for s in result.slots] == ["s-ok"]
    assert reasons(result) == [
        ("Practitioner", "p-bad", SkipReason.INVALID_IDENTIFIER),
        ("Schedule", "sch-bad", SkipReason.INVALID_REFERENCE),
        ("Slot", "s-bad", SkipReason.INVALID_REFERENCE),
    ]
    assert [p.id for p in result.practitioners] == ["p1"]
    # the role survives (its practitioner is simply unknown), the schedule does not
    assert [r.id for r in result.roles] == ["r-bad", "r1"]
    assert result.roles[0].practitioner is None
    assert [x.id for x in result.schedules] == ["sch1"]


def test_a_schedule_with_only_its_role_still_finds_the_practitioner() -> None:
    result = parse_bundle(
        bundle(slot(), schedule(actors=("PractitionerRole/r1",)), practitioner(), role())
    )
    assert result.slots[0].practitioner is not None
    assert result.slots[0].practitioner.id == "p1"


def test_a_schedule_without_any_usable_actor_is_skipped() -> None:
    result = parse_bundle(bundle(slot(), schedule(actors=())))
    assert reasons(result) == [
        ("Schedule", "sch1", SkipReason.NO_ACTOR),
        ("Slot", "s1", SkipReason.INVALID_REFERENCE),
    ]


def test_structures_without_a_national_id_are_skipped() -> None:
    orgs = [
        {"resourceType": "Organization", "id": "o1", "identifier": [{"value": "3334173748400020"}]},
        {"resourceType": "Organization", "id": "o2", "identifier": [{"value": "12345"}]},
        {"resourceType": "Organization", "id": "o3"},
    ]
    result = parse_bundle(bundle(*orgs))
    assert [o.id for o in result.organizations] == []  # o1: a SIRET has 14 digits, not 15
    assert [(s.resource_id, s.reason) for s in result.skipped] == [
        ("o1", SkipReason.INVALID_IDENTIFIER),
        ("o2", SkipReason.INVALID_IDENTIFIER),
        ("o3", SkipReason.INVALID_IDENTIFIER),
    ]


def test_malformed_entries_missing_ids_and_duplicates_are_skipped() -> None:
    no_id = slot()
    del no_id["id"]
    b = bundle(
        "not an entry",
        {"fullUrl": "x"},
        {"resource": {"id": "typeless"}},
        no_id,
        *ps()["entry"],
        slot(),  # same id as the first slot
    )
    result = parse_bundle(b)
    assert [s.id for s in result.slots] == ["s1"]
    assert reasons(result) == [
        ("entry", "0", SkipReason.MALFORMED_ENTRY),
        ("entry", "1", SkipReason.MALFORMED_ENTRY),
        ("entry", "2", SkipReason.MALFORMED_ENTRY),
        ("Slot", None, SkipReason.MISSING_ID),
        ("Slot", "s1", SkipReason.DUPLICATE),
    ]


def test_a_reference_cycle_does_not_recurse() -> None:
    r1 = role("r1", location=[{"reference": "Location/l1"}])
    l1 = {
        "resourceType": "Location",
        "id": "l1",
        "managingOrganization": {"reference": "Organization/o1"},
    }
    o1 = {"resourceType": "Organization", "id": "o1", "identifier": [{"value": "1810004421"}]}
    result = parse_bundle(bundle(slot(), schedule(), practitioner(), r1, l1, o1))
    assert result.slots[0].location is not None
    assert result.slots[0].location.organization is not None


def test_skipped_resources_are_logged_without_names(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="sas_desk")
    bad_role = role(telecom=[{"system": "phone", "value": FAMILY}])
    b = bundle(slot(status="busy"), slot("s2"), schedule(), practitioner(value="42"), bad_role)
    parse_bundle(b)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "skipped Slot/s1: not-free (status 'busy')",
        "skipped Practitioner/p1: invalid-identifier (no IdNat_PS 8+RPPS or 0+ADELI)",
        "skipped Schedule/sch1: invalid-reference (actor Practitioner/p1)",
        "skipped Slot/s2: invalid-reference (schedule Schedule/sch1)",
    ]
    assert caplog.records, "nothing logged"
    assert not any(
        FAMILY in r.getMessage() or "Sébastien" in r.getMessage() for r in caplog.records
    )


def test_a_flood_of_bad_slots_is_logged_once_per_slot_only_up_to_a_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="sas_desk")
    b = ps(*(slot(f"s{n}", status="busy") for n in range(100)))
    result = parse_bundle(b)
    assert len(result.skipped) == 100
    assert len(caplog.records) == 21
    assert caplog.records[-1].getMessage() == "skipped 100 resources in all (not-free: 100)"


def test_a_total_that_is_not_an_integer_is_ignored() -> None:
    assert parse_bundle(bundle(total="4")).total is None
    assert parse_bundle(bundle(total=True)).total is None
    assert parse_bundle(bundle(total=0)).total == 0


def test_an_empty_searchset_is_a_result_not_an_error() -> None:
    result = parse_bundle({"resourceType": "Bundle", "type": "searchset", "total": 0})
    assert result.slots == () and result.skipped == () and result.total == 0


# --------------------------------------------------------------------------- broken bodies


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{ pas du json", "n'est pas un JSON valide (ligne 1, colonne 3)"),
        (b"", "La réponse est vide."),
        (b"  \n", "La réponse est vide."),
        (b'{"resourceType": "Bundle", "id": "\xff"}', "n'est pas du texte UTF-8"),
        (b"[1, 2]", "n'est pas une ressource FHIR (objet JSON attendu)"),
        (b'"Bundle"', "n'est pas une ressource FHIR (objet JSON attendu)"),
        (b"{}", "resourceType absent"),
        (b'{"resourceType": "Patient"}', "est une ressource Patient, pas un Bundle FHIR"),
        (b'{"resourceType": "Bundle", "entry": {}}', "« entry » n'est pas une liste"),
        (b"[" * 100_000 + b"]" * 100_000, "trop profondément imbriqué"),
    ],
)
def test_broken_bodies_raise_a_french_vendor_error(body: bytes, message: str) -> None:
    with pytest.raises(BundleError) as err:
        parse_bundle(body)
    assert message in err.value.message_fr
    assert not isinstance(err.value, OperationOutcomeError)
    assert err.value.outcome_text is None


def test_an_operation_outcome_raises_with_its_text() -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "invalid",
                "details": {"text": "Paramètre start manquant"},
                "diagnostics": "start=ge is required",
            },
            {"severity": "error", "code": "too-costly"},
        ],
    }
    with pytest.raises(OperationOutcomeError) as err:
        parse_bundle(json.dumps(outcome).encode())
    assert err.value.outcome_text == "Paramètre start manquant ; start=ge is required ; too-costly"
    assert err.value.message_fr == (
        "Le serveur a répondu par une erreur : "
        "Paramètre start manquant ; start=ge is required ; too-costly"
    )
    with pytest.raises(OperationOutcomeError) as bare:
        parse_bundle({"resourceType": "OperationOutcome"})
    assert bare.value.outcome_text == "erreur sans description"


def test_the_garbage_collector_is_back_on_after_a_parse_and_after_an_error() -> None:
    assert gc.isenabled()
    parse_bundle(ps())
    assert gc.isenabled()
    with pytest.raises(BundleError):
        parse_bundle(b"nope")
    assert gc.isenabled()
    gc.disable()
    try:
        parse_bundle(ps())
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()


def test_the_input_dict_is_not_modified() -> None:
    body = ps(slot(status="busy"), slot("s2"))
    before = copy.deepcopy(body)
    parse_bundle(body)
    assert body == before


def test_instants_of_one_offset_share_one_tzinfo_object() -> None:
    a = parse_instant("2026-07-14T10:00:00+02:00")
    b = parse_instant("2026-07-15T11:30:00.000+02:00")
    c = parse_instant("2026-12-14T10:00:00+01:00")
    assert a is not None and b is not None and c is not None
    assert a.tzinfo is b.tzinfo and a.tzinfo is not c.tzinfo
    assert a.utcoffset() == timedelta(hours=2) and c.utcoffset() == timedelta(hours=1)


def test_parse_steps_gives_the_result_of_parse_bundle_in_steps_with_the_gc_on_between() -> None:
    from sas_desk.services.fhir.bundle import SLICE, parse_steps

    slots = [
        slot(
            f"s{i}",
            start=f"2026-07-14T{8 + i % 10:02d}:{i % 60:02d}:00+02:00",
            end=f"2026-07-14T{8 + i % 10:02d}:{i % 60:02d}:30+02:00",
        )
        for i in range(2 * SLICE)
    ]
    raw = json.dumps(bundle(*slots, schedule(), practitioner(), role())).encode()
    steps = parse_steps(raw)
    pauses = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result = done.value
            break
        pauses += 1
        assert gc.isenabled()  # between two steps the collector is back on
    assert pauses >= 3  # the decoding, then every SLICE entries
    assert_same(result, parse_bundle(raw))
    assert len(result.slots) == 2 * SLICE


def test_parse_steps_takes_one_step_for_a_bundle_of_at_most_a_slice() -> None:
    from sas_desk.services.fhir.bundle import parse_steps

    raw = json.dumps(ps(slot("s1"), slot("s2"))).encode()
    with pytest.raises(StopIteration) as done:
        next(parse_steps(raw))
    assert gc.isenabled()
    assert_same(done.value.value, parse_bundle(raw))


def test_parse_steps_raises_like_parse_bundle() -> None:
    from sas_desk.services.fhir.bundle import parse_steps

    with pytest.raises(BundleError, match="JSON valide"):
        next(parse_steps(b"{not json"))
    assert gc.isenabled()
