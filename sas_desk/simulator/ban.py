"""A local stand-in for the national address API (BAN, api-adresse.data.gouv.fr).

Only ``/search/`` is simulated, over the demo territory of
``resources/territory``: communes (``municipality``), a few streets of the
big towns (``street``) and any house number on those streets
(``housenumber``, placed with a small deterministic offset from the street
point).  Responses follow the shape of the real API so the client code is the
same in demo and in production.

Matching is token based, accent and case insensitive, and works on prefixes
as the operator types ("villeurb", "12 rue de la rep lyon", "69100").
Scores are in 0..1 and fully deterministic.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sas_desk.models.geo import distance_km
from sas_desk.services.geo.territory import (
    Commune,
    Street,
    departement_context,
    load_communes,
    load_streets,
    normalize,
)

__all__ = [
    "BanDataset",
    "BanQueryError",
    "SearchParams",
    "lambert93",
    "make_search_handler",
    "parse_search_params",
    "search",
]

KINDS = ("municipality", "street", "housenumber")
DEFAULT_LIMIT = 5
MAX_LIMIT = 20
Q_ERROR = "q must contain between 3 and 200 chars and start with a number or a letter"

# Words that carry little meaning in a French address.
_STOPWORDS = frozenset(
    {"a", "au", "aux", "d", "de", "des", "du", "en", "et", "l", "la", "le", "les", "sur", "sous"}
)
# Street types: they match, but do not identify a street on their own.
_STREET_TYPES = frozenset(
    {
        "allee", "avenue", "boulevard", "chemin", "cours", "grand", "grande", "impasse",
        "passage", "place", "quai", "route", "rue", "square",
    }
)  # fmt: skip
_ABBREVIATIONS = {"av": "avenue", "bd": "boulevard", "bld": "boulevard", "pl": "place"}
_STOPWORD_WEIGHT = 0.25
_STREET_TYPE_WEIGHT = 0.5
_MIN_COVERAGE = 0.6
_NUMBER_SUFFIXES = frozenset({"bis", "ter", "quater"})


# --------------------------------------------------------------------------- Lambert-93

# RGF93 / Lambert-93 (EPSG:2154): Lambert conformal conic, two standard
# parallels, on the GRS80 ellipsoid.
_A = 6378137.0
_E = math.sqrt(2 * (1 / 298.257222101) - (1 / 298.257222101) ** 2)
_LON0 = math.radians(3.0)
_LAT0 = math.radians(46.5)
_LAT1 = math.radians(44.0)
_LAT2 = math.radians(49.0)
_X0 = 700000.0
_Y0 = 6600000.0


def _m(lat: float) -> float:
    return math.cos(lat) / math.sqrt(1 - (_E * math.sin(lat)) ** 2)


def _t(lat: float) -> float:
    esin = _E * math.sin(lat)
    return math.tan(math.pi / 4 - lat / 2) / math.pow((1 - esin) / (1 + esin), _E / 2)


_N = (math.log(_m(_LAT1)) - math.log(_m(_LAT2))) / (math.log(_t(_LAT1)) - math.log(_t(_LAT2)))
_F = _m(_LAT1) / (_N * math.pow(_t(_LAT1), _N))
_RHO0 = _A * _F * math.pow(_t(_LAT0), _N)


def lambert93(lat: float, lon: float) -> tuple[float, float]:
    """WGS84 degrees -> Lambert-93 metres ``(x, y)``, rounded to the centimetre."""
    rho = _A * _F * math.pow(_t(math.radians(lat)), _N)
    theta = _N * (math.radians(lon) - _LON0)
    x = _X0 + rho * math.sin(theta)
    y = _Y0 + _RHO0 - rho * math.cos(theta)
    return round(x, 2), round(y, 2)


# --------------------------------------------------------------------------- dataset


def _importance(population: int) -> float:
    """0 for a hamlet of 1 000 inhabitants, 1 for a city of a million."""
    if population <= 0:
        return 0.0
    return min(1.0, max(0.0, (math.log10(population) - 3) / 3))


def _tokens(text: str) -> tuple[str, ...]:
    return tuple(normalize(text).split())


@dataclass(frozen=True)
class _Place:
    commune: Commune
    context: str
    importance: float
    city_tokens: tuple[str, ...]


@dataclass(frozen=True)
class _StreetEntry:
    street: Street
    place: _Place
    code: str
    tokens: tuple[str, ...]


class BanDataset:
    """Immutable, thread-safe search data built from the territory files."""

    def __init__(self, communes: Iterable[Commune], streets: Iterable[Street]) -> None:
        self.places: tuple[_Place, ...] = tuple(
            _Place(
                commune=c,
                context=departement_context(c.departement),
                importance=_importance(c.population),
                city_tokens=_tokens(c.name),
            )
            for c in communes
        )
        by_insee = {p.commune.insee: p for p in self.places}
        entries: list[_StreetEntry] = []
        for street in streets:
            place = by_insee.get(street.insee)
            if place is None:
                continue  # a street of a commune outside the dataset
            code = f"{zlib.crc32(normalize(street.name).encode()) % 0x10000:04x}"
            entries.append(_StreetEntry(street, place, code, _tokens(street.name)))
        self.streets: tuple[_StreetEntry, ...] = tuple(entries)

    @classmethod
    def from_resources(cls) -> BanDataset:
        return cls(load_communes(), load_streets())


# --------------------------------------------------------------------------- parameters


class BanQueryError(ValueError):
    """Invalid query parameters: the API answers 400 with this message."""


@dataclass(frozen=True)
class SearchParams:
    q: str
    limit: int = DEFAULT_LIMIT
    type_: str | None = None
    citycode: str | None = None
    postcode: str | None = None
    near: tuple[float, float] | None = None


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    value = values[0].strip()
    return value or None


def parse_search_params(query: dict[str, list[str]]) -> SearchParams:
    q = (_first(query, "q") or "").strip()
    if not 3 <= len(q) <= 200 or not q[0].isalnum():
        raise BanQueryError(Q_ERROR)

    limit = DEFAULT_LIMIT
    raw_limit = _first(query, "limit")
    if raw_limit is not None:
        try:
            limit = int(raw_limit)
        except ValueError:
            raise BanQueryError("limit must be an integer") from None
        if limit < 1:
            raise BanQueryError("limit must be greater than 0")
        limit = min(limit, MAX_LIMIT)

    type_ = _first(query, "type")
    if type_ is not None and type_ not in KINDS:
        raise BanQueryError(f"type must be one of {', '.join(KINDS)}")

    near: tuple[float, float] | None = None
    raw_lat, raw_lon = _first(query, "lat"), _first(query, "lon")
    if raw_lat is not None or raw_lon is not None:
        try:
            lat, lon = float(raw_lat or ""), float(raw_lon or "")
        except ValueError:
            raise BanQueryError("lat and lon must be floats, given together") from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise BanQueryError("lat must be in -90..90 and lon in -180..180")
        near = (lat, lon)

    return SearchParams(
        q=q,
        limit=limit,
        type_=type_,
        citycode=_first(query, "citycode"),
        postcode=_first(query, "postcode"),
        near=near,
    )


# --------------------------------------------------------------------------- matching


def _weight(token: str) -> float:
    if token in _STOPWORDS:
        return _STOPWORD_WEIGHT
    if token in _STREET_TYPES:
        return _STREET_TYPE_WEIGHT
    return 1.0


def _token_match(query_token: str, token: str) -> float:
    """1 for an exact token, less for a prefix (more of the token typed = more)."""
    if query_token == token:
        return 1.0
    if token.startswith(query_token):
        return 0.4 + 0.6 * len(query_token) / len(token)
    return 0.0


def _best(query_token: str, tokens: Sequence[str]) -> float:
    return max((_token_match(query_token, t) for t in tokens), default=0.0)


@dataclass(frozen=True)
class _Query:
    tokens: tuple[str, ...]
    housenumber: str | None


def _split_query(q: str) -> _Query:
    tokens = [_ABBREVIATIONS.get(token, token) for token in _tokens(q)]
    housenumber: str | None = None
    if len(tokens) >= 2:
        head = tokens[0]
        digits = head.rstrip("abcdefghijklmnopqrstuvwxyz")
        suffix = head[len(digits) :]
        if (
            digits.isdigit()
            and 1 <= len(digits) <= 4
            and (len(suffix) <= 1 or suffix in _NUMBER_SUFFIXES)
        ):
            housenumber = head
            del tokens[0]
            if not suffix and len(tokens) >= 2 and tokens[0] in _NUMBER_SUFFIXES:
                housenumber = f"{head} {tokens.pop(0)}"
    return _Query(tuple(tokens), housenumber)


def _score(
    query: _Query,
    name_tokens: Sequence[str],
    place_tokens: Sequence[str],
    *,
    place_identifies: bool,
    housenumber_matched: bool,
    importance: float,
) -> float | None:
    """Base score in 0..1, or None when the candidate does not match.

    ``name_tokens`` say what the feature is (street or commune name),
    ``place_tokens`` where it is (city name, postcode).  A query token that
    identifies something (not a stopword nor a street type) must hit the
    name -- or the place when *place_identifies*, which lets a bare postcode
    find its commune -- and at least 60 % of the query text must be found (prefixes count).
    The house number never helps a candidate pass, it only ranks.
    """
    if not query.tokens:
        return None
    identifying = [t for t in query.tokens if _weight(t) == 1.0]
    if not identifying:  # "rue", "place de la": street types may identify
        identifying = [t for t in query.tokens if t not in _STOPWORDS] or list(query.tokens)
    name_hit = False
    found = hits = total = 0.0
    for token in query.tokens:
        on_name, on_place = _best(token, name_tokens), _best(token, place_tokens)
        weight = _weight(token)
        total += weight
        found += weight * max(on_name, on_place)
        hits += weight if max(on_name, on_place) > 0 else 0.0
        if token in identifying and (on_name > 0 or (place_identifies and on_place > 0)):
            name_hit = True
    if not name_hit or hits / total < _MIN_COVERAGE:
        return None
    if query.housenumber is not None:
        found += 1.0 if housenumber_matched else 0.0
        total += 1.0
    query_coverage = found / total

    name_total = sum(_weight(t) for t in name_tokens)
    name_found = sum(_weight(t) * _best_reverse(t, query.tokens) for t in name_tokens)
    name_coverage = name_found / name_total if name_total else 0.0
    return 0.6 * query_coverage + 0.3 * name_coverage + 0.1 * importance


def _best_reverse(token: str, query_tokens: Sequence[str]) -> float:
    return max((_token_match(q, token) for q in query_tokens), default=0.0)


# --------------------------------------------------------------------------- features


def _feature(
    *,
    lat: float,
    lon: float,
    kind: str,
    label: str,
    name: str,
    feature_id: str,
    place: _Place,
    score: float,
    importance: float,
    extra: dict[str, Any],
) -> dict[str, Any]:
    x, y = lambert93(lat, lon)
    commune = place.commune
    properties: dict[str, Any] = {
        "label": label,
        "score": score,
    }
    properties.update(extra)
    properties.update(
        {
            "id": feature_id,
            "name": name,
            "postcode": commune.postcode,
            "citycode": commune.insee,
            "x": x,
            "y": y,
            "city": commune.name,
            "context": place.context,
            "type": kind,
            "importance": round(importance, 5),
        }
    )
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": properties,
    }


def _housenumber_point(entry: _StreetEntry, housenumber: str) -> tuple[float, float]:
    """A position along the street, a few metres per number, odd and even on each side."""
    digits = int("".join(ch for ch in housenumber if ch.isdigit()) or "0")
    angle = math.radians(int(entry.code, 16) % 180)
    along = (digits % 200) * 0.00002  # ~2 m per number, at most ~450 m
    side = 0.00008 if digits % 2 else -0.00008  # ~9 m across the street
    lat = entry.street.lat + along * math.cos(angle) - side * math.sin(angle)
    lon = entry.street.lon + along * math.sin(angle) + side * math.cos(angle)
    return round(lat, 6), round(lon, 6)


_KIND_ORDER = {"housenumber": 0, "street": 1, "municipality": 2}


def search(dataset: BanDataset, params: SearchParams) -> dict[str, Any]:
    """Run a search and return the BAN-shaped FeatureCollection."""
    query = _split_query(params.q)
    wanted = {params.type_} if params.type_ else set(KINDS)
    scored: list[tuple[float, dict[str, Any]]] = []

    def keep(place: _Place) -> bool:
        commune = place.commune
        if params.citycode is not None and commune.insee != params.citycode:
            return False
        return params.postcode is None or commune.postcode == params.postcode

    def final(base: float, lat: float, lon: float) -> float:
        if params.near is not None:
            distance = distance_km(params.near[0], params.near[1], lat, lon)
            base = 0.8 * base + 0.2 / (1 + distance / 10)
        return round(min(1.0, max(0.0, base)), 6)

    if "municipality" in wanted:
        for place in filter(keep, dataset.places):
            commune = place.commune
            base = _score(
                query,
                place.city_tokens,
                (commune.postcode,),
                place_identifies=True,
                housenumber_matched=False,
                importance=place.importance,
            )
            if base is None:
                continue
            score = final(base, commune.lat, commune.lon)
            feature = _feature(
                lat=commune.lat,
                lon=commune.lon,
                kind="municipality",
                label=commune.name,
                name=commune.name,
                feature_id=commune.insee,
                place=place,
                score=score,
                importance=place.importance,
                extra={"population": commune.population},
            )
            scored.append((score, feature))

    if wanted & {"street", "housenumber"}:
        for entry in dataset.streets:
            place = entry.place
            if not keep(place):
                continue
            commune = place.commune
            street_name = entry.street.name
            importance = 0.5 * place.importance + 0.1
            location = (*place.city_tokens, commune.postcode)
            if "street" in wanted:
                base = _score(
                    query,
                    entry.tokens,
                    location,
                    place_identifies=False,
                    housenumber_matched=False,
                    importance=importance,
                )
                if base is not None:
                    score = final(base, entry.street.lat, entry.street.lon)
                    feature = _feature(
                        lat=entry.street.lat,
                        lon=entry.street.lon,
                        kind="street",
                        label=f"{street_name} {commune.postcode} {commune.name}",
                        name=street_name,
                        feature_id=f"{commune.insee}_{entry.code}",
                        place=place,
                        score=score,
                        importance=importance,
                        extra={},
                    )
                    scored.append((score, feature))
            if "housenumber" in wanted and query.housenumber is not None:
                base = _score(
                    query,
                    entry.tokens,
                    location,
                    place_identifies=False,
                    housenumber_matched=True,
                    importance=importance,
                )
                if base is not None:
                    number = query.housenumber
                    lat, lon = _housenumber_point(entry, number)
                    score = final(base, lat, lon)
                    name = f"{number} {street_name}"
                    number_id = number.replace(" ", "")
                    digits = "".join(ch for ch in number_id if ch.isdigit())
                    suffix = number_id[len(digits) :]
                    feature = _feature(
                        lat=lat,
                        lon=lon,
                        kind="housenumber",
                        label=f"{name} {commune.postcode} {commune.name}",
                        name=name,
                        feature_id=f"{commune.insee}_{entry.code}_{int(digits):05d}{suffix}",
                        place=place,
                        score=score,
                        importance=importance,
                        extra={"housenumber": number, "street": street_name},
                    )
                    scored.append((score, feature))

    scored.sort(
        key=lambda item: (
            -item[0],
            _KIND_ORDER[item[1]["properties"]["type"]],
            item[1]["properties"]["label"],
            item[1]["properties"]["id"],
        )
    )
    features = [feature for _, feature in scored[: params.limit]]

    collection: dict[str, Any] = {
        "type": "FeatureCollection",
        "version": "draft",
        "features": features,
        "attribution": "BAN",
        "licence": "ETALAB-2.0",
        "query": params.q,
        "limit": params.limit,
    }
    filters = {
        key: value
        for key, value in (
            ("type", params.type_),
            ("citycode", params.citycode),
            ("postcode", params.postcode),
        )
        if value is not None
    }
    if filters:
        collection["filters"] = filters
    if params.near is not None:
        collection["center"] = [params.near[1], params.near[0]]
    return collection


# --------------------------------------------------------------------------- route handler


_Reply = tuple[int, dict[str, str], bytes]


def make_search_handler(dataset: BanDataset) -> Callable[[dict[str, list[str]], object], _Reply]:
    """Build the ``/search/`` route handler bound to *dataset*.

    A plain function ``(query, request) -> (status, headers, body)`` that
    :mod:`sas_desk.simulator.server` registers in its route table (this
    module does not import the server, so there is no import cycle).
    """

    def handle_search(query: dict[str, list[str]], request: object) -> _Reply:
        del request  # the search only depends on the query string
        try:
            params = parse_search_params(query)
        except BanQueryError as exc:
            return _json(400, {"code": 400, "message": str(exc)})
        return _json(200, search(dataset, params))

    return handle_search


def _json(status: int, payload: object) -> _Reply:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return status, {"Content-Type": "application/json; charset=utf-8"}, body
