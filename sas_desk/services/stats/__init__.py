"""The room's statistics, read from the queue store (dossiers and their
append-only event log) without touching the queue backends.

A :class:`StatsSource` reads the existing tables with grouped queries and
hands back :class:`~sas_desk.models.stats.RawStats` (counts only) for a
period, and the last hour's activity for the supervisor's board.  One per
store: :class:`~sas_desk.services.stats.sqlite.SqliteStatsSource` and
:class:`~sas_desk.services.stats.postgres.PostgresStatsSource`; both run the
same queries (``sas_desk.services.stats.sql``) in their dialect, and one
test suite checks them on the same hand-built day.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from sas_desk.models.board import RecentEvent
from sas_desk.models.errors import KnownError
from sas_desk.models.queue import WaitLimits
from sas_desk.models.stats import Granularity, Period, RawStats


class StatsUnavailable(KnownError):
    """The store cannot be read (file missing, server down), French message."""

    def __init__(self, message_fr: str) -> None:
        super().__init__(message_fr)
        self.message_fr = message_fr


class StatsSource(Protocol):
    """Read-only statistics over one queue store."""

    async def raw(self, period: Period, by: Granularity, limits: WaitLimits) -> RawStats:
        """Grouped counts of the dossiers first put in a queue during ``period``."""
        ...

    async def activity(self, since: datetime, until: datetime) -> list[RecentEvent]:
        """The events of ``[since, until)``, oldest first (the board's last hour)."""
        ...

    async def close(self) -> None: ...
