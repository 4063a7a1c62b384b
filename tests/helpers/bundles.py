"""Comparing two parses of one Bundle."""

from __future__ import annotations

from sas_desk.services.fhir.bundle import BundleResult

FIELDS = (
    "bundle_type",
    "total",
    "self_link",
    "next_link",
    "slots",
    "schedules",
    "practitioners",
    "roles",
    "locations",
    "organizations",
    "healthcare_services",
    "skipped",
)


def assert_same(a: BundleResult, b: BundleResult) -> None:
    """Same resolved objects (deep equality), same skipped resources."""
    for name in FIELDS:
        assert getattr(a, name) == getattr(b, name), name
