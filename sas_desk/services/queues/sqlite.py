"""Queues in one SQLite file, shared by the SAS Desk processes of one machine.

Several processes (one per workstation session) open the same file in the
data directory.  The file is in WAL mode; every mutation runs in one
``BEGIN IMMEDIATE`` transaction that writes the item, the dossier, the event,
the idempotency record (``applied_ops``) and a ``changes`` row together, so
a crash never leaves half an operation.  The schema is versioned with
``PRAGMA user_version`` and ordered migrations; ``events`` refuses UPDATE and
DELETE (triggers).

Each :class:`SqliteBackend` owns one thread (a one-worker executor) that
creates and uses its SQLite connections: the event loop never waits on the
disk.  A second thread (:class:`_ChangeSpy`, started by the first watcher)
polls ``PRAGMA data_version`` on its own connection, which changes when
*another* connection (another process, another instance) commits, and only
then wakes the watchers on the event loop; commits made by this instance wake
them at once.  An idle window costs the event loop one look a second (a
safety net), not twenty submits to the thread.

Patient data at rest (issue 15): on a workstation the file is sealed with
the workstation's key (:mod:`sas_desk.services.atrest`, AES-GCM per record,
the journal's format).  Sealed: ``dossiers.data`` (the whole dossier),
``events.data`` (notes, summaries, what was said), the item's commune, age
and sex (``items.private``; the queue card shows them once opened) and the
stored answers of ``applied_ops`` (they repeat the item).  In the clear,
because the queues and the statistics read them in SQL and none is a
patient field: case ids, queues, statuses, priorities, times, motive codes
and labels, roles, operators' logins and workstations, lease columns, the
log's hashes, and ``dossiers.facts`` / ``events.facts``: what the
statistics read of the record, nothing more (``dossier_facts`` and
``event_facts`` in ``sas_desk.models.stats``: codes, times, an age band and
a département — no name, phone, address, note or free text).  Without a
cipher (the room server's own file, on the server) the same columns are
written with the records in the clear.  Schema 3 seals a file written
before in place (:func:`_m3`, then :meth:`_Store.use_cipher` once the key
is there).

Times: lease arithmetic uses the operation's ``at`` (and the ``at`` given to
:meth:`renew` / :meth:`expire`), so that a replay behaves exactly like the
first application; the injected ``now`` only stamps bookkeeping columns.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from sas_desk.models.dossier import (
    Actor,
    Dossier,
    Event,
    EventKind,
)
from sas_desk.models.queue import (
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
from sas_desk.models.stats import dossier_facts, event_facts
from sas_desk.services.atrest import PREFIX, KeyGate, RecordCipher, SealError, seal, unseal
from sas_desk.services.queues import machine
from sas_desk.services.queues.api import (
    AUDIT_COLUMNS,
    DEFAULT_LEASE_S,
    AuditRow,
    BackendUnavailable,
    QueueBackend,
)
from sas_desk.services.sqlite_file import is_damaged, move_aside

log = logging.getLogger("sas_desk.queues")
T = TypeVar("T")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ACTIVE = (ItemStatus.WAITING.value, ItemStatus.CLAIMED.value)
_CHANGES_KEPT = 10_000  # rows of ``changes`` kept for slow watchers
_PRUNE_EVERY = 500
_DEFAULT_LIMITS = WaitLimits()


# ---------------------------------------------------------------------------- schema


def _m1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE dossiers (
            case_id TEXT PRIMARY KEY,
            data TEXT NOT NULL,
            updated_at TEXT NOT NULL)"""
    )
    conn.execute(
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            case_id TEXT NOT NULL,
            at TEXT NOT NULL,
            kind TEXT NOT NULL,
            role TEXT NOT NULL,
            operator TEXT NOT NULL,
            workstation TEXT NOT NULL,
            op_id TEXT,
            data TEXT NOT NULL)"""
    )
    conn.execute("CREATE INDEX events_case ON events(case_id, seq)")
    conn.execute(_NO_UPDATE)
    conn.execute(
        "CREATE TRIGGER events_no_delete BEFORE DELETE ON events "
        "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END"
    )
    conn.execute(
        """CREATE TABLE items (
            case_id TEXT PRIMARY KEY REFERENCES dossiers(case_id),
            queue TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('WAITING', 'CLAIMED', 'CLOSED')),
            priority TEXT NOT NULL,
            priority_rank INTEGER NOT NULL,
            waiting_since TEXT NOT NULL,
            waiting_us INTEGER NOT NULL,
            motive_code TEXT NOT NULL,
            motive_label TEXT NOT NULL,
            commune TEXT NOT NULL,
            age TEXT NOT NULL,
            sex TEXT NOT NULL,
            claim_workstation TEXT,
            claim_operator TEXT,
            claim_role TEXT,
            claimed_at TEXT,
            claim_expires_at TEXT,
            claim_expires_us INTEGER,
            version INTEGER NOT NULL,
            alert TEXT NOT NULL,
            CHECK ((status = 'CLAIMED') = (claim_workstation IS NOT NULL)))"""
    )
    conn.execute(
        "CREATE INDEX items_order ON items(queue, status, priority_rank, waiting_us, case_id)"
    )
    conn.execute(
        "CREATE INDEX items_claims ON items(claim_workstation, claim_expires_us) "
        "WHERE status = 'CLAIMED'"
    )
    conn.execute(
        """CREATE TABLE applied_ops (
            op_id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            case_id TEXT NOT NULL,
            at TEXT NOT NULL,
            applied_at TEXT NOT NULL,
            outcome TEXT NOT NULL)"""
    )
    conn.execute(
        """CREATE TABLE changes (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            case_id TEXT NOT NULL,
            queue TEXT NOT NULL,
            from_queue TEXT NOT NULL,
            version INTEGER NOT NULL)"""
    )


def _m2(conn: sqlite3.Connection) -> None:
    """The hash-chained log: each event carries the hash of the previous event
    of its dossier and its own; the item keeps its dossier's last hash (so a
    deleted last event shows).  Events written before stay unchained."""
    conn.execute("ALTER TABLE events ADD COLUMN prev_hash TEXT NOT NULL DEFAULT ''")
    conn.execute("ALTER TABLE events ADD COLUMN hash TEXT NOT NULL DEFAULT ''")
    conn.execute("ALTER TABLE items ADD COLUMN log_head TEXT NOT NULL DEFAULT ''")


_NO_UPDATE = (
    "CREATE TRIGGER events_no_update BEFORE UPDATE ON events "
    "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END"
)
_BATCH = 1000


def _batches(conn: sqlite3.Connection, query: str) -> Iterable[list[tuple[Any, ...]]]:
    """The rows of ``query`` (``?1``: the last key seen, NULL first) by batches."""
    last: Any = None
    while True:
        rows = conn.execute(query, (last,)).fetchall()
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def _m3(conn: sqlite3.Connection) -> None:
    """Patient data at rest (issue 15): the statistics' clear part of each
    dossier and event (``facts``, worked out from the records, still clear
    here), the item's commune, age and sex moved to ``items.private``, and
    ``at_rest``: whether the records written before are sealed yet.  Sealing
    needs the workstation's key, which may come after the file opens
    (:class:`KeyGate`): :meth:`_Store.use_cipher` does it in place."""
    conn.execute("ALTER TABLE dossiers ADD COLUMN facts TEXT NOT NULL DEFAULT '{}'")
    conn.execute("ALTER TABLE events ADD COLUMN facts TEXT NOT NULL DEFAULT '{}'")
    conn.execute("ALTER TABLE items ADD COLUMN private TEXT NOT NULL DEFAULT ''")
    conn.execute(
        "CREATE TABLE at_rest (id INTEGER PRIMARY KEY CHECK (id = 1), sealed INTEGER NOT NULL)"
    )
    conn.execute(
        "INSERT INTO at_rest VALUES (1, NOT EXISTS (SELECT 1 FROM dossiers) "
        "AND NOT EXISTS (SELECT 1 FROM events) AND NOT EXISTS (SELECT 1 FROM applied_ops))"
    )
    conn.execute("DROP TRIGGER events_no_update")
    for rows in _batches(
        conn,
        "SELECT case_id, data FROM dossiers WHERE ?1 IS NULL OR case_id > ?1 "
        f"ORDER BY case_id LIMIT {_BATCH}",
    ):
        conn.executemany(
            "UPDATE dossiers SET facts = ? WHERE case_id = ?",
            [(_json(dossier_facts(json.loads(text))), case_id) for case_id, text in rows],
        )
    for rows in _batches(
        conn,
        "SELECT seq, kind, data FROM events WHERE ?1 IS NULL OR seq > ?1 "
        f"ORDER BY seq LIMIT {_BATCH}",
    ):
        conn.executemany(
            "UPDATE events SET facts = ? WHERE seq = ?",
            [(_json(event_facts(kind, json.loads(text))), seq) for seq, kind, text in rows],
        )
    conn.execute(_NO_UPDATE)
    conn.execute(
        "UPDATE items SET private = json_array(commune, age, sex), commune = '', age = '', sex = ''"
    )


def _seal_rows(conn: sqlite3.Connection, cipher: RecordCipher) -> int:
    """Seal in place every record still in the clear (a file of schema 2, or
    written without a key); returns how many.  The caller's connection has
    ``secure_delete`` on (the clear bytes are overwritten, not freed) and
    checkpoints the WAL after.  Events stay append-only for everyone else:
    the guard is lifted only inside the caller's transaction."""
    clear = f"NOT LIKE '{PREFIX}%'"
    done = 0
    # table, key, sealed column, owner of the record's AAD, extra condition
    records = (
        ("dossiers", "case_id", "data", "case_id", ""),
        ("events", "seq", "data", "case_id", ""),
        ("items", "case_id", "private", "case_id", "AND private != '' "),
        ("applied_ops", "op_id", "outcome", "op_id", ""),
    )
    conn.execute("DROP TRIGGER events_no_update")
    for table, key, column, owner, extra in records:
        for rows in _batches(
            conn,
            f"SELECT {key}, {owner}, {column} FROM {table} WHERE (?1 IS NULL OR {key} > ?1) "
            f"{extra}AND {column} {clear} ORDER BY {key} LIMIT {_BATCH}",
        ):
            conn.executemany(
                f"UPDATE {table} SET {column} = ? WHERE {key} = ?",
                [(cipher.seal(text, f"{table}/{who}"), k) for k, who, text in rows],
            )
            done += len(rows)
        if table == "events":
            conn.execute(_NO_UPDATE)  # append-only again for everyone else
    conn.execute("UPDATE at_rest SET sealed = 1")
    return done


