"""``sas-desk roster …``: import, who, status, sync (see ``sas_desk.cli``).

Messages for the user go to stderr in French; ``who`` prints one JSON object
per matching entry on stdout.  Exit codes: 0 done, 1 refused / nothing found,
2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime
from typing import Any

from sas_desk.models.roster import PARIS, RosterEntry
from sas_desk.models.validation import format_phone
from sas_desk.services.config import Config
from sas_desk.services.geo.territory import CommuneIndex
from sas_desk.services.roster.service import RosterImportError, RosterService
from sas_desk.services.roster.store import RosterError

__all__ = ["entry_record", "parse_at", "run_roster_command"]


def _err(message: str) -> None:
    print(f"sas-desk : {message}", file=sys.stderr)


def parse_at(text: str) -> datetime | None:
    """``AAAA-MM-JJ HH:MM`` (or ``JJ/MM/AAAA HH:MM``), Europe/Paris."""
    raw = " ".join(text.replace("T", " ").split())
    for pattern in ("%Y-%m-%d %H:%M", "%d/%m/%Y %H:%M", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(raw, pattern).replace(tzinfo=PARIS)
        except ValueError:
            continue
    return None


def entry_record(entry: RosterEntry) -> dict[str, Any]:
    return {
        "date": entry.day.isoformat(),
        "start": entry.start.isoformat(),
        "end": entry.end.isoformat(),
        "sector": entry.sector_code,
        "sector_name": entry.sector_name,
        "communes": list(entry.communes),
        "dentist": entry.dentist,
        "family": entry.family,
        "given": entry.given,
        "rpps": entry.rpps,
        "address": entry.full_address(),
        "phone": entry.phone,
        "phone_display": format_phone(entry.phone) if entry.phone else "",
        "notes": entry.notes,
        "source": entry.source,
        "version": entry.version,
    }


def run_roster_command(config: Config, args: argparse.Namespace) -> int:
    try:
        service = RosterService(
            config.rosters_path, communes=CommuneIndex.load(), sources=config.roster_urls
        )
    except RosterError as exc:
        _err(exc.message_fr)
        return 1
    try:
        if service.store.notice_fr:
            _err(service.store.notice_fr)
        if args.action == "import":
            return _import(service, args)
        if args.action == "who":
            return _who(service, config, args)
        if args.action == "status":
            status = service.status()
            print(status.message_fr)
            return 0 if status.version is not None else 1
        return asyncio.run(_sync(service, config))
    finally:
        service.close()


def _import(service: RosterService, args: argparse.Namespace) -> int:
    try:
        report = service.import_file(args.file, sectors_path=args.sectors)
    except RosterImportError as exc:
        for line in exc.lines_fr():
            print(line, file=sys.stderr)
        return 1
    except RosterError as exc:
        _err(exc.message_fr)
        return 1
    print("\n".join(report.lines_fr()))
    return 0


def _who(service: RosterService, config: Config, args: argparse.Namespace) -> int:
    at = service.now()
    if args.at:
        parsed = parse_at(args.at)
        if parsed is None:
            _err(f"date et heure illisibles « {args.at} » (attendu « AAAA-MM-JJ HH:MM »).")
            return 2
        at = parsed
    if config.demo and service.store.is_empty():
        service.load_demo_if_empty()
        _err("aucun tableau importé : tableau de démonstration chargé.")
    when = at.strftime("%d/%m/%Y %H:%M")
    if args.commune:
        insee = service.resolve_commune(args.commune)
        if insee is None:
            _err(f"commune inconnue : « {args.commune} ».")
            return 1
        found = service.on_call(insee, at)
        what = f"la commune {insee}"
    else:
        found = service.on_call_sector(args.sector, at)
        what = f"le secteur {args.sector}"
    if not found:
        upcoming = (
            service.next_on_call(args.commune, at)
            if args.commune
            else service.next_on_call_sector(args.sector, at)
        )
        hint = (
            f" Prochaine garde : {upcoming[0].start.strftime('%d/%m/%Y %H:%M')}."
            if upcoming
            else ""
        )
        _err(f"aucun dentiste de garde pour {what} le {when}.{hint}")
        return 1
    for entry in found:
        print(json.dumps(entry_record(entry), ensure_ascii=False))
    return 0


async def _sync(service: RosterService, config: Config) -> int:
    if not service.sources:
        _err("aucune source de tableaux configurée ([rosters] urls).")
        return 1
    import httpx

    from sas_desk.services.roster.sync import RosterSync

    async with httpx.AsyncClient() as client:
        results = await RosterSync(service, client, timeout=config.roster_timeout).run()
    for result in results:
        print(f"{result.url} : {result.message_fr}")
    print(service.status().message_fr)
    return 0 if all(r.state in ("updated", "unchanged") for r in results) else 1
