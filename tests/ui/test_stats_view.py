"""The statistics screen over the hand-built day (SQLite): the table shows
the worked-out figures, the chart the volumes, the export the privacy rules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from PySide6.QtCore import QDate, Qt
from pytestqt.qtbot import QtBot

from sas_desk.models.queue import WaitLimits
from sas_desk.models.stats import SUPPRESSED
from sas_desk.services.queues.sqlite import SqliteBackend
from sas_desk.services.stats.sqlite import SqliteStatsSource
from sas_desk.ui.stats_view import StatsView
from tests.integration.queues.support import FakeClock
from tests.integration.stats.day import EXPECTED, KNOWN_SECRETS, Day

pytestmark = [pytest.mark.gui, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(loop_scope="session")
async def source(tmp_path: Path) -> AsyncIterator[SqliteStatsSource]:
    path = tmp_path / "queues.sqlite"
    backend = SqliteBackend(path, now=FakeClock())
    await backend.open()
    await Day(backend).play()
    await backend.close()
    src = SqliteStatsSource(path)
    yield src
    await src.close()


async def computed(qtbot: QtBot, source: SqliteStatsSource, first: QDate, last: QDate) -> StatsView:
    """The screen with the report of ``first`` to ``last`` computed."""
    view = StatsView(source, WaitLimits(), lambda: FakeClock()())
    qtbot.addWidget(view)
    view.first.setDate(first)
    view.last.setDate(last)
    task = view.run()
    assert task is not None
    await task
    return view


async def test_the_screen_shows_the_day_and_exports_it_safely(
    qtbot: QtBot, source: SqliteStatsSource, tmp_path: Path
) -> None:
    view = StatsView(source, WaitLimits(), lambda: FakeClock()())
    qtbot.addWidget(view)
    view.resize(1366, 768)
    view.show()
    view.first.setDate(QDate(2026, 3, 13))
    view.last.setDate(QDate(2026, 3, 15))
    task = view.run()
    assert task is not None
    await task
    model = view.model
    assert model.rowCount() == 3
    columns = view.report.columns if view.report else []
    row = {columns[c]: model.index(1, c).data() for c in range(model.columnCount())}
    assert row["periode"] == "2026-03-14"
    assert row["dossiers"] == "11" and row["delai_transmission_prise_p90_s"] == "2400"
    assert row["snp_rdv_pris"] == str(EXPECTED["snp_rdv_pris"])
    assert "13 dossier(s)" in view.message.text()
    # the chart: the volumes per branch, stacked per day
    (series,) = view.chart.series()
    sets = {s.label(): [s.at(i) for i in range(s.count())] for s in series.barSets()}
    assert sets == {"AMU": [1.0, 3.0, 1.0], "SNP": [0.0, 5.0, 0.0], "Dentaire": [0.0, 3.0, 0.0]}
    # the export carries the privacy rules, never a name
    out = tmp_path / "export.csv"
    assert view.export(out)
    text = out.read_text(encoding="utf-8")
    assert SUPPRESSED in text and "2026-03-14;11;" in text
    assert [s for s in KNOWN_SECRETS if s.lower() in text.lower()] == []
    view.stop()


async def test_a_theme_shows_its_indicators_and_its_chart(
    qtbot: QtBot, source: SqliteStatsSource
) -> None:
    """Afficher: the SNP outcomes (their columns, their counts stacked per
    day), the delays (their p90 side by side), back to every indicator —
    the report is not read again."""
    from PySide6.QtCharts import QBarSeries, QStackedBarSeries

    view = await computed(qtbot, source, QDate(2026, 3, 13), QDate(2026, 3, 15))
    every = view.model.columnCount()
    report = view.report
    view.theme.setCurrentIndex(view.theme.findData("snp"))
    assert view.report is report  # the same report, other columns
    shown = [
        view.model.headerData(c, Qt.Orientation.Horizontal, 0)
        for c in range(view.model.columnCount())
    ]
    assert shown[0] == "periode" and "snp_rdv_pris" in shown and "filiere_snp" in shown
    assert not [
        c
        for c in shown[1:]
        if not (c.startswith("snp_") or c in ("filiere_snp", "delai_appel_rdv_n"))
    ]
    assert view.model.columnCount() < every
    row = {shown[c]: view.model.index(1, c).data() for c in range(len(shown))}
    assert row["snp_rdv_pris"] == str(EXPECTED["snp_rdv_pris"])
    (series,) = view.chart.series()
    assert isinstance(series, QStackedBarSeries)
    sets = {s.label(): s.at(1) for s in series.barSets()}
    assert sets["RDV pris (plateforme)"] == EXPECTED["snp_rdv_pris"]
    assert sum(sets.values()) == 5.0  # the day's SNP dossiers, one outcome each
    view.theme.setCurrentIndex(view.theme.findData("delais"))
    (series,) = view.chart.series()
    assert isinstance(series, QBarSeries) and not isinstance(series, QStackedBarSeries)
    labels = [s.label() for s in series.barSets()]
    assert labels and all(label.startswith("p90 ") for label in labels)
    p90 = {s.label(): s.at(1) for s in series.barSets()}
    assert p90["p90 transmission → prise en charge (s)"] == 2400.0
    view.theme.setCurrentIndex(view.theme.findData("tout"))
    assert view.model.columnCount() == every
    view.stop()


async def test_a_bad_period_is_told_in_french(qtbot: QtBot, source: SqliteStatsSource) -> None:
    view = StatsView(source, WaitLimits(), lambda: FakeClock()())
    qtbot.addWidget(view)
    view.first.setDate(QDate(2026, 3, 15))
    view.last.setDate(QDate(2026, 3, 14))
    task = view.run()
    assert task is not None
    await task
    assert "précède le début" in view.message.text()
    assert view.report is None
    view.stop()


async def test_the_pdf_report_carries_counts_only(
    qtbot: QtBot, source: SqliteStatsSource, tmp_path: Path
) -> None:
    """The PDF (Qt's writer) of the period shown: its text (read back with
    QtPdf) has the report's figures, small cells as « <11 », no known name."""
    from PySide6.QtPdf import QPdfDocument

    view = await computed(qtbot, source, QDate(2026, 3, 1), QDate(2026, 3, 31))
    path = tmp_path / "rapport.pdf"
    task = view.export_pdf(path)
    assert task is not None
    await task
    assert "Rapport PDF écrit" in view.message.text(), view.message.text()
    doc = QPdfDocument()
    doc.load(str(path))
    assert doc.status() == QPdfDocument.Status.Ready and doc.pageCount() >= 1
    text = " ".join(doc.getAllText(p).text() for p in range(doc.pageCount()))
    assert "rapport d'activité" in text and "du 01/03/2026 au 31/03/2026" in text
    assert "Dossiers 13" in " ".join(text.split())  # March: 13 dossiers (a count ≥ 11)
    assert SUPPRESSED in text  # the 14th's AMU dossiers and the like
    for secret in KNOWN_SECRETS:
        assert secret not in text


async def test_the_telephony_s_calls_add_their_columns(
    qtbot: QtBot, source: SqliteStatsSource, tmp_path: Path
) -> None:
    from tests.unit.test_telephony import DAY

    view = StatsView(source, WaitLimits(), lambda: FakeClock()())
    qtbot.addWidget(view)
    view.first.setDate(QDate(2026, 3, 14))
    view.last.setDate(QDate(2026, 3, 14))
    bad = tmp_path / "mauvais.csv"
    bad.write_text("presente_le;attente_s\n", encoding="utf-8")
    task = view.load_calls(bad)
    assert task is not None
    await task
    assert "colonne(s) absente(s) : issue" in view.message.text() and view.calls is None
    good = tmp_path / "appels.csv"
    good.write_text(DAY, encoding="utf-8")
    task = view.load_calls(good)
    assert task is not None
    await task
    assert "13 appel(s) lu(s)" in view.message.text()
    task = view.run()
    assert task is not None
    await task
    assert view.report is not None
    (row,) = view.report.rows
    assert (row["tel_presentes"], row["tel_qs60_pct"]) == (12, 66.7)
