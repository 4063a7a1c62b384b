"""Regulator handoff queues (no Qt): one interface, several backends."""
