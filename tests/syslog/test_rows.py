"""Event -> ``log_events`` row: canonical body, columns derived from it, widths, and the
fast insert path storing exactly what the ORM would (SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest
from sqlalchemy import insert, select, text

from certbound.errors import ReasonCode
from certbound.pki import devpki
from certbound.pki.certificate import CertificateInfo
from certbound.storage.database import Database
from certbound.storage.models import LogEvent
from certbound.syslog import chain
from certbound.syslog.events import Actor, Client, Event, EventType, Outcome, Result, Target
from certbound.syslog.rows import DERIVED_COLUMNS, body_row, canonical_json, event_row

PUBLISHED = dt.datetime(2025, 6, 1, 12, 30, 45, 123456, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def pki() -> devpki.DevPKI:
    return devpki.build_dev_pki()


def device_trust(cert: devpki.Issued, reason: ReasonCode | None) -> dict[str, object]:
    info = CertificateInfo.of(cert.cert)
    return {
        "verified": reason is None,
        "reason": reason.value if reason else None,
        "certificate": {
            "subjectDn": info.subject_dn,
            "issuerDn": info.issuer_dn,
            "serialNumber": info.serial_number,
            "sha256Thumbprint": info.sha256_fingerprint,
            "notBefore": info.to_dict()["not_before"],
            "notAfter": info.to_dict()["not_after"],
            "sans": list(info.sans),
        },
        "revocation": None,
    }


def verify_event(cert: devpki.Issued, reason: ReasonCode | None = None) -> Event:
    return Event(
        event_type=EventType.DEVICE_TRUST_VERIFY,
        display_message="Device certificate verified" if reason is None else "Device refused",
        outcome=Outcome(Result.FAILURE if reason else Result.SUCCESS, reason),
        actor=Actor("dev-1", "Device", "good.devices.certbound.test", "Good device"),
        client=Client("192.0.2.7", "curl/8.5"),
        targets=(Target("app-1", "AppInstance"), Target("pol-9", "Policy")),
        transaction_id="tx-42",
        authentication_context={"credentialType": "CERTIFICATE"},
        device_trust=device_trust(cert, reason),
        published=PUBLISHED,
    )


def test_columns_come_from_the_event(pki: devpki.DevPKI) -> None:
    cert = pki.devices["foreign"]
    event = verify_event(cert, ReasonCode.UNKNOWN_CA)
    row = event_row(event)
    info = CertificateInfo.of(cert.cert)
    assert row["uuid"] == event.uuid
    assert row["published"] == PUBLISHED
    assert row["event_type"] == "device.trust.verify"
    assert (row["severity"], row["outcome_result"], row["outcome_reason"]) == (
        "INFO",
        "FAILURE",
        "UNKNOWN_CA",
    )
    assert (row["actor_id"], row["actor_alternate_id"]) == ("dev-1", "good.devices.certbound.test")
    assert (row["client_ip"], row["transaction_id"]) == ("192.0.2.7", "tx-42")
    assert row["device_serial"] == info.serial_number
    assert row["device_subject_dn"] == info.subject_dn
    assert row["device_issuer_dn"] == "CN=Foreign Issuing CA,O=Elsewhere Inc"
    assert row["device_thumbprint"] == info.sha256_fingerprint
    assert row["target_ids"] == " app-1 pol-9 "
    assert row["display_message"] == "Device refused"
    assert set(row) == {*DERIVED_COLUMNS, "body"}


def test_body_is_the_canonical_event_json(pki: devpki.DevPKI) -> None:
    event = verify_event(pki.devices["good"])
    row = event_row(event)
    assert row["body"] == json.dumps(event.to_dict(), sort_keys=True, separators=(",", ":"))
    assert json.loads(row["body"]) == event.to_dict()
    assert row["body"].isascii()


def test_a_body_gives_back_the_same_row(pki: devpki.DevPKI) -> None:
    row = event_row(verify_event(pki.devices["good"]))
    assert body_row(row["body"]) == row


def test_an_event_without_device_or_targets(pki: devpki.DevPKI) -> None:
    event = Event(EventType.SYSTEM_LOG_PURGE, "purge", Outcome(Result.SUCCESS), published=PUBLISHED)
    row = event_row(event)
    assert row["target_ids"] is None
    assert row["device_serial"] is row["device_thumbprint"] is row["device_subject_dn"] is None
    assert row["transaction_id"] == event.uuid  # Event.to_dict() defaults it to the uuid
    assert row["actor_id"] == "system"


def test_values_are_cut_to_their_column_and_made_storable() -> None:
    event = Event(
        EventType.DEVICE_TRUST_VERIFY,
        "nul \x00 and lone surrogate \ud800",
        Outcome(Result.SUCCESS),
        actor=Actor("a" * 400, "Device", "\x00" * 3),
        published=PUBLISHED,
    )
    row = event_row(event)
    assert row["actor_id"] == "a" * 255
    assert row["actor_alternate_id"] == "\ufffd" * 3
    assert "\x00" not in row["display_message"]
    row["display_message"].encode()  # no lone surrogate left
    assert json.loads(row["body"])["actor"]["id"] == "a" * 400  # the body keeps it all
    assert body_row(row["body"]) == row


def test_canonical_json_sorts_and_escapes() -> None:
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"\\u00e9","b":1}'


@pytest.mark.parametrize("published", [PUBLISHED, PUBLISHED.replace(microsecond=0)])
def test_fast_insert_stores_what_the_orm_stores(
    database: Database, pki: devpki.DevPKI, published: dt.datetime
) -> None:
    """chain.append bypasses the ORM: the stored text (published on SQLite) must match, or
    range queries bound through the ORM would sort a whole second before its own value."""
    event = dataclasses.replace(verify_event(pki.devices["good"]), published=published)
    via_chain = event_row(event)
    via_orm = event_row(dataclasses.replace(event, uuid="orm-row"))
    with database.session() as session:
        chain.append(session, [via_chain])
    with database.session() as session:
        session.execute(insert(LogEvent), [{**via_orm, "prev_hash": "x", "hash": "y"}])
    with database.session() as session:
        stored = {e.uuid: e for e in session.scalars(select(LogEvent))}
        query = text("SELECT uuid, CAST(published AS TEXT) FROM log_events")
        raw = {uuid: published for uuid, published in session.execute(query)}
    a, b = stored[via_chain["uuid"]], stored[via_orm["uuid"]]
    assert a.published == b.published == published
    assert a.published.tzinfo is not None
    assert raw[a.uuid] == raw[b.uuid]
    for column in DERIVED_COLUMNS:
        if column != "uuid":
            assert getattr(a, column) == getattr(b, column), column
