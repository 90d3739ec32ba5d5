"""``/api/v1/policies``: sign-on policies, their ordered rules and their apps, over
:class:`certbound.policy.store.Policies`.

``{id}`` is a policy's id or name, ``{ruleId}`` a rule's id or name *within that policy*
(a rule id of another policy is a 404 ``RULE_NOT_FOUND``), ``{appId}`` an app's id or
client_id. A new policy has just its catch-all rule (``catchAll``: its action, DENY by
default); rules are added above it (``priority``, 1-based; default: just above the
catch-all), changed, deleted and moved (``POST .../rules/{ruleId}/move`` with
``{"priority": n}``); the catch-all stays last (409 ``CATCH_ALL_RULE_FIXED``). Conditions
are the JSON of docs/policies.md (400 ``POLICY_INVALID`` naming the field). Answers carry
the warnings a change raised (a rule it shadows, a dangling reference). Changes are
``policy.lifecycle.*`` and ``policy.rule.*`` events stamped with the admin. Simulation,
``POST /api/v1/policies/simulate``, is :mod:`certbound.web.policies`.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from certbound.admin.roles import Permission
from certbound.directory.apps import Apps
from certbound.directory.events import app_target
from certbound.policy import events
from certbound.policy.model import (
    MAX_DESCRIPTION_LENGTH,
    MAX_NAME_LENGTH,
    MAX_RULES,
    Action,
    Conditions,
    Policy,
)
from certbound.policy.store import Policies, PolicyChange, rule_index
from certbound.syslog.events import EventType
from certbound.web.api import pagination
from certbound.web.api.body import Body, Field, Kind
from certbound.web.api.operation import Call, Operation, json_response, no_content

POLICIES, POLICY = "/api/v1/policies", "/api/v1/policies/{id}"
RULES, RULE = POLICY + "/rules", POLICY + "/rules/{ruleId}"
APP = POLICY + "/apps/{appId}"
TAG = "policies"
ACTIONS = tuple(action.value for action in Action)


def _policies(call: Call) -> Policies:
    return Policies(call.state.database, call.state.clock)


def _policy_json(policy: Policy, change: PolicyChange | None = None) -> dict[str, Any]:
    data = policy.to_dict()
    if change is not None:
        data["warnings"] = [finding.to_dict() for finding in change.warnings]
    return data


def _rule_json(policy: Policy, rule_id: str, change: PolicyChange | None = None) -> dict[str, Any]:
    i = rule_index(policy, rule_id)
    data = {**policy.rules[i].to_dict(i + 1), "policyId": policy.id}
    if change is not None:
        data["warnings"] = [finding.to_dict() for finding in change.warnings]
    return data


def _record(call: Call, event_type: EventType, change: PolicyChange, **extra: Any) -> None:
    event = events.policy_changed(event_type, change, **extra)
    before = None if change.before is None else change.before.to_dict()
    after = None if change.after is None else change.after.to_dict()
    call.record(event, before=before, after=after)


def _after(change: PolicyChange) -> Policy:
    assert change.after is not None, "the change left a policy"
    return change.after


# --- policies ------------------------------------------------------------------------------


def list_policies(call: Call) -> Response:
    page = pagination.page_of(_policies(call).list(), lambda p: p.id, call.page)
    return pagination.response(call.request, page, Policy.to_dict)


def show_policy(call: Call) -> Response:
    return json_response(_policies(call).get(call.path["id"]).to_dict())


def create_policy(call: Call) -> Response:
    body: dict[str, Any] = call.body
    catch_all = Action(body.get("catchAll", Action.DENY.value))
    change = _policies(call).create(body["name"], body.get("description"), catch_all=catch_all)
    _record(call, EventType.POLICY_LIFECYCLE_CREATE, change)
    return json_response(_policy_json(_after(change), change), 201)


def update_policy(call: Call) -> Response:
    body: dict[str, Any] = call.body
    change = _policies(call).update(
        call.path["id"], name=body.get("name"), description=body.get("description")
    )
    _record(call, EventType.POLICY_LIFECYCLE_UPDATE, change)
    return json_response(_policy_json(_after(change), change))


def delete_policy(call: Call) -> Response:
    change = _policies(call).delete(call.path["id"])
    _record(call, EventType.POLICY_LIFECYCLE_DELETE, change)
    return no_content()


def _assignment(call: Call, assign: bool) -> Response:
    policies = _policies(call)
    app = Apps(call.state.database, call.state.clock).get(call.path["appId"])
    if assign:
        change = policies.assign(call.path["id"], app.id)
    else:
        change = policies.unassign(call.path["id"], app.id)
    _record(call, EventType.POLICY_LIFECYCLE_UPDATE, change, app=app_target(app))
    return json_response(_policy_json(_after(change), change))


def assign_app(call: Call) -> Response:
    return _assignment(call, True)


def unassign_app(call: Call) -> Response:
    return _assignment(call, False)


# --- rules ---------------------------------------------------------------------------------


def list_rules(call: Call) -> Response:
    policy = _policies(call).get(call.path["id"])
    numbered = [(i + 1, rule) for i, rule in enumerate(policy.rules)]
    page = pagination.page_of(numbered, lambda item: item[1].id, call.page)
    return pagination.response(
        call.request, page, lambda item: {**item[1].to_dict(item[0]), "policyId": policy.id}
    )


def show_rule(call: Call) -> Response:
    policy = _policies(call).get(call.path["id"])
    return json_response(_rule_json(policy, call.path["ruleId"]))


def _conditions(body: dict[str, Any]) -> Conditions | None:
    data = body.get("conditions")
    return None if data is None else Conditions.from_dict(data)


def add_rule(call: Call) -> Response:
    body: dict[str, Any] = call.body
    change = _policies(call).add_rule(
        call.path["id"],
        body["name"],
        Action(body["action"]),
        _conditions(body) or Conditions(),
        priority=body.get("priority"),
    )
    _record(call, EventType.POLICY_RULE_CREATE, change)
    assert change.rule is not None
    return json_response(_rule_json(_after(change), change.rule.id, change), 201)


def update_rule(call: Call) -> Response:
    body: dict[str, Any] = call.body
    action = body.get("action")
    change = _policies(call).update_rule(
        call.path["id"],
        call.path["ruleId"],
        name=body.get("name"),
        action=None if action is None else Action(action),
        conditions=_conditions(body),
    )
    _record(call, EventType.POLICY_RULE_UPDATE, change)
    assert change.rule is not None
    return json_response(_rule_json(_after(change), change.rule.id, change))


def delete_rule(call: Call) -> Response:
    change = _policies(call).delete_rule(call.path["id"], call.path["ruleId"])
    _record(call, EventType.POLICY_RULE_DELETE, change)
    return no_content()


def move_rule(call: Call) -> Response:
    change = _policies(call).move_rule(call.path["id"], call.path["ruleId"], call.body["priority"])
    _record(call, EventType.POLICY_RULE_REORDER, change)
    assert change.rule is not None
    return json_response(_rule_json(_after(change), change.rule.id, change))


_CONDITIONS = "The rule's conditions (docs/policies.md)."
_PRIORITY = Field("priority", Kind.INTEGER, "1-based.", required=True, minimum=1, maximum=MAX_RULES)
_DESCRIPTION = Field(
    "description", Kind.STRING, "Free text.", nullable=True, max_length=MAX_DESCRIPTION_LENGTH
)
CREATE = Body(
    (
        Field("name", Kind.STRING, "Unique.", required=True, max_length=MAX_NAME_LENGTH),
        _DESCRIPTION,
        Field("catchAll", Kind.STRING, "The catch-all rule's action (DENY).", enum=ACTIONS),
    )
)
UPDATE = Body(
    (Field("name", Kind.STRING, "Unique.", max_length=MAX_NAME_LENGTH), _DESCRIPTION),
)
ADD_RULE = Body(
    (
        Field("name", Kind.STRING, "The rule's name.", required=True, max_length=MAX_NAME_LENGTH),
        Field("action", Kind.STRING, "ALLOW or DENY.", required=True, enum=ACTIONS),
        Field("conditions", Kind.OBJECT, _CONDITIONS),
        Field("priority", Kind.INTEGER, "Default: above the catch-all.", minimum=1,
              maximum=MAX_RULES),
    )
)  # fmt: skip
UPDATE_RULE = Body(
    (
        Field("name", Kind.STRING, "The rule's name.", max_length=MAX_NAME_LENGTH),
        Field("action", Kind.STRING, "ALLOW or DENY.", enum=ACTIONS),
        Field("conditions", Kind.OBJECT, _CONDITIONS + " Replaces them all."),
    )
)
MOVE = Body((_PRIORITY,))
_READ, _MANAGE = Permission.POLICIES_READ, Permission.POLICIES_MANAGE

OPERATIONS = (
    Operation("GET", POLICIES, "List sign-on policies", TAG, _READ, list_policies, paged=True),
    Operation("POST", POLICIES, "Create a policy", TAG, _MANAGE, create_policy, body=CREATE,
              status=201),
    Operation("GET", POLICY, "Show a policy", TAG, _READ, show_policy),
    Operation("PATCH", POLICY, "Rename or describe a policy", TAG, _MANAGE, update_policy,
              body=UPDATE),
    Operation("DELETE", POLICY, "Delete a policy", TAG, _MANAGE, delete_policy, status=204),
    Operation("PUT", APP, "Make an app use this policy", TAG, _MANAGE, assign_app),
    Operation("DELETE", APP, "Return an app to the default policy", TAG, _MANAGE, unassign_app),
    Operation("GET", RULES, "List a policy's rules in order", TAG, _READ, list_rules, paged=True),
    Operation("POST", RULES, "Add a rule", TAG, _MANAGE, add_rule, body=ADD_RULE, status=201),
    Operation("GET", RULE, "Show a rule", TAG, _READ, show_rule),
    Operation("PATCH", RULE, "Change a rule", TAG, _MANAGE, update_rule, body=UPDATE_RULE),
    Operation("DELETE", RULE, "Delete a rule", TAG, _MANAGE, delete_rule, status=204),
    Operation("POST", RULE + "/move", "Move a rule to another priority", TAG, _MANAGE, move_rule,
              body=MOVE),
)  # fmt: skip
