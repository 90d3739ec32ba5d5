"""uvicorn's HTTP/1.1 protocol (httptools) over a TLS connection, with the TLS extension.

:class:`TlsHttpProtocol` is uvicorn's ``HttpToolsProtocol`` with three parser callbacks
extended (uvicorn internals, pinned and guarded by
``tests/intake/tls/test_uvicorn_contract.py``):

- ``on_message_begin`` (a request's first byte): adds ``scope["extensions"]["tls"]``, a copy
  of the connection's extension, and starts the header timer;
- ``on_headers_complete``: stops it;
- ``on_response_complete``: lets the connection arm its keep-alive timer (or close, when the
  client already ended its side).

It also bounds a request's head (request line and headers): httptools buffers a header
until it ends, however long, so :meth:`TlsHttpProtocol.data_received` counts the bytes fed
while a head is being read and answers ``431`` and closes once they pass
:data:`MAX_HEAD_BYTES` (memory stays within that plus one read).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

MAX_HEAD_BYTES = 64 * 1024
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\ncontent-length: 36\r\n"
    b"connection: close\r\n\r\nrequest headers exceed 65536 bytes.\n"
)


class RequestEvents(Protocol):
    """What the connection wants to hear about each request."""

    def request_started(self) -> None: ...

    def headers_complete(self) -> None: ...

    def response_complete(self) -> None: ...


class TlsHttpProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that puts the TLS extension into every request's scope."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None,
        *,
        events: RequestEvents,
        extension: Mapping[object, object],
    ) -> None:
        super().__init__(config=config, server_state=server_state, app_state=app_state, _loop=_loop)
        self._events = events
        self._tls_extension = extension
        self._reading_head = True
        self._head_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._reading_head and self._head_bytes > MAX_HEAD_BYTES:
            self._reading_head = False
            if not self.transport.is_closing():
                self.transport.write(_TOO_LARGE)
                self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {"tls": dict(self._tls_extension)}
        self._events.request_started()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._reading_head = False
        self._events.headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head, self._head_bytes = True, 0

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._events.response_complete()
