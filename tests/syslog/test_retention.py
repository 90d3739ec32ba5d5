"""Retention on SQLite and PostgreSQL: a purge deletes the old prefix of the chain, moves the
anchor so verification still passes, and is itself logged in the same transaction."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest
from sqlalchemy import select, text

from certbound.clock import FixedClock
from certbound.errors import ReasonCode
from certbound.pki import devpki
from certbound.pki.certificate import CertificateInfo
from certbound.storage.database import Database
from certbound.storage.models import LogChain, LogEvent
from certbound.syslog import chain
from certbound.syslog.events import CLI_ACTOR, Actor, Event, EventType, Outcome, Result
from certbound.syslog.recorder import EventRecorder
from certbound.syslog.retention import RetentionJob, purge
from certbound.syslog.rows import event_row

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def device() -> CertificateInfo:
    return CertificateInfo.of(devpki.build_dev_pki().devices["revoked"].cert)


def make_event(age_days: float, device: CertificateInfo) -> Event:
    return Event(
        event_type=EventType.DEVICE_TRUST_VERIFY,
        display_message=f"{age_days} days old",
        outcome=Outcome(Result.FAILURE, ReasonCode.REVOKED_CERTIFICATE),
        actor=Actor("device-1", "Device"),
        device_trust={"certificate": {"serialNumber": device.serial_number}},
        published=NOW - age_days * DAY,
    )


def store(db: Database, device: CertificateInfo, ages: list[float]) -> list[str]:
    events = [make_event(age, device) for age in ages]
    with db.session() as session:
        chain.append(session, [event_row(e) for e in events])
    return [e.uuid for e in events]


def remaining(db: Database) -> list[LogEvent]:
    with db.session() as session:
        return list(session.scalars(select(LogEvent).order_by(LogEvent.seq)))


def test_purge_deletes_old_events_and_keeps_the_chain_valid(
    database: Database, device: CertificateInfo
) -> None:
    uuids = store(database, device, [100, 95, 91, 30, 1])
    count = purge(database, None, NOW - 90 * DAY, NOW, actor=CLI_ACTOR)
    assert count == 3
    rows = remaining(database)
    assert [r.uuid for r in rows[:2]] == uuids[3:]
    [logged] = rows[2:]
    body = json.loads(logged.body)
    assert body["eventType"] == "system.log.purge"
    assert body["actor"]["id"] == "cli"
    assert body["outcome"] == {"result": "SUCCESS", "reason": None}
    assert body["debugContext"]["debugData"] == {
        "purgedCount": 3,
        "olderThan": "2025-03-03T12:00:00Z",
        "anchorSeq": 3,
        "anchorHash": rows[0].prev_hash,
    }
    with database.session() as session:
        head = session.get(LogChain, 1)
        assert head is not None
        assert (head.anchor_seq, head.anchor_hash) == (3, rows[0].prev_hash)
    report = chain.verify_chain(database)
    assert report.ok and report.checked == 3


def test_an_old_event_after_a_young_one_waits(database: Database, device: CertificateInfo) -> None:
    """A purge deletes a prefix: an old event replayed late stays until what precedes it ages."""
    uuids = store(database, device, [200, 10, 150, 120])
    assert purge(database, None, NOW - 90 * DAY, NOW) == 1
    assert [r.uuid for r in remaining(database)][:3] == uuids[1:]
    assert chain.verify_chain(database).ok
    # Everything, then, the first purge event included.
    assert purge(database, None, NOW + dt.timedelta(seconds=1), NOW + DAY) == 4
    assert chain.verify_chain(database).ok


def test_nothing_to_purge_is_logged_too(database: Database, device: CertificateInfo) -> None:
    store(database, device, [5, 4])
    assert purge(database, None, NOW - 90 * DAY, NOW) == 0
    rows = remaining(database)
    assert len(rows) == 3
    assert json.loads(rows[-1].body)["debugContext"]["debugData"]["purgedCount"] == 0
    assert chain.verify_chain(database).ok


def test_purge_in_the_callers_transaction(database: Database, device: CertificateInfo) -> None:
    store(database, device, [100, 1])
    with pytest.raises(RuntimeError), database.session() as session:
        assert purge(database, session, NOW - 90 * DAY, NOW) == 1
        raise RuntimeError("the caller changes its mind")
    assert len(remaining(database)) == 2  # rolled back: the purge and its event both
    with database.session() as session:
        purge(database, session, NOW - 90 * DAY, NOW)
    assert len(remaining(database)) == 2
    assert chain.verify_chain(database).ok


def test_purge_after_the_recorders_queue(
    database: Database, device: CertificateInfo, tmp_path: Path
) -> None:
    recorder = EventRecorder(database, FixedClock(NOW), spool_dir=tmp_path / "spool")
    try:
        old = [recorder.record(make_event(age, device)) for age in (120, 100)]
        young = recorder.record(make_event(2, device))
        assert purge(database, recorder, NOW - 90 * DAY, NOW) == 2
    finally:
        recorder.close()
    rows = remaining(database)
    assert [r.uuid for r in rows[:1]] == [young.uuid]
    assert not {e.uuid for e in old} & {r.uuid for r in rows}
    assert chain.verify_chain(database).ok


def test_tampering_after_a_purge_is_still_found(
    database: Database, device: CertificateInfo
) -> None:
    uuids = store(database, device, [100, 99, 10, 9])
    purge(database, None, NOW - 90 * DAY, NOW)
    with database.session() as session:
        session.execute(text("DELETE FROM log_events WHERE uuid = :u"), {"u": uuids[2]})
    report = chain.verify_chain(database)
    assert (report.first_bad_uuid, report.problem) == (uuids[3], chain.DELETED_BEFORE)


def test_repeated_purges_and_appends(database: Database, device: CertificateInfo) -> None:
    for day in range(5):
        store(database, device, [100 - day * 10, 50, 1])
        purge(database, None, NOW - 60 * DAY, NOW)
        assert chain.verify_chain(database).ok


def test_the_retention_job(database: Database, device: CertificateInfo) -> None:
    uuids = store(database, device, [40, 20])
    clock = FixedClock(NOW)
    job = RetentionJob(database, clock, retention_days=30, interval=0.05)
    assert job.run_once() == 1
    clock.advance(15 * DAY)  # the second event is 35 days old now
    job.start()
    try:
        deadline = time.monotonic() + 20
        while uuids[1] in {r.uuid for r in remaining(database)} and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        job.stop()
    rows = remaining(database)
    assert uuids[1] not in {r.uuid for r in rows}
    assert {json.loads(r.body)["eventType"] for r in rows} == {"system.log.purge"}
    assert chain.verify_chain(database).ok
