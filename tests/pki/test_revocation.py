"""RevocationChecker against real components, on SQLite and PostgreSQL: CRLs served by a
local http.server (counted at the server), ``openssl ocsp`` responders, a port nobody
listens on and a socket that never answers (tests/pki/conftest.py).

Every fault of the issue (responder down, responder slow, garbage body, response signed by
the wrong key, response for another serial, stale response, stale CRL, CRL signed by
another CA, CRL number rollback, plus CRL server down / slow / garbage, a CRL signed by a
same-name impostor and a replayed response without our nonce) is run fail-open
and fail-closed: it must end with the configured fail mode and an event in the log table,
within the policy timeout, without raising.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest.mock import patch

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AuthorityInformationAccessOID
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from certbound.clock import FixedClock
from certbound.errors import ReasonCode
from certbound.pki import devpki, ocsp, revocation_fleet
from certbound.pki.certificate import serial_hex
from certbound.pki.crl_store import issuer_pin
from certbound.pki.devpki import DAY, Issued, Profile
from certbound.pki.revocation import RevocationChecker, RevocationResult, Status
from certbound.pki.revocation_policy import Mode, RevocationPolicy
from certbound.storage.database import Database
from certbound.storage.models import CRLCacheEntry
from certbound.storage.models import RevocationCounter as Counter
from certbound.syslog.events import EventType
from certbound.syslog.recorder import EventRecorder

if TYPE_CHECKING:
    from conftest import CrlServer, Responder, Responders

MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
MARGIN = 0.5  # seconds a check may take beyond its timeout (scheduling, event building)
Logged = Callable[[str], list[dict[str, Any]]]


# --- PKI -----------------------------------------------------------------------------------


def crl_bytes(
    issuer: Issued,
    revoked: Sequence[x509.Certificate] = (),
    *,
    this_update: dt.datetime,
    next_update: dt.datetime,
    number: int = 1,
    pem: bool = False,
) -> bytes:
    """A CRL of ``issuer`` revoking ``revoked`` (reason keyCompromise, a day before)."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.name)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), False)
    )
    for cert in revoked:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(this_update - DAY)
            .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), False)
            .build()
        )
        builder = builder.add_revoked_certificate(entry)
    crl = builder.sign(issuer.key, hashes.SHA256())
    return crl.public_bytes(Encoding.PEM if pem else Encoding.DER)


def aia(url: str) -> tuple[x509.ExtensionType, bool]:
    access = x509.AccessDescription(
        AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(url)
    )
    return x509.AuthorityInformationAccess([access]), False


@dataclass
class Pki:
    """root -> intermediate (CDP: the root's CRL) -> devices (CDP: the intermediate's CRL),
    each test under its own path prefix on the module's server."""

    server: CrlServer
    now: dt.datetime
    root: Issued
    inter: Issued
    good: Issued
    revoked: Issued
    bare: Issued  # no CDP, no AIA
    root_path: str
    inter_path: str

    def chain(self, leaf: Issued) -> tuple[x509.Certificate, ...]:
        return leaf.cert, self.inter.cert, self.root.cert

    def publish_inter(self, revoked: Sequence[Issued] = (), **kw: Any) -> str:
        return self.server.serve(self.inter_path, self._crl(self.inter, revoked, kw))

    def publish_root(self, revoked: Sequence[Issued] = (), **kw: Any) -> str:
        return self.server.serve(self.root_path, self._crl(self.root, revoked, kw))

    def _crl(self, issuer: Issued, revoked: Sequence[Issued], kw: dict[str, Any]) -> bytes:
        times = {"this_update": self.now - 5 * MINUTE, "next_update": self.now + 7 * DAY} | kw
        return crl_bytes(issuer, [r.cert for r in revoked], **times)


def build_pki(server: CrlServer, now: dt.datetime) -> Pki:
    prefix = f"/{uuid.uuid4().hex}"
    root_path, inter_path = f"{prefix}/root.crl", f"{prefix}/inter.crl"
    root = devpki.ca("Revocation Root CA")
    inter_profile = Profile(ca=True, eku=None, crl_urls=[server.base + root_path])
    inter = devpki.issue(devpki.dn("Revocation Issuing CA"), root, profile=inter_profile)
    device = Profile(crl_urls=[server.base + inter_path])
    good = devpki.issue("good.revocation.test", inter, profile=device, now=now)
    revoked = devpki.issue("revoked.revocation.test", inter, profile=device, now=now)
    bare = devpki.issue("bare.revocation.test", inter, now=now)
    pki = Pki(server, now, root, inter, good, revoked, bare, root_path, inter_path)
    pki.publish_root()
    pki.publish_inter([revoked])
    return pki


@pytest.fixture
def pki(crl_server: CrlServer, clock: FixedClock) -> Pki:
    return build_pki(crl_server, clock.now())


