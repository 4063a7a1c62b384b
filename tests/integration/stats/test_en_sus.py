"""The "en sus" outcome (issue 17: the SNP outcome mix's surnuméraire): an SNP
dossier closed from the OSNP queue after an appointment agreed on the phone
with a volunteer counts as « RDV en sus », not as a platform booking; both
count in the call → appointment delay.  On SQLite (sealed, the clear facts)
and PostgreSQL, on a day of their own (the 16th) after the hand-built day."""

from __future__ import annotations

import pytest

from sas_desk.models.dossier import Branch
from sas_desk.models.queue import WaitLimits
from sas_desk.models.stats import Granularity, SnpOutcome, build_report, parse_period
from tests.integration.queues.support import MRL, OSNP
from tests.integration.stats.day import at

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def _book(played, n: int, hh: int, details: dict[str, object]) -> None:  # type: ignore[no-untyped-def]
    day = played.day
    when = lambda mm: at(hh, mm, day=16)  # noqa: E731
    await day.enqueue(n, when(1), Branch.SNP, "P2", "M03.02", "P45Y", "69266", when(0))
    await day.do("claim", n, MRL, when(2))
    await day.decide(n, MRL, when(3), decision_type="ORIENT", orientation_type="CABINET")
    await day.do("request_booking", n, MRL, when(4), note="")
    await day.do("claim", n, OSNP, when(5))
    await day.do("orient", n, OSNP, when(6), orientation="booking", text="RDV", details=details)
    await day.do("close", n, OSNP, when(7), reason="Orientation : RDV")


async def test_an_en_sus_appointment_is_its_own_outcome(played) -> None:  # type: ignore[no-untyped-def]
    await _book(played, 20, 10, {"slot_id": "s1", "start": "2026-03-16T15:00:00+01:00"})
    await _book(
        played,
        21,
        11,
        {"en_sus": True, "start": "2026-03-16T18:30:00+01:00", "practitioner": "Dr Sus"},
    )
    period = parse_period("2026-03-16", "2026-03-16", Granularity.DAY)
    raw = await played.source.raw(period, Granularity.DAY, WaitLimits())
    (row,) = build_report(raw, period, Granularity.DAY).rows
    assert row["filiere_snp"] == 2
    assert row["snp_rdv_pris"] == 1 and row["snp_rdv_en_sus"] == 1
    assert row["snp_part_rdv_pris_pct"] == 50.0  # through the platform only
    assert row["delai_appel_rdv_n"] == 2  # both appointments have a time
    assert SnpOutcome.RDV_EN_SUS.label == "RDV en sus (surnuméraire)"
