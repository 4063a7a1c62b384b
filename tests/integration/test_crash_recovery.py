"""Nothing typed is lost: type into a real SAS Desk process, kill it with
SIGKILL in the middle of the call, restart it, and find every field as it
was 300 ms before the kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DURABLE_AFTER = 0.300  # the promise: an edit older than this survives a crash


def start(mode: str, data_dir: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.typing_app", mode, str(data_dir)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until(
    proc: subprocess.Popen[str], stop: int, deadline: float
) -> list[tuple[float, str, str]]:
    """Read EDIT lines until ``stop`` edits were seen (or the typing ended)."""
    edits: list[tuple[float, str, str]] = []
    assert proc.stdout is not None
    while len(edits) < stop:
        if time.monotonic() > deadline:
            raise AssertionError("the typing process stalled")
        line = proc.stdout.readline()
        if not line:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"typing process ended early: {err[-2000:]}")
        if line.startswith("EDIT "):
            _, stamp, field, text = line.rstrip("\n").split(" ", 3)
            edits.append((float(stamp), field, json.loads(text)))
        elif line.startswith("TYPING DONE"):
            break
    return edits


@pytest.mark.parametrize("kill_after_edits", [37, 95])
def test_sigkill_mid_call_loses_nothing_older_than_300_ms(
    tmp_path: Path, kill_after_edits: int
) -> None:
    proc = start("type", tmp_path)
    try:
        edits = read_until(proc, kill_after_edits, time.monotonic() + 60)
        killed_at = time.time()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert len(edits) == kill_after_edits

    # what each field showed over the last 300 ms before the kill: the stored
    # value must be one of those (never older)
    acceptable: dict[str, set[str]] = {}
    last_old: dict[str, str] = {}
    for stamp, field, text in edits:
        if stamp <= killed_at - DURABLE_AFTER:
            last_old[field] = text
        else:
            acceptable.setdefault(field, set()).add(text)
    for field, text in last_old.items():
        acceptable.setdefault(field, set()).add(text)
    assert last_old, "the kill came too early to test anything"

    restart = start("resume", tmp_path)
    out, err = restart.communicate(timeout=60)
    assert restart.returncode == 0, err[-3000:]
    line = next(x for x in out.splitlines() if x.startswith("RESUME "))
    resumed = json.loads(line.removeprefix("RESUME "))
    assert resumed["banner"] and "1 fiche non terminée" in resumed["banner"]
    assert len(resumed["sheets"]) == 1
    sheet = resumed["sheets"][0]
    for field, text in last_old.items():
        assert sheet[field] in acceptable[field], (
            f"{field}: restored {sheet[field]!r}, typed {text!r} more than 300 ms before the kill"
        )
