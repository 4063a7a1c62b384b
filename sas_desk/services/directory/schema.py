"""SQLite schema of the directory, versioned with ``PRAGMA user_version``.

Each migration takes the sqlite-utils ``Database`` and runs inside the
transaction that also bumps ``user_version``.  Rows keep the feed's resource
ids as primary keys and ``last_updated`` (``meta.lastUpdated`` as sent);
references between rows are plain ids (no foreign keys: the feed may send a
role before its practitioner, and a deleted practitioner's roles simply stop
matching the joins).

Multi-valued text (address lines, given names) is stored joined with
:data:`SEPARATOR`: neither ever holds a line break.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlite_utils

SEPARATOR = "\n"

#: FTS5 tokenizer: case- and accent-insensitive ("Éloïse" = "eloise").
FTS_TOKENIZE = "unicode61 remove_diacritics 2"


def _m1(db: sqlite_utils.Database) -> None:
    db.table("endpoints").create(
        {"id": str, "name": str, "base_url": str, "status": str, "last_updated": str},
        pk="id",
        not_null={"name", "base_url", "status"},
    )
    practitioners = db.table("practitioners").create(
        {
            "id": str,
            "national_id": str,  # "8"+RPPS or "0"+ADELI
            "id_kind": str,  # RPPS | ADELI
            "family": str,
            "given": str,  # SEPARATOR-joined
            "name_key": str,  # folded "given family" for the name search
            "active": int,
            "last_updated": str,
        },
        pk="id",
        not_null={"national_id", "id_kind", "active"},
    )
    practitioners.create_index(["national_id"])
    practitioners.enable_fts(["name_key"], tokenize=FTS_TOKENIZE, create_triggers=True)
    places = db.table("places").create(
        {
            "id": str,  # PractitionerRole id
            "practitioner_id": str,
            "active": int,
            "profession": str,  # TRE-G15
            "specialty": str,  # TRE-R38
            "lines": str,  # SEPARATOR-joined address lines
            "postal_code": str,
            "city": str,
            "insee": str,
            "lat": float,
            "lon": float,
            "phone": str,
            "organization_id": str,  # centre de santé / MSP
            "endpoint_id": str,
            "sas": int,  # SAS participation
            "en_sus": int,
            "en_sus_phone": str,
            "last_updated": str,
        },
        pk="id",
        not_null={"practitioner_id", "active", "sas", "en_sus"},
    )
    # The bounding-box index: a range on lat, then lon read from the index
    # itself; it also covers what the candidate query filters and returns, so
    # that query never reads the table.
    places.create_index(
        [
            "lat",
            "lon",
            "active",
            "sas",
            "en_sus",
            "profession",
            "specialty",
            "practitioner_id",
            "id",
        ],
        index_name="idx_places_box",
    )
    places.create_index(["practitioner_id"])
    places.create_index(["endpoint_id"])
    memberships = db.table("place_cpts").create(
        {"place_id": str, "organization_id": str}, pk=("place_id", "organization_id")
    )
    memberships.create_index(["organization_id"])
    organizations = db.table("organizations").create(
        {
            "id": str,
            "national_id": str,  # "1"+FINESS, "3"+SIRET, …
            "id_kind": str,
            "kind": str,  # StructureKind
            "name": str,
            "phone": str,
            "endpoint_id": str,
            "active": int,
            "last_updated": str,
        },
        pk="id",
        not_null={"national_id", "kind", "active"},
    )
    organizations.create_index(["national_id"])
    sos = db.table("sos_places").create(
        {
            "id": str,  # Location id
            "organization_id": str,
            "name": str,
            "lines": str,
            "postal_code": str,
            "city": str,
            "insee": str,
            "lat": float,
            "lon": float,
            "phone": str,
            "active": int,
            "last_updated": str,
        },
        pk="id",
        not_null={"organization_id", "active"},
    )
    sos.create_index(["lat", "lon"])
    sos.create_index(["organization_id"])
    db.table("sync_state").create({"key": str, "value": str}, pk="key")


Migration = Callable[[sqlite_utils.Database], None]
MIGRATIONS: Sequence[Migration] = (_m1,)
SCHEMA_VERSION = len(MIGRATIONS)

#: Tables holding feed resources, by FHIR resource type.
TABLES: dict[str, str] = {
    "Endpoint": "endpoints",
    "Practitioner": "practitioners",
    "PractitionerRole": "places",
    "Organization": "organizations",
    "Location": "sos_places",
}
