"""The room server's administration: ``server check``, ``server verify-log``,
``server db upgrade`` and ``server db grant`` (docs/deploy-room-server.md).

Each returns an exit code and prints French lines: what is fine, what is not
and what to do.
"""

from __future__ import annotations

import ssl
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sas_desk.server.settings import ServerSettings, SettingsError
from sas_desk.server.store import LATEST_VERSION as SERVER_TABLES_VERSION
from sas_desk.server.store import StoreUnavailable, open_store
from sas_desk.services.queues.api import BackendUnavailable

EXPIRY_WARNING = timedelta(days=30)
# the server's rights per table: the logs are insert-only, the versions and
# the accounts read-only (the administrator manages accounts); the rest is
# the live state of the room
INSERT_ONLY = ("events", "audit")
READ_ONLY = ("schema_version", "server_schema_version", "accounts")
READ_WRITE = "SELECT, INSERT, UPDATE, DELETE"


@dataclass(frozen=True)
class Finding:
    ok: bool
    message_fr: str


def _say(findings: list[Finding]) -> int:
    for f in findings:
        print(
            f"{'OK     ' if f.ok else 'ERREUR '} {f.message_fr}",
            file=sys.stdout if f.ok else sys.stderr,
        )
    return 0 if all(f.ok for f in findings) else 1


# --------------------------------------------------------------------------- check


def check_certificate(cert: Path, key: Path, now: datetime) -> list[Finding]:
    """Readable, matching its key, and not expired (a warning 30 days before)."""
    from cryptography import x509

    try:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return [Finding(False, f"Certificat {cert} ou clé {key} inutilisable ({reason}).")]
    try:
        leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    except (OSError, ValueError) as exc:
        return [Finding(False, f"Certificat {cert} illisible ({exc}).")]
    not_after = leaf.not_valid_after_utc
    if not_after <= now:
        return [Finding(False, f"Certificat {cert} expiré depuis le {not_after:%d/%m/%Y}.")]
    if leaf.not_valid_before_utc > now:
        return [
            Finding(
                False,
                f"Certificat {cert} pas encore valide (à partir du {leaf.not_valid_before_utc:%d/%m/%Y}).",
            )
        ]
    if not_after - now < EXPIRY_WARNING:
        return [
            Finding(
                True,
                f"Certificat {cert} valide, mais il expire le {not_after:%d/%m/%Y} : renouvelez-le.",
            )
        ]
    return [Finding(True, f"Certificat {cert} valide jusqu'au {not_after:%d/%m/%Y}.")]


async def _queue_tables_version(settings: ServerSettings) -> tuple[int, int]:
    """(version found, version this program writes) of the queues' tables."""
    path = settings.sqlite_path
    if path is not None:
        import sqlite3

        from sas_desk.services.queues.sqlite import SCHEMA_VERSION

        if not path.exists():
            return 0, SCHEMA_VERSION
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return int(db.execute("PRAGMA user_version").fetchone()[0]), SCHEMA_VERSION
        finally:
            db.close()
    import psycopg
    from psycopg import sql

    from sas_desk.services.queues.postgres import LATEST_VERSION

    async with await psycopg.AsyncConnection.connect(settings.dsn, connect_timeout=5) as conn:
        cur = await conn.execute(
            "SELECT to_regclass(format('%%I.schema_version', %s::text)) IS NOT NULL",
            (settings.schema,),
        )
        row = await cur.fetchone()
        if not row or not row[0]:
            return 0, LATEST_VERSION
        cur = await conn.execute(
            sql.SQL("SELECT coalesce(max(version), 0) FROM {}").format(
                sql.Identifier(settings.schema, "schema_version")
            )
        )
        row = await cur.fetchone()
        return (int(row[0]) if row else 0), LATEST_VERSION


async def check(settings: ServerSettings) -> int:
    findings: list[Finding] = []
    try:
        settings = settings.checked()
    except SettingsError as exc:
        return _say([Finding(False, exc.message_fr)])
    where = "boucle locale, sans TLS" if not settings.tls else "TLS"
    findings.append(
        Finding(True, f"Configuration valide ({settings.host}:{settings.port}, {where}).")
    )
    if settings.tls_cert is not None and settings.tls_key is not None:
        findings += check_certificate(settings.tls_cert, settings.tls_key, datetime.now(UTC))
    store = open_store(settings.dsn, settings.schema)
    try:
        found, _ = await store.open(migrate=False)
        if found != SERVER_TABLES_VERSION:
            findings.append(
                Finding(
                    False,
                    f"Tables du serveur en version {found}, attendue {SERVER_TABLES_VERSION} : lancez « sas-desk server db upgrade » avec le compte propriétaire.",
                )
            )
        else:
            findings.append(
                Finding(
                    True,
                    f"Base joignable ({store.kind}), tables du serveur à jour (version {found}).",
                )
            )
        if await store.is_superuser():
            findings.append(
                Finding(
                    settings.allow_superuser,
                    "Le compte PostgreSQL du serveur est superutilisateur"
                    + (
                        " (accepté par --allow-superuser)."
                        if settings.allow_superuser
                        else " : utilisez un compte aux droits limités (docs/deploy-room-server.md)."
                    ),
                )
            )
    except StoreUnavailable as exc:
        findings.append(Finding(False, exc.message_fr))
        return _say(findings)
    finally:
        await store.close()
    try:
        found, latest = await _queue_tables_version(settings)
    except Exception as exc:  # the driver's errors: unreachable, refused
        findings.append(Finding(False, f"Tables des files illisibles ({type(exc).__name__})."))
        return _say(findings)
    if found != latest:
        findings.append(
            Finding(
                False,
                f"Tables des files en version {found}, attendue {latest} : lancez « sas-desk server db upgrade » avec le compte propriétaire.",
            )
        )
    else:
        findings.append(Finding(True, f"Tables des files à jour (version {found})."))
    return _say(findings)


