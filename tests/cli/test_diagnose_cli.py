"""Events recorded by ``ca``, ``verify`` and ``quickstart``, found by ``certbound log`` and
``/api/v1/logs``, and explained by ``certbound diagnose``: the real command in a subprocess,
on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from certbound.admin.tokens import ApiTokens
from certbound.clock import SystemClock
from certbound.config import Settings
from certbound.pki import devpki
from certbound.pki.certificate import serial_hex
from certbound.pki.pem import load_presented_file
from certbound.storage.database import Database
from certbound.storage.models import LogEvent
from certbound.web.app import create_app

QUICKSTART_CA = "Certbound Dev CA chain (quickstart)"
DAY = dt.timedelta(days=1)


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
def env(database: Database, database_url: str, tmp_path: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("CERTBOUND_")}
    out["CERTBOUND_DATABASE_URL"] = database_url
    out["CERTBOUND_DATA_DIR"] = str(tmp_path / "data")
    out["COLUMNS"] = "200"
    return out


@pytest.fixture
def demo(tmp_path: Path, env: dict[str, str]) -> Path:
    done = certbound("quickstart", "--dir", str(tmp_path / "demo"), "--no-serve", "--json", env=env)
    assert done.returncode == 0, done.stderr + done.stdout
    return tmp_path / "demo" / "pki"


@pytest.fixture
def pki_files(tmp_path: Path) -> Path:
    """The quickstart layout, written without uploading anything."""
    directory = tmp_path / "pki"
    devpki.write_dev_pki(devpki.build_dev_pki(), directory)
    return directory


def diagnose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return certbound("diagnose", *args, env=env)


def events_of(db: Database, event_type: str) -> list[dict[str, Any]]:
    with db.session() as session:
        bodies = session.scalars(
            select(LogEvent.body).where(LogEvent.event_type == event_type).order_by(LogEvent.seq)
        )
        return [json.loads(body) for body in bodies]


def test_unknown_ca_after_quickstart(demo: Path, env: dict[str, str]) -> None:
    verified = certbound("verify", str(demo / "devices" / "foreign.pem"), env=env)
    assert verified.returncode == 1, verified.stdout + verified.stderr
    assert "event: " in verified.stdout and "certbound diagnose " in verified.stdout
    done = diagnose("--last", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Layer: certificate" in out
    assert "Reason: UNKNOWN_CA" in out
    assert "names the issuer 'CN=Foreign Issuing CA,O=Elsewhere Inc'" in out
    assert "Uploaded CAs (1 chain)" in out
    assert f"({QUICKSTART_CA}): CN=Certbound Dev Root CA,O=Certbound Dev" in out
    assert "Fix: Upload the issuing CA chain" in out
    foreign = load_presented_file((demo / "devices" / "foreign.pem").read_bytes())[0]
    assert f"serial {serial_hex(foreign)}" in out


def test_diagnose_the_event_verify_names(demo: Path, env: dict[str, str]) -> None:
    verified = certbound("verify", "--json", str(demo / "devices" / "expired.pem"), env=env)
    event_uuid = json.loads(verified.stdout)["event"]
    done = diagnose(event_uuid, "--json", env=env)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["event"]["uuid"] == event_uuid
    assert (body["layer"], body["reason"]) == ("certificate", "CERTIFICATE_EXPIRED")
    assert body["fix"] == "Re-issue the client certificate from your CA."
    assert any("It expired 1 day ago." in line for line in body["whatHappened"])


def test_certificate_expired_by_serial(demo: Path, env: dict[str, str]) -> None:
    expired = load_presented_file((demo / "devices" / "expired.pem").read_bytes())[0]
    certbound("verify", str(demo / "devices" / "expired.pem"), env=env)
    serial = serial_hex(expired)
    spelled = ":".join(serial[i : i + 2] for i in range(0, len(serial), 2)).lower()
    done = diagnose("--serial", spelled, env=env)
    assert done.returncode == 0, done.stderr
    assert "Reason: CERTIFICATE_EXPIRED" in done.stdout
    not_after = expired.not_valid_after_utc.isoformat().replace("+00:00", "Z")
    assert f"has notAfter {not_after}" in done.stdout
    assert "ago." in done.stdout


def test_intermediate_missing(pki_files: Path, env: dict[str, str]) -> None:
    added = certbound("ca", "add", str(pki_files / "root.pem"), env=env)
    assert added.returncode == 0, added.stderr
    verified = certbound("verify", str(pki_files / "devices" / "good.pem"), env=env)
    assert "FAILED INTERMEDIATE_MISSING" in verified.stdout
    done = diagnose("--last", env=env)
    assert done.returncode == 0, done.stderr
    assert "Layer: certificate" in done.stdout
    assert "Reason: INTERMEDIATE_MISSING" in done.stdout
    assert (
        "Upload that intermediate: the CA certificate with subject "
        "'CN=Certbound Dev Intermediate CA,O=Certbound Dev'" in done.stdout
    )


def test_rejected_upload(pki_files: Path, env: dict[str, str], database: Database) -> None:
    leaf = str(pki_files / "devices" / "good.pem")
    added = certbound("ca", "add", leaf, env=env)
    assert added.returncode == 2
    done = diagnose("--last", env=env)
    assert done.returncode == 0, done.stderr
    assert "Layer: upload" in done.stdout
    assert "Reason: NOT_A_CA" in done.stdout
    assert f"The trust store refused {leaf}; nothing was stored." in done.stdout
    assert "Fix: Upload the issuing CA certificates, not the device certificate." in done.stdout
    [event] = events_of(database, "security.trust.ca.add")
    assert event["outcome"] == {"result": "FAILURE", "reason": "NOT_A_CA"}


def test_nothing_to_explain_and_usage_errors(env: dict[str, str]) -> None:
    none = diagnose("--last", env=env)
    assert none.returncode == 1
    assert "no failed (FAILURE or DENY) event" in none.stderr
    as_json = diagnose("--last", "--json", env=env)
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["error"]["detail"]
    missing = diagnose("00000000-0000-4000-8000-000000000000", env=env)
    assert missing.returncode == 1
    assert diagnose(env=env).returncode == 2
    assert diagnose("--last", "--serial", "0A", env=env).returncode == 2
    assert diagnose("--serial", "zz", env=env).returncode == 2
    assert diagnose("not-a-uuid", env=env).returncode == 2


def test_each_decision_recorded_once(
    pki_files: Path, env: dict[str, str], database: Database
) -> None:
    chain = str(pki_files / "ca-chain.pem")
    crl_url = (pki_files / "intermediate.crl.pem").as_uri()
    added = certbound("ca", "add", "--json", chain, "--crl-url", crl_url, env=env)
    ca_id = json.loads(added.stdout)["id"]
    certbound("verify", str(pki_files / "devices" / "good.pem"), env=env)
    certbound("verify", str(pki_files / "devices" / "foreign.pem"), env=env)
    # Checking against a file decides nothing about the store: not recorded.
    certbound("verify", "--ca", chain, str(pki_files / "devices" / "good.pem"), env=env)
    certbound("ca", "remove", ca_id, env=env)
    certbound("ca", "remove", ca_id, env=env)
    [add] = events_of(database, "security.trust.ca.add")
    assert add["outcome"]["result"] == "SUCCESS" and add["target"][0]["id"] == ca_id
    verifies = events_of(database, "device.trust.verify")
    assert [(e["outcome"]["result"], e["outcome"]["reason"]) for e in verifies] == [
        ("SUCCESS", None),
        ("FAILURE", "UNKNOWN_CA"),
    ]
    removes = events_of(database, "security.trust.ca.remove")
    assert [(e["outcome"]["result"], e["outcome"]["reason"]) for e in removes] == [
        ("SUCCESS", None),
        ("FAILURE", "CA_NOT_FOUND"),
    ]


def test_quickstart_records_its_run_as_one_transaction(
    demo: Path, env: dict[str, str], database: Database
) -> None:
    verifies = events_of(database, "device.trust.verify")
    assert len(verifies) == len(devpki.QUICKSTART_DEVICES)
    [add] = events_of(database, "security.trust.ca.add")
    transactions = {e["transaction"]["id"] for e in [*verifies, add]}
    assert len(transactions) == 1


def test_expiry_warning_from_list_once_a_day(
    tmp_path: Path, env: dict[str, str], database: Database
) -> None:
    soon = devpki.ca("Soon Root CA", not_after=dt.datetime.now(dt.UTC) + 30 * DAY)
    pem = tmp_path / "soon.pem"
    pem.write_bytes(soon.cert_pem())
    narrow = {**env, "CERTBOUND_CA_EXPIRY_WARNING_DAYS": "10"}
    assert certbound("ca", "add", str(pem), env=narrow).returncode == 0
    assert events_of(database, "pki.ca.expiration.warn") == []
    assert certbound("ca", "list", env=env).returncode == 0
    assert certbound("ca", "list", "--json", env=env).returncode == 0
    [warning] = events_of(database, "pki.ca.expiration.warn")
    assert warning["outcome"] == {"result": "SUCCESS", "reason": "CA_EXPIRING_SOON"}
    assert warning["debugContext"]["debugData"]["trigger"] == "list"


def test_expiry_warning_on_upload(tmp_path: Path, env: dict[str, str], database: Database) -> None:
    soon = devpki.ca("Soon Root CA", not_after=dt.datetime.now(dt.UTC) + 30 * DAY)
    pem = tmp_path / "soon.pem"
    pem.write_bytes(soon.cert_pem())
    assert certbound("ca", "add", str(pem), env=env).returncode == 0
    assert certbound("ca", "list", env=env).returncode == 0  # already warned today
    [warning] = events_of(database, "pki.ca.expiration.warn")
    [add] = events_of(database, "security.trust.ca.add")
    assert warning["transaction"]["id"] == add["uuid"]
    assert warning["debugContext"]["debugData"]["trigger"] == "upload"


def test_log_finds_the_events(demo: Path, env: dict[str, str]) -> None:
    certbound("verify", str(demo / "devices" / "foreign.pem"), env=env)
    query = 'eventType eq "device.trust.verify" and outcome.reason eq "UNKNOWN_CA"'
    done = certbound("log", "--filter", query, "--json", env=env)
    assert done.returncode == 0, done.stderr
    found = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert len(found) == 2  # quickstart's check and ours
    assert {e["deviceTrust"]["certificate"]["issuerDn"] for e in found} == {
        "CN=Foreign Issuing CA,O=Elsewhere Inc"
    }


def test_api_finds_the_events(
    demo: Path, env: dict[str, str], database: Database, database_url: str, tmp_path: Path
) -> None:
    certbound("verify", str(demo / "devices" / "expired.pem"), env=env)
    secret, _ = ApiTokens(database, SystemClock()).create("diagnose-test")
    settings = Settings(data_dir=tmp_path / "api", database_url=database_url)
    query = 'eventType eq "device.trust.verify" and outcome.reason eq "CERTIFICATE_EXPIRED"'
    with TestClient(create_app(settings, database=database)) as client:
        response = client.get(
            "/api/v1/logs",
            params={"filter": query},
            headers={"Authorization": f"Bearer {secret}"},
        )
    assert response.status_code == 200, response.text
    found = response.json()
    assert len(found) == 2  # quickstart's check and ours
    assert {e["deviceTrust"]["certificate"]["subjectDn"] for e in found} == {
        "CN=expired.devices.certbound.test,O=Certbound Dev"
    }
