"""The handshake check (:mod:`certbound.probe`) against real servers on loopback: ``openssl
s_server`` (client-certificate requests, alerts under TLS 1.2 and 1.3, servers that never
ask), a plain-HTTP socket, a silent socket, a closed port, and a small HTTPS server (stdlib
``ssl`` requiring a client certificate) that answers the intake echo and the token endpoint
from the certificate it really received, as Certbound's contract describes them."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.server
import ipaddress
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID

from certbound.clock import FixedClock
from certbound.errors import ReasonCode
from certbound.pki import devpki
from certbound.pki.certificate import der, serial_hex, x5t_s256
from certbound.probe import (
    HandshakeReport,
    LayerName,
    ProbeInputError,
    ProbeOptions,
    Status,
    check_handshake,
    load_credentials,
    load_server_anchors,
    parse_target,
)
from certbound.probe.alerts import Alert
from certbound.probe.server_trust import name_matches
from certbound.probe.verdict import jwt_claims

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")

TCP, TLS = LayerName.TCP, LayerName.TLS
CLIENT, CERTBOUND = LayerName.CLIENT_CERTIFICATE, LayerName.CERTBOUND


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- the PKI: quickstart's, plus server certificates for another name and expired -----------


@dataclass
class Pki:
    directory: Path
    dev: devpki.DevPKI

    def path(self, name: str) -> Path:
        return self.directory / name

    def device(self, name: str) -> tuple[Path, Path]:
        return self.path(f"devices/{name}.pem"), self.path(f"devices/{name}.key")


def _server_cert(pki: devpki.DevPKI, name: str, now: dt.datetime, **kw: Any) -> devpki.Issued:
    sans: list[x509.GeneralName] = [x509.DNSName(name)]
    if name == "localhost":
        sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    profile = devpki.Profile(sans=sans, eku=[ExtendedKeyUsageOID.SERVER_AUTH], **kw)
    return devpki.issue(devpki.dn(name), pki.server_ca, profile=profile, now=now)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    now = dt.datetime.now(dt.UTC)
    dev = devpki.build_dev_pki(now)
    directory = tmp_path_factory.mktemp("handshake-pki")
    devpki.write_dev_pki(dev, directory)
    extra = {
        "elsewhere": _server_cert(dev, "elsewhere.test", now),
        "server-expired": _server_cert(
            dev, "localhost", now, not_before=now - 60 * devpki.DAY, not_after=now - devpki.DAY
        ),
    }
    for name, issued in extra.items():
        (directory / f"{name}.pem").write_bytes(issued.cert_pem())
        (directory / f"{name}.key").write_bytes(issued.key_pem())
    return Pki(directory, dev)


def probe(
    pki: Pki,
    port: int,
    device: str = "good",
    *,
    cacert: str | None = "server-ca.pem",
    host: str = "127.0.0.1",
    path: str = "",
    token: bool = False,
    timeout: float = 5.0,
    clock: FixedClock | None = None,
) -> HandshakeReport:
    cert, key = pki.device(device)
    options = ProbeOptions(
        target=parse_target(f"https://{host}:{port}{path}"),
        credentials=load_credentials(cert, key),
        anchors=load_server_anchors(pki.path(cacert) if cacert else None),
        token=token,
        timeout=timeout,
    )
    return check_handshake(options, clock)


def statuses(report: HandshakeReport) -> list[str]:
    return [layer.status.value for layer in report.layers]


# --- openssl s_server ------------------------------------------------------------------------


@pytest.fixture
def s_server(pki: Pki, tmp_path: Path) -> Iterator[Callable[..., int]]:
    """``s_server(*args, cert="server")``: start ``openssl s_server -www`` on a free port."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, cert: str = "server") -> int:
        assert OPENSSL is not None
        port = free_port()
        log = tmp_path / f"s_server-{port}.log"
        command = [OPENSSL, "s_server", "-accept", f"127.0.0.1:{port}", "-www"]
        command += ["-cert", str(pki.path(f"{cert}.pem")), "-key", str(pki.path(f"{cert}.key"))]
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*command, *args], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        started.append(process)
        deadline = time.monotonic() + 10
        while b"ACCEPT" not in log.read_bytes():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "openssl s_server did not start"
            time.sleep(0.02)
        return port

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=5)


