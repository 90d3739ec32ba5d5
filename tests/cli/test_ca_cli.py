"""``certbound ca add|list|show|remove``: output, JSON, exit codes; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from certbound.cli import ca
from certbound.cli.main import EXIT_OK, EXIT_USAGE, cli
from certbound.errors import ReasonCode
from certbound.pki import devpki
from certbound.pki.certificate import sha256_fingerprint, spki_sha256
from certbound.storage.database import Database

DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def root() -> devpki.Issued:
    return devpki.ca("CLI Root CA", not_after=dt.datetime.now(dt.UTC) + 3650 * DAY)


@pytest.fixture(scope="module")
def inter(root: devpki.Issued) -> devpki.Issued:
    return devpki.ca("CLI Intermediate CA", root, path_length=0)


@pytest.fixture
def run(database: Database, database_url: str) -> Any:
    """Invoke ``certbound`` against the test database (the ``ca`` group attached)."""
    cli.add_command(ca.ca)
    env = {"CERTBOUND_DATABASE_URL": database_url, "CERTBOUND_CONFIG": None}

    def invoke(*args: str, stdin: bytes | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), env=env, input=stdin)

    return invoke


@pytest.fixture
def chain_file(tmp_path: Path, root: devpki.Issued, inter: devpki.Issued) -> Path:
    path = tmp_path / "ca-chain.pem"
    path.write_bytes(devpki.pem_bundle([inter, root]))
    return path


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def added_id(result: Result) -> str:
    assert result.exit_code == EXIT_OK, result.output
    data = json.loads(result.stdout)
    assert isinstance(data["id"], str)
    return data["id"]


def test_add_prints_every_certificate(
    run: Any, chain_file: Path, root: devpki.Issued, inter: devpki.Issued
) -> None:
    result = run("ca", "add", str(chain_file))
    assert result.exit_code == EXIT_OK, result.output
    out = result.stdout
    for item, role in ((inter, "intermediate"), (root, "root")):
        assert role in out
        assert item.cert.subject.rfc4514_string() in out
        assert sha256_fingerprint(item.cert) in out
        assert spki_sha256(item.cert) in out
    assert "issuer" in out and "serial" in out and "not before" in out and "not after" in out
    assert "CLI Root CA" in out
    assert "notice" not in out


def test_add_root_first_prints_the_reorder_notice(
    run: Any, tmp_path: Path, root: devpki.Issued, inter: devpki.Issued
) -> None:
    path = write(tmp_path, "root-first.pem", devpki.pem_bundle([root, inter]))
    result = run("ca", "add", path, "--name", "Reordered")
    assert result.exit_code == EXIT_OK, result.output
    assert "notice CHAIN_OUT_OF_ORDER: reordered" in result.stdout
    assert "Reordered" in result.stdout


def test_add_json(run: Any, chain_file: Path) -> None:
    result = run("ca", "add", str(chain_file), "--json")
    assert result.exit_code == EXIT_OK
    data = json.loads(result.stdout)
    assert data["name"] == "CLI Root CA"
    assert data["generation"] == 1
    assert data["reordered"] is False
    assert [c["role"] for c in data["certificates"]] == ["intermediate", "root"]


def test_add_from_stdin(run: Any, root: devpki.Issued) -> None:
    assert added_id(run("ca", "add", "-", "--json", stdin=root.cert_pem()))


def test_rejected_upload_exits_2_with_reason_and_fix(
    run: Any, tmp_path: Path, inter: devpki.Issued
) -> None:
    leaf = devpki.issue("device.example", inter)
    path = write(tmp_path, "leaf.pem", leaf.cert_pem())
    result = run("ca", "add", path)
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.startswith("error NOT_A_CA: block 1 (CN=device.example")
    assert ReasonCode.NOT_A_CA.fix in result.stderr
    assert result.stdout == ""
    assert json.loads(run("ca", "list", "--json").stdout)["cas"] == []


def test_rejected_upload_json(run: Any, tmp_path: Path, inter: devpki.Issued) -> None:
    path = write(tmp_path, "inter.pem", inter.cert_pem() + b"-----BEGIN CERTIFICATE-----\nAAA")
    result = run("ca", "add", path, "--json")
    assert result.exit_code == EXIT_USAGE
    error = json.loads(result.stdout)["error"]
    assert error["reason"] == "PEM_MALFORMED"
    assert "block 2" in error["detail"]
    assert error["fix"] == ReasonCode.PEM_MALFORMED.fix
    assert error["context"]["block"] == 2


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"", "UPLOAD_EMPTY"), (b"garbage", "PEM_MALFORMED")],
)
def test_bad_files(run: Any, tmp_path: Path, data: bytes, reason: str) -> None:
    result = run("ca", "add", write(tmp_path, "bad.pem", data))
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.startswith(f"error {reason}: ")


def test_missing_file_is_a_usage_error(run: Any, tmp_path: Path) -> None:
    assert run("ca", "add", str(tmp_path / "absent.pem")).exit_code == EXIT_USAGE


def test_long_name_is_a_usage_error(run: Any, chain_file: Path) -> None:
    result = run("ca", "add", str(chain_file), "--name", "x" * 201)
    assert result.exit_code == EXIT_USAGE
    assert "1 to 200" in result.stderr


def test_duplicate_upload(run: Any, chain_file: Path) -> None:
    first = added_id(run("ca", "add", str(chain_file), "--json"))
    result = run("ca", "add", str(chain_file), "--json")
    assert result.exit_code == EXIT_USAGE
    error = json.loads(result.stdout)["error"]
    assert error["reason"] == "DUPLICATE_CA"
    assert error["context"]["existing_ca_ids"] == [first]


def test_same_subject_conflict_and_allow(run: Any, tmp_path: Path, root: devpki.Issued) -> None:
    first = added_id(run("ca", "add", write(tmp_path, "root.pem", root.cert_pem()), "--json"))
    impostor = write(tmp_path, "impostor.pem", devpki.ca("CLI Root CA").cert_pem())
    result = run("ca", "add", impostor)
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.startswith("error CA_SUBJECT_CONFLICT: ")
    assert first in result.stderr
    assert "--allow-same-subject" in result.stderr  # the fix names the flag

    result = run("ca", "add", impostor, "--allow-same-subject")
    assert result.exit_code == EXIT_OK, result.output
    assert "notice CA_SUBJECT_CONFLICT: " in result.stdout


def test_list_show_remove(run: Any, chain_file: Path, root: devpki.Issued) -> None:
    result = run("ca", "list")
    assert result.exit_code == EXIT_OK
    assert "empty" in result.stdout

    ca_id = added_id(run("ca", "add", str(chain_file), "--json"))
    listed = json.loads(run("ca", "list", "--json").stdout)
    assert listed["generation"] == 1
    assert [c["id"] for c in listed["cas"]] == [ca_id]
    assert ca_id in run("ca", "list").stdout

    shown = run("ca", "show", ca_id)
    assert shown.exit_code == EXIT_OK
    assert sha256_fingerprint(root.cert) in shown.stdout
    assert json.loads(run("ca", "show", ca_id, "--json").stdout)["id"] == ca_id

    removed = run("ca", "remove", ca_id, "--json")
    assert removed.exit_code == EXIT_OK
    assert json.loads(removed.stdout)["removed"]["id"] == ca_id
    assert json.loads(run("ca", "list", "--json").stdout) == {"generation": 2, "cas": []}


def test_remove_human(run: Any, chain_file: Path) -> None:
    ca_id = added_id(run("ca", "add", str(chain_file), "--json"))
    result = run("ca", "remove", ca_id)
    assert result.exit_code == EXIT_OK
    assert f"removed {ca_id}" in result.stdout


@pytest.mark.parametrize("command", ["show", "remove"])
def test_unknown_id(run: Any, command: str) -> None:
    result = run("ca", command, "ca_nope")
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.startswith("error CA_NOT_FOUND: ")
    result = run("ca", command, "ca_nope", "--json")
    assert result.exit_code == EXIT_USAGE
    assert json.loads(result.stdout)["error"]["reason"] == "CA_NOT_FOUND"


def test_expiring_soon_is_marked(run: Any, tmp_path: Path) -> None:
    soon = devpki.ca("Soon CA", not_after=dt.datetime.now(dt.UTC) + 20 * DAY)
    result = run("ca", "add", write(tmp_path, "soon.pem", soon.cert_pem()))
    assert result.exit_code == EXIT_OK
    assert "notice CA_EXPIRING_SOON: " in result.stdout
    assert "expires in 19 day(s)" in result.stdout or "expires in 20 day(s)" in result.stdout


def test_help(run: Any) -> None:
    for command in ("add", "list", "show", "remove"):
        result = run("ca", command, "--help")
        assert result.exit_code == EXIT_OK
        assert "--json" in result.stdout
