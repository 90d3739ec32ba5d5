"""``certbound user|group|app``: the real command in a subprocess against the test database
(SQLite and PostgreSQL); events read back from the System Log, never holding a password,
secret or hash."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from certbound.cli.main import EXIT_OK, EXIT_USAGE
from certbound.clock import FixedClock
from certbound.directory.apps import Apps, ca_pin
from certbound.directory.users import Users
from certbound.pki import devpki
from certbound.storage.database import Database
from certbound.storage.models import LogEvent

Run = Callable[..., subprocess.CompletedProcess[str]]
Logged = Callable[[str], list[dict[str, Any]]]
PASSWORD = "correct horse battery"


@pytest.fixture
def env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {**env, "CERTBOUND_DATA_DIR": str(tmp_path / "data")}


@pytest.fixture
def piped(env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``piped("text on stdin", "user", "create", ...)``."""

    def run(stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "certbound", *args],
            input=stdin, capture_output=True, text=True, env=env, timeout=120, check=False,
        )  # fmt: skip

    return run


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == EXIT_OK, result.stdout + result.stderr
    return result.stdout


def refused(result: subprocess.CompletedProcess[str], code: str) -> str:
    assert result.returncode == EXIT_USAGE, result.stdout + result.stderr
    assert f"error {code}:" in result.stderr, result.stderr
    return result.stderr


def all_events(database: Database) -> str:
    with database.session() as session:
        return "\n".join(session.scalars(select(LogEvent.body)).all())


def test_users(cmd: Run, piped: Callable[..., Any], database: Database, logged: Logged) -> None:
    made = json.loads(
        ok(piped(PASSWORD + "\n", "user", "create", "Alice", "--email", "a@corp.example",
                 "--name", "Alice A", "--password-stdin", "--json"))
    )  # fmt: skip
    assert made["username"] == "Alice" and made["status"] == "ACTIVE"
    users = Users(database, FixedClock(dt.datetime.now(dt.UTC)))
    assert users.authenticate("alice", PASSWORD) is not None
    refused(cmd("user", "create", "alice"), "NAME_TAKEN")
    refused(piped("short\n", "user", "set-password", "alice", "--password-stdin"), "INVALID_USER")
    ok(piped("another long password\n", "user", "set-password", "ALICE", "--password-stdin"))
    assert users.authenticate("alice", "another long password") is not None
    listed = ok(cmd("user", "list"))
    assert made["id"] in listed and "a@corp.example" in listed
    suspended = json.loads(ok(cmd("user", "suspend", "alice", "--json")))
    assert suspended["after"]["status"] == "SUSPENDED"
    assert json.loads(ok(cmd("user", "list", "--status", "suspended", "--json")))["users"]
    assert "ACTIVE" in ok(cmd("user", "activate", made["id"]))
    ok(cmd("user", "update", "alice", "--email", ""))
    assert json.loads(ok(cmd("user", "show", "alice", "--json")))["email"] is None
    refused(cmd("user", "show", "nobody"), "USER_NOT_FOUND")
    ok(cmd("user", "delete", "alice"))

    create = logged("user.lifecycle.create")
    assert (
        create[0]["outcome"]["result"] == "SUCCESS"
        and create[0]["debugContext"]["debugData"]["passwordSet"]
    )
    assert create[1]["outcome"] == {"result": "FAILURE", "reason": "NAME_TAKEN"}
    passwords = logged("user.account.update_password")
    assert [e["outcome"]["result"] for e in passwords] == ["FAILURE", "SUCCESS"]
    assert logged("user.lifecycle.suspend")[0]["debugContext"]["debugData"]["changeDetails"] == {
        "before": {"status": "ACTIVE"}, "after": {"status": "SUSPENDED"},
    }  # fmt: skip
    assert len(logged("user.lifecycle.activate")) == len(logged("user.lifecycle.update")) == 1
    assert logged("user.lifecycle.delete")[0]["target"][0]["id"] == made["id"]
    text = all_events(database)
    assert PASSWORD not in text and "another long password" not in text and "$argon2" not in text


def test_groups(cmd: Run, database: Database, logged: Logged) -> None:
    ok(cmd("user", "create", "alice"))
    group = json.loads(ok(cmd("group", "create", "admins", "--description", "ops", "--json")))
    assert "alice added to admins" in ok(cmd("group", "add", "admins", "alice"))
    assert "nothing changed" in ok(cmd("group", "add", group["id"], "ALICE"))
    shown = json.loads(ok(cmd("group", "show", "admins", "--json")))
    assert [m["username"] for m in shown["members"]] == ["alice"]
    assert "alice" in ok(cmd("group", "show", "admins"))
    assert json.loads(ok(cmd("user", "show", "alice", "--json")))["groups"][0]["id"] == group["id"]
    assert group["id"] in ok(cmd("group", "list"))
    refused(cmd("group", "add", "admins", "nobody"), "USER_NOT_FOUND")
    refused(cmd("group", "create", "ADMINS"), "NAME_TAKEN")
    ok(cmd("group", "remove", "admins", "alice"))
    assert json.loads(ok(cmd("group", "delete", "admins", "--json")))["members"] == 0
    refused(cmd("group", "show", "admins"), "GROUP_NOT_FOUND")
    adds = logged("group.user_membership.add")
    assert [e["debugContext"]["debugData"].get("changed") for e in adds] == [True, False, None]
    assert adds[2]["outcome"]["reason"] == "USER_NOT_FOUND"
    assert [t["type"] for t in adds[0]["target"]] == ["User", "UserGroup"]
    assert len(logged("group.user_membership.remove")) == 1
    assert len(logged("group.lifecycle.delete")) == 1
    assert [e["outcome"]["result"] for e in logged("group.lifecycle.create")] == [
        "SUCCESS",
        "FAILURE",
    ]


