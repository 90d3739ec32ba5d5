"""ASGI middleware that admits only requests with a valid (and, when bound, matching)
access token: RFC 6750 bearer tokens, RFC 8705 certificate binding.

For each HTTP request (other scope types pass through, as do ``exempt_paths``) it reads
``Authorization: Bearer <token>``, finds the client certificate the request came with, and
calls :meth:`AccessTokenVerifier.verify`. The certificate comes from the ASGI TLS extension
(Certbound's DER chain, or the standard ``client_cert_chain``); on a plain-HTTP request, and
only when the socket peer is in ``trusted_proxies``, from the ``proxy_header`` format's
headers (:mod:`certbound.intake.proxy`); a certificate header from anyone else is ignored.

Success: the :class:`AccessToken` is put in ``scope["state"]["access_token"]`` (Starlette's
``request.state.access_token``) and ``scope["certbound.access_token"]``. Failure answers
with JSON ``{"error", "error_description", "reason"}``:

- no ``Authorization`` header or another scheme: 401, ``WWW-Authenticate: Bearer`` without
  an error code (RFC 6750 section 3.1), ``reason`` TOKEN_INVALID, no ``error`` member;
- a malformed or repeated header: 400 ``invalid_request``, reason TOKEN_INVALID;
- a refused token: 401 ``invalid_token`` with the verifier's reason code;
- a trusted proxy's certificate header that does not decode: 400 ``invalid_request``,
  reason PROXY_HEADER_MALFORMED;
- the issuer's JWKS unreachable (and none cached): 503 ``temporarily_unavailable``.

A warm check runs on the event loop; a JWKS fetch runs in a worker thread.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import anyio.to_thread

from certbound.errors import ReasonCode, WouldBlockError
from certbound.intake.proxies import TrustedProxies
from certbound.intake.proxy import FORMATS, HeaderError, read
from certbound.rs.binding import leaf_from_tls
from certbound.rs.jwks import JwksUnavailableError
from certbound.rs.verifier import AccessToken, AccessTokenVerifier, TokenRejected

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_DESCRIPTION = 300


class _Headers(dict[str, str]):
    """Lower-case header names; ``getlist`` keeps repeated lines (the proxy parsers refuse
    a repeated certificate header)."""

    def __init__(self, raw: Sequence[tuple[bytes, bytes]]) -> None:
        super().__init__()
        self._lines: dict[str, list[str]] = {}
        for name, value in raw:
            key, text = name.decode("latin-1").lower(), value.decode("latin-1")
            self._lines.setdefault(key, []).append(text)
            self.setdefault(key, text)

    def getlist(self, name: str) -> list[str]:
        return self._lines.get(name, [])


def _quoted(text: str) -> str:
    """``text`` as the inside of an RFC 6750 quoted string (no quote, no backslash)."""
    safe = "".join(c if " " <= c <= "~" and c not in '"\\' else "'" for c in text)
    return safe[:MAX_DESCRIPTION]


class _RefusalError(Exception):
    def __init__(
        self, status: int, reason: ReasonCode, description: str, error: str | None
    ) -> None:
        super().__init__(description)
        self.status, self.reason, self.description, self.error = status, reason, description, error

    def challenge(self) -> str:
        if self.error is None:
            return "Bearer"
        return f'Bearer error="{self.error}", error_description="{_quoted(self.description)}"'

    def body(self) -> bytes:
        doc: dict[str, str] = {}
        if self.error is not None:
            doc["error"] = self.error
        doc.update(error_description=self.description, reason=self.reason.value)
        return json.dumps(doc).encode()


def _bearer(raw: Sequence[tuple[bytes, bytes]]) -> str:
    values = [value for name, value in raw if name.lower() == b"authorization"]
    if not values:
        raise _RefusalError(
            401, ReasonCode.TOKEN_INVALID, "no access token: send Authorization: Bearer", None
        )
    if len(values) > 1:
        raise _RefusalError(
            400, ReasonCode.TOKEN_INVALID, "Authorization appears more than once", "invalid_request"
        )
    scheme, _, token = values[0].decode("latin-1").strip().partition(" ")
    if scheme.lower() != "bearer":
        raise _RefusalError(
            401, ReasonCode.TOKEN_INVALID, f"Authorization scheme {scheme!r} is not Bearer", None
        )
    token = token.strip(" ")
    if not token or " " in token:
        raise _RefusalError(
            400,
            ReasonCode.TOKEN_INVALID,
            "Authorization: Bearer must be followed by exactly one token",
            "invalid_request",
        )
    return token


class BoundTokenMiddleware:
    """Verify the bearer token of every HTTP request before ``app`` sees it."""

    def __init__(
        self,
        app: ASGIApp,
        verifier: AccessTokenVerifier,
        *,
        trusted_proxies: Sequence[str] = (),
        proxy_header: str | None = None,
        exempt_paths: Sequence[str] = (),
    ) -> None:
        self.app = app
        self.verifier = verifier
        self._proxies = TrustedProxies.parse(trusted_proxies)
        name = proxy_header or "rfc9440"
        if name not in FORMATS:
            raise ValueError(f"proxy_header {name!r} is not one of {sorted(FORMATS)}")
        self._format = FORMATS[name]
        self._exempt = tuple(path.rstrip("/") for path in exempt_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._is_exempt(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        try:
            access = await self._verify(scope)
        except _RefusalError as refusal:
            await _send_refusal(send, refusal)
            return
        scope.setdefault("state", {})["access_token"] = access
        scope["certbound.access_token"] = access
        await self.app(scope, receive, send)

    def _is_exempt(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in self._exempt)

    async def _verify(self, scope: Scope) -> AccessToken:
        raw = scope.get("headers") or []
        token = _bearer(raw)
        certificate = self._certificate(scope, raw)
        try:
            try:
                return self.verifier.verify(token, certificate, offline=True)
            except WouldBlockError:
                return await anyio.to_thread.run_sync(self.verifier.verify, token, certificate)
        except TokenRejected as exc:
            raise _RefusalError(401, exc.reason, exc.description, exc.error) from None
        except JwksUnavailableError as exc:
            raise _RefusalError(
                503, ReasonCode.TOKEN_INVALID, str(exc), "temporarily_unavailable"
            ) from None

    def _certificate(self, scope: Scope, raw: Sequence[tuple[bytes, bytes]]) -> bytes | None:
        over_tls, leaf = leaf_from_tls(scope)
        if over_tls or not self._trusted_peer(scope):
            return leaf
        try:
            found = read(self._format, _Headers(raw))
        except HeaderError as exc:
            raise _RefusalError(400, exc.reason, exc.detail, "invalid_request") from None
        return found.certificates[0] if found and found.certificates else None

    def _trusted_peer(self, scope: Scope) -> bool:
        if self._proxies.empty:
            return False
        client, server = scope.get("client"), scope.get("server")
        if client:
            return self._proxies.trusts(str(client[0]), unix=False)
        return self._proxies.trusts(None, unix=server is not None and server[1] is None)


async def _send_refusal(send: Send, refusal: _RefusalError) -> None:
    body = refusal.body()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if refusal.status == 401 or refusal.error == "invalid_request":
        headers.append((b"www-authenticate", refusal.challenge().encode("latin-1")))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
