"""Sign-on policies against the real ``certbound serve`` (TLS listener, accept mode) with curl
as the device, on SQLite and PostgreSQL: the classic mistake, an ALLOW rule without
conditions placed above the mTLS rule, is flagged by the change's warning and by
``certbound doctor``; with it a device whose certificate validates but that the mTLS rule
does not admit gets a token, and once the policy is fixed (from the CLI, while the server
runs) it is refused with 403 access_denied POLICY_NOT_MATCHED within the 2-second revision
poll, the refusal's one event carrying the decision that ``certbound diagnose`` explains.
The login page: the sign-on decision is a ``policy.evaluate_sign_on`` event, and a DENY
shows its reason code and issues no code."""

from __future__ import annotations

import html
import html.parser
import json
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

Live = Any  # conftest.Certbound
PASSWORD = "correct horse battery staple"
REDIRECT = "http://127.0.0.1:9/cb"
POLICY = "Device policy"
# The mTLS rule: a verified device whose certificate carries an email SAN of the org.
MTLS = '{"certificate": {"sans": [{"type": "email", "pattern": "*@certbound.test"}]}}'


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def live(serve_tls: Callable[[str], Live]) -> Live:
    server = serve_tls("accept")
    created = server.cli(
        "app", "create", "Web app", "--client-id", "web-app", "--auth-method",
        "client_secret_basic", "--grant-type", "client_credentials", "--grant-type",
        "authorization_code", "--redirect-uri", REDIRECT, "--scope", "read", "--json",
    )  # fmt: skip
    server.secret = json.loads(ok(created))["clientSecret"]
    ok(server.cli("policy", "create", POLICY))
    ok(server.cli("policy", "assign", POLICY, "web-app"))
    ok(server.cli("policy", "rule", "add", POLICY, "--name", "Managed devices", "--action",
                  "ALLOW", "--device-trust", "VERIFIED", "--conditions", MTLS))  # fmt: skip
    return server


