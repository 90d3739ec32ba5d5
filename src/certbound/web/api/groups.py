"""``/api/v1/groups``: groups and their members (:class:`~certbound.directory.groups.Groups`).

``{id}`` is a group's id or name, ``{userId}`` a user's id or username: a user id given as
a group id is a 404 ``GROUP_NOT_FOUND``, and the other way round ``USER_NOT_FOUND``.
``PUT`` / ``DELETE /api/v1/groups/{id}/users/{userId}`` add and remove a member (doing it
twice changes nothing and answers the same). Changes are ``group.lifecycle.*`` and
``group.user_membership.*`` events stamped with the admin.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from certbound.admin.roles import Permission
from certbound.directory import events
from certbound.directory.groups import MAX_DESCRIPTION_LENGTH, MAX_NAME_LENGTH, Group, Groups
from certbound.directory.users import User, Users
from certbound.syslog.events import EventType
from certbound.web.api import pagination
from certbound.web.api.body import Body, Field, Kind
from certbound.web.api.operation import Call, Operation, json_response, no_content

GROUPS, GROUP = "/api/v1/groups", "/api/v1/groups/{id}"
MEMBER = GROUP + "/users/{userId}"
TAG = "groups"


def _groups(call: Call) -> Groups:
    return Groups(call.state.database, call.state.clock)


def list_groups(call: Call) -> Response:
    groups = _groups(call)
    page = pagination.fetch(
        lambda limit, after: groups.list(limit=limit, after=after), lambda g: g.id, call.page
    )
    return pagination.response(call.request, page, Group.to_dict)


def show_group(call: Call) -> Response:
    return json_response(_groups(call).get(call.path["id"]).to_dict())


def create_group(call: Call) -> Response:
    body: dict[str, Any] = call.body
    group = _groups(call).create(body["name"], body.get("description"))
    call.record(events.group_created(group), after=group.to_dict())
    return json_response(group.to_dict(), 201)


def delete_group(call: Call) -> Response:
    groups = _groups(call)
    members = len(groups.members(call.path["id"]))
    group = groups.delete(call.path["id"])
    call.record(events.group_deleted(group, members), before=group.to_dict())
    return no_content()


def list_members(call: Call) -> Response:
    members = _groups(call).members(call.path["id"])
    page = pagination.page_of(members, lambda user: user.id, call.page)
    return pagination.response(call.request, page, User.to_dict)


def _membership(call: Call, event_type: EventType) -> Response:
    groups = _groups(call)
    group = groups.get(call.path["id"])
    user = Users(call.state.database, call.state.clock).get(call.path["userId"])
    if event_type is EventType.GROUP_USER_MEMBERSHIP_ADD:
        changed = groups.add_member(group.id, user.id)
    else:
        changed = groups.remove_member(group.id, user.id)
    member = event_type is EventType.GROUP_USER_MEMBERSHIP_ADD
    event = events.membership_changed(event_type, group, user, changed)
    state = {"groupId": group.id, "userId": user.id}
    call.record(
        event,
        before={**state, "member": member != changed},
        after={**state, "member": member},
    )
    return json_response({"group": group.to_dict(), "user": user.to_dict(), "changed": changed})


def add_member(call: Call) -> Response:
    return _membership(call, EventType.GROUP_USER_MEMBERSHIP_ADD)


def remove_member(call: Call) -> Response:
    return _membership(call, EventType.GROUP_USER_MEMBERSHIP_REMOVE)


CREATE = Body(
    (
        Field("name", Kind.STRING, "Unique.", required=True, max_length=MAX_NAME_LENGTH),
        Field(
            "description",
            Kind.STRING,
            "Free text.",
            nullable=True,
            max_length=MAX_DESCRIPTION_LENGTH,
        ),
    )
)
_READ, _MANAGE = Permission.GROUPS_READ, Permission.GROUPS_MANAGE

OPERATIONS = (
    Operation("GET", GROUPS, "List groups", TAG, _READ, list_groups, paged=True),
    Operation("POST", GROUPS, "Create a group", TAG, _MANAGE, create_group, body=CREATE,
              status=201),
    Operation("GET", GROUP, "Show a group", TAG, _READ, show_group),
    Operation("DELETE", GROUP, "Delete a group", TAG, _MANAGE, delete_group, status=204),
    Operation("GET", GROUP + "/users", "List a group's members", TAG, _READ, list_members,
              paged=True),
    Operation("PUT", MEMBER, "Add a user to a group", TAG, _MANAGE, add_member),
    Operation("DELETE", MEMBER, "Remove a user from a group", TAG, _MANAGE, remove_member),
)  # fmt: skip
