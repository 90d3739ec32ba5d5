"""Hostile and careless clients: garbage instead of a ClientHello, handshakes that never
finish, slowloris headers, idle keep-alive, more connections than allowed, and a stop with
connections mid-handshake. None may crash the listener, spam tracebacks or grow memory
without bound; each is cut at its timeout."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Listen = Callable[..., Any]
Curl = Callable[..., subprocess.CompletedProcess[str]]

# The first bytes of a TLS 1.2/1.3 ClientHello record (cut short: the server waits for more).
PARTIAL_CLIENT_HELLO = bytes.fromhex("160301020001000200")


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _closed_after(sock: socket.socket, limit: float) -> float:
    """Seconds until the server closes ``sock`` (reading and dropping what it sends)."""
    start = time.monotonic()
    sock.settimeout(limit)
    with contextlib.suppress(ConnectionResetError):
        while sock.recv(65536):
            if time.monotonic() - start > limit:
                raise AssertionError("the server kept sending")
    return time.monotonic() - start


def _tls_client(pki_dir: Path, device: str = "good") -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki_dir / "server-ca.pem"))
    context.load_cert_chain(
        pki_dir / "devices" / f"{device}.pem", pki_dir / "devices" / f"{device}.key"
    )
    return context


def _noisy(records: list[logging.LogRecord]) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()}"
        for r in records
        if r.levelno >= logging.WARNING or r.exc_info is not None
    ]


@pytest.fixture
def log_records(caplog: pytest.LogCaptureFixture) -> Callable[[], list[logging.LogRecord]]:
    """The records logged so far in the test (the listener's thread included)."""
    caplog.set_level(logging.DEBUG)
    return lambda: caplog.get_records("call")


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        bytes(range(256)) * 8,
        b"\x16\x03\x01\xff\xff" + b"\x00" * 300,  # a ClientHello record of lies
    ],
)
def test_garbage_is_closed_quietly(
    listen: Listen, curl: Curl, log_records: Callable[[], list[logging.LogRecord]], garbage: bytes
) -> None:
    running = listen()
    with _connect(running.port) as sock:
        sock.sendall(garbage)
        assert _closed_after(sock, 5) < 5
    assert curl(running.port, "good").returncode == 0
    assert _noisy(log_records()) == []
    assert any("handshake" in r.getMessage() for r in log_records() if r.levelno == logging.DEBUG)


@pytest.mark.parametrize("first_bytes", [b"", PARTIAL_CLIENT_HELLO])
def test_a_handshake_that_never_finishes_is_cut_at_the_timeout(
    listen: Listen,
    curl: Curl,
    log_records: Callable[[], list[logging.LogRecord]],
    first_bytes: bytes,
) -> None:
    running = listen(handshake_timeout=1.0)
    with _connect(running.port) as sock:
        sock.sendall(first_bytes)
        elapsed = _closed_after(sock, 10)
    assert 0.8 <= elapsed < 4
    assert curl(running.port, "good").returncode == 0
    assert _noisy(log_records()) == []


