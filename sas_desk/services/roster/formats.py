"""Reading roster files: CSV, iCalendar and our JSON (``docs/rosters.md``).

Every reader turns bytes into :class:`ParsedRoster` or raises
:class:`RosterFormatError` listing **every** problem found, each located
(``ligne 12, colonne telephone : numéro invalide …``).  Nothing is stored
here: the store applies a parsed roster in one transaction.

The checks are the same whatever the format: dates and times (Europe/Paris,
a period crossing midnight is written ``08:00+1``), sector, communes (INSEE
codes, known to the territory when it covers their département), dentist
name, RPPS (11 digits), phone (E.164), text lengths.  A cell holding a
spreadsheet formula (``=…``, ``@…``) is refused where a value is expected
and kept as plain text in free-text columns; :func:`export_csv` neutralises
such cells (``'`` prefix) when writing a roster back out.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Any

from sas_desk.models.errors import KnownError
from sas_desk.models.limits import InputError, decode_json
from sas_desk.models.roster import MAX_PERIOD, PARIS, RosterEntry, Sector
from sas_desk.models.validation import ValidationError, normalize_phone, validate_insee
from sas_desk.services.bounded import read_bounded

__all__ = [
    "CSV_COLUMNS",
    "MAX_BYTES",
    "Issue",
    "ParsedRoster",
    "RosterFormatError",
    "decode_text",
    "export_csv",
    "parse_roster",
    "parse_sectors",
    "read_limited",
]

#: Largest roster file accepted (a département's year is well under 1 MB).
MAX_BYTES = 20 * 1024 * 1024
CSV_COLUMNS = (
    "date",
    "debut",
    "fin",
    "secteur",
    "communes",
    "nom",
    "prenom",
    "rpps",
    "adresse",
    "code_postal",
    "ville",
    "telephone",
    "commentaire",
)
SECTOR_COLUMNS = ("secteur", "nom", "communes")
MAX_TEXT = 500  # characters in one free-text cell
FORMULA_PREFIXES = ("=", "+", "-", "@")

KnownCommune = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem of a file, located; ``str()`` is the French message."""

    where: str  # "ligne 12", "VEVENT n° 3 (ligne 40)", "entrée n° 2", "fichier"
    field: str  # "colonne telephone", "propriété DTSTART", "champ phone", or ""
    message: str

    def __str__(self) -> str:
        head = f"{self.where}, {self.field}" if self.field else self.where
        return f"{head} : {self.message}"


class RosterFormatError(KnownError):
    """The file cannot be imported; :attr:`issues` lists every problem."""

    def __init__(self, issues: Sequence[Issue], source: str = "") -> None:
        self.issues = list(issues)
        self.source = source
        count = len(self.issues)
        head = f"{source} : " if source else ""
        first = str(self.issues[0]) if self.issues else "fichier refusé"
        self.message_fr = (
            f"{head}{first}"
            if count == 1
            else f"{head}{count} erreurs, le tableau n'est pas importé (1re : {first})"
        )
        super().__init__(self.message_fr)


@dataclass(frozen=True)
class ParsedRoster:
    entries: list[RosterEntry]
    sectors: list[Sector]
    kind: str  # csv | ics | json
    encoding: str
    source: str
    size: int = 0
    sha256: str = ""
    skipped: list[Issue] = field(default_factory=list)  # cancelled events and the like


# --------------------------------------------------------------------------- bytes


def _size_fr(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} Mo".replace(".", ",")


def read_limited(path: Path, max_bytes: int = MAX_BYTES) -> bytes:
    """The file's bytes, refused (before reading) when larger than *max_bytes*."""
    try:
        size = path.stat().st_size
    except OSError:
        size = 0  # read_bounded says why
    if size > max_bytes:
        raise RosterFormatError([_too_big(size, max_bytes)], path.name)
    try:
        return read_bounded(path, max_bytes)
    except InputError as exc:
        raise RosterFormatError([Issue("fichier", "", exc.detail_fr)], path.name) from None


def _too_big(size: int, max_bytes: int) -> Issue:
    return Issue(
        "fichier",
        "",
        f"trop volumineux ({_size_fr(size)}, maximum {_size_fr(max_bytes)}) : "
        "découpez le tableau par département ou par trimestre",
    )


_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "classeur Excel/LibreOffice ou archive ZIP : enregistrez-le au format CSV"),
    (b"\xd0\xcf\x11\xe0", "ancien classeur Excel (.xls) : enregistrez-le au format CSV"),
    (b"%PDF", "document PDF : un tableau CSV, iCalendar ou JSON est attendu"),
    (b"\x1f\x8b", "archive compressée (gzip) : décompressez-la d'abord"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# A valid multi-byte UTF-8 sequence: a file holding one was written in UTF-8.
_UTF8_SEQUENCE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)


