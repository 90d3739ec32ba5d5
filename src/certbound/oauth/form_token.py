"""The login form's CSRF token: the form's parameters signed with the server secret.

A token is ``<expiry>.<mac>``: ``expiry`` in seconds since the epoch (10 minutes after the
form was served) and ``mac`` the base64url HMAC-SHA256 of the expiry, the browser binding
(a random value the login page also sets as a cookie, so a form served to one browser cannot
be posted from another: login CSRF) and every authorization parameter the form carries as
hidden fields. The HMAC key is derived from the server secret (``secret_key_file``) for this
use only. A tampered parameter, another browser, an expired or malformed token: not valid.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping

from certbound.clock import Clock

LIFETIME_SECONDS = 600
_PURPOSE = b"certbound/oauth/login-form/v1"


class FormTokens:
    """Issues and checks login-form tokens (see the module docstring)."""

    def __init__(
        self,
        secret: bytes,
        clock: Clock,
        names: Iterable[str],
        *,
        lifetime: int = LIFETIME_SECONDS,
    ) -> None:
        if lifetime <= 0:
            raise ValueError("lifetime must be positive")
        self._key = hmac.new(secret, _PURPOSE, hashlib.sha256).digest()
        self._clock = clock
        self._names = tuple(sorted(names))
        self._lifetime = lifetime

    def issue(self, params: Mapping[str, str], browser: str) -> str:
        expiry = int(self._clock.now().timestamp()) + self._lifetime
        return f"{expiry}.{self._mac(expiry, params, browser)}"

    def valid(self, token: str, params: Mapping[str, str], browser: str | None) -> bool:
        """True when ``token`` was issued for exactly these parameters and this browser,
        and has not expired."""
        expiry_text, dot, mac = token.partition(".")
        if not dot or not expiry_text.isdigit() or len(expiry_text) > 12 or browser is None:
            return False
        expiry = int(expiry_text)
        if expiry <= self._clock.now().timestamp():
            return False
        expected = self._mac(expiry, params, browser)
        return hmac.compare_digest(expected.encode(), mac.encode("utf-8", "replace"))

    def _mac(self, expiry: int, params: Mapping[str, str], browser: str) -> str:
        canonical = json.dumps(
            [expiry, browser, [[name, params.get(name)] for name in self._names]],
            separators=(",", ":"),
            ensure_ascii=True,
        )
        digest = hmac.new(self._key, canonical.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
