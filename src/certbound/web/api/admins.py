"""``/api/v1/admins`` and ``/api/v1/roles``: admin accounts and their roles
(:class:`~certbound.admin.admins.Admins`, :mod:`certbound.admin.roles`).

Every role reads them; only ``SUPER_ADMIN`` creates admins, changes their role
(``PUT /api/v1/admins/{id}/role``) and deactivates them (``POST
.../lifecycle/deactivate``, final: their tokens are revoked with it). ``{id}`` is an
admin's id or username. Changes are ``admin.account.*`` events stamped with the admin who
made them.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from certbound.admin import events
from certbound.admin.admins import Admin, Admins
from certbound.admin.roles import ROLE_PERMISSIONS, Permission, Role
from certbound.directory.users import MAX_EMAIL_LENGTH, MAX_USERNAME_LENGTH
from certbound.web.api import pagination
from certbound.web.api.body import Body, Field, Kind
from certbound.web.api.operation import Call, Operation, json_response

ADMINS, ADMIN = "/api/v1/admins", "/api/v1/admins/{id}"
TAG = "admins"
ROLES = tuple(role.value for role in Role)


def _admins(call: Call) -> Admins:
    return Admins(call.state.database, call.state.clock)


def list_admins(call: Call) -> Response:
    admins = _admins(call)
    page = pagination.fetch(
        lambda limit, after: admins.list(limit=limit, after=after), lambda a: a.id, call.page
    )
    return pagination.response(call.request, page, Admin.to_dict)


def show_admin(call: Call) -> Response:
    return json_response(_admins(call).get(call.path["id"]).to_dict())


def create_admin(call: Call) -> Response:
    body: dict[str, Any] = call.body
    admin = _admins(call).create(body["username"], Role(body["role"]), email=body.get("email"))
    call.record(events.admin_created(admin), after=admin.to_dict())
    return json_response(admin.to_dict(), 201)


def set_role(call: Call) -> Response:
    role = Role(call.body["role"])
    before, after = _admins(call).set_role(call.path["id"], role)
    call.record(events.admin_updated(before, after), before=before.to_dict(), after=after.to_dict())
    return json_response(after.to_dict())


def deactivate_admin(call: Call) -> Response:
    before, after, revoked = _admins(call).deactivate(call.path["id"])
    event = events.admin_deactivated(before, after, revoked)
    call.record(event, before=before.to_dict(), after=after.to_dict())
    return json_response({**after.to_dict(), "revokedTokens": revoked})


def list_roles(call: Call) -> Response:
    roles = [
        {"role": role.value, "permissions": sorted(p.value for p in ROLE_PERMISSIONS[role])}
        for role in Role
    ]
    return json_response(roles)


_ROLE = Field("role", Kind.STRING, "The admin's role (docs/roles.md).", required=True, enum=ROLES)
CREATE = Body(
    (
        Field("username", Kind.STRING, "Unique.", required=True, max_length=MAX_USERNAME_LENGTH),
        Field("email", Kind.STRING, "Email address.", nullable=True, max_length=MAX_EMAIL_LENGTH),
        _ROLE,
    )
)
ROLE = Body((_ROLE,))
_READ, _MANAGE = Permission.ADMINS_READ, Permission.ADMINS_MANAGE

OPERATIONS = (
    Operation("GET", ADMINS, "List admins", TAG, _READ, list_admins, paged=True),
    Operation("POST", ADMINS, "Create an admin", TAG, _MANAGE, create_admin, body=CREATE,
              status=201),
    Operation("GET", ADMIN, "Show an admin", TAG, _READ, show_admin),
    Operation("PUT", ADMIN + "/role", "Change an admin's role", TAG, _MANAGE, set_role, body=ROLE),
    Operation("POST", ADMIN + "/lifecycle/deactivate", "Deactivate an admin and revoke its tokens",
              TAG, _MANAGE, deactivate_admin),
    Operation("GET", "/api/v1/roles", "List the roles and their permissions", TAG, _READ,
              list_roles),
)  # fmt: skip
