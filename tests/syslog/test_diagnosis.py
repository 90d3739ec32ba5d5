"""Explaining logged decisions (certbound.syslog.diagnosis) from real validations against a
real trust store, with the events stored in the log; on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

import pytest

from certbound.clock import FixedClock
from certbound.errors import CertboundError, Layer, ReasonCode
from certbound.pki import devpki, events
from certbound.pki.certificate import der, key_id, serial_hex, subject_key_id
from certbound.pki.pem import load_presented_file
from certbound.pki.truststore import TrustStore
from certbound.pki.validation import Validator
from certbound.storage.database import Database
from certbound.syslog import chain, diagnosis
from certbound.syslog.diagnosis import Explanation, SelectorError
from certbound.syslog.events import Event
from certbound.syslog.rows import event_row

DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def pki() -> devpki.DevPKI:
    return devpki.build_dev_pki()


@pytest.fixture
def store(database: Database, clock: FixedClock) -> TrustStore:
    return TrustStore(database, clock)


Log = Callable[[Event], str]


@pytest.fixture
def log(database: Database, now: dt.datetime) -> Log:
    """Store an event in the System Log, each one a millisecond after the previous."""
    count = [0]

    def append(event: Event) -> str:
        count[0] += 1
        at = now + dt.timedelta(milliseconds=count[0])
        with database.session() as session:
            chain.append(session, [event_row(dataclasses.replace(event, published=at))])
        return event.uuid

    return append


def verify(
    store: TrustStore, item: devpki.Issued, at: dt.datetime | None = None, *extra: devpki.Issued
) -> Event:
    presented = [item.cert, *(e.cert for e in extra)]
    result = Validator(store, cache_size=0).verify([der(c) for c in presented], at)
    return events.device_verified(result, item.cert, at=at)


def explained(database: Database, event_uuid: str, now: dt.datetime) -> Explanation:
    event = diagnosis.event_by_uuid(database, event_uuid)
    assert event is not None
    return diagnosis.explain(event, diagnosis.stored_certificates(database), now)


def text(explanation: Explanation) -> str:
    return "\n".join(explanation.what_happened)


def upload_chain(store: TrustStore, pki: devpki.DevPKI) -> str:
    return store.add(devpki.pem_bundle([pki.intermediate, pki.root]), "Dev chain").id


# certificate layer -----------------------------------------------------------------------


def test_unknown_ca_names_the_issuer_and_the_uploaded_cas(
    database: Database, store: TrustStore, pki: devpki.DevPKI, log: Log, now: dt.datetime
) -> None:
    ca_id = upload_chain(store, pki)
    found = explained(database, log(verify(store, pki.devices["foreign"])), now)
    assert found.layer is Layer.CERTIFICATE
    assert found.reason == "UNKNOWN_CA"
    assert found.fix == ReasonCode.UNKNOWN_CA.fix
    assert found.meaning == ReasonCode.UNKNOWN_CA.meaning
    body = text(found)
    assert "'CN=Foreign Issuing CA,O=Elsewhere Inc'" in body
    assert f"(authority key id {key_id(pki.devices['foreign'].cert)})" in body
    assert "Uploaded CAs (1 chain)" in body
    assert f"{ca_id} (Dev chain): {pki.root.name.rfc4514_string()}" in body
    assert f"{ca_id} (Dev chain): {pki.intermediate.name.rfc4514_string()}" in body
    assert found.facts["issuerDn"] == "CN=Foreign Issuing CA,O=Elsewhere Inc"
    assert {c["caId"] for c in found.facts["uploadedCas"]} == {ca_id}
    data = found.to_dict()
    assert data["layer"] == "certificate" and data["reason"] == "UNKNOWN_CA"
    assert data["device"]["serialNumber"] == serial_hex(pki.devices["foreign"].cert)


def test_unknown_ca_with_an_empty_store(
    database: Database, store: TrustStore, pki: devpki.DevPKI, log: Log, now: dt.datetime
) -> None:
    found = explained(database, log(verify(store, pki.devices["good"])), now)
    assert found.reason == "UNKNOWN_CA"
    assert "The trust store is empty" in text(found)


def test_unknown_ca_uploaded_since(
    database: Database, store: TrustStore, pki: devpki.DevPKI, log: Log, now: dt.datetime
) -> None:
    event_uuid = log(verify(store, pki.devices["good"]))
    ca_id = upload_chain(store, pki)
    body = text(explained(database, event_uuid, now))
    assert f"is in the trust store now ({ca_id})" in body


def test_intermediate_missing_says_which_to_upload(
    database: Database, store: TrustStore, pki: devpki.DevPKI, log: Log, now: dt.datetime
) -> None:
    store.add(pki.root.cert_pem())
    found = explained(database, log(verify(store, pki.devices["good"])), now)
    assert (found.layer, found.reason) == (Layer.CERTIFICATE, "INTERMEDIATE_MISSING")
    body = text(found)
    inter = pki.intermediate.name.rfc4514_string()
    aki = key_id(pki.devices["good"].cert)
    assert f"Upload that intermediate: the CA certificate with subject {inter!r}" in body
    assert f"subject key id {aki}" in body
    assert subject_key_id(pki.intermediate.cert) == aki
    assert found.facts["missingIntermediate"] == {"subjectDn": inter, "subjectKeyId": aki}
    assert "verify the device again" not in body


def test_certificate_expired_says_when_and_how_long_ago(
    database: Database, store: TrustStore, pki: devpki.DevPKI, log: Log, now: dt.datetime
) -> None:
    upload_chain(store, pki)
    expired = pki.devices["expired"].cert
    asked = expired.not_valid_after_utc + 3 * DAY + dt.timedelta(hours=1)
    found = explained(database, log(verify(store, pki.devices["expired"])), asked)
    assert (found.layer, found.reason) == (Layer.CERTIFICATE, "CERTIFICATE_EXPIRED")
    body = text(found)
    not_after = expired.not_valid_after_utc.isoformat().replace("+00:00", "Z")
    assert f"has notAfter {not_after}" in body
    assert "It expired 3 days ago." in body
    assert found.facts["notAfter"] == not_after


def test_validation_time_from_verify_at(
    database: Database, store: TrustStore, pki: devpki.DevPKI, log: Log, now: dt.datetime
) -> None:
    upload_chain(store, pki)
    at = pki.devices["good"].cert.not_valid_after_utc + 10 * DAY
    found = explained(database, log(verify(store, pki.devices["good"], at)), now)
    assert found.reason == "CERTIFICATE_EXPIRED"
    assert "10 days after that" in text(found)


def test_not_yet_valid(
    database: Database, store: TrustStore, pki: devpki.DevPKI, log: Log, now: dt.datetime
) -> None:
    upload_chain(store, pki)
    device = pki.devices["not-yet-valid"]
    event_uuid = log(verify(store, device))
    asked = device.cert.not_valid_before_utc - 29 * DAY - dt.timedelta(hours=1)
    found = explained(database, event_uuid, asked)
    assert found.reason == "CERTIFICATE_NOT_YET_VALID"
    assert "It becomes valid in 29 days." in text(found)
    later = explained(database, event_uuid, device.cert.not_valid_before_utc + 2 * DAY)
    assert "It became valid 2 days ago: verify the device again." in text(later)


def test_signature_invalid_lists_the_same_name_cas(
    database: Database, store: TrustStore, pki: devpki.DevPKI, log: Log, now: dt.datetime
) -> None:
    upload_chain(store, pki)
    impostor = devpki.ca("Certbound Dev Intermediate CA", pki.root, path_length=0)
    device = devpki.issue("impostor.devices.certbound.test", impostor)
    found = explained(database, log(verify(store, device)), now)
    assert (found.layer, found.reason) == (Layer.CERTIFICATE, "SIGNATURE_INVALID")
    body = text(found)
    assert "CAs in the trust store with the subject" in body
    assert f"key id {subject_key_id(pki.intermediate.cert)}" in body
    assert f"None of them has the key id {key_id(device.cert)}" in body
    assert len(found.facts["sameNameCas"]) == 1


def test_eku_names_the_certificate_and_the_usages(
    database: Database, store: TrustStore, pki: devpki.DevPKI, log: Log, now: dt.datetime
) -> None:
    upload_chain(store, pki)
    found = explained(database, log(verify(store, pki.devices["server-auth-only"])), now)
    assert (found.layer, found.reason) == (Layer.CERTIFICATE, "EKU_NOT_CLIENT_AUTH")
    body = text(found)
    assert "server-auth-only.devices.certbound.test" in body
    assert "serverAuth" in body and "not clientAuth" in body


def test_no_client_certificate_is_decided_at_intake(
    database: Database, store: TrustStore, log: Log, now: dt.datetime
) -> None:
    result = Validator(store).verify([])
    found = explained(database, log(events.device_verified(result, None)), now)
    assert (found.layer, found.reason) == (Layer.INTAKE, "NO_CLIENT_CERTIFICATE")
    assert found.device is None


def test_a_success_is_explained_too(
    database: Database, store: TrustStore, pki: devpki.DevPKI, log: Log, now: dt.datetime
) -> None:
    upload_chain(store, pki)
    found = explained(database, log(verify(store, pki.devices["good"])), now)
    assert (found.layer, found.reason) == (Layer.CERTIFICATE, None)
    assert found.fix == "Nothing to fix."
    assert "Validated path: CN=good.devices" in text(found)


# upload layer ----------------------------------------------------------------------------


def test_rejected_upload_not_a_ca(
    database: Database, store: TrustStore, pki: devpki.DevPKI, log: Log, now: dt.datetime
) -> None:
    with pytest.raises(CertboundError) as info:
        store.add(pki.devices["good"].cert_pem())
    found = explained(database, log(events.ca_rejected(info.value, "good.pem")), now)
    assert (found.layer, found.reason) == (Layer.UPLOAD, "NOT_A_CA")
    body = text(found)
    assert "The trust store refused good.pem; nothing was stored." in body
    assert "block 1, CN=good.devices.certbound.test" in body
    assert "not a CA" in body
    assert found.fix == ReasonCode.NOT_A_CA.fix


def test_an_expired_ca_refused_on_upload_is_an_upload_decision(
    database: Database, store: TrustStore, log: Log, now: dt.datetime
) -> None:
    old = devpki.ca("Expired Root CA", not_before=now - 20 * DAY, not_after=now - DAY)
    with pytest.raises(CertboundError) as info:
        store.add(old.cert_pem())
    found = explained(database, log(events.ca_rejected(info.value, "old.pem")), now)
    assert (found.layer, found.reason) == (Layer.UPLOAD, "CA_EXPIRED")


def test_removal_of_an_unknown_ca(
    database: Database, store: TrustStore, pki: devpki.DevPKI, log: Log, now: dt.datetime
) -> None:
    ca_id = upload_chain(store, pki)
    with pytest.raises(CertboundError) as info:
        store.remove("ca_missing")
    found = explained(database, log(events.ca_remove_failed(info.value, "ca_missing")), now)
    assert (found.layer, found.reason) == (Layer.UPLOAD, "CA_NOT_FOUND")
    assert "'ca_missing'" in text(found) and ca_id in text(found)


def test_expiry_warning(database: Database, store: TrustStore, log: Log, now: dt.datetime) -> None:
    root = devpki.ca("Soon Root CA", not_after=now + 10 * DAY)
    stored = store.add(root.cert_pem())
    warning = events.ca_expiring(stored, now, 90, trigger="upload")
    assert warning is not None
    found = explained(database, log(warning), now)
    assert (found.layer, found.reason) == (Layer.UPLOAD, "CA_EXPIRING_SOON")
    assert "'CN=Soon Root CA,O=Certbound Dev'" in text(found) and "in 10 days" in text(found)


# finding the event -----------------------------------------------------------------------


def test_last_is_the_newest_failure(
    database: Database, store: TrustStore, pki: devpki.DevPKI, log: Log
) -> None:
    assert diagnosis.last_failure(database) is None
    upload_chain(store, pki)
    log(verify(store, pki.devices["good"]))
    assert diagnosis.last_failure(database) is None  # successes never count
    log(verify(store, pki.devices["foreign"]))
    newest = log(verify(store, pki.devices["expired"]))
    log(verify(store, pki.devices["good"]))
    last = diagnosis.last_failure(database)
    assert last is not None and last["uuid"] == newest


def test_by_serial_any_case_with_colons(
    database: Database, store: TrustStore, pki: devpki.DevPKI, log: Log
) -> None:
    upload_chain(store, pki)
    log(verify(store, pki.devices["expired"]))
    newest = log(verify(store, pki.devices["expired"]))
    log(verify(store, pki.devices["good"]))
    serial = serial_hex(pki.devices["expired"].cert)
    spelled = ":".join(serial[i : i + 2] for i in range(0, len(serial), 2)).lower()
    for given in (serial, serial.lower(), spelled, "0x" + serial):
        found = diagnosis.event_by_serial(database, given)
        assert found is not None and found["uuid"] == newest, given
    assert diagnosis.event_by_serial(database, "01") is None


def test_by_uuid(database: Database, log: Log, store: TrustStore, pki: devpki.DevPKI) -> None:
    event_uuid = log(verify(store, pki.devices["good"]))
    found = diagnosis.event_by_uuid(database, event_uuid.upper())
    assert found is not None and found["uuid"] == event_uuid
    assert diagnosis.event_by_uuid(database, "00000000-0000-4000-8000-000000000000") is None


@pytest.mark.parametrize("bad", ["xyz", "", "-1", "12 34 zz"])
def test_bad_serials(bad: str) -> None:
    with pytest.raises(SelectorError):
        diagnosis.normalise_serial(bad)


def test_serial_normal_form() -> None:
    assert diagnosis.normalise_serial("a:bc") == "0ABC"
    assert diagnosis.normalise_serial("00:0a") == "0A"


def test_bad_uuid() -> None:
    with pytest.raises(SelectorError):
        diagnosis.normalise_uuid("not-a-uuid")


def test_an_unknown_reason_code_is_still_shown(now: dt.datetime) -> None:
    event = {
        "uuid": "x",
        "eventType": "device.trust.verify",
        "outcome": {"result": "FAILURE", "reason": "SOMETHING_NEW"},
        "debugContext": {"debugData": {"detail": "a newer layer said no"}},
    }
    found = diagnosis.explain(event, [], now)
    assert found.reason == "SOMETHING_NEW" and found.layer is Layer.CERTIFICATE
    assert "a newer layer said no" in text(found)


def test_presented_file_events_match_the_file(
    database: Database, store: TrustStore, pki: devpki.DevPKI, log: Log, now: dt.datetime
) -> None:
    """What the CLI does: the leaf parsed from a file; the event names that file's serial."""
    upload_chain(store, pki)
    chain = load_presented_file(pki.devices["foreign"].cert_pem())
    result = Validator(store).verify([der(c) for c in chain])
    log(events.device_verified(result, chain[0], extra={"file": "foreign.pem"}))
    found = diagnosis.event_by_serial(database, serial_hex(chain[0]))
    assert found is not None
    assert found["debugContext"]["debugData"]["file"] == "foreign.pem"
