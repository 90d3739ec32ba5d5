"""Discovery and keys: ``GET /.well-known/oauth-authorization-server`` (RFC 8414),
``GET /.well-known/openid-configuration`` and ``GET /oauth2/v1/keys`` (the JWKS).

Reads ``app.state.settings`` (``issuer_url``), ``app.state.signing_keys``
(:class:`certbound.oauth.keys.SigningKeys`) and, when set, ``app.state.mtls_issuer`` (the
base URL of the mTLS listener, if it differs from the issuer).
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from certbound.oauth import rfc8414
from certbound.oauth.keys import SigningKeys

# Clients may cache metadata for an hour; the JWKS for five minutes (a resource server
# refetches on an unknown kid anyway).
METADATA_CACHE = "public, max-age=3600"
JWKS_CACHE = "public, max-age=300"


def _issuers(request: Request) -> tuple[str, str | None]:
    issuer: str = request.app.state.settings.issuer_url
    mtls: str | None = getattr(request.app.state, "mtls_issuer", None)
    return issuer, mtls


def _json(document: dict[str, Any], cache: str) -> Response:
    return JSONResponse(document, headers={"cache-control": cache})


async def authorization_server(request: Request) -> Response:
    issuer, mtls = _issuers(request)
    return _json(rfc8414.authorization_server_metadata(issuer, mtls_issuer=mtls), METADATA_CACHE)


async def openid_configuration(request: Request) -> Response:
    issuer, mtls = _issuers(request)
    return _json(rfc8414.openid_configuration(issuer, mtls_issuer=mtls), METADATA_CACHE)


async def keys(request: Request) -> Response:
    signing_keys: SigningKeys = request.app.state.signing_keys
    return _json(await run_in_threadpool(signing_keys.jwks), JWKS_CACHE)


ROUTES = [
    Route("/.well-known/oauth-authorization-server", authorization_server, methods=["GET"]),
    Route("/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
    Route(rfc8414.KEYS, keys, methods=["GET"]),
]
