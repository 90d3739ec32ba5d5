"""CRL fetching, signer checks, times, rollback and the serial index, against a real local
HTTP server (``crl_server``, tests/pki/conftest.py) serving CRLs to certificates whose CRL
distribution points name it, and CRLs from both ``cryptography`` and ``openssl ca -gencrl``."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from certbound.errors import ReasonCode
from certbound.pki import crl, devpki
from certbound.pki.certificate import extension, serial_hex
from certbound.pki.devpki import DAY, Issued, Profile

if TYPE_CHECKING:
    from conftest import CrlServer

MINUTE = dt.timedelta(minutes=1)
OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
CRL_SIGN_ONLY = x509.KeyUsage(True, False, False, False, False, False, True, False, False)
SIGN_ONLY = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
CERT_SIGN_ONLY = x509.KeyUsage(False, False, False, False, False, True, False, False, False)


# --- PKI -----------------------------------------------------------------------------------


def make_crl(
    issuer: Issued,
    serials: Sequence[int] = (),
    *,
    this_update: dt.datetime,
    next_update: dt.datetime | None = None,
    number: int | None = 1,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.name)
        .last_update(this_update)
        .next_update(next_update or this_update + 7 * DAY)
    )
    if number is not None:
        builder = builder.add_extension(x509.CRLNumber(number), False)
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical)
    for serial in serials:
        entry = x509.RevokedCertificateBuilder().serial_number(serial)
        builder = builder.add_revoked_certificate(entry.revocation_date(this_update).build())
    return builder.sign(issuer.key, hashes.SHA256())


def der(item: x509.CertificateRevocationList) -> bytes:
    return item.public_bytes(Encoding.DER)


@dataclass
class Pki:
    ca: Issued
    good: Issued
    revoked: Issued
    now: dt.datetime


@pytest.fixture(scope="module")
def pki(crl_server: CrlServer) -> Pki:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ca = devpki.ca("CRL Test CA")
    base = crl_server.base
    profile = Profile(crl_urls=[f"{base}/ca.crl", f"{base}/ca.pem.crl"])
    good = devpki.issue("good.crl.test", ca, profile=profile, now=now)
    revoked = devpki.issue("revoked.crl.test", ca, profile=profile, now=now)
    published = devpki.make_crl(ca, [revoked.cert.serial_number], now)
    crl_server.serve("/ca.crl", der(published))
    crl_server.serve("/ca.pem.crl", published.public_bytes(Encoding.PEM))
    return Pki(ca, good, revoked, now)


def crl_urls(cert: x509.Certificate) -> list[str]:
    points = extension(cert, x509.CRLDistributionPoints)
    return [name.value for point in points for name in point.full_name]


def ingest(data: bytes, pki: Pki, **kwargs: object) -> crl.CrlIndex:
    options: dict[str, object] = {"now": pki.now, "source": "test"} | kwargs
    return crl.index_crl(data, pki.ca.cert, **options)  # type: ignore[arg-type]


def problem(excinfo: pytest.ExceptionInfo[crl.CrlError], expected: str) -> None:
    assert excinfo.value.problem == expected, str(excinfo.value)


# --- fetch + index over the certificate's own CDP URLs -------------------------------------


@pytest.mark.parametrize("which", [0, 1], ids=["der", "pem"])
def test_fetch_and_lookup_from_the_certificates_cdp(
    pki: Pki, client: httpx.Client, which: int
) -> None:
    url = crl_urls(pki.good.cert)[which]
    data = crl.fetch(client, url, timeout=2)
    index = crl.index_crl(data, pki.ca.cert, now=pki.now, source=url)
    assert index.is_revoked(pki.revoked.cert.serial_number)
    assert not index.is_revoked(pki.good.cert.serial_number)
    assert index.entry(pki.good.cert.serial_number) is None
    entry = index.entry(pki.revoked.cert.serial_number)
    assert entry is not None
    assert entry.serial == pki.revoked.cert.serial_number
    assert entry.revocation_time == pki.now - 5 * MINUTE
    assert entry.reason is None
    assert index.issuer_dn == "CN=CRL Test CA,O=Certbound Dev"
    assert index.signer_dn == index.issuer_dn
    assert (index.crl_number, index.entry_count, index.source) == (1, 1, url)
    assert index.der[:1] == b"\x30" and index.size == len(index.der)
    assert index.fetched_at == pki.now and index.scope == "all"
    assert crl.staleness(index, pki.now) is None


def test_entry_details_are_looked_up_once(pki: Pki) -> None:
    index = ingest(der(make_crl(pki.ca, [7, 8, 9], this_update=pki.now)), pki)
    first = index.entry(8)
    assert first is not None and index.entry(8) is first
    assert index.is_revoked(9) and not index.is_revoked(10)


# --- openssl-generated CRLs ----------------------------------------------------------------


def openssl_crl(
    directory: Path, ca: Issued, lines: Sequence[str], *, md: str = "sha256", crl_number: int = 16
) -> bytes:
    """Run ``openssl ca -gencrl`` over an index file with ``lines``; the CRL as PEM."""
    assert OPENSSL is not None
    (directory / "ca.pem").write_bytes(ca.cert_pem())
    (directory / "ca.key").write_bytes(ca.key_pem())
    (directory / "index.txt").write_text("".join(line + "\n" for line in lines))
    (directory / "index.txt.attr").write_text("unique_subject = no\n")
    (directory / "crlnumber").write_text(f"{crl_number:02X}\n")
    (directory / "ca.cnf").write_text(
        f"[ca]\ndefault_ca = c\n[c]\ndatabase = {directory}/index.txt\n"
        f"certificate = {directory}/ca.pem\nprivate_key = {directory}/ca.key\n"
        f"crlnumber = {directory}/crlnumber\ndefault_md = {md}\ndefault_crl_days = 7\n"
    )
    out = directory / "out.crl"
    subprocess.run(
        [OPENSSL, "ca", "-gencrl", "-config", str(directory / "ca.cnf"), "-out", str(out)],
        check=True,
        capture_output=True,
    )
    return out.read_bytes()


@needs_openssl
def test_openssl_gencrl_with_reasons(pki: Pki, tmp_path: Path) -> None:
    lines = [
        f"R\t300101000000Z\t240101000000Z,keyCompromise\t{serial:04X}\tunknown\t/CN=d{serial}"
        for serial in range(0x1000, 0x1000 + 500)
    ]
    lines.append(f"R\t300101000000Z\t240301120000Z\t{serial_hex(pki.revoked.cert)}\tunknown\t/CN=r")
    lines.append(f"V\t300101000000Z\t\t{serial_hex(pki.good.cert)}\tunknown\t/CN=g")
    data = openssl_crl(tmp_path, pki.ca, lines)
    index = crl.index_crl(data, pki.ca.cert, now=dt.datetime.now(dt.UTC), source="openssl")
    assert (index.entry_count, index.crl_number) == (501, 16)
    assert index.entry(0x1001) == crl.RevokedEntry(
        0x1001, dt.datetime(2024, 1, 1, tzinfo=dt.UTC), "keyCompromise"
    )
    entry = index.entry(pki.revoked.cert.serial_number)
    assert entry is not None and entry.reason is None
    assert entry.revocation_time == dt.datetime(2024, 3, 1, 12, tzinfo=dt.UTC)
    assert not index.is_revoked(pki.good.cert.serial_number)


@needs_openssl
def test_sha1_signed_crl_is_refused(pki: Pki, tmp_path: Path) -> None:
    data = openssl_crl(tmp_path, pki.ca, [], md="sha1")
    with pytest.raises(crl.CrlError) as excinfo:
        crl.index_crl(data, pki.ca.cert, now=dt.datetime.now(dt.UTC), source="openssl")
    problem(excinfo, "signature")


# --- who signed it -------------------------------------------------------------------------


def test_crl_of_another_ca_is_refused(pki: Pki) -> None:
    other = devpki.ca("Some Other CA")
    with pytest.raises(crl.CrlError) as excinfo:
        ingest(der(make_crl(other, [1], this_update=pki.now)), pki)
    problem(excinfo, "issuer")
    assert excinfo.value.reason is ReasonCode.REVOCATION_UNAVAILABLE


def test_crl_signed_by_a_same_name_impostor_is_refused(pki: Pki) -> None:
    impostor = devpki.ca("CRL Test CA")
    with pytest.raises(crl.CrlError) as excinfo:
        ingest(der(make_crl(impostor, [1], this_update=pki.now)), pki)
    problem(excinfo, "signature")


def test_authorised_crl_issuer_with_crl_sign(pki: Pki) -> None:
    signer = devpki.issue("CRL Signer", pki.ca, profile=Profile(key_usage=CRL_SIGN_ONLY, eku=None))
    data = der(make_crl(signer, [5], this_update=pki.now))
    with pytest.raises(crl.CrlError) as excinfo:
        ingest(data, pki)
    problem(excinfo, "issuer")
    index = ingest(data, pki, candidates=[signer.cert])
    assert index.signer_dn == "CN=CRL Signer,O=Certbound Dev" and index.is_revoked(5)


@pytest.mark.parametrize("kind", ["no-crl-sign", "not-issued-by-ca", "expired", "no-key-usage"])
def test_unauthorised_crl_issuer_is_refused(pki: Pki, kind: str) -> None:
    issuer = devpki.ca("Some Other CA") if kind == "not-issued-by-ca" else pki.ca
    usage = {"no-crl-sign": SIGN_ONLY, "no-key-usage": None}.get(kind, CRL_SIGN_ONLY)
    profile = Profile(key_usage=usage, eku=None)
    if kind == "expired":
        profile.not_before, profile.not_after = pki.now - 9 * DAY, pki.now - DAY
    signer = devpki.issue("CRL Signer", issuer, profile=profile)
    if kind == "no-key-usage":  # devpki always writes keyUsage; rebuild without it
        signer = Issued(_without_key_usage(signer.cert, pki.ca), signer.key)
    with pytest.raises(crl.CrlError) as excinfo:
        ingest(der(make_crl(signer, [5], this_update=pki.now)), pki, candidates=[signer.cert])
    problem(excinfo, "issuer")


def _without_key_usage(cert: x509.Certificate, issuer: Issued) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(issuer.name)
        .public_key(cert.public_key())
        .serial_number(cert.serial_number)
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
    )
    return builder.sign(issuer.key, hashes.SHA256())


def test_ca_without_crl_sign_cannot_sign_its_crl(pki: Pki) -> None:
    ca = devpki.ca("Cert-Only CA", key_usage=CERT_SIGN_ONLY)
    with pytest.raises(crl.CrlError) as excinfo:
        crl.index_crl(der(make_crl(ca, [1], this_update=pki.now)), ca.cert, now=pki.now, source="t")
    problem(excinfo, "issuer")
    assert "cRLSign" in str(excinfo.value)


# --- times and rollback --------------------------------------------------------------------


def test_this_update_in_the_future(pki: Pki) -> None:
    ingest(der(make_crl(pki.ca, this_update=pki.now + 4 * MINUTE)), pki)  # inside the skew
    with pytest.raises(crl.CrlError) as excinfo:
        ingest(der(make_crl(pki.ca, this_update=pki.now + 60 * MINUTE)), pki)
    problem(excinfo, "not_yet_valid")


def test_staleness_is_measured_not_decided(pki: Pki) -> None:
    data = make_crl(pki.ca, this_update=pki.now - 2 * DAY, next_update=pki.now - DAY)
    index = ingest(der(data), pki)  # a stale CRL still ingests: policy decides
    assert crl.staleness(index, pki.now) == DAY
    assert crl.staleness(index, pki.now - 2 * DAY) is None
    crl.check_fresh(index, pki.now, allowed=2 * DAY)
    with pytest.raises(crl.CrlError) as excinfo:
        crl.check_fresh(index, pki.now, allowed=60 * MINUTE)
    problem(excinfo, "stale")
    assert excinfo.value.reason is ReasonCode.REVOCATION_STALE


def test_rollback_by_crl_number(pki: Pki) -> None:
    held = ingest(der(make_crl(pki.ca, this_update=pki.now - DAY, number=5)), pki)
    crl.check_rollback(held, None)
    newer = ingest(der(make_crl(pki.ca, this_update=pki.now, number=6)), pki)
    crl.check_rollback(newer, held)
    crl.check_rollback(held, held)
    older = ingest(der(make_crl(pki.ca, this_update=pki.now, number=4)), pki)
    with pytest.raises(crl.CrlError) as excinfo:
        crl.check_rollback(older, held)
    problem(excinfo, "rollback")
    same_number_older = ingest(der(make_crl(pki.ca, this_update=pki.now - 2 * DAY, number=5)), pki)
    with pytest.raises(crl.CrlError):
        crl.check_rollback(same_number_older, held)


def test_rollback_by_this_update_without_numbers(pki: Pki) -> None:
    held = ingest(der(make_crl(pki.ca, this_update=pki.now, number=None)), pki)
    older = ingest(der(make_crl(pki.ca, this_update=pki.now - DAY, number=None)), pki)
    assert held.crl_number is None
    with pytest.raises(crl.CrlError) as excinfo:
        crl.check_rollback(older, held)
    problem(excinfo, "rollback")
    crl.check_rollback(held, older)


def test_rollback_compares_crls_of_one_issuer(pki: Pki) -> None:
    other = devpki.ca("Some Other CA")
    held = crl.index_crl(
        der(make_crl(other, this_update=pki.now)), other.cert, now=pki.now, source="t"
    )
    with pytest.raises(crl.CrlError) as excinfo:
        crl.check_rollback(ingest(der(make_crl(pki.ca, this_update=pki.now)), pki), held)
    problem(excinfo, "issuer")


# --- CRLs the index cannot represent -------------------------------------------------------


@pytest.mark.parametrize(
    "ext",
    [
        x509.DeltaCRLIndicator(3),
        x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"),
        x509.IssuingDistributionPoint(None, None, False, False, None, True, False),
    ],
    ids=["delta", "unknown-critical", "indirect"],
)
def test_unsupported_crl_kinds_are_refused(pki: Pki, ext: x509.ExtensionType) -> None:
    data = der(make_crl(pki.ca, [1], this_update=pki.now, extensions=[(ext, True)]))
    with pytest.raises(crl.CrlError) as excinfo:
        ingest(data, pki)
    problem(excinfo, "unsupported")


def test_scope_from_issuing_distribution_point(pki: Pki) -> None:
    idp = x509.IssuingDistributionPoint(None, None, False, True, None, False, False)
    data = der(make_crl(pki.ca, [1], this_update=pki.now, extensions=[(idp, True)]))
    assert ingest(data, pki).scope == "ca"


# --- bad bodies and transport faults -------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"", b"garbage, not a CRL", b"\x30\x03\x02\x01\x01", b"-----BEGIN X509 CRL-----\n!!\n"],
    ids=["empty", "text", "bad-der", "bad-pem"],
)
def test_malformed_bodies(
    pki: Pki, crl_server: CrlServer, client: httpx.Client, body: bytes
) -> None:
    data = crl.fetch(client, crl_server.serve("/garbage.crl", body), timeout=2)
    with pytest.raises(crl.CrlError) as excinfo:
        ingest(data, pki)
    problem(excinfo, "malformed")


def test_pem_with_two_crls_is_malformed(pki: Pki) -> None:
    one = make_crl(pki.ca, this_update=pki.now).public_bytes(Encoding.PEM)
    with pytest.raises(crl.CrlError) as excinfo:
        crl.parse_crl(one + one)
    problem(excinfo, "malformed")


def test_too_large(pki: Pki, crl_server: CrlServer, client: httpx.Client) -> None:
    body = der(make_crl(pki.ca, range(1, 200), this_update=pki.now))
    announced = crl_server.serve("/big.crl", body)
    unannounced = crl_server.serve("/big-unannounced.crl", body, content_length=False)
    for url in (announced, unannounced):
        with pytest.raises(crl.CrlError) as excinfo:
            crl.fetch(client, url, timeout=2, max_bytes=1000)
        problem(excinfo, "too_large")
    assert crl.fetch(client, unannounced, timeout=2) == body
    with pytest.raises(crl.CrlError) as excinfo:
        ingest(body, pki, max_bytes=1000)
    problem(excinfo, "too_large")


def test_http_404_and_500(crl_server: CrlServer, client: httpx.Client) -> None:
    broken = crl_server.serve("/broken.crl", b"oops", status=500)
    for url in (f"{crl_server.base}/missing.crl", broken):
        with pytest.raises(crl.CrlError) as excinfo:
            crl.fetch(client, url, timeout=2)
        problem(excinfo, "fetch")
        assert "HTTP" in str(excinfo.value)


def test_slow_server_times_out(crl_server: CrlServer, client: httpx.Client) -> None:
    slow = crl_server.serve("/slow.crl", b"late", delay=3.0)
    started = time.monotonic()
    with pytest.raises(crl.CrlError) as excinfo:
        crl.fetch(client, slow, timeout=0.5)
    assert time.monotonic() - started < 1.0
    problem(excinfo, "fetch")
    assert "Timeout" in str(excinfo.value)


def test_nothing_listening(client: httpx.Client, down_url: str) -> None:
    started = time.monotonic()
    with pytest.raises(crl.CrlError) as excinfo:
        crl.fetch(client, down_url + "ca.crl", timeout=2)
    assert time.monotonic() - started < 1.0
    problem(excinfo, "fetch")
    assert isinstance(excinfo.value.__cause__, httpx.ConnectError)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/ca.crl", "file:///etc/passwd", "ldap://x/"])
def test_only_http_urls(client: httpx.Client, url: str) -> None:
    with pytest.raises(crl.CrlError) as excinfo:
        crl.fetch(client, url, timeout=1)
    problem(excinfo, "fetch")
