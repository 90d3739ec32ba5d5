"""The plaintext transport uvicorn's HTTP protocol writes to, over a TLS connection.

uvicorn's protocol expects of its transport: ``write``, ``close``, ``is_closing``,
``get_extra_info`` (``socket`` and ``peername`` for ``scope["client"]``; a truthy
``sslcontext`` makes ``scope["scheme"]`` https), ``pause_reading`` / ``resume_reading``
(request bodies and pipelining) and ``set_protocol`` (upgrades). Each call is passed to the
:class:`TlsEndpoint` (the connection), which encrypts, coalesces and flushes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Protocol


class TlsEndpoint(Protocol):
    """What the transport needs from the TLS connection under it."""

    @property
    def closing(self) -> bool: ...

    @property
    def app_protocol(self) -> asyncio.BaseProtocol | None: ...

    def app_write(self, data: bytes | bytearray | memoryview) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...

    def app_pause_reading(self) -> None: ...

    def app_resume_reading(self) -> None: ...

    def app_is_reading(self) -> bool: ...

    def set_app_protocol(self, protocol: asyncio.BaseProtocol) -> None: ...

    def raw_extra_info(self, name: str, default: Any) -> Any: ...

    def write_buffer_size(self) -> int: ...

    def set_raw_write_buffer_limits(self, high: int | None, low: int | None) -> None: ...


class TlsTransport(asyncio.Transport):
    """The transport the HTTP protocol sees: plaintext in and out of one TLS connection."""

    def __init__(self, endpoint: TlsEndpoint, extra: dict[str, Any]) -> None:
        super().__init__()
        self._own_extra = extra
        self._endpoint = endpoint

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in self._own_extra:
            return self._own_extra[name]
        return self._endpoint.raw_extra_info(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._endpoint.app_write(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        for data in list_of_data:
            self._endpoint.app_write(data)

    def close(self) -> None:
        self._endpoint.close()

    def abort(self) -> None:
        self._endpoint.abort()

    def is_closing(self) -> bool:
        return self._endpoint.closing

    def pause_reading(self) -> None:
        self._endpoint.app_pause_reading()

    def resume_reading(self) -> None:
        self._endpoint.app_resume_reading()

    def is_reading(self) -> bool:
        return self._endpoint.app_is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._endpoint.set_app_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        protocol = self._endpoint.app_protocol
        if protocol is None:
            raise RuntimeError("no protocol on this TLS transport yet")
        return protocol

    def can_write_eof(self) -> bool:
        return False  # TLS has close_notify, not a half-close

    def write_eof(self) -> None:
        raise NotImplementedError("a TLS transport cannot half-close; use close()")

    def get_write_buffer_size(self) -> int:
        return self._endpoint.write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._endpoint.set_raw_write_buffer_limits(high, low)
