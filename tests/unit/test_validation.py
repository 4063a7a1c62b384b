"""Input validation: callback numbers, ages, INSEE codes, coordinates and
pasted positions.  Pure: no Qt, no network."""

from __future__ import annotations

import math
import re

import pytest

from sas_desk.models.validation import (
    Age,
    Position,
    ValidationError,
    check_coordinates,
    departement_of,
    format_phone,
    normalize_phone,
    parse_age,
    parse_position,
    territory_of,
    validate_insee,
)

E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")


def refused(func, text, field):  # type: ignore[no-untyped-def]
    """Call ``func(text)``, expect a ValidationError on ``field``, return its message."""
    with pytest.raises(ValidationError) as info:
        func(text)
    assert info.value.field == field
    assert info.value.message == str(info.value)
    assert info.value.message.strip()
    return info.value.message


# =========================================================================== phone


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # metropolitan, national forms
        ("06 12 34 56 78", "+33612345678"),
        ("0612345678", "+33612345678"),
        ("06.12.34.56.78", "+33612345678"),
        ("06-12-34-56-78", "+33612345678"),
        ("06/12/34/56/78", "+33612345678"),
        ("  06 12 34 56 78  ", "+33612345678"),
        ("06\u00a012\u00a034\u00a056\u00a078", "+33612345678"),
        ("01 23 45 67 89", "+33123456789"),
        ("04 78 12 34 56", "+33478123456"),
        ("09 51 23 45 67", "+33951234567"),
        ("07 81 23 45 67", "+33781234567"),
        # 9 digits: the leading 0 was dropped
        ("612345678", "+33612345678"),
        ("6 12 34 56 78", "+33612345678"),
        ("478123456", "+33478123456"),
        # international forms of a metropolitan number
        ("+33 6 12 34 56 78", "+33612345678"),
        ("+33612345678", "+33612345678"),
        ("+33 (0)6 12 34 56 78", "+33612345678"),
        ("+33(0)612345678", "+33612345678"),
        ("+33 0 6 12 34 56 78", "+33612345678"),
        ("0033 6 12 34 56 78", "+33612345678"),
        ("0033612345678", "+33612345678"),
        ("00 33 4 78 12 34 56", "+33478123456"),
    ],
)
def test_normalize_phone_metropolitan(text: str, expected: str) -> None:
    assert normalize_phone(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Guadeloupe, Saint-Barthélemy, Saint-Martin
        ("0590 12 34 56", "+590590123456"),
        ("05 90 12 34 56", "+590590123456"),
        ("0690 12 34 56", "+590690123456"),
        ("0691 12 34 56", "+590691123456"),
        # Guyane
        ("0594 12 34 56", "+594594123456"),
        ("0694 12 34 56", "+594694123456"),
        # Martinique
        ("0596 12 34 56", "+596596123456"),
        ("0696 12 34 56", "+596696123456"),
        ("0697 12 34 56", "+596697123456"),
        # La Réunion
        ("0262 12 34 56", "+262262123456"),
        ("0263 12 34 56", "+262263123456"),
        ("0692 12 34 56", "+262692123456"),
        ("0693 12 34 56", "+262693123456"),
        # Mayotte
        ("0269 12 34 56", "+262269123456"),
        ("0639 12 34 56", "+262639123456"),
        # overseas without the leading 0
        ("690 12 34 56", "+590690123456"),
        ("692123456", "+262692123456"),
    ],
)
def test_normalize_phone_overseas_national(text: str, expected: str) -> None:
    assert normalize_phone(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+590 590 12 34 56", "+590590123456"),
        ("+590690123456", "+590690123456"),
        ("+590 0690 12 34 56", "+590690123456"),
        ("00590 690 12 34 56", "+590690123456"),
        ("+594 694 12 34 56", "+594694123456"),
        ("+596 696 12 34 56", "+596696123456"),
        ("+262 0692 12 34 56", "+262692123456"),
        ("+262 692 12 34 56", "+262692123456"),
        ("+262 269 61 23 45", "+262269612345"),
        ("+262 639 12 34 56", "+262639123456"),
        # an overseas number written behind +33 gets its own country code
        ("+33 6 90 12 34 56", "+590690123456"),
        ("+33 6 92 12 34 56", "+262692123456"),
    ],
)
def test_normalize_phone_overseas_international(text: str, expected: str) -> None:
    assert normalize_phone(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Saint-Pierre-et-Miquelon: +508 and 6 digits
        ("+508 41 23 45", "+508412345"),
        ("00508 55 12 34", "+508551234"),
        # Wallis-et-Futuna: +681 and 6 digits
        ("+681 72 12 34", "+681721234"),
        # Nouvelle-Calédonie: +687 and 6 digits
        ("+687 28 12 34", "+687281234"),
        # Polynésie française: +689 and 8 digits
        ("+689 87 12 34 56", "+68987123456"),
        ("+689 40 12 34 56", "+68940123456"),
    ],
)
def test_normalize_phone_short_plans(text: str, expected: str) -> None:
    assert normalize_phone(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+44 20 7946 0958", "+442079460958"),
        ("0044 20 7946 0958", "+442079460958"),
        ("+44 (0)20 7946 0958", "+442079460958"),
        ("+41 22 123 45 67", "+41221234567"),
        ("+32 2 123 45 67", "+3221234567"),
        ("+1 212 555 0123", "+12125550123"),
    ],
)
def test_normalize_phone_foreign(text: str, expected: str) -> None:
    assert normalize_phone(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "06 12 34 56 78",
        "+33 6 90 12 34 56",
        "0590 12 34 56",
        "0692 12 34 56",
        "+508 41 23 45",
        "+689 87 12 34 56",
        "+44 20 7946 0958",
    ],
)
def test_normalized_phone_is_e164(text: str) -> None:
    assert E164.match(normalize_phone(text))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "manquant"),
        ("   ", "manquant"),
        ("abc", "seuls les chiffres"),
        ("06 12 ab 56 78", "seuls les chiffres"),
        ("06 12 34 56 78 poste 12", "seuls les chiffres"),
        ("tel: 0612345678", "seuls les chiffres"),
        # digits that are not ASCII must not end up in an E.164 number
        ("０６１２３４５６７８", "seuls les chiffres"),
        ("0٦12345678", "seuls les chiffres"),
        # short numbers: nobody can be called back on them
        ("15", "numéro court"),
        ("17", "numéro court"),
        ("18", "numéro court"),
        ("112", "numéro court"),
        ("115", "numéro court"),
        ("116117", "numéro court"),
        ("3624", "numéro court"),
        ("1234", "numéro court"),
        # too few / too many digits
        ("0612", "4 chiffres"),
        ("06 12 34 56", "8 chiffres"),
        ("012345678", "9 chiffres"),
        ("06 12 34 56 78 9", "11 chiffres"),
        ("0590 12 34 567", "11 chiffres"),
        ("1234567", "7 chiffres"),
        # 08 numbers are special-rate numbers, not callback numbers
        ("08 00 12 34 56", "08"),
        ("0812345678", "08"),
        ("0899 12 34 56", "08"),
        ("812345678", "08"),
        ("+33 8 00 12 34 56", "08"),
        ("0033 8 12 34 56 78", "08"),
        # +33 followed by 8 or 10 digits
        ("+33 6 12 34 56 7", "après +33, il faut 9 chiffres"),
        ("+3312345678", "après +33, il faut 9 chiffres"),
        ("+33 6 12 34 56 78 9", "après +33, il faut 9 chiffres"),
        # overseas international with a wrong length
        ("+590 690 12 34 5", "après +590, il faut 9 chiffres"),
        ("+262 692 12 34 567", "après +262, il faut 9 chiffres"),
        ("+508 41 23 4", "après +508, il faut 6 chiffres"),
        ("+687 28 12 34 5", "après +687, il faut 6 chiffres"),
        ("+689 87 12 34", "après +689, il faut 8 chiffres"),
        # not an E.164 number
        ("+1", "E.164"),
        ("+44 1234", "E.164"),
        ("+44 1234 5678 9012 345", "E.164"),
        ("0012345", "E.164"),
    ],
)
def test_normalize_phone_refusals(text: str, fragment: str) -> None:
    message = refused(normalize_phone, text, "callback")
    assert fragment in message


