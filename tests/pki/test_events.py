"""The PKI layer's System Log events (certbound.pki.events), built from real validations and
real trust-store uploads; the once-a-day expiry rule on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from cryptography import x509

from certbound.clock import FixedClock, format_rfc3339
from certbound.errors import CertboundError, ReasonCode
from certbound.pki import devpki, events
from certbound.pki.anchors import StaticAnchors, TrustAnchors
from certbound.pki.certificate import der, key_id, serial_hex, sha256_fingerprint
from certbound.pki.truststore import TrustStore
from certbound.pki.validation import Rejected, Validator
from certbound.storage.database import Database
from certbound.syslog import chain
from certbound.syslog.events import CLI_ACTOR, Event, Severity
from certbound.syslog.rows import event_row

DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def pki() -> devpki.DevPKI:
    return devpki.build_dev_pki()


@pytest.fixture(scope="module")
def validator(pki: devpki.DevPKI) -> Validator:
    bundle = [pki.intermediate.cert, pki.root.cert]
    return Validator(StaticAnchors(TrustAnchors.from_bundles([bundle], 7)), cache_size=0)


def published(event: Event, at: dt.datetime | None = None) -> dict[str, Any]:
    return dataclasses.replace(event, published=at or dt.datetime.now(dt.UTC)).to_dict()


def verify_event(validator: Validator, pki: devpki.DevPKI, device: str) -> dict[str, Any]:
    leaf = pki.devices[device].cert
    result = validator.verify([der(leaf)])
    return published(events.device_verified(result, leaf, generation=7))


def dns_names(cert: x509.Certificate) -> list[str]:
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(name) for name in sans.get_values_for_type(x509.DNSName)]


def rfc822_names(cert: x509.Certificate) -> list[str]:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(sans.get_values_for_type(x509.RFC822Name))


def expected_certificate(item: devpki.Issued) -> dict[str, Any]:
    cert = item.cert
    return {
        "subjectDn": cert.subject.rfc4514_string(),
        "issuerDn": cert.issuer.rfc4514_string(),
        "serialNumber": serial_hex(cert),
        "sha256Thumbprint": sha256_fingerprint(cert),
        "notBefore": format_rfc3339(cert.not_valid_before_utc),
        "notAfter": format_rfc3339(cert.not_valid_after_utc),
        "sans": [f"DNS:{dns}" for dns in dns_names(cert)]
        + [f"email:{email}" for email in rfc822_names(cert)],
    }


# device.trust.verify ---------------------------------------------------------------------


def test_verified_device(validator: Validator, pki: devpki.DevPKI) -> None:
    data = verify_event(validator, pki, "good")
    assert data["eventType"] == "device.trust.verify"
    assert data["outcome"] == {"result": "SUCCESS", "reason": None}
    assert data["severity"] == "INFO"
    assert data["authenticationContext"] == {"credentialType": "CERTIFICATE"}
    trust = data["deviceTrust"]
    assert trust["verified"] is True and trust["reason"] is None and trust["revocation"] is None
    assert trust["certificate"] == expected_certificate(pki.devices["good"])
    assert trust["certificate"]["serialNumber"].isupper()
    good = pki.devices["good"].cert
    assert data["target"][0]["id"] == sha256_fingerprint(good)
    debug = data["debugContext"]["debugData"]
    assert debug["chain"][0] == good.subject.rfc4514_string()
    assert debug["trustStoreGeneration"] == 7
    assert debug["authorityKeyId"] == key_id(good)


@pytest.mark.parametrize(
    ("device", "reason"),
    [
        ("foreign", ReasonCode.UNKNOWN_CA),
        ("expired", ReasonCode.CERTIFICATE_EXPIRED),
        ("server-auth-only", ReasonCode.EKU_NOT_CLIENT_AUTH),
    ],
)
def test_rejected_device_keeps_the_leafs_facts(
    validator: Validator, pki: devpki.DevPKI, device: str, reason: ReasonCode
) -> None:
    data = verify_event(validator, pki, device)
    assert data["outcome"] == {"result": "FAILURE", "reason": reason.value}
    assert data["severity"] == "WARN"
    trust = data["deviceTrust"]
    assert trust["verified"] is False and trust["reason"] == reason.value
    assert trust["certificate"] == expected_certificate(pki.devices[device])
    debug = data["debugContext"]["debugData"]
    leaf = pki.devices[device].cert
    assert debug["authorityKeyId"] == key_id(leaf)
    assert debug["detail"]
    assert debug["culprit"]["serialNumber"] == serial_hex(leaf)
    assert debug["culprit"]["subjectDn"] == leaf.subject.rfc4514_string()
    assert reason.value in data["displayMessage"]


def test_intermediate_missing_names_the_missing_issuer(pki: devpki.DevPKI) -> None:
    only_root = Validator(StaticAnchors(TrustAnchors.from_bundles([[pki.root.cert]])))
    leaf = pki.devices["good"].cert
    data = published(events.device_verified(only_root.verify([der(leaf)]), leaf))
    assert data["outcome"]["reason"] == "INTERMEDIATE_MISSING"
    assert data["deviceTrust"]["certificate"]["issuerDn"] == pki.intermediate.name.rfc4514_string()
    assert data["debugContext"]["debugData"]["authorityKeyId"] == key_id(leaf)


def test_rejection_without_leaf_facts_parses_the_presented_leaf(pki: devpki.DevPKI) -> None:
    """Intake rejections (e.g. a chain refused before path building) carry no leaf; the
    presented one is described anyway."""
    leaf = pki.devices["good"].cert
    rejected = Rejected(ReasonCode.CHAIN_TOO_COMPLEX, "too many certificates")
    data = published(events.device_verified(rejected, leaf))
    assert data["deviceTrust"]["certificate"] == expected_certificate(pki.devices["good"])
    assert data["target"][0]["id"] == sha256_fingerprint(leaf)


def test_no_certificate_at_all(validator: Validator) -> None:
    data = published(events.device_verified(validator.verify([]), None))
    assert data["outcome"]["reason"] == "NO_CLIENT_CERTIFICATE"
    assert data["deviceTrust"]["certificate"] is None
    assert data["target"] == []
    assert data["debugContext"]["debugData"]["authorityKeyId"] is None


def test_validation_time_and_extra_debug_data(validator: Validator, pki: devpki.DevPKI) -> None:
    at = dt.datetime(2999, 1, 1, tzinfo=dt.UTC)
    leaf = pki.devices["good"].cert
    event = events.device_verified(
        validator.verify([der(leaf)], at), leaf, at=at, extra={"file": "good.pem"}
    )
    debug = published(event)["debugContext"]["debugData"]
    assert debug["validationTime"] == "2999-01-01T00:00:00Z"
    assert debug["file"] == "good.pem"
    assert event.outcome.reason is ReasonCode.CERTIFICATE_EXPIRED


# security.trust.ca.add / .remove ---------------------------------------------------------


@pytest.fixture
def store(database: Database, clock: FixedClock) -> TrustStore:
    return TrustStore(database, clock)


def test_ca_added_and_removed(store: TrustStore, pki: devpki.DevPKI) -> None:
    added = store.add(devpki.pem_bundle([pki.intermediate, pki.root]), "Dev chain")
    data = published(events.ca_added(added, filename="chain.pem"))
    assert data["eventType"] == "security.trust.ca.add"
    assert data["outcome"] == {"result": "SUCCESS", "reason": None}
    assert data["actor"]["id"] == CLI_ACTOR.id
    assert data["target"] == [
        {
            "id": added.id,
            "type": "CertificateAuthority",
            "alternateId": pki.root.name.rfc4514_string(),
            "displayName": "Dev chain",
        }
    ]
    debug = data["debugContext"]["debugData"]
    assert debug["file"] == "chain.pem" and debug["notices"] == []
    assert [c["role"] for c in debug["certificates"]] == ["intermediate", "root"]
    assert data["deviceTrust"] is None

    removed = published(events.ca_removed(store.remove(added.id)))
    assert removed["eventType"] == "security.trust.ca.remove"
    assert removed["outcome"]["result"] == "SUCCESS"
    assert removed["target"][0]["id"] == added.id


def test_reordered_upload_is_a_warning(store: TrustStore, pki: devpki.DevPKI) -> None:
    added = store.add(devpki.pem_bundle([pki.root, pki.intermediate]))
    event = events.ca_added(added)
    assert event.severity is Severity.WARN
    notices = published(event)["debugContext"]["debugData"]["notices"]
    assert [n["code"] for n in notices] == ["CHAIN_OUT_OF_ORDER"]


def test_rejected_upload(store: TrustStore, pki: devpki.DevPKI) -> None:
    with pytest.raises(CertboundError) as info:
        store.add(pki.devices["good"].cert_pem())
    data = published(events.ca_rejected(info.value, "good.pem"))
    assert data["eventType"] == "security.trust.ca.add"
    assert data["outcome"] == {"result": "FAILURE", "reason": "NOT_A_CA"}
    debug = data["debugContext"]["debugData"]
    assert debug["file"] == "good.pem"
    assert debug["context"]["subject"] == pki.devices["good"].name.rfc4514_string()
    assert debug["detail"] == info.value.detail
    assert data["target"] == []


def test_removal_of_an_unknown_ca(store: TrustStore) -> None:
    with pytest.raises(CertboundError) as info:
        store.remove("ca_nope")
    data = published(events.ca_remove_failed(info.value, "ca_nope"))
    assert data["outcome"] == {"result": "FAILURE", "reason": "CA_NOT_FOUND"}
    assert data["target"][0]["id"] == "ca_nope"


# pki.ca.expiration.warn ------------------------------------------------------------------


def test_expiry_warning_only_inside_the_window(
    store: TrustStore, clock: FixedClock, now: dt.datetime
) -> None:
    root = devpki.ca("Soon Root CA", not_after=now + 400 * DAY)
    inter = devpki.ca("Soon Issuing CA", root, not_after=now + 30 * DAY)
    stored = store.add(devpki.pem_bundle([inter, root]))
    assert events.ca_expiring(stored, now, 29, trigger="list") is None
    event = events.ca_expiring(stored, now, 90, trigger="upload")
    assert event is not None
    data = published(event)
    assert data["eventType"] == "pki.ca.expiration.warn"
    assert data["outcome"] == {"result": "SUCCESS", "reason": "CA_EXPIRING_SOON"}
    assert data["severity"] == "WARN"
    assert [t["id"] for t in data["target"]] == [stored.id, sha256_fingerprint(inter.cert)]
    debug = data["debugContext"]["debugData"]
    assert debug["trigger"] == "upload" and debug["warningDays"] == 90
    assert [c["daysLeft"] for c in debug["certificates"]] == [30]
    # Both certificates in a wider window, soonest first.
    wide = events.ca_expiring(stored, now, 500, trigger="list")
    assert wide is not None
    assert [t.alternate_id for t in wide.targets[1:]] == [
        inter.name.rfc4514_string(),
        root.name.rfc4514_string(),
    ]


def test_an_expired_ca_is_an_error(store: TrustStore, clock: FixedClock, now: dt.datetime) -> None:
    root = devpki.ca("Old Root CA", not_after=now + 10 * DAY)
    stored = store.add(root.cert_pem())
    event = events.ca_expiring(stored, now + 11 * DAY, 90, trigger="list")
    assert event is not None
    assert event.outcome.reason is ReasonCode.CA_EXPIRED
    assert event.severity is Severity.ERROR


def record(db: Database, event: Event, at: dt.datetime) -> None:
    with db.session() as session:
        chain.append(session, [event_row(dataclasses.replace(event, published=at))])


def test_expiry_warned_once_per_day(
    database: Database, store: TrustStore, now: dt.datetime
) -> None:
    root = devpki.ca("Warned Root CA", not_after=now + 20 * DAY)
    stored = store.add(root.cert_pem())
    other = dataclasses.replace(stored, id=stored.id + "x")
    wildcard = dataclasses.replace(stored, id=stored.id.replace("_", "%"))
    midnight = events.start_of_day(now)
    assert midnight <= now < midnight + DAY and midnight.hour == 0
    assert not events.expiry_warned(database, stored.id, midnight)
    warning = events.ca_expiring(other, now, 90, trigger="list")
    assert warning is not None
    record(database, warning, now)
    # An id that merely contains this one, or a LIKE wildcard, does not count.
    assert not events.expiry_warned(database, stored.id, midnight)
    assert not events.expiry_warned(database, wildcard.id, midnight)
    warning = events.ca_expiring(stored, now, 90, trigger="list")
    assert warning is not None
    record(database, warning, now)
    assert events.expiry_warned(database, stored.id, midnight)
    # Tomorrow it warns again.
    assert not events.expiry_warned(database, stored.id, midnight + DAY)
    # Only expiry warnings count, not other events naming the CA.
    fresh = store.add(devpki.ca("Fresh Root CA", not_after=now + 20 * DAY).cert_pem())
    record(database, events.ca_added(fresh), now)
    assert not events.expiry_warned(database, fresh.id, midnight)
