"""Explaining revocation decisions (certbound.syslog.diagnosis): REVOKED_CERTIFICATE,
REVOCATION_UNAVAILABLE, REVOCATION_STALE and fail-open allows, from real validations with
the real revocation checker (CRL files, a port nobody listens on) and the events stored in
the System Log; on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from certbound.clock import FixedClock, format_rfc3339
from certbound.errors import Layer, ReasonCode
from certbound.pki import devpki, events
from certbound.pki.certificate import der, serial_hex
from certbound.pki.revocation import RevocationChecker, stored_policies
from certbound.pki.revocation_policy import RevocationPolicy
from certbound.pki.truststore import TrustStore
from certbound.pki.validation import Validator
from certbound.storage.database import Database
from certbound.syslog import chain, diagnosis
from certbound.syslog.diagnosis import FAIL_OPEN_FIX, FAIL_OPEN_MEANING, Explanation
from certbound.syslog.events import Event
from certbound.syslog.rows import event_row

DAY = dt.timedelta(days=1)
REVOKED_AT = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
Log = Callable[[Event], str]


@dataclasses.dataclass
class Pki:
    root: devpki.Issued
    issuing: devpki.Issued
    good: devpki.Issued
    revoked: devpki.Issued


@pytest.fixture(scope="module")
def pki() -> Pki:
    root = devpki.ca("Diagnosis Revocation Root", not_after=dt.datetime.now(dt.UTC) + 3650 * DAY)
    issuing = devpki.ca("Diagnosis Revocation Issuing", root)
    return Pki(
        root,
        issuing,
        devpki.issue("good.diagnosis.test", issuing),
        devpki.issue("revoked.diagnosis.test", issuing),
    )


def crl_of(
    issuer: devpki.Issued, revoked: Sequence[int], this_update: dt.datetime, days: float = 7
) -> bytes:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.name)
        .last_update(this_update)
        .next_update(this_update + dt.timedelta(days=days))
        .add_extension(x509.CRLNumber(1), False)
    )
    for serial in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(REVOKED_AT)
        entry = entry.add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), False)
        builder = builder.add_revoked_certificate(entry.build())
    crl = builder.sign(issuer.key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def down_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/issuing.crl"  # nothing listens there now


@dataclasses.dataclass
class Scene:
    """A trust store, the real revocation checker and the System Log of one test."""

    database: Database
    store: TrustStore
    checker: RevocationChecker
    now: dt.datetime
    directory: Path
    count: int = 0

    def add(self, pki: Pki, policy: RevocationPolicy) -> str:
        chain_pem = devpki.pem_bundle([pki.issuing, pki.root])
        return self.store.add(chain_pem, "Diagnosis chain", revocation=policy).id

    def crl_file(self, data: bytes) -> str:
        path = self.directory / "issuing.crl.pem"
        path.write_bytes(data)
        return path.as_uri()

    def verified(self, device: devpki.Issued, checker: RevocationChecker | None = None) -> Event:
        validator = Validator(
            self.store,
            cache_size=0,
            revocation=checker or self.checker,
            policies=stored_policies(self.database),
        )
        return events.device_verified(validator.verify([der(device.cert)]), device.cert)

    def log(self, event: Event) -> str:
        self.count += 1
        at = self.now + dt.timedelta(milliseconds=self.count)
        with self.database.session() as session:
            chain.append(session, [event_row(dataclasses.replace(event, published=at))])
        return event.uuid

    def explained(self, event: Event) -> Explanation:
        found = diagnosis.event_by_uuid(self.database, self.log(event))
        assert found is not None
        return diagnosis.explain(found, diagnosis.stored_certificates(self.database), self.now)


@pytest.fixture
def scene(
    database: Database, clock: FixedClock, now: dt.datetime, tmp_path: Path
) -> Iterator[Scene]:
    checker = RevocationChecker(database, clock)
    yield Scene(database, TrustStore(database, clock), checker, now, tmp_path)
    checker.close()


def text(found: Explanation) -> str:
    return "\n".join(found.what_happened)


def test_revoked_says_when_why_and_which_crl(scene: Scene, pki: Pki) -> None:
    crl = crl_of(pki.issuing, [pki.revoked.cert.serial_number], scene.now - DAY)
    url = scene.crl_file(crl)
    ca_id = scene.add(pki, RevocationPolicy(crl_url=url))
    found = scene.explained(scene.verified(pki.revoked))
    assert (found.layer, found.reason) == (Layer.REVOCATION, "REVOKED_CERTIFICATE")
    assert found.fix == ReasonCode.REVOKED_CERTIFICATE.fix
    body = text(found)
    serial = serial_hex(pki.revoked.cert)
    assert (
        f"The device certificate 'CN=revoked.diagnosis.test,O=Certbound Dev' (serial {serial}) "
        f"was revoked at {format_rfc3339(REVOKED_AT)} (" in body
    )
    assert "ago): keyCompromise." in body
    assert f"Answered by the CRL file {url}, checked at " in body
    assert f"Revocation settings of {ca_id} (Diagnosis chain) now: mode crl, fail closed" in body
    assert found.facts["revocation"]["status"] == "REVOKED"
    assert found.facts["caId"] == ca_id
    assert found.facts["caRevocation"]["crlUrl"] == url
    assert "refuses every device under it" not in body


def test_a_revoked_intermediate_names_it(scene: Scene, pki: Pki, clock: FixedClock) -> None:
    """With CRL files (``verify --crl``): the root's CRL revokes the issuing CA."""
    scene.add(pki, RevocationPolicy())
    files = [
        crl_of(pki.root, [pki.issuing.cert.serial_number], scene.now - DAY),
        crl_of(pki.issuing, [], scene.now - DAY),
    ]
    checker = RevocationChecker(None, clock, local_crls=files)
    try:
        event = scene.verified(pki.good, checker)
    finally:
        checker.close()
    found = scene.explained(event)
    assert found.reason == "REVOKED_CERTIFICATE"
    body = text(found)
    assert (
        "The CA certificate 'CN=Diagnosis Revocation Issuing,O=Certbound Dev' (serial "
        f"{serial_hex(pki.issuing.cert)}) in the chain of the device certificate "
        "'CN=good.diagnosis.test,O=Certbound Dev'" in body
    )
    assert "Answered by a CRL file given to the check (`verify --crl`), checked at" in body
    assert "A revoked CA certificate refuses every device under it" in body


