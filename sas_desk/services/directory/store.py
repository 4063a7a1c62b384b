"""The local SQLite directory: practitioners and their places of practice,
structures (CPTS, SOS Médecins, centres de santé, MSP), SOS fixed places,
vendor endpoints, and the sync cursor.

One connection, guarded by a lock: the store may be used from the event-loop
thread (queries, a few milliseconds) and from a worker thread (applying a
sync); a query waits while a sync is being applied.

The directory is a copy of its FHIR source: a file that is damaged or was
written by a newer SAS Desk is replaced by an empty one (and re-synced from
scratch), with a notice in :attr:`DirectoryStore.notice_fr`.

Candidates within R km of a point: a bounding box computed from the radius
(latitude range, then the longitude range widened for the latitude, exact on
the sphere) selects rows through the ``(lat, lon)`` index; the exact
great-circle distance then keeps those inside the circle.
"""

from __future__ import annotations

import logging
import math
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from sas_desk.models.directory import (
    Candidate,
    PracticePlace,
    SosCandidate,
    SosPlace,
    Structure,
    StructureKind,
    VendorEndpoint,
)
from sas_desk.models.errors import KnownError
from sas_desk.models.geo import distance_km
from sas_desk.models.slots import Address, Practitioner, PractitionerIdKind, StructureIdKind
from sas_desk.services.directory.feed import Change, Delete, Put, fold
from sas_desk.services.directory.schema import MIGRATIONS, SEPARATOR, TABLES
from sas_desk.services.fhir.bundle import practitioner_id_kind
from sas_desk.services.sqlite_file import open_versioned

log = logging.getLogger("sas_desk.directory")

EARTH_RADIUS_KM = 6371.0088  # as sas_desk.services.geo.resolver.distance_km
_BOX_MARGIN_DEG = 1e-7  # ≈ 1 cm: rounding never drops a point the exact distance keeps
_CHUNK = 500  # ids per "IN (…)" (well under SQLite's variable limit)

__all__ = [
    "ApplyCounts",
    "DirectoryError",
    "DirectoryStats",
    "DirectoryStore",
    "bounding_box",
]


class DirectoryError(KnownError):
    """A known directory problem (not a bug): message for the user in French."""

    def __init__(self, message_fr: str, reason: str) -> None:
        super().__init__(f"{reason}: {message_fr}")
        self.message_fr = message_fr
        self.reason = reason  # readonly | full | busy | damaged | io | feed


def classify(exc: BaseException) -> DirectoryError:
    text = str(exc).lower()
    if isinstance(exc, PermissionError) or "readonly" in text or "read-only" in text:
        return DirectoryError(
            "L'annuaire local est en lecture seule : il ne peut pas être mis à jour.", "readonly"
        )
    if "full" in text or (isinstance(exc, OSError) and exc.errno == 28):
        return DirectoryError(
            "Disque plein : l'annuaire local ne peut pas être mis à jour.", "full"
        )
    if "unable to open" in text:
        return DirectoryError("Impossible d'ouvrir l'annuaire local (dossier inaccessible).", "io")
    if "locked" in text or "busy" in text:
        return DirectoryError("Annuaire local occupé par un autre programme.", "busy")
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return DirectoryError("Annuaire local endommagé.", "damaged")
    return DirectoryError(f"Erreur de l'annuaire local ({exc.__class__.__name__}).", "io")


@dataclass(frozen=True, slots=True)
class ApplyCounts:
    added: int = 0
    updated: int = 0
    unchanged: int = 0  # replayed with the same meta.lastUpdated
    deleted: int = 0


@dataclass(frozen=True, slots=True)
class DirectoryStats:
    endpoints: int
    practitioners: int
    places: int
    organizations: int
    sos_places: int
    cursor: str | None
    source: str | None
    synced_at: str | None


