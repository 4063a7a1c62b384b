"""Telephony call records: the bounded reader (French messages naming the
file, line and column) and the figures on a hand-built day."""

from __future__ import annotations

import pytest

from sas_desk.models.stats import Granularity, RawStats, build_report, export_rows, parse_period
from sas_desk.models.telephony import TelephonyError, parse_calls

# the 14th of March 2026 in Paris (UTC+1): 12 calls presented, 10 answered of
# which 8 within 60 s (60 s itself included), 2 abandoned; one the evening of
# the 13th in UTC is the 14th at 00:30 in Paris; one is the 15th's.
DAY = """\ufeffPresente_le;attente_s;issue;numero
2026-03-13T23:30:00Z;5;decroche;0600000001
2026-03-14T08:00:00+01:00;10;DÉCROCHÉ;0600000002
2026-03-14T08:05:00+01:00;59,5;decroche;
2026-03-14T09:00:00+01:00;60;decroche;
2026-03-14T10:00:00+01:00;61;decroche;
2026-03-14T11:00:00+01:00;300;decroche;
2026-03-14T12:00:00+01:00;1;decroche;
2026-03-14T13:00:00+01:00;2;decroche;
2026-03-14T14:00:00+01:00;3;decroche;
2026-03-14T15:00:00+01:00;4;decroche;

2026-03-14T16:00:00+01:00;30;abandonne;
2026-03-14T23:59:59+01:00;90;abandonne;
2026-03-15T00:00:00+01:00;5;decroche;
"""


def test_the_day_s_figures() -> None:
    calls = parse_calls(DAY.encode(), "appels.csv")
    assert len(calls) == 13
    period = parse_period("2026-03-14", "2026-03-14", Granularity.DAY)
    raw = RawStats(calls=[])
    from sas_desk.models.stats import telephony_rows

    raw.calls = telephony_rows(calls, period, Granularity.DAY)
    (row,) = build_report(raw, period, Granularity.DAY).rows
    assert (row["tel_presentes"], row["tel_decroches"], row["tel_abandonnes"]) == (12, 10, 2)
    assert row["tel_decroches_60s"] == 8
    assert (row["tel_taux_decroche_pct"], row["tel_qs60_pct"]) == (83.3, 66.7)
    # exports: 2 abandoned calls would be rebuilt from 12 − 10: both hidden
    (out,) = export_rows(build_report(raw, period, Granularity.DAY))
    assert out["tel_abandonnes"] == "<11" and out["tel_decroches"] == "<11"
    assert out["tel_presentes"] == 12


def test_no_file_no_columns() -> None:
    period = parse_period("2026-03-14", "2026-03-14", Granularity.DAY)
    report = build_report(RawStats(), period, Granularity.DAY)
    assert not [c for c in report.columns if c.startswith("tel_")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "appels.csv : fichier vide"),
        ("presente_le;issue\n", "ligne 1 : colonne(s) absente(s) : attente_s"),
        ("presente_le;attente_s;issue\n14/03/2026;1;decroche\n", "ligne 2, colonne presente_le"),
        ("presente_le;attente_s;issue\n2026-03-14T10:00:00;1;decroche\n", "fuseau horaire absent"),
        ("presente_le;attente_s;issue\n2026-03-14T10:00:00Z;-1;decroche\n", "colonne attente_s"),
        ("presente_le;attente_s;issue\n2026-03-14T10:00:00Z;nan;decroche\n", "colonne attente_s"),
        ("presente_le;attente_s;issue\n\n2026-03-14T10:00:00Z;1;perdu\n", "ligne 3, colonne issue"),
        ("presente_le;attente_s;issue\n2026-03-14T10:00:00Z;1\n", "colonne issue : valeur absente"),
    ],
)
def test_a_bad_file_is_refused_in_french(text: str, message: str) -> None:
    with pytest.raises(TelephonyError) as refused:
        parse_calls(text.encode(), "appels.csv")
    assert message in refused.value.message_fr


def test_not_utf8_is_refused() -> None:
    with pytest.raises(TelephonyError, match="UTF-8"):
        parse_calls("presente_le;attente_s;issue\n\xe9".encode("latin-1"), "appels.csv")
