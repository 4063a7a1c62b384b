"""Large rosters (``bench/roster.py`` imports a national one): a CSV is
checked as a whole, then its rows are decoded a block at a time; the entries
share their repeated values; parsing needs memory of the order of the file's
size, not several copies of it."""

from __future__ import annotations

import tracemalloc
from datetime import date

import pytest

from sas_desk.models.roster import on_call_days
from sas_desk.services.roster import RosterFormatError, formats, parse_roster

HEADER = "date;debut;fin;secteur;communes;nom;prenom;rpps;adresse;code_postal;ville;telephone;commentaire"
PERIODS = (("09:00", "12:00"), ("14:00", "18:00"))


def roster(sectors: int, last: date) -> str:
    rows = [HEADER]
    for s in range(sectors):
        communes = "|".join(f"69{s * 10 + k + 1:03d}" for k in range(10))
        for n, day in enumerate(on_call_days(date(2027, 1, 1), last)):
            for start, end in PERIODS:
                rows.append(
                    f"{day:%d/%m/%Y};{start};{end};69-{s + 1};{communes};Lefèvre;Éloïse;;"
                    f"1 place de la Mairie;;;04 65 71 {n % 100:02d} {s:02d};"
                )
    return "\n".join(rows) + "\n"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1252"])
def test_rows_decoded_in_small_blocks_give_the_same_roster(
    encoding: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # blank lines before the header count as str.splitlines() counts them
    lead = "\n \u2028\r\n" if encoding != "cp1252" else "\n \r\n"
    text = lead + roster(2, date(2027, 3, 31))
    data = text.encode(encoding)
    whole = parse_roster(data, "g.csv")
    monkeypatch.setattr(formats, "_BLOCK", 7)
    blocks = parse_roster(data, "g.csv")
    assert blocks.entries == whole.entries
    assert (blocks.encoding, blocks.sha256) == (whole.encoding, whole.sha256)
    header = len(lead.splitlines()) + 1
    assert whole.entries[0].line == f"ligne {header + 1}" and whole.entries[0].given == "Éloïse"

    row = "03/01/2027;09:00;12:00;69-C;69123;Noël;;;;;;08 99 71 12 34;\n"
    bad = data + row.encode("utf-8" if encoding == "utf-8-sig" else encoding)
    with pytest.raises(RosterFormatError) as refused:
        parse_roster(bad, "g.csv")
    assert str(refused.value.issues[0]).startswith(
        f"ligne {header + len(whole.entries) + 1}, colonne telephone : numéro invalide « 08 99"
    )


def test_entries_share_their_repeated_values() -> None:
    entries = parse_roster(roster(2, date(2027, 1, 31)).encode(), "g.csv").entries
    first, second = entries[0], entries[len(entries) // 2]  # the same period, sectors 1 and 2
    assert (first.sector_code, second.sector_code) == ("69-1", "69-2")
    assert first.start is second.start and first.end is second.end and first.day is second.day
    assert first.communes is entries[1].communes  # the same sector
    assert first.family is second.family and first.address is second.address


def test_parsing_needs_memory_of_the_order_of_the_file_size() -> None:
    data = roster(8, date(2031, 12, 31)).encode()  # 5,008 rows, 0.7 MB
    tracemalloc.start()
    try:
        parsed = parse_roster(data, "national.csv")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(parsed.entries) == 5_008
    # the checked text (once) or the entries; not the text, its lines, a
    # copy and an UCS-4 buffer of it at once (≈ 12 times the file's size)
    assert peak < 4 * len(data), f"{peak / len(data):.1f} times the file's size"
