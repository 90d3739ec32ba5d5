"""The client side of mTLS: check a handshake with Certbound layer by layer.

``certbound handshake`` is built on this package, which prints nothing:

- :mod:`.inputs` reads and checks what the check is given (URL, certificate and key, CAs);
- :mod:`.session` runs and watches the TLS connection, :mod:`.alerts` reads TLS alerts,
  :mod:`.server_trust` judges the server's certificate, :mod:`.http11` speaks HTTP on it;
- :mod:`.verdict` reads Certbound's answer (intake echo or token), :mod:`.next_steps` says
  where to look next, :mod:`.report` holds the result;
- :mod:`.handshake` runs the layers in order.
"""

from __future__ import annotations

from .handshake import DEFAULT_CLIENT_ID, DEFAULT_TIMEOUT, ProbeOptions, check_handshake
from .inputs import (
    ClientCredentials,
    ProbeInputError,
    ServerAnchors,
    Target,
    load_credentials,
    load_server_anchors,
    parse_target,
)
from .report import HandshakeReport, LayerName, LayerResult, Status

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_TIMEOUT",
    "ClientCredentials",
    "HandshakeReport",
    "LayerName",
    "LayerResult",
    "ProbeInputError",
    "ProbeOptions",
    "ServerAnchors",
    "Status",
    "Target",
    "check_handshake",
    "load_credentials",
    "load_server_anchors",
    "parse_target",
]
