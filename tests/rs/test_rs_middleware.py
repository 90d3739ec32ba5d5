"""BoundTokenMiddleware in front of a real Starlette app: through httpx's ASGITransport (a
thin wrapper adds the ASGI TLS extension the listener would set) and under uvicorn behind a
"proxy" on loopback sending RFC 9440 headers."""

from __future__ import annotations

import base64
import datetime as dt
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from certbound.clock import FixedClock
from certbound.intake.chain import CHAIN_DER
from certbound.oauth.keys import SigningKey, generate, public_jwk
from certbound.oauth.rfc9068 import issue_access_token
from certbound.pki import devpki
from certbound.pki.certificate import der, x5t_s256
from certbound.rs import AccessTokenVerifier, BoundTokenMiddleware, RemoteJwks, StaticJwks
from certbound.rs.middleware import ASGIApp, Receive, Scope, Send

ISSUER = "https://as.certbound.test"
AUDIENCE = "https://api.certbound.test"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    jose = generate("ES256")
    assert jose.kid is not None
    return SigningKey(jose.kid, "ES256", jose)


@pytest.fixture(scope="module")
def pki() -> devpki.DevPKI:
    return devpki.build_dev_pki()


def whoami(request: Request) -> Response:
    access = request.state.access_token
    assert request.scope["certbound.access_token"] is access
    return JSONResponse({"sub": access.subject, "cnf": access.cnf_x5t_s256})


