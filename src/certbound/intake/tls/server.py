"""The built-in TLS listener: uvicorn's server with :class:`~.connection.TlsConnection`.

:class:`TlsListener` binds its own socket (so a bind error is an ``OSError`` for the caller,
not uvicorn's ``sys.exit``), builds a uvicorn ``Config`` (``http=TlsConnection``,
``proxy_headers`` off: ``scope["client"]`` is the socket peer, never a header; WebSockets
off; uvicorn's logging configuration left alone) and drives uvicorn's ``Server`` without
its signal handling: ``startup(sockets=...)``, ``main_loop()`` (the ``Date`` header) and
``shutdown()``. The app's lifespan runs only with ``lifespan="on"``, so two listeners can
share one app. Several listeners (and a plain uvicorn server) can run in one event loop;
:func:`event_loop_factory` gives uvloop when it is installed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import socket
from collections.abc import Callable
from typing import Any, Literal

from uvicorn import Server

from certbound.intake.tls.config import Judge, OnReject, TlsListenerConfig
from certbound.intake.tls.connection import TlsConnection
from certbound.intake.tls.context import build_context
from certbound.intake.tls.state import ListenerConfig, ListenerState, ListenerStats

logger = logging.getLogger(__name__)

ASGIApp = Callable[..., Any]
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TlsListener:
    """An HTTPS listener that hands every client certificate chain to the app (or judges it).

    ``judge`` is required in reject mode (``config.client_verify == "reject"``) and ignored
    in accept mode; ``on_reject`` hears of every refused handshake. The TLS context is built
    here, so an unreadable or mismatched certificate or key fails at construction.
    """

    def __init__(
        self,
        app: ASGIApp,
        config: TlsListenerConfig,
        *,
        judge: Judge | None = None,
        on_reject: OnReject | None = None,
        lifespan: Literal["on", "off"] | str = "on",
        install_signal_handlers: bool = True,
    ) -> None:
        if lifespan not in ("on", "off"):
            raise ValueError(f"lifespan must be on or off, not {lifespan!r}")
        reject = config.client_verify == "reject"
        if reject and judge is None:
            raise ValueError("reject mode needs a judge")
        active_judge = judge if reject else None
        server_context = build_context(config.cert_file, config.key_file, active_judge)
        self.config = config
        self._state = ListenerState(config, server_context, active_judge, on_reject)
        self._uvicorn_config = ListenerConfig(
            app,
            self._state,
            http=TlsConnection,
            ws="none",
            lifespan=lifespan,
            proxy_headers=False,
            server_header=False,
            log_config=None,
            timeout_keep_alive=math.ceil(config.keepalive_timeout) + 1,  # ours fires first
            timeout_graceful_shutdown=math.ceil(config.shutdown_timeout),
            backlog=config.backlog,
        )
        self._install_signal_handlers = install_signal_handlers
        self._server: Server | None = None
        self._socket: socket.socket | None = None
        self._port: int | None = None
        self._main_loop: asyncio.Task[None] | None = None
        self._stop_requested: asyncio.Event | None = None
        self._stopping: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("the TLS listener is not started")
        return self._port

    def stats(self) -> ListenerStats:
        """Open, handshaking and waiting connections, refusals, buffered output (call it in
        the listener's event loop)."""
        return self._state.stats()

    async def start(self) -> None:
        """Bind, run the app's lifespan startup (if on) and start accepting."""
        if self._server is not None:
            raise RuntimeError("the TLS listener was already started")
        self._stop_requested = asyncio.Event()
        self._socket = _bind(self.config.host, self.config.port, self.config.backlog)
        self._port = self._socket.getsockname()[1]
        config = self._uvicorn_config
        config.load()
        server = Server(config)
        server.lifespan = config.lifespan_class(config)
        self._server = server
        try:
            await server.startup(sockets=[self._socket])
        except SystemExit as exc:  # uvicorn exits when the app's lifespan startup fails
            self._socket.close()
            raise RuntimeError("the app's lifespan startup failed") from exc
        self._main_loop = asyncio.create_task(server.main_loop())
        logger.info(
            "TLS listener on https://%s:%d (client certificates: %s)",
            self.config.host,
            self.port,
            self.config.client_verify,
        )

    def request_stop(self) -> None:
        """Ask :meth:`serve` to stop (safe from a signal handler in the loop's thread)."""
        if self._stop_requested is not None:
            self._stop_requested.set()

    async def stop(self) -> None:
        """Stop accepting, close idle and handshaking connections, let running requests
        finish (up to ``shutdown_timeout``), run the lifespan shutdown (if on)."""
        if self._server is None:
            return
        self.request_stop()
        if self._stopping is None:
            self._stopping = asyncio.create_task(self._shutdown(self._server))
        await asyncio.shield(self._stopping)

    async def serve(self) -> None:
        """Start, run until :meth:`stop`, :meth:`request_stop` or (when installed) SIGINT or
        SIGTERM, then stop."""
        await self.start()
        assert self._stop_requested is not None
        installed = self._add_signal_handlers() if self._install_signal_handlers else []
        try:
            await self._stop_requested.wait()
        finally:
            loop = asyncio.get_running_loop()
            for signum in installed:
                loop.remove_signal_handler(signum)
            await self.stop()

    def _add_signal_handlers(self) -> list[int]:
        loop = asyncio.get_running_loop()
        installed: list[int] = []
        for signum in _STOP_SIGNALS:
            try:
                loop.add_signal_handler(signum, self.request_stop)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                logger.debug("TLS listener: cannot handle signal %s here", signum)
                continue
            installed.append(signum)
        return installed

    async def _shutdown(self, server: Server) -> None:
        self._state.accepting = False
        server.should_exit = True
        if self._main_loop is not None:
            await self._main_loop
        for conn in list(self._state.connections):
            conn.shutdown()  # still in the handshake (or waiting for a slot): closed now
        await server.shutdown(sockets=[self._socket] if self._socket else None)
        for conn in list(self._state.connections):
            conn.abort()  # whatever outlived the grace period
        logger.info("TLS listener on port %s stopped", self._port)


def _bind(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=backlog)
    sock.setblocking(False)
    return sock


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's event loop when it is installed (uvicorn[standard] brings it), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] depends on it
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run(listener: TlsListener) -> None:
    """Serve ``listener`` on a new (uv)loop until SIGINT or SIGTERM."""
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(listener.serve())
