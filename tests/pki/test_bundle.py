"""Upload validation (certbound.pki.bundle): ordering, notices and every rejection."""

from __future__ import annotations

import datetime as dt
import itertools
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from certbound.errors import CertboundError, ReasonCode
from certbound.pki import devpki
from certbound.pki.bundle import (
    MAX_BUNDLE_CERTIFICATES,
    CheckedBundle,
    KnownCertificate,
    check_bundle,
)
from certbound.pki.certificate import der, sha256_fingerprint, spki_sha256

DAY = dt.timedelta(days=1)
CA_PROFILE = devpki.Profile(ca=True, eku=None)


@pytest.fixture(scope="module")
def root() -> devpki.Issued:
    return devpki.ca("Bundle Root CA", path_length=1)


@pytest.fixture(scope="module")
def inter(root: devpki.Issued) -> devpki.Issued:
    return devpki.ca("Bundle Intermediate CA", root, path_length=0)


@pytest.fixture(scope="module")
def inter2(root: devpki.Issued) -> devpki.Issued:
    """A second intermediate under the same root (a sibling of ``inter``)."""
    return devpki.ca("Bundle Other Intermediate CA", root)


def check(
    items: list[devpki.Issued | x509.Certificate], now: dt.datetime, **kw: object
) -> CheckedBundle:
    certs = [item.cert if isinstance(item, devpki.Issued) else item for item in items]
    return check_bundle(certs, now=now, **kw)  # type: ignore[arg-type]


def rejected(
    items: list[devpki.Issued | x509.Certificate], now: dt.datetime, **kw: object
) -> CertboundError:
    with pytest.raises(CertboundError) as info:
        check(items, now, **kw)
    return info.value


def tampered(cert: x509.Certificate) -> x509.Certificate:
    """The certificate with one bit of its signature (the last DER byte) flipped."""
    data = bytearray(der(cert))
    data[-1] ^= 0x01
    return x509.load_der_x509_certificate(bytes(data))


def subjects(checked: CheckedBundle) -> list[str]:
    return [cert.subject.rfc4514_string() for cert in checked.chain]


def known(item: devpki.Issued, ca_id: str = "ca_existing") -> KnownCertificate:
    cert = item.cert
    return KnownCertificate(
        ca_id, cert.subject.rfc4514_string(), sha256_fingerprint(cert), spki_sha256(cert)
    )


# --- accepted uploads and their order ------------------------------------------------------


def test_intermediate_first_is_kept_without_notice(
    root: devpki.Issued, inter: devpki.Issued, now: dt.datetime
) -> None:
    checked = check([inter, root], now)
    assert checked.chain == [inter.cert, root.cert]
    assert checked.top == root.cert
    assert checked.notices == []
    assert checked.reordered is False
    assert [b.index for b in checked.blocks] == [1, 2]


def test_root_first_is_reordered_with_a_notice(
    root: devpki.Issued, inter: devpki.Issued, now: dt.datetime
) -> None:
    checked = check([root, inter], now)
    assert checked.chain == [inter.cert, root.cert]
    assert checked.reordered is True
    [notice] = checked.notices
    assert notice.code is ReasonCode.CHAIN_OUT_OF_ORDER
    assert "block 2 (CN=Bundle Intermediate CA" in notice.detail
    assert notice.to_dict()["code"] == "CHAIN_OUT_OF_ORDER"


def test_any_order_of_three_gives_one_chain(now: dt.datetime) -> None:
    top = devpki.ca("Three Root", path_length=2)
    mid = devpki.ca("Three Policy CA", top, path_length=1)
    low = devpki.ca("Three Issuing CA", mid, path_length=0)
    for order in itertools.permutations([low, mid, top]):
        checked = check(list(order), now)
        assert checked.chain == [low.cert, mid.cert, top.cert]
        assert checked.reordered is (list(order) != [low, mid, top])


def test_single_root(root: devpki.Issued, now: dt.datetime) -> None:
    checked = check([root], now)
    assert checked.chain == [root.cert]
    assert checked.notices == []


def test_intermediate_only_is_a_partial_chain(inter: devpki.Issued, now: dt.datetime) -> None:
    checked = check([inter], now)
    assert checked.top == inter.cert
    assert checked.notices == []


