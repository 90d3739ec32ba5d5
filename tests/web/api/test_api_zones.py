"""``/api/v1/zones`` over a real server on both databases: create, list, show by id or name,
replace, delete; malformed networks, names in use and unknown ids refused with their
reasons; deleting a zone rules still name answers and records which; a help-desk admin may
read but not change (403, reason, event)."""

from __future__ import annotations

from typing import Any

from certbound.admin.roles import Role

ORG, HELP, READ = Role.ORG_ADMIN, Role.HELP_DESK_ADMIN, Role.READ_ONLY_ADMIN
ZONES = "/api/v1/zones"


def make_zone(api: Any, name: str, *cidrs: str) -> dict[str, Any]:
    created = api.call(ORG, "POST", ZONES, json={"name": name, "cidrs": list(cidrs)})
    assert created.status_code == 201, created.text
    zone: dict[str, Any] = created.json()
    return zone


def debug(event: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = event["debugContext"]["debugData"]
    return data


def test_create_show_replace_delete(api: Any, refused: Any) -> None:
    zone = make_zone(api, "office", "192.0.2.7/24", "2001:db8::1")
    assert zone["id"].startswith("nzn_")
    assert (zone["name"], zone["cidrs"]) == ("office", ["192.0.2.0/24", "2001:db8::1/128"])
    assert zone["referencedBy"] == []
    url = f"{ZONES}/{zone['id']}"
    assert api.call(READ, "GET", f"{ZONES}/office").json()["id"] == zone["id"]
    shown = api.call(READ, "GET", url).json()
    assert shown == {"id": zone["id"], "name": "office", "cidrs": zone["cidrs"]}
    replaced = api.call(ORG, "PUT", url, json={"name": "hq", "cidrs": ["198.51.100.0/24"]})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json() == {**shown, "name": "hq", "cidrs": ["198.51.100.0/24"],
                               "referencedBy": []}  # fmt: skip
    refused(api.call(READ, "GET", f"{ZONES}/office"), 404, "ZONE_NOT_FOUND")
    deleted = api.call(ORG, "DELETE", f"{ZONES}/hq")
    assert deleted.status_code == 200 and deleted.json()["id"] == zone["id"]
    refused(api.call(READ, "GET", url), 404, "ZONE_NOT_FOUND")
    changes = [e for e in api.events() if e["eventType"].startswith("zone.")]
    assert [e["eventType"] for e in changes] == [
        "zone.lifecycle.create",
        "zone.lifecycle.update",
        "zone.lifecycle.delete",
    ]
    assert all(e["actor"]["id"] == api.admins[ORG].id for e in changes)
    assert all(e["target"][0]["id"] == zone["id"] for e in changes)
    create, update, delete = (debug(e)["changeDetails"] for e in changes)
    assert create == {"before": None, "after": shown}
    assert update == {
        "before": {"name": "office", "cidrs": shown["cidrs"]},
        "after": {"name": "hq", "cidrs": ["198.51.100.0/24"]},
    }
    assert delete["before"]["name"] == "hq" and delete["after"] is None


def test_list_is_paged_by_name(api: Any) -> None:
    made = [make_zone(api, name, "10.0.0.0/8") for name in ("c", "a", "b")]
    first = api.call(READ, "GET", ZONES, params={"limit": 2})
    assert [z["name"] for z in first.json()] == ["a", "b"]
    assert 'rel="next"' in first.headers["link"]
    rest = api.call(READ, "GET", ZONES, params={"limit": 2, "after": first.json()[-1]["id"]})
    assert [z["name"] for z in rest.json()] == ["c"]
    assert 'rel="next"' not in rest.headers["link"]
    assert {z["id"] for z in first.json() + rest.json()} == {z["id"] for z in made}


def test_bad_networks_names_and_ids_are_refused(api: Any, refused: Any) -> None:
    zone = make_zone(api, "lab", "10.1.0.0/16")
    bad = refused(api.call(ORG, "POST", ZONES, json={"name": "x", "cidrs": ["10.0.0.0/8",
                  "10.0.0.300/8"]}), 400, "POLICY_INVALID")  # fmt: skip
    assert bad["detail"].startswith("cidrs[1]:"), bad
    twice = refused(api.call(ORG, "POST", ZONES, json={"name": "x", "cidrs": ["10.0.0.1/8",
                    "10.0.0.0/8"]}), 400, "POLICY_INVALID")  # fmt: skip
    assert twice["detail"].startswith("cidrs[1]:"), twice
    blank = refused(api.call(ORG, "POST", ZONES, json={"name": " ", "cidrs": []}), 400,
                    "POLICY_INVALID")  # fmt: skip
    assert blank["detail"].startswith("name:"), blank
    refused(api.call(ORG, "POST", ZONES, json={"name": "x", "cidrs": "10.0.0.0/8"}), 400,
            "INVALID_REQUEST_BODY")  # fmt: skip
    refused(api.call(ORG, "POST", ZONES, json={"name": "x"}), 400, "INVALID_REQUEST_BODY")
    refused(api.call(ORG, "POST", ZONES, json={"name": "lab", "cidrs": ["10.2.0.0/16"]}), 409,
            "NAME_TAKEN")  # fmt: skip
    other = make_zone(api, "other", "10.3.0.0/16")
    rename = {"name": "lab", "cidrs": ["10.3.0.0/16"]}
    refused(api.call(ORG, "PUT", f"{ZONES}/{other['id']}", json=rename), 409, "NAME_TAKEN")
    refused(api.call(ORG, "PUT", f"{ZONES}/{zone['id']}", json={"name": "lab", "cidrs": ["x"]}),
            400, "POLICY_INVALID")  # fmt: skip
    body = {"name": "y", "cidrs": []}
    for method, kwargs in (("GET", {}), ("PUT", {"json": body}), ("DELETE", {})):
        refused(api.call(ORG, method, f"{ZONES}/nzn_0000", **kwargs), 404, "ZONE_NOT_FOUND")
    refused(api.call(READ, "GET", f"{ZONES}/pol_default"), 404, "ZONE_NOT_FOUND")
    assert api.call(READ, "GET", f"{ZONES}/lab").json()["cidrs"] == ["10.1.0.0/16"]
    created = [e["eventType"] for e in api.events() if e["eventType"].startswith("zone.")]
    assert created == ["zone.lifecycle.create", "zone.lifecycle.create"]


def test_deleting_a_zone_rules_name_lists_them(api: Any) -> None:
    zone = make_zone(api, "vpn", "203.0.113.0/24")
    policy = api.call(ORG, "POST", "/api/v1/policies", json={"name": "Remote"}).json()
    rules = f"/api/v1/policies/{policy['id']}/rules"
    network = {"network": {"exclude": [zone["id"]]}}
    rule = api.call(ORG, "POST", rules, json={"name": "off vpn", "action": "DENY",
                                              "conditions": network}).json()  # fmt: skip
    api.call(ORG, "POST", rules, json={"name": "unrelated", "action": "ALLOW"})
    expected = [{"policyId": policy["id"], "ruleIds": [rule["id"]]}]
    moved = {"name": "vpn", "cidrs": ["203.0.113.0/25"]}
    replaced = api.call(ORG, "PUT", f"{ZONES}/{zone['id']}", json=moved)
    assert replaced.json()["referencedBy"] == expected
    deleted = api.call(ORG, "DELETE", f"{ZONES}/vpn")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {**zone, "cidrs": ["203.0.113.0/25"], "referencedBy": expected}
    kept = api.call(READ, "GET", f"{rules}/{rule['id']}").json()
    assert kept["conditions"] == network, "the rule keeps its dangling reference"
    [event] = api.events("zone.lifecycle.delete")
    assert debug(event)["referencedBy"] == [policy["id"]]
    assert debug(event)["referencedRules"] == expected
    assert event["actor"]["id"] == api.admins[ORG].id


def test_help_desk_reads_but_cannot_change_a_zone(api: Any, refused: Any) -> None:
    zone = make_zone(api, "branch", "192.0.2.0/24")
    url = f"{ZONES}/{zone['id']}"
    body = {"name": "mine", "cidrs": ["0.0.0.0/0"]}
    refused(api.call(HELP, "POST", ZONES, json=body), 403, "FORBIDDEN_ROLE")
    refused(api.call(HELP, "PUT", url, json=body), 403, "FORBIDDEN_ROLE")
    refused(api.call(HELP, "DELETE", url), 403, "FORBIDDEN_ROLE")
    assert api.call(HELP, "GET", url).json() == {k: zone[k] for k in ("id", "name", "cidrs")}
    assert [z["id"] for z in api.call(HELP, "GET", ZONES).json()] == [zone["id"]]
    denied = api.events("admin.access.deny")
    assert [debug(e)["route"] for e in denied] == [
        "POST /api/v1/zones",
        "PUT /api/v1/zones/{id}",
        "DELETE /api/v1/zones/{id}",
    ]
    assert all(e["outcome"]["reason"] == "FORBIDDEN_ROLE" for e in denied)
    assert all(e["actor"]["id"] == api.admins[HELP].id for e in denied)
    assert all(debug(e)["role"] == HELP.value for e in denied)
    assert all(debug(e)["permission"] == "policies.manage" for e in denied)
    assert [e["eventType"] for e in api.events() if e["eventType"].startswith("zone.")] == [
        "zone.lifecycle.create"
    ]
