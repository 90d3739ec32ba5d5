"""``/api/v1/policies`` and rules over a real server on both databases: create, add rules,
move, a rule id of another policy, the fixed catch-all, app assignment, deletion; a
help-desk admin may not edit (403, reason, event)."""

from __future__ import annotations

from typing import Any

from certbound.admin.roles import Role

ORG, HELP, READ = Role.ORG_ADMIN, Role.HELP_DESK_ADMIN, Role.READ_ONLY_ADMIN
POLICIES = "/api/v1/policies"


def make_policy(api: Any, name: str) -> dict[str, Any]:
    created = api.call(ORG, "POST", POLICIES, json={"name": name, "catchAll": "DENY"})
    assert created.status_code == 201, created.text
    policy: dict[str, Any] = created.json()
    return policy


def add_rule(api: Any, policy_id: str, name: str, **extra: Any) -> dict[str, Any]:
    body = {"name": name, "action": "ALLOW", **extra}
    added = api.call(ORG, "POST", f"{POLICIES}/{policy_id}/rules", json=body)
    assert added.status_code == 201, added.text
    rule: dict[str, Any] = added.json()
    return rule


def test_rules_are_added_moved_and_deleted(api: Any, refused: Any) -> None:
    policy = make_policy(api, "Laptops")
    first = add_rule(api, policy["id"], "managed", conditions={"deviceTrust": "VERIFIED"})
    second = add_rule(api, policy["id"], "office")
    assert (first["priority"], second["priority"]) == (1, 2)
    rules = f"{POLICIES}/{policy['id']}/rules"
    moved = api.call(ORG, "POST", f"{rules}/{second['id']}/move", json={"priority": 1})
    assert moved.status_code == 200 and moved.json()["priority"] == 1
    listed = api.call(READ, "GET", rules).json()
    assert [r["name"] for r in listed] == ["office", "managed", "Catch-all"]
    assert [r["priority"] for r in listed] == [1, 2, 3]
    catch_all = listed[-1]["id"]
    refused(api.call(ORG, "POST", f"{rules}/{catch_all}/move", json={"priority": 1}), 409,
            "CATCH_ALL_RULE_FIXED")  # fmt: skip
    refused(api.call(ORG, "POST", f"{rules}/{first['id']}/move", json={"priority": 0}), 400,
            "INVALID_REQUEST_BODY")  # fmt: skip
    patched = api.call(ORG, "PATCH", f"{rules}/{first['id']}", json={"action": "DENY"})
    assert patched.json()["action"] == "DENY"
    assert api.call(ORG, "DELETE", f"{rules}/{first['id']}").status_code == 204
    refused(api.call(READ, "GET", f"{rules}/{first['id']}"), 404, "RULE_NOT_FOUND")
    types = [e["eventType"] for e in api.events() if e["eventType"].startswith("policy.")]
    assert types == [
        "policy.lifecycle.create",
        "policy.rule.create",
        "policy.rule.create",
        "policy.rule.reorder",
        "policy.rule.update",
        "policy.rule.delete",
    ]
    [reorder] = api.events("policy.rule.reorder")
    assert reorder["actor"]["id"] == api.admins[ORG].id
    details = reorder["debugContext"]["debugData"]["changeDetails"]
    assert details["before"]["revision"] + 1 == details["after"]["revision"]


def test_ids_of_another_policy_or_kind_are_404(api: Any, refused: Any) -> None:
    one, two = make_policy(api, "One"), make_policy(api, "Two")
    rule = add_rule(api, one["id"], "mine")
    foreign = f"{POLICIES}/{two['id']}/rules/{rule['id']}"
    refused(api.call(READ, "GET", foreign), 404, "RULE_NOT_FOUND")
    refused(api.call(ORG, "PATCH", foreign, json={"name": "stolen"}), 404, "RULE_NOT_FOUND")
    refused(api.call(ORG, "POST", foreign + "/move", json={"priority": 1}), 404, "RULE_NOT_FOUND")
    refused(api.call(READ, "GET", f"{POLICIES}/{rule['id']}"), 404, "POLICY_NOT_FOUND")
    bad = {"name": "x", "action": "ALLOW", "conditions": {"colour": "blue"}}
    refused(api.call(ORG, "POST", f"{POLICIES}/{one['id']}/rules", json=bad), 400,
            "POLICY_INVALID")  # fmt: skip


def test_app_assignment_and_deletion(api: Any, refused: Any) -> None:
    policy = make_policy(api, "Apps")
    meta = {"token_endpoint_auth_method": "client_secret_basic"}
    app = api.call(ORG, "POST", "/api/v1/apps", json={"name": "a", "metadata": meta}).json()
    url = f"{POLICIES}/{policy['id']}/apps/{app['id']}"
    assert api.call(ORG, "PUT", url).json()["appIds"] == [app["id"]]
    assert api.call(ORG, "DELETE", url).json()["appIds"] == []
    refused(api.call(ORG, "PUT", f"{POLICIES}/{policy['id']}/apps/nope"), 404, "APP_NOT_FOUND")
    refused(api.call(ORG, "DELETE", f"{POLICIES}/pol_default"), 400, "POLICY_INVALID")
    assert api.call(ORG, "DELETE", f"{POLICIES}/{policy['id']}").status_code == 204
    refused(api.call(READ, "GET", f"{POLICIES}/{policy['id']}"), 404, "POLICY_NOT_FOUND")


def test_help_desk_cannot_edit_a_policy(api: Any, refused: Any) -> None:
    policy = make_policy(api, "Guarded")
    url = f"{POLICIES}/{policy['id']}"
    refused(api.call(HELP, "PATCH", url, json={"name": "mine"}), 403, "FORBIDDEN_ROLE")
    refused(api.call(HELP, "POST", f"{url}/rules", json={"name": "r", "action": "ALLOW"}), 403,
            "FORBIDDEN_ROLE")  # fmt: skip
    assert api.call(HELP, "GET", url).json()["name"] == "Guarded"
    denied = api.events("admin.access.deny")
    routes = [e["debugContext"]["debugData"]["route"] for e in denied]
    assert routes == ["PATCH /api/v1/policies/{id}", "POST /api/v1/policies/{id}/rules"]
    assert all(e["outcome"]["reason"] == "FORBIDDEN_ROLE" for e in denied)
