"""The real ``certbound serve`` with its built-in TLS listener, driven by curl with the dev
PKI's device certificates, on SQLite and PostgreSQL: the verdict of every device, the
``device.trust.verify`` events, the device registry, spoofed headers, reject mode."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from certbound.pki import devpki

CURL = shutil.which("curl")
pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed")


Live = Any  # conftest.Certbound (a test module cannot import a conftest)


@pytest.fixture
def live(serve_tls: Callable[[str], Live]) -> Live:
    return serve_tls("accept")


@pytest.fixture
def live_reject(serve_tls: Callable[[str], Live]) -> Live:
    return serve_tls("reject")


EXPECTED = {
    "good": None,
    "cn-only": None,
    "expired": "CERTIFICATE_EXPIRED",
    "not-yet-valid": "CERTIFICATE_NOT_YET_VALID",
    "foreign": "UNKNOWN_CA",
    "server-auth-only": "EKU_NOT_CLIENT_AUTH",
    "revoked": "REVOKED_CERTIFICATE",
    None: "NO_CLIENT_CERTIFICATE",
}


def test_every_device_gets_its_verdict_and_event(live: Live) -> None:
    for device, reason in EXPECTED.items():
        body = live.echo(device)
        assert body["reason"] == reason, (device, body)
        assert body["verdict"] == ("ALLOW" if reason is None else "DENY")
        assert body["intake"]["path"] == "tls" and body["intake"]["trustedHop"] is True
        assert body["intake"]["tls"]["version"] in {"TLSv1.2", "TLSv1.3"}
        if device is not None:
            assert body["chain"][0]["subjectDn"].startswith("CN=" + device)
    good = live.echo("good")
    event = live.event(good["eventId"])
    assert len(live.events()) == len(EXPECTED) + 1
    trust = event["deviceTrust"]
    assert trust["verified"] is True and trust["intake"]["path"] == "tls"
    assert trust["device"]["user"] == devpki.GOOD_DEVICE_USER
    assert trust["device"]["mappedBy"] == "san_email"
    assert event["actor"]["type"] == "Device" and event["actor"]["id"] == good["device"]["id"]


def test_rejections_are_logged_with_subject_issuer_serial(live: Live) -> None:
    body = live.echo("expired")
    event = live.event(body["eventId"])
    assert event["outcome"] == {"result": "FAILURE", "reason": "CERTIFICATE_EXPIRED"}
    certificate = event["deviceTrust"]["certificate"]
    assert certificate["subjectDn"].startswith("CN=expired")
    assert "Intermediate" in certificate["issuerDn"] and certificate["serialNumber"]


def test_tls_1_2_and_1_3_both_work(live: Live) -> None:
    assert live.echo("good", "--tls-max", "1.2")["intake"]["tls"]["version"] == "TLSv1.2"
    assert live.echo("good", "--tlsv1.3")["intake"]["tls"]["version"] == "TLSv1.3"


def test_a_spoofed_header_on_the_tls_listener_never_authenticates(live: Live) -> None:
    pem = (live.pki / "devices" / "good.pem").read_text()
    escaped = pem.replace("\n", "%0A").replace(" ", "%20")
    body = live.echo(None, "-H", f"X-SSL-Client-Cert: {escaped}", "-H", "Client-Cert: :AAAA:")
    assert body["verified"] is False and body["reason"] == "UNTRUSTED_PROXY_HEADER"
    body = live.echo("expired", "-H", f"X-SSL-Client-Cert: {escaped}")
    assert body["reason"] == "CERTIFICATE_EXPIRED"


def test_suspended_device_is_refused_until_resumed(live: Live) -> None:
    device_id = live.echo("good")["device"]["id"]
    listed = live.cli("device", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert device_id in listed.stdout
    assert live.cli("device", "suspend", device_id).returncode == 0
    deadline = time.monotonic() + 10
    while (body := live.echo("good"))["reason"] != "DEVICE_SUSPENDED":
        assert time.monotonic() < deadline, body
        time.sleep(0.5)
    assert body["device"]["status"] == "SUSPENDED" and body["verified"] is False
    assert live.cli("device", "resume", device_id).returncode == 0
    deadline = time.monotonic() + 10
    while (body := live.echo("good"))["reason"] is not None:
        assert time.monotonic() < deadline, body
        time.sleep(0.5)


@pytest.mark.parametrize(
    ("device", "alert", "reason"),
    [
        ("foreign", "unknown ca", "UNKNOWN_CA"),
        ("expired", "certificate expired", "CERTIFICATE_EXPIRED"),
        ("revoked", "certificate revoked", "REVOKED_CERTIFICATE"),
        ("server-auth-only", "unsupported certificate", "EKU_NOT_CLIENT_AUTH"),
    ],
)
def test_reject_mode_sends_the_alert_and_logs(
    live_reject: Live, device: str, alert: str, reason: str
) -> None:
    done = live_reject.curl(device)
    assert done.returncode != 0 and alert in done.stderr, done.stderr
    deadline = time.monotonic() + 10
    while not (found := [e for e in live_reject.events() if e["outcome"]["reason"] == reason]):
        assert time.monotonic() < deadline, "the rejection was not logged"
        time.sleep(0.3)
    assert found[0]["deviceTrust"]["certificate"]["subjectDn"].startswith("CN=" + device)
    assert live_reject.echo("good")["verified"] is True


def test_a_50_certificate_chain_is_too_complex_not_a_crash(live: Live, tmp_path: Path) -> None:
    pki = devpki.build_dev_pki()
    issuer = pki.intermediate
    chain = []
    for number in range(49):
        issuer = devpki.ca(f"Hostile CA {number}", issuer)
        chain.append(issuer)
    leaf = devpki.issue("hostile-leaf", issuer)
    bundle = tmp_path / "hostile.pem"
    bundle.write_bytes(devpki.pem_bundle([leaf, *reversed(chain)]))
    key = tmp_path / "hostile.key"
    key.write_bytes(leaf.key_pem())
    done = subprocess.run(
        [CURL or "curl", "-sS", "--max-time", "20", "--cacert", str(live.pki / "server-ca.pem"),
         "--cert", str(bundle), "--key", str(key), live.url + "/api/v1/intake/echo"],
        check=False, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["reason"] == "CHAIN_TOO_COMPLEX" and body["intake"]["certificates"] == 50
    assert live.echo("good")["verified"] is True


def test_huge_or_garbage_headers_get_no_500(live: Live, tmp_path: Path) -> None:
    headers = tmp_path / "headers.txt"
    headers.write_text("X-Junk: " + "A" * 1_000_000 + "\n")
    huge = live.curl("good", "-H", f"@{headers}", "-o", "/dev/null", "-w", "%{http_code}")
    assert not huge.stdout.startswith("5"), huge.stdout
    garbage = live.echo("good", "-H", "Client-Cert: :%%%:", "-H", "X-Forwarded-Client-Cert: x")
    assert garbage["verified"] is True
    assert garbage["intake"]["ignoredHeaders"] == ["client-cert", "x-forwarded-client-cert"]
    assert live.echo("good")["verified"] is True
