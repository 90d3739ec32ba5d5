"""Signing keys on both databases: creation, encryption at rest, rotation and retirement,
cache expiry across instances; and the secret file."""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from joserfc import jwt
from sqlalchemy import select

from certbound.clock import FixedClock
from certbound.config import ConfigError
from certbound.errors import ReasonCode
from certbound.oauth.keys import SigningKeys, decrypt_private, load_secret
from certbound.oauth.rfc9068 import issue_access_token
from certbound.rs import AccessTokenVerifier, StaticJwks, TokenRejected
from certbound.storage.database import Database
from certbound.storage.models import SigningKey as SigningKeyRow

SECRET = b"s" * 32
ISSUER = "https://as.test"


def token(keys: SigningKeys, now: dt.datetime) -> str:
    text, _ = issue_access_token(
        keys.signing_key(),
        issuer=ISSUER,
        client_id="c",
        subject="c",
        audience="rs",
        scope="",
        lifetime=600,
        now=now,
    )
    return text


def verify(keys: SigningKeys, text: str, clock: FixedClock) -> str:
    verifier = AccessTokenVerifier(ISSUER, "rs", jwks=StaticJwks(keys.jwks()), clock=clock)
    return verifier.verify(text, None).subject


def test_first_use_creates_one_es256_key(database: Database, clock: FixedClock) -> None:
    keys = SigningKeys(database, clock, SECRET)
    assert keys.jwks() == {"keys": []}
    first = keys.signing_key()
    assert first.alg == "ES256"
    assert keys.signing_key() is first
    assert SigningKeys(database, clock, SECRET).signing_key().kid == first.kid
    (published,) = keys.jwks()["keys"]
    assert published["kid"] == first.kid == first.key.thumbprint()
    assert (published["alg"], published["use"], published["kty"]) == ("ES256", "sig", "EC")
    assert "d" not in published


def test_private_key_is_encrypted_at_rest(database: Database, clock: FixedClock) -> None:
    kid = SigningKeys(database, clock, SECRET).signing_key().kid
    with database.session() as session:
        row = session.get(SigningKeyRow, kid)
        assert row is not None
        session.expunge(row)
    assert row.private_pem.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(TypeError):  # a password is required
        serialization.load_pem_private_key(row.private_pem.encode(), None)
    with pytest.raises(ValueError):
        decrypt_private(row, b"x" * 32)
    assert decrypt_private(row, SECRET).kid == kid
    with pytest.raises(ValueError):
        SigningKeys(database, clock, b"x" * 32).signing_key()


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_rotation_keeps_old_tokens_verifiable_until_retired(
    database: Database, clock: FixedClock, now: dt.datetime, alg: str
) -> None:
    keys = SigningKeys(database, clock, SECRET)
    old_kid = keys.signing_key().kid
    old_token = token(keys, now)
    new_kid = keys.rotate(alg)
    assert new_kid != old_kid
    assert keys.signing_key().kid == new_kid
    assert keys.signing_key().alg == alg
    new_token = token(keys, now)
    assert [k["kid"] for k in keys.jwks()["keys"]] == [new_kid, old_kid]
    assert verify(keys, old_token, clock) == verify(keys, new_token, clock) == "c"
    # The KeySet other modules decode with (joserfc) holds both as well.
    for text in (old_token, new_token):
        assert jwt.decode(text, keys.verification_keys(), algorithms=["ES256", "RS256"])
    keys.retire(old_kid)
    assert [k["kid"] for k in keys.jwks()["keys"]] == [new_kid]
    with pytest.raises(TokenRejected) as info:
        verify(keys, old_token, clock)
    assert info.value.reason is ReasonCode.TOKEN_INVALID
    with database.session() as session:
        row = session.scalars(select(SigningKeyRow).where(SigningKeyRow.kid == old_kid)).one()
        assert (row.status, row.retired) == ("retired", now)


def test_retire_refuses_the_active_key_and_unknown_kids(
    database: Database, clock: FixedClock
) -> None:
    keys = SigningKeys(database, clock, SECRET)
    active = keys.signing_key().kid
    with pytest.raises(ValueError, match="rotate"):
        keys.retire(active)
    with pytest.raises(KeyError):
        keys.retire("no-such-kid")
    with pytest.raises(ValueError):
        keys.rotate("HS256")


def test_second_instance_sees_rotation_within_cache_seconds(
    database: Database, clock: FixedClock
) -> None:
    a = SigningKeys(database, clock, SECRET, cache_seconds=5)
    b = SigningKeys(database, clock, SECRET, cache_seconds=5)
    first = a.signing_key().kid
    assert b.signing_key().kid == first
    rotated = a.rotate()
    clock.advance(dt.timedelta(seconds=4))
    assert b.signing_key().kid == first  # still cached
    assert rotated not in [k["kid"] for k in b.jwks()["keys"]]
    clock.advance(dt.timedelta(seconds=1))
    assert b.signing_key().kid == rotated
    assert [k["kid"] for k in b.jwks()["keys"]] == [rotated, first]


def test_stored_public_jwk_is_json(database: Database, clock: FixedClock) -> None:
    kid = SigningKeys(database, clock, SECRET).signing_key().kid
    with database.session() as session:
        row = session.get(SigningKeyRow, kid)
        assert row is not None
        assert json.loads(row.public_jwk)["kid"] == kid


def test_short_secret_is_refused_by_the_constructor(database: Database, clock: FixedClock) -> None:
    with pytest.raises(ValueError):
        SigningKeys(database, clock, b"short")


# -- the secret file ---------------------------------------------------------------------


def test_load_secret_creates_a_private_file_once(tmp_path: Path) -> None:
    path = tmp_path / "data" / "secret.key"
    secret = load_secret(path)
    assert len(secret) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret(path) == secret
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]  # no temp file left


def test_load_secret_refuses_short_or_unreadable_files(tmp_path: Path) -> None:
    short = tmp_path / "short.key"
    short.write_bytes(b"abc")
    with pytest.raises(ConfigError, match="at least 32"):
        load_secret(short)
    assert short.read_bytes() == b"abc"  # never replaced
    directory = tmp_path / "dir.key"
    directory.mkdir()
    with pytest.raises(ConfigError, match="unreadable"):
        load_secret(directory)
