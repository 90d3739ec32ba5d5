"""``/api/v1/admins`` and ``/api/v1/roles`` over a real server on both databases: only a
SUPER_ADMIN manages admins; a role change and a deactivation take effect on the admin's
tokens at once."""

from __future__ import annotations

from typing import Any

from certbound.admin.roles import ROLE_PERMISSIONS, Role

SUPER, ORG, READ = Role.SUPER_ADMIN, Role.ORG_ADMIN, Role.READ_ONLY_ADMIN
ADMINS = "/api/v1/admins"


def test_only_a_super_admin_creates_admins(api: Any, refused: Any) -> None:
    body = {"username": "grace", "email": "grace@example.com", "role": "APP_ADMIN"}
    refused(api.call(ORG, "POST", ADMINS, json=body), 403, "FORBIDDEN_ROLE")
    created = api.call(SUPER, "POST", ADMINS, json=body)
    assert created.status_code == 201, created.text
    admin = created.json()
    assert (admin["role"], admin["status"]) == ("APP_ADMIN", "ACTIVE")
    assert admin["id"].startswith("adm_")
    assert api.call(READ, "GET", f"{ADMINS}/grace").json() == admin
    refused(api.call(SUPER, "POST", ADMINS, json={**body, "username": "GRACE"}), 409, "NAME_TAKEN")
    refused(api.call(SUPER, "POST", ADMINS, json={**body, "role": "GOD"}), 400,
            "INVALID_REQUEST_BODY")  # fmt: skip
    [event] = api.events("admin.account.create")
    assert event["actor"]["id"] == api.admins[SUPER].id
    assert event["target"][0] == {
        "id": admin["id"],
        "type": "Admin",
        "alternateId": "grace",
        "displayName": "grace@example.com",
    }
    refused(api.call(READ, "GET", f"{ADMINS}/nobody"), 404, "ADMIN_NOT_FOUND")


def test_lowering_a_role_refuses_tokens_above_it(api: Any, refused: Any) -> None:
    org = api.admins[ORG]
    lowered = api.call(SUPER, "PUT", f"{ADMINS}/{org.id}/role", json={"role": "READ_ONLY_ADMIN"})
    assert lowered.json()["role"] == "READ_ONLY_ADMIN"
    body = refused(api.call(ORG, "GET", "/api/v1/roles"), 401, "INVALID_TOKEN")
    assert "above its admin's" in body["detail"]
    [event] = api.events("admin.account.update")
    assert event["debugContext"]["debugData"]["changeDetails"] == {
        "before": {"role": "ORG_ADMIN"},
        "after": {"role": "READ_ONLY_ADMIN"},
    }


def test_deactivating_an_admin_revokes_its_tokens(api: Any, refused: Any) -> None:
    target = api.admins[Role.APP_ADMIN]
    done = api.call(SUPER, "POST", f"{ADMINS}/{target.id}/lifecycle/deactivate")
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "DEACTIVATED" and len(done.json()["revokedTokens"]) == 2
    refused(api.call(Role.APP_ADMIN, "GET", ADMINS), 401, "INVALID_TOKEN")
    [event] = api.events("admin.account.deactivate")
    assert sorted(event["debugContext"]["debugData"]["revokedTokens"]) == sorted(
        done.json()["revokedTokens"]
    )
    again = api.call(SUPER, "POST", f"{ADMINS}/{target.id}/lifecycle/deactivate")
    assert again.json()["revokedTokens"] == []


def test_roles_lists_the_table(api: Any) -> None:
    roles = api.call(READ, "GET", "/api/v1/roles").json()
    assert {r["role"]: set(r["permissions"]) for r in roles} == {
        role.value: {p.value for p in ROLE_PERMISSIONS[role]} for role in Role
    }
