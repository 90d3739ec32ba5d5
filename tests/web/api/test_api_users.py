"""``/api/v1/users`` over a real server on both databases: create (the password never
answered or logged), show, update, suspend and activate, delete, filters, and the events."""

from __future__ import annotations

from typing import Any

from certbound.admin.roles import Role
from certbound.directory.users import Users

ORG, READ = Role.ORG_ADMIN, Role.READ_ONLY_ADMIN
USERS = "/api/v1/users"
PASSWORD = "correct horse battery staple"


def test_create_with_a_password_never_shows_it(api: Any, refused: Any) -> None:
    body = {"username": "bob", "email": "bob@example.com", "password": PASSWORD}
    created = api.call(ORG, "POST", USERS, json=body)
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["username"] == "bob" and "password" not in str(user).lower()
    assert Users(api.database, api.app.state.clock).authenticate("bob", PASSWORD) is not None
    [event] = api.events("user.lifecycle.create")
    debug = event["debugContext"]["debugData"]
    assert debug["passwordSet"] is True and debug["changeDetails"]["after"]["id"] == user["id"]
    refused(api.call(ORG, "POST", USERS, json={"username": "BOB"}), 409, "NAME_TAKEN")
    refused(api.call(ORG, "POST", USERS, json={"username": "x", "password": "short"}), 400,
            "INVALID_USER")  # fmt: skip


def test_show_update_suspend_activate_delete(api: Any, refused: Any) -> None:
    user = api.call(ORG, "POST", USERS, json={"username": "carol"}).json()
    url = f"{USERS}/{user['id']}"
    assert api.call(READ, "GET", f"{USERS}/carol").json()["id"] == user["id"]
    changed = api.call(ORG, "PATCH", url, json={"email": "carol@example.com"})
    assert changed.json()["email"] == "carol@example.com"
    [update] = api.events("user.lifecycle.update")
    assert update["debugContext"]["debugData"]["changeDetails"] == {
        "before": {"email": None},
        "after": {"email": "carol@example.com"},
    }
    suspended = api.call(ORG, "POST", f"{url}/lifecycle/suspend")
    assert suspended.json()["status"] == "SUSPENDED"
    listed = api.call(READ, "GET", USERS, params={"status": "SUSPENDED"}).json()
    assert [u["id"] for u in listed] == [user["id"]]
    refused(api.call(READ, "GET", USERS, params={"status": "GONE"}), 400, "INVALID_QUERY")
    assert api.call(ORG, "POST", f"{url}/lifecycle/activate").json()["status"] == "ACTIVE"
    assert api.call(ORG, "DELETE", url).status_code == 204
    refused(api.call(READ, "GET", url), 404, "USER_NOT_FOUND")
    types = [e["eventType"] for e in api.events() if e["eventType"].startswith("user.")]
    assert types == [
        "user.lifecycle.create",
        "user.lifecycle.update",
        "user.lifecycle.suspend",
        "user.lifecycle.activate",
        "user.lifecycle.delete",
    ]


def test_update_refuses_fields_it_does_not_change(api: Any, refused: Any) -> None:
    user = api.call(ORG, "POST", USERS, json={"username": "dave"}).json()
    url = f"{USERS}/{user['id']}"
    for body in ({"username": "eve"}, {"password": PASSWORD}, {"status": "ACTIVE"}):
        refused(api.call(ORG, "PATCH", url, json=body), 400, "INVALID_REQUEST_BODY")
    assert api.call(ORG, "GET", url).json()["username"] == "dave"
