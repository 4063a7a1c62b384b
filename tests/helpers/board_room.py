"""A room in the middle of a busy afternoon, played through a real queue
backend relative to ``now``: what the board tests and the board's
screenshots look at.

Items left in the queues (``now`` = T):

- ``P1LATE``  AMU P1, waiting since T-10 min (limit 5 min): urgent and late;
- ``AMUOK``   AMU P2, waiting since T-2 min;
- ``HELD``    SNP P2, claimed by POSTE-MRL-1 (dr.leroy) at T-4 min;
- ``CALLBACK`` handed back to the ARM at T-25 min (P2, limit 20 min): call-back due;
- ``LOST``    AMU P2, its claim by POSTE-MRU-9 expired: lost lease;
- ``BOOKING`` OSNP, waiting since T-40 h: the 48 h are near;
- ``DENTW``   DENT P3, waiting since T-8 min.

And in the last hour: dossiers decided and closed by dr.leroy and
dr.durand (the flow chart, today's SNP outcomes: advice, booked, emergency).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

from sas_desk.models.dossier import Actor, Branch, Dossier, Status
from sas_desk.models.queue import Operation
from sas_desk.services.queues.api import QueueBackend

OWNER = "fr.health.samu690"
ARM = Actor("ARM", "arm.martin", "POSTE-ARM-1")
MRL = Actor("MRL", "dr.leroy", "POSTE-MRL-1")
MRU = Actor("MRU", "dr.durand", "POSTE-MRU-1")
MRU9 = Actor("MRU", "dr.petit", "POSTE-MRU-9")
OSNP = Actor("OSNP", "osnp.moreau", "POSTE-OSNP-1")
PATIENT = "Quincampoix"

NAMES = {
    "P1LATE": 1,
    "AMUOK": 2,
    "HELD": 3,
    "CALLBACK": 4,
    "LOST": 5,
    "BOOKING": 6,
    "DENTW": 7,
    "DONE1": 8,
    "DONE2": 9,
    "DONE3": 10,
    "DONE4": 11,
}


def case_id(name: str) -> str:
    return f"{OWNER}.DRFR1569A26341{NAMES[name]:05d}"


def dossier(name: str, branch: Branch, priority: str, at: datetime, motive: str) -> Dossier:
    local = case_id(name).rsplit(".", 1)[-1]
    d = Dossier(case_id=case_id(name), sender_case_id=local, created_at=at, owner=OWNER)
    d.caller.callback = "+33612345678"
    d.patient.last_name = PATIENT
    d.patient.age, d.patient.sex = "P54Y", "M"
    d.location.city, d.location.insee = "Villeurbanne", "69266"
    d.location.address = "3 rue Anatole France, Villeurbanne"
    d.motive_code, d.motive_label = motive
    d.priority, d.branch = priority, branch
    d.perimeter, d.attribution = branch.perimeter, branch.attribution
    d.status, d.transmitted_at = Status.TRANSMITTED, at
    return d


class Room:
    def __init__(self, backend: QueueBackend, now: datetime) -> None:
        self.backend = backend
        self.now = now

    def t(self, minutes: float) -> datetime:
        return self.now - timedelta(minutes=minutes)

    async def op(self, kind: str, name: str, actor: Actor, at: datetime, **data: Any) -> None:
        await self.backend.apply(
            Operation(
                uuid4().hex,
                kind,
                case_id(name),
                at,
                actor.role,
                actor.operator,
                actor.workstation,
                data,
            )
        )

    async def enqueue(
        self,
        name: str,
        branch: Branch,
        priority: str,
        ago: float,
        motive: tuple[str, str] = ("M03.14", "Fièvre, problème infectieux"),
    ) -> None:
        d = dossier(name, branch, priority, self.t(ago + 1), motive)
        await self.op("enqueue", name, ARM, self.t(ago), dossier=d.to_dict())

    async def play(self) -> None:
        A, S, D = Branch.AMU, Branch.SNP, Branch.DENT
        await self.enqueue("P1LATE", A, "P1", 10, ("M01.03", "Détresse respiratoire"))
        await self.enqueue("AMUOK", A, "P2", 2, ("M02.05", "Traumatisme"))
        await self.enqueue("HELD", S, "P2", 6)
        await self.op("claim", "HELD", MRL, self.t(4), lease_s=900)
        await self.enqueue("CALLBACK", S, "P2", 30)
        await self.op("claim", "CALLBACK", MRL, self.t(29), lease_s=900)
        await self.op("hand_back", "CALLBACK", MRL, self.t(25), reason="rappeler")
        await self.enqueue("LOST", A, "P2", 9, ("M03.01", "Douleur thoracique"))
        await self.op("claim", "LOST", MRU9, self.t(8), lease_s=60)
        await self.backend.expire(self.t(5))
        await self.enqueue("BOOKING", S, "P2", 40 * 60)
        await self.op("claim", "BOOKING", MRL, self.t(40 * 60 - 2), lease_s=900)
        await self.op("request_booking", "BOOKING", MRL, self.t(40 * 60 - 3), note="")
        await self.enqueue("DENTW", D, "P3", 8, ("M03.30", "Douleur dentaire"))
        # the last hour's work
        for i, (name, decision, actor) in enumerate(
            (
                ("DONE1", {"decision_type": "CONSEIL"}, MRL),
                ("DONE2", {"decision_type": "ORIENT", "orientation_type": "URGENCES"}, MRL),
                ("DONE3", {"decision_type": "PMT"}, MRL),
                ("DONE4", {"decision_type": "INTER", "resource_type": "SMUR.ADULT"}, MRU),
            )
        ):
            branch = A if actor is MRU else S
            await self.enqueue(name, branch, "P2", 55 - 10 * i)
            await self.op("claim", name, actor, self.t(52 - 10 * i), lease_s=900)
            await self.op(
                "decide", name, actor, self.t(50 - 10 * i), care_level="R4", decisions=[decision]
            )
            await self.op("close", name, actor, self.t(49 - 10 * i), reason="")
