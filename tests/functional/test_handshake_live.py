"""``certbound handshake`` against the real ``certbound serve`` (built-in TLS listener), set up
as quickstart does: the dev PKI, the CA chain uploaded with its CRL, SQLite. Every dev device
in both client-verify modes: in accept mode the verdict comes from the intake echo (and
``certbound diagnose`` explains the event the report names), in reject mode from the TLS
alert the listener sends."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from certbound.errors import ReasonCode
from certbound.pki import devpki
from certbound.pki.certificate import der, x5t_s256

# device -> the reason code Certbound must give (None: allowed), and the alert reject mode sends
DEVICES: dict[str, tuple[ReasonCode | None, str | None]] = {
    "good": (None, None),
    "expired": (ReasonCode.CERTIFICATE_EXPIRED, "certificate_expired"),
    "foreign": (ReasonCode.UNKNOWN_CA, "unknown_ca"),
    "revoked": (ReasonCode.REVOKED_CERTIFICATE, "certificate_revoked"),
    "server-auth-only": (ReasonCode.EKU_NOT_CLIENT_AUTH, "unsupported_certificate"),
}
READY_SECONDS = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Live:
    root: Path
    mode: str
    url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path
    pki: devpki.DevPKI

    @property
    def config(self) -> Path:
        return self.root / "certbound.toml"

    def certbound(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "certbound", "--config", str(self.config), *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def handshake(self, device: str, *extra: str) -> tuple[int, dict[str, Any]]:
        devices = self.root / "pki" / "devices"
        done = self.certbound(
            "handshake", self.url, "--json", "--cacert", str(self.root / "pki" / "server-ca.pem"),
            "--cert", str(devices / f"{device}.pem"), "--key", str(devices / f"{device}.key"),
            *extra,
        )  # fmt: skip
        assert done.stdout, done.stderr
        report: dict[str, Any] = json.loads(done.stdout)
        return done.returncode, report


def _ready(live: Live) -> None:
    """Poll ``GET /healthz`` over mTLS (reject mode refuses clients without a certificate)."""
    pki = live.root / "pki"
    context = ssl.create_default_context(cafile=pki / "server-ca.pem")
    context.load_cert_chain(pki / "devices" / "good.pem", pki / "devices" / "good.key")
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if live.process.poll() is not None:
            pytest.fail(f"certbound serve exited: {live.log.read_text()[-4000:]}")
        try:
            with httpx.Client(verify=context, timeout=2) as client:
                if client.get(f"{live.url}/healthz").status_code == 200:
                    return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(
        f"certbound serve did not answer /healthz over TLS within {READY_SECONDS} s: "
        f"{live.log.read_text()[-4000:]}"
    )


def _start(root: Path, mode: str) -> Live:
    """Set up as the contract says (config, ``ca add`` with the CRL), then ``serve``."""
    pki = devpki.build_dev_pki()
    devpki.write_dev_pki(pki, root / "pki")
    port = free_port()
    config = root / "certbound.toml"
    config.write_text(
        'data_dir = "."\ndatabase_url = "sqlite:///certbound.db"\n'
        f'tls_listen = "127.0.0.1:{port}"\ntls_cert_file = "pki/server.pem"\n'
        f'tls_key_file = "pki/server.key"\ntls_client_verify = "{mode}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTBOUND_")}
    base = [sys.executable, "-m", "certbound", "--config", str(config)]
    crl = (root / "pki" / "intermediate.crl.pem").as_uri()
    added = subprocess.run(
        [*base, "ca", "add", str(root / "pki" / "ca-chain.pem"), "--crl-url", crl],
        cwd=root, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert added.returncode == 0, added.stdout + added.stderr
    log = root / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*base, "serve"], cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    return Live(root, mode, f"https://127.0.0.1:{port}", env, process, log, pki)


def _stop(live: Live) -> None:
    live.process.send_signal(signal.SIGTERM)
    try:
        live.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        live.process.kill()
        live.process.wait(timeout=5)


@pytest.fixture(scope="module", params=["accept", "reject"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    root = tmp_path_factory.mktemp(f"handshake-live-{request.param}")
    server = _start(root, request.param)
    try:
        _ready(server)
        yield server
    finally:
        _stop(server)


def _statuses(report: dict[str, Any]) -> list[str]:
    return [layer["status"] for layer in report["layers"]]


def _layer(report: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(layer for layer in report["layers"] if layer["name"] == name)
    return found


@pytest.mark.parametrize("device", DEVICES)
def test_every_device_gets_its_verdict(live: Live, device: str) -> None:
    code, alert = DEVICES[device]
    exit_code, report = live.handshake(device)
    if code is None:
        assert exit_code == 0, report
        assert _statuses(report) == ["PASS"] * 4
        certbound = _layer(report, "certbound")["facts"]
        assert certbound["verdict"] == "ALLOW" and certbound["leafMatches"] is True
        assert certbound["user"] == devpki.GOOD_DEVICE_USER
        assert certbound["eventId"]
        return
    assert exit_code == 1, report
    if live.mode == "accept":
        assert _statuses(report) == ["PASS", "PASS", "PASS", "FAIL"], report
        certbound = _layer(report, "certbound")
        assert certbound["reason"] == code.value, certbound
        assert certbound["facts"]["verdict"] == "DENY"
        event_id = certbound["facts"]["eventId"]
        assert f"certbound diagnose {event_id} (on the server, with its --config)" in report["next"]
    else:
        assert _statuses(report) == ["PASS", "PASS", "FAIL", "SKIPPED"], report
        client = _layer(report, "client-certificate")
        assert client["reason"] == code.value, client
        assert client["facts"]["alert"]["name"] == alert


@pytest.mark.parametrize("live", ["accept"], indirect=True)
def test_diagnose_explains_the_event_the_report_names(live: Live) -> None:
    _, report = live.handshake("expired")
    event_id = _layer(report, "certbound")["facts"]["eventId"]
    deadline = time.monotonic() + 15  # the recorder writes events asynchronously
    while (done := live.certbound("diagnose", event_id)).returncode != 0:
        assert time.monotonic() < deadline, done.stdout + done.stderr
        time.sleep(0.3)
    assert "CERTIFICATE_EXPIRED" in done.stdout


def test_token_request_against_the_live_server(live: Live) -> None:
    """With a tls_client_auth client registered for the good device, the token the report
    shows is bound to that device's certificate; another device is refused."""
    cas = json.loads(live.certbound("ca", "list", "--json").stdout)["cas"]
    subject = live.pki.devices["good"].cert.subject.rfc4514_string()
    created = live.certbound(
        "app", "create", "Quickstart app", "--client-id", "quickstart-app",
        "--auth-method", "tls_client_auth", "--subject-dn", subject,
        "--ca-pin-from-store", cas[0]["id"],
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    exit_code, report = live.handshake("good", "--token")
    assert exit_code == 0, report
    certbound = _layer(report, "certbound")
    assert certbound["facts"]["x5tS256"] == x5t_s256(der(live.pki.devices["good"].cert))
    exit_code, report = live.handshake("cn-only", "--token")
    assert exit_code == 1, report
    assert _layer(report, "certbound")["reason"] == "CERTIFICATE_NOT_BOUND_TO_CLIENT"
