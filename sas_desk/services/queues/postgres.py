"""PostgreSQL queue backend: the regulation room (plateau) and remote regulators.

Everything lives in one schema of one database (``sas_desk`` by default):
the queue items, the server copy of the dossiers, their append-only event
log and the outcome of every applied operation (idempotency).  Each
operation is one transaction: the ``applied_ops`` row is inserted first
(``ON CONFLICT DO NOTHING``: a replay, even racing with the original, finds
the stored outcome), the item row is locked (``SELECT … FOR UPDATE``, so one
of N concurrent claimers wins and the others see its claim), the event is
appended, and a ``NOTIFY`` on ``<schema>_changes`` (payload
``queue:case_id:version``) fires when the transaction commits.  Pipeline mode
keeps that to two round trips (what a remote regulator on a VPN feels).  Watchers
``LISTEN`` on a connection of their own and turn notifications into change
sets; after a lost connection they reconnect with backoff and start again
with a full ``reset`` snapshot, so nothing is missed.

A lost connection is retried once on a fresh connection (an operation that
may or may not have committed is safe to retry: same ``op_id``); after that
:class:`BackendUnavailable` is raised with a French message.  No psycopg
exception leaves this module.

The password, if any, comes from the DSN, from libpq's usual sources
(``PGPASSWORD``, ``~/.pgpass``) or from the system keyring (service
``sas-desk``, user ``postgres:<user>@<host>``).  The DSN is only ever logged
without its password.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import math
import re
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb

from sas_desk.models.dossier import (
    Actor,
    Dossier,
    Event,
    EventKind,
)
from sas_desk.models.queue import (
    ROLE_QUEUES,
    ChangeSet,
    Claim,
    ClaimConflict,
    ItemStatus,
    LogBreak,
    NotFound,
    NotHolder,
    Operation,
    QueueError,
    QueueItem,
    QueueName,
    WaitLimits,
    ordered,
    priority_rank,
)
from sas_desk.services.queues.api import (
    AUDIT_COLUMNS,
    DEFAULT_LEASE_S,
    OPERATION_KINDS,
    AuditRow,
    BackendUnavailable,
    QueueBackend,
)
from sas_desk.services.queues.machine import (
    NEEDS_DOSSIER,
    Change,
    check_operation,
    expired,
    lease_end,
    op_id_reused,
    seal,
    transition,
    verify_log,
)

__all__ = ["LATEST_VERSION", "MIGRATIONS", "PostgresBackend", "SchemaTooNew", "upgrade"]

log = logging.getLogger("sas_desk.queues.postgres")
T = TypeVar("T")
Conn = psycopg.AsyncConnection[DictRow]

KEYRING_SERVICE = "sas-desk"
SSL_KEYS = ("sslmode", "sslrootcert", "sslcert", "sslkey")
_SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,47}")  # + "_changes" stays a valid channel name
# a dead peer is noticed by TCP after ~keepalives_idle + interval * count seconds
_TCP_DEFAULTS: dict[str, str | int] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}
_SESSION_OPTIONS = (
    "-c statement_timeout=15000 -c lock_timeout=10000 -c idle_in_transaction_session_timeout=60000"
)
# errors meaning "the server or the link is gone (or the transaction was
# rolled back by the server)": the operation can be retried as is
_LOST: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    TimeoutError,
    OSError,
)
_UNREACHABLE_FR = "Serveur des files injoignable."
_CLOSED_FR = "Connexion au serveur des files fermée."
_LISTEN_BACKOFF_START = 0.1
_LISTEN_BACKOFF_MAX = 5.0
_COALESCE_S = 0.010
_HEARTBEAT_S = 5.0
_RECONNECT_EXTRA_S = 2.0
_DEFAULT_LIMITS = WaitLimits()


# --------------------------------------------------------------------------- schema

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "files, dossiers, événements, opérations appliquées",
        """
        CREATE TABLE dossiers (
            case_id     text PRIMARY KEY,
            data        jsonb NOT NULL,
            updated_at  timestamptz NOT NULL
        );
        CREATE TABLE events (
            seq          bigserial PRIMARY KEY,
            case_id      text NOT NULL,
            at           timestamptz NOT NULL,
            kind         text NOT NULL,
            role         text NOT NULL,
            operator     text NOT NULL,
            workstation  text NOT NULL,
            op_id        text,
            data         jsonb NOT NULL DEFAULT '{}'::jsonb
        );
        CREATE INDEX events_case_seq ON events (case_id, seq);
        CREATE TABLE items (
            case_id            text PRIMARY KEY REFERENCES dossiers (case_id),
            queue              text NOT NULL,
            status             text NOT NULL CHECK (status IN ('WAITING', 'CLAIMED', 'CLOSED')),
            priority           text NOT NULL,
            priority_rank      smallint NOT NULL,
            waiting_since      timestamptz NOT NULL,
            motive_code        text NOT NULL DEFAULT '',
            motive_label       text NOT NULL DEFAULT '',
            commune            text NOT NULL DEFAULT '',
            age                text NOT NULL DEFAULT '',
            sex                text NOT NULL DEFAULT '',
            claim_workstation  text,
            claim_operator     text,
            claim_role         text,
            claimed_at         timestamptz,
            expires_at         timestamptz,
            version            bigint NOT NULL,
            alert              text NOT NULL DEFAULT '',
            updated_at         timestamptz NOT NULL,
            CHECK ((status = 'CLAIMED') = (claim_workstation IS NOT NULL)),
            CHECK ((status = 'CLAIMED') = (expires_at IS NOT NULL))
        );
        CREATE INDEX items_queue_order ON items (queue, priority_rank, waiting_since, case_id)
            WHERE status <> 'CLOSED';
        CREATE INDEX items_claims ON items (claim_workstation) WHERE status = 'CLAIMED';
        CREATE INDEX items_expiry ON items (expires_at) WHERE status = 'CLAIMED';
        CREATE TABLE applied_ops (
            op_id       text PRIMARY KEY,
            kind        text NOT NULL,
            case_id     text NOT NULL,
            applied_at  timestamptz NOT NULL,
            outcome     jsonb
        );
        """,
    ),
    (
        2,
        "journal des événements en ajout seul",
        """
        CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'journal des événements en ajout seul : % refusé', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $$;
        CREATE TRIGGER events_no_update_delete BEFORE UPDATE OR DELETE ON events
            FOR EACH ROW EXECUTE FUNCTION events_append_only();
        CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
            FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();
        """,
    ),
    (
        3,
        "journal chaîné par empreintes",
        # each event carries the hash of the previous event of its dossier and
        # its own (services/queues/machine.py); the item keeps its dossier's
        # last hash, so a deleted last event shows.  Older events stay unchained.
        """
        ALTER TABLE events ADD COLUMN prev_hash text NOT NULL DEFAULT '';
        ALTER TABLE events ADD COLUMN hash text NOT NULL DEFAULT '';
        ALTER TABLE items ADD COLUMN log_head text NOT NULL DEFAULT '';
        """,
    ),
)
LATEST_VERSION = MIGRATIONS[-1][0]


class SchemaTooNew(BackendUnavailable):
    """The server's schema was written by a newer SAS Desk."""

    def __init__(self, schema: str, found: int) -> None:
        super().__init__(
            f"Le schéma {schema} du serveur des files est en version {found}, plus récente que "
            f"celle de ce poste ({LATEST_VERSION}) : mettez SAS Desk à jour."
        )
        self.found = found


