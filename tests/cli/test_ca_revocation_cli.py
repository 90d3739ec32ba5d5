"""A CA's revocation settings from the command line: ``ca add`` options, ``ca update``,
``ca show``, the ``security.trust.ca.update`` event, and the options' documentation; the
real command in a subprocess, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from certbound.pki import devpki
from certbound.pki.revocation_policy import DEFAULT_POLICY

DAY = dt.timedelta(days=1)
DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"
Logged = Callable[[str], list[dict[str, Any]]]
DEFAULTS = DEFAULT_POLICY.to_dict()
STRICT = (
    "--revocation-mode",
    "ocsp-then-crl",
    "--fail-open",
    "--crl-url",
    "https://crl.example.test/issuing.crl",
    "--ocsp-url",
    "http://ocsp.example.test/",
    "--max-staleness",
    "600",
    "--revocation-timeout",
    "0.5",
)
STRICT_SETTINGS = {
    "mode": "ocsp-then-crl",
    "failMode": "open",
    "crlUrl": "https://crl.example.test/issuing.crl",
    "ocspUrl": "http://ocsp.example.test/",
    "maxStalenessSeconds": 600,
    "timeoutSeconds": 0.5,
}


@pytest.fixture(scope="module")
def chain_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = devpki.ca("Revocation CLI Root", not_after=dt.datetime.now(dt.UTC) + 3650 * DAY)
    path = tmp_path_factory.mktemp("chain") / "chain.pem"
    path.write_bytes(devpki.pem_bundle([devpki.ca("Revocation CLI Issuing", root), root]))
    return str(path)


def ok_json(done: Any) -> dict[str, Any]:
    assert done.returncode == 0, done.stdout + done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def settings(cmd: Any, ca_id: str) -> dict[str, Any]:
    revocation: dict[str, Any] = ok_json(cmd("ca", "show", ca_id, "--json"))["revocation"]
    return revocation


def test_add_without_options_uses_the_defaults(cmd: Any, chain_file: str) -> None:
    added = ok_json(cmd("ca", "add", chain_file, "--json"))
    assert added["revocation"] == DEFAULTS
    assert settings(cmd, added["id"]) == DEFAULTS
    assert DEFAULTS["mode"] == "crl" and DEFAULTS["failMode"] == "closed"
    shown = cmd("ca", "show", added["id"])
    assert "revocation    crl, fail closed" in shown.stdout
    assert "each certificate's CRL distribution points" in shown.stdout
    assert "3600 s past nextUpdate" in shown.stdout


def test_add_with_every_option(cmd: Any, chain_file: str, logged: Logged) -> None:
    added = ok_json(cmd("ca", "add", chain_file, *STRICT, "--json"))
    assert added["revocation"] == STRICT_SETTINGS
    assert settings(cmd, added["id"]) == STRICT_SETTINGS
    shown = cmd("ca", "show", added["id"]).stdout
    assert "revocation    ocsp-then-crl, fail open" in shown
    assert "https://crl.example.test/issuing.crl" in shown
    assert "http://ocsp.example.test/" in shown
    assert "600 s past nextUpdate" in shown and "0.5 s" in shown
    [event] = logged("security.trust.ca.add")
    assert event["debugContext"]["debugData"]["revocation"] == STRICT_SETTINGS


def test_add_prints_the_settings(cmd: Any, chain_file: str) -> None:
    done = cmd("ca", "add", chain_file, "--revocation-mode", "off")
    assert done.returncode == 0, done.stderr
    assert "revocation    off, fail closed" in done.stdout


def test_a_file_crl_url(cmd: Any, chain_file: str, tmp_path: Path) -> None:
    url = (tmp_path / "issuing.crl").as_uri()
    added = ok_json(cmd("ca", "add", chain_file, "--crl-url", url, "--json"))
    assert settings(cmd, added["id"])["crlUrl"] == url


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (("--revocation-mode", "sometimes"), "'sometimes' is not one of"),
        (("--crl-url", "ftp://crl.example.test/x.crl"), "must be an absolute URL"),
        (("--crl-url", "crl.example.test/x.crl"), "must be an absolute URL"),
        (("--ocsp-url", "file:///tmp/ocsp"), "must be an absolute URL (http, https)"),
        (("--max-staleness", "-1"), "--max-staleness"),
        (("--max-staleness", "an hour"), "--max-staleness"),
        (("--revocation-timeout", "0"), "--revocation-timeout"),
        (("--revocation-timeout", "31"), "--revocation-timeout"),
    ],
)
def test_invalid_options_store_nothing(
    cmd: Any, chain_file: str, logged: Logged, option: tuple[str, str], message: str
) -> None:
    done = cmd("ca", "add", chain_file, *option)
    assert done.returncode == 2
    assert message in done.stderr
    assert ok_json(cmd("ca", "list", "--json"))["cas"] == []
    assert logged("security.trust.ca.add") == []


def test_update_changes_only_what_is_given(cmd: Any, chain_file: str, logged: Logged) -> None:
    ca_id = ok_json(cmd("ca", "add", chain_file, "--json"))["id"]
    generation = ok_json(cmd("ca", "list", "--json"))["generation"]
    updated = ok_json(
        cmd("ca", "update", ca_id, "--ocsp-url", "http://ocsp.example.test/", "--json")
    )
    assert updated["changed"] == ["ocspUrl"]
    assert updated["previous"] == DEFAULTS
    assert updated["revocation"] == {**DEFAULTS, "ocspUrl": "http://ocsp.example.test/"}
    assert settings(cmd, ca_id) == updated["revocation"]
    assert ok_json(cmd("ca", "list", "--json"))["generation"] == generation + 1

    [event] = logged("security.trust.ca.update")
    assert event["outcome"] == {"result": "SUCCESS", "reason": None}
    assert event["severity"] == "INFO"
    assert event["target"][0]["id"] == ca_id
    debug = event["debugContext"]["debugData"]
    assert debug == {
        "before": DEFAULTS,
        "after": updated["revocation"],
        "changed": ["ocspUrl"],
    }


def test_update_every_option_then_clear_the_urls(cmd: Any, chain_file: str) -> None:
    ca_id = ok_json(cmd("ca", "add", chain_file, "--json"))["id"]
    assert ok_json(cmd("ca", "update", ca_id, *STRICT, "--json"))["revocation"] == STRICT_SETTINGS
    cleared = ok_json(cmd("ca", "update", ca_id, "--crl-url", "", "--ocsp-url", "", "--json"))
    assert cleared["changed"] == ["crlUrl", "ocspUrl"]
    assert settings(cmd, ca_id) == {**STRICT_SETTINGS, "crlUrl": None, "ocspUrl": None}


def test_update_human_output(cmd: Any, chain_file: str) -> None:
    ca_id = ok_json(cmd("ca", "add", chain_file, "--json"))["id"]
    done = cmd("ca", "update", ca_id, "--revocation-mode", "ocsp", "--fail-closed")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"updated {ca_id}  Revocation CLI Root: mode\n")
    assert "revocation    ocsp, fail closed" in done.stdout


@pytest.mark.parametrize("weakening", [("--fail-open",), ("--revocation-mode", "off")])
def test_weakening_the_check_is_a_warning(
    cmd: Any, chain_file: str, logged: Logged, weakening: tuple[str, ...]
) -> None:
    ca_id = ok_json(cmd("ca", "add", chain_file, "--json"))["id"]
    ok_json(cmd("ca", "update", ca_id, *weakening, "--json"))
    [event] = logged("security.trust.ca.update")
    assert event["severity"] == "WARN"


def test_update_without_options_is_a_usage_error(cmd: Any, chain_file: str, logged: Logged) -> None:
    ca_id = ok_json(cmd("ca", "add", chain_file, "--json"))["id"]
    done = cmd("ca", "update", ca_id)
    assert done.returncode == 2
    assert "nothing to change" in done.stderr
    assert logged("security.trust.ca.update") == []


def test_invalid_update_changes_nothing(cmd: Any, chain_file: str, logged: Logged) -> None:
    ca_id = ok_json(cmd("ca", "add", chain_file, "--json"))["id"]
    done = cmd("ca", "update", ca_id, "--fail-open", "--ocsp-url", "ldap://x")
    assert done.returncode == 2
    assert settings(cmd, ca_id) == DEFAULTS
    assert logged("security.trust.ca.update") == []


def test_update_unknown_ca(cmd: Any, logged: Logged) -> None:
    done = cmd("ca", "update", "ca_nope", "--fail-open")
    assert done.returncode == 2
    assert done.stderr.startswith("error CA_NOT_FOUND: ")
    as_json = cmd("ca", "update", "ca_nope", "--max-staleness", "60", "--json")
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout)["error"]["reason"] == "CA_NOT_FOUND"
    first, second = logged("security.trust.ca.update")
    assert first["outcome"] == {"result": "FAILURE", "reason": "CA_NOT_FOUND"}
    assert first["debugContext"]["debugData"]["requested"] == {"failMode": "open"}
    assert second["debugContext"]["debugData"]["requested"] == {"maxStalenessSeconds": 60}


def test_removing_a_ca_with_settings(cmd: Any, chain_file: str) -> None:
    ca_id = ok_json(cmd("ca", "add", chain_file, *STRICT, "--json"))["id"]
    ok_json(cmd("ca", "remove", ca_id, "--json"))
    again = ok_json(cmd("ca", "add", chain_file, "--json"))  # no settings left behind
    assert settings(cmd, again["id"]) == DEFAULTS


def revocation_rows() -> dict[str, list[str]]:
    """The option table of docs/config.md's "Revocation" section: option cell -> cells."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("\n## Revocation\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| `--"):
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows[cells[0]] = cells
    return rows


