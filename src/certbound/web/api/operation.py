"""One admin API route as data (:class:`Operation`), and the endpoint that serves it.

An operation names its method, path, permission (None: public), query parameters, body
and handler. The same table gives the Starlette routes (:func:`route`), the OpenAPI
document (:mod:`certbound.web.api.openapi`) and the permission matrix of
``docs/roles.md``, so a route cannot exist without a permission.

The endpoint runs, in order: :func:`certbound.web.api.access.admit` (401, then 403 with an
``admin.access.deny`` event), the path parameters (an id no object can have, such as one
holding a control character, is the resource's 404), the query parameters (an unknown or
repeated one is a 400 ``INVALID_QUERY``), the body (:func:`certbound.web.api.body.read`),
then the handler in a worker thread with a :class:`Call`. Library refusals become
problem+json in :mod:`certbound.web.problem`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from certbound.admin.events import audited
from certbound.admin.roles import Permission
from certbound.errors import ReasonCode
from certbound.syslog.events import Event
from certbound.syslog.recorder import EventRecorder
from certbound.web.api import access, body
from certbound.web.api.access import Caller
from certbound.web.api.body import Body
from certbound.web.api.pagination import NO_STORE, PARAMETERS, PageRequest, invalid_query
from certbound.web.problem import ApiError
from certbound.web.responses import FastJSONResponse

MAX_ID_LENGTH = 256
# The reason of a 404 for each path segment's id (the segment before ``{param}``).
NOT_FOUND = {
    "cas": ReasonCode.CA_NOT_FOUND,
    "policies": ReasonCode.POLICY_NOT_FOUND,
    "rules": ReasonCode.RULE_NOT_FOUND,
    "apps": ReasonCode.APP_NOT_FOUND,
    "users": ReasonCode.USER_NOT_FOUND,
    "groups": ReasonCode.GROUP_NOT_FOUND,
    "devices": ReasonCode.DEVICE_NOT_FOUND,
    "admins": ReasonCode.ADMIN_NOT_FOUND,
    "tokens": ReasonCode.TOKEN_NOT_FOUND,
    "zones": ReasonCode.ZONE_NOT_FOUND,
}


@dataclass(frozen=True, slots=True)
class Param:
    """A query parameter (every one is optional)."""

    name: str
    description: str
    enum: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Call:
    """What a handler gets: the request, its caller, and its checked parameters and body."""

    request: Request
    caller: Caller
    path: Mapping[str, str]
    query: Mapping[str, str]
    body: Any

    @property
    def state(self) -> State:
        state: State = self.request.app.state
        return state

    @property
    def page(self) -> PageRequest:
        return PageRequest.of(self.query)

    def record(
        self,
        event: Event,
        *,
        before: Mapping[str, Any] | None = None,
        after: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a change as a System Log event stamped with the caller (admin, token)."""
        recorder: EventRecorder = self.state.recorder
        recorder.record(audited(event, self.caller.context, before=before, after=after))

    def deny(self, permission: Permission, detail: str) -> NoReturn:
        """Refuse with 403 FORBIDDEN_ROLE and an admin.access.deny event."""
        access.deny(self.request, self.caller, permission.value, detail)


Handler = Callable[[Call], Response]


@dataclass(frozen=True, slots=True)
class Operation:
    """One route: ``status`` is its success status, ``paged`` adds ``limit`` and ``after``."""

    method: str
    path: str
    summary: str
    tag: str
    permission: Permission | None
    handler: Handler | None = None  # None: served by another module, described here
    body: Body | None = None
    query: tuple[Param, ...] = ()
    paged: bool = False
    status: int = 200

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def parameters(self) -> tuple[str, ...]:
        return (*(p.name for p in self.query), *(PARAMETERS if self.paged else ()))


def json_response(data: Any, status: int = 200) -> Response:
    return FastJSONResponse(data, status_code=status, headers=NO_STORE)


def no_content() -> Response:
    return Response(status_code=204, headers=NO_STORE)


def _checked_path(op: Operation, values: Mapping[str, Any]) -> dict[str, str]:
    checked = {}
    for name, value in values.items():
        text = str(value)
        if not (0 < len(text) <= MAX_ID_LENGTH and text.isprintable()):
            segments = op.path.split("/")
            before = segments[segments.index("{" + name + "}") - 1]
            reason = NOT_FOUND.get(before, ReasonCode.INVALID_QUERY)
            raise ApiError(404, reason, f"no object has the id {text[:MAX_ID_LENGTH]!r}")
        checked[name] = text
    return checked


def _checked_query(op: Operation, request: Request) -> dict[str, str]:
    allowed = op.parameters
    values: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in allowed:
            known = ", ".join(allowed) or "none"
            raise invalid_query(f"unknown query parameter {name!r}; the parameters are {known}")
        if name in values:
            raise invalid_query(f"query parameter {name!r} is given more than once")
        if not value.isprintable() or len(value) > 1024:
            raise invalid_query(f"query parameter {name!r} holds control characters or is too long")
        values[name] = value
    for param in op.query:
        given = values.get(param.name)
        if param.enum and given is not None and given not in param.enum:
            choices = ", ".join(param.enum)
            raise invalid_query(f"{param.name} must be one of {choices}, not {given!r}")
    return values


def route(op: Operation) -> Route:
    """The Starlette route serving ``op`` (see the module docstring)."""
    handler = op.handler
    permission = op.permission
    assert handler is not None and permission is not None, op.key

    async def endpoint(request: Request) -> Response:
        caller = await run_in_threadpool(access.admit, request, permission, op.method, op.path)
        path = _checked_path(op, request.path_params)
        query = _checked_query(op, request)
        payload = await body.read(request, op.body)
        call = Call(request, caller, path, query, payload)
        return await run_in_threadpool(handler, call)

    return Route(op.path, endpoint, methods=[op.method], name=op.key)
