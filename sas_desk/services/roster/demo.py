"""A synthetic dental on-call roster for the demo territory.

Per département, the demo communes are split into three sectors (north,
centre, south by latitude); each Sunday and public holiday of the next 12
months has two periods per sector (09:00–12:00 and 14:00–18:00), both held
by the same dentist.  Dentists are fictitious; their numbers come from the
range ARCEP keeps for fiction (04 65 71 xx xx).  Deterministic: the dentist
of a given day and sector does not depend on when the demo was generated.
"""

from __future__ import annotations

import random
from datetime import date, timedelta

from sas_desk.models.roster import RosterEntry, Sector, on_call_days
from sas_desk.services.geo.territory import DEPARTEMENT_NAMES, CommuneIndex
from sas_desk.services.roster.formats import ParsedRoster, local_time

__all__ = ["DEMO_PERIODS", "demo_roster", "demo_sectors"]

DEMO_PERIODS = ((9, 12), (14, 18))
DENTISTS_PER_SECTOR = 8
_FAMILIES = (
    "Arnaud", "Berthier", "Carrel", "Delorme", "Escoffier", "Faure", "Giraud", "Hugon",
    "Imbert", "Jourdan", "Lacroix", "Marchand", "Névière", "Ollier", "Perrin", "Quintin",
    "Roux", "Sauvage", "Tardy", "Vallet", "Brémond", "Chabert", "Dufour", "Épinat",
)  # fmt: skip
_GIVENS = (
    "Anne", "Bruno", "Camille", "Denis", "Élodie", "Fabien", "Gaëlle", "Hervé",
    "Inès", "Julien", "Léa", "Marc", "Noémie", "Olivier", "Pauline", "Rémi",
)  # fmt: skip
_STREETS = (
    "rue des Tilleuls", "avenue de la Gare", "place de l'Église", "rue Pasteur",
    "boulevard Victor-Hugo", "rue du Marché", "chemin des Vignes", "rue de la République",
)  # fmt: skip
_PARTS = (("N", "Nord"), ("C", "Centre"), ("S", "Sud"))


def demo_sectors(communes: CommuneIndex) -> list[Sector]:
    sectors: list[Sector] = []
    for dep in sorted({c.departement for c in communes}):
        members = sorted(communes.by_departement(dep), key=lambda c: (-c.lat, c.insee))
        size = -(-len(members) // len(_PARTS))
        for n, (suffix, label) in enumerate(_PARTS):
            chunk = members[n * size : (n + 1) * size]
            if chunk:
                name = f"{DEPARTEMENT_NAMES.get(dep, dep)} {label}"
                sectors.append(Sector(f"{dep}-{suffix}", name, tuple(c.insee for c in chunk)))
    return sectors


def demo_roster(communes: CommuneIndex, today: date, months: int = 12) -> ParsedRoster:
    """The demo roster from *today* for *months* months (every Sunday and
    public holiday, two periods a day, one dentist per sector and day)."""
    sectors = demo_sectors(communes)
    rng = random.Random(20261206)
    phones = rng.sample(range(10000), DENTISTS_PER_SECTOR * len(sectors))
    pools: dict[str, list[tuple[str, str, str, str, str, str]]] = {}
    for s_index, sector in enumerate(sectors):
        pool = []
        for d in range(DENTISTS_PER_SECTOR):
            commune = communes.by_insee(sector.communes[rng.randrange(len(sector.communes))])
            assert commune is not None
            number = phones[s_index * DENTISTS_PER_SECTOR + d]
            pool.append(
                (
                    rng.choice(_FAMILIES),
                    rng.choice(_GIVENS),
                    f"{rng.randint(1, 80)} {rng.choice(_STREETS)}",
                    commune.postcode,
                    commune.name,
                    f"04 65 71 {number // 100:02d} {number % 100:02d}",
                )
            )
        pools[sector.code] = pool
    last = today + timedelta(days=round(months * 30.44))
    entries: list[RosterEntry] = []
    for day in on_call_days(today, last):
        for sector in sectors:
            pool = pools[sector.code]
            family, given, street, postcode, city, phone = pool[day.toordinal() % len(pool)]
            for start_h, end_h in DEMO_PERIODS:
                entries.append(
                    RosterEntry(
                        day=day,
                        start=local_time(day, start_h, 0),
                        end=local_time(day, end_h, 0),
                        sector_code=sector.code,
                        sector_name=sector.name,
                        communes=sector.communes,
                        family=family,
                        given=given,
                        address=street,
                        postcode=postcode,
                        city=city,
                        phone="+33" + phone.replace(" ", "")[1:],
                        notes="Cabinet de garde (démo)",
                        source="démo",
                    )
                )
    return ParsedRoster(entries=entries, sectors=sectors, kind="demo", encoding="-", source="démo")