MIGRATIONS: Sequence[Callable[[sqlite3.Connection], None]] = (_m1, _m2, _m3)
SCHEMA_VERSION = len(MIGRATIONS)

_ITEM_COLUMNS = (
    "case_id, queue, status, priority, waiting_since, motive_code, motive_label, commune, "
    "age, sex, claim_workstation, claim_operator, claim_role, claimed_at, claim_expires_at, "
    "version, alert, log_head, private"
)
_EVENT_COLUMNS = "seq, case_id, at, kind, role, operator, workstation, data, op_id, prev_hash, hash"


# ---------------------------------------------------------------------------- conversions


def _us(at: datetime) -> int:
    """Exact microseconds since the epoch (ordering and lease comparisons)."""
    if at.tzinfo is None:
        raise QueueError("Heure sans fuseau horaire : opération refusée.", "invalid")
    return (at - _EPOCH) // timedelta(microseconds=1)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _seal_private(
    cipher: RecordCipher | None, case_id: str, commune: str, age: str, sex: str
) -> str:
    """An item's patient fields, sealed together (``items.private``; the
    same JSON array as schema 3 makes of older rows)."""
    return seal(
        cipher,
        json.dumps([commune, age, sex], ensure_ascii=False, separators=(",", ":")),
        f"items/{case_id}",
    )


