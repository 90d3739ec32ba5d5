"""``/api/v1/groups`` and membership over a real server on both databases: ids of the wrong
kind are the right 404s, adding and removing twice changes nothing, events record both."""

from __future__ import annotations

from typing import Any

from certbound.admin.roles import Role

ORG, READ = Role.ORG_ADMIN, Role.READ_ONLY_ADMIN
GROUPS = "/api/v1/groups"


def test_membership_and_ids_of_other_objects(api: Any, refused: Any) -> None:
    group = api.call(ORG, "POST", GROUPS, json={"name": "ops", "description": "on call"}).json()
    user = api.call(ORG, "POST", "/api/v1/users", json={"username": "frank"}).json()
    member = f"{GROUPS}/{group['id']}/users/{user['id']}"
    first = api.call(ORG, "PUT", member)
    assert first.status_code == 200 and first.json()["changed"] is True
    assert api.call(ORG, "PUT", member).json()["changed"] is False
    members = api.call(READ, "GET", f"{GROUPS}/{group['id']}/users").json()
    assert [m["id"] for m in members] == [user["id"]]
    of_user = api.call(READ, "GET", f"/api/v1/users/{user['id']}/groups").json()
    assert [g["id"] for g in of_user] == [group["id"]]
    refused(api.call(ORG, "PUT", f"{GROUPS}/{user['id']}/users/{user['id']}"), 404,
            "GROUP_NOT_FOUND")  # fmt: skip
    refused(api.call(ORG, "PUT", f"{GROUPS}/{group['id']}/users/{group['id']}"), 404,
            "USER_NOT_FOUND")  # fmt: skip
    refused(api.call(READ, "GET", f"/api/v1/users/{group['id']}"), 404, "USER_NOT_FOUND")
    assert api.call(ORG, "DELETE", member).json()["changed"] is True
    assert api.call(ORG, "DELETE", member).json()["changed"] is False
    added = api.events("group.user_membership.add")
    assert [e["debugContext"]["debugData"]["changed"] for e in added] == [True, False]
    details = added[0]["debugContext"]["debugData"]["changeDetails"]
    assert details == {"before": {"member": False}, "after": {"member": True}}


def test_create_show_delete(api: Any, refused: Any) -> None:
    group = api.call(ORG, "POST", GROUPS, json={"name": "finance"}).json()
    assert api.call(READ, "GET", f"{GROUPS}/finance").json()["id"] == group["id"]
    refused(api.call(ORG, "POST", GROUPS, json={"name": "FINANCE"}), 409, "NAME_TAKEN")
    refused(api.call(ORG, "POST", GROUPS, json={"name": 7}), 400, "INVALID_REQUEST_BODY")
    refused(api.call(Role.APP_ADMIN, "POST", GROUPS, json={"name": "x"}), 403, "FORBIDDEN_ROLE")
    assert api.call(ORG, "DELETE", f"{GROUPS}/{group['id']}").status_code == 204
    refused(api.call(READ, "GET", f"{GROUPS}/{group['id']}"), 404, "GROUP_NOT_FOUND")
    assert [e["eventType"] for e in api.events() if e["eventType"].startswith("group.")] == [
        "group.lifecycle.create",
        "group.lifecycle.delete",
    ]
