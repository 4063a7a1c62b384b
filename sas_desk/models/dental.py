"""Dental triage: the orientations, the signs the dental regulator checks,
and the orientation the signs point to (the regulator decides).  Also the
wording of an on-call period and of a confirmed orientation, and the reading
of a "when" typed by the regulator.  Pure: no I/O, no Qt.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, time

from sas_desk.models.roster import PARIS, RosterEntry

__all__ = [
    "PAIN",
    "REASON_SIGNS",
    "SIGNS",
    "SIGN_LABELS",
    "Orientation",
    "Suggestion",
    "french_when",
    "orientation_text",
    "parse_when",
    "period_text",
    "short_period",
    "suggest",
]

_DAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")


class Orientation(enum.StrEnum):
    CONSEIL = "CONSEIL"
    DENTISTE_JOUR = "DENTISTE_JOUR"
    DENTISTE_GARDE = "DENTISTE_GARDE"
    MEDECIN = "MEDECIN"

    @property
    def label(self) -> str:
        return {
            "CONSEIL": "Conseil (et son dentiste au prochain jour ouvré)",
            "DENTISTE_JOUR": "Dentiste dans la journée",
            "DENTISTE_GARDE": "Dentiste de garde",
            "MEDECIN": "Retour au médecin (AMU)",
        }[self.value]

    @property
    def short(self) -> str:
        return {
            "CONSEIL": "Conseil",
            "DENTISTE_JOUR": "Dentiste dans la journée",
            "DENTISTE_GARDE": "Dentiste de garde",
            "MEDECIN": "Médecin (AMU)",
        }[self.value]


#: (code, label, key) of the signs the dental regulator checks.
SIGNS: tuple[tuple[str, str, str], ...] = (
    ("fever", "Fièvre", "F"),
    ("swelling", "Gonflement du visage ou du cou", "G"),
    ("airway", "Gêne pour respirer ou pour avaler", "R"),
    ("head", "Choc à la tête, perte de connaissance, vomissements", "T"),
    ("trauma", "Dent expulsée, cassée ou déplacée (traumatisme)", "D"),
    ("bleeding", "Saignement qui persiste malgré une compression", "S"),
    ("trismus", "Bouche difficile à ouvrir (trismus)", "O"),
    ("anticoagulant", "Sous anticoagulant", "A"),
    ("minor", "Couronne, plombage ou prothèse perdu(e)", "P"),
)
SIGN_LABELS = {code: label for code, label, _ in SIGNS}
#: pain level → label
PAIN = {"0": "aucune", "1": "supportable", "2": "insupportable (pire couché)"}

#: the local dental sub-classification of the call sheet → signs to prefill
REASON_SIGNS: dict[str, tuple[str, ...]] = {
    "DENT.CELLULITE": ("swelling", "fever"),
    "DENT.GONFLEMENT": ("swelling",),
    "DENT.TRAUMA": ("trauma",),
    "DENT.HEMORRAGIE": ("bleeding",),
    "DENT.PROTHESE": ("minor",),
}


@dataclass(frozen=True)
class Suggestion:
    orientation: Orientation | None
    reasons: tuple[str, ...] = ()
    advice: tuple[str, ...] = ()


def suggest(
    signs: frozenset[str], pain: str, *, on_call_day: bool, age_years: float | None = None
) -> Suggestion:
    """The orientation the signs point to (the regulator decides).

    Vital or medical signs (breathing or swallowing, swelling or intense pain
    with fever, head trauma, bleeding that persists under an anticoagulant)
    hand the case back to a physician; a case that needs an act in the mouth
    today (dental trauma, bleeding, swelling, trismus, unbearable pain) goes
    to a dentist today — the on-call dentist on a Sunday or public holiday;
    otherwise advice. The patient's age, when known, picks the advice for a
    knocked-out tooth (a milk tooth is not re-implanted)."""
    advice: list[str] = []
    if "trauma" in signs:
        if age_years is not None and age_years < 6:
            advice.append(
                "Enfant de moins de 6 ans : dent de lait, ne pas la réimplanter ; "
                "la faire voir par un dentiste dans la journée."
            )
        else:
            advice.append(
                "Dent définitive expulsée : la conserver sans la laver dans du lait "
                "(ou du sérum physiologique), à réimplanter au plus vite."
            )
            if age_years is not None and age_years < 12:
                advice.append("Entre 6 et 12 ans : vérifier s'il s'agit d'une dent de lait.")
    if "anticoagulant" in signs:
        advice.append("Patient sous anticoagulant : le signaler au praticien.")
    medical = []
    if "airway" in signs:
        medical.append("gêne pour respirer ou avaler")
    if "swelling" in signs and "fever" in signs:
        medical.append("gonflement avec fièvre")
    if "fever" in signs and pain == "2":
        medical.append("douleur insupportable avec fièvre")
    if "head" in signs:
        medical.append("choc à la tête")
    if "bleeding" in signs and "anticoagulant" in signs:
        medical.append("saignement persistant sous anticoagulant")
    if medical:
        return Suggestion(Orientation.MEDECIN, tuple(medical), tuple(advice))
    today = [
        SIGN_LABELS[s].lower() for s in ("trauma", "bleeding", "swelling", "trismus") if s in signs
    ]
    if pain == "2":
        today.append("douleur insupportable")
    if today:
        where = Orientation.DENTISTE_GARDE if on_call_day else Orientation.DENTISTE_JOUR
        return Suggestion(where, tuple(today), tuple(advice))
    if signs or pain in ("0", "1"):
        reasons = [SIGN_LABELS[s].lower() for s in ("minor", "fever") if s in signs]
        if pain in ("0", "1"):
            reasons.append(f"douleur {PAIN[pain]}")
        return Suggestion(Orientation.CONSEIL, tuple(reasons), tuple(advice))
    return Suggestion(None, (), tuple(advice))


def french_when(at: datetime) -> str:
    local = at.astimezone(PARIS)
    return f"{_DAYS[local.weekday()]} {local:%d/%m/%Y à %H:%M}"


def period_text(entry: RosterEntry) -> str:
    start, end = entry.start.astimezone(PARIS), entry.end.astimezone(PARIS)
    day = f"{_DAYS[start.weekday()]} {start:%d/%m/%Y}"
    if end.date() == start.date():
        return f"{day}, {start:%H:%M}–{end:%H:%M}"
    return f"{day} {start:%H:%M} → {_DAYS[end.weekday()]} {end:%d/%m %H:%M}"


def short_period(entry: RosterEntry) -> str:
    start, end = entry.start.astimezone(PARIS), entry.end.astimezone(PARIS)
    text = f"{_DAYS[start.weekday()][:3]}. {start:%d/%m %H:%M}–{end:%H:%M}"
    return text if end.date() == start.date() else text + " (+1)"


_WHEN_RE = re.compile(
    r"^(?:(?P<d>\d{1,2})/(?P<m>\d{1,2})(?:/(?P<y>\d{4}))?|(?P<iso>\d{4}-\d{2}-\d{2}))?"
    r"\s*(?:(?P<h>\d{1,2})\s*[h:]\s*(?P<min>\d{2})?|(?P<hh>\d{1,2})h)?$"
)


def parse_when(text: str, now: datetime) -> tuple[datetime | None, bool] | None:
    """``""``/``maintenant`` → (None, False) (now); ``HH:MM`` today;
    ``JJ/MM[/AAAA] [HH:MM]`` or ``AAAA-MM-JJ [HH:MM]``.  A date alone gives
    (midnight of that day, True): the whole day is shown.  ``None`` when
    unreadable."""
    raw = " ".join(text.strip().lower().split())
    if raw in ("", "maintenant", "now"):
        return None, False
    match = _WHEN_RE.match(raw.replace("à", " ").replace("  ", " ").strip())
    if match is None:
        return None
    local_now = now.astimezone(PARIS)
    try:
        if match["iso"]:
            day = date.fromisoformat(match["iso"])
        elif match["d"]:
            day = date(int(match["y"] or local_now.year), int(match["m"]), int(match["d"]))
        else:
            day = local_now.date()
        hour = match["h"] or match["hh"]
        if hour is None:
            if not (match["iso"] or match["d"]):
                return None
            return datetime.combine(day, time(0, 0), PARIS), True
        at = datetime.combine(day, time(int(hour), int(match["min"] or 0)), PARIS)
    except ValueError:
        return None
    return at, False


def orientation_text(
    chosen: Orientation,
    entry: RosterEntry | None,
    signs: Collection[str],
    pain: str,
    note: str,
) -> str:
    """What a confirmed dental orientation says in the dossier's log."""
    text = f"Orientation dentaire : {chosen.short}"
    if entry is not None:
        text += f" — Dr {entry.dentist} ({entry.sector_name}), {period_text(entry)}"
    if signs:
        text += " ; signes : " + ", ".join(SIGN_LABELS[c].lower() for c in sorted(signs))
    if pain:
        text += f" ; douleur {PAIN[pain]}"
    if note.strip():
        text += f" ; {note.strip()}"
    return text
