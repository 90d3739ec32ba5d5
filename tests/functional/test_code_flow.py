"""The authorization-code flow against the real ``certbound serve`` (TLS listener, accept
mode), on SQLite and PostgreSQL, with a third-party OAuth client: Authlib's
``OAuth2Client`` (httpx) for client_credentials and for the code flow with PKCE, a
confidential and a public client. The browser is httpx: it loads the login page, submits
the form and stops at the 302 (nothing listens on the redirect URI). Then the bad input:
a replayed, an expired and a foreign code, a PKCE mismatch, a wrong redirect_uri, refresh
token reuse (the family, newest token included, dies), a refresh token used with another
device's certificate or none (curl with two device certificates), a wrong password
(generic page, FAILURE event, lockout after 5), a tampered CSRF token: each with its OAuth
error and reason code, never a 500."""

from __future__ import annotations

import base64
import hashlib
import html.parser
import json
import secrets
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import update

from certbound.oauth.grants import digest
from certbound.pki.certificate import x5t_s256
from certbound.storage.database import Database
from certbound.storage.models import OAuthGrant

Live = Any  # conftest.Certbound
PASSWORD = "correct horse battery staple"
REDIRECT = "http://127.0.0.1:9/cb"  # nothing listens: the test stops at the 302
WEB, SPA = "web-app", "spa-app"


class _Form(html.parser.HTMLParser):
    """The login page's hidden fields."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "input" and values.get("type") == "hidden" and values.get("name"):
            self.fields[str(values["name"])] = values.get("value") or ""


def hidden_fields(page: str) -> dict[str, str]:
    parser = _Form()
    parser.feed(page)
    return parser.fields


@pytest.fixture
def live(serve_tls: Callable[[str], Live]) -> Iterator[Live]:
    server = serve_tls("accept")
    created = subprocess.run(
        [sys.executable, "-m", "certbound", "user", "create", "alice", "--email",
         "alice@certbound.test", "--password-stdin", "--json"],
        input=PASSWORD + "\n", env=server.env, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    server.user_id = json.loads(created.stdout)["id"]
    web = server.cli(
        "app", "create", "Web app", "--client-id", WEB, "--auth-method", "client_secret_basic",
        "--grant-type", "client_credentials", "--grant-type", "authorization_code",
        "--grant-type", "refresh_token", "--redirect-uri", REDIRECT, "--scope", "read write",
        "--json",
    )  # fmt: skip
    assert web.returncode == 0, web.stderr
    server.secret = json.loads(web.stdout)["clientSecret"]
    spa = server.cli(
        "app", "create", "Single-page app", "--client-id", SPA, "--auth-method", "none",
        "--grant-type", "authorization_code", "--redirect-uri", REDIRECT, "--scope", "read",
        "--json",
    )  # fmt: skip
    assert spa.returncode == 0, spa.stderr
    yield server


def tls(live: Live) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(live.pki / "server-ca.pem"))


@contextmanager
def browser(live: Live, device: str | None = None) -> Iterator[httpx.Client]:
    context = tls(live)
    if device is not None:
        cert, key = live.device_files(device)
        context.load_cert_chain(str(cert), str(key))
    with httpx.Client(base_url=live.url, verify=context, timeout=20) as client:
        yield client


def sign_in(
    live: Live, url: str, password: str = PASSWORD, device: str | None = None
) -> httpx.Response:
    """Load the login page at ``url`` and submit it; the response to the POST."""
    with browser(live, device) as client:
        page = client.get(url)
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        form = {**hidden_fields(page.text), "username": "alice", "password": password}
        return client.post("/oauth2/v1/authorize", data=form)


def code_of(response: httpx.Response) -> tuple[str, dict[str, list[str]]]:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")
    query = parse_qs(urlsplit(location).query)
    return query["code"][0], query


def authlib_client(live: Live, client_id: str, secret: str | None, **kwargs: Any) -> OAuth2Client:
    return OAuth2Client(
        client_id,
        secret,
        token_endpoint_auth_method="client_secret_basic" if secret else "none",
        verify=tls(live),
        timeout=20,
        **kwargs,
    )


def authorize_url(client: OAuth2Client, live: Live, verifier: str, **params: str) -> str:
    url, _state = client.create_authorization_url(
        f"{live.url}/oauth2/v1/authorize", code_verifier=verifier, **params
    )
    return str(url)


def token_request(live: Live, device: str | None, form: dict[str, str], *, basic: bool = True):
    """POST the token endpoint with curl (a device's certificate when given)."""
    args: list[str] = []
    if basic:
        args += ["-u", f"{WEB}:{live.secret}"]
    for name, value in form.items():
        args += ["--data-urlencode", f"{name}={value}"]
    done = live.curl(device, *args, "-w", "\n%{http_code}", path="/oauth2/v1/token")
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(body)


def events(live: Live, event_type: str, count: int) -> list[dict[str, Any]]:
    """At least ``count`` events of ``event_type`` once written (the recorder is async)."""
    deadline = time.monotonic() + 15
    while True:
        done = live.cli("log", "--json", "--filter", f'eventType eq "{event_type}"')
        assert done.returncode == 0, done.stderr
        found = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"only {len(found)} {event_type} events"
        time.sleep(0.3)


def introspect(live: Live, token: str) -> dict[str, Any]:
    with browser(live) as client:
        answer = client.post(
            "/oauth2/v1/introspect", data={"token": token}, auth=(WEB, live.secret)
        )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _der(live: Live, device: str) -> bytes:
    pem = (live.pki / "devices" / f"{device}.pem").read_bytes()
    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


def _verifier() -> str:
    return secrets.token_urlsafe(48)


def _challenge(verifier: str) -> str:
    digest_ = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest_).rstrip(b"=").decode()


