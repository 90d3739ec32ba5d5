"""The hash chain on SQLite and PostgreSQL: append links events in order, several writers keep
one chain, and verify_chain names the first edited, inserted, reordered or deleted event."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading

import pytest
from sqlalchemy import delete, func, select, text, update

from certbound.errors import ReasonCode
from certbound.pki import devpki
from certbound.pki.certificate import CertificateInfo
from certbound.storage.database import Database
from certbound.storage.models import LogChain, LogEvent
from certbound.syslog import chain
from certbound.syslog.events import Actor, Event, EventType, Outcome, Result
from certbound.syslog.rows import event_row

T0 = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def device() -> CertificateInfo:
    pki = devpki.build_dev_pki()
    return CertificateInfo.of(pki.devices["expired"].cert)


def make_event(i: int, device: CertificateInfo) -> Event:
    return Event(
        event_type=EventType.DEVICE_TRUST_VERIFY,
        display_message=f"event {i}",
        outcome=Outcome(Result.FAILURE, ReasonCode.CERTIFICATE_EXPIRED),
        actor=Actor(f"device-{i}", "Device"),
        device_trust={
            "verified": False,
            "reason": "CERTIFICATE_EXPIRED",
            "certificate": {
                "subjectDn": device.subject_dn,
                "issuerDn": device.issuer_dn,
                "serialNumber": device.serial_number,
                "sha256Thumbprint": device.sha256_fingerprint,
            },
        },
        published=T0 + dt.timedelta(seconds=i),
    )


def fill(db: Database, device: CertificateInfo, count: int, batch: int = 3) -> list[str]:
    events = [make_event(i, device) for i in range(count)]
    for start in range(0, count, batch):
        with db.session() as session:
            chain.append(session, [event_row(e) for e in events[start : start + batch]])
    return [e.uuid for e in events]


def sql(db: Database, statement: str, **params: object) -> None:
    with db.session() as session:
        session.execute(text(statement), params)


def row_of(db: Database, seq: int) -> LogEvent:
    with db.session() as session:
        row = session.get(LogEvent, seq)
        assert row is not None
        return row


def test_event_hash_is_sha256_of_prev_newline_body() -> None:
    expected = hashlib.sha256(b"a" * 64 + b"\n" + b'{"x":1}').hexdigest()
    assert chain.event_hash("a" * 64, '{"x":1}') == expected


def test_append_links_events_in_order(database: Database, device: CertificateInfo) -> None:
    uuids = fill(database, device, 7)
    with database.session() as session:
        rows = session.scalars(select(LogEvent).order_by(LogEvent.seq)).all()
        head = session.get(LogChain, 1)
    assert head is not None
    assert [r.uuid for r in rows] == uuids
    assert [r.seq for r in rows] == list(range(1, 8))
    prev = chain.GENESIS
    for r in rows:
        assert r.prev_hash == prev
        assert r.hash == chain.event_hash(prev, r.body)
        prev = r.hash
    assert (head.last_seq, head.last_hash) == (7, prev)
    report = chain.verify_chain(database)
    assert report == chain.ChainReport(ok=True, checked=7, head_seq=7, head_hash=prev)


def test_an_empty_chain_verifies(database: Database) -> None:
    assert chain.verify_chain(database) == chain.ChainReport(ok=True, checked=0)


def test_append_new_skips_stored_uuids(database: Database, device: CertificateInfo) -> None:
    events = [make_event(i, device) for i in range(4)]
    with database.session() as session:
        chain.append(session, [event_row(e) for e in events[:2]])
    with database.session() as session:
        rows = [event_row(e) for e in [*events, events[3]]]
        added = chain.append_new(session, rows)
    assert [r["uuid"] for r in added] == [events[2].uuid, events[3].uuid]
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(LogEvent)) == 4
    assert chain.verify_chain(database).ok


def test_the_orm_sequence_follows_the_chain(database: Database, device: CertificateInfo) -> None:
    """Appends assign seq themselves; on PostgreSQL the column's sequence is kept level."""
    fill(database, device, 3)
    with database.session() as session:
        row = {**event_row(make_event(99, device)), "prev_hash": "x", "hash": "y"}
        session.add(LogEvent(**row))
        session.flush()
        assert session.scalar(select(func.max(LogEvent.seq))) == 4


