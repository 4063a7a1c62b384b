"""The demo simulator's client credentials (``sas_desk/simulator/oidc.py``),
here so that the room server can refuse them without importing the
simulator: a server that listens beyond this machine must not accept them."""

from __future__ import annotations

__all__ = ["DEMO_CLIENT_ID", "DEMO_ESTABLISHMENT_SECRET", "DEMO_PSC_SECRET", "DEMO_SECRETS"]

DEMO_CLIENT_ID = "sas-desk-salle"
DEMO_PSC_SECRET = "psc-demo-secret-not-for-production"
DEMO_ESTABLISHMENT_SECRET = "etab-demo-secret-not-for-production"
DEMO_SECRETS = frozenset({DEMO_PSC_SECRET, DEMO_ESTABLISHMENT_SECRET})
