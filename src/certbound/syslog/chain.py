"""The System Log hash chain: appending events to it and verifying it.

Every stored event carries ``prev_hash`` (the hash of the event before it, or of the anchor)
and ``hash = sha256_hex(prev_hash + "\\n" + body)`` where ``body`` is the canonical JSON of
the event (:func:`certbound.syslog.rows.canonical_json`, pure ASCII) encoded as UTF-8. The
``log_chain`` row (id 1) holds the head (``last_seq``/``last_hash``) and the anchor the last
retention purge left (``anchor_seq``/``anchor_hash``; the genesis anchor is 64 zeros).

:func:`append` is the only writer. It takes the chain-head write lock first (an ``UPDATE`` of
the head row: a row lock on PostgreSQL, the database write lock on SQLite), so any number of
threads and processes append one after another and ``seq`` runs without gaps in chain order.

:func:`verify_chain` walks from the anchor in ``seq`` order, streaming, and names the first
event that was edited (its hash, or a column, no longer matches its body), inserted or
reordered (it does not follow the event before it, but the next one does), or the first
event after a deletion. Someone who can write the database can of course rewrite the whole
chain and its head; the chain makes edits *evident*, it does not make them impossible: keep
the head hash ``certbound log verify`` prints somewhere else to pin it.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, RowMapping, select, text
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from certbound.storage.database import Database
from certbound.storage.models import Base, LogChain, LogEvent
from certbound.syslog.rows import DERIVED_COLUMNS, body_row

GENESIS = "0" * 64
EVENTS = Base.metadata.tables[LogEvent.__tablename__]
# Taken first by every writer of the chain: serialises appends and purges across processes.
_LOCK_HEAD = text("UPDATE log_chain SET last_seq = last_seq WHERE id = 1")
# The same, reading the head in the same round trip (RETURNING: PostgreSQL, SQLite >= 3.35).
_LOCK_AND_READ_HEAD = text(
    "UPDATE log_chain SET last_seq = last_seq WHERE id = 1 "
    "RETURNING last_seq, last_hash, anchor_seq, anchor_hash"
)
_RETURNING = sqlite3.sqlite_version_info >= (3, 35)
_MOVE_HEAD = text("UPDATE log_chain SET last_seq = :seq, last_hash = :hash WHERE id = 1")
# PostgreSQL: seq is assigned here, not by the column's sequence; keep the sequence level
# with it (in the same round trip), so an insert that leaves seq out still gets a fresh one.
_PG_MOVE_HEAD = text(
    "WITH level AS (SELECT setval(pg_get_serial_sequence('log_events', 'seq'), :seq)) "
    "UPDATE log_chain SET last_seq = :seq, last_hash = :hash FROM level WHERE id = 1"
)
_STREAM_ROWS = 2_000


# Columns in the order of the fast insert paths; ``published`` last (it needs converting).
_FAST_COLUMNS = (
    "seq",
    *(c for c in DERIVED_COLUMNS if c != "published"),
    "body",
    "prev_hash",
    "hash",
)
_fast_values = itemgetter(*_FAST_COLUMNS)
_COLUMN_LIST = ", ".join((*_FAST_COLUMNS, "published"))
_ONE_ROW = f"({', '.join('?' * (len(_FAST_COLUMNS) + 1))})"
# Rows per multi-row INSERT on SQLite: a few fixed sizes (so a few prepared statements),
# the largest within SQLite's 32,766 bound parameters (999 before 3.32).
_SQLITE_SIZES = (1_000, 200, 40, 8, 1) if sqlite3.sqlite_version_info >= (3, 32) else (40, 8, 1)
_PG_COPY = f"COPY log_events ({_COLUMN_LIST}) FROM STDIN"


def _insert(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert complete rows. SQLAlchemy's per-row bind processing costs more than the insert
    itself, so SQLite gets driver-level multi-row INSERTs and psycopg a COPY; ``published`` is
    converted by the column type's own bind processor, so it is stored exactly as through
    the ORM. Other dialects go through a plain Core executemany."""
    dialect = conn.dialect
    if dialect.name == "sqlite":
        # Multi-row INSERTs: one sqlite3_step (run without the GIL) per thousand rows, so
        # the callers' threads run while SQLite works.
        convert = _published_processor(dialect)
        start = 0
        for size in _SQLITE_SIZES:
            while len(rows) - start >= size:
                values: list[Any] = []
                for r in rows[start : start + size]:
                    values += _fast_values(r)
                    values.append(convert(r["published"]))
                conn.exec_driver_sql(_sqlite_insert(size), tuple(values))
                start += size
    elif dialect.name == "postgresql" and dialect.driver == "psycopg":
        convert = _published_processor(dialect)
        driver: Any = conn.connection.dbapi_connection  # a psycopg.Connection
        try:
            with driver.cursor() as cursor, cursor.copy(_PG_COPY) as copy:
                for r in rows:
                    copy.write_row((*_fast_values(r), convert(r["published"])))
        except dialect.loaded_dbapi.Error as error:
            # Raised by the driver itself: give it SQLAlchemy's shape, as execute() would.
            lost = bool(driver.broken or driver.closed)
            if lost:
                conn.invalidate(error)
            raise DBAPIError.instance(
                _PG_COPY, None, error, dialect.loaded_dbapi.Error, connection_invalidated=lost
            ) from error
    else:
        conn.execute(EVENTS.insert(), rows)


