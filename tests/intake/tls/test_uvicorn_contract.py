"""The uvicorn internals the TLS listener relies on (uvicorn is pinned exactly; an upgrade
that moves any of these fails here, not in production). See
docs/decisions/0003-tls-listener.md, "uvicorn internals"."""

from __future__ import annotations

import asyncio
import inspect
import socket
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.config import LIFESPAN, Config
from uvicorn.lifespan.off import LifespanOff
from uvicorn.lifespan.on import LifespanOn
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http import flow_control
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import get_remote_addr, is_ssl
from uvicorn.server import Server, ServerState

from certbound.intake.tls.transport import TlsTransport

REPO = Path(__file__).resolve().parents[3]


def _pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {}
    for requirement in project["dependencies"]:
        name, sep, version = requirement.partition("==")
        if sep:
            pins[name.split("[")[0].strip().lower()] = version.strip()
    return pins


def test_uvicorn_and_httptools_are_pinned_to_what_is_installed() -> None:
    pins = _pins()
    assert pins["uvicorn"] == metadata.version("uvicorn") == uvicorn.__version__
    assert pins["httptools"] == metadata.version("httptools")


async def _app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover - not called
    raise AssertionError("not called")


def _config(**kwargs: Any) -> Config:
    return Config(_app, log_config=None, **kwargs)


def test_config_takes_the_arguments_the_listener_passes() -> None:
    class Probe(asyncio.Protocol):
        pass

    config = _config(
        http=Probe,
        ws="none",
        lifespan="off",
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=6,
        timeout_graceful_shutdown=10,
        backlog=128,
    )
    config.load()
    assert config.http_protocol_class is Probe  # a class passes through as the protocol
    assert config.ws_protocol_class is None
    assert config.lifespan_class is LifespanOff
    assert not isinstance(config.loaded_app, ProxyHeadersMiddleware)  # client = socket peer
    assert config.timeout_graceful_shutdown == 10
    assert config.backlog == 128
    assert config.encoded_headers == []  # no "server: uvicorn"
    assert LIFESPAN["on"].endswith("LifespanOn") and LifespanOn


def test_the_server_builds_protocols_with_the_documented_arguments() -> None:
    """Server.startup(sockets=...) calls config.http_protocol_class(config=, server_state=,
    app_state=, _loop=) per accepted socket; main_loop and shutdown run without signals."""
    made: list[dict[str, Any]] = []

    class Probe(asyncio.Protocol):
        def __init__(self, **kwargs: Any) -> None:
            made.append(kwargs)

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            transport.close()

    async def scenario() -> None:
        config = _config(http=Probe, lifespan="off", ws="none")
        config.load()
        server = Server(config)
        server.lifespan = config.lifespan_class(config)
        sock = socket.create_server(("127.0.0.1", 0))
        sock.setblocking(False)
        await server.startup(sockets=[sock])
        assert server.started
        main = asyncio.create_task(server.main_loop())
        port = sock.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(100):
            if made:
                break
            await asyncio.sleep(0.02)
        writer.close()
        assert server.server_state.default_headers  # main_loop's first tick: Date
        server.should_exit = True
        await asyncio.wait_for(main, 5)
        await server.shutdown(sockets=[sock])

    asyncio.run(scenario())
    assert len(made) == 1
    assert set(made[0]) == {"config", "server_state", "app_state", "_loop"}
    assert isinstance(made[0]["server_state"], ServerState)


def test_the_server_state_and_shutdown_the_listener_uses() -> None:
    state = ServerState()
    assert isinstance(state.connections, set)
    assert isinstance(state.tasks, set)
    assert isinstance(state.default_headers, list)
    parameters = inspect.signature(Server.shutdown).parameters
    assert "sockets" in parameters
    assert "sockets" in inspect.signature(Server.startup).parameters
    assert inspect.iscoroutinefunction(Server.main_loop)
    assert "capture_signals" not in inspect.getsource(Server.startup)  # no signal handling


def test_the_httptools_protocol_hooks_the_listener_extends() -> None:
    parameters = list(inspect.signature(HttpToolsProtocol.__init__).parameters)
    assert parameters == ["self", "config", "server_state", "app_state", "_loop"]
    for name in (
        "on_message_begin",
        "on_headers_complete",
        "on_response_complete",
        "connection_made",
        "connection_lost",
        "data_received",
        "shutdown",
        "pause_writing",
        "resume_writing",
    ):
        assert callable(getattr(HttpToolsProtocol, name)), name
    # the request's scope is built in on_message_begin, as self.scope
    assert "self.scope = {" in inspect.getsource(HttpToolsProtocol.on_message_begin)
    # responses report completion through on_response_complete (keep-alive timer)
    assert "on_response=self.on_response_complete" in inspect.getsource(
        HttpToolsProtocol.on_headers_complete
    )
    # connections register in server_state.connections (graceful shutdown reaches them)
    assert "self.connections.add(self)" in inspect.getsource(HttpToolsProtocol.connection_made)


def test_what_uvicorn_asks_of_the_transport_is_what_tls_transport_answers() -> None:
    # scheme "https" comes from a truthy sslcontext; scope["client"] from the socket peer
    assert 'get_extra_info("sslcontext")' in inspect.getsource(is_ssl)
    remote = inspect.getsource(get_remote_addr)
    assert 'get_extra_info("socket")' in remote and 'get_extra_info("peername")' in remote
    for name in (
        "write",
        "close",
        "is_closing",
        "get_extra_info",
        "pause_reading",
        "resume_reading",
        "set_protocol",
        "get_write_buffer_size",
    ):
        assert name in TlsTransport.__dict__, name
    assert flow_control.HIGH_WATER_LIMIT == 65536  # request bodies above this pause reading
