"""Intake resolution: which chain a request presented, from which hop, and when headers count."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from certbound.errors import ReasonCode
from certbound.intake import chain
from certbound.intake.chain import IntakePath
from certbound.intake.proxies import TrustedProxies
from certbound.intake.resolve import Intake
from certbound.pki import devpki

PKI = devpki.build_dev_pki()
GOOD = PKI.devices["good"].cert
GOOD_DER = GOOD.public_bytes(Encoding.DER)
GOOD_SF = f":{base64.b64encode(GOOD_DER).decode()}:"


def tcp(host: str = "127.0.0.1", port: int = 50000, **extra: Any) -> dict[str, Any]:
    return {"client": (host, port), "server": ("127.0.0.1", 8080), "extensions": {}, **extra}


def unix() -> dict[str, Any]:
    return {"client": None, "server": ("/run/certbound.sock", None), "extensions": {}}


def tls_scope(certificates: tuple[bytes, ...]) -> dict[str, Any]:
    extension = {
        chain.CHAIN_DER: certificates,
        chain.VERIFY_ERRORS: ((20, 0, "unable to get local issuer certificate"),),
        chain.VERSION_NAME: "TLSv1.3",
        chain.CIPHER_NAME: "TLS_AES_128_GCM_SHA256",
    }
    return tcp(extensions={chain.TLS_EXTENSION: extension})


def intake(*proxies: str, header: str = "rfc9440") -> Intake:
    return Intake(TrustedProxies.parse(proxies), header)


def test_tls_listener_chain_is_presented_with_handshake_facts() -> None:
    got = intake().presented(tls_scope((GOOD_DER,)), {})
    assert got.path is IntakePath.TLS and got.listener == "tls"
    assert got.certificates == (GOOD_DER,) and got.trusted_hop and got.problem is None
    assert got.tls is not None and got.tls.version == "TLSv1.3"
    assert got.tls.handshake_errors[0].code == 20
    assert got.peer == "127.0.0.1:50000"


def test_headers_never_count_on_the_tls_listener() -> None:
    headers = {"client-cert": GOOD_SF}
    with_cert = intake("127.0.0.1/32").presented(tls_scope((GOOD_DER,)), headers)
    assert with_cert.certificates == (GOOD_DER,) and with_cert.problem is None
    assert with_cert.ignored_headers == ("client-cert",)
    without = intake("127.0.0.1/32").presented(tls_scope(()), headers)
    assert without.certificates == () and without.problem is ReasonCode.UNTRUSTED_PROXY_HEADER


def test_trusted_proxy_header_is_read() -> None:
    got = intake("127.0.0.1/32").presented(tcp(), {"client-cert": GOOD_SF})
    assert got.path is IntakePath.PROXY and got.listener == "http"
    assert got.certificates == (GOOD_DER,) and got.trusted_hop and got.header_format == "rfc9440"


@pytest.mark.parametrize("peer", ["10.1.2.3", "::1", "127.0.0.2"])
def test_header_from_an_untrusted_peer_is_refused(peer: str) -> None:
    headers = {"client-cert": GOOD_SF, "x-forwarded-for": "127.0.0.1"}
    got = intake("127.0.0.1/32").presented(tcp(peer), headers)
    assert got.certificates == () and not got.trusted_hop
    assert got.problem is ReasonCode.UNTRUSTED_PROXY_HEADER
    assert got.ignored_headers == ("client-cert",)


def test_any_format_header_from_an_untrusted_peer_is_flagged() -> None:
    got = intake(header="nginx").presented(tcp(), {"x-forwarded-client-cert": "Hash=00"})
    assert got.problem is ReasonCode.UNTRUSTED_PROXY_HEADER


def test_untrusted_peer_without_headers_has_no_problem() -> None:
    got = intake().presented(tcp(), {"user-agent": "curl"})
    assert got.path is IntakePath.NONE and got.problem is None and got.certificates == ()


def test_unix_socket_peer_is_trusted_only_when_listed() -> None:
    headers = {"client-cert": GOOD_SF}
    assert intake("unix").presented(unix(), headers).certificates == (GOOD_DER,)
    refused = intake("127.0.0.1/32").presented(unix(), headers)
    assert refused.problem is ReasonCode.UNTRUSTED_PROXY_HEADER


def test_other_formats_headers_from_a_trusted_proxy_are_ignored() -> None:
    headers = {"client-cert": GOOD_SF, "x-ssl-client-cert": "garbage"}
    got = intake("127.0.0.1/32").presented(tcp(), headers)
    assert got.certificates == (GOOD_DER,) and got.ignored_headers == ("x-ssl-client-cert",)


def test_malformed_header_from_a_trusted_proxy() -> None:
    got = intake("127.0.0.1/32").presented(tcp(), {"client-cert": ":not base64!:"})
    assert got.problem is ReasonCode.PROXY_HEADER_MALFORMED and got.certificates == ()


def test_nginx_verdict_is_recorded() -> None:
    pem = GOOD.public_bytes(Encoding.PEM).decode()
    escaped = pem.replace("\n", "%0A").replace(" ", "%20").replace("+", "%2B")
    headers = {"x-ssl-client-cert": escaped, "x-ssl-client-verify": "FAILED:certificate expired"}
    got = intake("127.0.0.1/32", header="nginx").presented(tcp(), headers)
    assert got.certificates == (GOOD_DER,)
    assert got.proxy_verdict == "FAILED:certificate expired"


def test_client_address_uses_forwarded_for_only_behind_a_trusted_proxy() -> None:
    headers = {"x-forwarded-for": "203.0.113.9, 198.51.100.7"}
    trusted = intake("127.0.0.1/32")
    presented = trusted.presented(tcp(), headers)
    assert trusted.client_address(tcp(), headers, presented) == "198.51.100.7"
    untrusted = intake()
    presented = untrusted.presented(tcp(), headers)
    assert untrusted.client_address(tcp(), headers, presented) == "127.0.0.1"


def test_certificate_headers_are_spotted_in_the_raw_scope() -> None:
    scope = tcp(
        "10.1.2.3", headers=[(b"Client-Cert", GOOD_SF.encode()), (b"x-ssl-client-cert", b"")]
    )
    got = intake("127.0.0.1/32").presented(scope, {"client-cert": GOOD_SF})
    assert got.problem is ReasonCode.UNTRUSTED_PROXY_HEADER
    assert got.ignored_headers == ("client-cert",)  # an empty header is no attempt
