"""Which dossier an RS-SAS-RDV appointment belongs to: the pure suggestion rule."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from sas_desk.models.appointment import (
    Appointment,
    OrientationHint,
    best_matches,
    match,
    regulator_is,
    same_practitioner,
)

PARIS = timezone(timedelta(hours=2))
DECIDED = datetime(2026, 6, 1, 10, 0, tzinfo=PARIS)
ME = frozenset({"jdupont", "jeanne.dupont@chu.example"})


def appt(**changes: object) -> Appointment:
    base = Appointment(
        appointment_id="rdv-1",
        method="CreateAppointment",
        created=DECIDED + timedelta(minutes=4),
        start=DECIDED + timedelta(hours=3),
        status="booked",
        regulator_name="Dupont",
        regulator_firstname="Jeanne",
        regulator_email="Jeanne.Dupont@CHU.example",
        regulator_id="",
        practitioner_rpps="810000000001",
        practitioner_name="Didier MOREL",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def hint(**changes: object) -> OrientationHint:
    base = OrientationHint("case-1", DECIDED, "Dr Morel Didier", "810000000001")
    return replace(base, **changes)  # type: ignore[arg-type]


def test_same_regulator_time_and_practitioner_is_suggested() -> None:
    m = match(appt(), hint(), ME)
    assert m is not None
    assert (m.case_id, m.appointment_id, m.minutes_apart, m.same_practitioner) == (
        "case-1",
        "rdv-1",
        4,
        True,
    )
    assert "même praticien" in m.reason_fr


def test_regulator_by_id_or_email_case_aside() -> None:
    assert regulator_is(appt(), ME)  # by e-mail, case aside
    assert regulator_is(appt(regulator_email="x@y.fr", regulator_id="JDUPONT"), ME)
    assert not regulator_is(appt(regulator_email="x@y.fr", regulator_id="other"), ME)
    assert match(appt(regulator_email="autre@chu.example"), hint(), ME) is None
    assert not regulator_is(appt(regulator_email=" "), frozenset({" "}))  # blanks match nothing


def test_created_must_be_near_the_decision() -> None:
    assert match(appt(created=DECIDED + timedelta(minutes=30)), hint(), ME) is not None
    assert match(appt(created=DECIDED - timedelta(minutes=31)), hint(), ME) is None
    assert match(appt(created=DECIDED + timedelta(hours=2)), hint(), ME) is None


def test_practitioner_rpps_decides_then_names() -> None:
    assert same_practitioner(appt(), hint()) is True
    assert same_practitioner(appt(practitioner_rpps="810000000009"), hint()) is False
    # the IdNat_PS (8 + RPPS) and a bare RPPS name the same person
    assert same_practitioner(appt(), hint(practitioner_id="10000000001")) is True
    assert same_practitioner(appt(), hint(practitioner_id="10000000002")) is False
    assert match(appt(practitioner_rpps="810000000009"), hint(), ME) is None
    # no RPPS on one side: the names, accents/case/order/« Dr » aside
    no_id = hint(practitioner_id="", practitioner="Dr Élodie Bérard")
    assert same_practitioner(appt(practitioner_name="ELODIE BERARD"), no_id) is True
    assert same_practitioner(appt(practitioner_name="Paul Martin"), no_id) is False
    # a bare decision (no practitioner): suggested, but marked as not compared
    bare = hint(practitioner="", practitioner_id="")
    assert same_practitioner(appt(), bare) is None
    m = match(appt(), bare, ME)
    assert m is not None and not m.same_practitioner


def test_cancelled_is_never_suggested() -> None:
    assert match(appt(status="cancelled"), hint(), ME) is None


def test_best_first_same_practitioner_then_closest() -> None:
    a_far = appt(appointment_id="far", created=DECIDED + timedelta(minutes=20))
    a_near = appt(appointment_id="near", created=DECIDED + timedelta(minutes=2))
    a_unknown = appt(
        appointment_id="unknown", practitioner_rpps="", practitioner_name="", created=DECIDED
    )
    found = best_matches([a_far, a_unknown, a_near], [hint(), hint()], ME)
    assert [m.appointment_id for m in found] == ["near", "far", "unknown"]  # no duplicates
    assert best_matches([a_far], [hint()], frozenset({"someone"})) == []


def test_hints_come_from_bookings_and_decisions() -> None:
    from sas_desk.models.appointment import orientation_hints
    from sas_desk.models.dossier import Actor, Event, EventKind

    who = Actor("MRL", "jdupont", "poste-1")
    events = [
        Event("case-1", DECIDED - timedelta(minutes=5), EventKind.DECIDED, who, {}),
        Event(
            "case-1",
            DECIDED,
            EventKind.ORIENTED,
            who,
            {"practitioner": "Dr Didier Morel", "national_id": "810000000001"},
        ),
        Event("case-1", DECIDED, EventKind.MEDICAL_NOTE, who, {"text": "x"}),
    ]
    hints = orientation_hints(events)
    assert hints == [
        OrientationHint("case-1", DECIDED - timedelta(minutes=5)),
        OrientationHint("case-1", DECIDED, "Dr Didier Morel", "810000000001"),
    ]
    # one suggestion per (dossier, appointment): the best one
    assert [m.same_practitioner for m in best_matches([appt()], hints, ME)] == [True]
