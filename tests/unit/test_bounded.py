"""The bounded reader and the JSON limits every input goes through (issue 18)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sas_desk.models.limits import MAX_JSON_DEPTH, InputError, decode_json, decode_utf8
from sas_desk.services.bounded import load_json, read_bounded


def refused(data: bytes | str) -> InputError:
    with pytest.raises(InputError) as caught:
        decode_json(data)
    return caught.value


def test_a_json_nested_100000_levels_is_refused_not_a_recursion_error() -> None:
    error = refused("[" * 100_000 + "]" * 100_000)
    assert "JSON trop imbriqué" in error.message_fr


def test_nesting_just_over_the_cap_is_refused_with_its_json_path() -> None:
    deep = '{"a": [' * 40 + "1" + "]}" * 40  # 80 levels: under Python's limit, over ours
    error = refused(deep)
    assert "plus de 64 niveaux" in error.detail_fr
    assert error.where.startswith("$.a[0].a[0]")
    ok = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert decode_json(ok) is not None


def test_a_5001_digit_integer_is_refused_with_its_line() -> None:
    error = refused('{\n"a":\n' + "9" * 5001 + "}")
    assert error.detail_fr == "nombre entier de plus de 20 chiffres"
    assert error.where == "ligne 3"


@pytest.mark.parametrize("text", ["[NaN]", "[Infinity]", "[-Infinity]", "[1e400]"])
def test_non_finite_numbers_are_refused(text: str) -> None:
    assert "non fini" in refused(text).detail_fr


@pytest.mark.parametrize("text", ['{"a": "x\\u0000y"}', '{"a\\u0000": 1}', '"\\u0000"'])
def test_nul_characters_are_refused(text: str) -> None:
    assert "NUL" in refused(text).detail_fr


def test_syntax_errors_are_french_and_located() -> None:
    error = refused('{\n  "a": 1,\n  "b": }')
    assert error.message_fr == "ligne 3 : JSON invalide (valeur attendue, colonne 8)"


def test_utf8_with_bom_is_read_and_invalid_utf8_refused() -> None:
    assert decode_json(b'\xef\xbb\xbf{"a": "\xc3\xa9"}') == {"a": "é"}
    error = refused(b'{"a":\n "M\xe9\xff"}')
    assert error.where == "ligne 2" and "non UTF-8" in error.detail_fr
    with pytest.raises(InputError):
        decode_utf8(b"a\x00b")


def test_dev_zero_is_read_bounded_not_exhausting_memory() -> None:
    with pytest.raises(InputError) as caught:
        read_bounded(Path("/dev/zero"), 1024 * 1024)
    assert caught.value.message_fr == "/dev/zero : trop volumineux (plus de 1,0 Mo)"


def test_a_fifo_longer_than_the_cap_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    pid = os.fork()
    if pid == 0:  # the writer: more than the cap, then gone
        try:
            with open(fifo, "wb") as out:
                out.write(b"x" * 300_000)
        finally:
            os._exit(0)
    try:
        with pytest.raises(InputError) as caught:
            read_bounded(fifo, 100_000)
        assert "trop volumineux" in caught.value.detail_fr
    finally:
        os.waitpid(pid, 0)


def test_directories_and_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        read_bounded(tmp_path, 10)
    assert caught.value.message_fr == f"{tmp_path} : c'est un dossier, pas un fichier"
    with pytest.raises(InputError) as caught:
        read_bounded(tmp_path / "absent.json", 10)
    assert str(tmp_path / "absent.json") in caught.value.message_fr


def test_load_json_names_the_file_and_logs_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "message.json"
    path.write_text("[" * 100 + "]" * 100)
    with caplog.at_level("WARNING", logger="sas_desk.input"), pytest.raises(InputError) as caught:
        load_json(path, 1000)
    assert caught.value.message_fr.startswith(f"{path}, $")
    assert [r.getMessage() for r in caplog.records] == [f"input refused: {caught.value.message_fr}"]
