"""``certbound admin token create|list|revoke``: shown once, logged without the secret;
on SQLite and PostgreSQL."""

from __future__ import annotations

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
