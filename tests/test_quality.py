"""Static checks run as part of the test suite (and therefore in CI):
ruff (lint and format), mypy (strict on models and services) and the
import-linter contract that keeps Qt out of models and services."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_lint() -> None:
    result = run(sys.executable, "-m", "ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = run(sys.executable, "-m", "ruff", "format", "--no-cache", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy() -> None:
    result = run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts() -> None:
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports not installed: pip install -e '.[test]'")
    result = run(exe, "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_contract_actually_catches_a_qt_import(tmp_path: Path) -> None:
    """The contract is not vacuous: a services module importing PySide6 breaks it."""
    bad = ROOT / "sas_desk" / "services" / "_contract_probe.py"
    bad.write_text("import PySide6.QtCore  # noqa: F401\n", encoding="utf-8")
    try:
        exe = shutil.which("lint-imports")
        assert exe is not None
        result = run(exe, "--no-cache")
    finally:
        bad.unlink()
    assert result.returncode != 0
    assert "BROKEN" in result.stdout


def test_no_process_events_inside_the_app() -> None:
    """processEvents() called from a coroutine re-enters other asyncio tasks
    under qasync ("Cannot enter into task…") and once wedged the shutdown:
    the app waits on the running loop instead (sas_desk.app.qt_turn)."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "sas_desk").rglob("*.py")
        if "processEvents(" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []
