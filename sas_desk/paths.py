"""Where SAS Desk finds its bundled resources.

In a source checkout (and an editable install) the resources live in the
top-level ``resources/`` folder; a built wheel carries them as
``sas_desk/_resources``.  Qt-free: models and services use it.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path


@cache
def resource_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "_resources", here.parent / "resources"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("resources folder not found next to the sas_desk package")


def resource(*parts: str) -> Path:
    return resource_dir().joinpath(*parts)
