"""``certbound serve``: a real server process answering a token created with the CLI;
on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from certbound.cli import serve
from certbound.cli.main import EXIT_OK, cli


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    values = {
        **os.environ,
        "CERTBOUND_DATABASE_URL": database_url,
        "CERTBOUND_DATA_DIR": str(tmp_path / "data"),
    }
    values.pop("CERTBOUND_CONFIG", None)
    return values


def certbound(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "certbound", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
def test_serve_answers_the_log_api_and_stops_on_sigint(
    database: object, env: dict[str, str]
) -> None:
    created = certbound("admin", "token", "create", "--name", "serve test", "--json", env=env)
    assert created.returncode == EXIT_OK, created.stderr
    token = json.loads(created.stdout)["token"]
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "certbound",
            "serve",
            "--tls-listen",
            "",
            "--http-listen",
            f"127.0.0.1:{port}",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.1)
        response = httpx.get(
            f"{base}/api/v1/logs",
            params={"filter": 'eventType eq "system.api_token.create"'},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text
        (event,) = response.json()
        assert event["target"][0]["id"] == json.loads(created.stdout)["id"]
        assert httpx.get(f"{base}/api/v1/logs").status_code == 401
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == EXIT_OK, err
    assert "Traceback" not in err


def test_help_names_both_listeners_and_the_plain_http_risk() -> None:
    cli.add_command(serve.serve)
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == EXIT_OK
    text = " ".join(result.stdout.split())
    assert "built-in mTLS listener" in text and "plain-HTTP listener" in text
    assert "loopback" in text and "TLS-terminating proxy" in text
    for option in ("--tls-listen", "--http-listen", "--tls-cert", "--tls-key", "--client-verify"):
        assert option in text


def test_tls_listener_without_a_certificate_is_a_usage_error(env: dict[str, str]) -> None:
    done = certbound("serve", "--tls-listen", "127.0.0.1:0", env=env)
    assert done.returncode == 2
    assert "tls_listen needs tls_cert_file and tls_key_file" in done.stderr


def test_nothing_to_serve_is_a_usage_error(env: dict[str, str]) -> None:
    done = certbound("serve", "--tls-listen", "", env=env)
    assert done.returncode == 2 and "nothing to serve" in done.stderr


def test_a_bad_listen_address_is_a_usage_error(env: dict[str, str]) -> None:
    done = certbound("serve", "--tls-listen", "", "--http-listen", "nowhere", env=env)
    assert done.returncode == 2 and "http_listen must be host:port" in done.stderr


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False),
     ("192.0.2.1", False), ("example.org", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert serve.is_loopback(host) is loopback