def verifying(*extra: str) -> tuple[str, ...]:
    """s_server options: request a client certificate, verify it, refuse with an alert."""
    return ("-Verify", "1", "-verify_return_error", *extra)


# --- tcp and tls -----------------------------------------------------------------------------


def test_connection_refused_fails_tcp_and_skips_the_rest(pki: Pki) -> None:
    report = probe(pki, free_port())
    assert statuses(report) == ["FAIL", "SKIPPED", "SKIPPED", "SKIPPED"]
    tcp = report.layer(TCP)
    assert tcp.reason == "TCP_CONNECT_FAILED" and tcp.layer == "transport"
    assert "connection refused" in tcp.detail
    assert tcp.fix == ReasonCode.TCP_CONNECT_FAILED.fix
    assert report.next_steps == (f"fix (tcp): {ReasonCode.TCP_CONNECT_FAILED.fix}",)
    assert not report.ok


@pytest.fixture
def plain_http_port() -> Iterator[int]:
    """A TCP server that answers anything with a plain HTTP 400, as a non-TLS port does."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def answer() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            conn.recv(4096)
            conn.sendall(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    listener.close()
    thread.join(timeout=10)


def test_a_plain_http_port_is_named_as_such(pki: Pki, plain_http_port: int) -> None:
    report = probe(pki, plain_http_port)
    assert statuses(report) == ["PASS", "FAIL", "SKIPPED", "SKIPPED"]
    tls = report.layer(TLS)
    assert tls.reason == "TLS_HANDSHAKE_FAILED"
    assert "plain text ('HTTP/1.1 400 Bad Request')" in tls.detail
    assert "not TLS" in tls.detail


def test_a_silent_server_times_out_the_handshake(pki: Pki) -> None:
    # The kernel completes the TCP handshake from the backlog; nobody ever answers TLS.
    with socket.create_server(("127.0.0.1", 0), backlog=4) as silent:
        start = time.monotonic()
        report = probe(pki, silent.getsockname()[1], timeout=0.5)
        elapsed = time.monotonic() - start
    tls = report.layer(TLS)
    assert tls.status is Status.FAIL and tls.reason == "TLS_HANDSHAKE_FAILED"
    assert "no TLS handshake answer within 0.5 s" in tls.detail
    assert 0.45 <= elapsed < 5


@needs_openssl
@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_every_transport_layer_passes_with_a_verifying_server(
    pki: Pki, s_server: Callable[..., int], version: str
) -> None:
    port = s_server(*verifying("-CAfile", str(pki.path("ca-chain.pem")), version))
    report = probe(pki, port)
    assert statuses(report)[:3] == ["PASS", "PASS", "PASS"]
    assert report.layer(TCP).facts["elapsedMs"] >= 0
    tls = report.layer(TLS)
    assert tls.facts["version"] == {"-tls1_2": "TLSv1.2", "-tls1_3": "TLSv1.3"}[version]
    assert tls.facts["cipher"]
    assert tls.facts["serverCertificate"]["subjectDn"] == "CN=localhost,O=Certbound Dev"
    assert tls.facts["trusted"] is True
    client = report.layer(CLIENT).facts
    assert client["requested"] is True and client["sent"] is True
    assert client["issuerAcceptable"] is True
    assert client["serialNumber"] == serial_hex(pki.dev.devices["good"].cert)
    # s_server -www answers every path with its HTML status page: not Certbound.
    certbound = report.layer(CERTBOUND)
    assert certbound.status is Status.FAIL and certbound.reason is None
    assert "not Certbound's JSON" in certbound.detail
    assert not report.ok


ALERT_CASES = [
    ("foreign", (), "UNKNOWN_CA", "unknown_ca"),
    ("expired", (), "CERTIFICATE_EXPIRED", "certificate_expired"),
    ("server-auth-only", (), "EKU_NOT_CLIENT_AUTH", "unsupported_certificate"),
    ("revoked", ("-crl_check", "-CRL", "intermediate.crl.pem"), "REVOKED_CERTIFICATE",
     "certificate_revoked"),
]  # fmt: skip


@needs_openssl
@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
@pytest.mark.parametrize("case", ALERT_CASES, ids=[case[0] for case in ALERT_CASES])
def test_a_refusing_alert_maps_to_its_reason_code(
    pki: Pki, s_server: Callable[..., int], version: str, case: tuple[Any, ...]
) -> None:
    device, options, code, alert = case
    extra = [str(pki.path(o)) if o.endswith(".pem") else o for o in options]
    port = s_server(*verifying("-CAfile", str(pki.path("ca-chain.pem")), version, *extra))
    report = probe(pki, port, device)
    assert statuses(report) == ["PASS", "PASS", "FAIL", "SKIPPED"]
    client = report.layer(CLIENT)
    assert client.reason == code
    assert client.layer == ReasonCode(code).layer.value and client.fix == ReasonCode(code).fix
    assert client.facts["alert"]["name"] == alert
    assert client.facts["sent"] is True
    assert alert in client.detail
    serial = serial_hex(pki.dev.devices[device].cert)
    assert f"certbound diagnose --serial {serial} (on the server, with its --config)" in (
        report.next_steps
    )
    assert f"fix (client-certificate): {ReasonCode(code).fix}" in report.next_steps


@needs_openssl
def test_a_server_that_never_asks_gets_no_certificate(
    pki: Pki, s_server: Callable[..., int]
) -> None:
    report = probe(pki, s_server())
    client = report.layer(CLIENT)
    assert client.status is Status.FAIL and client.reason == "NO_CLIENT_CERTIFICATE"
    assert client.facts["requested"] is False and client.facts["sent"] is False
    assert "did not ask for a client certificate" in client.detail
    assert report.layer(TLS).status is Status.PASS


@needs_openssl
@pytest.mark.parametrize("cacert", [None, "ca-chain.pem"])
def test_an_untrusted_server_is_reported_and_the_check_goes_on(
    pki: Pki, s_server: Callable[..., int], cacert: str | None
) -> None:
    port = s_server(*verifying("-CAfile", str(pki.path("ca-chain.pem"))))
    report = probe(pki, port, "foreign", cacert=cacert)
    tls = report.layer(TLS)
    assert tls.status is Status.FAIL and tls.reason == "SERVER_CERTIFICATE_UNTRUSTED"
    assert tls.layer == "transport"
    assert "unable to get local issuer certificate" in tls.detail
    assert ("the system store" if cacert is None else "--cacert") in tls.detail
    # ...and the client certificate was still checked: refused with unknown_ca.
    assert report.layer(CLIENT).reason == "UNKNOWN_CA"
    assert any(step.startswith("openssl s_client -connect") for step in report.next_steps)
    assert not report.ok


@needs_openssl
def test_a_name_mismatch_is_untrusted(pki: Pki, s_server: Callable[..., int]) -> None:
    report = probe(pki, s_server(cert="elsewhere"))
    tls = report.layer(TLS)
    assert tls.reason == "SERVER_CERTIFICATE_UNTRUSTED"
    assert tls.facts["trustProblems"] == [
        "name mismatch: the certificate is for DNS:elsewhere.test, not 127.0.0.1"
    ]


@needs_openssl
def test_an_expired_server_certificate_is_untrusted(pki: Pki, s_server: Callable[..., int]) -> None:
    report = probe(pki, s_server(cert="server-expired"), host="localhost")
    tls = report.layer(TLS)
    assert tls.reason == "SERVER_CERTIFICATE_UNTRUSTED"
    assert tls.facts["serverName"] == "localhost"
    assert tls.facts["trustProblems"][0].startswith("certificate has expired at depth 0")


@needs_openssl
def test_the_server_certificate_is_judged_at_the_clock_time(
    pki: Pki, s_server: Callable[..., int]
) -> None:
    port = s_server()
    assert probe(pki, port).layer(TLS).status is Status.PASS
    later = FixedClock(dt.datetime.now(dt.UTC) + 3000 * devpki.DAY)
    report = probe(pki, port, clock=later)
    assert report.layer(TLS).facts["trustProblems"][0].startswith("certificate has expired")
    assert report.layer(CLIENT).facts["validNow"] is False


# --- the certbound layer: a small HTTPS server answering from the certificate it received ---

Answer = Callable[[str, str, bytes, bytes], tuple[int, str, bytes]]


class AppServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    answer: Answer
    seen: list[str]


class _AppHandler(http.server.BaseHTTPRequestHandler):
    server: AppServer
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        peer = self.connection.getpeercert(binary_form=True) or b""  # type: ignore[attr-defined]
        self.server.seen.append(f"{self.command} {self.path} {body.decode()}".strip())
        status, content_type, out = self.server.answer(self.command, self.path, peer, body)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(out)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(out)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def app(pki: Pki) -> Iterator[AppServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.path("server.pem"), pki.path("server.key"))
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(pki.path("ca-chain.pem"))
    server = AppServer(("127.0.0.1", 0), _AppHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _json(status: int, body: dict[str, Any]) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(body).encode()


@dataclass
class Echo:
    """An echo body in Certbound's shape, built from the certificate the server received."""

    verdict: str = "ALLOW"
    reason: str | None = None
    thumbprint: str | None = None
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def __call__(self, method: str, path: str, peer: bytes, body: bytes) -> tuple[int, str, bytes]:
        if path != "/api/v1/intake/echo":
            return 404, "text/plain", b"not found"
        cert = x509.load_der_x509_certificate(peer)
        code = ReasonCode(self.reason) if self.reason else None
        return _json(200, {
            "intake": {"path": "tls", "listener": "tls", "peer": "127.0.0.1",
                       "trustedHop": False, "headerFormat": None, "proxyVerdict": None,
                       "ignoredHeaders": [], "certificates": 1,
                       "tls": {"version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384",
                               "handshakeErrors": []}},
            "chain": [{"subjectDn": cert.subject.rfc4514_string(),
                       "issuerDn": cert.issuer.rfc4514_string(),
                       "serialNumber": serial_hex(cert),
                       "sha256Thumbprint": self.thumbprint or hashlib.sha256(peer).hexdigest(),
                       "notBefore": cert.not_valid_before_utc.isoformat(),
                       "notAfter": cert.not_valid_after_utc.isoformat()}],
            "verified": self.verdict == "ALLOW", "verdict": self.verdict,
            "reason": self.reason, "layer": code.layer.value if code else None,
            "detail": "the certificate expired" if code else None,
            "fix": code.fix if code else None,
            "device": {"id": "dev_1", "status": "ACTIVE", "user": devpki.GOOD_DEVICE_USER,
                       "mappedBy": "san_email"},
            "revocation": None, "eventId": self.event_id,
        })  # fmt: skip


