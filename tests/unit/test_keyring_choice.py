"""The data key's keyring backend is chosen without keyring's full probe
(services/atrest.py): on a Linux machine without a D-Bus session the
``keyring`` package is not even imported, and where it is, the macOS
backend (whose import runs ``ldconfig``, ``gcc`` and ``ld``) is left out;
a backend named by ``PYTHON_KEYRING_BACKEND`` or set in the process wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sas_desk.services import atrest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
from pathlib import Path
from sas_desk.services.atrest import data_key
key = data_key(Path(sys.argv[1]))
imported = "keyring" in sys.modules
import keyring.core as core  # after the choice: what it left in the process
print(json.dumps({
    "imported_before": imported,
    "macos": "keyring.backends.macOS" in sys.modules,
    "backend": type(core._keyring_backend).__module__ if core._keyring_backend else None,
    "notice": bool(key.notice_fr),
}))
"""


def _probe(tmp_path: Path, env: dict[str, str]) -> dict[str, object]:
    base = {k: v for k, v in os.environ.items() if k not in _KEYRING_ENV}
    base["PYTHONPATH"] = str(ROOT)
    base["XDG_RUNTIME_DIR"] = str(tmp_path / "run")  # no bus socket there
    base["XDG_CONFIG_HOME"] = str(tmp_path / "config")  # no keyringrc.cfg there
    base.update(env)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "data")],
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


_KEYRING_ENV = ("PYTHON_KEYRING_BACKEND", "DBUS_SESSION_BUS_ADDRESS")


@pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="freedesktop machines only")
def test_without_a_session_bus_keyring_is_not_imported_and_the_key_file_serves(
    tmp_path: Path,
) -> None:
    seen = _probe(tmp_path, {})
    assert seen["imported_before"] is False  # ~0.1 s of imports saved, and no probe
    assert seen["notice"] is True  # the key in its file beside the data dir, said
    assert (tmp_path / "data.key").exists()


@pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="freedesktop machines only")
def test_with_a_session_bus_the_macos_backend_is_left_out(tmp_path: Path) -> None:
    # a bus address that answers nothing: every freedesktop backend declines
    seen = _probe(tmp_path, {"DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp_path}/nobus"})
    assert seen["imported_before"] is True
    assert seen["macos"] is False  # keyring's own choice imports it (ldconfig, gcc, ld)
    assert seen["backend"] == "keyring.backends.fail"
    assert seen["notice"] is True


def test_a_backend_named_in_the_environment_wins(tmp_path: Path) -> None:
    seen = _probe(tmp_path, {"PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"})
    assert seen["backend"] == "keyring.backends.null"


def test_the_freedesktop_check_reads_the_bus_and_the_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if sys.platform in ("darwin", "win32"):
        pytest.skip("freedesktop machines only")
    for name in _KEYRING_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert atrest._no_desktop_keyring()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "bus").touch()  # the session bus's socket
    assert not atrest._no_desktop_keyring()
    (tmp_path / "run" / "bus").unlink()
    rc = tmp_path / "config" / "python_keyring" / "keyringrc.cfg"
    rc.parent.mkdir(parents=True)
    rc.write_text("[backend]\ndefault-keyring=keyring.backends.null.Keyring\n")
    assert not atrest._no_desktop_keyring()
