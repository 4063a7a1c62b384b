"""Every indicator of docs/statistics.md on the hand-built day (figures
worked out in ``day.py``), on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest

from sas_desk.models.queue import WaitLimits
from sas_desk.models.stats import Granularity, build_report, parse_period
from tests.integration.stats.day import EXPECTED

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def report(played, first: str, last: str, by: Granularity):  # type: ignore[no-untyped-def]
    period = parse_period(first, last, by)
    raw = await played.source.raw(period, by, WaitLimits())
    return build_report(raw, period, by)


async def test_the_day_by_day_gives_the_worked_out_figures(played) -> None:  # type: ignore[no-untyped-def]
    rep = await report(played, "2026-03-13", "2026-03-15", Granularity.DAY)
    assert [r["periode"] for r in rep.rows] == ["2026-03-13", "2026-03-14", "2026-03-15"]
    row = rep.rows[1]
    got = {k: row[k] for k in EXPECTED}
    assert got == EXPECTED
    # the day before and the day after: one dossier each, nothing of the 14th
    assert rep.rows[0]["dossiers"] == 1 and rep.rows[2]["dossiers"] == 1
    assert rep.rows[0]["filiere_amu"] == 1 and rep.rows[0]["delai_transmission_prise_n"] == 1


async def test_hours_split_the_day_and_add_up(played) -> None:  # type: ignore[no-untyped-def]
    rep = await report(played, "2026-03-14", "2026-03-14", Granularity.HOUR)
    assert len(rep.rows) == 24
    by_hour = {r["periode"]: r["dossiers"] for r in rep.rows if r["dossiers"]}
    assert by_hour == {
        f"2026-03-14 {h:02d}:00": 1 for h in (10, 11, 14, 15, 16, 17, 18, 19, 20, 21, 22)
    }
    assert sum(int(r["arm_transmis"] or 0) for r in rep.rows) == 12  # 23:00: the re-sent 4
    assert rep.rows[23]["arm_transmis"] == 1 and rep.rows[23]["dossiers"] == 0


async def test_month_rolls_the_days_up(played) -> None:  # type: ignore[no-untyped-def]
    rep = await report(played, "2026-03-01", "2026-03-31", Granularity.MONTH)
    assert [r["periode"] for r in rep.rows] == ["2026-03"]
    assert rep.rows[0]["dossiers"] == 13  # the 13th's, the 14th's 11 and the 15th's
    assert rep.rows[0]["filiere_snp"] == 5


async def test_load_per_person_stays_in_the_report_for_the_screen(played) -> None:  # type: ignore[no-untyped-def]
    rep = await report(played, "2026-03-14", "2026-03-14", Granularity.DAY)
    decided = {op: n for _, role, op, what, n in rep.load if what == "decides"}
    assert decided == {"dr.durand": 3, "dr.leroy": 3}
    claims = {op: n for _, role, op, what, n in rep.load if what == "pris"}
    assert claims["dr.durand"] == 5  # 0 (claimed on the 14th), 1, 2, 3, 7


async def test_an_empty_period_has_rows_of_zeros(played) -> None:  # type: ignore[no-untyped-def]
    rep = await report(played, "2026-01-01", "2026-01-03", Granularity.DAY)
    assert [r["dossiers"] for r in rep.rows] == [0, 0, 0]
    assert rep.rows[0]["delai_transmission_prise_p50_s"] is None
