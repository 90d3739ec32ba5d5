"""Shared fixtures for the functional tests that run the real ``certbound serve`` behind a
real TLS-terminating proxy (test_behind_nginx.py, test_behind_haproxy.py).

- ``behind_proxy``: a factory that writes a dev PKI and ``certbound.toml`` under a short
  directory (Unix socket paths are limited to about 100 bytes), uploads the CA chain with the
  dev CRL, starts ``certbound serve`` on its plain-HTTP listener (a Unix socket or a free
  loopback port), waits for ``/healthz``, and returns a :class:`Certbound`. Every server
  it started is stopped at the end of the test, which then checks it exited cleanly.
- ``daemon``: a factory that starts a proxy process in the foreground, waits until its TLS
  port (``Certbound.proxy_port``, reserved for it) accepts connections, and stops it at the
  end of the test.
- ``deploy_file``: ``(name, replacements)`` renders docs/deploy/NAME for the test.
- :class:`Certbound`'s ``curl`` and ``echo`` call ``GET /api/v1/intake/echo`` through the
  proxy with a device's certificate (curl, like a real client) or straight to the plain
  listener; ``event`` waits for a ``device.trust.verify`` event by id.

``deploy_file`` swaps the deploy file's example values for the test's and fails if one is
missing or repeated: the file that ships is the file that is tested.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from certbound.pki import devpki
from certbound.storage.database import Database

Popen = subprocess.Popen[bytes]
REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "docs" / "deploy"
# Debian installs nginx and haproxy in sbin, which a non-root PATH may leave out.
_SEARCH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])


def find_binary(name: str) -> str | None:
    return shutil.which(name, path=_SEARCH)


CURL = find_binary("curl")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def deploy_file() -> Callable[[str, Sequence[tuple[str, str]]], str]:
    """docs/deploy/NAME with each example value replaced; each must occur exactly once."""

    def render(name: str, replacements: Sequence[tuple[str, str]]) -> str:
        text = (DEPLOY / name).read_text()
        for old, new in replacements:
            count = text.count(old)
            assert count == 1, f"docs/deploy/{name} has {count} copies of {old!r}; expected 1"
            text = text.replace(old, new)
        return text

    return render


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _spawn(argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> Popen:
    """Start ``argv`` with its output going to ``log`` (a pipe nobody reads would fill up)."""
    with log.open("ab") as out:
        return subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, env=env)


@dataclass
class Certbound:
    """A running ``certbound serve`` and the proxy URL in front of it (once set)."""

    root: Path
    env: dict[str, str]
    process: Popen
    http_listen: str
    proxy_port: int = field(default_factory=free_port)
    tls_port: int | None = None  # Certbound's own TLS listener, when it runs one

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def log(self) -> Path:
        """What ``certbound serve`` printed."""
        return self.root / "serve.log"

    @property
    def proxy_url(self) -> str:
        return f"https://127.0.0.1:{self.proxy_port}"

    @property
    def url(self) -> str:
        """The HTTPS front door: Certbound's TLS listener, else the proxy."""
        port = self.tls_port or self.proxy_port
        return f"https://127.0.0.1:{port}"

    def device_files(self, device: str, *, with_chain: bool = False) -> tuple[Path, Path]:
        """The device's certificate file (leaf, or leaf + intermediate) and key file."""
        cert = self.pki / "devices" / f"{device}.pem"
        if with_chain:
            cert = self.pki / "devices" / f"{device}-chain.pem"
        return cert, self.pki / "devices" / f"{device}.key"

    def curl(
        self,
        device: str | None,
        *extra: str,
        path: str = "/api/v1/intake/echo",
        with_chain: bool = False,
        direct: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """curl the HTTPS front door (:attr:`url`, a client certificate if ``device``), or
        with ``direct`` straight to Certbound's plain-HTTP listener."""
        args = [CURL or "curl", "-sS", "--max-time", "20"]
        if direct:
            if self.http_listen.startswith("unix:"):
                args += ["--unix-socket", self.http_listen.removeprefix("unix:")]
                url = "http://localhost" + path
            else:
                url = f"http://{self.http_listen}{path}"
        else:
            args += ["--cacert", str(self.pki / "server-ca.pem")]
            url = self.url + path
        if device is not None:
            cert, key = self.device_files(device, with_chain=with_chain)
            args += ["--cert", str(cert), "--key", str(key)]
        return subprocess.run(
            [*args, *extra, url], check=False, capture_output=True, text=True, timeout=30
        )

    def echo(
        self, device: str | None, *extra: str, with_chain: bool = False, direct: bool = False
    ) -> dict[str, Any]:
        done = self.curl(device, *extra, with_chain=with_chain, direct=direct)
        assert done.returncode == 0, done.stderr
        try:
            body: dict[str, Any] = json.loads(done.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"not JSON from the echo endpoint: {done.stdout[:500]!r}")
        return body

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "certbound", *args],
            check=False,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def events(self) -> list[dict[str, Any]]:
        done = self.cli("log", "--json", "--filter", 'eventType eq "device.trust.verify"')
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    def event(self, uuid: str) -> dict[str, Any]:
        """The event ``uuid`` once the recorder has written it (it writes asynchronously)."""
        deadline = time.monotonic() + 15
        while not (found := [e for e in self.events() if e["uuid"] == uuid]):
            assert time.monotonic() < deadline, f"event {uuid} was not written"
            time.sleep(0.2)
        return found[0]


