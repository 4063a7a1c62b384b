"""ID token validation with joserfc: signature from the issuer's JWKS
(asymmetric algorithms only), then ``iss``, ``aud`` (and ``azp`` when several
audiences), ``exp``/``iat``, ``nonce`` and ``acr``.  Each refusal is an
:class:`AuthError` whose code names the failed check."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from joserfc import errors as jose_errors
from joserfc import jwt
from joserfc.jwk import KeySet

from sas_desk.services.auth.errors import AuthError
from sas_desk.services.auth.provider import RelyingParty

__all__ = ["ALGORITHMS", "Expectations", "check_claims", "validate_id_token"]

log = logging.getLogger("sas_desk.auth")

#: never ``none`` nor a symmetric algorithm: the key must be the issuer's
ALGORITHMS = ["RS256", "PS256", "ES256"]

_CLAIM_CODES = {
    "iss": "wrong_issuer",
    "aud": "wrong_audience",
    "exp": "expired",
    "nbf": "expired",
    "iat": "bad_token",
    "acr": "wrong_acr",
    "nonce": "nonce",
}


@dataclass(frozen=True)
class Expectations:
    """What a valid ID token of this provider says."""

    issuer: str
    audience: str  # our client id
    acr: tuple[str, ...] = ()  # accepted ``acr`` values; empty: not checked
    leeway_s: int = 10  # clock skew tolerated on exp / iat


def _decode(token: str, keys: KeySet) -> jwt.Token:
    return jwt.decode(token, keys, algorithms=ALGORITHMS)


def check_claims(
    claims: dict[str, Any], expect: Expectations, *, nonce: str = "", now: float | None = None
) -> None:
    """The claim checks alone (the signature was verified)."""
    options: dict[str, Any] = {
        "iss": {"essential": True, "value": expect.issuer},
        "aud": {"essential": True, "value": expect.audience},
        "sub": {"essential": True},
        "exp": {"essential": True},
        "iat": {"essential": True},
    }
    if nonce:
        options["nonce"] = {"essential": True, "value": nonce}
    if expect.acr:
        options["acr"] = {"essential": True, "values": list(expect.acr)}
    registry = jwt.JWTClaimsRegistry(
        now=int(now if now is not None else time.time()), leeway=expect.leeway_s, **options
    )
    try:
        registry.validate(claims)
    except jose_errors.JoseError as exc:
        claim = str(getattr(exc, "claim", "") or "")
        raise AuthError(
            _CLAIM_CODES.get(claim, "bad_token"), f"claim {claim}: {exc.error}"
        ) from exc
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != expect.audience:
        raise AuthError("wrong_audience", "several audiences and azp is not ours")


async def validate_id_token(
    rp: RelyingParty,
    token: str,
    expect: Expectations,
    *,
    nonce: str = "",
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """The verified claims of *token*, or :class:`AuthError`."""
    try:
        try:
            decoded = _decode(token, await rp.keys())
        except jose_errors.InvalidKeyIdError:
            # an unknown ``kid``: the provider may have rotated its keys
            decoded = _decode(token, await rp.keys(refresh=True))
    except jose_errors.JoseError as exc:
        raise AuthError("bad_token", f"signature or format: {exc.error}") from exc
    except ValueError as exc:  # joserfc: an unusable key for this token
        raise AuthError("bad_token", f"key: {exc}") from exc
    claims = dict(decoded.claims)
    check_claims(claims, expect, nonce=nonce, now=clock())
    return claims
