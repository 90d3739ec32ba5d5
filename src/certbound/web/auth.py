"""The bearer-token check of the admin API (``Authorization: Bearer cb_<id>_<secret>``).

No header (or another scheme) is ``AUTHENTICATION_REQUIRED``; a token that is malformed,
unknown, expired or revoked is ``INVALID_TOKEN``. Both are 401 with ``WWW-Authenticate:
Bearer`` (:mod:`certbound.web.problem`). Roles are not checked yet: every valid token may
call every admin route.
"""

from __future__ import annotations

from starlette.requests import Request

from certbound.admin.tokens import ApiTokens, TokenInfo
from certbound.errors import ReasonCode
from certbound.web.problem import ApiError, bearer_challenge


def bearer_token(request: Request) -> str:
    """The token of the request's ``Authorization: Bearer`` header; ApiError without one."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        reason = ReasonCode.AUTHENTICATION_REQUIRED
        raise ApiError(
            401,
            reason,
            "this route needs an admin API token: send `Authorization: Bearer <token>` "
            "(create one with `certbound admin token create --name NAME`)",
            bearer_challenge(reason),
        )
    return token.strip()


def authenticate(request: Request) -> TokenInfo:
    """The API token the request authenticates with (AuthError or ApiError: a 401)."""
    tokens: ApiTokens = request.app.state.tokens
    info = tokens.authenticate(bearer_token(request))
    request.state.token = info
    return info
