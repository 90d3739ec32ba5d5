"""Admin roles and what each may do: the :class:`Role` and :class:`Permission` enums and
the one table between them (:data:`ROLE_PERMISSIONS`).

Every admin API route needs one permission (:mod:`certbound.web.api`); a role either
holds it or not. ``docs/roles.md`` is the same matrix per route, and a test walks every
route of the app with a token of every role against it.

- ``SUPER_ADMIN``: everything, and the only role that manages admins, their roles and
  other admins' API tokens.
- ``ORG_ADMIN``: everything else: CAs, sign-on policies, apps, users, groups, devices.
- ``APP_ADMIN``: manages apps (OAuth clients); reads the rest.
- ``HELP_DESK_ADMIN``: suspends and resumes devices; reads the rest (the System Log too).
- ``READ_ONLY_ADMIN``: reads (no secret is ever readable: API token and client secrets are
  shown once, at creation, and password hashes never).

Every role but ``READ_ONLY_ADMIN`` creates and revokes its own API tokens. A role is
*within* another when its permissions are a subset of the other's; a token carries its
admin's role or one within it, so a token never does more than its admin.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class Role(enum.StrEnum):
    SUPER_ADMIN = "SUPER_ADMIN"
    ORG_ADMIN = "ORG_ADMIN"
    APP_ADMIN = "APP_ADMIN"
    HELP_DESK_ADMIN = "HELP_DESK_ADMIN"
    READ_ONLY_ADMIN = "READ_ONLY_ADMIN"


class Permission(enum.StrEnum):
    CAS_READ = "cas.read"
    CAS_MANAGE = "cas.manage"
    POLICIES_READ = "policies.read"
    POLICIES_MANAGE = "policies.manage"
    APPS_READ = "apps.read"
    APPS_MANAGE = "apps.manage"
    USERS_READ = "users.read"
    USERS_MANAGE = "users.manage"
    GROUPS_READ = "groups.read"
    GROUPS_MANAGE = "groups.manage"
    DEVICES_READ = "devices.read"
    DEVICES_SUSPEND = "devices.suspend"  # suspend and resume
    DEVICES_DEACTIVATE = "devices.deactivate"
    ADMINS_READ = "admins.read"
    ADMINS_MANAGE = "admins.manage"
    TOKENS_READ_OWN = "tokens.read_own"
    TOKENS_MANAGE_OWN = "tokens.manage_own"
    TOKENS_MANAGE_ALL = "tokens.manage_all"  # every admin's tokens: read, create, revoke
    LOGS_READ = "logs.read"


_P = Permission
READ = frozenset(
    {
        _P.CAS_READ,
        _P.POLICIES_READ,
        _P.APPS_READ,
        _P.USERS_READ,
        _P.GROUPS_READ,
        _P.DEVICES_READ,
        _P.ADMINS_READ,
        _P.TOKENS_READ_OWN,
        _P.LOGS_READ,
    }
)
_SELF_SERVICE = frozenset({_P.TOKENS_MANAGE_OWN})
_ORG = frozenset(
    {
        _P.CAS_MANAGE,
        _P.POLICIES_MANAGE,
        _P.APPS_MANAGE,
        _P.USERS_MANAGE,
        _P.GROUPS_MANAGE,
        _P.DEVICES_SUSPEND,
        _P.DEVICES_DEACTIVATE,
    }
)

ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.SUPER_ADMIN: frozenset(Permission),
    Role.ORG_ADMIN: READ | _SELF_SERVICE | _ORG,
    Role.APP_ADMIN: READ | _SELF_SERVICE | {_P.APPS_MANAGE},
    Role.HELP_DESK_ADMIN: READ | _SELF_SERVICE | {_P.DEVICES_SUSPEND},
    Role.READ_ONLY_ADMIN: READ,
}


def parse_role(text: str) -> Role:
    """The role named ``text`` (exactly, upper case); ValueError naming the roles."""
    try:
        return Role(text)
    except ValueError:
        names = ", ".join(role.value for role in Role)
        raise ValueError(f"{text!r} is not a role; the roles are {names}") from None


def allows(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]


def within(role: Role, ceiling: Role) -> bool:
    """Whether ``role`` may do nothing that ``ceiling`` may not (a token's role must be
    within its admin's)."""
    return ROLE_PERMISSIONS[role] <= ROLE_PERMISSIONS[ceiling]


def roles_within(ceiling: Role) -> tuple[Role, ...]:
    return tuple(role for role in Role if within(role, ceiling))
