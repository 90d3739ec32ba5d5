"""``certbound quickstart`` and ``certbound verify`` driven as a user would: the real command
in a subprocess, real files, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from certbound.pki.devpki import QUICKSTART_DEVICES
from certbound.storage.database import Database

DEVICES = sorted(QUICKSTART_DEVICES)


def certbound(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "certbound", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture
def env(database: Database, database_url: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("CERTBOUND_")}
    out["CERTBOUND_DATABASE_URL"] = database_url
    return out


@pytest.fixture
def demo(tmp_path: Path, env: dict[str, str]) -> Path:
    done = certbound("quickstart", "--dir", str(tmp_path / "demo"), "--no-serve", "--json", env=env)
    assert done.returncode == 0, done.stderr + done.stdout
    return tmp_path / "demo"


def test_quickstart_writes_the_contract_layout(demo: Path) -> None:
    pki = demo / "pki"
    for name in ("ca-chain.pem", "root.pem", "intermediate.pem"):
        assert (pki / name).read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    chain = (pki / "ca-chain.pem").read_bytes()
    assert chain == (pki / "intermediate.pem").read_bytes() + (pki / "root.pem").read_bytes()
    for device in DEVICES:
        assert (pki / "devices" / f"{device}.pem").is_file()
        key = pki / "devices" / f"{device}.key"
        assert key.stat().st_mode & 0o077 == 0
    assert "database_url" in (demo / "certbound.toml").read_text()


def test_quickstart_reports_each_device_code(tmp_path: Path, env: dict[str, str]) -> None:
    done = certbound("quickstart", "--dir", str(tmp_path / "d"), "--no-serve", "--json", env=env)
    rows = {row["device"]: row for row in json.loads(done.stdout)["devices"]}
    assert set(rows) == set(DEVICES)
    for device, expected in QUICKSTART_DEVICES.items():
        assert rows[device]["reason"] == expected, rows[device]
        assert rows[device]["as_expected"] is True
    assert QUICKSTART_DEVICES["revoked"] == "REVOKED_CERTIFICATE"
    assert "intermediate.crl.pem" in rows["revoked"]["detail"]


def test_quickstart_checks_its_crl_file(demo: Path, env: dict[str, str]) -> None:
    """The demo CA's CRL URL is the file quickstart wrote; a good device is GOOD on it."""
    config = str(demo / "certbound.toml")
    [stored] = json.loads(certbound("--config", config, "ca", "list", "--json", env=env).stdout)[
        "cas"
    ]
    shown = certbound("--config", config, "ca", "show", stored["id"], "--json", env=env)
    crl_url = json.loads(shown.stdout)["revocation"]["crlUrl"]
    assert crl_url == (demo / "pki" / "intermediate.crl.pem").as_uri()
    good = demo / "pki" / "devices" / "good.pem"
    done = certbound("--config", config, "verify", "--json", str(good), env=env)
    revocation = json.loads(done.stdout)["revocation"]
    assert revocation["status"] == "GOOD" and revocation["source"] == "file"
    assert revocation["url"] == crl_url


def test_a_stale_demo_crl_is_refused(demo: Path, env: dict[str, str]) -> None:
    """Past the CRL's nextUpdate (7 days) plus the allowed hour, the demo refuses."""
    config = str(demo / "certbound.toml")
    good = str(demo / "pki" / "devices" / "good.pem")
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=8)).strftime("%Y-%m-%dT%H:%M:%SZ")
    done = certbound("--config", config, "verify", "--at", later, good, env=env)
    assert done.returncode == 1, done.stdout
    assert f"{good}: FAILED REVOCATION_STALE: " in done.stdout


def test_quickstart_twice_replaces_the_demo_ca(demo: Path, env: dict[str, str]) -> None:
    again = certbound("quickstart", "--dir", str(demo), "--no-serve", env=env)
    assert again.returncode == 0, again.stderr
    listed = certbound("--config", str(demo / "certbound.toml"), "ca", "list", "--json", env=env)
    assert len(json.loads(listed.stdout)["cas"]) == 1


@pytest.mark.parametrize("device", DEVICES)
def test_verify_against_the_store(demo: Path, env: dict[str, str], device: str) -> None:
    cert = demo / "pki" / "devices" / f"{device}.pem"
    done = certbound("--config", str(demo / "certbound.toml"), "verify", str(cert), env=env)
    expected = QUICKSTART_DEVICES[device]
    if expected is None:
        assert done.returncode == 0, done.stdout
        assert done.stdout.startswith(f"{cert}: OK")
        assert "  revocation GOOD (file, file://" in done.stdout
    else:
        assert done.returncode == 1, done.stdout
        assert done.stdout.startswith(f"{cert}: FAILED {expected}: ")
        assert "fix: " in done.stdout


def test_verify_with_ca_file_json_and_time(demo: Path, env: dict[str, str]) -> None:
    pki = demo / "pki"
    good = str(pki / "devices" / "good.pem")
    ca_file = str(pki / "ca-chain.pem")
    done = certbound("verify", "--ca", ca_file, "--json", good, env=env)
    assert done.returncode == 0
    body = json.loads(done.stdout)
    assert body["result"] == "OK"
    assert body["certificate"]["subjectDn"].startswith("CN=good.")
    late = certbound("verify", "--ca", ca_file, "--at", "2999-01-01T00:00:00Z", good, env=env)
    assert late.returncode == 1
    assert "FAILED CERTIFICATE_EXPIRED" in late.stdout


def test_verify_root_only_with_untrusted_intermediate(demo: Path, env: dict[str, str]) -> None:
    pki = demo / "pki"
    good = str(pki / "devices" / "good.pem")
    root = str(pki / "root.pem")
    missing = certbound("verify", "--ca", root, good, env=env)
    assert missing.returncode == 1
    assert "FAILED INTERMEDIATE_MISSING" in missing.stdout
    ok = certbound(
        "verify", "--ca", root, "--untrusted", str(pki / "intermediate.pem"), good, env=env
    )
    assert ok.returncode == 0, ok.stdout


def test_verify_input_errors_exit_2(demo: Path, env: dict[str, str], tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    done = certbound("verify", "--ca", str(demo / "pki" / "root.pem"), str(garbage), env=env)
    assert done.returncode == 2
    assert "PEM_MALFORMED" in done.stderr
    bad_time = certbound("verify", "--at", "yesterday", str(garbage), env=env)
    assert bad_time.returncode == 2
    both = certbound("verify", "--store", "--ca", str(garbage), str(garbage), env=env)
    assert both.returncode == 2


def test_verify_accepts_a_combined_cert_and_key_file(demo: Path, env: dict[str, str]) -> None:
    devices = demo / "pki" / "devices"
    combined = devices / "combined.pem"
    combined.write_bytes((devices / "good.pem").read_bytes() + (devices / "good.key").read_bytes())
    done = certbound("--config", str(demo / "certbound.toml"), "verify", str(combined), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
