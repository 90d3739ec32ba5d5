"""Certbound behind the real HAProxy running docs/deploy/haproxy.cfg, with curl as the device:
every device's verdict arrives as base64 DER in X-SSL-Client-Cert, the rest of the chain the
client sent in X-SSL-Client-Chain (ssl_c_chain_der), spoofed certificate headers never
authenticate, and headers from a peer outside trusted_proxies are refused; on SQLite and
PostgreSQL (fixtures: tests/functional/conftest.py)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from typing import Any

import pytest

_SEARCH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
HAPROXY = shutil.which("haproxy", path=_SEARCH)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        HAPROXY is None or shutil.which("curl") is None,
        reason="haproxy or curl is not installed (apt-get install haproxy curl; CI installs them)",
    ),
]

Server = Any  # conftest.Certbound (a test module cannot import a conftest)


def start_haproxy(
    server: Server, daemon: Callable[..., Any], deploy_file: Callable[..., str]
) -> None:
    """Run docs/deploy/haproxy.cfg in front of ``server``, with the test's paths and port."""
    prefix = server.root / "haproxy"
    prefix.mkdir()
    crt = prefix / "server-with-key.pem"
    crt.write_text(
        (server.pki / "server.pem").read_text() + (server.pki / "server.key").read_text()
    )
    crt.chmod(0o600)
    listen = server.http_listen
    backend = f"unix@{listen.removeprefix('unix:')}" if listen.startswith("unix:") else listen
    cfg = deploy_file(
        "haproxy.cfg",
        [
            ("log /dev/log local0", "log stderr format raw local0 info"),
            ("    user haproxy\n", ""),  # the test's user runs it; no privileges to drop
            ("    group haproxy\n", ""),
            ("bind :443 ssl", f"bind 127.0.0.1:{server.proxy_port} ssl"),
            ("/etc/certbound/tls/server-with-key.pem", str(crt)),
            ("/etc/certbound/device-ca.pem", str(server.pki / "ca-chain.pem")),
            ("server certbound unix@/run/certbound/http.sock", f"server certbound {backend}"),
        ],
    )
    (prefix / "haproxy.cfg").write_text(cfg)
    argv = [HAPROXY, "-db", "-f", str(prefix / "haproxy.cfg")]
    daemon(argv, server.proxy_port, prefix / "console.log")


@pytest.fixture
def haproxy_tcp(
    behind_proxy: Callable[..., Server], daemon: Callable[..., Any], deploy_file: Any
) -> Server:
    """HAProxy -> Certbound on loopback TCP, trusted by CIDR."""
    server = behind_proxy("haproxy", unix=False, trusted_proxies=["127.0.0.1/32"])
    start_haproxy(server, daemon, deploy_file)
    return server


EXPECTED = {
    "good": None,
    "expired": "CERTIFICATE_EXPIRED",
    "foreign": "UNKNOWN_CA",
    "server-auth-only": "EKU_NOT_CLIENT_AUTH",
    "revoked": "REVOKED_CERTIFICATE",
    None: "NO_CLIENT_CERTIFICATE",
}
# ssl_c_verify: OpenSSL's verify result (X509_V_ERR_*), recorded only.
OPENSSL_VERIFY = {"good": "0", "expired": "10", "revoked": "0"}


def test_every_device_gets_its_verdict_through_haproxy(haproxy_tcp: Server) -> None:
    for device, reason in EXPECTED.items():
        body = haproxy_tcp.echo(device)
        intake = body["intake"]
        assert body["reason"] == reason, (device, body)
        assert body["verified"] is (reason is None), (device, body)
        assert body["verdict"] == ("ALLOW" if reason is None else "DENY")
        assert intake["listener"] == "http" and intake["trustedHop"] is True, intake
        assert intake["ignoredHeaders"] == [], intake
        if device is None:
            assert intake["path"] == "none" and intake["certificates"] == 0, intake
            continue
        assert intake["path"] == "proxy" and intake["headerFormat"] == "haproxy", intake
        assert intake["certificates"] == 1, intake  # curl sent the leaf alone
        assert body["chain"][0]["subjectDn"].startswith("CN=" + device), body["chain"]
        if device in OPENSSL_VERIFY:
            assert intake["proxyVerdict"] == OPENSSL_VERIFY[device], intake


@pytest.mark.parametrize("device", ["good", "expired", "server-auth-only"])
def test_the_chain_the_client_sent_arrives_in_x_ssl_client_chain(
    haproxy_tcp: Server, device: str
) -> None:
    body = haproxy_tcp.echo(device, with_chain=True)
    assert body["intake"]["certificates"] == 2, body["intake"]  # leaf + intermediate
    assert body["reason"] == EXPECTED[device], body
    event = haproxy_tcp.event(body["eventId"])
    assert event["deviceTrust"]["intake"]["certificates"] == 2
    assert event["deviceTrust"]["intake"]["headerFormat"] == "haproxy"


