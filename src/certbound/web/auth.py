"""The bearer-token and role check of admin routes served outside :mod:`certbound.web.api`
(``POST /api/v1/policies/simulate``), by the permission the route table gives them.

:func:`authenticate` runs :func:`certbound.web.api.access.admit` with the permission
:data:`certbound.web.api.PERMISSIONS` lists for the route serving the request: no token is a
401 ``AUTHENTICATION_REQUIRED``, an unusable one a 401 ``INVALID_TOKEN`` (both with
``WWW-Authenticate: Bearer``), a role without the permission a 403 ``FORBIDDEN_ROLE`` and
an ``admin.access.deny`` event. A route the table gives no permission (missing, or public)
is refused to every role, so a new route cannot be reachable before it has a permission
(docs/roles.md).
"""

from __future__ import annotations

from starlette.requests import Request

from certbound.admin.tokens import TokenInfo
from certbound.web.api import PERMISSIONS
from certbound.web.api.access import admit, bearer_token, deny, identify, route_of

__all__ = ["authenticate", "bearer_token"]


def authenticate(request: Request) -> TokenInfo:
    """The API token of a request its role may make (ApiError or AuthError otherwise)."""
    method, route = route_of(request)
    permission = PERMISSIONS.get(f"{method} {route}")
    if permission is None:
        caller = identify(request, method, route)
        deny(
            request,
            caller,
            "(none)",
            f"{method} {route} has no permission in the role table (docs/roles.md)",
        )
    return admit(request, permission, method, route).token
