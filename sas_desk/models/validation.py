"""Validation of what the ARM types, with clear French messages.

Every ``parse_*``/``normalize_*`` function returns the normalised value or
raises :class:`ValidationError` carrying a French message for the user.
Nothing here does I/O.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date

from sas_desk.models.errors import KnownError


class ValidationError(KnownError, ValueError):
    """Bad input.  ``message`` is French and shown to the user as is."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


# --------------------------------------------------------------------------- phone

# National trunk prefixes of the overseas territories that share the French
# numbering plan: a number dialled "0 590 …" in Guadeloupe is "+590 590 …".
# (national prefix of the 10-digit number -> country calling code)
_OVERSEAS_PREFIXES: dict[str, str] = {
    "0590": "590",  # Guadeloupe, Saint-Barthélemy, Saint-Martin (fixe)
    "0690": "590",
    "0691": "590",  # mobiles Antilles (Guadeloupe)
    "0594": "594",  # Guyane
    "0694": "594",
    "0596": "596",  # Martinique
    "0696": "596",
    "0697": "596",
    "0262": "262",  # La Réunion
    "0263": "262",
    "0692": "262",
    "0693": "262",
    "0269": "262",  # Mayotte
    "0639": "262",
}
# Overseas collectivities with their own short plans (digits after the code)
_SHORT_PLANS: dict[str, int] = {"508": 6, "681": 6, "687": 6, "689": 8}
_SHORT_NUMBERS = {"15", "17", "18", "112", "114", "115", "119", "116117", "3624", "3966"}


def normalize_phone(text: str) -> str:
    """French callback number → E.164 (``+33612345678``).

    Accepts national (``06 12 34 56 78``), international (``+33 6…``,
    ``0033 6…``, ``+33 (0)6…``), overseas (``0690 12 34 56`` → ``+590690…``)
    and foreign E.164 numbers (``+44…``).  Short and special numbers are
    refused: nobody can be called back on them.
    """
    raw = text.strip()
    if not raw:
        raise ValidationError("Numéro de rappel manquant.", "callback")
    # ASCII digits only: ``\d`` would let Arabic-Indic or full-width digits
    # through and end up in a non-E.164 "+33٦…" number.
    if re.search(r"[^0-9\s.+()\-/]", raw):
        raise ValidationError(
            "Numéro de rappel invalide : seuls les chiffres, espaces, points, tirets et « + » sont permis.",
            "callback",
        )
    plus = raw.startswith("+")
    digits = re.sub(r"[^0-9]", "", raw.replace("(0)", ""))
    if not plus and digits.startswith("00"):
        plus, digits = True, digits[2:]
    if not plus:
        if digits in _SHORT_NUMBERS or (len(digits) <= 6 and not digits.startswith("0")):
            raise ValidationError(
                f"« {raw} » est un numéro court : il ne permet pas de rappeler l'appelant.",
                "callback",
            )
        if len(digits) == 9 and digits[0] != "0":
            digits = "0" + digits  # the leading 0 was dropped
        if len(digits) != 10 or not digits.startswith("0"):
            raise ValidationError(
                f"Numéro de rappel invalide : {len(digits)} chiffres, un numéro français en compte 10 (0X XX XX XX XX).",
                "callback",
            )
        if digits[1] == "0":
            raise ValidationError(
                "Numéro de rappel invalide : il ne peut pas commencer par 00 suivi d'un chiffre manquant.",
                "callback",
            )
        if digits.startswith("08"):
            raise ValidationError(
                "Les numéros en 08 sont des numéros spéciaux : demandez un numéro de rappel direct.",
                "callback",
            )
        cc = _OVERSEAS_PREFIXES.get(digits[:4], "33")
        return f"+{cc}{digits[1:]}"
    # international form
    if digits.startswith("33"):
        national = digits[2:]
        if national.startswith("0"):
            national = national[1:]
        if len(national) != 9:
            raise ValidationError(
                "Numéro de rappel invalide : après +33, il faut 9 chiffres.", "callback"
            )
        if national[0] == "8":
            raise ValidationError(
                "Les numéros en 08 sont des numéros spéciaux : demandez un numéro de rappel direct.",
                "callback",
            )
        cc = _OVERSEAS_PREFIXES.get("0" + national[:3], "33")
        return f"+{cc}{national}"
    for cc in ("590", "594", "596", "262"):
        if digits.startswith(cc):
            national = digits[len(cc) :]
            if national.startswith("0"):
                national = national[1:]
            if len(national) != 9:
                raise ValidationError(
                    f"Numéro de rappel invalide : après +{cc}, il faut 9 chiffres.", "callback"
                )
            return f"+{cc}{national}"
    for cc, length in _SHORT_PLANS.items():
        if digits.startswith(cc):
            if len(digits) - len(cc) != length:
                raise ValidationError(
                    f"Numéro de rappel invalide : après +{cc}, il faut {length} chiffres.",
                    "callback",
                )
            return f"+{digits}"
    if not 8 <= len(digits) <= 15 or digits[0] == "0":
        raise ValidationError(
            "Numéro international invalide : un numéro E.164 compte de 8 à 15 chiffres après le « + ».",
            "callback",
        )
    return f"+{digits}"


