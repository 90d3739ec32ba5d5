"""Proxy certificate headers: every format decodes what its proxy sends, and hostile values
fail with PROXY_HEADER_MALFORMED naming the header, never with another exception."""

from __future__ import annotations

import base64
import hashlib
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers

from certbound.errors import ReasonCode
from certbound.intake.proxy import (
    CERTIFICATE_HEADERS,
    FORMATS,
    MAX_CERTIFICATES,
    MAX_HEADER_CHARS,
    HeaderError,
    HeaderFormat,
    ProxyCertificate,
    headers_present,
    read,
)
from certbound.pki import devpki

PKI = devpki.build_dev_pki()
LEAF = PKI.devices["good"]
LEAF_DER = LEAF.cert.public_bytes(Encoding.DER)
INTER_DER = PKI.intermediate.cert.public_bytes(Encoding.DER)
ROOT_DER = PKI.root.cert.public_bytes(Encoding.DER)
KEY_PEM = LEAF.key_pem().decode()

NGINX, HAPROXY, ENVOY, RFC9440 = (FORMATS[n] for n in ("nginx", "haproxy", "envoy", "rfc9440"))


# -- what each proxy sends (nginx: ngx_escape_uri component escaping, as $ssl_client_escaped_cert)


def pem(der: bytes, label: str = "CERTIFICATE") -> str:
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n"


def escaped(text: str) -> str:
    return urllib.parse.quote(text, safe="-_.~")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def xfcc(cert: bytes | None, chain: Sequence[bytes] = (), **extra: str) -> str:
    parts = [
        f"By=spiffe://certbound.test/envoy;Hash={hashlib.sha256(cert or chain[0]).hexdigest()}"
    ]
    if cert is not None:
        parts.append(f'Cert="{escaped(pem(cert))}"')
    if chain:
        parts.append(f'Chain="{escaped("".join(pem(d) for d in chain))}"')
    parts.append('Subject="CN=good.devices.certbound.test,O=Certbound Dev"')
    parts.extend(f"{key}={value}" for key, value in extra.items())
    return ";".join(parts)


def sf(der: bytes) -> str:
    return f":{b64(der)}:"


def fails(fmt: HeaderFormat, headers: Mapping[str, str], header: str, *words: str) -> HeaderError:
    with pytest.raises(HeaderError) as info:
        read(fmt, headers)
    error = info.value
    assert error.reason is ReasonCode.PROXY_HEADER_MALFORMED
    assert error.header == header and header in error.detail
    for word in words:
        assert word in error.detail, error.detail
    return error


# -- the table ---------------------------------------------------------------------------


def test_formats_and_the_headers_they_read() -> None:
    assert set(FORMATS) == {"nginx", "haproxy", "envoy", "rfc9440"}
    assert (NGINX.cert_header, NGINX.chain_header, NGINX.verdict_header) == (
        "x-ssl-client-cert",
        None,
        "x-ssl-client-verify",
    )
    assert (HAPROXY.cert_header, HAPROXY.chain_header, HAPROXY.verdict_header) == (
        "x-ssl-client-cert",
        "x-ssl-client-chain",
        "x-ssl-client-verify",
    )
    assert (ENVOY.cert_header, ENVOY.chain_header, ENVOY.verdict_header) == (
        "x-forwarded-client-cert",
        None,
        None,
    )
    assert (RFC9440.cert_header, RFC9440.chain_header) == ("client-cert", "client-cert-chain")
    assert {
        "x-ssl-client-cert",
        "x-ssl-client-chain",
        "x-ssl-client-verify",
        "x-forwarded-client-cert",
        "client-cert",
        "client-cert-chain",
    } == CERTIFICATE_HEADERS


def test_headers_present_lists_every_certificate_header_sent() -> None:
    headers = {"client-cert": "x", "x-forwarded-client-cert": "y", "x-forwarded-for": "1.2.3.4"}
    assert headers_present(headers) == ("client-cert", "x-forwarded-client-cert")
    assert headers_present({"host": "a"}) == ()


@pytest.mark.parametrize("fmt", list(FORMATS.values()), ids=list(FORMATS))
@pytest.mark.parametrize("value", [None, "", "  "])
def test_absent_or_empty_certificate_header_is_no_certificate(
    fmt: HeaderFormat, value: str | None
) -> None:
    headers = {"x-ssl-client-verify": "NONE"}
    if value is not None:
        headers[fmt.cert_header] = value
    assert read(fmt, headers) is None


