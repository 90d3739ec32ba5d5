"""The one System Log recorder every layer uses: a bounded queue, a writer thread, a spool.

``record()`` never blocks on the database and never raises: it stamps ``published``, turns
the event into its row (:func:`certbound.syslog.rows.event_row`; done here so the stored
event is the one recorded even if the caller later changes a dict it passed), and appends
the row to a bounded in-memory queue. One writer thread per recorder takes rows off the
queue in batches and appends them to the hash chain (:func:`certbound.syslog.chain.append`)
in one transaction per batch. ``batch_size`` is the most one transaction takes (the writer
takes what is queued, up to it). A transaction starts at most once per ``linger`` (20 ms)
unless a full batch is waiting: after a quiet spell the first event waits for others to join
it, and under load the writer gathers what arrived since its last transaction instead of
writing each handful at once (per-transaction work, not per-event work, is what a busy
server would otherwise spend its CPU on: 10-event batches cost four times the CPU per event
of 40-event ones). Events reach the database at most ``linger`` after the transaction
before them. ``batch_size`` is
5,000: per-transaction costs (commit, round trips, the GIL handed back and forth) are what
limit ingest; on a 2-core machine 500-row batches gave 10,000-11,500 events/s on SQLite and
15,000-16,500/s on PostgreSQL, 5,000-row ones 18,000-21,500/s and 16,000-22,700/s
(``bench/log_ingest_bench.py``).

When the database fails (refused or cut connections, ``database is locked``...), the batch
goes to the spool: append-only JSON-lines files in ``spool_dir``, one canonical event body
per line, flushed and fsynced per batch. A full queue spools too, from the caller's thread,
instead of blocking it. The spool is replayed before the next batch once the database
answers again (retried every ``retry_interval`` seconds while it does not), on start-up
(files left by a process that died), and on ``close()``. Replay is idempotent: events whose
uuid is stored already are skipped, and a file is deleted only after all its events are
committed, so dying in the middle of a replay loses nothing.

Each process writes its own spool file and holds an exclusive ``flock`` on it while it is
open; a replayer takes only files it can lock, so two processes never replay one file at
once and nobody replays a file still being written.

``stats.dropped`` counts events that could be neither stored nor spooled: the spool
directory unwritable, an event that has no JSON form (a circular structure; values JSON
cannot express, such as datetimes, are stored as their ``str()``), or an event the database
refuses even on its own (kept in ``spool_dir/rejected.jsonl``). It stays 0 otherwise.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import dataclasses
import datetime as dt
import fcntl
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from operator import attrgetter
from pathlib import Path
from typing import IO, Any

from sqlalchemy import exc as sa_exc

from certbound.clock import Clock
from certbound.storage.database import Database
from certbound.syslog import chain
from certbound.syslog.events import Event
from certbound.syslog.rows import body_row, event_row

log = logging.getLogger(__name__)

Row = dict[str, Any]
_SPOOL_GLOB = "spool-*.jsonl"


@dataclasses.dataclass(frozen=True, slots=True)
class RecorderStats:
    """Event counts since the recorder started. ``replayed`` counts spooled events found in
    the database on replay (inserted then, or already there because a commit that reported
    an error had in fact gone through), including events spooled by earlier processes."""

    written: int
    spooled: int
    replayed: int
    dropped: int
    queued: int


_EVENT_FIELDS = attrgetter(*Event.__slots__)
_EVENT_SETTERS = tuple(getattr(Event, name).__set__ for name in Event.__slots__)
_PUBLISHED_INDEX = Event.__slots__.index("published")


def _published(event: Event, now: dt.datetime) -> Event:
    """``dataclasses.replace(event, published=now)`` at a quarter of its cost (it is on
    every caller's path): a copy of the frozen, slotted event with ``published`` set."""
    values = list(_EVENT_FIELDS(event))
    values[_PUBLISHED_INDEX] = now
    copy = object.__new__(Event)
    for setter, value in zip(_EVENT_SETTERS, values, strict=True):
        setter(copy, value)
    return copy


def _is_refused_data(error: BaseException, dbapi: Any) -> bool:
    """The database refused the data itself (worth retrying row by row, then dropping the
    rows it still refuses). Anything else is taken as the database failing: spool, retry."""
    refused: tuple[type[BaseException], ...] = (sa_exc.DataError, sa_exc.IntegrityError)
    if dbapi is not None:
        refused += (dbapi.DataError, dbapi.IntegrityError)
    if isinstance(error, refused):
        return True
    if isinstance(error, sa_exc.StatementError) and not isinstance(error, sa_exc.DBAPIError):
        return isinstance(error.orig, ValueError | TypeError)  # bind processing
    return isinstance(error, ValueError | TypeError)


class Spool:
    """Append-only JSON-lines files of canonical event bodies, one file per writer."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None
        self._path: Path | None = None

    def append(self, bodies: list[str]) -> None:
        """Append and fsync; raises OSError when the spool cannot be written."""
        data = "".join(body + "\n" for body in bodies).encode()
        with self._lock:
            if self._file is None:
                self._open()
            assert self._file is not None
            self._file.write(data)
            self._file.flush()
            os.fsync(self._file.fileno())

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"spool-{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}.jsonl"
        path = self.directory / name
        # Locked before it gets a name replayers look for: otherwise one could take the
        # new, empty file, find nothing in it and delete it under our feet.
        hidden = self.directory / f".{name}.new"
        handle = hidden.open("ab")
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        hidden.rename(path)
        self._file, self._path = handle, path

    def reject(self, body: str) -> None:
        """Keep an event the database refused in ``rejected.jsonl`` for an operator to see
        (never replayed); best effort."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with (self.directory / "rejected.jsonl").open("a") as handle:
                handle.write(body + "\n")
        except OSError:
            log.exception("System Log: cannot keep a refused event in %s", self.directory)

    def detach(self) -> tuple[Path, IO[bytes]] | None:
        """Stop appending to the current file (the next append opens a new one) and hand
        it over, still locked, for replay."""
        with self._lock:
            if self._file is None or self._path is None:
                return None
            detached = (self._path, self._file)
            self._file = self._path = None
            return detached

    def files(self) -> list[Path]:
        """Spool files present, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob(_SPOOL_GLOB))

    @staticmethod
    def claim(path: Path) -> IO[bytes] | None:
        """Lock a file for replay; None if another process holds it or it is gone."""
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return None
        if not path.exists():  # replayed and deleted by someone else meanwhile
            handle.close()
            return None
        return handle

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
            self._file = self._path = None


def _read_lines(handle: IO[bytes], offset: int) -> Iterator[tuple[int, bytes]]:
    """(offset after the line, line) for each complete line from ``offset``."""
    handle.seek(offset)
    position = offset
    for line in handle:
        position += len(line)
        if line.endswith(b"\n"):
            yield position, line


class EventRecorder:
    """Records System Log events off the request path. See the module docstring."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        spool_dir: Path,
        queue_size: int = 50_000,
        batch_size: int = 5_000,
        flush_interval: float = 0.05,
        retry_interval: float = 0.5,
        linger: float = 0.02,
    ) -> None:
        self._db = db
        self._clock = clock
        self._spool = Spool(spool_dir)
        self._queue: collections.deque[Row] = collections.deque()
        self._queue_size = max(1, queue_size)
        self._batch_size = max(1, batch_size)
        self._flush_interval = flush_interval
        self._linger = linger
        self._last_take = 0.0
        self._retry_interval = retry_interval
        self._dbapi = getattr(db.engine.dialect, "dbapi", None)
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._settled_cond = threading.Condition(self._lock)
        self._accepted = 0  # rows handed to the queue or spooled by record()
        self._settled = 0  # of those: stored, spooled or dropped
        self._written = self._spooled = self._replayed = self._dropped = 0
        self._closed = False
        self._spool_pending = True  # files from an earlier process may be waiting
        self._spool_generation = 0  # bumped by every spool append
        self._retry_at = 0.0  # monotonic time before which the database is not tried
        self._replay_offsets: dict[Path, int] = {}
        self._thread = threading.Thread(
            target=self._run, name="certbound-event-recorder", daemon=True
        )
        self._thread.start()
        atexit.register(self.close)

    # --- the caller's side -------------------------------------------------------------

    def record(self, event: Event) -> Event:
        """Queue an event for the System Log and return it as published. Never blocks on
        the database and never raises."""
        try:
            if event.published is None:
                event = _published(event, self._clock.now())
            row = event_row(event)
        except Exception:
            log.exception("System Log: event %s cannot be serialised; dropped", event.uuid)
            with self._lock:
                self._dropped += 1
            return event
        with self._lock:
            closed = self._closed
            self._accepted += 1
            if not closed and len(self._queue) < self._queue_size:
                self._queue.append(row)
                if not self._wake.is_set():
                    self._wake.set()
                return event
        self._settle([row], self._write_now if closed else self._spool_rows)
        return event

    def _settle(self, rows: list[Row], handle: Any) -> None:
        handle(rows)
        with self._lock:
            self._settled += len(rows)
            self._settled_cond.notify_all()

    def _write_now(self, rows: list[Row]) -> None:
        """After close(): write on the caller's thread (or spool) rather than lose it."""
        self._handle_batch(rows)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event recorded so far is stored or spooled; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            target = self._accepted
            self._wake.set()
            while self._settled < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return self._settled >= target
                self._settled_cond.wait(min(remaining, 0.1))
        return True

    def close(self, timeout: float = 60.0) -> None:
        """Flush, replay what can be replayed, stop the writer. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._wake.set()
        atexit.unregister(self.close)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("System Log: writer still busy after %.0f s; spooling the queue", timeout)
            self._spool_leftovers()
        self._spool.close()

    @property
    def stats(self) -> RecorderStats:
        with self._lock:
            return RecorderStats(
                written=self._written,
                spooled=self._spooled,
                replayed=self._replayed,
                dropped=self._dropped,
                queued=len(self._queue),
            )

    # --- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        self._replay_safely()
        while True:
            batch = self._take()
            if batch:
                self._settle(batch, self._handle_safely)
                continue
            with self._lock:
                stop = self._closed and not self._queue
            if self._spool_pending and (stop or time.monotonic() >= self._retry_at):
                self._replay_safely()
            if stop:
                return

    def _handle_safely(self, rows: list[Row]) -> None:
        """The writer thread must outlive any surprise: what it cannot store, it spools."""
        try:
            self._handle_batch(rows)
        except Exception as error:
            log.exception("System Log: unexpected failure storing %d event(s)", len(rows))
            self._database_failed(error)
            self._spool_rows(rows)

    def _replay_safely(self) -> None:
        try:
            self._replay()
        except Exception as error:
            log.exception("System Log: unexpected failure replaying the spool")
            self._database_failed(error)

    def _take(self) -> list[Row]:
        quiet = not self._queue
        if quiet:
            self._wake.wait(self._flush_interval)
            self._wake.clear()
        if self._queue and self._linger and not self._closed:
            # Let a batch gather: one transaction per linger, not one per handful of events.
            since = 0.0 if quiet else time.monotonic() - self._last_take
            if since < self._linger and len(self._queue) < self._batch_size:
                time.sleep(self._linger - since)
        self._last_take = time.monotonic()
        batch: list[Row] = []
        queue = self._queue
        with contextlib.suppress(IndexError):
            while len(batch) < self._batch_size:
                batch.append(queue.popleft())
        return batch

    def _handle_batch(self, rows: list[Row]) -> None:
        """Store a batch, or spool it if the database is failing."""
        if time.monotonic() < self._retry_at or (self._spool_pending and not self._replay()):
            self._spool_rows(rows)
            return
        try:
            stored, _refused = self._store(rows, dedupe=False)
        except Exception as error:
            self._database_failed(error)
            self._spool_rows(rows)
            return
        with self._lock:
            self._written += stored

    def _store(self, rows: list[Row], *, dedupe: bool) -> tuple[int, int]:
        """(rows inserted, rows refused and dropped). A batch the database refuses as data
        is retried row by row; raises when the database fails."""
        try:
            return self._append(rows, dedupe=dedupe), 0
        except Exception as error:
            if not _is_refused_data(error, self._dbapi):
                raise
            log.warning("System Log: a batch was refused (%s); storing it event by event", error)
        stored = refused = 0
        for row in rows:
            try:
                stored += self._append([row], dedupe=True)
            except Exception as error:
                if not _is_refused_data(error, self._dbapi):
                    raise
                log.error("System Log: event %s refused by the database: %s", row["uuid"], error)
                self._spool.reject(row["body"])
                refused += 1
                with self._lock:
                    self._dropped += 1
        return stored, refused

    def _append(self, rows: list[Row], *, dedupe: bool) -> int:
        """One transaction; on a duplicate uuid, once more without the stored ones."""
        try:
            with self._db.session() as session:
                if dedupe:
                    return len(chain.append_new(session, rows))
                chain.append(session, rows)
                return len(rows)
        except sa_exc.IntegrityError:
            if dedupe:
                raise
            return self._append(rows, dedupe=True)

    def _database_failed(self, error: BaseException) -> None:
        if time.monotonic() >= self._retry_at:
            log.warning("System Log: database unavailable, spooling events: %s", error)
        self._retry_at = time.monotonic() + self._retry_interval

    def _spool_rows(self, rows: list[Row]) -> None:
        try:
            self._spool.append([row["body"] for row in rows])
        except OSError:
            log.exception("System Log: cannot spool %d event(s); dropped", len(rows))
            with self._lock:
                self._dropped += len(rows)
            return
        with self._lock:
            self._spooled += len(rows)
            self._spool_generation += 1
            self._spool_pending = True

    def _spool_leftovers(self) -> None:
        rows: list[Row] = []
        with contextlib.suppress(IndexError):
            while True:
                rows.append(self._queue.popleft())
        if rows:
            self._settle(rows, self._spool_rows)

    # --- replay ----------------------------------------------------------------------------

    def _replay(self) -> bool:
        """Replay every spool file this process may take; False if the database failed."""
        with self._lock:
            generation = self._spool_generation
        detached = self._spool.detach()
        ok = True
        for path in self._spool.files():
            own = detached is not None and path == detached[0]
            handle = detached[1] if detached and own else self._spool.claim(path)
            if handle is None:
                continue
            if own:
                detached = None
            try:
                ok = self._replay_file(path)
                if ok:  # every event is committed: only now may the file go
                    path.unlink(missing_ok=True)
                    self._replay_offsets.pop(path, None)
            finally:
                handle.close()
            if not ok:
                break
        if detached is not None:  # not reached: it stays on disk for the next attempt
            detached[1].close()
        with self._lock:  # anything spooled meanwhile (a full queue) waits for the next pass
            self._spool_pending = not ok or self._spool_generation != generation
        if ok:
            self._retry_at = 0.0
        return ok

    def _replay_file(self, path: Path) -> bool:
        """Store a spool file's events from where this process got to; False if the
        database failed (the file stays for the next attempt)."""
        offset = self._replay_offsets.get(path, 0)
        with path.open("rb") as handle:
            chunk: list[Row] = []
            end = offset
            for end, line in _read_lines(handle, offset):
                row = self._spooled_row(path, line)
                if row is not None:
                    chunk.append(row)
                if len(chunk) >= self._batch_size:
                    if not self._replay_chunk(chunk):
                        return False
                    self._replay_offsets[path] = end
                    chunk = []
            if chunk and not self._replay_chunk(chunk):
                return False
            self._replay_offsets[path] = end
        return True

    @staticmethod
    def _spooled_row(path: Path, line: bytes) -> Row | None:
        try:
            return body_row(line.decode().rstrip("\n"))
        except (ValueError, KeyError, TypeError, AttributeError):
            log.error("System Log: unreadable line in spool file %s skipped: %r", path, line[:200])
            return None

    def _replay_chunk(self, rows: list[Row]) -> bool:
        try:
            _stored, refused = self._store(rows, dedupe=True)
        except Exception as error:
            self._database_failed(error)
            return False
        with self._lock:
            self._replayed += len(rows) - refused
        return True
