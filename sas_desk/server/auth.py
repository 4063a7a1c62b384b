"""Authentication: who is this, and which session speaks for them.

:class:`Authenticator` is the one interface a login goes through: passwords
(argon2 hashes in the accounts table) today, Pro Santé Connect (OIDC) next.
:class:`Sessions` issues opaque random tokens (only their SHA-256 is
stored): a short-lived access token and a refresh token that rotates on use,
and enforces the failed-login lockout.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import argon2

from sas_desk.server.store import Account, Principal, ServerStore


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


_HASHER = argon2.PasswordHasher()
# verified when the login is unknown, so that both answers take as long
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


def hash_password(password: str, hasher: argon2.PasswordHasher = _HASHER) -> str:
    """argon2id with argon2-cffi's defaults (RFC 9106's low-memory choice);
    tests pass a cheaper ``hasher``: the parameters travel in the hash."""
    return hasher.hash(password)


class Authenticator(Protocol):
    """Checks credentials; returns the account, or None (wrong login or
    password: one answer for both)."""

    async def authenticate(self, login: str, secret: str) -> Account | None: ...


class PasswordAuthenticator:
    """Login + password against the accounts table (argon2id)."""

    def __init__(self, store: ServerStore) -> None:
        self.store = store

    async def authenticate(self, login: str, secret: str) -> Account | None:
        found = await self.store.account(login)
        stored = found[1] if found is not None else _DUMMY_HASH
        ok = await asyncio.to_thread(_verify, stored, secret)
        if found is None or not ok:
            return None
        account = found[0]
        return None if account.disabled else account


def _verify(stored: str, secret: str) -> bool:
    try:
        return _HASHER.verify(stored, secret)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


@dataclass(frozen=True)
class Issued:
    principal: Principal
    access_token: str
    refresh_token: str
    expires_in: int


class Sessions:
    """Opens, checks, rotates and revokes sessions; counts failed logins."""

    def __init__(
        self,
        store: ServerStore,
        *,
        access_ttl_s: float,
        refresh_ttl_s: float,
        max_failures: int,
        lockout_s: float,
        cache_s: float = 5.0,
    ) -> None:
        self.store = store
        self.access_ttl = timedelta(seconds=access_ttl_s)
        self.refresh_ttl = timedelta(seconds=refresh_ttl_s)
        self.max_failures = max_failures
        self.lockout = timedelta(seconds=lockout_s)
        self.cache_s = cache_s
        # token hash -> (principal, access expiry, monotonic time checked)
        self._cache: dict[str, tuple[Principal, datetime, float]] = {}

    def _tokens(self, at: datetime) -> tuple[tuple[str, str, datetime], tuple[str, str, datetime]]:
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        return (access, token_hash(access), at + self.access_ttl), (
            refresh,
            token_hash(refresh),
            at + self.refresh_ttl,
        )

    async def locked(self, login: str, at: datetime) -> bool:
        return await self.store.failures_since(login, at - self.lockout) >= self.max_failures

    async def failed(self, login: str, at: datetime) -> None:
        await self.store.record_failure(login, at, at - self.lockout)

    async def open(
        self, account: Account, role: str, workstation: str, client: str, at: datetime
    ) -> Issued:
        (access, access_h, access_exp), (refresh, refresh_h, refresh_exp) = self._tokens(at)
        principal = Principal(
            session_id=secrets.token_hex(16),
            login=account.login,
            display_name=account.display_name,
            role=role,
            workstation=workstation,
        )
        await self.store.clear_failures(account.login)
        await self.store.create_session(
            principal, client, at, ((access_h, access_exp), (refresh_h, refresh_exp))
        )
        return Issued(principal, access, refresh, int(self.access_ttl.total_seconds()))

    async def check(self, access_token: str, at: datetime) -> Principal | None:
        h = token_hash(access_token)
        cached = self._cache.get(h)
        if cached is not None:
            principal, expires, checked = cached
            if expires > at and time.monotonic() - checked < self.cache_s:
                return principal
            del self._cache[h]
        found = await self.store.by_access(h, at)
        if found is None:
            return None
        if len(self._cache) > 10_000:
            self._cache.clear()
        # revocation by another process (user disable) is seen within cache_s
        self._cache[h] = (found[0], found[1], time.monotonic())
        return found[0]

    async def refresh(self, refresh_token: str, at: datetime) -> Issued | None:
        (access, access_h, access_exp), (refresh, refresh_h, refresh_exp) = self._tokens(at)
        principal = await self.store.rotate(
            token_hash(refresh_token), at, ((access_h, access_exp), (refresh_h, refresh_exp))
        )
        if principal is None:
            return None
        self._forget(principal.session_id)
        return Issued(principal, access, refresh, int(self.access_ttl.total_seconds()))

    async def revoke(self, principal: Principal, at: datetime) -> None:
        self._forget(principal.session_id)
        await self.store.revoke(principal.session_id, at)

    def _forget(self, session_id: str) -> None:
        for key in [k for k, v in self._cache.items() if v[0].session_id == session_id]:
            del self._cache[key]
