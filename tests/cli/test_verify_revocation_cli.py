"""``certbound verify`` with revocation, driven as a user would: the real command in a
subprocess against real CRLs served over HTTP, a real ``openssl ocsp`` responder and CRL
files, on SQLite and PostgreSQL. Every fault ends as configured, with an event."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509

from certbound.pki.certificate import serial_hex

Logged = Callable[[str], list[dict[str, Any]]]
RevocationPki = Any  # conftest.RevocationPki (a test module cannot import a conftest)


def add_ca(cmd: Any, pki: RevocationPki, *options: str) -> str:
    done = cmd("ca", "add", pki.path("chain.pem"), "--json", *options)
    assert done.returncode == 0, done.stderr
    ca_id: str = json.loads(done.stdout)["id"]
    return ca_id


def verify_json(cmd: Any, pki: RevocationPki, device: str, *options: str) -> dict[str, Any]:
    done = cmd("verify", "--json", *options, pki.path(f"{device}.pem"))
    assert done.returncode in (0, 1), done.stdout + done.stderr
    body: dict[str, Any] = json.loads(done.stdout)
    assert (done.returncode == 0) == (body["result"] == "OK")
    return body


def explain(cmd: Any, event_uuid: str) -> str:
    done = cmd("diagnose", event_uuid)
    assert done.returncode == 0, done.stderr
    text: str = done.stdout
    return text


# --- CRL and OCSP against the trust store ----------------------------------------------------


def test_crl_good_and_revoked(cmd: Any, pki: RevocationPki, logged: Logged) -> None:
    add_ca(cmd, pki)
    good = cmd("verify", pki.path("good.pem"))
    assert good.returncode == 0, good.stdout
    assert f"  revocation GOOD (crl, {pki.url('issuing.crl')}): not on the CRL" in good.stdout

    revoked = cmd("verify", pki.path("revoked.pem"))
    assert revoked.returncode == 1
    assert revoked.stdout.startswith(f"{pki.path('revoked.pem')}: FAILED REVOKED_CERTIFICATE: ")
    assert f"  revocation REVOKED (crl, {pki.url('issuing.crl')})" in revoked.stdout

    body = verify_json(cmd, pki, "revoked")
    revocation = body["revocation"]
    assert revocation["status"] == "REVOKED" and revocation["source"] == "crl"
    assert revocation["serialNumber"] == serial_hex(pki.devices["revoked"].cert)
    assert revocation["revocationReason"] == "keyCompromise"
    [event] = [e for e in logged("device.trust.verify") if e["uuid"] == body["event"]]
    assert event["outcome"] == {"result": "FAILURE", "reason": "REVOKED_CERTIFICATE"}
    assert event["deviceTrust"]["revocation"]["status"] == "REVOKED"

    text = explain(cmd, body["event"])
    assert "Layer: revocation" in text and "Reason: REVOKED_CERTIFICATE" in text
    assert "was revoked at " in text and "keyCompromise" in text
    assert f"Answered by the CRL {pki.url('issuing.crl')}, checked at " in text


def test_ocsp_good_and_revoked(cmd: Any, pki: RevocationPki) -> None:
    add_ca(cmd, pki, "--revocation-mode", "ocsp")
    good = verify_json(cmd, pki, "good")
    assert good["revocation"]["status"] == "GOOD"
    assert good["revocation"]["source"] == "ocsp"
    assert good["revocation"]["url"] == pki.ocsp_url
    revoked = verify_json(cmd, pki, "revoked")
    assert revoked["reason"] == "REVOKED_CERTIFICATE"
    assert revoked["revocation"]["source"] == "ocsp"
    assert revoked["revocation"]["revokedAt"] == "2024-01-01T00:00:00Z"
    assert pki.hits("issuing.crl") == 0  # OCSP only: no CRL fetched
    text = explain(cmd, revoked["event"])
    assert f"Answered by the OCSP responder {pki.ocsp_url}" in text
    assert "2024-01-01T00:00:00Z" in text


def test_a_crl_is_fetched_once_for_every_process(cmd: Any, pki: RevocationPki) -> None:
    """The second process reads what the first fetched from the shared table."""
    add_ca(cmd, pki)
    for device in ("good", "revoked", "good"):
        cmd("verify", pki.path(f"{device}.pem"))
    assert pki.hits("issuing.crl") == 1
    assert pki.hits("root.crl") == 1


# --- faults and fail modes ---------------------------------------------------------------


def test_unreachable_crl_fails_closed_by_default(
    cmd: Any, pki: RevocationPki, logged: Logged
) -> None:
    add_ca(cmd, pki)
    pki.withdraw("issuing.crl")  # 404
    body = verify_json(cmd, pki, "good")
    assert body["reason"] == "REVOCATION_UNAVAILABLE"
    assert body["revocation"]["url"] == pki.url("issuing.crl")
    [failure, *_] = logged("pki.crl.download_failure")
    assert failure["debugContext"]["debugData"]["url"] == pki.url("issuing.crl")
    text = explain(cmd, body["event"])
    assert "Reason: REVOCATION_UNAVAILABLE" in text
    assert f"Tried the CRL {pki.url('issuing.crl')}" in text
    assert "fail closed" in text


def test_soft_allows_and_logs_a_fail_open_allow(
    cmd: Any, pki: RevocationPki, logged: Logged
) -> None:
    add_ca(cmd, pki)
    pki.withdraw("issuing.crl")
    done = cmd("verify", "--revocation", "soft", pki.path("good.pem"))
    assert done.returncode == 0, done.stdout
    assert "  revocation UNAVAILABLE (crl, " in done.stdout
    assert ", allowed by fail-open: " in done.stdout
    [event] = logged("device.trust.verify")
    assert event["outcome"] == {"result": "SUCCESS", "reason": None}
    assert event["deviceTrust"]["revocation"]["failOpen"] is True
    assert event["debugContext"]["debugData"]["revocationFailOpen"] is True
    text = explain(cmd, event["uuid"])
    assert "Layer: revocation" in text
    assert "This is a fail-open allow" in text
    assert "--fail-closed" in text


def test_hard_overrides_a_fail_open_ca(cmd: Any, pki: RevocationPki) -> None:
    add_ca(cmd, pki, "--fail-open")
    pki.withdraw("issuing.crl")
    assert verify_json(cmd, pki, "good")["revocation"]["failOpen"] is True
    assert verify_json(cmd, pki, "good", "--revocation", "hard")["reason"] == (
        "REVOCATION_UNAVAILABLE"
    )


def test_a_slow_crl_server_is_given_up_on_in_time(cmd: Any, pki: RevocationPki) -> None:
    add_ca(cmd, pki, "--revocation-timeout", "0.5")
    pki.slow("issuing.crl", 8)
    started = time.monotonic()
    body = verify_json(cmd, pki, "good")
    assert time.monotonic() - started < 6  # the process start included; not the 8 s
    assert body["reason"] == "REVOCATION_UNAVAILABLE"


def test_a_stale_crl(cmd: Any, pki: RevocationPki, logged: Logged) -> None:
    ca_id = add_ca(cmd, pki)
    pki.serve_issuing_crl(dt.datetime.now(dt.UTC) - dt.timedelta(days=3), days=1)
    body = verify_json(cmd, pki, "good")
    assert body["reason"] == "REVOCATION_STALE"
    assert logged("pki.crl.stale")
    text = explain(cmd, body["event"])
    assert "Reason: REVOCATION_STALE" in text
    assert "past its nextUpdate" in text and "allowed staleness 3600 s" in text

    updated = cmd("ca", "update", ca_id, "--max-staleness", str(3 * 86400))
    assert updated.returncode == 0, updated.stderr
    assert verify_json(cmd, pki, "good")["result"] == "OK"


def test_a_device_naming_no_source_under_the_defaults(cmd: Any, pki: RevocationPki) -> None:
    add_ca(cmd, pki)
    body = verify_json(cmd, pki, "plain")
    assert body["reason"] == "REVOCATION_UNAVAILABLE"
    assert "nothing to ask" in body["detail"]
    assert verify_json(cmd, pki, "plain", "--revocation", "soft")["result"] == "OK"


def test_revocation_off(cmd: Any, pki: RevocationPki) -> None:
    add_ca(cmd, pki)
    done = cmd("verify", "--revocation", "off", pki.path("revoked.pem"))
    assert done.returncode == 0, done.stdout
    assert "  revocation not checked (off)" in done.stdout
    assert pki.hits("issuing.crl") == 0


# --- --ca FILE and --crl FILE --------------------------------------------------------------


def test_ca_file_checks_what_the_certificates_name(
    cmd: Any, pki: RevocationPki, logged: Logged
) -> None:
    done = cmd("verify", "--ca", pki.path("chain.pem"), pki.path("revoked.pem"))
    assert done.returncode == 1
    assert "FAILED REVOKED_CERTIFICATE" in done.stdout
    plain = cmd("verify", "--ca", pki.path("chain.pem"), pki.path("plain.pem"))
    assert plain.returncode == 0  # soft by default: nothing to ask is allowed
    assert "allowed by fail-open" in plain.stdout
    assert logged("device.trust.verify") == []  # a check against a file decides nothing


def test_crl_files_only_never_fetch(cmd: Any, pki: RevocationPki) -> None:
    files = ("--crl", pki.path("issuing.crl.pem"), "--crl", pki.path("root.crl"))
    trust = ("--ca", pki.path("root.pem"), "--untrusted", pki.path("issuing.pem"))
    good = cmd("verify", *trust, *files, "--revocation", "hard", pki.path("good.pem"))
    assert good.returncode == 0, good.stdout
    assert "  revocation GOOD (file): not on CRL file 1" in good.stdout
    revoked = cmd("verify", *trust, *files, pki.path("revoked.pem"))
    assert revoked.returncode == 1
    assert "FAILED REVOKED_CERTIFICATE: serial " in revoked.stdout
    assert pki.requests() == 0


def test_crl_file_of_the_root_revokes_an_intermediate(cmd: Any, pki: RevocationPki) -> None:
    trust = ("--ca", pki.path("root.pem"), "--untrusted", pki.path("pulled.pem"))
    done = cmd("verify", *trust, "--crl", pki.path("root.crl"), pki.path("orphan.pem"))
    assert done.returncode == 1
    assert "FAILED REVOKED_CERTIFICATE" in done.stdout
    assert "  problem with: CN=CLI Revocation Pulled" in done.stdout
    assert f"serial  {serial_hex(pki.pulled.cert)}" in done.stdout


def test_crl_files_with_the_store(cmd: Any, pki: RevocationPki) -> None:
    add_ca(cmd, pki, "--revocation-mode", "off")  # --crl checks CRLs whatever the mode
    body = verify_json(cmd, pki, "revoked", "--crl", pki.path("issuing.crl"))
    assert body["reason"] == "REVOKED_CERTIFICATE"
    assert body["revocation"]["source"] == "file"
    assert pki.requests() == 0


def test_no_crl_file_for_the_issuer(cmd: Any, pki: RevocationPki) -> None:
    args = ("--ca", pki.path("chain.pem"), "--crl", pki.path("root.crl"))
    soft = cmd("verify", *args, pki.path("good.pem"))
    assert soft.returncode == 0 and "allowed by fail-open" in soft.stdout
    hard = cmd("verify", *args, "--revocation", "hard", pki.path("good.pem"))
    assert hard.returncode == 1
    assert "FAILED REVOCATION_UNAVAILABLE: none of the CRL files" in hard.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--crl", "{dir}/good.pem"), "expected one X509 CRL PEM block"),
        (("--crl", "{dir}/issuing.crl", "--revocation", "off"), "contradict"),
        (("--revocation", "maybe"), "'maybe' is not one of"),
        (("--crl", "{dir}/absent.crl"), "does not exist"),
    ],
)
def test_usage_errors(
    cmd: Any, revocation_pki: RevocationPki, args: tuple[str, ...], message: str
) -> None:
    filled = [arg.format(dir=revocation_pki.directory) for arg in args]
    done = cmd(
        "verify", "--ca", revocation_pki.path("chain.pem"), *filled, revocation_pki.path("good.pem")
    )
    assert done.returncode == 2
    assert message in done.stderr


def test_the_crl_files_are_real_crls(revocation_pki: RevocationPki) -> None:
    """The fixtures the tests above rely on: the CRL files say what they should."""
    listed = x509.load_der_x509_crl((revocation_pki.directory / "issuing.crl").read_bytes())
    revoked = revocation_pki.devices["revoked"].cert.serial_number
    assert listed.get_revoked_certificate_by_serial_number(revoked) is not None
    assert (
        (revocation_pki.directory / "issuing.crl.pem")
        .read_bytes()
        .startswith(b"-----BEGIN X509 CRL")
    )