# -- nginx ----------------------------------------------------------------------------------


def test_nginx_escaped_pem_of_the_leaf_and_its_verdict() -> None:
    headers = {"x-ssl-client-cert": escaped(pem(LEAF_DER)), "x-ssl-client-verify": "SUCCESS"}
    assert read(NGINX, headers) == ProxyCertificate((LEAF_DER,), "SUCCESS")
    failed = {**headers, "x-ssl-client-verify": "FAILED:certificate has expired"}
    assert read(NGINX, failed) == ProxyCertificate((LEAF_DER,), "FAILED:certificate has expired")


def test_nginx_pem_with_spaces_for_line_breaks_is_read() -> None:
    flat = pem(LEAF_DER).replace("\n", " ")
    assert read(NGINX, {"x-ssl-client-cert": escaped(flat)}) == ProxyCertificate((LEAF_DER,), None)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("%2D%2D%2D%zz", ("bad percent-escape", "offset 9")),
        (escaped(pem(LEAF_DER)) + "%4", ("bad percent-escape",)),
        ("%C3%A9", ("non-ASCII",)),
        (escaped("hello"), ("no PEM certificate",)),
        (escaped(pem(LEAF_DER)[:-30]), ("no END CERTIFICATE",)),
        (escaped("junk" + pem(LEAF_DER)), ("text outside a PEM block", "offset 0")),
        (escaped(pem(LEAF_DER) + "junk"), ("text outside a PEM block",)),
        (escaped(pem(LEAF_DER).replace("END CERTIFICATE", "END X509 CRL")), ("no END",)),
        (escaped(pem(LEAF_DER).replace("BEGIN", "END")), ("END CERTIFICATE line without",)),
        (escaped(pem(LEAF_DER).replace("M", "!", 1)), ("not valid base64",)),
        (escaped(pem(b"")), ("empty",)),
        (escaped(pem(LEAF_DER) + pem(INTER_DER)), ("holds 2 certificates", "leaf alone")),
    ],
)
def test_nginx_header_that_does_not_decode(value: str, words: tuple[str, ...]) -> None:
    fails(NGINX, {"x-ssl-client-cert": value}, "x-ssl-client-cert", *words)


def csr_pem() -> str:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(devpki.dn("csr.devices.certbound.test"))
        .sign(LEAF.key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize("where", ["alone", "after the certificate"])
@pytest.mark.parametrize("kind", ["private key", "csr"])
def test_non_certificate_pem_block_is_refused_without_echoing_it(kind: str, where: str) -> None:
    block = KEY_PEM if kind == "private key" else csr_pem()
    text = block if where == "alone" else pem(LEAF_DER) + block
    label = "PRIVATE KEY" if kind == "private key" else "CERTIFICATE REQUEST"
    error = fails(NGINX, {"x-ssl-client-cert": escaped(text)}, "x-ssl-client-cert", label)
    body = "".join(block.splitlines()[1:-1])
    assert not any(body[i : i + 16] in error.detail for i in range(0, len(body) - 16, 8))
    assert "not a CERTIFICATE" in error.detail


# -- HAProxy --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "chain", [(), (INTER_DER,), (INTER_DER, ROOT_DER)], ids=["leaf", "+inter", "+inter+root"]
)
def test_haproxy_base64_der_leaf_and_concatenated_chain(chain: tuple[bytes, ...]) -> None:
    headers = {
        "x-ssl-client-cert": b64(LEAF_DER),
        "x-ssl-client-chain": b64(b"".join(chain)),
        "x-ssl-client-verify": "0",
    }
    assert read(HAPROXY, headers) == ProxyCertificate((LEAF_DER, *chain), "0")


def test_haproxy_without_a_chain_header_is_the_leaf_alone() -> None:
    got = read(HAPROXY, {"x-ssl-client-cert": b64(LEAF_DER)})
    assert got == ProxyCertificate((LEAF_DER,), None)


def test_haproxy_leaf_is_handed_on_undecoded() -> None:
    # Not a certificate: that is the validator's call (MALFORMED_CERTIFICATE), not intake's.
    got = read(HAPROXY, {"x-ssl-client-cert": b64(b"\x01\x02not DER")})
    assert got is not None and got.certificates == (b"\x01\x02not DER",)


