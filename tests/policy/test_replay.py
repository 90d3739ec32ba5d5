"""Replay: logged event bodies (through JSON, as stored) re-evaluated against a draft; the
decisions that change, the counts, events skipped or invalid, and the logged time used."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import uuid
from typing import Any

import pytest
from cryptography import x509

from certbound.clock import format_rfc3339
from certbound.pki import devpki
from certbound.policy.engine import compile_policy
from certbound.policy.model import Action, Policy, Zone
from certbound.policy.replay import ReplayChange, replay
from certbound.policy.request import CertificateFacts, SignOnRequest

NOW = dt.datetime(2026, 6, 3, 10, 0, tzinfo=dt.UTC)
ZONES = {"nzn_office": Zone("nzn_office", "Office", ("192.0.2.0/24",))}


def _policy(rules: list[dict[str, Any]], revision: int = 1) -> Policy:
    catch = {"id": "rul_end", "name": "Catch-all", "action": "DENY", "catchAll": True}
    data = {"id": "pol_r", "name": "Replay", "revision": revision, "rules": [*rules, catch]}
    return Policy.from_dict(data)


BROAD = {"id": "rul_office", "name": "Office", "action": "ALLOW",
         "conditions": {"network": {"include": ["nzn_office"]}}}  # fmt: skip
MTLS = {"id": "rul_mtls", "name": "Managed devices", "action": "ALLOW",
        "conditions": {"deviceTrust": "VERIFIED"}}  # fmt: skip
CURRENT = _policy([BROAD, MTLS])


@pytest.fixture(scope="module")
def facts() -> CertificateFacts:
    root = devpki.ca("Replay Root CA")
    name = x509.Name.from_rfc4514_string("CN=laptop-1,O=Acme")
    leaf = devpki.issue(name, root, now=NOW)
    return CertificateFacts.of((leaf.cert, root.cert), frozenset({"ca_root"}))


def _request(facts: CertificateFacts | None, ip: str | None, minutes: int = 0) -> SignOnRequest:
    return SignOnRequest(
        app_id="app_portal",
        user_id="usr_alice",
        group_ids=frozenset(),
        ip=None if ip is None else ipaddress.ip_address(ip),
        at=NOW + dt.timedelta(minutes=minutes),
        device_verified=facts is not None,
        device_reason=None if facts is not None else "NO_CLIENT_CERTIFICATE",
        device_status="ACTIVE" if facts is not None else None,
        certificate=facts,
    )


def _events(policy: Policy, requests: list[SignOnRequest]) -> list[dict[str, Any]]:
    """Event bodies as stored: through JSON."""
    compiled = compile_policy(policy, ZONES)
    out = []
    for n, request in enumerate(requests):
        decision = compiled.evaluate(request)
        body = {
            "uuid": str(uuid.UUID(int=n + 1)),
            "published": format_rfc3339(request.at),
            "eventType": "policy.evaluate",
            "policyEvaluationDetail": decision.to_dict(),
        }
        out.append(json.loads(json.dumps(body)))
    return out


def test_replay_lists_the_decisions_that_change(facts: CertificateFacts) -> None:
    requests = [
        _request(None, "192.0.2.5", 1),  # office, no certificate: allowed by the broad rule
        _request(facts, "192.0.2.6", 2),  # office, managed device
        _request(facts, "198.51.100.1", 3),  # elsewhere, managed device
        _request(None, "198.51.100.2", 4),  # elsewhere, no certificate: denied
        _request(None, None, 5),  # no IP, no certificate: denied
    ]
    events = _events(CURRENT, requests)
    draft = _policy([MTLS], revision=2)  # the broad rule deleted

    report = replay(draft, ZONES, events)

    assert (report.evaluated, report.changed, report.skipped, report.invalid) == (5, 1, 0, 0)
    assert report.changes == [
        ReplayChange(
            event_uuid=str(uuid.UUID(int=1)),
            published=NOW + dt.timedelta(minutes=1),
            before=Action.ALLOW,
            after=Action.DENY,
            before_rule="rul_office",
            after_rule="rul_end",
        )
    ]
    assert report.elapsed >= 0
    assert report.to_dict()["changes"][0]["beforeRule"] == "rul_office"


def test_the_same_policy_changes_nothing(facts: CertificateFacts) -> None:
    events = _events(CURRENT, [_request(facts, "192.0.2.6"), _request(None, "192.0.2.9")])

    report = replay(CURRENT, ZONES, events)

    assert (report.evaluated, report.changed, report.changes) == (2, 0, [])


def test_a_new_rule_that_denies_changes_allowed_decisions(facts: CertificateFacts) -> None:
    deny_office = {"id": "rul_block", "name": "Block office", "action": "DENY",
                   "conditions": {"network": {"include": ["nzn_office"]}}}  # fmt: skip
    requests = [_request(facts, "192.0.2.6", i) for i in range(10)]
    requests += [_request(facts, "198.51.100.1", i) for i in range(5)]

    report = replay(_policy([deny_office, BROAD, MTLS]), ZONES, _events(CURRENT, requests))

    assert (report.evaluated, report.changed) == (15, 10)
    assert {(c.before_rule, c.after_rule, c.after) for c in report.changes} == {
        ("rul_office", "rul_block", Action.DENY)
    }


def test_events_without_a_request_are_skipped_and_broken_ones_counted(
    facts: CertificateFacts,
) -> None:
    good = _events(CURRENT, [_request(facts, "192.0.2.6")])[0]
    bad_ip = json.loads(json.dumps(good))
    bad_ip["policyEvaluationDetail"]["request"]["ip"] = "not an address"
    bad_decision = json.loads(json.dumps(good))
    bad_decision["policyEvaluationDetail"]["decision"] = "MAYBE"
    others: list[Any] = [
        {"uuid": "u1", "policyEvaluationDetail": None},
        {"uuid": "u2"},
        {"uuid": "u3", "policyEvaluationDetail": {"decision": "ALLOW"}},
        "not an event",
    ]

    report = replay(CURRENT, ZONES, [good, bad_ip, bad_decision, *others])

    assert (report.evaluated, report.changed, report.skipped, report.invalid) == (1, 0, 4, 2)


def test_requests_are_replayed_at_their_logged_time(facts: CertificateFacts) -> None:
    office_hours = {"id": "rul_hours", "name": "Office hours", "action": "ALLOW",
                    "conditions": {"timeWindow": {"start": "09:00", "end": "17:00",
                                                  "timezone": "UTC"}}}  # fmt: skip
    requests = [_request(facts, "198.51.100.1", m) for m in (-120, 0, 420, 600)]  # 8, 10, 17, 20

    report = replay(_policy([office_hours]), ZONES, _events(_policy([]), requests))

    published = sorted(c.published for c in report.changes if c.published is not None)
    assert published == [NOW]
    assert report.changes[0].after == Action.ALLOW


def test_replay_accepts_a_generator_and_missing_published(facts: CertificateFacts) -> None:
    events = _events(CURRENT, [_request(None, "192.0.2.5")])
    stripped = [{"policyEvaluationDetail": e["policyEvaluationDetail"]} for e in events]

    report = replay(_policy([MTLS]), ZONES, (e for e in stripped))

    assert report.changed == 1
    assert report.changes[0].published is None
    assert report.changes[0].event_uuid is None