def test_config_doc_lists_every_option_with_its_default(cmd: Any) -> None:
    help_text = cmd("ca", "add", "--help").stdout
    options = set(re.findall(r"--(?:revocation|fail|crl|ocsp|max)[a-z-]*", help_text))
    assert options == {
        "--revocation-mode",
        "--fail-open",
        "--fail-closed",
        "--crl-url",
        "--ocsp-url",
        "--max-staleness",
        "--revocation-timeout",
    }
    rows = revocation_rows()
    assert set(re.findall(r"--[a-z-]+", " ".join(rows))) == options
    defaults = {
        "--revocation-mode": f"`{DEFAULT_POLICY.mode.value}`",
        "--fail-open": "fail closed",
        "--crl-url": "none",
        "--ocsp-url": "none",
        "--max-staleness": f"`{int(DEFAULT_POLICY.max_staleness.total_seconds())}`",
        "--revocation-timeout": f"`{DEFAULT_POLICY.timeout:g}`",
    }
    for option, default in defaults.items():
        [cells] = [cells for key, cells in rows.items() if option in key]
        assert len(cells) == 4, cells
        assert cells[2].startswith(default), cells


# --- ca health, against a real CRL server and openssl ocsp responder -----------------------


def health(cmd: Any, *args: str) -> tuple[int, dict[str, Any]]:
    done = cmd("ca", "health", *args, "--json")
    assert done.returncode in (0, 1), done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, data


