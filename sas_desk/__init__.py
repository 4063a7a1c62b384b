"""SAS Desk: the regulation-room workstation of a Service d'Accès aux Soins."""

__version__ = "0.1.0"
