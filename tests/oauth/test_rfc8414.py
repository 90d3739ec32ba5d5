"""RFC 8414 / OpenID discovery documents, and the routes serving them and the JWKS."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from certbound.clock import FixedClock
from certbound.config import Settings
from certbound.oauth import rfc8414
from certbound.oauth.keys import SigningKeys
from certbound.storage.database import Database
from certbound.web import discovery


def test_authorization_server_metadata() -> None:
    doc = rfc8414.authorization_server_metadata("https://as.test/")
    assert doc["issuer"] == "https://as.test"
    assert doc["token_endpoint"] == "https://as.test/oauth2/v1/token"
    assert doc["authorization_endpoint"] == "https://as.test/oauth2/v1/authorize"
    assert doc["jwks_uri"] == "https://as.test/oauth2/v1/keys"
    assert doc["introspection_endpoint"] == "https://as.test/oauth2/v1/introspect"
    assert doc["revocation_endpoint"] == "https://as.test/oauth2/v1/revoke"
    assert doc["tls_client_certificate_bound_access_tokens"] is True
    assert doc["grant_types_supported"] == [
        "authorization_code",
        "client_credentials",
        "refresh_token",
    ]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert "tls_client_auth" in doc["token_endpoint_auth_methods_supported"]
    assert "self_signed_tls_client_auth" in doc["token_endpoint_auth_methods_supported"]
    assert doc["mtls_endpoint_aliases"] == {
        "token_endpoint": "https://as.test/oauth2/v1/token",
        "introspection_endpoint": "https://as.test/oauth2/v1/introspect",
        "revocation_endpoint": "https://as.test/oauth2/v1/revoke",
    }
    assert "subject_types_supported" not in doc


def test_mtls_aliases_point_at_the_mtls_listener() -> None:
    doc = rfc8414.openid_configuration("https://as.test", mtls_issuer="https://mtls.as.test:8443")
    assert doc["token_endpoint"] == "https://as.test/oauth2/v1/token"
    assert (
        doc["mtls_endpoint_aliases"]["token_endpoint"]
        == "https://mtls.as.test:8443/oauth2/v1/token"
    )
    assert doc["subject_types_supported"] == ["public"]
    assert doc["id_token_signing_alg_values_supported"] == ["ES256", "RS256"]
    assert "openid" in doc["scopes_supported"]
    assert "userinfo_endpoint" not in doc


@pytest.mark.anyio
async def test_routes_serve_discovery_and_keys(
    database: Database, clock: FixedClock, tmp_path: Path
) -> None:
    app = Starlette(routes=discovery.ROUTES)
    app.state.settings = Settings(
        data_dir=tmp_path, database_url="sqlite://", issuer="https://as.test"
    )
    keys = SigningKeys(database, clock, b"k" * 32)
    app.state.signing_keys = keys
    kid = keys.signing_key().kid
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://as.test") as http:
        meta = await http.get("/.well-known/oauth-authorization-server")
        oidc = await http.get("/.well-known/openid-configuration")
        jwks = await http.get("/oauth2/v1/keys")
    assert meta.status_code == oidc.status_code == jwks.status_code == 200
    assert meta.json() == rfc8414.authorization_server_metadata("https://as.test")
    assert oidc.json()["issuer"] == "https://as.test"
    assert oidc.json()["tls_client_certificate_bound_access_tokens"] is True
    assert [k["kid"] for k in jwks.json()["keys"]] == [kid]
    assert "d" not in jwks.json()["keys"][0]
    assert jwks.headers["cache-control"] == "public, max-age=300"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