def _check_schema(schema: str) -> str:
    if not _SCHEMA_RE.fullmatch(schema):
        raise ValueError(
            f"Nom de schéma invalide « {schema} » : minuscules, chiffres et _ (48 au plus)."
        )
    return schema


def redact(dsn: str) -> str:
    """The DSN without its password, for logs and messages."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "<DSN illisible>"
    params.pop("password", None)
    return make_conninfo("", **params)


class _Connector:
    """Opens connections: DSN + keyring password + SSL + session settings."""

    def __init__(
        self,
        dsn: str,
        schema: str,
        *,
        application_name: str,
        connect_timeout: float,
        ssl: Mapping[str, str] | None,
    ) -> None:
        try:
            self.params: dict[str, Any] = conninfo_to_dict(dsn)
        except psycopg.Error:
            raise ValueError("Adresse (DSN) du serveur des files invalide.") from None
        bad = set(ssl or {}) - set(SSL_KEYS)
        if bad:
            raise ValueError(f"Paramètres SSL inconnus : {', '.join(sorted(bad))}.")
        self.dsn = dsn
        self.schema = _check_schema(schema)
        self.application_name = application_name
        self.connect_timeout = connect_timeout
        self.ssl = dict(ssl or {})
        self.safe_dsn = redact(dsn)
        # the schema name is [a-z0-9_] only: no quoting needed in options
        self._options = f"-c search_path={self.schema},pg_catalog {_SESSION_OPTIONS}"
        self._password: str | None = None
        self._password_looked_up = "password" in self.params

    async def _keyring_password(self) -> str | None:
        if self._password_looked_up:
            return self._password

        def lookup() -> str | None:
            try:
                user = str(self.params.get("user") or getpass.getuser())
                host = str(self.params.get("host") or self.params.get("hostaddr") or "localhost")
                import keyring

                return keyring.get_password(KEYRING_SERVICE, f"postgres:{user}@{host}")
            except Exception as exc:  # no usable keyring: libpq's own sources remain
                log.debug("keyring lookup failed: %s", type(exc).__name__)
                return None

        self._password = await asyncio.to_thread(lookup)
        self._password_looked_up = True
        return self._password

    async def connect(self, purpose: str = "") -> Conn:
        if sys.platform == "win32" and isinstance(
            asyncio.get_running_loop(), asyncio.ProactorEventLoop
        ):
            # psycopg refuses it; saying "unreachable" would send people chasing the network
            raise BackendUnavailable(
                "Serveur des files inutilisable depuis ce poste : la boucle d'événements "
                "Windows (Proactor) n'est pas prise en charge par le pilote PostgreSQL."
            )
        kwargs: dict[str, Any] = {
            key: value for key, value in _TCP_DEFAULTS.items() if key not in self.params
        }
        kwargs.update({key: value for key, value in self.ssl.items() if value})
        kwargs["application_name"] = (
            f"{self.application_name}{purpose}" if purpose else self.application_name
        )
        timeout = max(2, math.ceil(self.connect_timeout))
        kwargs["connect_timeout"] = timeout
        # session settings travel in the startup packet: no extra round trip
        kwargs["options"] = " ".join(
            filter(None, (str(self.params.get("options") or ""), self._options))
        )
        password = await self._keyring_password()
        if password is not None:
            kwargs["password"] = password
        # psycopg enforces connect_timeout per host; this also bounds name resolution
        async with asyncio.timeout(timeout * 2 + _RECONNECT_EXTRA_S):
            conn = await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, row_factory=dict_row, **kwargs
            )
        return conn


async def _read_version(conn: Conn, schema: str) -> int:
    cur = await conn.execute(
        "SELECT to_regclass(format('%%I.schema_version', %s::text)) IS NOT NULL AS present",
        (schema,),
    )
    row = await cur.fetchone()
    if not row or not row["present"]:
        return 0
    cur = await conn.execute(
        sql.SQL("SELECT coalesce(max(version), 0) AS v FROM {}").format(
            sql.Identifier(schema, "schema_version")
        )
    )
    row = await cur.fetchone()
    return int(row["v"]) if row else 0


async def _migrate(conn: Conn, schema: str) -> tuple[int, int]:
    """Bring ``schema`` to :data:`LATEST_VERSION`; returns (from, to)."""
    found = await _read_version(conn, schema)
    if found > LATEST_VERSION:
        raise SchemaTooNew(schema, found)
    if found == LATEST_VERSION:
        return found, found
    ident = sql.Identifier(schema)
    async with conn.transaction():
        # one migrator at a time per schema (two workstations starting together)
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"sas_desk.migrate:{schema}",)
        )
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
        await conn.execute(sql.SQL("SET LOCAL search_path TO {}, pg_catalog").format(ident))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version integer PRIMARY KEY, description text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        found = await _read_version(conn, schema)  # again, under the lock
        if found > LATEST_VERSION:
            raise SchemaTooNew(schema, found)
        for version, description, ddl in MIGRATIONS:
            if version <= found:
                continue
            await conn.execute(sql.SQL(ddl))
            await conn.execute(
                "INSERT INTO schema_version (version, description) VALUES (%s, %s)",
                (version, description),
            )
            log.info("schema %s migrated to version %d (%s)", schema, version, description)
    return found, LATEST_VERSION


async def upgrade(dsn: str, schema: str = "sas_desk") -> tuple[int, int]:
    """Create or migrate ``schema``; returns (version before, version after).

    Raises :class:`BackendUnavailable` (French message) when the server
    cannot be reached or refuses, ``ValueError`` for a bad DSN or schema."""
    connector = _Connector(
        dsn, schema, application_name="sas-desk db upgrade", connect_timeout=5.0, ssl=None
    )
    try:
        conn = await connector.connect()
    except _LOST as exc:
        raise BackendUnavailable(_unreachable_message(exc)) from exc
    try:
        return await _migrate(conn, schema)
    except _LOST as exc:
        raise BackendUnavailable(_unreachable_message(exc)) from exc
    except psycopg.Error as exc:
        raise BackendUnavailable(_refused_message(exc)) from exc
    finally:
        await conn.close()


def _unreachable_message(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"{_UNREACHABLE_FR} (délai dépassé)"
    if isinstance(exc, psycopg.errors.AdminShutdown):
        return f"{_UNREACHABLE_FR} (connexion coupée par le serveur)"
    return _UNREACHABLE_FR


def _refused_message(exc: psycopg.Error) -> str:
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return (
            "Droits insuffisants sur le serveur des files pour créer ou mettre à jour le schéma "
            "(lancez « sas-desk db upgrade » avec un compte administrateur)."
        )
    return f"Le serveur des files a refusé l'opération (code {exc.sqlstate or 'inconnu'})."


# --------------------------------------------------------------------------- pool


class _Pool:
    """A handful of connections shared by the operations of one workstation."""

    def __init__(self, connector: _Connector, size: int) -> None:
        self._connector = connector
        self._slots = asyncio.Semaphore(size)
        self._idle: list[Conn] = []
        self._all: set[Conn] = set()
        self.closed = False

    @contextlib.asynccontextmanager
    async def connection(self, *, fresh: bool = False) -> AsyncIterator[Conn]:
        async with self._slots:
            if self.closed:
                raise BackendUnavailable(_CLOSED_FR)
            if fresh:
                await self.discard_idle()
            conn = self._idle.pop() if self._idle else await self._new()
            try:
                yield conn
            finally:
                if (
                    not self.closed
                    and not conn.closed
                    and not conn.broken
                    and conn.info.transaction_status == TransactionStatus.IDLE
                ):
                    self._idle.append(conn)
                else:
                    await self._drop(conn)

    async def _new(self) -> Conn:
        conn = await self._connector.connect()
        self._all.add(conn)
        return conn

    async def _drop(self, conn: Conn) -> None:
        self._all.discard(conn)
        with contextlib.suppress(Exception):
            await conn.close()

    async def discard_idle(self) -> None:
        """After a lost connection the idle ones are most likely dead too."""
        idle, self._idle = self._idle, []
        for conn in idle:
            await self._drop(conn)

    async def close(self) -> None:
        self.closed = True
        self._idle = []
        for conn in list(self._all):
            await self._drop(conn)


# --------------------------------------------------------------------------- rows


def _local(value: datetime) -> datetime:
    return value.astimezone()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.astimezone()


def _item_from_row(row: Mapping[str, Any]) -> QueueItem:
    claim = None
    if row["claim_workstation"] is not None:
        claim = Claim(
            workstation=row["claim_workstation"],
            operator=row["claim_operator"] or "",
            role=row["claim_role"] or "",
            claimed_at=_local(row["claimed_at"]),
            expires_at=_local(row["expires_at"]),
        )
    return QueueItem(
        case_id=row["case_id"],
        queue=QueueName(row["queue"]),
        status=ItemStatus(row["status"]),
        priority=row["priority"],
        waiting_since=_local(row["waiting_since"]),
        motive_code=row["motive_code"],
        motive_label=row["motive_label"],
        commune=row["commune"],
        age=row["age"],
        sex=row["sex"],
        claim=claim,
        version=int(row["version"]),
        alert=row["alert"],
    )


def _item_params(item: QueueItem, at: datetime, head: str) -> dict[str, Any]:
    c = item.claim
    return {
        "case_id": item.case_id,
        "queue": item.queue.value,
        "status": item.status.value,
        "priority": item.priority,
        "priority_rank": priority_rank(item.priority),
        "waiting_since": item.waiting_since,
        "motive_code": item.motive_code,
        "motive_label": item.motive_label,
        "commune": item.commune,
        "age": item.age,
        "sex": item.sex,
        "claim_workstation": c.workstation if c else None,
        "claim_operator": c.operator if c else None,
        "claim_role": c.role if c else None,
        "claimed_at": c.claimed_at if c else None,
        "expires_at": c.expires_at if c else None,
        "version": item.version,
        "alert": item.alert,
        "updated_at": at,
        "log_head": head,
    }


def _claim_json(claim: Claim | None) -> dict[str, Any] | None:
    if claim is None:
        return None
    return {
        "workstation": claim.workstation,
        "operator": claim.operator,
        "role": claim.role,
        "claimed_at": claim.claimed_at.isoformat(),
        "expires_at": claim.expires_at.isoformat(),
    }


def _claim_from_json(raw: Mapping[str, Any] | None) -> Claim | None:
    if raw is None:
        return None
    return Claim(
        workstation=raw["workstation"],
        operator=raw["operator"],
        role=raw["role"],
        claimed_at=_local(datetime.fromisoformat(raw["claimed_at"])),
        expires_at=_local(datetime.fromisoformat(raw["expires_at"])),
    )


def _item_json(item: QueueItem) -> dict[str, Any]:
    return {
        "case_id": item.case_id,
        "queue": item.queue.value,
        "status": item.status.value,
        "priority": item.priority,
        "waiting_since": item.waiting_since.isoformat(),
        "motive_code": item.motive_code,
        "motive_label": item.motive_label,
        "commune": item.commune,
        "age": item.age,
        "sex": item.sex,
        "claim": _claim_json(item.claim),
        "version": item.version,
        "alert": item.alert,
    }


def _item_from_json(raw: Mapping[str, Any]) -> QueueItem:
    return QueueItem(
        case_id=raw["case_id"],
        queue=QueueName(raw["queue"]),
        status=ItemStatus(raw["status"]),
        priority=raw["priority"],
        waiting_since=datetime.fromisoformat(raw["waiting_since"]),
        motive_code=raw["motive_code"],
        motive_label=raw["motive_label"],
        commune=raw["commune"],
        age=raw["age"],
        sex=raw["sex"],
        claim=_claim_from_json(raw["claim"]),
        version=int(raw["version"]),
        alert=raw["alert"],
    )


def _error_json(exc: QueueError, case_id: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "error": type(exc).__name__,
        "message_fr": exc.message_fr,
        "code": exc.code,
        "case_id": case_id,
    }
    if isinstance(exc, ClaimConflict | NotHolder):
        out["claim"] = _claim_json(exc.claim)
    return out


def _error_from_json(raw: Mapping[str, Any]) -> QueueError:
    kind = raw["error"]
    if kind == "ClaimConflict":
        claim = _claim_from_json(raw["claim"])
        assert claim is not None
        return ClaimConflict(claim)
    if kind == "NotFound":
        return NotFound(raw["case_id"])
    if kind == "NotHolder":
        return NotHolder(raw["case_id"], _claim_from_json(raw.get("claim")))
    return QueueError(raw["message_fr"], raw.get("code", ""))


def _outcome_result(outcome: Mapping[str, Any]) -> QueueItem | None:
    if "error" in outcome:
        raise _error_from_json(outcome)
    raw = outcome.get("item")
    return _item_from_json(raw) if raw is not None else None


def _event_from_row(row: Mapping[str, Any]) -> Event:
    return Event(
        dossier_id=row["case_id"],
        at=_local(row["at"]),
        kind=EventKind(row["kind"]),
        actor=Actor(row["role"], row["operator"], row["workstation"]),
        data=dict(row["data"] or {}),
        seq=int(row["seq"]),
        op_id=row["op_id"] or "",
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


# --------------------------------------------------------------------------- SQL

_ITEM_COLUMNS = (
    "case_id",
    "queue",
    "status",
    "priority",
    "priority_rank",
    "waiting_since",
    "motive_code",
    "motive_label",
    "commune",
    "age",
    "sex",
    "claim_workstation",
    "claim_operator",
    "claim_role",
    "claimed_at",
    "expires_at",
    "version",
    "alert",
    "updated_at",
    "log_head",
)
_UPSERT_ITEM = (
    "INSERT INTO items ({cols}) VALUES ({vals}) ON CONFLICT (case_id) DO UPDATE SET {sets}".format(
        cols=", ".join(_ITEM_COLUMNS),
        vals=", ".join(f"%(i_{c})s" for c in _ITEM_COLUMNS),
        sets=", ".join(f"{c} = EXCLUDED.{c}" for c in _ITEM_COLUMNS if c != "case_id"),
    )
)
_INSERT_EVENT = (
    "INSERT INTO events (case_id, at, kind, role, operator, workstation, op_id, data, "
    "prev_hash, hash) VALUES (%(e_case_id)s, %(e_at)s, %(e_kind)s, %(e_role)s, "
    "%(e_operator)s, %(e_workstation)s, %(e_op_id)s, %(e_data)s, %(e_prev_hash)s, %(e_hash)s)"
)
_UPSERT_DOSSIER = (
    "INSERT INTO dossiers (case_id, data, updated_at) VALUES (%(d_case_id)s, %(d_data)s, %(d_at)s) "
    "ON CONFLICT (case_id) DO UPDATE SET data = EXCLUDED.data, updated_at = EXCLUDED.updated_at"
)
_SET_OUTCOME = "UPDATE applied_ops SET outcome = %(o_outcome)s WHERE op_id = %(o_op_id)s"
_SELECT_ITEM = "SELECT * FROM items WHERE case_id = %s FOR UPDATE"
_SELECT_ITEM_DOSSIER = (
    "SELECT i.*, d.data AS dossier FROM items i JOIN dossiers d USING (case_id) "
    "WHERE i.case_id = %s FOR UPDATE OF i, d"
)
# ``set_config(…, true)`` inside the statement lasts for its (implicit,
# autocommit) transaction, commit included: what only records an answer is
# committed without waiting for the WAL flush, in one round trip and without
# an explicit transaction (BEGIN / SET LOCAL / COMMIT cost psycopg's pipeline
# three times the client CPU of the statement itself).
_ASYNC_COMMIT = "set_config('synchronous_commit', 'off', true)"
_RECORD_OUTCOME = (
    "INSERT INTO applied_ops (op_id, kind, case_id, applied_at, outcome) "
    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (op_id) DO NOTHING "
    f"RETURNING op_id, {_ASYNC_COMMIT} AS async_commit"
)
# The room server's audit row of an operation, in the operation's own
# statement or transaction (``apply_audited``): both or neither.
_AUDIT_INTO = f"INSERT INTO audit ({', '.join(AUDIT_COLUMNS)})"
_AUDIT_VALUES = ", ".join(f"%(a_{c})s" for c in AUDIT_COLUMNS)
_INSERT_AUDIT = f"{_AUDIT_INTO} VALUES ({_AUDIT_VALUES})"


def _audit_from(source: str) -> str:
    """A data-modifying CTE writing the audit row once per row of ``source``
    (the write that happened: nothing written, no audit row)."""
    return f"a AS ({_AUDIT_INTO} SELECT {_AUDIT_VALUES} FROM {source})"


def _audit_params(audit: AuditRow, outcome: str) -> dict[str, Any]:
    values = list(audit.values(outcome))
    values[-1] = Jsonb(values[-1])
    return {f"a_{c}": v for c, v in zip(AUDIT_COLUMNS, values, strict=True)}


def _audit_outcome(outcome: Mapping[str, Any]) -> str:
    """``ok``, or the code of the refusal stored as the operation's answer."""
    return str(outcome.get("code") or "refused") if "error" in outcome else "ok"


