"""Reject mode with real clients (openssl s_client, curl): the judge decides inside the
handshake on the chain the client sent, a refusal sends the alert of the reason code's row
(under TLS 1.3 it arrives on the client's first read) and reaches ``on_reject`` with the
leaf's DER; the judge here is Certbound's real validator over the dev PKI, plus a CRL-like
serial list for revocation."""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certbound.errors import ReasonCode
from certbound.intake.tls import HandshakeRejection
from certbound.intake.tls.alerts import NO_CERTIFICATE_ALERTS, REFUSALS, refusal_for
from certbound.pki import devpki
from certbound.pki.anchors import StaticAnchors, TrustAnchors
from certbound.pki.validation import Validator

Listen = Callable[..., Any]
Run = Callable[..., subprocess.CompletedProcess[str]]

VERSION_FLAGS = {"1.3": "-tls1_3", "1.2": "-tls1_2"}
# s_client's text for each alert (OpenSSL's SSL_alert_desc_string_long, as printed).
ALERT_TEXT = {
    "unknown_ca": "alert unknown ca",
    "certificate_expired": "alert certificate expired",
    "certificate_revoked": "alert certificate revoked",
    "unsupported_certificate": "alert unsupported certificate",
    "bad_certificate": "alert bad certificate",
    "decrypt_error": "alert decrypt error",
    "certificate_required": "alert certificate required",
    "handshake_failure": "alert handshake failure",
}


class Rejections:
    """``on_reject`` for a listener thread: collects what it hears."""

    def __init__(self) -> None:
        self.items: list[HandshakeRejection] = []
        self._lock = threading.Lock()

    def __call__(self, rejection: HandshakeRejection) -> None:
        with self._lock:
            self.items.append(rejection)


@pytest.fixture(scope="module")
def judge(pki: devpki.DevPKI) -> Callable[[tuple[bytes, ...]], tuple[ReasonCode, str] | None]:
    anchors = TrustAnchors.from_bundles([[pki.intermediate.cert, pki.root.cert]])
    validator = Validator(StaticAnchors(anchors))
    revoked = {pki.devices["revoked"].cert.serial_number}

    def decide(chain: tuple[bytes, ...]) -> tuple[ReasonCode, str] | None:
        result = validator.verify(chain)
        if not result.ok:
            assert not isinstance(result, type(None))
            return result.reason, result.detail  # type: ignore[union-attr]
        leaf = x509.load_der_x509_certificate(chain[0])
        if leaf.serial_number in revoked:
            return ReasonCode.REVOKED_CERTIFICATE, "serial listed on the intermediate's CRL"
        return None

    return decide


def _alert_in(result: subprocess.CompletedProcess[str]) -> str | None:
    text = result.stdout + result.stderr
    for name, phrase in ALERT_TEXT.items():
        if phrase in text:
            return name
    return None


def _der(item: devpki.Issued) -> bytes:
    return item.cert.public_bytes(Encoding.DER)


@pytest.mark.parametrize("version", ["1.3", "1.2"])
@pytest.mark.parametrize(
    ("device", "reason", "alert"),
    [
        ("foreign", ReasonCode.UNKNOWN_CA, "unknown_ca"),
        ("expired", ReasonCode.CERTIFICATE_EXPIRED, "certificate_expired"),
        ("server-auth-only", ReasonCode.EKU_NOT_CLIENT_AUTH, "unsupported_certificate"),
        ("revoked", ReasonCode.REVOKED_CERTIFICATE, "certificate_revoked"),
        ("not-yet-valid", ReasonCode.CERTIFICATE_NOT_YET_VALID, "bad_certificate"),
    ],
)
def test_a_refused_device_gets_the_matching_alert(
    listen: Listen,
    s_client: Run,
    *,
    judge: Any,
    pki: devpki.DevPKI,
    version: str,
    device: str,
    reason: ReasonCode,
    alert: str,
) -> None:
    rejections = Rejections()
    running = listen(client_verify="reject", judge=judge, on_reject=rejections)
    result = s_client(running.port, device, VERSION_FLAGS[version], "-ign_eof")
    assert _alert_in(result) == alert, result.stderr
    assert "HTTP/1.1 200" not in result.stdout
    assert len(rejections.items) == 1
    rejection = rejections.items[0]
    assert rejection.reason == reason
    assert rejection.chain[0] == _der(pki.devices[device])
    assert rejection.detail
    assert rejection.tls_version == f"TLSv{version}"
    assert rejection.peer is not None and rejection.peer.startswith("127.0.0.1:")


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_a_trusted_device_is_served(
    listen: Listen, s_client: Run, judge: Any, version: str
) -> None:
    rejections = Rejections()
    running = listen(client_verify="reject", judge=judge, on_reject=rejections)
    for device in ("good", "cn-only"):
        result = s_client(running.port, device, VERSION_FLAGS[version], "-ign_eof")
        assert "HTTP/1.1 200 OK" in result.stdout, result.stderr
    assert rejections.items == []


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_no_certificate_is_refused_with_certificate_required(
    listen: Listen, s_client: Run, judge: Any, version: str
) -> None:
    rejections = Rejections()
    running = listen(client_verify="reject", judge=judge, on_reject=rejections)
    result = s_client(running.port, None, VERSION_FLAGS[version], "-ign_eof")
    assert _alert_in(result) == NO_CERTIFICATE_ALERTS[f"TLSv{version}"], result.stderr
    assert [(r.reason, r.chain) for r in rejections.items] == [
        (ReasonCode.NO_CLIENT_CERTIFICATE, ())
    ]


def test_the_judge_sees_the_leaf_of_a_rogue_chain(
    listen: Listen, s_client: Run, pki_dir: Path
) -> None:
    """OpenSSL complains first about the rogue intermediate (depth 1): the judge must still
    get the leaf, and the intermediate after it."""
    seen: list[tuple[bytes, ...]] = []

    def refuse_all(chain: tuple[bytes, ...]) -> tuple[ReasonCode, str]:
        seen.append(chain)
        return ReasonCode.UNKNOWN_CA, "not issued by a trusted CA"

    rejections = Rejections()
    running = listen(client_verify="reject", judge=refuse_all, on_reject=rejections)
    result = s_client(running.port, "rogue", "-ign_eof", chain="rogue-chain.pem")
    assert _alert_in(result) == "unknown_ca"
    pem = (pki_dir / "devices" / "rogue-chain.pem").read_bytes()
    blocks = re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem, re.S)
    sent = tuple(x509.load_pem_x509_certificate(b).public_bytes(Encoding.DER) for b in blocks)
    assert seen == [sent]
    assert rejections.items[0].chain == sent


@pytest.mark.parametrize("version", ["1.3", "1.2"])
@pytest.mark.parametrize("reason", sorted({*REFUSALS, ReasonCode.CHAIN_TOO_COMPLEX}))
def test_every_row_of_the_alert_table_is_what_openssl_sends(
    listen: Listen, s_client: Run, version: str, reason: ReasonCode
) -> None:
    running = listen(client_verify="reject", judge=lambda chain: (reason, "test"))
    result = s_client(running.port, "good", VERSION_FLAGS[version], "-ign_eof")
    assert _alert_in(result) == refusal_for(reason).alert, result.stderr


def test_a_judge_that_raises_refuses_with_bad_certificate(listen: Listen, s_client: Run) -> None:
    def broken(chain: tuple[bytes, ...]) -> None:
        raise RuntimeError("database down")

    running = listen(client_verify="reject", judge=broken)
    result = s_client(running.port, "good", "-ign_eof")
    assert _alert_in(result) == "bad_certificate"
    # the listener carries on
    again = s_client(running.port, "good", "-ign_eof")
    assert _alert_in(again) == "bad_certificate"


def test_curl_sees_the_alert_too(listen: Listen, judge: Any, pki_dir: Path) -> None:
    running = listen(client_verify="reject", judge=judge)
    command = [
        "curl",
        "-sS",
        "--max-time",
        "20",
        "--cacert",
        str(pki_dir / "server-ca.pem"),
        "--cert",
        str(pki_dir / "devices" / "foreign.pem"),
        "--key",
        str(pki_dir / "devices" / "foreign.key"),
        f"https://127.0.0.1:{running.port}/",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode in (35, 56)  # TLS 1.2: in the handshake; 1.3: on the first read
    assert "unknown ca" in result.stderr