def expect(report: chain.ChainReport, uuid: str | None, seq: int, problem: str) -> None:
    assert not report.ok
    assert (report.first_bad_uuid, report.first_bad_seq, report.problem) == (uuid, seq, problem)
    assert report.detail


def test_an_edited_body_is_named(database: Database, device: CertificateInfo) -> None:
    uuids = fill(database, device, 6)
    body = row_of(database, 4).body.replace("CERTIFICATE_EXPIRED", "CERTIFICATE_NOT_YET_VALID")
    sql(database, "UPDATE log_events SET body = :b WHERE seq = 4", b=body)
    report = chain.verify_chain(database)
    expect(report, uuids[3], 4, chain.EDITED)
    assert report.checked == 3


def test_an_edited_column_is_named(database: Database, device: CertificateInfo) -> None:
    uuids = fill(database, device, 6)
    sql(database, "UPDATE log_events SET outcome_result = 'SUCCESS' WHERE seq = 5")
    report = chain.verify_chain(database)
    expect(report, uuids[4], 5, chain.EDITED)
    assert report.detail is not None and "outcome_result" in report.detail


@pytest.mark.parametrize("column", ["hash", "prev_hash"])
def test_an_edited_hash_is_named(database: Database, device: CertificateInfo, column: str) -> None:
    uuids = fill(database, device, 5)
    sql(database, f"UPDATE log_events SET {column} = :h WHERE seq = 2", h="f" * 64)
    expect(chain.verify_chain(database), uuids[1], 2, chain.EDITED)


def test_a_rehashed_edit_shows_at_the_next_event(
    database: Database, device: CertificateInfo
) -> None:
    """Editing a body and recomputing its hash breaks the link from the event after it."""
    uuids = fill(database, device, 5)
    row = row_of(database, 3)
    body = row.body.replace("event 2", "event two")
    new_hash = chain.event_hash(row.prev_hash, body)
    sql(database, "UPDATE log_events SET body = :b, hash = :h WHERE seq = 3", b=body, h=new_hash)
    sql(database, "UPDATE log_events SET display_message = 'event two' WHERE seq = 3")
    expect(chain.verify_chain(database), uuids[3], 4, chain.DELETED_BEFORE)


@pytest.mark.parametrize("seq", [1, 3])
def test_a_deleted_event_is_named_by_the_one_after(
    database: Database, device: CertificateInfo, seq: int
) -> None:
    uuids = fill(database, device, 5)
    sql(database, "DELETE FROM log_events WHERE seq = :s", s=seq)
    expect(chain.verify_chain(database), uuids[seq], seq + 1, chain.DELETED_BEFORE)


def test_deleting_the_newest_events_is_seen(database: Database, device: CertificateInfo) -> None:
    fill(database, device, 5)
    sql(database, "DELETE FROM log_events WHERE seq >= 4")
    expect(chain.verify_chain(database), None, 4, chain.DELETED_AT_END)
    sql(database, "DELETE FROM log_events")
    expect(chain.verify_chain(database), None, 1, chain.DELETED_AT_END)


def forge(database: Database, device: CertificateInfo, seq: int, prev_hash: str) -> str:
    """Insert a well-formed event with a correct hash over ``prev_hash`` at ``seq``."""
    row = event_row(make_event(1000 + seq, device))
    row.update(seq=seq, prev_hash=prev_hash, hash=chain.event_hash(prev_hash, row["body"]))
    with database.session() as session:
        session.add(LogEvent(**row))
    return str(row["uuid"])