def format_phone(e164: str) -> str:
    """E.164 → how a French operator reads it (``06 12 34 56 78``)."""
    if e164.startswith("+33") and len(e164) == 12:
        national = "0" + e164[3:]
    else:
        for cc in ("590", "594", "596", "262"):
            if e164.startswith("+" + cc) and len(e164) == 13:
                national = "0" + e164[4:]
                break
        else:
            return e164
    return " ".join(national[i : i + 2] for i in range(0, 10, 2))


# --------------------------------------------------------------------------- age

_UNITS = {"Y": "an", "M": "mois", "W": "semaine", "D": "jour"}
_UNIT_WORDS = [
    ("Y", ("ans", "an", "a", "y", "yr", "yrs", "annees", "années", "annee", "année")),
    ("M", ("mois", "m", "mo")),
    ("W", ("semaines", "semaine", "sem", "s", "sa", "w")),
    ("D", ("jours", "jour", "j", "d")),
]
_MAX = {"Y": 130, "M": 36 * 12, "W": 520, "D": 3650}


@dataclass(frozen=True)
class Age:
    """A patient's age in one unit, as RS-EDA carries it (``P65Y``, ``P8M``)."""

    value: int
    unit: str  # "Y", "M", "W" or "D"

    @property
    def iso(self) -> str:
        return f"P{self.value}{self.unit}"

    @property
    def years(self) -> float:
        return self.value / {"Y": 1, "M": 12, "W": 52.18, "D": 365.25}[self.unit]

    def display(self) -> str:
        word = _UNITS[self.unit]
        if self.value > 1 and self.unit in ("Y", "W", "D"):
            word += "s"
        return f"{self.value} {word}"

    @classmethod
    def from_iso(cls, text: str) -> Age:
        m = re.fullmatch(r"P(\d+)([YMWD])", text.strip())
        if not m:
            raise ValidationError(f"Âge « {text} » illisible (format attendu P65Y, P8M…).", "age")
        return cls(int(m.group(1)), m.group(2))


def parse_age(text: str) -> Age:
    """``65``, ``65 ans``, ``8 mois``, ``8m``, ``3 sem``, ``10 j``, ``P65Y``."""
    raw = text.strip()
    if not raw:
        raise ValidationError("Âge manquant.", "age")
    if raw.upper().startswith("P"):
        return _check_age(Age.from_iso(raw.upper()))
    m = re.fullmatch(r"(\d{1,4})\s*([^\d\s.]*)\.?", raw.lower())
    if not m:
        raise ValidationError(
            f"Âge « {raw} » illisible : tapez un nombre, suivi de « mois », « sem » ou « j » pour un nourrisson.",
            "age",
        )
    value, word = int(m.group(1)), m.group(2)
    if not word:
        return _check_age(Age(value, "Y"))
    for unit, words in _UNIT_WORDS:
        if word in words:
            return _check_age(Age(value, unit))
    raise ValidationError(f"Unité d'âge « {word} » inconnue : ans, mois, sem ou j.", "age")


