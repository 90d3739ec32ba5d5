"""``GET /api/v1/logs``: the System Log over HTTP, with Okta's query semantics.

Parameters: ``filter`` (SCIM expression), ``q`` (words), ``since`` and ``until`` (RFC 3339),
``limit`` (1..1000, default 100), ``after`` (the opaque cursor of a ``next`` link) and
``sortOrder`` (``ASCENDING``, the default, or ``DESCENDING``, which needs ``until``).
Without ``until`` the query is in *polling* mode and the response always has a
``rel="next"`` link (poll it for new events); with ``until`` it is *bounded* and ``next``
appears only while more events match. :mod:`certbound.syslog.query` defines the meaning
of every parameter and validates them; a bad filter is a 400 ``INVALID_FILTER``, any other
bad parameter a 400 ``INVALID_QUERY`` (:mod:`certbound.web.problem`).

The caller needs an admin API token whose role holds ``logs.read`` (every role does;
:func:`certbound.web.api.access.admit`: 401 without a usable token, 403 and an
``admin.access.deny`` event without the permission). ``rel="self"`` is always present. Links
are absolute URLs built from the request, keeping every other parameter and replacing
``after``.

Unlike Okta, an unknown or repeated parameter is a 400 (``INVALID_QUERY``), so a typo
such as ``fliter=`` cannot silently return every event. The body is a JSON array of
events (``Event.to_dict()``'s shape).
"""

from __future__ import annotations

import datetime as dt
from typing import cast

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from certbound.admin.roles import Permission
from certbound.clock import Clock
from certbound.errors import ReasonCode
from certbound.storage.database import Database
from certbound.syslog.query import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    LogPage,
    LogQuery,
    SortOrder,
    parse_instant,
    search,
)
from certbound.web.api.access import admit
from certbound.web.problem import ApiError

PARAMETERS = ("filter", "q", "since", "until", "limit", "after", "sortOrder")
PATH = "/api/v1/logs"


def _invalid(detail: str) -> ApiError:
    return ApiError(400, ReasonCode.INVALID_QUERY, detail)


def _single_values(request: Request) -> dict[str, str]:
    """Each parameter's one value; unknown and repeated parameters are refused."""
    values: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in PARAMETERS:
            raise _invalid(
                f"unknown query parameter {name!r}; the parameters are {', '.join(PARAMETERS)}"
            )
        if name in values:
            raise _invalid(f"query parameter {name!r} is given more than once")
        values[name] = value
    return values


def _time(values: dict[str, str], name: str) -> dt.datetime | None:
    text = values.get(name)
    return None if text is None else parse_instant(text, name)


def _limit(values: dict[str, str]) -> int:
    """The limit as a number; its range is checked by :func:`search` like every value."""
    text = values.get("limit")
    if text is None:
        return DEFAULT_LIMIT
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        raise _invalid(f"limit must be an integer from 1 to {MAX_LIMIT}, not {text!r}")
    return int(text)


def parse_query(request: Request) -> LogQuery:
    """The LogQuery the request's parameters ask for (ApiError when they are invalid)."""
    values = _single_values(request)
    return LogQuery(
        filter=values.get("filter"),
        q=values.get("q"),
        since=_time(values, "since"),
        until=_time(values, "until"),
        limit=_limit(values),
        after=values.get("after"),
        sort_order=cast(SortOrder, values.get("sortOrder", "ASCENDING")),
    )


def link_header(request: Request, page: LogPage) -> str:
    """``rel="self"`` and, when there is a next page, ``rel="next"``."""
    links = [f'<{request.url}>; rel="self"']
    if page.next_cursor is not None:
        links.append(f'<{request.url.include_query_params(after=page.next_cursor)}>; rel="next"')
    return ", ".join(links)


def list_logs(request: Request) -> Response:
    admit(request, Permission.LOGS_READ, "GET", PATH)
    query = parse_query(request)
    database: Database = request.app.state.database
    clock: Clock = request.app.state.clock
    page = search(database, query, clock.now())
    headers = {"Link": link_header(request, page), "Cache-Control": "no-store"}
    return JSONResponse(page.events, headers=headers)


ROUTES = [Route(PATH, list_logs, methods=["GET"])]
