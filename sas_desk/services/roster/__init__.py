"""Dental on-call rosters: file formats, the local store, the sync, and the
service a view calls.  See ``docs/rosters.md``."""

from __future__ import annotations

from sas_desk.services.roster.formats import (
    MAX_BYTES,
    Issue,
    ParsedRoster,
    RosterFormatError,
    export_csv,
    parse_roster,
    parse_sectors,
)
from sas_desk.services.roster.service import (
    ImportReport,
    RosterImportError,
    RosterService,
    RosterStatus,
)
from sas_desk.services.roster.store import RosterError, RosterStore, SourceState, VersionInfo
from sas_desk.services.roster.sync import RosterSync, SourceResult

__all__ = [
    "MAX_BYTES",
    "ImportReport",
    "Issue",
    "ParsedRoster",
    "RosterError",
    "RosterFormatError",
    "RosterImportError",
    "RosterService",
    "RosterStatus",
    "RosterStore",
    "RosterSync",
    "SourceResult",
    "SourceState",
    "VersionInfo",
    "export_csv",
    "parse_roster",
    "parse_sectors",
]