def token(live: Live, device: str | None) -> tuple[int, dict[str, Any]]:
    done = live.curl(
        device, "-u", f"web-app:{live.secret}", "-d", "grant_type=client_credentials",
        "-w", "\n%{http_code}", path="/oauth2/v1/token",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(body)


def logged(live: Live, event_type: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while True:
        done = live.cli("log", "--json", "--filter", f'eventType eq "{event_type}"')
        found = [json.loads(line) for line in ok(done).splitlines() if line.strip()]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"only {len(found)} {event_type} events"
        time.sleep(0.3)


def test_the_classic_mistake_is_flagged_then_fixed(live: Live) -> None:
    assert token(live, "good")[0] == 200
    refused, body = token(live, "cn-only")  # validates, but has no email SAN
    assert (refused, body["error"], body["reason"]) == (403, "access_denied", "POLICY_NOT_MATCHED")
    assert "0 error(s)" in ok(live.cli("doctor"))

    mistake = live.cli("policy", "rule", "add", POLICY, "--name", "Everyone", "--action",
                       "ALLOW", "--priority", "1")  # fmt: skip
    ok(mistake)
    assert "warning SHADOWED" in mistake.stderr and "'Managed devices'" in mistake.stderr
    doctor = live.cli("doctor")
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    assert "ERROR SHADOWED" in doctor.stdout and "rule 'Everyone'" in doctor.stdout
    assert _eventually(live, "cn-only", 200) == 200  # the running server saw the change
    allowed = matching(live, lambda e: e["outcome"]["result"] == "SUCCESS" and _cn_only(e))
    assert allowed["policyEvaluationDetail"]["matchedRuleName"] == "Everyone"

    ok(live.cli("policy", "rule", "delete", POLICY, "Everyone"))  # the fix doctor asks for
    assert "0 error(s)" in ok(live.cli("doctor"))
    assert _eventually(live, "cn-only", 403) == 403
    assert token(live, "good")[0] == 200
    denied = matching(live, lambda e: e["outcome"]["reason"] == "POLICY_NOT_MATCHED")
    detail = denied["policyEvaluationDetail"]
    assert detail["policyName"] == POLICY and detail["matchedRuleName"] == "Catch-all"
    assert detail["rules"][0]["failedConditions"] == ["certificate.san"]
    assert denied["deviceTrust"]["verified"] is True  # one event: the device verdict too
    explained = ok(live.cli("diagnose", denied["uuid"]))
    assert "Layer: policy" in explained and f"'{POLICY}'" in explained
    assert "'Managed devices'" in explained and "certificate.san" in explained


def test_a_broad_rule_above_the_unmanaged_device_block_is_fixed_by_moving_it(live: Live) -> None:
    """The seed's rule-order failure: a broad ALLOW placed above the rule that blocks devices
    without a verified certificate lets them in; moving the block back to the top (rule
    order, first match wins) refuses them again, POLICY_DENIED."""
    block = ("--name", "Block unmanaged devices", "--action", "DENY",
             "--device-trust", "NOT_VERIFIED", "--priority", "1")  # fmt: skip
    ok(live.cli("policy", "rule", "add", POLICY, *block))
    assert _eventually(live, None, 403) == 403
    assert token(live, None)[1]["reason"] == "POLICY_DENIED"
    assert token(live, "good")[0] == 200

    broad = live.cli("policy", "rule", "add", POLICY, "--name", "Engineering", "--action",
                     "ALLOW", "--priority", "1")  # fmt: skip
    ok(broad)
    assert "SHADOWED" in broad.stderr and "'Block unmanaged devices'" in broad.stderr
    doctor = live.cli("doctor")
    assert doctor.returncode == 1 and "ERROR SHADOWED" in doctor.stdout, doctor.stdout
    assert _eventually(live, None, 200) == 200  # no certificate, and a token all the same

    ok(live.cli("policy", "rule", "move", POLICY, "Block unmanaged devices", "1"))
    # The block is no longer shadowed (Engineering still shadows the mTLS rule: an error).
    fixed = live.cli("doctor")
    assert "rule 'Block unmanaged devices' (" not in fixed.stdout, fixed.stdout
    assert _eventually(live, None, 403) == 403
    denied = matching(live, lambda e: e["outcome"]["reason"] == "POLICY_DENIED")
    detail = denied["policyEvaluationDetail"]
    assert detail["matchedRuleName"] == "Block unmanaged devices"
    assert [rule["verdict"] for rule in detail["rules"]][:2] == ["MATCHED", "NOT_EVALUATED"]
    assert token(live, "good")[0] == 200


def _cn_only(event: dict[str, Any]) -> bool:
    certificate = (event["deviceTrust"] or {}).get("certificate") or {}
    return "cn-only" in str(certificate.get("subjectDn"))


def matching(live: Live, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The newest token event ``wanted`` accepts, once written (the recorder is async)."""
    deadline = time.monotonic() + 15
    while not (found := [e for e in logged(live, "app.oauth2.token.grant", 0) if wanted(e)]):
        assert time.monotonic() < deadline, "no such token event"
        time.sleep(0.3)
    return found[-1]


def _eventually(live: Live, device: str | None, wanted: int) -> int:
    """The token status for ``device`` once it is ``wanted`` (within the 2 s poll)."""
    deadline = time.monotonic() + 10
    while (status := token(live, device)[0]) != wanted:
        assert time.monotonic() < deadline, f"still {status} for {device}"
        time.sleep(0.3)
    return status


class _Hidden(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "input" and values.get("type") == "hidden" and values.get("name"):
            self.fields[str(values["name"])] = values.get("value") or ""


def sign_in(live: Live, device: str) -> httpx.Response:
    context = ssl.create_default_context(cafile=str(live.pki / "server-ca.pem"))
    cert, key = live.device_files(device)
    context.load_cert_chain(str(cert), str(key))
    params = {
        "response_type": "code", "client_id": "web-app", "redirect_uri": REDIRECT,
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256", "state": "s1",
    }  # fmt: skip
    with httpx.Client(base_url=live.url, verify=context, timeout=20) as client:
        page = client.get("/oauth2/v1/authorize", params=params)
        assert page.status_code == 200, page.text
        parser = _Hidden()
        parser.feed(page.text)
        form = {**parser.fields, "username": "alice", "password": PASSWORD}
        return client.post("/oauth2/v1/authorize", data=form)


def test_the_login_page_asks_the_policy(live: Live) -> None:
    created = subprocess.run(
        [sys.executable, "-m", "certbound", "user", "create", "alice", "--password-stdin"],
        input=PASSWORD + "\n", env=live.env, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    ok(created)
    allowed = sign_in(live, "good")
    assert allowed.status_code == 302, allowed.text
    denied = sign_in(live, "cn-only")
    assert denied.status_code == 403
    assert "POLICY_NOT_MATCHED" in html.unescape(denied.text)
    assert "code=" not in denied.headers.get("location", "")
    decisions = logged(live, "policy.evaluate_sign_on", 2)
    assert [e["outcome"]["result"] for e in decisions] == ["ALLOW", "DENY"]
    assert decisions[1]["outcome"]["reason"] == "POLICY_NOT_MATCHED"
    assert decisions[1]["actor"]["alternateId"] == "alice"
    verified = logged(live, "user.authentication.verify", 2)
    assert [e["policyEvaluationDetail"]["decision"] for e in verified] == ["ALLOW", "DENY"]
