"""PKCE (RFC 7636) with the S256 method only: checking a challenge and a verifier.

``plain`` is refused: it protects nothing against an attacker who reads the authorization
request, and every current client library supports S256 (OAuth 2.0 Security BCP, RFC 9700
section 2.1.1).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from certbound.errors import ReasonCode
from certbound.oauth.errors import OAuthError

# code_verifier = 43*128unreserved (RFC 7636 section 4.1).
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
# An S256 code_challenge is BASE64URL(SHA-256(...)) without padding: exactly 43 characters.
_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")
S256 = "S256"


def s256(code_verifier: str) -> str:
    """The S256 code_challenge of a verifier: BASE64URL(SHA256(ASCII(code_verifier)))."""
    digest = hashlib.sha256(code_verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verify_s256(code_verifier: str, code_challenge: str) -> bool:
    """True when the verifier is well formed and its S256 hash is the challenge
    (compared in constant time)."""
    if _VERIFIER.fullmatch(code_verifier) is None:
        return False
    return hmac.compare_digest(s256(code_verifier).encode(), code_challenge.encode("utf-8"))


def check_challenge(code_challenge: str, method: str) -> None:
    """Refuse (``invalid_request``, PKCE_FAILED) a missing, malformed or non-S256 challenge
    in an authorization request."""
    if not code_challenge:
        raise _refused("code_challenge is required (PKCE, RFC 7636)")
    if method != S256:
        shown = repr(method) if method else "missing (which means plain)"
        raise _refused(f"code_challenge_method must be S256; it is {shown}")
    if _CHALLENGE.fullmatch(code_challenge) is None:
        raise _refused("code_challenge must be 43 base64url characters (an S256 hash)")


def check_verifier(code_verifier: str | None, code_challenge: str) -> None:
    """Refuse (``invalid_grant``, PKCE_FAILED) a token request whose verifier is missing,
    malformed or does not hash to the authorization's challenge."""
    if not code_verifier:
        raise OAuthError(
            "invalid_request", ReasonCode.PKCE_FAILED, "code_verifier is required (PKCE)"
        )
    if _VERIFIER.fullmatch(code_verifier) is None:
        raise OAuthError(
            "invalid_request",
            ReasonCode.PKCE_FAILED,
            "code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~",
        )
    if not verify_s256(code_verifier, code_challenge):
        raise OAuthError(
            "invalid_grant",
            ReasonCode.PKCE_FAILED,
            "code_verifier does not match the authorization's code_challenge",
        )


def _refused(description: str) -> OAuthError:
    return OAuthError("invalid_request", ReasonCode.PKCE_FAILED, description)
