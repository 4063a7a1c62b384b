"""Hostile files on every input path of the command line (issue 18): each is
refused with a French message naming the file, exit code 1, no traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.test_cli import sas_desk

DEEP = "[" * 100_000 + "]" * 100_000
BIG_INT = '{"a": ' + "9" * 5001 + "}"


def _deep(tmp: Path) -> tuple[Path, str]:
    path = tmp / "deep.json"
    path.write_text(DEEP)
    return path, "imbriqué"


def _big_int(tmp: Path) -> tuple[Path, str]:
    path = tmp / "bigint.json"
    path.write_text(BIG_INT)
    return path, "nombre"


def _dev_zero(tmp: Path) -> tuple[Path, str]:
    return Path("/dev/zero"), "trop volumineux"


HOSTILE: dict[str, Callable[[Path], tuple[Path, str]]] = {
    "deep": _deep,
    "bigint": _big_int,
    "dev_zero": _dev_zero,
}

COMMANDS: dict[str, Callable[[Path], list[str]]] = {
    "import-rseda": lambda f: ["dossier", "import-rseda", str(f)],
    "fhir-parse": lambda f: ["fhir", "parse", str(f)],
    "roster-json": lambda f: ["roster", "import", str(f)],
    "roster-sectors": lambda f: ["roster", "import", "unused.csv", "--sectors", str(f)],
}


@pytest.mark.parametrize("hostile", sorted(HOSTILE))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_hostile_file_is_refused_in_french_with_exit_1(
    tmp_path: Path, command: str, hostile: str
) -> None:
    path, reason = HOSTILE[hostile](tmp_path)
    result = sas_desk(*COMMANDS[command](path), data_dir=tmp_path / "data")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "Error" not in result.stderr  # no RecursionError / ValueError / MemoryError
    assert path.name in result.stderr
    assert reason in result.stderr


@pytest.mark.parametrize("hostile", sorted(HOSTILE))
def test_hostile_config_is_refused_in_french_with_exit_1(tmp_path: Path, hostile: str) -> None:
    if hostile == "dev_zero":
        path, reason = Path("/dev/zero"), "trop volumineux"
    else:
        path = tmp_path / "config.toml"
        body = "a = " + DEEP if hostile == "deep" else "[geocoder]\ntimeout = " + "9" * 5001
        path.write_text(body + "\n")
        reason = "trop imbriqués" if hostile == "deep" else "ligne 2) : nombre démesuré"
    result = sas_desk("--config", str(path), "roster", "status", data_dir=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "Error" not in result.stderr
    assert "Configuration " in result.stderr and str(path) in result.stderr
    assert reason in result.stderr


@pytest.mark.parametrize("hostile", sorted(HOSTILE))
def test_hostile_room_server_settings_are_a_settings_error(tmp_path: Path, hostile: str) -> None:
    from sas_desk.server.settings import SettingsError, from_toml

    if hostile == "dev_zero":
        path = Path("/dev/zero")
    else:
        path = tmp_path / "server.toml"
        body = "a = " + DEEP if hostile == "deep" else "[server]\nlease_s = " + "9" * 5001
        path.write_text(body + "\n")
    with pytest.raises(SettingsError) as caught:
        from_toml(path)
    assert str(path) in caught.value.message_fr