def _check_age(age: Age) -> Age:
    if age.value > _MAX[age.unit]:
        raise ValidationError(f"Âge invraisemblable : {age.display()}.", "age")
    return age


# --------------------------------------------------------------------------- birth date


def parse_birth_date(text: str, today: date, *, short_year: bool = True) -> date:
    """``12/03/1961``, ``12-3-1961``, ``12.03.61``, ``12031961``, ``1961-03-12``.

    A two-digit year is the latest that is not in the future (``12/03/24``
    is 2024 in 2026, ``12/03/61`` is 1961); ``short_year=False`` refuses it
    (while the year is being typed, ``12/03/19`` is not yet 2019).  A date
    in the future or more than 130 years ago is refused."""
    raw = text.strip()
    if not raw:
        raise ValidationError("Date de naissance manquante.", "birth_date")
    m = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", raw)
    if m:
        y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    else:
        m = re.fullmatch(r"(\d{1,2})[/.\- ](\d{1,2})[/.\- ](\d{2}|\d{4})", raw) or re.fullmatch(
            r"(\d{2})(\d{2})(\d{4}|\d{2})", raw
        )
        if not m:
            raise ValidationError(
                f"Date de naissance « {raw} » illisible : tapez JJ/MM/AAAA.", "birth_date"
            )
        d, mo, y = int(m.group(1)), int(m.group(2)), int(m.group(3))
        if len(m.group(3)) == 2:
            if not short_year:
                raise ValidationError(
                    f"Date de naissance « {raw} » incomplète : année sur 4 chiffres.", "birth_date"
                )
            y += 2000 if 2000 + y <= today.year else 1900
    try:
        born = date(y, mo, d)
    except ValueError:
        raise ValidationError(
            f"Date de naissance « {raw} » impossible (jour ou mois).", "birth_date"
        ) from None
    if born > today:
        raise ValidationError(f"Date de naissance « {raw} » dans le futur.", "birth_date")
    if today.year - born.year > _MAX["Y"]:
        raise ValidationError(f"Date de naissance « {raw} » invraisemblable.", "birth_date")
    return born