_RECORD_OUTCOME_AUDITED = (
    "WITH o AS (INSERT INTO applied_ops (op_id, kind, case_id, applied_at, outcome) "
    "VALUES (%(op_id)s, %(kind)s, %(case_id)s, %(stamp)s, %(outcome)s) "
    "ON CONFLICT (op_id) DO NOTHING RETURNING op_id), "
    + _audit_from("o")
    + f" SELECT op_id, {_ASYNC_COMMIT} AS async_commit FROM o"
)
_ROLE_QUEUE_VALUES = {role: [q.value for q in queues] for role, queues in ROLE_QUEUES.items()}
_OPTIMISTIC_TRIES = 8  # then the row-lock path decides


# A claim's first read also refuses it, in the same statement, when someone
# else visibly holds the item in a queue the role works (the rules'
# ClaimConflict, stored as its outcome): the 49 losers of a 50-workstation
# race get their answer in one round trip.  Anything else is decided in
# Python on the row returned.
def _read_or_refuse_claim(*, audited: bool) -> str:
    return (
        "WITH cur AS (SELECT * FROM items WHERE case_id = %(case_id)s), "
        "refused AS (INSERT INTO applied_ops (op_id, kind, case_id, applied_at, outcome) "
        "SELECT %(op_id)s, 'claim', c.case_id, %(stamp)s, jsonb_build_object("
        "'error', 'ClaimConflict', 'code', 'claimed', 'case_id', c.case_id, 'message_fr', '', "
        "'claim', jsonb_build_object('workstation', c.claim_workstation, "
        "'operator', c.claim_operator, 'role', c.claim_role, "
        "'claimed_at', c.claimed_at, 'expires_at', c.expires_at)) "
        "FROM cur c WHERE c.status = 'CLAIMED' AND c.claim_workstation <> %(workstation)s "
        "AND c.expires_at > %(at)s AND c.queue = ANY(%(queues)s) "
        "ON CONFLICT (op_id) DO NOTHING RETURNING outcome) "
        + (", " + _audit_from("refused") + " " if audited else "")
        + f"SELECT cur.*, (SELECT outcome FROM refused) AS refused, {_ASYNC_COMMIT} "
        "AS async_commit FROM cur"
    )