@pytest.mark.parametrize(
    ("header", "cert", "chain", "words"),
    [
        ("x-ssl-client-cert", "not base64!", "", ("the certificate is not valid base64",)),
        ("x-ssl-client-cert", b64(LEAF_DER) + "\n", "", ("not valid base64",)),
        ("x-ssl-client-chain", b64(LEAF_DER), "%%%", ("the chain is not valid base64",)),
        ("x-ssl-client-chain", b64(LEAF_DER), b64(INTER_DER[:-1]), ("byte 0", "truncated")),
        (
            "x-ssl-client-chain",
            b64(LEAF_DER),
            b64(INTER_DER + b"\x02\x01\x00"),
            (f"byte {len(INTER_DER)}", "tag 0x02"),
        ),
        ("x-ssl-client-chain", b64(LEAF_DER), b64(b"\x30\x80\x00\x00"), ("no definite length",)),
        ("x-ssl-client-chain", b64(LEAF_DER), b64(b"\x30\x85" + b"\x00" * 8), ("definite",)),
        ("x-ssl-client-chain", b64(LEAF_DER), b64(b"\x30\x82\x01"), ("truncated",)),
        ("x-ssl-client-chain", b64(LEAF_DER), b64(b"\x30"), ("truncated",)),
        (
            "x-ssl-client-chain",
            b64(LEAF_DER),
            b64(INTER_DER * (MAX_CERTIFICATES + 1)),
            ("over 16 certificates",),
        ),
        ("x-ssl-client-chain", b64(LEAF_DER), b64(INTER_DER * MAX_CERTIFICATES), ("17 cert",)),
    ],
)
def test_haproxy_header_that_does_not_decode(
    header: str, cert: str, chain: str, words: tuple[str, ...]
) -> None:
    headers = {"x-ssl-client-cert": cert, "x-ssl-client-chain": chain}
    fails(HAPROXY, headers, header, *words)


def test_haproxy_chain_of_fifteen_is_the_most_accepted() -> None:
    headers = {"x-ssl-client-cert": b64(LEAF_DER), "x-ssl-client-chain": b64(INTER_DER * 15)}
    got = read(HAPROXY, headers)
    assert got is not None and len(got.certificates) == MAX_CERTIFICATES == 16


def der_sequence(content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return b"\x30" + bytes([size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return b"\x30" + bytes([0x80 | len(length)]) + length + content


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=700), max_size=MAX_CERTIFICATES - 1))
def test_haproxy_chain_splits_every_der_length_form(contents: list[bytes]) -> None:
    # Short form (< 128 bytes), and one- and two-byte long forms, in any order.
    chain = [der_sequence(c) for c in contents]
    headers = {"x-ssl-client-cert": b64(LEAF_DER), "x-ssl-client-chain": b64(b"".join(chain))}
    assert read(HAPROXY, headers) == ProxyCertificate((LEAF_DER, *chain), None)


# -- Envoy XFCC ------------------------------------------------------------------------------


def test_envoy_cert_alone_is_the_leaf() -> None:
    got = read(ENVOY, {"x-forwarded-client-cert": xfcc(LEAF_DER)})
    assert got == ProxyCertificate((LEAF_DER,), None)


def test_envoy_chain_gives_the_full_chain_leaf_first() -> None:
    value = xfcc(LEAF_DER, [LEAF_DER, INTER_DER], URI="spiffe://x/y", DNS="good.test")
    got = read(ENVOY, {"x-forwarded-client-cert": value})
    assert got == ProxyCertificate((LEAF_DER, INTER_DER), None)
    chain_only = xfcc(None, [LEAF_DER, INTER_DER])
    got = read(ENVOY, {"x-forwarded-client-cert": chain_only})
    assert got is not None and got.certificates == (LEAF_DER, INTER_DER)


def test_envoy_last_element_is_the_one_that_counts() -> None:
    other = PKI.devices["foreign"].cert.public_bytes(Encoding.DER)
    value = f"{xfcc(other)},{xfcc(LEAF_DER)}"
    assert read(ENVOY, {"x-forwarded-client-cert": value}) == ProxyCertificate((LEAF_DER,), None)
    reversed_value = f"{xfcc(LEAF_DER)}, {xfcc(other)}"
    got = read(ENVOY, {"x-forwarded-client-cert": reversed_value})
    assert got is not None and got.certificates == (other,)


def test_envoy_header_lines_join_and_the_last_line_counts() -> None:
    other = PKI.devices["foreign"].cert.public_bytes(Encoding.DER)
    raw = [
        (b"x-forwarded-client-cert", xfcc(other).encode()),
        (b"x-forwarded-client-cert", xfcc(LEAF_DER).encode()),
    ]
    got = read(ENVOY, Headers(raw=raw))
    assert got is not None and got.certificates == (LEAF_DER,)


