"""EventRecorder on SQLite and PostgreSQL: batching off the caller's thread, flush and close,
the spool when the database goes away for real (a cut TCP path to PostgreSQL, an exclusive
lock on SQLite), replay after a crash, several recorders in several processes on one chain."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from certbound.clock import FixedClock
from certbound.errors import ReasonCode
from certbound.pki import devpki
from certbound.pki.certificate import CertificateInfo
from certbound.storage.database import Database
from certbound.storage.models import LogEvent
from certbound.syslog import chain
from certbound.syslog.events import Actor, Client, Event, EventType, Outcome, Result
from certbound.syslog.recorder import EventRecorder, RecorderStats, Spool
from certbound.syslog.rows import body_row

RESET_CHAIN = (
    f"UPDATE log_chain SET last_seq = 0, last_hash = '{chain.GENESIS}', "
    f"anchor_seq = 0, anchor_hash = '{chain.GENESIS}'"
)
UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/nowhere"  # port 1: connection refused


@pytest.fixture(scope="module")
def device() -> CertificateInfo:
    return CertificateInfo.of(devpki.build_dev_pki().devices["good"].cert)


def make_event(i: int, device: CertificateInfo, published: dt.datetime | None = None) -> Event:
    return Event(
        event_type=EventType.DEVICE_TRUST_VERIFY,
        display_message="Device certificate verified",
        outcome=Outcome(
            Result.SUCCESS if i % 4 else Result.FAILURE, None if i % 4 else ReasonCode.UNKNOWN_CA
        ),
        actor=Actor(f"device-{i % 50}", "Device", f"d{i % 50}.devices.certbound.test"),
        client=Client(f"192.0.2.{i % 250}", "test/1"),
        authentication_context={"credentialType": "CERTIFICATE"},
        device_trust={
            "verified": bool(i % 4),
            "reason": None if i % 4 else "UNKNOWN_CA",
            "certificate": {
                "subjectDn": device.subject_dn,
                "issuerDn": device.issuer_dn,
                "serialNumber": device.serial_number,
                "sha256Thumbprint": device.sha256_fingerprint,
            },
            "revocation": None,
        },
        debug_data={"n": i},
        published=published,
    )


def stored_uuids(db: Database) -> list[str]:
    with db.session() as session:
        return list(session.scalars(select(LogEvent.uuid)))


def assert_stored_once(db: Database, uuids: list[str]) -> None:
    stored = stored_uuids(db)
    assert len(stored) == len(set(stored)), "an event is stored twice"
    missing = set(uuids) - set(stored)
    assert not missing, f"{len(missing)} event(s) lost"
    assert len(stored) == len(uuids)


@pytest.fixture
def recorders(tmp_path: Path) -> Iterator[list[EventRecorder]]:
    """Recorders a test opens, closed at the end even if the test fails."""
    made: list[EventRecorder] = []
    yield made
    for recorder in made:
        recorder.close()


def open_recorder(
    made: list[EventRecorder], db: Database, spool: Path, clock: Any = None, **kw: Any
) -> EventRecorder:
    clock = clock or FixedClock(dt.datetime(2025, 6, 1, tzinfo=dt.UTC))
    recorder = EventRecorder(db, clock, spool_dir=spool, **kw)
    made.append(recorder)
    return recorder


def test_record_publishes_and_stores(
    database: Database, tmp_path: Path, device: CertificateInfo, recorders: list[EventRecorder]
) -> None:
    clock = FixedClock(dt.datetime(2025, 6, 1, 8, 0, tzinfo=dt.UTC))
    recorder = open_recorder(recorders, database, tmp_path / "spool", clock)
    given = make_event(1, device)
    published = recorder.record(given)
    assert given.published is None  # events are immutable: a published copy comes back
    assert published.published == clock.now()
    assert published.uuid == given.uuid
    already = make_event(2, device, published=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    assert recorder.record(already).published == already.published
    assert recorder.flush()
    with database.session() as session:
        rows = {r.uuid: r for r in session.scalars(select(LogEvent))}
    assert json.loads(rows[given.uuid].body) == published.to_dict()
    assert rows[already.uuid].published == already.published
    stats = recorder.stats
    assert stats == RecorderStats(written=2, spooled=0, replayed=0, dropped=0, queued=0)
    assert chain.verify_chain(database).ok


def test_record_is_not_held_up_by_a_slow_database(
    database: Database, tmp_path: Path, device: CertificateInfo, recorders: list[EventRecorder]
) -> None:
    """The writer thread is stuck in a transaction held by someone else: record() returns."""
    recorder = open_recorder(recorders, database, tmp_path / "spool")
    blocker = Database(str(database.engine.url.render_as_string(hide_password=False)))
    try:
        with blocker.session() as session:
            chain.lock_head(session)  # the chain-head lock: every append waits for it
            started = time.monotonic()
            events = [recorder.record(make_event(i, device)) for i in range(200)]
            assert time.monotonic() - started < 1.0
            time.sleep(0.3)
            assert stored_uuids(database) == []
    finally:
        blocker.dispose()
    assert recorder.flush()
    assert_stored_once(database, [e.uuid for e in events])


def test_batches_and_close(
    database: Database, tmp_path: Path, device: CertificateInfo, recorders: list[EventRecorder]
) -> None:
    recorder = open_recorder(recorders, database, tmp_path / "spool", batch_size=64)
    events = [recorder.record(make_event(i, device)) for i in range(1000)]
    recorder.close()
    recorder.close()  # idempotent
    assert_stored_once(database, [e.uuid for e in events])
    assert recorder.stats.written == 1000
    late = recorder.record(make_event(5000, device))  # after close: written on the spot
    assert late.uuid in stored_uuids(database)
    report = chain.verify_chain(database)
    assert report.ok and report.checked == 1001


def test_a_full_queue_spools_instead_of_blocking(
    database: Database, tmp_path: Path, device: CertificateInfo, recorders: list[EventRecorder]
) -> None:
    recorder = open_recorder(recorders, database, tmp_path / "spool", queue_size=5, batch_size=5)
    events = [recorder.record(make_event(i, device)) for i in range(3000)]
    recorder.close()
    stats = recorder.stats
    assert stats.spooled > 0
    assert (stats.dropped, stats.queued) == (0, 0)
    assert stats.replayed == stats.spooled
    assert stats.written + stats.spooled == 3000
    assert_stored_once(database, [e.uuid for e in events])
    assert chain.verify_chain(database).ok
    assert list((tmp_path / "spool").glob("spool-*")) == []


def test_unserialisable_details_are_kept_as_text(
    database: Database, tmp_path: Path, device: CertificateInfo, recorders: list[EventRecorder]
) -> None:
    recorder = open_recorder(recorders, database, tmp_path / "spool")
    odd = Event(
        EventType.DEVICE_TRUST_VERIFY,
        "odd",
        Outcome(Result.SUCCESS),
        debug_data={"when": dt.datetime(2025, 1, 2, tzinfo=dt.UTC), "raw": b"\x01"},
    )
    circular: dict[str, Any] = {}
    circular["self"] = circular
    hopeless = Event(
        EventType.DEVICE_TRUST_VERIFY, "x", Outcome(Result.SUCCESS), debug_data=circular
    )
    recorder.record(odd)
    recorder.record(hopeless)
    recorder.close()
    with database.session() as session:
        body = json.loads(session.scalars(select(LogEvent.body)).one())
    assert body["debugContext"]["debugData"] == {
        "when": "2025-01-02 00:00:00+00:00",
        "raw": "b'\\x01'",
    }
    assert recorder.stats.dropped == 1  # the one event that has no JSON form at all
    assert chain.verify_chain(database).ok


def test_events_are_spooled_while_the_database_is_unreachable(
    tmp_path: Path, device: CertificateInfo, recorders: list[EventRecorder]
) -> None:
    db = Database(UNREACHABLE_PG)
    recorder = open_recorder(recorders, db, tmp_path / "spool", retry_interval=0.05)
    events = [recorder.record(make_event(i, device)) for i in range(300)]
    assert recorder.flush()
    recorder.close()
    db.dispose()
    stats = recorder.stats
    assert (stats.written, stats.spooled, stats.dropped) == (0, 300, 0)
    lines = [
        json.loads(line)
        for path in sorted((tmp_path / "spool").glob("spool-*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    assert [line["uuid"] for line in lines] == [e.uuid for e in events]


def test_dropped_counts_what_neither_database_nor_spool_took(
    tmp_path: Path, device: CertificateInfo, recorders: list[EventRecorder]
) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    db = Database(UNREACHABLE_PG)
    recorder = open_recorder(recorders, db, not_a_directory / "spool")
    for i in range(20):
        recorder.record(make_event(i, device))
    recorder.close()
    db.dispose()
    assert recorder.stats.dropped == 20


CRASHING_WRITER = textwrap.dedent(
    """
    import datetime as dt, json, os, sys
    from pathlib import Path
    from certbound.clock import SystemClock
    from certbound.storage.database import Database
    from certbound.syslog.events import Event, EventType, Outcome, Result
    from certbound.syslog.recorder import EventRecorder

    recorder = EventRecorder(Database(sys.argv[1]), SystemClock(), spool_dir=Path(sys.argv[2]))
    events = [Event(EventType.DEVICE_TRUST_VERIFY, f"crash {i}", Outcome(Result.SUCCESS))
              for i in range(int(sys.argv[3]))]
    for event in events:
        recorder.record(event)
    assert recorder.flush(30)
    print(json.dumps([e.uuid for e in events]), flush=True)
    os._exit(3)  # dies without close(): no atexit, no goodbye
    """
)


def test_a_crashed_process_spool_is_replayed_by_the_next_recorder(
    database: Database, tmp_path: Path, device: CertificateInfo, recorders: list[EventRecorder]
) -> None:
    spool = tmp_path / "spool"
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, UNREACHABLE_PG, str(spool), "700"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    crashed = json.loads(done.stdout)
    [left] = spool.glob("spool-*.jsonl")
    # It died mid-replay earlier: part of the file is stored already, and a torn last line.
    with database.session() as session:
        chain.append(session, [body_row(line) for line in left.read_text().splitlines()[:250]])
    with left.open("a") as fh:
        fh.write('{"uuid": "torn')
    recorder = open_recorder(recorders, database, spool)
    assert recorder.flush()
    recorder.close()
    assert_stored_once(database, crashed)
    assert recorder.stats.replayed == 700
    assert not left.exists()
    assert chain.verify_chain(database).ok


def test_a_spool_file_in_use_is_not_replayed_by_another(tmp_path: Path) -> None:
    writer = Spool(tmp_path)
    writer.append(['{"uuid":"a"}'])
    [path] = writer.files()
    assert Spool.claim(path) is None  # locked by its writer
    writer.close()
    handle = Spool.claim(path)
    assert handle is not None
    assert Spool.claim(path) is None  # and now by the first replayer
    handle.close()


# --- the database goes away mid-stream, for real ------------------------------------------


class CuttableProxy:
    """A TCP proxy in front of PostgreSQL that can cut every connection and refuse new ones:
    the network fault, made real."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.refusing = threading.Event()
        self.closing = threading.Event()
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closing.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refusing.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            self._kill(s)

    @staticmethod
    def _kill(s: socket.socket) -> None:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()

    def cut(self) -> None:
        self.refusing.set()
        with self.lock:
            cut, self.sockets = self.sockets, []
        self.cuts += len(cut) // 2
        for s in cut:
            self._kill(s)

    def restore(self) -> None:
        self.refusing.clear()

    def close(self) -> None:
        self.closing.set()
        self.cut()
        self.listener.close()