def test_repeated_certificate_is_deduplicated(
    root: devpki.Issued, inter: devpki.Issued, now: dt.datetime
) -> None:
    checked = check([inter, root, inter, root], now)
    assert checked.chain == [inter.cert, root.cert]
    assert checked.reordered is False


def test_pem_order_survives_a_der_round_trip(
    root: devpki.Issued, inter: devpki.Issued, now: dt.datetime
) -> None:
    text = devpki.pem_bundle([root, inter])
    certs = x509.load_pem_x509_certificates(text)
    assert check_bundle(certs, now=now).chain == [inter.cert, root.cert]


# --- not a CA ------------------------------------------------------------------------------


def test_leaf_certificate_is_not_a_ca(
    root: devpki.Issued, inter: devpki.Issued, now: dt.datetime
) -> None:
    leaf = devpki.issue("device.example", inter)
    error = rejected([inter, leaf, root], now)
    assert error.reason is ReasonCode.NOT_A_CA
    assert error.detail.startswith("block 2 (CN=device.example,O=Certbound Dev, serial ")
    assert "CA:FALSE" in error.detail
    assert error.context == {"block": 2, "subject": "CN=device.example,O=Certbound Dev"}


def test_certificate_without_basic_constraints_is_not_a_ca(now: dt.datetime) -> None:
    cert = devpki.ca("No Constraints CA", basic_constraints=False)
    error = rejected([cert], now)
    assert error.reason is ReasonCode.NOT_A_CA
    assert "no basicConstraints" in error.detail


def test_non_critical_basic_constraints_is_refused(now: dt.datetime) -> None:
    extra = [(x509.BasicConstraints(ca=True, path_length=None), False)]
    cert = devpki.ca("Lax CA", basic_constraints=False, extra=extra)
    error = rejected([cert], now)
    assert error.reason is ReasonCode.NOT_A_CA
    assert "not marked critical" in error.detail


