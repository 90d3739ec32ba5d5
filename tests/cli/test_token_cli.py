"""``certbound token check`` as a user runs it: the real command in a subprocess over the
test database, tokens signed by that database's keys, devpki certificates."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from certbound.clock import SystemClock
from certbound.oauth.keys import SigningKeys, load_secret
from certbound.oauth.rfc9068 import issue_access_token
from certbound.pki import devpki
from certbound.pki.certificate import der, x5t_s256
from certbound.pki.pem import load_presented_file
from certbound.storage.database import Database

ISSUER = "https://as.certbound.test"
AUDIENCE = "https://api.certbound.test"

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def secret_file(tmp_path: Path, env: dict[str, str]) -> Path:
    path = tmp_path / "secret.key"
    env["CERTBOUND_SECRET_KEY_FILE"] = str(path)
    env["CERTBOUND_ISSUER"] = ISSUER
    env["CERTBOUND_DATA_DIR"] = str(tmp_path / "data")
    return path


@pytest.fixture
def keys(database: Database, secret_file: Path) -> SigningKeys:
    return SigningKeys(database, SystemClock(), load_secret(secret_file))


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pki = devpki.build_dev_pki()
    out = tmp_path_factory.mktemp("certs")
    paths = {}
    for name in ("good", "cn-only"):
        path = out / f"{name}.pem"
        path.write_bytes(pki.devices[name].cert_pem() + pki.devices[name].key_pem())
        paths[name] = path
    return paths


def bound_token(keys: SigningKeys, cert: Path, **kw: object) -> str:
    leaf = der(load_presented_file(cert.read_bytes())[0])
    args: dict[str, object] = {
        "issuer": ISSUER,
        "client_id": "app-1",
        "subject": "device-1",
        "audience": AUDIENCE,
        "scope": "read",
        "lifetime": 600,
        "now": dt.datetime.now(dt.UTC),
        "cnf_x5t_s256": x5t_s256(leaf),
    }
    args.update(kw)
    token, _ = issue_access_token(keys.signing_key(), **args)  # type: ignore[arg-type]
    return token


def test_bound_token_with_its_certificate_is_ok(
    cmd: Run, keys: SigningKeys, certs: dict[str, Path]
) -> None:
    token = bound_token(keys, certs["good"])
    out = cmd("token", "check", token, "--cert", str(certs["good"]), "--audience", AUDIENCE)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("TOKEN: OK")
    assert "device-1" in out.stdout
    assert "matches the presented certificate" in out.stdout


def test_other_certificate_fails_with_mismatch(
    cmd: Run, keys: SigningKeys, certs: dict[str, Path]
) -> None:
    token = bound_token(keys, certs["good"])
    out = cmd("token", "check", token, "--cert", str(certs["cn-only"]))
    assert out.returncode == 1
    assert out.stdout.startswith("TOKEN: FAILED TOKEN_BINDING_MISMATCH: ")
    assert "fix: Present the certificate the token was issued to" in out.stdout
    out = cmd("token", "check", token)
    assert out.returncode == 1
    assert out.stdout.startswith("TOKEN: FAILED TOKEN_BINDING_MISSING: ")


def test_expired_and_wrong_audience_as_json(
    cmd: Run, keys: SigningKeys, certs: dict[str, Path]
) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
    token = bound_token(keys, certs["good"], now=old)
    out = cmd("token", "check", token, "--cert", str(certs["good"]), "--json")
    assert out.returncode == 1
    body = json.loads(out.stdout)
    assert (body["token"], body["reason"], body["error"]) == (
        "FAILED",
        "TOKEN_EXPIRED",
        "invalid_token",
    )
    token = bound_token(keys, certs["good"])
    out = cmd("token", "check", token, "--cert", str(certs["good"]), "--audience", "x", "--json")
    assert json.loads(out.stdout)["reason"] == "TOKEN_INVALID"
    out = cmd("token", "check", token, "--cert", str(certs["good"]), "--issuer", "https://e.test")
    assert out.returncode == 1
    assert "TOKEN_INVALID" in out.stdout


class _Jwks(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def jwks_url(keys: SigningKeys) -> Iterator[str]:
    keys.signing_key()
    handler = type("Handler", (_Jwks,), {"body": json.dumps(keys.jwks()).encode()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/oauth2/v1/keys"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def test_jwks_from_a_file_and_from_a_url(
    cmd: Run, keys: SigningKeys, certs: dict[str, Path], tmp_path: Path, jwks_url: str
) -> None:
    token = bound_token(keys, certs["good"])
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(keys.jwks()))
    for source in (str(jwks_file), jwks_url):
        out = cmd("token", "check", token, "--cert", str(certs["good"]), "--jwks", source, "--json")
        assert out.returncode == 0, out.stdout + out.stderr
        body = json.loads(out.stdout)
        assert body["token"] == "OK"
        assert body["claims"]["cnf"]["x5t#S256"] == body["binding"]
    empty = tmp_path / "empty.json"
    empty.write_text('{"keys": []}')
    out = cmd("token", "check", token, "--cert", str(certs["good"]), "--jwks", str(empty))
    assert out.returncode == 1
    assert "not in the issuer's JWKS" in out.stdout


def test_input_errors_exit_2(cmd: Run, keys: SigningKeys, tmp_path: Path) -> None:
    not_cert = tmp_path / "x.pem"
    not_cert.write_text("hello")
    out = cmd("token", "check", "a.b.c", "--cert", str(not_cert))
    assert out.returncode == 2
    assert "--cert" in out.stderr
    out = cmd("token", "check", "a.b.c", "--jwks", str(not_cert))
    assert out.returncode == 2
    out = cmd("token", "check", "a.b.c", "--cert", str(tmp_path / "missing.pem"))
    assert out.returncode == 2
