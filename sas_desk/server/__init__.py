"""The room server (ASGI, no Qt): authentication, authorisation, audit, the
queue API and its change stream over the room's store.  ``docs/room-api.md``."""
