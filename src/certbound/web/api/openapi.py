"""The OpenAPI 3.1 document of the admin API, built from the same operation table as its
routes, and ``GET /api/v1/openapi.json``, which serves it (public: it holds no secret).

Each operation lists its path and query parameters, its request body (the JSON schema of
its fields, ``additionalProperties: false``; PEM media types for a CA upload), its success
status and the problem+json errors, its permission (``x-certbound-permission``) and its
security: the bearer API token, or none for the public routes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from certbound import __version__
from certbound.web.api.body import JSON, PEM_TYPES, Body
from certbound.web.api.operation import Operation
from certbound.web.api.pagination import MAX_LIMIT
from certbound.web.problem import PROBLEM_JSON
from certbound.web.responses import FastJSONResponse

PATH = "/api/v1/openapi.json"
_PARAM = re.compile(r"{([A-Za-z]+)}")
PROBLEM = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "reason": {"type": ["string", "null"]},
        "fix": {"type": "string"},
    },
    "required": ["type", "title", "status", "detail", "reason"],
}
_ERRORS = {
    "400": "Bad parameters or body (INVALID_QUERY, INVALID_REQUEST_BODY, a library's code)",
    "401": "No token, or an unusable one (AUTHENTICATION_REQUIRED, INVALID_TOKEN)",
    "403": "The token's role does not allow it (FORBIDDEN_ROLE)",
    "404": "No such object (its *_NOT_FOUND code)",
    "409": "A conflict with what is stored",
    "413": "The body is larger than 1 MiB",
    "415": "A content type the route does not take",
}


def operation_id(op: Operation) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", op.path.removeprefix("/api/v1/")).strip("_")
    return f"{op.method.lower()}_{words}"


def _parameters(op: Operation) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAM.findall(op.path)
    ]
    for param in op.query:
        schema: dict[str, Any] = {"type": "string"}
        if param.enum:
            schema["enum"] = list(param.enum)
        params.append(
            {"name": param.name, "in": "query", "description": param.description, "schema": schema}
        )
    if op.paged:
        limit = {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50}
        params.append({"name": "limit", "in": "query", "schema": limit})
        params.append(
            {"name": "after", "in": "query", "schema": {"type": "string"}, "description": "cursor"}
        )
    return params


def _request_body(body: Body) -> dict[str, Any]:
    content: dict[str, Any] = {JSON: {"schema": body.schema()}}
    if body.pem:
        content.update({kind: {"schema": {"type": "string"}} for kind in PEM_TYPES})
    return {"required": body.required, "content": content}


def _responses(op: Operation) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "Success"}
    if op.status != 204:
        schema = {"type": "array"} if op.paged else {}
        ok["content"] = {JSON: {"schema": schema}}
    responses: dict[str, Any] = {str(op.status): ok}
    problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for status, description in _ERRORS.items():
        responses[status] = {"description": description, "content": problem}
    return responses


def _operation(op: Operation) -> dict[str, Any]:
    item: dict[str, Any] = {
        "operationId": operation_id(op),
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": _parameters(op),
        "responses": _responses(op),
        "x-certbound-permission": op.permission.value if op.permission else "public",
    }
    if op.body is not None:
        item["requestBody"] = _request_body(op.body)
    if op.permission is None:
        item["security"] = []
    return item


def document(operations: Sequence[Operation]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Certbound admin API",
            "version": __version__,
            "description": "Role-checked admin API; docs/api.md and docs/roles.md.",
        },
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An admin API token: cb_<id>_<secret>.",
                }
            },
            "schemas": {"Problem": PROBLEM},
        },
        "security": [{"bearerAuth": []}],
        "paths": paths,
    }


def route(operations: Sequence[Operation]) -> Route:
    """``GET /api/v1/openapi.json`` serving the document of ``operations``."""
    built = document(operations)

    def openapi_json(_request: Request) -> Response:
        return FastJSONResponse(built)

    return Route(PATH, openapi_json, methods=["GET"])
