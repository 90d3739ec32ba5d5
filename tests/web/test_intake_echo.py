"""``GET /api/v1/intake/echo`` on the plain-HTTP listener: trusted-proxy headers, spoofed
headers from untrusted peers, malformed and oversized headers; over a real uvicorn server
on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import dataclasses
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from certbound.clock import FixedClock
from certbound.config import Settings
from certbound.pki import devpki
from certbound.pki.revocation_policy import Mode, RevocationPolicy
from certbound.pki.truststore import TrustStore
from certbound.storage.database import Database
from certbound.web.app import create_app

PKI = devpki.build_dev_pki()


def sf(name: str) -> str:
    return ":" + base64.b64encode(PKI.devices[name].cert.public_bytes(Encoding.DER)).decode() + ":"


@pytest.fixture
def serve(
    settings: Settings, database: Database, clock: FixedClock, live: Callable[..., Any]
) -> Callable[..., str]:
    """Start the app with ``trusted_proxies`` and return its base URL."""
    store = TrustStore(database, clock)
    off = RevocationPolicy(mode=Mode.OFF)
    store.add(devpki.pem_bundle([PKI.intermediate, PKI.root]), "dev", revocation=off)

    def start(*trusted: str) -> str:
        app = create_app(
            dataclasses.replace(settings, trusted_proxies=trusted), database=database, clock=clock
        )
        return live(app, proxy_headers=False).url

    return start


def echo(url: str, headers: dict[str, str]) -> dict[str, Any]:
    response = httpx.get(f"{url}/api/v1/intake/echo", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


def test_trusted_proxy_header_is_verified(serve: Callable[..., str]) -> None:
    body = echo(serve("127.0.0.1/32"), {"Client-Cert": sf("good")})
    assert body["verified"] is True and body["verdict"] == "ALLOW"
    assert body["intake"]["path"] == "proxy" and body["intake"]["trustedHop"] is True
    assert body["device"]["user"] == devpki.GOOD_DEVICE_USER


@pytest.mark.parametrize(("name", "reason"), [("expired", "CERTIFICATE_EXPIRED"),
                                               ("foreign", "UNKNOWN_CA")])  # fmt: skip
def test_trusted_proxy_bad_device(serve: Callable[..., str], name: str, reason: str) -> None:
    body = echo(serve("127.0.0.1/32"), {"Client-Cert": sf(name)})
    assert body["reason"] == reason and body["layer"] == "certificate"


def test_spoofed_header_from_an_untrusted_peer(serve: Callable[..., str]) -> None:
    url = serve("10.255.255.0/24")
    body = echo(url, {"Client-Cert": sf("good"), "X-Forwarded-For": "10.255.255.1"})
    assert body["verified"] is False and body["reason"] == "UNTRUSTED_PROXY_HEADER"
    assert body["intake"]["trustedHop"] is False and body["chain"] == []


def test_no_header_is_no_certificate(serve: Callable[..., str]) -> None:
    body = echo(serve("127.0.0.1/32"), {})
    assert body["reason"] == "NO_CLIENT_CERTIFICATE" and body["layer"] == "intake"


@pytest.mark.parametrize(
    "value",
    [":not base64!:", ":" + base64.b64encode(b"\x30\x03\x02\x01\x01").decode() + ":",
     ":" + base64.b64encode(b"x" * 60_000).decode() + ":"],
)  # fmt: skip
def test_garbage_headers_get_a_reason_never_a_500(serve: Callable[..., str], value: str) -> None:
    body = echo(serve("127.0.0.1/32"), {"Client-Cert": value})
    assert body["verified"] is False
    assert body["reason"] in {"PROXY_HEADER_MALFORMED", "MALFORMED_CERTIFICATE"}


def test_a_huge_header_is_refused_without_a_500(serve: Callable[..., str]) -> None:
    url = serve("127.0.0.1/32")
    host, port = url.removeprefix("http://").split(":")
    request = (
        b"GET /api/v1/intake/echo HTTP/1.1\r\nHost: x\r\nClient-Cert: :"
        + b"A" * 4_000_000
        + b":\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        try:
            sock.sendall(request)
            answer = sock.recv(4096)
        except (ConnectionResetError, BrokenPipeError):
            answer = b""
    assert not answer.startswith(b"HTTP/1.1 5"), answer[:200]
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
