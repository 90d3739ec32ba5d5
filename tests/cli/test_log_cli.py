"""``certbound log`` (table, JSON lines, filters, --follow), ``log verify`` and ``log purge``;
on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from sqlalchemy import select, text, update

from certbound.cli import log as log_cli
from certbound.cli.main import EXIT_FAILED, EXIT_OK, EXIT_USAGE, cli
from certbound.clock import format_rfc3339
from certbound.errors import ReasonCode
from certbound.pki import devpki
from certbound.pki.certificate import serial_hex, sha256_fingerprint
from certbound.storage.database import Database
from certbound.storage.models import LogEvent
from certbound.syslog import chain
from certbound.syslog.events import Actor, Event, EventType, Outcome
from certbound.syslog.events import Result as EventResult
from certbound.syslog.rows import event_row

MINUTE = dt.timedelta(minutes=1)
DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def certs() -> dict[str, x509.Certificate]:
    pki = devpki.build_dev_pki()
    return {name: issued.cert for name, issued in pki.devices.items()}


def verify_event(
    cert: x509.Certificate, reason: ReasonCode | None, published: dt.datetime
) -> Event:
    return Event(
        EventType.DEVICE_TRUST_VERIFY,
        f"device certificate {cert.subject.rfc4514_string()}: {reason or 'verified'}",
        Outcome(EventResult.FAILURE if reason else EventResult.SUCCESS, reason),
        actor=Actor("device-1", "Device", "laptop-42"),
        device_trust={
            "verified": reason is None,
            "reason": reason.value if reason else None,
            "certificate": {
                "subjectDn": cert.subject.rfc4514_string(),
                "issuerDn": cert.issuer.rfc4514_string(),
                "serialNumber": serial_hex(cert),
                "sha256Thumbprint": sha256_fingerprint(cert),
            },
        },
        published=published,
    )


def append(database: Database, events: Sequence[Event]) -> list[Event]:
    with database.session() as session:
        chain.append(session, [event_row(e) for e in events])
    return list(events)


@pytest.fixture
def events(database: Database, certs: dict[str, x509.Certificate]) -> list[Event]:
    """Three events of the last hour and one of 30 days ago (real time: the CLI uses it)."""
    now = dt.datetime.now(dt.UTC)
    return append(
        database,
        [
            verify_event(certs["good"], None, now - 30 * DAY),
            verify_event(certs["expired"], ReasonCode.CERTIFICATE_EXPIRED, now - 30 * MINUTE),
            verify_event(certs["foreign"], ReasonCode.UNKNOWN_CA, now - 20 * MINUTE),
            verify_event(certs["good"], None, now - 10 * MINUTE),
        ],
    )


@pytest.fixture
def run(database: Database, database_url: str, tmp_path: Path) -> Any:
    cli.add_command(log_cli.log)
    env = {
        "CERTBOUND_DATABASE_URL": database_url,
        "CERTBOUND_DATA_DIR": str(tmp_path / "data"),
        "CERTBOUND_CONFIG": None,
        "CERTBOUND_LOG_RETENTION_DAYS": None,
    }

    def invoke(*args: str, **extra_env: str) -> Result:
        return CliRunner().invoke(cli, list(args), env={**env, **extra_env})

    return invoke


def json_lines(result: Result) -> list[dict[str, Any]]:
    assert result.exit_code == EXIT_OK, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_table_shows_time_type_outcome_reason_actor_serial(
    run: Any, events: list[Event], certs: dict[str, x509.Certificate]
) -> None:
    result = run("log")
    assert result.exit_code == EXIT_OK, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "time",
        "event",
        "type",
        "outcome",
        "reason",
        "actor",
        "device",
        "serial",
    ]
    rows = [line.split() for line in lines[1:]]
    assert len(rows) == 3  # the 30-day-old event is outside the default 7 days
    published = [format_rfc3339(e.published) for e in events[1:]]  # type: ignore[arg-type]
    assert rows[0] == [
        published[0], "device.trust.verify", "FAILURE", "CERTIFICATE_EXPIRED", "laptop-42",
        serial_hex(certs["expired"]),
    ]  # fmt: skip
    assert rows[1][3] == "UNKNOWN_CA" and rows[1][0] == published[1]
    assert rows[2][2:4] == ["SUCCESS", "laptop-42"]  # no reason: the cell is empty


def test_json_lines_are_the_events(run: Any, events: list[Event]) -> None:
    assert json_lines(run("log", "--json")) == [e.to_dict() for e in events[1:]]
    since = format_rfc3339(dt.datetime.now(dt.UTC) - 40 * DAY)
    everything = json_lines(run("log", "--json", "--since", since))
    assert [e["uuid"] for e in everything] == [e.uuid for e in events]
    assert [e["uuid"] for e in json_lines(run("log", "--json", "--since", "40d"))] == [
        e.uuid for e in events
    ]


def test_filter_q_limit_and_descending(run: Any, events: list[Event]) -> None:
    failed = json_lines(run("log", "--json", "--filter", 'outcome.result eq "FAILURE"'))
    assert [e["uuid"] for e in failed] == [events[1].uuid, events[2].uuid]
    found = json_lines(run("log", "--json", "--q", "foreign"))
    assert [e["uuid"] for e in found] == [events[2].uuid]
    assert len(json_lines(run("log", "--json", "--limit", "2"))) == 2
    newest = json_lines(
        run("log", "--json", "--until", "0s", "--sort-order", "DESCENDING", "--limit", "1")
    )
    assert [e["uuid"] for e in newest] == [events[3].uuid]


@pytest.mark.parametrize(
    ("args", "reason", "needle"),
    [
        (["--filter", 'nosuch eq "x"'], "INVALID_FILTER", "unknown attribute 'nosuch'"),
        (["--filter", "eventType eq"], "INVALID_FILTER", "syntax error"),
        (["--q", "x" * 41], "INVALID_QUERY", "q"),
        (["--since", "1h", "--until", "2h"], "INVALID_QUERY", "later than since"),
        (["--sort-order", "DESCENDING"], "INVALID_QUERY", "until"),
    ],
)
def test_bad_queries_exit_2_with_the_reason_code(
    run: Any, events: list[Event], args: list[str], reason: str, needle: str
) -> None:
    result = run("log", *args)
    assert result.exit_code == EXIT_USAGE, result.output
    assert f"error {reason}: " in result.stderr and needle in result.stderr
    assert "fix: " in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["--limit", "5000"],
        ["--limit", "0"],
        ["--since", "yesterday"],
        ["--follow", "--until", "1h"],
        ["--follow", "--sort-order", "DESCENDING"],
    ],
)
def test_bad_options_are_usage_errors(run: Any, args: list[str]) -> None:
    result = run("log", *args)
    assert result.exit_code == EXIT_USAGE, result.output


def test_follow_prints_new_events_until_max_seconds(
    run: Any, database: Database, events: list[Event], certs: dict[str, x509.Certificate]
) -> None:
    later: list[Event] = []

    def add() -> None:
        event = verify_event(certs["foreign"], ReasonCode.UNKNOWN_CA, dt.datetime.now(dt.UTC))
        later.extend(append(database, [event]))

    timer = threading.Timer(0.5, add)
    timer.start()
    try:
        result = run("log", "--follow", "--json", "--max-seconds", "2.5")
    finally:
        timer.join()
    uuids = [e["uuid"] for e in json_lines(result)]
    assert uuids == [e.uuid for e in events[1:]] + [later[0].uuid]


def test_follow_table_prints_one_header(run: Any, events: list[Event]) -> None:
    result = run("log", "--follow", "--max-seconds", "1.2")
    assert result.exit_code == EXIT_OK, result.output
    assert result.stdout.count("event type") == 1
    assert len(result.stdout.splitlines()) == 4


def test_follow_exits_cleanly_on_ctrl_c(
    database_url: str, events: list[Event], tmp_path: Path
) -> None:
    """A real process: SIGINT while following ends it with exit 0 and no traceback."""
    env = {
        **os.environ,
        "CERTBOUND_DATABASE_URL": database_url,
        "CERTBOUND_DATA_DIR": str(tmp_path / "data"),
    }
    env.pop("CERTBOUND_CONFIG", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "certbound", "log", "--follow", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # the first event: the poll loop is running
        assert json.loads(first)["uuid"] == events[1].uuid
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        out = process.stdout.read()  # not communicate(): it would skip readline's buffer
        err = process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == EXIT_OK, err
    assert "Traceback" not in err
    assert [json.loads(line)["uuid"] for line in out.splitlines()] == [e.uuid for e in events[2:]]


def test_verify_ok_then_names_the_edited_event(
    run: Any, database: Database, events: list[Event]
) -> None:
    ok = run("log", "verify")
    assert ok.exit_code == EXIT_OK, ok.output
    assert "chain OK: 4 event(s) checked" in ok.stdout
    assert "head: seq 4 hash " in ok.stdout
    with database.session() as session:
        seq = session.scalar(select(LogEvent.seq).where(LogEvent.uuid == events[2].uuid))
        session.execute(
            update(LogEvent)
            .where(LogEvent.uuid == events[2].uuid)
            .values(body=LogEvent.body + text("''"), display_message="nothing happened")
        )
    broken = run("log", "verify")
    assert broken.exit_code == EXIT_FAILED, broken.output
    assert f"BROKEN at event {events[2].uuid} (seq {seq}): edited" in broken.stdout
    data = json.loads(run("log", "verify", "--json").stdout)
    assert (data["ok"], data["first_bad_uuid"], data["problem"]) == (
        False,
        events[2].uuid,
        "edited",
    )


def test_verify_names_a_deletion(run: Any, database: Database, events: list[Event]) -> None:
    with database.session() as session:
        session.execute(LogEvent.__table__.delete().where(LogEvent.uuid == events[1].uuid))
    broken = run("log", "verify")
    assert broken.exit_code == EXIT_FAILED
    assert f"BROKEN at event {events[2].uuid}" in broken.stdout
    assert "deleted" in broken.stdout


def test_purge_keeps_the_chain_verifiable_and_is_logged(
    run: Any, database: Database, events: list[Event]
) -> None:
    result = run("log", "purge", "--older-than", "7", "--json")
    assert result.exit_code == EXIT_OK, result.output
    assert json.loads(result.stdout) == {"purged": 1, "olderThanDays": 7}
    with database.session() as session:
        remaining = session.scalars(select(LogEvent.event_type).order_by(LogEvent.seq)).all()
    assert remaining == ["device.trust.verify"] * 3 + ["system.log.purge"]
    assert run("log", "verify").exit_code == EXIT_OK


def test_purge_defaults_to_the_configured_retention(
    run: Any, database: Database, events: list[Event]
) -> None:
    kept = run("log", "purge")  # 90 days by default: nothing is old enough
    assert kept.exit_code == EXIT_OK and "purged 0 event(s) older than 90 day(s)" in kept.stdout
    purged = run("log", "purge", CERTBOUND_LOG_RETENTION_DAYS="10")
    assert "purged 1 event(s) older than 10 day(s)" in purged.stdout
    assert run("log", "verify").exit_code == EXIT_OK


def test_table_prints_event_text_literally(run: Any, database: Database) -> None:
    event = Event(
        EventType.SYSTEM_API_TOKEN_CREATE,
        "markup",
        Outcome(EventResult.SUCCESS),
        actor=Actor("x", "User", "[/red][bold]eve"),
        published=dt.datetime.now(dt.UTC) - MINUTE,
    )
    append(database, [event])
    result = run("log")
    assert result.exit_code == EXIT_OK, result.output
    assert "[/red][bold]eve" in result.stdout


def test_verify_names_events_deleted_at_the_end(
    run: Any, database: Database, events: list[Event]
) -> None:
    with database.session() as session:
        last = session.scalar(select(LogEvent.seq).where(LogEvent.uuid == events[3].uuid))
        session.execute(LogEvent.__table__.delete().where(LogEvent.uuid == events[3].uuid))
    broken = run("log", "verify")
    assert broken.exit_code == EXIT_FAILED
    assert f"BROKEN at seq {last} (no such event): deleted at the end" in broken.stdout
