"""What the connections of one listener share: the TLS context, the bounds, the live set.

uvicorn builds one protocol per accepted socket from the class given as ``Config(http=...)``
with ``(config, server_state, app_state, _loop)``; :class:`ListenerConfig` is that
``Config`` carrying the :class:`ListenerState`, which counts open connections
(``max_connections``: more are closed at accept) and handshakes in flight
(``max_handshakes``: more wait, unread, for a slot), and knows every live connection so a
stop reaches those still in their handshake (uvicorn's own ``server_state.connections`` only
learns of a connection once its HTTP protocol exists).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any, Protocol

from uvicorn import Config

from certbound.intake.tls.config import Judge, OnReject, TlsListenerConfig
from certbound.intake.tls.context import ServerContext


class Connection(Protocol):
    """The side of a connection the listener state drives."""

    def grant_handshake(self) -> None: ...

    def abort(self) -> None: ...

    def shutdown(self) -> None: ...

    def write_buffer_size(self) -> int: ...


@dataclass(frozen=True, slots=True)
class ListenerStats:
    """A snapshot of one listener's connections."""

    open_connections: int
    handshaking: int
    waiting_for_handshake: int
    refused_at_accept: int  # since start: the listener was full or stopping
    write_buffered: int  # bytes written by the app and not yet sent, all connections


class ListenerState:
    """Bounds and bookkeeping for one listener's connections (one event loop, no locks)."""

    def __init__(
        self,
        config: TlsListenerConfig,
        server_context: ServerContext,
        judge: Judge | None,
        on_reject: OnReject | None,
    ) -> None:
        self.config = config
        self.server_context = server_context
        self.judge = judge
        self.on_reject = on_reject
        self.connections: set[Connection] = set()
        self.handshaking: set[Connection] = set()
        self.waiting: collections.deque[Connection] = collections.deque()
        self.accepting = True
        self.refused_at_accept = 0

    def admit(self, conn: Connection) -> bool:
        """Count a new connection in; False when full or stopping (close it)."""
        if not self.accepting or len(self.connections) >= self.config.max_connections:
            self.refused_at_accept += 1
            return False
        self.connections.add(conn)
        return True

    def take_handshake_slot(self, conn: Connection) -> bool:
        """A slot for ``conn``'s handshake now, or False: it waits in line."""
        if len(self.handshaking) < self.config.max_handshakes:
            self.handshaking.add(conn)
            return True
        self.waiting.append(conn)
        return False

    def release_handshake_slot(self, conn: Connection) -> None:
        """``conn``'s handshake ended: hand the slot to the next live waiting connection."""
        if conn not in self.handshaking:
            return
        self.handshaking.discard(conn)
        while self.waiting and len(self.handshaking) < self.config.max_handshakes:
            nxt = self.waiting.popleft()
            if nxt in self.connections:
                self.handshaking.add(nxt)
                nxt.grant_handshake()

    def stats(self) -> ListenerStats:
        return ListenerStats(
            open_connections=len(self.connections),
            handshaking=len(self.handshaking),
            waiting_for_handshake=len(self.waiting),
            refused_at_accept=self.refused_at_accept,
            write_buffered=sum(conn.write_buffer_size() for conn in self.connections),
        )

    def forget(self, conn: Connection) -> None:
        """``conn`` is closed."""
        self.release_handshake_slot(conn)
        self.connections.discard(conn)
        if conn in self.waiting:
            self.waiting.remove(conn)


class ListenerConfig(Config):
    """uvicorn's ``Config`` with the listener state the protocol factory needs."""

    def __init__(self, app: Any, state: ListenerState, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.listener_state = state