def burst(recorder: EventRecorder, device: CertificateInfo, count: int) -> list[str]:
    """Record ``count`` events in paced chunks (about 2 s in all), as traffic would come."""
    uuids = []
    for start in range(0, count, 500):
        uuids += [recorder.record(make_event(i, device)).uuid for i in range(start, start + 500)]
        time.sleep(0.05)
    return uuids


def run_outage(
    recorder: EventRecorder,
    device: CertificateInfo,
    count: int,
    outage: tuple[Any, Any],
    outage_seconds: float,
) -> list[str]:
    uuids: list[str] = []
    producer = threading.Thread(target=lambda: uuids.extend(burst(recorder, device, count)))
    producer.start()
    deadline = time.monotonic() + 30
    while recorder.stats.written < 2000 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert recorder.stats.written >= 2000, "the stream never got going"
    start, end = outage
    start()
    time.sleep(outage_seconds)
    end()
    producer.join(120)
    assert recorder.flush(60)
    recorder.close()
    return uuids


def assert_survived(db: Database, recorder: EventRecorder, uuids: list[str], count: int) -> None:
    stats = recorder.stats
    assert len(uuids) == count
    assert stats.dropped == 0
    assert stats.spooled > 0, "the outage never reached the recorder"
    assert stats.replayed == stats.spooled
    assert stats.written + stats.spooled == count
    assert_stored_once(db, uuids)
    report = chain.verify_chain(db)
    assert report.ok, report
    assert report.checked == count