def test_an_inserted_event_is_named(database: Database, device: CertificateInfo) -> None:
    fill(database, device, 5)
    # Make room after seq 2 (moving seqs up from the top), and slot in a linked event.
    for seq in (5, 4, 3):
        sql(database, "UPDATE log_events SET seq = :n WHERE seq = :s", n=seq + 1, s=seq)
    sql(database, "UPDATE log_chain SET last_seq = 6")
    forged = forge(database, device, 3, row_of(database, 2).hash)
    expect(chain.verify_chain(database), forged, 3, chain.INSERTED)


def test_an_inserted_event_with_a_made_up_link(database: Database, device: CertificateInfo) -> None:
    fill(database, device, 4)
    for seq in (4, 3):
        sql(database, "UPDATE log_events SET seq = :n WHERE seq = :s", n=seq + 1, s=seq)
    sql(database, "UPDATE log_chain SET last_seq = 5")
    forged = forge(database, device, 3, "e" * 64)
    expect(chain.verify_chain(database), forged, 3, chain.INSERTED)


def test_swapped_events_are_named(database: Database, device: CertificateInfo) -> None:
    uuids = fill(database, device, 5)
    sql(database, "UPDATE log_events SET seq = 100 WHERE seq = 2")
    sql(database, "UPDATE log_events SET seq = 2 WHERE seq = 3")
    sql(database, "UPDATE log_events SET seq = 3 WHERE seq = 100")
    expect(chain.verify_chain(database), uuids[2], 2, chain.INSERTED)


def test_an_event_added_after_the_head_is_named(
    database: Database, device: CertificateInfo
) -> None:
    fill(database, device, 3)
    forged = forge(database, device, 4, row_of(database, 3).hash)
    expect(chain.verify_chain(database), forged, 4, chain.INSERTED_AFTER_HEAD)


def test_an_event_before_the_anchor_is_named(database: Database, device: CertificateInfo) -> None:
    fill(database, device, 4)
    with database.session() as session:
        anchor = session.scalar(select(LogEvent.hash).where(LogEvent.seq == 2))
        session.execute(delete(LogEvent).where(LogEvent.seq <= 2))
        session.execute(update(LogChain).values(anchor_seq=2, anchor_hash=anchor))
    assert chain.verify_chain(database).ok  # what a purge does
    forged = forge(database, device, 1, chain.GENESIS)
    expect(chain.verify_chain(database), forged, 1, chain.INSERTED_BEFORE_ANCHOR)


def test_verify_streams_a_long_chain(database: Database, device: CertificateInfo) -> None:
    count = 6_000  # more than three fetches of the stream
    fill(database, device, count, batch=1_000)
    report = chain.verify_chain(database)
    assert report.ok and report.checked == count and report.head_seq == count
    sql(database, "UPDATE log_events SET display_message = 'x' WHERE seq = 5500")
    assert chain.verify_chain(database).first_bad_seq == 5500


def test_concurrent_writers_keep_one_chain(
    database: Database, database_url: str, device: CertificateInfo
) -> None:
    """Four threads, each with its own engine (so its own connections), append at once."""
    handles = [Database(database_url) for _ in range(4)]
    errors: list[BaseException] = []

    def writer(db: Database, offset: int) -> None:
        try:
            fill(db, device, 200, batch=7)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(h, i)) for i, h in enumerate(handles)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for h in handles:
        h.dispose()
    assert errors == []
    report = chain.verify_chain(database)
    assert report.ok, report
    assert report.checked == 800


def test_verify_tolerates_appends_while_it_walks(
    database: Database, database_url: str, device: CertificateInfo
) -> None:
    fill(database, device, 3000, batch=500)
    other = Database(database_url)
    stop = threading.Event()

    def keep_appending() -> None:
        while not stop.is_set():
            fill(other, device, 20, batch=5)

    thread = threading.Thread(target=keep_appending)
    thread.start()
    try:
        reports = [chain.verify_chain(database) for _ in range(3)]
    finally:
        stop.set()
        thread.join(30)
        other.dispose()
    assert all(r.ok for r in reports), reports
    assert chain.verify_chain(database).ok
