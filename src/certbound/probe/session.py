"""One client TLS connection, OpenSSL driven through memory BIOs, watched as it happens.

pyOpenSSL runs the handshake on a memory BIO while this module moves the bytes to and from
the TCP socket, so every wait has a deadline and the first bytes the server sent are at
hand (a server answering in plain HTTP is recognised as such). OpenSSL's info callback
shows what a plain TLS client cannot: whether the server sent a CertificateRequest, whether
the client certificate went out (a Certificate message followed by CertificateVerify, the
proof of possession), and every alert the server sent, with its code.

The handshake does not verify the server (``VERIFY_NONE``): :mod:`.server_trust` judges the
server's chain separately, so the remaining layers can still be diagnosed when it fails.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from cryptography import x509
from OpenSSL import SSL

from .alerts import Alert
from .inputs import ClientCredentials

T = TypeVar("T")

_CHUNK = 64 * 1024
_MAX_ROUNDS = 100_000  # socket reads per operation; the deadline normally ends it far sooner
_FIRST_BYTES = 64

# OpenSSL's state strings (SSL_state_string_long), the same from OpenSSL 1.1.1 to 4.0.
_READ_CERTIFICATE_REQUEST = b"SSLv3/TLS read server certificate request"
_WROTE_CERTIFICATE = b"SSLv3/TLS write client certificate"
_WROTE_CERTIFICATE_VERIFY = b"SSLv3/TLS write certificate verify"


class SessionError(Exception):
    """The connection failed: ``kind`` is ``timeout``, ``closed``, ``reset`` or ``tls``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass
class Observation:
    """What the handshake showed about client authentication, and the alerts exchanged."""

    certificate_requested: bool = False
    certificate_message_sent: bool = False
    certificate_verify_sent: bool = False
    alerts_received: list[Alert] = field(default_factory=list)
    alerts_sent: list[Alert] = field(default_factory=list)

    @property
    def certificate_sent(self) -> bool:
        """A non-empty Certificate went out: only then does a CertificateVerify follow."""
        return self.certificate_message_sent and self.certificate_verify_sent

    @property
    def fatal_alert(self) -> Alert | None:
        return next((a for a in self.alerts_received if a.fatal), None)


def client_context(credentials: ClientCredentials) -> SSL.Context:
    """A TLS 1.2+ client context presenting the credentials, not verifying the server."""
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_verify(SSL.VERIFY_NONE)
    context.use_certificate(credentials.leaf)
    for intermediate in credentials.chain[1:]:
        context.add_extra_chain_cert(intermediate)
    context.use_privatekey(credentials.key)
    context.check_privatekey()
    context.set_alpn_protos([b"http/1.1"])
    return context


