"""The room's statistics: indicator definitions, periods, percentiles and the
privacy rules of exports (pure: no I/O).

A statistics source (``sas_desk.services.stats``) reads the store and hands
back :class:`RawStats`: small grouped counts, one tuple per (period bucket,
dimension…) — never a dossier.  :func:`build_report` turns them into one row
per period with French column names; :func:`export_rows` applies the
privacy rules before anything leaves the room (CSV, JSON).  Each indicator
is defined in ``docs/statistics.md``.
"""

from __future__ import annotations

import enum
import math
import operator
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sas_desk.models.codes import codelist
from sas_desk.models.errors import KnownError
from sas_desk.models.queue import WaitLimits
from sas_desk.models.telephony import Call, grouped

DEFAULT_TZ = "Europe/Paris"
SMALL_CELL = 11  # counts from 1 to SMALL_CELL - 1 never leave the room
MAX_DAYS = 366 + 31  # a year and a month: the longest period a report covers
MAX_HOUR_DAYS = 62  # hourly rows: two months at most (1,488 rows)
SUPPRESSED = "<11"  # what an export shows instead of a small count


#: who may read the room's statistics (screen, exports, PDF): the supervisor
#: and the statistics reader (the centre's management, reporting to the ARS)
STATS_READERS = frozenset({"SUP", "STATS"})
#: who may see the figures per person (load per operator): inside the room only
STAFF_READERS = frozenset({"SUP"})


def may_read_stats(role: str) -> bool:
    return role in STATS_READERS


def may_read_staff_load(role: str) -> bool:
    return role in STAFF_READERS


class StatsError(KnownError):
    """A refused statistics request (bad period…), with a French message."""

    def __init__(self, message_fr: str) -> None:
        super().__init__(message_fr)
        self.message_fr = message_fr


class Granularity(enum.StrEnum):
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"

    @property
    def label(self) -> str:
        return {"hour": "heure", "day": "jour", "month": "mois"}[self.value]


# ---------------------------------------------------------------------------- periods

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_day(text: str, what: str) -> date:
    """``AAAA-MM-JJ`` → date; French message naming ``what`` otherwise."""
    clean = text.strip()
    if not _DATE_RE.fullmatch(clean):
        raise StatsError(f"Date {what} « {text} » invalide : format attendu AAAA-MM-JJ.")
    try:
        return date.fromisoformat(clean)
    except ValueError:
        raise StatsError(f"Date {what} « {text} » inexistante.") from None


@dataclass(frozen=True)
class Period:
    """Whole local days, ``first`` to ``last`` included, in ``tz``."""

    first: date
    last: date
    tz: str = DEFAULT_TZ

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(0), self.zone)

    @property
    def end(self) -> datetime:
        """Exclusive: midnight after ``last``."""
        return datetime.combine(self.last + timedelta(days=1), time(0), self.zone)

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


def parse_period(
    first: str, last: str, by: Granularity = Granularity.DAY, tz: str = DEFAULT_TZ
) -> Period:
    """The period of ``--from`` / ``--to``, checked; raises :class:`StatsError`."""
    start = parse_day(first, "de début (--from)")
    end = parse_day(last, "de fin (--to)")
    if end < start:
        raise StatsError(
            f"Période invalide : la fin ({end:%d/%m/%Y}) précède le début ({start:%d/%m/%Y})."
        )
    period = Period(start, end, tz)
    if period.days > MAX_DAYS:
        raise StatsError(
            f"Période trop longue ({period.days} jours) : {MAX_DAYS} jours au plus par rapport."
        )
    if by is Granularity.HOUR and period.days > MAX_HOUR_DAYS:
        raise StatsError(
            f"Période trop longue pour un détail par heure ({period.days} jours) : "
            f"{MAX_HOUR_DAYS} jours au plus, ou --by day."
        )
    return period


def bucket_of(at: datetime, by: Granularity, zone: ZoneInfo) -> str:
    """The period key of an instant, in local time: ``2026-12-07T14``,
    ``2026-12-07`` or ``2026-12``.  Every source uses these keys."""
    local = at.astimezone(zone)
    if by is Granularity.HOUR:
        return f"{local:%Y-%m-%dT%H}"
    if by is Granularity.DAY:
        return f"{local:%Y-%m-%d}"
    return f"{local:%Y-%m}"


