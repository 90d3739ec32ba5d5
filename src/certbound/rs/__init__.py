"""The resource-server SDK: verify Certbound's certificate-bound JWT access tokens.

:class:`AccessTokenVerifier` (a plain call: token and presented certificate in, verified
:class:`AccessToken` or :class:`TokenRejected` out) and :class:`BoundTokenMiddleware` (the
same as ASGI middleware). Keys come from a :class:`RemoteJwks` (the issuer's ``jwks_uri``,
cached) or a :class:`StaticJwks`. This package imports neither the server's database layer
nor its web framework: a resource server needs only ``cryptography``, ``joserfc`` and
``httpx``.
"""

from certbound.rs.binding import x5t_s256
from certbound.rs.jwks import JwksSource, JwksUnavailableError, RemoteJwks, StaticJwks
from certbound.rs.middleware import BoundTokenMiddleware
from certbound.rs.verifier import AccessToken, AccessTokenVerifier, TokenRejected

__all__ = [
    "AccessToken",
    "AccessTokenVerifier",
    "BoundTokenMiddleware",
    "JwksSource",
    "JwksUnavailableError",
    "RemoteJwks",
    "StaticJwks",
    "TokenRejected",
    "x5t_s256",
]
