"""The workstation's side of the queues: operations with an offline outbox,
lease renewal, and the watch stream.

When the backend cannot be reached, the operation an ARM needs to keep
working (transmit = ``enqueue``) waits in a local SQLite outbox with its
idempotency key; waiting operations are replayed in order on reconnect.
The backend applies each ``op_id`` once, so a replay interrupted by another
connection drop and retried is still applied exactly once.  Operations that
need the server's answer (claims, decisions…) are refused offline with a
French message.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sas_desk.models.dossier import Actor, Dossier, Event
from sas_desk.models.queue import ChangeSet, Operation, QueueError, QueueItem, QueueName
from sas_desk.services.atrest import KeyGate, RecordCipher, seal, unseal
from sas_desk.services.queues.api import (
    DEFAULT_LEASE_S,
    DEFAULT_RENEW_S,
    BackendUnavailable,
    QueueBackend,
)
from sas_desk.services.sqlite_file import is_damaged, move_aside

log = logging.getLogger("sas_desk.queues")
T = TypeVar("T")

# what may wait in the outbox: facts that must reach the dossier's log and
# need no answer to go on (an ARM transmitting or adding to a dossier, a
# booking made at the vendor, a dental orientation); the rest needs the server
OFFLINE_KINDS = frozenset({"enqueue", "update", "orient"})


@dataclass(frozen=True)
class LinkState:
    online: bool
    pending: int  # operations waiting in the outbox
    message_fr: str = ""
    failed: tuple[str, ...] = ()  # French messages of replays the server refused


Listener = Callable[[LinkState], None]


class Outbox:
    """Pending operations on disk (one thread owns the connection)."""

    def __init__(self, path: Path, *, cipher: RecordCipher | KeyGate | None = None) -> None:
        """``cipher``: operations (they carry dossiers) sealed at rest; a
        :class:`KeyGate` when the key comes after the outbox opens (adding or
        reading an operation waits for it, counting does not)."""
        self.path = path
        self._cipher = cipher
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="outbox"
        )
        self._conn: sqlite3.Connection | None = None
        self.notice_fr = ""  # what the operator must know about this file, if anything

    def _open(self) -> None:
        """Open the file; a damaged one is moved aside (like the journal) and a
        new one made; an unusable data directory (a file, read-only, full)
        gives an outbox in memory: the workstation starts either way."""
        try:
            self._conn = self._connect(self.path)
            return
        except (sqlite3.Error, OSError) as exc:
            error: BaseException = exc
        if is_damaged(error):
            try:
                moved = move_aside(self.path, datetime.now().astimezone())
                self._conn = self._connect(self.path)
                self.notice_fr = (
                    f"La file d'envoi hors ligne était endommagée : elle a été mise de côté "
                    f"sous « {moved.name} » et une nouvelle a été créée."
                )
                return
            except (sqlite3.Error, OSError) as exc:
                error = exc
        log.error("outbox %s unusable (%s): kept in memory", self.path, error)
        self._conn = self._connect(None)
        self.notice_fr = (
            f"La file d'envoi hors ligne ne peut pas être enregistrée dans « {self.path.parent} » "
            f"({_reason_fr(error, self.path.parent)}) : elle est gardée en mémoire, une transmission hors ligne "
            "serait perdue si le poste s'arrêtait."
        )

    @staticmethod
    def _connect(path: Path | None) -> sqlite3.Connection:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            ":memory:" if path is None else str(path), timeout=5.0, isolation_level=None
        )
        try:
            if path is not None:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                check = conn.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise sqlite3.DatabaseError(f"malformed: quick_check {check}")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                "op_id TEXT UNIQUE NOT NULL, op TEXT NOT NULL, "
                "attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT '')"
            )
        except BaseException:
            conn.close()
            raise
        return conn

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def open(self) -> None:
        await self._run(self._open)

    async def _key(self) -> RecordCipher | None:
        if isinstance(self._cipher, KeyGate):
            self._cipher = await self._cipher.cipher()
        return self._cipher

    async def add(self, op: Operation) -> None:
        cipher = await self._key()

        def add() -> None:
            assert self._conn is not None
            self._conn.execute(
                "INSERT OR IGNORE INTO outbox(op_id, op) VALUES (?, ?)",
                (op.op_id, seal(cipher, json.dumps(encode_op(op)), op.op_id)),
            )

        await self._run(add)

    async def pending(self) -> list[Operation]:
        cipher = await self._key()

        def read() -> list[Operation]:
            assert self._conn is not None
            rows = self._conn.execute("SELECT op_id, op FROM outbox ORDER BY seq").fetchall()
            return [decode_op(json.loads(unseal(cipher, r[1], r[0]))) for r in rows]

        return await self._run(read)

    async def count(self) -> int:
        def read() -> int:
            assert self._conn is not None
            return int(self._conn.execute("SELECT count(*) FROM outbox").fetchone()[0])

        return await self._run(read)

    async def done(self, op_id: str) -> None:
        def delete() -> None:
            assert self._conn is not None
            self._conn.execute("DELETE FROM outbox WHERE op_id = ?", (op_id,))

        await self._run(delete)

    async def failed_attempt(self, op_id: str, error: str) -> None:
        def update() -> None:
            assert self._conn is not None
            self._conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE op_id = ?",
                (error, op_id),
            )

        await self._run(update)

    async def close(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await self._run(close)
        self._executor.shutdown(wait=True)


def encode_op(op: Operation) -> dict[str, Any]:
    return {
        "op_id": op.op_id,
        "kind": op.kind,
        "case_id": op.case_id,
        "at": op.at.isoformat(),
        "role": op.role,
        "operator": op.operator,
        "workstation": op.workstation,
        "data": op.data,
    }


def _reason_fr(exc: BaseException, folder: Path) -> str:
    if isinstance(exc, FileExistsError | NotADirectoryError):
        return "c'est un fichier, pas un dossier"
    if (
        isinstance(exc, PermissionError)
        or "readonly" in str(exc)
        or (folder.is_dir() and not os.access(folder, os.W_OK))
    ):
        return "lecture seule"
    if "full" in str(exc) or getattr(exc, "errno", None) == 28:
        return "disque plein"
    return exc.__class__.__name__


def decode_op(raw: dict[str, Any]) -> Operation:
    return Operation(
        op_id=raw["op_id"],
        kind=raw["kind"],
        case_id=raw["case_id"],
        at=datetime.fromisoformat(raw["at"]),
        role=raw["role"],
        operator=raw["operator"],
        workstation=raw["workstation"],
        data=raw.get("data", {}),
    )


class QueueClient:
    def __init__(
        self,
        backend: QueueBackend,
        outbox: Outbox,
        actor: Actor,
        *,
        now: Callable[[], datetime],
        lease_s: float = DEFAULT_LEASE_S,
        renew_s: float = DEFAULT_RENEW_S,
        retry_delay: float = 1.0,
        max_retry_delay: float = 5.0,
    ) -> None:
        self.backend = backend
        self.outbox = outbox
        self.actor = actor
        self._now = now
        self.lease_s = lease_s
        self.renew_s = renew_s
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.state = LinkState(online=True, pending=0)
        self._listeners: list[Listener] = []
        self._applied: list[Callable[[Operation], object]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._replaying = asyncio.Lock()

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        await self.outbox.open()
        try:
            await self.backend.open()
        except BackendUnavailable as exc:
            self._set_state(False, exc.message_fr)
        pending = await self.outbox.count()
        notices = [n for n in (getattr(self.backend, "notice_fr", ""), self.outbox.notice_fr) if n]
        message = " ".join([self.state.message_fr, *notices]).strip()
        self._set_state(self.state.online, message, pending=pending)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._replay_loop(), name="queues-replay"),
            loop.create_task(self._lease_loop(), name="queues-leases"),
        ]
        if pending:
            self._wake.set()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # bounded: a wedged task must never keep the workstation from closing
            _done, stuck = await asyncio.wait(self._tasks, timeout=5.0)
            for task in stuck:
                log.error("queue task %s did not stop", task.get_name())
        self._tasks = []
        log.debug("queue client: tasks stopped")
        await self.backend.close()
        log.debug("queue client: backend closed")
        await self.outbox.close()
        log.debug("queue client: outbox closed")

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)
        listener(self.state)

    def on_applied(self, listener: Callable[[Operation], object]) -> None:
        """``listener(op)`` once the room applied ``op`` (now, or replayed
        from the outbox): what follows a dossier's change outside the room
        (the Hub Santé updates to partners) hangs here, not on a widget."""
        self._applied.append(listener)

    def _was_applied(self, op: Operation) -> None:
        for listener in list(self._applied):
            try:
                listener(op)
            except Exception:
                log.exception("listener of applied operations failed")

    def _set_state(
        self,
        online: bool,
        message_fr: str = "",
        *,
        pending: int | None = None,
        failed: tuple[str, ...] = (),
    ) -> None:
        self.state = LinkState(
            online, self.state.pending if pending is None else pending, message_fr, failed
        )
        for listener in list(self._listeners):
            try:
                listener(self.state)
            except Exception:
                log.exception("queue listener failed")

    # ---------------------------------------------------------------- operations
    def operation(self, kind: str, case_id: str, **data: Any) -> Operation:
        return Operation(
            op_id=str(uuid.uuid4()),
            kind=kind,
            case_id=case_id,
            at=self._now(),
            role=self.actor.role,
            operator=self.actor.operator,
            workstation=self.actor.workstation,
            data=data,
        )

    async def submit(self, op: Operation) -> QueueItem | None:
        """Apply ``op`` now; offline, keep it in the outbox when it is one an
        ARM may do offline (returns ``None``), else raise ``QueueError``."""
        if self.state.pending and op.kind in OFFLINE_KINDS:
            await self._defer(
                op, self.state.message_fr
            )  # keep the order of what is already waiting
            return None
        try:
            item = await self.backend.apply(op)
        except BackendUnavailable as exc:
            if op.kind not in OFFLINE_KINDS:
                self._set_state(False, exc.message_fr)
                raise QueueError(
                    f"Hors ligne : {exc.message_fr} Action impossible pour le moment.", "offline"
                ) from exc
            await self._defer(op, exc.message_fr)
            return None
        if not self.state.online:
            self._set_state(True, pending=self.state.pending)
        self._was_applied(op)
        return item

    async def _defer(self, op: Operation, reason: str) -> None:
        already_waiting = self.state.pending > 0
        await self.outbox.add(op)
        pending = await self.outbox.count()
        log.warning(
            "queues offline, %s %s kept in the outbox (%d pending)", op.kind, op.op_id, pending
        )
        self._set_state(False, reason, pending=pending)
        if not already_waiting:
            self._wake.set()  # start the retry cycle; later deferrals join it

    async def enqueue(self, dossier: Dossier, queue: QueueName | None = None) -> QueueItem | None:
        data: dict[str, Any] = {"dossier": dossier.to_dict()}
        if queue is not None:
            data["queue"] = queue.value
        return await self.submit(self.operation("enqueue", dossier.case_id, **data))

    async def after_orientation(
        self,
        case_id: str,
        kind: str,
        text: str,
        sent: Awaitable[object] | None = None,
        **data: Any,
    ) -> QueueItem | None:
        """What follows an orientation in the room's log (``sent``: the
        desk's ``orient`` operation, awaited first: a closed item takes no
        more): ``close`` once a booking is made, ``transfer`` to a physician
        after a dental orientation that needs one.  ``text`` is the reason."""
        if kind not in ("close", "transfer"):
            raise ValueError(f"no orientation workflow ends with {kind!r}")
        if sent is not None:
            await sent
        return await self.submit(self.operation(kind, case_id, reason=text, **data))

    # ---------------------------------------------------------------- replay
    async def replay(self) -> int:
        """Send what waits in the outbox, in order; returns how many were applied."""
        async with self._replaying:
            applied = 0
            failed: list[str] = []
            for op in await self.outbox.pending():
                try:
                    await self.backend.apply(op)
                except BackendUnavailable as exc:
                    await self.outbox.failed_attempt(op.op_id, exc.message_fr)
                    self._set_state(False, exc.message_fr, pending=await self.outbox.count())
                    return applied
                except QueueError as exc:
                    log.error("replayed %s %s refused: %s", op.kind, op.op_id, exc.code)
                    failed.append(exc.message_fr)
                    await self.outbox.done(op.op_id)
                    continue
                await self.outbox.done(op.op_id)
                applied += 1
                self._was_applied(op)
            self._set_state(True, pending=await self.outbox.count(), failed=tuple(failed))
            if applied:
                log.info("outbox replayed: %d operation(s)", applied)
            return applied

    async def _replay_loop(self) -> None:
        delay = self.retry_delay
        while True:
            if not self.state.pending:
                self._wake.clear()
                await self._wake.wait()
            await self.replay()
            if self.state.pending:
                try:
                    await asyncio.wait_for(self._wake.wait(), delay)
                except TimeoutError:
                    pass
                self._wake.clear()
                delay = min(delay * 2, self.max_retry_delay)
            else:
                delay = self.retry_delay

    async def _lease_loop(self) -> None:
        while True:
            try:
                await self.backend.renew(self.actor.workstation, self._now(), self.lease_s)
                expired = await self.backend.expire(self._now())
                if expired:
                    log.warning("%d claim(s) expired and went back to their queue", len(expired))
            except BackendUnavailable as exc:
                self._set_state(False, exc.message_fr)
            except QueueError:
                log.exception("lease maintenance refused")
            await asyncio.sleep(self.renew_s)

    # ---------------------------------------------------------------- reads
    def watch(self, queues: Iterable[QueueName]) -> AsyncIterator[ChangeSet]:
        return self.backend.watch(queues)

    async def dossier(self, case_id: str) -> Dossier | None:
        return await self.backend.dossier(case_id)

    async def events(self, case_id: str) -> list[Event]:
        return await self.backend.events(case_id)
