"""The certificate verify callback: records OpenSSL's complaints; in reject mode, asks the judge.

pyOpenSSL's public ``Context.set_verify`` callback can neither set the X509 verify error
(which picks the TLS alert) nor read the chain being verified, so this module installs its
own cffi callback with ``SSL_CTX_set_verify`` from the bindings pyOpenSSL ships
(``OpenSSL._util``; pyOpenSSL and cryptography are pinned exactly, and
``tests/intake/tls/test_tls_bindings_contract.py`` checks every binding used here).

The callback runs synchronously inside ``SSL_do_handshake``, which only
:class:`~certbound.intake.tls.connection.TlsConnection` calls, on one event loop: the
connection hands its :class:`HandshakeRecord` to :meth:`Verifier.watching` around the call,
so no mapping from ``SSL*`` to Python objects is needed.

- Every call with ``ok == 0`` appends ``(errnum, depth, message)``: once the callback
  returns 1 the stored verify result is reset, so this record is the only trace.
- Accept mode returns 1 always: every chain reaches the app.
- Reject mode returns 1 until the first call at depth 0 (which always comes once the earlier
  calls returned 1: OpenSSL signals every depth down to the leaf), then judges the chain
  OpenSSL built (``X509_STORE_CTX_get1_chain``: the leaf first, then the presented
  certificates linked to it by issuer name). A refusal sets the X509 error that maps to the
  alert (:mod:`certbound.intake.tls.alerts`) and returns 0. Deciding at depth 0 means the
  judge sees the leaf even when OpenSSL first complains about a rogue intermediate.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from OpenSSL import SSL
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

from certbound.errors import ReasonCode
from certbound.intake.tls.alerts import BAD_CERTIFICATE, refusal_for
from certbound.intake.tls.config import Judge

logger = logging.getLogger(__name__)

_CALLBACK_TYPE = "int (*)(int, X509_STORE_CTX *)"


@dataclass(slots=True)
class HandshakeRecord:
    """What the callback saw during one connection's handshake."""

    errors: list[tuple[int, int, str]] = field(default_factory=list)
    judged: bool = False
    accepted: bool = True
    refused_chain: tuple[bytes, ...] = ()
    reason: ReasonCode | None = None
    detail: str = ""


class Verifier:
    """The verify callback of one SSL context (accept mode when ``judge`` is None)."""

    def __init__(self, judge: Judge | None) -> None:
        self._judge = judge
        self._current: HandshakeRecord | None = None
        # Kept referenced for as long as the context lives: OpenSSL holds a raw pointer.
        self.callback = _ffi.callback(_CALLBACK_TYPE, self._on_verify)

    def install(self, context: SSL.Context) -> None:
        """Ask for a client certificate and verify it through this callback.

        Reject mode also refuses a handshake without one (``FAIL_IF_NO_PEER_CERT``).
        """
        mode = _lib.SSL_VERIFY_PEER
        if self._judge is not None:
            mode |= _lib.SSL_VERIFY_FAIL_IF_NO_PEER_CERT
        _lib.SSL_CTX_set_verify(context._context, mode, self.callback)

    @contextlib.contextmanager
    def watching(self, record: HandshakeRecord) -> Iterator[None]:
        """Route callbacks to ``record`` while the caller drives the handshake."""
        self._current = record
        try:
            yield
        finally:
            self._current = None

    def _on_verify(self, ok: int, store: Any) -> int:
        record = self._current
        if record is None:  # a callback outside a watched handshake: refuse, never guess
            return 0
        try:
            return self._decide(ok, store, record)
        except Exception:
            logger.exception("TLS verify callback failed")
            if self._judge is None:
                return 1
            _lib.X509_STORE_CTX_set_error(store, BAD_CERTIFICATE.x509_error)
            return 0

    def _decide(self, ok: int, store: Any, record: HandshakeRecord) -> int:
        depth: int = _lib.X509_STORE_CTX_get_error_depth(store)
        if not ok:
            errnum: int = _lib.X509_STORE_CTX_get_error(store)
            record.errors.append((errnum, depth, error_message(errnum)))
        if self._judge is None or (depth != 0 and not record.judged):
            return self._carry_on(ok, store)
        if not record.judged:
            self._judge_chain(store, record, self._judge)
        if record.accepted:
            return self._carry_on(ok, store)
        assert record.reason is not None
        _lib.X509_STORE_CTX_set_error(store, refusal_for(record.reason).x509_error)
        return 0

    @staticmethod
    def _carry_on(ok: int, store: Any) -> int:
        if not ok:
            _lib.X509_STORE_CTX_set_error(store, _lib.X509_V_OK)
        return 1

    @staticmethod
    def _judge_chain(store: Any, record: HandshakeRecord, judge: Judge) -> None:
        record.judged = True
        chain = store_chain(store)
        verdict = judge(chain)
        if verdict is None:
            return
        record.accepted = False
        record.refused_chain = chain
        record.reason, record.detail = verdict


def error_message(errnum: int) -> str:
    """OpenSSL's text for an X509 verify error number."""
    text = _lib.X509_verify_cert_error_string(errnum)
    return _ffi.string(text).decode("ascii", "replace") if text != _ffi.NULL else str(errnum)


def store_chain(store: Any) -> tuple[bytes, ...]:
    """The chain the store context built so far, DER, leaf first."""
    stack = _lib.X509_STORE_CTX_get1_chain(store)
    if stack == _ffi.NULL:
        return ()
    certs = [_lib.sk_X509_value(stack, i) for i in range(_lib.sk_X509_num(stack))]
    try:
        return tuple(_der(cert) for cert in certs)
    finally:
        for cert in certs:
            _lib.X509_free(cert)  # get1_chain took a reference on each
        _lib.sk_X509_free(stack)


def _der(cert: Any) -> bytes:
    bio = _lib.BIO_new(_lib.BIO_s_mem())
    if bio == _ffi.NULL:
        raise MemoryError("BIO_new failed")
    try:
        if _lib.i2d_X509_bio(bio, cert) != 1:
            raise ValueError("i2d_X509_bio failed")
        buffer = _ffi.new("char**")
        length = _lib.BIO_get_mem_data(bio, buffer)
        return bytes(_ffi.buffer(buffer[0], length))
    finally:
        _lib.BIO_free(bio)