def _item_from_row(row: Sequence[Any], cipher: RecordCipher | None) -> QueueItem:
    commune, age, sex = row[7], row[8], row[9]
    if row[18]:
        commune, age, sex = json.loads(unseal(cipher, row[18], f"items/{row[0]}"))
    claim = None
    if row[10] is not None:
        claim = Claim(
            workstation=row[10],
            operator=row[11],
            role=row[12],
            claimed_at=datetime.fromisoformat(row[13]),
            expires_at=datetime.fromisoformat(row[14]),
        )
    return QueueItem(
        case_id=row[0],
        queue=QueueName(row[1]),
        status=ItemStatus(row[2]),
        priority=row[3],
        waiting_since=datetime.fromisoformat(row[4]),
        motive_code=row[5],
        motive_label=row[6],
        commune=commune,
        age=age,
        sex=sex,
        claim=claim,
        version=int(row[15]),
        alert=row[16],
    )


def _event_from_row(r: Sequence[Any], cipher: RecordCipher | None) -> Event:
    return Event(
        r[1],
        datetime.fromisoformat(r[2]),
        EventKind(r[3]),
        Actor(r[4], r[5], r[6]),
        json.loads(unseal(cipher, r[7], f"events/{r[1]}")),
        seq=int(r[0]),
        op_id=r[8] or "",
        prev_hash=r[9],
        hash=r[10],
    )


def _claim_to_dict(claim: Claim) -> dict[str, str]:
    return {
        "workstation": claim.workstation,
        "operator": claim.operator,
        "role": claim.role,
        "claimed_at": claim.claimed_at.isoformat(),
        "expires_at": claim.expires_at.isoformat(),
    }


def _claim_from_dict(data: dict[str, Any]) -> Claim:
    return Claim(
        workstation=data["workstation"],
        operator=data["operator"],
        role=data["role"],
        claimed_at=datetime.fromisoformat(data["claimed_at"]),
        expires_at=datetime.fromisoformat(data["expires_at"]),
    )


def _item_to_dict(item: QueueItem) -> dict[str, Any]:
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
        "claim": _claim_to_dict(item.claim) if item.claim else None,
        "version": item.version,
        "alert": item.alert,
    }


def _item_from_dict(data: dict[str, Any]) -> QueueItem:
    return QueueItem(
        case_id=data["case_id"],
        queue=QueueName(data["queue"]),
        status=ItemStatus(data["status"]),
        priority=data["priority"],
        waiting_since=datetime.fromisoformat(data["waiting_since"]),
        motive_code=data["motive_code"],
        motive_label=data["motive_label"],
        commune=data["commune"],
        age=data["age"],
        sex=data["sex"],
        claim=_claim_from_dict(data["claim"]) if data.get("claim") else None,
        version=int(data["version"]),
        alert=data["alert"],
    )


def _error_outcome(exc: QueueError) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ok": False,
        "error": type(exc).__name__,
        "code": exc.code,
        "message": exc.message_fr,
    }
    claim = getattr(exc, "claim", None)
    if isinstance(claim, Claim):
        out["claim"] = _claim_to_dict(claim)
    return out


def _raise_outcome(outcome: dict[str, Any], case_id: str) -> NoReturn:
    """Raise again the error recorded for an operation (same class, same message)."""
    claim = _claim_from_dict(outcome["claim"]) if outcome.get("claim") else None
    error = outcome.get("error")
    if error == "ClaimConflict" and claim is not None:
        raise ClaimConflict(claim)
    if error == "NotFound":
        raise NotFound(case_id)
    if error == "NotHolder":
        raise NotHolder(case_id, claim)
    raise QueueError(str(outcome.get("message", "")), str(outcome.get("code", "")))