def test_envoy_quoted_values_may_hold_commas_semicolons_and_escaped_quotes() -> None:
    subject = 'Subject="CN=a\\"b\\", O=x;y=z, OU=\\\\"'
    value = f'{subject};{xfcc(LEAF_DER)};By="spiffe://a,b;c=d"'
    got = read(ENVOY, {"x-forwarded-client-cert": value})
    assert got is not None and got.certificates == (LEAF_DER,)


def test_envoy_hops_up_to_the_pair_bound_are_read() -> None:
    value = "By=a;Hash=0;Subject=x;URI=y," * 63 + xfcc(LEAF_DER)  # 4 pairs a hop: 256
    assert read(ENVOY, {"x-forwarded-client-cert": value}) == ProxyCertificate((LEAF_DER,), None)


def test_envoy_keys_are_case_insensitive() -> None:
    value = f'cert="{escaped(pem(LEAF_DER))}";HASH={hashlib.sha256(LEAF_DER).hexdigest().upper()}'
    assert read(ENVOY, {"x-forwarded-client-cert": value}) == ProxyCertificate((LEAF_DER,), None)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (f'Cert="{escaped(pem(LEAF_DER))}', ("Cert=", "never closes")),
        (f'Cert="{escaped(pem(LEAF_DER))}\\"', ("never closes",)),
        ("Hash=00;Subject=x", ("no Cert= or Chain=",)),
        ("garbage", ("expected Key=", "offset 0")),
        (f'Cert="{escaped(pem(LEAF_DER))}"x', ("unexpected character", "Cert=")),
        (f'Cert="{escaped(pem(LEAF_DER))}";;', ("expected Key=",)),
        (f"{xfcc(LEAF_DER)},", ("expected Key=",)),
        (xfcc(LEAF_DER).replace("Hash=", "Hash=00"), ("Hash=", "not the SHA-256")),
        (f'{xfcc(LEAF_DER)};Cert="{escaped(pem(INTER_DER))}"', ("2 Cert= keys",)),
        (xfcc(LEAF_DER, [INTER_DER, LEAF_DER]), ("does not start with the Cert=",)),
        (f'Cert="{escaped(pem(LEAF_DER) + pem(INTER_DER))}"', ("Cert= holds 2",)),
        (f'Cert="{escaped(KEY_PEM)}"', ("PRIVATE KEY", "not a CERTIFICATE")),
        ('Cert="%zz"', ("bad percent-escape",)),
        (f'Chain="{escaped(pem(LEAF_DER) * 17)}"', ("over 16 certificates",)),
        ("a=b;" * 256 + xfcc(LEAF_DER), ("over 256 Key=Value pairs",)),
        ("By=a;Hash=0;Subject=x;URI=y," * 64 + xfcc(LEAF_DER), ("over 256 Key=Value",)),
    ],
)
def test_envoy_header_that_does_not_decode(value: str, words: tuple[str, ...]) -> None:
    fails(ENVOY, {"x-forwarded-client-cert": value}, "x-forwarded-client-cert", *words)


# -- RFC 9440 ---------------------------------------------------------------------------------


def test_rfc9440_client_cert_and_chain() -> None:
    headers = {"client-cert": sf(LEAF_DER), "client-cert-chain": f"{sf(INTER_DER)}, {sf(ROOT_DER)}"}
    assert read(RFC9440, headers) == ProxyCertificate((LEAF_DER, INTER_DER, ROOT_DER), None)
    assert read(RFC9440, {"client-cert": sf(LEAF_DER)}) == ProxyCertificate((LEAF_DER,), None)


def test_rfc9440_parameters_whitespace_and_missing_padding_are_accepted() -> None:
    unpadded = f":{b64(LEAF_DER).rstrip('=')}:"
    headers = {"client-cert": f" {unpadded};a=1 ", "client-cert-chain": f"{sf(INTER_DER)};x"}
    assert read(RFC9440, headers) == ProxyCertificate((LEAF_DER, INTER_DER), None)


def test_rfc9440_chain_lines_join_as_one_list() -> None:
    raw = [
        (b"client-cert", sf(LEAF_DER).encode()),
        (b"client-cert-chain", sf(INTER_DER).encode()),
        (b"client-cert-chain", sf(ROOT_DER).encode()),
    ]
    got = read(RFC9440, Headers(raw=raw))
    assert got == ProxyCertificate((LEAF_DER, INTER_DER, ROOT_DER), None)


