"""A small roster in our JSON format (two sectors' worth of entries: a day
slot and a night across midnight), shared by the import tests and the parser
property tests."""

from __future__ import annotations

from typing import Any

JSON_ROSTER: dict[str, Any] = {
    "format": "sas-desk-roster",
    "version": 1,
    "sectors": [{"code": "69-C", "name": "Lyon centre", "communes": ["69123", "69266"]}],
    "entries": [
        {
            "date": "2027-01-03",
            "start": "09:00",
            "end": "12:00",
            "sector": "69-C",
            "family": "Martin",
            "phone": "04 65 71 12 34",
        },
        {
            "start": "2027-01-03T20:00:00+01:00",
            "end": "2027-01-04T08:00:00+01:00",
            "sector": "69-C",
            "family": "Nuit",
            "phone": "04 65 71 00 02",
            "rpps": None,
        },
    ],
}
