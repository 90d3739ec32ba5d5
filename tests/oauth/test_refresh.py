"""Refresh tokens on both databases: opaque and stored hashed, rotated on every use, reuse of a
rotated token revoking the whole family (the newest refresh token and the access tokens
issued included), RFC 8705 section 4 binding to the certificate they were issued over,
scope narrowing, expiry, RFC 7009 revocation, and two concurrent uses of one token."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from joserfc import jwt
from sqlalchemy import select

from certbound.errors import ReasonCode
from certbound.oauth.errors import OAuthError
from certbound.oauth.grants import digest
from certbound.oauth.rfc7662 import introspection
from certbound.oauth.rfc8705 import bound_thumbprint
from certbound.storage.models import OAuthGrant

Flow = Any  # conftest.Flow


def _start(flow: Flow, leaf: bytes | None = None, scope: str = "openid read write") -> Any:
    """A client ``web`` (client_secret_basic) and the code flow's first answer."""
    app, secret = flow.register("web")
    code = flow.authorize(app, scope=scope)
    form = {
        "grant_type": "authorization_code",
        "client_id": "web",
        "code": code,
        "redirect_uri": flow.redirect,
        "code_verifier": flow.verifier,
    }
    first = flow.token(form, secret=secret, leaf=leaf).to_dict()
    return secret, first


def _refresh(
    flow: Flow, secret: str, token: str, leaf: bytes | None = None, **extra: str
) -> dict[str, Any]:
    form = {"grant_type": "refresh_token", "client_id": "web", "refresh_token": token, **extra}
    body: dict[str, Any] = flow.token(form, secret=secret, leaf=leaf).to_dict()
    return body


def _refused(call: Any) -> OAuthError:
    with pytest.raises(OAuthError) as caught:
        call()
    return caught.value


def _claims(flow: Flow, token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, flow.keys.verification_keys()).claims)


def test_a_refresh_token_is_opaque_and_stored_hashed(flow: Flow) -> None:
    _, first = _start(flow)
    token = first["refresh_token"]
    assert len(token) == 43 and "." not in token
    with flow.db.session() as session:
        row = session.get(OAuthGrant, digest(token))
        assert row is not None and row.kind == "refresh" and row.user_id == flow.user.id
        assert token not in row.data


def test_every_use_rotates_the_token(flow: Flow) -> None:
    secret, first = _start(flow)
    second = _refresh(flow, secret, first["refresh_token"])
    assert second["refresh_token"] != first["refresh_token"]
    assert _claims(flow, second["access_token"])["sub"] == flow.user.id
    assert second["scope"] == "openid read write" and second["id_token"]
    id_claims = _claims(flow, second["id_token"])
    assert "nonce" not in id_claims and id_claims["auth_time"] <= id_claims["iat"]
    third = _refresh(flow, secret, second["refresh_token"])
    assert third["refresh_token"] not in {first["refresh_token"], second["refresh_token"]}
    with flow.db.session() as session:
        rows = session.scalars(select(OAuthGrant).where(OAuthGrant.kind == "refresh")).all()
        assert len({row.family for row in rows}) == 1 and len(rows) == 3
        assert sum(row.used_at is None for row in rows) == 1


def test_reuse_revokes_the_whole_family(flow: Flow) -> None:
    secret, first = _start(flow)
    second = _refresh(flow, secret, first["refresh_token"])
    reused = _refused(lambda: _refresh(flow, secret, first["refresh_token"]))
    assert (reused.error, reused.reason) == ("invalid_grant", ReasonCode.REFRESH_TOKEN_REUSED)
    # the newest refresh token stops working too, and the access tokens are revoked
    newest = _refused(lambda: _refresh(flow, secret, second["refresh_token"]))
    assert (newest.error, newest.reason) == ("invalid_grant", ReasonCode.GRANT_INVALID)
    for body in (first, second):
        assert flow.revocations.is_revoked(_claims(flow, body["access_token"])["jti"])
    reasons = [
        e["outcome"]["reason"]
        for e in flow.events("app.oauth2.token.grant")
        if e["outcome"]["result"] == "FAILURE"
    ]
    assert reasons == ["REFRESH_TOKEN_REUSED", "GRANT_INVALID"]


def test_a_token_issued_over_mtls_is_bound_to_that_certificate(
    flow: Flow, leaves: tuple[bytes, bytes]
) -> None:
    mine, other = leaves
    secret, first = _start(flow, leaf=mine)
    assert _claims(flow, first["access_token"])["cnf"] == {"x5t#S256": bound_thumbprint(mine)}
    mismatch = _refused(lambda: _refresh(flow, secret, first["refresh_token"], leaf=other))
    assert (mismatch.error, mismatch.reason) == (
        "invalid_grant",
        ReasonCode.TOKEN_BINDING_MISMATCH,
    )
    missing = _refused(lambda: _refresh(flow, secret, first["refresh_token"], leaf=None))
    assert missing.reason is ReasonCode.TOKEN_BINDING_MISSING
    # neither attempt consumed the token: its holder refreshes, and the binding carries over
    second = _refresh(flow, secret, first["refresh_token"], leaf=mine)
    assert _claims(flow, second["access_token"])["cnf"] == {"x5t#S256": bound_thumbprint(mine)}
    with flow.db.session() as session:
        row = session.get(OAuthGrant, digest(second["refresh_token"]))
        assert row is not None and row.cnf == bound_thumbprint(mine)