def test_health_shows_the_crls_devices_named(cmd: Any, pki: Any) -> None:
    ca_id = ok_json(cmd("ca", "add", pki.path("chain.pem"), "--json"))["id"]
    code, data = health(cmd)
    assert code == 0 and data["healthy"] is True
    [report] = data["cas"]
    assert report["id"] == ca_id and report["crl"] == []  # no device checked yet

    assert cmd("verify", pki.path("good.pem")).returncode == 0
    code, data = health(cmd, ca_id)
    [probe] = data["cas"][0]["crl"]
    assert code == 0
    assert probe["url"] == pki.url("issuing.crl")
    assert probe["reachable"] is True and probe["error"] is None
    assert probe["entryCount"] == 1 and probe["size"] > 0 and probe["latencyMs"] >= 0
    assert probe["thisUpdate"] and probe["nextUpdate"]
    assert probe["table"]["held"] is True  # shared with every instance
    assert data["cas"][0]["policy"] == DEFAULTS

    human = cmd("ca", "health", ca_id)
    assert human.returncode == 0
    assert f"  CRL   {pki.url('issuing.crl')}  reachable, " in human.stdout
    assert "entries 1, CRL number 1" in human.stdout
    assert "shared cache held: nextUpdate " in human.stdout


def test_health_of_an_unreachable_crl(cmd: Any, pki: Any, logged: Logged) -> None:
    url = pki.url("issuing.crl")
    ca_id = ok_json(cmd("ca", "add", pki.path("chain.pem"), "--crl-url", url, "--json"))["id"]
    pki.withdraw("issuing.crl")
    code, data = health(cmd, ca_id)
    assert code == 1 and data["healthy"] is False
    [probe] = data["cas"][0]["crl"]
    assert probe["url"] == url and probe["reachable"] is False and probe["error"]
    [failure] = logged("pki.crl.download_failure")
    assert failure["debugContext"]["debugData"]["trigger"] == "health"
    human = cmd("ca", "health")
    assert human.returncode == 1
    assert f"  CRL   {url}  unreachable after " in human.stdout