def decode_text(data: bytes) -> tuple[str, str]:
    """``(text, encoding)``: UTF-8 (with or without BOM) or Windows-1252.
    Binary content, UTF-16 and control characters are refused."""
    for magic, what in _MAGIC:
        if data.startswith(magic):
            raise RosterFormatError([Issue("fichier", "", f"format non pris en charge ({what})")])
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise RosterFormatError(
            [
                Issue(
                    "fichier",
                    "",
                    "encodage UTF-16 non pris en charge : enregistrez en « CSV UTF-8 »",
                )
            ]
        )
    if b"\x00" in data:
        offset = data.index(b"\x00")
        raise RosterFormatError(
            [
                Issue(
                    "fichier",
                    "",
                    f"contenu binaire (octet nul à la position {offset}) : "
                    "ce n'est pas un fichier texte",
                )
            ]
        )
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            text, encoding = data[3:].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError as exc:
            raise RosterFormatError(
                [
                    Issue(
                        "fichier",
                        "",
                        f"marqué UTF-8 (BOM) mais octet 0x{data[3 + exc.start]:02x} invalide "
                        f"à la position {3 + exc.start}",
                    )
                ]
            ) from None
    else:
        try:
            text, encoding = data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError as bad_utf8:
            if _UTF8_SEQUENCE.search(data):
                # UTF-8 accents elsewhere: this byte is damage, not Windows-1252
                # (read as such, « Martin » became « Méÿþrtin » in the roster in force)
                at = bad_utf8.start
                line = data.count(b"\n", 0, at) + 1
                raise RosterFormatError(
                    [
                        Issue(
                            f"ligne {line}",
                            "",
                            f"texte UTF-8 endommagé (octet 0x{data[at]:02x} invalide à la "
                            f"position {at}) : réenregistrez le fichier en « CSV UTF-8 »",
                        )
                    ]
                ) from None
            try:
                text, encoding = data.decode("cp1252"), "windows-1252"
            except UnicodeDecodeError as exc:
                raise RosterFormatError(
                    [
                        Issue(
                            "fichier",
                            "",
                            f"ni UTF-8 ni Windows-1252 (octet 0x{data[exc.start]:02x} à la "
                            f"position {exc.start}) : fichier binaire ou encodage inconnu",
                        )
                    ]
                ) from None
    bad = _CONTROL.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        raise RosterFormatError(
            [
                Issue(
                    f"ligne {line}",
                    "",
                    f"caractère de contrôle 0x{ord(bad.group()):02x} : fichier binaire ou corrompu",
                )
            ]
        )
    return text, encoding


# --------------------------------------------------------------------------- values


class _Bad(ValueError):
    """A value is wrong: the message is French, without location."""


_DATE_FR = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
_DATE_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})")


def _no_formula(text: str) -> None:
    if text[:1] in ("=", "@"):
        raise _Bad(f"formule de tableur refusée (« {text[:40]} ») : une valeur est attendue")


@lru_cache(maxsize=8192)
def parse_date(text: str) -> date:
    _no_formula(text)
    m = _DATE_FR.fullmatch(text)
    if m:
        d, mo, y = int(m.group(1)), int(m.group(2)), int(m.group(3))
    else:
        m = _DATE_ISO.fullmatch(text)
        if not m:
            raise _Bad(f"date illisible « {text} » (attendu JJ/MM/AAAA ou AAAA-MM-JJ)")
        y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if not 2000 <= y <= 2100:
        raise _Bad(f"année invraisemblable « {text} » (2000 à 2100)")
    try:
        return date(y, mo, d)
    except ValueError:
        raise _Bad(f"date impossible « {text} »") from None


@lru_cache(maxsize=1024)
def parse_time(text: str) -> tuple[int, int, bool]:
    """``(hour, minute, next_day)`` from ``09:00``, ``9h``, ``09h30``, ``08:00+1``."""
    _no_formula(text)
    m = re.fullmatch(r"(\d{1,2})\s*[:hH]\s*(\d{2})?\s*(\+1)?|(\d{1,2})\s*(\+1)", text)
    if not m:
        raise _Bad(f"heure illisible « {text} » (attendu HH:MM ou HHhMM)")
    if m.group(4) is not None:
        hour, minute, plus = int(m.group(4)), 0, True
    else:
        hour, minute, plus = int(m.group(1)), int(m.group(2) or 0), m.group(3) is not None
    if minute > 59 or hour > 24 or (hour == 24 and minute):
        raise _Bad(f"heure impossible « {text} »")
    return hour, minute, plus


def local_time(day: date, hour: int, minute: int) -> datetime:
    """Aware Europe/Paris datetime; ``24:00`` is the next midnight; a time
    skipped by the spring change of hour is refused."""
    if hour == 24:
        day, hour = day + timedelta(days=1), 0
    naive = datetime(day.year, day.month, day.day, hour, minute)
    aware = naive.replace(tzinfo=PARIS)
    if aware.astimezone(UTC).astimezone(PARIS).replace(tzinfo=None) != naive:
        raise _Bad(
            f"heure inexistante le {day.strftime('%d/%m/%Y')} ({hour:02d}:{minute:02d}, "
            "passage à l'heure d'été)"
        )
    return aware


@lru_cache(maxsize=4096)
def parse_phone(text: str) -> str:
    _no_formula(text)
    try:
        return normalize_phone(text)
    except ValidationError as exc:
        reason = exc.message.removeprefix("Numéro de rappel invalide : ").rstrip(".")
        raise _Bad(f"numéro invalide « {text} » ({reason[:1].lower() + reason[1:]})") from None


@lru_cache(maxsize=4096)
def _insee(code: str) -> str:
    try:
        return validate_insee(code)
    except ValidationError as exc:
        raise _Bad(exc.message.rstrip(".")) from None


def _split_communes(value: str | Sequence[str]) -> list[str]:
    if isinstance(value, str):
        return [c.strip() for c in re.split(r"[|,\s]+", value) if c.strip()]
    return [str(c).strip() for c in value if str(c).strip()]


_POSTCODE = re.compile(r"\d{5}")
_RPPS = re.compile(r"\d{11}")