def buckets(period: Period, by: Granularity) -> list[str]:
    """Every key of the period, in order (empty periods get a row too).  The
    hour repeated when clocks go back is one bucket; the skipped one is none."""
    keys: list[str] = []
    if by is Granularity.HOUR:
        at = period.start.astimezone(ZoneInfo("UTC"))
        end = period.end.astimezone(ZoneInfo("UTC"))
        while at < end:
            key = bucket_of(at, by, period.zone)
            if not keys or keys[-1] != key:
                keys.append(key)
            at += timedelta(hours=1)
        return keys
    day = period.first
    while day <= period.last:
        key = day.isoformat() if by is Granularity.DAY else f"{day:%Y-%m}"
        if not keys or keys[-1] != key:
            keys.append(key)
        day += timedelta(days=1)
    return keys


def bucket_label(key: str) -> str:
    """``2026-12-07T14`` → ``2026-12-07 14:00``; days and months unchanged."""
    return f"{key[:10]} {key[11:13]}:00" if "T" in key else key


# ---------------------------------------------------------------------------- dimensions

BRANCHES = ("AMU", "SNP", "DENT")
BRANCH_LABELS = {"AMU": "AMU", "SNP": "SNP", "DENT": "Dentaire"}
PRIORITIES = ("P0", "P1", "P2", "P3", "NR")
#: the load columns: what each role did in the period (counts, inside the room)
ROLE_LOAD_COLUMNS = ("arm_transmis", "mru_decides", "mrl_decides", "dent_decides", "osnp_clotures")
DELAYS: tuple[tuple[str, str], ...] = (
    ("reception_transmission", "réception → transmission"),
    ("transmission_prise", "transmission → prise en charge"),
    ("prise_decision", "prise en charge → décision"),
    ("appel_rdv", "appel → rendez-vous pris (SNP, délai : 48 h)"),
)


def motive_chapters() -> tuple[tuple[str, str], ...]:
    """(``M01``, label) for each chapter of the Hub motive list."""
    return tuple((c.code[:3], c.label) for c in codelist("motive") if c.parent is None)


def chapter_of(motive: str) -> str:
    """``M01.02`` → ``M01``; anything else → ``M07`` (non renseigné)."""
    return motive[:3] if re.fullmatch(r"M\d\d(\.\d\d)?", motive or "") else "M07"


class SnpOutcome(enum.StrEnum):
    """What became of an SNP dossier (one outcome each, first that applies)."""

    TRANSFERT_AMU = "TRANSFERT_AMU"
    SMUR = "SMUR"
    URGENCES = "URGENCES"
    RDV_PRIS = "RDV_PRIS"
    RDV_EN_SUS = "RDV_EN_SUS"
    RDV_DEMANDE = "RDV_DEMANDE"
    CONSEIL = "CONSEIL"
    AUTRE = "AUTRE"
    SANS_DECISION = "SANS_DECISION"

    @property
    def label(self) -> str:
        return {
            "TRANSFERT_AMU": "Transféré en AMU",
            "SMUR": "SMUR",
            "URGENCES": "Urgences",
            "RDV_PRIS": "RDV pris (plateforme)",
            "RDV_EN_SUS": "RDV en sus (surnuméraire)",
            "RDV_DEMANDE": "RDV demandé, non pris",
            "CONSEIL": "Conseil / prescription",
            "AUTRE": "Autre décision",
            "SANS_DECISION": "Sans décision",
        }[self.value]

    @property
    def short(self) -> str:
        """For a chart's slice."""
        return {
            "TRANSFERT_AMU": "AMU",
            "SMUR": "SMUR",
            "URGENCES": "Urgences",
            "RDV_PRIS": "RDV pris",
            "RDV_EN_SUS": "En sus",
            "RDV_DEMANDE": "RDV demandé",
            "CONSEIL": "Conseil",
            "AUTRE": "Autre",
            "SANS_DECISION": "Sans déc.",
        }[self.value]


#: the SNP facts' ``booked`` values (0: no appointment)
BOOKED_PLATFORM = 1
BOOKED_EN_SUS = 2


