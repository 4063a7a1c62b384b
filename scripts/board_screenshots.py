"""Render the supervisor's board to PNG files at 1366×768 (issue 17).

    xvfb-run -s "-screen 0 1366x768x24" python scripts/board_screenshots.py [OUT_DIR]

(or QT_QPA_PLATFORM=offscreen).  Plays a busy afternoon into a temporary
SQLite queue file (``tests/helpers/board_room.py``: a late P1, a lost lease,
a call-back due, a booking request near 48 h, the last hour's decisions),
then saves the board (``board.png``, one late item selected), and the wall
mode (``board-wall.png``); then a year of a centre (``bench/stats.py``'s
generator, 20,000 dossiers) for the statistics screen over March, by day
(``stats.png``; the SNP outcomes and the delays: ``stats-snp.png``,
``stats-delais.png``) and its PDF report, rendered page by page with QtPdf
(``stats-report-N.png``).  Pictures stay out of git.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from PySide6.QtWidgets import QApplication

from sas_desk.models.dossier import Actor
from sas_desk.models.queue import WaitLimits
from sas_desk.services.queues.client import Outbox, QueueClient
from sas_desk.services.queues.sqlite import SqliteBackend
from sas_desk.services.stats.sqlite import SqliteStatsSource
from sas_desk.ui.aio import event_loop
from sas_desk.ui.board import Board
from tests.helpers.board_room import Room

BENCH = Path(__file__).resolve().parents[1] / "bench" / "stats.py"


async def until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise SystemExit("board not ready in time")
        await asyncio.sleep(0.05)


async def shoot(out: Path) -> None:
    now = datetime.now().astimezone().replace(microsecond=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "queues.sqlite"
        backend = SqliteBackend(path, now=lambda: now)
        await backend.open()
        await Room(backend, now).play()
        client = QueueClient(
            SqliteBackend(path, now=lambda: now),
            Outbox(Path(tmp) / "outbox.sqlite"),
            Actor("SUP", "sup.bernard", "POSTE-SUP"),
            now=lambda: now,
            renew_s=3600,
        )
        await client.start()
        source = SqliteStatsSource(path)
        try:
            for wall, name in ((False, "board"), (True, "board-wall")):
                board = Board(client, source, WaitLimits(), lambda: now, wall=wall)
                board.setWindowTitle("SAS Desk — tableau de salle")
                board.resize(1366, 768)
                board.show()
                board.start()
                await until(lambda b=board: b.figures is not None and b.snp_series.count() > 0)
                await asyncio.sleep(0.3)
                if not wall:
                    board.late_table.selectRow(0)
                await asyncio.sleep(0.2)
                target = out / f"{name}.png"
                board.grab().save(str(target))
                print(f"{target} {board.width()}x{board.height()}")
                board.stop()
                board.close()
        finally:
            await client.stop()
            await source.close()
            await backend.close()


async def shoot_stats(out: Path) -> None:
    import importlib.util

    from PySide6.QtCore import QDate

    from sas_desk.ui.stats_view import StatsView

    spec = importlib.util.spec_from_file_location("bench_stats", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "queues.sqlite"
        await asyncio.to_thread(bench.load_sqlite, path, 20_000)
        source = SqliteStatsSource(path)
        view = StatsView(source, WaitLimits(), lambda: datetime.now().astimezone())
        view.setWindowTitle("SAS Desk — statistiques")
        view.resize(1366, 768)
        view.show()
        view.first.setDate(QDate(bench.YEAR, 3, 1))
        view.last.setDate(QDate(bench.YEAR, 3, 31))
        task = view.run()
        assert task is not None
        await task
        view.table.scrollTo(view.model.index(0, 0))
        await asyncio.sleep(0.3)
        target = out / "stats.png"
        view.grab().save(str(target))
        print(f"{target} {view.width()}x{view.height()}")
        for key in ("snp", "delais"):  # « Afficher » : one family of indicators
            view.theme.setCurrentIndex(view.theme.findData(key))
            await asyncio.sleep(0.3)
            target = out / f"stats-{key}.png"
            view.grab().save(str(target))
            print(target)
        view.theme.setCurrentIndex(0)
        # the PDF report of the same period, its pages rendered with QtPdf
        pdf = out / "stats-report.pdf"
        task = view.export_pdf(pdf)
        assert task is not None
        await task
        from PySide6.QtPdf import QPdfDocument

        doc = QPdfDocument()
        doc.load(str(pdf))
        for page in range(doc.pageCount()):
            size = doc.pagePointSize(page) * (110 / 72)
            image = out / f"stats-report-{page + 1}.png"
            doc.render(page, size.toSize()).save(str(image))
            print(image)
        view.stop()
        view.close()
        await source.close()


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setQuitOnLastWindowClosed(False)
    with asyncio.Runner(loop_factory=lambda: event_loop(app)) as runner:
        runner.run(shoot(out))
        runner.run(shoot_stats(out))


if __name__ == "__main__":
    main()
