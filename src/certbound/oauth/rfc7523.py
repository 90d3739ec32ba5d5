"""``private_key_jwt`` client authentication: JWT client assertions (RFC 7523 section 2.2,
RFC 7521, OpenID Connect Core section 9).

:func:`verify_client_assertion` accepts an assertion only when

- its ``alg`` is an asymmetric one of :data:`ALGORITHMS` (never ``none`` or ``HS*``: an
  HMAC "signed" with a public key proves nothing) and a key of the client's ``jwks``
  (chosen by ``kid``, else by key type) verifies the signature;
- ``iss`` and ``sub`` are both the client_id, and ``aud`` names the token endpoint URL or the
  issuer (one of the ``audience`` values);
- ``exp`` is in the future but at most :data:`MAX_LIFETIME` away (a long-lived assertion is
  a reusable password), ``nbf`` / ``iat`` are not in the future (both with
  :data:`LEEWAY` for clock skew);
- its ``jti`` was not seen before from that client (:class:`AssertionReplay`, checked after
  the signature so forged assertions cannot fill the cache).

Anything else is ``invalid_client`` with CLIENT_AUTHENTICATION_FAILED naming the problem.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import import_key

from certbound.directory.apps import ClientMetadata
from certbound.errors import ReasonCode
from certbound.oauth.errors import OAuthError, invalid_client

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Asymmetric algorithms only; "Ed25519" is RFC 9864's fully-specified name for EdDSA.
ALGORITHMS = ("ES256", "RS256", "PS256", "EdDSA", "Ed25519")
# The key type (and curve) each algorithm verifies with.
_KEY_TYPES: dict[str, tuple[str, str | None]] = {
    "ES256": ("EC", "P-256"),
    "RS256": ("RSA", None),
    "PS256": ("RSA", None),
    "EdDSA": ("OKP", "Ed25519"),
    "Ed25519": ("OKP", "Ed25519"),
}
MAX_LIFETIME = dt.timedelta(minutes=5)
LEEWAY = dt.timedelta(seconds=30)
MAX_ASSERTION_LENGTH = 16 * 1024
MAX_JTI_LENGTH = 256
# Keys tried for an assertion without a kid; more in a jwks than this need kids.
MAX_CANDIDATE_KEYS = 8


class AssertionReplay:
    """The ``jti`` values seen, per client, until their assertion expires (in memory, one
    process; bounded: when full of unexpired entries new assertions are refused rather than
    old ones forgotten, so a replay is never let through)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._max = max_entries
        self._seen: dict[tuple[str, str], dt.datetime] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def remember(
        self, client_id: str, jti: str, expires: dt.datetime, now: dt.datetime
    ) -> str | None:
        """Record the jti; None when it is new, else why it is refused."""
        key = (client_id, jti)
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and seen > now:
                return f"assertion jti {jti!r} was already used (replay)"
            if len(self._seen) >= self._max:
                self._purge(now)
            if len(self._seen) >= self._max:
                return "too many recent assertions to check for replay; retry shortly"
            self._seen[key] = expires
        return None

    def _purge(self, now: dt.datetime) -> None:
        self._seen = {key: exp for key, exp in self._seen.items() if exp > now}


def verify_client_assertion(
    assertion: str,
    metadata: ClientMetadata,
    *,
    client_id: str,
    audience: Sequence[str],
    now: dt.datetime,
    replay: AssertionReplay,
) -> None:
    """Accept the assertion for ``client_id`` or raise OAuthError (invalid_client)."""
    header = _header(assertion)
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise _refused(f"assertion alg {alg!r} is not accepted (accepted: {', '.join(ALGORITHMS)})")
    claims = _verified_claims(assertion, str(alg), header.get("kid"), metadata)
    expires = _check_claims(claims, client_id=client_id, audience=audience, now=now)
    detail = replay.remember(client_id, claims["jti"], expires, now)
    if detail is not None:
        raise _refused(detail)


