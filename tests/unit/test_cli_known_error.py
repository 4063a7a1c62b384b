"""One way to fail on the command line too: a known error that reaches the
command line's top is said in French (exit 1), never as a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sas_desk import cli
from sas_desk.models.queue import QueueError


def test_a_known_error_is_told_in_french_with_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refused(_args: Any) -> int:
        raise QueueError("Serveur des files injoignable : réessayez.", "unavailable")

    monkeypatch.setattr(cli, "_fhir_command", refused)
    bundle = tmp_path / "b.json"
    bundle.write_text("{}", encoding="utf-8")
    rc = cli.main(["--data-dir", str(tmp_path), "fhir", "parse", str(bundle)])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.strip() == "sas-desk : Serveur des files injoignable : réessayez."
    assert "Traceback" not in err


def test_a_bug_is_not_dressed_as_a_known_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_args: Any) -> int:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli, "_fhir_command", broken)
    bundle = tmp_path / "b.json"
    bundle.write_text("{}", encoding="utf-8")
    with pytest.raises(ZeroDivisionError):
        cli.main(["--data-dir", str(tmp_path), "fhir", "parse", str(bundle)])
