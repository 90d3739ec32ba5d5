"""The one place that maps errors to HTTP: ``application/problem+json`` (RFC 9457) bodies.

Every error response of the app has the body ``{"type", "title", "status", "detail",
"reason", "fix"}``: ``reason`` is the reason code from :mod:`certbound.errors` (``null`` only
for plain HTTP errors such as an unknown path), ``type`` is ``urn:certbound:reason:<CODE>``
(``about:blank`` without a code), ``title`` is the code's meaning and ``fix`` its fix from
the catalogue. Routes raise exceptions; the handlers here turn them into responses:

- :class:`ApiError` (a route's own refusal) -> its status;
- :class:`~certbound.admin.tokens.AuthError` -> 401 with ``WWW-Authenticate: Bearer``;
- :class:`~certbound.syslog.filter.FilterError` -> 400 ``INVALID_FILTER``;
- :class:`~certbound.syslog.query.QueryError` -> 400 ``INVALID_QUERY``;
- any other :class:`~certbound.errors.CertboundError` (a library's refusal) -> the status
  :func:`status_of` gives its reason code: 404 for an unknown id, 409 for a conflict with
  what is stored, 413 for an upload too large, 403 ``FORBIDDEN_ROLE``, else 400;
- Starlette's ``HTTPException`` (404, 405) -> its status, without a reason code;
- a database that cannot be reached (SQLAlchemy ``OperationalError``) -> 503 with
  ``Retry-After``, without a reason code;
- anything else -> 500 without details (the server logs the traceback).
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ExceptionHandler

from certbound.admin.tokens import AuthError
from certbound.errors import CertboundError, ReasonCode
from certbound.syslog.filter import FilterError
from certbound.syslog.query import QueryError

PROBLEM_JSON = "application/problem+json"
REASON_TYPE = "urn:certbound:reason:"


class ApiError(Exception):
    """A refusal a route raises: HTTP status, reason code, detail and extra headers."""

    def __init__(
        self,
        status: int,
        reason: ReasonCode,
        detail: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.headers = dict(headers or {})


def bearer_challenge(reason: ReasonCode) -> dict[str, str]:
    """The ``WWW-Authenticate`` header of a 401 (RFC 6750 section 3)."""
    if reason is ReasonCode.AUTHENTICATION_REQUIRED:
        return {"WWW-Authenticate": 'Bearer realm="certbound"'}
    return {"WWW-Authenticate": 'Bearer realm="certbound", error="invalid_token"'}


def problem(
    status: int,
    reason: ReasonCode | None,
    detail: str,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": REASON_TYPE + reason.value if reason else "about:blank",
        "title": reason.meaning if reason else HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "reason": reason.value if reason else None,
    }
    if reason is not None:
        body["fix"] = reason.fix
    response_headers = {"Cache-Control": "no-store", **(headers or {})}
    return JSONResponse(body, status, headers=response_headers, media_type=PROBLEM_JSON)


NOT_FOUND = frozenset(
    {
        ReasonCode.CA_NOT_FOUND,
        ReasonCode.DEVICE_NOT_FOUND,
        ReasonCode.POLICY_NOT_FOUND,
        ReasonCode.RULE_NOT_FOUND,
        ReasonCode.ZONE_NOT_FOUND,
        ReasonCode.USER_NOT_FOUND,
        ReasonCode.GROUP_NOT_FOUND,
        ReasonCode.APP_NOT_FOUND,
        ReasonCode.ADMIN_NOT_FOUND,
        ReasonCode.TOKEN_NOT_FOUND,
        ReasonCode.SIGNING_KEY_NOT_FOUND,
    }
)
CONFLICT = frozenset(
    {
        ReasonCode.NAME_TAKEN,
        ReasonCode.DUPLICATE_CA,
        ReasonCode.CA_SUBJECT_CONFLICT,
        ReasonCode.CATCH_ALL_RULE_FIXED,
        ReasonCode.DEVICE_DEACTIVATED,
        ReasonCode.SIGNING_KEY_ACTIVE,
        ReasonCode.LAST_SUPER_ADMIN,
    }
)
_STATUS = {
    ReasonCode.UPLOAD_TOO_LARGE: 413,
    ReasonCode.FORBIDDEN_ROLE: 403,
    ReasonCode.AUTHENTICATION_REQUIRED: 401,
    ReasonCode.INVALID_TOKEN: 401,
}


def status_of(reason: ReasonCode) -> int:
    """The HTTP status of a library's refusal with this reason code."""
    if reason in NOT_FOUND:
        return 404
    if reason in CONFLICT:
        return 409
    return _STATUS.get(reason, 400)


def _certbound_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CertboundError)
    status = status_of(exc.reason)
    headers = bearer_challenge(exc.reason) if status == 401 else None
    return problem(status, exc.reason, exc.detail, headers)


def _api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return problem(exc.status, exc.reason, exc.detail, exc.headers)


def _auth_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CertboundError)
    return problem(401, exc.reason, exc.detail, bearer_challenge(exc.reason))


def _filter_error(_request: Request, exc: Exception) -> Response:
    return problem(400, ReasonCode.INVALID_FILTER, str(exc))


def _query_error(_request: Request, exc: Exception) -> Response:
    return problem(400, ReasonCode.INVALID_QUERY, str(exc))


def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if exc.detail != HTTPStatus(exc.status_code).phrase else ""
    description = detail or HTTPStatus(exc.status_code).description
    return problem(exc.status_code, None, description, exc.headers)


def _database_unavailable(_request: Request, exc: Exception) -> Response:
    detail = f"the database is unavailable ({type(exc).__name__}); retry shortly"
    return problem(503, None, detail, {"Retry-After": "5"})


def _unexpected(_request: Request, _exc: Exception) -> Response:
    # Starlette re-raises the exception after this response, so the server logs it.
    return problem(500, None, "internal error; the server log has the details")


EXCEPTION_HANDLERS: Mapping[Any, ExceptionHandler] = {
    ApiError: _api_error,
    AuthError: _auth_error,
    CertboundError: _certbound_error,
    FilterError: _filter_error,
    QueryError: _query_error,
    HTTPException: _http_error,
    OperationalError: _database_unavailable,
    Exception: _unexpected,
}
