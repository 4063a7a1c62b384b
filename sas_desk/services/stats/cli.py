"""``sas-desk stats --from AAAA-MM-JJ --to AAAA-MM-JJ [--format csv|json]
[--by hour|day|month] [--out FICHIER]``: the room's statistics for a
period, one row per hour, day or month, French column names, privacy rules
applied (counts and delays only, cells below 11 suppressed, staff by role).

``sas-desk stats-rollup [--rebuild]``: rolls up the closed days of the
queue store (see :mod:`sas_desk.services.stats.rollup`) so that reports over
months read per-hour aggregates; run it nightly (or let the room server do
it).  Prints the rolled range.

Exit codes: 0 done, 1 bad period or store unreadable (French message on
stderr, no traceback).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("sas_desk.stats")


def add_stats_parser(subparsers: Any) -> None:
    stats = subparsers.add_parser(
        "stats", help="statistiques de la salle (CSV ou JSON, sans donnée nominative)"
    )
    stats.add_argument("--from", dest="first", required=True, help="premier jour AAAA-MM-JJ")
    stats.add_argument("--to", dest="last", required=True, help="dernier jour AAAA-MM-JJ (inclus)")
    stats.add_argument(
        "--format",
        choices=("csv", "json", "pdf"),
        default="csv",
        help="pdf : rapport d'activité (tableaux par mois, volumes par --by) ; --out requis",
    )
    stats.add_argument("--by", choices=("hour", "day", "month"), default="day")
    stats.add_argument("--out", type=Path, help="fichier de sortie (défaut : sortie standard)")
    stats.add_argument(
        "--telephonie",
        type=Path,
        help="appels de la téléphonie (CSV presente_le;attente_s;issue) : taux de décroché, QS 60 s",
    )
    _store_arguments(stats)
    roll = subparsers.add_parser(
        "stats-rollup", help="agrège les jours clos pour les statistiques (à lancer chaque nuit)"
    )
    _store_arguments(roll)
    roll.add_argument(
        "--rebuild", action="store_true", help="recalcule tous les agrégats depuis les événements"
    )


def _store_arguments(parser: Any) -> None:
    parser.add_argument(
        "--dsn",
        default="",
        help="base PostgreSQL du serveur de salle (postgresql://…, comme sas-desk server) ; "
        "défaut : le fichier des files du poste (--data-dir)",
    )
    parser.add_argument("--schema", default="sas_desk", help="schéma des files (défaut sas_desk)")


def _source(config: Any, args: argparse.Namespace) -> Any:
    """The statistics source: the room server's PostgreSQL store when --dsn
    is given, else the configuration's."""
    from sas_desk.services.stats.export import open_source

    dsn = getattr(args, "dsn", "")
    if dsn:
        if not dsn.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"--dsn « {dsn[:60]} » : postgresql://… attendu.")
        from sas_desk.services.stats.postgres import PostgresStatsSource

        return PostgresStatsSource(dsn, args.schema)
    return open_source(config)


async def run_rollup_command(config: Any, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from sas_desk.models.queue import WaitLimits
    from sas_desk.services.stats import StatsUnavailable

    started = time.perf_counter()
    try:
        source = _source(config, args)
    except ValueError as exc:
        print(f"sas-desk stats-rollup : {exc}", file=sys.stderr)
        return 1
    try:
        refresh = getattr(source, "refresh", None)
        if refresh is None:
            print("sas-desk stats-rollup : source sans agrégats.", file=sys.stderr)
            return 1
        lo, hi = await refresh(
            datetime.now(UTC),
            rebuild=args.rebuild,
            tz=config.timezone,
            limits=WaitLimits(*config.wait_limits),
        )
    except StatsUnavailable as exc:
        print(f"sas-desk stats-rollup : {exc.message_fr}", file=sys.stderr)
        return 1
    finally:
        await source.close()
    if hi > lo:
        first = datetime.fromtimestamp(lo, UTC)
        last = datetime.fromtimestamp(hi - 86400, UTC)
        print(f"Agrégats à jour : jours du {first:%d/%m/%Y} au {last:%d/%m/%Y} (UTC).")
    else:
        print("Aucun jour clos à agréger.")
    log.info("stats rollup done in %.2f s", time.perf_counter() - started)
    return 0


#: (path, summary by month, detail by --by, centre, made at) → pages; Qt
#: lives above the services: the command line hands it in
PdfWriter = Callable[[Path, Any, Any, str, Any], int]


async def run_stats_command(
    config: Any, args: argparse.Namespace, pdf_writer: PdfWriter | None = None
) -> int:
    if args.command == "stats-rollup":
        return await run_rollup_command(config, args)
    if args.format == "pdf" and (args.out is None or pdf_writer is None):
        print(
            "sas-desk stats : le rapport PDF s'écrit dans un fichier : --out FICHIER.pdf.",
            file=sys.stderr,
        )
        return 1
    from sas_desk.models.queue import WaitLimits
    from sas_desk.models.stats import Granularity, StatsError, parse_period
    from sas_desk.models.telephony import TelephonyError
    from sas_desk.services.stats import StatsUnavailable
    from sas_desk.services.stats.export import export_text, make_report, read_calls

    by = Granularity(args.by)
    calls = None
    if args.telephonie is not None:
        try:
            calls = read_calls(args.telephonie)
        except TelephonyError as exc:
            print(f"sas-desk stats : {exc.message_fr}", file=sys.stderr)
            return 1
    try:
        period = parse_period(args.first, args.last, by, config.timezone)
    except StatsError as exc:
        print(f"sas-desk stats : {exc.message_fr}", file=sys.stderr)
        return 1
    limits = WaitLimits(*config.wait_limits)
    started = time.perf_counter()
    try:
        source = _source(config, args)
    except ValueError as exc:
        print(f"sas-desk stats : {exc}", file=sys.stderr)
        return 1
    summary = None
    try:
        report = await make_report(source, period, by, limits, calls)
        if args.format == "pdf":
            month = Granularity.MONTH
            summary = await make_report(
                source,
                parse_period(args.first, args.last, month, config.timezone),
                month,
                limits,
                calls,
            )
    except StatsUnavailable as exc:
        print(f"sas-desk stats : {exc.message_fr}", file=sys.stderr)
        return 1
    finally:
        await source.close()
    if args.format == "pdf" and pdf_writer is not None and summary is not None:
        from datetime import datetime
        from zoneinfo import ZoneInfo

        centre = f"SAMU {config.departement} — {config.owner}"
        try:
            pages = pdf_writer(
                args.out, summary, report, centre, datetime.now(ZoneInfo(config.timezone))
            )
        except OSError as exc:
            print(
                f"sas-desk stats : écriture impossible : {args.out} ({exc.strerror or exc})",
                file=sys.stderr,
            )
            return 1
        print(f"Rapport écrit : {args.out} ({pages} page(s)).")
        return 0
    text = export_text(report, args.format)
    if args.out is not None:
        try:
            args.out.write_text(text, encoding="utf-8")
        except OSError as exc:
            print(
                f"sas-desk stats : écriture impossible : {args.out} ({exc.strerror})",
                file=sys.stderr,
            )
            return 1
    else:
        sys.stdout.write(text)
    log.info(
        "stats %s..%s by %s: %d rows in %.2f s",
        period.first,
        period.last,
        by.value,
        len(report.rows),
        time.perf_counter() - started,
    )
    return 0