def test_short_number_message_quotes_the_number() -> None:
    assert "« 116117 »" in refused(normalize_phone, " 116117 ", "callback")


def test_length_message_explains_the_french_format() -> None:
    assert "10 (0X XX XX XX XX)" in refused(normalize_phone, "0612", "callback")


@pytest.mark.parametrize(
    ("e164", "display"),
    [
        ("+33612345678", "06 12 34 56 78"),
        ("+33123456789", "01 23 45 67 89"),
        ("+590690123456", "06 90 12 34 56"),
        ("+590590123456", "05 90 12 34 56"),
        ("+594694123456", "06 94 12 34 56"),
        ("+596696123456", "06 96 12 34 56"),
        ("+262692123456", "06 92 12 34 56"),
        ("+262269612345", "02 69 61 23 45"),
        ("+262639123456", "06 39 12 34 56"),
    ],
)
def test_format_phone_round_trip(e164: str, display: str) -> None:
    assert format_phone(e164) == display
    assert normalize_phone(display) == e164
    assert normalize_phone(format_phone(normalize_phone(display))) == e164


@pytest.mark.parametrize("e164", ["+508412345", "+687281234", "+68987123456", "+442079460958"])
def test_format_phone_keeps_other_numbers_as_e164(e164: str) -> None:
    assert format_phone(e164) == e164
    assert normalize_phone(format_phone(e164)) == e164


