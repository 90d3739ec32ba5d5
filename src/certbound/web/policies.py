"""``POST /api/v1/policies/simulate``: what a sign-on policy would decide, without signing on.

The body is a JSON object: ``app`` (its id or client_id, required), ``user`` (id or
username), ``certificate`` (a PEM chain, leaf first), ``ip``, ``at`` (RFC 3339; default
now) and ``policy`` (a draft Policy JSON evaluated instead of the app's policy). The answer
is ``{"decision", "reason", "policyEvaluationDetail", "deviceTrust"}``
(:class:`~certbound.policy.simulate.Simulator`): the certificate is validated by the real
validator, the device's status read from the registry, and nothing is recorded or
registered. Like ``/api/v1/logs`` it needs an admin API token (:mod:`certbound.web.auth`).
Refusals are ``application/problem+json``: 400 ``POLICY_INVALID`` (the body, a field or the
draft; the detail names the field), 400 ``PEM_MALFORMED`` (the certificate), 404
``APP_NOT_FOUND`` / ``USER_NOT_FOUND``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from certbound.clock import parse_rfc3339
from certbound.errors import CertboundError, ReasonCode
from certbound.policy.model import invalid
from certbound.policy.simulate import Simulator
from certbound.web.auth import authenticate
from certbound.web.problem import ApiError

MAX_BODY_BYTES = 1024 * 1024
FIELDS = ("app", "user", "certificate", "ip", "at", "policy")
_MAX_NAME = 256  # an id, client_id or username
_MAX_LENGTH = {"certificate": 64 * 1024, "ip": 64, "at": 64}
_NOT_FOUND = frozenset({ReasonCode.APP_NOT_FOUND, ReasonCode.USER_NOT_FOUND})


def _refusal(error: CertboundError) -> ApiError:
    return ApiError(404 if error.reason in _NOT_FOUND else 400, error.reason, error.detail)


async def _body(request: Request) -> dict[str, Any]:
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BODY_BYTES:
            raise invalid("(body)", f"larger than {MAX_BODY_BYTES} bytes")
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise invalid("(body)", "is not JSON") from None
    if not isinstance(body, dict):
        raise invalid("(body)", "must be a JSON object")
    for key in body:
        if key not in FIELDS:
            raise invalid(str(key), f"unknown field; the fields are {', '.join(FIELDS)}")
    return body


def _text(body: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise invalid(key, "is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise invalid(key, "must be a non-empty string")
    limit = _MAX_LENGTH.get(key, _MAX_NAME)
    if len(value) > limit:
        raise invalid(key, f"at most {limit} characters")
    if "\x00" in value:  # no database takes it; PostgreSQL refuses it outright
        raise invalid(key, "must not contain NUL characters")
    return value


def _at(body: dict[str, Any]) -> dt.datetime | None:
    text = _text(body, "at")
    if text is None:
        return None
    try:
        return parse_rfc3339(text)
    except ValueError:
        raise invalid("at", f"{text!r} is not an RFC 3339 time") from None


def _simulate(simulator: Simulator, body: dict[str, Any]) -> dict[str, Any]:
    certificate = _text(body, "certificate")
    draft = body.get("policy")
    app = _text(body, "app", required=True)
    assert app is not None
    return simulator.run(
        app,
        user=_text(body, "user"),
        certificate=certificate.encode() if certificate is not None else None,
        ip=_text(body, "ip"),
        at=_at(body),
        draft=draft,
    ).to_dict()


async def simulate(request: Request) -> Response:
    await run_in_threadpool(authenticate, request)
    simulator: Simulator = request.app.state.simulator
    try:
        body = await _body(request)
        answer = await run_in_threadpool(_simulate, simulator, body)
    except CertboundError as error:
        raise _refusal(error) from None
    return JSONResponse(answer, headers={"Cache-Control": "no-store"})


ROUTES = [Route("/api/v1/policies/simulate", simulate, methods=["POST"])]
