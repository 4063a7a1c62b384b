"""Wall clock, injectable (tests freeze it), in the room's time zone."""

from __future__ import annotations

import os
import time
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

_zone: tzinfo | None = None  # the room's zone; None: the machine's


def use_zone(name: str | None) -> None:
    """Stamp and show every time in the room's zone (``[organisation]
    timezone``), whatever the machine's: the process's local time becomes
    that zone too (``TZ``), so Qt and ``astimezone()`` agree with :func:`now`.
    ``None`` goes back to the machine's zone."""
    global _zone
    if name is None:
        _zone = None
        os.environ.pop("TZ", None)
    else:
        _zone = ZoneInfo(name)
        os.environ["TZ"] = name
    if hasattr(time, "tzset"):  # POSIX; elsewhere now() still uses the room's zone
        time.tzset()


def zone() -> tzinfo | None:
    return _zone


def now() -> datetime:
    """The room's time with its UTC offset, to the second (what RS-EDA carries)."""
    current = datetime.now(_zone) if _zone is not None else datetime.now().astimezone()
    return current.replace(microsecond=0)