# =========================================================================== age


@pytest.mark.parametrize(
    ("text", "value", "unit"),
    [
        ("65", 65, "Y"),
        ("  65  ", 65, "Y"),
        ("65 ans", 65, "Y"),
        ("65ans", 65, "Y"),
        ("65 ANS", 65, "Y"),
        ("65 ans.", 65, "Y"),
        ("1 an", 1, "Y"),
        ("2 années", 2, "Y"),
        ("2 annees", 2, "Y"),
        ("65 a.", 65, "Y"),
        ("0", 0, "Y"),
        ("130", 130, "Y"),
        ("8 mois", 8, "M"),
        ("8m", 8, "M"),
        ("8 M", 8, "M"),
        ("8 mo.", 8, "M"),
        ("3 sem", 3, "W"),
        ("3 sem.", 3, "W"),
        ("3 semaines", 3, "W"),
        ("3s", 3, "W"),
        ("10 j", 10, "D"),
        ("10 jours", 10, "D"),
        ("1 jour", 1, "D"),
        ("P65Y", 65, "Y"),
        ("p65y", 65, "Y"),
        ("p8m", 8, "M"),
        ("P3W", 3, "W"),
        ("P10D", 10, "D"),
        ("432 mois", 432, "M"),
    ],
)
def test_parse_age(text: str, value: int, unit: str) -> None:
    assert parse_age(text) == Age(value, unit)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "manquant"),
        ("   ", "manquant"),
        ("abc", "illisible"),
        ("-3", "illisible"),
        ("1.5", "illisible"),
        ("10000", "illisible"),
        ("200 ans", "invraisemblable"),
        ("131", "invraisemblable"),
        ("437 mois", "invraisemblable"),
        ("P200Y", "invraisemblable"),
        ("8 lunes", "« lunes » inconnue"),
        ("P65", "illisible"),
        ("P8X", "illisible"),
    ],
)
def test_parse_age_refusals(text: str, fragment: str) -> None:
    assert fragment in refused(parse_age, text, "age")


def test_age_invraisemblable_message_shows_the_age() -> None:
    assert refused(parse_age, "200 ans", "age") == "Âge invraisemblable : 200 ans."


