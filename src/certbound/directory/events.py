"""The directory's System Log events: users, groups and memberships, apps and their secrets.

Each builder turns one change into one :class:`certbound.syslog.events.Event` (Okta's
``user.lifecycle.*``, ``user.account.update_password``, ``group.lifecycle.*``,
``group.user_membership.*``, ``application.lifecycle.*`` and
``application.client.secret_rotate``); the caller hands it to the recorder. Targets are
``User`` (alternateId the username), ``UserGroup`` (the name) and ``AppInstance`` (the
client_id). ``debugData`` holds the object as JSON, and for a change ``changeDetails``
with the fields before and after. Passwords, secrets and their hashes are never in an
event. A refused change is a FAILURE event of the same type (:func:`refused`).
``docs/events.md`` describes the fields.
"""

from __future__ import annotations

from typing import Any

from certbound.directory.apps import App
from certbound.directory.groups import Group
from certbound.directory.users import User
from certbound.errors import CertboundError
from certbound.syslog.events import (
    CLI_ACTOR,
    Actor,
    Client,
    Event,
    EventType,
    Outcome,
    Result,
    Severity,
    Target,
    refused_change,
)

USER_TARGET, GROUP_TARGET, APP_TARGET = "User", "UserGroup", "AppInstance"

# What each type is called in display messages.
_WHAT = {
    EventType.USER_LIFECYCLE_CREATE: "User created",
    EventType.USER_LIFECYCLE_UPDATE: "User updated",
    EventType.USER_LIFECYCLE_SUSPEND: "User suspended",
    EventType.USER_LIFECYCLE_ACTIVATE: "User activated",
    EventType.USER_LIFECYCLE_DELETE: "User deleted",
    EventType.USER_ACCOUNT_UPDATE_PASSWORD: "User password set",
    EventType.GROUP_LIFECYCLE_CREATE: "Group created",
    EventType.GROUP_LIFECYCLE_DELETE: "Group deleted",
    EventType.GROUP_USER_MEMBERSHIP_ADD: "User added to group",
    EventType.GROUP_USER_MEMBERSHIP_REMOVE: "User removed from group",
    EventType.APPLICATION_LIFECYCLE_CREATE: "App created",
    EventType.APPLICATION_LIFECYCLE_UPDATE: "App updated",
    EventType.APPLICATION_LIFECYCLE_DELETE: "App deleted",
    EventType.APPLICATION_CLIENT_SECRET_ROTATE: "App client secret rotated",
}


def user_target(user: User) -> Target:
    return Target(user.id, USER_TARGET, user.username, user.display_name)


def group_target(group: Group) -> Target:
    return Target(group.id, GROUP_TARGET, group.name, group.description)


def app_target(app: App) -> Target:
    return Target(app.id, APP_TARGET, app.client_id, app.name)


def _event(
    event_type: EventType,
    label: str,
    targets: tuple[Target, ...],
    debug: dict[str, Any],
    *,
    actor: Actor,
    client: Client | None,
) -> Event:
    return Event(
        event_type=event_type,
        display_message=f"{_WHAT[event_type]}: {label}",
        outcome=Outcome(Result.SUCCESS),
        actor=actor,
        severity=Severity.INFO,
        targets=targets,
        client=client or Client(),
        debug_data=debug,
    )