def health(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def protected(verifier: AccessTokenVerifier, **kw: Any) -> BoundTokenMiddleware:
    app = Starlette(routes=[Route("/whoami", whoami), Route("/health", health)])
    return BoundTokenMiddleware(app, verifier, **kw)


class WithTls:
    """Test plumbing: sets ``scope["extensions"]["tls"]`` as the TLS listener does."""

    def __init__(self, app: ASGIApp, tls: dict[str, Any] | None) -> None:
        self.app, self.tls = app, tls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.tls is not None and scope["type"] == "http":
            scope["extensions"] = {**scope.get("extensions", {}), "tls": self.tls}
        await self.app(scope, receive, send)


@pytest.fixture
def verifier(key: SigningKey, clock: FixedClock) -> AccessTokenVerifier:
    jwks = StaticJwks({"keys": [public_jwk(key.key, "ES256")]})
    return AccessTokenVerifier(ISSUER, AUDIENCE, jwks=jwks, clock=clock)


def token_for(key: SigningKey, now: dt.datetime, cert: bytes | None = None, **kw: Any) -> str:
    token, _ = issue_access_token(
        key,
        issuer=ISSUER,
        client_id="app-1",
        subject="device-1",
        audience=kw.pop("audience", AUDIENCE),
        scope="read",
        lifetime=kw.pop("lifetime", 300),
        now=now,
        cnf_x5t_s256=x5t_s256(cert) if cert else None,
    )
    return token


async def call(
    app: ASGIApp,
    token: str | None = None,
    *,
    tls: dict[str, Any] | None = None,
    path: str = "/whoami",
    headers: dict[str, str] | None = None,
    client: tuple[str, int] = ("127.0.0.1", 50000),
) -> httpx.Response:
    transport = httpx.ASGITransport(app=WithTls(app, tls), client=client)
    sent = dict(headers or {})
    if token is not None:
        sent["authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient(transport=transport, base_url="https://rs.test") as http:
        return await http.get(path, headers=sent)


def tls_chain(issued: devpki.Issued) -> dict[str, Any]:
    return {CHAIN_DER: (der(issued.cert),), "client_cert_chain": [issued.cert_pem().decode()]}


@pytest.mark.anyio
async def test_bound_token_over_tls_with_its_certificate_passes(
    verifier: AccessTokenVerifier, key: SigningKey, now: dt.datetime, pki: devpki.DevPKI
) -> None:
    good = pki.devices["good"]
    response = await call(
        protected(verifier), token_for(key, now, der(good.cert)), tls=tls_chain(good)
    )
    assert response.status_code == 200
    assert response.json() == {"sub": "device-1", "cnf": x5t_s256(der(good.cert))}


@pytest.mark.anyio
async def test_standard_pem_chain_extension_is_read(
    verifier: AccessTokenVerifier, key: SigningKey, now: dt.datetime, pki: devpki.DevPKI
) -> None:
    good = pki.devices["good"]
    tls = {"client_cert_chain": [good.cert_pem().decode()]}
    response = await call(protected(verifier), token_for(key, now, der(good.cert)), tls=tls)
    assert response.status_code == 200


@pytest.mark.anyio
async def test_bound_token_with_another_certificate_is_refused(
    verifier: AccessTokenVerifier, key: SigningKey, now: dt.datetime, pki: devpki.DevPKI
) -> None:
    token = token_for(key, now, der(pki.devices["good"].cert))
    response = await call(protected(verifier), token, tls=tls_chain(pki.devices["cn-only"]))
    assert response.status_code == 401
    assert response.json()["reason"] == "TOKEN_BINDING_MISMATCH"
    assert response.json()["error"] == "invalid_token"
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="invalid_token", error_description="')
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.anyio
async def test_bound_token_without_certificate_is_missing(
    verifier: AccessTokenVerifier, key: SigningKey, now: dt.datetime, pki: devpki.DevPKI
) -> None:
    token = token_for(key, now, der(pki.devices["good"].cert))
    response = await call(protected(verifier), token, tls={CHAIN_DER: ()})
    assert response.status_code == 401
    assert response.json()["reason"] == "TOKEN_BINDING_MISSING"


@pytest.mark.anyio
async def test_no_token_is_401_without_error_code(verifier: AccessTokenVerifier) -> None:
    for headers in ({}, {"authorization": "Basic dXNlcjpwdw=="}):
        response = await call(protected(verifier), headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        body = response.json()
        assert "error" not in body
        assert body["reason"] == "TOKEN_INVALID"


@pytest.mark.anyio
async def test_malformed_authorization_is_invalid_request(verifier: AccessTokenVerifier) -> None:
    response = await call(protected(verifier), headers={"authorization": "Bearer a b"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert 'error="invalid_request"' in response.headers["www-authenticate"]


@pytest.mark.anyio
async def test_expired_and_none_tokens_are_refused(
    verifier: AccessTokenVerifier, key: SigningKey, now: dt.datetime, clock: FixedClock
) -> None:
    app = protected(verifier)
    expired = token_for(key, now - dt.timedelta(hours=2), lifetime=60)
    response = await call(app, expired)
    assert (response.status_code, response.json()["reason"]) == (401, "TOKEN_EXPIRED")
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"at+jwt","kid":"x"}').rstrip(b"=")
    payload = token_for(key, now).split(".")[1]
    response = await call(app, f"{header.decode()}.{payload}.")
    assert (response.status_code, response.json()["reason"]) == (401, "TOKEN_INVALID")
    assert "none" in response.json()["error_description"]
    wrong_aud = token_for(key, now, audience="https://other.test")
    response = await call(app, wrong_aud)
    assert (response.status_code, response.json()["reason"]) == (401, "TOKEN_INVALID")


@pytest.mark.anyio
async def test_exempt_paths_pass_without_token(verifier: AccessTokenVerifier) -> None:
    app = protected(verifier, exempt_paths=["/health"])
    assert (await call(app, path="/health")).status_code == 200
    assert (await call(app, path="/whoami")).status_code == 401


def rfc9440(cert: devpki.Issued) -> str:
    data = cert.cert.public_bytes(serialization.Encoding.DER)
    return f":{base64.b64encode(data).decode()}:"


@pytest.mark.anyio
async def test_proxy_header_counts_only_from_trusted_peers(
    verifier: AccessTokenVerifier, key: SigningKey, now: dt.datetime, pki: devpki.DevPKI
) -> None:
    good = pki.devices["good"]
    token = token_for(key, now, der(good.cert))
    headers = {"client-cert": rfc9440(good)}
    app = protected(verifier, trusted_proxies=["10.0.0.0/8"], proxy_header="rfc9440")
    trusted = await call(app, token, headers=headers, client=("10.1.2.3", 4000))
    assert trusted.status_code == 200
    spoofed = await call(app, token, headers=headers, client=("192.0.2.9", 4000))
    assert spoofed.status_code == 401
    assert spoofed.json()["reason"] == "TOKEN_BINDING_MISSING"
    garbled = await call(app, token, headers={"client-cert": ":!!:"}, client=("10.1.2.3", 4000))
    assert garbled.status_code == 400
    assert garbled.json()["reason"] == "PROXY_HEADER_MALFORMED"


@pytest.mark.anyio
async def test_headers_never_count_over_tls(
    verifier: AccessTokenVerifier, key: SigningKey, now: dt.datetime, pki: devpki.DevPKI
) -> None:
    good = pki.devices["good"]
    app = protected(verifier, trusted_proxies=["127.0.0.1"], proxy_header="rfc9440")
    response = await call(
        app,
        token_for(key, now, der(good.cert)),
        tls={CHAIN_DER: ()},
        headers={"client-cert": rfc9440(good)},
    )
    assert response.json()["reason"] == "TOKEN_BINDING_MISSING"


# -- under uvicorn, with the JWKS fetched from a real server ------------------------------


class Uvicorn:
    def __init__(self, app: ASGIApp) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def issuer_keys(key: SigningKey) -> Iterator[tuple[Uvicorn, list[int]]]:
    fetches: list[int] = []

    async def keys(_request: Request) -> Response:
        fetches.append(1)
        return JSONResponse({"keys": [public_jwk(key.key, "ES256")]})

    server = Uvicorn(Starlette(routes=[Route("/oauth2/v1/keys", keys)]))
    yield server, fetches
    server.stop()


def test_under_uvicorn_behind_a_trusted_proxy(
    issuer_keys: tuple[Uvicorn, list[int]], key: SigningKey, now: dt.datetime, pki: devpki.DevPKI
) -> None:
    issuer, fetches = issuer_keys
    jwks = RemoteJwks(f"{issuer.url}/oauth2/v1/keys")
    verifier = AccessTokenVerifier(ISSUER, AUDIENCE, jwks=jwks)
    rs = Uvicorn(protected(verifier, trusted_proxies=["127.0.0.1"], proxy_header="rfc9440"))
    try:
        good, other = pki.devices["good"], pki.devices["cn-only"]
        token, _ = issue_access_token(
            key,
            issuer=ISSUER,
            client_id="app-1",
            subject="device-1",
            audience=AUDIENCE,
            scope="read",
            lifetime=300,
            now=dt.datetime.now(dt.UTC),
            cnf_x5t_s256=x5t_s256(der(good.cert)),
        )
        auth = {"authorization": f"Bearer {token}"}
        with httpx.Client(base_url=rs.url, timeout=10) as http:
            ok = http.get("/whoami", headers={**auth, "client-cert": rfc9440(good)})
            assert ok.status_code == 200, ok.text
            assert ok.json()["sub"] == "device-1"
            bad = http.get("/whoami", headers={**auth, "client-cert": rfc9440(other)})
            assert bad.status_code == 401
            assert bad.json()["reason"] == "TOKEN_BINDING_MISMATCH"
            assert http.get("/whoami", headers=auth).json()["reason"] == "TOKEN_BINDING_MISSING"
        assert len(fetches) == 1
    finally:
        rs.stop()
        jwks.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