@pytest.mark.parametrize(
    ("age", "iso", "display"),
    [
        (Age(65, "Y"), "P65Y", "65 ans"),
        (Age(1, "Y"), "P1Y", "1 an"),
        (Age(0, "Y"), "P0Y", "0 an"),
        (Age(8, "M"), "P8M", "8 mois"),
        (Age(1, "M"), "P1M", "1 mois"),
        (Age(3, "W"), "P3W", "3 semaines"),
        (Age(1, "W"), "P1W", "1 semaine"),
        (Age(10, "D"), "P10D", "10 jours"),
        (Age(1, "D"), "P1D", "1 jour"),
    ],
)
def test_age_iso_and_display(age: Age, iso: str, display: str) -> None:
    assert age.iso == iso
    assert age.display() == display
    assert Age.from_iso(iso) == age
    assert parse_age(iso) == age


def test_age_years() -> None:
    assert Age(65, "Y").years == 65
    assert Age(18, "M").years == pytest.approx(1.5)
    assert Age(52, "W").years == pytest.approx(1.0, abs=0.01)
    assert Age(365, "D").years == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("text", ["65", "P65", "P-3Y", "65Y", "P6.5Y", "", "PY"])
def test_age_from_iso_refusals(text: str) -> None:
    assert "illisible" in refused(Age.from_iso, text, "age")


# =========================================================================== INSEE


@pytest.mark.parametrize(
    ("text", "code", "departement"),
    [
        ("69123", "69123", "69"),
        (" 75056 ", "75056", "75"),
        ("01001", "01001", "01"),
        ("2A004", "2A004", "2A"),
        ("2b033", "2B033", "2B"),
        ("97105", "97105", "971"),
        ("97209", "97209", "972"),
        ("97302", "97302", "973"),
        ("97411", "97411", "974"),
        ("97608", "97608", "976"),
        ("97501", "97501", "975"),  # Saint-Pierre
        ("97502", "97502", "975"),  # Miquelon-Langlade
        ("97701", "97701", "977"),  # Saint-Barthélemy
        ("97801", "97801", "978"),  # Saint-Martin
        ("98735", "98735", "987"),  # Papeete
        ("98818", "98818", "988"),  # Nouméa
        ("98611", "98611", "986"),
    ],
)
def test_validate_insee(text: str, code: str, departement: str) -> None:
    assert validate_insee(text) == code
    assert departement_of(code) == departement


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("20004", "2A (Corse-du-Sud) ou 2B (Haute-Corse)"),
        ("00123", "département 00"),
        ("96001", "département 96"),
        ("99100", "pays étranger"),
        ("9741", "5 caractères"),
        ("691234", "5 caractères"),
        ("69 123", "5 caractères"),
        ("", "5 caractères"),
        ("abcde", "5 caractères"),
        ("2C004", "5 caractères"),
        ("69000", "commune 000"),
        ("2A000", "commune 000"),
        ("97001", "outre-mer"),
        ("97901", "outre-mer"),
        ("98501", "collectivité d'outre-mer inconnue"),
        ("98901", "collectivité d'outre-mer inconnue"),
        ("97100", "commune 00"),
        ("97400", "commune 00"),
    ],
)
def test_validate_insee_refusals(text: str, fragment: str) -> None:
    assert fragment in refused(validate_insee, text, "insee")


# =========================================================================== coordinates


