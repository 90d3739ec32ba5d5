"""OpenID Connect ID tokens: at_hash against the specification's own example, the header and
claims, profile and email claims only with their scopes, and the token the code flow issues
(both databases) checked by a third-party validator: Authlib's ``CodeIDToken`` rules for iss,
aud, exp, iat, nonce, auth_time and at_hash."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from certbound.oauth.id_token import Identity, at_hash, id_token_claims, issue_id_token
from certbound.oauth.keys import SigningKey

Flow = Any  # conftest.Flow
NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


def test_at_hash_matches_the_openid_connect_core_example() -> None:
    # OpenID Connect Core 1.0, appendix A.3: this access token has this at_hash (RS256).
    assert at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y", "RS256") == (
        "77QmUPtjPfzWtF2AnpK9RQ"
    )
    assert at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y", "ES256") == (
        "77QmUPtjPfzWtF2AnpK9RQ"
    )


def _claims(scope: str, **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "issuer": "https://auth.example.test",
        "identity": Identity("usr_1", "alice", "alice@example.test", "Alice A"),
        "client_id": "web",
        "scope": scope,
        "auth_time": int(NOW.timestamp()) - 5,
        "nonce": "n-1",
        "access_token": "at",
        "alg": "ES256",
        "lifetime": 300,
        "now": NOW,
    }
    arguments.update(overrides)
    return id_token_claims(**arguments)


def test_the_claims() -> None:
    claims = _claims("openid")
    iat = int(NOW.timestamp())
    assert claims == {
        "iss": "https://auth.example.test",
        "sub": "usr_1",
        "aud": "web",
        "azp": "web",
        "exp": iat + 300,
        "iat": iat,
        "auth_time": iat - 5,
        "nonce": "n-1",
        "at_hash": at_hash("at", "ES256"),
    }
    assert "nonce" not in _claims("openid", nonce=None)
    with pytest.raises(ValueError, match="lifetime"):
        _claims("openid", lifetime=0)


def test_profile_and_email_claims_only_with_their_scopes() -> None:
    assert "email" not in _claims("openid") and "preferred_username" not in _claims("openid")
    assert _claims("openid email")["email"] == "alice@example.test"
    profile = _claims("openid profile")
    assert (profile["preferred_username"], profile["name"]) == ("alice", "Alice A")
    assert "email" not in profile


def test_the_header_and_signature() -> None:
    key = ECKey.generate_key("P-256", private=True)
    signing = SigningKey(key.thumbprint(), "ES256", key)
    token, claims = issue_id_token(
        signing,
        issuer="https://auth.example.test",
        identity=Identity("usr_1"),
        client_id="web",
        scope="openid",
        auth_time=None,
        nonce=None,
        access_token="at",
        lifetime=300,
        now=NOW,
    )
    decoded = jwt.decode(token, key, algorithms=["ES256"])
    assert decoded.header == {"typ": "JWT", "alg": "ES256", "kid": key.thumbprint()}
    assert decoded.claims == claims and "auth_time" not in claims


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_code_flow_id_token_passes_authlibs_validation(flow: Flow) -> None:
    from authlib.oidc.core import CodeIDToken
    from joserfc.errors import InvalidClaimError  # what Authlib 1.9 raises

    app, secret = flow.register("web")
    code = flow.authorize(app, scope="openid read", nonce="nonce-42")
    body = flow.redeem(app, secret, code).to_dict()
    decoded = jwt.decode(body["id_token"], flow.keys.verification_keys(), algorithms=["ES256"])
    assert decoded.header["typ"] == "JWT" and decoded.header["alg"] == "ES256"
    token = CodeIDToken(
        dict(decoded.claims),
        dict(decoded.header),
        options={"iss": {"value": flow.issuer}, "aud": {"values": ["web"]}},
        params={"nonce": "nonce-42", "access_token": body["access_token"]},
    )
    token.validate(now=int(flow.clock.now().timestamp()), leeway=0)
    assert token["sub"] == flow.user.id
    # the same validator refuses another access token's hash and another nonce
    forged = CodeIDToken(
        dict(decoded.claims),
        dict(decoded.header),
        options={"iss": {"value": flow.issuer}},
        params={"nonce": "nonce-42", "access_token": body["access_token"] + "x"},
    )
    with pytest.raises(InvalidClaimError, match="at_hash"):
        forged.validate(now=int(flow.clock.now().timestamp()), leeway=0)
    replay = CodeIDToken(
        dict(decoded.claims),
        dict(decoded.header),
        options={"iss": {"value": flow.issuer}},
        params={"nonce": "another", "access_token": body["access_token"]},
    )
    with pytest.raises(InvalidClaimError, match="nonce"):
        replay.validate(now=int(flow.clock.now().timestamp()), leeway=0)