# ---------------------------------------------------------------------------- errors


class _TooNew(Exception):
    pass


def _unavailable(exc: BaseException) -> BackendUnavailable:
    """A French message for what SQLite or the disk refused."""
    text = str(exc).lower()
    if isinstance(exc, _TooNew):
        return BackendUnavailable(
            "Le fichier des files a été créé par une version plus récente de SAS Desk : "
            "mettez ce poste à jour."
        )
    if "locked" in text or "busy" in text:
        return BackendUnavailable("Files occupées par un autre poste : nouvel essai en cours.")
    if isinstance(exc, PermissionError) or "readonly" in text or "read-only" in text:
        return BackendUnavailable(
            "Le fichier des files est en lecture seule : opération impossible sur ce poste."
        )
    if "full" in text or (isinstance(exc, OSError) and exc.errno == 28):
        return BackendUnavailable("Disque plein : les files ne peuvent plus être enregistrées.")
    if "unable to open" in text or (
        isinstance(exc, OSError) and not isinstance(exc, sqlite3.Error)
    ):
        return BackendUnavailable(
            "Impossible d'ouvrir le fichier des files (dossier inaccessible)."
        )
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return BackendUnavailable("Fichier des files endommagé : prévenez le support.")
    return BackendUnavailable(f"Erreur d'accès au fichier des files ({exc.__class__.__name__}).")


def _is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


# ---------------------------------------------------------------------------- watch cursor


@dataclass
class _Cursor:
    """Where one watcher stands (touched only by the store's thread)."""

    queues: frozenset[QueueName]
    last_seq: int = 0
    data_version: int = -1
    generation: int = -1
    known: set[str] = field(default_factory=set)


# ---------------------------------------------------------------------------- the store


