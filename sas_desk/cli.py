"""Command line: ``sas-desk`` (the app) and its sub-commands.

sas-desk [--config PATH] [--data-dir DIR] [--role ROLE] [--smoke]
sas-desk simulator [--port N] [--tls-cert PEM --tls-key PEM [--client-ca PEM]]
sas-desk [--data-dir DIR] dossier import-rseda FILE
sas-desk [--data-dir DIR] dossier export-rseda ID
sas-desk fhir parse FILE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

from sas_desk import __version__
from sas_desk.services.config import ROLES, Config, ConfigError, load_config
from sas_desk.services.queues.cli import add_db_parser, run_db_command

log = logging.getLogger("sas_desk.cli")


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
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command")
    sim = sub.add_parser("simulator", help="lance le simulateur des interfaces nationales")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8765)
    sim.add_argument("--tls-cert", type=Path, help="certificat serveur (PEM) : sert en HTTPS")
    sim.add_argument("--tls-key", type=Path, help="clé privée du certificat serveur (PEM)")
    sim.add_argument("--client-ca", type=Path, help="AC des certificats clients exigés (mTLS, PEM)")
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
    add_db_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config, args.data_dir)
    except ConfigError as exc:
        print(f"sas-desk : {exc.message_fr}", file=sys.stderr)
        return 2
    if args.role:
        config = replace(config, role=args.role)
    if args.command == "fhir":
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
        return _fhir_command(args)
    from sas_desk.app import install_crash_handler, setup_logging

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
            )
        except (ValueError, OSError) as exc:  # incomplete TLS options, unreadable PEM
            print(f"Simulateur : {exc}", file=sys.stderr)
            return 2
        return 0
    if args.command == "db":
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
        return asyncio.run(run_db_command(args))
    setup_logging(config.data_dir, args.verbose)
    if args.command == "dossier":
        return asyncio.run(_dossier_command(config, args))
    install_crash_handler(config.data_dir)
    from sas_desk.app import RunOptions, run

    return run(config, RunOptions(smoke=args.smoke))


async def _dossier_command(config: Config, args: argparse.Namespace) -> int:
    from sas_desk.models.dossier import Actor
    from sas_desk.models.rseda import from_rseda, to_rseda
    from sas_desk.models.validation import ValidationError
    from sas_desk.services import clock
    from sas_desk.services.desk import Desk
    from sas_desk.services.journal.service import Journal

    journal = Journal(config.journal_path, now=clock.now)
    try:
        if await journal.open() is None:
            assert journal.open_error is not None
            print(f"sas-desk : {journal.open_error.message_fr}", file=sys.stderr)
            return 1
        desk = Desk(config, journal, Actor("ARM", config.operator, config.workstation), clock.now)
        if args.action == "import-rseda":
            try:
                body = json.loads(args.file.read_text(encoding="utf-8"))
                dossier = from_rseda(body)
            except OSError as exc:
                print(
                    f"sas-desk : fichier illisible : {args.file} ({exc.strerror})", file=sys.stderr
                )
                return 1
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                print(f"sas-desk : {args.file} n'est pas un JSON valide ({exc})", file=sys.stderr)
                return 1
            except ValidationError as exc:
                print(f"sas-desk : {exc.message}", file=sys.stderr)
                return 1
            desk.import_dossier(dossier)
            if not await journal.flush(timeout=10) or not (
                journal.last_state and journal.last_state.ok
            ):
                msg = (
                    journal.last_state.message_fr if journal.last_state else "journal indisponible"
                )
                print(f"sas-desk : dossier non enregistré : {msg}", file=sys.stderr)
                return 1
            print(f"Dossier importé : {dossier.case_id}", file=sys.stderr)
            print(dossier.case_id)
            return 0
        loaded = await journal.load(args.id)
        if loaded is None:
            print(f"sas-desk : dossier introuvable : {args.id}", file=sys.stderr)
            return 1
        print(json.dumps(to_rseda(loaded), ensure_ascii=False, indent=2))
        return 0
    finally:
        await journal.close()


def _fhir_command(args: argparse.Namespace) -> int:
    from sas_desk.services.fhir.bundle import (
        BundleError,
        parse_bundle,
        slot_record,
        summary_record,
    )

    try:
        body = args.file.read_bytes()
    except OSError as exc:
        print(f"sas-desk : fichier illisible : {args.file} ({exc.strerror})", file=sys.stderr)
        return 1
    try:
        result = parse_bundle(body)
    except BundleError as exc:
        print(f"sas-desk : {args.file} : {exc.message_fr}", file=sys.stderr)
        return 1
    out = sys.stdout
    for slot in result.slots:
        out.write(json.dumps(slot_record(slot), ensure_ascii=False) + "\n")
    out.write(json.dumps({"summary": summary_record(result)}, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