def snp_outcome(
    *,
    to_amu: bool,
    smur: bool,
    emergency: bool,
    booked: int,
    booking_requested: bool,
    decisions: int,
    advice_only: bool,
) -> SnpOutcome:
    """The outcome rule, in one place: the sources only report the facts.
    ``booked``: 0 no appointment, :data:`BOOKED_PLATFORM` a slot booked
    through the platform, :data:`BOOKED_EN_SUS` an appointment agreed on the
    phone with an "en sus" volunteer (both close the dossier from the OSNP
    queue)."""
    if to_amu:
        return SnpOutcome.TRANSFERT_AMU
    if smur:
        return SnpOutcome.SMUR
    if emergency:
        return SnpOutcome.URGENCES
    if booked == BOOKED_EN_SUS:
        return SnpOutcome.RDV_EN_SUS
    if booked:
        return SnpOutcome.RDV_PRIS
    if booking_requested:
        return SnpOutcome.RDV_DEMANDE
    if decisions and advice_only:
        return SnpOutcome.CONSEIL
    if decisions:
        return SnpOutcome.AUTRE
    return SnpOutcome.SANS_DECISION


class DentalOrientation(enum.StrEnum):
    """The dental regulator's orientations (the dental view's own codes)."""

    CONSEIL = "CONSEIL"
    DENTISTE_JOUR = "DENTISTE_JOUR"
    DENTISTE_GARDE = "DENTISTE_GARDE"
    MEDECIN = "MEDECIN"
    NON_RENSEIGNE = "NON_RENSEIGNE"

    @property
    def label(self) -> str:
        return {
            "CONSEIL": "Conseil",
            "DENTISTE_JOUR": "Dentiste dans la journée",
            "DENTISTE_GARDE": "Dentiste de garde",
            "MEDECIN": "Retour au médecin",
            "NON_RENSEIGNE": "Non renseignée",
        }[self.value]


#: The start of the note the dental view writes for each orientation
#: ("Orientation dentaire : <short label>…"): only this fixed prefix is read.
DENTAL_NOTE_PREFIX = "Orientation dentaire : "
DENTAL_NOTE_LABELS: tuple[tuple[str, DentalOrientation], ...] = (
    ("Conseil", DentalOrientation.CONSEIL),
    ("Dentiste dans la journée", DentalOrientation.DENTISTE_JOUR),
    ("Dentiste de garde", DentalOrientation.DENTISTE_GARDE),
    ("Médecin (AMU)", DentalOrientation.MEDECIN),
)


def dental_orientation(to_amu: bool, note_code: str) -> DentalOrientation:
    """A dental dossier transferred to AMU went back to a physician; else the
    orientation its note records, if any."""
    if to_amu:
        return DentalOrientation.MEDECIN
    try:
        return DentalOrientation(note_code)
    except ValueError:
        return DentalOrientation.NON_RENSEIGNE


AGE_BANDS: tuple[tuple[str, int, int], ...] = (
    ("0_4", 0, 4),
    ("5_17", 5, 17),
    ("18_44", 18, 44),
    ("45_64", 45, 64),
    ("65_74", 65, 74),
    ("75_plus", 75, 200),
)


_BAND_NAMES = frozenset(name for name, _, _ in AGE_BANDS)


def age_band(iso_age: str) -> str:
    """``P67Y`` → ``65_74``; months, weeks, days → ``0_4``; unknown → ``inconnu``;
    a band's own name (the rollup keeps bands) → itself."""
    if iso_age in _BAND_NAMES:
        return iso_age
    match = re.fullmatch(r"P(\d+)([YMWD])", iso_age or "")
    if match is None:
        return "inconnu"
    value, unit = int(match.group(1)), match.group(2)
    years = value if unit == "Y" else 0 if unit != "M" else value // 12
    for name, low, high in AGE_BANDS:
        if low <= years <= high:
            return name
    return "inconnu"