# --- interop: Authlib's client --------------------------------------------------------------


def test_authlib_client_credentials(live: Live) -> None:
    with authlib_client(live, WEB, live.secret) as client:
        token = client.fetch_token(f"{live.url}/oauth2/v1/token", grant_type="client_credentials")
    assert token["token_type"] == "Bearer" and token["scope"] == "read write"
    assert introspect(live, token["access_token"])["client_id"] == WEB


def test_authlib_code_flow_with_pkce_confidential_and_public(live: Live) -> None:
    verifier = _verifier()
    with authlib_client(
        live, WEB, live.secret, scope="openid read", redirect_uri=REDIRECT,
        code_challenge_method="S256",
    ) as client:  # fmt: skip
        url = authorize_url(client, live, verifier, nonce="n-0123")
        # the browser presents a device certificate: the sign-in event carries its trust
        location = sign_in(live, url, device="good").headers["location"]
        token = client.fetch_token(
            f"{live.url}/oauth2/v1/token", authorization_response=location, code_verifier=verifier
        )
        assert token["scope"] == "openid read" and token["refresh_token"] and token["id_token"]
        refreshed = client.refresh_token(
            f"{live.url}/oauth2/v1/token", refresh_token=token["refresh_token"]
        )
    assert refreshed["refresh_token"] != token["refresh_token"]
    current = introspect(live, refreshed["refresh_token"])
    assert (current["active"], current["token_type"]) == (True, "refresh_token")
    assert (current["client_id"], current["sub"]) == (WEB, live.user_id)
    assert introspect(live, token["refresh_token"]) == {"active": False}  # rotated
    claims = introspect(live, token["access_token"])
    assert (claims["active"], claims["sub"]) == (True, live.user_id)
    payload = token["id_token"].split(".")[1]
    id_claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert (id_claims["sub"], id_claims["aud"], id_claims["nonce"]) == (live.user_id, WEB, "n-0123")

    spa_verifier = _verifier()
    with authlib_client(
        live, SPA, None, scope="read", redirect_uri=REDIRECT, code_challenge_method="S256"
    ) as spa:
        location = sign_in(live, authorize_url(spa, live, spa_verifier)).headers["location"]
        spa_token = spa.fetch_token(
            f"{live.url}/oauth2/v1/token",
            authorization_response=location,
            code_verifier=spa_verifier,
        )
    assert spa_token["scope"] == "read" and "refresh_token" not in spa_token

    signed_in = events(live, "user.authentication.verify", 2)
    assert {e["outcome"]["result"] for e in signed_in} == {"SUCCESS"}
    with_device = [e for e in signed_in if e["deviceTrust"] is not None]
    assert len(with_device) == 1 and with_device[0]["actor"]["alternateId"] == "alice"
    granted = events(live, "app.oauth2.token.grant", 3)
    types = sorted(e["debugContext"]["debugData"]["grantType"] for e in granted)
    assert types == ["authorization_code", "authorization_code", "refresh_token"]


# --- bad input -------------------------------------------------------------------------------