def change_details(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The fields that differ, before and after (``updated`` left out)."""
    keys = [k for k in after if k != "updated" and before.get(k) != after.get(k)]
    return {"before": {k: before.get(k) for k in keys}, "after": {k: after.get(k) for k in keys}}


# --- users ---------------------------------------------------------------------------------


def user_created(
    user: User, *, password_set: bool, actor: Actor = CLI_ACTOR, client: Client | None = None
) -> Event:
    """``user.lifecycle.create``; ``passwordSet`` says whether it got a password."""
    debug = {"user": user.to_dict(), "passwordSet": password_set}
    return _event(
        EventType.USER_LIFECYCLE_CREATE,
        f"{user.username} ({user.id})",
        (user_target(user),),
        debug,
        actor=actor,
        client=client,
    )


def user_changed(
    event_type: EventType,
    before: User,
    after: User,
    *,
    actor: Actor = CLI_ACTOR,
    client: Client | None = None,
) -> Event:
    """``user.lifecycle.update``, ``.suspend`` or ``.activate``: ``changeDetails`` holds
    what changed (nothing when it already was so)."""
    details = change_details(before.to_dict(), after.to_dict())
    debug = {"user": after.to_dict(), "changeDetails": details}
    label = f"{after.username} ({after.id})"
    if not details["after"]:
        label += ", nothing changed"
    return _event(event_type, label, (user_target(after),), debug, actor=actor, client=client)


def user_deleted(user: User, *, actor: Actor = CLI_ACTOR, client: Client | None = None) -> Event:
    """``user.lifecycle.delete``: the user and its memberships are gone."""
    return _event(
        EventType.USER_LIFECYCLE_DELETE,
        f"{user.username} ({user.id})",
        (user_target(user),),
        {"user": user.to_dict()},
        actor=actor,
        client=client,
    )


def password_updated(
    user: User, *, actor: Actor = CLI_ACTOR, client: Client | None = None
) -> Event:
    """``user.account.update_password``: a new password (never the password or its hash)."""
    return _event(
        EventType.USER_ACCOUNT_UPDATE_PASSWORD,
        f"{user.username} ({user.id})",
        (user_target(user),),
        {"user": user.to_dict()},
        actor=actor,
        client=client,
    )


# --- groups --------------------------------------------------------------------------------


def group_created(group: Group, *, actor: Actor = CLI_ACTOR, client: Client | None = None) -> Event:
    return _event(
        EventType.GROUP_LIFECYCLE_CREATE,
        f"{group.name} ({group.id})",
        (group_target(group),),
        {"group": group.to_dict()},
        actor=actor,
        client=client,
    )


def group_deleted(
    group: Group, members: int, *, actor: Actor = CLI_ACTOR, client: Client | None = None
) -> Event:
    """``group.lifecycle.delete``; ``members``: how many memberships went with it."""
    return _event(
        EventType.GROUP_LIFECYCLE_DELETE,
        f"{group.name} ({group.id})",
        (group_target(group),),
        {"group": group.to_dict(), "members": members},
        actor=actor,
        client=client,
    )


def membership_changed(
    event_type: EventType,
    group: Group,
    user: User,
    changed: bool,
    *,
    actor: Actor = CLI_ACTOR,
    client: Client | None = None,
) -> Event:
    """``group.user_membership.add`` / ``.remove``; ``changed`` False: the user already
    was (or was not) a member."""
    label = f"{user.username} ({user.id}), group {group.name} ({group.id})"
    if not changed:
        label += ", nothing changed"
    return _event(
        event_type,
        label,
        (user_target(user), group_target(group)),
        {"changed": changed},
        actor=actor,
        client=client,
    )


# --- apps ----------------------------------------------------------------------------------


def app_created(app: App, *, actor: Actor = CLI_ACTOR, client: Client | None = None) -> Event:
    """``application.lifecycle.create``: the app and its metadata (``hasSecret`` says
    whether a secret was issued; never the secret)."""
    return _event(
        EventType.APPLICATION_LIFECYCLE_CREATE,
        f"{app.name} ({app.client_id})",
        (app_target(app),),
        {"app": app.to_dict()},
        actor=actor,
        client=client,
    )


def app_updated(
    before: App, after: App, *, actor: Actor = CLI_ACTOR, client: Client | None = None
) -> Event:
    """``application.lifecycle.update``: ``changeDetails`` holds what changed."""
    details = change_details(before.to_dict(), after.to_dict())
    label = f"{after.name} ({after.client_id})"
    if not details["after"]:
        label += ", nothing changed"
    return _event(
        EventType.APPLICATION_LIFECYCLE_UPDATE,
        label,
        (app_target(after),),
        {"app": after.to_dict(), "changeDetails": details},
        actor=actor,
        client=client,
    )


def app_deleted(app: App, *, actor: Actor = CLI_ACTOR, client: Client | None = None) -> Event:
    return _event(
        EventType.APPLICATION_LIFECYCLE_DELETE,
        f"{app.name} ({app.client_id})",
        (app_target(app),),
        {"app": app.to_dict()},
        actor=actor,
        client=client,
    )


def secret_rotated(app: App, *, actor: Actor = CLI_ACTOR, client: Client | None = None) -> Event:
    """``application.client.secret_rotate``: the old secret stopped working."""
    return _event(
        EventType.APPLICATION_CLIENT_SECRET_ROTATE,
        f"{app.name} ({app.client_id})",
        (app_target(app),),
        {"app": app.to_dict()},
        actor=actor,
        client=client,
    )


# --- refusals ------------------------------------------------------------------------------


def refused(
    event_type: EventType,
    target_type: str,
    ref: str,
    error: CertboundError,
    *,
    actor: Actor = CLI_ACTOR,
    client: Client | None = None,
) -> Event:
    """A refused change: the target is the reference as given; ``debugData`` has ``ref``,
    the ``detail`` and the error's context (never a password or secret)."""
    return refused_change(
        event_type, _WHAT[event_type], target_type, ref, error, actor=actor, client=client
    )
