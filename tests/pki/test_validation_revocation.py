"""Validator + RevocationChecker + the trust store, on SQLite and PostgreSQL, against a real
local CRL server and ``openssl ocsp``: revoked devices (and intermediates) are refused with
REVOKED_CERTIFICATE, cached paths are still checked, one CRL download serves every login
until nextUpdate, each stored CA's policy applies, a slow CRL server never holds a login
past the timeout, and the System Log event carries the answer (fail-open allows flagged).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AuthorityInformationAccessOID
from sqlalchemy import select

from certbound.clock import FixedClock
from certbound.errors import ReasonCode
from certbound.pki import devpki, events
from certbound.pki.certificate import der, serial_hex
from certbound.pki.devpki import DAY, Issued, Profile
from certbound.pki.revocation import RevocationChecker, Status, stored_policies
from certbound.pki.revocation_policy import DEFAULT_POLICY, Mode, RevocationPolicy
from certbound.pki.truststore import TrustStore
from certbound.pki.validation import Rejected, ValidationResult, Validator, Verified
from certbound.storage.database import Database
from certbound.storage.models import LogEvent
from certbound.syslog.events import EventType
from certbound.syslog.recorder import EventRecorder

if TYPE_CHECKING:
    from conftest import CrlServer, Responders

MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
OPENSSL = shutil.which("openssl")


def crl(issuer: Issued, revoked: Sequence[Issued], now: dt.datetime, **kw: Any) -> bytes:
    times = {"this_update": now - MINUTE, "next_update": now + DAY, "number": 1} | kw
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.name)
        .last_update(times["this_update"])
        .next_update(times["next_update"])
        .add_extension(x509.CRLNumber(times["number"]), False)
    )
    for item in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(item.cert.serial_number)
        builder = builder.add_revoked_certificate(entry.revocation_date(now - HOUR).build())
    return builder.sign(issuer.key, hashes.SHA256()).public_bytes(Encoding.DER)


@dataclass
class Site:
    """A CA chain whose certificates name CRLs on the module's server, under one prefix."""

    server: CrlServer
    now: dt.datetime
    root: Issued
    inter: Issued
    prefix: str

    def url(self, name: str) -> str:
        return f"{self.server.base}{self.prefix}/{name}.crl"

    def device(self, name: str, **kw: Any) -> Issued:
        profile = Profile(crl_urls=[self.url("inter")], **kw)
        return devpki.issue(f"{name}.devices.test", self.inter, profile=profile, now=self.now)

    def publish(self, which: str, revoked: Sequence[Issued] = (), **kw: Any) -> None:
        issuer = self.root if which == "root" else self.inter
        self.server.serve(f"{self.prefix}/{which}.crl", crl(issuer, revoked, self.now, **kw))

    def hits(self, which: str) -> int:
        return self.server.hits(f"{self.prefix}/{which}.crl")

    def bundle(self) -> bytes:
        return devpki.pem_bundle([self.inter, self.root])


def make_site(server: CrlServer, now: dt.datetime, name: str) -> Site:
    prefix = f"/{uuid.uuid4().hex}"
    root = devpki.ca(f"{name} Root CA")
    profile = Profile(ca=True, eku=None, crl_urls=[f"{server.base}{prefix}/root.crl"])
    inter = devpki.issue(devpki.dn(f"{name} Issuing CA"), root, profile=profile, now=now)
    site = Site(server, now, root, inter, prefix)
    site.publish("root")
    site.publish("inter")
    return site


@pytest.fixture
def site(crl_server: CrlServer, clock: FixedClock) -> Site:
    return make_site(crl_server, clock.now(), "Login")


@pytest.fixture
def trust(database: Database, clock: FixedClock) -> TrustStore:
    return TrustStore(database, clock)


@pytest.fixture
def checker(
    database: Database, clock: FixedClock, recorder: EventRecorder
) -> Iterator[RevocationChecker]:
    made = RevocationChecker(database, clock, recorder=recorder)
    yield made
    made.close()


@pytest.fixture
def validator(
    trust: TrustStore, clock: FixedClock, checker: RevocationChecker, database: Database
) -> Validator:
    return Validator(trust, clock, revocation=checker, policies=stored_policies(database))


def verify(validator: Validator, device: Issued) -> ValidationResult:
    return validator.verify([der(device.cert)])


def refused(result: ValidationResult, reason: ReasonCode) -> Rejected:
    assert isinstance(result, Rejected), result
    assert result.reason is reason, result
    return result


def accepted(result: ValidationResult) -> Verified:
    assert isinstance(result, Verified), result
    return result


# --- refused by CRL ------------------------------------------------------------------------