def bounding_box(
    lat: float, lon: float, radius_km: float
) -> tuple[float, float, tuple[tuple[float, float], ...]]:
    """``(lat_min, lat_max, lon_ranges)`` enclosing the circle of *radius_km*
    around (*lat*, *lon*) on the sphere.  The longitude half-width is
    ``asin(sin r / cos φ)`` (the circle is widest slightly poleward of its
    centre); a box crossing the antimeridian gives two longitude ranges, one
    containing a pole spans all longitudes."""
    angular = radius_km / EARTH_RADIUS_KM
    dlat = math.degrees(angular) + _BOX_MARGIN_DEG
    lat_min, lat_max = lat - dlat, lat + dlat
    if lat_max >= 90.0 or lat_min <= -90.0 or angular >= math.pi / 2:
        return max(lat_min, -90.0), min(lat_max, 90.0), ((-180.0, 180.0),)
    ratio = math.sin(angular) / math.cos(math.radians(lat))
    if ratio >= 1.0:
        return lat_min, lat_max, ((-180.0, 180.0),)
    dlon = math.degrees(math.asin(ratio)) + _BOX_MARGIN_DEG
    lon_min, lon_max = lon - dlon, lon + dlon
    if lon_min < -180.0:
        return lat_min, lat_max, ((lon_min + 360.0, 180.0), (-180.0, lon_max))
    if lon_max > 180.0:
        return lat_min, lat_max, ((lon_min, 180.0), (-180.0, lon_max - 360.0))
    return lat_min, lat_max, ((lon_min, lon_max),)