@pytest.fixture
def checkers(
    database: Database, clock: FixedClock, recorder: EventRecorder
) -> Iterator[Callable[..., RevocationChecker]]:
    """Makes RevocationCheckers on the test's database, clock and recorder; closes them."""
    made: list[RevocationChecker] = []

    def make(**kw: Any) -> RevocationChecker:
        options: dict[str, Any] = {"recorder": recorder} | kw
        checker = RevocationChecker(options.pop("db", database), clock, **options)
        made.append(checker)
        return checker

    yield make
    for checker in made:
        checker.close()


CRL = RevocationPolicy(mode=Mode.CRL, timeout=2.0)
OCSP = RevocationPolicy(mode=Mode.OCSP, timeout=2.0)


# --- CRL: revoked, good, intermediates -----------------------------------------------------


def test_crl_refuses_the_revoked_and_passes_the_good(
    pki: Pki, checkers: Callable[..., RevocationChecker]
) -> None:
    checker = checkers()
    revoked = checker.check(pki.chain(pki.revoked), CRL)
    assert revoked.status is Status.REVOKED and revoked.denied
    assert revoked.reason is ReasonCode.REVOKED_CERTIFICATE
    assert revoked.source == "crl" and revoked.url == pki.server.base + pki.inter_path
    assert revoked.serial_number == serial_hex(pki.revoked.cert)
    assert revoked.subject_dn == pki.revoked.cert.subject.rfc4514_string()
    assert revoked.revoked_at == pki.now - 5 * MINUTE - DAY
    assert revoked.revocation_reason == "keyCompromise"
    good = checker.check(pki.chain(pki.good), CRL)
    assert (good.status, good.reason, good.fail_open, good.source) == (
        Status.GOOD,
        None,
        False,
        "crl",
    )
    assert good.checked_at == pki.now and not good.denied
    shown = revoked.to_dict()
    assert set(shown) == {
        "status",
        "source",
        "checkedAt",
        "failOpen",
        "reason",
        "detail",
        "url",
        "serialNumber",
        "subjectDn",
        "revokedAt",
        "revocationReason",
        "nextUpdate",
        "staleBySeconds",
    }
    assert shown["status"] == "REVOKED" and shown["reason"] == "REVOKED_CERTIFICATE"
    assert shown["revokedAt"].endswith("Z") and shown["revocationReason"] == "keyCompromise"
    assert shown["nextUpdate"].endswith("Z") and shown["staleBySeconds"] is None


def test_a_crl_is_fetched_once_per_next_update_not_per_check(
    pki: Pki, checkers: Callable[..., RevocationChecker], clock: FixedClock
) -> None:
    big = [devpki.issue(f"d{i}", pki.inter, now=pki.now) for i in range(3)]
    serials = [*(item.cert for item in big), pki.revoked.cert]
    extra = [x509.random_serial_number() for _ in range(5000)]
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(pki.inter.name)
        .last_update(pki.now - MINUTE)
        .next_update(pki.now + HOUR)
        .add_extension(x509.CRLNumber(2), False)
    )
    for serial in [c.serial_number for c in serials] + extra:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(pki.now)
        builder = builder.add_revoked_certificate(entry.build())
    body = builder.sign(pki.inter.key, hashes.SHA256()).public_bytes(Encoding.DER)
    pki.server.serve(pki.inter_path, body)
    checker = checkers()
    for _ in range(300):
        assert checker.check(pki.chain(pki.good), CRL).status is Status.GOOD
        assert checker.check(pki.chain(pki.revoked), CRL).denied
    assert pki.server.hits(pki.inter_path) == 1 and pki.server.hits(pki.root_path) == 1
    assert checker.stats.fetches == 2 and checker.stats.hits >= 1190
    clock.advance(HOUR)  # the CRL's nextUpdate: the next check fetches once more
    for _ in range(10):
        checker.check(pki.chain(pki.good), CRL)
    assert pki.server.hits(pki.inter_path) == 2


def test_two_checkers_share_one_download_through_the_database(
    pki: Pki, checkers: Callable[..., RevocationChecker], database: Database
) -> None:
    first, second = checkers(), checkers()
    assert first.check(pki.chain(pki.revoked), CRL).denied
    assert pki.server.hits(pki.inter_path) == 1
    result = second.check(pki.chain(pki.revoked), CRL)
    assert result.reason is ReasonCode.REVOKED_CERTIFICATE and result.source == "crl"
    assert second.check(pki.chain(pki.good), CRL).status is Status.GOOD
    assert pki.server.hits(pki.inter_path) == 1 and pki.server.hits(pki.root_path) == 1
    assert second.stats.fetches == 0
    with database.session() as session:
        rows = session.scalars(select(CRLCacheEntry)).all()
        assert {row.url for row in rows} == {
            pki.server.base + pki.inter_path,
            pki.server.base + pki.root_path,
        }
        assert all(row.der and row.entry_count is not None for row in rows)


def test_a_revoked_intermediate_on_the_roots_crl(
    pki: Pki, checkers: Callable[..., RevocationChecker]
) -> None:
    pki.publish_root([pki.inter])
    result = checkers().check(pki.chain(pki.good), CRL)
    assert result.reason is ReasonCode.REVOKED_CERTIFICATE
    assert result.subject_dn == pki.inter.cert.subject.rfc4514_string()
    assert result.serial_number == serial_hex(pki.inter.cert)
    assert result.url == pki.server.base + pki.root_path
    assert pki.server.hits(pki.inter_path) == 0  # CA certificates are checked first


