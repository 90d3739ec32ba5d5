"""System Log retention: purging old events without breaking the hash chain.

A purge deletes a *prefix* of the chain: every event from the anchor up to (not including)
the first event published at or after the cut-off. The chain's anchor then moves to the last
deleted event (``anchor_seq``/``anchor_hash``), so verification starts there and still
passes. An old event that sits after a younger one in the chain (spooled while the database
was away and replayed later, or recorded by a host whose clock lags) is kept until the
events before it have aged out too: a purge never leaves a hole in the chain.

Every purge is itself logged as a ``system.log.purge`` event, appended in the purge's own
transaction: a purge is never without its record, and an event never without its purge.
:class:`RetentionJob` runs the purge periodically for a long-running server.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.orm import Session

from certbound.clock import Clock, format_rfc3339
from certbound.storage.database import Database
from certbound.storage.models import LogChain, LogEvent
from certbound.syslog import chain
from certbound.syslog.events import SYSTEM_ACTOR, Actor, Event, EventType, Outcome, Result
from certbound.syslog.recorder import EventRecorder
from certbound.syslog.rows import event_row

log = logging.getLogger(__name__)


class ChainBrokenError(RuntimeError):
    """The chain lacks the event a purge would anchor on: run ``certbound log verify``."""


def purge_event(
    count: int,
    older_than: dt.datetime,
    anchor: tuple[int, str],
    now: dt.datetime,
    actor: Actor = SYSTEM_ACTOR,
) -> Event:
    """The ``system.log.purge`` event for a purge that deleted ``count`` events."""
    return Event(
        event_type=EventType.SYSTEM_LOG_PURGE,
        display_message=f"System Log purge: {count} event(s) published before "
        f"{format_rfc3339(older_than)} deleted",
        outcome=Outcome(Result.SUCCESS),
        actor=actor,
        transaction_type="JOB" if actor is SYSTEM_ACTOR else "CLI",
        debug_data={
            "purgedCount": count,
            "olderThan": format_rfc3339(older_than),
            "anchorSeq": anchor[0],
            "anchorHash": anchor[1],
        },
        published=now,
    )


def _delete_prefix(session: Session, older_than: dt.datetime) -> tuple[int, tuple[int, str]]:
    """Delete the old prefix of the chain and move the anchor; (count, (anchor seq, hash))."""
    head = chain.lock_head(session)
    first_young = session.scalar(
        select(LogEvent.seq)
        .where(LogEvent.seq > head.anchor_seq, LogEvent.published >= older_than)
        .order_by(LogEvent.seq)
        .limit(1)
    )
    upto = head.last_seq if first_young is None else first_young - 1
    if upto <= head.anchor_seq:
        return 0, (head.anchor_seq, head.anchor_hash)
    anchor_hash = session.scalar(select(LogEvent.hash).where(LogEvent.seq == upto))
    if anchor_hash is None:
        raise ChainBrokenError(f"event seq {upto} is missing from the System Log chain")
    deleted: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        delete(LogEvent).where(LogEvent.seq > head.anchor_seq, LogEvent.seq <= upto)
    )
    session.execute(
        update(LogChain).where(LogChain.id == 1).values(anchor_seq=upto, anchor_hash=anchor_hash)
    )
    return int(deleted.rowcount), (upto, anchor_hash)


def purge(
    db: Database,
    log_to: EventRecorder | Session | None,
    older_than: dt.datetime,
    now: dt.datetime,
    *,
    actor: Actor = SYSTEM_ACTOR,
) -> int:
    """Delete events published before ``older_than``; returns how many were deleted.

    ``log_to``: a Session to purge inside the caller's transaction; a recorder, whose queued
    events are flushed first so that they come before the purge in the chain; or None. The
    ``system.log.purge`` event is appended in the purge's transaction in every case."""
    if isinstance(log_to, Session):
        return _purge_in(log_to, older_than, now, actor)
    if isinstance(log_to, EventRecorder):
        log_to.flush()
    with db.session() as session:
        return _purge_in(session, older_than, now, actor)


def _purge_in(session: Session, older_than: dt.datetime, now: dt.datetime, actor: Actor) -> int:
    count, anchor = _delete_prefix(session, older_than)
    chain.append(session, [event_row(purge_event(count, older_than, anchor, now, actor))])
    log.info("System Log: purged %d event(s) older than %s", count, older_than)
    return count


class RetentionJob:
    """Purges events older than ``retention_days`` every ``interval`` seconds (first run
    ``interval`` seconds after :meth:`start`) until :meth:`stop`."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        retention_days: int,
        *,
        interval: float = 3600.0,
        recorder: EventRecorder | None = None,
    ) -> None:
        self._db, self._clock, self._days = db, clock, retention_days
        self._interval, self._recorder = interval, recorder
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="certbound-log-retention", daemon=True
        )

    def run_once(self) -> int:
        now = self._clock.now()
        return purge(self._db, self._recorder, now - dt.timedelta(days=self._days), now)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                self.run_once()
            except Exception:
                log.exception("System Log: retention purge failed; will retry")