def _code(live: Live, verifier: str, client_id: str = WEB, **params: str) -> str:
    query = {
        "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
        "scope": "read", "state": "s-1", "code_challenge": _challenge(verifier),
        "code_challenge_method": "S256", **params,
    }  # fmt: skip
    code, answer = code_of(sign_in(live, "/oauth2/v1/authorize?" + urlencode(query)))
    assert answer["state"] == ["s-1"]
    return code


def _exchange(live: Live, code: str, verifier: str, device: str | None = None, **extra: str):
    form = {
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
        "code_verifier": verifier, **extra,
    }  # fmt: skip
    return token_request(live, device, form)


def test_bad_codes_are_refused_with_their_reason(live: Live, database: Database) -> None:
    verifier = _verifier()
    code = _code(live, verifier)
    status, first = _exchange(live, code, verifier)
    assert status == 200, first
    # replayed: refused, and the access and refresh tokens issued from it are revoked
    status, replay = _exchange(live, code, verifier)
    assert (status, replay["error"], replay["reason"]) == (400, "invalid_grant", "GRANT_INVALID")
    assert introspect(live, first["access_token"]) == {"active": False}
    status, refresh = token_request(
        live, None, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    )
    assert (status, refresh["reason"]) == (400, "GRANT_INVALID")

    # PKCE mismatch, then the wrong redirect_uri: neither burns the code
    code = _code(live, verifier)
    status, pkce = _exchange(live, code, _verifier())
    assert (status, pkce["error"], pkce["reason"]) == (400, "invalid_grant", "PKCE_FAILED")
    status, wrong = _exchange(live, code, verifier, redirect_uri="http://127.0.0.1:9/other")
    assert (status, wrong["error"], wrong["reason"]) == (400, "invalid_grant", "GRANT_INVALID")
    # expired: the server's own clock passes the code's 60 s (set back in its row)
    with database.session() as session:
        session.execute(
            update(OAuthGrant)
            .where(OAuthGrant.token_hash == digest(code))
            .values(expires_at=OAuthGrant.created)
        )
    status, expired = _exchange(live, code, verifier)
    assert (status, expired["reason"]) == (400, "GRANT_INVALID")
    assert "expired" in expired["error_description"]

    # another client's code
    spa_code = _code(live, verifier, client_id=SPA)
    status, foreign = _exchange(live, spa_code, verifier)
    assert (status, foreign["reason"]) == (400, "GRANT_INVALID")

    refused = [
        e["outcome"]["reason"]
        for e in events(live, "app.oauth2.token.grant", 7)
        if e["outcome"]["result"] == "FAILURE"
    ]
    assert refused.count("GRANT_INVALID") >= 5 and "PKCE_FAILED" in refused


def test_a_wrong_redirect_uri_is_a_page_never_a_redirect(live: Live) -> None:
    verifier = _verifier()
    query = {
        "response_type": "code", "client_id": WEB, "redirect_uri": "https://evil.example/cb",
        "code_challenge": _challenge(verifier), "code_challenge_method": "S256",
    }  # fmt: skip
    with browser(live) as client:
        page = client.get("/oauth2/v1/authorize?" + urlencode(query))
        assert page.status_code == 400 and "location" not in page.headers
        assert "redirect_uri" in page.text and "evil.example" not in page.text
        # a refusal after the redirect URI is trusted goes back to the client
        bad_scope = client.get(
            "/oauth2/v1/authorize?"
            + urlencode({**query, "redirect_uri": REDIRECT, "scope": "admin", "state": "x"})
        )
        assert bad_scope.status_code == 302
        assert parse_qs(urlsplit(bad_scope.headers["location"]).query)["error"] == ["invalid_scope"]
        # markup in the parameters is escaped on the page
        hostile = client.get(
            "/oauth2/v1/authorize?"
            + urlencode({**query, "redirect_uri": REDIRECT, "state": '"><script>x</script>'})
        )
        assert hostile.status_code == 200 and "<script>x" not in hostile.text