def test_ca_without_key_usage_is_refused(now: dt.datetime) -> None:
    key = devpki.make_key()
    name = devpki.dn("No Key Usage CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - DAY)
        .not_valid_after(now + 30 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    error = rejected([cert], now)
    assert error.reason is ReasonCode.NOT_A_CA
    assert "no keyUsage" in error.detail


def test_ca_without_key_cert_sign_is_not_a_ca(now: dt.datetime) -> None:
    usage = x509.KeyUsage(True, False, False, False, False, False, True, False, False)
    cert = devpki.ca("Signing Only CA", key_usage=usage)
    error = rejected([cert], now)
    assert error.reason is ReasonCode.NOT_A_CA
    assert "keyCertSign" in error.detail


# --- algorithms ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_kind", "words"),
    [("rsa1024", "1024 bits"), ("ed25519", "Ed25519"), ("p192", "secp192r1")],
)
def test_weak_key_is_rejected(key_kind: str, words: str, now: dt.datetime) -> None:
    weak = devpki.ca(f"Weak {key_kind} CA", key_kind=key_kind)
    error = rejected([weak], now)
    assert error.reason is ReasonCode.WEAK_ALGORITHM
    assert error.detail.startswith(f"block 1 (CN=Weak {key_kind} CA")
    assert words in error.detail


def test_weak_intermediate_names_its_block(root: devpki.Issued, now: dt.datetime) -> None:
    weak = devpki.ca("Weak Intermediate", root, key_kind="rsa1024")
    error = rejected([weak, root], now)
    assert error.reason is ReasonCode.WEAK_ALGORITHM
    assert error.context["block"] == 1


def sha1_root(directory: Path) -> x509.Certificate:
    """cryptography 48 refuses to sign with SHA-1, so OpenSSL makes this one."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a SHA-1 signed CA (cryptography refuses)")
    out = directory / "sha1.pem"
    args = [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha1", "-days", "30"]
    args += ["-keyout", str(directory / "sha1.key"), "-out", str(out)]
    args += ["-subj", "/O=Certbound Dev/CN=SHA1 Root CA"]
    args += ["-addext", "basicConstraints=critical,CA:TRUE"]
    args += ["-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    subprocess.run(
        args,
        check=True,
        capture_output=True,
    )
    return x509.load_pem_x509_certificate(out.read_bytes())


def test_sha1_signed_ca_is_rejected(tmp_path: Path, now: dt.datetime) -> None:
    cert = sha1_root(tmp_path)
    error = rejected([cert], now)
    assert error.reason is ReasonCode.WEAK_ALGORITHM
    assert "sha1" in error.detail.lower()


# --- chain links ---------------------------------------------------------------------------


def test_gap_between_intermediate_and_root(now: dt.datetime) -> None:
    top = devpki.ca("Gap Root")
    mid = devpki.ca("Gap Policy CA", top)
    low = devpki.ca("Gap Issuing CA", mid)
    error = rejected([low, top], now)
    assert error.reason is ReasonCode.CHAIN_SIGNATURE_INVALID
    assert error.context["block"] == 1
    assert "CN=Gap Policy CA,O=Certbound Dev, which is not in the bundle" in error.detail
    assert "gap" in error.detail


def test_intermediate_with_unrelated_root(inter: devpki.Issued, now: dt.datetime) -> None:
    other = devpki.ca("Unrelated Root")
    error = rejected([other, inter], now)
    assert error.reason is ReasonCode.CHAIN_SIGNATURE_INVALID
    assert error.context["block"] == 2


def test_two_unrelated_roots(root: devpki.Issued, now: dt.datetime) -> None:
    other = devpki.ca("Unrelated Root")
    error = rejected([root, other], now)
    assert error.reason is ReasonCode.CHAIN_SIGNATURE_INVALID
    assert "separate roots" in error.detail


def test_intermediate_with_same_dn_impostor_root(inter: devpki.Issued, now: dt.datetime) -> None:
    impostor = devpki.ca("Bundle Root CA")  # same DN as the real issuer, another key
    error = rejected([inter, impostor], now)
    assert error.reason is ReasonCode.CHAIN_SIGNATURE_INVALID
    assert error.context["block"] == 1
    assert error.context["issuer_blocks"] == [2]
    assert "does not verify its signature" in error.detail


def test_flipped_intermediate_signature(
    root: devpki.Issued, inter: devpki.Issued, now: dt.datetime
) -> None:
    error = rejected([tampered(inter.cert), root.cert], now)
    assert error.reason is ReasonCode.CHAIN_SIGNATURE_INVALID
    assert error.context["block"] == 1


def test_flipped_root_self_signature(
    root: devpki.Issued, inter: devpki.Issued, now: dt.datetime
) -> None:
    error = rejected([inter.cert, tampered(root.cert)], now)
    assert error.reason is ReasonCode.CHAIN_SIGNATURE_INVALID
    assert error.context["block"] == 2
    assert "self-issued" in error.detail


def test_root_issuing_two_intermediates(
    root: devpki.Issued, inter: devpki.Issued, inter2: devpki.Issued, now: dt.datetime
) -> None:
    error = rejected([inter, inter2, root], now)
    assert error.reason is ReasonCode.CHAIN_SIGNATURE_INVALID
    assert error.context["block"] == 3
    assert error.context["child_blocks"] == [1, 2]


def test_two_issuers_with_one_key(
    root: devpki.Issued, inter: devpki.Issued, now: dt.datetime
) -> None:
    reissued = devpki.issue(root.name, key=root.key, profile=CA_PROFILE)
    error = rejected([inter, root, reissued], now)
    assert error.reason is ReasonCode.CHAIN_SIGNATURE_INVALID
    assert error.context["issuer_blocks"] == [2, 3]


def test_cross_signed_loop(now: dt.datetime) -> None:
    a, b = devpki.ca("Loop A"), devpki.ca("Loop B")
    a_by_b = devpki.issue(a.name, b, key=a.key, profile=CA_PROFILE)
    b_by_a = devpki.issue(b.name, a, key=b.key, profile=CA_PROFILE)
    error = rejected([a_by_b, b_by_a], now)
    assert error.reason is ReasonCode.CHAIN_SIGNATURE_INVALID
    assert "loop" in error.detail


def test_too_many_certificates(now: dt.datetime) -> None:
    roots = [devpki.ca(f"Many {n}") for n in range(MAX_BUNDLE_CERTIFICATES + 1)]
    error = rejected(list(roots), now)
    assert error.reason is ReasonCode.CHAIN_TOO_COMPLEX


def test_empty_list(now: dt.datetime) -> None:
    assert rejected([], now).reason is ReasonCode.UPLOAD_EMPTY


# --- validity and path length --------------------------------------------------------------


def test_expired_ca(root: devpki.Issued, now: dt.datetime) -> None:
    old = devpki.ca("Old CA", root, not_before=now - 400 * DAY, not_after=now - DAY)
    error = rejected([old, root], now)
    assert error.reason is ReasonCode.CA_EXPIRED
    assert error.context["block"] == 1
    assert "expired at" in error.detail


def test_not_yet_valid_ca(now: dt.datetime) -> None:
    future = devpki.ca("Future CA", not_before=now + DAY, not_after=now + 400 * DAY)
    assert rejected([future], now).reason is ReasonCode.CA_NOT_YET_VALID


def test_expiring_soon_is_a_notice(now: dt.datetime) -> None:
    soon = devpki.ca("Soon CA", not_after=now + 30 * DAY)
    [notice] = check([soon], now).notices
    assert notice.code is ReasonCode.CA_EXPIRING_SOON
    assert "in 30 day(s)" in notice.detail
    assert check([soon], now, expiry_warning_days=10).notices == []


def test_not_expiring_soon(now: dt.datetime) -> None:
    later = devpki.ca("Later CA", not_after=now + 200 * DAY)
    assert check([later], now).notices == []


def test_path_length_exceeded(now: dt.datetime) -> None:
    top = devpki.ca("Short Root", path_length=0)
    below = devpki.ca("Too Deep CA", top)
    error = rejected([below, top], now)
    assert error.reason is ReasonCode.PATH_LENGTH_EXCEEDED
    assert error.context["block"] == 2
    assert "pathLenConstraint 0" in error.detail


def test_path_length_exceeded_in_the_middle(
    root: devpki.Issued, inter: devpki.Issued, now: dt.datetime
) -> None:
    deeper = devpki.ca("Below Path Zero", inter)
    error = rejected([deeper, inter, root], now)
    assert error.reason is ReasonCode.PATH_LENGTH_EXCEEDED
    assert error.context["block"] == 2


# --- against what is stored ----------------------------------------------------------------


def test_duplicate_of_stored_chain(
    root: devpki.Issued, inter: devpki.Issued, now: dt.datetime
) -> None:
    existing = [known(inter, "ca_1"), known(root, "ca_1")]
    error = rejected([inter, root], now, existing=existing)
    assert error.reason is ReasonCode.DUPLICATE_CA
    assert error.context["existing_ca_ids"] == ["ca_1"]
    assert "ca_1" in error.detail


def test_partly_stored_chain_is_accepted(
    root: devpki.Issued, inter: devpki.Issued, now: dt.datetime
) -> None:
    checked = check([inter, root], now, existing=[known(root, "ca_root")])
    assert checked.chain == [inter.cert, root.cert]
    assert checked.notices == []


def test_same_subject_other_key_conflicts(root: devpki.Issued, now: dt.datetime) -> None:
    impostor = devpki.ca("Bundle Root CA")
    error = rejected([impostor], now, existing=[known(root, "ca_real")])
    assert error.reason is ReasonCode.CA_SUBJECT_CONFLICT
    assert error.context["existing_ca_ids"] == ["ca_real"]
    assert "ca_real" in error.detail
    assert spki_sha256(impostor.cert) in error.detail


def test_same_subject_allowed_is_a_notice(root: devpki.Issued, now: dt.datetime) -> None:
    rollover = devpki.ca("Bundle Root CA")
    checked = check([rollover], now, existing=[known(root, "ca_real")], allow_same_subject=True)
    [notice] = checked.notices
    assert notice.code is ReasonCode.CA_SUBJECT_CONFLICT


def test_same_subject_same_key_is_no_conflict(root: devpki.Issued, now: dt.datetime) -> None:
    reissued = devpki.issue(root.name, key=root.key, profile=CA_PROFILE)
    assert check([reissued], now, existing=[known(root)]).notices == []
