"""Wall clock, injectable (tests freeze it)."""

from __future__ import annotations

from datetime import datetime


def now() -> datetime:
    """Local time with its UTC offset, to the second (what RS-EDA carries)."""
    return datetime.now().astimezone().replace(microsecond=0)
