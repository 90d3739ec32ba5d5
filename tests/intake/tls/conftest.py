"""Fixtures for the TLS listener tests: a dev PKI on disk, a small Starlette app that shows
what it saw in ``scope["extensions"]["tls"]``, and real listeners in background threads.

- ``pki`` / ``pki_dir``: ``build_dev_pki()`` written with ``write_dev_pki`` (once per
  module), plus ``devices/good-chain.pem`` (leaf + intermediate) and a rogue hierarchy:
  ``devices/rogue.pem`` + ``.key`` and ``devices/rogue-chain.pem`` (leaf + the rogue
  intermediate), for "unknown CA with an intermediate".
- ``app_factory(lifespan_events=None)``: a new test app (the default one listeners get).
- ``listen(judge=..., on_reject=..., app=..., lifespan=..., **config)``: starts a
  :class:`TlsListener` on 127.0.0.1, port 0, in its own thread and (uv)loop, and returns a
  :class:`Running` (port, ``stop()``); every listener still running at the end of the test
  is stopped.
- ``curl(port, device, *args, path=..., cert=...)`` / ``s_client(port, device, *args,
  stdin=..., chain=...)``: the real clients, bounded in time, with the dev PKI's files
  (``device`` None: no client certificate; ``cert`` / ``chain`` name a chain file in
  ``devices/``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from certbound.intake import chain
from certbound.intake.tls import TlsListener, TlsListenerConfig, event_loop_factory
from certbound.intake.tls.config import Judge, OnReject
from certbound.pki import devpki

CURL = shutil.which("curl")
OPENSSL = shutil.which("openssl")


# --- the app ----------------------------------------------------------------------------


async def _echo(request: Request) -> Response:
    tls = request.scope["extensions"]["tls"]
    return JSONResponse(
        {
            "scheme": request.scope["scheme"],
            "client": list(request.scope["client"]),
            "keys": sorted(tls),
            "chain_pem": list(tls["client_cert_chain"]),
            "chain_der": [base64.b64encode(d).decode() for d in tls[chain.CHAIN_DER]],
            "verify_errors": [list(e) for e in tls[chain.VERIFY_ERRORS]],
            "tls_version": tls["tls_version"],
            "cipher_suite": tls["cipher_suite"],
            "version_name": tls[chain.VERSION_NAME],
            "cipher_name": tls[chain.CIPHER_NAME],
            "client_cert_name": tls["client_cert_name"],
            "client_cert_error": tls["client_cert_error"],
            "server_cert": tls["server_cert"],
        }
    )


async def _upload(request: Request) -> Response:
    """Reads the body slowly (so uvicorn pauses reading) and returns its digest."""
    digest = hashlib.sha256()
    size = 0
    async for part in request.stream():
        digest.update(part)
        size += len(part)
        await asyncio.sleep(0.002)
    return JSONResponse({"size": size, "sha256": digest.hexdigest()})


async def _big(request: Request) -> Response:
    """``n`` bytes of a repeating pattern, streamed in 64 KiB parts."""
    total = int(request.query_params["n"])

    async def body() -> Any:
        sent = 0
        while sent < total:
            part = min(65536, total - sent)
            yield bytes([sent // 65536 % 251]) * part
            sent += part

    return StreamingResponse(body(), media_type="application/octet-stream")


def make_app(lifespan_events: list[str] | None = None) -> Starlette:
    """The test app; its lifespan appends "startup" and "shutdown" to ``lifespan_events``."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        if lifespan_events is not None:
            lifespan_events.append("startup")
        yield
        if lifespan_events is not None:
            lifespan_events.append("shutdown")

    routes = [
        Route("/", _echo),
        Route("/upload", _upload, methods=["POST"]),
        Route("/big", _big),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


@pytest.fixture
def app_factory() -> Callable[..., Starlette]:
    return make_app


# --- the PKI ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[devpki.DevPKI, Path]:
    pki = devpki.build_dev_pki()
    directory = tmp_path_factory.mktemp("pki")
    devpki.write_dev_pki(pki, directory)
    devices = directory / "devices"
    (devices / "good-chain.pem").write_bytes(
        devpki.pem_bundle([pki.devices["good"], pki.intermediate])
    )
    rogue_root = devpki.ca("Rogue Root CA", organisation="Rogue Ltd")
    rogue_inter = devpki.ca("Rogue Issuing CA", rogue_root, organisation="Rogue Ltd")
    rogue = devpki.issue("rogue.devices.example", rogue_inter)
    (devices / "rogue.pem").write_bytes(rogue.cert_pem())
    (devices / "rogue.key").write_bytes(rogue.key_pem())
    (devices / "rogue-chain.pem").write_bytes(devpki.pem_bundle([rogue, rogue_inter]))
    return pki, directory


@pytest.fixture(scope="module")
def pki(pki_bundle: tuple[devpki.DevPKI, Path]) -> devpki.DevPKI:
    return pki_bundle[0]


@pytest.fixture(scope="module")
def pki_dir(pki_bundle: tuple[devpki.DevPKI, Path]) -> Path:
    return pki_bundle[1]


# --- listeners --------------------------------------------------------------------------


class Running:
    """A listener serving in a background thread with its own event loop."""

    def __init__(self, listener: TlsListener) -> None:
        self.listener = listener
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="tls-listener")
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError("the TLS listener did not start within 30 s")
        if self.error is not None:
            raise self.error

    @property
    def port(self) -> int:
        return self.listener.port

    def _run(self) -> None:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            self.loop = runner.get_loop()
            runner.run(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.listener.start()
        except BaseException as exc:
            self.error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stop.wait()
        await self.listener.stop()

    def call(self, function: Callable[[], Any]) -> Any:
        """Run ``function`` in the listener's loop and return its result."""
        assert self.loop is not None

        async def run() -> Any:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def stop(self, timeout: float = 30) -> None:
        if self._thread.is_alive() and self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the TLS listener did not stop in time")

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


Listen = Callable[..., Running]


@pytest.fixture
def listen(pki_dir: Path) -> Iterator[Listen]:
    started: list[Running] = []

    def start(
        *,
        app: Any = None,
        judge: Judge | None = None,
        on_reject: OnReject | None = None,
        lifespan: str = "on",
        **overrides: Any,
    ) -> Running:
        config = TlsListenerConfig(
            host="127.0.0.1",
            port=0,
            cert_file=pki_dir / "server.pem",
            key_file=pki_dir / "server.key",
        )
        config = replace(config, **overrides)
        listener = TlsListener(
            app if app is not None else make_app(),
            config,
            judge=judge,
            on_reject=on_reject,
            lifespan=lifespan,
            install_signal_handlers=False,
        )
        running = Running(listener)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


# --- clients ----------------------------------------------------------------------------


def _need(tool: str | None, name: str) -> str:
    if tool is None:
        pytest.fail(f"{name} is not installed (/usr/bin/{name})")
    return tool


Curl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def curl(pki_dir: Path) -> Curl:
    def run(
        port: int, device: str | None, *args: str, path: str = "/", cert: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        command = [_need(CURL, "curl"), "-sS", "--max-time", "20"]
        command += ["--cacert", str(pki_dir / "server-ca.pem")]
        if device is not None:
            certificate = cert or f"{device}.pem"
            command += ["--cert", str(pki_dir / "devices" / certificate)]
            command += ["--key", str(pki_dir / "devices" / f"{device}.key")]
        command += [*args, f"https://127.0.0.1:{port}{path}"]
        return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)

    return run


SClient = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def s_client(pki_dir: Path) -> SClient:
    def run(
        port: int,
        device: str | None,
        *args: str,
        stdin: str = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        chain: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        command = [_need(OPENSSL, "openssl"), "s_client", "-connect", f"127.0.0.1:{port}"]
        command += ["-CAfile", str(pki_dir / "server-ca.pem"), "-servername", "localhost"]
        if device is not None:
            command += ["-cert", str(pki_dir / "devices" / f"{device}.pem")]
            command += ["-key", str(pki_dir / "devices" / f"{device}.key")]
        if chain is not None:  # s_client sends only -cert's first certificate otherwise
            command += ["-cert_chain", str(pki_dir / "devices" / chain)]
        command += list(args)
        return subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=30, check=False
        )

    return run