def test_an_allowed_echo_passes_every_layer(pki: Pki, app: AppServer) -> None:
    app.answer = echo = Echo()
    report = probe(pki, app.server_address[1], path="/some/where?x=1")
    assert statuses(report) == ["PASS"] * 4, report.to_dict()
    assert report.ok
    assert app.seen == ["GET /api/v1/intake/echo"]  # from the URL's origin
    certbound = report.layer(CERTBOUND)
    assert certbound.detail == f"ALLOW: device dev_1 ({devpki.GOOD_DEVICE_USER})"
    assert certbound.facts["eventId"] == echo.event_id
    assert certbound.facts["user"] == devpki.GOOD_DEVICE_USER
    assert certbound.facts["leafMatches"] is True
    assert report.next_steps == (
        f"certbound diagnose {echo.event_id} (on the server, with its --config): "
        "the decision as recorded",
    )


def test_a_denied_echo_fails_with_the_servers_reason(pki: Pki, app: AppServer) -> None:
    app.answer = echo = Echo(verdict="DENY", reason="CERTIFICATE_EXPIRED")
    report = probe(pki, app.server_address[1])
    certbound = report.layer(CERTBOUND)
    assert certbound.status is Status.FAIL
    assert certbound.reason == "CERTIFICATE_EXPIRED" and certbound.layer == "certificate"
    assert certbound.detail == "DENY: the certificate expired"
    assert report.layer(CLIENT).status is Status.PASS
    assert (
        report.next_steps[0]
        == f"certbound diagnose {echo.event_id} (on the server, with its --config)"
    )
    assert report.next_steps[1] == f"fix (certbound): {ReasonCode.CERTIFICATE_EXPIRED.fix}"


