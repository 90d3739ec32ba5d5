"""The admin REST API under ``/api/v1/``: one module per resource, each a table of
:class:`~certbound.web.api.operation.Operation` (method, path, permission, body, handler).

:data:`OPERATIONS` is every admin API route, including those served elsewhere
(:mod:`certbound.web.api.external`); :data:`ROUTES` the Starlette routes of those served
here plus ``GET /api/v1/openapi.json``; :data:`PERMISSIONS` each route's permission
(``"METHOD /path"`` -> permission, None: public), which :func:`matrix` turns into the
per-role table of ``docs/roles.md``. docs/api.md describes the API for people.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.routing import Route

from certbound.admin.roles import Permission, Role, allows
from certbound.web.api import (
    admins,
    apps,
    cas,
    devices,
    external,
    groups,
    openapi,
    policies,
    tokens,
    users,
    zones,
)
from certbound.web.api.access import PUBLIC_ROUTES
from certbound.web.api.operation import Operation, route

OPERATIONS: tuple[Operation, ...] = (
    *cas.OPERATIONS,
    *policies.OPERATIONS,
    *zones.OPERATIONS,
    *apps.OPERATIONS,
    *users.OPERATIONS,
    *groups.OPERATIONS,
    *devices.OPERATIONS,
    *admins.OPERATIONS,
    *tokens.OPERATIONS,
    *external.OPERATIONS,
)
PERMISSIONS: Mapping[str, Permission | None] = {
    **{op.key: op.permission for op in OPERATIONS},
    **dict.fromkeys(PUBLIC_ROUTES),
}
ROUTES: list[Route] = [
    *(route(op) for op in OPERATIONS if op.handler is not None),
    openapi.route(OPERATIONS),
]

PUBLIC, ALLOW, DENY = "public", "allow", "deny"


def matrix() -> dict[str, dict[Role, str]]:
    """Every route's verdict per role: public, allow or deny (docs/roles.md's table)."""
    return {
        key: {
            role: PUBLIC if permission is None else ALLOW if allows(role, permission) else DENY
            for role in Role
        }
        for key, permission in sorted(PERMISSIONS.items())
    }
