"""System Log queries with the semantics of Okta's ``GET /api/v1/logs``: :class:`LogQuery`,
:func:`search` and the opaque paging cursor. The HTTP route and the CLI call :func:`search`.

Parameters (all optional):

- ``filter``: a SCIM filter (:mod:`certbound.syslog.filter`); an unusable one raises
  :class:`~certbound.syslog.filter.FilterError`.
- ``q``: up to :data:`MAX_KEYWORDS` space-separated keywords of at most
  :data:`MAX_KEYWORD_LENGTH` characters. An event matches when *every* keyword appears,
  case-insensitively, in at least one of :data:`KEYWORD_COLUMNS`: the display message, the event
  type, the actor's alternate id, the outcome reason, the device certificate's subject DN or a
  target id. ``%`` and ``_`` match themselves.
- ``since`` (inclusive, default ``now`` minus 7 days) and ``until`` (exclusive) bound
  ``published``; ``until`` must be later than ``since``.
- ``limit``: 1 to :data:`MAX_LIMIT` events per page, default :data:`DEFAULT_LIMIT`.
- ``after``: the cursor of the previous page; ``sort_order``: ``ASCENDING`` or ``DESCENDING``.

Events come in ``(published, seq)`` order (reversed for ``DESCENDING``); ``seq`` breaks ties
between events published in the same microsecond, so paging never skips or repeats one.

Two modes, as in Okta:

- **Bounded** (``until`` given): the next cursor is present only while more events remain.
- **Polling** (no ``until``): the next cursor is always present, also on an empty page (it then
  points at the same position), so a client can poll it for events recorded later. Polling is
  ``ASCENDING`` only. A poller sees events in ``published`` order; an event written late with an
  older ``published`` than one already returned (a replayed spool, a writer whose clock lags) is
  not returned to a poller that has moved past it (a bounded query over that window finds it).

Every invalid parameter raises :class:`QueryError`, naming the parameter.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, or_, select, tuple_

from certbound.clock import as_utc, format_rfc3339, parse_rfc3339
from certbound.storage.database import Database
from certbound.storage.models import LogEvent
from certbound.syslog.filter import LIKE_ESCAPE, FilterError, like_escape, parse_filter

__all__ = [
    "DEFAULT_LIMIT",
    "KEYWORD_COLUMNS",
    "MAX_LIMIT",
    "FilterError",
    "LogPage",
    "LogQuery",
    "Position",
    "QueryError",
    "SortOrder",
    "decode_cursor",
    "encode_cursor",
    "parse_instant",
    "search",
    "statement",
]

SortOrder = Literal["ASCENDING", "DESCENDING"]
SORT_ORDERS: tuple[SortOrder, ...] = ("ASCENDING", "DESCENDING")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
DEFAULT_WINDOW = dt.timedelta(days=7)
MAX_KEYWORDS = 10
MAX_KEYWORD_LENGTH = 40
MAX_CURSOR_LENGTH = 256

# What ``q`` searches (documented above and in the query API's docs).
KEYWORD_COLUMNS = (
    LogEvent.display_message,
    LogEvent.event_type,
    LogEvent.actor_alternate_id,
    LogEvent.outcome_reason,
    LogEvent.device_subject_dn,
    LogEvent.target_ids,
)


class QueryError(ValueError):
    """A query parameter that cannot be used; ``parameter`` names it (Okta's spelling)."""

    def __init__(self, message: str, parameter: str) -> None:
        super().__init__(message)
        self.message = message
        self.parameter = parameter


@dataclass(frozen=True, slots=True)
class LogQuery:
    """One page request. Constructing never fails; :func:`search` validates."""

    filter: str | None = None
    q: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    limit: int = DEFAULT_LIMIT
    after: str | None = None
    sort_order: SortOrder = "ASCENDING"

    @property
    def polling(self) -> bool:
        """No ``until``: the caller follows the next cursor for events still to come."""
        return self.until is None


@dataclass(frozen=True, slots=True)
class LogPage:
    """One page: the events' JSON objects, and the cursor of the next page (None: no more)."""

    events: list[dict[str, Any]]
    next_cursor: str | None
    polling: bool


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ended: the last event's ``published`` and ``seq``."""

    published: dt.datetime
    seq: int


_CURSOR_VERSION = 1
_CURSOR_CONTEXT = b"certbound.syslog.cursor\n"
_BAD_CURSOR = (
    "after is not a cursor this server issued for this sortOrder (it is altered, truncated or "
    "from another query); start again without after"
)


def _check(raw: bytes) -> bytes:
    """A checksum that catches an altered or truncated cursor. It is not a secret MAC and need
    not be: a cursor only names a position in the log, which grants nothing."""
    return hashlib.sha256(_CURSOR_CONTEXT + raw).hexdigest()[:24].encode()


def encode_cursor(position: Position, sort_order: SortOrder) -> str:
    """The opaque ``after`` value for a position (urlsafe base64, no padding)."""
    published = as_utc(position.published).isoformat(timespec="microseconds")
    raw = json.dumps(
        [_CURSOR_VERSION, sort_order[0], published, position.seq], separators=(",", ":")
    ).encode()
    return base64.urlsafe_b64encode(raw + b"." + _check(raw)).rstrip(b"=").decode()


def decode_cursor(cursor: str, sort_order: SortOrder) -> Position:
    """The position an ``after`` value names; QueryError unless this module made it."""
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH or not cursor.isascii():
        raise QueryError(_BAD_CURSOR, "after")
    try:
        data = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise QueryError(_BAD_CURSOR, "after") from None
    raw, _, check = data.rpartition(b".")
    if not hmac.compare_digest(check, _check(raw)):
        raise QueryError(_BAD_CURSOR, "after")
    try:
        version, order, published, seq = json.loads(raw)
        when = dt.datetime.fromisoformat(published)
    except (ValueError, TypeError):
        raise QueryError(_BAD_CURSOR, "after") from None
    valid = (
        version == _CURSOR_VERSION
        and order == sort_order[0]
        and when.tzinfo is not None
        and type(seq) is int
        and seq >= 0
    )
    if not valid:
        raise QueryError(_BAD_CURSOR, "after")
    return Position(as_utc(when), seq)


def _text_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def keyword_condition(q: str) -> ColumnElement[bool]:
    """Every keyword appears (case-insensitively) in one of :data:`KEYWORD_COLUMNS`."""
    words = q.split()
    if not words:
        raise QueryError("q has no keywords; leave q out to match every event", "q")
    if len(words) > MAX_KEYWORDS:
        raise QueryError(f"q has {len(words)} keywords; at most {MAX_KEYWORDS} are allowed", "q")
    for word in words:
        if len(word) > MAX_KEYWORD_LENGTH:
            raise QueryError(
                f"q keyword {word[:MAX_KEYWORD_LENGTH]!r}... is longer than "
                f"{MAX_KEYWORD_LENGTH} characters",
                "q",
            )
        if not _text_ok(word):
            raise QueryError("q contains a NUL character or an invalid surrogate", "q")
    return and_(
        *(
            or_(*(c.ilike(f"%{like_escape(w)}%", escape=LIKE_ESCAPE) for c in KEYWORD_COLUMNS))
            for w in words
        )
    )


def _limit(limit: object) -> int:
    if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit must be an integer from 1 to {MAX_LIMIT}, not {limit!r}", "limit")
    return limit


def _instant(value: object, parameter: str) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise QueryError(f"{parameter} must be a date-time, not {value!r}", parameter)
    return as_utc(value)


@dataclass(frozen=True, slots=True)
class _Plan:
    """A validated query: the WHERE conditions and where paging starts."""

    conditions: list[ColumnElement[bool]]
    start: Position
    limit: int
    descending: bool


def _window(query: LogQuery, now: dt.datetime) -> tuple[dt.datetime, dt.datetime | None]:
    since = as_utc(now) - DEFAULT_WINDOW if query.since is None else _instant(query.since, "since")
    if query.until is None:
        return since, None
    until = _instant(query.until, "until")
    if until <= since:
        default = " (since defaults to 7 days before now)" if query.since is None else ""
        raise QueryError(
            f"until ({format_rfc3339(until)}) must be later than since "
            f"({format_rfc3339(since)}){default}",
            "until",
        )
    return since, until


def _plan(query: LogQuery, now: dt.datetime) -> _Plan:
    limit = _limit(query.limit)
    if query.sort_order not in SORT_ORDERS:
        raise QueryError(
            f"sortOrder must be ASCENDING or DESCENDING, not {query.sort_order!r}", "sortOrder"
        )
    descending = query.sort_order == "DESCENDING"
    if descending and query.polling:
        raise QueryError(
            "sortOrder=DESCENDING needs a bounded query: give until (polling, without until, "
            "is ASCENDING only)",
            "sortOrder",
        )
    since, until = _window(query, now)
    conditions: list[ColumnElement[bool]] = [LogEvent.published >= since]
    if until is not None:
        conditions.append(LogEvent.published < until)
    start = Position(since, 0)
    if query.after is not None:
        start = decode_cursor(query.after, query.sort_order)
        key = tuple_(LogEvent.published, LogEvent.seq)
        position = (start.published, start.seq)
        conditions.append(key < position if descending else key > position)
    if query.q is not None:
        conditions.append(keyword_condition(query.q))
    if query.filter is not None:
        conditions.append(parse_filter(query.filter))
    return _Plan(conditions, start, limit, descending)


def _select(plan: _Plan, polling: bool) -> Select[tuple[dt.datetime, int, str]]:
    order = (
        (LogEvent.published.desc(), LogEvent.seq.desc())
        if plan.descending
        else (LogEvent.published.asc(), LogEvent.seq.asc())
    )
    # Bounded mode reads one event more, to know whether a next page exists.
    fetch = plan.limit if polling else plan.limit + 1
    return (
        select(LogEvent.published, LogEvent.seq, LogEvent.body)
        .where(*plan.conditions)
        .order_by(*order)
        .limit(fetch)
    )


def statement(query: LogQuery, now: dt.datetime) -> Select[tuple[dt.datetime, int, str]]:
    """The SELECT :func:`search` runs for ``query`` (for EXPLAIN); raises like search."""
    return _select(_plan(query, now), query.polling)


def search(db: Database, query: LogQuery, now: dt.datetime) -> LogPage:
    """One page of events matching ``query``; raises QueryError or FilterError."""
    plan = _plan(query, now)
    with db.session() as session:
        rows = session.execute(_select(plan, query.polling)).all()
    page = rows[: plan.limit]
    events = [json.loads(row.body) for row in page]
    if page:
        last: Position | None = Position(page[-1].published, page[-1].seq)
    else:
        last = plan.start if query.polling else None
    more = query.polling or len(rows) > plan.limit
    cursor = encode_cursor(last, query.sort_order) if more and last is not None else None
    return LogPage(events=events, next_cursor=cursor, polling=query.polling)


def parse_instant(text: str, parameter: str) -> dt.datetime:
    """A ``since``/``until`` from a URL or the command line: RFC 3339 (a date alone means its
    midnight, no offset means UTC); QueryError if unusable."""
    try:
        return parse_rfc3339(text)
    except (ValueError, OverflowError):
        raise QueryError(
            f"{parameter} must be an RFC 3339 date-time such as 2025-01-31T08:00:00Z, not {text!r}",
            parameter,
        ) from None
