"""The local practitioner directory (SQLite) and its incremental FHIR sync.

See ``docs/fhir-directory.md`` for the feed, :mod:`.store` for the database
and the candidate queries, :mod:`.sync` for the sync.
"""

from __future__ import annotations

from sas_desk.services.directory.store import (
    ApplyCounts,
    DirectoryError,
    DirectoryStats,
    DirectoryStore,
    bounding_box,
)
from sas_desk.services.directory.sync import DirectorySync, DirectorySyncError, SyncReport

__all__ = [
    "ApplyCounts",
    "DirectoryError",
    "DirectoryStats",
    "DirectoryStore",
    "DirectorySync",
    "DirectorySyncError",
    "SyncReport",
    "bounding_box",
]
