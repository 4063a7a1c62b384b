"""A RabbitMQ virtual host of its own for each test (the machine's broker).

``SAS_DESK_TEST_AMQP`` (default ``amqp://guest:guest@127.0.0.1:5672/``) names
the broker; the vhost is created with ``rabbitmqctl add_vhost`` and given to
the URL's user, then deleted.  An unreachable broker or a missing
``rabbitmqctl`` fails in CI and skips elsewhere (``tests.conftest.unavailable``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlsplit, urlunsplit
from uuid import uuid4

from tests.conftest import unavailable

BROKER = os.environ.get("SAS_DESK_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")


def _ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=60, check=False
    )


def vhost_url(vhost: str) -> str:
    parts = urlsplit(BROKER)
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), "", ""))


@contextmanager
def own_vhost(prefix: str = "sasdesk-test") -> Iterator[str]:
    """Yields the AMQP URL of a fresh vhost; deletes it afterwards."""
    parts = urlsplit(BROKER)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), 2).close()
    except OSError as exc:
        unavailable(f"RabbitMQ unreachable at {parts.hostname}:{parts.port}: {exc}")
    if shutil.which("rabbitmqctl") is None:
        unavailable("rabbitmqctl not found (needed to create a test vhost)")
    name = f"{prefix}-{uuid4().hex[:10]}"
    made = _ctl("add_vhost", name)
    if made.returncode != 0:
        unavailable(f"rabbitmqctl add_vhost failed: {made.stderr.strip()}")
    try:
        user = parts.username or "guest"
        perms = _ctl("set_permissions", "-p", name, user, ".*", ".*", ".*")
        assert perms.returncode == 0, perms.stderr
        yield vhost_url(name)
    finally:
        _ctl("delete_vhost", name)


def close_connections(vhost_url_: str, name_contains: str = "") -> int:
    """Close the client connections of that vhost (whose client-provided name
    contains ``name_contains``) from the server side, as a broker restart
    does; returns how many were closed."""
    vhost = urlsplit(vhost_url_).path[1:]
    listing = _ctl(
        "list_connections", "-q", "--no-table-headers", "pid", "vhost", "client_properties"
    )
    closed = 0
    for line in listing.stdout.splitlines():
        fields = line.split("\t")
        if len(fields) >= 3 and fields[1] == vhost and name_contains in fields[2]:
            _ctl("close_connection", fields[0], "test: connection closed by the server")
            closed += 1
    return closed


async def until(condition: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    """Wait for ``condition`` (checked every 20 ms) or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.02)
