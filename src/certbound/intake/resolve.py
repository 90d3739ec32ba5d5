"""From an ASGI request scope to a :class:`~certbound.intake.chain.Presented` chain.

The rules, in order:

- A request on the built-in TLS listener carries the chain of its own handshake (the ASGI
  TLS extension, :mod:`certbound.intake.chain`). Certificate headers on that listener never
  count: they are listed as ignored, and when the handshake brought no certificate they make
  the request an ``UNTRUSTED_PROXY_HEADER`` attempt.
- On the plain-HTTP listener, the configured header format (``proxy_header``) counts only
  when the socket peer is a trusted proxy (``trusted_proxies``; the Unix-socket listener is
  the peer ``unix``). ``X-Forwarded-For`` never makes a peer trusted. A header that does not
  decode is ``PROXY_HEADER_MALFORMED``. Headers of the other formats are ignored.
- A certificate header from any other peer is ignored, and the request is an
  ``UNTRUSTED_PROXY_HEADER`` attempt: it never authenticates.

The client address recorded in events is the socket peer, or, behind a trusted proxy, the
last ``X-Forwarded-For`` entry (the one that proxy appended).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from certbound.errors import ReasonCode
from certbound.intake import chain
from certbound.intake.chain import HandshakeError, IntakePath, Presented, TlsFacts
from certbound.intake.proxies import TrustedProxies
from certbound.intake.proxy import (
    CERTIFICATE_HEADERS,
    FORMATS,
    MAX_VERDICT_CHARS,
    HeaderError,
    HeaderFormat,
    read,
)

Scope = Mapping[str, Any]
Headers = Mapping[str, str]


def _peer(scope: Scope) -> tuple[str | None, bool]:
    """The socket peer as "host:port" (None over a Unix socket), and whether it is one."""
    client = scope.get("client")
    server = scope.get("server")
    if client:
        return f"{client[0]}:{client[1]}", False
    unix = server is not None and server[1] is None
    return ("unix" if unix else None), unix


def _present(scope: Scope, headers: Headers, names: frozenset[str]) -> tuple[str, ...]:
    """The headers of ``names`` this request carries with a value, sorted. One pass over the
    scope's raw header names (a lookup per name scans them all, on every request)."""
    raw = scope.get("headers")
    if raw is None:
        return tuple(sorted(name for name in names if headers.get(name)))
    found = {name.decode("latin-1").lower() for name, value in raw if value} & names
    return tuple(sorted(found))


def _tls_facts(tls: Mapping[str, Any]) -> TlsFacts:
    errors = tuple(HandshakeError(*item) for item in tls.get(chain.VERIFY_ERRORS, ()))
    return TlsFacts(
        version=str(tls.get(chain.VERSION_NAME, "")),
        cipher=str(tls.get(chain.CIPHER_NAME, "")),
        handshake_errors=errors,
    )


def _verdict(fmt: HeaderFormat, headers: Headers) -> str | None:
    """The proxy's verdict header when it sent no certificate (nginx: ``NONE``), bounded."""
    value = headers.get(fmt.verdict_header) if fmt.verdict_header else None
    return value[:MAX_VERDICT_CHARS] if value else None


class Intake:
    """Finds the chain of each request; one per app, built from the settings."""

    def __init__(self, proxies: TrustedProxies, header_format: str) -> None:
        self._proxies = proxies
        self._format: HeaderFormat = FORMATS[header_format]

    def presented(self, scope: Scope, headers: Headers) -> Presented:
        """The chain this request presented (``headers``: lower-case names)."""
        tls = scope.get("extensions", {}).get(chain.TLS_EXTENSION)
        if tls is not None and chain.CHAIN_DER in tls:
            return self._over_tls(scope, headers, tls)
        return self._over_http(scope, headers)

    def client_address(self, scope: Scope, headers: Headers, presented: Presented) -> str | None:
        """The address to record for the client (never used to decide trust)."""
        if presented.listener == "http" and self._trusted(scope):
            lines = getattr(headers, "getlist", None)  # Starlette's Headers: every line
            forwarded = (
                ",".join(lines("x-forwarded-for")) if lines else headers.get("x-forwarded-for", "")
            )
            last = forwarded.rsplit(",", 1)[-1].strip()
            if last:
                return last
        client = scope.get("client")
        return str(client[0]) if client else None

    def _trusted(self, scope: Scope) -> bool:
        peer, unix = _peer(scope)
        host = peer.rsplit(":", 1)[0].strip("[]") if peer and not unix else None
        return self._proxies.trusts(host, unix=unix)

    def _over_tls(self, scope: Scope, headers: Headers, tls: Mapping[str, Any]) -> Presented:
        peer, _ = _peer(scope)
        ignored = _present(scope, headers, CERTIFICATE_HEADERS)
        certificates = tuple(tls[chain.CHAIN_DER])
        problem = detail = None
        if ignored and not certificates:
            problem = ReasonCode.UNTRUSTED_PROXY_HEADER
            detail = (
                f"certificate header(s) {', '.join(ignored)} sent straight to the TLS "
                "listener without a client certificate; headers never count on it"
            )
        return Presented(
            path=IntakePath.TLS,
            certificates=certificates,
            peer=peer,
            trusted_hop=True,
            listener="tls",
            tls=_tls_facts(tls),
            problem=problem,
            problem_detail=detail,
            ignored_headers=ignored,
        )

    def _over_http(self, scope: Scope, headers: Headers) -> Presented:
        peer, _ = _peer(scope)
        sent = _present(scope, headers, CERTIFICATE_HEADERS)
        if not self._trusted(scope):
            return Presented(
                path=IntakePath.NONE,
                certificates=(),
                peer=peer,
                trusted_hop=False,
                listener="http",
                problem=ReasonCode.UNTRUSTED_PROXY_HEADER if sent else None,
                problem_detail=(
                    f"certificate header(s) {', '.join(sent)} from {peer or 'an unknown peer'}, "
                    "which is not in trusted_proxies: ignored"
                )
                if sent
                else None,
                ignored_headers=sent,
            )
        return self._from_proxy(peer, headers, sent)

    def _from_proxy(self, peer: str | None, headers: Headers, sent: tuple[str, ...]) -> Presented:
        fmt = self._format
        own = {fmt.cert_header, fmt.chain_header, fmt.verdict_header}
        ignored = tuple(name for name in sent if name not in own)
        try:
            found = read(fmt, headers)
        except HeaderError as exc:
            return Presented(
                path=IntakePath.PROXY,
                certificates=(),
                peer=peer,
                trusted_hop=True,
                listener="http",
                header_format=fmt.name,
                problem=exc.reason,
                problem_detail=exc.detail,
                ignored_headers=ignored,
            )
        return Presented(
            path=IntakePath.PROXY if found else IntakePath.NONE,
            certificates=found.certificates if found else (),
            peer=peer,
            trusted_hop=True,
            listener="http",
            header_format=fmt.name,
            proxy_verdict=(found.verdict if found else None) or _verdict(fmt, headers),
            ignored_headers=ignored,
        )