def _write_pki(root: Path) -> None:
    pki = devpki.build_dev_pki()
    devpki.write_dev_pki(pki, root / "pki")
    devices = root / "pki" / "devices"
    intermediate = (root / "pki" / "intermediate.pem").read_text()
    for name in pki.devices:
        leaf = (devices / f"{name}.pem").read_text()
        (devices / f"{name}-chain.pem").write_text(leaf + intermediate)


def _wait_ready(server: Certbound) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"certbound serve exited early: {server.log.read_text()}")
        done = server.curl(None, path="/healthz", direct=True)
        if done.returncode == 0 and '"ok"' in done.stdout:
            return
        time.sleep(0.2)
    pytest.fail("certbound serve did not become ready on its plain-HTTP listener")


def _launch(root: Path, database_url: str, settings: str) -> Certbound:
    """The dev PKI and a config (``settings``: TOML lines) in ``root``, the CA chain uploaded
    with its CRL, and ``certbound serve`` started (not yet ready)."""
    _write_pki(root)
    config = root / "certbound.toml"
    config.write_text(f'data_dir = "."\ndatabase_url = "{database_url}"\n{settings}')
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTBOUND_")}
    env["CERTBOUND_CONFIG"] = str(config)
    crl = (root / "pki" / "intermediate.crl.pem").as_uri()
    chain = str(root / "pki" / "ca-chain.pem")
    added = subprocess.run(
        [sys.executable, "-m", "certbound", "ca", "add", chain, "--crl-url", crl],
        check=False, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    process = _spawn([sys.executable, "-m", "certbound", "serve"], root / "serve.log", env)
    return Certbound(root, env, process, "")


@pytest.fixture
def servers() -> Iterator[list[Certbound]]:
    """The servers a test started: stopped after it; each must exit 0 without a traceback."""
    started: list[Certbound] = []
    yield started
    outputs = []
    for server in started:
        _stop(server.process)
        outputs.append((server.process.returncode, server.log.read_text()))
        shutil.rmtree(server.root, ignore_errors=True)
    for returncode, output in outputs:
        assert returncode == 0, output
        assert "Traceback" not in output, output


@pytest.fixture
def behind_proxy(
    database: Database, database_url: str, servers: list[Certbound]
) -> Callable[..., Certbound]:
    """``start(proxy_header, *, unix, trusted_proxies)``: a running Certbound (see module doc)."""

    def start(proxy_header: str, *, unix: bool, trusted_proxies: Sequence[str]) -> Certbound:
        root = Path(tempfile.mkdtemp(prefix="cb-proxy-"))
        listen = f"unix:{root / 'http.sock'}" if unix else f"127.0.0.1:{free_port()}"
        server = _launch(
            root,
            database_url,
            f'tls_listen = ""\nhttp_listen = "{listen}"\n'
            f"trusted_proxies = {json.dumps(list(trusted_proxies))}\n"
            f'proxy_header = "{proxy_header}"\n',
        )
        server.http_listen = listen
        servers.append(server)
        _wait_ready(server)
        return server

    return start


@pytest.fixture
def serve_tls(
    database: Database, database_url: str, servers: list[Certbound]
) -> Callable[[str], Certbound]:
    """``start(client_verify)``: a running Certbound on its built-in TLS listener only."""

    def start(client_verify: str) -> Certbound:
        root = Path(tempfile.mkdtemp(prefix="cb-tls-"))
        port = free_port()
        server = _launch(
            root,
            database_url,
            f'tls_listen = "127.0.0.1:{port}"\ntls_cert_file = "pki/server.pem"\n'
            f'tls_key_file = "pki/server.key"\ntls_client_verify = "{client_verify}"\n',
        )
        server.tls_port = port
        servers.append(server)
        deadline = time.monotonic() + 30
        # reject mode refuses clients without a certificate: ask as the good device
        while (done := server.curl("good", path="/healthz")).returncode != 0:
            if server.process.poll() is not None:
                pytest.fail(f"certbound serve exited early: {server.log.read_text()}")
            assert time.monotonic() < deadline, f"not ready: {done.stderr}"
            time.sleep(0.2)
        return server

    return start


@pytest.fixture
def daemon() -> Iterator[Callable[..., Popen]]:
    """``start(argv, port, log)``: a foreground proxy process writing its output to ``log``,
    ready when ``port`` accepts connections."""
    started: list[Popen] = []

    def start(argv: Sequence[str], port: int, log: Path) -> Popen:
        process = _spawn(argv, log)
        started.append(process)
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                pytest.fail(f"{argv[0]} exited with {process.returncode}: {log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return process
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{argv[0]} did not listen on port {port}")
                time.sleep(0.1)

    yield start
    for process in started:
        _stop(process)
