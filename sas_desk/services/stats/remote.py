"""The room's statistics through its server (room mode): a workstation has
no queue store of its own then, the server reads its own and answers the
supervisor (``GET /v1/stats/raw``, ``GET /v1/stats/activity``, see
``docs/room-api.md``).  The bodies below are the wire format of both sides:
the server encodes them, :class:`RemoteStatsSource` decodes them into the
same :class:`~sas_desk.models.stats.RawStats` and
:class:`~sas_desk.models.board.RecentEvent` as a local source gives."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import msgspec

from sas_desk.models.board import RecentEvent
from sas_desk.models.queue import WaitLimits
from sas_desk.models.stats import Granularity, Period, RawStats
from sas_desk.services.queues.api import BackendUnavailable
from sas_desk.services.stats import StatsUnavailable

if TYPE_CHECKING:
    from sas_desk.services.queues.remote import RoomSession

Row = list[str | int | None]


class RawStatsBody(msgspec.Struct, frozen=True):
    """:class:`RawStats`: grouped counts only, each row a list in the order
    of the model's tuples."""

    counts: list[Row]
    ages: list[Row]
    departements: list[Row]
    snp: list[Row]
    dental: list[Row]
    delays: list[Row]
    load: list[Row]


class RecentEventBody(msgspec.Struct, frozen=True):
    at: str  # ISO 8601 with an offset
    kind: str
    role: str
    operator: str
    workstation: str
    case_id: str


class ActivityBody(msgspec.Struct, frozen=True):
    events: list[RecentEventBody]


_FIELDS = ("counts", "ages", "departements", "snp", "dental", "delays", "load")


def raw_body(raw: RawStats) -> RawStatsBody:
    return RawStatsBody(**{name: [list(row) for row in getattr(raw, name)] for name in _FIELDS})


def raw_from_body(body: RawStatsBody) -> RawStats:
    return RawStats(
        **{name: [cast(Any, tuple(row)) for row in getattr(body, name)] for name in _FIELDS}
    )


def activity_body(events: list[RecentEvent]) -> ActivityBody:
    return ActivityBody(
        events=[
            RecentEventBody(
                at=e.at.isoformat(),
                kind=str(e.kind),
                role=e.role,
                operator=e.operator,
                workstation=e.workstation,
                case_id=e.case_id,
            )
            for e in events
        ]
    )


def activity_from_body(body: ActivityBody) -> list[RecentEvent]:
    return [
        RecentEvent(
            datetime.fromisoformat(e.at), e.kind, e.role, e.operator, e.workstation, e.case_id
        )
        for e in body.events
    ]


def limits_params(limits: WaitLimits) -> dict[str, float]:
    """The workstation's wait limits, as query parameters (NR has none)."""
    out = {f"p{i}": float(limits.limit(f"P{i}") or 0.0) for i in range(4)}
    out["due_fraction"] = limits.due_fraction
    return out


_RAW = msgspec.json.Decoder(RawStatsBody)
_ACTIVITY = msgspec.json.Decoder(ActivityBody)


class RemoteStatsSource:
    """The statistics of the room through its server, on the workstation's
    room session (the queue backend's: this source never closes it)."""

    def __init__(self, session: RoomSession) -> None:
        self.session = session

    async def _get(self, path: str, params: dict[str, Any]) -> bytes:
        try:
            response = await self.session.request("GET", path, params=params)
        except BackendUnavailable as exc:
            raise StatsUnavailable(
                f"{exc.message_fr} Statistiques indisponibles pour l'instant."
            ) from None
        if response.status_code != 200:
            message = ""
            try:
                message = str(response.json().get("message_fr", ""))
            except ValueError:
                pass
            raise StatsUnavailable(
                message
                or f"Statistiques refusées par le serveur de salle ({response.status_code})."
            )
        return response.content

    async def raw(self, period: Period, by: Granularity, limits: WaitLimits) -> RawStats:
        params: dict[str, Any] = {
            "first": period.first.isoformat(),
            "last": period.last.isoformat(),
            "tz": period.tz,
            "by": by.value,
            **limits_params(limits),
        }
        content = await self._get("/v1/stats/raw", params)
        try:
            return raw_from_body(_RAW.decode(content))
        except msgspec.DecodeError:
            raise StatsUnavailable(
                "Réponse illisible du serveur de salle (statistiques)."
            ) from None

    async def activity(self, since: datetime, until: datetime) -> list[RecentEvent]:
        params = {"since": since.isoformat(), "until": until.isoformat()}
        content = await self._get("/v1/stats/activity", params)
        try:
            return activity_from_body(_ACTIVITY.decode(content))
        except (msgspec.DecodeError, ValueError):
            raise StatsUnavailable("Réponse illisible du serveur de salle (activité).") from None

    async def close(self) -> None:
        return None  # the session is the queue backend's
