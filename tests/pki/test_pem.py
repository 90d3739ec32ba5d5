"""PEM/DER intake: splitting, loading, and the reason code (and place) of every bad upload."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certbound.errors import CertboundError, ReasonCode
from certbound.pki import devpki
from certbound.pki.pem import MAX_BUNDLE_BYTES, load_certificates, read_blocks, split_pem

PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER


@pytest.fixture(scope="module")
def root() -> devpki.Issued:
    return devpki.ca("PEM Test Root CA")


@pytest.fixture(scope="module")
def inter(root: devpki.Issued) -> devpki.Issued:
    return devpki.ca("PEM Test Intermediate CA", root, path_length=0)


@pytest.fixture(scope="module")
def leaf(inter: devpki.Issued) -> devpki.Issued:
    return devpki.issue("device.pem.test", inter)


@pytest.fixture(scope="module")
def bundle(inter: devpki.Issued, root: devpki.Issued) -> bytes:
    return devpki.pem_bundle([inter, root])


def fails(data: bytes, reason: ReasonCode) -> CertboundError:
    with pytest.raises(CertboundError) as info:
        load_certificates(data)
    assert info.value.reason is reason, str(info.value)
    return info.value


def pkcs8(key: devpki.PrivateKey, encoding: serialization.Encoding) -> bytes:
    return key.private_bytes(
        encoding, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def csr(key: ec.EllipticCurvePrivateKey) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(devpki.dn("csr.test"))
    return builder.sign(key, hashes.SHA256())


def crl(issuer: devpki.Issued) -> x509.CertificateRevocationList:
    return devpki.make_crl(issuer, [12345], dt.datetime.now(dt.UTC))


# --- accepted input ---------------------------------------------------------------------


def test_single_pem(leaf: devpki.Issued) -> None:
    assert load_certificates(leaf.cert_pem()) == [leaf.cert]


def test_bundle_keeps_file_order(bundle: bytes, inter: devpki.Issued, root: devpki.Issued) -> None:
    assert load_certificates(bundle) == [inter.cert, root.cert]
    blocks = read_blocks(bundle)
    assert [(b.index, b.label) for b in blocks] == [(1, "CERTIFICATE"), (2, "CERTIFICATE")]
    assert blocks[0].line == 1
    assert blocks[1].line == inter.cert_pem().count(b"\n") + 1
    assert blocks[0].der == inter.cert.public_bytes(DER)
    assert blocks[1].where == f"block 2 (line {blocks[1].line})"


def test_der_file(root: devpki.Issued) -> None:
    der = root.cert.public_bytes(DER)
    assert load_certificates(der) == [root.cert]
    [block] = read_blocks(der)
    assert (block.line, block.where) == (0, "the DER file")


def test_text_between_blocks_is_ignored(inter: devpki.Issued, root: devpki.Issued) -> None:
    data = (
        b"Bag Attributes\n    friendlyName: intermediate\n"
        b"subject=O=Certbound Dev, CN=PEM Test Intermediate CA\n"
        + inter.cert_pem()
        + b"\n# a comment, then the root\nissuer=CN=PEM Test Root CA\n\n"
        + root.cert_pem()
        + b"trailing words\n"
    )
    assert load_certificates(data) == [inter.cert, root.cert]
    assert read_blocks(data)[0].line == 4


def test_non_ascii_text_between_blocks_is_ignored(bundle: bytes, root: devpki.Issued) -> None:
    # curl's cacert.pem has comments like this one (UTF-8), so do Windows exports (Latin-1).
    data = (
        "# NetLock Arany (Class Gold) Főtanúsítvány\n".encode() + bundle + "é\n".encode("latin-1")
    )
    assert load_certificates(data)[1] == root.cert


def test_text_starting_with_zero_is_not_taken_for_der(bundle: bytes, inter: devpki.Issued) -> None:
    # A pasted `openssl s_client -showcerts` listing starts with "0" (0x30, the DER tag).
    data = b"0 s:CN=PEM Test Intermediate CA\n" + bundle
    assert load_certificates(data)[0] == inter.cert


def test_crlf_line_endings(bundle: bytes, inter: devpki.Issued, root: devpki.Issued) -> None:
    data = bundle.replace(b"\n", b"\r\n")
    assert load_certificates(data) == [inter.cert, root.cert]
    assert [b.line for b in read_blocks(data)] == [b.line for b in read_blocks(bundle)]


def test_indented_and_unwrapped_base64(root: devpki.Issued) -> None:
    body = "".join(root.cert_pem().decode().splitlines()[1:-1])
    data = f"  -----BEGIN CERTIFICATE-----\n{body}\n  -----END CERTIFICATE-----  \n".encode()
    assert load_certificates(data) == [root.cert]


def test_split_pem_returns_every_block_without_judging(
    leaf: devpki.Issued, inter: devpki.Issued
) -> None:
    request = csr(ec.generate_private_key(ec.SECP256R1())).public_bytes(PEM).decode()
    blocks = split_pem(leaf.cert_pem().decode() + request)
    assert [b.label for b in blocks] == ["CERTIFICATE", "CERTIFICATE REQUEST"]


# --- malformed PEM ----------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"hello, world\n", b"MIIB" * 40, b"0"])
def test_garbage(data: bytes) -> None:
    fails(data, ReasonCode.PEM_MALFORMED)


def test_text_without_blocks_says_so() -> None:
    error = fails(b"just some notes\n", ReasonCode.PEM_MALFORMED)
    assert "no PEM block" in error.detail


def test_truncated_names_block_and_line(bundle: bytes, inter: devpki.Issued) -> None:
    cut = bundle[: bundle.rindex(b"-----END")]
    error = fails(cut, ReasonCode.PEM_MALFORMED)
    root_line = inter.cert_pem().count(b"\n") + 1
    assert error.context == {"block": 2, "line": root_line}
    assert f"block 2 (line {root_line}, CERTIFICATE) has no END line" in error.detail


def test_block_cut_off_before_the_next_begin(
    bundle: bytes, inter: devpki.Issued, root: devpki.Issued
) -> None:
    first = inter.cert_pem()
    cut = first[: first.index(b"-----END")] + root.cert_pem()
    error = fails(cut, ReasonCode.PEM_MALFORMED)
    assert error.context == {"block": 1, "line": 1}
    assert "no END line before line" in error.detail


def test_missing_begin_line_is_not_silently_dropped(bundle: bytes) -> None:
    lines = bundle.split(b"\n")
    root_begin = lines.index(b"-----BEGIN CERTIFICATE-----", 1)
    cut = b"\n".join(lines[:root_begin] + lines[root_begin + 1 :])
    error = fails(cut, ReasonCode.PEM_MALFORMED)
    assert error.context["block"] == 2
    assert "never began" in error.detail


def test_files_joined_without_newline(inter: devpki.Issued, root: devpki.Issued) -> None:
    data = inter.cert_pem().rstrip(b"\n") + root.cert_pem()
    error = fails(data, ReasonCode.PEM_MALFORMED)
    assert error.context["line"] == inter.cert_pem().count(b"\n")
    assert "without a newline" in error.detail


def test_bad_base64(root: devpki.Issued) -> None:
    lines = root.cert_pem().split(b"\n")
    lines[3] = lines[3][:10] + b"!*" + lines[3][12:]
    error = fails(b"\n".join(lines), ReasonCode.PEM_MALFORMED)
    assert "not valid base64" in error.detail
    assert error.context == {"block": 1, "line": 1}


def test_base64_with_missing_characters(root: devpki.Issued) -> None:
    lines = root.cert_pem().split(b"\n")
    lines[2] = lines[2][:-1]
    fails(b"\n".join(lines), ReasonCode.PEM_MALFORMED)


def test_empty_block() -> None:
    error = fails(
        b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n", ReasonCode.PEM_MALFORMED
    )
    assert "empty" in error.detail


def test_valid_base64_that_is_not_a_certificate() -> None:
    data = b"-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n"
    error = fails(data, ReasonCode.PEM_MALFORMED)
    assert "not a valid X.509 certificate" in error.detail


def test_begin_end_label_mismatch(inter: devpki.Issued, root: devpki.Issued) -> None:
    broken = root.cert_pem().replace(b"-----END CERTIFICATE-----", b"-----END X509 CRL-----")
    error = fails(inter.cert_pem() + broken, ReasonCode.PEM_MALFORMED)
    assert "begins as CERTIFICATE but ends as X509 CRL" in error.detail
    assert error.context["block"] == 2


def test_non_ascii_binary_that_is_not_der() -> None:
    error = fails(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", ReasonCode.PEM_MALFORMED)
    assert "neither PEM text nor DER" in error.detail
    assert "offset 0" in error.detail


def test_non_ascii_inside_a_block(root: devpki.Issued) -> None:
    lines = root.cert_pem().split(b"\n")
    lines[2] = "é".encode() + lines[2][2:]
    fails(b"\n".join(lines), ReasonCode.PEM_MALFORMED)


def test_der_lookalike_that_is_not_der() -> None:
    error = fails(b"\x30\x82\x01\x00" + b"\xff" * 20, ReasonCode.PEM_MALFORMED)
    assert "the DER file" in error.detail


# --- private keys: refused first, wherever they are -------------------------------------


def test_pkcs8_private_key_in_bundle(bundle: bytes, leaf: devpki.Issued) -> None:
    error = fails(bundle + leaf.key_pem(), ReasonCode.PRIVATE_KEY_IN_UPLOAD)
    assert error.context["block"] == 3
    assert "PRIVATE KEY" in error.detail


def test_ec_private_key_first_in_bundle(bundle: bytes) -> None:
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    assert key.startswith(b"-----BEGIN EC PRIVATE KEY-----")
    error = fails(key + bundle, ReasonCode.PRIVATE_KEY_IN_UPLOAD)
    assert error.context == {"block": 1, "line": 1}
    assert "EC PRIVATE KEY" in error.detail


def test_encrypted_private_key(bundle: bytes) -> None:
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )
    fails(bundle + key, ReasonCode.PRIVATE_KEY_IN_UPLOAD)


def test_private_key_wins_over_a_later_malformed_block(bundle: bytes, leaf: devpki.Issued) -> None:
    data = bundle + leaf.key_pem() + b"-----BEGIN CERTIFICATE-----\nMIIB\n"
    fails(data, ReasonCode.PRIVATE_KEY_IN_UPLOAD)


def test_private_key_wins_over_an_earlier_malformed_block(leaf: devpki.Issued) -> None:
    data = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n" + leaf.key_pem()
    error = fails(data, ReasonCode.PRIVATE_KEY_IN_UPLOAD)
    assert error.context == {"block": 2, "line": 4}


def test_truncated_private_key(bundle: bytes, leaf: devpki.Issued) -> None:
    fails(bundle + leaf.key_pem()[:80], ReasonCode.PRIVATE_KEY_IN_UPLOAD)


def test_read_blocks_refuses_keys_only_when_asked(bundle: bytes, leaf: devpki.Issued) -> None:
    # A client's own cert+key file is split as is (verify skips the key); uploads refuse it.
    labels = [b.label for b in read_blocks(leaf.cert_pem() + leaf.key_pem())]
    assert labels == ["CERTIFICATE", "PRIVATE KEY"]
    with pytest.raises(CertboundError) as info:
        read_blocks(leaf.key_pem() + bundle, refuse_private_keys=True)
    assert info.value.reason is ReasonCode.PRIVATE_KEY_IN_UPLOAD


def test_der_private_key(leaf: devpki.Issued) -> None:
    error = fails(pkcs8(leaf.key, DER), ReasonCode.PRIVATE_KEY_IN_UPLOAD)
    assert "private key" in error.detail


def test_der_traditional_ec_private_key() -> None:
    der = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    fails(der, ReasonCode.PRIVATE_KEY_IN_UPLOAD)


def test_der_encrypted_private_key() -> None:
    der = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        DER, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )
    fails(der, ReasonCode.PRIVATE_KEY_IN_UPLOAD)


def test_der_private_key_of_unsupported_type_does_not_crash() -> None:
    # A PKCS#8 key whose algorithm OID (1.3.1.1) no library knows.
    der = bytes.fromhex("302e020100300506032b010104220420") + bytes(range(32))
    fails(der, ReasonCode.PRIVATE_KEY_IN_UPLOAD)


# --- other objects ----------------------------------------------------------------------


def test_csr_pem(bundle: bytes) -> None:
    request = csr(ec.generate_private_key(ec.SECP256R1())).public_bytes(PEM)
    error = fails(bundle + request, ReasonCode.NOT_A_CERTIFICATE)
    assert "certificate signing request" in error.detail
    assert error.context["block"] == 3


def test_csr_der() -> None:
    request = csr(ec.generate_private_key(ec.SECP256R1())).public_bytes(DER)
    fails(request, ReasonCode.NOT_A_CERTIFICATE)


def test_crl_pem(inter: devpki.Issued) -> None:
    error = fails(crl(inter).public_bytes(PEM), ReasonCode.NOT_A_CERTIFICATE)
    assert "X509 CRL" in error.detail


def test_crl_der(inter: devpki.Issued) -> None:
    fails(crl(inter).public_bytes(DER), ReasonCode.NOT_A_CERTIFICATE)


def test_public_key_pem(leaf: devpki.Issued) -> None:
    public = leaf.key.public_key().public_bytes(
        PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fails(public, ReasonCode.NOT_A_CERTIFICATE)


# --- size -------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"   \n\t\r\n  ", b"\n"])
def test_empty_or_whitespace(data: bytes) -> None:
    fails(data, ReasonCode.UPLOAD_EMPTY)


def test_twenty_megabytes(bundle: bytes) -> None:
    error = fails(bundle * (20 * 1024 * 1024 // len(bundle) + 1), ReasonCode.UPLOAD_TOO_LARGE)
    assert f"{MAX_BUNDLE_BYTES:,}" in error.detail


def test_limit_is_inclusive(root: devpki.Issued) -> None:
    pem = root.cert_pem()
    padding = b"#" * (MAX_BUNDLE_BYTES - len(pem) - 1) + b"\n"
    assert load_certificates(padding + pem) == [root.cert]
    fails(b"#" + padding + pem, ReasonCode.UPLOAD_TOO_LARGE)
