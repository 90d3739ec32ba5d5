"""RFC 8414 authorization server metadata and OpenID Connect discovery, with the RFC 8705
additions: ``tls_client_certificate_bound_access_tokens`` and ``mtls_endpoint_aliases``.

Endpoint paths are DESIGN.md's (``/oauth2/v1/...``). ``mtls_issuer`` is the base URL of the
mTLS listener when it differs from the issuer's (else the aliases name the same URLs).
"""

from __future__ import annotations

from typing import Any

TOKEN = "/oauth2/v1/token"
AUTHORIZE = "/oauth2/v1/authorize"
KEYS = "/oauth2/v1/keys"
INTROSPECT = "/oauth2/v1/introspect"
REVOKE = "/oauth2/v1/revoke"

SIGNING_ALGORITHMS = ["ES256", "RS256"]
AUTH_METHODS = [
    "tls_client_auth",
    "self_signed_tls_client_auth",
    "private_key_jwt",
    "client_secret_basic",
    "client_secret_post",
    "none",
]
SCOPES = ["openid", "profile", "email", "offline_access"]


def authorization_server_metadata(issuer: str, *, mtls_issuer: str | None = None) -> dict[str, Any]:
    """The ``/.well-known/oauth-authorization-server`` document."""
    base = issuer.rstrip("/")
    mtls = (mtls_issuer or issuer).rstrip("/")
    return {
        "issuer": base,
        "authorization_endpoint": base + AUTHORIZE,
        "token_endpoint": base + TOKEN,
        "jwks_uri": base + KEYS,
        "introspection_endpoint": base + INTROSPECT,
        "revocation_endpoint": base + REVOKE,
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(SIGNING_ALGORITHMS),
        "introspection_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "tls_client_certificate_bound_access_tokens": True,
        "mtls_endpoint_aliases": {
            "token_endpoint": mtls + TOKEN,
            "introspection_endpoint": mtls + INTROSPECT,
            "revocation_endpoint": mtls + REVOKE,
        },
    }


def openid_configuration(issuer: str, *, mtls_issuer: str | None = None) -> dict[str, Any]:
    """The ``/.well-known/openid-configuration`` document (no userinfo endpoint)."""
    return {
        **authorization_server_metadata(issuer, mtls_issuer=mtls_issuer),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(SIGNING_ALGORITHMS),
        "scopes_supported": list(SCOPES),
    }
