"""The built-in mTLS listener: HTTPS that hands every client certificate chain to the app.

Python's ``ssl`` module cannot accept-then-verify (a failed verification aborts the
handshake and hides the certificate; 3.11 exposes only the leaf), and no maintained ASGI
server passes the client certificate to the app. So the listener runs pyOpenSSL in
memory-BIO mode under uvicorn's httptools protocol (docs/decisions/0003-tls-listener.md):

- accept mode (like nginx ``ssl_verify_client optional_no_ca``): every client, with or
  without a certificate, reaches the app, with the full presented chain and OpenSSL's
  complaints in ``scope["extensions"]["tls"]`` (keys: :mod:`certbound.intake.chain`);
- reject mode: a judge (Certbound's validator and revocation) decides inside the handshake,
  and a refusal sends the matching TLS alert (:mod:`certbound.intake.tls.alerts`) and is
  reported to ``on_reject``.

Modules: :mod:`.config` (settings, rejection, callback types), :mod:`.context` (the
pyOpenSSL context), :mod:`.verifier` (the verify callback), :mod:`.alerts` (reason code to
alert), :mod:`.extension` (the ASGI TLS extension), :mod:`.connection` (the memory-BIO
protocol and its timers), :mod:`.transport` (what uvicorn's protocol writes to),
:mod:`.http1` (uvicorn's protocol with the extension), :mod:`.state` (what a listener's
connections share), :mod:`.server` (:class:`TlsListener`).
"""

from certbound.intake.tls.config import (
    HandshakeRejection,
    Judge,
    OnReject,
    TlsListenerConfig,
)
from certbound.intake.tls.server import TlsListener, event_loop_factory, run
from certbound.intake.tls.state import ListenerStats

__all__ = [
    "HandshakeRejection",
    "Judge",
    "ListenerStats",
    "OnReject",
    "TlsListener",
    "TlsListenerConfig",
    "event_loop_factory",
    "run",
]
