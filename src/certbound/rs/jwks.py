"""Where the resource server gets the issuer's public keys: a JWKS URL (fetched and cached)
or a JWKS document given once.

:class:`RemoteJwks` fetches ``jwks_uri``, keeps the keys for ``cache_seconds``, and on a
``kid`` it does not know fetches again at once (the issuer rotated), but no more often than
every ``min_refresh_seconds``, so a flood of tokens with made-up kids costs one request per
interval. When a refetch fails, the keys already held keep serving. Only signature keys the
SDK can use are kept: ``kty`` EC (P-256, P-384) or RSA, with a ``kid``, ``use`` absent or
``sig``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

import httpx
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc.jwk import ECKey, RSAKey

from certbound.errors import WouldBlockError

MAX_JWKS_BYTES = 1024 * 1024
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


class JwksUnavailableError(Exception):
    """The JWKS could not be fetched or parsed, and no earlier copy is held."""


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """One usable public key: ``alg`` is the JWK's own ``alg`` member, if it had one."""

    kid: str
    kty: str
    alg: str | None
    curve: str | None  # EC: "P-256" | "P-384"
    key: PublicKey


class JwksSource(Protocol):
    def key(self, kid: str, *, offline: bool = False) -> VerificationKey | None:
        """The key named ``kid``, or None. ``offline``: raise
        :class:`~certbound.errors.WouldBlockError` instead of fetching."""
        ...


def parse_jwks(document: Any) -> Mapping[str, VerificationKey]:
    """The usable keys of a JWKS document by kid; :class:`JwksUnavailableError` when it is not a
    JWKS at all."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksUnavailableError('not a JWKS document (a JSON object with a "keys" array)')
    keys: dict[str, VerificationKey] = {}
    for jwk in document["keys"]:
        parsed = _parse_key(jwk)
        if parsed is not None and parsed.kid not in keys:
            keys[parsed.kid] = parsed
    return MappingProxyType(keys)


def _parse_key(jwk: Any) -> VerificationKey | None:
    if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
        return None
    if jwk.get("use", "sig") != "sig":
        return None
    alg = jwk.get("alg")
    alg = alg if isinstance(alg, str) else None
    public = {k: v for k, v in jwk.items() if k not in ("d", "p", "q", "dp", "dq", "qi")}
    try:
        if jwk.get("kty") == "EC" and jwk.get("crv") in ("P-256", "P-384"):
            ec_key = ECKey.import_key(public)
            assert isinstance(ec_key.public_key, ec.EllipticCurvePublicKey)
            return VerificationKey(jwk["kid"], "EC", alg, jwk["crv"], ec_key.public_key)
        if jwk.get("kty") == "RSA":
            rsa_key = RSAKey.import_key(public)
            assert isinstance(rsa_key.public_key, rsa.RSAPublicKey)
            return VerificationKey(jwk["kid"], "RSA", alg, None, rsa_key.public_key)
    except Exception:  # joserfc raises several types for a damaged key: skip the key
        return None
    return None


class StaticJwks:
    """A JWKS document given once (a file, or the server's own keys)."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self._keys = parse_jwks(dict(jwks))

    def key(self, kid: str, *, offline: bool = False) -> VerificationKey | None:
        return self._keys.get(kid)


class RemoteJwks:
    """The issuer's ``jwks_uri``, fetched with ``client`` (default: a client of its own
    with a 5 s timeout) and cached."""

    def __init__(
        self,
        url: str,
        *,
        client: httpx.Client | None = None,
        cache_seconds: float = 300,
        min_refresh_seconds: float = 30,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._client = client or httpx.Client(timeout=5.0, follow_redirects=False)
        self._cache_seconds = cache_seconds
        self._min_refresh = min_refresh_seconds
        self._timer = timer
        self._lock = threading.Lock()
        self._keys: Mapping[str, VerificationKey] | None = None
        self._fetched = float("-inf")  # when the last fetch was attempted
        self._expires = float("-inf")

    def key(self, kid: str, *, offline: bool = False) -> VerificationKey | None:
        found = self._cached(kid)
        if found is not _FETCH:
            return found  # type: ignore[return-value]
        if offline:
            raise WouldBlockError(f"JWKS {self.url} must be fetched")
        with self._lock:
            found = self._cached(kid)  # another thread may have fetched meanwhile
            if found is not _FETCH:
                return found  # type: ignore[return-value]
            self._refresh()
        keys = self._keys
        return keys.get(kid) if keys is not None else None

    def _cached(self, kid: str) -> VerificationKey | object | None:
        """The cached answer, or ``_FETCH`` when a fetch is due."""
        now = self._timer()
        keys = self._keys
        if keys is not None and now < self._expires:
            found = keys.get(kid)
            if found is not None or now - self._fetched < self._min_refresh:
                return found
        elif keys is not None and now - self._fetched < self._min_refresh:
            return keys.get(kid)  # a failed refetch is not retried before min_refresh
        return _FETCH

    def _refresh(self) -> None:
        self._fetched = self._timer()
        try:
            keys = parse_jwks(self._download())
        except JwksUnavailableError:
            if self._keys is None:
                raise
            return  # keep serving what is held; retried after min_refresh_seconds
        self._keys = keys
        self._expires = self._fetched + self._cache_seconds

    def _download(self) -> Any:
        try:
            response = self._client.get(self.url, headers={"accept": "application/json"})
        except httpx.HTTPError as exc:
            raise JwksUnavailableError(f"JWKS {self.url}: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise JwksUnavailableError(f"JWKS {self.url}: HTTP {response.status_code}")
        if len(response.content) > MAX_JWKS_BYTES:
            raise JwksUnavailableError(f"JWKS {self.url}: larger than {MAX_JWKS_BYTES} bytes")
        try:
            return json.loads(response.content)
        except ValueError as exc:
            raise JwksUnavailableError(f"JWKS {self.url}: not JSON ({exc})") from None

    def close(self) -> None:
        self._client.close()


_FETCH = object()
