"""FHIR consumer of the national SAS slot-search interface (no Qt)."""