@pytest.mark.slow
def test_postgres_cut_mid_stream_loses_nothing(
    postgres_url: str, tmp_path: Path, device: CertificateInfo, recorders: list[EventRecorder]
) -> None:
    direct = Database(postgres_url)
    direct.migrate()
    with direct.session() as session:  # the session-wide test database: start empty
        session.execute(text("DELETE FROM log_events"))
        session.execute(text(RESET_CHAIN))
    url = make_url(direct.engine.url.render_as_string(hide_password=False))
    proxy = CuttableProxy(url.host or "127.0.0.1", url.port or 5432)
    proxied = Database(url.set(host="127.0.0.1", port=proxy.port).render_as_string(False))
    try:
        recorder = open_recorder(recorders, proxied, tmp_path / "spool", retry_interval=0.1)
        uuids = run_outage(recorder, device, 20_000, (proxy.cut, proxy.restore), 1.5)
        assert proxy.cuts > 0
        assert_survived(direct, recorder, uuids, 20_000)
    finally:
        proxy.close()
        proxied.dispose()
        direct.dispose()


@pytest.mark.slow
def test_sqlite_locked_mid_stream_loses_nothing(
    tmp_path: Path, device: CertificateInfo, recorders: list[EventRecorder]
) -> None:
    """Another connection holds BEGIN EXCLUSIVE: every write fails with 'database is locked'."""
    path = tmp_path / "locked.db"
    db = Database(f"sqlite:///{path}")

    @sa_event.listens_for(db.engine, "connect")
    def short_busy_timeout(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=100")  # after Database's own pragmas

    db.migrate()
    locker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    locker.execute("PRAGMA busy_timeout=10000")

    def lock() -> None:
        locker.execute("BEGIN EXCLUSIVE")

    def unlock() -> None:
        locker.execute("COMMIT")

    try:
        recorder = open_recorder(recorders, db, tmp_path / "spool", retry_interval=0.1)
        uuids = run_outage(recorder, device, 20_000, (lock, unlock), 1.5)
        assert_survived(db, recorder, uuids, 20_000)
    finally:
        locker.close()
        db.dispose()


CONCURRENT_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from certbound.clock import SystemClock
    from certbound.storage.database import Database
    from certbound.syslog.events import Event, EventType, Outcome, Result
    from certbound.syslog.recorder import EventRecorder

    db = Database(sys.argv[1])
    recorder = EventRecorder(db, SystemClock(), spool_dir=Path(sys.argv[2]), batch_size=50)
    for i in range(int(sys.argv[3])):
        recorder.record(Event(EventType.DEVICE_TRUST_VERIFY, f"p{i}", Outcome(Result.SUCCESS)))
    recorder.close()
    stats = recorder.stats
    assert stats.dropped == 0, stats
    print(stats.written + stats.replayed)
    """
)


@pytest.mark.slow
def test_recorders_in_several_processes_keep_one_chain(
    database: Database,
    database_url: str,
    tmp_path: Path,
    device: CertificateInfo,
    recorders: list[EventRecorder],
) -> None:
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                CONCURRENT_WRITER,
                database_url,
                str(tmp_path / f"s{i}"),
                "1500",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    local = open_recorder(recorders, Database(database_url), tmp_path / "local", batch_size=50)
    for i in range(1500):
        local.record(make_event(i, device))
    local.close()
    outputs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outputs]
    assert sum(int(out) for out, _ in outputs) == 4500
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(LogEvent)) == 6000
    report = chain.verify_chain(database)
    assert report.ok, report
    assert report.checked == 6000


def test_an_event_the_database_refuses_does_not_sink_its_batch(
    database: Database, tmp_path: Path, device: CertificateInfo, recorders: list[EventRecorder]
) -> None:
    """A real refusal (a CHECK constraint; a trigger on SQLite): the rest of the batch is
    stored, the refused event is counted as dropped and kept in rejected.jsonl."""
    sqlite = database.engine.dialect.name == "sqlite"
    refuse = (
        "CREATE TRIGGER refuse_evil BEFORE INSERT ON log_events "
        "WHEN NEW.display_message = 'evil' BEGIN SELECT RAISE(ABORT, 'evil'); END"
        if sqlite
        else "ALTER TABLE log_events ADD CONSTRAINT refuse_evil CHECK (display_message <> 'evil')"
    )
    allow = (
        "DROP TRIGGER refuse_evil"
        if sqlite
        else "ALTER TABLE log_events DROP CONSTRAINT refuse_evil"
    )
    with database.session() as session:
        session.execute(text(refuse))
    try:
        recorder = open_recorder(recorders, database, tmp_path / "spool", batch_size=100)
        good = [make_event(i, device) for i in range(50)]
        evil = Event(EventType.DEVICE_TRUST_VERIFY, "evil", Outcome(Result.SUCCESS))
        for event in [*good[:25], evil, *good[25:]]:
            recorder.record(event)
        recorder.close()
    finally:
        with database.session() as session:
            session.execute(text(allow))
    assert_stored_once(database, [e.uuid for e in good])
    assert (recorder.stats.written, recorder.stats.dropped) == (50, 1)
    [kept] = (tmp_path / "spool" / "rejected.jsonl").read_text().splitlines()
    assert json.loads(kept)["uuid"] == evil.uuid
    assert chain.verify_chain(database).ok


def test_a_steady_stream_is_written_once_per_linger(
    database: Database, tmp_path: Path, device: CertificateInfo, recorders: list[EventRecorder]
) -> None:
    """Under load the writer gathers what arrived since its last transaction (one per
    ``linger``) instead of writing every handful of events as it comes."""
    transactions: list[int] = []

    def committed(_conn: Any) -> None:
        transactions.append(1)

    sa_event.listen(database.engine, "commit", committed)
    try:
        recorder = open_recorder(recorders, database, tmp_path / "spool", linger=0.05)
        uuids = []
        started = time.monotonic()
        for i in range(2000):  # about 1 s: events arrive faster than one transaction takes
            uuids.append(recorder.record(make_event(i, device)).uuid)
            time.sleep(0.0005)
        elapsed = time.monotonic() - started
        assert recorder.flush(10)
    finally:
        sa_event.remove(database.engine, "commit", committed)
    assert_stored_once(database, uuids)
    # One transaction per 50 ms linger (plus the first and the flush), not one per handful.
    assert len(transactions) <= elapsed / 0.05 + 5, (len(transactions), elapsed)
