"""Communes and streets of the demo territory (Rhône, Isère, Loire, Drôme).

Qt-free.  The data lives in ``resources/territory`` (see its README); this
module loads it, normalises free text the way an operator types it, and
offers :class:`CommuneIndex` for fast lookups from the call sheet.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sas_desk.paths import resource

__all__ = [
    "DEPARTEMENT_NAMES",
    "REGION_NAME",
    "Commune",
    "CommuneIndex",
    "Street",
    "TerritoryDataError",
    "departement_context",
    "load_communes",
    "load_streets",
    "normalize",
]

REGION_NAME = "Auvergne-Rhône-Alpes"

DEPARTEMENT_NAMES: dict[str, str] = {
    "26": "Drôme",
    "38": "Isère",
    "42": "Loire",
    "69": "Rhône",
}

_COMMUNE_COLUMNS = ("insee", "name", "postcode", "departement", "lat", "lon", "population")
_STREET_COLUMNS = ("insee", "street", "lat", "lon")

_INSEE_RE = re.compile(r"^(\d{5}|2[AB]\d{3})$")
_POSTCODE_RE = re.compile(r"^\d{5}$")


class TerritoryDataError(ValueError):
    """A territory CSV file is missing a column or holds an invalid row."""


@dataclass(frozen=True)
class Commune:
    insee: str
    name: str
    postcode: str
    departement: str
    lat: float
    lon: float
    population: int


@dataclass(frozen=True)
class Street:
    insee: str
    name: str
    lat: float
    lon: float


def departement_context(departement: str) -> str:
    """BAN-style context string, e.g. ``"69, Rhône, Auvergne-Rhône-Alpes"``."""
    name = DEPARTEMENT_NAMES.get(departement)
    if name is None:
        return departement
    return f"{departement}, {name}, {REGION_NAME}"


# --------------------------------------------------------------------------- normalisation

_ABBREVIATIONS = {"st": "saint", "ste": "sainte"}
_LIGATURES = str.maketrans({"œ": "oe", "Œ": "oe", "æ": "ae", "Æ": "ae", "ß": "ss"})
_NON_WORD_RE = re.compile(r"[^0-9a-z]+")


def normalize(text: str) -> str:
    """Fold *text* for matching: ``"St-Étienne"`` -> ``"saint etienne"``.

    Lowercases, strips accents, turns hyphens, apostrophes (straight and
    typographic) and any other punctuation into spaces, collapses spaces, and
    expands the ``st`` / ``ste`` abbreviations to ``saint`` / ``sainte``.
    """
    folded = unicodedata.normalize("NFKD", text.translate(_LIGATURES).casefold())
    ascii_only = "".join(ch for ch in folded if not unicodedata.combining(ch))
    tokens = _NON_WORD_RE.sub(" ", ascii_only).split()
    return " ".join(_ABBREVIATIONS.get(token, token) for token in tokens)


# --------------------------------------------------------------------------- loading


def _read_rows(path: Path, columns: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=";")
        header = reader.fieldnames or []
        missing = [column for column in columns if column not in header]
        if missing:
            raise TerritoryDataError(f"{path.name}: missing column(s) {', '.join(missing)}")
        for row in reader:
            if not any((value or "").strip() for value in row.values() if isinstance(value, str)):
                continue  # blank line
            values = {column: (row.get(column) or "").strip() for column in columns}
            yield reader.line_num, values


def _float(path: Path, line: int, column: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise TerritoryDataError(f"{path.name}:{line}: {column} is not a number: {raw!r}") from None


def load_communes(path: Path | None = None) -> list[Commune]:
    """Read ``communes.csv`` (default: the bundled resource), in file order."""
    source = path if path is not None else resource("territory", "communes.csv")
    communes: list[Commune] = []
    seen: set[str] = set()
    for line, row in _read_rows(source, _COMMUNE_COLUMNS):
        insee = row["insee"].upper()
        if not _INSEE_RE.match(insee):
            raise TerritoryDataError(f"{source.name}:{line}: invalid INSEE code {insee!r}")
        if insee in seen:
            raise TerritoryDataError(f"{source.name}:{line}: duplicate INSEE code {insee}")
        if not _POSTCODE_RE.match(row["postcode"]):
            raise TerritoryDataError(f"{source.name}:{line}: invalid postcode {row['postcode']!r}")
        if not row["name"]:
            raise TerritoryDataError(f"{source.name}:{line}: empty name")
        try:
            population = int(row["population"])
        except ValueError:
            raise TerritoryDataError(
                f"{source.name}:{line}: population is not an integer: {row['population']!r}"
            ) from None
        seen.add(insee)
        communes.append(
            Commune(
                insee=insee,
                name=row["name"],
                postcode=row["postcode"],
                departement=row["departement"],
                lat=_float(source, line, "lat", row["lat"]),
                lon=_float(source, line, "lon", row["lon"]),
                population=population,
            )
        )
    return communes


def load_streets(path: Path | None = None) -> list[Street]:
    """Read ``streets.csv`` (default: the bundled resource), in file order."""
    source = path if path is not None else resource("territory", "streets.csv")
    streets: list[Street] = []
    for line, row in _read_rows(source, _STREET_COLUMNS):
        insee = row["insee"].upper()
        if not _INSEE_RE.match(insee):
            raise TerritoryDataError(f"{source.name}:{line}: invalid INSEE code {insee!r}")
        if not row["street"]:
            raise TerritoryDataError(f"{source.name}:{line}: empty street name")
        streets.append(
            Street(
                insee=insee,
                name=row["street"],
                lat=_float(source, line, "lat", row["lat"]),
                lon=_float(source, line, "lon", row["lon"]),
            )
        )
    return streets


# --------------------------------------------------------------------------- index


def _prefix_range(keys: Sequence[str], prefix: str) -> range:
    """Indices of the sorted *keys* that start with *prefix*."""
    start = bisect_left(keys, prefix)
    stop = bisect_left(keys, prefix + "\uffff", lo=start)
    return range(start, stop)


class CommuneIndex:
    """Lookups by INSEE code, postcode and normalised name prefix.

    Name matching accepts a prefix of the whole name (``"villeurb"``,
    ``"saint et"``) or of any word of it (``"etienne"`` finds Saint-Étienne).
    Results are ordered: exact name first, then whole-name prefixes, then
    word prefixes; larger communes first inside each group.
    """

    def __init__(self, communes: Iterable[Commune]) -> None:
        self._communes: tuple[Commune, ...] = tuple(communes)
        self._by_insee: dict[str, Commune] = {}
        self._by_postcode: dict[str, list[Commune]] = {}
        for commune in self._communes:
            self._by_insee[commune.insee] = commune
            self._by_postcode.setdefault(commune.postcode, []).append(commune)

        self._normalized: dict[str, str] = {c.insee: normalize(c.name) for c in self._communes}
        # Sorted (key, insee) pairs; bisect on the keys gives prefix ranges.
        name_entries = sorted((self._normalized[c.insee], c.insee) for c in self._communes)
        word_entries: list[tuple[str, str]] = []
        for commune in self._communes:
            words = self._normalized[commune.insee].split()
            for position in range(1, len(words)):
                word_entries.append((" ".join(words[position:]), commune.insee))
        word_entries.sort()
        insee_entries = sorted((c.insee, c.insee) for c in self._communes)
        postcode_entries = sorted((c.postcode, c.insee) for c in self._communes)

        self._name_keys = [key for key, _ in name_entries]
        self._name_ids = [insee for _, insee in name_entries]
        self._word_keys = [key for key, _ in word_entries]
        self._word_ids = [insee for _, insee in word_entries]
        self._insee_keys = [key for key, _ in insee_entries]
        self._postcode_keys = [key for key, _ in postcode_entries]
        self._postcode_ids = [insee for _, insee in postcode_entries]

    @classmethod
    def load(cls, path: Path | None = None) -> CommuneIndex:
        return cls(load_communes(path))

    def __len__(self) -> int:
        return len(self._communes)

    def __iter__(self) -> Iterator[Commune]:
        return iter(self._communes)

    def __contains__(self, insee: object) -> bool:
        return isinstance(insee, str) and insee.strip().upper() in self._by_insee

    def by_insee(self, insee: str) -> Commune | None:
        return self._by_insee.get(insee.strip().upper())

    def by_postcode(self, postcode: str) -> list[Commune]:
        return self._sorted(self._by_postcode.get(postcode.strip(), []))

    def by_departement(self, departement: str) -> list[Commune]:
        return self._sorted(c for c in self._communes if c.departement == departement.strip())

    def search_name(self, text: str, limit: int = 10) -> list[Commune]:
        """Communes whose normalised name (or one of its words) starts with *text*."""
        prefix = normalize(text)
        if not prefix or limit <= 0:
            return []
        exact: list[Commune] = []
        whole: list[Commune] = []
        for i in _prefix_range(self._name_keys, prefix):
            commune = self._by_insee[self._name_ids[i]]
            (exact if self._name_keys[i] == prefix else whole).append(commune)
        chosen = {c.insee for c in exact} | {c.insee for c in whole}
        words: list[Commune] = []
        for i in _prefix_range(self._word_keys, prefix):
            insee = self._word_ids[i]
            if insee not in chosen:
                chosen.add(insee)
                words.append(self._by_insee[insee])
        ranked = [*self._sorted(exact), *self._sorted(whole), *self._sorted(words)]
        return ranked[:limit]

    def lookup(self, text: str, limit: int = 10) -> list[Commune]:
        """What the call sheet uses while the operator types.

        Digits are read as an INSEE code or a postcode (full or partial:
        ``"69"`` lists Rhône communes, ``"69266"`` is Villeurbanne,
        ``"69100"`` is also Villeurbanne through its postcode); anything
        else is a name prefix.
        """
        query = text.strip().upper()
        if not query or limit <= 0:
            return []
        if _INSEE_RE.match(query) or query.isdigit():
            found: dict[str, Commune] = {}
            exact = self._by_insee.get(query)
            if exact is not None:
                found[exact.insee] = exact
            for commune in self._by_postcode.get(query, []):
                found.setdefault(commune.insee, commune)
            if len(query) < 5:
                partial: list[Commune] = []
                for i in _prefix_range(self._insee_keys, query):
                    partial.append(self._by_insee[self._insee_keys[i]])
                for i in _prefix_range(self._postcode_keys, query):
                    partial.append(self._by_insee[self._postcode_ids[i]])
                for commune in self._sorted(partial):
                    found.setdefault(commune.insee, commune)
            return list(found.values())[:limit]
        return self.search_name(text, limit)

    @staticmethod
    def _sorted(communes: Iterable[Commune]) -> list[Commune]:
        return sorted(communes, key=lambda c: (-c.population, c.name, c.insee))
