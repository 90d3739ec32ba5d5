"""The device-trust decision (certbound.devices.trust) over a real trust store, validator,
device registry and System Log, on SQLite and PostgreSQL; and what diagnose says of it."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import func, select

from certbound.clock import FixedClock
from certbound.devices.mapping import MappingRules
from certbound.devices.registry import DeviceRegistry
from certbound.devices.trust import DeviceTrust
from certbound.errors import Layer, ReasonCode, WouldBlockError
from certbound.intake.chain import IntakePath, Presented
from certbound.intake.tls import HandshakeRejection
from certbound.pki import devpki
from certbound.pki.revocation import RevocationChecker, stored_policies
from certbound.pki.revocation_policy import Mode, RevocationPolicy
from certbound.pki.truststore import TrustStore
from certbound.pki.validation import Validator
from certbound.storage.database import Database
from certbound.storage.models import LogEvent
from certbound.syslog import diagnosis
from certbound.syslog.events import Client
from certbound.syslog.recorder import EventRecorder

PKI = devpki.build_dev_pki()


def der(name: str) -> bytes:
    return PKI.devices[name].cert.public_bytes(Encoding.DER)


@pytest.fixture
def recorder(database: Database, clock: FixedClock, tmp_path: Path) -> Iterator[EventRecorder]:
    recorder = EventRecorder(database, clock, spool_dir=tmp_path / "spool")
    yield recorder
    recorder.close()


@pytest.fixture
def trust(database: Database, clock: FixedClock, recorder: EventRecorder) -> DeviceTrust:
    store = TrustStore(database, clock)
    off = RevocationPolicy(mode=Mode.OFF)
    store.add(devpki.pem_bundle([PKI.intermediate, PKI.root]), "dev", revocation=off)
    registry = DeviceRegistry(database, clock, MappingRules.parse(["san_email", "cn"]))
    return DeviceTrust(Validator(store, clock), registry, recorder)


def over_tls(*names: str) -> Presented:
    return Presented(IntakePath.TLS, tuple(der(n) for n in names), "127.0.0.1:5000", True)


def logged(database: Database, recorder: EventRecorder, uuid: str) -> dict[str, Any]:
    assert recorder.flush()
    event = diagnosis.event_by_uuid(database, uuid)
    assert event is not None
    return event


def test_good_device_is_verified_mapped_and_logged(
    database: Database, recorder: EventRecorder, trust: DeviceTrust
) -> None:
    decision = trust.evaluate(over_tls("good"), Client("127.0.0.1"))
    assert decision.verified and decision.device is not None
    assert decision.device.user == devpki.GOOD_DEVICE_USER
    body = decision.to_dict()
    assert body["verdict"] == "ALLOW" and body["chain"][0]["subjectDn"].startswith("CN=good")
    event = logged(database, recorder, decision.event_id)
    assert event["eventType"] == "device.trust.verify"
    assert event["outcome"] == {"result": "SUCCESS", "reason": None}
    assert event["deviceTrust"]["intake"]["path"] == "tls"
    assert event["deviceTrust"]["device"]["id"] == decision.device.id
    assert event["actor"] == {
        "id": decision.device.id,
        "type": "Device",
        "alternateId": decision.device.subject_dn,
        "displayName": devpki.GOOD_DEVICE_USER,
    }


@pytest.mark.parametrize(
    ("names", "reason"),
    [(("expired",), ReasonCode.CERTIFICATE_EXPIRED), (("foreign",), ReasonCode.UNKNOWN_CA),
     ((), ReasonCode.NO_CLIENT_CERTIFICATE)],
)  # fmt: skip
def test_refusals_carry_their_reason(
    database: Database,
    recorder: EventRecorder,
    trust: DeviceTrust,
    names: tuple[str, ...],
    reason: ReasonCode,
) -> None:
    decision = trust.evaluate(over_tls(*names), Client())
    assert decision.reason is reason and decision.device is None
    event = logged(database, recorder, decision.event_id)
    assert event["outcome"]["reason"] == reason.value
    assert event["deviceTrust"]["verified"] is False


def test_intake_problem_wins_and_is_explained(
    database: Database, recorder: EventRecorder, trust: DeviceTrust, clock: FixedClock
) -> None:
    presented = Presented(
        IntakePath.NONE,
        (),
        "10.0.0.9:4000",
        False,
        listener="http",
        problem=ReasonCode.UNTRUSTED_PROXY_HEADER,
        problem_detail="client-cert from 10.0.0.9, not a trusted proxy",
        ignored_headers=("client-cert",),
    )
    decision = trust.evaluate(presented, Client("10.0.0.9"))
    assert decision.reason is ReasonCode.UNTRUSTED_PROXY_HEADER
    event = logged(database, recorder, decision.event_id)
    explained = diagnosis.explain(event, [], clock.now())
    assert explained.layer is Layer.INTAKE
    assert any("10.0.0.9" in line and "client-cert" in line for line in explained.what_happened)


def test_suspended_device_is_refused_and_diagnosed(
    database: Database, recorder: EventRecorder, trust: DeviceTrust, clock: FixedClock
) -> None:
    device = trust.evaluate(over_tls("good"), Client()).device
    assert device is not None
    trust.registry.suspend(device.id)
    decision = trust.evaluate(over_tls("good"), Client())
    assert decision.reason is ReasonCode.DEVICE_SUSPENDED and not decision.verified
    event = logged(database, recorder, decision.event_id)
    assert event["outcome"] == {"result": "FAILURE", "reason": "DEVICE_SUSPENDED"}
    assert event["deviceTrust"]["certificate"]["subjectDn"].startswith("CN=good")
    explained = diagnosis.explain(event, [], clock.now())
    assert explained.layer is Layer.IDENTITY
    assert f"certbound device resume {device.id}" in " ".join(explained.what_happened)
    assert trust.judge((der("good"),)) == (ReasonCode.DEVICE_SUSPENDED, decision.detail)


def test_judge_and_handshake_rejection(
    database: Database, recorder: EventRecorder, trust: DeviceTrust
) -> None:
    assert trust.judge((der("good"),)) is None
    refusal = trust.judge((der("expired"),))
    assert refusal is not None and refusal[0] is ReasonCode.CERTIFICATE_EXPIRED
    trust.record_rejection(
        HandshakeRejection((der("expired"),), refusal[0], refusal[1], "127.0.0.1:6000", "TLSv1.3")
    )
    assert recorder.flush()
    with database.session() as session:
        bodies = session.scalars(select(LogEvent.body)).all()
    events = [json.loads(body) for body in bodies]
    (event,) = [e for e in events if e["outcome"]["reason"] == "CERTIFICATE_EXPIRED"]
    assert event["deviceTrust"]["intake"]["rejectedInHandshake"] is True
    assert event["deviceTrust"]["certificate"]["subjectDn"].startswith("CN=expired")
    assert event["client"]["ipAddress"] == "127.0.0.1"


# offline: decided on the event loop from cached answers only ------------------------------


def test_offline_needs_a_warm_chain_and_records_once(
    database: Database, recorder: EventRecorder, trust: DeviceTrust
) -> None:
    presented = over_tls("good")
    with pytest.raises(WouldBlockError):  # never validated, never seen
        trust.evaluate(presented, Client(), offline=True)
    first = trust.evaluate(presented, Client())
    second = trust.evaluate(presented, Client(), offline=True)
    assert second.verified and second.device == first.device
    assert recorder.flush()
    with database.session() as session:
        count = session.scalar(select(func.count()).select_from(LogEvent))
    assert count == 2  # the two decisions: the offline try that would block recorded nothing


def test_offline_refusals_of_cached_chains_are_decided_too(trust: DeviceTrust) -> None:
    presented = over_tls("expired")
    with pytest.raises(WouldBlockError):
        trust.evaluate(presented, Client(), offline=True)
    trust.evaluate(presented, Client())
    decision = trust.evaluate(presented, Client(), offline=True)
    assert decision.reason is ReasonCode.CERTIFICATE_EXPIRED


def test_offline_defers_due_polls_to_a_thread(trust: DeviceTrust) -> None:
    presented = over_tls("good")
    trust.evaluate(presented, Client())
    trust.validator._checked_at -= 60  # the trust-store generation poll is due
    with pytest.raises(WouldBlockError):
        trust.evaluate(presented, Client(), offline=True)
    trust.evaluate(presented, Client())
    trust.evaluate(presented, Client(), offline=True)
    trust.registry._poll_due = trust.registry._poll_due.replace(year=2000)  # status poll due
    with pytest.raises(WouldBlockError):
        trust.evaluate(presented, Client(), offline=True)


def test_offline_revocation_answers_only_from_a_fresh_crl(
    database: Database, clock: FixedClock, recorder: EventRecorder, tmp_path: Path
) -> None:
    crl = tmp_path / "intermediate.crl.pem"
    crl.write_bytes(PKI.crl.public_bytes(Encoding.PEM))
    store = TrustStore(database, clock)
    policy = RevocationPolicy(crl_url=crl.as_uri())
    store.add(devpki.pem_bundle([PKI.intermediate, PKI.root]), "dev", revocation=policy)
    checker = RevocationChecker(database, clock, recorder=recorder)
    try:
        validator = Validator(store, clock, revocation=checker, policies=stored_policies(database))
        registry = DeviceRegistry(database, clock, MappingRules.parse(["cn"]))
        trust = DeviceTrust(validator, registry, recorder)
        trust.evaluate(over_tls("good"), Client())
        assert trust.evaluate(over_tls("good"), Client(), offline=True).verified
        with pytest.raises(WouldBlockError):  # validated, but its CRL is not held: the
            trust.evaluate(over_tls("revoked"), Client(), offline=True)  # cold path first
        trust.evaluate(over_tls("revoked"), Client())
        decision = trust.evaluate(over_tls("revoked"), Client(), offline=True)
        assert decision.reason is ReasonCode.REVOKED_CERTIFICATE
        clock.advance(dt.timedelta(days=8))  # past the CRL's nextUpdate: a download is due
        with pytest.raises(WouldBlockError):
            trust.validator.verify((der("good"),), offline=True)
    finally:
        checker.close()
