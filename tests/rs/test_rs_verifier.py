"""The resource-server verifier: real keys, real tokens (issued by certbound.oauth.rfc9068),
hostile tokens built by hand, certificate binding with devpki certificates, and the JWKS
cache against a real HTTP server on loopback."""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from certbound.clock import FixedClock
from certbound.errors import ReasonCode, WouldBlockError
from certbound.oauth.keys import SigningKey, generate, public_jwk
from certbound.oauth.rfc9068 import issue_access_token
from certbound.pki import devpki
from certbound.pki.certificate import der, x5t_s256
from certbound.rs import (
    AccessTokenVerifier,
    JwksUnavailableError,
    RemoteJwks,
    StaticJwks,
    TokenRejected,
)

ISSUER = "https://as.certbound.test"
AUDIENCE = "https://api.certbound.test"


def _key(alg: str) -> SigningKey:
    key = generate(alg)
    assert key.kid is not None
    return SigningKey(key.kid, alg, key)


@pytest.fixture(scope="module")
def es() -> SigningKey:
    return _key("ES256")


@pytest.fixture(scope="module")
def rs() -> SigningKey:
    return _key("RS256")


@pytest.fixture(scope="module")
def pki() -> devpki.DevPKI:
    return devpki.build_dev_pki()


@pytest.fixture(scope="module")
def good(pki: devpki.DevPKI) -> bytes:
    return der(pki.devices["good"].cert)


@pytest.fixture(scope="module")
def other(pki: devpki.DevPKI) -> bytes:
    return der(pki.devices["cn-only"].cert)


def jwks_of(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [public_jwk(k.key, k.alg) for k in keys]}


@pytest.fixture
def verifier(es: SigningKey, rs: SigningKey, clock: FixedClock) -> AccessTokenVerifier:
    return AccessTokenVerifier(ISSUER, AUDIENCE, jwks=StaticJwks(jwks_of(es, rs)), clock=clock)


def issue(key: SigningKey, now: dt.datetime, **kw: Any) -> str:
    args: dict[str, Any] = {
        "issuer": ISSUER,
        "client_id": "app-1",
        "subject": "app-1",
        "audience": AUDIENCE,
        "scope": "read write",
        "lifetime": 300,
        "now": now,
    }
    args.update(kw)
    token, _ = issue_access_token(key, **args)
    return token


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(obj: Any) -> str:
    return b64(json.dumps(obj).encode())


