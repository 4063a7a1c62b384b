"""A hand-built day of the room (Saturday 14 March 2026, Paris, UTC+1),
played through a real queue backend, whose figures are worked out below.

=== ====== === ====== ======= ====== ======== ====== ======== ==========================
 n  branch  P  motive  age     INSEE  recv→tx  tx→cl  cl→dec   what happens
=== ====== === ====== ======= ====== ======== ====== ======== ==========================
 1  AMU    P0  M01.01  P67Y    69266    90 ✗    30 ✓   120 ✗   MRU: INTER SMUR, closed
 2  AMU    P1  M02.01  P30Y    69123   120 ✓   360 ✗   120 ✓   MRU: ORIENT URGENCES
 3  AMU    P2  M03.01  P5M     01053    30 ✓   600 ✓     —     claimed, no decision
 4  SNP    P2  M03.02  P45Y    69266    60 ✓   240 ✓   120 ✓   MRL: CONSEIL, closed; re-sent 23:00
 5  SNP    P2  M03.02  P80Y    69266   180 ✓   600 ✓   120 ✓   MRL: ORIENT CABINET → OSNP books, closes
 6  SNP    P3  M03.02  P19Y    69266    10 ✓  1800 ✓    60 ✓   MRL: ORIENT URGENCES
 7  SNP    P2  M03.02  —       —       120 ✓  2400 ✗   780 ✓   MRL → AMU; MRU decides PMT
 8  SNP    NR  —       P50Y    69266    60 —     —       —     waits
 9  DENT   P2  M03.03  P25Y    69266   120 ✓   120 ✓     —     DENT: orient "Conseil" then "Dentiste de garde", closed
10  DENT   P3  M03.03  P10Y    69266    60 ✓   600 ✓     —     DENT: orient "Médecin", → AMU
11  DENT   P2  M03.03  P67Y    69266    30 ✓     —       —     waits (a note "Orientation dentaire : Conseil")
=== ====== === ====== ======= ====== ======== ====== ======== ==========================

Plus dossier 0 (put in a queue on the 13th at 23:59, claimed on the 14th)
and dossier 12 (put in a queue on the 15th at 00:00): neither is the 14th's.

Worked-out figures of the 14th (``EXPECTED``):
- dossiers 11: AMU 3, SNP 5, DENT 3; P0 1, P1 1, P2 6, P3 2, NR 1;
  M01 1, M02 1, M03 8, M07 1 (no motive); ages 0–4: 1, 5–17: 1, 18–44: 3,
  45–64: 2, 65–74: 2, 75+: 1, unknown 1; départements 01: 1, 69: 9, unknown 1.
- decided 6 (1, 2, 4, 5, 6, 7), by a liberal GP 3 (4, 5, 6) → 50.0 %.
- reception → transmission: 10 30 30 60 60 60 90 120 120 120 180 → p50 (6th
  of 11) 60 s, p90 (10th) 120 s; within the limit 9 of 10 (NR not judged) → 90.0 %.
- transmission → claim: 30 120 240 360 600 600 600 1800 2400 → p50 (5th of
  9) 600 s, p90 (9th) 2400 s; within 7 of 9 → 77.8 %.
- claim → decision: 60 120 120 120 120 780 → p50 (3rd of 6) 120 s, p90 (6th)
  780 s; within 5 of 6 → 83.3 %.
- call → appointment (SNP, booked through the platform): 5 only, its last
  booking, 15/03 09:00 for a call at 16:00 → 61,200 s (17 h), within 48 h → 100.0 %.
- SNP outcomes: conseil 1 (4), RDV pris 1 (5), urgences 1 (6), transfert AMU
  1 (7), sans décision 1 (8) → RDV pris 20.0 %.
- dental: dentiste de garde 1 (9), médecin 1 (10), non renseignée 1 (11).
- by role: ARM put 12 dossiers in a queue (11 + the re-sent 4); MRU decided
  3 (1, 2, 7), MRL 3 (4, 5, 6), DENT 0; OSNP closed 1 (5).

Every dossier carries KNOWN_SECRETS (names, phone, address, birth date, notes)
that no export may contain.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sas_desk.models.dossier import Actor, Branch, Dossier, Status
from sas_desk.services.queues.api import QueueBackend
from tests.integration.queues.support import ARM, DENT, MRL, MRU, OSNP, OWNER, op

PARIS = timezone(timedelta(hours=1))
DAY = datetime(2026, 3, 14, tzinfo=PARIS)

PATIENT_FIRST, PATIENT_LAST = "Eulalie", "Quincampoix"
CALLER_NAME = "Barnabé Tournesol"
PHONE = "+33687654321"
STREET = "17 impasse des Capucines"
BIRTH = "1958-02-11"
NOTE = "Patiente Quincampoix très anxieuse, voisine Tournesol présente"
KNOWN_SECRETS = (
    PATIENT_FIRST,
    PATIENT_LAST,
    CALLER_NAME,
    "Tournesol",
    PHONE,
    "0687654321",
    "impasse des Capucines",
    BIRTH,
    "anxieuse",
    "DRFR1569A",  # every case id's local number starts so
    "dr.durand",  # operators: staff by role only
    "dr.leroy",
    "POSTE-0",  # workstations
)


def at(hh: int, mm: int, ss: int = 0, day: int = 14) -> datetime:
    return datetime(2026, 3, day, hh, mm, ss, tzinfo=PARIS)


def dossier(
    n: int,
    branch: Branch,
    priority: str,
    motive: str,
    age: str,
    insee: str,
    created: datetime,
) -> Dossier:
    local = f"DRFR1569A26073{n:05d}"
    d = Dossier(case_id=f"{OWNER}.{local}", sender_case_id=local, created_at=created, owner=OWNER)
    d.caller.callback = PHONE
    d.caller.name = CALLER_NAME
    d.patient.first_name, d.patient.last_name = PATIENT_FIRST, PATIENT_LAST
    d.patient.birth_date = BIRTH
    d.patient.age = age
    d.location.insee = insee
    d.location.city = "Villeurbanne"
    d.location.address = f"{STREET}, Villeurbanne"
    d.motive_code, d.motive_label = motive, ""
    d.priority = priority
    d.branch = branch
    d.perimeter = branch.perimeter
    d.attribution = branch.attribution
    d.status = Status.TRANSMITTED
    d.transmitted_at = created
    return d


class Day:
    """Plays the day through ``backend``."""

    def __init__(self, backend: QueueBackend) -> None:
        self.backend = backend
        self.dossiers: dict[int, Dossier] = {}

    async def do(self, kind: str, n: int, actor: Actor, when: datetime, **data: Any) -> None:
        if kind == "claim":
            data.setdefault("lease_s", 900)
        await self.backend.apply(op(kind, self.dossiers[n].case_id, actor, when, **data))

    async def enqueue(self, n: int, when: datetime, *args: Any) -> None:
        d = dossier(n, *args)
        self.dossiers[n] = d
        await self.backend.apply(op("enqueue", d.case_id, ARM, when, dossier=d.to_dict()))

    async def decide(self, n: int, actor: Actor, when: datetime, **decision: Any) -> None:
        await self.do("decide", n, actor, when, care_level="R3", decisions=[decision], note=NOTE)

    async def play(self) -> None:
        A, S, D = Branch.AMU, Branch.SNP, Branch.DENT
        # the day before, and the day after
        await self.enqueue(
            0, at(23, 59, day=13), A, "P2", "M03.01", "P40Y", "69266", at(23, 58, day=13)
        )
        await self.do("claim", 0, MRU, at(0, 5))
        await self.enqueue(12, at(0, 0, day=15), A, "P2", "M03.01", "P40Y", "69266", at(23, 59, 30))
        # 1 AMU P0
        await self.enqueue(1, at(10, 1), A, "P0", "M01.01", "P67Y", "69266", at(9, 59, 30))
        await self.do("claim", 1, MRU, at(10, 1, 30))
        await self.decide(1, MRU, at(10, 3, 30), decision_type="INTER", resource_type="SMUR.ADULT")
        await self.do("close", 1, MRU, at(10, 15), reason="")
        # 2 AMU P1
        await self.enqueue(2, at(11, 2), A, "P1", "M02.01", "P30Y", "69123", at(11, 0))
        await self.do("claim", 2, MRU, at(11, 8))
        await self.decide(2, MRU, at(11, 10), decision_type="ORIENT", orientation_type="URGENCES")
        # 3 AMU P2, claimed only
        await self.enqueue(3, at(14, 0, 30), A, "P2", "M03.01", "P5M", "01053", at(14, 0))
        await self.do("claim", 3, MRU, at(14, 10, 30))
        # 4 SNP advice, closed, sent again at 23:00
        await self.enqueue(4, at(15, 1), S, "P2", "M03.02", "P45Y", "69266", at(15, 0))
        await self.do("claim", 4, MRL, at(15, 5))
        await self.decide(4, MRL, at(15, 7), decision_type="CONSEIL")
        await self.do("close", 4, MRL, at(15, 10), reason="")
        await self.backend.apply(
            op(
                "enqueue",
                self.dossiers[4].case_id,
                ARM,
                at(23, 0),
                dossier=self.dossiers[4].to_dict(),
            )
        )
        # 5 SNP booked through OSNP
        await self.enqueue(5, at(16, 3), S, "P2", "M03.02", "P80Y", "69266", at(16, 0))
        await self.do("claim", 5, MRL, at(16, 13))
        await self.decide(5, MRL, at(16, 15), decision_type="ORIENT", orientation_type="CABINET")
        await self.do("request_booking", 5, MRL, at(16, 16), note="")
        await self.do("claim", 5, OSNP, at(16, 20))
        # booked twice: the last booking is the appointment (15/03 09:00, 17 h after the call)
        for minute, start in ((25, "2026-03-20T09:00:00+01:00"), (28, "2026-03-15T09:00:00+01:00")):
            await self.do(
                "orient",
                5,
                OSNP,
                at(16, minute),
                orientation="booking",
                text=f"RDV — {NOTE}",
                details={"slot_id": f"s{minute}", "start": start},
            )
        await self.do("note", 5, OSNP, at(16, 29), text=f"Orientation : RDV 15/03 09:00 — {NOTE}")
        await self.do("close", 5, OSNP, at(16, 30), reason="Orientation : RDV 15/03 09:00")
        # 6 SNP to the emergency department
        await self.enqueue(6, at(17, 0, 10), S, "P3", "M03.02", "P19Y", "69266", at(17, 0))
        await self.do("claim", 6, MRL, at(17, 30, 10))
        await self.decide(
            6, MRL, at(17, 31, 10), decision_type="ORIENT", orientation_type="URGENCES"
        )
        # 7 SNP transferred to AMU, decided there
        await self.enqueue(7, at(18, 2), S, "P2", "M03.02", "", "", at(18, 0))
        await self.do("claim", 7, MRL, at(18, 42))
        await self.do("transfer", 7, MRL, at(18, 45), to="AMU", reason=NOTE)
        await self.do("claim", 7, MRU, at(18, 50))
        await self.decide(7, MRU, at(18, 55), decision_type="PMT")
        # 8 SNP NR, waits
        await self.enqueue(8, at(19, 1), S, "NR", "", "P50Y", "69266", at(19, 0))
        # 9 dental: on-call dentist
        await self.enqueue(9, at(20, 2), D, "P2", "M03.03", "P25Y", "69266", at(20, 0))
        await self.do("claim", 9, DENT, at(20, 4))
        # two orientations: the last one counts; the first sends its code, the
        # second only its summary (as the dental view did before sending codes)
        await self.do(
            "orient",
            9,
            DENT,
            at(20, 5),
            orientation="dental",
            text=f"Conseil ; {NOTE}",
            details={"code": "CONSEIL"},
        )
        await self.do(
            "orient",
            9,
            DENT,
            at(20, 6),
            orientation="dental",
            text=f"Orientation dentaire : Dentiste de garde — Dr Mouton (secteur 3) ; {NOTE}",
            details={},
        )
        await self.do("close", 9, DENT, at(20, 8), reason="")
        # 10 dental: back to a physician
        await self.enqueue(10, at(21, 1), D, "P3", "M03.03", "P10Y", "69266", at(21, 0))
        await self.do("claim", 10, DENT, at(21, 11))
        await self.do(
            "orient",
            10,
            DENT,
            at(21, 11, 30),
            orientation="dental",
            text="Orientation dentaire : Médecin (AMU)",
            details={"code": "MEDECIN"},
        )
        await self.do("transfer", 10, DENT, at(21, 12), to="AMU", reason="retour médecin")
        # 11 dental, waits
        await self.enqueue(11, at(22, 0, 30), D, "P2", "M03.03", "P67Y", "69266", at(22, 0))
        # a note is not an orientation, whatever it starts with
        await self.do("note", 11, DENT, at(22, 1), text="Orientation dentaire : Conseil")


EXPECTED: dict[str, Any] = {
    "periode": "2026-03-14",
    "dossiers": 11,
    "filiere_amu": 3,
    "filiere_snp": 5,
    "filiere_dent": 3,
    "priorite_p0": 1,
    "priorite_p1": 1,
    "priorite_p2": 6,
    "priorite_p3": 2,
    "priorite_nr": 1,
    "motif_m01": 1,
    "motif_m02": 1,
    "motif_m03": 8,
    "motif_m07": 1,
    "age_0_4": 1,
    "age_5_17": 1,
    "age_18_44": 3,
    "age_45_64": 2,
    "age_65_74": 2,
    "age_75_plus": 1,
    "age_inconnu": 1,
    "dep_01": 1,
    "dep_69": 9,
    "dep_inconnu": 1,
    "decides": 6,
    "non_decides": 5,
    "decides_mg_liberal": 3,
    "decides_autres": 3,
    "part_mg_liberal_pct": 50.0,
    "delai_reception_transmission_n": 11,
    "delai_reception_transmission_p50_s": 60,
    "delai_reception_transmission_p90_s": 120,
    "delai_reception_transmission_dans_limite_pct": 90.0,
    "delai_transmission_prise_n": 9,
    "delai_transmission_prise_p50_s": 600,
    "delai_transmission_prise_p90_s": 2400,
    "delai_transmission_prise_dans_limite_pct": 77.8,
    "delai_prise_decision_n": 6,
    "delai_prise_decision_p50_s": 120,
    "delai_prise_decision_p90_s": 780,
    "delai_prise_decision_dans_limite_pct": 83.3,
    "delai_appel_rdv_n": 1,
    "delai_appel_rdv_p50_s": 61200,
    "delai_appel_rdv_p90_s": 61200,
    "delai_appel_rdv_dans_limite_pct": 100.0,
    "snp_conseil": 1,
    "snp_rdv_pris": 1,
    "snp_urgences": 1,
    "snp_transfert_amu": 1,
    "snp_sans_decision": 1,
    "snp_smur": 0,
    "snp_rdv_demande": 0,
    "snp_autre": 0,
    "snp_part_rdv_pris_pct": 20.0,
    "dent_dentiste_garde": 1,
    "dent_medecin": 1,
    "dent_non_renseigne": 1,
    "dent_conseil": 0,
    "dent_dentiste_jour": 0,
    "arm_transmis": 12,
    "mru_decides": 3,
    "mrl_decides": 3,
    "dent_decides": 0,
    "osnp_clotures": 1,
}
