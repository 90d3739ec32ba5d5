"""Certbound behind the real nginx running docs/deploy/nginx.conf, with curl as the device:
every device's verdict arrives through X-SSL-Client-Cert, spoofed certificate headers never
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
NGINX = shutil.which("nginx", path=_SEARCH)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        NGINX is None or shutil.which("curl") is None,
        reason="nginx or curl is not installed (apt-get install nginx curl; CI installs them)",
    ),
]

Server = Any  # conftest.Certbound (a test module cannot import a conftest)


def start_nginx(
    server: Server, daemon: Callable[..., Any], deploy_file: Callable[..., str]
) -> None:
    """Run docs/deploy/nginx.conf in front of ``server``, with the test's paths and port."""
    prefix = server.root / "nginx"
    (prefix / "tmp").mkdir(parents=True)
    temp = " ".join(
        f"{kind}_temp_path {prefix}/tmp/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    upstream = server.http_listen  # "unix:/path" or "127.0.0.1:port", as nginx spells them
    conf = deploy_file(
        "nginx.conf",
        [
            # As root, workers would switch to www-data, which cannot open the test's files.
            ("user www-data;", "user root root;" if os.geteuid() == 0 else ""),
            ("worker_processes auto;", "worker_processes 1;"),
            ("pid /run/nginx.pid;", f"pid {prefix}/nginx.pid;"),
            ("error_log /var/log/nginx/error.log;", f"error_log {prefix}/error.log info;"),
            ("access_log /var/log/nginx/access.log;", f"access_log {prefix}/access.log; {temp}"),
            ("server unix:/run/certbound/http.sock;", f"server {upstream};"),
            ("listen 443 ssl;", f"listen 127.0.0.1:{server.proxy_port} ssl;"),
            ("listen [::]:443 ssl;", ""),
            ("/etc/certbound/tls/server.pem", str(server.pki / "server.pem")),
            ("/etc/certbound/tls/server.key", str(server.pki / "server.key")),
            ("/etc/certbound/device-ca.pem", str(server.pki / "ca-chain.pem")),
        ],
    )
    (prefix / "nginx.conf").write_text(conf)
    argv = [NGINX, "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf")]
    argv += ["-e", str(prefix / "error.log"), "-g", "daemon off;"]
    daemon(argv, server.proxy_port, prefix / "console.log")


@pytest.fixture
def nginx_unix(
    behind_proxy: Callable[..., Server], daemon: Callable[..., Any], deploy_file: Any
) -> Server:
    """The recommended setup: nginx -> Certbound's Unix socket, trusted as "unix"."""
    server = behind_proxy("nginx", unix=True, trusted_proxies=["unix"])
    start_nginx(server, daemon, deploy_file)
    return server


EXPECTED = {
    "good": None,
    "expired": "CERTIFICATE_EXPIRED",
    "foreign": "UNKNOWN_CA",
    "server-auth-only": "EKU_NOT_CLIENT_AUTH",
    "revoked": "REVOKED_CERTIFICATE",
    None: "NO_CLIENT_CERTIFICATE",
}


def test_every_device_gets_its_verdict_through_nginx(nginx_unix: Server) -> None:
    for device, reason in EXPECTED.items():
        body = nginx_unix.echo(device)
        intake = body["intake"]
        assert body["reason"] == reason, (device, body)
        assert body["verified"] is (reason is None), (device, body)
        assert body["verdict"] == ("ALLOW" if reason is None else "DENY")
        assert intake["listener"] == "http" and intake["trustedHop"] is True, intake
        assert intake["ignoredHeaders"] == [], intake
        if device is None:
            assert intake["path"] == "none" and intake["certificates"] == 0, intake
            continue
        assert intake["path"] == "proxy" and intake["headerFormat"] == "nginx", intake
        assert intake["certificates"] == 1, intake  # $ssl_client_escaped_cert: the leaf
        assert body["chain"][0]["subjectDn"].startswith("CN=" + device), body["chain"]


def test_nginx_verdict_is_recorded_and_the_event_logged(nginx_unix: Server) -> None:
    good = nginx_unix.echo("good")
    assert good["intake"]["proxyVerdict"] == "SUCCESS"
    assert good["verified"] is True and good["verdict"] == "ALLOW"
    # nginx checks no CRL: its SUCCESS is recorded, Certbound's REVOKED_CERTIFICATE decides.
    revoked = nginx_unix.echo("revoked")
    assert revoked["intake"]["proxyVerdict"] == "SUCCESS"
    assert revoked["reason"] == "REVOKED_CERTIFICATE" and revoked["verified"] is False
    foreign = nginx_unix.echo("foreign")
    assert foreign["intake"]["proxyVerdict"].startswith("FAILED:")
    assert foreign["reason"] == "UNKNOWN_CA"
    expired = nginx_unix.echo("expired")
    # nginx answers 495 for an expired certificate itself; error_page hands it to Certbound.
    assert expired["intake"]["proxyVerdict"] == "FAILED:certificate has expired"
    assert expired["reason"] == "CERTIFICATE_EXPIRED"
    assert nginx_unix.echo(None)["intake"]["proxyVerdict"] in {None, "NONE"}
    event = nginx_unix.event(good["eventId"])
    trust = event["deviceTrust"]
    assert trust["verified"] is True and trust["intake"]["path"] == "proxy"
    assert trust["intake"]["headerFormat"] == "nginx" and trust["intake"]["trustedHop"] is True
    failed = nginx_unix.event(expired["eventId"])
    assert failed["outcome"] == {"result": "FAILURE", "reason": "CERTIFICATE_EXPIRED"}
    assert failed["deviceTrust"]["intake"]["proxyVerdict"] == "FAILED:certificate has expired"


