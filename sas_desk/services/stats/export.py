"""Reports out of the room: CSV and JSON, privacy rules applied
(:func:`sas_desk.models.stats.export_rows`), and the source a configuration
points at."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from sas_desk.models.queue import WaitLimits
from sas_desk.models.stats import (
    Granularity,
    Period,
    Report,
    build_report,
    export_rows,
    export_values,
    telephony_rows,
)
from sas_desk.models.telephony import MAX_BYTES, Call, TelephonyError, parse_calls
from sas_desk.services.stats import StatsSource


def open_source(config: Any, room: Any = None) -> StatsSource:
    """The statistics source of a configuration's queue store: in room mode
    (``room``: the workstation's :class:`RoomSession`) the room server's,
    read through it; PostgreSQL when ``[queues] dsn`` is set; else the
    SQLite file of the data dir."""
    if room is not None:
        from sas_desk.services.stats.remote import RemoteStatsSource

        return RemoteStatsSource(room)
    if getattr(config, "queues_dsn", ""):
        from sas_desk.services.stats.postgres import PostgresStatsSource

        return PostgresStatsSource(config.queues_dsn, config.queues_schema)
    from sas_desk.services.stats.sqlite import SqliteStatsSource

    return SqliteStatsSource(config.queues_path)


async def make_report(
    source: StatsSource,
    period: Period,
    by: Granularity,
    limits: WaitLimits,
    calls: Sequence[Call] | None = None,
) -> Report:
    """The report of a period; with ``calls`` (the telephony's call records),
    its telephony columns too."""
    raw = await source.raw(period, by, limits)
    if calls is not None:
        raw.calls = telephony_rows(calls, period, by)
    return build_report(raw, period, by)


def read_calls(path: Path) -> list[Call]:
    """The call records of a telephony CSV (bounded read); raises
    TelephonyError (French, naming the file and line)."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise TelephonyError(f"{path} : lecture impossible ({exc.strerror}).") from None
    return parse_calls(data, str(path))


def write_csv(report: Report, out: TextIO) -> int:
    """The export rows as CSV (``;`` separated, as French spreadsheets
    expect; decimal point kept; an empty cell for no value), written as
    they are worked out; returns the rows written (one per period bucket,
    the header not counted)."""
    writer = csv.writer(out, delimiter=";", lineterminator="\n")
    writer.writerow(report.columns)
    rows = 0
    for values in export_values(report):
        writer.writerow(values)  # the csv module writes None as an empty cell
        rows += 1
    return rows


def write_json(report: Report, out: TextIO) -> int:
    rows = export_rows(report)
    doc = {
        "debut": report.period.first.isoformat(),
        "fin": report.period.last.isoformat(),
        "fuseau": report.period.tz,
        "par": report.by.value,
        "colonnes": report.columns,
        "lignes": rows,
        "secret_statistique": "effectifs de 1 à 10 remplacés par « <11 »",
    }
    json.dump(doc, out, ensure_ascii=False, indent=1)
    out.write("\n")
    return len(rows)


def export_text(report: Report, fmt: str) -> str:
    buffer = io.StringIO()
    (write_json if fmt == "json" else write_csv)(report, buffer)
    return buffer.getvalue()


def iter_csv_lines(report: Report) -> Iterable[str]:  # pragma: no cover - convenience
    yield from export_text(report, "csv").splitlines()
