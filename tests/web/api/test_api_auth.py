"""``certbound.web.auth.authenticate``: the role check of admin routes served outside the
API package, by the permission the route table gives them; a route the table does not know
is refused to every role (fail closed)."""

from __future__ import annotations

from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from certbound.admin.roles import Role
from certbound.web.auth import authenticate


async def experimental(request: Request) -> Response:
    token = await run_in_threadpool(authenticate, request)
    return JSONResponse({"tokenId": token.id})


def test_simulate_is_checked_as_a_read(api: Any, refused: Any) -> None:
    response = api.call(Role.READ_ONLY_ADMIN, "POST", "/api/v1/policies/simulate", json={})
    assert response.status_code == 400, response.text
    refused(api.call(None, "POST", "/api/v1/policies/simulate", json={}), 401,
            "AUTHENTICATION_REQUIRED")  # fmt: skip
    assert api.events("admin.access.deny") == []


def test_a_route_without_a_permission_is_refused_to_every_role(
    app: Starlette, live: Any, api: Any, refused: Any
) -> None:
    app.router.routes.insert(0, Route("/api/v1/experimental", experimental, methods=["GET"]))
    url = live(app).url + "/api/v1/experimental"
    for role in Role:
        response = httpx.get(url, headers=api.headers(role))
        body = refused(response, 403, "FORBIDDEN_ROLE")
        assert "no permission in the role table" in body["detail"]
    refused(httpx.get(url), 401, "AUTHENTICATION_REQUIRED")
    denied = api.events("admin.access.deny")
    assert len(denied) == len(Role)
    assert {e["debugContext"]["debugData"]["route"] for e in denied} == {"GET /api/v1/experimental"}
