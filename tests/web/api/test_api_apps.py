"""``/api/v1/apps`` over a real server on both databases: the client secret answered once
(creation, rotation) and never readable or logged, changes, refusals, app admins allowed."""

from __future__ import annotations

from typing import Any

from certbound.admin.roles import Role
from certbound.directory.apps import Apps

APP_ADMIN, HELP, READ = Role.APP_ADMIN, Role.HELP_DESK_ADMIN, Role.READ_ONLY_ADMIN
APPS = "/api/v1/apps"
SECRET_METADATA = {"token_endpoint_auth_method": "client_secret_basic"}


def test_secret_is_shown_once_and_rotates(api: Any) -> None:
    body = {"name": "Billing", "clientId": "billing", "metadata": SECRET_METADATA}
    created = api.call(APP_ADMIN, "POST", APPS, json=body)
    assert created.status_code == 201, created.text
    app = created.json()
    secret = app.pop("clientSecret")
    assert secret.startswith("cbs_") and app["hasSecret"] is True
    apps = Apps(api.database, api.app.state.clock)
    assert apps.verify_secret(apps.get("billing"), secret)
    shown = api.call(READ, "GET", f"{APPS}/billing").json()
    assert "clientSecret" not in shown and shown == app
    rotated = api.call(APP_ADMIN, "POST", f"{APPS}/{app['id']}/secret").json()
    assert rotated["clientSecret"] != secret
    assert not apps.verify_secret(apps.get("billing"), secret)
    assert apps.verify_secret(apps.get("billing"), rotated["clientSecret"])
    types = [e["eventType"] for e in api.events() if e["eventType"].startswith("application.")]
    assert types == ["application.lifecycle.create", "application.client.secret_rotate"]


def test_update_and_delete(api: Any, refused: Any) -> None:
    body = {"name": "Portal", "metadata": {"token_endpoint_auth_method": "client_secret_post"}}
    app = api.call(APP_ADMIN, "POST", APPS, json=body).json()
    url = f"{APPS}/{app['id']}"
    changed = api.call(APP_ADMIN, "PATCH", url, json={"status": "INACTIVE", "name": "Portal 2"})
    assert (changed.json()["status"], changed.json()["name"]) == ("INACTIVE", "Portal 2")
    [event] = api.events("application.lifecycle.update")
    details = event["debugContext"]["debugData"]["changeDetails"]
    assert details["before"] == {"name": "Portal", "status": "ACTIVE"}
    assert details["after"] == {"name": "Portal 2", "status": "INACTIVE"}
    assert api.call(APP_ADMIN, "DELETE", url).status_code == 204
    refused(api.call(READ, "GET", url), 404, "APP_NOT_FOUND")


def test_refusals(api: Any, refused: Any) -> None:
    bad = {"name": "x", "metadata": {"token_endpoint_auth_method": "telepathy"}}
    refused(api.call(APP_ADMIN, "POST", APPS, json=bad), 400, "INVALID_CLIENT_METADATA")
    unknown = {"name": "x", "metadata": {**SECRET_METADATA, "colour": "red"}}
    refused(api.call(APP_ADMIN, "POST", APPS, json=unknown), 400, "INVALID_CLIENT_METADATA")
    good = {"name": "x", "clientId": "dup", "metadata": SECRET_METADATA}
    assert api.call(APP_ADMIN, "POST", APPS, json=good).status_code == 201
    refused(api.call(APP_ADMIN, "POST", APPS, json=good), 409, "NAME_TAKEN")
    refused(api.call(HELP, "POST", APPS, json=good), 403, "FORBIDDEN_ROLE")
    refused(api.call(APP_ADMIN, "PATCH", f"{APPS}/dup", json={"status": "GONE"}), 400,
            "INVALID_REQUEST_BODY")  # fmt: skip
