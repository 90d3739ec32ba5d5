"""``certbound quickstart`` as the README runs it: set up, then serve; the commands it prints
work (curl: the good device allowed, the bad ones refused with their reason code; a
certificate-bound token for the good device, a refusal for another), and Ctrl-C stops it
cleanly."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

CURL = shutil.which("curl")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CURL is None, reason="curl is not installed")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


EXPECTED = {
    "good": None,
    "expired": "CERTIFICATE_EXPIRED",
    "foreign": "UNKNOWN_CA",
    "revoked": "REVOKED_CERTIFICATE",
    "server-auth-only": "EKU_NOT_CLIENT_AUTH",
}


def _printed_curls(output: str, path: str) -> dict[str, list[str]]:
    """The curl commands to ``path`` quickstart printed, by the device named in the comment
    above each."""
    commands: dict[str, list[str]] = {}
    device = ""
    for line in output.splitlines():
        text = line.strip()
        if text.startswith("# "):
            device = text[2:].split(":", 1)[0]
        elif text.startswith("curl ") and path in text:
            commands[device] = shlex.split(text)
    return commands


def test_quickstart_serves_and_its_commands_work(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTBOUND_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "certbound", "quickstart", "--dir", str(tmp_path / "demo"),
         "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    output = ""
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while "Press Ctrl-C to stop." not in output:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, output
            output += process.stdout.readline()
        commands = _printed_curls(output, "/api/v1/intake/echo")
        assert set(commands) >= {"good", "expired", "foreign", "revoked"}
        for device, reason in EXPECTED.items():
            body = _until_served(commands[device])
            assert body["reason"] == reason, (device, body)
            assert body["verdict"] == ("ALLOW" if reason is None else "DENY")
        tokens = _printed_curls(output, "/oauth2/v1/token")
        granted = _until_served(tokens["good"])
        assert granted["token_type"] == "Bearer" and granted["access_token"]
        refused = _until_served(tokens["cn-only"])
        assert refused["reason"] == "CERTIFICATE_NOT_BOUND_TO_CLIENT"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, err
    assert "Traceback" not in err


def _until_served(command: list[str]) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while True:
        done = subprocess.run(
            [*command, "-sS", "--max-time", "10"],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if done.returncode == 0:
            body: dict[str, object] = json.loads(done.stdout)
            return body
        assert time.monotonic() < deadline, done.stderr
        time.sleep(0.3)