@pytest.mark.parametrize(
    ("cert", "chain", "header", "words"),
    [
        (b64(LEAF_DER), None, "client-cert", ("not an RFC 8941 byte sequence",)),
        (f'"{b64(LEAF_DER)}"', None, "client-cert", ("byte sequence",)),
        (":", None, "client-cert", ("byte sequence",)),
        ("::", None, "client-cert", ("empty",)),
        (":a:", None, "client-cert", ("not valid base64",)),
        (":!!!!:", None, "client-cert", ("not valid base64",)),
        (sf(LEAF_DER), f"{sf(INTER_DER)},", "client-cert-chain", ("list member 2",)),
        (sf(LEAF_DER), f"{sf(INTER_DER)},,{sf(ROOT_DER)}", "client-cert-chain", ("member 2",)),
        (sf(LEAF_DER), b64(INTER_DER), "client-cert-chain", ("list member 1",)),
        (sf(LEAF_DER), ",".join([sf(INTER_DER)] * 16), "client-cert-chain", ("16 list members",)),
    ],
)
def test_rfc9440_header_that_does_not_decode(
    cert: str, chain: str | None, header: str, words: tuple[str, ...]
) -> None:
    headers = {"client-cert": cert}
    if chain is not None:
        headers["client-cert-chain"] = chain
    fails(RFC9440, headers, header, *words)


# -- bounds shared by every format ---------------------------------------------------------


@pytest.mark.parametrize("fmt", list(FORMATS.values()), ids=list(FORMATS))
def test_a_header_over_64_kib_is_refused_before_decoding(fmt: HeaderFormat) -> None:
    value = "A" * (MAX_HEADER_CHARS + 1)
    error = fails(fmt, {fmt.cert_header: value}, fmt.cert_header, "65,537", "65,536")
    assert "A" * 32 not in error.detail


def test_a_chain_header_over_64_kib_is_refused() -> None:
    headers = {"x-ssl-client-cert": b64(LEAF_DER), "x-ssl-client-chain": "A" * 70_000}
    fails(HAPROXY, headers, "x-ssl-client-chain", "70,000")


def test_a_header_of_exactly_64_kib_is_read() -> None:
    chain = der_sequence(b"\x00" * (MAX_HEADER_CHARS // 4 * 3 - 4))
    headers = {"x-ssl-client-cert": b64(LEAF_DER), "x-ssl-client-chain": b64(chain)}
    assert len(headers["x-ssl-client-chain"]) == MAX_HEADER_CHARS
    got = read(HAPROXY, headers)
    assert got is not None and got.certificates == (LEAF_DER, chain)


@pytest.mark.parametrize("fmt", [NGINX, HAPROXY, RFC9440], ids=["nginx", "haproxy", "rfc9440"])
def test_a_repeated_certificate_header_is_refused(fmt: HeaderFormat) -> None:
    # A proxy that appends instead of replacing would pass the client's copy along.
    value = {"nginx": escaped(pem(LEAF_DER)), "haproxy": b64(LEAF_DER), "rfc9440": sf(LEAF_DER)}
    raw = [(fmt.cert_header.encode(), value[fmt.name].encode())] * 2
    fails(fmt, Headers(raw=raw), fmt.cert_header, "appears 2 times")


def test_a_verdict_longer_than_a_verdict_is_refused() -> None:
    headers = {"x-ssl-client-cert": escaped(pem(LEAF_DER)), "x-ssl-client-verify": "F" * 300}
    fails(NGINX, headers, "x-ssl-client-verify", "300 characters")


# -- properties: any input gives a result or HeaderError, and every encoding round-trips ------

# Fragments that mean something to one format or another, in any order, and any text.
TOKENS = [
    *'AZaz09+/=:;,"\\% \t\n',
    *("-----", "BEGIN ", "END ", "CERTIFICATE", "PRIVATE KEY", "%0a", "%zz", "%2", "0\x82"),
    *("Cert=", "Chain=", "Hash=", ":MIIB", "\x30\x81"),
]
HEADER_TEXT = st.lists(st.sampled_from(TOKENS), max_size=80).map("".join) | st.text(max_size=100)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(list(FORMATS)),
    cert=HEADER_TEXT,
    chain=st.none() | HEADER_TEXT,
    verdict=st.none() | st.text(max_size=20),
)
def test_any_header_value_reads_or_raises_header_error(
    name: str, cert: str, chain: str | None, verdict: str | None
) -> None:
    fmt = FORMATS[name]
    headers = {fmt.cert_header: cert}
    if chain is not None and fmt.chain_header:
        headers[fmt.chain_header] = chain
    if verdict is not None and fmt.verdict_header:
        headers[fmt.verdict_header] = verdict
    try:
        got = read(fmt, headers)
    except HeaderError as exc:
        assert exc.reason is ReasonCode.PROXY_HEADER_MALFORMED and exc.header in exc.detail
        return
    assert got is None or 1 <= len(got.certificates) <= MAX_CERTIFICATES


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=400), min_size=1, max_size=MAX_CERTIFICATES),
    st.text(alphabet=st.characters(codec="latin-1", exclude_characters='\r\n"'), max_size=40),
)
def test_every_format_round_trips_its_certificates(ders: list[bytes], subject: str) -> None:
    leaf, chain = ders[0], ders[1:]
    quoted_subject = subject.replace("\\", "\\\\").replace('"', '\\"')
    envoy_value = f'Subject="{quoted_subject}";{xfcc(None, ders)}'
    assert read(ENVOY, {"x-forwarded-client-cert": envoy_value}) == ProxyCertificate(
        tuple(ders), None
    )
    rfc = {"client-cert": sf(leaf), "client-cert-chain": ", ".join(sf(d) for d in chain)}
    assert read(RFC9440, rfc) == ProxyCertificate(tuple(ders), None)
    assert read(NGINX, {"x-ssl-client-cert": escaped(pem(leaf))}) == ProxyCertificate((leaf,), None)


