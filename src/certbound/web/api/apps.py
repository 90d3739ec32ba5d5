"""``/api/v1/apps``: the OAuth clients over HTTP (:class:`~certbound.directory.apps.Apps`).

``{id}`` is an app's id or its client_id. Creating an app of a ``client_secret_*`` method,
and ``POST /api/v1/apps/{id}/secret``, answer the client secret once, as ``clientSecret``;
it is never readable again and never in an event. The metadata are RFC 7591 / RFC 8705
fields (docs/directory.md); a bad one is a 400 ``INVALID_CLIENT_METADATA`` naming it, a
client_id in use a 409 ``NAME_TAKEN``. Changes are ``application.lifecycle.*`` and
``application.client.secret_rotate`` events stamped with the admin.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from certbound.admin.roles import Permission
from certbound.directory import events
from certbound.directory.apps import MAX_NAME_LENGTH, App, Apps, AppStatus, ClientMetadata
from certbound.web.api import pagination
from certbound.web.api.body import Body, Field, Kind
from certbound.web.api.operation import Call, Operation, json_response, no_content

APPS, APP = "/api/v1/apps", "/api/v1/apps/{id}"
TAG = "apps"


def _apps(call: Call) -> Apps:
    apps: Apps = call.state.apps
    return apps


def _with_secret(app: App, secret: str | None) -> dict[str, Any]:
    data = app.to_dict()
    if secret is not None:
        data["clientSecret"] = secret
    return data


def list_apps(call: Call) -> Response:
    apps = _apps(call)
    page = pagination.fetch(
        lambda limit, after: apps.list(limit=limit, after=after), lambda app: app.id, call.page
    )
    return pagination.response(call.request, page, App.to_dict)


def show_app(call: Call) -> Response:
    return json_response(_apps(call).get(call.path["id"]).to_dict())


def create_app(call: Call) -> Response:
    body: dict[str, Any] = call.body
    metadata = ClientMetadata.from_dict(body["metadata"])
    app, secret = _apps(call).create(body["name"], metadata, client_id=body.get("clientId"))
    call.record(events.app_created(app), after=app.to_dict())
    return json_response(_with_secret(app, secret), 201)


def update_app(call: Call) -> Response:
    body: dict[str, Any] = call.body
    meta = body.get("metadata")
    metadata = None if meta is None else ClientMetadata.from_dict(meta)
    before, after = _apps(call).update(
        call.path["id"], metadata, name=body.get("name"), status=body.get("status")
    )
    call.record(events.app_updated(before, after), before=before.to_dict(), after=after.to_dict())
    return json_response(after.to_dict())


def delete_app(call: Call) -> Response:
    app = _apps(call).delete(call.path["id"])
    call.record(events.app_deleted(app), before=app.to_dict())
    return no_content()


def rotate_secret(call: Call) -> Response:
    app, secret = _apps(call).rotate_secret(call.path["id"])
    call.record(events.secret_rotated(app), after={"secretRotated": True})
    return json_response(_with_secret(app, secret))


_NAME = Field("name", Kind.STRING, "Display name.", max_length=MAX_NAME_LENGTH)
_METADATA = "Registration metadata (RFC 7591 / RFC 8705 names; docs/directory.md)."
CREATE = Body(
    (
        Field("name", Kind.STRING, "Display name.", required=True, max_length=MAX_NAME_LENGTH),
        Field("clientId", Kind.STRING, "The client_id (default: generated).", max_length=256),
        Field("metadata", Kind.OBJECT, _METADATA, required=True),
    )
)
UPDATE = Body(
    (
        _NAME,
        Field("status", Kind.STRING, "ACTIVE or INACTIVE.", enum=tuple(s.value for s in AppStatus)),
        Field("metadata", Kind.OBJECT, _METADATA + " Replaces them all."),
    )
)
_READ, _MANAGE = Permission.APPS_READ, Permission.APPS_MANAGE

OPERATIONS = (
    Operation("GET", APPS, "List apps", TAG, _READ, list_apps, paged=True),
    Operation("POST", APPS, "Register an app", TAG, _MANAGE, create_app, body=CREATE, status=201),
    Operation("GET", APP, "Show an app", TAG, _READ, show_app),
    Operation("PATCH", APP, "Change an app", TAG, _MANAGE, update_app, body=UPDATE),
    Operation("DELETE", APP, "Delete an app", TAG, _MANAGE, delete_app, status=204),
    Operation("POST", APP + "/secret", "Rotate an app's client secret", TAG, _MANAGE,
              rotate_secret),
)  # fmt: skip