def test_an_echo_about_another_certificate_fails(pki: Pki, app: AppServer) -> None:
    app.answer = Echo(thumbprint="00" * 32)
    report = probe(pki, app.server_address[1])
    certbound = report.layer(CERTBOUND)
    assert certbound.status is Status.FAIL and certbound.reason is None
    assert "another certificate than the one sent" in certbound.detail
    assert certbound.facts["leafMatches"] is False


def test_a_server_without_the_echo_fails_clearly(pki: Pki, app: AppServer) -> None:
    app.answer = lambda method, path, peer, body: (404, "text/plain", b"not found")
    certbound = probe(pki, app.server_address[1]).layer(CERTBOUND)
    assert certbound.status is Status.FAIL
    assert certbound.detail.startswith("GET /api/v1/intake/echo answered 404")


# --- tokens (a real ES256 JWS minted from the certificate the server received) ---------------

_TOKEN_KEY = ec.generate_private_key(ec.SECP256R1())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jws(claims: dict[str, Any]) -> str:
    header = _b64(json.dumps({"alg": "ES256", "typ": "at+jwt"}).encode())
    payload = _b64(json.dumps(claims).encode())
    r, s = decode_dss_signature(
        _TOKEN_KEY.sign(f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
    )
    return f"{header}.{payload}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def token_server(cnf: Callable[[bytes], dict[str, Any] | None]) -> Answer:
    def answer(method: str, path: str, peer: bytes, body: bytes) -> tuple[int, str, bytes]:
        if (method, path) != ("POST", "/oauth2/v1/token"):
            return 404, "text/plain", b"not found"
        claims: dict[str, Any] = {"sub": "quickstart-app", "client_id": "quickstart-app"}
        bound = cnf(peer)
        if bound is not None:
            claims["cnf"] = bound
        token = {"access_token": jws(claims), "token_type": "DPoP", "expires_in": 300}
        return _json(200, token)

    return answer


def test_a_token_bound_to_the_certificate_passes(pki: Pki, app: AppServer) -> None:
    app.answer = token_server(lambda peer: {"x5t#S256": x5t_s256(peer)})
    report = probe(pki, app.server_address[1], token=True)
    assert statuses(report) == ["PASS"] * 4, report.to_dict()
    assert app.seen == [
        "POST /oauth2/v1/token grant_type=client_credentials&client_id=quickstart-app"
    ]
    certbound = report.layer(CERTBOUND)
    expected = x5t_s256(der(pki.dev.devices["good"].cert))
    assert certbound.facts["x5tS256"] == certbound.facts["expectedX5tS256"] == expected


def test_a_token_bound_elsewhere_fails_with_binding_mismatch(pki: Pki, app: AppServer) -> None:
    other = x5t_s256(der(pki.dev.devices["cn-only"].cert))
    app.answer = token_server(lambda peer: {"x5t#S256": other})
    certbound = probe(pki, app.server_address[1], token=True).layer(CERTBOUND)
    assert certbound.reason == "TOKEN_BINDING_MISMATCH" and certbound.layer == "token"
    assert other in certbound.detail


def test_an_unbound_token_fails(pki: Pki, app: AppServer) -> None:
    app.answer = token_server(lambda peer: None)
    certbound = probe(pki, app.server_address[1], token=True).layer(CERTBOUND)
    assert certbound.status is Status.FAIL
    assert "no cnf.x5t#S256" in certbound.detail


def test_a_refused_token_request_carries_its_reason(pki: Pki, app: AppServer) -> None:
    refusal = {
        "error": "invalid_client",
        "error_description": "the certificate is not registered for quickstart-app",
        "reason": "CERTIFICATE_NOT_BOUND_TO_CLIENT",
    }
    app.answer = lambda method, path, peer, body: _json(401, refusal)
    report = probe(pki, app.server_address[1], token=True)
    certbound = report.layer(CERTBOUND)
    assert certbound.reason == "CERTIFICATE_NOT_BOUND_TO_CLIENT"
    assert certbound.layer == "identity"
    assert certbound.fix == ReasonCode.CERTIFICATE_NOT_BOUND_TO_CLIENT.fix
    assert certbound.detail == (
        "token request refused (401 invalid_client): the certificate is not registered "
        "for quickstart-app"
    )
    assert any("app.oauth2.token.grant" in step for step in report.next_steps)


def test_a_server_without_a_token_endpoint_says_so(pki: Pki, app: AppServer) -> None:
    app.answer = lambda method, path, peer, body: _json(404, {"title": "Not Found"})
    report = probe(pki, app.server_address[1], token=True)
    certbound = report.layer(CERTBOUND)
    assert certbound.status is Status.FAIL
    assert certbound.detail == (
        "POST /oauth2/v1/token answered 404: token endpoint not available on this server"
    )
    assert report.next_steps == (
        "run again without --token: the intake echo shows Certbound's verdict",
    )


# --- inputs, checked before connecting --------------------------------------------------------


def test_a_key_that_is_not_the_certificates_is_an_input_error(pki: Pki) -> None:
    cert, _ = pki.device("good")
    _, other = pki.device("foreign")
    with pytest.raises(ProbeInputError, match="does not match --cert"):
        load_credentials(cert, other)


def test_a_combined_file_holds_certificate_and_key(pki: Pki, tmp_path: Path) -> None:
    cert, key = pki.device("good")
    combined = tmp_path / "combined.pem"
    combined.write_bytes(cert.read_bytes() + key.read_bytes())
    credentials = load_credentials(combined)
    assert credentials.leaf == pki.dev.devices["good"].cert


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:8443", "must start with https://"),
        ("https://127.0.0.1:99999", "Port out of range"),
        ("https:///path", "no host"),
    ],
)
def test_a_bad_url_is_an_input_error(url: str, message: str) -> None:
    with pytest.raises(ProbeInputError, match=message):
        parse_target(url)