def _codes(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


_ID_KINDS = {k.value: k for k in PractitionerIdKind}
_STRUCT_KINDS = {k.value: k for k in StructureIdKind}
_KINDS = {k.value: k for k in StructureKind}
_PLACE_COLUMNS = (
    "pl.id, pl.profession, pl.specialty, pl.lines, pl.postal_code, pl.city, pl.insee, "
    "pl.lat, pl.lon, pl.phone, pl.organization_id, pl.endpoint_id, pl.sas, pl.en_sus, "
    "pl.en_sus_phone, pl.active, pr.id, pr.national_id, pr.id_kind, pr.family, pr.given"
)
_PLACE_FROM = "FROM places pl JOIN practitioners pr ON pr.id = pl.practitioner_id"
_DIGITS = re.compile(r"[0-9A-Za-z]+")
#: Added to the sort key of a non-participant: SAS participants come first.
_NOT_SAS = 1e9


class DirectoryStore:
    """The directory database; ``path=None`` keeps it in memory (tests, bench)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.notice_fr = ""
        self._lock = threading.RLock()
        # read caches, dropped whenever a sync is applied
        self._endpoints: dict[str, VendorEndpoint] | None = None
        self._structures: dict[str, Structure] | None = None
        self._inactive_practitioners: frozenset[str] | None = None
        self._places: dict[str, PracticePlace] = {}
        self._db = self._open()

    # ------------------------------------------------------------------ opening

    def _open(self) -> sqlite_utils.Database:
        return open_versioned(
            self.path,
            MIGRATIONS,
            what="directory",
            set_aside=self._discard,
            classify=classify,
            synchronous="NORMAL",  # a copy: re-synced if ever lost
        )

    def _discard(self, why: str) -> None:
        assert self.path is not None  # an in-memory database is never unusable
        log.error("directory %s unusable (%s): replaced by an empty one", self.path, why)
        for suffix in ("", "-wal", "-shm"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)
        self.notice_fr = (
            "L'annuaire local était illisible : il a été recréé et sera entièrement resynchronisé."
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> DirectoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # ------------------------------------------------------------------ sync state

    def _state(self) -> dict[str, str]:
        rows = self._db.execute("SELECT key, value FROM sync_state").fetchall()
        return {str(k): str(v) for k, v in rows}

    def cursor(self, source: str) -> str | None:
        """The ``_since`` to ask *source* from; ``None`` (a full sync) when the
        directory was never synced or was synced from another source."""
        with self._lock:
            state = self._state()
        if state.get("source") != source:
            return None
        return state.get("cursor")

    def stats(self) -> DirectoryStats:
        with self._lock:
            counts = {
                table: int(self._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
                for table in TABLES.values()
            }
            state = self._state()
        return DirectoryStats(
            endpoints=counts["endpoints"],
            practitioners=counts["practitioners"],
            places=counts["places"],
            organizations=counts["organizations"],
            sos_places=counts["sos_places"],
            cursor=state.get("cursor"),
            source=state.get("source"),
            synced_at=state.get("synced_at"),
        )

    # ------------------------------------------------------------------ writes

    def apply(
        self,
        changes: Sequence[Change],
        *,
        source: str,
        cursor: str | None,
        synced_at: str,
        replace: bool = False,
    ) -> ApplyCounts:
        """Apply a sync's changes in one transaction, with its new cursor.

        Later changes of the same resource win.  ``replace``: the changes are
        the whole directory (a full sync): everything else is removed.  On any
        error nothing is changed (the previous directory and cursor stay)."""
        with self._lock:
            try:
                with self._db.atomic():
                    counts = self._apply(changes, replace)
                    state = {"source": source, "synced_at": synced_at}
                    if cursor is not None:
                        state["cursor"] = cursor
                    elif replace:
                        self._db.execute("DELETE FROM sync_state WHERE key = 'cursor'")
                    self._db.table("sync_state").upsert_all(
                        [{"key": k, "value": v} for k, v in state.items()], pk="key"
                    )
            except sqlite3.Error as exc:
                self._forget()
                raise classify(exc) from exc
            except BaseException:
                self._forget()
                raise
            self._invalidate(changes, replace)
        return counts

    def _invalidate(self, changes: Sequence[Change], replace: bool) -> None:
        """Drop the cached objects a committed sync made stale: everything
        after a full sync or a change of endpoint or structure (places embed
        them), else only the places changed and those of changed practitioners."""
        tables = {c.table for c in changes}
        if replace or tables & {"endpoints", "organizations"}:
            self._forget()
            return
        if "practitioners" in tables:
            self._inactive_practitioners = None
            ids = list({c.rid for c in changes if c.table == "practitioners"})
            for chunk in _chunks(ids):
                marks = ", ".join("?" * len(chunk))
                for (rid,) in self._db.execute(
                    f"SELECT id FROM places WHERE practitioner_id IN ({marks})", list(chunk)
                ):
                    self._places.pop(rid, None)
        if "places" in tables:
            self._inactive_practitioners = None  # a place may name an absent practitioner
            for c in changes:
                if c.table == "places":
                    self._places.pop(c.rid, None)

    def _apply(self, changes: Sequence[Change], replace: bool) -> ApplyCounts:
        latest: dict[tuple[str, str], Change] = {}
        for change in changes:
            key = (change.table, change.rid)
            latest.pop(key, None)  # keep the order of the last occurrence
            latest[key] = change
        added = updated = unchanged = deleted = 0
        for table in TABLES.values():
            puts = [c for (t, _), c in latest.items() if t == table and isinstance(c, Put)]
            removals = [
                c.rid for (t, _), c in latest.items() if t == table and isinstance(c, Delete)
            ]
            if replace:
                existing = self._stamps(table, None)
                kept = {p.rid for p in puts}
                deleted += sum(1 for rid in existing if rid not in kept)
                self._db.execute(f"DELETE FROM {table}")
                if table == "places":
                    self._db.execute("DELETE FROM place_cpts")
            else:
                existing = self._stamps(table, [p.rid for p in puts] + removals)
            for put in puts:
                if put.rid not in existing:
                    added += 1
                elif put.stamp is not None and existing[put.rid] == put.stamp:
                    unchanged += 1
                else:
                    updated += 1
            if puts:
                rows = [p.row for p in puts]
                if replace:
                    self._db.table(table).insert_all(rows, pk="id")
                else:
                    self._db.table(table).upsert_all(rows, pk="id")
            if removals and not replace:
                deleted += sum(1 for rid in removals if rid in existing)
                for chunk in _chunks(removals):
                    marks = ", ".join("?" * len(chunk))
                    self._db.execute(f"DELETE FROM {table} WHERE id IN ({marks})", list(chunk))
                    if table == "places":
                        self._db.execute(
                            f"DELETE FROM place_cpts WHERE place_id IN ({marks})", list(chunk)
                        )
            if table == "places" and puts:
                if not replace:
                    ids = [p.rid for p in puts]
                    for chunk in _chunks(ids):
                        marks = ", ".join("?" * len(chunk))
                        self._db.execute(
                            f"DELETE FROM place_cpts WHERE place_id IN ({marks})", list(chunk)
                        )
                memberships = [
                    {"place_id": p.rid, "organization_id": org} for p in puts for org in p.cpts
                ]
                if memberships:
                    self._db.table("place_cpts").insert_all(
                        memberships, pk=("place_id", "organization_id")
                    )
        return ApplyCounts(added, updated, unchanged, deleted)

    def _stamps(self, table: str, ids: Sequence[str] | None) -> dict[str, str | None]:
        if ids is None:
            rows = self._db.execute(f"SELECT id, last_updated FROM {table}").fetchall()
            return {r[0]: r[1] for r in rows}
        found: dict[str, str | None] = {}
        unique = list(dict.fromkeys(ids))
        for chunk in _chunks(unique):
            marks = ", ".join("?" * len(chunk))
            for rid, stamp in self._db.execute(
                f"SELECT id, last_updated FROM {table} WHERE id IN ({marks})", list(chunk)
            ).fetchall():
                found[rid] = stamp
        return found

    # ------------------------------------------------------------------ reference data

    def drop_caches(self) -> None:
        """Forget the cached objects (a sync does it): the next queries rebuild them."""
        with self._lock:
            self._forget()

    def _forget(self) -> None:
        self._endpoints = self._structures = self._inactive_practitioners = None
        self._places = {}

    def _inactive(self) -> frozenset[str]:
        """Practitioner ids of places whose practitioner is inactive or absent
        (not to be searched; usually none)."""
        if self._inactive_practitioners is None:
            self._inactive_practitioners = frozenset(
                r[0]
                for r in self._db.execute(
                    "SELECT DISTINCT practitioner_id FROM places WHERE practitioner_id NOT IN "
                    "(SELECT id FROM practitioners WHERE active = 1)"
                )
            )
        return self._inactive_practitioners

    def _endpoint_map(self) -> dict[str, VendorEndpoint]:
        if self._endpoints is None:
            self._endpoints = {
                rid: VendorEndpoint(rid, name, base_url, status == "active")
                for rid, name, base_url, status in self._db.execute(
                    "SELECT id, name, base_url, status FROM endpoints"
                ).fetchall()
            }
        return self._endpoints

    def _structure_map(self) -> dict[str, Structure]:
        if self._structures is None:
            endpoints = self._endpoint_map()
            self._structures = {
                rid: Structure(
                    rid,
                    national_id,
                    _STRUCT_KINDS.get(id_kind),
                    _KINDS.get(kind, StructureKind.OTHER),
                    name,
                    phone,
                    endpoints.get(endpoint_id) if endpoint_id else None,
                    bool(active),
                )
                for rid, national_id, id_kind, kind, name, phone, endpoint_id, active in self._db.execute(
                    "SELECT id, national_id, id_kind, kind, name, phone, endpoint_id, active "
                    "FROM organizations"
                ).fetchall()
            }
        return self._structures

    def endpoints(self) -> list[VendorEndpoint]:
        """Every vendor endpoint, by name."""
        with self._lock:
            return sorted(self._endpoint_map().values(), key=lambda e: (e.name, e.id))

    def structures(self, kind: StructureKind | None = None) -> list[Structure]:
        """Structures (of one kind), by name."""
        with self._lock:
            found = [s for s in self._structure_map().values() if kind is None or s.kind is kind]
        return sorted(found, key=lambda s: (s.name or "", s.id))

    def structure(self, national_id: str) -> Structure | None:
        """A structure by its prefixed national id (``"3"+SIRET``, ``"1"+FINESS``)."""
        with self._lock:
            for s in self._structure_map().values():
                if s.national_id == national_id:
                    return s
        return None

    # ------------------------------------------------------------------ places

    def _place(
        self, row: Sequence[Any], structures: dict[str, Structure], cpts: Sequence[str]
    ) -> PracticePlace:
        (
            rid,
            profession,
            specialty,
            lines,
            postal_code,
            city,
            insee,
            lat,
            lon,
            phone,
            organization_id,
            endpoint_id,
            sas,
            en_sus,
            en_sus_phone,
            active,
            pid,
            national_id,
            id_kind,
            family,
            given,
        ) = row
        return PracticePlace(
            rid,
            Practitioner(
                pid,
                national_id,
                _ID_KINDS[id_kind],
                family,
                tuple(given.split(SEPARATOR)) if given else (),
            ),
            profession,
            specialty,
            Address(tuple(lines.split(SEPARATOR)) if lines else (), city, postal_code),
            insee,
            lat,
            lon,
            phone,
            structures.get(organization_id) if organization_id else None,
            self._endpoint_map().get(endpoint_id) if endpoint_id else None,
            bool(sas),
            bool(en_sus),
            en_sus_phone,
            tuple(structures[c] for c in cpts if c in structures) if cpts else (),
            bool(active),
        )

    def candidates(
        self,
        lat: float,
        lon: float,
        radius_km: float,
        *,
        profession: str | Iterable[str] | None = None,
        specialty: str | Iterable[str] | None = None,
        en_sus_only: bool = False,
        limit: int | None = None,
    ) -> list[Candidate]:
        """Active places of active practitioners within *radius_km* of the
        point, SAS participants first, then by distance (then role id).

        ``profession`` (TRE-G15) and ``specialty`` (TRE-R38): one code or
        several (any of them); ``None``: no filter.  Places without
        coordinates are never candidates.

        The box query reads the covering ``(lat, lon, …)`` index only; the
        place objects come from a cache filled on first use (and emptied by
        each sync)."""
        if radius_km <= 0 or not math.isfinite(radius_km):
            return []
        lat_min, lat_max, lon_ranges = bounding_box(lat, lon, radius_km)
        where = ["lat BETWEEN ? AND ?"]
        params: list[Any] = [lat_min, lat_max]
        where.append("(" + " OR ".join("lon BETWEEN ? AND ?" for _ in lon_ranges) + ")")
        for lo, hi in lon_ranges:
            params += [lo, hi]
        where.append("active = 1")
        for column, codes in (("profession", _codes(profession)), ("specialty", _codes(specialty))):
            if codes:
                where.append(f"{column} IN ({', '.join('?' * len(codes))})")
                params += codes
        if en_sus_only:
            where.append("en_sus = 1")
        kept: list[tuple[float, str]] = []  # (distance, + _NOT_SAS for non-participants), id
        # distance_km's haversine, unrolled with the centre's terms computed once
        # and the threshold compared before the arcsine (the hot loop of a search)
        rad, sin, cos, asin, sqrt = math.radians, math.sin, math.cos, math.asin, math.sqrt
        p1 = rad(lat)
        cos_p1 = cos(p1)
        limit_a = sin(min(radius_km / EARTH_RADIUS_KM, math.pi) / 2) ** 2
        diameter = 2 * EARTH_RADIUS_KM
        with self._lock:
            inactive = self._inactive()
            columns = "id, lat, lon, sas" + (", practitioner_id" if inactive else "")
            sql = (
                f"SELECT {columns} FROM places INDEXED BY idx_places_box "
                f"WHERE {' AND '.join(where)}"
            )
            for row in self._db.execute(sql, params).fetchall():
                if inactive and row[4] in inactive:
                    continue
                p2 = rad(row[1])
                a = sin((p2 - p1) / 2) ** 2 + cos_p1 * cos(p2) * sin(rad(row[2] - lon) / 2) ** 2
                if a <= limit_a:
                    d = diameter * asin(sqrt(a))
                    kept.append((d if row[3] else d + _NOT_SAS, row[0]))
            kept.sort()
            if limit is not None:
                kept = kept[: max(limit, 0)]
            places = self._places
            if any(rid not in places for _, rid in kept):
                places = self._cached_places([rid for _, rid in kept])
            return [
                Candidate(places[rid], key if key < _NOT_SAS else key - _NOT_SAS)
                for key, rid in kept
            ]

    def _cached_places(self, ids: Sequence[str]) -> dict[str, PracticePlace]:
        cache = self._places
        missing = [rid for rid in ids if rid not in cache]
        for chunk in _chunks(missing):
            marks = ", ".join("?" * len(chunk))
            for place in self._load_places(f"pl.id IN ({marks})", list(chunk)):
                cache[place.id] = place
        return cache

    def _load_places(self, where: str, params: Sequence[Any]) -> list[PracticePlace]:
        rows = self._db.execute(
            f"SELECT {_PLACE_COLUMNS} {_PLACE_FROM} WHERE {where}", params
        ).fetchall()
        if not rows:
            return []
        memberships: dict[str, list[str]] = {}
        if len(rows) > _CHUNK:
            pairs: Iterable[tuple[str, str]] = self._db.execute(
                "SELECT place_id, organization_id FROM place_cpts ORDER BY rowid"
            ).fetchall()
        else:
            marks = ", ".join("?" * len(rows))
            pairs = self._db.execute(
                "SELECT place_id, organization_id FROM place_cpts "
                f"WHERE place_id IN ({marks}) ORDER BY rowid",
                [r[0] for r in rows],
            ).fetchall()
        for place_id, org in pairs:
            memberships.setdefault(place_id, []).append(org)
        structures = self._structure_map()
        return [self._place(row, structures, memberships.get(row[0], ())) for row in rows]

    def preload(self) -> int:
        """Build the objects of every active place not cached yet (one scan when
        none is) rather than on first use: a search in a new area then costs no
        more than in a known one.  The sync runs it after applying, in its
        worker thread.  Returns the number of places cached."""
        with self._lock:
            if not self._places:
                places = self._load_places("pl.active = 1 AND pr.active = 1", ())
                self._places = {p.id: p for p in places}
            else:
                inactive = self._inactive()
                ids = [
                    rid
                    for rid, pid in self._db.execute(
                        "SELECT id, practitioner_id FROM places WHERE active = 1"
                    ).fetchall()
                    if pid not in inactive
                ]
                self._cached_places(ids)
            return len(self._places)

    def en_sus_volunteers(
        self,
        lat: float,
        lon: float,
        radius_km: float,
        *,
        profession: str | Iterable[str] | None = None,
        specialty: str | Iterable[str] | None = None,
        limit: int | None = None,
    ) -> list[Candidate]:
        """Places within the radius whose practitioner accepts patients "en sus"
        (the number to call: ``candidate.place.callback_phone``), in candidate order."""
        return self.candidates(
            lat,
            lon,
            radius_km,
            profession=profession,
            specialty=specialty,
            en_sus_only=True,
            limit=limit,
        )

    def places_of(self, national_id: str) -> list[PracticePlace]:
        """Every place (active or not) of a practitioner, by prefixed national id."""
        with self._lock:
            places = self._load_places("pr.national_id = ?", [national_id])
        return sorted(places, key=lambda p: p.id)

    def search_by_name(self, text: str, *, limit: int = 20) -> list[PracticePlace]:
        """Active places of the active practitioners whose name matches every
        word of *text* (word prefixes; case, accents and hyphens ignored), best
        matches first; an RPPS or ADELI number (with or without its prefix)
        finds that practitioner."""
        words = fold(text).split()
        if not words or limit <= 0:
            return []
        compact = "".join(text.split())
        ids: list[str] = []
        with self._lock:
            if _DIGITS.fullmatch(compact) and any(ch.isdigit() for ch in compact):
                national = [
                    v
                    for v in (compact, "8" + compact, "0" + compact)
                    if practitioner_id_kind(v) is not None
                ]
                if national:
                    marks = ", ".join("?" * len(national))
                    ids = [
                        r[0]
                        for r in self._db.execute(
                            f"SELECT id FROM practitioners WHERE national_id IN ({marks}) "
                            "AND active = 1 ORDER BY id",
                            national,
                        ).fetchall()
                    ]
            if not ids:
                query = " ".join(f'"{w}"*' for w in words)
                ids = [
                    r[0]
                    for r in self._db.execute(
                        "SELECT pr.id FROM practitioners_fts f "
                        "JOIN practitioners pr ON pr.rowid = f.rowid "
                        "WHERE practitioners_fts MATCH ? AND pr.active = 1 "
                        "ORDER BY f.rank, pr.id LIMIT ?",
                        [query, limit],
                    ).fetchall()
                ]
            if not ids:
                return []
            order = {pid: n for n, pid in enumerate(ids)}
            marks = ", ".join("?" * len(ids))
            places = self._load_places(f"pr.id IN ({marks}) AND pl.active = 1", ids)
        return sorted(places, key=lambda p: (order[p.practitioner.id], p.id))

    # ------------------------------------------------------------------ SOS

    def sos_associations(self, lat: float, lon: float, radius_km: float) -> list[SosCandidate]:
        """Active SOS Médecins associations with an active fixed place within
        the radius, nearest first; each with its places in the radius."""
        if radius_km <= 0 or not math.isfinite(radius_km):
            return []
        lat_min, lat_max, lon_ranges = bounding_box(lat, lon, radius_km)
        params: list[Any] = [lat_min, lat_max]
        for lo, hi in lon_ranges:
            params += [lo, hi]
        lon_where = " OR ".join("lon BETWEEN ? AND ?" for _ in lon_ranges)
        sql = (
            "SELECT id, organization_id, name, lines, postal_code, city, insee, lat, lon, phone "
            f"FROM sos_places WHERE lat BETWEEN ? AND ? AND ({lon_where}) AND active = 1"
        )
        by_association: dict[str, list[SosPlace]] = {}
        with self._lock:
            structures = self._structure_map()
            for rid, org, name, lines, postal, city, insee, plat, plon, phone in self._db.execute(
                sql, params
            ).fetchall():
                association = structures.get(org)
                if association is None or not association.active:
                    continue
                d = distance_km(lat, lon, plat, plon)
                if d > radius_km:
                    continue
                by_association.setdefault(org, []).append(
                    SosPlace(
                        rid,
                        name,
                        Address(tuple(lines.split(SEPARATOR)) if lines else (), city, postal),
                        insee,
                        plat,
                        plon,
                        phone,
                        d,
                    )
                )
            found = [
                SosCandidate(
                    structures[org], tuple(sorted(places, key=lambda p: (p.distance_km, p.id)))
                )
                for org, places in by_association.items()
            ]
        found.sort(key=lambda c: (c.distance_km, c.association.id))
        return found