def test_unavailable_names_the_url_and_the_fail_mode(scene: Scene, pki: Pki, down_url: str) -> None:
    scene.add(pki, RevocationPolicy(crl_url=down_url, timeout=1))
    found = scene.explained(scene.verified(pki.good))
    assert (found.layer, found.reason) == (Layer.REVOCATION, "REVOCATION_UNAVAILABLE")
    body = text(found)
    assert "No revocation answer could be had for the device certificate" in body
    assert f"Tried the CRL {down_url}, checked at " in body
    assert "The check failed closed, so the device was refused" in body
    assert "The revocation check said: " in body and "refused" in body.lower()
    assert "mode crl, fail closed, timeout 1 s" in body


def test_unavailable_without_any_source(scene: Scene, pki: Pki) -> None:
    scene.add(pki, RevocationPolicy())  # the device names no CRL distribution point
    found = scene.explained(scene.verified(pki.good))
    assert found.reason == "REVOCATION_UNAVAILABLE"
    assert "No CRL or OCSP URL was known for it" in text(found)


def test_stale_says_how_stale_and_what_is_allowed(scene: Scene, pki: Pki) -> None:
    url = scene.crl_file(crl_of(pki.issuing, [], scene.now - 3 * DAY, days=1))
    scene.add(pki, RevocationPolicy(crl_url=url, max_staleness=dt.timedelta(minutes=30)))
    found = scene.explained(scene.verified(pki.good))
    assert (found.layer, found.reason) == (Layer.REVOCATION, "REVOCATION_STALE")
    assert found.fix == ReasonCode.REVOCATION_STALE.fix
    body = text(found)
    next_update = format_rfc3339(scene.now - 2 * DAY)
    assert f"is past its nextUpdate ({next_update}) by 2 days, beyond the staleness" in body
    # The check runs on the wall clock, a moment after the scene's "now".
    assert 2 * 86400 <= found.facts["revocation"]["staleBySeconds"] <= 2 * 86400 + 30
    assert f"It came from the CRL file {url}" in body
    assert "allowed staleness 1800 s" in body
    assert "passed its nextUpdate" in body  # the check's own words: when and by how much


def test_a_fail_open_allow_is_explained_as_such(scene: Scene, pki: Pki, down_url: str) -> None:
    scene.add(pki, RevocationPolicy(crl_url=down_url, fail_open=True, timeout=1))
    event = scene.verified(pki.good)
    assert event.outcome.reason is None  # allowed
    found = scene.explained(event)
    assert found.layer is Layer.REVOCATION
    assert found.reason is None
    assert (found.meaning, found.fix) == (FAIL_OPEN_MEANING, FAIL_OPEN_FIX)
    body = text(found)
    assert "was allowed although no revocation answer could be had" in body
    assert "This is a fail-open allow" in body
    assert f"Tried the CRL {down_url}" in body
    assert "fail open" in body
    assert found.to_dict()["layer"] == "revocation"


def test_a_good_answer_is_reported_on_success(scene: Scene, pki: Pki) -> None:
    url = scene.crl_file(crl_of(pki.issuing, [], scene.now - DAY))
    scene.add(pki, RevocationPolicy(crl_url=url))
    found = scene.explained(scene.verified(pki.good))
    assert found.layer is Layer.CERTIFICATE and found.reason is None
    assert found.meaning == "Nothing failed."
    assert f"Revocation: GOOD from the CRL file {url}, checked at " in text(found)


def test_an_event_without_revocation_facts_still_explains(scene: Scene, pki: Pki) -> None:
    """Events of older versions (or from other layers) carry no deviceTrust.revocation."""
    scene.add(pki, RevocationPolicy())
    result = Validator(scene.store, cache_size=0).verify([der(pki.good.cert)])
    event = dataclasses.replace(events.device_verified(result, pki.good.cert), published=scene.now)
    body = event.to_dict()
    body["outcome"] = {"result": "FAILURE", "reason": "REVOCATION_STALE"}
    found = diagnosis.explain(body, diagnosis.stored_certificates(scene.database), scene.now)
    assert found.reason == "REVOCATION_STALE"
    assert "is past its nextUpdate" in text(found)
    assert "the revocation source (no URL)" in text(found)