def test_a_ca_certificate_without_any_source_is_not_checked(
    crl_server: CrlServer, clock: FixedClock, checkers: Callable[..., RevocationChecker]
) -> None:
    root = devpki.ca("Sourceless Root")
    inter = devpki.ca("Sourceless Intermediate", root)  # no CDP, no AIA
    path = f"/{uuid.uuid4().hex}.crl"
    url = crl_server.serve(
        path, crl_bytes(inter, this_update=clock.now(), next_update=clock.now() + DAY)
    )
    leaf = devpki.issue("leaf", inter, profile=Profile(crl_urls=[url]))
    result = checkers().check((leaf.cert, inter.cert, root.cert), CRL)
    assert result.status is Status.GOOD and result.subject_dn == "CN=leaf,O=Certbound Dev"


@pytest.mark.parametrize("fail_open", [False, True], ids=["fail-closed", "fail-open"])
def test_a_device_certificate_without_any_source_is_unknown(
    pki: Pki, checkers: Callable[..., RevocationChecker], fail_open: bool
) -> None:
    checker = checkers()
    result = checker.check(pki.chain(pki.bare), CRL.replace(fail_open=fail_open))
    assert result.status is Status.UNKNOWN and result.source is None
    assert "no CRL distribution point" in result.detail
    assert result.fail_open is fail_open and result.denied is not fail_open
    assert result.reason is (None if fail_open else ReasonCode.REVOCATION_UNAVAILABLE)
    assert checker.stats.fail_open_allows == (1 if fail_open else 0)


def test_the_crl_url_override_applies_to_the_device_certificate(
    pki: Pki, checkers: Callable[..., RevocationChecker]
) -> None:
    url = pki.server.base + pki.inter_path
    result = checkers().check(pki.chain(pki.bare), CRL.replace(crl_url=url))
    assert result.status is Status.GOOD and result.url == url


def test_a_file_crl_url_is_read_from_disk_and_not_shared(
    pki: Pki, checkers: Callable[..., RevocationChecker], tmp_path: Path, database: Database
) -> None:
    path = tmp_path / "intermediate.crl.pem"
    path.write_bytes(
        crl_bytes(
            pki.inter,
            [pki.revoked.cert],
            this_update=pki.now,
            next_update=pki.now + DAY,
            pem=True,
        )
    )
    policy = CRL.replace(crl_url=path.as_uri())
    checker = checkers()
    result = checker.check(pki.chain(pki.revoked), policy)
    assert result.reason is ReasonCode.REVOKED_CERTIFICATE and result.source == "file"
    assert checker.check(pki.chain(pki.good), policy).status is Status.GOOD
    with database.session() as session:
        urls = {row.url for row in session.scalars(select(CRLCacheEntry))}
    assert path.as_uri() not in urls


def test_local_crl_files_are_used_without_fetching(
    pki: Pki, checkers: Callable[..., RevocationChecker]
) -> None:
    times = {"this_update": pki.now, "next_update": pki.now + DAY}
    inter_crl = crl_bytes(pki.inter, [pki.revoked.cert], **times)
    root_crl = crl_bytes(pki.root, [pki.inter.cert], pem=True, **times)
    checker = checkers(local_crls=[inter_crl])
    revoked = checker.check(pki.chain(pki.revoked), CRL)
    assert revoked.reason is ReasonCode.REVOKED_CERTIFICATE and revoked.source == "file"
    assert checker.check(pki.chain(pki.good), CRL).status is Status.GOOD
    with_root = checkers(local_crls=[inter_crl, root_crl]).check(pki.chain(pki.good), CRL)
    assert with_root.reason is ReasonCode.REVOKED_CERTIFICATE
    assert with_root.subject_dn == pki.inter.cert.subject.rfc4514_string()
    only_root = checkers(local_crls=[root_crl])
    unknown = only_root.check(pki.chain(pki.good), CRL.replace(crl_url=None))
    assert unknown.reason is ReasonCode.REVOKED_CERTIFICATE  # the intermediate, again
    other = checkers(local_crls=[crl_bytes(devpki.ca("Other CA"), **times)])
    none = other.check(pki.chain(pki.good), CRL)
    assert none.status is Status.UNKNOWN and none.reason is ReasonCode.REVOCATION_UNAVAILABLE
    assert pki.server.hits(pki.inter_path) == pki.server.hits(pki.root_path) == 0


