"""private_key_jwt client assertions (RFC 7523) signed with real keys (joserfc): every
accepted algorithm, and every refusal as invalid_client / CLIENT_AUTHENTICATION_FAILED."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from certbound.directory.apps import AuthMethod, ClientMetadata
from certbound.errors import ReasonCode
from certbound.oauth.errors import OAuthError
from certbound.oauth.rfc7523 import (
    AssertionReplay,
    claimed_subject,
    verify_client_assertion,
)

CLIENT = "billing-service"
TOKEN_URL = "https://auth.example.com/oauth2/v1/token"
ISSUER = "https://auth.example.com"
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)

AnyKey = ECKey | RSAKey | OKPKey


@pytest.fixture(scope="module")
def keys() -> dict[str, AnyKey]:
    return {
        "ES256": ECKey.generate_key("P-256", parameters={"kid": "ec"}),
        "RS256": RSAKey.generate_key(2048, parameters={"kid": "rsa"}),
        "PS256": RSAKey.generate_key(2048, parameters={"kid": "rsa-pss"}),
        "EdDSA": OKPKey.generate_key("Ed25519", parameters={"kid": "ed"}),
    }


def _meta(*keys: AnyKey) -> ClientMetadata:
    jwks = {"keys": [key.as_dict(private=False) for key in keys]}
    return ClientMetadata(AuthMethod.PRIVATE_KEY_JWT, jwks=jwks)


def _claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": CLIENT,
        "sub": CLIENT,
        "aud": TOKEN_URL,
        "exp": int((NOW + dt.timedelta(seconds=60)).timestamp()),
        "iat": int(NOW.timestamp()),
        "jti": str(uuid.uuid4()),
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def _sign(key: AnyKey | OctKey, alg: str, claims: dict[str, Any], kid: bool = True) -> str:
    header = {"alg": alg, **({"kid": key.kid} if kid and key.kid else {})}
    return jwt.encode(header, claims, key, algorithms=[alg])


def _verify(assertion: str, meta: ClientMetadata, replay: AssertionReplay | None = None) -> None:
    verify_client_assertion(
        assertion,
        meta,
        client_id=CLIENT,
        audience=(TOKEN_URL, ISSUER),
        now=NOW,
        replay=replay if replay is not None else AssertionReplay(),
    )


def _refused(assertion: str, meta: ClientMetadata, words: str, **kw: Any) -> None:
    with pytest.raises(OAuthError) as caught:
        _verify(assertion, meta, **kw)
    error = caught.value
    assert (error.error, error.reason, error.status) == (
        "invalid_client",
        ReasonCode.CLIENT_AUTHENTICATION_FAILED,
        401,
    )
    assert words in error.description, error.description


@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")
@pytest.mark.parametrize("alg", ["ES256", "RS256", "PS256", "EdDSA"])
def test_each_algorithm_accepted(keys: dict[str, AnyKey], alg: str) -> None:
    meta = _meta(*keys.values())
    _verify(_sign(keys[alg], alg, _claims()), meta)
    # Without a kid the key is found by type.
    _verify(_sign(keys[alg], alg, _claims(), kid=False), _meta(keys[alg]))


def test_issuer_audience_and_list_audience(keys: dict[str, AnyKey]) -> None:
    meta = _meta(keys["ES256"])
    _verify(_sign(keys["ES256"], "ES256", _claims(aud=ISSUER)), meta)
    _verify(_sign(keys["ES256"], "ES256", _claims(aud=["https://other", TOKEN_URL])), meta)


def test_none_and_hmac_are_refused(keys: dict[str, AnyKey]) -> None:
    meta = _meta(keys["ES256"])
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none"}).encode()).rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(_claims()).encode()).rstrip(b"=")
    _refused(f"{header.decode()}.{body.decode()}.", meta, "alg 'none' is not accepted")
    # HS256 keyed with the client's public key material: the classic confusion attack.
    public = json.dumps(keys["ES256"].as_dict(private=False)).encode()
    forged = _sign(OctKey.import_key(public), "HS256", _claims())
    _refused(forged, meta, "alg 'HS256' is not accepted")


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"iss": "someone-else"}, "iss must be the client_id"),
        ({"sub": "someone-else"}, "sub must be the client_id"),
        ({"sub": None}, "sub must be the client_id"),
        ({"aud": "https://evil.example/token"}, "aud"),
        ({"aud": None}, "aud"),
        ({"exp": None}, "exp must be a NumericDate"),
        ({"exp": "soon"}, "exp must be a NumericDate"),
        ({"exp": int((NOW - dt.timedelta(seconds=31)).timestamp())}, "expired"),
        ({"exp": int((NOW + dt.timedelta(minutes=6)).timestamp())}, "more than 300 s"),
        ({"nbf": int((NOW + dt.timedelta(minutes=2)).timestamp())}, "nbf is in the future"),
        ({"iat": int((NOW + dt.timedelta(minutes=2)).timestamp())}, "iat is in the future"),
        ({"jti": None}, "jti is required"),
        ({"jti": "x" * 257}, "jti is required"),
    ],
)
def test_claim_refusals(keys: dict[str, AnyKey], changes: dict[str, Any], words: str) -> None:
    meta = _meta(keys["ES256"])
    claims = _claims(**changes)
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
    _refused(_sign(keys["ES256"], "ES256", claims), meta, words)


def test_leeway_accepts_small_skew(keys: dict[str, AnyKey]) -> None:
    meta = _meta(keys["ES256"])
    skewed = _claims(
        exp=int((NOW - dt.timedelta(seconds=10)).timestamp()),
        iat=int((NOW + dt.timedelta(seconds=10)).timestamp()),
    )
    _verify(_sign(keys["ES256"], "ES256", skewed), meta)


def test_signature_refusals(keys: dict[str, AnyKey]) -> None:
    stranger = ECKey.generate_key("P-256", parameters={"kid": "ec"})
    meta = _meta(keys["ES256"], keys["RS256"])
    _refused(_sign(stranger, "ES256", _claims()), meta, "does not verify with kid 'ec'")
    _refused(_sign(stranger, "ES256", _claims(), kid=False), meta, "does not verify with any ES256")
    unknown_kid = ECKey.generate_key("P-256", parameters={"kid": "nope"})
    _refused(_sign(unknown_kid, "ES256", _claims()), meta, "no kid 'nope'")
    # An RSA key's signature under a kid that names the EC key.
    wrong_type = RSAKey.generate_key(2048, parameters={"kid": "ec"})
    _refused(_sign(wrong_type, "RS256", _claims()), _meta(keys["ES256"]), "no kid 'ec'")
    tampered = _sign(keys["ES256"], "ES256", _claims())
    head, _body, sig = tampered.split(".")
    other = base64.urlsafe_b64encode(json.dumps(_claims(sub="x")).encode()).rstrip(b"=")
    _refused(f"{head}.{other.decode()}.{sig}", meta, "does not verify")
    _refused("not-a-jwt", meta, "not a compact JWS")
    _refused("a" * 20_000, meta, "longer than")
    _refused(tampered, ClientMetadata(AuthMethod.PRIVATE_KEY_JWT), "registers no public keys")


def test_encryption_keys_are_not_used(keys: dict[str, AnyKey]) -> None:
    jwk = {**keys["ES256"].as_dict(private=False), "use": "enc"}
    meta = ClientMetadata(AuthMethod.PRIVATE_KEY_JWT, jwks={"keys": [jwk]})
    _refused(_sign(keys["ES256"], "ES256", _claims()), meta, "no kid 'ec'")


def test_replay_is_refused_per_client(keys: dict[str, AnyKey]) -> None:
    meta = _meta(keys["ES256"])
    replay = AssertionReplay()
    assertion = _sign(keys["ES256"], "ES256", _claims(jti="once"))
    _verify(assertion, meta, replay)
    _refused(assertion, meta, "already used (replay)", replay=replay)
    # A forged assertion with a fresh jti is refused at the signature: the cache is untouched.
    stranger = ECKey.generate_key("P-256", parameters={"kid": "ec"})
    _refused(_sign(stranger, "ES256", _claims(jti="fresh")), meta, "does not verify")
    assert len(replay) == 1
    _verify(_sign(keys["ES256"], "ES256", _claims(jti="fresh")), meta, replay)


def test_replay_cache_is_bounded_and_forgets_expired() -> None:
    replay = AssertionReplay(max_entries=2)
    soon = NOW + dt.timedelta(seconds=60)
    assert replay.remember("c", "1", soon, NOW) is None
    assert replay.remember("c", "2", soon, NOW) is None
    assert replay.remember("other", "1", soon, NOW) is not None  # full: refused, not forgotten
    assert replay.remember("c", "1", soon, NOW) == "assertion jti '1' was already used (replay)"
    later = NOW + dt.timedelta(seconds=61)
    assert replay.remember("c", "3", later + dt.timedelta(seconds=60), later) is None
    assert len(replay) == 1


def test_claimed_subject(keys: dict[str, AnyKey]) -> None:
    assert claimed_subject(_sign(keys["ES256"], "ES256", _claims())) == CLIENT
    assert claimed_subject(_sign(keys["ES256"], "ES256", _claims(sub=None))) is None
    assert claimed_subject("garbage") is None