_READ_OR_REFUSE_CLAIM = {flag: _read_or_refuse_claim(audited=flag) for flag in (True, False)}


def _conditional_write(*, event: bool, audited: bool) -> str:
    """One statement that writes the item only if it is still at the version
    read, and with it the applied op, the event and the NOTIFY -- or nothing
    at all.  The row lock lives inside the statement, never across a client
    round trip.  A replayed ``op_id`` fails the whole statement (unique key)."""
    sets = ", ".join(f"{c} = %(i_{c})s" for c in _ITEM_COLUMNS if c != "case_id")
    parts = [
        f"u AS (UPDATE items SET {sets} WHERE case_id = %(i_case_id)s "
        "AND version = %(expected)s RETURNING case_id)",
        "o AS (INSERT INTO applied_ops (op_id, kind, case_id, applied_at, outcome) "
        "SELECT %(o_op_id)s, %(o_kind)s, %(i_case_id)s, %(i_updated_at)s, %(o_outcome)s FROM u)",
    ]
    if event:
        parts.append(
            "e AS (INSERT INTO events (case_id, at, kind, role, operator, workstation, op_id, "
            "data, prev_hash, hash) SELECT %(e_case_id)s, %(e_at)s, %(e_kind)s, %(e_role)s, "
            "%(e_operator)s, %(e_workstation)s, %(e_op_id)s, %(e_data)s, %(e_prev_hash)s, "
            "%(e_hash)s FROM u)"
        )
    if audited:
        parts.append(_audit_from("u"))
    return "WITH " + ", ".join(parts) + " SELECT pg_notify(%(n_channel)s, %(n_payload)s) FROM u"