def spoofs(server: Server) -> list[str]:
    """curl -H arguments forging the good device's certificate in every format."""
    pem = (server.pki / "devices" / "good.pem").read_text()
    escaped = pem.replace("\n", "%0A").replace(" ", "%20").replace("+", "%2B")
    der_b64 = "".join(pem.strip().splitlines()[1:-1])
    headers = [
        f"X-SSL-Client-Cert: {escaped}",
        "X-SSL-Client-Verify: SUCCESS",
        f"X-SSL-Client-Chain: {der_b64}",
        f'X-Forwarded-Client-Cert: Cert="{escaped}"',
        f"Client-Cert: :{der_b64}:",
        f"Client-Cert-Chain: :{der_b64}:",
    ]
    return [arg for header in headers for arg in ("-H", header)]


def test_certificate_headers_a_client_sends_through_nginx_never_count(nginx_unix: Server) -> None:
    forged = spoofs(nginx_unix)
    body = nginx_unix.echo(None, *forged)
    assert body["verified"] is False and body["reason"] == "NO_CLIENT_CERTIFICATE", body
    # nginx dropped every copy: Certbound saw none of them, not even the other formats'.
    assert body["intake"]["ignoredHeaders"] == [] and body["intake"]["certificates"] == 0
    assert body["intake"]["proxyVerdict"] in {None, "NONE"}
    # With a real certificate, the header nginx sets is the one that counts.
    expired = nginx_unix.echo("expired", *forged)
    assert expired["reason"] == "CERTIFICATE_EXPIRED"
    assert expired["chain"][0]["subjectDn"].startswith("CN=expired")


def test_headers_from_a_peer_outside_trusted_proxies_are_refused(
    behind_proxy: Callable[..., Server], daemon: Callable[..., Any], deploy_file: Any
) -> None:
    # Certbound on loopback TCP, trusting only a network neither curl nor nginx is in.
    server = behind_proxy("nginx", unix=False, trusted_proxies=["10.255.255.0/24"])
    start_nginx(server, daemon, deploy_file)
    direct = server.echo(None, *spoofs(server), "-H", "X-Forwarded-For: 10.255.255.1", direct=True)
    assert direct["verified"] is False and direct["reason"] == "UNTRUSTED_PROXY_HEADER", direct
    assert direct["intake"]["trustedHop"] is False and direct["intake"]["certificates"] == 0
    assert "x-ssl-client-cert" in direct["intake"]["ignoredHeaders"]
    # Even nginx's genuine header does not count from an address that is not trusted.
    proxied = server.echo("good")
    assert proxied["verified"] is False and proxied["reason"] == "UNTRUSTED_PROXY_HEADER"
    event = server.event(direct["eventId"])
    assert event["outcome"]["reason"] == "UNTRUSTED_PROXY_HEADER"
    # Without certificate headers, an untrusted peer is just a client without a certificate.
    plain = server.echo(None, direct=True)
    assert plain["reason"] == "NO_CLIENT_CERTIFICATE" and plain["intake"]["ignoredHeaders"] == []


def test_nginx_over_loopback_tcp_is_trusted_by_cidr(
    behind_proxy: Callable[..., Server], daemon: Callable[..., Any], deploy_file: Any
) -> None:
    server = behind_proxy("nginx", unix=False, trusted_proxies=["127.0.0.1/32"])
    start_nginx(server, daemon, deploy_file)
    body = server.echo("good")
    assert body["verified"] is True and body["intake"]["path"] == "proxy", body
    assert body["intake"]["peer"].startswith("127.0.0.1")


def test_a_resumed_tls_session_still_carries_the_certificate(nginx_unix: Server) -> None:
    # Two URLs, "Connection: close": curl resumes the TLS session for the second, and nginx
    # still sends the leaf it keeps in the session.
    second = nginx_unix.proxy_url + "/api/v1/intake/echo"
    done = nginx_unix.curl("good", "-H", "Connection: close", second)
    assert done.returncode == 0, done.stderr
    decoder = json.JSONDecoder()
    first, end = decoder.raw_decode(done.stdout)
    resumed, _ = decoder.raw_decode(done.stdout, end)
    for body in (first, resumed):
        assert body["verified"] is True and body["intake"]["certificates"] == 1, body
        assert body["intake"]["proxyVerdict"] == "SUCCESS"