def test_app_secret_shown_once_and_rotated(cmd: Run, database: Database, logged: Logged) -> None:
    out = ok(cmd("app", "create", "Billing", "--auth-method", "client_secret_basic",
                 "--client-id", "billing"))  # fmt: skip
    secret = out.split("client secret (shown once): ", 1)[1].split()[0]
    assert secret.startswith("cbs_")
    shown = ok(cmd("app", "show", "billing"))
    assert secret not in shown and "client secret" not in shown
    apps = Apps(database, FixedClock(dt.datetime.now(dt.UTC)))
    app = apps.get("billing")
    assert apps.verify_secret(app, secret)
    rotated = json.loads(ok(cmd("app", "rotate-secret", "billing", "--json")))
    assert rotated["clientSecret"] != secret
    fresh = Apps(database, FixedClock(dt.datetime.now(dt.UTC)))
    assert fresh.verify_secret(app, rotated["clientSecret"]) and not fresh.verify_secret(
        app, secret
    )
    text = all_events(database)
    assert secret not in text and rotated["clientSecret"] not in text
    assert len(logged("application.client.secret_rotate")) == 1
    assert logged("application.lifecycle.create")[0]["target"][0]["alternateId"] == "billing"


def test_app_tls_client_auth_pins_from_store(cmd: Run, tmp_path: Path, logged: Logged) -> None:
    root = devpki.ca("Directory CLI Root")
    issuing = devpki.ca("Directory CLI Issuing", root)
    (tmp_path / "chain.pem").write_bytes(devpki.pem_bundle([issuing, root]))
    ca = json.loads(ok(cmd("ca", "add", str(tmp_path / "chain.pem"), "--json")))
    made = json.loads(
        ok(cmd("app", "create", "Svc", "--auth-method", "tls_client_auth", "--subject-dn",
               "CN=svc, O=Corp", "--ca-pin-from-store", ca["id"], "--json"))
    )  # fmt: skip
    pins = made["metadata"]["tls_client_auth_ca_pins"]
    assert pins == [ca_pin(issuing.cert), ca_pin(root.cert)]
    assert "clientSecret" not in made and made["hasSecret"] is False
    error = refused(
        cmd("app", "create", "Bad", "--auth-method", "tls_client_auth", "--subject-dn", "CN=x"),
        "INVALID_CLIENT_METADATA",
    )
    assert "tls_client_auth_ca_pins" in error
    refused(cmd("app", "create", "Bad", "--auth-method", "tls_client_auth", "--subject-dn",
                "CN=x", "--ca-pin-from-store", "ca_missing"), "CA_NOT_FOUND")  # fmt: skip
    refused(cmd("app", "create", "Bad", "--auth-method", "none"), "INVALID_CLIENT_METADATA")
    # update: another identity replaces the DN; a new method drops the mTLS fields
    updated = json.loads(
        ok(cmd("app", "update", made["clientId"], "--san-dns", "svc.corp.example", "--json"))
    )
    meta = updated["metadata"]
    assert meta["tls_client_auth_san_dns"] == "svc.corp.example"
    assert "tls_client_auth_subject_dn" not in meta and meta["tls_client_auth_ca_pins"] == pins
    moved = json.loads(
        ok(cmd("app", "update", made["id"], "--auth-method", "client_secret_post", "--json"))
    )
    assert moved["clientSecret"].startswith("cbs_") and moved["hasSecret"] is True
    assert "tls_client_auth_san_dns" not in moved["metadata"]
    inactive = json.loads(ok(cmd("app", "update", made["id"], "--status", "inactive", "--json")))
    assert inactive["status"] == "INACTIVE"
    assert made["id"] in ok(cmd("app", "list"))
    ok(cmd("app", "delete", made["id"]))
    refused(cmd("app", "show", made["id"]), "APP_NOT_FOUND")
    updates = logged("application.lifecycle.update")
    details = updates[0]["debugContext"]["debugData"]["changeDetails"]
    assert "metadata" in details["after"]
    assert [e["outcome"]["result"] for e in logged("application.lifecycle.create")] == [
        "SUCCESS", "FAILURE", "FAILURE", "FAILURE",
    ]  # fmt: skip
    assert len(logged("application.lifecycle.delete")) == 1


def test_app_jwks_file(cmd: Run, tmp_path: Path) -> None:
    jwks = {"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b", "kid": "k1"}]}
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    made = json.loads(ok(cmd("app", "create", "Jwt", "--auth-method", "private_key_jwt",
                             "--jwks-file", str(tmp_path / "jwks.json"), "--json")))  # fmt: skip
    assert made["metadata"]["jwks"] == jwks
    (tmp_path / "private.json").write_text(json.dumps({"keys": [{**jwks["keys"][0], "d": "s"}]}))
    refused(cmd("app", "create", "Jwt", "--auth-method", "private_key_jwt", "--jwks-file",
                str(tmp_path / "private.json")), "INVALID_CLIENT_METADATA")  # fmt: skip
    (tmp_path / "broken.json").write_text("{")
    refused(cmd("app", "create", "Jwt", "--auth-method", "private_key_jwt", "--jwks-file",
                str(tmp_path / "broken.json")), "INVALID_CLIENT_METADATA")  # fmt: skip