@pytest.mark.parametrize(
    ("lat", "lon", "territory"),
    [
        (45.7640, 4.8357, "France métropolitaine"),  # Lyon
        (41.9192, 8.7386, "France métropolitaine"),  # Ajaccio
        (48.3904, -4.4861, "France métropolitaine"),  # Brest
        (48.5734, 7.7521, "France métropolitaine"),  # Strasbourg
        (51.0344, 2.3768, "France métropolitaine"),  # Dunkerque
        (41.3875, 9.1594, "France métropolitaine"),  # Bonifacio
        (16.2411, -61.5331, "Guadeloupe"),  # Pointe-à-Pitre
        (14.6161, -61.0588, "Martinique"),  # Fort-de-France
        (4.9372, -52.3260, "Guyane"),  # Cayenne
        (-20.8789, 55.4481, "La Réunion"),  # Saint-Denis
        (-12.7806, 45.2279, "Mayotte"),  # Mamoudzou
        (17.8962, -62.8498, "Saint-Martin et Saint-Barthélemy"),  # Gustavia
        (46.7811, -56.1764, "Saint-Pierre-et-Miquelon"),
    ],
)
def test_check_coordinates(lat: float, lon: float, territory: str) -> None:
    assert check_coordinates(lat, lon) == territory
    assert territory_of(lat, lon) == territory


