"""The admin layer's System Log events, and the audit stamp every admin API change carries.

- ``admin.account.create`` / ``.update`` (a role change) / ``.deactivate``: changes of admin
  accounts (:mod:`certbound.admin.admins`), from the CLI or the API.
- ``admin.access.deny``: an admin API request the caller's role does not allow (outcome
  ``DENY``, reason ``FORBIDDEN_ROLE``), naming the route, the role and the permission.

Every change made over the admin API is recorded as its domain's event
(``security.trust.ca.add``, ``user.lifecycle.create``, ``device.lifecycle.suspend``, the
ones above...) stamped by :func:`audited`: the actor is the admin (id, ``alternateId`` the
username; a token that belongs to no admin is its own actor), ``authenticationContext``
names the API token, and ``debugData`` holds ``changeDetails`` (``before`` / ``after``:
the object's fields that changed, the whole object when created or deleted), the token id
and the request. Values under a key that names a secret (:data:`SECRET_KEYS`) are replaced
by ``[redacted]`` wherever they appear, a second line of defence behind the domain objects,
none of which carries a secret, a password hash or a private key in its JSON.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from certbound.admin.admins import Admin
from certbound.admin.tokens import TokenInfo
from certbound.errors import ReasonCode
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
)

ADMIN_TARGET, ROUTE_TARGET, TOKEN_ACTOR = "Admin", "ApiRoute", "ApiToken"
REDACTED = "[redacted]"
# Keys whose values are never written to an event (compared without case, "_" or "-").
SECRET_KEYS = frozenset(
    {
        "secret",
        "clientsecret",
        "secrethash",
        "password",
        "passwordhash",
        "privatekey",
        "privatepem",
        "token",
        "accesstoken",
        "refreshtoken",
    }
)


def admin_actor(admin: Admin) -> Actor:
    return Actor(admin.id, ADMIN_TARGET, admin.username, admin.email or admin.username)


def token_actor(token: TokenInfo) -> Actor:
    """The actor of a token that belongs to no admin: the token itself."""
    return Actor(token.id, TOKEN_ACTOR, token.name, token.name)


def admin_target(admin: Admin) -> Target:
    return Target(admin.id, ADMIN_TARGET, admin.username, admin.email)


@dataclass(frozen=True, slots=True)
class AuditContext:
    """Who made an admin API request, with which token and role, and how."""

    actor: Actor
    token_id: str
    role: str
    client: Client
    method: str
    route: str  # the route's path template, e.g. /api/v1/users/{id}
    request_uri: str

    def authentication_context(self) -> dict[str, Any]:
        return {"credentialType": "API_TOKEN", "tokenId": self.token_id, "role": self.role}

    def request(self) -> dict[str, Any]:
        return {
            "tokenId": self.token_id,
            "route": f"{self.method} {self.route}",
            "requestUri": self.request_uri,
        }


def redacted(value: Any) -> Any:
    """``value`` with every value under a secret-naming key replaced by ``[redacted]``."""
    if isinstance(value, Mapping):
        return {
            key: REDACTED if _secret_key(key) and item is not None else redacted(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redacted(item) for item in value]
    return value


def _secret_key(key: Any) -> bool:
    return str(key).lower().replace("_", "").replace("-", "") in SECRET_KEYS


def change_details(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> dict[str, Any]:
    """``{before, after}``: the fields that differ (``updated`` left out) when both exist,
    else the whole object (created: before is null; deleted: after is null)."""
    if before is None or after is None:
        return {"before": redacted(before), "after": redacted(after)}
    keys = [k for k in {**before, **after} if k != "updated" and before.get(k) != after.get(k)]
    return {
        "before": redacted({k: before.get(k) for k in keys}),
        "after": redacted({k: after.get(k) for k in keys}),
    }


def audited(
    event: Event,
    context: AuditContext,
    *,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
) -> Event:
    """``event`` as an admin API change: the admin as actor, the token, changeDetails."""
    debug = {
        **event.debug_data,
        **context.request(),
        "changeDetails": change_details(before, after),
    }
    return dataclasses.replace(
        event,
        actor=context.actor,
        client=context.client,
        transaction_type="WEB",
        authentication_context=context.authentication_context(),
        debug_data=redacted(debug),
    )


def _admin_event(
    event_type: EventType, message: str, admin: Admin, actor: Actor, debug: dict[str, Any]
) -> Event:
    return Event(
        event_type=event_type,
        display_message=message,
        outcome=Outcome(Result.SUCCESS),
        actor=actor,
        severity=Severity.INFO,
        targets=(admin_target(admin),),
        debug_data={"admin": admin.to_dict(), **debug},
    )


def admin_created(admin: Admin, actor: Actor = CLI_ACTOR) -> Event:
    """``admin.account.create``."""
    message = f"Admin created: {admin.username} ({admin.id}), role {admin.role.value}"
    return _admin_event(EventType.ADMIN_ACCOUNT_CREATE, message, admin, actor, {})


def admin_updated(before: Admin, after: Admin, actor: Actor = CLI_ACTOR) -> Event:
    """``admin.account.update``: a new role (``changeDetails``; nothing when it was so)."""
    label = f"{after.username} ({after.id}), role {before.role.value} -> {after.role.value}"
    if before == after:
        label = f"{after.username} ({after.id}), nothing changed"
    details = change_details(before.to_dict(), after.to_dict())
    return _admin_event(
        EventType.ADMIN_ACCOUNT_UPDATE,
        f"Admin updated: {label}",
        after,
        actor,
        {"changeDetails": details},
    )


def admin_deactivated(
    before: Admin, after: Admin, revoked_tokens: Sequence[str], actor: Actor = CLI_ACTOR
) -> Event:
    """``admin.account.deactivate``: ``revokedTokens`` lists the token ids revoked with it."""
    label = f"{after.username} ({after.id})"
    if before == after:
        label += ", already deactivated"
    debug = {
        "changeDetails": change_details(before.to_dict(), after.to_dict()),
        "revokedTokens": list(revoked_tokens),
    }
    return _admin_event(
        EventType.ADMIN_ACCOUNT_DEACTIVATE, f"Admin deactivated: {label}", after, actor, debug
    )


def access_denied(context: AuditContext, permission: str, detail: str) -> Event:
    """``admin.access.deny``: the route, the caller's role and the permission it lacks."""
    route = f"{context.method} {context.route}"
    return Event(
        event_type=EventType.ADMIN_ACCESS_DENY,
        display_message=f"Admin API request denied ({context.role}): {route}",
        outcome=Outcome(Result.DENY, ReasonCode.FORBIDDEN_ROLE),
        actor=context.actor,
        severity=Severity.WARN,
        targets=(Target(route, ROUTE_TARGET, context.request_uri, None),),
        client=context.client,
        transaction_type="WEB",
        authentication_context=context.authentication_context(),
        debug_data={
            **context.request(),
            "role": context.role,
            "permission": permission,
            "detail": detail,
        },
    )
