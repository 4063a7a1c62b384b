"""``sas-desk server``: run the room server, and its administration.

sas-desk [--config F] server --dsn DSN [--schema S] --listen HOST:PORT
         [--tls-cert F --tls-key F] [--allow-superuser]
sas-desk server user add LOGIN --role R [--role R…] [--name "…"] [--rpps N] --dsn DSN [--schema S]
sas-desk server user disable LOGIN --dsn DSN
sas-desk server user list --dsn DSN
sas-desk [--config F] server check | verify-log [--dsn DSN]
sas-desk server db upgrade --dsn OWNER_DSN | db grant --dsn OWNER_DSN --to ROLE [--print]

Passwords are read from the terminal (twice), or from the first line of
stdin when it is not a terminal; never from the command line.

Only argparse at import time: the server's libraries load when it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sas_desk.models.queue import ROLE_QUEUES

_MIN_PASSWORD = 12


def _db_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--dsn",
        default=default,
        help="base de la salle : postgresql://… ou sqlite:///chemin/du/fichier",
    )
    parser.add_argument("--schema", default=default, help="schéma PostgreSQL (défaut : sas_desk)")


def _serve_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--listen", default=default, help="adresse d'écoute HOTE:PORT (défaut 127.0.0.1:8443)"
    )
    parser.add_argument(
        "--tls-cert", type=Path, default=default, help="certificat du serveur (PEM)"
    )
    parser.add_argument(
        "--tls-key", type=Path, default=default, help="clé privée du certificat (PEM)"
    )
    parser.add_argument(
        "--allow-superuser",
        action="store_true",
        default=default,
        help="accepte un compte PostgreSQL superutilisateur (déconseillé)",
    )


def add_server_parser(subparsers: Any) -> None:
    server = subparsers.add_parser("server", help="serveur de la salle de régulation (API HTTPS)")
    _db_options(server, suppress=False)
    _serve_options(server, suppress=False)
    actions = server.add_subparsers(dest="server_action")
    user = actions.add_parser("user", help="comptes des opérateurs")
    uactions = user.add_subparsers(dest="user_action", required=True)
    add = uactions.add_parser("add", help="crée un compte (mot de passe demandé)")
    add.add_argument("login")
    add.add_argument(
        "--role",
        action="append",
        required=True,
        choices=tuple(ROLE_QUEUES),
        help="rôle permis (répétable)",
    )
    add.add_argument("--name", default="", help="nom affiché")
    add.add_argument("--rpps", default="", help="numéro RPPS (professionnels de santé)")
    _db_options(add, suppress=True)
    disable = uactions.add_parser("disable", help="désactive un compte (sessions révoquées)")
    disable.add_argument("login")
    _db_options(disable, suppress=True)
    enable = uactions.add_parser("enable", help="réactive un compte")
    enable.add_argument("login")
    _db_options(enable, suppress=True)
    ulist = uactions.add_parser("list", help="liste les comptes (JSON, une ligne par compte)")
    _db_options(ulist, suppress=True)
    check = actions.add_parser(
        "check", help="vérifie configuration, base (joignable, à jour) et certificat"
    )
    _db_options(check, suppress=True)
    _serve_options(check, suppress=True)
    verify = actions.add_parser(
        "verify-log", help="vérifie la chaîne d'empreintes du journal des événements"
    )
    _db_options(verify, suppress=True)
    db = actions.add_parser("db", help="tables de la salle (compte propriétaire)")
    dactions = db.add_subparsers(dest="db_action", required=True)
    up = dactions.add_parser("upgrade", help="crée ou met à jour les tables (files et serveur)")
    _db_options(up, suppress=True)
    grant = dactions.add_parser(
        "grant", help="donne au rôle du serveur ses droits (ajout seul sur les journaux)"
    )
    grant.add_argument("--to", required=True, help="rôle PostgreSQL du serveur")
    grant.add_argument("--print", action="store_true", help="affiche les instructions SQL")
    _db_options(grant, suppress=True)


def run_server_command(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from sas_desk.server.settings import (
        ServerSettings,
        SettingsError,
        from_toml,
        parse_listen,
        with_environment,
    )

    try:
        settings = from_toml(args.config) if args.config is not None else ServerSettings()
        overrides: dict[str, Any] = {}
        if args.dsn:
            overrides["dsn"] = args.dsn
        if args.schema:
            overrides["schema"] = args.schema
        if getattr(args, "listen", None):
            overrides["host"], overrides["port"] = parse_listen(args.listen)
        for key in ("tls_cert", "tls_key", "allow_superuser"):
            if getattr(args, key, None) is not None:
                overrides[key] = getattr(args, key)
        settings = with_environment(replace(settings, **overrides))
        if not settings.dsn:
            raise SettingsError("Serveur : adresse de la base (--dsn) manquante.")
        from sas_desk.server.identity import identity_from_file  # [identity]: OIDC login

        identity = identity_from_file(args.config)
        hub_settings = None
        if args.server_action is None:
            from sas_desk.server.hubsante import hub_from_file  # [hub]: the agent runs here

            hub_settings = hub_from_file(args.config)
    except SettingsError as exc:
        print(f"sas-desk server : {exc.message_fr}", file=sys.stderr)
        return 1
    if args.server_action == "user":
        return asyncio.run(_user_command(settings, args))
    if args.server_action in ("check", "verify-log", "db"):
        from sas_desk.server import admin

        if args.server_action == "check":
            return asyncio.run(admin.check(settings))
        if args.server_action == "verify-log":
            return asyncio.run(admin.verify_log(settings))
        if args.db_action == "upgrade":
            return asyncio.run(admin.upgrade(settings))
        return asyncio.run(admin.grant(settings, args.to, print_only=args.print))
    from sas_desk.server.serve import run

    return run(settings, identity, hub_settings)


def read_password(login: str) -> str:
    """From the terminal (asked twice), or the first line of stdin."""
    if sys.stdin.isatty():
        first = getpass.getpass(f"Mot de passe de {login} : ")
        second = getpass.getpass("Confirmez : ")
        if first != second:
            raise ValueError("les deux saisies diffèrent")
        return first
    return sys.stdin.readline().rstrip("\r\n")


async def _user_command(settings: Any, args: argparse.Namespace) -> int:
    from sas_desk.server.auth import hash_password
    from sas_desk.server.store import Account, AccountExists, StoreUnavailable, open_store

    store = open_store(settings.dsn, settings.schema)
    try:
        await store.open()
    except StoreUnavailable as exc:
        print(f"sas-desk server : {exc.message_fr}", file=sys.stderr)
        return 1
    try:
        if args.user_action == "add":
            try:
                password = read_password(args.login)
            except (ValueError, EOFError) as exc:
                print(f"sas-desk server : mot de passe non lu ({exc}).", file=sys.stderr)
                return 1
            if len(password) < _MIN_PASSWORD:
                print(
                    f"sas-desk server : mot de passe trop court ({_MIN_PASSWORD} caractères au "
                    "moins).",
                    file=sys.stderr,
                )
                return 1
            account = Account(
                login=args.login,
                display_name=args.name,
                roles=tuple(dict.fromkeys(args.role)),
                rpps=args.rpps,
            )
            try:
                await store.add_account(
                    account,
                    await asyncio.to_thread(hash_password, password),
                    datetime.now().astimezone(),
                )
            except AccountExists:
                print(f"sas-desk server : le compte {args.login} existe déjà.", file=sys.stderr)
                return 1
            print(f"Compte {args.login} créé ({', '.join(account.roles)}).")
            return 0
        if args.user_action in ("disable", "enable"):
            if not await store.set_disabled(args.login, args.user_action == "disable"):
                print(f"sas-desk server : compte inconnu : {args.login}.", file=sys.stderr)
                return 1
            state = (
                "désactivé (sessions révoquées)" if args.user_action == "disable" else "réactivé"
            )
            print(f"Compte {args.login} {state}.")
            return 0
        for account in await store.accounts():
            print(
                json.dumps(
                    {
                        "login": account.login,
                        "name": account.display_name,
                        "roles": list(account.roles),
                        "rpps": account.rpps,
                        "disabled": account.disabled,
                    },
                    ensure_ascii=False,
                )
            )
        return 0
    except StoreUnavailable as exc:
        print(f"sas-desk server : {exc.message_fr}", file=sys.stderr)
        return 1
    finally:
        await store.close()
