"""The admin API on the real ``certbound serve`` over its built-in TLS listener, with curl,
as an operator uses it: admins and tokens made with the CLI; a help-desk token refused a CA
upload and a policy edit (403, reason, ``admin.access.deny`` events) but suspending a
device, which the mTLS path then refuses; a token bound to a device certificate working only
with that certificate; and ``certbound quickstart``'s admin token and printed curl command."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

CURL = shutil.which("curl")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CURL is None, reason="curl is not installed")]


def cli_json(server: Any, *args: str) -> dict[str, Any]:
    done = server.cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def api(server: Any, token: str, method: str, path: str, *extra: str, device: str | None = None
        ) -> tuple[int, Any]:  # fmt: skip
    """curl the admin API on the TLS listener: (status, JSON body or None)."""
    done = server.curl(
        device, "-X", method, "-H", f"Authorization: Bearer {token}", "-w", "\n%{http_code}",
        *extra, path=path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(body) if body.strip() else None


def logged(server: Any, event_type: str, count: int) -> list[dict[str, Any]]:
    """The events of a type, once the server's recorder wrote ``count`` of them."""
    deadline = time.monotonic() + 20
    while True:
        done = server.cli("log", "--json", "--filter", f'eventType eq "{event_type}"')
        assert done.returncode == 0, done.stderr
        found = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_help_desk_cannot_upload_a_ca_or_edit_a_policy_but_suspends_a_device(
    serve_tls: Callable[[str], Any],
) -> None:
    server = serve_tls("accept")
    cli_json(server, "admin", "create", "--username", "root", "--role", "SUPER_ADMIN")
    cli_json(server, "admin", "create", "--username", "desk", "--role", "HELP_DESK_ADMIN")
    desk = cli_json(server, "admin", "token", "create", "--name", "desk", "--admin", "desk")
    token = desk["token"]
    chain = server.pki / "ca-chain.pem"
    pem = ("-H", "Content-Type: application/x-pem-file", "--data-binary", f"@{chain}")
    status, body = api(server, token, "POST", "/api/v1/trust/cas", *pem)
    assert (status, body["reason"]) == (403, "FORBIDDEN_ROLE")
    status, body = api(server, token, "POST", "/api/v1/policies", "--json", '{"name": "mine"}')
    assert (status, body["reason"]) == (403, "FORBIDDEN_ROLE")
    denied = logged(server, "admin.access.deny", 2)
    assert sorted(e["debugContext"]["debugData"]["route"] for e in denied) == [
        "POST /api/v1/policies",
        "POST /api/v1/trust/cas",
    ]
    assert {e["actor"]["alternateId"] for e in denied} == {"desk"}

    assert server.echo("good")["verdict"] == "ALLOW"  # the device is registered
    status, devices = api(server, token, "GET", "/api/v1/devices")
    assert status == 200, devices
    [device] = [d for d in devices if d["subjectDn"].startswith("CN=good.")]
    suspend = f"/api/v1/devices/{device['id']}/lifecycle/suspend"
    status, body = api(server, token, "POST", suspend)
    assert (status, body["status"]) == (200, "SUSPENDED")
    refused = server.echo("good")
    assert (refused["verdict"], refused["reason"]) == ("DENY", "DEVICE_SUSPENDED")
    [event] = logged(server, "device.lifecycle.suspend", 1)
    assert event["actor"]["alternateId"] == "desk"
    assert event["authenticationContext"]["tokenId"] == desk["id"]


def test_a_bound_token_works_only_with_its_certificate(serve_tls: Callable[[str], Any]) -> None:
    server = serve_tls("accept")
    cli_json(server, "admin", "create", "--username", "root", "--role", "SUPER_ADMIN")
    good = str(server.pki / "devices" / "good.pem")
    made = cli_json(server, "admin", "token", "create", "--name", "laptop", "--admin", "root",
                    "--bind-cert", good)  # fmt: skip
    token = made["token"]
    status, body = api(server, token, "GET", "/api/v1/trust/cas")
    assert (status, body["reason"]) == (401, "INVALID_TOKEN")
    assert "presented no client certificate" in body["detail"]
    status, body = api(server, token, "GET", "/api/v1/trust/cas", device="good")
    assert status == 200 and len(body) == 1
    status, body = api(server, token, "GET", "/api/v1/trust/cas", device="cn-only")
    assert (status, body["reason"]) == (401, "INVALID_TOKEN")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_quickstart_writes_an_admin_token_and_its_curl_works(tmp_path: Path) -> None:
    port = _free_port()
    demo = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTBOUND_")}
    run = [sys.executable, "-m", "certbound"]
    setup = subprocess.run(
        [*run, "quickstart", "--dir", str(demo), "--port", str(port), "--no-serve"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert setup.returncode == 0, setup.stderr
    token_file = demo / "admin-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    [command] = [line.strip() for line in setup.stdout.splitlines()
                 if line.strip().startswith("curl ") and "/api/v1/trust/cas" in line]  # fmt: skip
    assert f"$(cat {token_file})" in command
    again = subprocess.run(
        [*run, "quickstart", "--dir", str(demo), "--port", str(port), "--no-serve"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    serve = subprocess.Popen(
        [*run, "--config", str(demo / "certbound.toml"), "serve"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        cas = _until_served(command)
        assert [ca["name"] for ca in cas] == ["Certbound Dev CA chain (quickstart)"]
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(timeout=30)
    revoked = subprocess.run(
        [*run, "--config", str(demo / "certbound.toml"), "admin", "token", "list", "--json"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    statuses = [t["status"] for t in json.loads(revoked.stdout)["tokens"]]
    assert sorted(statuses) == ["active", "revoked"]  # the first run's token was revoked


def _until_served(command: str) -> Any:
    deadline = time.monotonic() + 30
    while True:
        done = subprocess.run(
            ["bash", "-c", command + " -sS --fail-with-body"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        if done.returncode == 0:
            return json.loads(done.stdout)
        assert time.monotonic() < deadline, done.stderr + done.stdout
        time.sleep(0.3)
