"""The synthetic health offer the simulator serves: who practises where, which
vendor keeps their agenda, and their free slots over the next 72 hours.

Everything is drawn from one seed over the demo communes of
``resources/territory`` (Rhône, Isère, Loire, Drôme): the same seed gives the
same territory, and the same slots for a given day, whatever the clock says.
Names are invented (syllable-built family names), national ids are synthetic
but well formed (RPPS ``19…`` with a Luhn key, FINESS and SIRET with their
keys), phone numbers come from the ranges ARCEP reserves for fiction
(``04 65 71 xx xx``, ``06 39 98 xx xx``).

What is built, eagerly but cheaply (≈ 2,300 practitioners, a few tens of ms):

- general practitioners (TRE-R38 ``SM54``), pediatricians (``SM40``) and
  dentists (profession TRE-G15 ``40``); a few practise in two places;
- CPTS (FINESS) with member practitioners, SOS Médecins associations (SIRET)
  with their fixed consultation places (PFG), centres de santé and MSP whose
  practitioners share the structure's address, phone and vendor;
- SAS participation, and some practitioners accepting patients "en sus" with
  the mobile number to call for that;
- a handful of *fixtures* (:attr:`Offer.fixtures`): practitioners and an SOS
  association guaranteed to have slots every day, for the test-kit style checks.

Slots are generated lazily, per schedule and per day, from a generator seeded
with ``(seed, schedule, day)``, and cached: a vendor answering a batch of 25
practitioners only ever builds those 25 agendas.

Changes (so an incremental directory sync sees something): :meth:`Offer.rename`,
:meth:`Offer.remove_practitioner`, :meth:`Offer.set_en_sus`,
:meth:`Offer.deactivate_place` bump the ``meta.lastUpdated`` of what they touch
in the directory feed (``sas_desk.simulator.directory``).
"""

from __future__ import annotations

import math
import random
import threading
import time as _time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo

from sas_desk.models.slots import ConsultationMode
from sas_desk.services.geo.territory import Commune, Street, load_communes, load_streets

__all__ = [
    "DEFAULT_SEED",
    "DEFAULT_VENDORS",
    "HORIZON",
    "PARIS",
    "Fixtures",
    "Offer",
    "Pfg",
    "Place",
    "Practitioner",
    "SimSlot",
    "Structure",
    "Vendor",
    "luhn_ok",
]

DEFAULT_SEED = 20261
#: How far ahead slots are offered.
HORIZON = timedelta(hours=72)


def _paris() -> tzinfo:
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo("Europe/Paris")
    except (ImportError, KeyError, OSError):  # no tz database
        from dateutil import tz  # type: ignore[import-untyped]

        paris: tzinfo | None = tz.gettz("Europe/Paris")
        assert paris is not None
        return paris


PARIS = _paris()

PROFESSION_DOCTOR = "10"
PROFESSION_DENTIST = "40"
SPECIALTY_GP = "SM54"
SPECIALTY_PEDIATRICS = "SM40"


@dataclass(frozen=True, slots=True)
class Vendor:
    name: str  # URL segment: {simulator}/vendors/{name}/fhir
    label: str  # shown to users
    share: float  # share of the practitioners it serves


DEFAULT_VENDORS: tuple[Vendor, ...] = (
    Vendor("asclepia", "Asclepia Agenda", 0.34),
    Vendor("hygie", "Hygie RDV", 0.28),
    Vendor("panacee", "Panacée Planning", 0.22),
    Vendor("epione", "Épione Santé", 0.16),
)


# --------------------------------------------------------------------------- entities


@dataclass(slots=True, eq=False)
class Structure:
    """An Organization: CPTS, SOS Médecins association, centre de santé, MSP."""

    id: str
    kind: str  # "CPTS", "SOS", "CDS", "MSP"
    national_id: str  # prefixed IdNat_Struct: "1" + FINESS or "3" + SIRET
    name: str
    phone: str
    commune: Commune
    line: str
    lat: float
    lon: float
    vendor: str | None = None  # SOS: the vendor serving its schedules; CDS/MSP: its members'
    sas: bool = False
    active: bool = True
    members: list[Practitioner] = field(default_factory=list)

    @property
    def healthcare_service_id(self) -> str:
        return "hs-" + self.national_id[1:]


