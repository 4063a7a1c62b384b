"""The Hub Santé agent's own SQLite store (``<data dir>/hub.sqlite``).

Synchronous; one executor thread owns the connection (:class:`AsyncHubStore`).

* ``inbound``: every message received, keyed by ``distributionID`` (the
  de-duplication key), with the queue it came from, the envelope as received,
  its processing state (``received`` → ``done``) and outcome;
* ``rejected``: what could not be read at all (no ``distributionID``);
* ``outbound``: the ledger and durable outbox of what we send: ``queued`` →
  ``sent`` → ``confirmed`` (by the broker) → ``acknowledged`` / ``refused`` /
  ``error`` (by the partner or the hub) or ``expired`` (alarm: phone instead);
* ``appointments`` (RS-SAS-RDV by ``appointmentId``) and their history.

Every processing step that changes several tables runs in one transaction
(:meth:`HubStore.atomic`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from sas_desk.models.errors import KnownError
from sas_desk.services.sqlite_file import open_versioned

log = logging.getLogger("sas_desk.hub.store")
T = TypeVar("T")

# ledger states that still wait for something (the expiry watch looks at these)
WAITING = ("queued", "sent", "confirmed")
TO_PUBLISH = ("queued", "sent")
FINAL = ("acknowledged", "refused", "error", "expired")


class HubStoreError(KnownError):
    def __init__(self, message_fr: str) -> None:
        super().__init__(message_fr)
        self.message_fr = message_fr


def _m1(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE inbound (
            distribution_id TEXT PRIMARY KEY,
            received_at TEXT NOT NULL,
            queue TEXT NOT NULL,
            sender TEXT NOT NULL,
            kind TEXT NOT NULL,
            model TEXT NOT NULL,
            envelope TEXT NOT NULL,
            state TEXT NOT NULL,
            outcome TEXT NOT NULL DEFAULT '',
            detail TEXT NOT NULL DEFAULT '',
            case_id TEXT,
            appointment_id TEXT,
            deliveries INTEGER NOT NULL DEFAULT 1,
            done_at TEXT)"""
    )
    db.execute("CREATE INDEX inbound_state ON inbound(state)")
    db.execute("CREATE INDEX inbound_case ON inbound(case_id)")
    db.execute(
        """CREATE TABLE rejected (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            queue TEXT NOT NULL,
            reason TEXT NOT NULL,
            body TEXT NOT NULL)"""
    )
    db.execute(
        """CREATE TABLE outbound (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            distribution_id TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            recipient TEXT NOT NULL,
            kind TEXT NOT NULL,
            model TEXT NOT NULL,
            case_id TEXT,
            ref TEXT,
            expires_at TEXT NOT NULL,
            expires_ts REAL NOT NULL,
            state TEXT NOT NULL,
            step TEXT NOT NULL DEFAULT '',
            error TEXT NOT NULL DEFAULT '',
            alarm INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL,
            envelope TEXT NOT NULL)"""
    )
    db.execute("CREATE INDEX outbound_state ON outbound(state, seq)")
    db.execute("CREATE INDEX outbound_case ON outbound(case_id)")
    db.execute(
        """CREATE TABLE appointments (
            appointment_id TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            start TEXT NOT NULL,
            created TEXT NOT NULL,
            body TEXT NOT NULL,
            case_id TEXT,
            attached_at TEXT,
            attached_by TEXT,
            updated_at TEXT NOT NULL,
            last_distribution_id TEXT NOT NULL)"""
    )
    db.execute("CREATE INDEX appointments_case ON appointments(case_id)")
    db.execute(
        """CREATE TABLE appointment_history (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            appointment_id TEXT NOT NULL,
            at TEXT NOT NULL,
            distribution_id TEXT NOT NULL,
            change TEXT NOT NULL,
            status TEXT NOT NULL)"""
    )


def _m2(db: sqlite_utils.Database) -> None:
    # when a person first opened what the message brought (RC-REF step CONSULTE sent)
    db.execute("ALTER TABLE inbound ADD COLUMN consulted_at TEXT")


MIGRATIONS = (_m1, _m2)