def spoofs(server: Server) -> list[str]:
    """curl -H arguments forging the good device's certificate in every format."""
    pem = (server.pki / "devices" / "good.pem").read_text()
    escaped = pem.replace("\n", "%0A").replace(" ", "%20").replace("+", "%2B")
    der_b64 = "".join(pem.strip().splitlines()[1:-1])
    inter_b64 = "".join((server.pki / "intermediate.pem").read_text().strip().splitlines()[1:-1])
    headers = [
        f"X-SSL-Client-Cert: {der_b64}",
        "X-SSL-Client-Verify: 0",
        f"X-SSL-Client-Chain: {inter_b64}",
        f'X-Forwarded-Client-Cert: Cert="{escaped}"',
        f"Client-Cert: :{der_b64}:",
        f"Client-Cert-Chain: :{inter_b64}:",
    ]
    return [arg for header in headers for arg in ("-H", header)]


def test_certificate_headers_a_client_sends_through_haproxy_never_count(
    haproxy_tcp: Server,
) -> None:
    forged = spoofs(haproxy_tcp)
    body = haproxy_tcp.echo(None, *forged)
    assert body["verified"] is False and body["reason"] == "NO_CLIENT_CERTIFICATE", body
    # HAProxy deleted every copy: Certbound saw none of them, not even the other formats'.
    assert body["intake"]["ignoredHeaders"] == [] and body["intake"]["certificates"] == 0
    assert body["intake"]["proxyVerdict"] is None
    expired = haproxy_tcp.echo("expired", *forged)
    assert expired["reason"] == "CERTIFICATE_EXPIRED" and expired["intake"]["certificates"] == 1
    assert expired["chain"][0]["subjectDn"].startswith("CN=expired")


def test_haproxy_over_tcp_is_refused_when_only_the_unix_socket_is_trusted(
    behind_proxy: Callable[..., Server], daemon: Callable[..., Any], deploy_file: Any
) -> None:
    server = behind_proxy("haproxy", unix=False, trusted_proxies=["unix"])
    start_haproxy(server, daemon, deploy_file)
    proxied = server.echo("good")
    assert proxied["verified"] is False and proxied["reason"] == "UNTRUSTED_PROXY_HEADER"
    assert proxied["intake"]["trustedHop"] is False
    direct = server.echo(None, *spoofs(server), "-H", "X-Forwarded-For: 127.0.0.1", direct=True)
    assert direct["reason"] == "UNTRUSTED_PROXY_HEADER" and direct["intake"]["certificates"] == 0
    assert {"x-ssl-client-cert", "client-cert"} <= set(direct["intake"]["ignoredHeaders"])
    event = server.event(direct["eventId"])
    assert event["outcome"]["reason"] == "UNTRUSTED_PROXY_HEADER"


def test_haproxy_over_the_unix_socket(
    behind_proxy: Callable[..., Server], daemon: Callable[..., Any], deploy_file: Any
) -> None:
    server = behind_proxy("haproxy", unix=True, trusted_proxies=["unix"])
    start_haproxy(server, daemon, deploy_file)
    body = server.echo("good", with_chain=True)
    assert body["verified"] is True and body["intake"]["trustedHop"] is True, body
    assert body["intake"]["certificates"] == 2


def bodies(output: str) -> list[dict[str, Any]]:
    """The JSON bodies curl printed back to back for several URLs."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    position = 0
    while position < len(output):
        body, position = decoder.raw_decode(output, position)
        found.append(body)
    return found


def test_a_resumed_tls_session_still_verifies(haproxy_tcp: Server) -> None:
    # Two URLs, "Connection: close": curl resumes the TLS session for the second. HAProxy
    # 2.6 then sends the leaf but an empty ssl_c_chain_der; the trust store has the
    # intermediate, so the verdict does not change.
    second = haproxy_tcp.proxy_url + "/api/v1/intake/echo"
    done = haproxy_tcp.curl("good", "-H", "Connection: close", second, with_chain=True)
    assert done.returncode == 0, done.stderr
    first, resumed = bodies(done.stdout)
    assert first["intake"]["certificates"] == 2
    assert resumed["intake"]["certificates"] in {1, 2}  # 1 on HAProxy 2.6.12
    for body in (first, resumed):
        assert body["verified"] is True and body["intake"]["path"] == "proxy", body
