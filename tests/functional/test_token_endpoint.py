"""The token endpoint of the real ``certbound serve`` with curl as the device, exactly as the
seed does it (``curl --cert --key --cacert -d grant_type=client_credentials``): a
tls_client_auth client registered for the good device's subject DN and pinned to the uploaded
CA by key; the token's cnf matches the certificate, the RS SDK accepts it with that certificate
and refuses it with another; every refusal has its OAuth error, reason code and event; on
SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certbound.errors import ReasonCode
from certbound.pki.certificate import x5t_s256
from certbound.rs import AccessTokenVerifier, StaticJwks, TokenRejected

Live = Any  # conftest.Certbound
CLIENT_ID = "device-app"


def _der(live: Live, device: str) -> bytes:
    pem = (live.pki / "devices" / f"{device}.pem").read_bytes()
    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


@pytest.fixture
def live(serve_tls: Callable[[str], Live]) -> Live:
    server = serve_tls("accept")
    cas = json.loads(server.cli("ca", "list", "--json").stdout)["cas"]
    subject = x509.load_pem_x509_certificate(
        (server.pki / "devices" / "good.pem").read_bytes()
    ).subject.rfc4514_string()
    created = server.cli(
        "app", "create", "Device app", "--client-id", CLIENT_ID,
        "--auth-method", "tls_client_auth", "--subject-dn", subject,
        "--ca-pin-from-store", cas[0]["id"], "--scope", "read write", "--json",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    return server


def token(live: Live, device: str | None, *form: str) -> tuple[int, dict[str, Any]]:
    fields = form or ("grant_type=client_credentials", f"client_id={CLIENT_ID}")
    args: list[str] = []
    for field in fields:
        args += ["-d", field]
    done = live.curl(device, *args, "-w", "\n%{http_code}", path="/oauth2/v1/token")
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(body)


def events(live: Live) -> list[dict[str, Any]]:
    done = live.cli("log", "--json", "--filter", 'eventType eq "app.oauth2.token.grant"')
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_the_good_device_gets_a_bound_token_the_rs_accepts(live: Live) -> None:
    status, body = token(live, "good")
    assert status == 200, body
    assert body["token_type"] == "Bearer" and body["scope"] == "read write"
    keys = httpx.get(
        f"{live.url}/oauth2/v1/keys", verify=str(live.pki / "server-ca.pem"), timeout=10
    ).json()
    metadata = httpx.get(
        f"{live.url}/.well-known/oauth-authorization-server",
        verify=str(live.pki / "server-ca.pem"),
        timeout=10,
    ).json()
    verifier = AccessTokenVerifier(
        metadata["issuer"], "api://default", jwks=StaticJwks(keys), require_binding=True
    )
    good = _der(live, "good")
    accepted = verifier.verify(body["access_token"], good)
    assert accepted.cnf_x5t_s256 == x5t_s256(good)
    with pytest.raises(TokenRejected) as refused:
        verifier.verify(body["access_token"], _der(live, "cn-only"))
    assert refused.value.reason is ReasonCode.TOKEN_BINDING_MISMATCH
    with pytest.raises(TokenRejected) as missing:
        verifier.verify(body["access_token"], None)
    assert missing.value.reason is ReasonCode.TOKEN_BINDING_MISSING


@pytest.mark.parametrize(
    "case",
    [
        (None, (), 401, "invalid_client", "NO_CLIENT_CERTIFICATE"),
        ("cn-only", (), 401, "invalid_client", "CERTIFICATE_NOT_BOUND_TO_CLIENT"),
        ("expired", (), 401, "invalid_client", "CERTIFICATE_EXPIRED"),
        ("foreign", (), 401, "invalid_client", "UNKNOWN_CA"),
        ("good", ("grant_type=password", f"client_id={CLIENT_ID}"), 400,
         "unsupported_grant_type", "UNSUPPORTED_GRANT_TYPE"),
        ("good", ("grant_type=client_credentials", f"client_id={CLIENT_ID}", "scope=admin"),
         400, "invalid_scope", "SCOPE_NOT_ALLOWED"),
        ("good", ("grant_type=client_credentials", "client_id=nobody"), 401,
         "invalid_client", "CLIENT_AUTHENTICATION_FAILED"),
    ],
)  # fmt: skip
def test_refusals_have_their_error_reason_and_event(
    live: Live, case: tuple[str | None, tuple[str, ...], int, str, str]
) -> None:
    device, form, status, error, reason = case
    got, body = token(live, device, *form)
    assert (got, body["error"], body["reason"]) == (status, error, reason), body
    assert body["error_description"]
    deadline = time.monotonic() + 15
    while not [e for e in events(live) if e["outcome"]["reason"] == reason]:
        assert time.monotonic() < deadline, "the refusal was not logged"
        time.sleep(0.3)


def test_a_granted_token_is_logged_with_the_device(live: Live) -> None:
    status, _ = token(live, "good")
    assert status == 200
    deadline = time.monotonic() + 15
    while not (granted := [e for e in events(live) if e["outcome"]["result"] == "SUCCESS"]):
        assert time.monotonic() < deadline, "the grant was not logged"
        time.sleep(0.3)
    event = granted[0]
    assert event["actor"]["alternateId"] == CLIENT_ID
    assert event["deviceTrust"]["verified"] is True
    assert event["debugContext"]["debugData"]["cnf"]["x5t#S256"] == x5t_s256(_der(live, "good"))
    assert "access_token" not in json.dumps(event)


def test_a_malformed_request_is_invalid_request_never_a_500(live: Live) -> None:
    repeated = live.curl(
        "good", "-d", "grant_type=client_credentials", "-d", "grant_type=client_credentials",
        "-w", "\n%{http_code}", path="/oauth2/v1/token",
    )  # fmt: skip
    body, _, status = repeated.stdout.rpartition("\n")
    assert status == "400" and json.loads(body)["reason"] == "INVALID_OAUTH_REQUEST"
    as_json = live.curl(
        "good", "-H", "Content-Type: application/json", "-d", "{}", "-w", "\n%{http_code}",
        path="/oauth2/v1/token",
    )  # fmt: skip
    body, _, status = as_json.stdout.rpartition("\n")
    assert status == "400" and json.loads(body)["error"] == "invalid_request"


def test_diagnose_explains_a_certificate_not_bound_to_the_client(live: Live) -> None:
    status, body = token(live, "cn-only")
    assert (status, body["reason"]) == (401, "CERTIFICATE_NOT_BOUND_TO_CLIENT")
    deadline = time.monotonic() + 15
    while not (refused := [e for e in events(live) if e["outcome"]["result"] == "FAILURE"]):
        assert time.monotonic() < deadline, "the refusal was not logged"
        time.sleep(0.3)
    done = live.cli("diagnose", refused[0]["uuid"])
    assert done.returncode == 0, done.stderr
    assert "Layer: identity" in done.stdout
    assert f"certbound app show {CLIENT_ID}" in done.stdout
    assert "CN=cn-only" in done.stdout
