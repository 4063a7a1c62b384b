"""The time of an "en sus" appointment as the operator types it."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from sas_desk.models.errors import KnownError
from sas_desk.models.search import EnSusTimeError, en_sus_start

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 12, 7, 16, 20, 30, tzinfo=PARIS)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("17:45", datetime(2026, 12, 7, 17, 45, tzinfo=PARIS)),
        ("17h45", datetime(2026, 12, 7, 17, 45, tzinfo=PARIS)),
        (" 18h ", datetime(2026, 12, 7, 18, 0, tzinfo=PARIS)),
        ("16:10", datetime(2026, 12, 7, 16, 10, tzinfo=PARIS)),  # just past: kept today
        ("09:15", datetime(2026, 12, 8, 9, 15, tzinfo=PARIS)),  # past today: tomorrow
        ("08/12 09:15", datetime(2026, 12, 8, 9, 15, tzinfo=PARIS)),
        ("8/12/2026 9:15", datetime(2026, 12, 8, 9, 15, tzinfo=PARIS)),
    ],
)
def test_times_typed_as_an_operator_does(typed: str, expected: datetime) -> None:
    assert en_sus_start(typed, NOW) == expected


def test_the_new_year_is_understood() -> None:
    eve = datetime(2026, 12, 31, 22, 0, tzinfo=PARIS)
    assert en_sus_start("01/01 08:30", eve) == datetime(2027, 1, 1, 8, 30, tzinfo=PARIS)


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("", "illisible"),
        ("demain", "illisible"),
        ("25:00", "impossible"),
        ("31/02 10:00", "impossible"),
        ("07/12 10:00", "est passé"),
        ("10/12 10:00", "au-delà de 48 h"),
    ],
)
def test_wrong_times_are_refused_in_french(typed: str, said: str) -> None:
    with pytest.raises(EnSusTimeError) as refused:
        en_sus_start(typed, NOW)
    assert isinstance(refused.value, KnownError) and said in refused.value.message_fr
