"""``/api/v1/users``: the people who sign in (:class:`~certbound.directory.users.Users`).

``{id}`` is a user's id or username. A password given on creation is hashed (argon2id) and
never answered, logged or put in an event (``passwordSet`` says one was given). Changes
are ``user.lifecycle.*`` events stamped with the admin; a username in use is a 409
``NAME_TAKEN``, a bad attribute a 400 ``INVALID_USER``.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from certbound.admin.roles import Permission
from certbound.directory import events
from certbound.directory.groups import Group, Groups
from certbound.directory.users import (
    MAX_DISPLAY_NAME_LENGTH,
    MAX_EMAIL_LENGTH,
    MAX_PASSWORD_LENGTH,
    MAX_USERNAME_LENGTH,
    UNSET,
    User,
    Users,
    UserStatus,
)
from certbound.syslog.events import EventType
from certbound.web.api import pagination
from certbound.web.api.body import Body, Field, Kind
from certbound.web.api.operation import Call, Operation, Param, json_response, no_content

USERS, USER = "/api/v1/users", "/api/v1/users/{id}"
TAG = "users"


def _users(call: Call) -> Users:
    return Users(call.state.database, call.state.clock)


def list_users(call: Call) -> Response:
    users = _users(call)
    status = call.query.get("status")
    wanted = None if status is None else UserStatus(status)
    page = pagination.fetch(
        lambda limit, after: users.list(status=wanted, limit=limit, after=after),
        lambda user: user.id,
        call.page,
    )
    return pagination.response(call.request, page, User.to_dict)


def show_user(call: Call) -> Response:
    return json_response(_users(call).get(call.path["id"]).to_dict())


def create_user(call: Call) -> Response:
    body: dict[str, Any] = call.body
    password = body.get("password")
    user = _users(call).create(
        body["username"],
        email=body.get("email"),
        display_name=body.get("displayName"),
        password=password,
    )
    event = events.user_created(user, password_set=password is not None)
    call.record(event, after=user.to_dict())
    return json_response(user.to_dict(), 201)


def update_user(call: Call) -> Response:
    body: dict[str, Any] = call.body
    before, after = _users(call).update(
        call.path["id"],
        email=body.get("email", UNSET),
        display_name=body.get("displayName", UNSET),
    )
    event = events.user_changed(EventType.USER_LIFECYCLE_UPDATE, before, after)
    call.record(event, before=before.to_dict(), after=after.to_dict())
    return json_response(after.to_dict())


def delete_user(call: Call) -> Response:
    user = _users(call).delete(call.path["id"])
    call.record(events.user_deleted(user), before=user.to_dict())
    return no_content()


def suspend_user(call: Call) -> Response:
    before, after = _users(call).suspend(call.path["id"])
    event = events.user_changed(EventType.USER_LIFECYCLE_SUSPEND, before, after)
    call.record(event, before=before.to_dict(), after=after.to_dict())
    return json_response(after.to_dict())


def activate_user(call: Call) -> Response:
    before, after = _users(call).activate(call.path["id"])
    event = events.user_changed(EventType.USER_LIFECYCLE_ACTIVATE, before, after)
    call.record(event, before=before.to_dict(), after=after.to_dict())
    return json_response(after.to_dict())


def user_groups(call: Call) -> Response:
    groups = Groups(call.state.database, call.state.clock).groups_of(call.path["id"])
    page = pagination.page_of(groups, lambda group: group.id, call.page)
    return pagination.response(call.request, page, Group.to_dict)


_EMAIL = Field("email", Kind.STRING, "Email address.", nullable=True, max_length=MAX_EMAIL_LENGTH)
_DISPLAY = Field(
    "displayName", Kind.STRING, "Display name.", nullable=True, max_length=MAX_DISPLAY_NAME_LENGTH
)
CREATE = Body(
    (
        Field("username", Kind.STRING, "Unique.", required=True, max_length=MAX_USERNAME_LENGTH),
        _EMAIL,
        _DISPLAY,
        Field(
            "password",
            Kind.STRING,
            "At least 12 characters; hashed, never shown.",
            max_length=MAX_PASSWORD_LENGTH,
        ),
    )
)
UPDATE = Body((_EMAIL, _DISPLAY))
_STATUS = Param("status", "Only users of this status.", tuple(s.value for s in UserStatus))
_READ, _MANAGE = Permission.USERS_READ, Permission.USERS_MANAGE

OPERATIONS = (
    Operation("GET", USERS, "List users", TAG, _READ, list_users, query=(_STATUS,), paged=True),
    Operation("POST", USERS, "Create a user", TAG, _MANAGE, create_user, body=CREATE, status=201),
    Operation("GET", USER, "Show a user", TAG, _READ, show_user),
    Operation("PATCH", USER, "Change a user's email or display name", TAG, _MANAGE, update_user,
              body=UPDATE),
    Operation("DELETE", USER, "Delete a user", TAG, _MANAGE, delete_user, status=204),
    Operation("POST", USER + "/lifecycle/suspend", "Suspend a user", TAG, _MANAGE, suspend_user),
    Operation("POST", USER + "/lifecycle/activate", "Activate a user", TAG, _MANAGE, activate_user),
    Operation("GET", USER + "/groups", "List a user's groups", TAG, Permission.GROUPS_READ,
              user_groups, paged=True),
)  # fmt: skip
