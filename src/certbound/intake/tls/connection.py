"""One client connection: a pyOpenSSL memory-BIO TLS session between a socket and uvicorn.

:class:`TlsConnection` is the asyncio protocol uvicorn's server builds per accepted socket
(``Config(http=TlsConnection)``). Ciphertext from the socket goes into the TLS session
(``bio_write``); the handshake runs there (``do_handshake``) with the verify callback
watching; afterwards plaintext (``recv``) goes to a :class:`~.http1.TlsHttpProtocol` through
a :class:`~.transport.TlsTransport`, and its writes come back, coalesced per loop turn
(capped at ``WRITE_COALESCE_LIMIT`` so the socket's ``pause_writing`` still fires),
encrypted (``sendall``) and flushed (``bio_read``) to the socket.

One timer per connection, re-armed by phase:

| phase     | until                                   | timeout                 | on expiry |
|-----------|-----------------------------------------|-------------------------|-----------|
| WAITING   | a handshake slot frees (reading paused) | handshake (from accept) | abort     |
| HANDSHAKE | the handshake finishes                  | handshake (from accept) | abort     |
| HEADERS   | a request's headers are complete        | header                  | close     |
| BUSY      | the responses in progress are complete  | none (the app's)        |           |
| IDLE      | the next request's first byte           | keep-alive              | close     |

End of stream from the client (TCP FIN or close_notify) does not cut a response short: the
connection closes once no request is in progress. ``resume_reading`` re-drains plaintext the
TLS session already holds, since no socket event will come for it. A failed handshake
(garbage, a timeout, reject mode's refusal) is one debug or info log line, never a
traceback; reject mode's refusals also go to ``on_reject``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from typing import Any, cast

from OpenSSL import SSL
from uvicorn.config import Config
from uvicorn.server import ServerState

from certbound.errors import ReasonCode
from certbound.intake.tls.alerts import NO_CERTIFICATE_REASON
from certbound.intake.tls.config import HandshakeRejection
from certbound.intake.tls.extension import presented_chain, tls_extension
from certbound.intake.tls.http1 import TlsHttpProtocol
from certbound.intake.tls.state import ListenerConfig, ListenerState
from certbound.intake.tls.transport import TlsTransport
from certbound.intake.tls.verifier import HandshakeRecord

logger = logging.getLogger(__name__)

RECV_SIZE = 65536
BIO_READ_SIZE = 65536
WRITE_COALESCE_LIMIT = 65536


class Phase(enum.IntEnum):
    WAITING = 0
    HANDSHAKE = 1
    HEADERS = 2
    BUSY = 3
    IDLE = 4
    CLOSED = 5


class TlsConnection(asyncio.Protocol):
    """The protocol on one accepted socket; see the module docstring."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not isinstance(config, ListenerConfig):
            raise TypeError("TlsConnection needs the listener's ListenerConfig")
        self._config = config
        self._server_state = server_state
        self._app_state = app_state
        self._state: ListenerState = config.listener_state
        self._loop = _loop or asyncio.get_running_loop()
        self._raw: asyncio.Transport | None = None
        self._tls: SSL.Connection | None = None
        self._record: HandshakeRecord | None = HandshakeRecord()
        self._app: asyncio.Protocol | None = None
        self._phase = Phase.WAITING
        self._timer: asyncio.TimerHandle | None = None
        self._pending = 0  # requests whose headers are in and whose response is not done
        self._out: list[bytes | bytearray | memoryview] = []
        self._out_size = 0
        self._flush_scheduled = False
        self._app_reading_paused = False
        self._closing = False
        self._eof = False
        self.peer: str | None = None

    # --- the socket side --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's does not subclass it
        self._raw = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
        if not self._state.admit(self):
            logger.debug("TLS connection from %s refused: listener full or stopping", self.peer)
            self._closing = True
            transport.abort()
            return
        self._tls = SSL.Connection(self._state.server_context.context, None)
        self._tls.set_accept_state()
        self._arm(self._state.config.handshake_timeout, self._handshake_expired)
        if self._state.take_handshake_slot(self):
            self._phase = Phase.HANDSHAKE
        else:
            transport.pause_reading()

    def grant_handshake(self) -> None:
        """A handshake slot is ours (we waited for it with reading paused)."""
        if self._closing or self._phase != Phase.WAITING:
            return
        self._phase = Phase.HANDSHAKE
        if self._raw is not None and not self._raw.is_closing():
            self._raw.resume_reading()
        self._loop.call_soon(self._drive_handshake)

    def _drive_handshake(self) -> None:
        """Run the handshake on bytes that arrived while we waited for a slot, if any."""
        if self._phase == Phase.HANDSHAKE:
            self.data_received(b"")

    def data_received(self, data: bytes) -> None:
        try:
            self._received(data)
        except Exception:  # a bug here must cost one connection, never the listener
            logger.warning("TLS connection from %s failed", self.peer, exc_info=True)
            self.abort()

    def _received(self, data: bytes) -> None:
        tls = self._tls
        if tls is None or self._closing:
            return
        if data:
            try:
                tls.bio_write(data)
            except SSL.Error:
                self.abort()
                return
        if self._phase == Phase.WAITING:
            return  # bytes wait in the TLS session for a handshake slot
        if self._phase == Phase.HANDSHAKE and not self._handshake(tls):
            return
        self._read_plaintext(tls)

    def eof_received(self) -> bool | None:
        if self._phase <= Phase.HANDSHAKE:
            logger.debug("TLS client %s left during the handshake", self.peer)
            return None  # asyncio closes the socket
        self._peer_finished()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._phase = Phase.CLOSED
        self._closing = True
        self._cancel_timer()
        self._state.forget(self)
        app = self._app
        if app is not None:
            app.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._app is not None:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        if self._app is not None:
            self._app.resume_writing()

    # --- the handshake ----------------------------------------------------------------

    def _handshake(self, tls: SSL.Connection) -> bool:
        """Drive the handshake with what arrived; True once it is finished."""
        record = self._record
        assert record is not None
        try:
            with self._state.server_context.verifier.watching(record):
                tls.do_handshake()
        except SSL.WantReadError:
            self._flush_tls(tls)
            return False
        except SSL.Error as exc:
            self._handshake_failed(tls, record, exc)
            return False
        self._flush_tls(tls)
        return self._handshake_done(tls, record)

    def _handshake_done(self, tls: SSL.Connection, record: HandshakeRecord) -> bool:
        self._state.release_handshake_slot(self)
        self._record = None
        if self._refused_after_handshake(tls, record):
            return False
        server_cert = self._state.server_context.server_cert_pem
        extension = tls_extension(tls, record.errors, server_cert)
        transport = TlsTransport(self, {"sslcontext": tls.get_context(), "ssl_object": tls})
        self._app = TlsHttpProtocol(
            config=self._config,
            server_state=self._server_state,
            app_state=self._app_state,
            _loop=self._loop,
            events=self,
            extension=extension,
        )
        self._phase = Phase.HEADERS
        self._arm(self._state.config.header_timeout, self._headers_expired)
        self._app.connection_made(transport)
        return True

    def _refused_after_handshake(self, tls: SSL.Connection, record: HandshakeRecord) -> bool:
        """Reject mode's safety net: a chain the callback never judged is judged now."""
        judge = self._state.judge
        if judge is None or record.judged:
            return False
        chain = presented_chain(tls, tls.get_peer_certificate(as_cryptography=True))
        verdict = judge(chain) if chain else (ReasonCode.NO_CLIENT_CERTIFICATE, _NO_CERT_DETAIL)
        if verdict is None:
            return False
        version = tls.get_protocol_version_name()
        self._report(HandshakeRejection(chain, verdict[0], verdict[1], self.peer, version))
        self.close()
        return True

    def _handshake_failed(
        self, tls: SSL.Connection, record: HandshakeRecord, exc: SSL.Error
    ) -> None:
        self._flush_tls(tls)  # the alert, if OpenSSL wrote one
        self._state.release_handshake_slot(self)
        rejection = self._rejection(tls, record, exc)
        if rejection is not None:
            self._report(rejection)
        else:
            logger.debug("TLS handshake from %s failed: %s", self.peer, _describe(exc))
        self._close_socket()

    def _rejection(
        self, tls: SSL.Connection, record: HandshakeRecord, exc: SSL.Error
    ) -> HandshakeRejection | None:
        version = tls.get_protocol_version_name()
        tls_version = version if version.startswith("TLS") else None
        if record.judged and not record.accepted and record.reason is not None:
            chain = record.refused_chain
            return HandshakeRejection(chain, record.reason, record.detail, self.peer, tls_version)
        if self._state.judge is not None and NO_CERTIFICATE_REASON in _reasons(exc):
            reason = ReasonCode.NO_CLIENT_CERTIFICATE
            return HandshakeRejection((), reason, _NO_CERT_DETAIL, self.peer, tls_version)
        return None

    def _report(self, rejection: HandshakeRejection) -> None:
        logger.info(
            "TLS handshake from %s refused: %s: %s",
            rejection.peer,
            rejection.reason.value,
            rejection.detail,
        )
        on_reject = self._state.on_reject
        if on_reject is None:
            return
        try:
            on_reject(rejection)
        except Exception:
            logger.exception("on_reject failed for a refused TLS handshake")

    # --- plaintext in -----------------------------------------------------------------

    def _read_plaintext(self, tls: SSL.Connection) -> None:
        app = self._app
        while app is not None and not self._app_reading_paused and not self._closing:
            try:
                data = tls.recv(RECV_SIZE)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self._peer_finished()
                break
            except SSL.Error as exc:
                logger.debug("TLS connection from %s failed: %s", self.peer, _describe(exc))
                self.abort()
                return
            app.data_received(data)
            app = self._app  # set_protocol may have swapped it
        if not self._closing:
            self._flush_tls(tls)  # alerts or key updates the records asked for

    def _peer_finished(self) -> None:
        """The client ended its side: close now, or once the running requests are answered."""
        self._eof = True
        if self._pending == 0:
            self.close()

    def _drain(self) -> None:
        """Plaintext the TLS session already decrypted or buffered: no socket event will
        come for it after a pause."""
        if self._phase >= Phase.HEADERS:
            self.data_received(b"")

    # --- plaintext out ----------------------------------------------------------------

    def app_write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        self._out.append(data)
        self._out_size += len(data)
        if self._out_size >= WRITE_COALESCE_LIMIT:
            self._flush_app()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        if not self._closing:
            self._flush_app()

    def _flush_app(self) -> None:
        out, tls = self._out, self._tls
        if not out or tls is None:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        self._out = []
        self._out_size = 0
        try:
            tls.sendall(data)
        except SSL.Error as exc:
            logger.debug("TLS connection from %s failed: %s", self.peer, _describe(exc))
            self.abort()
            return
        self._flush_tls(tls)

    def _flush_tls(self, tls: SSL.Connection) -> None:
        """Send whatever the TLS session wrote (records, alerts) to the socket."""
        chunks = []
        while True:
            try:
                chunks.append(tls.bio_read(BIO_READ_SIZE))
            except SSL.WantReadError:
                break
            except SSL.Error as exc:  # not expected from a memory BIO
                logger.debug("TLS connection from %s failed: %s", self.peer, _describe(exc))
                self.abort()
                return
        raw = self._raw
        if chunks and raw is not None and not raw.is_closing():
            raw.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    # --- what the transport and the HTTP protocol call --------------------------------

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def app_protocol(self) -> asyncio.BaseProtocol | None:
        return self._app

    def close(self) -> None:
        """Flush, send close_notify and close the socket once its buffer is written."""
        if self._closing:
            return
        self._closing = True
        self._cancel_timer()
        tls = self._tls
        if tls is not None and self._phase >= Phase.HEADERS:
            self._flush_app()
            with contextlib.suppress(SSL.Error):
                tls.shutdown()
            self._flush_tls(tls)
        self._close_socket()

    def abort(self) -> None:
        self._closing = True
        self._cancel_timer()
        if self._raw is not None:
            self._raw.abort()

    def shutdown(self) -> None:
        """The listener is stopping: connections still in their handshake go now."""
        if self._phase <= Phase.HANDSHAKE:
            self.abort()

    def _close_socket(self) -> None:
        self._closing = True
        self._cancel_timer()
        if self._raw is not None:
            self._raw.close()

    def app_pause_reading(self) -> None:
        if not self._app_reading_paused:
            self._app_reading_paused = True
            if self._raw is not None and not self._raw.is_closing():
                self._raw.pause_reading()

    def app_resume_reading(self) -> None:
        if self._app_reading_paused:
            self._app_reading_paused = False
            if self._raw is not None and not self._raw.is_closing():
                self._raw.resume_reading()
            self._loop.call_soon(self._drain)

    def app_is_reading(self) -> bool:
        return not self._app_reading_paused and not self._closing

    def set_app_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        if not isinstance(protocol, asyncio.Protocol):
            raise TypeError("a TLS connection carries a streaming asyncio.Protocol")
        self._app = protocol

    def raw_extra_info(self, name: str, default: Any) -> Any:
        return self._raw.get_extra_info(name, default) if self._raw is not None else default

    def write_buffer_size(self) -> int:
        raw = self._raw.get_write_buffer_size() if self._raw is not None else 0
        return self._out_size + raw

    def set_raw_write_buffer_limits(self, high: int | None, low: int | None) -> None:
        if self._raw is not None:
            self._raw.set_write_buffer_limits(high, low)

    def request_started(self) -> None:
        if self._phase in (Phase.IDLE, Phase.BUSY):  # the first request's timer runs already
            self._phase = Phase.HEADERS
            self._arm(self._state.config.header_timeout, self._headers_expired)

    def headers_complete(self) -> None:
        self._pending += 1
        self._phase = Phase.BUSY
        self._cancel_timer()

    def response_complete(self) -> None:
        self._pending = max(0, self._pending - 1)
        if self._pending or self._phase == Phase.HEADERS or self._closing:
            return
        if self._eof:
            self.close()
            return
        self._phase = Phase.IDLE
        self._arm(self._state.config.keepalive_timeout, self._idle_expired)

    # --- timers -----------------------------------------------------------------------

    def _arm(self, delay: float, callback: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(delay, callback)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _handshake_expired(self) -> None:
        self._timer = None
        logger.debug("TLS handshake from %s timed out", self.peer)
        self.abort()

    def _headers_expired(self) -> None:
        self._timer = None
        logger.debug("TLS client %s took too long to send request headers", self.peer)
        self.close()

    def _idle_expired(self) -> None:
        self._timer = None
        self.close()


_NO_CERT_DETAIL = "the client presented no certificate"


def _reasons(exc: SSL.Error) -> list[str]:
    """OpenSSL's reason strings in a pyOpenSSL error (a list of (lib, func, reason))."""
    items = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
    return [str(item[-1]) for item in items if isinstance(item, tuple) and item]


def _describe(exc: SSL.Error) -> str:
    return "; ".join(_reasons(exc)) or type(exc).__name__ + (f" {exc.args}" if exc.args else "")
