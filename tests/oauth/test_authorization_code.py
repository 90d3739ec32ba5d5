"""The authorization-code grant on both databases: the authorization request's checks (which
refusals are a page, which a redirect), codes stored hashed, single use, 60 s, bound to the
client and redirect URI, PKCE S256, replay revoking the family, and the token endpoint's
answer (access token for the user, refresh token, ID token, certificate binding, events)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from joserfc import jwt
from sqlalchemy import select

from certbound.directory.apps import AuthMethod
from certbound.errors import ReasonCode
from certbound.oauth.authorization_code import (
    AuthorizeError,
    check_authorize_request,
    request_parameters,
)
from certbound.oauth.errors import OAuthError
from certbound.oauth.grants import digest
from certbound.oauth.rfc7636 import s256
from certbound.oauth.rfc8705 import bound_thumbprint
from certbound.storage.models import OAuthGrant

Flow = Any  # conftest.Flow
REDIRECT = "http://127.0.0.1:8765/cb"  # conftest.REDIRECT (flow.redirect)
VERIFIER = "v" * 20 + "-._~" + "x" * 30  # conftest.VERIFIER (flow.verifier)
CHALLENGE = s256(VERIFIER)


def _request(client: str, **params: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": client,
        "redirect_uri": REDIRECT,
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
        "state": "st-1",
        **params,
    }


def _refused(flow: Flow, params: dict[str, str]) -> AuthorizeError:
    with pytest.raises(AuthorizeError) as caught:
        check_authorize_request(params, flow.apps)
    return caught.value


def _grant_error(flow: Flow, call: Any) -> OAuthError:
    with pytest.raises(OAuthError) as caught:
        call()
    return caught.value


# --- the authorization request ---------------------------------------------------------------


def test_a_valid_request_is_checked_and_normalised(flow: Flow) -> None:
    flow.register("web")
    checked = check_authorize_request(
        _request("web", scope="openid read read", nonce="n-1"), flow.apps
    )
    assert (checked.redirect_uri, checked.scope, checked.state) == (REDIRECT, "openid read", "st-1")
    assert checked.nonce == "n-1" and checked.code_challenge == CHALLENGE
    assert request_parameters(checked)["scope"] == "openid read"
    # no scope: every registered one; no redirect_uri with a single registered one: that one
    bare = _request("web")
    del bare["redirect_uri"]
    default = check_authorize_request(bare, flow.apps)
    assert (default.scope, default.redirect_uri, default.redirect_uri_given) == (
        "read write",
        REDIRECT,
        False,
    )


@pytest.mark.parametrize(
    ("change", "error", "reason"),
    [
        ({"client_id": ""}, "invalid_request", ReasonCode.INVALID_OAUTH_REQUEST),
        ({"client_id": "nobody"}, "invalid_request", ReasonCode.INVALID_OAUTH_REQUEST),
        ({"client_id": "machine"}, "unauthorized_client", ReasonCode.UNSUPPORTED_GRANT_TYPE),
        ({"redirect_uri": REDIRECT + "/x"}, "invalid_request", ReasonCode.INVALID_OAUTH_REQUEST),
        ({"redirect_uri": "https://evil.example/cb"}, "invalid_request",
         ReasonCode.INVALID_OAUTH_REQUEST),
    ],
)  # fmt: skip
def test_an_untrusted_client_or_redirect_uri_is_a_page_never_a_redirect(
    flow: Flow, change: dict[str, str], error: str, reason: ReasonCode
) -> None:
    flow.register("web")
    flow.register("machine", grant_types=("client_credentials",), redirect_uris=())
    refused = _refused(flow, _request("web", **change))
    assert refused.redirect_uri is None
    assert (refused.error.error, refused.error.reason) == (error, reason)
    with pytest.raises(AssertionError):
        refused.location()


@pytest.mark.parametrize(
    ("change", "error", "reason"),
    [
        ({"response_type": "token"}, "unsupported_response_type",
         ReasonCode.INVALID_OAUTH_REQUEST),
        ({"scope": "read admin"}, "invalid_scope", ReasonCode.SCOPE_NOT_ALLOWED),
        ({"code_challenge": ""}, "invalid_request", ReasonCode.PKCE_FAILED),
        ({"code_challenge_method": "plain"}, "invalid_request", ReasonCode.PKCE_FAILED),
        ({"code_challenge_method": ""}, "invalid_request", ReasonCode.PKCE_FAILED),
        ({"nonce": "n" * 3000}, "invalid_request", ReasonCode.INVALID_OAUTH_REQUEST),
    ],
)  # fmt: skip
def test_other_refusals_go_back_to_the_client_with_the_state(
    flow: Flow, change: dict[str, str], error: str, reason: ReasonCode
) -> None:
    flow.register("web")
    refused = _refused(flow, _request("web", **change))
    assert refused.redirect_uri == REDIRECT
    assert (refused.error.error, refused.error.reason) == (error, reason)
    location = urlsplit(refused.location())
    query = parse_qs(location.query)
    assert location._replace(query="").geturl() == REDIRECT
    assert query["error"] == [error] and query["state"] == ["st-1"]


def test_pkce_is_required_of_confidential_clients_too(flow: Flow) -> None:
    flow.register("web", method=AuthMethod.CLIENT_SECRET_BASIC)
    params = _request("web")
    del params["code_challenge"], params["code_challenge_method"]
    assert _refused(flow, params).error.reason is ReasonCode.PKCE_FAILED


def test_an_oversized_state_is_refused_and_not_echoed(flow: Flow) -> None:
    flow.register("web")
    refused = _refused(flow, _request("web", state="s" * 3000))
    assert "state=" not in refused.location()


# --- codes ---------------------------------------------------------------------------------------


def test_a_code_is_stored_hashed_with_what_it_grants(flow: Flow) -> None:
    app, _ = flow.register("web")
    code = flow.authorize(app, scope="openid read", nonce="n-1")
    with flow.db.session() as session:
        rows = session.scalars(select(OAuthGrant)).all()
        assert [row.token_hash for row in rows] == [digest(code)]
        row = rows[0]
        assert (row.kind, row.client_id, row.user_id, row.cnf) == (
            "code",
            "web",
            flow.user.id,
            None,
        )
        assert code not in row.data
        assert (row.expires_at - row.created) == dt.timedelta(seconds=60)


def test_the_code_flow_issues_tokens_for_the_user(flow: Flow) -> None:
    app, secret = flow.register("web", scope="read write profile email")
    code = flow.authorize(app, scope="openid read profile email", nonce="n-1")
    answer = flow.redeem(app, secret, code)
    body = answer.to_dict()
    assert body["scope"] == "openid read profile email" and body["token_type"] == "Bearer"
    claims = jwt.decode(body["access_token"], flow.keys.verification_keys()).claims
    assert (claims["sub"], claims["client_id"]) == (flow.user.id, "web")
    assert "cnf" not in claims  # no certificate: nothing to bind to
    assert body["refresh_token"] and body["id_token"]
    id_claims = jwt.decode(body["id_token"], flow.keys.verification_keys()).claims
    assert (id_claims["sub"], id_claims["aud"], id_claims["nonce"]) == (flow.user.id, "web", "n-1")
    assert id_claims["email"] == "alice@example.test"
    granted = flow.events("app.oauth2.token.grant")
    assert [e["outcome"]["result"] for e in granted] == ["SUCCESS"]
    data = granted[0]["debugContext"]["debugData"]
    assert data["grantType"] == "authorization_code" and data["userId"] == flow.user.id
    assert data["refreshTokenIssued"] and data["idTokenIssued"]
    assert code not in str(granted) and body["refresh_token"] not in str(granted)


def test_without_openid_or_the_refresh_grant_only_an_access_token(flow: Flow) -> None:
    app, secret = flow.register("plain", grant_types=("authorization_code",))
    body = flow.redeem(app, secret, flow.authorize(app, scope="read")).to_dict()
    assert "refresh_token" not in body and "id_token" not in body


def test_a_public_client_redeems_with_pkce_and_over_mtls_gets_a_bound_token(
    flow: Flow, leaves: tuple[bytes, bytes]
) -> None:
    app, secret = flow.register("spa", method=AuthMethod.NONE, grant_types=("authorization_code",))
    assert secret is None
    code = flow.authorize(app)
    form = {
        "grant_type": "authorization_code",
        "client_id": "spa",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": VERIFIER,
    }
    body = flow.token(form, leaf=leaves[0]).to_dict()
    claims = jwt.decode(body["access_token"], flow.keys.verification_keys()).claims
    assert claims["cnf"] == {"x5t#S256": bound_thumbprint(leaves[0])}


def test_a_replayed_code_is_refused_and_revokes_what_it_issued(flow: Flow) -> None:
    app, secret = flow.register("web")
    code = flow.authorize(app)
    first = flow.redeem(app, secret, code).to_dict()
    error = _grant_error(flow, lambda: flow.redeem(app, secret, code))
    assert (error.error, error.reason) == ("invalid_grant", ReasonCode.GRANT_INVALID)
    assert "already used" in error.description
    jti = jwt.decode(first["access_token"], flow.keys.verification_keys()).claims["jti"]
    assert flow.revocations.is_revoked(jti)
    refreshed = _grant_error(
        flow,
        lambda: flow.token(
            {
                "grant_type": "refresh_token",
                "client_id": "web",
                "refresh_token": first["refresh_token"],
            },
            secret=secret,
        ),
    )
    assert (refreshed.error, refreshed.reason) == ("invalid_grant", ReasonCode.GRANT_INVALID)
    refusals = [e for e in flow.events("app.oauth2.token.grant") if e["outcome"]["reason"]]
    assert [e["outcome"]["reason"] for e in refusals] == ["GRANT_INVALID", "GRANT_INVALID"]


def test_an_expired_code_is_refused(flow: Flow) -> None:
    app, secret = flow.register("web")
    code = flow.authorize(app)
    flow.clock.advance(dt.timedelta(seconds=60))
    error = _grant_error(flow, lambda: flow.redeem(app, secret, code))
    assert (error.error, error.reason) == ("invalid_grant", ReasonCode.GRANT_INVALID)
    assert "expired" in error.description


def test_a_code_just_inside_its_lifetime_is_accepted(flow: Flow) -> None:
    app, secret = flow.register("web")
    code = flow.authorize(app)
    flow.clock.advance(dt.timedelta(seconds=59))
    assert flow.redeem(app, secret, code).access_token


@pytest.mark.parametrize(
    ("extra", "error", "reason"),
    [
        ({"redirect_uri": "http://127.0.0.1:8765/other"}, "invalid_grant",
         ReasonCode.GRANT_INVALID),
        ({"code_verifier": "w" * 50}, "invalid_grant", ReasonCode.PKCE_FAILED),
        ({"code_verifier": ""}, "invalid_request", ReasonCode.PKCE_FAILED),
        ({"code": "not-a-code"}, "invalid_grant", ReasonCode.GRANT_INVALID),
        ({"code": ""}, "invalid_request", ReasonCode.INVALID_OAUTH_REQUEST),
    ],
)  # fmt: skip
def test_bad_token_requests_are_refused_and_do_not_burn_the_code(
    flow: Flow, extra: dict[str, str], error: str, reason: ReasonCode
) -> None:
    app, secret = flow.register("web")
    code = flow.authorize(app)
    refused = _grant_error(flow, lambda: flow.redeem(app, secret, code, **extra))
    assert (refused.error, refused.reason) == (error, reason)
    assert flow.redeem(app, secret, code).access_token  # the real client still can


def test_a_code_of_another_client_is_refused(flow: Flow) -> None:
    app, _ = flow.register("web")
    other, other_secret = flow.register("other")
    code = flow.authorize(app)
    refused = _grant_error(flow, lambda: flow.redeem(other, other_secret, code))
    assert (refused.error, refused.reason) == ("invalid_grant", ReasonCode.GRANT_INVALID)


def test_a_suspended_user_gets_no_tokens(flow: Flow) -> None:
    app, secret = flow.register("web")
    code = flow.authorize(app)
    flow.users.suspend(flow.user.id)
    refused = _grant_error(flow, lambda: flow.redeem(app, secret, code))
    assert refused.reason is ReasonCode.GRANT_INVALID


def test_without_user_grants_the_endpoint_refuses_the_code_grant(flow: Flow) -> None:
    from certbound.oauth.token_endpoint import check_grant_type

    with pytest.raises(OAuthError) as caught:
        check_grant_type("authorization_code", frozenset({"client_credentials"}))
    assert caught.value.reason is ReasonCode.UNSUPPORTED_GRANT_TYPE


def test_the_module_constants_are_the_fixtures(flow: Flow) -> None:
    assert (flow.redirect, flow.verifier) == (REDIRECT, VERIFIER)
