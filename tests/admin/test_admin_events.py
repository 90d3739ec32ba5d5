"""The admin layer's events and the audit stamp: actor, token, changeDetails, redaction."""

from __future__ import annotations

import datetime as dt

from certbound.admin import events
from certbound.admin.admins import Admin, AdminStatus
from certbound.admin.roles import Role
from certbound.syslog.events import Actor, Client, Event, EventType, Outcome, Result

NOW = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
ADMIN = Admin("adm_1", "alice", "alice@example.com", Role.ORG_ADMIN, AdminStatus.ACTIVE, NOW, NOW)
CONTEXT = events.AuditContext(
    actor=events.admin_actor(ADMIN),
    token_id="0123456789abcdef",
    role="ORG_ADMIN",
    client=Client("192.0.2.1", "curl/8"),
    method="PATCH",
    route="/api/v1/apps/{id}",
    request_uri="/api/v1/apps/app_1",
)


def test_redacted_replaces_secret_values_at_any_depth() -> None:
    value = {
        "name": "x",
        "clientSecret": "cbs_abc",
        "nested": [{"password_hash": "$argon2id$...", "token": None, "tokenId": "t"}],
        "Private-Key": "-----BEGIN",
    }
    assert events.redacted(value) == {
        "name": "x",
        "clientSecret": "[redacted]",
        "nested": [{"password_hash": "[redacted]", "token": None, "tokenId": "t"}],
        "Private-Key": "[redacted]",
    }


def test_change_details_keeps_what_changed() -> None:
    before = {"id": "a", "name": "old", "updated": "1", "secret": "s1"}
    after = {"id": "a", "name": "new", "updated": "2", "secret": "s2"}
    assert events.change_details(before, after) == {
        "before": {"name": "old", "secret": "[redacted]"},
        "after": {"name": "new", "secret": "[redacted]"},
    }
    assert events.change_details(None, {"id": "a"}) == {"before": None, "after": {"id": "a"}}
    assert events.change_details({"id": "a"}, None) == {"before": {"id": "a"}, "after": None}


def test_audited_stamps_the_admin_the_token_and_the_change() -> None:
    event = Event(
        EventType.APPLICATION_LIFECYCLE_UPDATE,
        "App updated",
        Outcome(Result.SUCCESS),
        debug_data={"app": {"name": "new"}, "password": "hunter2hunter2"},
    )
    stamped = events.audited(event, CONTEXT, before={"name": "old"}, after={"name": "new"})
    assert stamped.actor == Actor("adm_1", "Admin", "alice", "alice@example.com")
    assert stamped.client == CONTEXT.client and stamped.transaction_type == "WEB"
    assert stamped.authentication_context == {
        "credentialType": "API_TOKEN",
        "tokenId": "0123456789abcdef",
        "role": "ORG_ADMIN",
    }
    debug = stamped.debug_data
    assert debug["changeDetails"] == {"before": {"name": "old"}, "after": {"name": "new"}}
    assert debug["route"] == "PATCH /api/v1/apps/{id}" and debug["tokenId"] == CONTEXT.token_id
    assert debug["password"] == "[redacted]" and debug["app"] == {"name": "new"}
    assert stamped.event_type is event.event_type and stamped.uuid == event.uuid


def test_access_denied() -> None:
    event = events.access_denied(CONTEXT, "apps.manage", "role ORG_ADMIN may not")
    assert event.event_type is EventType.ADMIN_ACCESS_DENY
    assert (event.outcome.result, event.outcome.reason) == (Result.DENY, "FORBIDDEN_ROLE")
    assert event.targets[0].id == "PATCH /api/v1/apps/{id}"
    assert event.debug_data["permission"] == "apps.manage" and event.actor.id == "adm_1"


def test_admin_account_events() -> None:
    created = events.admin_created(ADMIN)
    assert created.event_type is EventType.ADMIN_ACCOUNT_CREATE
    assert created.targets[0].alternate_id == "alice" and created.actor.id == "cli"
    lowered = Admin(**{**_fields(ADMIN), "role": Role.READ_ONLY_ADMIN})
    updated = events.admin_updated(ADMIN, lowered)
    assert updated.debug_data["changeDetails"] == {
        "before": {"role": "ORG_ADMIN"},
        "after": {"role": "READ_ONLY_ADMIN"},
    }
    gone = Admin(**{**_fields(ADMIN), "status": AdminStatus.DEACTIVATED})
    deactivated = events.admin_deactivated(ADMIN, gone, ["t1", "t2"])
    assert deactivated.debug_data["revokedTokens"] == ["t1", "t2"]
    assert "already" in events.admin_deactivated(gone, gone, []).display_message


def _fields(admin: Admin) -> dict[str, object]:
    return {name: getattr(admin, name) for name in Admin.__slots__}  # type: ignore[attr-defined]
