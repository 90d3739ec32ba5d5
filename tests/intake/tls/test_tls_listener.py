"""The listener's life cycle and configuration: settings validated up front, certificate and
key problems at construction, bind errors as OSError, a server chain file, SIGTERM through
``serve()`` in a real process, and the lazily converted PEM chain."""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from certbound.intake.tls import TlsListener, TlsListenerConfig
from certbound.intake.tls.extension import PemChain
from certbound.pki import devpki

Listen = Callable[..., Any]
Curl = Callable[..., subprocess.CompletedProcess[str]]


async def _app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover - not served
    raise AssertionError("not served")


def _config(pki_dir: Path, **overrides: Any) -> TlsListenerConfig:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "cert_file": pki_dir / "server.pem",
        "key_file": pki_dir / "server.key",
        **overrides,
    }
    return TlsListenerConfig(**values)


@pytest.mark.parametrize(
    "overrides",
    [
        {"client_verify": "optional"},
        {"handshake_timeout": 0},
        {"header_timeout": -1.0},
        {"keepalive_timeout": 0.0},
        {"max_connections": 0},
        {"max_handshakes": 0},
    ],
)
def test_bad_settings_are_refused(pki_dir: Path, overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        _config(pki_dir, **overrides)


def test_reject_mode_needs_a_judge(pki_dir: Path) -> None:
    with pytest.raises(ValueError, match="judge"):
        TlsListener(_app, _config(pki_dir, client_verify="reject"))


def test_lifespan_is_on_or_off(pki_dir: Path) -> None:
    with pytest.raises(ValueError, match="lifespan"):
        TlsListener(_app, _config(pki_dir), lifespan="auto")


def test_a_missing_key_file_is_an_os_error(pki_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        TlsListener(_app, _config(pki_dir, key_file=tmp_path / "absent.key"))


def test_a_key_that_does_not_match_the_certificate_is_refused(pki_dir: Path) -> None:
    other_key = pki_dir / "devices" / "good.key"
    with pytest.raises(ValueError, match="refused"):
        TlsListener(_app, _config(pki_dir, key_file=other_key))


def test_a_busy_port_is_an_os_error(pki_dir: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        listener = TlsListener(_app, _config(pki_dir, port=busy.getsockname()[1]))
        with pytest.raises(OSError):
            asyncio.run(listener.start())


def test_a_failing_lifespan_startup_fails_start(listen: Listen) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    with pytest.raises(RuntimeError, match="lifespan startup failed"):
        listen(app=app)


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_an_ipv6_listener_serves(listen: Listen, pki_dir: Path) -> None:
    running = listen(host="::1")
    command = ["curl", "-sS", "--max-time", "20", "--cacert", str(pki_dir / "server-ca.pem")]
    command += ["--cert", str(pki_dir / "devices" / "good.pem")]
    command += ["--key", str(pki_dir / "devices" / "good.key")]
    command += [f"https://[::1]:{running.port}/"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert '"client":["::1",' in result.stdout.replace(" ", "")


def test_the_server_certificate_file_may_hold_its_chain(
    listen: Listen, curl: Curl, pki: devpki.DevPKI, tmp_path: Path, pki_dir: Path
) -> None:
    intermediate = devpki.ca("Server Issuing CA", pki.server_ca)
    server = devpki.server_certificate(intermediate, pki.server.cert.not_valid_before_utc)
    (tmp_path / "server-chain.pem").write_bytes(devpki.pem_bundle([server, intermediate]))
    (tmp_path / "server.key").write_bytes(server.key_pem())
    running = listen(cert_file=tmp_path / "server-chain.pem", key_file=tmp_path / "server.key")
    # the client trusts only the server root: it needs the intermediate from the server
    result = curl(running.port, "good")
    assert result.returncode == 0, result.stderr
    command = ["openssl", "s_client", "-connect", f"127.0.0.1:{running.port}", "-showcerts"]
    command += ["-CAfile", str(pki_dir / "server-ca.pem")]
    shown = subprocess.run(
        command, input="", capture_output=True, text=True, timeout=30, check=False
    )
    assert shown.stdout.count("-----BEGIN CERTIFICATE-----") == 2
    assert "Verify return code: 0 (ok)" in shown.stdout


def test_stop_before_start_and_twice_is_harmless(listen: Listen) -> None:
    running = listen()
    running.stop()
    running.stop()


_SERVE = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from certbound.intake.tls import TlsListener, TlsListenerConfig, event_loop_factory

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main():
        pki = Path(sys.argv[1])
        config = TlsListenerConfig("127.0.0.1", 0, pki / "server.pem", pki / "server.key")
        listener = TlsListener(app, config, lifespan="off")
        serving = asyncio.create_task(listener.serve())
        while True:
            try:
                print(listener.port, flush=True)
                break
            except RuntimeError:
                await asyncio.sleep(0.01)
        await serving
        print("stopped", flush=True)

    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(main())
    """
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_on_a_signal(pki_dir: Path, curl: Curl, signum: int) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVE, str(pki_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        time.sleep(0.2)  # start() finishes after the port is known
        result = curl(port, "good")
        assert result.returncode == 0, result.stderr
        assert result.stdout == "ok"
        process.send_signal(signum)
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert out.strip() == "stopped"
    assert "Traceback" not in err


def test_the_pem_chain_converts_lazily_and_compares_like_a_list(pki: devpki.DevPKI) -> None:
    ders = tuple(
        item.cert.public_bytes(Encoding.DER) for item in (pki.devices["good"], pki.intermediate)
    )
    chain = PemChain(ders)
    assert len(chain) == 2
    assert chain._pem is None  # nothing converted yet
    assert chain[0] == pki.devices["good"].cert_pem().decode()
    assert list(chain) == [ssl.DER_cert_to_PEM_cert(d) for d in ders]
    assert chain == list(chain)
    assert chain[1:] == (chain[1],)
    assert PemChain(()) == []
