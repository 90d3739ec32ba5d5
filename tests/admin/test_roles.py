"""The role table: who may do what, and which roles are within which."""

from __future__ import annotations

import pytest

from certbound.admin.roles import (
    READ,
    ROLE_PERMISSIONS,
    Permission,
    Role,
    allows,
    parse_role,
    roles_within,
    within,
)

MANAGE = {p for p in Permission if p not in READ}


def test_only_super_admin_manages_admins_and_other_admins_tokens() -> None:
    for permission in (Permission.ADMINS_MANAGE, Permission.TOKENS_MANAGE_ALL):
        assert [role for role in Role if allows(role, permission)] == [Role.SUPER_ADMIN]
    assert ROLE_PERMISSIONS[Role.SUPER_ADMIN] == set(Permission)


def test_only_super_and_org_admins_manage_cas_and_policies() -> None:
    for permission in (Permission.CAS_MANAGE, Permission.POLICIES_MANAGE):
        allowed = {role for role in Role if allows(role, permission)}
        assert allowed == {Role.SUPER_ADMIN, Role.ORG_ADMIN}


def test_app_and_help_desk_admins() -> None:
    assert allows(Role.APP_ADMIN, Permission.APPS_MANAGE)
    assert ROLE_PERMISSIONS[Role.APP_ADMIN] & MANAGE == {
        Permission.APPS_MANAGE,
        Permission.TOKENS_MANAGE_OWN,
    }
    assert ROLE_PERMISSIONS[Role.HELP_DESK_ADMIN] & MANAGE == {
        Permission.DEVICES_SUSPEND,
        Permission.TOKENS_MANAGE_OWN,
    }
    assert allows(Role.HELP_DESK_ADMIN, Permission.LOGS_READ)
    assert not allows(Role.HELP_DESK_ADMIN, Permission.DEVICES_DEACTIVATE)


def test_read_only_reads_everything_and_changes_nothing() -> None:
    assert ROLE_PERMISSIONS[Role.READ_ONLY_ADMIN] == READ
    assert all(allows(role, permission) for role in Role for permission in READ)
    assert all(permission.value.endswith((".read", ".read_own")) for permission in READ)


def test_within_is_the_subset_order() -> None:
    assert roles_within(Role.SUPER_ADMIN) == tuple(Role)
    assert set(roles_within(Role.ORG_ADMIN)) == set(Role) - {Role.SUPER_ADMIN}
    assert roles_within(Role.HELP_DESK_ADMIN) == (Role.HELP_DESK_ADMIN, Role.READ_ONLY_ADMIN)
    assert roles_within(Role.READ_ONLY_ADMIN) == (Role.READ_ONLY_ADMIN,)
    assert not within(Role.APP_ADMIN, Role.HELP_DESK_ADMIN)
    assert not within(Role.HELP_DESK_ADMIN, Role.APP_ADMIN)


@pytest.mark.parametrize("text", ["super_admin", "ADMIN", "", "SUPER_ADMIN "])
def test_parse_role_names_the_roles(text: str) -> None:
    with pytest.raises(ValueError, match="the roles are SUPER_ADMIN, ORG_ADMIN"):
        parse_role(text)
    assert parse_role("ORG_ADMIN") is Role.ORG_ADMIN
