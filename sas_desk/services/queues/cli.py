"""``sas-desk db upgrade --dsn DSN [--schema S]``: create or migrate the
PostgreSQL schema of the queues (run once per server upgrade, by an account
allowed to create tables; workstations then only need read/write rights).

Only argparse at import time: the PostgreSQL driver is imported when the
command runs, so that the app's start-up does not pay for it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_db_parser(subparsers: Any) -> None:
    """Add the ``db`` command to the ``sas-desk`` sub-commands."""
    db = subparsers.add_parser("db", help="base PostgreSQL des files de régulation")
    actions = db.add_subparsers(dest="db_action", required=True)
    up = actions.add_parser("upgrade", help="crée ou met à jour le schéma des files")
    up.add_argument(
        "--dsn",
        required=True,
        help="adresse du serveur (ex. postgresql://sas@pg.samu69.local/sas) ; "
        "mot de passe : DSN, ~/.pgpass, PGPASSWORD ou trousseau système",
    )
    up.add_argument("--schema", default="sas_desk", help="schéma (défaut : sas_desk)")


async def run_db_command(args: argparse.Namespace) -> int:
    """Run ``db <action>``; returns the exit code (0 ok, 1 server problem, 2 usage)."""
    from sas_desk.services.queues.api import BackendUnavailable
    from sas_desk.services.queues.postgres import upgrade

    if args.db_action != "upgrade":  # pragma: no cover - argparse restricts the choices
        print(f"sas-desk : action inconnue : {args.db_action}", file=sys.stderr)
        return 2
    try:
        before, after = await upgrade(args.dsn, args.schema)
    except ValueError as exc:
        print(f"sas-desk : {exc}", file=sys.stderr)
        return 2
    except BackendUnavailable as exc:
        print(f"sas-desk : {exc.message_fr}", file=sys.stderr)
        return 1
    print(f"Schéma {args.schema} : version {before} → {after}")
    return 0
