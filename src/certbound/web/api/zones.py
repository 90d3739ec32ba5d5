"""``/api/v1/zones``: the network zones sign-on policy rules name in their ``network``
conditions, over :class:`certbound.policy.store.Zones` (as ``certbound zone`` does).

``{id}`` is a zone's id (``nzn_...``) or name. A zone is ``{"id", "name", "cidrs"}``:
IPv4 and IPv6 networks, a host address stored as a /32 or /128 and a network given with
host bits as its network. ``PUT`` replaces a zone's name and networks (every rule naming
it sees them). A malformed network is a 400 ``POLICY_INVALID`` naming the field
(``cidrs[2]``), a name in use a 409 ``NAME_TAKEN``. Deleting a zone that rules still name
is allowed (``certbound doctor`` then reports the dangling reference); the answer to a
change lists, as ``referencedBy``, each policy whose rules name the zone with the ids of
those rules. Changes are ``zone.lifecycle.*`` events stamped with the admin, their
``debugData.referencedRules`` the same list.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.responses import Response

from certbound.admin.roles import Permission
from certbound.policy import events
from certbound.policy.model import MAX_NAME_LENGTH, Policy, Rule, Zone
from certbound.policy.store import Policies, ZoneChange, Zones
from certbound.syslog.events import EventType
from certbound.web.api import pagination
from certbound.web.api.body import Body, Field, Kind
from certbound.web.api.operation import Call, Operation, json_response

ZONES, ZONE = "/api/v1/zones", "/api/v1/zones/{id}"
TAG = "zones"


def _zones(call: Call) -> Zones:
    return Zones(call.state.database, call.state.clock)


def _names(rule: Rule, zone_id: str) -> bool:
    network = rule.conditions.network
    return zone_id in network.include or zone_id in network.exclude


def _references(call: Call, change: ZoneChange) -> list[dict[str, Any]]:
    """``[{"policyId", "ruleIds"}]``: the policies naming the zone and their rules that do
    (read after the change: a deleted zone's rules keep naming it)."""
    if not change.referenced_by:
        return []
    zone = change.after or change.before
    assert zone is not None, "a change has a zone before or after"
    policies: dict[str, Policy] = {
        policy.id: policy for policy in Policies(call.state.database, call.state.clock).list()
    }
    found = []
    for policy_id in change.referenced_by:
        rules = policies[policy_id].rules if policy_id in policies else ()
        rule_ids = [rule.id for rule in rules if _names(rule, zone.id)]
        found.append({"policyId": policy_id, "ruleIds": rule_ids})
    return found


def _record(call: Call, event_type: EventType, change: ZoneChange) -> dict[str, Any]:
    """Record the change's event; the zone's JSON with ``referencedBy``, for the answer."""
    references = _references(call, change)
    event = events.zone_changed(event_type, change)
    event = dataclasses.replace(
        event, debug_data={**event.debug_data, "referencedRules": references}
    )
    before = None if change.before is None else change.before.to_dict()
    after = None if change.after is None else change.after.to_dict()
    call.record(event, before=before, after=after)
    zone = change.after or change.before
    assert zone is not None, "a change has a zone before or after"
    return {**zone.to_dict(), "referencedBy": references}


def list_zones(call: Call) -> Response:
    page = pagination.page_of(_zones(call).list(), lambda zone: zone.id, call.page)
    return pagination.response(call.request, page, Zone.to_dict)


def show_zone(call: Call) -> Response:
    return json_response(_zones(call).get(call.path["id"]).to_dict())


def create_zone(call: Call) -> Response:
    body: dict[str, Any] = call.body
    change = _zones(call).create(body["name"], body["cidrs"])
    return json_response(_record(call, EventType.ZONE_LIFECYCLE_CREATE, change), 201)


def replace_zone(call: Call) -> Response:
    body: dict[str, Any] = call.body
    change = _zones(call).update(call.path["id"], name=body["name"], cidrs=body["cidrs"])
    return json_response(_record(call, EventType.ZONE_LIFECYCLE_UPDATE, change))


def delete_zone(call: Call) -> Response:
    change = _zones(call).delete(call.path["id"])
    return json_response(_record(call, EventType.ZONE_LIFECYCLE_DELETE, change))


_CIDRS = "IPv4 and IPv6 networks or addresses (each listed once)."
ZONE_BODY = Body(
    (
        Field("name", Kind.STRING, "Unique.", required=True, max_length=MAX_NAME_LENGTH),
        Field("cidrs", Kind.ARRAY, _CIDRS, required=True, items=Kind.STRING),
    )
)
_READ, _MANAGE = Permission.POLICIES_READ, Permission.POLICIES_MANAGE

OPERATIONS = (
    Operation("GET", ZONES, "List network zones", TAG, _READ, list_zones, paged=True),
    Operation("POST", ZONES, "Create a network zone", TAG, _MANAGE, create_zone, body=ZONE_BODY,
              status=201),
    Operation("GET", ZONE, "Show a network zone", TAG, _READ, show_zone),
    Operation("PUT", ZONE, "Replace a zone's name and networks", TAG, _MANAGE, replace_zone,
              body=ZONE_BODY),
    Operation("DELETE", ZONE, "Delete a network zone (rules naming it keep a dangling reference)",
              TAG, _MANAGE, delete_zone),
)  # fmt: skip
