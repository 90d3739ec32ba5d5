"""``certbound handshake`` as a user runs it (``python -m certbound``): the printed layers, the
JSON report and the exit codes (0 every layer passed, 1 one failed, 2 input errors), against
``openssl s_server`` and a small HTTPS server answering the intake echo from the certificate
it received."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from certbound.errors import ReasonCode
from certbound.pki import devpki
from certbound.pki.certificate import serial_hex

OPENSSL = shutil.which("openssl")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, devpki.DevPKI]:
    directory = tmp_path_factory.mktemp("handshake-cli-pki")
    dev = devpki.build_dev_pki()
    devpki.write_dev_pki(dev, directory)
    return directory, dev


def handshake(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTBOUND_")}
    return subprocess.run(
        [sys.executable, "-m", "certbound", "handshake", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def device_args(directory: Path, name: str) -> list[str]:
    devices = directory / "devices"
    return ["--cert", str(devices / f"{name}.pem"), "--key", str(devices / f"{name}.key")]


class _EchoHandler(http.server.BaseHTTPRequestHandler):
    """Answers ``GET /api/v1/intake/echo`` with ALLOW for the certificate it received."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        peer = self.connection.getpeercert(binary_form=True) or b""  # type: ignore[attr-defined]
        cert = x509.load_der_x509_certificate(peer)
        body = json.dumps({
            "intake": {"path": "tls", "listener": "tls", "certificates": 1},
            "chain": [{"subjectDn": cert.subject.rfc4514_string(),
                       "serialNumber": serial_hex(cert),
                       "sha256Thumbprint": hashlib.sha256(peer).hexdigest()}],
            "verified": True, "verdict": "ALLOW", "reason": None, "layer": None,
            "detail": None, "fix": None, "revocation": None,
            "device": {"id": "dev_cli", "status": "ACTIVE", "user": devpki.GOOD_DEVICE_USER,
                       "mappedBy": "san_email"},
            "eventId": "3f1c2b9e-0000-4000-8000-000000000001",
        }).encode()  # fmt: skip
        self.send_response(200 if self.path == "/api/v1/intake/echo" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def echo_url(pki: tuple[Path, devpki.DevPKI]) -> Iterator[str]:
    directory, _ = pki
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "server.pem", directory / "server.key")
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(directory / "ca-chain.pem")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def refusing_url(pki: tuple[Path, devpki.DevPKI], tmp_path: Path) -> Iterator[str]:
    """``openssl s_server`` refusing unknown client certificates with an alert."""
    if OPENSSL is None:
        pytest.skip("openssl is not installed")
    directory, _ = pki
    port = free_port()
    log = tmp_path / "s_server.log"
    args = [OPENSSL, "s_server", "-accept", f"127.0.0.1:{port}", "-www", "-Verify", "1"]
    args += ["-verify_return_error", "-CAfile", str(directory / "ca-chain.pem")]
    args += ["-cert", str(directory / "server.pem"), "-key", str(directory / "server.key")]
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while b"ACCEPT" not in log.read_bytes():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        yield f"https://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=5)


def test_every_layer_passing_exits_0(pki: tuple[Path, devpki.DevPKI], echo_url: str) -> None:
    directory, _ = pki
    done = handshake(echo_url, *device_args(directory, "good"), "--cacert",
                     str(directory / "server-ca.pem"))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"handshake {echo_url}"
    assert [line.split(":")[0] for line in lines if not line.startswith(" ")][1:5] == [
        "tcp",
        "tls",
        "client-certificate",
        "certbound",
    ]
    assert "certbound: PASS ALLOW: device dev_cli (alice@certbound.test)" in lines
    assert "    event    3f1c2b9e-0000-4000-8000-000000000001" in lines
    assert lines[-1] == "result: OK (every layer passed)"


def test_an_untrusted_server_fails_the_run_even_when_the_rest_passes(
    pki: tuple[Path, devpki.DevPKI], echo_url: str
) -> None:
    directory, _ = pki
    done = handshake(echo_url, *device_args(directory, "good"), "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert [layer["status"] for layer in report["layers"]] == ["PASS", "FAIL", "PASS", "PASS"]
    assert report["layers"][1]["reason"] == "SERVER_CERTIFICATE_UNTRUSTED"
    assert report["ok"] is False


def test_a_refused_certificate_prints_the_layer_code_and_next_steps(
    pki: tuple[Path, devpki.DevPKI], refusing_url: str
) -> None:
    directory, dev = pki
    done = handshake(refusing_url, *device_args(directory, "foreign"), "--cacert",
                     str(directory / "server-ca.pem"))  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "client-certificate: FAIL UNKNOWN_CA: the server refused the certificate with the " \
        "TLS alert unknown_ca (48)" in out  # fmt: skip
    assert "certbound: SKIPPED" in out
    serial = serial_hex(dev.devices["foreign"].cert)
    assert f"  certbound diagnose --serial {serial} (on the server, with its --config)" in out
    assert f"  fix (client-certificate): {ReasonCode.UNKNOWN_CA.fix}" in out
    assert out.splitlines()[-1] == "result: FAILED at client-certificate UNKNOWN_CA"


def test_json_report(pki: tuple[Path, devpki.DevPKI], refusing_url: str) -> None:
    directory, _ = pki
    done = handshake(refusing_url, *device_args(directory, "expired"), "--json", "--cacert",
                     str(directory / "server-ca.pem"))  # fmt: skip
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["url"] == refusing_url and report["ok"] is False
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert list(layers) == ["tcp", "tls", "client-certificate", "certbound"]
    client = layers["client-certificate"]
    assert (client["status"], client["reason"], client["layer"]) == (
        "FAIL",
        "CERTIFICATE_EXPIRED",
        "certificate",
    )
    assert client["facts"]["alert"] == {"name": "certificate_expired", "code": 45}
    assert client["facts"]["keyMatches"] is True and client["facts"]["validNow"] is False
    assert layers["certbound"]["status"] == "SKIPPED"
    assert report["next"][-1] == f"fix (client-certificate): {ReasonCode.CERTIFICATE_EXPIRED.fix}"


def test_a_closed_port_exits_1(pki: tuple[Path, devpki.DevPKI]) -> None:
    directory, _ = pki
    done = handshake(f"https://127.0.0.1:{free_port()}", *device_args(directory, "good"))
    assert done.returncode == 1
    assert "tcp: FAIL TCP_CONNECT_FAILED: connection refused" in done.stdout


def test_input_errors_exit_2(pki: tuple[Path, devpki.DevPKI], tmp_path: Path) -> None:
    directory, _ = pki
    good = device_args(directory, "good")
    url = "https://127.0.0.1:1"  # never contacted: inputs are checked first
    mismatched = [good[0], good[1], "--key", str(directory / "devices" / "foreign.key")]
    cases = {
        "does not match --cert": handshake(url, *mismatched),
        "cannot read": handshake(url, "--cert", str(tmp_path / "absent.pem")),
        "must start with https://": handshake("http://127.0.0.1:1", *good),
        "--client-id is only used with --token": handshake(url, *good, "--client-id", "x"),
    }
    for message, done in cases.items():
        assert done.returncode == 2, (message, done.stdout, done.stderr)
        assert message in done.stderr, done.stderr
        assert "tcp:" not in done.stdout
    done = handshake(url, *mismatched, "--json")
    assert done.returncode == 2
    assert "does not match --cert" in json.loads(done.stdout)["error"]["detail"]