def test_unreadable_and_encrypted_files_are_input_errors(pki: Pki, tmp_path: Path) -> None:
    cert, _ = pki.device("good")
    with pytest.raises(ProbeInputError, match="cannot read"):
        load_credentials(tmp_path / "absent.pem", tmp_path / "absent.key")
    with pytest.raises(ProbeInputError, match="--cacert"):
        load_server_anchors(cert.with_suffix(".key"))  # a key is not a CA certificate
    from cryptography.hazmat.primitives import serialization

    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        pki.dev.devices["good"].key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(ProbeInputError, match="encrypted"):
        load_credentials(cert, encrypted)


def test_ipv6_targets_keep_their_brackets() -> None:
    target = parse_target("https://[::1]:8443/x")
    assert (target.host, target.port, target.authority) == ("::1", 8443, "[::1]:8443")
    assert target.server_name is None
    assert parse_target("https://Example.test/").authority == "example.test"


# --- tables and parsers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "name", "reason"),
    [
        (48, "unknown_ca", ReasonCode.UNKNOWN_CA),
        (45, "certificate_expired", ReasonCode.CERTIFICATE_EXPIRED),
        (44, "certificate_revoked", ReasonCode.REVOKED_CERTIFICATE),
        (43, "unsupported_certificate", ReasonCode.EKU_NOT_CLIENT_AUTH),
        (116, "certificate_required", ReasonCode.NO_CLIENT_CERTIFICATE),
        (42, "bad_certificate", ReasonCode.MALFORMED_CERTIFICATE),
        (46, "certificate_unknown", None),
    ],
)
def test_alerts_read_back_as_reason_codes(code: int, name: str, reason: ReasonCode | None) -> None:
    alert = Alert.from_info(2 << 8 | code)  # what OpenSSL's info callback passes
    assert (alert.code, alert.level, alert.name, alert.reason) == (code, 2, name, reason)
    assert alert.refuses_certificate and alert.fatal
    assert not Alert(70).refuses_certificate  # protocol_version: a transport problem


