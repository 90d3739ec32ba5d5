"""No shortcuts past the certificate check: no session resumption (a resumed session would
skip the verify callback and carry only the leaf), no renegotiation (it could swap the
certificate under a connection), old protocol versions and non-AEAD suites refused."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Listen = Callable[..., Any]
Run = Callable[..., subprocess.CompletedProcess[str]]

REQUEST = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def _body(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    start = result.stdout.find("{")
    assert start >= 0, (result.stdout[-2000:], result.stderr)
    body, _ = json.JSONDecoder().raw_decode(result.stdout[start:])
    assert isinstance(body, dict)
    return body


def test_a_tls13_session_ticket_is_never_resumed(
    listen: Listen, s_client: Run, tmp_path: Path
) -> None:
    """OpenSSL still sends TLS 1.3 tickets (stateful ones, with OP_NO_TICKET: pyOpenSSL's
    bindings cannot set SSL_CTX_set_num_tickets), but the cache they point into is off."""
    running = listen()
    session = tmp_path / "session.pem"
    first = s_client(running.port, "good", "-tls1_3", "-ign_eof", "-sess_out", str(session))
    assert "HTTP/1.1 200 OK" in first.stdout, first.stderr
    assert "New, TLSv1.3" in first.stdout
    assert session.is_file()
    second = s_client(running.port, "good", "-tls1_3", "-ign_eof", "-sess_in", str(session))
    assert "HTTP/1.1 200 OK" in second.stdout, second.stderr
    assert "Reused" not in second.stdout
    assert "New, TLSv1.3" in second.stdout
    # the second connection went through the verify callback again: the chain is there
    assert _body(second)["chain_der"] == _body(first)["chain_der"] != []


def test_a_tls12_session_offers_nothing_to_resume(
    listen: Listen, s_client: Run, tmp_path: Path
) -> None:
    running = listen()
    session = tmp_path / "session.pem"
    first = s_client(running.port, "good", "-tls1_2", "-ign_eof", "-sess_out", str(session))
    assert "HTTP/1.1 200 OK" in first.stdout, first.stderr
    assert re.search(r"^\s*Session-ID: *$", first.stdout, re.M)  # no session id
    assert "TLS session ticket:" not in first.stdout  # no ticket
    assert not session.exists()  # s_client saves only a resumable session


def test_renegotiation_is_refused(listen: Listen, pki_dir: Path, curl: Any) -> None:
    running = listen()
    command = [
        "openssl",
        "s_client",
        "-connect",
        f"127.0.0.1:{running.port}",
        "-CAfile",
        str(pki_dir / "server-ca.pem"),
        "-cert",
        str(pki_dir / "devices" / "good.pem"),
        "-key",
        str(pki_dir / "devices" / "good.key"),
        "-tls1_2",
    ]
    client = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert client.stdin is not None
    try:
        deadline = time.monotonic() + 10
        time.sleep(0.5)  # let the handshake finish before the command
        client.stdin.write("R\n")  # s_client's "renegotiate" command
        client.stdin.flush()
        while client.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        if client.poll() is None:
            client.kill()
        _, err = client.communicate(timeout=10)
    assert "RENEGOTIATING" in err
    assert "no renegotiation" in err
    assert curl(running.port, "good").returncode == 0  # the listener is fine


@pytest.mark.parametrize("option", ["-tls1_1", "-tls1"])
def test_old_protocol_versions_are_refused(listen: Listen, s_client: Run, option: str) -> None:
    running = listen()
    result = s_client(running.port, "good", option, "-cipher", "DEFAULT:@SECLEVEL=0")
    assert result.returncode != 0
    assert "HTTP/1.1" not in result.stdout


def test_tls12_suites_without_ecdhe_and_aead_are_refused(listen: Listen, s_client: Run) -> None:
    running = listen()
    refused = s_client(running.port, "good", "-tls1_2", "-cipher", "AES128-SHA:AES256-GCM-SHA384")
    assert refused.returncode != 0
    assert "handshake failure" in refused.stderr
    accepted = s_client(running.port, "good", "-tls1_2", "-ign_eof")
    assert "Cipher is ECDHE-" in accepted.stdout