@dataclass(slots=True, eq=False)
class Place:
    """One place of practice: a PractitionerRole with its contained Location and
    its Schedule."""

    practitioner: Practitioner
    index: int  # 1, 2
    commune: Commune
    line: str
    lat: float
    lon: float
    phone: str
    structure: Structure | None = None  # CDS / MSP
    # weekday (0 = Monday) → sessions as (start, end) minutes after midnight
    sessions: dict[int, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    free_rate: float = 0.2
    active: bool = True

    @property
    def id(self) -> str:
        return f"r{self.practitioner.rpps}-{self.index}"

    @property
    def schedule_id(self) -> str:
        return f"s{self.practitioner.rpps}-{self.index}"

    @property
    def location_id(self) -> str:
        return f"lieu{self.index}"

    @property
    def structure_national_id(self) -> str:
        """What the role's ``organization.identifier`` carries: the structure's
        FINESS, else the practitioner's RPPS-rang (``4`` + RPPS + rang)."""
        if self.structure is not None:
            return self.structure.national_id
        return f"4{self.practitioner.rpps}{self.index:03d}"


@dataclass(slots=True, eq=False)
class Practitioner:
    rpps: str  # 11 digits
    family: str
    given: str
    profession: str  # TRE-G15: "10" médecin, "40" chirurgien-dentiste
    specialty: str | None  # TRE-R38, None for a dentist
    vendor: str
    slot_minutes: int
    sas: bool = False
    en_sus_phone: str | None = None
    places: list[Place] = field(default_factory=list)
    cpts: list[Structure] = field(default_factory=list)
    cpts_only: bool = False  # all its slots are reserved to its CPTS
    active: bool = True

    @property
    def national_id(self) -> str:
        return "8" + self.rpps

    @property
    def id(self) -> str:
        return "p" + self.rpps

    @property
    def kind(self) -> str:
        if self.profession == PROFESSION_DENTIST:
            return "dentist"
        return "pediatrician" if self.specialty == SPECIALTY_PEDIATRICS else "gp"


@dataclass(slots=True, eq=False)
class Pfg:
    """A fixed consultation place (point fixe de garde) of an SOS association."""

    index: int
    association: Structure
    name: str
    commune: Commune
    line: str
    lat: float
    lon: float
    phone: str
    days: tuple[str, ...]  # mon … sun
    opening: time
    closing: time
    free_rate: float = 0.3

    @property
    def id(self) -> str:
        return f"pfg{self.association.national_id[1:]}-{self.index}"

    @property
    def schedule_id(self) -> str:
        return "s" + self.id


@dataclass(frozen=True, slots=True)
class SimSlot:
    """One free slot as the vendor stores it."""

    id: str
    schedule_id: str
    start: datetime  # aware, Europe/Paris
    end: datetime
    types: tuple[str, ...]  # PUBLIC / PRO / SNP / CPTS
    modes: tuple[str, ...]  # AMB / HH / VR
    appointment_type: str  # ROUTINE / WALKIN
    reasons: tuple[str, ...]
    cpts: tuple[Structure, ...] = ()  # CPTS the slot is visible to


@dataclass(frozen=True, slots=True)
class Fixtures:
    """Offer members guaranteed to have slots every day (all on the first vendor
    for practitioners): what the ANS test kit asks the tester to provide."""

    vendor: str
    single_place: str  # national id (8 + RPPS) of a GP with one place
    two_places: str  # a GP with two places, member of two CPTS
    multi: tuple[str, str]  # two GPs searched together
    cpts: str  # a GP member of one CPTS
    cpts_only: str  # a GP with two places, in two CPTS, whose slots are all CPTS-only
    sos_vendor: str
    sos_siret: str  # prefixed: "3" + SIRET
    en_sus: str  # a GP accepting patients "en sus"


# --------------------------------------------------------------------------- ids and numbers


def _luhn_key(digits: str) -> str:
    """The digit that makes ``digits + key`` pass the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 0:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return str((10 - total % 10) % 10)


def luhn_ok(number: str) -> bool:
    return number.isdigit() and _luhn_key(number[:-1]) == number[-1]


class _Numbers:
    """Draws without replacement from a numeric range (ids, phone numbers)."""

    def __init__(self, rng: random.Random, prefix: str, width: int) -> None:
        self._rng = rng
        self._prefix = prefix
        self._width = width
        self._used: set[int] = set()

    def draw(self) -> str:
        limit = 10**self._width
        if len(self._used) >= limit:
            raise RuntimeError(f"number range {self._prefix}… exhausted")
        while True:
            n = self._rng.randrange(limit)
            if n not in self._used:
                self._used.add(n)
                return f"{self._prefix}{n:0{self._width}d}"


# --------------------------------------------------------------------------- names


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_GIVEN = _words(
    "Camille Claire Julie Sophie Nathalie Isabelle Aurélie Émilie Céline Hélène Anne Marie "
    "Laure Élodie Sarah Léa Chloé Manon Inès Lucie Pauline Margaux Agathe Mathilde Louise "
    "Thomas Nicolas Julien Maxime Antoine Pierre Alexandre Guillaume Romain Vincent Laurent "
    "Olivier Sébastien François Mathieu Hugo Lucas Théo Baptiste Adrien Arnaud Benoît Damien "
    "Étienne Florian Jérôme Karim Yanis Mehdi Samir Nadia Yasmine Leïla Amine Sonia"
)
_FAMILY_HEAD = _words(
    "Bel Mor Val Ros Dum Lav Char Four Gar Mar Ber Roch Lam Pel Ver Font Cour Bon Mont Ray "
    "Bross Cham Dal Gren Lug Mir Noy Pral Sav Tess Vill Aub Barr Chal Fer Gir Jour Lor Pont"
)
_FAMILY_MID = ("", "", "and", "er", "el", "on", "ill", "ar", "ign", "ol", "eg", "an")
_FAMILY_TAIL = ("et", "ier", "in", "ot", "ard", "eau", "ac", "ais", "oux", "as", "on", "ey", "ade")


def _family_name(rng: random.Random) -> str:
    return rng.choice(_FAMILY_HEAD) + rng.choice(_FAMILY_MID) + rng.choice(_FAMILY_TAIL)


_STREET_NAMES = (
    "Rue de la Mairie", "Place de l'Église", "Grande Rue", "Avenue de la Gare",
    "Rue du Stade", "Chemin des Vignes", "Rue des Écoles", "Rue du Moulin",
    "Avenue des Tilleuls", "Rue de la Poste", "Place du Marché", "Rue des Jardins",
    "Allée des Platanes", "Rue du Château", "Boulevard du Centre", "Rue des Fontaines",
)  # fmt: skip

_REASONS = {
    "gp": (
        "Consultation de médecine générale", "Soins non programmés",
        "Renouvellement d'ordonnance", "Certificat médical", "Suivi de maladie chronique",
        "Vaccination", "Fièvre", "Douleur aiguë",
    ),
    "pediatrician": (
        "Consultation pédiatrique", "Fièvre de l'enfant", "Suivi du nourrisson",
        "Vaccination", "Gêne respiratoire de l'enfant",
    ),
    "dentist": ("Urgence dentaire", "Douleur dentaire", "Consultation de contrôle", "Abcès"),
    "sos": ("Consultation sans rendez-vous", "Soins non programmés", "Petite traumatologie"),
}  # fmt: skip

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    dlat = (lat2 - lat1) * 111.2
    dlon = (lon2 - lon1) * 111.2 * math.cos(math.radians((lat1 + lat2) / 2))
    return math.hypot(dlat, dlon)


# --------------------------------------------------------------------------- the offer


class Offer:
    """The territory (built on first use, thread-safe) and its slots."""

    def __init__(
        self,
        seed: int = DEFAULT_SEED,
        *,
        clock: Callable[[], datetime] | None = None,
        vendors: Sequence[Vendor] = DEFAULT_VENDORS,
        communes: Sequence[Commune] | None = None,
        streets: Sequence[Street] | None = None,
        density: float = 1.0,
    ) -> None:
        if len(vendors) < 2:
            raise ValueError("the offer needs at least two vendors")
        if not 0 < density <= 10:
            raise ValueError(f"density must be in ]0, 10], not {density!r}")
        self.seed = seed
        #: multiplies each place's share of free slots (benchmarks: a denser
        #: territory than the demo's; 1 = the demo)
        self.density = density
        self.vendors: tuple[Vendor, ...] = tuple(vendors)
        self._clock = clock or (lambda: datetime.now(PARIS))
        self._communes = communes
        self._streets = streets
        self._lock = threading.RLock()
        self._built = False
        self.build_seconds: float | None = None
        self.practitioners: list[Practitioner] = []
        self.structures: list[Structure] = []
        self.pfgs: list[Pfg] = []
        self._fixtures: Fixtures | None = None
        self._by_national_id: dict[str, Practitioner] = {}
        self._by_schedule: dict[str, Place | Pfg] = {}
        self._by_siret: dict[str, Structure] = {}
        self._day_cache: dict[tuple[str, date], tuple[SimSlot, ...]] = {}
        self._booked: dict[str, dict[str, str]] = {}  # slot id → booking record
        self._listeners: list[Callable[[Iterable[str], Iterable[str]], None]] = []

    @property
    def communes(self) -> Sequence[Commune] | None:
        """The communes given to the offer (``None``: the bundled demo's)."""
        return self._communes

    # ---- clock

    def now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            now = now.replace(tzinfo=PARIS)
        return now.astimezone(PARIS)

    # ---- building

    def ensure_built(self) -> Offer:
        if not self._built:
            with self._lock:
                if not self._built:
                    started = _time.perf_counter()
                    self._build()
                    self.build_seconds = _time.perf_counter() - started
                    self._built = True
        return self

    @property
    def fixtures(self) -> Fixtures:
        self.ensure_built()
        assert self._fixtures is not None
        return self._fixtures

    def _build(self) -> None:
        rng = random.Random(self.seed)
        communes = list(self._communes if self._communes is not None else load_communes())
        streets = list(self._streets if self._streets is not None else load_streets())
        if not communes:
            raise ValueError("the offer needs communes")
        streets_by_insee: dict[str, list[Street]] = {}
        for street in streets:
            streets_by_insee.setdefault(street.insee, []).append(street)
        self._landlines = _Numbers(rng, "+3346571", 4)  # ARCEP fiction range 04 65 71
        self._mobiles = _Numbers(rng, "+3363998", 4)  # ARCEP fiction range 06 39 98
        rpps_pool = _Numbers(rng, "19", 8)
        finess_pool = _Numbers(rng, "", 6)
        siren_pool = _Numbers(rng, "", 8)

        def rpps() -> str:
            body = rpps_pool.draw()
            return body + _luhn_key(body)

        def finess(commune: Commune) -> str:
            body = commune.departement + "0" + finess_pool.draw()[:5]
            return body + _luhn_key(body)

        def siret() -> str:
            siren = siren_pool.draw()
            siren += _luhn_key(siren)
            body = siren + "0001"
            return body + _luhn_key(body)

        def address(commune: Commune) -> tuple[str, float, float]:
            known = streets_by_insee.get(commune.insee)
            if known:
                street = rng.choice(known)
                jitter = 0.0015
                base_lat, base_lon, name = street.lat, street.lon, street.name
                number = rng.randint(1, 120)
            else:
                jitter = 0.008
                base_lat, base_lon = commune.lat, commune.lon
                name = rng.choice(_STREET_NAMES)
                number = rng.randint(1, 60)
            lat = round(base_lat + rng.uniform(-jitter, jitter), 6)
            lon = round(base_lon + rng.uniform(-jitter, jitter), 6)
            return f"{number} {name}", lat, lon

        vendor_names = [v.name for v in self.vendors]
        vendor_weights = [v.share for v in self.vendors]

        def vendor() -> str:
            return rng.choices(vendor_names, vendor_weights)[0]

        by_size = sorted(communes, key=lambda c: (-c.population, c.insee))

        # ---- practitioners, commune by commune
        def new_practitioner(kind: str, commune: Commune, chosen_vendor: str) -> Practitioner:
            given = rng.choice(_GIVEN)
            family = _family_name(rng)
            if kind == "dentist":
                p = Practitioner(rpps(), family, given, PROFESSION_DENTIST, None, chosen_vendor, 30)
                p.sas = rng.random() < 0.3
            elif kind == "pediatrician":
                p = Practitioner(
                    rpps(), family, given, PROFESSION_DOCTOR, SPECIALTY_PEDIATRICS,
                    chosen_vendor, rng.choice((20, 30)),
                )  # fmt: skip
                p.sas = rng.random() < 0.35
            else:
                p = Practitioner(
                    rpps(), family, given, PROFESSION_DOCTOR, SPECIALTY_GP, chosen_vendor,
                    rng.choice((15, 15, 20, 20, 30)),
                )  # fmt: skip
                p.sas = rng.random() < 0.5
            if p.sas and rng.random() < 0.15:
                p.en_sus_phone = self._mobiles.draw()
            line, lat, lon = address(commune)
            place = Place(p, 1, commune, line, lat, lon, self._landlines.draw())
            place.sessions = _weekly_sessions(rng, kind)
            place.free_rate = rng.uniform(0.08, 0.3) + (0.08 if p.sas else 0.0)
            p.places.append(place)
            return p

        local: dict[str, list[Practitioner]] = {}
        practitioners: list[Practitioner] = []

        # fixtures first, in the biggest commune, on the first vendor
        home = by_size[0]
        first_vendor = vendor_names[0]
        fixture_single = new_practitioner("gp", home, first_vendor)
        fixture_two = new_practitioner("gp", home, first_vendor)
        fixture_multi = (
            new_practitioner("gp", home, first_vendor),
            new_practitioner("gp", home, first_vendor),
        )
        fixture_cpts = new_practitioner("gp", home, first_vendor)
        fixture_en_sus = new_practitioner("gp", home, first_vendor)
        fixture_cpts_only = new_practitioner("gp", home, first_vendor)
        fixtures = [
            fixture_single, fixture_two, *fixture_multi, fixture_cpts, fixture_en_sus,
            fixture_cpts_only,
        ]  # fmt: skip
        for p in fixtures:
            p.sas = True
            p.places[0].sessions = dict.fromkeys(range(7), ((8 * 60, 12 * 60), (14 * 60, 20 * 60)))
            p.places[0].free_rate = 0.5
        fixture_en_sus.en_sus_phone = fixture_en_sus.en_sus_phone or self._mobiles.draw()
        neighbour = min(
            (c for c in communes if c.insee != home.insee),
            key=lambda c: _km(home.lat, home.lon, c.lat, c.lon),
        )
        for two in (fixture_two, fixture_cpts_only):
            line, lat, lon = address(neighbour)
            second = Place(two, 2, neighbour, line, lat, lon, self._landlines.draw())
            two.places[0].sessions = dict.fromkeys(range(7), ((8 * 60, 13 * 60),))
            second.sessions = dict.fromkeys(range(7), ((14 * 60, 20 * 60),))
            second.free_rate = 0.5
            two.places.append(second)
        fixture_cpts_only.cpts_only = True
        practitioners.extend(fixtures)
        local.setdefault(home.insee, []).extend(fixtures)

        for commune in communes:
            pop = commune.population
            counts = {
                "gp": max(2, round(pop / 1350)),
                "dentist": round(pop / 8500) if pop >= 5000 else 0,
                "pediatrician": round(pop / 18000),
            }
            for kind, count in counts.items():
                for _ in range(count):
                    p = new_practitioner(kind, commune, vendor())
                    practitioners.append(p)
                    local.setdefault(commune.insee, []).append(p)

        fixture_set = set(map(id, fixtures))

        def free_locals(commune: Commune, kinds: tuple[str, ...]) -> list[Practitioner]:
            return [
                p
                for p in local.get(commune.insee, [])
                if p.kind in kinds and id(p) not in fixture_set and p.places[0].structure is None
            ]

        # ---- centres de santé and MSP: members share address, phone, vendor
        structures: list[Structure] = []

        def structure(kind: str, commune: Commune, name: str) -> Structure:
            line, lat, lon = address(commune)
            number = finess(commune)
            prefix = kind.lower()
            s = Structure(
                f"{prefix}-{number}", kind, "1" + number, name, self._landlines.draw(),
                commune, line, lat, lon,
            )  # fmt: skip
            structures.append(s)
            return s

        def attach(s: Structure, members: list[Practitioner]) -> None:
            s.vendor = s.vendor or vendor()
            for p in members:
                place = p.places[0]
                place.structure = s
                place.line, place.lat, place.lon, place.phone = s.line, s.lat, s.lon, s.phone
                p.vendor = s.vendor
                if s.kind == "CDS":
                    p.sas, p.en_sus_phone = s.sas, None
                s.members.append(p)

        big = [c for c in by_size if c.population >= 60000]
        for n, commune in enumerate((*big, *big[:3])):
            s = structure(
                "CDS", commune, f"Centre de santé {commune.name}" + (" II" if n >= len(big) else "")
            )
            s.sas = rng.random() < 0.6
            pool = free_locals(commune, ("gp", "dentist"))
            attach(s, rng.sample(pool, min(len(pool), rng.randint(4, 8))))
        mid = [c for c in by_size if 8000 <= c.population < 60000]
        for commune in rng.sample(mid, min(len(mid), 14)):
            s = structure("MSP", commune, f"Maison de santé pluriprofessionnelle de {commune.name}")
            pool = free_locals(commune, ("gp", "pediatrician"))
            attach(s, rng.sample(pool, min(len(pool), rng.randint(3, 7))))

        # ---- a second place for a few
        for p in practitioners:
            if id(p) in fixture_set or p.places[0].structure is not None:
                continue
            if rng.random() < 0.07:
                first = p.places[0]
                other = rng.choice(
                    sorted(
                        communes,
                        key=lambda c: _km(first.commune.lat, first.commune.lon, c.lat, c.lon),
                    )[:4]
                )
                line, lat, lon = address(other)
                place = Place(p, 2, other, line, lat, lon, self._landlines.draw())
                days = sorted(first.sessions)
                moved = set(rng.sample(days, min(2, len(days))))
                place.sessions = {d: first.sessions[d] for d in moved}
                first.sessions = {d: s for d, s in first.sessions.items() if d not in moved}
                place.free_rate = first.free_rate
                p.places.append(place)

        # ---- CPTS
        cpts_homes = by_size[:12]
        cpts_list = [structure("CPTS", c, f"CPTS {c.name} et environs") for c in cpts_homes]
        for c in cpts_list:
            c.vendor = None  # a CPTS has no agenda of its own: its members' vendors serve it
        for p in practitioners:
            if p.kind == "dentist" or id(p) in fixture_set:
                continue
            first = p.places[0]
            near = sorted(
                (c for c in cpts_list if _km(first.lat, first.lon, c.lat, c.lon) <= 12.0),
                key=lambda c: _km(first.lat, first.lon, c.lat, c.lon),
            )
            if near and rng.random() < 0.4:
                p.cpts.append(near[0])
                if len(near) > 1 and rng.random() < 0.15:
                    p.cpts.append(near[1])
        fixture_two.cpts[:] = cpts_list[:2]
        fixture_cpts_only.cpts[:] = cpts_list[:2]
        fixture_cpts.cpts[:] = cpts_list[:1]
        for p in practitioners:
            for c in p.cpts:
                c.members.append(p)

        # ---- SOS Médecins: one association per département, 2–3 PFG each
        sos_vendors = vendor_names[1:] or vendor_names
        pfgs: list[Pfg] = []
        departements = sorted({c.departement for c in communes})
        sos_list: list[Structure] = []
        for n, dep in enumerate(departements):
            towns = [c for c in by_size if c.departement == dep]
            main = towns[0]
            line, lat, lon = address(main)
            number = siret()
            s = Structure(
                f"sos-{number}", "SOS", "3" + number, f"SOS Médecins {main.name}",
                self._landlines.draw(), main, line, lat, lon,
                vendor=sos_vendors[n % len(sos_vendors)], sas=True,
            )  # fmt: skip
            structures.append(s)
            sos_list.append(s)
            for index, town in enumerate(towns[: 2 + (n % 2)], start=1):
                line, lat, lon = address(town)
                all_days = index == 1
                pfgs.append(
                    Pfg(
                        index, s, f"Point fixe SOS Médecins {town.name}", town, line, lat, lon,
                        self._landlines.draw(),
                        _DAYS if all_days else _DAYS[:5],
                        time(8, 0) if all_days else time(18, 0),
                        time(23, 0),
                    )
                )  # fmt: skip

        self.practitioners = practitioners
        self.structures = structures
        self.pfgs = pfgs
        self._by_national_id = {p.national_id: p for p in practitioners}
        self._by_schedule = {}
        for p in practitioners:
            for place in p.places:
                self._by_schedule[place.schedule_id] = place
        for pfg in pfgs:
            self._by_schedule[pfg.schedule_id] = pfg
        self._by_siret = {s.national_id: s for s in sos_list}
        self._fixtures = Fixtures(
            vendor=first_vendor,
            single_place=fixture_single.national_id,
            two_places=fixture_two.national_id,
            multi=(fixture_multi[0].national_id, fixture_multi[1].national_id),
            cpts=fixture_cpts.national_id,
            cpts_only=fixture_cpts_only.national_id,
            sos_vendor=sos_list[0].vendor or first_vendor,
            sos_siret=sos_list[0].national_id,
            en_sus=fixture_en_sus.national_id,
        )

    # ---- lookups

    def vendor(self, name: str) -> Vendor | None:
        for v in self.vendors:
            if v.name == name:
                return v
        return None

    def practitioner(self, national_id: str) -> Practitioner | None:
        p = self.ensure_built()._by_national_id.get(national_id)
        return p if p is not None and p.active else None

    def sos_association(self, national_id: str) -> Structure | None:
        s = self.ensure_built()._by_siret.get(national_id)
        return s if s is not None and s.active else None

    def schedule_owner(self, schedule_id: str) -> Place | Pfg | None:
        return self.ensure_built()._by_schedule.get(schedule_id)

    def practitioners_of(self, vendor: str) -> list[Practitioner]:
        return [p for p in self.ensure_built().practitioners if p.vendor == vendor and p.active]

    def sos_of(self, vendor: str) -> list[Structure]:
        return [
            s
            for s in self.ensure_built().structures
            if s.kind == "SOS" and s.vendor == vendor and s.active
        ]

    def pfgs_of(self, association: Structure) -> list[Pfg]:
        return [pfg for pfg in self.ensure_built().pfgs if pfg.association is association]

    def counts(self) -> dict[str, object]:
        """Figures of the territory (for logs, docs and tests)."""
        self.ensure_built()
        kinds: dict[str, int] = {}
        for p in self.practitioners:
            kinds[p.kind] = kinds.get(p.kind, 0) + 1
        per_vendor: dict[str, int] = {}
        for p in self.practitioners:
            per_vendor[p.vendor] = per_vendor.get(p.vendor, 0) + 1
        structures: dict[str, int] = {}
        for s in self.structures:
            structures[s.kind] = structures.get(s.kind, 0) + 1
        return {
            "practitioners": kinds,
            "two_places": sum(1 for p in self.practitioners if len(p.places) > 1),
            "sas": sum(1 for p in self.practitioners if p.sas),
            "en_sus": sum(1 for p in self.practitioners if p.en_sus_phone),
            "cpts_members": sum(1 for p in self.practitioners if p.cpts),
            "structures": structures,
            "pfg": len(self.pfgs),
            "per_vendor": per_vendor,
        }

    # ---- slots

    def slots_for(self, schedule_id: str, lower: datetime, upper: datetime) -> Iterator[SimSlot]:
        """Free, unbooked slots of a schedule starting in ``[lower, upper]``,
        clipped to ``[now, now + 72 h]``, in start order."""
        now = self.now()
        lower = max(lower, now)
        upper = min(upper, now + HORIZON)
        if lower > upper:
            return
        day = lower.astimezone(PARIS).date()
        last = upper.astimezone(PARIS).date()
        booked = self._booked
        while day <= last:
            for slot in self.day_slots(schedule_id, day):
                if lower <= slot.start <= upper and slot.id not in booked:
                    yield slot
            day += timedelta(days=1)

    def day_slots(self, schedule_id: str, day: date) -> tuple[SimSlot, ...]:
        key = (schedule_id, day)
        cached = self._day_cache.get(key)
        if cached is not None:
            return cached
        owner = self.schedule_owner(schedule_id)
        if owner is None:
            return ()
        rng = random.Random(f"{self.seed}:{schedule_id}:{day.isoformat()}")
        slots = (
            _pfg_day(rng, owner, day)
            if isinstance(owner, Pfg)
            else _place_day(rng, owner, day, self.density)
        )
        with self._lock:
            if len(self._day_cache) > 200_000:
                self._day_cache.clear()
            self._day_cache[key] = slots
        return slots

    def find_slot(self, slot_id: str) -> SimSlot | None:
        """A slot by id (booked or not), if its schedule exists."""
        schedule_id, _, stamp = slot_id.rpartition("-")
        if len(stamp) != 12 or not stamp.isdigit():
            return None
        try:
            day = date(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8]))
        except ValueError:
            return None
        for slot in self.day_slots(schedule_id, day):
            if slot.id == slot_id:
                return slot
        return None

    # ---- bookings

    def book(self, slot_id: str, origin: str | None, vendor: str) -> dict[str, str] | None:
        """Book a free slot; ``None`` if it was already booked."""
        slot = self.find_slot(slot_id)
        if slot is None:
            raise KeyError(slot_id)
        with self._lock:
            if slot_id in self._booked:
                return None
            owner = self.schedule_owner(slot.schedule_id)
            who = (
                owner.practitioner.national_id
                if isinstance(owner, Place)
                else owner.association.national_id
                if isinstance(owner, Pfg)
                else ""
            )
            # who and where, as the SAS platform's appointment message names them
            name, structure = "", ""
            if isinstance(owner, Place):
                name = f"{owner.practitioner.given} {owner.practitioner.family}"
                structure = owner.structure.name if owner.structure is not None else ""
            elif isinstance(owner, Pfg):
                structure = owner.association.name
            record = {
                "slot": slot_id,
                "vendor": vendor,
                "origin": origin or "",
                "practitioner": who,
                "schedule": slot.schedule_id,
                "start": slot.start.isoformat(timespec="milliseconds"),
                "end": slot.end.isoformat(timespec="milliseconds"),
                "booked_at": self.now().isoformat(timespec="milliseconds"),
                "practitioner_name": name,
                "structure": structure,
            }
            self._booked[slot_id] = record
            return record

    def is_booked(self, slot_id: str) -> bool:
        return slot_id in self._booked

    @property
    def bookings(self) -> list[dict[str, str]]:
        with self._lock:
            return [dict(r) for r in self._booked.values()]

    # ---- changes (seen by the directory feed)

    def on_change(self, listener: Callable[[Iterable[str], Iterable[str]], None]) -> None:
        """``listener(changed_keys, deleted_keys)`` with ``"Type/id"`` keys."""
        self._listeners.append(listener)

    def _changed(self, changed: Iterable[str] = (), deleted: Iterable[str] = ()) -> None:
        changed, deleted = list(changed), list(deleted)
        for listener in list(self._listeners):
            listener(changed, deleted)

    def _get(self, national_id: str) -> Practitioner:
        p = self.practitioner(national_id)
        if p is None:
            raise KeyError(national_id)
        return p

    def rename(self, national_id: str, family: str, given: str | None = None) -> None:
        with self._lock:
            p = self._get(national_id)
            p.family = family
            if given is not None:
                p.given = given
        self._changed([f"Practitioner/{p.id}"])

    def set_en_sus(self, national_id: str, phone: str | None) -> None:
        with self._lock:
            p = self._get(national_id)
            p.en_sus_phone = phone
        self._changed([f"PractitionerRole/{place.id}" for place in p.places])

    def deactivate_place(self, role_id: str) -> None:
        with self._lock:
            for p in self.practitioners:
                for place in p.places:
                    if place.id == role_id:
                        place.active = False
                        break
                else:
                    continue
                break
            else:
                raise KeyError(role_id)
        self._changed([f"PractitionerRole/{role_id}"])

    def remove_practitioner(self, national_id: str) -> None:
        """The practitioner leaves the vendor: DELETE entries in the directory,
        unknown to the vendor's slot search from now on."""
        with self._lock:
            p = self._get(national_id)
            p.active = False
        self._changed(
            (), [f"Practitioner/{p.id}", *(f"PractitionerRole/{place.id}" for place in p.places)]
        )