class _Store:
    """Owns the SQLite connections; used only by the backend's thread."""

    def __init__(
        self,
        path: Path,
        *,
        now: Callable[[], datetime],
        busy_timeout: float,
        cipher: RecordCipher | None = None,
    ) -> None:
        self.path = path
        self._now = now
        self.cipher: RecordCipher | None = None
        self._busy_timeout = busy_timeout
        self._watch_conn: sqlite3.Connection | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = self._connect()
        try:
            self._migrate()
            self.use_cipher(cipher)
        except BaseException:
            self.conn.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), timeout=self._busy_timeout, isolation_level=None)
        try:
            mode = str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
            if mode.lower() != "wal":
                raise sqlite3.OperationalError(f"journal_mode {mode} instead of wal")
            conn.execute("PRAGMA synchronous=FULL")  # an acknowledged claim survives a power cut
            conn.execute("PRAGMA secure_delete=ON")  # a record sealed in place leaves no clear copy
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self) -> None:
        conn = self.conn
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise _TooNew(f"schema {version} > {SCHEMA_VERSION}")
        if version == SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            # another process may have migrated while we waited for the lock
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
                step(conn)
                conn.execute(f"PRAGMA user_version = {number}")
                log.info("queue store %s migrated to schema %d", self.path, number)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def use_cipher(self, cipher: RecordCipher | None) -> None:
        """The workstation's key (it may come after the file opened): the
        records still in the clear are sealed in place, once."""
        self.cipher = cipher
        if cipher is None:
            return
        conn = self.conn
        if conn.execute("SELECT sealed FROM at_rest").fetchone()[0]:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            sealed = 0
            if not conn.execute("SELECT sealed FROM at_rest").fetchone()[0]:  # not meanwhile
                sealed = _seal_rows(conn, cipher)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        log.info("queue store %s: %d records sealed in place", self.path, sealed)
        # the pages of the clear records leave the WAL (a reader of another
        # process may hold it: then at its next checkpoint)
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        for conn in (self._watch_conn, self.conn):
            if conn is not None:
                try:
                    conn.close()
                except sqlite3.Error:  # pragma: no cover - closing never matters
                    pass
        self._watch_conn = None

    # ------------------------------------------------------------------ transactions
    def _write(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` inside one immediate transaction (commit on success,
        also when ``fn`` raised a QueueError after recording it)."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise
        return result

    # ------------------------------------------------------------------ apply
    def apply(self, op: Operation, audit: AuditRow | None = None) -> QueueItem | None:
        """One transaction: the operation, its stored answer and (a room
        server's) ``audit`` row -- all or nothing."""

        def once() -> dict[str, Any]:
            outcome = self._apply_once(op)
            if audit is not None:
                self._audit(audit, outcome)
            return outcome

        outcome = self._write(once)
        if outcome.get("ok"):
            item = outcome.get("item")
            return _item_from_dict(item) if item else None
        _raise_outcome(outcome, op.case_id)

    def _audit(self, audit: AuditRow, outcome: dict[str, Any]) -> None:
        values = list(audit.values("ok" if outcome.get("ok") else str(outcome.get("code"))))
        # the server store's form (server/store.py): fixed-width UTC text
        values[0] = values[0].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
        values[-1] = json.dumps(values[-1], ensure_ascii=False)
        self.conn.execute(
            f"INSERT INTO audit ({', '.join(AUDIT_COLUMNS)}) VALUES "
            f"({', '.join('?' * len(AUDIT_COLUMNS))})",
            values,
        )

    def _apply_once(self, op: Operation) -> dict[str, Any]:
        conn = self.conn
        row = conn.execute(
            "SELECT kind, case_id, outcome FROM applied_ops WHERE op_id = ?", (op.op_id,)
        ).fetchone()
        if row is not None:
            if (row[0], row[1]) != (op.kind, op.case_id):
                return _error_outcome(machine.op_id_reused())
            recorded: dict[str, Any] = json.loads(
                unseal(self.cipher, row[2], f"applied_ops/{op.op_id}")
            )
            return recorded
        outcome: dict[str, Any]
        try:
            item, head = self._item_head(op.case_id)
            stored = None
            if op.kind in machine.NEEDS_DOSSIER and item is not None:
                stored = self._dossier(op.case_id)
            change = machine.transition(op, item, stored)
        except QueueError as exc:
            outcome = _error_outcome(exc)
        else:
            self._persist(change, item, head)
            result = change.result
            outcome = {"ok": True, "item": _item_to_dict(result) if result is not None else None}
        conn.execute(
            "INSERT INTO applied_ops(op_id, kind, case_id, at, applied_at, outcome) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                op.op_id,
                op.kind,
                op.case_id,
                op.at.isoformat() if isinstance(op.at, datetime) else str(op.at),
                self._now().isoformat(),
                seal(self.cipher, _json(outcome), f"applied_ops/{op.op_id}"),
            ),
        )
        return outcome

    def _persist(self, change: machine.Change, old: QueueItem | None, head: str) -> None:
        """Write what the machine decided (inside the caller's transaction)."""
        if change.dossier is not None:
            self._save_dossier(change.dossier)
        if change.item is not None:
            assert change.event is not None, "every item change is logged"
            event = machine.seal(change.event, head)
            self._save_item(change.item, old.queue if old else change.item.queue, event.hash)
            self._insert_event(event)

    def _item_head(self, case_id: str) -> tuple[QueueItem | None, str]:
        """The item and the hash of its dossier's last event."""
        row = self.conn.execute(
            f"SELECT {_ITEM_COLUMNS} FROM items WHERE case_id = ?", (case_id,)
        ).fetchone()
        return (_item_from_row(row, self.cipher), str(row[17])) if row else (None, "")

    def _dossier(self, case_id: str) -> Dossier | None:
        row = self.conn.execute(
            "SELECT data FROM dossiers WHERE case_id = ?", (case_id,)
        ).fetchone()
        if row is None:
            return None
        return Dossier.from_dict(json.loads(unseal(self.cipher, row[0], f"dossiers/{case_id}")))

    def _save_dossier(self, dossier: Dossier) -> None:
        data = dossier.to_dict()
        self.conn.execute(
            "INSERT INTO dossiers(case_id, data, facts, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(case_id) DO UPDATE SET data = excluded.data, facts = excluded.facts, "
            "updated_at = excluded.updated_at",
            (
                dossier.case_id,
                seal(self.cipher, _json(data), f"dossiers/{dossier.case_id}"),
                _json(dossier_facts(data)),
                self._now().isoformat(),
            ),
        )

    def _save_item(self, item: QueueItem, from_queue: QueueName, head: str) -> None:
        claim = item.claim
        self.conn.execute(
            f"INSERT OR REPLACE INTO items({_ITEM_COLUMNS}, priority_rank, waiting_us, "
            "claim_expires_us) VALUES (" + ", ".join("?" * 22) + ")",
            (
                item.case_id,
                item.queue.value,
                item.status.value,
                item.priority,
                item.waiting_since.isoformat(),
                item.motive_code,
                item.motive_label,
                "",  # commune, age, sex: sealed in ``private``
                "",
                "",
                claim.workstation if claim else None,
                claim.operator if claim else None,
                claim.role if claim else None,
                claim.claimed_at.isoformat() if claim else None,
                claim.expires_at.isoformat() if claim else None,
                item.version,
                item.alert,
                head,
                _seal_private(self.cipher, item.case_id, item.commune, item.age, item.sex),
                priority_rank(item.priority),
                _us(item.waiting_since),
                _us(claim.expires_at) if claim else None,
            ),
        )
        cur = self.conn.execute(
            "INSERT INTO changes(case_id, queue, from_queue, version) VALUES (?, ?, ?, ?)",
            (item.case_id, item.queue.value, from_queue.value, item.version),
        )
        seq = int(cur.lastrowid or 0)
        if seq % _PRUNE_EVERY == 0:
            self.conn.execute("DELETE FROM changes WHERE seq <= ?", (seq - _CHANGES_KEPT,))

    def _insert_event(self, event: Event) -> None:
        self.conn.execute(
            "INSERT INTO events(case_id, at, kind, role, operator, workstation, op_id, data, "
            "facts, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.dossier_id,
                event.at.isoformat(),
                event.kind.value,
                event.actor.role,
                event.actor.operator,
                event.actor.workstation,
                event.op_id or None,
                seal(self.cipher, _json(event.data), f"events/{event.dossier_id}"),
                _json(event_facts(event.kind.value, event.data)),
                event.prev_hash,
                event.hash,
            ),
        )

    def _claimed(self, where: str, params: Sequence[Any]) -> list[tuple[QueueItem, str]]:
        rows = self.conn.execute(
            f"SELECT {_ITEM_COLUMNS} FROM items WHERE status = 'CLAIMED' AND {where} ORDER BY case_id",
            params,
        ).fetchall()
        return [(_item_from_row(r, self.cipher), str(r[17])) for r in rows]

    # ------------------------------------------------------------------ leases
    def renew(self, workstation: str, at: datetime, lease_s: float) -> int:
        expires = machine.lease_end(at, lease_s)

        def run() -> int:
            held = self._claimed("claim_workstation = ?", (workstation,))
            for item, head in held:
                new = machine.renewed(item, workstation, expires)
                if new is not None:
                    self._save_item(new, item.queue, head)
            return len(held)

        return self._write(run)

    def expire(self, at: datetime) -> list[QueueItem]:
        def run() -> list[QueueItem]:
            out: list[QueueItem] = []
            for item, head in self._claimed("claim_expires_us <= ?", (_us(at),)):
                change = machine.expired(item, at)
                if change is None:  # pragma: no cover - the query selected it
                    continue
                new, event = change
                sealed = machine.seal(event, head)
                self._save_item(new, item.queue, sealed.hash)
                self._insert_event(sealed)
                out.append(new)
            return ordered(out)

        return self._write(run)

    # ------------------------------------------------------------------ reads
    def snapshot(
        self, queues: frozenset[QueueName], conn: sqlite3.Connection | None = None
    ) -> list[QueueItem]:
        if not queues:
            return []
        names = sorted(q.value for q in queues)
        rows = (
            (conn or self.conn)
            .execute(
                f"SELECT {_ITEM_COLUMNS} FROM items "
                f"WHERE status IN (?, ?) AND queue IN ({', '.join('?' * len(names))}) "
                "ORDER BY priority_rank, waiting_us, case_id",
                (*_ACTIVE, *names),
            )
            .fetchall()
        )
        return ordered([_item_from_row(r, self.cipher) for r in rows])

    def dossier(self, case_id: str) -> Dossier | None:
        return self._dossier(case_id)

    def events(self, case_id: str) -> list[Event]:
        rows = self.conn.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE case_id = ? ORDER BY seq", (case_id,)
        ).fetchall()
        return [_event_from_row(r, self.cipher) for r in rows]

    def verify_log(self) -> list[LogBreak]:
        """Every dossier's chain, and its end against the head kept with the item."""

        def read(conn: sqlite3.Connection) -> tuple[list[Event], dict[str, str]]:
            rows = conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events ORDER BY case_id, seq"
            ).fetchall()
            heads = dict(conn.execute("SELECT case_id, log_head FROM items").fetchall())
            return [_event_from_row(r, self.cipher) for r in rows], heads

        events, heads = self._read(read)
        return machine.verify_log(events, heads)

    # ------------------------------------------------------------------ watching
    def _watcher(self) -> sqlite3.Connection:
        if self._watch_conn is None:
            self._watch_conn = sqlite3.connect(
                str(self.path), timeout=self._busy_timeout, isolation_level=None
            )
        return self._watch_conn

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """One consistent read transaction on the watch connection."""
        conn = self._watcher()
        conn.execute("BEGIN")
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise
        return result

    def watch_reset(self, cursor: _Cursor, generation: int) -> ChangeSet:
        cursor.data_version = int(self._watcher().execute("PRAGMA data_version").fetchone()[0])

        def read(conn: sqlite3.Connection) -> tuple[int, list[QueueItem]]:
            last = int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0])
            return last, self.snapshot(cursor.queues, conn)

        cursor.last_seq, items = self._read(read)
        cursor.generation = generation
        cursor.known = {i.case_id for i in items}
        return ChangeSet(items=tuple(items), reset=True)

    def watch_poll(self, cursor: _Cursor, generation: int, force: bool) -> ChangeSet | None:
        if cursor.generation != generation:
            return self.watch_reset(cursor, generation)  # reopened since: start again
        version = int(self._watcher().execute("PRAGMA data_version").fetchone()[0])
        if version == cursor.data_version and not force:
            return None
        cursor.data_version = version

        def read(
            conn: sqlite3.Connection,
        ) -> tuple[int, int, list[tuple[Any, ...]], list[QueueItem]]:
            low = conn.execute("SELECT MIN(seq) FROM changes").fetchone()[0]
            rows = conn.execute(
                "SELECT seq, case_id, queue, from_queue FROM changes WHERE seq > ? ORDER BY seq",
                (cursor.last_seq,),
            ).fetchall()
            watched = {q.value for q in cursor.queues}
            ids = list(
                dict.fromkeys(
                    r[1] for r in rows if r[2] in watched or r[3] in watched or r[1] in cursor.known
                )
            )
            items: list[QueueItem] = []
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                found = conn.execute(
                    f"SELECT {_ITEM_COLUMNS} FROM items "
                    f"WHERE case_id IN ({', '.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                items.extend(_item_from_row(r, self.cipher) for r in found)
            return (int(low) if low is not None else 0), len(ids), rows, items

        low, _, rows, items = self._read(read)
        if low > cursor.last_seq + 1:  # rows this watcher never saw were pruned
            return self.watch_reset(cursor, generation)
        if not rows:
            return None
        cursor.last_seq = int(rows[-1][0])
        present: list[QueueItem] = []
        removed: list[str] = []
        for item in items:
            if item.queue in cursor.queues and item.status.value in _ACTIVE:
                present.append(item)
                cursor.known.add(item.case_id)
            elif item.case_id in cursor.known:
                removed.append(item.case_id)
                cursor.known.discard(item.case_id)
        if not present and not removed:
            return None
        return ChangeSet(items=tuple(ordered(present)), removed=tuple(sorted(removed)))


# ---------------------------------------------------------------------------- the backend


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Wake:
    """A watcher's wake-up: set by a local write, waited for with a timeout.

    Bound to the loop captured when the watch started: under qasync a task
    may be stepped from a nested Qt event loop (a modal dialog, a test
    driving keys), where ``asyncio.get_running_loop()`` -- used by
    ``asyncio.timeout`` and ``asyncio.Event`` -- fails."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._set = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._set = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def is_set(self) -> bool:
        return self._set

    def clear(self) -> None:
        self._set = False

    async def wait(self, timeout: float) -> None:
        """Until set, or ``timeout`` seconds."""
        if self._set:
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiter = waiter
        timer = self._loop.call_later(timeout, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None


class _ChangeSpy:
    """Watches the file for commits from other connections, off the event
    loop: ``PRAGMA data_version`` every ``interval`` seconds on its own
    connection (in its own thread: a connection stays in the thread that made
    it), and ``changed()`` handed to the loop only when it moved."""

    def __init__(
        self,
        path: Path,
        *,
        interval: float,
        busy_timeout: float,
        generation: Callable[[], int],
        changed: Callable[[], None],
    ) -> None:
        self._path = path
        self._interval = interval
        self._busy_timeout = busy_timeout
        self._generation = generation  # the store reopened (a file moved aside): reconnect
        self._changed = changed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="queues-sqlite-spy", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        conn: sqlite3.Connection | None = None
        seen: tuple[int, int] | None = None  # (generation, data_version)
        try:
            while not self._stop.is_set():
                try:
                    if conn is None:
                        conn = sqlite3.connect(
                            str(self._path), timeout=self._busy_timeout, isolation_level=None
                        )
                    generation = self._generation()
                    version = int(conn.execute("PRAGMA data_version").fetchone()[0])
                except sqlite3.Error as exc:  # the watchers' own polls say it in French
                    log.debug("queue change spy on %s: %s", self._path, exc)
                    if conn is not None:
                        conn.close()
                    conn, seen = None, None
                else:
                    if seen is not None and seen[0] != generation:
                        conn.close()  # the store was reopened on a new file: follow it
                        conn = None
                    if seen != (generation, version):
                        # moved, or a first look (a commit since the watchers'
                        # own last read would otherwise wait for their safety net)
                        self._changed()
                    seen = (generation, version) if conn is not None else None
                self._stop.wait(self._interval)
        finally:
            if conn is not None:
                conn.close()


class SqliteBackend(QueueBackend):
    """Queues in a SQLite file shared by the processes of one machine."""

    name = "sqlite"

    def __init__(
        self,
        path: Path,
        *,
        now: Callable[[], datetime],
        limits: WaitLimits = _DEFAULT_LIMITS,
        poll_interval: float = 0.05,
        idle_poll: float = 1.0,
        busy_timeout: float = 5.0,
        cipher: RecordCipher | KeyGate | None = None,
    ) -> None:
        """``cipher``: the workstation's key (patient data sealed at rest),
        or the :class:`KeyGate` it comes through after the file opens (then
        :meth:`open` does not wait for it, every other call does); None on
        the room server, whose file stays on the server."""
        self.path = path
        self._gate = cipher if isinstance(cipher, KeyGate) else None
        self._cipher = None if isinstance(cipher, KeyGate) else cipher
        self.limits = limits
        self._now = now
        self._poll_interval = poll_interval  # the change spy's look at the file
        self._idle_poll = idle_poll  # the watchers' own look without a wake-up (safety net)
        self._spy: _ChangeSpy | None = None
        self._busy_timeout = busy_timeout
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="queues-sqlite"
        )
        # owned by the executor thread
        self._store: _Store | None = None
        self.notice_fr = ""  # set when a damaged file was moved aside
        self._generation = 0
        # owned by the event loop
        self._closed = False
        self._wakeups: set[_Wake] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---------------------------------------------------------------- lifecycle
    async def open(self) -> None:
        await self._run(lambda store: None, keyed=False)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._spy is not None:
            self._spy.stop()
        self._wake()
        try:
            await self._get_loop().run_in_executor(self._executor, self._close_store)
        finally:
            self._executor.shutdown(wait=False)

    # ---------------------------------------------------------------- operations
    async def apply(self, op: Operation) -> QueueItem | None:
        try:
            return await self._run(lambda store: store.apply(op))
        finally:
            self._wake()

    async def apply_audited(self, op: Operation, client: str) -> QueueItem | None:
        audit = AuditRow.of(op, client)
        try:
            return await self._run(lambda store: store.apply(op, audit))
        finally:
            self._wake()

    async def snapshot(self, queues: Iterable[QueueName]) -> list[QueueItem]:
        wanted = frozenset(QueueName(q) for q in queues)
        return await self._run(lambda store: store.snapshot(wanted))

    async def renew(self, workstation: str, at: datetime, lease_s: float = DEFAULT_LEASE_S) -> int:
        try:
            return await self._run(lambda store: store.renew(workstation, at, lease_s))
        finally:
            self._wake()

    async def expire(self, at: datetime) -> list[QueueItem]:
        try:
            return await self._run(lambda store: store.expire(at))
        finally:
            self._wake()

    async def dossier(self, case_id: str) -> Dossier | None:
        return await self._run(lambda store: store.dossier(case_id))

    async def events(self, case_id: str) -> list[Event]:
        return await self._run(lambda store: store.events(case_id))

    async def verify_log(self) -> list[LogBreak]:
        return await self._run(lambda store: store.verify_log())

    async def watch(self, queues: Iterable[QueueName]) -> AsyncIterator[ChangeSet]:
        cursor = _Cursor(frozenset(QueueName(q) for q in queues))
        wake = _Wake(asyncio.get_running_loop())
        self._wakeups.add(wake)
        try:
            yield await self._run(lambda store: store.watch_reset(cursor, self._generation))
            self._start_spy()
            delay, retry = self._idle_poll, 0.0
            at_once = True  # the consumer may have been busy since the last yield: look now
            while not self._closed:
                if not at_once:
                    await wake.wait(delay)
                    if self._closed:
                        return
                poll = functools.partial(self._poll, cursor, force=wake.is_set())
                wake.clear()
                try:
                    changes = await self._run(poll)
                except BackendUnavailable as exc:
                    if self._closed:
                        return
                    log.warning("queue watch on %s: %s", self.path, exc.message_fr)
                    # again soon, then less and less often
                    retry = min(retry * 2, 2.0) if retry else self._poll_interval * 2
                    delay, at_once = retry, False
                    continue
                delay, retry = self._idle_poll, 0.0
                at_once = changes is not None
                if changes is not None:
                    yield changes
        finally:
            self._wakeups.discard(wake)

    # ---------------------------------------------------------------- plumbing
    def _poll(self, cursor: _Cursor, store: _Store, *, force: bool) -> ChangeSet | None:
        return store.watch_poll(cursor, self._generation, force)

    def _wake(self) -> None:
        for event in self._wakeups:
            event.set()

    def _start_spy(self) -> None:
        if self._spy is not None or self._closed:
            return
        loop = self._get_loop()

        def changed() -> None:  # on the spy's thread
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._wake)

        self._spy = _ChangeSpy(
            self.path,
            interval=self._poll_interval,
            busy_timeout=self._busy_timeout,
            generation=lambda: self._generation,
            changed=changed,
        )
        self._spy.start()

    async def _run(self, fn: Callable[[_Store], T], *, keyed: bool = True) -> T:
        if self._closed:
            raise BackendUnavailable("Files fermées sur ce poste.")
        if keyed and self._gate is not None:  # records are read or written: the key first
            try:
                cipher = await self._gate.cipher()
            except SealError as exc:
                raise BackendUnavailable(exc.message_fr) from exc
            self._cipher, self._gate = cipher, None
        try:
            future = self._get_loop().run_in_executor(self._executor, self._in_thread, fn)
        except RuntimeError as exc:  # executor shut down by close()
            raise BackendUnavailable("Files fermées sur ce poste.") from exc
        return await future

    def _in_thread(self, fn: Callable[[_Store], T]) -> T:
        """Runs on the backend's thread: opens the store when needed and turns
        SQLite and disk errors into French ones."""
        try:
            store = self._store
            if store is None:
                store = self._open_store()
                self._store = store
                self._generation += 1
            if store.cipher is not self._cipher and self._gate is None:  # the key came
                store.use_cipher(self._cipher)
            return fn(store)
        except QueueError:
            raise
        except SealError as exc:  # another workstation's key, altered bytes
            log.error("queue store %s: a sealed record does not open", self.path)
            raise BackendUnavailable(exc.message_fr) from exc
        except sqlite3.IntegrityError as exc:
            log.error("queue store %s refused a write: %s", self.path, exc)
            raise QueueError(
                "Opération refusée par le fichier des files (incohérence).", "integrity"
            ) from exc
        except (sqlite3.Error, OSError, _TooNew) as exc:
            log.warning("queue store %s unavailable: %s", self.path, exc)
            if not _is_busy(exc):
                self._close_store()  # reopen on the next call
            raise _unavailable(exc) from exc

    def _open_store(self) -> _Store:
        """A damaged file is moved aside (like the journal) and a new one made:
        otherwise every call fails and the workstation stays offline forever."""
        try:
            return self._new_store()
        except sqlite3.DatabaseError as exc:
            if not is_damaged(exc):
                raise
            moved = move_aside(self.path, self._now())
        self.notice_fr = (
            f"Le fichier des files de ce poste était endommagé : il a été mis de côté sous "
            f"« {moved.name} » et un nouveau a été créé (les dossiers restent dans le journal)."
        )
        return self._new_store()

    def _new_store(self) -> _Store:
        return _Store(
            self.path, now=self._now, busy_timeout=self._busy_timeout, cipher=self._cipher
        )

    def _close_store(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            store.close()

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        """The loop the backend was first used on (see journal.service)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop
