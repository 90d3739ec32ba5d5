"""Accept mode with real clients (curl): every client reaches the app, which sees the chain
the client presented (leaf first, intermediates included) and what OpenSSL complained about,
under TLS 1.2 and 1.3; keep-alive keeps one chain per connection; request bodies and large
responses flow through the memory BIOs with flow control."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certbound.intake import chain
from certbound.pki import devpki

Listen = Callable[..., Any]
Curl = Callable[..., subprocess.CompletedProcess[str]]

VERSIONS = {"1.3": ("--tlsv1.3", "TLSv1.3", 0x0304), "1.2": ("--tls-max", "TLSv1.2", 0x0303)}

# OpenSSL's verify errors the listener records (it holds no trust anchors: the app decides).
UNABLE_TO_GET_ISSUER_LOCALLY = 20
CERT_HAS_EXPIRED = 10
CERT_NOT_YET_VALID = 9


def _version_args(version: str) -> list[str]:
    flag, _, _ = VERSIONS[version]
    return ["--tlsv1.3"] if flag == "--tlsv1.3" else ["--tlsv1.2", "--tls-max", "1.2"]


def _der(item: devpki.Issued) -> bytes:
    return item.cert.public_bytes(Encoding.DER)


def _seen(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, (result.stdout, result.stderr)
    data: dict[str, Any] = json.loads(result.stdout)
    return data


@pytest.mark.parametrize("version", ["1.3", "1.2"])
@pytest.mark.parametrize(
    ("device", "expected_error"),
    [
        ("good", None),
        ("expired", CERT_HAS_EXPIRED),
        ("not-yet-valid", CERT_NOT_YET_VALID),
        ("foreign", None),
        ("server-auth-only", None),
        ("cn-only", None),
    ],
)
def test_every_device_reaches_the_app_with_its_certificate(
    listen: Listen,
    curl: Curl,
    *,
    pki: devpki.DevPKI,
    version: str,
    device: str,
    expected_error: int | None,
) -> None:
    running = listen()
    seen = _seen(curl(running.port, device, *_version_args(version)))
    _, name, number = VERSIONS[version]
    leaf = pki.devices[device]
    assert seen["scheme"] == "https"
    assert seen["version_name"] == name
    assert seen["tls_version"] == number
    assert isinstance(seen["cipher_suite"], int)
    assert seen["cipher_name"]
    assert [base64.b64decode(d) for d in seen["chain_der"]] == [_der(leaf)]
    assert seen["chain_pem"] == [leaf.cert_pem().decode()]
    assert seen["client_cert_name"] == leaf.cert.subject.rfc4514_string()
    errors = {errnum for errnum, _, _ in seen["verify_errors"]}
    assert UNABLE_TO_GET_ISSUER_LOCALLY in errors  # no anchors in the listener, by design
    if expected_error is not None:
        assert expected_error in errors
    assert "(depth 0)" in str(seen["client_cert_error"])
    assert set(seen["keys"]) >= {
        "client_cert_chain",
        "tls_version",
        "cipher_suite",
        "server_cert",
        "client_cert_name",
        "client_cert_error",
        chain.CHAIN_DER,
        chain.VERIFY_ERRORS,
        chain.VERSION_NAME,
        chain.CIPHER_NAME,
    }


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_a_client_without_a_certificate_reaches_the_app(
    listen: Listen, curl: Curl, pki_dir: Path, version: str
) -> None:
    running = listen()
    seen = _seen(curl(running.port, None, *_version_args(version)))
    assert seen["chain_der"] == []
    assert seen["chain_pem"] == []
    assert seen["verify_errors"] == []
    assert seen["client_cert_name"] is None
    assert seen["client_cert_error"] is None
    server = x509.load_pem_x509_certificate((pki_dir / "server.pem").read_bytes())
    assert x509.load_pem_x509_certificate(str(seen["server_cert"]).encode()) == server


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_the_app_sees_the_intermediates_the_client_sent(
    listen: Listen, curl: Curl, pki: devpki.DevPKI, version: str
) -> None:
    running = listen()
    seen = _seen(curl(running.port, "good", *_version_args(version), cert="good-chain.pem"))
    sent = [_der(pki.devices["good"]), _der(pki.intermediate)]
    assert [base64.b64decode(d) for d in seen["chain_der"]] == sent
    assert len(seen["chain_pem"]) == 2


def test_a_rogue_chain_reaches_the_app_whole(listen: Listen, curl: Curl, pki_dir: Path) -> None:
    running = listen()
    seen = _seen(curl(running.port, "rogue", cert="rogue-chain.pem"))
    sent = [
        x509.load_pem_x509_certificate(block).public_bytes(Encoding.DER)
        for block in re.findall(
            rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----",
            (pki_dir / "devices" / "rogue-chain.pem").read_bytes(),
            re.DOTALL,
        )
    ]
    assert [base64.b64decode(d) for d in seen["chain_der"]] == sent
    depths = {depth for _, depth, _ in seen["verify_errors"]}
    assert 1 in depths  # OpenSSL complained about the rogue intermediate


def test_keep_alive_requests_share_the_connection_and_its_chain(
    listen: Listen, curl: Curl, tmp_path: Path
) -> None:
    running = listen()
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    url = f"https://127.0.0.1:{running.port}/"
    result = curl(running.port, "good", "-v", "-o", str(first), url, "-o", str(second))
    assert result.returncode == 0, result.stderr
    assert "Re-using existing connection" in result.stderr
    one, two = json.loads(first.read_text()), json.loads(second.read_text())
    assert one["client"] == two["client"]  # one TCP connection
    assert one["chain_der"] == two["chain_der"] != []
    assert one["verify_errors"] == two["verify_errors"]


def test_the_client_is_the_socket_peer_not_a_forwarded_header(listen: Listen, curl: Curl) -> None:
    running = listen()
    seen = _seen(curl(running.port, "good", "-H", "X-Forwarded-For: 203.0.113.9"))
    client = seen["client"]
    assert isinstance(client, list)
    assert client[0] == "127.0.0.1"


def test_a_large_upload_survives_paused_reading(listen: Listen, curl: Curl, tmp_path: Path) -> None:
    running = listen()
    body = bytes(range(256)) * (4 * 4096)  # 4 MiB: uvicorn pauses reading above 64 KiB
    upload = tmp_path / "body.bin"
    upload.write_bytes(body)
    result = curl(running.port, "good", "--data-binary", f"@{upload}", path="/upload")
    seen = _seen(result)
    assert seen == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_a_large_response_arrives_whole(listen: Listen, curl: Curl, tmp_path: Path) -> None:
    running = listen()
    size = 8 * 1024 * 1024 + 123
    out = tmp_path / "big.bin"
    result = curl(running.port, "good", "-o", str(out), path=f"/big?n={size}")
    assert result.returncode == 0, result.stderr
    data = out.read_bytes()
    assert len(data) == size
    assert data[:65536] == bytes([0]) * 65536
    assert data[-1] == (size - 1) // 65536 % 251


@pytest.mark.parametrize("lifespan", ["on", "off"])
def test_the_app_lifespan_runs_only_when_asked(
    listen: Listen, curl: Curl, app_factory: Callable[..., Any], lifespan: str
) -> None:
    events: list[str] = []
    running = listen(app=app_factory(events), lifespan=lifespan)
    assert curl(running.port, "good").returncode == 0
    running.stop()
    assert events == (["startup", "shutdown"] if lifespan == "on" else [])