def departement_of(insee: str) -> str:
    """The département of a commune's INSEE code (``69123`` → ``69``,
    ``97411`` → ``974``, ``2A004`` → ``2A``); unknown → ``inconnu``; a
    département's own code (the rollup keeps départements) → itself."""
    code = (insee or "").strip().upper()
    if re.fullmatch(r"(\d{2}|2[AB]|97\d)", code):
        return code
    if not re.fullmatch(r"(\d{5}|2[AB]\d{3})", code):
        return "inconnu"
    return code[:3] if code.startswith("97") else code[:2]


# ---------------------------------------------------------------------------- facts at rest


# What the statistics read of a queue store's records, and nothing more
# (issue 15).  On a workstation the embedded queue file seals every dossier
# and event (``sas_desk.services.queues.sqlite``); beside each sealed record
# it keeps this projection in the clear, which the SQL of
# ``sas_desk.services.stats.sqlite`` reads with the same JSON paths as the
# record itself.  No name, phone, address, note or free text: codes, times,
# the age band and the département (coarser than the age and the commune the
# record holds, and all a report shows: ``age_band`` and ``departement_of``
# keep a band and a département as they are, so the figures do not change).
_DECISION_FACTS = ("resource_type", "orientation_type", "decision_type")
_EVENT_FACTS: Mapping[str, tuple[str, ...]] = {
    "ENQUEUED": ("reopened",),
    "CLOSED": ("queue",),
    "TRANSFERRED": ("to",),
    "ORIENTED": ("start", "en_sus"),
    "DENTAL_ORIENTED": ("code",),
}


def dossier_facts(data: Mapping[str, Any]) -> dict[str, Any]:
    """The statistics' part of a dossier (its ``to_dict``)."""
    out: dict[str, Any] = {
        k: data[k]
        for k in ("branch", "attribution", "priority", "motive_code", "created_at")
        if k in data
    }
    age = (data.get("patient") or {}).get("age")
    if isinstance(age, str):
        out["patient"] = {"age": age_band(age) if age else age}
    insee = (data.get("location") or {}).get("insee")
    if isinstance(insee, str):
        out["location"] = {"insee": departement_of(insee) if insee else insee}
    decisions = data.get("decisions")
    if isinstance(decisions, list):
        out["decisions"] = [
            {k: x[k] for k in _DECISION_FACTS if k in x} for x in decisions if isinstance(x, dict)
        ]
    return out