class TlsSession:
    """A TLS client over a connected socket; each call waits until ``deadline`` at most
    (a ``time.monotonic`` value, settable between steps)."""

    def __init__(
        self, sock: socket.socket, context: SSL.Context, server_name: bytes | None
    ) -> None:
        self.sock = sock
        self.observation = Observation()
        self.first_bytes = b""
        self.deadline = time.monotonic()
        self._closed_by_peer = False
        self.conn = SSL.Connection(context, None)
        self.conn.set_info_callback(self._info)
        if server_name:
            self.conn.set_tlsext_host_name(server_name)
        self.conn.set_connect_state()

    def _info(self, conn: SSL.Connection, where: int, value: int) -> None:
        seen = self.observation
        if where & SSL.SSL_CB_READ_ALERT == SSL.SSL_CB_READ_ALERT:
            seen.alerts_received.append(Alert.from_info(value))
        elif where & SSL.SSL_CB_WRITE_ALERT == SSL.SSL_CB_WRITE_ALERT:
            seen.alerts_sent.append(Alert.from_info(value))
        elif where & SSL.SSL_CB_LOOP:
            state = conn.get_state_string()
            seen.certificate_requested |= state == _READ_CERTIFICATE_REQUEST
            seen.certificate_message_sent |= state == _WROTE_CERTIFICATE
            seen.certificate_verify_sent |= state == _WROTE_CERTIFICATE_VERIFY

    # --- what callers use ------------------------------------------------------------------

    def handshake(self) -> None:
        self._drive(self.conn.do_handshake)

    def send(self, data: bytes) -> None:
        """Encrypt and send; a peer that already hung up is left for the next read to tell."""
        self._drive(lambda: self.conn.sendall(data), tolerate_send_errors=True)

    def recv(self) -> bytes:
        """The next plaintext; ``b""`` when the server closed the connection."""
        try:
            return self._drive(lambda: self.conn.recv(_CHUNK))
        except SSL.ZeroReturnError:
            return b""
        except SessionError as exc:
            if exc.kind == "closed" and self.observation.fatal_alert is None:
                return b""  # closed without close_notify: the end of an HTTP/1.0 answer
            raise

    def peer_chain(self) -> list[x509.Certificate]:
        """The certificates the server sent, leaf first (empty if none arrived)."""
        return self.conn.get_peer_cert_chain(as_cryptography=True) or []

    @property
    def version(self) -> str | None:
        name = self.conn.get_protocol_version_name()
        return None if name == "Unknown" else name

    @property
    def cipher(self) -> str | None:
        return self.conn.get_cipher_name()

    @property
    def acceptable_cas(self) -> list[str]:
        """The CA names of the server's CertificateRequest (may be empty)."""
        return [
            ",".join(f"{k.decode()}={v.decode()}" for k, v in reversed(name.get_components()))
            for name in self.conn.get_client_ca_list()
        ]

    def close(self) -> None:
        self.sock.close()

    # --- moving bytes ----------------------------------------------------------------------

    def _drive(self, operation: Callable[[], T], *, tolerate_send_errors: bool = False) -> T:
        for _ in range(_MAX_ROUNDS):
            try:
                result = operation()
            except SSL.WantReadError:
                self._flush(tolerate_send_errors)
                self._fill()
                continue
            except SSL.ZeroReturnError:
                raise
            except SSL.SysCallError as exc:
                raise self._failure(exc) from exc
            except SSL.Error as exc:
                self._flush(tolerate=True)  # our own alert, if OpenSSL wrote one
                raise self._failure(exc) from exc
            self._flush(tolerate_send_errors)
            return result
        raise SessionError("timeout", "too many reads without progress")

    def _flush(self, tolerate: bool) -> None:
        while True:
            try:
                data = self.conn.bio_read(_CHUNK)
            except SSL.WantReadError:
                return
            try:
                self.sock.settimeout(self._remaining())
                self.sock.sendall(data)
            except OSError as exc:
                if tolerate:
                    return
                raise self._socket_failure(exc) from exc

    def _fill(self) -> None:
        if self._closed_by_peer:
            raise SessionError("closed", "the server closed the connection")
        try:
            self.sock.settimeout(self._remaining())
            data = self.sock.recv(_CHUNK)
        except OSError as exc:
            raise self._socket_failure(exc) from exc
        if len(self.first_bytes) < _FIRST_BYTES:
            self.first_bytes += data[: _FIRST_BYTES - len(self.first_bytes)]
        if not data:
            self._closed_by_peer = True
            self.conn.bio_shutdown()
            return
        self.conn.bio_write(data)

    def _remaining(self) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise SessionError("timeout", "no answer from the server in time")
        return remaining

    def _socket_failure(self, exc: OSError) -> SessionError:
        if isinstance(exc, TimeoutError):
            return SessionError("timeout", "no answer from the server in time")
        if isinstance(exc, ConnectionResetError):
            return SessionError("reset", "the server reset the connection")
        return SessionError("closed", f"the connection failed: {exc.strerror or exc}")

    def _failure(self, exc: SSL.Error) -> SessionError:
        if self._closed_by_peer and self.observation.fatal_alert is None:
            return SessionError("closed", "the server closed the connection")
        return SessionError("tls", _openssl_message(exc))


def _openssl_message(exc: SSL.Error) -> str:
    """OpenSSL's error queue as one line: ``tlsv1 alert unknown ca``, ``wrong version number``."""
    reasons: list[str] = []
    for entry in exc.args[0] if exc.args and isinstance(exc.args[0], list) else []:
        if isinstance(entry, tuple) and entry:
            reasons.append(str(entry[-1]))
    return "; ".join(reasons) or str(exc) or type(exc).__name__