def test_refresh_reuse_and_binding(live: Live) -> None:
    verifier = _verifier()
    status, first = _exchange(live, _code(live, verifier), verifier, device="good")
    assert status == 200, first
    good = x5t_s256(_der(live, "good"))
    assert introspect(live, first["access_token"])["cnf"] == {"x5t#S256": good}
    form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    # another device's certificate, then none: refused, and the token is not consumed
    status, other = token_request(live, "cn-only", form)
    assert (status, other["error"], other["reason"]) == (
        400,
        "invalid_grant",
        "TOKEN_BINDING_MISMATCH",
    )
    status, missing = token_request(live, None, form)
    assert (status, missing["reason"]) == (400, "TOKEN_BINDING_MISSING")
    status, second = token_request(live, "good", form)
    assert status == 200, second
    assert introspect(live, second["access_token"])["cnf"] == {"x5t#S256": good}
    # the first refresh token again: reuse, the whole family is revoked
    status, reused = token_request(live, "good", form)
    assert (status, reused["error"], reused["reason"]) == (
        400,
        "invalid_grant",
        "REFRESH_TOKEN_REUSED",
    )
    newest = {"grant_type": "refresh_token", "refresh_token": second["refresh_token"]}
    status, dead = token_request(live, "good", newest)
    assert (status, dead["reason"]) == (400, "GRANT_INVALID")
    assert introspect(live, second["access_token"]) == {"active": False}


def test_revoking_a_refresh_token_revokes_its_family(live: Live) -> None:
    verifier = _verifier()
    status, first = _exchange(live, _code(live, verifier), verifier)
    assert status == 200, first
    with browser(live) as client:
        revoked = client.post(
            "/oauth2/v1/revoke",
            data={"token": first["refresh_token"], "token_type_hint": "refresh_token"},
            auth=(WEB, live.secret),
        )
    assert revoked.status_code == 200
    status, after = token_request(
        live, None, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    )
    assert (status, after["reason"]) == (400, "GRANT_INVALID")
    assert introspect(live, first["access_token"]) == {"active": False}


def test_wrong_password_lockout_and_csrf(live: Live) -> None:
    verifier = _verifier()
    query = {
        "response_type": "code", "client_id": WEB, "redirect_uri": REDIRECT,
        "code_challenge": _challenge(verifier), "code_challenge_method": "S256",
    }  # fmt: skip
    url = "/oauth2/v1/authorize?" + urlencode(query)
    with browser(live) as client:
        page = client.get(url)
        fields = hidden_fields(page.text)
        # a tampered CSRF token, and a parameter changed under a valid one: 400 pages
        tampered = client.post(
            "/oauth2/v1/authorize",
            data={**fields, "csrf_token": fields["csrf_token"][:-2] + "xx",
                  "username": "alice", "password": PASSWORD},
        )  # fmt: skip
        assert tampered.status_code == 400 and "expired or was altered" in tampered.text
        assert fields["scope"] == "read write"  # none asked: every registered scope
        widened = client.post(
            "/oauth2/v1/authorize",
            data={**fields, "scope": "openid", "username": "alice", "password": PASSWORD},
        )
        assert widened.status_code == 400
        # another browser (no cookie) cannot post this browser's form
        with browser(live) as stranger:
            foreign = stranger.post(
                "/oauth2/v1/authorize",
                data={**fields, "username": "alice", "password": PASSWORD},
            )
        assert foreign.status_code == 400
        # wrong passwords: one generic message, whether the user exists or not
        wrong = client.post(
            "/oauth2/v1/authorize", data={**fields, "username": "alice", "password": "nope" * 4}
        )
        nobody = client.post(
            "/oauth2/v1/authorize", data={**fields, "username": "mallory", "password": "x" * 12}
        )
        control = client.post(  # PostgreSQL text cannot hold NUL: still no 500
            "/oauth2/v1/authorize", data={**fields, "username": "al\x00ice", "password": "x"}
        )
        assert wrong.status_code == nobody.status_code == control.status_code == 401
        for answer in (wrong, nobody, control):
            assert "username or password is not right" in answer.text
        for _ in range(4):
            client.post(
                "/oauth2/v1/authorize",
                data={**fields, "username": "alice", "password": "nope" * 4},
            )
        locked = client.post(
            "/oauth2/v1/authorize", data={**fields, "username": "alice", "password": PASSWORD}
        )
        assert locked.status_code == 429 and "Too many failed sign-ins" in locked.text
        assert int(locked.headers["retry-after"]) >= 1
    failures = events(live, "user.authentication.verify", 8)
    assert {e["outcome"]["result"] for e in failures} == {"FAILURE"}
    assert {e["outcome"]["reason"] for e in failures} == {"USER_AUTHENTICATION_FAILED"}
    assert [e for e in failures if e["debugContext"]["debugData"]["lockedOut"]]
    assert PASSWORD not in json.dumps(failures)
    assert "Traceback" not in live.log.read_text()
