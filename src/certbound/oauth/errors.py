"""The OAuth error: an RFC 6749 section 5.2 error code with Certbound's reason code.

Every refusal by an OAuth endpoint is an :class:`OAuthError`: the RFC 6749 ``error`` a client
library understands, the :class:`~certbound.errors.ReasonCode` that says exactly why, a human
``error_description`` and the HTTP status (with headers, for the ``WWW-Authenticate`` an
``invalid_client`` answer to HTTP Basic needs). The web layer turns it into the JSON body of
:meth:`OAuthError.to_dict`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from certbound.errors import ReasonCode

# RFC 6749 error codes (token endpoint, section 5.2; authorization endpoint, 4.1.2.1),
# RFC 7009's unsupported_token_type and RFC 8707's invalid_target.
ERROR_CODES = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "access_denied",
        "unsupported_response_type",
        "server_error",
        "temporarily_unavailable",
        "unsupported_token_type",
        "invalid_target",
    }
)
BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="certbound"'}
# error_description may hold only %x20-21 / %x23-5B / %x5D-7E (RFC 6749 section 5.2).
_NOT_ALLOWED = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")
_MAX_DESCRIPTION = 1000


class OAuthError(Exception):
    """An OAuth refusal: ``error`` (RFC 6749), ``reason``, ``description``, ``status``."""

    def __init__(
        self,
        error: str,
        reason: ReasonCode,
        description: str,
        *,
        status: int = 400,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if error not in ERROR_CODES:
            raise ValueError(f"not an RFC 6749 error code: {error!r}")
        self.error = error
        self.reason = reason
        self.description = _NOT_ALLOWED.sub(_replacement, description)[:_MAX_DESCRIPTION]
        self.status = status
        self.headers: dict[str, str] = dict(headers or {})
        super().__init__(f"{error} ({reason.value}): {self.description}")

    def to_dict(self) -> dict[str, str]:
        """The RFC 6749 error body, with Certbound's reason code."""
        return {
            "error": self.error,
            "error_description": self.description,
            "reason": self.reason.value,
        }


def _replacement(match: re.Match[str]) -> str:
    return "'" if match.group() == '"' else "?"


def invalid_client(reason: ReasonCode, description: str, *, basic: bool = False) -> OAuthError:
    """``invalid_client`` (401); with the Basic challenge when the client used HTTP Basic."""
    return OAuthError(
        "invalid_client",
        reason,
        description,
        status=401,
        headers=BASIC_CHALLENGE if basic else None,
    )


def invalid_request(description: str) -> OAuthError:
    """``invalid_request`` (400) for a malformed request."""
    return OAuthError("invalid_request", ReasonCode.INVALID_OAUTH_REQUEST, description)