def _text(value: str, what: str) -> str:
    text = " ".join(value.split()) if "\n" not in value else value.strip()
    if len(text) > MAX_TEXT:
        raise _Bad(f"{what} trop long ({len(text)} caractères, maximum {MAX_TEXT})")
    return text


# --------------------------------------------------------------------------- builder

#: canonical field -> label, per format
CSV_LABELS: dict[str, str] = {c: f"colonne {c}" for c in CSV_COLUMNS}

#: ``(canonical field, French message)`` of each problem of a value, not yet located
_Problems = tuple[tuple[str, str], ...]
#: ``(day, start, end, problems)`` of a row's period (``None``s when unreadable)
_Period = tuple[date | None, datetime | None, datetime | None, _Problems]


def _period_problems(start: datetime, end: datetime) -> _Problems:
    """An end at or before the start, or a period longer than :data:`MAX_PERIOD`."""
    if end <= start:
        return (
            (
                "fin",
                f"fin ({end.strftime('%H:%M')}) avant ou égale au début "
                f"({start.strftime('%H:%M')}) : pour une garde qui passe minuit, "
                f"écrivez « {end.strftime('%H:%M')}+1 »",
            ),
        )
    if end - start > MAX_PERIOD:
        hours = int((end - start).total_seconds() // 3600)
        return (("fin", f"garde de {hours} h : plus de 72 h, date de fin erronée ?"),)
    return ()


def _cells_period(raw_day: str, raw_start: str, raw_end: str) -> _Period:
    """The period written as ``date``, ``debut`` and ``fin`` cells (stripped)."""
    problems: list[tuple[str, str]] = [
        (key, missing)
        for key, raw, missing in (
            ("date", raw_day, "date manquante"),
            ("debut", raw_start, "heure de début manquante"),
            ("fin", raw_end, "heure de fin manquante"),
        )
        if not raw
    ]
    start = end = None
    day: date | None = None
    try:
        day = parse_date(raw_day) if raw_day else None
    except _Bad as exc:
        problems.append(("date", str(exc)))
    if day is not None and raw_start:
        try:
            hour, minute, plus = parse_time(raw_start)
            if plus:
                raise _Bad("« +1 » n'est permis que pour l'heure de fin")
            start = local_time(day, hour, minute)
        except _Bad as exc:
            problems.append(("debut", str(exc)))
    if day is not None and raw_end:
        try:
            hour, minute, plus = parse_time(raw_end)
            end = local_time(day + timedelta(days=1) if plus else day, hour, minute)
        except _Bad as exc:
            problems.append(("fin", str(exc)))
    if start is not None and end is not None:
        problems.extend(_period_problems(start, end))
    return (start.date() if start else None), start, end, tuple(problems)


class _Builder:
    """Turns located raw values into entries, collecting every issue.

    Rows of a roster repeat the same values (the day's periods in every
    sector, a sector's communes, a dentist's name, address and phone): what
    is worked out from them is kept per distinct value, so that a national
    roster is checked once per value and its entries share those objects
    (one ``datetime``, one communes tuple, one string…) instead of each
    holding copies."""

    def __init__(
        self,
        source: str,
        labels: Mapping[str, str],
        sectors: Mapping[str, Sector] | None,
        known: KnownCommune | None,
    ) -> None:
        self.source = source
        self.labels = labels
        self.sectors = sectors
        self.known = known
        self.issues: list[Issue] = []
        self.entries: list[RosterEntry] = []
        # (date, debut, fin) cells -> period
        self._periods: dict[tuple[str, str, str], _Period] = {}
        # (sector, communes as written) -> (codes, problems); the cell itself for text
        self._communes: dict[
            tuple[str, tuple[str, ...]], tuple[tuple[str, ...], tuple[str, ...]]
        ] = {}
        self._communes_cells: dict[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._strings: dict[str, str] = {}

    def _share(self, text: str) -> str:
        """The one copy of *text* the entries hold."""
        return self._strings.setdefault(text, text)

    def _check_communes(
        self, listed: Sequence[str], sector: Sector | None
    ) -> tuple[list[str], list[str]]:
        codes: list[str] = []
        problems: list[str] = []
        for raw in listed:
            try:
                code = _insee(raw)
            except _Bad as exc:
                problems.append(str(exc))
                continue
            if self.known is not None and not self.known(code):
                problems.append(f"commune inconnue « {code} » (code INSEE)")
                continue
            if sector is not None and code not in sector.communes:
                problems.append(f"commune {code} hors du secteur {sector.code}")
                continue
            if code not in codes:
                codes.append(code)
        return codes, problems

    def _resolve_communes(
        self, listed: Sequence[str], sector_code: str, sector: Sector | None
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``(codes, problems)``: the listed communes checked, the sector's
        when none is listed, all of one département."""
        codes, problems = self._check_communes(listed, sector)
        communes: Sequence[str] = codes
        if not listed:
            if sector is not None:
                communes = sector.communes
            elif sector_code and self.sectors is None:
                problems.append("communes manquantes (codes INSEE séparés par « | »)")
        deps = {c[:3] if c[:2] in ("97", "98") else c[:2] for c in communes}
        if len(deps) > 1:
            problems.append(
                f"communes de plusieurs départements ({', '.join(sorted(deps))}) : "
                "un tableau de garde est départemental"
            )
        return tuple(communes), tuple(problems)

    def _communes_of(
        self, sector_code: str, sector: Sector | None, raw: object
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """A row's communes (cell or list), worked out once per sector and value."""
        cell = (sector_code, raw) if isinstance(raw, str) else None
        found = self._communes_cells.get(cell) if cell is not None else None
        if found is None:
            listed = _split_communes(raw) if isinstance(raw, str | list | tuple) else []
            key = (sector_code, tuple(listed))  # not joined: "a|b" is one (bad) code
            found = self._communes.get(key)
            if found is None:
                found = self._communes[key] = self._resolve_communes(listed, sector_code, sector)
            if cell is not None:
                self._communes_cells[cell] = found
        return found

    def issue(self, where: str, key: str, message: str) -> None:
        self.issues.append(Issue(where, self.labels.get(key, key) if key else "", message))

    def add(
        self,
        where: str,
        values: Mapping[str, Any],
        period: tuple[datetime, datetime] | None = None,
    ) -> None:
        before = len(self.issues)

        def get(key: str) -> str:
            raw = values.get(key)
            return raw.strip() if isinstance(raw, str) else ""

        def need(key: str, missing: str) -> str:
            value = get(key)
            if not value:
                self.issue(where, key, missing)
            return value

        day: date | None
        start: datetime | None
        end: datetime | None
        if period is not None:
            start, end = period
            day = start.date()
            problems = _period_problems(start, end)
        else:
            cells = (get("date"), get("debut"), get("fin"))
            found = self._periods.get(cells)
            if found is None:
                found = self._periods[cells] = _cells_period(*cells)
            day, start, end, problems = found
        for key, message in problems:
            self.issue(where, key, message)

        sector_code = need("secteur", "secteur manquant")
        sector: Sector | None = None
        if sector_code:
            try:
                _no_formula(sector_code)
            except _Bad as exc:
                self.issue(where, "secteur", str(exc))
            if self.sectors is not None:
                sector = self.sectors.get(sector_code)
                if sector is None:
                    self.issue(
                        where,
                        "secteur",
                        f"secteur inconnu « {sector_code} » (absent du fichier des secteurs)",
                    )
        sector_name = get("secteur_nom") or (sector.name if sector else sector_code)
        communes, messages = self._communes_of(sector_code, sector, values.get("communes"))
        for message in messages:
            self.issue(where, "communes", message)

        family = need("nom", "nom du dentiste manquant")
        given, address, city, notes = (
            get("prenom"),
            get("adresse"),
            get("ville"),
            get("commentaire"),
        )
        for key, value, what in (
            ("nom", family, "nom"),
            ("prenom", given, "prénom"),
            ("adresse", address, "adresse"),
            ("ville", city, "ville"),
            ("commentaire", notes, "commentaire"),
        ):
            try:
                _text(value, what)
            except _Bad as exc:
                self.issue(where, key, str(exc))
        rpps = get("rpps") or None
        if rpps is not None and not _RPPS.fullmatch(rpps):
            self.issue(where, "rpps", f"numéro RPPS invalide « {rpps[:20]} » (11 chiffres)")
        postcode = get("code_postal")
        if postcode and not _POSTCODE.fullmatch(postcode):
            self.issue(
                where, "code_postal", f"code postal invalide « {postcode[:20]} » (5 chiffres)"
            )
        phone = ""
        raw_phone = need("telephone", "numéro de téléphone manquant")
        if raw_phone:
            try:
                phone = parse_phone(raw_phone)
            except _Bad as exc:
                self.issue(where, "telephone", str(exc))

        if len(self.issues) > before or day is None or start is None or end is None:
            return
        share = self._share
        self.entries.append(
            RosterEntry(
                day=day,
                start=start,
                end=end,
                sector_code=share(sector_code),
                sector_name=share(sector_name),
                communes=communes,
                family=share(" ".join(family.split())),
                given=share(" ".join(given.split())),
                rpps=share(rpps) if rpps is not None else None,
                address=share(" ".join(address.split())),
                postcode=share(postcode),
                city=share(" ".join(city.split())),
                phone=share(phone),
                notes=share(notes),
                source=self.source,
                line=where,
            )
        )


# --------------------------------------------------------------------------- CSV


def _fold_header(name: str) -> str:
    table = str.maketrans("éèêàç ", "eeeac_")
    return name.strip().strip('"').lower().translate(table).replace("-", "_")


def _delimiter(header: str) -> str | None:
    semi, comma = header.count(";"), header.count(",")
    if semi == 0 and comma == 0:
        return None
    return ";" if semi >= comma else ","


#: The line boundaries of :meth:`str.splitlines`.
_LINE_BREAK = re.compile(r"\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def _first_line(text: str) -> tuple[int, int, str] | None:
    """``(index, offset, line)`` of the first non-blank line of *text* as
    :meth:`str.splitlines` cuts it (``\\r``, ``\\u2028``… end a line too);
    ``None`` when every line is blank."""
    index = pos = 0
    while pos < len(text):
        found = _LINE_BREAK.search(text, pos)
        end = found.end() if found else len(text)
        line = text[pos:end]
        if line.strip():
            return index, pos, line
        index, pos = index + 1, end
    return None


def _lines(text: str) -> Iterator[str]:
    """The lines of *text*, each with its ``\\n`` (those iterating
    ``io.StringIO(text)`` gives), one at a time: a roster of 600,000 rows is
    never held as a list of lines."""
    find, size, pos = text.find, len(text), 0
    while pos < size:
        end = find("\n", pos) + 1
        if not end:
            yield text[pos:]
            return
        yield text[pos:end]
        pos = end


#: Bytes decoded at a time when reading the rows of a checked file.
_BLOCK = 1024 * 1024
#: encoding found by :func:`decode_text` -> (codec, bytes before the text)
_CODECS = {"utf-8": ("utf-8", 0), "utf-8-sig": ("utf-8", 3), "windows-1252": ("cp1252", 0)}


def _decoded_lines(data: bytes, encoding: str) -> Iterator[str]:
    """``_lines(decode_text(data)[0])`` for a file :func:`decode_text` accepted
    as *encoding*, decoded a block at a time instead of as one string.  A
    ``\\n`` byte is a line feed, and only that, in UTF-8 and Windows-1252:
    blocks end just after one."""
    codec, pos = _CODECS[encoding]
    size = len(data)
    while pos < size:
        end = data.find(b"\n", pos + _BLOCK) + 1 or size
        yield from _lines(data[pos:end].decode(codec))
        pos = end


def _csv_rows(
    lines: Iterable[str],
    columns: Sequence[str],
    required_columns: Sequence[str],
    issues: list[Issue],
) -> Iterable[tuple[str, dict[str, str]]]:
    """``(where, values)`` per non-blank data row of a file given as its
    lines (:func:`_lines`), read one at a time; header and shape problems go
    to *issues* (a bad header: no row at all)."""
    rest = iter(lines)
    blank = 0  # lines before the header, as str.splitlines() counts them
    located = None
    for line in rest:
        located = _first_line(line)
        if located is not None:
            break
        blank += len(line.splitlines())
    if located is None:
        issues.append(Issue("fichier", "", "vide : aucun en-tête ni aucune ligne"))
        return
    index, offset, header_line = located
    first = blank + index
    delimiter = _delimiter(header_line)
    if delimiter is None:
        issues.append(
            Issue(
                f"ligne {first + 1}",
                "",
                "en-tête illisible : colonnes séparées par « ; » ou « , » attendues "
                f"({';'.join(columns)})",
            )
        )
        return
    reader = csv.reader(chain((line[offset:],), rest), delimiter=delimiter, strict=True)
    try:
        header = [_fold_header(h) for h in next(reader)]
    except csv.Error as exc:
        issues.append(Issue(f"ligne {first + 1}", "", f"en-tête illisible ({exc})"))
        return
    header_issues: list[Issue] = []
    where = f"ligne {first + 1} (en-tête)"
    seen: set[str] = set()
    for name in header:
        if name in seen:
            header_issues.append(Issue(where, "", f"colonne « {name} » en double"))
        seen.add(name)
        if name not in columns:
            header_issues.append(
                Issue(
                    where, "", f"colonne inconnue « {name[:40]} » (attendues : {';'.join(columns)})"
                )
            )
    missing = [c for c in required_columns if c not in seen]
    if missing:
        header_issues.append(Issue(where, "", f"colonne(s) manquante(s) : {', '.join(missing)}"))
    if header_issues:
        issues.extend(header_issues)
        return
    previous_end = reader.line_num
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            issues.append(
                Issue(f"ligne {first + previous_end + 1}", "", f"guillemets mal fermés ({exc})")
            )
            return
        where = f"ligne {first + previous_end + 1}"
        previous_end = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            issues.append(
                Issue(
                    where,
                    "",
                    f"{len(row)} cellules au lieu de {len(header)} "
                    f"(séparateur « {delimiter} » en trop ou manquant ?)",
                )
            )
            continue
        yield where, dict(zip(header, row, strict=True))


def _parse_csv(lines: Iterable[str], builder: _Builder) -> None:
    required = [c for c in CSV_COLUMNS if c not in ("communes",)]
    if builder.sectors is None:
        required = list(CSV_COLUMNS)
    for where, values in _csv_rows(lines, CSV_COLUMNS, required, builder.issues):
        builder.add(where, values)


# --------------------------------------------------------------------------- iCalendar

ICS_LABELS: dict[str, str] = {
    "secteur": "propriété X-SAS-SECTEUR",
    "secteur_nom": "propriété X-SAS-SECTEUR-NOM",
    "communes": "propriété X-SAS-COMMUNES",
    "nom": "propriété X-SAS-NOM",
    "prenom": "propriété X-SAS-PRENOM",
    "rpps": "propriété X-SAS-RPPS",
    "adresse": "propriété LOCATION",
    "code_postal": "propriété X-SAS-CODE-POSTAL",
    "ville": "propriété X-SAS-VILLE",
    "telephone": "propriété X-SAS-TELEPHONE",
    "commentaire": "propriété DESCRIPTION",
    "debut": "propriété DTSTART",
    "fin": "propriété DTEND",
    "RRULE": "propriété RRULE",
    "RDATE": "propriété RDATE",
    "EXDATE": "propriété EXDATE",
}
_ICS_FIELDS = {
    "X-SAS-SECTEUR": "secteur",
    "X-SAS-SECTEUR-NOM": "secteur_nom",
    "X-SAS-COMMUNES": "communes",
    "X-SAS-NOM": "nom",
    "X-SAS-PRENOM": "prenom",
    "X-SAS-RPPS": "rpps",
    "X-SAS-CODE-POSTAL": "code_postal",
    "X-SAS-VILLE": "ville",
    "X-SAS-TELEPHONE": "telephone",
    "DESCRIPTION": "commentaire",
}
_ICS_DT = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(Z?)")
_ICS_DURATION = re.compile(r"P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?")
_LOCATION_TOWN = re.compile(r"^(.*?),?\s*(\d{5})\s+(.+)$")


def _unfold(text: str) -> list[tuple[int, str]]:
    """Content lines with the physical line number each starts on (RFC 5545 §3.1)."""
    out: list[tuple[int, str]] = []
    parts: list[str] = []  # the pieces of the line being unfolded: joined once (linear)
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if line[:1] in (" ", "\t") and parts:
            parts.append(line[1:])
        elif line.strip():
            if parts:
                out.append((start, "".join(parts)))
            parts, start = [line], number
    if parts:
        out.append((start, "".join(parts)))
    return out


def _content_line(line: str) -> tuple[str, dict[str, str], str] | None:
    """``(NAME, params, value)``; ``None`` when there is no ``:``."""
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == ":" and not quoted:
            head, value = line[:i], line[i + 1 :]
            break
    else:
        return None
    parts = head.split(";")
    params: dict[str, str] = {}
    for part in parts[1:]:
        key, _, val = part.partition("=")
        params[key.strip().upper()] = val.strip().strip('"')
    return parts[0].strip().upper(), params, value


def _ics_text(value: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            out.append("\n" if nxt in "nN" else nxt)
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _ics_datetime(params: Mapping[str, str], value: str) -> datetime:
    if params.get("VALUE", "").upper() == "DATE" or re.fullmatch(r"\d{8}", value.strip()):
        raise _Bad(
            "journée entière (VALUE=DATE) : une garde a une heure de début et une heure de fin"
        )
    m = _ICS_DT.fullmatch(value.strip())
    if not m:
        raise _Bad(f"date-heure illisible « {value[:40]} » (attendu AAAAMMJJTHHMMSS)")
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    try:
        naive = datetime(y, mo, d, h, mi, s)
    except ValueError:
        raise _Bad(f"date-heure impossible « {value.strip()} »") from None
    if not 2000 <= y <= 2100:
        raise _Bad(f"année invraisemblable « {value.strip()} » (2000 à 2100)")
    if m.group(7):
        if "TZID" in params:
            raise _Bad("TZID et heure UTC (« Z ») à la fois")
        return naive.replace(tzinfo=UTC).astimezone(PARIS)
    tzid = params.get("TZID", "Europe/Paris").lstrip("/")
    if tzid != "Europe/Paris":
        raise _Bad(f"fuseau « {tzid} » non pris en charge (Europe/Paris ou UTC)")
    return local_time(naive.date(), naive.hour, naive.minute)


def _parse_ics(text: str, builder: _Builder, skipped: list[Issue]) -> None:
    lines = _unfold(text)
    if not lines or lines[0][1].strip().upper() != "BEGIN:VCALENDAR":
        builder.issues.append(
            Issue("ligne 1", "", "ce n'est pas un calendrier iCalendar (BEGIN:VCALENDAR attendu)")
        )
        return
    stack: list[str] = []
    event: dict[str, tuple[int, dict[str, str], str]] | None = None
    count = 0
    start_line = 0
    ended = False
    for number, line in lines:
        parsed = _content_line(line)
        if parsed is None:
            builder.issues.append(
                Issue(f"ligne {number}", "", f"ligne iCalendar sans « : » ({line[:40]})")
            )
            continue
        name, params, value = parsed
        if name == "BEGIN":
            stack.append(value.strip().upper())
            if stack[-1] == "VEVENT":
                if len(stack) != 2:
                    builder.issues.append(Issue(f"ligne {number}", "", "VEVENT mal imbriquée"))
                count += 1
                event, start_line = {}, number
            continue
        if name == "END":
            if not stack or stack[-1] != value.strip().upper():
                builder.issues.append(
                    Issue(f"ligne {number}", "", f"END:{value.strip()} sans BEGIN correspondant")
                )
                return
            closed = stack.pop()
            if closed == "VEVENT" and event is not None:
                _ics_event(builder, f"VEVENT n° {count} (ligne {start_line})", event, skipped)
                event = None
            if not stack:
                ended = True
            continue
        if event is not None and stack and stack[-1] == "VEVENT":
            if name in event and name in ("DTSTART", "DTEND", "X-SAS-SECTEUR", "X-SAS-TELEPHONE"):
                builder.issues.append(
                    Issue(
                        f"VEVENT n° {count} (ligne {start_line})", f"propriété {name}", "en double"
                    )
                )
            event.setdefault(name, (number, params, value))
    if not ended:
        builder.issues.append(
            Issue(f"ligne {lines[-1][0]}", "", "calendrier tronqué (END:VCALENDAR manquant)")
        )
    elif count == 0:
        builder.issues.append(Issue("fichier", "", "aucune garde (aucune VEVENT)"))


def _ics_event(
    builder: _Builder,
    where: str,
    event: Mapping[str, tuple[int, dict[str, str], str]],
    skipped: list[Issue],
) -> None:
    if event.get("STATUS", (0, {}, ""))[2].strip().upper() == "CANCELLED":
        skipped.append(Issue(where, "", "garde annulée (STATUS:CANCELLED) : ignorée"))
        return
    for rule in ("RRULE", "RDATE", "EXDATE"):
        if rule in event:
            builder.issue(
                where, rule, f"{rule} non pris en charge : une VEVENT par période de garde"
            )
    values: dict[str, Any] = {}
    for prop, key in _ICS_FIELDS.items():
        if prop in event:
            values[key] = _ics_text(event[prop][2])
    if "LOCATION" in event:
        location = " ".join(_ics_text(event["LOCATION"][2]).split())
        m = _LOCATION_TOWN.match(location)
        if m and "code_postal" not in values:
            values["adresse"], values["code_postal"] = m.group(1).strip(" ,"), m.group(2)
            values.setdefault("ville", m.group(3).strip())
        else:
            values["adresse"] = location
    start = end = None
    if "DTSTART" not in event:
        builder.issue(where, "debut", "manquante")
    else:
        try:
            start = _ics_datetime(event["DTSTART"][1], event["DTSTART"][2])
        except _Bad as exc:
            builder.issue(where, "debut", str(exc))
    if "DTEND" in event:
        try:
            end = _ics_datetime(event["DTEND"][1], event["DTEND"][2])
        except _Bad as exc:
            builder.issue(where, "fin", str(exc))
    elif "DURATION" in event:
        m = _ICS_DURATION.fullmatch(event["DURATION"][2].strip())
        if not m or not any(m.groups()):
            builder.issue(where, "fin", "DURATION illisible (attendu PT3H, PT4H30M…)")
        elif start is not None:
            w, d, h, mi, s = (int(g or 0) for g in m.groups())
            end = start + timedelta(weeks=w, days=d, hours=h, minutes=mi, seconds=s)
    else:
        builder.issue(where, "fin", "DTEND (ou DURATION) manquante")
    if start is None or end is None:
        # still check the other properties, so that every problem is listed
        values.setdefault("date", "")
        probe = dict(values)
        probe.update({"date": "01/01/2000", "debut": "00:00", "fin": "01:00"})
        builder.add(where, probe)
        if builder.entries and builder.entries[-1].line == where:
            builder.entries.pop()
        return
    builder.add(where, values, (start, end))


# --------------------------------------------------------------------------- JSON

JSON_FORMAT = "sas-desk-roster"
_JSON_ENTRY_KEYS = {
    "date": "date",
    "start": "debut",
    "end": "fin",
    "sector": "secteur",
    "sector_name": "secteur_nom",
    "communes": "communes",
    "family": "nom",
    "given": "prenom",
    "rpps": "rpps",
    "address": "adresse",
    "postcode": "code_postal",
    "city": "ville",
    "phone": "telephone",
    "notes": "commentaire",
}
JSON_LABELS = {v: f"champ {k}" for k, v in _JSON_ENTRY_KEYS.items()}
_ISO_DT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?([+-]\d{2}:\d{2}|Z)?")


def _json_sectors(raw: Any, issues: list[Issue]) -> list[Sector]:
    if not isinstance(raw, list):
        issues.append(Issue("fichier", "champ sectors", "liste attendue"))
        return []
    sectors: list[Sector] = []
    for n, item in enumerate(raw, start=1):
        where = f"secteur n° {n}"
        if not isinstance(item, dict):
            issues.append(Issue(where, "", "objet attendu"))
            continue
        code, name, communes = item.get("code"), item.get("name"), item.get("communes")
        if not isinstance(code, str) or not code.strip():
            issues.append(Issue(where, "champ code", "manquant"))
            continue
        if not isinstance(communes, list) or not communes:
            issues.append(Issue(where, "champ communes", "liste de codes INSEE attendue"))
            continue
        codes: list[str] = []
        for c in communes:
            try:
                codes.append(_insee(str(c)))
            except _Bad as exc:
                issues.append(Issue(where, "champ communes", str(exc)))
        sectors.append(Sector(code.strip(), str(name or code).strip(), tuple(codes)))
    return sectors


def _parse_json(text: str, builder: _Builder, sectors_out: list[Sector]) -> None:
    try:
        data = decode_json(text)
    except InputError as exc:
        builder.issues.append(Issue(exc.where or "fichier", "", exc.detail_fr))
        return
    if not isinstance(data, dict) or data.get("format") != JSON_FORMAT:
        builder.issues.append(
            Issue("fichier", "champ format", f"« {JSON_FORMAT} » attendu (voir docs/rosters.md)")
        )
        return
    if data.get("version") != 1:
        builder.issues.append(
            Issue(
                "fichier",
                "champ version",
                f"version {data.get('version')!r} non prise en charge (1)",
            )
        )
        return
    if "sectors" in data:
        sectors = _json_sectors(data["sectors"], builder.issues)
        sectors_out.extend(sectors)
        if sectors:
            merged = dict(builder.sectors or {})
            merged.update({s.code: s for s in sectors})
            builder.sectors = merged
    entries = data.get("entries")
    if not isinstance(entries, list):
        builder.issues.append(Issue("fichier", "champ entries", "liste attendue"))
        return
    for n, item in enumerate(entries, start=1):
        where = f"entrée n° {n}"
        if not isinstance(item, dict):
            builder.issues.append(Issue(where, "", "objet attendu"))
            continue
        values: dict[str, Any] = {}
        bad = False
        for key, value in item.items():
            canonical = _JSON_ENTRY_KEYS.get(key)
            if canonical is None:
                builder.issues.append(Issue(where, f"champ {key}"[:60], "champ inconnu"))
                bad = True
                continue
            if value is None:
                continue
            if key == "communes":
                if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
                    builder.issues.append(
                        Issue(where, "champ communes", "liste de chaînes attendue")
                    )
                    bad = True
                    continue
            elif not isinstance(value, str):
                builder.issues.append(Issue(where, f"champ {key}", "chaîne attendue"))
                bad = True
                continue
            values[canonical] = value
        period = None
        start, end = values.get("debut", ""), values.get("fin", "")
        if _ISO_DT.fullmatch(start) and _ISO_DT.fullmatch(end):
            try:
                period = (_json_datetime(start), _json_datetime(end))
            except _Bad as exc:
                builder.issues.append(Issue(where, "champ start/end", str(exc)))
                bad = True
        if bad:
            continue
        builder.add(where, values, period)


def _json_datetime(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _Bad(f"date-heure impossible « {text} »") from None
    if value.tzinfo is None:
        return local_time(value.date(), value.hour, value.minute)
    return value.astimezone(PARIS)


# --------------------------------------------------------------------------- sectors


def parse_sectors(data: bytes, source: str = "secteurs") -> list[Sector]:
    """A sectors file: CSV ``secteur;nom;communes`` or JSON ``[{code, name, communes}]``."""
    try:
        text, _ = decode_text(data)
    except RosterFormatError as exc:
        raise RosterFormatError(exc.issues, source) from None
    issues: list[Issue] = []
    if text.lstrip().startswith(("[", "{")):
        try:
            raw = decode_json(text)
        except InputError as exc:
            raise RosterFormatError(
                [Issue(exc.where or "fichier", "", exc.detail_fr)], source
            ) from None
        if isinstance(raw, dict):
            raw = raw.get("sectors")
        sectors = _json_sectors(raw, issues)
    else:
        sectors = []
        for where, values in _csv_rows(_lines(text), SECTOR_COLUMNS, SECTOR_COLUMNS, issues):
            code = values["secteur"].strip()
            codes: list[str] = []
            for c in _split_communes(values["communes"]):
                try:
                    codes.append(_insee(c))
                except _Bad as exc:
                    issues.append(Issue(where, "colonne communes", str(exc)))
            if not code:
                issues.append(Issue(where, "colonne secteur", "secteur manquant"))
            elif not codes:
                issues.append(Issue(where, "colonne communes", "communes manquantes"))
            else:
                sectors.append(Sector(code, values["nom"].strip() or code, tuple(codes)))
    seen: set[str] = set()
    for sector in sectors:
        if sector.code in seen:
            issues.append(Issue("fichier", "", f"secteur « {sector.code} » défini deux fois"))
        seen.add(sector.code)
    if issues:
        raise RosterFormatError(issues, source)
    if not sectors:
        raise RosterFormatError([Issue("fichier", "", "aucun secteur")], source)
    return sectors


# --------------------------------------------------------------------------- entry point


def sniff_kind(name: str, text: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix in (".ics", ".ical", ".ifb"):
        return "ics"
    if suffix == ".json":
        return "json"
    if suffix in (".csv", ".txt", ".tsv"):
        return "csv"
    head = text.lstrip()[:20].upper()
    if head.startswith("BEGIN:VCALENDAR"):
        return "ics"
    if head.startswith("{"):
        return "json"
    return "csv"


def parse_roster(
    data: bytes,
    name: str,
    *,
    sectors: Sequence[Sector] | None = None,
    known: KnownCommune | None = None,
    source: str = "",
    max_bytes: int = MAX_BYTES,
) -> ParsedRoster:
    """Read a roster file's bytes (CSV, iCalendar or JSON, from *name*'s
    suffix, else the content).  Raises :class:`RosterFormatError` with every
    issue; nothing is half-read."""
    import hashlib

    label = source or Path(name).name
    if len(data) > max_bytes:
        raise RosterFormatError([_too_big(len(data), max_bytes)], label)
    try:
        text, encoding = decode_text(data)
    except RosterFormatError as exc:
        raise RosterFormatError(exc.issues, label) from None
    kind = sniff_kind(name, text)
    by_code = {s.code: s for s in sectors} if sectors else None
    labels = {"csv": CSV_LABELS, "ics": ICS_LABELS, "json": JSON_LABELS}[kind]
    builder = _Builder(label, labels, by_code, known)
    skipped: list[Issue] = []
    found_sectors: list[Sector] = list(sectors or ())
    if kind == "csv":
        del text  # checked as a whole; the rows are decoded again, a block at a time
        _parse_csv(_decoded_lines(data, encoding), builder)
    elif kind == "ics":
        _parse_ics(text, builder, skipped)
    else:
        _parse_json(text, builder, found_sectors)
    if not builder.issues and not builder.entries:
        builder.issues.append(Issue("fichier", "", "aucune garde dans le fichier"))
    if builder.issues:
        raise RosterFormatError(builder.issues, label)
    return ParsedRoster(
        entries=builder.entries,
        sectors=found_sectors,
        kind=kind,
        encoding=encoding,
        source=label,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        skipped=skipped,
    )


# --------------------------------------------------------------------------- export


def neutralise(cell: str) -> str:
    """A cell a spreadsheet would run as a formula, made plain text (``'`` prefix)."""
    return "'" + cell if cell[:1] in FORMULA_PREFIXES or cell[:1] in ("\t", "\r") else cell


def export_csv(entries: Iterable[RosterEntry]) -> str:
    """Entries as the documented CSV (``;``, UTF-8; the caller adds a BOM for
    Excel if wanted), every formula-like cell neutralised.  The phone is
    written in national form (``04 65 71 …``) so it never starts with ``+``."""
    from sas_desk.models.validation import format_phone

    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for e in entries:
        end = e.end.strftime("%H:%M") + ("+1" if e.end.date() > e.start.date() else "")
        row = [
            e.day.strftime("%d/%m/%Y"),
            e.start.strftime("%H:%M"),
            end,
            e.sector_code,
            "|".join(e.communes),
            e.family,
            e.given,
            e.rpps or "",
            e.address,
            e.postcode,
            e.city,
            format_phone(e.phone) if e.phone else "",
            e.notes,
        ]
        writer.writerow([neutralise(c) for c in row])
    return out.getvalue()