# --------------------------------------------------------------------------- agendas


def _weekly_sessions(rng: random.Random, kind: str) -> dict[int, tuple[tuple[int, int], ...]]:
    """Office hours: weekday → sessions in minutes after midnight."""
    morning_start = rng.choice((8 * 60, 8 * 60 + 30, 9 * 60))
    morning = (morning_start, 12 * 60 + rng.choice((0, 30)))
    afternoon = (14 * 60 + rng.choice((0, 0, 30)), rng.choice((18 * 60, 18 * 60 + 30, 19 * 60)))
    days = list(range(5))
    if rng.random() < 0.6:
        days.remove(rng.choice(days))  # a day off
    sessions: dict[int, tuple[tuple[int, int], ...]] = {}
    for d in days:
        half_day = rng.random() < 0.15
        sessions[d] = (morning,) if half_day else (morning, afternoon)
    if rng.random() < (0.45 if kind == "gp" else 0.25):
        sessions[5] = ((morning_start, 12 * 60),)  # Saturday morning
    return sessions


def _stamp(dt: datetime) -> str:
    return dt.strftime("%Y%m%d%H%M")


def _place_day(
    rng: random.Random, place: Place, day: date, density: float = 1.0
) -> tuple[SimSlot, ...]:
    p = place.practitioner
    sessions = place.sessions.get(day.weekday())
    if not sessions or not place.active:
        return ()
    kind = p.kind
    minutes = p.slot_minutes
    reasons_pool = _REASONS[kind]
    walkin_morning = kind == "gp" and rng.random() < 0.1
    out: list[SimSlot] = []
    free_rate = place.free_rate * density
    for n_session, (first, last) in enumerate(sessions):
        m = first
        while m + minutes <= last:
            if rng.random() < free_rate:
                start = datetime.combine(day, time(m // 60, m % 60), tzinfo=PARIS)
                end = start + timedelta(minutes=minutes)
                if p.sas:
                    types: tuple[str, ...] = rng.choice(
                        (
                            ("SNP",),
                            ("PUBLIC", "SNP"),
                            ("PRO", "SNP"),
                            ("PUBLIC",),
                            ("PUBLIC", "PRO", "SNP"),
                        )
                    )
                else:
                    types = rng.choice((("PUBLIC",), ("PUBLIC", "PRO"), ("PRO",)))
                cpts: tuple[Structure, ...] = ()
                if p.cpts_only:
                    types = ("CPTS",)
                    cpts = tuple(p.cpts) if rng.random() < 0.5 else (rng.choice(p.cpts),)
                elif p.cpts and rng.random() < 0.3:
                    types = ("CPTS",) if rng.random() < 0.15 else (*types, "CPTS")
                    if len(p.cpts) > 1 and rng.random() < 0.5:
                        cpts = (rng.choice(p.cpts),)
                    else:
                        cpts = tuple(p.cpts)
                modes = _modes(rng, kind, n_session)
                if walkin_morning and n_session == 0:
                    appointment = "WALKIN"
                else:
                    appointment = "WALKIN" if rng.random() < 0.04 else "ROUTINE"
                n_reasons = rng.choice((0, 1, 1, 2))
                reasons = tuple(rng.sample(reasons_pool, n_reasons))
                out.append(
                    SimSlot(
                        f"{place.schedule_id}-{_stamp(start)}", place.schedule_id, start, end,
                        types, modes, appointment, reasons, cpts,
                    )
                )  # fmt: skip
            m += minutes
    return tuple(out)


_AMB = ConsultationMode.AMB.value
_HH = ConsultationMode.HH.value
_VR = ConsultationMode.VR.value


def _modes(rng: random.Random, kind: str, n_session: int) -> tuple[str, ...]:
    r = rng.random()
    if kind == "dentist":
        return (_AMB,)
    if kind == "gp" and n_session > 0 and r < 0.1:
        return (_HH,)
    if r < 0.18:
        return (_AMB, _VR)
    if r < 0.25:
        return (_VR,)
    return (_AMB,)


def _pfg_day(rng: random.Random, pfg: Pfg, day: date) -> tuple[SimSlot, ...]:
    if _DAYS[day.weekday()] not in pfg.days or not pfg.association.active:
        return ()
    out: list[SimSlot] = []
    minutes = 20
    m = pfg.opening.hour * 60 + pfg.opening.minute
    last = pfg.closing.hour * 60 + pfg.closing.minute
    while m + minutes <= last:
        if rng.random() < pfg.free_rate:
            start = datetime.combine(day, time(m // 60, m % 60), tzinfo=PARIS)
            types = rng.choice((("PUBLIC", "SNP"), ("SNP",), ("PUBLIC",)))
            modes = (_AMB, _VR) if rng.random() < 0.15 else (_AMB,)
            appointment = "WALKIN" if rng.random() < 0.1 else "ROUTINE"
            reasons = tuple(rng.sample(_REASONS["sos"], rng.choice((0, 1))))
            out.append(
                SimSlot(
                    f"{pfg.schedule_id}-{_stamp(start)}", pfg.schedule_id, start,
                    start + timedelta(minutes=minutes), types, modes, appointment, reasons,
                )
            )  # fmt: skip
        m += minutes
    return tuple(out)