@cache
def _sqlite_insert(rows: int) -> str:
    return f"INSERT INTO log_events ({_COLUMN_LIST}) VALUES {', '.join([_ONE_ROW] * rows)}"


@cache
def _published_processor(dialect: Dialect) -> Callable[[Any], Any]:
    # The dialect's own implementation (SQLite: DATETIME's fixed text format), as the ORM uses.
    processor = EVENTS.c.published.type.dialect_impl(dialect).bind_processor(dialect)
    return processor if processor is not None else _identity


def _identity(value: Any) -> Any:
    return value


def event_hash(prev_hash: str, body: str) -> str:
    """``sha256_hex(prev_hash + "\\n" + body)``: the hash that links an event to the one before."""
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainHead:
    last_seq: int
    last_hash: str
    anchor_seq: int
    anchor_hash: str


def _read_head(conn: Connection | Session) -> ChainHead:
    row = conn.execute(
        select(
            LogChain.last_seq, LogChain.last_hash, LogChain.anchor_seq, LogChain.anchor_hash
        ).where(LogChain.id == 1)
    ).one()
    return ChainHead(row.last_seq, row.last_hash, row.anchor_seq, row.anchor_hash)


def lock_head(session: Session) -> ChainHead:
    """Take the chain-head write lock (held until the transaction ends) and read the head."""
    if session.get_bind().dialect.name == "sqlite" and not _RETURNING:
        session.execute(_LOCK_HEAD)
        return _read_head(session)
    row = session.execute(_LOCK_AND_READ_HEAD).one()
    return ChainHead(row.last_seq, row.last_hash, row.anchor_seq, row.anchor_hash)


def stored_uuids(session: Session, uuids: Sequence[str]) -> set[str]:
    """Which of these event uuids are stored already."""
    found: set[str] = set()
    for start in range(0, len(uuids), 500):
        chunk = uuids[start : start + 500]
        found.update(session.scalars(select(LogEvent.uuid).where(LogEvent.uuid.in_(chunk))))
    return found


def append(session: Session, rows: list[dict[str, Any]]) -> None:
    """Append rows (from :mod:`certbound.syslog.rows`) to the chain, in order, in the
    session's transaction. Fills in each row's ``seq``, ``prev_hash`` and ``hash``."""
    if not rows:
        return
    head = lock_head(session)
    seq, prev = head.last_seq, head.last_hash
    for row in rows:
        seq += 1
        row["seq"] = seq
        row["prev_hash"] = prev
        prev = row["hash"] = event_hash(prev, row["body"])
    _insert(session.connection(), rows)
    postgres = session.get_bind().dialect.name == "postgresql"
    session.execute(_PG_MOVE_HEAD if postgres else _MOVE_HEAD, {"seq": seq, "hash": prev})


