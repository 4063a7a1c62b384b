"""The room server's own tables, next to the queues (same database, same
schema): accounts, sessions and their tokens, failed logins, and the audit
trail.  Two dialects, one set of statements: PostgreSQL (psycopg, async) and
SQLite (one thread owning the connection).

- Passwords are argon2 hashes (computed by :mod:`sas_desk.server.auth`).
- Tokens are never stored: only their SHA-256.  Sessions survive a restart.
- ``audit`` is insert-only: triggers refuse UPDATE and DELETE (and TRUNCATE
  on PostgreSQL); the deployment also grants the server's role INSERT only.

The version of these tables lives in ``server_schema_version`` (the queues
keep theirs apart), migrated on :meth:`ServerStore.open`.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import contextlib
import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from sas_desk.models.errors import KnownError
from sas_desk.server.settings import sqlite_path

log = logging.getLogger("sas_desk.server.store")
T = TypeVar("T")


class StoreUnavailable(KnownError):
    """The database cannot be reached or refused (French message)."""

    def __init__(self, message_fr: str) -> None:
        super().__init__(message_fr)
        self.message_fr = message_fr


class AccountExists(Exception):
    pass


@dataclass(frozen=True)
class Account:
    login: str
    display_name: str
    roles: tuple[str, ...]
    rpps: str = ""
    disabled: bool = False


@dataclass(frozen=True)
class Principal:
    """Who a valid access token speaks for: the actor of every request."""

    session_id: str
    login: str
    display_name: str
    role: str
    workstation: str


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    operator: str
    role: str
    workstation: str
    client: str  # the client's address as the server saw it
    action: str  # login, login_failed, login_locked, logout, refresh, op:<kind>, read:dossier…
    case_id: str = ""
    outcome: str = "ok"  # ok, or the refusal's code
    detail: dict[str, Any] | None = None


# --------------------------------------------------------------------------- schema

_PG_MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "comptes, sessions, échecs de connexion, audit",
        """
        CREATE TABLE accounts (
            login          text PRIMARY KEY,
            display_name   text NOT NULL DEFAULT '',
            roles          text NOT NULL,
            rpps           text NOT NULL DEFAULT '',
            password_hash  text NOT NULL,
            disabled       boolean NOT NULL DEFAULT false,
            created_at     timestamptz NOT NULL
        );
        CREATE TABLE sessions (
            session_id   text PRIMARY KEY,
            login        text NOT NULL REFERENCES accounts (login),
            role         text NOT NULL,
            workstation  text NOT NULL,
            client       text NOT NULL,
            created_at   timestamptz NOT NULL,
            revoked_at   timestamptz
        );
        CREATE TABLE session_tokens (
            token_hash  text PRIMARY KEY,
            session_id  text NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
            kind        text NOT NULL CHECK (kind IN ('access', 'refresh')),
            expires_at  timestamptz NOT NULL
        );
        CREATE INDEX session_tokens_session ON session_tokens (session_id);
        CREATE TABLE login_failures (
            login  text NOT NULL,
            at     timestamptz NOT NULL
        );
        CREATE INDEX login_failures_login_at ON login_failures (login, at);
        CREATE TABLE audit (
            seq          bigserial PRIMARY KEY,
            at           timestamptz NOT NULL,
            operator     text NOT NULL,
            role         text NOT NULL,
            workstation  text NOT NULL,
            client       text NOT NULL,
            action       text NOT NULL,
            case_id      text NOT NULL DEFAULT '',
            outcome      text NOT NULL DEFAULT 'ok',
            detail       jsonb NOT NULL DEFAULT '{}'::jsonb
        );
        CREATE INDEX audit_case ON audit (case_id, seq);
        CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit en ajout seul : % refusé', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $$;
        CREATE TRIGGER audit_no_update_delete BEFORE UPDATE OR DELETE ON audit
            FOR EACH ROW EXECUTE FUNCTION audit_append_only();
        CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
            FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
        """,
    ),
)

_SQLITE_MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "comptes, sessions, échecs de connexion, audit",
        """
        CREATE TABLE accounts (
            login          TEXT PRIMARY KEY,
            display_name   TEXT NOT NULL DEFAULT '',
            roles          TEXT NOT NULL,
            rpps           TEXT NOT NULL DEFAULT '',
            password_hash  TEXT NOT NULL,
            disabled       INTEGER NOT NULL DEFAULT 0,
            created_at     TEXT NOT NULL
        );
        CREATE TABLE sessions (
            session_id   TEXT PRIMARY KEY,
            login        TEXT NOT NULL REFERENCES accounts (login),
            role         TEXT NOT NULL,
            workstation  TEXT NOT NULL,
            client       TEXT NOT NULL,
            created_at   TEXT NOT NULL,
            revoked_at   TEXT
        );
        CREATE TABLE session_tokens (
            token_hash  TEXT PRIMARY KEY,
            session_id  TEXT NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
            kind        TEXT NOT NULL CHECK (kind IN ('access', 'refresh')),
            expires_at  TEXT NOT NULL
        );
        CREATE INDEX session_tokens_session ON session_tokens (session_id);
        CREATE TABLE login_failures (
            login  TEXT NOT NULL,
            at     TEXT NOT NULL
        );
        CREATE INDEX login_failures_login_at ON login_failures (login, at);
        CREATE TABLE audit (
            seq          INTEGER PRIMARY KEY AUTOINCREMENT,
            at           TEXT NOT NULL,
            operator     TEXT NOT NULL,
            role         TEXT NOT NULL,
            workstation  TEXT NOT NULL,
            client       TEXT NOT NULL,
            action       TEXT NOT NULL,
            case_id      TEXT NOT NULL DEFAULT '',
            outcome      TEXT NOT NULL DEFAULT 'ok',
            detail       TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX audit_case ON audit (case_id, seq);
        CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
            BEGIN SELECT RAISE(ABORT, 'audit en ajout seul : UPDATE refusé'); END;
        CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
            BEGIN SELECT RAISE(ABORT, 'audit en ajout seul : DELETE refusé'); END;
        """,
    ),
)
LATEST_VERSION = _PG_MIGRATIONS[-1][0]
assert _SQLITE_MIGRATIONS[-1][0] == LATEST_VERSION

_VALID_ACCESS = (
    "SELECT s.session_id, s.login, s.role, s.workstation, a.display_name, t.expires_at "
    "FROM session_tokens t JOIN sessions s ON s.session_id = t.session_id "
    "JOIN accounts a ON a.login = s.login "
    "WHERE t.token_hash = %s AND t.kind = 'access' AND t.expires_at > %s "
    "AND s.revoked_at IS NULL AND a.disabled = %s"
)
_VALID_REFRESH = (
    "SELECT s.session_id, s.login, s.role, s.workstation, a.display_name "
    "FROM session_tokens t JOIN sessions s ON s.session_id = t.session_id "
    "JOIN accounts a ON a.login = s.login "
    "WHERE t.token_hash = %s AND t.kind = 'refresh' AND t.expires_at > %s "
    "AND s.revoked_at IS NULL AND a.disabled = %s"
)
_INSERT_TOKEN = (
    "INSERT INTO session_tokens (token_hash, session_id, kind, expires_at) VALUES (%s, %s, %s, %s)"
)
_INSERT_AUDIT = (
    "INSERT INTO audit (at, operator, role, workstation, client, action, case_id, outcome, detail) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


def _principal(row: Sequence[Any]) -> Principal:
    return Principal(
        session_id=row[0], login=row[1], role=row[2], workstation=row[3], display_name=row[4]
    )


def _account(row: Sequence[Any]) -> Account:
    return Account(
        login=row[0],
        display_name=row[1],
        roles=tuple(str(row[2]).split()),
        rpps=row[3],
        disabled=bool(row[4]),
    )


class Tx(abc.ABC):
    """One transaction's cursor, with ``%s`` placeholders on both dialects."""

    @abc.abstractmethod
    def execute(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


class ServerStore(abc.ABC):
    """Accounts, sessions, failed logins and the audit trail."""

    kind: str = "abstract"

    @abc.abstractmethod
    async def open(self, *, migrate: bool = True) -> tuple[int, int]:
        """Connect; migrate when ``migrate``; returns (version found, version now)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def run(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in one transaction (sync body: no awaits inside)."""

    async def is_superuser(self) -> bool:
        return False

    async def ping(self) -> None:
        await self.run(lambda tx: tx.execute("SELECT 1"))

    # ---------------------------------------------------------------- accounts
    async def add_account(self, account: Account, password_hash: str, at: datetime) -> None:
        def add(tx: Tx) -> None:
            if tx.execute("SELECT 1 FROM accounts WHERE login = %s", (account.login,)):
                raise AccountExists(account.login)
            tx.execute(
                "INSERT INTO accounts (login, display_name, roles, rpps, password_hash, "
                "disabled, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    account.login,
                    account.display_name,
                    " ".join(account.roles),
                    account.rpps,
                    password_hash,
                    account.disabled,
                    at,
                ),
            )

        await self.run(add)

    async def set_disabled(self, login: str, disabled: bool) -> bool:
        def update(tx: Tx) -> bool:
            if not tx.execute("SELECT 1 FROM accounts WHERE login = %s", (login,)):
                return False
            tx.execute("UPDATE accounts SET disabled = %s WHERE login = %s", (disabled, login))
            if disabled:
                tx.execute(
                    "DELETE FROM session_tokens WHERE session_id IN "
                    "(SELECT session_id FROM sessions WHERE login = %s)",
                    (login,),
                )
            return True

        return await self.run(update)

    async def set_password_hash(self, login: str, password_hash: str) -> None:
        await self.run(
            lambda tx: tx.execute(
                "UPDATE accounts SET password_hash = %s WHERE login = %s", (password_hash, login)
            )
        )

    async def accounts(self) -> list[Account]:
        rows = await self.run(
            lambda tx: tx.execute(
                "SELECT login, display_name, roles, rpps, disabled FROM accounts ORDER BY login"
            )
        )
        return [_account(r) for r in rows]

    async def account(self, login: str) -> tuple[Account, str] | None:
        rows = await self.run(
            lambda tx: tx.execute(
                "SELECT login, display_name, roles, rpps, disabled, password_hash "
                "FROM accounts WHERE login = %s",
                (login,),
            )
        )
        return (_account(rows[0]), str(rows[0][5])) if rows else None

    # ---------------------------------------------------------------- sessions
    async def create_session(
        self,
        principal: Principal,
        client: str,
        at: datetime,
        tokens: tuple[tuple[str, datetime], tuple[str, datetime]],
    ) -> None:
        (access, access_exp), (refresh, refresh_exp) = tokens

        def create(tx: Tx) -> None:
            tx.execute(
                "INSERT INTO sessions (session_id, login, role, workstation, client, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    principal.session_id,
                    principal.login,
                    principal.role,
                    principal.workstation,
                    client,
                    at,
                ),
            )
            tx.execute(_INSERT_TOKEN, (access, principal.session_id, "access", access_exp))
            tx.execute(_INSERT_TOKEN, (refresh, principal.session_id, "refresh", refresh_exp))

        await self.run(create)

    async def by_access(self, token_hash: str, at: datetime) -> tuple[Principal, datetime] | None:
        """The session of a valid access token, and when the token expires."""
        rows = await self.run(lambda tx: tx.execute(_VALID_ACCESS, (token_hash, at, False)))
        return (_principal(rows[0]), _aware(rows[0][5])) if rows else None

    async def session_open(self, session_id: str) -> bool:
        """Whether a session is neither revoked nor its account disabled
        (a stream that outlives its access token checks this)."""
        rows = await self.run(
            lambda tx: tx.execute(
                "SELECT 1 FROM sessions s JOIN accounts a ON a.login = s.login "
                "WHERE s.session_id = %s AND s.revoked_at IS NULL AND a.disabled = %s",
                (session_id, False),
            )
        )
        return bool(rows)

    async def rotate(
        self,
        refresh_hash: str,
        at: datetime,
        tokens: tuple[tuple[str, datetime], tuple[str, datetime]],
    ) -> Principal | None:
        """Swap a valid refresh token for a new pair (the old ones die)."""
        (access, access_exp), (refresh, refresh_exp) = tokens

        def rotate(tx: Tx) -> Principal | None:
            rows = tx.execute(_VALID_REFRESH, (refresh_hash, at, False))
            if not rows:
                return None
            principal = _principal(rows[0])
            gone = tx.execute(
                "DELETE FROM session_tokens WHERE session_id = %s RETURNING token_hash",
                (principal.session_id,),
            )
            if refresh_hash not in {r[0] for r in gone}:  # raced by another refresh
                return None
            tx.execute(_INSERT_TOKEN, (access, principal.session_id, "access", access_exp))
            tx.execute(_INSERT_TOKEN, (refresh, principal.session_id, "refresh", refresh_exp))
            return principal

        return await self.run(rotate)

    async def revoke(self, session_id: str, at: datetime) -> None:
        def revoke(tx: Tx) -> None:
            tx.execute(
                "UPDATE sessions SET revoked_at = %s WHERE session_id = %s", (at, session_id)
            )
            tx.execute("DELETE FROM session_tokens WHERE session_id = %s", (session_id,))

        await self.run(revoke)

    async def purge_expired_tokens(self, at: datetime) -> int:
        rows = await self.run(
            lambda tx: tx.execute(
                "DELETE FROM session_tokens WHERE expires_at <= %s RETURNING token_hash", (at,)
            )
        )
        return len(rows)

    # ---------------------------------------------------------------- failed logins
    async def failures_since(self, login: str, since: datetime) -> int:
        rows = await self.run(
            lambda tx: tx.execute(
                "SELECT count(*) FROM login_failures WHERE login = %s AND at > %s", (login, since)
            )
        )
        return int(rows[0][0])

    async def record_failure(self, login: str, at: datetime, forget_before: datetime) -> None:
        def record(tx: Tx) -> None:
            tx.execute("DELETE FROM login_failures WHERE at <= %s", (forget_before,))
            tx.execute("INSERT INTO login_failures (login, at) VALUES (%s, %s)", (login, at))

        await self.run(record)

    async def clear_failures(self, login: str) -> None:
        await self.run(
            lambda tx: tx.execute("DELETE FROM login_failures WHERE login = %s", (login,))
        )

    # ---------------------------------------------------------------- audit
    async def audit(self, entry: AuditEntry) -> None:
        await self.run(lambda tx: tx.execute(_INSERT_AUDIT, self._audit_params(entry)))

    def _audit_params(self, e: AuditEntry) -> tuple[Any, ...]:
        return (
            e.at,
            e.operator,
            e.role,
            e.workstation,
            e.client,
            e.action,
            e.case_id,
            e.outcome,
            json.dumps(e.detail or {}, ensure_ascii=False),
        )

    async def audit_entries(self, case_id: str | None = None) -> list[AuditEntry]:
        where, params = ("WHERE case_id = %s", (case_id,)) if case_id is not None else ("", ())
        rows = await self.run(
            lambda tx: tx.execute(
                "SELECT at, operator, role, workstation, client, action, case_id, outcome, "
                f"detail FROM audit {where} ORDER BY seq",
                params,
            )
        )
        return [
            AuditEntry(
                at=_aware(r[0]),
                operator=r[1],
                role=r[2],
                workstation=r[3],
                client=r[4],
                action=r[5],
                case_id=r[6],
                outcome=r[7],
                detail=r[8] if isinstance(r[8], dict) else json.loads(r[8]),
            )
            for r in rows
        ]