_CONDITIONAL_WRITE = {
    (event, audited): _conditional_write(event=event, audited=audited)
    for event in (True, False)
    for audited in (True, False)
}


def _write_statement(
    *, item: bool, dossier: bool, event: bool, outcome: bool, audited: bool = False
) -> str:
    """One round trip for the whole write: data-modifying CTEs, and the
    ``pg_notify`` (sent on commit) as the main query."""
    parts = []
    if dossier:
        parts.append(f"d AS ({_UPSERT_DOSSIER})")
    if item:
        parts.append(f"i AS ({_UPSERT_ITEM})")
    if event:
        parts.append(f"e AS ({_INSERT_EVENT})")
    if outcome:
        parts.append(f"o AS ({_SET_OUTCOME})")
    if audited:
        parts.append(f"a AS ({_INSERT_AUDIT})")
    notify = "SELECT pg_notify(%(n_channel)s, %(n_payload)s)" if item else "SELECT 1"
    return ("WITH " + ", ".join(parts) + " " if parts else "") + notify


def _write_params(
    channel: str,
    at: datetime,
    change: Change,
    head: str,
    op_id: str | None,
    outcome: dict[str, Any] | None,
) -> dict[str, Any]:
    """Parameters of :func:`_write_statement` for what the machine decided;
    ``head``: the hash of the dossier's last event, which the event (there is
    one with every item written) is chained to."""
    params: dict[str, Any] = {}
    item, dossier, event = change.item, change.dossier, change.event
    if item is not None:
        assert event is not None, "every item change is logged"
        event = seal(event, head)
        params.update({f"i_{k}": v for k, v in _item_params(item, at, event.hash).items()})
        params["n_channel"] = channel
        params["n_payload"] = f"{item.queue.value}:{item.case_id}:{item.version}"
        row = event.to_row()
        params.update(
            {
                "e_case_id": event.dossier_id,
                "e_at": event.at,
                "e_kind": row["kind"],
                "e_role": row["role"],
                "e_operator": row["operator"],
                "e_workstation": row["workstation"],
                "e_op_id": event.op_id or None,
                "e_data": Jsonb(row["data"]),
                "e_prev_hash": event.prev_hash,
                "e_hash": event.hash,
            }
        )
    if dossier is not None:
        params.update(
            {"d_case_id": dossier.case_id, "d_data": Jsonb(dossier.to_dict()), "d_at": at}
        )
    if outcome is not None:
        params.update({"o_outcome": Jsonb(outcome), "o_op_id": op_id})
    return params


# --------------------------------------------------------------------------- backend