@dataclass(frozen=True)
class Outbound:
    seq: int
    distribution_id: str
    created_at: str
    recipient: str
    kind: str
    model: str
    case_id: str | None
    ref: str | None
    expires_at: str
    state: str
    step: str
    error: str
    alarm: bool
    attempts: int
    envelope: str

    def record(self) -> dict[str, Any]:
        return {
            "distributionID": self.distribution_id,
            "recipient": self.recipient,
            "model": self.model,
            "kind": self.kind,
            "caseId": self.case_id,
            "state": self.state,
            "step": self.step or None,
            "error": self.error or None,
            "alarm": self.alarm,
            "expires": self.expires_at,
            "created": self.created_at,
        }


@dataclass(frozen=True)
class StoredAppointment:
    appointment_id: str
    body: dict[str, Any]
    case_id: str | None
    last_distribution_id: str


class HubStore:
    """Owns one SQLite connection; use it from a single thread."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

        def set_aside(why: str) -> None:
            assert path is not None
            target = path.with_suffix(".sqlite.damaged")
            log.error("hub store %s unusable (%s): moved to %s", path, why, target)
            path.replace(target)

        def classify(exc: BaseException) -> Exception:
            return HubStoreError(f"Base Hub Santé inaccessible ({path}) : {exc}")

        self.db = open_versioned(
            path,
            MIGRATIONS,
            what="hub store",
            set_aside=set_aside,
            classify=classify,
            synchronous="FULL",
        )
        self.conn: sqlite3.Connection = self.db.conn
        self._depth = 0
        # dossiers whose ledger lines changed since the last drain (AsyncHubStore
        # tells its listeners after each call: the panels read again then)
        self.touched: set[str] = set()

    def drain_touched(self) -> frozenset[str]:
        touched, self.touched = frozenset(self.touched), set()
        return touched

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """One transaction (nested calls join the outer one)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            self.touched.clear()  # nothing changed after all
            raise
        else:
            self.conn.execute("COMMIT")
        finally:
            self._depth = 0

    # ------------------------------------------------------------------ inbound
    def record_inbound(
        self,
        *,
        distribution_id: str,
        queue: str,
        sender: str,
        kind: str,
        model: str,
        envelope: str,
        at: str,
    ) -> str | None:
        """Persist a received message.  Returns ``None`` when new, else the
        state already stored (``received`` or ``done``): a redelivery or a
        duplicate, counted and otherwise unchanged."""
        row = self.conn.execute(
            "SELECT state FROM inbound WHERE distribution_id = ?", (distribution_id,)
        ).fetchone()
        if row is not None:
            self.conn.execute(
                "UPDATE inbound SET deliveries = deliveries + 1 WHERE distribution_id = ?",
                (distribution_id,),
            )
            return str(row[0])
        self.conn.execute(
            "INSERT INTO inbound (distribution_id, received_at, queue, sender, kind, model, "
            "envelope, state) VALUES (?, ?, ?, ?, ?, ?, ?, 'received')",
            (distribution_id, at, queue, sender, kind, model, envelope),
        )
        return None

    def finish_inbound(
        self,
        distribution_id: str,
        *,
        outcome: str,
        detail: str,
        at: str,
        case_id: str | None = None,
        appointment_id: str | None = None,
    ) -> None:
        self.conn.execute(
            "UPDATE inbound SET state = 'done', outcome = ?, detail = ?, case_id = ?, "
            "appointment_id = ?, done_at = ? WHERE distribution_id = ?",
            (outcome, detail, case_id, appointment_id, at, distribution_id),
        )

    def unfinished_inbound(self) -> list[tuple[str, str]]:
        """(queue, envelope) of messages persisted but not processed (a crash)."""
        rows = self.conn.execute(
            "SELECT queue, envelope FROM inbound WHERE state = 'received' ORDER BY rowid"
        ).fetchall()
        return [(str(q), str(e)) for q, e in rows]

    def inbound(self, limit: int = 1000) -> list[dict[str, Any]]:
        cur = self.conn.execute(
            "SELECT distribution_id, received_at, queue, sender, kind, model, state, outcome, "
            "detail, case_id, appointment_id, deliveries FROM inbound ORDER BY rowid DESC LIMIT ?",
            (limit,),
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def inbound_for_case(self, case_id: str) -> list[dict[str, Any]]:
        cur = self.conn.execute(
            "SELECT distribution_id, received_at, sender, model, outcome, detail FROM inbound "
            "WHERE case_id = ? ORDER BY rowid",
            (case_id,),
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def unconsulted(self, case_id: str) -> list[tuple[str, str, str]]:
        """(distributionID, sender, envelope) of the partners' messages applied
        to this case that nobody has opened yet."""
        rows = self.conn.execute(
            "SELECT distribution_id, sender, envelope FROM inbound WHERE case_id = ? "
            "AND outcome IN ('integrated', 'updated') AND consulted_at IS NULL "
            "AND queue != 'file' ORDER BY rowid",
            (case_id,),
        ).fetchall()
        return [(str(a), str(b), str(c)) for a, b, c in rows]

    def mark_consulted(self, distribution_id: str, at: str) -> None:
        self.conn.execute(
            "UPDATE inbound SET consulted_at = ? WHERE distribution_id = ?", (at, distribution_id)
        )

    def record_rejected(self, *, queue: str, reason: str, body: str, at: str) -> None:
        self.conn.execute(
            "INSERT INTO rejected (at, queue, reason, body) VALUES (?, ?, ?, ?)",
            (at, queue, reason, body),
        )

    def rejected_count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM rejected").fetchone()[0])

    # ------------------------------------------------------------------ outbound
    def enqueue(
        self,
        *,
        envelope: dict[str, Any],
        model: str,
        case_id: str | None,
        ref: str | None,
        expires_ts: float,
        at: str,
    ) -> None:
        self.conn.execute(
            "INSERT INTO outbound (distribution_id, created_at, recipient, kind, model, case_id, "
            "ref, expires_at, expires_ts, state, updated_at, envelope) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
            (
                envelope["distributionID"],
                at,
                envelope["descriptor"]["explicitAddress"]["explicitAddressValue"],
                envelope["distributionKind"],
                model,
                case_id,
                ref,
                envelope["dateTimeExpires"],
                expires_ts,
                at,
                json.dumps(envelope, ensure_ascii=False, separators=(",", ":")),
            ),
        )
        if case_id:
            self.touched.add(case_id)

    def to_publish(self, limit: int = 100) -> list[Outbound]:
        return self._outbound("WHERE state IN ('queued', 'sent') ORDER BY seq LIMIT ?", (limit,))

    def mark(self, distribution_ids: list[str], state: str, at: str) -> None:
        # queued → sent → confirmed: all still « non reçu par le partenaire »
        # on the dossier, so no ledger line changes (nothing ``touched``)
        self.conn.executemany(
            "UPDATE outbound SET state = ?, updated_at = ?, attempts = attempts + "
            "(CASE WHEN ? = 'sent' THEN 1 ELSE 0 END) "
            "WHERE distribution_id = ? AND state IN ('queued', 'sent')",
            [(state, at, state, d) for d in distribution_ids],
        )

    def settle(
        self, distribution_id: str, state: str, *, step: str = "", error: str = "", at: str
    ) -> Outbound | None:
        """A partner's ack (``acknowledged``/``refused``) or an error report
        (``error``) about one of ours.  A later CONSULTE step updates the step
        of an acknowledged message; the two may arrive in any order (different
        queues): error wins over refused, which wins over acknowledged."""
        found = self.outbound(distribution_id)
        if found is None:
            return None
        rank = {"error": 3, "refused": 2, "acknowledged": 1}
        if rank.get(found.state, 0) > rank.get(state, 0):
            state = found.state  # an error, then a refusal, are never undone
        self.conn.execute(
            "UPDATE outbound SET state = ?, step = CASE WHEN ? = '' THEN step ELSE ? END, "
            "error = CASE WHEN ? = '' THEN error ELSE ? END, updated_at = ? "
            "WHERE distribution_id = ?",
            (state, step, step, error, error, at, distribution_id),
        )
        if found.case_id:
            self.touched.add(found.case_id)
        return self.outbound(distribution_id)

    def expire(self, now_ts: float, at: str) -> list[Outbound]:
        """Messages still waiting past their ``dateTimeExpires``: ``expired``
        with an alarm for those a partner should have acknowledged."""
        rows = self._outbound(
            "WHERE state IN ('queued', 'sent', 'confirmed') AND expires_ts <= ? "
            "AND NOT (kind IN ('Ack', 'Error') AND state = 'confirmed') ORDER BY seq",
            (now_ts,),
        )
        for row in rows:
            alarm = 1 if row.kind not in ("Ack", "Error") else 0
            self.conn.execute(
                "UPDATE outbound SET state = 'expired', alarm = ?, updated_at = ? "
                "WHERE distribution_id = ?",
                (alarm, at, row.distribution_id),
            )
            if row.case_id:
                self.touched.add(row.case_id)
        return [self.outbound(row.distribution_id) or row for row in rows]

    def outbound(self, distribution_id: str) -> Outbound | None:
        rows = self._outbound("WHERE distribution_id = ?", (distribution_id,))
        return rows[0] if rows else None

    def ledger(self, case_id: str | None = None, limit: int = 1000) -> list[Outbound]:
        if case_id is None:
            return self._outbound("ORDER BY seq DESC LIMIT ?", (limit,))
        return self._outbound("WHERE case_id = ? ORDER BY seq", (case_id,))

    def shared_with(self, case_id: str) -> list[str]:
        """The partners this case was shared with (an RS-EDA they did not
        refuse), in the order it was first shared."""
        rows = self.conn.execute(
            "SELECT recipient FROM outbound WHERE case_id = ? AND model = 'RS-EDA' "
            "AND state NOT IN ('refused', 'error') GROUP BY recipient ORDER BY min(seq)",
            (case_id,),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def exchanged(self, case_id: str, party: str) -> list[str]:
        """The envelopes of the RS-EDA / RS-EDA-MAJ sent to ``party`` about
        this case or received from it, oldest first (what the partner holds)."""
        rows = self.conn.execute(
            "SELECT at, envelope FROM ("
            " SELECT created_at AS at, seq AS n, envelope FROM outbound"
            " WHERE case_id = ? AND recipient = ? AND model IN ('RS-EDA', 'RS-EDA-MAJ')"
            " UNION ALL"
            " SELECT received_at AS at, rowid AS n, envelope FROM inbound"
            " WHERE case_id = ? AND sender = ? AND model IN ('RS-EDA', 'RS-EDA-MAJ')"
            " AND outcome IN ('integrated', 'updated')"
            ") ORDER BY at, n",
            (case_id, party, case_id, party),
        ).fetchall()
        return [str(r[1]) for r in rows]

    def _outbound(self, where: str, args: tuple[Any, ...]) -> list[Outbound]:
        rows = self.conn.execute(
            "SELECT seq, distribution_id, created_at, recipient, kind, model, case_id, ref, "
            f"expires_at, state, step, error, alarm, attempts, envelope FROM outbound {where}",
            args,
        ).fetchall()
        return [
            Outbound(
                seq=r[0],
                distribution_id=r[1],
                created_at=r[2],
                recipient=r[3],
                kind=r[4],
                model=r[5],
                case_id=r[6],
                ref=r[7],
                expires_at=r[8],
                state=r[9],
                step=r[10],
                error=r[11],
                alarm=bool(r[12]),
                attempts=r[13],
                envelope=r[14],
            )
            for r in rows
        ]

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {"inbound": {}, "outbound": {}, "appointments": {}}
        for state, n in self.conn.execute("SELECT outcome, count(*) FROM inbound GROUP BY 1"):
            out["inbound"][state or "received"] = n
        for state, n in self.conn.execute("SELECT state, count(*) FROM outbound GROUP BY 1"):
            out["outbound"][state] = n
        for attached, n in self.conn.execute(
            "SELECT case_id IS NOT NULL, count(*) FROM appointments GROUP BY 1"
        ):
            out["appointments"]["attached" if attached else "unattached"] = n
        out["outbound"]["alarms"] = int(
            self.conn.execute("SELECT count(*) FROM outbound WHERE alarm = 1").fetchone()[0]
        )
        return out

    # ------------------------------------------------------------------ appointments
    def appointment(self, appointment_id: str) -> StoredAppointment | None:
        row = self.conn.execute(
            "SELECT appointment_id, body, case_id, last_distribution_id FROM appointments "
            "WHERE appointment_id = ?",
            (appointment_id,),
        ).fetchone()
        if row is None:
            return None
        return StoredAppointment(row[0], json.loads(row[1]), row[2], row[3])

    def put_appointment(
        self,
        *,
        appointment_id: str,
        status: str,
        start: str,
        created: str,
        body: dict[str, Any],
        distribution_id: str,
        change: str,
        at: str,
    ) -> None:
        """Create, or replace the whole state (the attachment to a case stays)."""
        self.conn.execute(
            "INSERT INTO appointments (appointment_id, status, start, created, body, updated_at, "
            "last_distribution_id) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(appointment_id) DO UPDATE SET status = excluded.status, "
            "start = excluded.start, created = excluded.created, body = excluded.body, "
            "updated_at = excluded.updated_at, last_distribution_id = excluded.last_distribution_id",
            (
                appointment_id,
                status,
                start,
                created,
                json.dumps(body, ensure_ascii=False),
                at,
                distribution_id,
            ),
        )
        self.history(appointment_id, distribution_id, change, status, at)

    def history(
        self, appointment_id: str, distribution_id: str, change: str, status: str, at: str
    ) -> None:
        self.conn.execute(
            "INSERT INTO appointment_history (appointment_id, at, distribution_id, change, status) "
            "VALUES (?, ?, ?, ?, ?)",
            (appointment_id, at, distribution_id, change, status),
        )

    def appointments(self, *, unattached: bool = False) -> list[StoredAppointment]:
        where = "WHERE case_id IS NULL " if unattached else ""
        rows = self.conn.execute(
            "SELECT appointment_id, body, case_id, last_distribution_id FROM appointments "
            f"{where}ORDER BY start, appointment_id"
        ).fetchall()
        return [StoredAppointment(r[0], json.loads(r[1]), r[2], r[3]) for r in rows]

    def appointment_history(self, appointment_id: str) -> list[tuple[str, str, str, str]]:
        rows = self.conn.execute(
            "SELECT at, distribution_id, change, status FROM appointment_history "
            "WHERE appointment_id = ? ORDER BY seq",
            (appointment_id,),
        ).fetchall()
        return [(str(a), str(b), str(c), str(d)) for a, b, c, d in rows]

    def attach(self, appointment_id: str, case_id: str, by: str, at: str) -> bool:
        cur = self.conn.execute(
            "UPDATE appointments SET case_id = ?, attached_at = ?, attached_by = ? "
            "WHERE appointment_id = ?",
            (case_id, at, by, appointment_id),
        )
        return cur.rowcount == 1


class AsyncHubStore:
    """The store on its own thread: the event loop never waits on the disk."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="hub-store"
        )
        self._store: HubStore | None = None
        # ``listener(case_ids)`` on the event loop after a call changed the
        # ledger lines of those dossiers (shared, acknowledged, refused, expired)
        self.listeners: list[Callable[[frozenset[str]], None]] = []

    async def open(self) -> None:
        self._store = await self.run_raw(lambda: HubStore(self.path))

    @property
    def sync(self) -> HubStore:
        assert self._store is not None, "store not opened"
        return self._store

    async def run(self, fn: Callable[[HubStore], T]) -> T:
        store = self.sync

        def call() -> tuple[T, frozenset[str]]:
            try:
                return fn(store), store.drain_touched()
            except BaseException:
                store.touched.clear()
                raise

        result, touched = await self.run_raw(call)
        if touched:
            for listener in list(self.listeners):
                try:
                    listener(touched)
                except Exception:
                    log.exception("hub store listener failed")
        return result

    async def atomic(self, fn: Callable[[HubStore], T]) -> T:
        """``fn(store)`` inside one transaction."""

        def go(store: HubStore) -> T:
            with store.atomic():
                return fn(store)

        return await self.run(go)

    async def run_raw(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def close(self) -> None:
        if self._store is not None:
            store, self._store = self._store, None
            await self.run_raw(store.close)
        self._executor.shutdown(wait=True)


def iso(value: datetime) -> str:
    return value.isoformat()
