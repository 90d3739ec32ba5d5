"""Who may call an admin API route: the bearer token, its admin, the role check, and the
System Log event of every forbidden attempt.

:func:`admit` is the first thing every admin route does, before it reads a parameter or
the body:

1. ``Authorization: Bearer <token>``: none (or another scheme) is a 401
   ``AUTHENTICATION_REQUIRED``; a token that is malformed, unknown, expired, revoked, of a
   deactivated admin, above its admin's role, or bound to a client certificate the request
   did not present (over the built-in TLS listener or a trusted proxy's header, as intake
   resolves it) is a 401 ``INVALID_TOKEN`` whose detail says which
   (:meth:`certbound.admin.tokens.ApiTokens.bearer`);
2. the token's role must hold the route's permission
   (:data:`certbound.admin.roles.ROLE_PERMISSIONS`), else a 403 ``FORBIDDEN_ROLE`` and an
   ``admin.access.deny`` event (outcome ``DENY``) naming the route, role and permission.

:data:`PUBLIC_ROUTES` lists the routes outside the admin API that need no token (OAuth,
discovery, the login page, health); ``docs/roles.md`` shows them as public.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import NoReturn

from starlette.requests import Request

from certbound.admin.admins import Admin
from certbound.admin.events import AuditContext, access_denied, admin_actor, token_actor
from certbound.admin.roles import Permission, Role, allows
from certbound.admin.tokens import ApiTokens, Bearer, TokenInfo
from certbound.errors import ReasonCode
from certbound.syslog.recorder import EventRecorder
from certbound.web.intake import presented_chain, request_client
from certbound.web.problem import ApiError, bearer_challenge

PUBLIC_ROUTES = frozenset(
    {
        "POST /oauth2/v1/token",
        "POST /oauth2/v1/introspect",
        "POST /oauth2/v1/revoke",
        "GET /oauth2/v1/authorize",
        "POST /oauth2/v1/authorize",
        "GET /oauth2/v1/keys",
        "GET /.well-known/oauth-authorization-server",
        "GET /.well-known/openid-configuration",
        "GET /healthz",
        "GET /readyz",
    }
)


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated admin API request: its token, admin and audit context."""

    bearer: Bearer
    context: AuditContext

    @property
    def token(self) -> TokenInfo:
        return self.bearer.token

    @property
    def admin(self) -> Admin | None:
        return self.bearer.admin

    @property
    def role(self) -> Role:
        return self.bearer.role

    def may(self, permission: Permission) -> bool:
        return allows(self.role, permission)


def bearer_token(request: Request) -> str:
    """The token of the request's ``Authorization: Bearer`` header; ApiError 401 without."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        reason = ReasonCode.AUTHENTICATION_REQUIRED
        raise ApiError(
            401,
            reason,
            "this route needs an admin API token: send `Authorization: Bearer <token>` "
            "(create one with `certbound admin token create --role ROLE --admin ADMIN`)",
            bearer_challenge(reason),
        )
    return token.strip()


def presented_sha256(request: Request) -> str | None:
    """The SHA-256 thumbprint of the client certificate the request presented, if any."""
    certificates = presented_chain(request).certificates
    return hashlib.sha256(certificates[0]).hexdigest() if certificates else None


def identify(request: Request, method: str, route: str) -> Caller:
    """The caller of an admin API request (ApiError or AuthError: a 401)."""
    token = bearer_token(request)
    tokens: ApiTokens = request.app.state.tokens
    bearer = tokens.bearer(token, presented_sha256=presented_sha256(request))
    actor = token_actor(bearer.token) if bearer.admin is None else admin_actor(bearer.admin)
    context = AuditContext(
        actor=actor,
        token_id=bearer.token.id,
        role=bearer.token.role,
        client=request_client(request),
        method=method,
        route=route,
        request_uri=request.url.path,
    )
    request.state.token = bearer.token
    return Caller(bearer, context)


def deny(request: Request, caller: Caller, permission: str, detail: str) -> NoReturn:
    """Record an ``admin.access.deny`` event and refuse: 403 ``FORBIDDEN_ROLE``."""
    recorder: EventRecorder = request.app.state.recorder
    recorder.record(access_denied(caller.context, permission, detail))
    raise ApiError(403, ReasonCode.FORBIDDEN_ROLE, detail)


def admit(request: Request, permission: Permission, method: str, route: str) -> Caller:
    """The caller, when its role holds ``permission`` (see the module docstring)."""
    caller = identify(request, method, route)
    if not caller.may(permission):
        deny(
            request,
            caller,
            permission.value,
            f"role {caller.role.value} may not {method} {route} (it needs the "
            f"{permission.value} permission; docs/roles.md has the matrix)",
        )
    return caller


def route_of(request: Request) -> tuple[str, str]:
    """The request's method and the path template of the route serving it."""
    method = request.method.upper()
    endpoint = request.scope.get("endpoint")
    for route in request.app.router.routes:
        methods = getattr(route, "methods", None) or ()
        if getattr(route, "endpoint", None) is endpoint and method in methods:
            return method, str(getattr(route, "path", request.url.path))
    return method, request.url.path