# -- the deploy configs set exactly these headers, and clear every other one -------------------

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy"


def test_nginx_config_sets_its_headers_and_clears_every_other_certificate_header() -> None:
    text = (DEPLOY / "nginx.conf").read_text()
    found = re.findall(r"^\s*proxy_set_header\s+(\S+)\s+(.+);", text, re.MULTILINE)
    values = {name.lower(): value for name, value in found}
    assert values["x-ssl-client-cert"] == "$ssl_client_escaped_cert"
    assert values["x-ssl-client-verify"] == "$ssl_client_verify"
    cleared = {name for name, value in values.items() if value == '""'}
    own = {"x-ssl-client-cert", "x-ssl-client-verify"}
    assert cleared & CERTIFICATE_HEADERS == CERTIFICATE_HEADERS - own
    assert re.search(r"^\s*ssl_verify_client\s+optional_no_ca;", text, re.MULTILINE)
    assert re.search(r"^\s*error_page\s+495 496 = @certbound;", text, re.MULTILINE)


def test_haproxy_config_deletes_every_certificate_header_before_setting_its_own() -> None:
    text = (DEPLOY / "haproxy.cfg").read_text()
    lines = [line.strip() for line in text.splitlines()]
    deleted = [line.split()[2].lower() for line in lines if line.startswith("http-request del-")]
    assert set(deleted) == CERTIFICATE_HEADERS
    sets = {line.split()[2].lower(): i for i, line in enumerate(lines) if " set-header " in line}
    last_delete = max(i for i, line in enumerate(lines) if line.startswith("http-request del-"))
    assert min(sets[name] for name in CERTIFICATE_HEADERS if name in sets) > last_delete
    assert "%[ssl_c_der,base64]" in text and "%[ssl_c_chain_der,base64]" in text
    assert "verify optional crt-ignore-err all ca-ignore-err all" in text


def test_envoy_config_is_valid_yaml_with_sanitized_xfcc() -> None:
    config = yaml.safe_load((DEPLOY / "envoy.yaml").read_text())
    listener = config["static_resources"]["listeners"][0]
    chain = listener["filter_chains"][0]
    tls = chain["transport_socket"]["typed_config"]
    assert tls["require_client_certificate"] is False
    validation = tls["common_tls_context"]["validation_context"]
    assert validation["trust_chain_verification"] == "ACCEPT_UNTRUSTED"
    manager = chain["filters"][0]["typed_config"]
    assert manager["forward_client_cert_details"] == "SANITIZE_SET"
    details = manager["set_current_client_cert_details"]
    assert details["cert"] is True and details["chain"] is True
    removed = set(manager["route_config"]["request_headers_to_remove"])
    assert removed == CERTIFICATE_HEADERS - {ENVOY.cert_header}
    cluster = config["static_resources"]["clusters"][0]
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["pipe"]["path"].endswith(".sock")