def claims_at(now: dt.datetime, **overrides: Any) -> dict[str, Any]:
    iat = int(now.timestamp())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "app-1",
        "aud": AUDIENCE,
        "exp": iat + 300,
        "iat": iat,
        "jti": "j-1",
        "client_id": "app-1",
        "scope": "read",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def es_sign(key: SigningKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A hand-built ES256 JWS (raw r||s), to forge headers joserfc would not write."""
    signing_input = f"{segment(header)}.{segment(claims)}"
    private = key.key.private_key
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    r, s = utils.decode_dss_signature(
        private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    )
    return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def rejected(verifier: AccessTokenVerifier, token: str, cert: bytes | None = None) -> TokenRejected:
    with pytest.raises(TokenRejected) as info:
        verifier.verify(token, cert)
    assert info.value.error == "invalid_token"
    return info.value


# -- accepted ------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["es", "rs"])
def test_valid_unbound_token_is_accepted(
    request: pytest.FixtureRequest, verifier: AccessTokenVerifier, now: dt.datetime, alg: str
) -> None:
    key: SigningKey = request.getfixturevalue(alg)
    access = verifier.verify(issue(key, now), None)
    assert access.subject == "app-1"
    assert access.client_id == "app-1"
    assert access.scope == ("read", "write")
    assert access.cnf_x5t_s256 is None
    assert access.claims["iss"] == ISSUER


def test_bound_token_with_its_certificate_is_accepted(
    verifier: AccessTokenVerifier, es: SigningKey, now: dt.datetime, good: bytes
) -> None:
    token = issue(es, now, cnf_x5t_s256=x5t_s256(good))
    access = verifier.verify(token, good)
    assert access.cnf_x5t_s256 == x5t_s256(good)


def test_audience_list_and_media_type_typ_are_accepted(
    verifier: AccessTokenVerifier, es: SigningKey, now: dt.datetime
) -> None:
    token = issue(es, now, audience=["https://other.test", AUDIENCE])
    assert verifier.verify(token, None).subject == "app-1"
    header = {"typ": "application/at+jwt", "alg": "ES256", "kid": es.kid}
    assert verifier.verify(es_sign(es, header, claims_at(now)), None).subject == "app-1"


# -- binding -------------------------------------------------------------------------------


def test_bound_token_with_another_certificate_is_a_mismatch(
    verifier: AccessTokenVerifier, es: SigningKey, now: dt.datetime, good: bytes, other: bytes
) -> None:
    token = issue(es, now, cnf_x5t_s256=x5t_s256(good))
    exc = rejected(verifier, token, other)
    assert exc.reason is ReasonCode.TOKEN_BINDING_MISMATCH
    assert x5t_s256(other) in exc.description


def test_bound_token_without_a_certificate_is_missing(
    verifier: AccessTokenVerifier, es: SigningKey, now: dt.datetime, good: bytes
) -> None:
    token = issue(es, now, cnf_x5t_s256=x5t_s256(good))
    assert rejected(verifier, token).reason is ReasonCode.TOKEN_BINDING_MISSING


def test_require_binding_refuses_unbound_tokens(
    es: SigningKey, now: dt.datetime, clock: FixedClock, good: bytes
) -> None:
    strict = AccessTokenVerifier(
        ISSUER, AUDIENCE, jwks=StaticJwks(jwks_of(es)), clock=clock, require_binding=True
    )
    exc = rejected(strict, issue(es, now), good)
    assert exc.reason is ReasonCode.TOKEN_INVALID
    assert "not certificate-bound" in exc.description
    assert strict.verify(issue(es, now, cnf_x5t_s256=x5t_s256(good)), good).subject == "app-1"


def test_malformed_cnf_is_invalid(
    verifier: AccessTokenVerifier, es: SigningKey, now: dt.datetime, good: bytes
) -> None:
    header = {"typ": "at+jwt", "alg": "ES256", "kid": es.kid}
    for cnf in ("abc", {"x5t#S256": 5}):
        exc = rejected(verifier, es_sign(es, header, claims_at(now, cnf=cnf)), good)
        assert exc.reason is ReasonCode.TOKEN_INVALID


# -- hostile tokens ------------------------------------------------------------------------


def test_alg_none_is_refused(
    verifier: AccessTokenVerifier, es: SigningKey, now: dt.datetime
) -> None:
    for alg in ("none", "None", "NONE"):
        header = {"typ": "at+jwt", "alg": alg, "kid": es.kid}
        token = f"{segment(header)}.{segment(claims_at(now))}."
        exc = rejected(verifier, token)
        assert exc.reason is ReasonCode.TOKEN_INVALID
        assert "not allowed" in exc.description


@pytest.mark.parametrize("alg", ["es", "rs"])
def test_hs256_signed_with_the_public_key_is_refused(
    request: pytest.FixtureRequest, verifier: AccessTokenVerifier, now: dt.datetime, alg: str
) -> None:
    key: SigningKey = request.getfixturevalue(alg)
    public = key.key.public_key
    assert public is not None
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"typ": "at+jwt", "alg": "HS256", "kid": key.kid}
    signing_input = f"{segment(header)}.{segment(claims_at(now))}"
    mac = hmac.HMAC(pem, hashes.SHA256())
    mac.update(signing_input.encode())
    exc = rejected(verifier, f"{signing_input}.{b64(mac.finalize())}")
    assert exc.reason is ReasonCode.TOKEN_INVALID
    assert "'HS256' is not allowed" in exc.description


def test_hmac_and_none_cannot_be_allowed(es: SigningKey) -> None:
    for algorithms in (("HS256",), ("none",), ("ES256", "HS512"), ()):
        with pytest.raises(ValueError):
            AccessTokenVerifier(
                ISSUER, AUDIENCE, jwks=StaticJwks(jwks_of(es)), algorithms=algorithms
            )


def test_algorithm_outside_the_verifiers_list_is_refused(
    es: SigningKey, rs: SigningKey, now: dt.datetime, clock: FixedClock
) -> None:
    only_es = AccessTokenVerifier(
        ISSUER, AUDIENCE, jwks=StaticJwks(jwks_of(es, rs)), algorithms=("ES256",), clock=clock
    )
    assert rejected(only_es, issue(rs, now)).reason is ReasonCode.TOKEN_INVALID
    assert only_es.verify(issue(es, now), None).subject == "app-1"


def test_header_alg_that_does_not_fit_the_key_is_refused(
    verifier: AccessTokenVerifier, es: SigningKey, rs: SigningKey, now: dt.datetime
) -> None:
    # An ES256 signature presented under the RSA key's kid.
    header = {"typ": "at+jwt", "alg": "ES256", "kid": rs.kid}
    exc = rejected(verifier, es_sign(es, header, claims_at(now)))
    assert "cannot verify ES256" in exc.description


@pytest.mark.parametrize(
    ("overrides", "reason", "words"),
    [
        ({"aud": "https://elsewhere.test"}, ReasonCode.TOKEN_INVALID, "audience"),
        ({"aud": ["https://a.test", "https://b.test"]}, ReasonCode.TOKEN_INVALID, "audience"),
        ({"iss": ISSUER + "/"}, ReasonCode.TOKEN_INVALID, "issuer"),
        ({"iss": "https://evil.test"}, ReasonCode.TOKEN_INVALID, "issuer"),
        ({"exp": "soon"}, ReasonCode.TOKEN_INVALID, "not a number"),
        ({"sub": 7}, ReasonCode.TOKEN_INVALID, "not a string"),
    ],
)
def test_wrong_claims_are_refused(  # noqa: PLR0917 (fixtures and parameters)
    verifier: AccessTokenVerifier,
    es: SigningKey,
    now: dt.datetime,
    overrides: dict[str, Any],
    reason: ReasonCode,
    words: str,
) -> None:
    header = {"typ": "at+jwt", "alg": "ES256", "kid": es.kid}
    exc = rejected(verifier, es_sign(es, header, claims_at(now, **overrides)))
    assert exc.reason is reason
    assert words in exc.description


@pytest.mark.parametrize("claim", ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"])
def test_missing_required_claim_is_refused(
    verifier: AccessTokenVerifier, es: SigningKey, now: dt.datetime, claim: str
) -> None:
    header = {"typ": "at+jwt", "alg": "ES256", "kid": es.kid}
    exc = rejected(verifier, es_sign(es, header, claims_at(now, **{claim: None})))
    assert exc.reason is ReasonCode.TOKEN_INVALID
    assert claim in exc.description


def test_expiry_counts_leeway_from_the_injected_clock(
    verifier: AccessTokenVerifier, es: SigningKey, now: dt.datetime, clock: FixedClock
) -> None:
    token = issue(es, now, lifetime=60)
    clock.advance(dt.timedelta(seconds=60 + 29))
    assert verifier.verify(token, None).subject == "app-1"  # within the 30 s leeway
    clock.advance(dt.timedelta(seconds=1))
    exc = rejected(verifier, token)
    assert exc.reason is ReasonCode.TOKEN_EXPIRED


def test_nbf_and_iat_in_the_future_are_refused(
    verifier: AccessTokenVerifier, es: SigningKey, now: dt.datetime
) -> None:
    header = {"typ": "at+jwt", "alg": "ES256", "kid": es.kid}
    later = int(now.timestamp()) + 120
    exc = rejected(verifier, es_sign(es, header, claims_at(now, nbf=later)))
    assert exc.reason is ReasonCode.TOKEN_INVALID
    assert "not valid before" in exc.description
    exc = rejected(verifier, es_sign(es, header, claims_at(now, iat=later)))
    assert "issued in the future" in exc.description
    within = int(now.timestamp()) + 20
    assert verifier.verify(es_sign(es, header, claims_at(now, nbf=within)), None)


def test_unknown_kid_is_refused(verifier: AccessTokenVerifier, now: dt.datetime) -> None:
    stranger = _key("ES256")
    exc = rejected(verifier, issue(stranger, now))
    assert exc.reason is ReasonCode.TOKEN_INVALID
    assert "not in the issuer's JWKS" in exc.description


def test_bad_signature_is_refused(
    verifier: AccessTokenVerifier, es: SigningKey, rs: SigningKey, now: dt.datetime
) -> None:
    for key in (es, rs):
        token = issue(key, now)
        head, payload, signature = token.split(".")
        raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
        raw[5] ^= 0x01
        assert (
            "bad signature" in rejected(verifier, f"{head}.{payload}.{b64(bytes(raw))}").description
        )
        # A valid signature over other claims: the payload swapped.
        forged = segment(claims_at(now, sub="admin"))
        assert "bad signature" in rejected(verifier, f"{head}.{forged}.{signature}").description


def test_typ_other_than_at_jwt_is_refused(
    verifier: AccessTokenVerifier, es: SigningKey, now: dt.datetime
) -> None:
    for typ in ("JWT", None, "id_token+jwt"):
        header = {"alg": "ES256", "kid": es.kid, **({"typ": typ} if typ else {})}
        exc = rejected(verifier, es_sign(es, header, claims_at(now)))
        assert "not at+jwt" in exc.description


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b", "a.b.c.d.e", "!!!.e30.", "e30.e30.e30", "é.b.c", "x" * 20_000],
)
def test_malformed_tokens_are_invalid(verifier: AccessTokenVerifier, token: str) -> None:
    assert rejected(verifier, token).reason is ReasonCode.TOKEN_INVALID


def test_crit_header_is_refused(
    verifier: AccessTokenVerifier, es: SigningKey, now: dt.datetime
) -> None:
    header = {"typ": "at+jwt", "alg": "ES256", "kid": es.kid, "crit": ["exp"], "exp": 1}
    assert "crit" in rejected(verifier, es_sign(es, header, claims_at(now))).description


# -- the JWKS cache against a real HTTP server --------------------------------------------


class JwksServer:
    """A loopback HTTP server publishing a JWKS that tests can change; counts GETs."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks = jwks
        self.fetches = 0
        self.status = 200
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps(outer.jwks).encode()
                self.send_response(outer.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/oauth2/v1/keys"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def jwks_server(es: SigningKey) -> Iterator[JwksServer]:
    server = JwksServer(jwks_of(es))
    yield server
    server.close()


class Timer:
    """A fake monotonic clock for the cache (the HTTP traffic is real)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def remote_verifier(
    server: JwksServer, clock: FixedClock, timer: Timer, **kw: Any
) -> tuple[AccessTokenVerifier, RemoteJwks]:
    source = RemoteJwks(server.url, timer=timer, **kw)
    return AccessTokenVerifier(ISSUER, AUDIENCE, jwks=source, clock=clock), source


def test_warm_cache_fetches_once(
    jwks_server: JwksServer, es: SigningKey, now: dt.datetime, clock: FixedClock
) -> None:
    timer = Timer()
    verifier, source = remote_verifier(jwks_server, clock, timer)
    token = issue(es, now)
    for _ in range(20):
        assert verifier.verify(token, None).subject == "app-1"
    assert jwks_server.fetches == 1
    timer.t += 299
    verifier.verify(token, None)
    assert jwks_server.fetches == 1
    timer.t += 2  # past cache_seconds=300
    verifier.verify(token, None)
    assert jwks_server.fetches == 2
    source.close()


def test_rotation_new_kid_costs_one_refetch(
    jwks_server: JwksServer, es: SigningKey, now: dt.datetime, clock: FixedClock
) -> None:
    timer = Timer()
    verifier, source = remote_verifier(jwks_server, clock, timer)
    verifier.verify(issue(es, now), None)
    rotated = _key("ES256")
    jwks_server.jwks = jwks_of(rotated, es)
    timer.t += 31  # past min_refresh_seconds, well within cache_seconds
    token = issue(rotated, now)
    for _ in range(5):
        assert verifier.verify(token, None).subject == "app-1"
    assert jwks_server.fetches == 2
    source.close()


def test_made_up_kids_refetch_at_most_once_per_min_refresh(
    jwks_server: JwksServer, es: SigningKey, now: dt.datetime, clock: FixedClock
) -> None:
    timer = Timer()
    verifier, source = remote_verifier(jwks_server, clock, timer, min_refresh_seconds=30)
    verifier.verify(issue(es, now), None)
    for _ in range(10):
        rejected(verifier, issue(_key("ES256"), now))
    assert jwks_server.fetches == 1  # the first fetch was under 30 s ago
    timer.t += 30
    for _ in range(10):
        rejected(verifier, issue(_key("ES256"), now))
    assert jwks_server.fetches == 2
    source.close()


def test_failed_refetch_keeps_serving_cached_keys(
    jwks_server: JwksServer, es: SigningKey, now: dt.datetime, clock: FixedClock
) -> None:
    timer = Timer()
    verifier, source = remote_verifier(jwks_server, clock, timer)
    token = issue(es, now)
    verifier.verify(token, None)
    jwks_server.status = 500
    timer.t += 301
    assert verifier.verify(token, None).subject == "app-1"
    assert jwks_server.fetches == 2
    verifier.verify(token, None)  # no retry before min_refresh
    assert jwks_server.fetches == 2
    source.close()


def test_unreachable_jwks_without_a_copy_is_unavailable(
    jwks_server: JwksServer, es: SigningKey, now: dt.datetime, clock: FixedClock
) -> None:
    jwks_server.status = 503
    verifier, source = remote_verifier(jwks_server, clock, Timer())
    with pytest.raises(JwksUnavailableError, match="HTTP 503"):
        verifier.verify(issue(es, now), None)
    source.close()


def test_offline_verify_would_block_on_a_cold_cache(
    jwks_server: JwksServer, es: SigningKey, now: dt.datetime, clock: FixedClock
) -> None:
    verifier, source = remote_verifier(jwks_server, clock, Timer())
    token = issue(es, now)
    with pytest.raises(WouldBlockError):
        verifier.verify(token, None, offline=True)
    assert jwks_server.fetches == 0
    verifier.verify(token, None)
    assert verifier.verify(token, None, offline=True).subject == "app-1"
    source.close()


def test_jwks_skips_unusable_keys(es: SigningKey, now: dt.datetime, clock: FixedClock) -> None:
    junk: list[Any] = [
        "x",
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "kid": "broken"},
        {**public_jwk(es.key, "ES256"), "use": "enc"},
    ]
    source = StaticJwks({"keys": junk})
    verifier = AccessTokenVerifier(ISSUER, AUDIENCE, jwks=source, clock=clock)
    assert "not in the issuer's JWKS" in rejected(verifier, issue(es, now)).description
    with pytest.raises(JwksUnavailableError):
        StaticJwks({"keys": "none"})


def test_rs_package_imports_without_server_dependencies() -> None:
    blocked = ["sqlalchemy", "starlette", "alembic", "certbound.storage", "certbound.web"]
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "import certbound.rs, certbound.rs.middleware\n"
        "server = ('certbound.oauth', 'certbound.syslog')\n"
        "loaded = [m for m in sys.modules if m.startswith(server)]\n"
        "assert not loaded, loaded\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
