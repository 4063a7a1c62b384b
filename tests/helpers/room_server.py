"""A real room server process for tests (``sas-desk server`` on loopback).

Usage (async test or fixture)::

    db = RoomDatabase.sqlite(tmp_path)            # or RoomDatabase.postgres()
    await db.add_user("dr.durand", ["MRU"], "mot-de-passe-1")
    server = RoomServer.start(db, tmp_path)      # port 0: the server says where it listens
    ... httpx against server.url, Bearer tokens from server.login(...)
    server.stop()                                # SIGTERM, returns the exit code
    db.drop()                                    # PostgreSQL: drops the schema

The server runs with ``SAS_DESK_SERVER_TEST_CLOCK_TOKEN`` set, so
``PUT /_test/clock`` (header ``X-Test-Token: server.test_token``, body
``{"at": iso, "expire": bool}``) freezes its clock at ``at`` (and, with
``expire``, runs the lease expiry at that time and returns the expired
items).  ``tests/server/conftest.py`` wraps this in fixtures.
"""

from __future__ import annotations

import asyncio
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from uuid import uuid4

import argon2
import httpx

ROOT = Path(__file__).resolve().parents[2]
# accounts made by tests hash cheaply (the parameters travel in the hash):
# the server verifies them in milliseconds instead of ~0.5 s each
TEST_HASHER = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
T = TypeVar("T")
PG_DSN = os.environ.get("SAS_DESK_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
START_TIMEOUT_S = 30.0


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)`` in a thread of its own: on the main thread it
    would unset the event loop that the UI tests that follow share."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@dataclass
class RoomDatabase:
    """Where a test server keeps the room: a SQLite file or a fresh PostgreSQL schema."""

    dsn: str
    schema: str
    kind: str

    @classmethod
    def sqlite(cls, directory: Path) -> RoomDatabase:
        return cls(f"sqlite://{directory / 'room.sqlite'}", "sas_desk", "sqlite")

    @classmethod
    def postgres(cls) -> RoomDatabase:
        """A fresh schema; raises ``psycopg.OperationalError`` when unreachable."""
        import psycopg

        psycopg.connect(PG_DSN, connect_timeout=3).close()
        return cls(PG_DSN, f"srv_{uuid4().hex[:12]}", "postgres")

    async def add_user(
        self, login: str, roles: list[str], password: str, *, name: str = "", rpps: str = ""
    ) -> None:
        """Create an account directly in the store (what ``server user add`` does)."""
        from sas_desk.server.auth import hash_password
        from sas_desk.server.store import Account, open_store

        store = open_store(self.dsn, self.schema)
        await store.open()
        try:
            await store.add_account(
                Account(login, name, tuple(roles), rpps),
                hash_password(password, TEST_HASHER),
                datetime.now().astimezone(),
            )
        finally:
            await store.close()

    def drop(self) -> None:
        if self.kind != "postgres":
            return
        import psycopg
        from psycopg import sql

        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema))
            )


@dataclass
class RoomServer:
    db: RoomDatabase
    process: subprocess.Popen[str]
    url: str
    test_token: str
    stderr_path: Path
    pump: threading.Thread
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    tokens: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def start(
        cls,
        db: RoomDatabase,
        log_dir: Path,
        *,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        config: Path | None = None,
        allow_superuser: bool = True,
    ) -> RoomServer:
        token = secrets.token_hex(8)
        stderr_path = log_dir / f"room-server-{uuid4().hex[:6]}.log"
        full_env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SAS_DESK_SERVER_TEST_CLOCK_TOKEN": token,
            **(env or {}),
        }
        cmd = [
            sys.executable,
            "-m",
            "sas_desk",
            *(("--config", str(config)) if config is not None else ()),  # e.g. [identity]
            "server",
            "--dsn",
            db.dsn,
            "--schema",
            db.schema,
            "--listen",
            "127.0.0.1:0",
            # the test database's account is a superuser
            *(("--allow-superuser",) if allow_superuser else ()),
            *extra_args,
        ]
        with stderr_path.open("w") as err:
            process = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=full_env, cwd=ROOT
            )
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line.rstrip("\n"))

        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        try:
            first = lines.get(timeout=START_TIMEOUT_S)
        except queue.Empty:
            process.kill()
            process.wait()
            raise RuntimeError(f"room server silent: {stderr_path.read_text()}") from None
        if not first.startswith("LISTEN "):
            process.kill()
            raise RuntimeError(f"room server: {first} {stderr_path.read_text()}")
        server = cls(db, process, first.split()[1], token, stderr_path, thread, lines)
        server.wait_healthy()
        return server

    def wait_healthy(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"room server exited: {self.stderr_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"room server not healthy: {self.stderr_path.read_text()}")
            time.sleep(0.05)

    def wait_until(self, condition: Callable[[], bool], timeout: float = 15.0) -> None:
        """Polls ``condition`` (an HTTP check) until true; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError("condition not met in time")
            time.sleep(0.1)

    def login(self, login: str, password: str, role: str, workstation: str) -> dict[str, Any]:
        """The session body (raises on refusal)."""
        r = httpx.post(
            f"{self.url}/v1/session",
            json={"login": login, "password": password, "role": role, "workstation": workstation},
        )
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body

    def set_clock(self, at: datetime, *, expire: bool = False) -> dict[str, Any]:
        r = httpx.put(
            f"{self.url}/_test/clock",
            json={"at": at.isoformat(), "expire": expire},
            headers={"X-Test-Token": self.test_token},
        )
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.pump.join(5)
            self.process.stdout.close()
        return self.process.returncode
