"""Fixtures for the HTTP tests: the real app under a real uvicorn server, tokens and events.

``live`` starts ``create_app`` under uvicorn on 127.0.0.1 with a free port in a background
thread (lifespan on), and stops it at the end of the test; requests go over TCP with httpx.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from certbound.admin.tokens import ApiTokens
from certbound.clock import FixedClock
from certbound.config import Settings
from certbound.storage.database import Database
from certbound.syslog import chain
from certbound.syslog.events import Event
from certbound.syslog.rows import event_row
from certbound.web.app import create_app


class LiveServer:
    """A uvicorn server running ``app`` in a thread, on a free port of 127.0.0.1."""

    def __init__(self, app: Starlette, **options: object) -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            **options,  # type: ignore[arg-type]
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = ""

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert self.thread.is_alive(), "uvicorn stopped while starting"
            assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        """Stop the server (running the app's lifespan exit); idempotent."""
        self.server.should_exit = True
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "uvicorn did not stop"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=database_url)


@pytest.fixture
def app(settings: Settings, database: Database, clock: FixedClock) -> Starlette:
    return create_app(settings, database=database, clock=clock)


@pytest.fixture
def live() -> Iterator[Callable[..., LiveServer]]:
    """Start an app under uvicorn (``.url`` is its base URL); stopped after the test."""
    servers: list[LiveServer] = []

    def start(app: Starlette, **options: object) -> LiveServer:
        server = LiveServer(app, **options)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def base_url(live: Callable[..., LiveServer], app: Starlette) -> str:
    return live(app).url


@pytest.fixture
def tokens(database: Database, clock: FixedClock) -> ApiTokens:
    return ApiTokens(database, clock)


@pytest.fixture
def token(tokens: ApiTokens) -> str:
    secret, _ = tokens.create("tests")
    return secret


@pytest.fixture
def http(base_url: str, token: str) -> Iterator[httpx.Client]:
    """An httpx client for the live server, sending the test token."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=10) as client:
        yield client


Seeder = Callable[[Sequence[Event]], list[Event]]


@pytest.fixture
def seed(database: Database) -> Seeder:
    """Append published events to the log (through the hash chain, as the recorder does)."""

    def append(events: Sequence[Event]) -> list[Event]:
        with database.session() as session:
            chain.append(session, [event_row(e) for e in events])
        return list(events)

    return append
