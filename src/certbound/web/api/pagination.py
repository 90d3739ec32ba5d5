"""Pagination of the admin API's lists: ``limit`` and ``after``, and the ``Link`` header.

Every list route takes ``limit`` (1 to 200, default 50) and ``after``, the opaque cursor of
the previous page's ``rel="next"`` link (in practice the id of its last item). The body is
a JSON array; the ``Link`` header always has ``rel="self"`` and, while more items follow,
``rel="next"``: an absolute URL that keeps every other parameter and replaces ``after``.
A ``limit`` out of range, or an ``after`` that is not a cursor of this list, is a 400
``INVALID_QUERY``. (``GET /api/v1/logs`` pages the same way with its own limits:
:mod:`certbound.web.logs`.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from certbound.errors import CertboundError, ReasonCode
from certbound.web.problem import NOT_FOUND, ApiError
from certbound.web.responses import FastJSONResponse

DEFAULT_LIMIT, MAX_LIMIT = 50, 200
PARAMETERS = ("limit", "after")
NO_STORE = {"Cache-Control": "no-store"}

T = TypeVar("T")


def invalid_query(detail: str) -> ApiError:
    return ApiError(400, ReasonCode.INVALID_QUERY, detail)


@dataclass(frozen=True, slots=True)
class PageRequest:
    limit: int = DEFAULT_LIMIT
    after: str | None = None

    @classmethod
    def of(cls, query: Mapping[str, str]) -> PageRequest:
        """From the query parameters (ApiError INVALID_QUERY for a bad limit)."""
        text = query.get("limit")
        limit = DEFAULT_LIMIT
        if text is not None:
            if not (text.isascii() and text.isdigit() and len(text) <= 9):
                raise invalid_query(f"limit must be an integer from 1 to {MAX_LIMIT}, not {text!r}")
            limit = int(text)
            if not 1 <= limit <= MAX_LIMIT:
                raise invalid_query(f"limit must be from 1 to {MAX_LIMIT}, not {limit}")
        after = query.get("after")
        if after is not None and not after:
            raise invalid_query("after is empty: pass the cursor of a rel=next link")
        return cls(limit, after)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_after: str | None


def _unknown_cursor(after: str) -> ApiError:
    return invalid_query(
        f"after {after!r} is not a cursor of this list; copy it from a Link header"
    )


def page_of(items: Sequence[T], key: Callable[[T], str], request: PageRequest) -> Page[T]:
    """A page of a list held in memory (``key``: an item's cursor, its id)."""
    start = 0
    if request.after is not None:
        keys = [key(item) for item in items]
        if request.after not in keys:
            raise _unknown_cursor(request.after)
        start = keys.index(request.after) + 1
    chunk = list(items[start : start + request.limit])
    more = start + request.limit < len(items)
    return Page(chunk, key(chunk[-1]) if more and chunk else None)


def fetch(
    load: Callable[[int, str | None], Sequence[T]],
    key: Callable[[T], str],
    request: PageRequest,
) -> Page[T]:
    """A page read from a library's keyset list: ``load(limit, after)`` (asked for one item
    more, to know whether a next page exists; an unknown ``after`` is INVALID_QUERY)."""
    try:
        items = list(load(request.limit + 1, request.after))
    except CertboundError as error:
        if request.after is not None and error.reason in NOT_FOUND:
            raise _unknown_cursor(request.after) from None
        raise
    more = len(items) > request.limit
    chunk = items[: request.limit]
    return Page(chunk, key(chunk[-1]) if more and chunk else None)


def link_header(request: Request, page: Page[Any]) -> str:
    links = [f'<{request.url}>; rel="self"']
    if page.next_after is not None:
        links.append(f'<{request.url.include_query_params(after=page.next_after)}>; rel="next"')
    return ", ".join(links)


def response(request: Request, page: Page[T], render: Callable[[T], Any]) -> Response:
    """The page as a JSON array with its ``Link`` header."""
    headers = {"Link": link_header(request, page), **NO_STORE}
    return FastJSONResponse([render(item) for item in page.items], headers=headers)
