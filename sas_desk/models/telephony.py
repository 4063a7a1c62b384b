"""The telephony's call records, for the statistics: taux de décroché and
quality of service at 60 s (national target: 99 % of the presented calls
answered within 60 s).  Pure: the command line reads the file and hands its
text in.

The file (documented in ``docs/statistics.md``): CSV, UTF-8 (a BOM is
accepted), ``;`` separated, a header line naming at least these columns, in any
order::

    presente_le;attente_s;issue
    2026-03-14T10:02:11+01:00;12;decroche
    2026-03-14T10:05:40+01:00;95;abandonne

- ``presente_le``: when the call was presented to the room (ISO 8601 with its
  offset);
- ``attente_s``: seconds until it was answered (``decroche``) or hung up
  (``abandonne``), a whole or decimal number ≥ 0;
- ``issue``: ``decroche`` or ``abandonne`` (case and accents ignored).

Nothing else is read (a caller's number in another column is never kept).
A bad line stops the import with a French message naming the file, the line
and the column; the file is bounded in size and lines.
"""

from __future__ import annotations

import csv
import io
import math
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from sas_desk.models.errors import KnownError

MAX_BYTES = 64 * 1024 * 1024
MAX_LINES = 2_000_000
QS_SECONDS = 60  # quality of service: answered within 60 s
COLUMNS = ("presente_le", "attente_s", "issue")


class TelephonyError(KnownError):
    """A refused call file (French message naming file, line, column)."""

    def __init__(self, message_fr: str) -> None:
        super().__init__(message_fr)
        self.message_fr = message_fr


@dataclass(frozen=True)
class Call:
    presented: datetime
    wait_s: float
    answered: bool


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.strip().casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def parse_calls(data: bytes, where: str) -> list[Call]:
    """The calls of a file's bytes; raises :class:`TelephonyError`."""
    if len(data) > MAX_BYTES:
        raise TelephonyError(
            f"{where} : fichier trop gros ({len(data) // 1_000_000} Mo, {MAX_BYTES // 1_000_000} Mo au plus)."
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TelephonyError(
            f"{where} : encodage invalide (UTF-8 attendu, octet {exc.start})."
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=";")
    try:
        header = next(reader)
    except StopIteration:
        raise TelephonyError(
            f"{where} : fichier vide (en-tête {';'.join(COLUMNS)} attendu)."
        ) from None
    except csv.Error as exc:
        raise TelephonyError(f"{where}, ligne 1 : en-tête illisible ({exc}).") from None
    names = [_fold(h) for h in header]
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise TelephonyError(
            f"{where}, ligne 1 : colonne(s) absente(s) : {', '.join(missing)} "
            f"(attendu : {';'.join(COLUMNS)})."
        )
    at, wait, issue = (names.index(c) for c in COLUMNS)
    calls: list[Call] = []
    try:
        for row in reader:
            line = reader.line_num
            if line > MAX_LINES:
                raise TelephonyError(f"{where} : plus de {MAX_LINES} lignes.")
            if not any(cell.strip() for cell in row):
                continue
            calls.append(_call(row, line, where, at, wait, issue))
    except csv.Error as exc:
        raise TelephonyError(
            f"{where}, ligne {reader.line_num} : ligne illisible ({exc})."
        ) from None
    return calls


def _call(row: list[str], line: int, where: str, at: int, wait: int, issue: int) -> Call:
    def cell(index: int, name: str) -> str:
        if index >= len(row):
            raise TelephonyError(f"{where}, ligne {line}, colonne {name} : valeur absente.")
        return row[index].strip()

    raw_at = cell(at, "presente_le")
    try:
        presented = datetime.fromisoformat(raw_at)
    except ValueError:
        raise TelephonyError(
            f"{where}, ligne {line}, colonne presente_le : « {raw_at[:40]} » n'est pas une "
            "date-heure ISO 8601 (AAAA-MM-JJTHH:MM:SS+01:00)."
        ) from None
    if presented.tzinfo is None:
        raise TelephonyError(
            f"{where}, ligne {line}, colonne presente_le : fuseau horaire absent "
            "(+01:00, +02:00 ou Z attendu)."
        )
    raw_wait = cell(wait, "attente_s")
    try:
        wait_s = float(raw_wait.replace(",", "."))
    except ValueError:
        wait_s = math.nan
    if not math.isfinite(wait_s) or wait_s < 0 or wait_s > 86400:
        raise TelephonyError(
            f"{where}, ligne {line}, colonne attente_s : « {raw_wait[:20]} » n'est pas un nombre "
            "de secondes entre 0 et 86400."
        )
    raw_issue = _fold(cell(issue, "issue"))
    if raw_issue not in ("decroche", "abandonne"):
        raise TelephonyError(
            f"{where}, ligne {line}, colonne issue : « {raw_issue[:20]} » inconnue "
            "(decroche ou abandonne)."
        )
    return Call(presented, wait_s, raw_issue == "decroche")


def grouped(
    calls: Iterable[Call], bucket: Callable[[datetime], str | None]
) -> list[tuple[str, int, int, int]]:
    """(bucket, answered 0/1, answered within 60 s 0/1, n) for the calls whose
    ``bucket(presented)`` is a key (None: outside the period)."""
    counts: Counter[tuple[str, int, int]] = Counter()
    for call in calls:
        key = bucket(call.presented)
        if key is None:
            continue
        fast = call.answered and call.wait_s <= QS_SECONDS
        counts[(key, int(call.answered), int(fast))] += 1
    return [(*k, n) for k, n in counts.items()]