def event_facts(kind: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The statistics' part of an event's data: the keys its kind's
    indicators read, the lease renewal mark, and of a dental orientation's
    summary only the fixed start the indicators recognise (never the rest,
    which may carry the regulator's words)."""
    keys = (*_EVENT_FACTS.get(kind, ()), "renewed")
    out = {k: data[k] for k in keys if k in data}
    text = data.get("text")
    if kind == "DENTAL_ORIENTED" and isinstance(text, str):
        for label, _ in DENTAL_NOTE_LABELS:
            start = DENTAL_NOTE_PREFIX + label
            if _like_start(text, start):
                out["text"] = text[: len(start)]
                break
    return out


def _like_start(text: str, start: str) -> bool:
    """Whether ``text`` begins with ``start`` as SQL ``LIKE 'start%'`` may
    see it (ASCII letters of either case); a wider test than LIKE's is
    harmless: the statistics compare the kept start the same way."""
    head = text[: len(start)]
    return len(head) == len(start) and all(
        a == b or a.lower() == b.lower() for a, b in zip(head, start, strict=True)
    )


# ---------------------------------------------------------------------------- raw data


@dataclass
class RawStats:
    """What a source hands back: grouped counts only.

    - ``counts``: (bucket, branch, priority, motive code, liberal 0/1, decided 0/1, n)
    - ``ages``: (bucket, ISO age as typed, n); ``departements``: (bucket, INSEE code, n)
    - ``snp``: (bucket, to_amu, smur, emergency, booked, booking_requested,
      decided, advice_only, n) — SNP dossiers, the facts :func:`snp_outcome` reads
    - ``dental``: (bucket, to_amu, orientation code from the note or "", n)
    - ``delays``: (bucket, delay name, seconds, within 0/1/NULL, n)
    - ``load``: (bucket, role, operator, what, n), what ∈ transmis, pris,
      decides, clotures — per person, for the screen only
    """

    counts: list[tuple[str, str, str, str, int, int, int]] = field(default_factory=list)
    ages: list[tuple[str, str, int]] = field(default_factory=list)
    departements: list[tuple[str, str, int]] = field(default_factory=list)
    snp: list[tuple[str, int, int, int, int, int, int, int, int]] = field(default_factory=list)
    dental: list[tuple[str, int, str, int]] = field(default_factory=list)
    delays: list[tuple[str, str, int, int | None, int]] = field(default_factory=list)
    load: list[tuple[str, str, str, str, int]] = field(default_factory=list)
    #: (bucket, answered 0/1, answered within 60 s 0/1, n) from the telephony's
    #: call records (:func:`telephony_rows`); None: no file imported (no columns)
    calls: list[tuple[str, int, int, int]] | None = None


def telephony_rows(
    calls: Iterable[Call], period: Period, by: Granularity
) -> list[tuple[str, int, int, int]]:
    """The calls presented during ``period``, grouped by its buckets."""
    zone = period.zone

    def key(at: datetime) -> str | None:
        return bucket_of(at, by, zone) if period.start <= at < period.end else None

    return grouped(calls, key)


# ---------------------------------------------------------------------------- percentiles


def percentile(histogram: Mapping[int, int], p: float) -> int | None:
    """Nearest-rank percentile of integer values given as {value: count}:
    the smallest value v such that at least ``p`` % of the values are ≤ v."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(p / 100 * total))
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return value
    return max(histogram)  # pragma: no cover - rank <= total


# ---------------------------------------------------------------------------- report

Cell = int | float | str | None


@dataclass
class Report:
    """One row per period bucket (ordered), French column names; ``groups``
    lists the count columns that add up to ``dossiers`` (or to another
    column) — what small-cell suppression must protect; ``load`` stays on
    screen (per person)."""

    period: Period
    by: Granularity
    columns: list[str]
    rows: list[dict[str, Cell]]
    groups: list[tuple[str, tuple[str, ...]]]
    denominators: dict[str, str]  # share or delay column → the count it is computed on
    load: list[tuple[str, str, str, str, int]] = field(default_factory=list)

    def totals(self) -> dict[str, Cell]:
        """The whole period in one row (counts summed; shares and delays are
        not additive and are left out)."""
        out: dict[str, Cell] = {"periode": "total"}
        for column in self.columns[1:]:
            if column in self.denominators:
                continue
            out[column] = sum(int(r[column] or 0) for r in self.rows)
        return out


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def build_report(
    raw: RawStats, period: Period, by: Granularity, limits: WaitLimits | None = None
) -> Report:
    """The indicators of ``docs/statistics.md``, one row per bucket.

    ``limits`` is kept for documentation symmetry: the "within the limit"
    flag is computed by the source, per dossier, from the dossier's priority
    (see :func:`within_limit`)."""
    del limits
    keys = buckets(period, by)
    chapters = [c for c, _ in motive_chapters()]
    deps = sorted({departement_of(i) for _, i, n in raw.departements if n} - {"inconnu"})
    deps.append("inconnu")
    bands = [b for b, _, _ in AGE_BANDS] + ["inconnu"]
    columns = ["periode", "dossiers"]
    groups: list[tuple[str, tuple[str, ...]]] = []
    denominators: dict[str, str] = {}

    def group(total: str, cols: Sequence[str]) -> None:
        columns.extend(cols)
        groups.append((total, tuple(cols)))

    group("dossiers", [f"filiere_{b.lower()}" for b in BRANCHES])
    group("dossiers", [f"priorite_{p.lower()}" for p in PRIORITIES])
    group("dossiers", [f"motif_{c.lower()}" for c in chapters])
    group("dossiers", [f"age_{b}" for b in bands])
    group("dossiers", [f"dep_{d.lower()}" for d in deps])
    group("dossiers", ["decides", "non_decides"])
    group("decides", ["decides_mg_liberal", "decides_autres"])
    columns.append("part_mg_liberal_pct")
    denominators["part_mg_liberal_pct"] = "decides"
    for name, _label in DELAYS:
        for suffix in ("p50_s", "p90_s", "dans_limite_pct"):
            column = f"delai_{name}_{suffix}"
            columns.append(column)
            denominators[column] = f"delai_{name}_n"
        columns.append(f"delai_{name}_n")
    group("filiere_snp", [f"snp_{o.value.lower()}" for o in SnpOutcome])
    columns.append("snp_part_rdv_pris_pct")
    denominators["snp_part_rdv_pris_pct"] = "filiere_snp"
    group("filiere_dent", [f"dent_{o.value.lower()}" for o in DentalOrientation])
    roles = ROLE_LOAD_COLUMNS
    columns.extend(roles)
    if raw.calls is not None:
        group("tel_presentes", ["tel_decroches", "tel_abandonnes"])
        columns[-2:-2] = ["tel_presentes"]
        columns.extend(["tel_decroches_60s", "tel_taux_decroche_pct", "tel_qs60_pct"])
        denominators["tel_taux_decroche_pct"] = "tel_presentes"
        denominators["tel_qs60_pct"] = "tel_presentes"

    rows: dict[str, dict[str, Cell]] = {}
    for key in keys:
        row: dict[str, Cell] = dict.fromkeys(columns, 0)
        row["periode"] = bucket_label(key)
        rows[key] = row

    def add(key: str, column: str, n: int) -> None:
        row = rows.get(key)
        if row is None or column not in row:
            return  # outside the period (a source's slack) or an unknown code
        row[column] = int(row[column] or 0) + n

    for key, branch, priority, chapter, liberal, decided, n in raw.counts:
        if key not in rows:
            continue
        add(key, "dossiers", n)
        add(key, f"filiere_{branch.lower()}", n)
        add(key, f"priorite_{priority.lower()}", n)
        add(key, f"motif_{chapter_of(chapter).lower()}", n)
        add(key, "decides" if decided else "non_decides", n)
        if decided:
            add(key, "decides_mg_liberal" if liberal else "decides_autres", n)
    for key, iso_age, n in raw.ages:
        add(key, f"age_{age_band(iso_age)}", n)
    for key, insee, n in raw.departements:
        add(key, f"dep_{departement_of(insee).lower()}", n)
    for key, to_amu, smur, emergency, booked, booking, decided, advice, n in raw.snp:
        outcome = snp_outcome(
            to_amu=bool(to_amu),
            smur=bool(smur),
            emergency=bool(emergency),
            booked=int(booked),
            booking_requested=bool(booking),
            decisions=int(decided),
            advice_only=bool(advice),
        )
        add(key, f"snp_{outcome.value.lower()}", n)
    for key, to_amu, code, n in raw.dental:
        add(key, f"dent_{dental_orientation(bool(to_amu), code).value.lower()}", n)
    what_column = {
        ("ARM", "transmis"): "arm_transmis",
        ("MRU", "decides"): "mru_decides",
        ("MRL", "decides"): "mrl_decides",
        ("DENT", "decides"): "dent_decides",
        ("OSNP", "clotures"): "osnp_clotures",
    }
    for key, role, _operator, what, n in raw.load:
        role_column = what_column.get((role, what))
        if role_column:
            add(key, role_column, n)

    for key, answered, fast, n in raw.calls or ():
        add(key, "tel_presentes", n)
        add(key, "tel_decroches" if answered else "tel_abandonnes", n)
        if fast:
            add(key, "tel_decroches_60s", n)

    histograms: dict[tuple[str, str], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    within: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for key, name, seconds, ok, n in raw.delays:
        if key not in rows or seconds is None or seconds < 0:
            continue
        histograms[(key, name)][int(seconds)] += n
        if ok is not None:
            within[(key, name)][0] += n if ok else 0
            within[(key, name)][1] += n
    for key, row in rows.items():
        for name, _label in DELAYS:
            hist = histograms.get((key, name), {})
            row[f"delai_{name}_n"] = sum(hist.values())
            row[f"delai_{name}_p50_s"] = percentile(hist, 50)
            row[f"delai_{name}_p90_s"] = percentile(hist, 90)
            ok, judged = within.get((key, name), [0, 0])
            row[f"delai_{name}_dans_limite_pct"] = _pct(ok, judged)
        row["part_mg_liberal_pct"] = _pct(
            int(row["decides_mg_liberal"] or 0), int(row["decides"] or 0)
        )
        row["snp_part_rdv_pris_pct"] = _pct(
            int(row["snp_rdv_pris"] or 0), int(row["filiere_snp"] or 0)
        )
        if raw.calls is not None:
            presented = int(row["tel_presentes"] or 0)
            row["tel_taux_decroche_pct"] = _pct(int(row["tel_decroches"] or 0), presented)
            row["tel_qs60_pct"] = _pct(int(row["tel_decroches_60s"] or 0), presented)
    return Report(
        period, by, columns, [rows[k] for k in keys], groups, denominators, list(raw.load)
    )


def within_limit(priority: str, seconds: float, limits: WaitLimits) -> bool | None:
    """Whether a delay is within the waiting limit of the dossier's priority
    (``None`` for NR, which has none)."""
    limit = limits.limit(priority)
    return None if limit is None else seconds <= limit


# ---------------------------------------------------------------------------- privacy


def _small(value: Cell) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < SMALL_CELL


#: an added denominator column left unset (a row lacking it keeps lacking it)
_ABSENT: Any = object()


class Suppression:
    """The small-cell rule (:func:`suppress_row`) for rows of given columns,
    worked out once: the groups and denominators as column positions, so an
    export applies it row after row on lists of values."""

    def __init__(
        self,
        columns: Sequence[str],
        groups: Iterable[tuple[str, tuple[str, ...]]],
        denominators: Mapping[str, str],
    ) -> None:
        self.columns = list(columns)
        # a denominator's column the rows lack is added to the output
        self.out_columns = self.columns + [c for c in denominators if c not in self.columns]
        at = {c: i for i, c in enumerate(self.out_columns)}
        width = len(self.columns)
        # a name the rows lack reads as None: such a part never counts (never
        # small, never non-zero), such a total is never hidden
        self.groups = [
            (at.get(total, -1), tuple(at[p] for p in parts if at.get(p, width) < width))
            for total, parts in groups
        ]
        self.members: dict[int, list[int]] = {}
        for g, (total, parts) in enumerate(self.groups):
            for i in {total, *parts}:
                self.members.setdefault(i, []).append(g)
        self.denominators = [
            (at[c], at.get(b, -1) if at.get(b, width) < width else -1)
            for c, b in denominators.items()
        ]
        self.extra = len(self.out_columns) - width

    def values(self, values: Sequence[Cell]) -> list[Cell]:
        """One row's values (in ``columns`` order) → the export's (in
        ``out_columns`` order)."""
        hidden = {i for i, v in enumerate(values) if type(v) is int and 0 < v < SMALL_CELL}
        groups = self.groups
        dirty = [True] * len(groups)
        changed = bool(hidden)
        # passes over the groups in order until one changes nothing, as the
        # rule reads; a group none of whose cells changed since it was last
        # looked at would change nothing: skipped
        while changed:
            changed = False
            for g, (total, parts) in enumerate(groups):
                if not dirty[g]:
                    continue
                dirty[g] = False
                if total in hidden:
                    new = [p for p in parts if p not in hidden and values[p] not in (0, None)]
                else:
                    mine = [p for p in parts if p in hidden]
                    if not mine:
                        continue
                    if len(mine) > 1:
                        together = 0
                        for p in mine:
                            together += int(values[p] or 0)
                        if together >= SMALL_CELL:
                            continue
                    rest = [p for p in parts if p not in hidden and values[p] not in (0, None)]
                    # the smallest; the first of equals (a stable sort's first)
                    new = [min(rest, key=lambda p: int(values[p] or 0))] if rest else []
                if new:
                    hidden.update(new)
                    changed = True
                    for i in new:
                        for h in self.members.get(i, ()):
                            dirty[h] = True
        out = list(values)
        if self.extra:
            out.extend([_ABSENT] * self.extra)
        for i in hidden:
            out[i] = SUPPRESSED
        for column, base in self.denominators:
            n = values[base] if base >= 0 else None
            if not isinstance(n, int) or n < SMALL_CELL:
                out[column] = SUPPRESSED if (isinstance(n, int) and n > 0) else None
        return out


def suppress_row(
    row: Mapping[str, Cell],
    groups: Iterable[tuple[str, tuple[str, ...]]],
    denominators: Mapping[str, str],
) -> dict[str, Cell]:
    """One export row with small cells suppressed.

    - every count from 1 to 10 becomes ``<11`` (0 stays: it describes nobody);
    - in a group of counts adding up to a shown total, a lone suppressed cell
      would be rebuilt by subtraction: the next smallest non-zero cell of the
      group is suppressed too (and so on until the group is safe);
    - a share, percentile or delay computed on fewer than 11 dossiers is
      suppressed (its count column says so);
    - a total suppressed suppresses all its parts.
    """
    rule = Suppression(list(row), groups, denominators)
    return {
        c: v
        for c, v in zip(rule.out_columns, rule.values(list(row.values())), strict=True)
        if v is not _ABSENT
    }


def export_values(report: Report) -> Iterator[list[Cell]]:
    """The export's rows as values in ``report.columns`` order (see
    :func:`export_rows`), one at a time."""
    rule = Suppression(report.columns, report.groups, report.denominators)
    get = operator.itemgetter(*report.columns)
    for row in report.rows:
        yield rule.values(get(row))


def export_rows(report: Report) -> list[dict[str, Cell]]:
    """The rows that may leave the room: counts and delays only, by role,
    small cells suppressed.  Nothing per person, nothing per dossier."""
    columns = report.columns
    return [dict(zip(columns, values, strict=True)) for values in export_values(report)]


def export_columns(report: Report) -> list[str]:
    return list(report.columns)


# ---------------------------------------------------------------------------- themes


@dataclass(frozen=True)
class Theme:
    """What the statistics screen shows at a time: a family of indicators
    (the period column always comes first)."""

    key: str
    label: str
    prefixes: tuple[str, ...]  # a column belongs when it starts with one ("" = every column)
    exact: tuple[str, ...] = ()  # or is one of these

    def columns(self, report_columns: Sequence[str]) -> list[str]:
        chosen = [
            c
            for c in report_columns[1:]
            if c in self.exact or any(c.startswith(p) for p in self.prefixes)
        ]
        return [report_columns[0], *chosen] if report_columns else []


THEMES: tuple[Theme, ...] = (
    Theme("tout", "Tous les indicateurs", ("",)),
    Theme(
        "volumes",
        "Volumes",
        ("filiere_", "priorite_", "decides"),
        ("dossiers", "non_decides", "part_mg_liberal_pct"),
    ),
    Theme("motifs", "Motifs", ("motif_",), ("dossiers",)),
    Theme("patients", "Âges et départements", ("age_", "dep_"), ("dossiers",)),
    Theme("delais", "Délais", ("delai_",)),
    Theme("snp", "Issues SNP", ("snp_",), ("filiere_snp", "delai_appel_rdv_n")),
    Theme("dentaire", "Dentaire", ("dent_",), ("filiere_dent",)),
    Theme("charge", "Activité par rôle", (), ("dossiers", *ROLE_LOAD_COLUMNS)),
    Theme("telephonie", "Téléphonie", ("tel_",)),
)


def theme(key: str) -> Theme:
    """The theme of ``key`` (the first, every column, when unknown)."""
    return next((t for t in THEMES if t.key == key), THEMES[0])


def theme_groups(report: Report, chosen: Theme) -> list[tuple[str, tuple[str, ...]]]:
    """The report's count groups whose columns all belong to ``chosen``
    (what its chart stacks), in the report's order."""
    shown = set(chosen.columns(report.columns))
    return [(total, cols) for total, cols in report.groups if cols and set(cols) <= shown]


def series_label(column: str) -> str:
    """A chart's legend for a column: the SNP outcome's French label, the
    branch's name, a delay's p90 with the delay's name, else the column's
    own name."""
    if column.startswith("snp_"):
        code = column.removeprefix("snp_").upper()
        if code in SnpOutcome.__members__:
            return SnpOutcome[code].label
    if column.startswith("filiere_"):
        return BRANCH_LABELS.get(column.removeprefix("filiere_").upper(), column)
    if column.startswith("delai_") and column.endswith("_p90_s"):
        label = dict(DELAYS).get(column.removeprefix("delai_").removesuffix("_p90_s"))
        if label is not None:
            return f"p90 {label} (s)"
    return column