def test_a_revoked_device_is_refused_by_its_crl(
    site: Site, trust: TrustStore, validator: Validator
) -> None:
    trust.add(site.bundle())
    good, revoked = site.device("good"), site.device("revoked")
    site.publish("inter", [revoked])
    refusal = refused(verify(validator, revoked), ReasonCode.REVOKED_CERTIFICATE)
    assert refusal.culprit is not None and refusal.leaf is not None
    assert refusal.culprit.serial_number == serial_hex(revoked.cert) == refusal.leaf.serial_number
    assert refusal.revocation is not None and refusal.revocation.status is Status.REVOKED
    assert refusal.to_dict()["revocation"]["url"] == site.url("inter")
    ok = accepted(verify(validator, good))
    assert ok.revocation is not None and ok.revocation.status is Status.GOOD
    assert ok.to_dict()["revocation"]["source"] == "crl"
    assert ok.identity.serial_number == serial_hex(good.cert)


def test_a_revoked_intermediate_is_the_culprit(
    site: Site, trust: TrustStore, validator: Validator
) -> None:
    trust.add(site.bundle())
    site.publish("root", [site.inter])
    refusal = refused(verify(validator, site.device("good")), ReasonCode.REVOKED_CERTIFICATE)
    assert refusal.culprit is not None and refusal.culprit.role == "intermediate"
    assert refusal.culprit.subject_dn == site.inter.cert.subject.rfc4514_string()
    assert (
        refusal.leaf is not None
        and refusal.leaf.subject_dn == "CN=good.devices.test,O=Certbound Dev"
    )


def test_one_crl_download_serves_every_login_until_next_update(
    site: Site, trust: TrustStore, validator: Validator, checker: RevocationChecker
) -> None:
    trust.add(site.bundle())
    devices = [site.device(f"d{i}") for i in range(5)]
    site.publish("inter", devices[:1])
    for _ in range(200):
        for item in devices:
            verify(validator, item)
    assert site.hits("inter") == 1 and site.hits("root") == 1
    assert checker.stats.fetches == 2
    refused(verify(validator, devices[0]), ReasonCode.REVOKED_CERTIFICATE)


def test_a_cached_path_is_still_checked(
    site: Site, trust: TrustStore, validator: Validator, clock: FixedClock
) -> None:
    """The path result is cached for minutes; the device revoked in between is refused."""
    trust.add(site.bundle())
    device = site.device("later")
    site.publish("inter", [], next_update=site.now + MINUTE)
    accepted(verify(validator, device))
    site.publish("inter", [device], number=2, this_update=site.now + MINUTE)
    clock.advance(2 * MINUTE)  # within the path cache's 300 s, past the CRL's nextUpdate
    refused(verify(validator, device), ReasonCode.REVOKED_CERTIFICATE)


def test_each_stored_ca_gets_its_own_policy(
    crl_server: CrlServer,
    clock: FixedClock,
    trust: TrustStore,
    validator: Validator,
) -> None:
    checked, unchecked = (make_site(crl_server, clock.now(), n) for n in ("Checked", "Unchecked"))
    trust.add(checked.bundle())
    off = trust.add(unchecked.bundle(), revocation=DEFAULT_POLICY.replace(mode=Mode.OFF))
    revoked_here, revoked_there = checked.device("r1"), unchecked.device("r2")
    checked.publish("inter", [revoked_here])
    unchecked.publish("inter", [revoked_there])
    refused(verify(validator, revoked_here), ReasonCode.REVOKED_CERTIFICATE)
    passed = accepted(verify(validator, revoked_there))
    assert passed.revocation is None and unchecked.hits("inter") == 0
    trust.set_revocation(off.id, DEFAULT_POLICY)
    validator.refresh()  # what the generation poll does within 2 s
    refused(verify(validator, revoked_there), ReasonCode.REVOKED_CERTIFICATE)


def test_the_store_knows_which_ca_each_certificate_comes_from(
    site: Site, trust: TrustStore
) -> None:
    stored = trust.add(site.bundle())
    anchors = trust.load()
    assert anchors.owner(site.root.cert) == anchors.owner(site.inter.cert) == stored.id
    assert anchors.owner(devpki.ca("Elsewhere").cert) is None
    leaf = site.device("owned")
    assert anchors.path_owner([leaf.cert, site.inter.cert, site.root.cert]) == stored.id


# --- timeouts and fail modes --------------------------------------------------------------


@pytest.mark.parametrize("fail_open", [False, True], ids=["fail-closed", "fail-open"])
def test_a_slow_crl_server_never_holds_a_login_past_the_timeout(
    site: Site, trust: TrustStore, validator: Validator, fail_open: bool
) -> None:
    policy = RevocationPolicy(timeout=0.5, fail_open=fail_open)
    trust.add(site.bundle(), revocation=policy)
    device = site.device("slow")
    site.server.serve(f"{site.prefix}/inter.crl", crl(site.inter, [], site.now), delay=3.0)
    started = time.monotonic()
    result = verify(validator, device)
    assert time.monotonic() - started < 0.5 + 0.5
    if fail_open:
        assert accepted(result).revocation is not None
        assert accepted(result).revocation.fail_open  # type: ignore[union-attr]
    else:
        refusal = refused(result, ReasonCode.REVOCATION_UNAVAILABLE)
        assert refusal.culprit is not None and refusal.culprit.subject_dn.startswith("CN=slow")