class PostgresBackend(QueueBackend):
    """Queues on a PostgreSQL server, shared by every workstation of the room."""

    name = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        now: Callable[[], datetime],
        limits: WaitLimits = _DEFAULT_LIMITS,
        schema: str = "sas_desk",
        connect_timeout: float = 5.0,
        ssl: dict[str, str] | None = None,
        application_name: str = "sas-desk",
        pool_size: int = 4,
    ) -> None:
        self._connector = _Connector(
            dsn,
            schema,
            application_name=application_name,
            connect_timeout=connect_timeout,
            ssl=ssl,
        )
        self._now = now
        self.limits = limits
        self.schema = schema
        self.channel = f"{schema}_changes"
        self._pool_size = max(1, pool_size)
        self._pool = _Pool(self._connector, self._pool_size)
        self._ready = False
        self._ready_lock = asyncio.Lock()
        self._closed = False
        self._closed_event = asyncio.Event()
        self._watch_conns: set[Conn] = set()
        self._watch_waits: set[asyncio.Task[list[str]]] = set()
        self.reconnects = 0  # connections found dead and replaced (diagnostics)
        self.schema_versions: tuple[int, int] | None = None  # (found, now) at open

    @property
    def safe_dsn(self) -> str:
        return self._connector.safe_dsn

    # ---------------------------------------------------------------- lifecycle
    async def open(self) -> None:
        """Connect and check (or migrate) the schema; also re-opens a closed
        backend.  Raises :class:`BackendUnavailable` when the server cannot
        be used (the backend then keeps trying on every call)."""
        if self._closed:
            self._closed = False
            self._closed_event = asyncio.Event()
            self._pool = _Pool(self._connector, self._pool_size)
            self._ready = False
        await self._ensure_ready()

    async def _ensure_ready(self) -> None:
        if self._closed:
            raise BackendUnavailable(_CLOSED_FR)
        if self._ready:
            return
        async with self._ready_lock:
            if self._ready:
                return
            for attempt in (0, 1):
                try:
                    async with self._pool.connection(fresh=True) as conn:
                        self.schema_versions = await _migrate(conn, self.schema)
                    break
                except BackendUnavailable:
                    raise
                except _LOST as exc:
                    if attempt and not self._closed:
                        log.warning(
                            "queue server %s unreachable: %s", self.safe_dsn, _describe(exc)
                        )
                        raise BackendUnavailable(_unreachable_message(exc)) from exc
                    if self._closed:
                        raise BackendUnavailable(_CLOSED_FR) from exc
                except psycopg.Error as exc:
                    log.error("queue schema %s on %s: %s", self.schema, self.safe_dsn, exc.sqlstate)
                    raise BackendUnavailable(_refused_message(exc)) from exc
            assert self.schema_versions is not None
            self._ready = True
            found, current = self.schema_versions
            if found != current:
                log.info("queue schema %s: version %d -> %d", self.schema, found, current)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._closed_event.set()
        waits = list(self._watch_waits)
        for task in waits:
            task.cancel()
        if waits:
            await asyncio.wait(waits)
        for conn in list(self._watch_conns):
            with contextlib.suppress(Exception):
                await conn.close()
        self._watch_conns.clear()
        await self._pool.close()

    # ---------------------------------------------------------------- plumbing
    async def _run(self, what: str, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``fn`` on a pooled connection; a lost connection is retried once
        on a fresh one (every caller is idempotent), then reported as
        :class:`BackendUnavailable`."""
        await self._ensure_ready()
        for attempt in (0, 1):
            try:
                async with self._pool.connection(fresh=attempt > 0) as conn:
                    return await fn(conn)
            except BackendUnavailable:
                raise
            except _LOST as exc:
                if self._closed:
                    raise BackendUnavailable(_CLOSED_FR) from exc
                self.reconnects += 1
                await self._pool.discard_idle()
                if attempt:
                    log.warning(
                        "queue server %s: %s failed again: %s", self.safe_dsn, what, _describe(exc)
                    )
                    raise BackendUnavailable(_unreachable_message(exc)) from exc
                log.info(
                    "queue server connection lost during %s (%s), retrying", what, _describe(exc)
                )
            except psycopg.Error as exc:
                log.error("queue server refused %s: %s %s", what, exc.sqlstate, type(exc).__name__)
                raise QueueError(_refused_message(exc), "server") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    # ---------------------------------------------------------------- operations
    async def apply(self, op: Operation) -> QueueItem | None:
        return await self._apply(op, None)

    async def apply_audited(self, op: Operation, client: str) -> QueueItem | None:
        return await self._apply(op, AuditRow.of(op, client))

    async def _apply(self, op: Operation, audit: AuditRow | None) -> QueueItem | None:
        if op.kind not in OPERATION_KINDS:
            refusal = QueueError(f"Opération inconnue : « {op.kind} ».", "unknown_kind")
            if audit is not None:  # nothing else is written

                async def audit_only(conn: Conn) -> None:
                    await conn.execute(_INSERT_AUDIT, _audit_params(audit, refusal.code))

                await self._run("audit", audit_only)
            raise refusal
        outcome = await self._run(op.kind, lambda conn: self._apply_tx(conn, op, audit))
        return _outcome_result(outcome)

    async def _apply_tx(self, conn: Conn, op: Operation, audit: AuditRow | None) -> dict[str, Any]:
        stamp = _aware(self._now())  # when the server copy changed (updated_at, applied_at)
        if op.kind not in NEEDS_DOSSIER:
            outcome = await self._apply_optimistic(conn, op, stamp, audit)
            if outcome is not None:
                return outcome
        return await self._apply_locked(conn, op, stamp, audit)

    async def _apply_optimistic(
        self, conn: Conn, op: Operation, stamp: datetime, audit: AuditRow | None
    ) -> dict[str, Any] | None:
        """Operations on the item alone (claim, release, transfer, hand back,
        reassign…): read the committed item without a lock, decide in Python,
        then write with one conditional statement (autocommit).  Nobody waits
        on a lock held across a round trip: fifty workstations clicking the
        same head of queue get their answer in two or three round trips each.
        Returns ``None`` when the item kept changing under us (the locked path
        decides then).

        A claim's read may refuse it in the same statement (see
        ``_READ_OR_REFUSE_CLAIM``): only for a claim that passes
        :func:`machine.check_operation`, where that SQL condition is exactly
        the machine's ``ClaimConflict`` case (item present, in a queue of the
        role, not closed, held by another workstation whose lease runs past
        the operation's time)."""
        try:
            check_operation(op)
            fast_refusal = op.kind == "claim"
        except QueueError:
            fast_refusal = False  # the machine refuses it below, with its own reason
        for _ in range(_OPTIMISTIC_TRIES):
            if fast_refusal:  # every read of a claim may refuse it at once
                row = await self._read_or_refuse_claim(conn, op, stamp, audit)
                if row is not None and row["refused"] is not None:
                    refused: dict[str, Any] = row["refused"]
                    return refused
            else:
                cur = await conn.execute("SELECT * FROM items WHERE case_id = %s", (op.case_id,))
                row = await cur.fetchone()
            item = _item_from_row(row) if row else None
            try:
                change = transition(op, item, None)
            except QueueError as exc:
                return await self._record_outcome(
                    conn, op, stamp, _error_json(exc, op.case_id), audit
                )
            outcome = {"item": _item_json(change.result) if change.result else None}
            if change.item is None or item is None or row is None:
                return await self._record_outcome(conn, op, stamp, outcome, audit)
            params = _write_params(
                self.channel, stamp, change, str(row["log_head"]), op.op_id, None
            )
            params.update(
                {"expected": item.version, "o_op_id": op.op_id, "o_kind": op.kind}
                | {"o_outcome": Jsonb(outcome)}
            )
            if audit is not None:
                params.update(_audit_params(audit, "ok"))
            statement = _CONDITIONAL_WRITE[(change.event is not None, audit is not None)]
            try:
                cur = await conn.execute(statement, params)
            except psycopg.errors.UniqueViolation:
                return await self._replayed(conn, op, audit)  # this op_id was applied before
            if await cur.fetchone() is not None:
                return outcome
            # the item changed between the read and the write: read it again
        log.info("queue item %s kept changing: %s takes the row lock", op.case_id, op.kind)
        return None

    async def _read_or_refuse_claim(
        self, conn: Conn, op: Operation, stamp: datetime, audit: AuditRow | None
    ) -> DictRow | None:
        """The item, refusing the claim on the spot (stored outcome) when
        someone else visibly holds it; one autocommit statement, committed
        without waiting for the WAL flush, like every refusal (see
        :meth:`_record_outcome`)."""
        params = {
            "case_id": op.case_id,
            "op_id": op.op_id,
            "stamp": stamp,
            "workstation": op.workstation,
            "at": _aware(op.at),
            "queues": _ROLE_QUEUE_VALUES.get(op.role, []),
        }
        if audit is not None:
            params.update(_audit_params(audit, "claimed"))
        cur = await conn.execute(_READ_OR_REFUSE_CLAIM[audit is not None], params)
        return await cur.fetchone()

    async def _record_outcome(
        self,
        conn: Conn,
        op: Operation,
        stamp: datetime,
        outcome: dict[str, Any],
        audit: AuditRow | None,
    ) -> dict[str, Any]:
        """Store the answer of an op that changes nothing (a refusal, a no-op);
        an op_id applied before gets its first answer again.

        One autocommit statement, committed without waiting for the WAL
        flush: when fifty workstations click the same item, forty-nine
        refusals no longer queue for the disk.  Losing such a record in a
        server crash changes nothing in the queues; the same op_id sent again
        is then decided again, as if the first answer had never arrived."""
        if audit is None:
            cur = await conn.execute(
                _RECORD_OUTCOME, (op.op_id, op.kind, op.case_id, stamp, Jsonb(outcome))
            )
        else:  # the audit row in the same statement (and its commit)
            params = {
                "op_id": op.op_id,
                "kind": op.kind,
                "case_id": op.case_id,
                "stamp": stamp,
                "outcome": Jsonb(outcome),
            }
            params.update(_audit_params(audit, _audit_outcome(outcome)))
            cur = await conn.execute(_RECORD_OUTCOME_AUDITED, params)
        fresh = await cur.fetchone()
        if fresh is None:
            return await self._replayed(conn, op, audit)
        return outcome

    async def _apply_locked(
        self, conn: Conn, op: Operation, stamp: datetime, audit: AuditRow | None
    ) -> dict[str, Any]:
        """One transaction, two round trips (pipeline mode): BEGIN + claim the
        op_id + lock the item (and the dossier); then write + NOTIFY + COMMIT."""
        query = _SELECT_ITEM_DOSSIER if op.kind in NEEDS_DOSSIER else _SELECT_ITEM
        async with conn.pipeline(), conn.transaction():
            fresh = await conn.execute(
                "INSERT INTO applied_ops (op_id, kind, case_id, applied_at) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (op_id) DO NOTHING RETURNING op_id",
                (op.op_id, op.kind, op.case_id, stamp),
            )
            if op.kind == "enqueue":
                # no row to lock yet: serialise the enqueues of one case (the
                # SELECT below is a statement of its own, so it sees what a
                # competitor committed before releasing the lock)
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    (f"{self.schema}:{op.case_id}",),
                )
            cur = await conn.execute(query, (op.case_id,))
            if await fresh.fetchone() is None:
                # applied before (or concurrently, by a transaction that committed)
                return await self._replayed(conn, op, audit)
            row = await cur.fetchone()
            item = _item_from_row(row) if row else None
            head = str(row["log_head"]) if row else ""
            dossier = None
            if row is not None and "dossier" in row:
                dossier = Dossier.from_dict(row["dossier"])
            try:
                change = transition(op, item, dossier)
            except QueueError as exc:
                outcome = _error_json(exc, op.case_id)
                await conn.execute(_SET_OUTCOME, {"o_outcome": Jsonb(outcome), "o_op_id": op.op_id})
                if audit is not None:
                    await conn.execute(_INSERT_AUDIT, _audit_params(audit, exc.code))
                return outcome
            outcome = {"item": _item_json(change.result) if change.result else None}
            params = _write_params(self.channel, stamp, change, head, op.op_id, outcome)
            if audit is not None:
                params.update(_audit_params(audit, "ok"))
            await conn.execute(
                _write_statement(
                    item=change.item is not None,
                    dossier=change.dossier is not None,
                    event=change.event is not None,
                    outcome=True,
                    audited=audit is not None,
                ),
                params,
            )
        return outcome

    async def _replayed(
        self, conn: Conn, op: Operation, audit: AuditRow | None = None
    ) -> dict[str, Any]:
        """The answer stored for an op_id applied before; a server's replay
        is audited too (its row alone: nothing else is written)."""
        cur = await conn.execute(
            "SELECT kind, case_id, outcome FROM applied_ops WHERE op_id = %s", (op.op_id,)
        )
        row = await cur.fetchone()
        if row is None or row["outcome"] is None:  # pragma: no cover - defensive
            raise psycopg.errors.SerializationFailure("applied operation not found")
        if (row["kind"], row["case_id"]) != (op.kind, op.case_id):
            if audit is not None:
                await conn.execute(_INSERT_AUDIT, _audit_params(audit, "op_id_reused"))
            raise op_id_reused()
        stored: dict[str, Any] = row["outcome"]
        if audit is not None:
            await conn.execute(_INSERT_AUDIT, _audit_params(audit, _audit_outcome(stored)))
        return stored

    async def renew(self, workstation: str, at: datetime, lease_s: float = DEFAULT_LEASE_S) -> int:
        expires = lease_end(_aware(at), lease_s)

        async def renew(conn: Conn) -> int:
            # machine.renewed() in one statement: leases only grow (no event);
            # every claim held counts, extended or not
            cur = await conn.execute(
                "WITH held AS ("
                "  SELECT case_id, expires_at FROM items WHERE status = 'CLAIMED'"
                "  AND claim_workstation = %(ws)s ORDER BY case_id FOR UPDATE),"
                " r AS ("
                "  UPDATE items SET expires_at = %(expires)s, version = items.version + 1,"
                "  updated_at = %(at)s FROM held"
                "  WHERE items.case_id = held.case_id AND held.expires_at < %(expires)s"
                "  RETURNING items.queue, items.case_id, items.version),"
                " n AS (SELECT pg_notify(%(channel)s, queue || ':' || case_id || ':' || version)"
                "  FROM r)"
                " SELECT (SELECT count(*) FROM held) AS held, (SELECT count(*) FROM n) AS renewed",
                {
                    "expires": expires,
                    "at": _aware(self._now()),
                    "ws": workstation,
                    "channel": self.channel,
                },
            )
            row = await cur.fetchone()
            return int(row["held"]) if row else 0

        return await self._run("renew", renew)

    async def expire(self, at: datetime) -> list[QueueItem]:
        at = _aware(at)
        stamp = _aware(self._now())

        async def expire(conn: Conn) -> list[QueueItem]:
            out: list[QueueItem] = []
            async with conn.transaction():
                # a concurrent expirer blocks here, then sees the rows WAITING
                # (READ COMMITTED re-checks the condition): nothing twice
                cur = await conn.execute(
                    "SELECT * FROM items WHERE status = 'CLAIMED' AND expires_at <= %s "
                    "ORDER BY case_id FOR UPDATE",
                    (at,),
                )
                for row in await cur.fetchall():
                    item = _item_from_row(row)
                    change = expired(item, at)
                    if change is None:  # pragma: no cover - the query selected it
                        continue
                    new_item, event = change
                    await conn.execute(
                        _write_statement(item=True, dossier=False, event=True, outcome=False),
                        _write_params(
                            self.channel,
                            stamp,
                            Change(new_item, None, event, new_item),
                            str(row["log_head"]),
                            None,
                            None,
                        ),
                    )
                    out.append(new_item)
            return out

        done = ordered(await self._run("expire", expire))
        for item in done:
            log.warning("claim on %s expired (workstation silent)", item.case_id)
        return done

    # ---------------------------------------------------------------- reads
    async def snapshot(self, queues: Iterable[QueueName]) -> list[QueueItem]:
        names = [QueueName(q).value for q in queues]
        return await self._run("snapshot", lambda conn: _select_queues(conn, names))

    async def dossier(self, case_id: str) -> Dossier | None:
        async def read(conn: Conn) -> Dossier | None:
            cur = await conn.execute("SELECT data FROM dossiers WHERE case_id = %s", (case_id,))
            row = await cur.fetchone()
            return Dossier.from_dict(row["data"]) if row else None

        return await self._run("dossier", read)

    async def events(self, case_id: str) -> list[Event]:
        async def read(conn: Conn) -> list[Event]:
            cur = await conn.execute(
                "SELECT * FROM events WHERE case_id = %s ORDER BY seq", (case_id,)
            )
            return [_event_from_row(r) for r in await cur.fetchall()]

        return await self._run("events", read)

    async def verify_log(self) -> list[LogBreak]:
        async def read(conn: Conn) -> list[LogBreak]:
            cur = await conn.execute("SELECT * FROM events ORDER BY case_id, seq")
            events = [_event_from_row(r) for r in await cur.fetchall()]
            cur = await conn.execute("SELECT case_id, log_head FROM items")
            heads = {r["case_id"]: r["log_head"] for r in await cur.fetchall()}
            return verify_log(events, heads)

        return await self._run("verify_log", read)

    # ---------------------------------------------------------------- watch
    async def watch(self, queues: Iterable[QueueName]) -> AsyncGenerator[ChangeSet, None]:
        """See :meth:`QueueBackend.watch`; an async generator: ``aclose()`` it
        (``contextlib.aclosing``) to release its connection at once."""
        wanted = frozenset(QueueName(q) for q in queues)
        names = sorted(q.value for q in wanted)
        delay = _LISTEN_BACKOFF_START
        while not self._closed:
            conn: Conn | None = None
            try:
                await self._ensure_ready()
                conn = await self._connector.connect("/watch")
                self._watch_conns.add(conn)
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                items = await _select_queues(conn, names)  # after LISTEN: nothing falls between
                known = {i.case_id: i.version for i in items}
                delay = _LISTEN_BACKOFF_START
                yield ChangeSet(items=tuple(items), reset=True)
                while True:
                    payloads = await self._next_batch(conn)
                    if payloads is None:
                        return  # backend closed
                    changes = await self._changes(conn, payloads, wanted, known)
                    if changes is not None:
                        yield changes
            except BackendUnavailable as exc:
                if self._closed:
                    return
                log.warning("queue watch: %s", exc.message_fr)
            except _LOST as exc:
                if self._closed:
                    return
                self.reconnects += 1
                log.warning(
                    "queue watch on %s lost (%s), reconnecting in %.1f s",
                    self.safe_dsn,
                    _describe(exc),
                    delay,
                )
            except psycopg.Error as exc:
                if self._closed:
                    return
                log.error("queue watch refused by the server: %s", exc.sqlstate)
            finally:
                if conn is not None:
                    self._watch_conns.discard(conn)
                    with contextlib.suppress(Exception):
                        await conn.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed_event.wait(), delay)
            delay = min(delay * 2, _LISTEN_BACKOFF_MAX)

    async def _next_batch(self, conn: Conn) -> list[str] | None:
        """Payloads of the next burst of notifications; ``None`` once closed.
        Runs as a task so that :meth:`close` can interrupt it."""
        if self._closed:
            return None
        task = asyncio.ensure_future(self._receive(conn))
        self._watch_waits.add(task)
        try:
            await asyncio.wait({task})
        finally:
            self._watch_waits.discard(task)
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
        if task.cancelled():
            if self._closed:
                return None
            raise psycopg.OperationalError("watch interrupted")
        return task.result()

    async def _receive(self, conn: Conn) -> list[str]:
        payloads: list[str] = []
        while not payloads:
            async with contextlib.aclosing(
                conn.notifies(timeout=_HEARTBEAT_S, stop_after=1)
            ) as first:
                async for notify in first:
                    payloads.append(notify.payload)
            if not payloads:  # quiet: make sure the link is still alive
                async with asyncio.timeout(self._connector.connect_timeout):
                    await conn.execute("SELECT 1")
        async with contextlib.aclosing(conn.notifies(timeout=_COALESCE_S)) as burst:
            async for notify in burst:
                payloads.append(notify.payload)
        return payloads

    async def _changes(
        self,
        conn: Conn,
        payloads: list[str],
        wanted: frozenset[QueueName],
        known: dict[str, int],
    ) -> ChangeSet | None:
        ids: set[str] = set()
        for payload in payloads:
            queue, _, rest = payload.partition(":")
            case_id, _, version = rest.rpartition(":")
            if not case_id:
                continue
            try:
                newer = int(version) > known.get(case_id, -1)
            except ValueError:
                newer = True
            if case_id in known or (queue in wanted and newer):
                ids.add(case_id)
        if not ids:
            return None
        cur = await conn.execute("SELECT * FROM items WHERE case_id = ANY(%s)", (sorted(ids),))
        items: list[QueueItem] = []
        removed: list[str] = []
        for row in await cur.fetchall():
            item = _item_from_row(row)
            if item.status is not ItemStatus.CLOSED and item.queue in wanted:
                if known.get(item.case_id) != item.version:
                    known[item.case_id] = item.version
                    items.append(item)
            elif item.case_id in known:
                del known[item.case_id]
                removed.append(item.case_id)
        if not items and not removed:
            return None
        items.sort(key=QueueItem.sort_key)
        return ChangeSet(items=tuple(items), removed=tuple(sorted(removed)))


async def _select_queues(conn: Conn, names: list[str]) -> list[QueueItem]:
    cur = await conn.execute(
        "SELECT * FROM items WHERE queue = ANY(%s) AND status IN ('WAITING', 'CLAIMED') "
        "ORDER BY priority_rank, waiting_since, case_id",
        (names,),
    )
    return [_item_from_row(r) for r in await cur.fetchall()]


def _describe(exc: BaseException) -> str:
    """Short, password-free description of a connection error for logs."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    if isinstance(exc, psycopg.Error) and exc.sqlstate:
        name = f"{name} {exc.sqlstate}"
    return f"{name}: {first}" if first else name
