"""RFC 9068 access tokens as issued: header, claims, binding, and a signature joserfc
(an independent verifier) accepts."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from certbound.oauth.keys import SigningKey, generate, public_jwk
from certbound.oauth.rfc9068 import issue_access_token
from certbound.pki import devpki
from certbound.pki.certificate import der, x5t_s256


@pytest.fixture(scope="module", params=["ES256", "RS256"])
def key(request: pytest.FixtureRequest) -> SigningKey:
    jose = generate(request.param)
    assert jose.kid is not None
    return SigningKey(jose.kid, request.param, jose)


def issue(key: SigningKey, now: dt.datetime, **kw: object) -> tuple[str, dict[str, object]]:
    args: dict[str, object] = {
        "issuer": "https://as.test",
        "client_id": "app-1",
        "subject": "alice",
        "audience": "https://api.test",
        "scope": "read write",
        "lifetime": 600,
        "now": now,
    }
    args.update(kw)
    return issue_access_token(key, **args)  # type: ignore[arg-type]


def header_of(token: str) -> dict[str, object]:
    part = token.split(".", maxsplit=1)[0]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(part + "=="))
    return decoded


def test_header_and_claims(key: SigningKey, now: dt.datetime) -> None:
    token, claims = issue(key, now)
    assert header_of(token) == {"typ": "at+jwt", "alg": key.alg, "kid": key.kid}
    iat = int(now.timestamp())
    assert claims["iss"] == "https://as.test"
    assert (claims["sub"], claims["client_id"], claims["scope"]) == ("alice", "app-1", "read write")
    assert claims["aud"] == "https://api.test"
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (iat, iat, iat + 600)
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 22
    assert "cnf" not in claims
    keyset = KeySet.import_key_set({"keys": [public_jwk(key.key, key.alg)]})
    decoded = jwt.decode(token, keyset, algorithms=[key.alg])
    assert decoded.claims == claims


def test_bound_token_carries_the_certificate_thumbprint(key: SigningKey, now: dt.datetime) -> None:
    cert = der(devpki.build_dev_pki(now).devices["good"].cert)
    _, claims = issue(key, now, cnf_x5t_s256=x5t_s256(cert), audience=["a", "b"])
    assert claims["cnf"] == {"x5t#S256": x5t_s256(cert)}
    assert claims["aud"] == ["a", "b"]


def test_jti_is_unique_and_extra_claims_cannot_override(key: SigningKey, now: dt.datetime) -> None:
    jtis = {issue(key, now)[1]["jti"] for _ in range(20)}
    assert len(jtis) == 20
    _, claims = issue(key, now, extra={"auth_time": 5})
    assert claims["auth_time"] == 5
    for clash in ("iss", "cnf", "exp"):
        with pytest.raises(ValueError, match=clash):
            issue(key, now, extra={clash: "x"})
    with pytest.raises(ValueError):
        issue(key, now, lifetime=0)