@pytest.mark.parametrize(
    ("lat", "lon", "fragment"),
    [
        (51.5074, -0.1278, "hors de France"),  # London
        (40.4168, -3.7038, "hors de France"),  # Madrid
        (-22.2758, 166.4580, "hors de France"),  # Nouméa: no SAMU box
        (4.8357, 45.7640, "inversées"),  # Lyon, swapped
        (-61.5331, 16.2411, "inversées"),  # Pointe-à-Pitre, swapped
        (math.nan, 4.8357, "impossibles"),
        (45.764, math.nan, "impossibles"),
        (math.inf, 4.8357, "impossibles"),
        (95.0, 4.8357, "impossibles"),
        (-90.5, 4.8357, "impossibles"),
        (45.764, 181.0, "impossibles"),
    ],
)
def test_check_coordinates_refusals(lat: float, lon: float, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        check_coordinates(lat, lon)
    assert info.value.field == "coords"
    assert fragment in info.value.message


def test_outside_message_gives_the_coordinates() -> None:
    with pytest.raises(ValidationError, match=r"51\.50740, -0\.12780"):
        check_coordinates(51.5074, -0.1278)


# =========================================================================== positions


@pytest.mark.parametrize(
    ("text", "lat", "lon"),
    [
        ("45.7640, 4.8357", 45.7640, 4.8357),
        ("45.7640,4.8357", 45.7640, 4.8357),
        ("  45.76400, 4.83570  ", 45.764, 4.8357),
        ("45,7640 4,8357", 45.7640, 4.8357),
        ("45,7640;4,8357", 45.7640, 4.8357),
        ("45.764;4.836", 45.764, 4.836),
        ("45.764 ; 4.836", 45.764, 4.836),
        ("45.764/4.836", 45.764, 4.836),
        ("lat: 45.76 lon: 4.83", 45.76, 4.83),
        ("latitude=45.76 longitude=4.83", 45.76, 4.83),
        ("lat 45.76, lng 4.83", 45.76, 4.83),
        ("N 45.76 E 4.83", 45.76, 4.83),
        ("45.76 N, 4.83 E", 45.76, 4.83),
        ("45.76N 4.83E", 45.76, 4.83),
        ("E 4.83 N 45.76", 45.76, 4.83),
        ("48.39, -4.48", 48.39, -4.48),
        ("48,39, -4,48", 48.39, -4.48),
        ("48.39 N 4.48 O", 48.39, -4.48),
        ("48.39 N, 4.48 W", 48.39, -4.48),
        ("16.2411 -61.5331", 16.2411, -61.5331),
        ("-20.8789, 55.4481", -20.8789, 55.4481),
        ("20.8789 S 55.4481 E", -20.8789, 55.4481),
        ("S 20.8789 E 55.4481", -20.8789, 55.4481),
    ],
)
def test_parse_position_decimal(text: str, lat: float, lon: float) -> None:
    pos = parse_position(text)
    assert pos is not None
    assert pos.lat == pytest.approx(lat)
    assert pos.lon == pytest.approx(lon)
    assert pos.is_aml is False
    assert pos.radius_m is None


LYON_DMS = (45 + 45 / 60 + 50.4 / 3600, 4 + 50 / 60 + 8.5 / 3600)


@pytest.mark.parametrize(
    "text",
    [
        "45°45'50.4\"N 4°50'08.5\"E",
        "45°45'50.4\"N, 4°50'08.5\"E",
        "45° 45' 50,4\" N, 4° 50' 8,5\" E",
        "45°45′50.4″N 4°50′08.5″E",
        "45°45’50.4''N 4°50’08.5''E",
        "4°50'08.5\"E 45°45'50.4\"N",
    ],
)
def test_parse_position_dms(text: str) -> None:
    pos = parse_position(text)
    assert pos is not None
    assert pos.lat == pytest.approx(LYON_DMS[0])
    assert pos.lon == pytest.approx(LYON_DMS[1])
    assert pos.lat == pytest.approx(45.764, abs=1e-6)


def test_parse_position_dms_west_and_south() -> None:
    brest = parse_position("48°23'25.4\"N 4°29'10\"W")
    assert brest is not None
    assert brest.lat == pytest.approx(48 + 23 / 60 + 25.4 / 3600)
    assert brest.lon == pytest.approx(-(4 + 29 / 60 + 10 / 3600))
    reunion = parse_position("20°52'44\"S 55°26'53\"E")
    assert reunion is not None
    assert reunion.lat < 0 < reunion.lon


AML = (
    'A"ML=1;lt=+45.76400;lg=+004.83570;rd=12;top=20241201120000;lc=90;pm=G;'
    "si=208011234567890;ei=123456789012345;mcc=208;mnc=01;ml=128"
)


def test_parse_position_aml() -> None:
    pos = parse_position(AML)
    assert pos == Position(45.764, 4.8357, 12.0, is_aml=True)


def test_parse_position_aml_without_radius_and_south() -> None:
    pos = parse_position("lt=-20.87890;lg=+055.44810;top=20241201120000")
    assert pos == Position(-20.8789, 55.4481, None, is_aml=True)


def test_parse_position_aml_outside_france() -> None:
    with pytest.raises(ValidationError) as info:
        parse_position('A"ML=1;lt=+51.50740;lg=-000.12780;rd=20')
    assert info.value.field == "coords"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "12 rue de la Paix",
        "69123",
        "12 34",
        "12, 34",
        "1,5",
        "12.5 rue",
        "Lyon 45.76, 4.83",
    ],
)
def test_parse_position_not_a_position(text: str) -> None:
    assert parse_position(text) is None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("51.5074, -0.1278", "hors de France"),  # London
        ("40.4168, -3.7038", "hors de France"),  # Madrid
        ("4.8357, 45.7640", "inversées"),
        ("E 45.76 N 4.83", "inversées"),
        ("51°30'26.6\"N 0°7'40.1\"W", "hors de France"),
        ("95.0, 4.8", "impossibles"),
    ],
)
def test_parse_position_outside_france(text: str, fragment: str) -> None:
    assert fragment in refused(parse_position, text, "coords")


@pytest.mark.parametrize(
    ("radius", "precision"),
    [
        (None, "INCONNUE"),
        (5, "EXACTE"),
        (25, "EXACTE"),
        (80, "ADRESSE"),
        (400, "RUE"),
        (1500, "VILLE"),
        (5000, "VILLE"),
        (12000, "INCONNUE"),
    ],
)
def test_an_aml_radius_maps_to_a_precision(radius: float | None, precision: str) -> None:
    from sas_desk.models.validation import precision_for_radius

    assert precision_for_radius(radius) == precision


def test_typed_coordinates_are_exact_an_aml_one_follows_its_radius() -> None:
    assert parse_position("45.764, 4.8357").precision == "EXACTE"  # type: ignore[union-attr]
    aml = parse_position('A"ML=1;lt=+45.76720;lg=+004.88010;rd=1500;top=1')
    assert aml is not None and aml.radius_m == 1500 and aml.precision == "VILLE"