@pytest.mark.parametrize(
    ("sans", "host", "matches"),
    [
        ([x509.DNSName("*.example.test")], "a.example.test", True),
        ([x509.DNSName("*.example.test")], "a.b.example.test", False),
        ([x509.DNSName("*.example.test")], "example.test", False),
        ([x509.DNSName("*.test")], "example.test", False),
        ([x509.DNSName("Host.Example.test")], "host.example.test.", True),
        ([x509.DNSName("f*.example.test")], "foo.example.test", False),
        ([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))], "127.0.0.1", True),
        ([x509.DNSName("127.0.0.1")], "127.0.0.1", False),
        ([x509.IPAddress(ipaddress.ip_address("::1"))], "::1", True),
    ],
)
def test_server_names_match_as_rfc6125_says(
    sans: list[x509.GeneralName], host: str, matches: bool
) -> None:
    cert = devpki.issue("server", profile=devpki.Profile(sans=sans)).cert
    assert name_matches(cert, host) is matches


def test_without_a_san_the_common_name_is_the_name() -> None:
    cert = devpki.issue("cn.example.test").cert
    assert name_matches(cert, "cn.example.test")
    assert not name_matches(cert, "other.example.test")


def test_jwt_claims_are_read_without_verifying() -> None:
    assert jwt_claims(jws({"cnf": {"x5t#S256": "abc"}})) == {"cnf": {"x5t#S256": "abc"}}
    assert jwt_claims("opaque-token") is None
    assert jwt_claims("a.!!!.c") is None