def test_a_token_issued_without_a_certificate_is_not_bound(
    flow: Flow, leaves: tuple[bytes, bytes]
) -> None:
    secret, first = _start(flow)
    second = _refresh(flow, secret, first["refresh_token"], leaf=leaves[1])
    # the new access token is bound to the certificate it was requested with
    assert _claims(flow, second["access_token"])["cnf"] == {"x5t#S256": bound_thumbprint(leaves[1])}


def test_the_scope_may_narrow_never_widen(flow: Flow) -> None:
    secret, first = _start(flow)
    narrow = _refresh(flow, secret, first["refresh_token"], scope="read")
    assert narrow["scope"] == "read" and "id_token" not in narrow
    wider = _refused(lambda: _refresh(flow, secret, narrow["refresh_token"], scope="read admin"))
    assert (wider.error, wider.reason) == ("invalid_scope", ReasonCode.SCOPE_NOT_ALLOWED)
    # the successor kept the original scope
    again = _refresh(flow, secret, narrow["refresh_token"])
    assert again["scope"] == "openid read write"


def test_an_expired_unknown_or_foreign_token_is_refused(flow: Flow) -> None:
    secret, first = _start(flow)
    _other, other_secret = flow.register("other")
    foreign = _refused(
        lambda: flow.token(
            {"grant_type": "refresh_token", "client_id": "other",
             "refresh_token": first["refresh_token"]},
            secret=other_secret,
        )
    )  # fmt: skip
    assert foreign.reason is ReasonCode.GRANT_INVALID
    unknown = _refused(lambda: _refresh(flow, secret, "x" * 43))
    assert unknown.reason is ReasonCode.GRANT_INVALID
    flow.clock.advance(dt.timedelta(seconds=3600))
    expired = _refused(lambda: _refresh(flow, secret, first["refresh_token"]))
    assert (expired.error, expired.reason) == ("invalid_grant", ReasonCode.GRANT_INVALID)
    assert "expired" in expired.description
    missing = _refused(lambda: _refresh(flow, secret, ""))
    assert missing.error == "invalid_request"


def test_revocation_revokes_the_family(flow: Flow) -> None:
    secret, first = _start(flow)
    second = _refresh(flow, secret, first["refresh_token"])
    assert flow.refresh.revoke(second["refresh_token"], "someone-else") is None
    family = flow.refresh.revoke(first["refresh_token"], "web")
    assert family is not None
    refused = _refused(lambda: _refresh(flow, secret, second["refresh_token"]))
    assert refused.reason is ReasonCode.GRANT_INVALID
    assert flow.revocations.is_revoked(_claims(flow, second["access_token"])["jti"])


def test_a_deleted_user_cannot_refresh(flow: Flow) -> None:
    secret, first = _start(flow)
    flow.users.delete(flow.user.id)
    refused = _refused(lambda: _refresh(flow, secret, first["refresh_token"]))
    assert refused.reason is ReasonCode.GRANT_INVALID


def test_two_concurrent_uses_one_wins_and_the_family_is_revoked(flow: Flow) -> None:
    secret, first = _start(flow)
    barrier = threading.Barrier(2, timeout=10)
    outcomes: list[object] = []

    def use() -> None:
        barrier.wait()
        try:
            outcomes.append(_refresh(flow, secret, first["refresh_token"]))
        except OAuthError as error:
            outcomes.append(error.reason)

    threads = [threading.Thread(target=use) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(outcomes) == 2
    won = [item for item in outcomes if isinstance(item, dict)]
    lost = [item for item in outcomes if not isinstance(item, dict)]
    assert len(won) == 1 and lost == [ReasonCode.REFRESH_TOKEN_REUSED]
    # the winner's refresh token died with the family
    refused = _refused(lambda: _refresh(flow, secret, won[0]["refresh_token"]))
    assert refused.reason is ReasonCode.GRANT_INVALID


def test_introspection_of_a_refresh_token_shows_its_binding_until_used(
    flow: Flow, leaves: tuple[bytes, bytes]
) -> None:
    mine, _other = leaves
    secret, first = _start(flow, leaf=mine)
    now = flow.clock.now()
    body = introspection(
        first["refresh_token"], flow.keys, flow.revocations, flow.issuer, now, refresh=flow.refresh
    )
    assert body["active"] is True and body["token_type"] == "refresh_token"
    assert (body["client_id"], body["sub"]) == ("web", flow.user.id)
    assert body["cnf"] == {"x5t#S256": bound_thumbprint(mine)}
    assert body["exp"] - body["iat"] == 3600
    second = _refresh(flow, secret, first["refresh_token"], leaf=mine)
    used = introspection(
        first["refresh_token"], flow.keys, flow.revocations, flow.issuer, now, refresh=flow.refresh
    )
    assert used == {"active": False}  # rotated: the old one is spent
    assert flow.refresh.introspect(second["refresh_token"])["active"] is True
    flow.refresh.revoke(second["refresh_token"], "web")
    assert flow.refresh.introspect(second["refresh_token"]) is None
    assert flow.refresh.introspect("not-a-token") is None
    # an access token still goes through the JWT path
    access = introspection(
        second["access_token"], flow.keys, flow.revocations, flow.issuer, now, refresh=flow.refresh
    )
    assert access["active"] is False  # revoked with its family


def test_an_unbound_refresh_token_introspects_without_cnf(flow: Flow) -> None:
    _secret, first = _start(flow)
    body = flow.refresh.introspect(first["refresh_token"])
    assert body is not None and body["active"] and "cnf" not in body