def test_slowloris_headers_are_cut_at_the_header_timeout(listen: Listen, pki_dir: Path) -> None:
    running = listen(header_timeout=1.5, keepalive_timeout=30.0)
    context = _tls_client(pki_dir)
    request = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 40 + b"\r\n\r\n"
    with (
        _connect(running.port) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        start = time.monotonic()
        sent = 0
        with contextlib.suppress(OSError):
            for byte in request:  # one byte every 0.25 s: 15 s for the whole request
                tls.sendall(bytes([byte]))
                sent += 1
                time.sleep(0.25)
                if time.monotonic() - start > 8:
                    break
        elapsed = time.monotonic() - start
    assert sent < len(request)  # cut before the headers were complete
    assert 1.2 <= elapsed < 4


def test_slow_headers_on_a_kept_alive_connection_are_cut_too(listen: Listen, pki_dir: Path) -> None:
    running = listen(header_timeout=1.5, keepalive_timeout=30.0)
    context = _tls_client(pki_dir)
    with (
        _connect(running.port) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        response = tls.recv(65536)
        assert response.startswith(b"HTTP/1.1 200")
        time.sleep(0.5)  # idle, within keep-alive
        start = time.monotonic()
        with contextlib.suppress(OSError):
            for byte in b"GET / HTTP/1.1\r\nHost: localhost\r\n":
                tls.sendall(bytes([byte]))
                time.sleep(0.25)
                if time.monotonic() - start > 8:
                    break
        elapsed = time.monotonic() - start
    assert 1.2 <= elapsed < 4


def test_an_idle_kept_alive_connection_is_closed(listen: Listen, pki_dir: Path) -> None:
    running = listen(keepalive_timeout=1.0, header_timeout=30.0)
    context = _tls_client(pki_dir)
    with (
        _connect(running.port) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert tls.recv(65536).startswith(b"HTTP/1.1 200")
        start = time.monotonic()
        tls.settimeout(10)
        with contextlib.suppress(ssl.SSLError, OSError):
            while tls.recv(65536):
                pass
        assert 0.8 <= time.monotonic() - start < 4


def test_a_client_that_half_closes_still_gets_its_response(listen: Listen, pki_dir: Path) -> None:
    running = listen(keepalive_timeout=30.0)
    context = _tls_client(pki_dir)
    with (
        _connect(running.port) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        with socket.socket(fileno=os.dup(tls.fileno())) as same:
            same.shutdown(socket.SHUT_WR)  # the client is done sending (TCP FIN)
        start = time.monotonic()
        received = b""
        tls.settimeout(10)
        with contextlib.suppress(ssl.SSLError, OSError):
            while part := tls.recv(65536):
                received += part
        elapsed = time.monotonic() - start
    assert received.startswith(b"HTTP/1.1 200")  # the response was not dropped
    assert elapsed < 3  # and the server closed right after it, not at the keep-alive timeout


def test_a_client_that_stops_reading_pauses_the_app(listen: Listen, pki_dir: Path) -> None:
    """Writes are coalesced only up to 64 KiB, so the socket's pause_writing fires and reaches
    the app: what the listener holds stays far below the 32 MiB the app wants to send."""
    running = listen()
    context = _tls_client(pki_dir)
    size = 32 * 1024 * 1024
    with (
        _connect(running.port) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(f"GET /big?n={size} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        time.sleep(1.0)  # not reading: kernel buffers fill, then the transport's
        held = running.call(running.listener.stats).write_buffered
        received = 0
        tls.settimeout(20)
        deadline = time.monotonic() + 30
        while received < size and time.monotonic() < deadline:
            part = tls.recv(1 << 20)
            if not part:
                break
            received += len(part)
    assert held < 4 * 1024 * 1024, f"{held} bytes buffered in the listener"
    assert received > size  # headers + the whole body arrived after the pause


def test_handshakes_beyond_the_limit_wait_for_a_slot(listen: Listen, curl: Curl) -> None:
    running = listen(max_handshakes=2, handshake_timeout=1.5)
    silent = [_connect(running.port) for _ in range(2)]  # hold both slots, send nothing
    try:
        time.sleep(0.2)
        start = time.monotonic()
        result = curl(running.port, "good")
        waited = time.monotonic() - start
    finally:
        for sock in silent:
            sock.close()
    assert result.returncode == 0, result.stderr
    assert waited >= 1.0  # it got a slot only when the silent ones timed out


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


_HOLDER = textwrap.dedent(
    """
    import socket, ssl, sys, time
    port, count, ca, cert, key = int(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:6]
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
    held, refused = [], 0
    for _ in range(count):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            tls = context.wrap_socket(raw, server_hostname="localhost")
            tls.sendall(b"GET / HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n")
            if not tls.recv(65536).startswith(b"HTTP/1.1 200"):
                raise OSError("no response")
            held.append(tls)
        except (OSError, ssl.SSLError):
            refused += 1
            raw.close()
    print(len(held), refused, flush=True)
    sys.stdin.read()
    """
)


@pytest.mark.slow
def test_idle_connections_beyond_max_connections_are_refused_and_memory_is_bounded(
    listen: Listen, curl: Curl, pki_dir: Path
) -> None:
    running = listen(max_connections=150, keepalive_timeout=60.0, header_timeout=60.0)
    assert curl(running.port, "good").returncode == 0  # warm up: the app, the first handshake
    before = _rss_bytes()
    devices = pki_dir / "devices"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _HOLDER,
            str(running.port),
            "200",
            str(pki_dir / "server-ca.pem"),
            str(devices / "good.pem"),
            str(devices / "good.key"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        held, refused = map(int, holder.stdout.readline().split())
        grown = _rss_bytes() - before
        stats = running.call(running.listener.stats)
        full = curl(running.port, "good")
    finally:
        holder.communicate("", timeout=30)
    assert (held, refused) == (150, 50)
    assert stats.open_connections == 150
    assert stats.refused_at_accept >= 50
    assert full.returncode != 0  # still full: refused at accept
    # ~150 idle TLS connections; the prototype measured ~73 KiB each: allow 4x that
    assert grown < 150 * 300 * 1024, f"RSS grew {grown / 1e6:.1f} MB for 150 connections"
    deadline = time.monotonic() + 10
    while running.call(running.listener.stats).open_connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert curl(running.port, "good").returncode == 0  # room again once they left
    print(f"RSS growth for 150 idle TLS connections: {grown / 150 / 1024:.1f} KiB each")
    assert running.alive


def test_stop_closes_connections_mid_handshake(listen: Listen) -> None:
    running = listen(handshake_timeout=60.0, max_handshakes=2)
    socks = [_connect(running.port) for _ in range(4)]  # two in handshake, two waiting
    try:
        for sock in socks[:2]:
            sock.sendall(PARTIAL_CLIENT_HELLO)
        time.sleep(0.3)
        assert running.call(lambda: running.listener.stats().open_connections) == 4
        start = time.monotonic()
        running.stop()
        assert time.monotonic() - start < 5
        for sock in socks:
            assert _closed_after(sock, 5) < 5
    finally:
        for sock in socks:
            sock.close()
    with pytest.raises(OSError):
        _connect(running.port).close()


def test_stop_lets_a_kept_alive_client_go(listen: Listen, pki_dir: Path) -> None:
    running = listen(keepalive_timeout=60.0)
    context = _tls_client(pki_dir)
    with (
        _connect(running.port) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert tls.recv(65536).startswith(b"HTTP/1.1 200")
        start = time.monotonic()
        running.stop()
        assert time.monotonic() - start < 5
        tls.settimeout(5)
        with contextlib.suppress(ssl.SSLError, OSError):
            assert tls.recv(65536) == b""  # close_notify, then EOF


def test_the_listener_survives_a_burst_of_aborted_connections(
    listen: Listen, curl: Curl, log_records: Callable[[], list[logging.LogRecord]]
) -> None:
    running = listen()
    for index in range(100):
        sock = _connect(running.port)
        if index % 2:
            sock.sendall(PARTIAL_CLIENT_HELLO)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST
    assert curl(running.port, "good").returncode == 0
    assert _noisy(log_records()) == []
    assert running.alive


@pytest.mark.parametrize("size", [100_000, 4_000_000])
def test_an_oversized_request_head_gets_431_at_once(
    listen: Listen, curl: Curl, pki_dir: Path, size: int
) -> None:
    running = listen()
    context = _tls_client(pki_dir)
    request = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Junk: " + b"a" * size + b"\r\n\r\n"
    start = time.monotonic()
    answer = b""
    with (
        _connect(running.port) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        with contextlib.suppress(OSError):
            tls.sendall(request)
        with contextlib.suppress(OSError):
            while chunk := tls.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    assert time.monotonic() - start < 5
    assert curl(running.port, "good").returncode == 0  # still serving
