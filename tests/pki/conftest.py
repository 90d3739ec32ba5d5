"""Real revocation components for the PKI tests: a local HTTP server for CRLs (and OCSP
faults), ``openssl ocsp`` responders, a port nobody listens on and a socket that never
answers. Shared through fixtures (a test module cannot import a conftest):

- ``crl_server``: a threaded ``http.server`` per test module; ``serve(path, body, ...)``
  publishes a body (with a status, a delay, with or without Content-Length) and returns its
  URL; ``hits(path)`` counts the requests that reached it.
- ``ocsp_responders``: starts ``openssl ocsp`` processes (``start``) on ports reserved with
  ``reserve_ports``; every one is terminated when the module ends.
- ``down_url``: an http URL on a port with nothing listening (connection refused).
- ``silent_url``: an http URL whose socket accepts connections and never answers.
- ``recorder`` / ``logged``: an EventRecorder on the test's ``database``, and a function
  returning the stored System Log events of one type (after a flush), oldest first.
"""

from __future__ import annotations

import collections
import contextlib
import http.server
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from certbound.clock import FixedClock
from certbound.pki import ocsp
from certbound.pki.devpki import Issued
from certbound.storage.database import Database
from certbound.storage.models import LogEvent
from certbound.syslog.recorder import EventRecorder

OPENSSL = shutil.which("openssl")


# --- the HTTP server ---------------------------------------------------------------------


@dataclass
class Route:
    body: bytes
    status: int = 200
    delay: float = 0.0
    content_length: bool = True


class CrlServer(http.server.ThreadingHTTPServer):
    """Serves fixed bodies by path (GET, and POST for OCSP-shaped faults), counting requests."""

    daemon_threads = True
    block_on_close = False
    routes: dict[str, Route]
    counts: collections.Counter[str]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def serve(
        self,
        path: str,
        body: bytes,
        *,
        status: int = 200,
        delay: float = 0.0,
        content_length: bool = True,
    ) -> str:
        """Publish ``body`` at ``path`` (replacing what was there); its URL."""
        self.routes[path] = Route(body, status, delay, content_length)
        return self.base + path

    def hits(self, path: str) -> int:
        return self.counts[path]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: CrlServer

    def _answer(self) -> None:
        self.server.counts[self.path] += 1
        route = self.server.routes.get(self.path, Route(b"not found", 404))
        time.sleep(route.delay)
        self.send_response(route.status)
        self.send_header("Content-Type", "application/octet-stream")
        if route.content_length:
            self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client gave up (timeout tests)
            self.wfile.write(route.body)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._answer()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def crl_server() -> Iterator[CrlServer]:
    httpd = CrlServer(("127.0.0.1", 0), _Handler)
    httpd.routes = {}
    httpd.counts = collections.Counter()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as http_client:
        yield http_client


# --- ports -------------------------------------------------------------------------------


def reserve_ports(count: int) -> list[int]:
    """Distinct free ports (held open together so none is handed out twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture
def down_url() -> str:
    (port,) = reserve_ports(1)
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A listening socket that never accepts in user space: the kernel completes the
    handshake, then nothing is ever sent back."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        yield f"http://127.0.0.1:{silent.getsockname()[1]}/"


# --- openssl ocsp responders -------------------------------------------------------------


@dataclass
class Responder:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def _wait_until_answering(responder: Responder, probe: bytes) -> None:
    """Poll with a real request: openssl 3.0 ocsp jams on a connection closed unused."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if responder.process.poll() is not None:
            raise RuntimeError(f"openssl ocsp exited: {responder.log.read_text()}")
        try:
            httpx.post(responder.url, content=probe, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"openssl ocsp did not answer: {responder.log.read_text()}")


class Responders:
    """Starts ``openssl ocsp`` responders and terminates them all at the end."""

    def __init__(self) -> None:
        self.started: list[Responder] = []

    reserve_ports = staticmethod(reserve_ports)

    def start(
        self,
        directory: Path,
        port: int,
        signer: Issued,
        ca: Issued,
        *,
        index: Path,
        extra: Sequence[str] = (),
    ) -> Responder:
        """A responder on ``port`` answering from the openssl ``index`` for ``ca``, signing
        with ``signer``; ready (it answered one request) when returned."""
        if OPENSSL is None:
            pytest.skip("openssl is not installed")
        directory.mkdir()
        for name, data in {
            "rsigner.pem": signer.cert_pem(),
            "rkey.pem": signer.key_pem(),
            "ca.pem": ca.cert_pem(),
        }.items():
            (directory / name).write_bytes(data)
        args = [OPENSSL, "ocsp", "-index", str(index), "-port", str(port)]
        args += ["-rsigner", str(directory / "rsigner.pem"), "-rkey", str(directory / "rkey.pem")]
        args += ["-CA", str(directory / "ca.pem"), "-timeout", "5", *extra]
        log = directory / "log.txt"
        with log.open("wb") as sink:
            process = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT)
        responder = Responder(f"http://127.0.0.1:{port}", process, log)
        self.started.append(responder)
        _wait_until_answering(responder, ocsp.build_request(ca.cert, ca.cert, nonce=None))
        return responder

    def stop_all(self) -> None:
        for responder in self.started:
            if responder.process.poll() is None:
                responder.process.terminate()
            responder.process.wait(timeout=5)


@pytest.fixture(scope="module")
def ocsp_responders() -> Iterator[Responders]:
    responders = Responders()
    try:
        yield responders
    finally:
        responders.stop_all()


# --- the System Log ----------------------------------------------------------------------


@pytest.fixture
def recorder(database: Database, clock: FixedClock, tmp_path: Path) -> Iterator[EventRecorder]:
    events = EventRecorder(database, clock, spool_dir=tmp_path / "spool")
    yield events
    events.close()


@pytest.fixture
def logged(recorder: EventRecorder, database: Database) -> Callable[[str], list[dict[str, Any]]]:
    def read(event_type: str) -> list[dict[str, Any]]:
        assert recorder.flush(10)
        query = select(LogEvent.body).where(LogEvent.event_type == event_type)
        with database.session() as session:
            bodies = list(session.scalars(query.order_by(LogEvent.seq)))
        return [json.loads(body) for body in bodies]

    return read