def test_the_event_carries_the_answer_and_flags_fail_open_allows(
    site: Site,
    trust: TrustStore,
    validator: Validator,
    recorder: EventRecorder,
    database: Database,
) -> None:
    trust.add(site.bundle(), revocation=RevocationPolicy(fail_open=True))
    revoked, unchecked = site.device("revoked"), site.device("unchecked")
    site.publish("inter", [revoked])
    bare = devpki.issue("bare.devices.test", site.inter)  # no CDP: nothing to ask
    for item in (revoked, unchecked, bare):
        recorder.record(events.device_verified(verify(validator, item), item.cert))
    assert recorder.flush(10)
    query = select(LogEvent.body).where(LogEvent.event_type == EventType.DEVICE_TRUST_VERIFY.value)
    with database.session() as session:
        bodies = [json.loads(body) for body in session.scalars(query.order_by(LogEvent.seq))]
    refusal, good, allowed = bodies
    assert refusal["outcome"] == {"result": "FAILURE", "reason": "REVOKED_CERTIFICATE"}
    assert refusal["deviceTrust"]["revocation"]["status"] == "REVOKED"
    assert refusal["deviceTrust"]["revocation"]["serialNumber"] == serial_hex(revoked.cert)
    assert "revocationFailOpen" not in refusal["debugContext"]["debugData"]
    assert good["deviceTrust"]["revocation"]["status"] == "GOOD"
    assert good["deviceTrust"]["revocation"]["failOpen"] is False
    assert allowed["outcome"] == {"result": "SUCCESS", "reason": None}
    assert allowed["deviceTrust"]["revocation"]["status"] == "UNKNOWN"
    assert allowed["deviceTrust"]["revocation"]["failOpen"] is True
    assert allowed["debugContext"]["debugData"]["revocationFailOpen"] is True
    assert "allowed by fail-open" in allowed["displayMessage"]


def test_an_unreadable_policy_means_the_defaults(
    site: Site, trust: TrustStore, checker: RevocationChecker, clock: FixedClock
) -> None:
    trust.add(site.bundle(), revocation=DEFAULT_POLICY.replace(mode=Mode.OFF))

    def broken(_ca_id: str | None) -> RevocationPolicy:
        raise RuntimeError("database gone")

    validator = Validator(trust, clock, revocation=checker, policies=broken)
    device = site.device("defaults")
    site.publish("inter", [device])
    refused(verify(validator, device), ReasonCode.REVOKED_CERTIFICATE)  # default: crl, closed


# --- refused by OCSP -----------------------------------------------------------------------


def test_a_revoked_device_is_refused_by_ocsp(
    trust: TrustStore,
    validator: Validator,
    ocsp_responders: Responders,
    tmp_path: Path,
) -> None:
    if OPENSSL is None:
        pytest.skip("openssl is not installed")
    (port,) = ocsp_responders.reserve_ports(1)
    root = devpki.ca("OCSP Login Root")
    inter = devpki.ca("OCSP Login Issuing CA", root)
    access = x509.AccessDescription(
        AuthorityInformationAccessOID.OCSP,
        x509.UniformResourceIdentifier(f"http://127.0.0.1:{port}"),
    )
    profile = Profile(extra=[(x509.AuthorityInformationAccess([access]), False)])
    good, revoked = (devpki.issue(n, inter, profile=profile) for n in ("good", "revoked"))
    index = tmp_path / "index.txt"
    index.write_text(
        f"V\t300101000000Z\t\t{serial_hex(good.cert)}\tunknown\t/CN=good\n"
        f"R\t300101000000Z\t240101000000Z,keyCompromise\t{serial_hex(revoked.cert)}"
        "\tunknown\t/CN=revoked\n"
    )
    ocsp_responders.start(tmp_path / "r", port, inter, inter, index=index, extra=("-nmin", "5"))
    trust.add(devpki.pem_bundle([inter, root]), revocation=RevocationPolicy(mode=Mode.OCSP))
    refusal = refused(verify(validator, revoked), ReasonCode.REVOKED_CERTIFICATE)
    assert refusal.revocation is not None and refusal.revocation.source == "ocsp"
    assert refusal.revocation.revocation_reason == "keyCompromise"
    ok = accepted(verify(validator, good))
    assert ok.revocation is not None and ok.revocation.source == "ocsp"
    again = accepted(verify(validator, good))
    assert again.revocation is not None and again.revocation.source == "cache"


def test_without_a_checker_nothing_changes(
    site: Site, trust: TrustStore, clock: FixedClock
) -> None:
    trust.add(site.bundle())
    device = site.device("plain")
    site.publish("inter", [device])
    result = accepted(verify(Validator(trust, clock), device))
    assert result.revocation is None and result.to_dict()["revocation"] is None