def append_new(session: Session, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Like :func:`append`, but skips rows whose uuid is stored already (or repeats an
    earlier row's): replaying a spool twice stores each event once. Returns the rows added."""
    if not rows:
        return []
    lock_head(session)  # before looking, so a concurrent replay cannot slip in between
    seen = stored_uuids(session, [row["uuid"] for row in rows])
    fresh = []
    for row in rows:
        if row["uuid"] not in seen:
            seen.add(row["uuid"])
            fresh.append(row)
    append(session, fresh)
    return fresh


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The outcome of :func:`verify_chain`. ``problem`` is one of :data:`PROBLEMS`."""

    ok: bool
    checked: int
    first_bad_uuid: str | None = None
    first_bad_seq: int | None = None
    problem: str | None = None
    detail: str | None = None
    head_seq: int = 0
    head_hash: str = GENESIS


EDITED = "edited"
INSERTED = "inserted or reordered"
DELETED_BEFORE = "deleted before it"
DELETED_AT_END = "deleted at the end"
INSERTED_AFTER_HEAD = "inserted after the head"
INSERTED_BEFORE_ANCHOR = "inserted before the anchor"
PROBLEMS = (
    EDITED,
    INSERTED,
    DELETED_BEFORE,
    DELETED_AT_END,
    INSERTED_AFTER_HEAD,
    INSERTED_BEFORE_ANCHOR,
)


@dataclass(frozen=True, slots=True)
class _Finding:
    problem: str
    detail: str


def _column_mismatch(row: RowMapping) -> str | None:
    """The first column that differs from what the body says, or why the body is unusable."""
    try:
        derived = body_row(row["body"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"its body is not an event ({type(exc).__name__}: {exc})"
    for column in DERIVED_COLUMNS:
        if derived[column] != row[column]:
            return f"column {column} is {row[column]!r} but its body says {derived[column]!r}"
    return None


def _check(
    row: RowMapping, following: RowMapping | None, expected_seq: int, running: str
) -> _Finding | None:
    hash_ok = event_hash(row["prev_hash"], row["body"]) == row["hash"]
    if row["prev_hash"] != running:
        if following is not None and following["prev_hash"] == running:
            return _Finding(INSERTED, "the events around it link to each other, not to it")
        if not hash_ok:
            return _Finding(EDITED, "its prev_hash and hash do not match its body")
        return _Finding(
            DELETED_BEFORE,
            f"its prev_hash {row['prev_hash'][:12]}... is not the hash of the event before it "
            f"({running[:12]}...)",
        )
    if not hash_ok:
        return _Finding(EDITED, "its hash does not match its body")
    if row["seq"] != expected_seq:
        return _Finding(EDITED, f"its seq is {row['seq']}, the chain puts it at {expected_seq}")
    mismatch = _column_mismatch(row)
    return _Finding(EDITED, mismatch) if mismatch else None


def _skips_over(row: RowMapping, before: RowMapping, problem: _Finding) -> bool:
    return problem.problem == DELETED_BEFORE and row["prev_hash"] == before["prev_hash"]


def _with_next(rows: Iterable[RowMapping]) -> Iterator[tuple[RowMapping, RowMapping | None]]:
    previous: RowMapping | None = None
    for row in rows:
        if previous is not None:
            yield previous, row
        previous = row
    if previous is not None:
        yield previous, None


def _stream(conn: Connection, after_seq: int) -> Iterator[RowMapping]:
    stmt = select(EVENTS).where(EVENTS.c.seq > after_seq).order_by(EVENTS.c.seq)
    result = conn.execution_options(yield_per=_STREAM_ROWS).execute(stmt)
    yield from result.mappings()


def _bad(
    checked: int, row: RowMapping | None, seq: int, finding: _Finding, head: ChainHead
) -> ChainReport:
    return ChainReport(
        ok=False,
        checked=checked,
        first_bad_uuid=row["uuid"] if row is not None else None,
        first_bad_seq=seq,
        problem=finding.problem,
        detail=finding.detail,
        head_seq=head.last_seq,
        head_hash=head.last_hash,
    )


def _first_after(conn: Connection, seq: int) -> Any:
    return conn.execute(
        select(EVENTS.c.uuid, EVENTS.c.seq)
        .where(EVENTS.c.seq > seq)
        .order_by(EVENTS.c.seq)
        .limit(1)
    ).first()


def verify_chain(db: Database) -> ChainReport:
    """Walk the chain from the anchor and report the first bad event (streams: any size).

    Events appended while the walk runs are fine: the head is read before and after."""
    with db.engine.connect() as conn:
        start = _read_head(conn)
        stray = conn.execute(
            select(EVENTS.c.uuid, EVENTS.c.seq)
            .where(EVENTS.c.seq <= start.anchor_seq)
            .order_by(EVENTS.c.seq)
            .limit(1)
        ).first()
        if stray is not None:
            finding = _Finding(
                INSERTED_BEFORE_ANCHOR, f"the last purge ended at seq {start.anchor_seq}"
            )
            return _bad(0, stray._mapping, stray.seq, finding, start)
        running, seq, checked = start.anchor_hash, start.anchor_seq, 0
        passed_start = start.last_seq == start.anchor_seq
        last: RowMapping | None = None
        for row, following in _with_next(_stream(conn, start.anchor_seq)):
            problem = _check(row, following, seq + 1, running)
            if problem is not None:
                if last is not None and _skips_over(row, last, problem):
                    # It links to what the event before it links to: that one was slipped in.
                    problem = _Finding(INSERTED, "the events around it link to each other")
                    return _bad(checked - 1, last, last["seq"], problem, start)
                return _bad(checked, row, row["seq"], problem, start)
            running, seq, last = row["hash"], row["seq"], row
            checked += 1
            passed_start = passed_start or (seq == start.last_seq and running == start.last_hash)
        conn.rollback()
        end = _read_head(conn)
        if seq > end.last_seq:
            first = _first_after(conn, end.last_seq)
            finding = _Finding(INSERTED_AFTER_HEAD, f"the chain head is seq {end.last_seq}")
            return _bad(checked, first._mapping, first.seq, finding, end)
    if seq == end.last_seq and running != end.last_hash:
        finding = _Finding(EDITED, "its hash is not the one the chain head records")
        return _bad(checked, last, seq, finding, end)
    if seq < end.last_seq and not passed_start:
        finding = _Finding(
            DELETED_AT_END, f"the chain head is seq {end.last_seq}; the last event is seq {seq}"
        )
        return _bad(checked, None, seq + 1, finding, end)
    return ChainReport(ok=True, checked=checked, head_seq=seq, head_hash=running)