def claimed_subject(assertion: str) -> str | None:
    """The assertion's ``sub`` (the client_id, RFC 7523 section 3), read WITHOUT checking
    the signature: only to find the client whose keys then check it. None when the
    assertion does not decode or has no string ``sub``."""
    if len(assertion) > MAX_ASSERTION_LENGTH:
        return None
    try:
        payload = json.loads(jws.extract_compact(assertion.encode("ascii")).payload)
    except (JoseError, ValueError, UnicodeError):
        return None
    subject = payload.get("sub") if isinstance(payload, dict) else None
    return subject if isinstance(subject, str) and subject else None


def _refused(detail: str) -> OAuthError:
    return invalid_client(ReasonCode.CLIENT_AUTHENTICATION_FAILED, f"client assertion: {detail}")


def _header(assertion: str) -> dict[str, Any]:
    if len(assertion) > MAX_ASSERTION_LENGTH:
        raise _refused(f"longer than {MAX_ASSERTION_LENGTH} characters")
    try:
        header = jws.extract_compact(assertion.encode("ascii")).headers()
    except (JoseError, ValueError, UnicodeError) as exc:
        raise _refused(f"not a compact JWS ({exc})") from None
    return dict(header)


def _verified_claims(
    assertion: str, alg: str, kid: object, metadata: ClientMetadata
) -> dict[str, Any]:
    keys = _candidates(metadata.jwks, alg, kid)
    for jwk in keys:
        try:
            key = import_key(jwk)
            token = jwt.decode(assertion, key, algorithms=[alg])
        except JoseError:
            continue
        except (ValueError, TypeError, json.JSONDecodeError):
            continue
        return dict(token.claims)
    which = f"kid {kid!r}" if kid is not None else f"any {alg} key"
    raise _refused(f"signature does not verify with {which} of the client's jwks")


def _candidates(jwks: Mapping[str, Any] | None, alg: str, kid: object) -> list[dict[str, Any]]:
    keys = (jwks or {}).get("keys")
    if not isinstance(keys, list) or not keys:
        raise _refused("the client registers no public keys (jwks)")
    kty, crv = _KEY_TYPES[alg]
    out = [
        key
        for key in keys
        if isinstance(key, dict)
        and key.get("kty") == kty
        and (crv is None or key.get("crv") == crv)
        and key.get("use", "sig") == "sig"
        and key.get("alg", alg) == alg
        and (kid is None or key.get("kid") == kid)
    ]
    if not out:
        which = f"kid {kid!r}" if kid is not None else f"{kty} key for {alg}"
        raise _refused(f"the client's jwks has no {which}")
    if len(out) > MAX_CANDIDATE_KEYS:
        raise _refused(f"more than {MAX_CANDIDATE_KEYS} candidate keys: send a kid")
    return out


def _check_claims(
    claims: Mapping[str, Any], *, client_id: str, audience: Sequence[str], now: dt.datetime
) -> dt.datetime:
    """Check the claims; the assertion's expiry."""
    for name in ("iss", "sub"):
        if claims.get(name) != client_id:
            raise _refused(
                f"{name} must be the client_id {client_id!r}, it is {claims.get(name)!r}"
            )
    aud = claims.get("aud")
    auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not any(item in audience for item in auds):
        raise _refused(f"aud {aud!r} names neither the token endpoint nor the issuer")
    expires = _numeric_date(claims.get("exp"), "exp")
    if expires <= now - LEEWAY:
        raise _refused("expired (exp is in the past)")
    if expires > now + MAX_LIFETIME + LEEWAY:
        raise _refused(f"exp is more than {int(MAX_LIFETIME.total_seconds())} s in the future")
    for name in ("nbf", "iat"):
        value = claims.get(name)
        if value is not None and _numeric_date(value, name) > now + LEEWAY:
            raise _refused(f"{name} is in the future")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
        raise _refused(f"jti is required (a unique string of at most {MAX_JTI_LENGTH} chars)")
    return expires


def _numeric_date(value: object, name: str) -> dt.datetime:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _refused(f"{name} must be a NumericDate")
    try:
        return dt.datetime.fromtimestamp(value, dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise _refused(f"{name} is out of range") from None