def _aware(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value))


# --------------------------------------------------------------------------- SQLite


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        # fixed width UTC text: compares in time order as text
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    if isinstance(value, bool):
        return int(value)
    return value


class _SqliteTx(Tx):
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self.conn.execute(query.replace("%s", "?"), tuple(_sqlite_value(p) for p in params))
        return [tuple(r) for r in cur.fetchall()]


class SqliteServerStore(ServerStore):
    """The server's tables in the room's SQLite file (a small site)."""

    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def open(self, *, migrate: bool = True) -> tuple[int, int]:
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "sas-desk-server-store")
        try:
            return await self._call(lambda: self._open(migrate))
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"Base SQLite {self.path} inutilisable ({exc}).") from None

    def _open(self, migrate: bool) -> tuple[int, int]:
        conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=10.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        self._conn = conn
        if migrate:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS server_schema_version ("
                " version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
        found = self._version(conn)
        if found > LATEST_VERSION:
            raise StoreUnavailable(
                f"Tables du serveur en version {found}, plus récente que ce serveur "
                f"({LATEST_VERSION}) : mettez SAS Desk à jour."
            )
        if not migrate or found == LATEST_VERSION:
            return found, found
        conn.execute("BEGIN IMMEDIATE")
        try:
            found = self._version(conn)
            for version, description, ddl in _SQLITE_MIGRATIONS:
                if version <= found:
                    continue
                for statement in _split_sqlite(ddl):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO server_schema_version VALUES (?, ?, ?)",
                    (version, description, _sqlite_value(datetime.now(UTC))),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return found, LATEST_VERSION

    @staticmethod
    def _version(conn: sqlite3.Connection) -> int:
        present = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'server_schema_version'"
        ).fetchone()
        if not present:
            return 0
        row = conn.execute("SELECT coalesce(max(version), 0) FROM server_schema_version").fetchone()
        return int(row[0])

    async def _call(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise StoreUnavailable("Base du serveur fermée.")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def close(self) -> None:
        if self._executor is None:
            return

        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await self._call(close)
        self._executor.shutdown(wait=True)
        self._executor = None

    async def run(self, fn: Callable[[Tx], T]) -> T:
        def tx() -> T:
            assert self._conn is not None
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(_SqliteTx(conn))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        try:
            return await self._call(tx)
        except sqlite3.Error as exc:
            log.error("server store (sqlite): %s", exc)
            raise StoreUnavailable(f"Base SQLite {self.path} : {exc}.") from None


def _split_sqlite(ddl: str) -> list[str]:
    """Statements of a DDL script; triggers keep their inner ``;``."""
    out: list[str] = []
    current = ""
    for part in ddl.split(";"):
        current += part + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \n;"):
                out.append(current.strip())
            current = ""
    return out


# --------------------------------------------------------------------------- PostgreSQL


class _PgTx(Tx):
    def __init__(self, cur: psycopg.Cursor[tuple[Any, ...]]) -> None:
        self.cur = cur

    def execute(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.cur.execute(query.encode(), tuple(params))
        return list(self.cur.fetchall()) if self.cur.description else []


class PostgresServerStore(ServerStore):
    """The server's tables in the room's PostgreSQL schema.

    psycopg's synchronous driver on a small thread pool: every call is a
    handful of short statements, and this keeps one body of code for both
    dialects."""

    kind = "postgres"

    def __init__(self, dsn: str, schema: str, *, pool_size: int = 4) -> None:
        self.dsn = dsn
        self.schema = schema
        self._size = pool_size
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._idle: list[psycopg.Connection[tuple[Any, ...]]] = []
        self._lock = asyncio.Lock()

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        conn = psycopg.connect(
            self.dsn,
            connect_timeout=5,
            application_name="sas-desk-server",
            options=f"-c search_path={self.schema},pg_catalog -c statement_timeout=15000",
        )
        return conn

    async def open(self, *, migrate: bool = True) -> tuple[int, int]:
        self._executor = concurrent.futures.ThreadPoolExecutor(self._size, "sas-desk-server-pg")
        try:
            return await self._call(lambda: self._migrate(migrate))
        except psycopg.Error as exc:
            raise StoreUnavailable(_pg_message(exc)) from None

    def _migrate(self, migrate: bool) -> tuple[int, int]:
        conn = self._connect()
        try:
            found = self._version(conn)
            if found > LATEST_VERSION:
                raise StoreUnavailable(
                    f"Tables du serveur en version {found}, plus récente que ce serveur "
                    f"({LATEST_VERSION}) : mettez SAS Desk à jour."
                )
            if not migrate or found == LATEST_VERSION:
                conn.rollback()
                return found, found
            with conn.transaction():
                conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    (f"sas_desk.server.migrate:{self.schema}",),
                )
                conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
                )
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS server_schema_version ("
                    " version integer PRIMARY KEY, description text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
                found = self._version(conn)
                for version, description, ddl in _PG_MIGRATIONS:
                    if version <= found:
                        continue
                    conn.execute(ddl.encode())
                    conn.execute(
                        "INSERT INTO server_schema_version (version, description) VALUES (%s, %s)",
                        (version, description),
                    )
            conn.commit()
            return found, LATEST_VERSION
        finally:
            conn.close()

    def _version(self, conn: psycopg.Connection[tuple[Any, ...]]) -> int:
        row = conn.execute(
            "SELECT to_regclass(format('%%I.server_schema_version', %s::text)) IS NOT NULL",
            (self.schema,),
        ).fetchone()
        if not row or not row[0]:
            return 0
        row = conn.execute(
            sql.SQL("SELECT coalesce(max(version), 0) FROM {}").format(
                sql.Identifier(self.schema, "server_schema_version")
            )
        ).fetchone()
        return int(row[0]) if row else 0

    async def _call(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise StoreUnavailable("Base du serveur fermée.")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def close(self) -> None:
        if self._executor is None:
            return
        executor, self._executor = self._executor, None
        idle, self._idle = self._idle, []

        def close() -> None:
            for conn in idle:
                conn.close()

        await asyncio.get_running_loop().run_in_executor(executor, close)
        executor.shutdown(wait=True)

    async def is_superuser(self) -> bool:
        rows = await self.run(
            lambda tx: tx.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        )
        return bool(rows and rows[0][0])

    async def run(self, fn: Callable[[Tx], T]) -> T:
        def tx() -> T:
            for attempt in (0, 1):
                conn = None
                if not attempt:
                    with contextlib.suppress(IndexError):
                        conn = self._idle.pop()
                if conn is None:  # the retry is on a fresh connection
                    conn = self._connect()
                try:
                    with conn.transaction(), conn.cursor() as cur:
                        result = fn(_PgTx(cur))
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    conn.close()
                    # the database restarted or killed our sessions: the
                    # other idle connections are as dead as this one
                    idle, self._idle = self._idle, []
                    for dead in idle:
                        dead.close()
                    if attempt:
                        raise
                    continue
                except BaseException:
                    conn.close()
                    raise
                if conn.closed or conn.broken:
                    conn.close()
                else:
                    self._idle.append(conn)
                return result
            raise AssertionError("unreachable")

        try:
            return await self._call(tx)
        except psycopg.Error as exc:
            log.error("server store (postgres): %s", exc.sqlstate or type(exc).__name__)
            raise StoreUnavailable(_pg_message(exc)) from None


def _pg_message(exc: psycopg.Error) -> str:
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return "Base PostgreSQL du serveur injoignable."
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return "Droits insuffisants sur la base PostgreSQL du serveur."
    return f"La base PostgreSQL a refusé l'opération (code {exc.sqlstate or 'inconnu'})."


def open_store(dsn: str, schema: str) -> ServerStore:
    path = sqlite_path(dsn)
    if path is not None:
        return SqliteServerStore(path)
    return PostgresServerStore(dsn, schema)