def age_on(born: date, today: date) -> Age:
    """The age a birth date gives, in the unit the sheet uses for it: days
    under a month, months under two years, years after."""
    months = (today.year - born.year) * 12 + today.month - born.month - (today.day < born.day)
    if months < 1:
        return Age((today - born).days, "D")
    if months < 24:
        return Age(months, "M")
    return Age(months // 12, "Y")


def age_agrees(age: Age, born: date, today: date) -> bool:
    """Whether an age as typed fits a birth date (one unit of slack: "65"
    said of someone about to turn 65 or just turned 66 is no contradiction
    worth stopping for; 40 for 65 is)."""
    days = (today - born).days
    exact = {
        "Y": age_on(born, today).years,
        "M": ((today.year - born.year) * 12 + today.month - born.month - (today.day < born.day)),
        "W": days / 7,
        "D": float(days),
    }[age.unit]
    if age.unit == "Y":
        exact = float(int(exact))
    return abs(age.value - exact) <= 1


# --------------------------------------------------------------------------- INSEE


def validate_insee(text: str) -> str:
    """Commune INSEE code (code officiel géographique), Corsica and overseas included."""
    code = text.strip().upper()
    if not re.fullmatch(r"[0-9]{5}|2[AB][0-9]{3}", code):
        raise ValidationError(
            f"Code INSEE « {text.strip()} » invalide : 5 caractères (ex. 69123, 2A004).", "insee"
        )
    dep2 = code[:2]
    if code.isdigit():
        if dep2 == "00":
            raise ValidationError(f"Code INSEE « {code} » invalide : département 00.", "insee")
        if dep2 == "20":
            raise ValidationError(
                f"Code INSEE « {code} » invalide : la Corse s'écrit 2A (Corse-du-Sud) ou 2B (Haute-Corse).",
                "insee",
            )
        if dep2 == "96":
            raise ValidationError(
                f"Code INSEE « {code} » invalide : département 96 inexistant.", "insee"
            )
        if dep2 == "99":
            raise ValidationError(
                f"« {code} » est un code de pays étranger, pas une commune.", "insee"
            )
        # 971-974, 976: DROM; 975 Saint-Pierre-et-Miquelon, 977 Saint-Barthélemy,
        # 978 Saint-Martin (COG 97501, 97701, 97801…); 984, 986-988: TAAF,
        # Wallis-et-Futuna, Polynésie française, Nouvelle-Calédonie
        if dep2 == "97" and code[2] not in "12345678":
            raise ValidationError(f"Code INSEE « {code} » invalide : outre-mer 971 à 978.", "insee")
        if dep2 == "98" and code[:3] not in {"984", "986", "987", "988"}:
            raise ValidationError(
                f"Code INSEE « {code} » invalide : collectivité d'outre-mer inconnue.", "insee"
            )
        if dep2 in ("97", "98") and code[3:] == "00":
            # overseas: 3-character département, the commune number has 2 digits
            raise ValidationError(
                f"Code INSEE « {code} » invalide : numéro de commune 00.", "insee"
            )
    if code[2:] == "000":
        raise ValidationError(f"Code INSEE « {code} » invalide : numéro de commune 000.", "insee")
    return code


def departement_of(insee: str) -> str:
    """Département code of a commune (``69123`` → ``69``, ``97411`` → ``974``)."""
    return insee[:3] if insee[:2] in ("97", "98") else insee[:2]


# --------------------------------------------------------------------------- coordinates

# (name, south, north, west, east) — generous boxes around each territory
TERRITORIES: tuple[tuple[str, float, float, float, float], ...] = (
    ("France métropolitaine", 41.30, 51.15, -5.25, 9.65),
    ("Guadeloupe", 15.80, 16.55, -61.85, -60.95),
    ("Martinique", 14.35, 14.90, -61.25, -60.80),
    ("Guyane", 2.10, 5.80, -54.65, -51.60),
    ("La Réunion", -21.40, -20.85, 55.20, 55.85),
    ("Mayotte", -13.05, -12.60, 44.95, 45.35),
    ("Saint-Martin et Saint-Barthélemy", 17.85, 18.15, -63.20, -62.75),
    ("Saint-Pierre-et-Miquelon", 46.70, 47.15, -56.45, -56.10),
)


def territory_of(lat: float, lon: float) -> str | None:
    for name, south, north, west, east in TERRITORIES:
        if south <= lat <= north and west <= lon <= east:
            return name
    return None


def check_coordinates(lat: float, lon: float) -> str:
    """Return the territory name, or raise with a French message."""
    if not (math.isfinite(lat) and math.isfinite(lon)) or not (
        -90 <= lat <= 90 and -180 <= lon <= 180
    ):
        raise ValidationError(
            "Coordonnées impossibles (latitude −90 à 90, longitude −180 à 180).", "coords"
        )
    where = territory_of(lat, lon)
    if where:
        return where
    if territory_of(lon, lat):
        raise ValidationError(
            "Coordonnées hors de France : latitude et longitude semblent inversées.", "coords"
        )
    raise ValidationError(
        f"Coordonnées {lat:.5f}, {lon:.5f} hors de France et des départements d'outre-mer.",
        "coords",
    )


@dataclass(frozen=True)
class Position:
    lat: float
    lon: float
    radius_m: float | None = None  # AML uncertainty radius, when given
    is_aml: bool = False

    @property
    def precision(self) -> str:
        """RS-EDA precision: coordinates typed in are taken as exact; an AML
        position is as precise as its uncertainty radius says."""
        return precision_for_radius(self.radius_m) if self.is_aml else "EXACTE"


# uncertainty radius (m) up to which a position has that RS-EDA precision
_PRECISION_RADII: tuple[tuple[float, str], ...] = (
    (25.0, "EXACTE"),
    (100.0, "ADRESSE"),
    (500.0, "RUE"),
    (5000.0, "VILLE"),
)


def precision_for_radius(radius_m: float | None) -> str:
    """An AML uncertainty radius as an RS-EDA precision (``rd=1500`` is a
    town, not an exact point); no radius given: unknown."""
    if radius_m is None:
        return "INCONNUE"
    for limit, precision in _PRECISION_RADII:
        if radius_m <= limit:
            return precision
    return "INCONNUE"


def format_radius(radius_m: float) -> str:
    """« ± 15 m », « ± 1 500 m », « ± 12 km »."""
    if radius_m >= 10000:
        return f"± {radius_m / 1000:.0f} km"
    return "± " + f"{radius_m:,.0f}".replace(",", "\u202f") + " m"


_NUM = r"[-+]?\d{1,3}(?:[.,]\d+)?"
_DMS = re.compile(
    r"(\d{1,3})\s*°\s*(\d{1,2})\s*['’′]\s*(\d{1,2}(?:[.,]\d+)?)\s*(?:\"|''|″)?\s*([NSEOW])", re.I
)


def parse_position(text: str) -> Position | None:
    """Recognise a pasted position, or return ``None`` if the text is not one.

    Accepts ``45.7640, 4.8357``; ``45,7640 4,8357`` (French decimals);
    ``45.764;4.836``; ``N 45.764 E 4.836``; degrees-minutes-seconds; and the
    AML SMS payload (``…lt=+45.76400;lg=+004.83570;rd=12…``).  A recognised
    position outside France raises :class:`ValidationError`.
    """
    raw = text.strip()
    if not raw:
        return None
    aml = re.search(r"\blt=([-+]?\d+(?:\.\d+)?);\s*lg=([-+]?\d+(?:\.\d+)?)", raw)
    if aml:
        lat, lon = float(aml.group(1)), float(aml.group(2))
        rd = re.search(r"\brd=(\d+(?:\.\d+)?)", raw)
        check_coordinates(lat, lon)
        return Position(lat, lon, float(rd.group(1)) if rd else None, is_aml=True)
    dms = _DMS.findall(raw)
    if len(dms) == 2:
        values = []
        for d, m, s, hemi in dms:
            v = int(d) + int(m) / 60 + float(s.replace(",", ".")) / 3600
            values.append((-v if hemi.upper() in "SOW" else v, hemi.upper()))
        (a, ha), (b, _hb) = values
        lat, lon = (a, b) if ha in "NS" else (b, a)
        check_coordinates(lat, lon)
        return Position(lat, lon)
    cleaned = re.sub(r"(?i)\b(lat(itude)?|lon(gitude)?|lng)\s*[:=]?", " ", raw)
    hemis = re.findall(r"(?i)(?<![a-z])([NSEOW])(?![a-z])", cleaned)
    cleaned = re.sub(r"(?i)(?<![a-z])[NSEOW](?![a-z])", " ", cleaned).strip()
    # "45,764 4,836" (decimal commas, space separator) or "45.764, 4.836"
    m = re.fullmatch(rf"({_NUM})\s*[,;/\s]\s*({_NUM})", cleaned)
    if not m:
        return None
    a_txt, b_txt = m.group(1), m.group(2)
    if "." not in a_txt + b_txt and "," not in a_txt + b_txt:
        return None  # two bare integers: a house number, not a position
    lat, lon = float(a_txt.replace(",", ".")), float(b_txt.replace(",", "."))
    if hemis and len(hemis) == 2:
        if hemis[0].upper() in "EOW":
            lat, lon = lon, lat
            hemis = [hemis[1], hemis[0]]
        if hemis[0].upper() == "S":
            lat = -abs(lat)
        if hemis[1].upper() in "OW":
            lon = -abs(lon)
    check_coordinates(lat, lon)
    return Position(lat, lon)
