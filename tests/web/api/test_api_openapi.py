"""``GET /api/v1/openapi.json`` matches the routes: every ``/api/v1`` route of the router is
an operation of the document and the other way round, with its path parameters, its
permission (the role table's), a strict body schema, and no security only when public."""

from __future__ import annotations

import re
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.routing import Route

from certbound.web.api import PERMISSIONS

METHODS = {"get", "post", "put", "patch", "delete"}


def api_routes(app: Starlette) -> set[str]:
    keys = set()
    for route in app.routes:
        assert isinstance(route, Route)
        if route.path.startswith("/api/v1/"):
            keys |= {f"{m} {route.path}" for m in (route.methods or set()) - {"HEAD"}}
    return keys


def operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{method.upper()} {path}": item
        for path, methods in document["paths"].items()
        for method, item in methods.items()
        if method in METHODS
    }


def test_the_document_matches_the_router(base_url: str, app: Starlette) -> None:
    response = httpx.get(base_url + "/api/v1/openapi.json")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["openapi"].startswith("3.1")
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    found = operations(document)
    assert set(found) == api_routes(app)
    ids = [item["operationId"] for item in found.values()]
    assert len(ids) == len(set(ids))
    for key, item in found.items():
        path = key.split(" ", 1)[1]
        declared = {p["name"] for p in item["parameters"] if p["in"] == "path"}
        assert declared == set(re.findall(r"{(\w+)}", path)), key
        permission = PERMISSIONS[key]
        assert item["x-certbound-permission"] == (permission or "public"), key
        assert (item.get("security") == []) == (permission is None), key
        body = item.get("requestBody")
        if body is not None:
            schema = body["content"]["application/json"]["schema"]
            assert schema["additionalProperties"] is False, key


def test_paged_routes_declare_limit_and_after(base_url: str) -> None:
    document = httpx.get(base_url + "/api/v1/openapi.json").json()
    users = document["paths"]["/api/v1/users"]["get"]
    limit = next(p for p in users["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 200)
    assert {p["name"] for p in users["parameters"]} == {"status", "limit", "after"}
    upload = document["paths"]["/api/v1/trust/cas"]["post"]["requestBody"]["content"]
    assert set(upload) == {"application/json", "text/plain", "application/x-pem-file"}