def test_health_probes_the_ocsp_responder(cmd: Any, pki: Any, down_url: str) -> None:
    options = ("--revocation-mode", "ocsp", "--ocsp-url", pki.ocsp_url)
    ca_id = ok_json(cmd("ca", "add", pki.path("chain.pem"), *options, "--json"))["id"]
    code, data = health(cmd, ca_id)
    [probe] = data["cas"][0]["ocsp"]
    assert code == 0
    assert probe["url"] == pki.ocsp_url and probe["reachable"] is True
    assert probe["responseStatus"] == "SUCCESSFUL"

    ok_json(cmd("ca", "update", ca_id, "--ocsp-url", down_url, "--json"))
    code, data = health(cmd, ca_id)
    assert code == 1
    assert data["cas"][0]["ocsp"][0]["reachable"] is False
    # a source the mode does not use is shown but does not make the CA unhealthy
    ok_json(cmd("ca", "update", ca_id, "--revocation-mode", "crl", "--json"))
    code, _ = health(cmd, ca_id)
    assert code == 0
    assert "(not used in this mode)" in cmd("ca", "health", ca_id).stdout


def test_health_of_an_unknown_ca(cmd: Any) -> None:
    done = cmd("ca", "health", "ca_nope")
    assert done.returncode == 2
    assert done.stderr.startswith("error CA_NOT_FOUND: ")


def test_diagnose_explains_updates(cmd: Any, chain_file: str, logged: Logged) -> None:
    ca_id = ok_json(cmd("ca", "add", chain_file, "--json"))["id"]
    ok_json(cmd("ca", "update", ca_id, "--revocation-mode", "ocsp", "--json"))
    [event] = logged("security.trust.ca.update")
    done = cmd("diagnose", event["uuid"])
    assert done.returncode == 0, done.stderr
    assert "Layer: upload" in done.stdout
    assert "  mode: crl -> ocsp" in done.stdout

    cmd("ca", "update", "ca_gone", "--fail-open")
    last = cmd("diagnose", "--last")
    assert "Type: security.trust.ca.update (FAILURE)" in last.stdout
    assert "Reason: CA_NOT_FOUND" in last.stdout
    assert "No CA with id 'ca_gone' was in the trust store; nothing was changed." in last.stdout
    assert f"{ca_id} (Revocation CLI Root)" in last.stdout
