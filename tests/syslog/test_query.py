"""System Log queries on SQLite and PostgreSQL: the time window, bounded and polling paging with
the opaque cursor, sort order, keywords, filters, and every parameter check."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json

import pytest
from sqlalchemy import insert

from certbound.errors import ReasonCode
from certbound.storage.database import Database
from certbound.storage.models import LogEvent
from certbound.syslog import chain
from certbound.syslog.events import Actor, Event, EventType, Outcome, Result, Target
from certbound.syslog.filter import FilterError
from certbound.syslog.query import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    LogPage,
    LogQuery,
    Position,
    QueryError,
    decode_cursor,
    encode_cursor,
    parse_instant,
    search,
    statement,
)
from certbound.syslog.rows import event_row

NOW = dt.datetime(2025, 3, 8, 12, 0, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)


def make_event(label: str, published: dt.datetime, **kw: object) -> Event:
    fields: dict[str, object] = {
        "event_type": EventType.DEVICE_TRUST_VERIFY,
        "display_message": f"{label}: device certificate verified",
        "outcome": Outcome(Result.SUCCESS),
        **kw,
    }
    return Event(**fields, published=published)  # type: ignore[arg-type]


def insert_events(db: Database, events: list[Event]) -> None:
    """One insert per event, so seq follows the list order."""
    with db.session() as session:
        for event in events:
            row = {**event_row(event), "prev_hash": "0" * 64, "hash": "0" * 64}
            session.execute(insert(LogEvent), [row])


def labels(page: LogPage) -> list[str]:
    return [e["displayMessage"].split(":")[0] for e in page.events]


def follow(db: Database, query: LogQuery) -> tuple[list[str], int]:
    """Every label of a bounded query, following next cursors; and the number of pages."""
    seen: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        page = search(db, dataclasses.replace(query, after=cursor), NOW)
        pages += 1
        seen += labels(page)
        if page.next_cursor is None:
            return seen, pages
        assert pages < 100, "paging does not end"
        cursor = page.next_cursor


@pytest.fixture
def spread(database: Database) -> list[str]:
    """21 events: e00..e20, one a minute from NOW-2h, where e05..e09 share one instant."""
    start = NOW - dt.timedelta(hours=2)
    events = []
    for i in range(21):
        when = start + (5 if 5 <= i <= 9 else i) * MINUTE
        events.append(make_event(f"e{i:02d}", when))
    insert_events(database, events)
    return [f"e{i:02d}" for i in range(21)]


def test_returns_the_stored_event_json(database: Database) -> None:
    event = make_event(
        "only",
        NOW - MINUTE,
        targets=(Target("dev-1", "Device"),),
        outcome=Outcome(Result.FAILURE, ReasonCode.UNKNOWN_CA),
    )
    insert_events(database, [event])
    page = search(database, LogQuery(), NOW)
    assert page.events == [event.to_dict()]
    assert page.polling


def test_default_window_is_the_last_seven_days(database: Database) -> None:
    insert_events(
        database,
        [
            make_event("old", NOW - dt.timedelta(days=7, seconds=1)),
            make_event("edge", NOW - dt.timedelta(days=7)),  # since is inclusive
            make_event("recent", NOW - MINUTE),
        ],
    )
    assert labels(search(database, LogQuery(), NOW)) == ["edge", "recent"]
    old = LogQuery(since=NOW - dt.timedelta(days=8), until=NOW)
    assert labels(search(database, old, NOW)) == ["old", "edge", "recent"]


def test_until_is_exclusive(database: Database, spread: list[str]) -> None:
    start = NOW - dt.timedelta(hours=2)
    query = LogQuery(since=start + 10 * MINUTE, until=start + 12 * MINUTE)
    assert labels(search(database, query, NOW)) == ["e10", "e11"]


@pytest.mark.parametrize("limit", [1, 4, 7, 20, 21, 22, 1000])
def test_bounded_paging_returns_every_event_once_in_order(
    database: Database, spread: list[str], limit: int
) -> None:
    query = LogQuery(since=NOW - dt.timedelta(days=1), until=NOW, limit=limit)
    seen, pages = follow(database, query)
    assert seen == spread  # ties (e05..e09) in seq order, nothing skipped or repeated
    assert pages == -(-len(spread) // limit)  # no trailing empty page


@pytest.mark.parametrize("limit", [1, 3, 7, 21])
def test_descending_paging(database: Database, spread: list[str], limit: int) -> None:
    query = LogQuery(
        since=NOW - dt.timedelta(days=1), until=NOW, limit=limit, sort_order="DESCENDING"
    )
    seen, pages = follow(database, query)
    assert seen == spread[::-1]
    assert pages == -(-len(spread) // limit)


def test_polling_always_has_a_next_cursor(database: Database) -> None:
    since = NOW - dt.timedelta(hours=1)
    # Nothing yet: the page is empty and still points somewhere.
    first = search(database, LogQuery(since=since, limit=2), NOW)
    assert first.events == [] and first.polling and first.next_cursor
    insert_events(database, [make_event(f"p{i}", since + i * MINUTE) for i in range(3)])
    page = search(database, LogQuery(since=since, limit=2, after=first.next_cursor), NOW)
    assert labels(page) == ["p0", "p1"]  # p0 is published exactly at since
    page = search(database, LogQuery(since=since, limit=2, after=page.next_cursor), NOW)
    assert labels(page) == ["p2"]
    assert page.next_cursor
    empty = search(database, LogQuery(since=since, limit=2, after=page.next_cursor), NOW)
    assert empty.events == []
    assert empty.next_cursor == page.next_cursor  # the same position
    insert_events(database, [make_event("p3", since + 10 * MINUTE)])
    later = search(database, LogQuery(since=since, limit=2, after=empty.next_cursor), NOW)
    assert labels(later) == ["p3"]
    assert later.next_cursor and later.next_cursor != empty.next_cursor


def test_polling_full_page_has_a_cursor_even_when_nothing_follows(
    database: Database, spread: list[str]
) -> None:
    page = search(database, LogQuery(limit=len(spread)), NOW)
    assert labels(page) == spread
    assert page.next_cursor
    assert search(database, LogQuery(after=page.next_cursor), NOW).events == []


def test_bounded_mode_has_no_cursor_once_done(database: Database, spread: list[str]) -> None:
    page = search(database, LogQuery(since=NOW - dt.timedelta(days=1), until=NOW), NOW)
    assert len(page.events) == len(spread)
    assert page.next_cursor is None
    assert not page.polling
    empty = search(database, LogQuery(since=NOW, until=NOW + MINUTE), NOW)
    assert empty.events == [] and empty.next_cursor is None


def test_polling_is_ascending_only(database: Database) -> None:
    with pytest.raises(QueryError, match="needs a bounded query") as caught:
        search(database, LogQuery(sort_order="DESCENDING"), NOW)
    assert caught.value.parameter == "sortOrder"


def test_default_limit_is_100(database: Database) -> None:
    insert_events(database, [make_event(f"n{i}", NOW - i * MINUTE) for i in range(105)])
    assert len(search(database, LogQuery(), NOW).events) == DEFAULT_LIMIT == 100
    assert len(search(database, LogQuery(limit=MAX_LIMIT), NOW).events) == 105
    assert len(search(database, LogQuery(limit=1), NOW).events) == 1


@pytest.mark.parametrize("limit", [0, -1, 1001, 10**9, True, "10", 2.0, None])
def test_bad_limit(database: Database, limit: object) -> None:
    with pytest.raises(QueryError, match="limit must be an integer from 1 to 1000") as caught:
        search(database, LogQuery(limit=limit), NOW)  # type: ignore[arg-type]
    assert caught.value.parameter == "limit"


def test_until_must_follow_since(database: Database) -> None:
    with pytest.raises(QueryError, match="must be later than since") as caught:
        search(database, LogQuery(since=NOW, until=NOW), NOW)
    assert caught.value.parameter == "until"
    with pytest.raises(QueryError, match="since defaults to 7 days before now"):
        search(database, LogQuery(until=NOW - dt.timedelta(days=8)), NOW)
    with pytest.raises(QueryError) as caught:
        search(database, LogQuery(since="yesterday"), NOW)  # type: ignore[arg-type]
    assert caught.value.parameter == "since"


def test_naive_times_are_utc(database: Database, spread: list[str]) -> None:
    start = (NOW - dt.timedelta(hours=2)).replace(tzinfo=None)
    query = LogQuery(since=start + 10 * MINUTE, until=start + 12 * MINUTE)
    assert labels(search(database, query, NOW)) == ["e10", "e11"]


def test_bad_sort_order(database: Database) -> None:
    with pytest.raises(QueryError, match="ASCENDING or DESCENDING") as caught:
        search(database, LogQuery(until=NOW, sort_order="ascending"), NOW)  # type: ignore[arg-type]
    assert caught.value.parameter == "sortOrder"


def test_cursor_round_trips_microseconds() -> None:
    position = Position(dt.datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC), 42)
    cursor = encode_cursor(position, "ASCENDING")
    assert decode_cursor(cursor, "ASCENDING") == position
    assert "=" not in cursor and "+" not in cursor and "/" not in cursor


def _tampered(cursor: str) -> list[str]:
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    body, _, check = raw.rpartition(b".")
    forged = json.dumps([1, "A", "2025-01-01T00:00:00.000000+00:00", 1]).encode()
    flipped = cursor[:5] + ("A" if cursor[5] != "A" else "B") + cursor[6:]
    return [
        flipped,
        cursor[:-3],
        cursor + "AAAA",
        "",
        "!!!!",
        "x" * 300,
        "ünïcode",
        base64.urlsafe_b64encode(forged + b"." + check).decode(),
        base64.urlsafe_b64encode(body).decode(),
        base64.urlsafe_b64encode(b'{"seq": 1}').decode(),
    ]


def test_tampered_cursor_is_refused(database: Database, spread: list[str]) -> None:
    page = search(database, LogQuery(limit=3), NOW)
    assert page.next_cursor
    for bad in _tampered(page.next_cursor):
        with pytest.raises(QueryError, match="not a cursor this server issued") as caught:
            search(database, LogQuery(after=bad), NOW)
        assert caught.value.parameter == "after"


def test_cursor_belongs_to_its_sort_order(database: Database, spread: list[str]) -> None:
    page = search(database, LogQuery(limit=3), NOW)
    assert page.next_cursor
    with pytest.raises(QueryError, match="for this sortOrder"):
        search(
            database,
            LogQuery(until=NOW, after=page.next_cursor, sort_order="DESCENDING"),
            NOW,
        )


@pytest.fixture
def keyword_events(database: Database) -> None:
    t = NOW - dt.timedelta(hours=1)
    insert_events(
        database,
        [
            make_event("msg", t, display_message="msg: Zebra crossing 50%_off"),
            make_event("type", t, event_type=EventType.PKI_CA_EXPIRATION_WARN),
            make_event("actor", t, actor=Actor("u1", "User", "Carol@Example.com")),
            make_event("reason", t, outcome=Outcome(Result.FAILURE, ReasonCode.UNKNOWN_CA)),
            make_event(
                "subject",
                t,
                device_trust={"certificate": {"subjectDn": "CN=laptop-42,O=Acme"}},
            ),
            make_event("target", t, targets=(Target("group-xyz", "Group"),)),
        ],
    )


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("zebra", ["msg"]),
        ("ZEBRA CROSSING", ["msg"]),
        ("zebra laptop", []),  # every keyword must match
        ("50%", ["msg"]),
        ("%", ["msg"]),
        ("_", ["msg", "reason"]),  # "_" only where it really is: 50%_off, UNKNOWN_CA
        ("expiration.warn", ["type"]),
        ("carol@example", ["actor"]),
        ("unknown_ca", ["reason"]),
        ("laptop-42 acme", ["subject"]),
        ("GROUP-XYZ", ["target"]),
        ("verified", ["type", "actor", "reason", "subject", "target"]),
        ("  verified   group-xyz  ", ["target"]),
    ],
)
def test_keywords(database: Database, keyword_events: None, q: str, expected: list[str]) -> None:
    assert labels(search(database, LogQuery(q=q), NOW)) == expected


@pytest.mark.parametrize(
    ("q", "message"),
    [
        ("", "q has no keywords"),
        ("   ", "q has no keywords"),
        (" ".join(["k"] * 11), "11 keywords; at most 10"),
        ("x" * 41, "longer than 40 characters"),
        ("a\x00b", "NUL"),
        ("\ud800", "surrogate"),
    ],
)
def test_bad_keywords(database: Database, q: str, message: str) -> None:
    with pytest.raises(QueryError, match=message) as caught:
        search(database, LogQuery(q=q), NOW)
    assert caught.value.parameter == "q"


def test_ten_keywords_of_forty_characters_are_fine(database: Database) -> None:
    search(database, LogQuery(q=" ".join(["y" * 40] * 10)), NOW)


def test_filter_keywords_and_window_combine(database: Database, keyword_events: None) -> None:
    insert_events(
        database,
        [make_event("old-target", NOW - dt.timedelta(days=2), targets=(Target("group-xyz", "G"),))],
    )
    query = LogQuery(filter='target.id eq "group-xyz"', q="verified")
    assert labels(search(database, query, NOW)) == ["old-target", "target"]
    window = LogQuery(
        filter='target.id eq "group-xyz"', since=NOW - dt.timedelta(days=1), until=NOW
    )
    assert labels(search(database, window, NOW)) == ["target"]
    failing = LogQuery(filter='outcome.result eq "FAILURE"', q="zebra")
    assert labels(search(database, failing, NOW)) == []


@pytest.mark.parametrize("expr", ["", 'nope eq "x"', '(eventType eq "x"', "eventType eq 1"])
def test_bad_filter_is_a_filter_error_not_all_rows(
    database: Database, spread: list[str], expr: str
) -> None:
    with pytest.raises(FilterError):
        search(database, LogQuery(filter=expr), NOW)


def test_parse_instant() -> None:
    assert parse_instant("2025-03-08T12:00:00Z", "since") == NOW
    assert parse_instant("2025-03-08T13:00:00+01:00", "until") == NOW
    assert parse_instant("2025-03-08", "since") == NOW.replace(hour=0)
    for bad in ("last tuesday", "0001-01-01T00:00:00+01:00", ""):
        with pytest.raises(QueryError) as caught:
            parse_instant(bad, "until")
        assert caught.value.parameter == "until"


def test_statement_orders_by_published_then_seq_and_reads_one_extra_when_bounded() -> None:
    bounded = str(statement(LogQuery(until=NOW, limit=5), NOW))
    assert "ORDER BY log_events.published ASC, log_events.seq ASC" in bounded
    assert 6 in statement(LogQuery(until=NOW, limit=5), NOW).compile().params.values()
    assert 5 in statement(LogQuery(limit=5), NOW).compile().params.values()
    assert 6 not in statement(LogQuery(limit=5), NOW).compile().params.values()
    descending = str(statement(LogQuery(until=NOW, sort_order="DESCENDING"), NOW))
    assert "ORDER BY log_events.published DESC, log_events.seq DESC" in descending


def test_events_written_through_the_chain_page_correctly(database: Database) -> None:
    """The recorder's write path (chain.append) must store ``published`` exactly as the
    query binds it: on SQLite a whole-second time stored without ``.000000`` sorts before its
    own bound value, which drops the event at ``since`` and repeats one across pages."""
    start = NOW - dt.timedelta(hours=1)  # whole seconds
    events = [make_event(f"c{i}", start + i * MINUTE) for i in range(6)]
    with database.session() as session:
        chain.append(session, [event_row(e) for e in events])
    assert labels(search(database, LogQuery(since=start, until=NOW), NOW)) == [
        f"c{i}" for i in range(6)
    ]
    query = LogQuery(since=start, until=NOW, limit=4, sort_order="DESCENDING")
    assert follow(database, query) == ([f"c{i}" for i in range(5, -1, -1)], 2)