# --------------------------------------------------------------------------- verify-log


async def verify_log(settings: ServerSettings) -> int:
    from sas_desk.server.app import ServerClock
    from sas_desk.server.serve import open_backend

    backend = open_backend(settings, ServerClock())
    try:
        await backend.open()
        breaks = await backend.verify_log()
    except BackendUnavailable as exc:
        print(f"sas-desk server : {exc.message_fr}", file=sys.stderr)
        return 1
    finally:
        await backend.close()
    if not breaks:
        print("Journal des événements intact : aucune rupture de la chaîne d'empreintes.")
        return 0
    for b in breaks:
        at = f"événement {b.seq}" if b.seq is not None else "fin du journal"
        print(f"RUPTURE {b.case_id} ({at}) : {b.what_fr}")
    print(f"{len(breaks)} rupture(s) de la chaîne d'empreintes : journal altéré.", file=sys.stderr)
    return 1


# --------------------------------------------------------------------------- db


async def upgrade(settings: ServerSettings) -> int:
    """Create or migrate the queues' tables and the server's own."""
    from sas_desk.server.app import ServerClock
    from sas_desk.server.serve import open_backend

    store = open_store(settings.dsn, settings.schema)
    backend = open_backend(settings, ServerClock())
    try:
        await backend.open()  # migrates the queues' tables
        before, after = await store.open(migrate=True)
    except (BackendUnavailable, StoreUnavailable) as exc:
        print(f"sas-desk server : {exc.message_fr}", file=sys.stderr)
        return 1
    finally:
        await backend.close()
        await store.close()
    print(f"Tables des files à jour ; tables du serveur : version {before} → {after}.")
    return 0


def grant_statements(schema: str, role: str, tables: list[str]) -> list[str]:
    """The statements giving ``role`` exactly the server's rights on ``schema``."""
    from psycopg import sql

    s, r = sql.Identifier(schema), sql.Identifier(role)
    out = [
        sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM PUBLIC, {}").format(s, r),
        sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(s),
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, r),
    ]
    for table in sorted(tables):
        rights = (
            "SELECT, INSERT"
            if table in INSERT_ONLY
            else "SELECT"
            if table in READ_ONLY
            else READ_WRITE
        )
        out.append(
            sql.SQL("GRANT " + rights + " ON {} TO {}").format(sql.Identifier(schema, table), r)
        )
    out.append(sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA {} TO {}").format(s, r))
    return [q.as_string(None) for q in out]


async def grant(settings: ServerSettings, role: str, *, print_only: bool) -> int:
    if settings.sqlite_path is not None:
        print(
            "sas-desk server : « db grant » concerne PostgreSQL (SQLite n'a pas de rôles).",
            file=sys.stderr,
        )
        return 1
    import psycopg

    try:
        async with await psycopg.AsyncConnection.connect(
            settings.dsn, connect_timeout=5, autocommit=True
        ) as conn:
            cur = await conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,))
            row = await cur.fetchone()
            if row is None:
                print(f"sas-desk server : rôle PostgreSQL inconnu : {role}.", file=sys.stderr)
                return 1
            if row[0]:
                print(
                    f"sas-desk server : le rôle {role} est superutilisateur : créez un rôle NOSUPERUSER pour le serveur.",
                    file=sys.stderr,
                )
                return 1
            cur = await conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", (settings.schema,)
            )
            tables = [r[0] for r in await cur.fetchall()]
            if not tables:
                print(
                    f"sas-desk server : schéma {settings.schema} vide : lancez d'abord « sas-desk server db upgrade ».",
                    file=sys.stderr,
                )
                return 1
            statements = grant_statements(settings.schema, role, tables)
            if print_only:
                for statement in statements:
                    print(f"{statement};")
                return 0
            async with conn.transaction():
                for statement in statements:
                    await conn.execute(statement.encode())
    except psycopg.Error as exc:
        print(
            f"sas-desk server : droits non appliqués ({exc.sqlstate or type(exc).__name__}).",
            file=sys.stderr,
        )
        return 1
    print(
        f"Droits du rôle {role} appliqués sur le schéma {settings.schema} ({len(tables)} tables)."
    )
    return 0
