"""Command line: ``sas-desk`` (the app) and its sub-commands.

sas-desk [--config PATH] [--data-dir DIR] [--role ROLE] [--smoke]
sas-desk [--config PATH] [--data-dir DIR] --wall      (the room's wall screen)
sas-desk simulator [--port N] [--tls-cert PEM --tls-key PEM [--client-ca PEM]]
sas-desk simulator hub --url amqp://guest:guest@127.0.0.1:5672/ [--vhost V] --client ID…
sas-desk [--config PATH] [--data-dir DIR] hub status|receive|send|appointments|attach|ledger
sas-desk [--data-dir DIR] dossier import-rseda FILE   (exit 3: case already stored and
         different — both kept, see the message)
sas-desk [--data-dir DIR] dossier export-rseda ID
sas-desk fhir parse FILE
sas-desk [--config PATH] [--data-dir DIR] slots search (--near "LAT, LON" | --commune NOM|INSEE)
         [--radius KM] [--specialty SM54|SM40|DENT] [--sync]
sas-desk [--data-dir DIR] roster import FILE [--sectors FILE]
sas-desk [--config PATH] [--data-dir DIR] roster who (--commune CODE_OU_NOM | --sector CODE)
         [--at "AAAA-MM-JJ HH:MM"]
sas-desk [--config PATH] [--data-dir DIR] roster status | roster sync
sas-desk [--config PATH] server … (the room server: sas_desk/server/cli.py)
sas-desk [--config PATH] [--data-dir DIR] stats --from AAAA-MM-JJ --to AAAA-MM-JJ
         [--format csv|json] [--by hour|day|month] [--out FICHIER]
sas-desk [--config PATH] [--data-dir DIR] stats-rollup [--rebuild]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from sas_desk import __version__
from sas_desk.models.errors import KnownError
from sas_desk.server.cli import add_server_parser, run_server_command
from sas_desk.services.config import ROLES, Config, ConfigError, load_config
from sas_desk.services.hub.cli import add_hub_parser
from sas_desk.services.queues.cli import add_db_parser, run_db_command
from sas_desk.services.stats.cli import add_stats_parser, run_stats_command

log = logging.getLogger("sas_desk.cli")


# argparse's own words (usage, help of -h, errors) in French: the command
# line speaks the operator's language like the window does
_ARGPARSE_FR = {
    "usage: ": "utilisation : ",
    "positional arguments": "arguments",
    "options": "options",
    "show this help message and exit": "affiche cette aide et quitte",
    "show program's version number and exit": "affiche la version et quitte",
    "%(prog)s: error: %(message)s\n": "%(prog)s : erreur : %(message)s\n",
    "the following arguments are required: %s": "arguments obligatoires manquants : %s",
    "unrecognized arguments: %s": "arguments inconnus : %s",
    "invalid choice: %(value)r (choose from %(choices)s)": (
        "choix invalide : %(value)r (au choix : %(choices)s)"
    ),
    "argument %(argument_name)s: %(message)s": "argument %(argument_name)s : %(message)s",
    "expected one argument": "une valeur attendue",
    "expected at most one argument": "une valeur au plus",
    "expected at least one argument": "au moins une valeur attendue",
    "invalid %(type)s value: %(value)r": "valeur invalide (%(type)s) : %(value)r",
    "not allowed with argument %s": "incompatible avec l'argument %s",
    "one of the arguments %s is required": "l'un des arguments %s est obligatoire",
    "ambiguous option: %(option)s could match %(matches)s": (
        "option ambiguë : %(option)s peut être %(matches)s"
    ),
    "ignored explicit argument %r": "valeur explicite ignorée : %r",
    "unknown parser %(parser_name)r (choices: %(choices)s)": (
        "commande inconnue %(parser_name)r (au choix : %(choices)s)"
    ),
}


def _fr(message: str) -> str:
    return _ARGPARSE_FR.get(message, message)


def _fr_n(singular: str, plural: str, n: int) -> str:
    if singular == "expected %s argument":
        return "%s valeur attendue" if n == 1 else "%s valeurs attendues"
    return singular if n == 1 else plural


argparse._ = _fr  # type: ignore[attr-defined]  # argparse looks these up when it speaks
argparse.ngettext = _fr_n  # type: ignore[attr-defined]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sas-desk", description="SAS Desk — poste de régulation SAS")
    p.add_argument("--version", action="version", version=f"sas-desk {__version__}")
    p.add_argument("--config", type=Path, help="fichier de configuration TOML")
    p.add_argument(
        "--data-dir", type=Path, help="dossier des données locales (journal, journaux d'exécution)"
    )
    p.add_argument(
        "--role", choices=sorted(ROLES), help="rôle du poste (sinon choisi au démarrage)"
    )
    p.add_argument(
        "--smoke", action="store_true", help="démarre, affiche la fenêtre et quitte (code 0)"
    )
    p.add_argument(
        "--wall",
        action="store_true",
        help="écran mural de la salle : tableau plein écran, lecture seule",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="journal détaillé (niveau DEBUG) sur la console",
    )
    sub = p.add_subparsers(dest="command")
    sim = sub.add_parser("simulator", help="lance le simulateur des interfaces nationales")
    sim.add_argument("--host", default="127.0.0.1", help="adresse d'écoute (boucle locale)")
    sim.add_argument(
        "--allow-remote",
        action="store_true",
        help="accepte une adresse non locale (le simulateur est alors joignable du réseau)",
    )
    sim.add_argument("--port", type=int, default=8765)
    sim.add_argument("--tls-cert", type=Path, help="certificat serveur (PEM) : sert en HTTPS")
    sim.add_argument("--tls-key", type=Path, help="clé privée du certificat serveur (PEM)")
    sim.add_argument("--client-ca", type=Path, help="AC des certificats clients exigés (mTLS, PEM)")
    sim.add_argument(
        "target", nargs="?", choices=["hub"], help="hub : Hub Santé local sur un RabbitMQ"
    )
    sim.add_argument("--url", help="RabbitMQ du Hub local (amqp://guest:guest@127.0.0.1:5672/)")
    sim.add_argument("--vhost", help="vhost du Hub local (défaut : celui de l'URL)")
    sim.add_argument(
        "--client", action="append", default=[], help="identifiant d'un client Hub (répétable)"
    )
    sim.add_argument(
        "--ttl-ms", type=int, default=86_400_000, help="durée de vie des files clientes (ms)"
    )
    sim.add_argument(
        "--play-sas",
        action="store_true",
        help="joue la plateforme SAS : un RS-SAS-RDV par réservation faite sur les pages "
        "de réservation du simulateur, envoyé au premier --client",
    )
    sim.add_argument(
        "--simulator",
        default="http://127.0.0.1:8765",
        help="adresse du simulateur dont les réservations sont lues (avec --play-sas)",
    )
    sim.add_argument(
        "--regulator",
        default=os.environ.get("USER", "operateur"),
        help="identifiant du régulateur mis dans les rendez-vous (avec --play-sas ; "
        "défaut : celui de [workstation] operator)",
    )
    dossier = sub.add_parser("dossier", help="import / export de dossiers")
    dsub = dossier.add_subparsers(dest="action", required=True)
    imp = dsub.add_parser("import-rseda", help="lit un message RS-EDA (createCaseHealth)")
    imp.add_argument("file", type=Path)
    exp = dsub.add_parser("export-rseda", help="écrit un dossier en message RS-EDA")
    exp.add_argument("id")
    fhir = sub.add_parser("fhir", help="outils FHIR (recherche de créneaux SAS)")
    fsub = fhir.add_subparsers(dest="action", required=True)
    fparse = fsub.add_parser(
        "parse", help="lit un Bundle de créneaux et affiche un créneau JSON par ligne"
    )
    fparse.add_argument("file", type=Path)
    slots = sub.add_parser("slots", help="recherche de créneaux (annuaire + éditeurs d'agenda)")
    ssub = slots.add_subparsers(dest="action", required=True)
    ss = ssub.add_parser(
        "search", help="cherche des créneaux autour d'un point et les affiche en JSON (une ligne)"
    )
    where = ss.add_mutually_exclusive_group(required=True)
    where.add_argument("--near", help="position « lat, lon » (formats de la fiche acceptés)")
    where.add_argument("--commune", help="nom ou code INSEE d'une commune du territoire")
    ss.add_argument("--radius", type=float, help="rayon en km (défaut : celui du département)")
    ss.add_argument(
        "--specialty", default="SM54", help="SM54 médecine générale (défaut), SM40, DENT…"
    )
    ss.add_argument(
        "--sync", action="store_true", help="met l'annuaire à jour avant (toujours en démo)"
    )
    roster = sub.add_parser("roster", help="tableaux de garde des chirurgiens-dentistes")
    rsub = roster.add_subparsers(dest="action", required=True)
    rimp = rsub.add_parser("import", help="importe un tableau (CSV, iCalendar .ics ou JSON)")
    rimp.add_argument("file", type=Path)
    rimp.add_argument("--sectors", type=Path, help="fichier des secteurs (CSV ou JSON)")
    rwho = rsub.add_parser("who", help="dentiste(s) de garde, une ligne JSON par garde")
    rwhere = rwho.add_mutually_exclusive_group(required=True)
    rwhere.add_argument("--commune", help="code INSEE ou nom de la commune")
    rwhere.add_argument("--sector", help="code du secteur de garde")
    rwho.add_argument("--at", help="date et heure « AAAA-MM-JJ HH:MM » (défaut : maintenant)")
    rsub.add_parser("status", help="tableau en vigueur, dernière synchronisation, alertes")
    rsub.add_parser("sync", help="met à jour les tableaux depuis les sources configurées")
    add_db_parser(sub)
    add_server_parser(sub)
    add_hub_parser(sub)
    add_stats_parser(sub)
    return p


def _stats_pdf(path: Path, summary: Any, detail: Any, centre: str, made_at: Any) -> int:
    """The activity report as PDF (Qt's writer; offscreen without a display)."""
    import os

    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    from sas_desk.ui.stats_pdf import write_pdf

    _app = QGuiApplication.instance() or QGuiApplication([])
    return write_pdf(path, summary, detail, centre, made_at)


def main(argv: list[str] | None = None) -> int:
    """The command line.  A known error (:class:`KnownError`) that reaches
    here is said in French on stderr, exit 1, never a traceback; anything
    else is a bug and goes through the crash handler (the window) or
    Python's own report (the other commands)."""
    try:
        return _main(argv)
    except KnownError as exc:
        logging.getLogger("sas_desk").info("command refused: %s", type(exc).__name__)
        print(f"sas-desk : {exc.message_fr}", file=sys.stderr)
        return 1


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "server":  # its own [server] table, not a workstation's configuration
        return run_server_command(args)
    try:
        config = load_config(args.config, args.data_dir)
    except ConfigError as exc:
        print(f"sas-desk : {exc.message_fr}", file=sys.stderr)
        return 1
    if args.role:
        config = replace(config, role=args.role)
    if args.command not in ("simulator", "fhir", "db"):  # data dir 0700, files 0600 (issue 15)
        from sas_desk.services.private import make_private

        make_private(config.data_dir)
    if args.command == "fhir":
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
        return _fhir_command(args)
    if args.command in ("roster", "slots", "dossier", None):
        from sas_desk.services import clock

        clock.use_zone(config.timezone)  # the room's time, as the window shows it
    if args.command == "roster":
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
        from sas_desk.services.roster.cli import run_roster_command

        return run_roster_command(config, args)
    from sas_desk.app import install_crash_handler, setup_logging, warm_keyring_in_background

    if args.command == "simulator" and args.target == "hub":
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
        return _hub_simulator(args)
    if args.command == "hub":
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
        from sas_desk.services.hub.cli import run_hub_command

        return asyncio.run(run_hub_command(config, args))
    if args.command == "simulator":
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
        from sas_desk.simulator.server import serve_forever

        try:
            serve_forever(
                args.host,
                args.port,
                tls_cert=args.tls_cert,
                tls_key=args.tls_key,
                client_ca=args.client_ca,
                allow_remote=args.allow_remote,
            )
        except (ValueError, OSError) as exc:  # TLS options, unreadable PEM, remote address
            print(f"Simulateur : {exc}", file=sys.stderr)
            return 2
        return 0
    if args.command == "slots":
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
        return asyncio.run(_slots_command(config, args))
    if args.command == "db":
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
        return asyncio.run(run_db_command(args))
    if args.command in ("stats", "stats-rollup"):
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
        return asyncio.run(run_stats_command(config, args, _stats_pdf))
    setup_logging(config.data_dir, args.verbose)
    if args.command == "dossier":
        return asyncio.run(_dossier_command(config, args))
    if not args.wall:  # the window's data key, read before its journal opens
        warm_keyring_in_background()
    install_crash_handler(config.data_dir)
    if args.wall:
        from sas_desk.wall import run_wall

        return _leave(run_wall(config, smoke=args.smoke))
    from sas_desk.app import RunOptions, run

    return _leave(run(config, RunOptions(smoke=args.smoke)))


def _leave(code: int) -> int:
    """The window is closed and its stores with it (journal, outbox, logs
    flushed): the objects left (~40,000) are frozen so that the
    interpreter's collections at exit do not trace them again — ~0.1 s of
    CPU per exit (measured A/B on ``--smoke``); what it still finalises
    (atexit: the log handlers) is unchanged."""
    import gc

    gc.freeze()
    return code


async def _dossier_command(config: Config, args: argparse.Namespace) -> int:
    if args.action == "import-rseda":
        hub_body = _hub_document(args.file)
        if hub_body is not None:
            # RS-EDA-MAJ, RS-SAS-RDV…: the Hub agent's own processing
            from sas_desk.services.hub.cli import import_document

            return await import_document(config, hub_body)
    return await _dossier_journal_command(config, args)


def _hub_document(path: Path) -> object | None:
    """The file's JSON when it holds a Hub message other than RS-EDA; None
    otherwise (unreadable files are reported by the RS-EDA path)."""
    from sas_desk.models.limits import InputError
    from sas_desk.services.bounded import MAX_MESSAGE_BYTES, load_json

    try:
        body = load_json(path, MAX_MESSAGE_BYTES)
    except InputError:
        return None
    return body if _hub_root(body) not in ("", "createCaseHealth") else None


async def _dossier_journal_command(config: Config, args: argparse.Namespace) -> int:
    from sas_desk.models.dossier import Actor
    from sas_desk.models.limits import InputError
    from sas_desk.models.rseda import from_rseda, to_rseda
    from sas_desk.models.validation import ValidationError
    from sas_desk.services import clock
    from sas_desk.services.atrest import data_key
    from sas_desk.services.bounded import MAX_MESSAGE_BYTES, load_json
    from sas_desk.services.desk import Desk
    from sas_desk.services.journal.service import Journal

    key = await asyncio.to_thread(data_key, config.data_dir)  # the app's records, sealed
    journal = Journal(config.journal_path, now=clock.now, cipher=key.cipher())
    try:
        if await journal.open() is None:
            assert journal.open_error is not None
            print(f"sas-desk : {journal.open_error.message_fr}", file=sys.stderr)
            return 1
        desk = Desk(config, journal, Actor("ARM", config.operator, config.workstation), clock.now)
        if args.action == "import-rseda":
            try:
                dossier = from_rseda(load_json(args.file, MAX_MESSAGE_BYTES))
            except InputError as exc:
                print(f"sas-desk : {exc.message_fr}", file=sys.stderr)
                return 1
            except ValidationError as exc:
                # the user reads the French line below; the log keeps the field
                log.info("RS-EDA %s refused: field %s", args.file, exc.field)
                print(f"sas-desk : {args.file} : {exc.message}", file=sys.stderr)
                return 1
            outcome = await desk.import_received(dossier)
            if outcome.kind != "same" and (
                not await journal.flush(timeout=10)
                or not (journal.last_state and journal.last_state.ok)
            ):
                msg = (
                    journal.last_state.message_fr if journal.last_state else "journal indisponible"
                )
                print(f"sas-desk : dossier non enregistré : {msg}", file=sys.stderr)
                return 1
            print(outcome.message_fr, file=sys.stderr)
            print(outcome.dossier.case_id)
            return 3 if outcome.kind == "conflict" else 0
        loaded = await journal.load(args.id)
        if loaded is None:
            print(f"sas-desk : dossier introuvable : {args.id}", file=sys.stderr)
            return 1
        print(json.dumps(to_rseda(loaded), ensure_ascii=False, indent=2))
        return 0
    finally:
        await journal.close()


def _hub_root(body: object) -> str:
    """The Hub use-case key of a file (bare or enveloped), '' when none is found."""
    from sas_desk.models.hub import HubMessageError, unwrap

    try:
        message, _env = unwrap(body)
    except HubMessageError:
        return ""
    return next((k for k in message if k in _HUB_ROOTS), "")


_HUB_ROOTS = ("createCaseHealth", "createCaseHealthUpdate", "appointment", "reference", "error")


def _hub_simulator(args: argparse.Namespace) -> int:
    from urllib.parse import quote, urlsplit, urlunsplit

    from sas_desk.models.hub import is_client_id
    from sas_desk.simulator.hub import serve

    if not args.url or not args.client:
        print("Simulateur Hub : --url et au moins un --client sont requis.", file=sys.stderr)
        return 2
    bad = [c for c in args.client if not is_client_id(c)]
    if bad:
        print(f"Simulateur Hub : identifiant client invalide « {bad[0]} ».", file=sys.stderr)
        return 2
    url = args.url
    if args.vhost:
        parts = urlsplit(url)
        url = urlunsplit((parts.scheme, parts.netloc, "/" + quote(args.vhost, safe=""), "", ""))
    clients, play = list(args.client), None
    if args.play_sas:
        from sas_desk.simulator.sas_player import PLATFORM_ID, http_bookings

        centre = next((c for c in clients if c != PLATFORM_ID), "")
        if not centre:
            print("Simulateur Hub : --play-sas demande un --client centre.", file=sys.stderr)
            return 2
        if PLATFORM_ID not in clients:
            clients.append(PLATFORM_ID)  # its .ack/.info for the centre's answers
        play = (centre, http_bookings(args.simulator), args.regulator)
    try:
        asyncio.run(serve(url, clients, args.ttl_ms, play))
    except KeyboardInterrupt:
        return 0
    except (OSError, ConnectionError) as exc:
        print(f"Simulateur Hub : RabbitMQ injoignable ({exc}).", file=sys.stderr)
        return 1
    return 0


def _fhir_command(args: argparse.Namespace) -> int:
    from sas_desk.models.limits import InputError
    from sas_desk.services.bounded import read_bounded
    from sas_desk.services.fhir.bundle import (
        MAX_BUNDLE_BYTES,
        BundleError,
        parse_bundle,
        slot_record,
        summary_record,
    )

    try:
        body = read_bounded(args.file, MAX_BUNDLE_BYTES)
    except InputError as exc:
        print(f"sas-desk : {exc.message_fr}", file=sys.stderr)
        return 1
    try:
        result = parse_bundle(body)
    except BundleError as exc:
        log.info("bundle %s refused", args.file)  # the French line below is the user's
        print(f"sas-desk : {args.file} : {exc.message_fr}", file=sys.stderr)
        return 1
    out = sys.stdout
    for slot in result.slots:
        out.write(json.dumps(slot_record(slot), ensure_ascii=False) + "\n")
    out.write(json.dumps({"summary": summary_record(result)}, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


async def _slots_command(config: Config, args: argparse.Namespace) -> int:
    """Run one slot search as the OSNP's screen would, printing each offer as a
    JSON line (as results arrive), each vendor's state, then a summary."""
    from sas_desk.models.search import SEARCH_SPECIALTIES, SearchQuery
    from sas_desk.models.validation import ValidationError, parse_position
    from sas_desk.services import clock
    from sas_desk.services.directory.store import DirectoryError
    from sas_desk.services.fhir.service import SlotService, SlotServiceError, demo_sources
    from sas_desk.services.geo.radius import default_radius_km
    from sas_desk.services.geo.resolver import LocationResolver
    from sas_desk.services.geo.territory import CommuneIndex

    def fail(message: str) -> int:
        print(f"sas-desk : {message}", file=sys.stderr)
        return 1

    if args.specialty not in SEARCH_SPECIALTIES and not args.specialty.startswith("SM"):
        return fail(f"spécialité inconnue « {args.specialty} » (SM54, SM40, DENT…).")
    if args.near:
        try:
            position = parse_position(args.near)
        except ValidationError as exc:
            return fail(exc.message)
        if position is None:
            return fail(f"position illisible « {args.near} » (attendu : « 45.764, 4.836 »).")
        lat, lon = position.lat, position.lon
        commune = LocationResolver(CommuneIndex.load(), None).nearest_commune(lat, lon, 50.0)
        code = commune.insee if commune is not None else config.departement
    else:
        found = CommuneIndex.load().lookup(args.commune, limit=1)
        if not found:
            return fail(f"commune inconnue du territoire : « {args.commune} ».")
        lat, lon, code = found[0].lat, found[0].lon, found[0].insee
    radius = args.radius if args.radius else float(default_radius_km(code))
    if radius <= 0:
        return fail("le rayon doit être positif.")

    simulator = None
    directory_url, vendors = config.directory_url, list(config.vendors)
    if config.demo and not vendors:
        from sas_desk.simulator.server import Simulator

        simulator = Simulator()
        simulator.start()
        try:
            directory_url, vendors = await demo_sources(simulator.base_url)
        except SlotServiceError as exc:
            simulator.stop()
            return fail(exc.message_fr)
    if not vendors:
        return fail("aucun éditeur d'agenda configuré ([[vendors]]).")
    service = SlotService.from_config(config, directory_url, vendors, now=clock.now)
    try:
        try:
            await service.open()
            if args.sync or simulator is not None:
                await service.sync()
        except (DirectoryError, SlotServiceError) as exc:
            return fail(exc.message_fr)
        query = SearchQuery(lat, lon, radius, specialty=args.specialty)
        slots = 0
        async for update in service.search(query):
            for offer in update.offers:
                c = offer.candidate
                record = {
                    "vendor": c.vendor,
                    "id": c.national_id,
                    "kind": c.kind.value,
                    "name": c.name,
                    "sas": c.sas,
                    "distance_km": round(offer.distance_km, 2),
                    "address": offer.address,
                    "slots": [
                        {
                            "start": s.start.isoformat(),
                            "types": [t.value for t in s.types],
                            "modes": [m.value for m in s.modes],
                            "booking_url": s.booking_url,
                        }
                        for s in offer.slots[:5]
                    ],
                    "count": len(offer.slots),
                }
                print(json.dumps(record, ensure_ascii=False), flush=True)
            if update.done:
                for name, status in update.vendors.items():
                    print(
                        json.dumps(
                            {
                                "vendor": name,
                                "state": status.state.value,
                                "label": status.state.label,
                                "requests": status.requests,
                                "slots": status.slots,
                                "message": status.message_fr,
                            },
                            ensure_ascii=False,
                        )
                    )
                slots = sum(s.slots for s in update.vendors.values())
                summary = {
                    "summary": {
                        "candidates": update.candidates,
                        "slots": slots,
                        "radius_km": radius,
                        "elapsed_s": round(update.elapsed_s, 3),
                        "volunteers": [
                            {
                                "name": v.name,
                                "phone": v.phone,
                                "distance_km": round(v.distance_km, 1),
                            }
                            for v in update.volunteers
                        ],
                        "notes": list(update.notes),
                    }
                }
                print(json.dumps(summary, ensure_ascii=False))
        return 0 if slots else 1
    finally:
        await service.close()
        if simulator is not None:
            simulator.stop()