def test_check_never_raises(
    pki: Pki, checkers: Callable[..., RevocationChecker], monkeypatch: pytest.MonkeyPatch
) -> None:
    checker = checkers()

    def broken(*_args: object, **_kw: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(checker._store, "get", broken)
    closed = checker.check(pki.chain(pki.good), CRL)
    assert closed.status is Status.UNAVAILABLE and "boom" in closed.detail
    assert closed.reason is ReasonCode.REVOCATION_UNAVAILABLE
    assert checker.check(pki.chain(pki.good), CRL.replace(fail_open=True)).fail_open


def test_mode_off_answers_without_asking(
    pki: Pki, checkers: Callable[..., RevocationChecker]
) -> None:
    result = checkers().check(pki.chain(pki.revoked), CRL.replace(mode=Mode.OFF))
    assert result.status is Status.UNKNOWN and not result.denied and not result.fail_open
    assert pki.server.hits(pki.inter_path) == 0


# --- the background refresher -------------------------------------------------------------


def wait_until(condition: Callable[[], bool], seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_the_refresher_gets_the_next_crl_before_next_update(
    pki: Pki, checkers: Callable[..., RevocationChecker], clock: FixedClock
) -> None:
    """A 2-hour CRL is refreshed a tenth of its validity (12 min) before its nextUpdate."""
    pki.publish_inter([], this_update=pki.now, next_update=pki.now + 2 * HOUR)
    checker = checkers()
    assert checker.check(pki.chain(pki.revoked), CRL).status is Status.GOOD
    pki.publish_inter([pki.revoked], this_update=pki.now + HOUR, number=2)
    checker.start_refresher(interval=0.02)
    time.sleep(0.3)
    assert pki.server.hits(pki.inter_path) == 1  # not due yet
    clock.advance(2 * HOUR - 10 * MINUTE)
    assert wait_until(lambda: pki.server.hits(pki.inter_path) == 2)
    result = checker.check(pki.chain(pki.revoked), CRL)  # no login download
    assert result.reason is ReasonCode.REVOKED_CERTIFICATE
    checker.close()
    thread = checker._store._thread
    assert thread is None
    time.sleep(0.1)
    assert pki.server.hits(pki.inter_path) == 2


# --- OCSP ------------------------------------------------------------------------------------


def write_index(path: Path, good: Sequence[Issued], revoked: Sequence[Issued]) -> None:
    """An openssl index (subjects are made unique: openssl refuses duplicates)."""
    lines = [
        f"V\t300101000000Z\t\t{serial_hex(i.cert)}\tunknown\t/CN={i.cert.serial_number}\n"
        for i in good
    ]
    lines += [
        f"R\t300101000000Z\t240101000000Z,keyCompromise\t{serial_hex(i.cert)}\tunknown"
        f"\t/CN={i.cert.serial_number}\n"
        for i in revoked
    ]
    path.write_text("".join(lines))


@dataclass
class OcspPki:
    ca: Issued
    good: Issued
    revoked: Issued
    other: Issued
    index: Path
    responders: dict[str, Responder] = field(default_factory=dict)

    def chain(self, leaf: Issued) -> tuple[x509.Certificate, ...]:
        return leaf.cert, self.ca.cert


@pytest.fixture(scope="module")
def ocsp_pki(tmp_path_factory: pytest.TempPathFactory, ocsp_responders: Responders) -> OcspPki:
    """A CA whose devices name its responder in their AIA; an impostor responder with the
    CA's name and another key."""
    if OPENSSL is None:
        pytest.skip("openssl is not installed")
    directory = tmp_path_factory.mktemp("revocation-ocsp")
    ca_port, impostor_port = ocsp_responders.reserve_ports(2)
    ca = devpki.ca("Revocation OCSP CA")
    device = Profile(extra=[aia(f"http://127.0.0.1:{ca_port}")])
    good, revoked, other = (devpki.issue(n, ca, profile=device) for n in ("g", "r", "o"))
    index = directory / "index.txt"
    write_index(index, [good, other], [revoked])
    impostor = devpki.issue(ca.name, None, profile=Profile(ca=True, eku=None))
    pki = OcspPki(ca, good, revoked, other, index)
    start = ocsp_responders.start
    pki.responders["ca"] = start(
        directory / "ca", ca_port, ca, ca, index=index, extra=("-nmin", "5")
    )
    pki.responders["impostor"] = start(
        directory / "impostor",
        impostor_port,
        impostor,
        ca,
        index=index,
        extra=("-nmin", "5", "-resp_no_certs"),
    )
    return pki


@needs_openssl
def test_ocsp_refuses_the_revoked_and_passes_the_good(
    ocsp_pki: OcspPki, checkers: Callable[..., RevocationChecker]
) -> None:
    checker = checkers()
    revoked = checker.check(ocsp_pki.chain(ocsp_pki.revoked), OCSP)
    assert revoked.status is Status.REVOKED
    assert revoked.reason is ReasonCode.REVOKED_CERTIFICATE and revoked.source == "ocsp"
    assert revoked.url == ocsp_pki.responders["ca"].url
    assert revoked.revoked_at == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert revoked.revocation_reason == "keyCompromise"
    good = checker.check(ocsp_pki.chain(ocsp_pki.good), OCSP)
    assert good.status is Status.GOOD and good.source == "ocsp" and not good.denied


@needs_openssl
# Known timing flake (about 1 run in 8 under load, not yet pinned down): the real responder
# or CRL server answers the previous state. One rerun; a real regression fails twice.
@pytest.mark.flaky(reruns=1)
def test_ocsp_answers_are_cached_until_next_update(
    ocsp_pki: OcspPki,
    ocsp_responders: Responders,
    checkers: Callable[..., RevocationChecker],
    tmp_path: Path,
    clock: FixedClock,
) -> None:
    """A responder that exits after two requests (the readiness probe and one check): the
    second check answers from the cache, so no request reaches it."""
    (port,) = ocsp_responders.reserve_ports(1)
    extra = ("-nmin", "5", "-nrequest", "2")
    once = ocsp_responders.start(
        tmp_path / "once", port, ocsp_pki.ca, ocsp_pki.ca, index=ocsp_pki.index, extra=extra
    )
    policy = OCSP.replace(ocsp_url=once.url)
    checker = checkers()
    first = checker.check(ocsp_pki.chain(ocsp_pki.good), policy)
    assert first.status is Status.GOOD and first.source == "ocsp"
    once.process.wait(timeout=5)  # it answered its two requests and exited
    second = checker.check(ocsp_pki.chain(ocsp_pki.good), policy)
    assert second.status is Status.GOOD and second.source == "cache"
    assert checker.stats.hits == 1 and checker.stats.misses == 1
    fresh = checkers().check(ocsp_pki.chain(ocsp_pki.good), policy)
    assert fresh.status is Status.UNAVAILABLE  # proof that the responder is gone
    clock.advance(5 * MINUTE)  # the cached answer's nextUpdate: asked again, and gone
    expired = checker.check(ocsp_pki.chain(ocsp_pki.good), policy)
    assert expired.status is Status.UNAVAILABLE and expired.source == "ocsp"


# Known timing flake (about 1 run in 8 under load, not yet pinned down): the real responder
# or CRL server answers the previous state. One rerun; a real regression fails twice.
@pytest.mark.flaky(reruns=1)
def test_ocsp_then_crl_falls_back_to_the_crl(
    pki: Pki,
    checkers: Callable[..., RevocationChecker],
    down_url: str,
    logged: Logged,
) -> None:
    device = Profile(crl_urls=[pki.server.base + pki.inter_path], extra=[aia(down_url)])
    leaf = devpki.issue("fallback.revocation.test", pki.inter, profile=device)
    pki.publish_inter([leaf])
    result = checkers().check(pki.chain(leaf), CRL.replace(mode=Mode.OCSP_THEN_CRL))
    assert result.reason is ReasonCode.REVOKED_CERTIFICATE and result.source == "crl"
    failures = logged(EventType.PKI_OCSP_FAILURE.value)
    assert [f["debugContext"]["debugData"]["url"] for f in failures] == [down_url]


@needs_openssl
def test_ocsp_then_crl_uses_ocsp_when_it_answers(
    ocsp_pki: OcspPki, checkers: Callable[..., RevocationChecker], down_url: str
) -> None:
    policy = OCSP.replace(mode=Mode.OCSP_THEN_CRL, crl_url=down_url)
    result = checkers().check(ocsp_pki.chain(ocsp_pki.revoked), policy)
    assert result.reason is ReasonCode.REVOKED_CERTIFICATE and result.source == "ocsp"


# --- every fault: the fail mode and an event, never a hang or an exception -----------------


@dataclass
class Env:
    pki: Pki
    ocsp: OcspPki | None
    server: CrlServer
    clock: FixedClock
    down_url: str
    silent_url: str
    client: httpx.Client


@dataclass(frozen=True)
class Fault:
    name: str
    event: EventType
    problem: str
    stale: bool = False


FAULTS = [
    Fault("crl-server-down", EventType.PKI_CRL_DOWNLOAD_FAILURE, "fetch"),
    Fault("crl-server-slow", EventType.PKI_CRL_DOWNLOAD_FAILURE, "fetch"),
    Fault("crl-garbage-body", EventType.PKI_CRL_DOWNLOAD_FAILURE, "malformed"),
    Fault("crl-signed-by-another-ca", EventType.PKI_CRL_DOWNLOAD_FAILURE, "issuer"),
    Fault("crl-signed-by-the-wrong-key", EventType.PKI_CRL_DOWNLOAD_FAILURE, "signature"),
    Fault("stale-crl", EventType.PKI_CRL_STALE, "stale", stale=True),
    Fault("crl-number-rollback", EventType.PKI_CRL_DOWNLOAD_FAILURE, "rollback", stale=True),
    Fault("responder-down", EventType.PKI_OCSP_FAILURE, "unavailable"),
    Fault("responder-slow", EventType.PKI_OCSP_FAILURE, "unavailable"),
    Fault("responder-garbage-body", EventType.PKI_OCSP_FAILURE, "malformed"),
    Fault("response-signed-by-the-wrong-key", EventType.PKI_OCSP_FAILURE, "signature"),
    Fault("response-for-another-serial", EventType.PKI_OCSP_FAILURE, "certid"),
    Fault("stale-response", EventType.PKI_OCSP_FAILURE, "stale"),
    Fault("response-without-our-nonce", EventType.PKI_OCSP_FAILURE, "nonce"),
]
TIMEOUT = 0.5


def arrange(fault: Fault, env: Env, checker: RevocationChecker) -> tuple[Any, RevocationPolicy]:
    """(the path to check, the policy) for a fault; may check once first (rollback)."""
    pki, now = env.pki, env.clock.now()
    crl = RevocationPolicy(mode=Mode.CRL, timeout=TIMEOUT, max_staleness=30 * MINUTE)
    path = f"/{uuid.uuid4().hex}"
    times = {"this_update": now - MINUTE, "next_update": now + DAY}
    if fault.name == "crl-server-down":
        return pki.chain(pki.bare), crl.replace(crl_url=env.down_url)
    if fault.name == "crl-server-slow":
        url = env.server.serve(path, crl_bytes(pki.inter, **times), delay=3.0)
        return pki.chain(pki.bare), crl.replace(crl_url=url)
    if fault.name == "crl-garbage-body":
        url = env.server.serve(path, b"<html>this is not a CRL</html>")
        return pki.chain(pki.bare), crl.replace(crl_url=url)
    if fault.name == "crl-signed-by-another-ca":
        url = env.server.serve(path, crl_bytes(devpki.ca("Another CA"), **times))
        return pki.chain(pki.bare), crl.replace(crl_url=url)
    if fault.name == "crl-signed-by-the-wrong-key":
        impostor = devpki.ca("Revocation Issuing CA")  # the intermediate's name, another key
        url = env.server.serve(path, crl_bytes(impostor, **times))
        return pki.chain(pki.bare), crl.replace(crl_url=url)
    if fault.name == "stale-crl":
        stale = {"this_update": now - 3 * DAY, "next_update": now - HOUR}
        url = env.server.serve(path, crl_bytes(pki.inter, **stale))
        return pki.chain(pki.bare), crl.replace(crl_url=url)
    if fault.name == "crl-number-rollback":
        held = {"this_update": now - HOUR, "next_update": now + HOUR, "number": 5}
        url = env.server.serve(path, crl_bytes(pki.inter, [pki.revoked.cert], **held))
        policy = crl.replace(crl_url=url)
        assert checker.check(pki.chain(pki.bare), policy).status is Status.GOOD
        older = {"this_update": now, "next_update": now + 7 * DAY, "number": 4}
        env.server.serve(path, crl_bytes(pki.inter, [], **older))  # forgets the revocation
        env.clock.advance(2 * HOUR)  # past the held CRL's nextUpdate + 30 min
        return pki.chain(pki.bare), policy
    return arrange_ocsp(fault, env, path)


def arrange_ocsp(fault: Fault, env: Env, path: str) -> tuple[Any, RevocationPolicy]:
    assert env.ocsp is not None
    ocsp_pki = env.ocsp
    policy = RevocationPolicy(mode=Mode.OCSP, timeout=TIMEOUT)
    urls = {
        "responder-down": env.down_url,
        "responder-slow": env.silent_url,
        "response-signed-by-the-wrong-key": ocsp_pki.responders["impostor"].url,
        "stale-response": ocsp_pki.responders["ca"].url,
    }
    if fault.name == "responder-garbage-body":
        urls[fault.name] = env.server.serve(path, b"\x30\x03garbage")
    if fault.name == "response-for-another-serial":
        request = ocsp.build_request(ocsp_pki.other.cert, ocsp_pki.ca.cert, nonce=os.urandom(16))
        other = ocsp.send(env.client, ocsp_pki.responders["ca"].url, request, timeout=5)
        urls[fault.name] = env.server.serve(path, other)  # replayed for the good device
    if fault.name == "response-without-our-nonce":  # a genuine answer, replayed: nonce is on
        request = ocsp.build_request(ocsp_pki.good.cert, ocsp_pki.ca.cert, nonce=None)
        replay = ocsp.send(env.client, ocsp_pki.responders["ca"].url, request, timeout=5)
        urls[fault.name] = env.server.serve(path, replay)
    if fault.name == "stale-response":
        env.clock.advance(HOUR)  # the responder's answer (nextUpdate + 5 min) is long past
    return ocsp_pki.chain(ocsp_pki.good), policy.replace(ocsp_url=urls[fault.name])


@pytest.fixture
def env(
    request: pytest.FixtureRequest,
    pki: Pki,
    crl_server: CrlServer,
    clock: FixedClock,
    client: httpx.Client,
) -> Env:
    """Everything a fault is made of; the OCSP responders only for OCSP faults."""
    fault: Fault = request.node.callspec.params["fault"]
    ocsp_pki = None
    if fault.event is EventType.PKI_OCSP_FAILURE:
        if OPENSSL is None:
            pytest.skip("openssl is not installed")
        ocsp_pki = request.getfixturevalue("ocsp_pki")
    down_url, silent_url = (request.getfixturevalue(n) for n in ("down_url", "silent_url"))
    return Env(pki, ocsp_pki, crl_server, clock, down_url, silent_url, client)


@pytest.mark.parametrize("fail_open", [False, True], ids=["fail-closed", "fail-open"])
@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_every_fault_ends_with_the_fail_mode_and_an_event(
    fault: Fault,
    fail_open: bool,
    env: Env,
    checkers: Callable[..., RevocationChecker],
    logged: Logged,
) -> None:
    checker = checkers()
    chain, policy = arrange(fault, env, checker)
    policy = policy.replace(fail_open=fail_open)
    started = time.monotonic()
    result = checker.check(chain, policy)
    assert time.monotonic() - started < policy.timeout + MARGIN
    assert result.status is Status.UNAVAILABLE, result
    assert result.fail_open is fail_open and result.denied is not fail_open
    expected = ReasonCode.REVOCATION_STALE if fault.stale else ReasonCode.REVOCATION_UNAVAILABLE
    assert result.reason is (None if fail_open else expected)
    assert (result.stale_by is not None) is fault.stale
    if fault.stale:
        assert result.to_dict()["staleBySeconds"] > 30 * 60 and result.next_update is not None
    assert checker.stats.fail_open_allows == (1 if fail_open else 0)
    recorded = logged(fault.event.value)
    problems = [e["debugContext"]["debugData"].get("problem") for e in recorded]
    if "slow" in fault.name:  # it waited for the timeout, not for something else
        assert "timeout" in recorded[0]["debugContext"]["debugData"]["error"].lower()
    if fault.event is EventType.PKI_CRL_STALE:
        problems = ["stale" for _ in problems]
    assert fault.problem in problems, problems
    again = checker.check(chain, policy)  # the failure is held off, not retried per login
    assert again.status is Status.UNAVAILABLE and again.fail_open is fail_open
    assert len(logged(fault.event.value)) == len(problems)


def test_a_rollback_never_forgets_a_revocation(
    pki: Pki, checkers: Callable[..., RevocationChecker], clock: FixedClock, logged: Logged
) -> None:
    now = clock.now()
    path = f"/{uuid.uuid4().hex}"
    held = {"this_update": now - HOUR, "next_update": now + HOUR, "number": 5}
    url = pki.server.serve(path, crl_bytes(pki.inter, [pki.revoked.cert], **held))
    policy = CRL.replace(crl_url=url, fail_open=True, max_staleness=30 * MINUTE)
    checker = checkers()
    assert checker.check(pki.chain(pki.revoked), policy).denied
    older = {"this_update": now, "next_update": now + 7 * DAY, "number": 4}
    pki.server.serve(path, crl_bytes(pki.inter, [], **older))
    clock.advance(2 * HOUR)
    result = checker.check(pki.chain(pki.revoked), policy)
    assert result.reason is ReasonCode.REVOKED_CERTIFICATE  # a stale CRL still revokes
    events = logged(EventType.PKI_CRL_DOWNLOAD_FAILURE.value)
    assert [e["debugContext"]["debugData"]["problem"] for e in events] == ["rollback"]
    assert events[0]["severity"] == "ERROR"
    assert events[0]["outcome"] == {"result": "FAILURE", "reason": "REVOCATION_UNAVAILABLE"}


def test_the_events_name_what_failed(
    pki: Pki, checkers: Callable[..., RevocationChecker], down_url: str, logged: Logged
) -> None:
    checkers().check(pki.chain(pki.bare), CRL.replace(crl_url=down_url))
    (event,) = logged(EventType.PKI_CRL_DOWNLOAD_FAILURE.value)
    data = event["debugContext"]["debugData"]
    assert data["url"] == down_url and data["trigger"] == "login"
    assert data["caSubjectDn"] == pki.inter.cert.subject.rfc4514_string()
    assert data["problem"] == "fetch" and "ConnectError" in data["error"]
    assert event["actor"]["id"] == "system" and event["severity"] == "WARN"
    assert event["target"][0]["alternateId"] == data["caSubjectDn"]


# --- health ----------------------------------------------------------------------------------


@needs_openssl
def test_health_probes_crl_and_ocsp(
    pki: Pki,
    ocsp_pki: OcspPki,
    checkers: Callable[..., RevocationChecker],
    down_url: str,
) -> None:
    checker = checkers()
    checker.check(pki.chain(pki.good), CRL)
    checker.check(pki.chain(pki.good), CRL)
    report = checker.health([pki.inter.cert, pki.root.cert], CRL)
    (crl,) = report["crl"]
    assert crl["url"] == pki.server.base + pki.inter_path
    assert crl["reachable"] is True and crl["error"] is None and crl["size"] > 0
    assert crl["entryCount"] == 1 and crl["nextUpdate"].endswith("Z")
    assert crl["latencyMs"] >= 0 and crl["table"]["held"] is True
    assert crl["table"]["fetchedAt"] is not None
    assert report["cache"]["hits"] == 2 and report["cache"]["hitRate"] == pytest.approx(0.5)
    assert report["policy"]["mode"] == "crl"
    policy = OCSP.replace(crl_url=down_url, ocsp_url=ocsp_pki.responders["ca"].url)
    report = checker.health([ocsp_pki.ca.cert], policy)
    (dead,) = report["crl"]
    assert dead["reachable"] is False and "fetch" in dead["error"]
    (responder,) = report["ocsp"]
    assert responder["reachable"] is True and responder["responseStatus"] == "SUCCESSFUL"
    down = checker.health([ocsp_pki.ca.cert], OCSP.replace(ocsp_url=down_url))
    assert down["ocsp"][0]["reachable"] is False


@needs_openssl
def test_health_lists_the_ocsp_responders_other_instances_asked(
    ocsp_pki: OcspPki, checkers: Callable[..., RevocationChecker], down_url: str
) -> None:
    asked = checkers()
    assert asked.check(ocsp_pki.chain(ocsp_pki.good), OCSP).source == "ocsp"
    assert asked.check(ocsp_pki.chain(ocsp_pki.good), OCSP).source == "cache"  # no request
    failed = checkers().check(ocsp_pki.chain(ocsp_pki.good), OCSP.replace(ocsp_url=down_url))
    assert failed.status is Status.UNAVAILABLE  # another instance asked a dead responder
    report = checkers().health([ocsp_pki.ca.cert], OCSP)
    by_url = {probe["url"]: probe for probe in report["ocsp"]}
    assert set(by_url) == {ocsp_pki.responders["ca"].url, down_url}
    live = by_url[ocsp_pki.responders["ca"].url]
    assert live["reachable"] is True and live["table"]["requests"] == 1
    assert live["table"]["lastOkAt"].endswith("Z") and live["table"]["lastError"] is None
    assert live["table"]["lastLatencyMs"] >= 0
    dead = by_url[down_url]
    assert dead["reachable"] is False and dead["table"]["lastOkAt"] is None
    assert dead["table"]["lastError"].startswith("unavailable")
    other = checkers().health([devpki.ca("Another CA").cert], OCSP)
    assert other["ocsp"] == []  # matched by the CA's SPKI pin


@needs_openssl
def test_the_fleet_counters_add_up_across_checkers(
    ocsp_pki: OcspPki,
    pki: Pki,
    checkers: Callable[..., RevocationChecker],
    database: Database,
) -> None:
    first, second = checkers(), checkers()
    for _ in range(3):
        first.check(ocsp_pki.chain(ocsp_pki.good), OCSP)  # 1 miss, 2 hits
    second.check(ocsp_pki.chain(ocsp_pki.good), OCSP)  # 1 miss
    second.check(pki.chain(pki.good), CRL)  # 2 misses under other pins
    first.close()
    second.close()
    second.close()  # idempotent: nothing added twice
    with database.session() as session:
        rows = {row.key: (row.hits, row.misses) for row in session.scalars(select(Counter))}
    assert rows[issuer_pin(ocsp_pki.ca.cert)] == (2, 2)
    assert rows["all"] == (2, 4)
    third = checkers()
    third.check(ocsp_pki.chain(ocsp_pki.good), OCSP)  # 1 miss, not flushed yet
    cache = third.health([ocsp_pki.ca.cert], OCSP)["cache"]
    assert (cache["fleetHits"], cache["fleetMisses"]) == (2, 3)
    assert cache["fleetHitRate"] == pytest.approx(0.4)
    assert (cache["hits"], cache["misses"]) == (0, 1)  # this process only


def test_the_refresher_adds_the_counts(
    pki: Pki, checkers: Callable[..., RevocationChecker], database: Database
) -> None:
    checker = checkers()
    checker.check(pki.chain(pki.good), CRL)
    checker.start_refresher(interval=0.05)
    assert wait_until(lambda: database_counts(database).get("all") == (0, 2))


def test_counts_survive_a_database_error(
    pki: Pki, checkers: Callable[..., RevocationChecker], database: Database
) -> None:
    checker = checkers()
    checker.check(pki.chain(pki.good), CRL)
    with patch.object(revocation_fleet, "add_counts", return_value=False):
        checker.flush_counters()  # not added: kept for the next flush
    checker.flush_counters()
    assert database_counts(database)["all"] == (0, 2)


def test_a_database_error_never_fails_an_ocsp_login(
    ocsp_pki: OcspPki, checkers: Callable[..., RevocationChecker], database: Database
) -> None:
    if OPENSSL is None:
        pytest.skip("openssl is not installed")
    checker = checkers()
    broken = SQLAlchemyError("database down")
    with patch.object(database, "session", side_effect=broken):
        result = checker.check(ocsp_pki.chain(ocsp_pki.revoked), OCSP)
        checker.flush_counters()
    assert result.reason is ReasonCode.REVOKED_CERTIFICATE and result.source == "ocsp"
    checker.flush_counters()
    assert database_counts(database)["all"] == (0, 1)


def database_counts(database: Database) -> dict[str, tuple[int, int]]:
    with database.session() as session:
        return {row.key: (row.hits, row.misses) for row in session.scalars(select(Counter))}


def test_result_denied_is_reason(clock: FixedClock) -> None:
    result = RevocationResult(Status.UNAVAILABLE, "crl", clock.now(), fail_open=True)
    assert not result.denied and result.to_dict()["failOpen"] is True
    assert result.to_dict()["reason"] is None and result.to_dict()["revokedAt"] is None
