"""The installable application (issue 18): the one-folder PyInstaller bundle
built from ``packaging/sas-desk.spec`` starts (``--smoke``) and parses a FHIR
Bundle with no Python of the machine in the way.

It takes minutes of CPU (7 min on the 2-core CI machine), so it runs when
``SAS_DESK_BUNDLE=1``: ``.ci/run`` sets it, a developer's full run skips it.
The build time and the bundle's size are printed (``-s`` or ``-rP`` to see them)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYINSTALLER = (sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean")
needs_build = pytest.mark.skipif(
    os.environ.get("SAS_DESK_BUNDLE") != "1", reason="set SAS_DESK_BUNDLE=1 (.ci/run does)"
)


def size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    work = tmp_path_factory.mktemp("pyinstaller")
    started = time.monotonic()
    spec = ROOT / "packaging" / "sas-desk.spec"
    dist, build_dir = work / "dist", work / "build"
    build = subprocess.run(
        [*PYINSTALLER, "--distpath", str(dist), "--workpath", str(build_dir), str(spec)],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    folder = work / "dist" / "sas-desk"
    print(
        f"\nbundle: built in {time.monotonic() - started:.0f} s, "
        f"{size_of(folder) / 2**20:.0f} MiB in {folder}"
    )
    yield folder
    shutil.rmtree(work, ignore_errors=True)


def run(bundle: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # a clean machine: no PYTHONPATH, no virtualenv, not run from the sources
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(cwd),
        "QT_QPA_PLATFORM": "offscreen",
        "LANG": "C.UTF-8",
    }
    return subprocess.run(
        [str(bundle / "sas-desk"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@needs_build
@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_the_bundle_starts_and_parses_a_fhir_bundle(bundle: Path, tmp_path: Path) -> None:
    smoke = run(bundle, "--smoke", "--data-dir", str(tmp_path / "data"), cwd=tmp_path)
    assert smoke.returncode == 0, smoke.stderr
    assert "SMOKE OK" in smoke.stdout and "journal=ok" in smoke.stdout

    from tests.unit.test_fhir_bundle import bundle as fhir_bundle
    from tests.unit.test_fhir_bundle import practitioner, role, schedule, slot

    path = tmp_path / "slots.json"
    path.write_text(json.dumps(fhir_bundle(slot(), schedule(), practitioner(), role())))
    parsed = run(bundle, "fhir", "parse", str(path), cwd=tmp_path)
    assert parsed.returncode == 0, parsed.stderr
    lines = [json.loads(line) for line in parsed.stdout.splitlines()]
    assert lines[-1]["summary"]["slots"] == len(lines) - 1 == 1

    hostile = tmp_path / "deep.json"
    hostile.write_text("[" * 100_000 + "]" * 100_000)
    refused = run(bundle, "fhir", "parse", str(hostile), cwd=tmp_path)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr

    version = run(bundle, "--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("sas-desk ")


def test_the_desktop_entry_names_the_program_and_its_icon() -> None:
    entry = (ROOT / "packaging" / "sas-desk.desktop").read_text(encoding="utf-8")
    fields = dict(line.split("=", 1) for line in entry.splitlines() if "=" in line)
    assert fields["Exec"] == "sas-desk" and fields["Icon"] == "sas-desk"
    assert (ROOT / "packaging" / "sas-desk.svg").read_text().startswith("<svg")


@needs_build
@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_the_bundles_search_worker_answers(bundle: Path, tmp_path: Path) -> None:
    """The frozen executable is its own search worker (``--search-worker FD``,
    how the app starts it when frozen): it opens a directory and searches."""
    import socket
    from datetime import datetime

    from sas_desk.models.search import SearchQuery
    from sas_desk.services.fhir import worker_protocol as wp

    mine, theirs = socket.socketpair()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    proc = subprocess.Popen(
        [str(bundle / "sas-desk"), "--search-worker", str(theirs.fileno())],
        pass_fds=(theirs.fileno(),),
        cwd=tmp_path,
        env=env,
    )
    theirs.close()
    mine.settimeout(60)
    stream = mine.makefile("rb")

    def receive() -> object:
        size = int.from_bytes(stream.read(4), "big")
        return wp.decode_to_app(stream.read(size))

    try:
        mine.sendall(wp.frame(wp.Open(str(tmp_path / "directory.sqlite"), "", ())))
        ready = receive()
        assert isinstance(ready, wp.Ready) and ready.ok, ready
        query = wp.WireQuery.of(SearchQuery(45.76, 4.83, 10.0))
        mine.sendall(wp.frame(wp.Search(1, query, datetime.now().astimezone())))
        messages = [receive(), receive()]
        last = wp.UpdateDecoder().decode(messages[-1])
        assert last.done and last.candidates == 0  # an empty directory: nobody to ask
        assert last.notes == ("Aucun praticien de cette spécialité dans le rayon de recherche.",)
    finally:
        stream.close()  # (the file object holds the socket open too)
        mine.close()  # the worker ends when the app's end closes
        assert proc.wait(30) == 0
