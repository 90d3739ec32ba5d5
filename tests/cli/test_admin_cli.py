"""``certbound admin create|list`` and ``certbound admin token create|list|revoke``: tokens
shown once, logged without the secret, tied to admins within their role, bound to a
certificate; on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from certbound.admin.tokens import ApiTokens, AuthError, split_token
from certbound.cli import admin
from certbound.cli.main import EXIT_OK, EXIT_USAGE, cli
from certbound.clock import SystemClock
from certbound.pki import devpki
from certbound.pki.certificate import der
from certbound.storage.database import Database
from certbound.storage.models import LogEvent


@pytest.fixture
def run(database: Database, database_url: str, tmp_path: Path) -> Any:
    cli.add_command(admin.admin)
    env = {
        "CERTBOUND_DATABASE_URL": database_url,
        "CERTBOUND_DATA_DIR": str(tmp_path / "data"),
        "CERTBOUND_CONFIG": None,
    }

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args), env=env)

    return invoke


def log_bodies(database: Database) -> list[dict[str, Any]]:
    with database.session() as session:
        bodies = session.scalars(select(LogEvent.body).order_by(LogEvent.seq)).all()
    return [json.loads(body) for body in bodies]


def test_create_prints_the_token_once_and_it_authenticates(run: Any, database: Database) -> None:
    result = run("admin", "token", "create", "--name", "ci")
    assert result.exit_code == EXIT_OK, result.output
    lines = result.stdout.strip().splitlines()
    token = lines[-1]
    token_id, secret = split_token(token)
    assert "cannot be shown again" in result.stdout
    assert f"API token {token_id} (ci), role SUPER_ADMIN, expires -" in result.stdout
    info = ApiTokens(database, SystemClock()).authenticate(token)
    assert (info.id, info.name, info.role) == (token_id, "ci", "SUPER_ADMIN")

    listed = run("admin", "token", "list")
    assert listed.exit_code == EXIT_OK, listed.output
    assert token_id in listed.stdout and "active" in listed.stdout
    assert secret not in listed.stdout


def test_create_json_with_role_and_expiry(run: Any, database: Database) -> None:
    result = run(
        "admin", "token", "create", "--name", "ro", "--role", "READ_ONLY_ADMIN",
        "--expires-days", "7", "--json",
    )  # fmt: skip
    assert result.exit_code == EXIT_OK, result.output
    data = json.loads(result.stdout)
    assert data["role"] == "READ_ONLY_ADMIN" and data["expiresAt"] is not None
    info = ApiTokens(database, SystemClock()).authenticate(data["token"])
    assert info.id == data["id"]
    assert info.expires_at is not None
    assert 6.99 < (info.expires_at - info.created_at).total_seconds() / 86400 <= 7


def test_revoke_refuses_the_token_and_both_are_logged_without_the_secret(
    run: Any, database: Database
) -> None:
    created = json.loads(run("admin", "token", "create", "--name", "leak", "--json").stdout)
    token, token_id = created["token"], created["id"]
    result = run("admin", "token", "revoke", token_id)
    assert result.exit_code == EXIT_OK, result.output
    assert f"revoked API token {token_id} (leak)" in result.stdout
    with pytest.raises(AuthError):
        ApiTokens(database, SystemClock()).authenticate(token)
    listed = json.loads(run("admin", "token", "list", "--json").stdout)
    assert [(t["id"], t["status"]) for t in listed["tokens"]] == [(token_id, "revoked")]

    events = log_bodies(database)
    assert [e["eventType"] for e in events] == [
        "system.api_token.create",
        "system.api_token.revoke",
    ]
    for event in events:
        assert [t["id"] for t in event["target"]] == [token_id]
        assert event["actor"]["id"] == "cli"
        assert event["outcome"]["result"] == "SUCCESS"
    _, secret = split_token(token)
    with database.session() as session:
        rows = session.execute(select(LogEvent)).scalars().all()
        stored = " ".join(str(vars(row)) for row in rows)
    assert secret not in stored


def test_revoke_unknown_id_exits_2(run: Any) -> None:
    result = run("admin", "token", "revoke", "0123456789abcdef")
    assert result.exit_code == EXIT_USAGE
    assert "no API token with id '0123456789abcdef'" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--name", ""],
        ["--name", "x", "--role", "lower case"],
        ["--name", "x", "--expires-days", "0"],
        [],
    ],
)
def test_create_refuses_bad_options(run: Any, database: Database, args: list[str]) -> None:
    result = run("admin", "token", "create", *args)
    assert result.exit_code == EXIT_USAGE, result.output
    assert ApiTokens(database, SystemClock()).list() == []


def test_list_when_empty(run: Any) -> None:
    result = run("admin", "token", "list")
    assert result.exit_code == EXIT_OK
    assert "no API tokens" in result.stdout


def test_list_prints_names_literally(run: Any) -> None:
    assert run("admin", "token", "create", "--name", "[red]ops[/]").exit_code == EXIT_OK
    listed = run("admin", "token", "list")
    assert listed.exit_code == EXIT_OK, listed.output
    assert "[red]ops[/]" in listed.stdout


# --- admins, and tokens that belong to them -----------------------------------------------


def test_admin_create_and_list(run: Any, database: Database) -> None:
    made = run("admin", "create", "--username", "alice", "--email", "a@example.com",
               "--role", "SUPER_ADMIN", "--json")  # fmt: skip
    assert made.exit_code == EXIT_OK, made.output
    admin = json.loads(made.stdout)
    assert (admin["username"], admin["role"], admin["status"]) == ("alice", "SUPER_ADMIN", "ACTIVE")
    text = run("admin", "create", "--username", "bob", "--role", "HELP_DESK_ADMIN")
    assert text.exit_code == EXIT_OK and "role HELP_DESK_ADMIN" in text.stdout
    assert "token create --name NAME --admin bob" in text.stdout
    listed = run("admin", "list")
    assert listed.exit_code == EXIT_OK
    assert "alice" in listed.stdout and "HELP_DESK_ADMIN" in listed.stdout
    as_json = json.loads(run("admin", "list", "--json").stdout)
    assert [a["username"] for a in as_json["admins"]] == ["alice", "bob"]
    taken = run("admin", "create", "--username", "ALICE", "--role", "ORG_ADMIN")
    assert taken.exit_code == EXIT_USAGE and "NAME_TAKEN" in taken.stderr
    assert run("admin", "create", "--username", "c", "--role", "GOD").exit_code == EXIT_USAGE
    events = [e for e in log_bodies(database) if e["eventType"] == "admin.account.create"]
    assert [e["target"][0]["alternateId"] for e in events] == ["alice", "bob"]
    assert all(e["actor"]["id"] == "cli" for e in events)


def test_admin_list_when_empty(run: Any) -> None:
    result = run("admin", "list")
    assert result.exit_code == EXIT_OK and "no admins" in result.stdout


def test_token_of_an_admin_takes_its_role_and_no_higher(run: Any, database: Database) -> None:
    assert run("admin", "create", "--username", "hd", "--role", "HELP_DESK_ADMIN").exit_code == 0
    made = json.loads(run("admin", "token", "create", "--name", "t", "--admin", "hd",
                          "--json").stdout)  # fmt: skip
    assert made["role"] == "HELP_DESK_ADMIN" and made["adminId"].startswith("adm_")
    bearer = ApiTokens(database, SystemClock()).bearer(made["token"])
    assert bearer.admin is not None and bearer.admin.username == "hd"
    above = run("admin", "token", "create", "--name", "t", "--admin", "hd", "--role", "ORG_ADMIN")
    assert above.exit_code == EXIT_USAGE and "FORBIDDEN_ROLE" in above.stderr
    unknown = run("admin", "token", "create", "--name", "t", "--admin", "nobody")
    assert unknown.exit_code == EXIT_USAGE and "ADMIN_NOT_FOUND" in unknown.stderr
    ownerless = run("admin", "token", "create", "--name", "t")
    assert ownerless.exit_code == EXIT_USAGE and "--admin" in ownerless.stderr
    listed = run("admin", "token", "list")
    assert made["adminId"] in listed.stdout


def test_token_bound_to_a_certificate(run: Any, database: Database, tmp_path: Path) -> None:
    pki = devpki.build_dev_pki()
    cert_file = tmp_path / "good.pem"
    cert_file.write_bytes(pki.devices["good"].cert_pem() + pki.devices["good"].key_pem())
    assert run("admin", "create", "--username", "ops", "--role", "ORG_ADMIN").exit_code == 0
    result = run("admin", "token", "create", "--name", "bound", "--admin", "ops",
                 "--bind-cert", str(cert_file))  # fmt: skip
    assert result.exit_code == EXIT_OK, result.output
    thumbprint = hashlib.sha256(der(pki.devices["good"].cert)).hexdigest()
    assert f"bound to the client certificate with SHA-256 {thumbprint}" in result.stdout
    token = result.stdout.strip().splitlines()[-1]
    tokens = ApiTokens(database, SystemClock())
    assert tokens.authenticate(token, presented_sha256=thumbprint).cert_sha256 == thumbprint
    with pytest.raises(AuthError, match="bound to the client certificate"):
        tokens.authenticate(token)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    bad = run("admin", "token", "create", "--name", "b", "--admin", "ops", "--bind-cert", str(junk))
    assert bad.exit_code == EXIT_USAGE
