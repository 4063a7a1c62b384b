"""Hostile roster files (issue 18): damaged UTF-8 is refused rather than read
as Windows-1252, ICS unfolding stays linear, a million bad lines give a short
listing."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest

from sas_desk.models.roster import PARIS
from sas_desk.services.geo.territory import CommuneIndex
from sas_desk.services.roster import RosterImportError, RosterService
from sas_desk.services.roster.formats import _unfold
from sas_desk.services.roster.service import MAX_LISTED

HEADER = "date;debut;fin;secteur;communes;nom;prenom;rpps;adresse;code_postal;ville;telephone;commentaire"
ROW = "03/01/2027;09:00;12:00;69-C;69123;{name};Jean;;;;;04 65 71 12 34;"
NOW = datetime(2026, 12, 30, 10, 0, tzinfo=PARIS)


@pytest.fixture(scope="module")
def communes() -> CommuneIndex:
    return CommuneIndex.load()


@pytest.fixture
def service(communes: CommuneIndex, tmp_path: Path) -> RosterService:
    svc = RosterService(tmp_path / "rosters.sqlite", communes=communes, now=lambda: NOW)
    svc.import_bytes(f"{HEADER}\n{ROW.format(name='Ancien')}\n".encode(), "precedent.csv")
    return svc


def test_damaged_utf8_is_refused_not_read_as_windows_1252(service: RosterService) -> None:
    body = f"{HEADER}\n{ROW.format(name='Lefèvre')}\n".encode() + ROW.format(
        name="M\udcff\udcfertin"
    ).encode("utf-8", "surrogateescape")
    with pytest.raises(RosterImportError) as caught:
        service.import_bytes(body, "gardes.csv")
    [issue] = caught.value.issues
    assert str(issue).startswith("ligne 3 : texte UTF-8 endommagé (octet 0xff invalide")
    assert [e.family for e in service.on_call("69123", datetime(2027, 1, 3, 10, tzinfo=PARIS))] == [
        "Ancien"
    ]


def test_a_plain_windows_1252_file_is_still_read(service: RosterService) -> None:
    body = f"{HEADER}\n{ROW.format(name='Lefèvre')}\n".encode("cp1252")
    report = service.import_bytes(body, "gardes.csv")
    assert report.encoding == "windows-1252"
    assert [e.family for e in service.on_call("69123", datetime(2027, 1, 3, 10, tzinfo=PARIS))] == [
        "Lefèvre"
    ]


def test_ics_unfolding_is_linear_in_the_number_of_folded_lines() -> None:
    # 2 million continuation lines of one property: the old unfolding copied the
    # growing line each time (quadratic: hours); joined once it is well under a second
    text = "DESCRIPTION:x\r\n" + " y\r\n" * 2_000_000 + "END:VEVENT\r\n"
    started = time.perf_counter()
    lines = _unfold(text)
    elapsed = time.perf_counter() - started
    assert [(n, len(v)) for n, v in lines] == [(1, 2_000_013), (2_000_002, 10)]
    assert elapsed < 10, elapsed


def test_many_bad_lines_list_the_first_ones_and_a_count(service: RosterService) -> None:
    body = (HEADER + "\n" + "x\n" * 200_000).encode()  # each line lacks 12 cells
    with pytest.raises(RosterImportError) as caught:
        service.import_bytes(body, "gardes.csv")
    lines = caught.value.lines_fr()
    assert len(caught.value.issues) == 200_000
    assert len(lines) == 1 + MAX_LISTED + 1
    assert lines[0].startswith("gardes.csv : 200000 erreurs")
    assert lines[-1] == f"  … et {200_000 - MAX_LISTED} autres erreurs"
