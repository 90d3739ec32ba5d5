"""Sign-on policy evaluation and replay: a 100-rule policy, evaluated and replayed.

Run from the repository root:

    .venv/bin/python bench/policy_bench.py            # print the table
    .venv/bin/python bench/policy_bench.py --check    # exit 1 when a target is missed

The policy has 99 rules above the catch-all, built from eight realistic templates (department
access by group + CA + zone, contractors by SAN e-mail and office hours, expiring-certificate
and suspended-device DENY rules, kiosks by CN + EKU + certificate policy, lab machines by
subject DN, untrusted devices outside the corporate zones, named admins), naming about 40 groups,
12 zones (IPv4 and IPv6), 4 CAs and 3 time windows. The requests (verified devices with
real P-256 certificates from ``certbound.pki.devpki``, 256 users, addresses in the target
zone) match rule 98, so every rule above it is evaluated and its failing conditions
recorded. Rows:

(1) ``CompiledPolicy.evaluate``: 20,000 calls after 2,000 warm-up calls, cycling through 256
    requests; wall time per call (``time.perf_counter_ns``) median and p99, and CPU time
    per call (``time.process_time`` over the batch). Target: median <= 20 us.
(1b) the same with requests that each bring a user, an IP and a minute not seen before, so
    the engine's per-value memos miss (devices repeat). Target: median <= 20 us.
(2) ``replay``: 100,000 logged event bodies (``uuid``, ``published``, ``outcome``,
    ``policyEvaluationDetail`` as the engine writes it) from 5,000 distinct requests of
    mixed kinds, replayed against a draft that turns rule 98 into DENY; wall and CPU time
    of the whole call (compile, parse every request, evaluate). Target: <= 10 s. The number
    of changes is checked against the events rule 98 decided.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import ipaddress
import platform
import random
import statistics
import sys
import time
import uuid
from typing import Any

from cryptography import x509

from certbound.clock import format_rfc3339
from certbound.pki import devpki
from certbound.policy.engine import CompiledPolicy, compile_policy
from certbound.policy.model import Action, Policy, Zone
from certbound.policy.replay import replay
from certbound.policy.request import CertificateFacts, SignOnRequest

EVALUATE_TARGET_US = 20.0
REPLAY_TARGET_S = 10.0
WARM_UP = 2_000
EVALUATIONS = 20_000
REPLAY_EVENTS = 100_000
DISTINCT_REQUESTS = 5_000
TARGET_PRIORITY = 98
NOW = dt.datetime(2026, 6, 1, 9, 30, tzinfo=dt.UTC)
WINDOWS = (
    {"days": ["MON", "TUE", "WED", "THU", "FRI"], "start": "08:00", "end": "18:00",
     "timezone": "Europe/Berlin"},
    {"days": ["SAT", "SUN"], "start": "10:00", "end": "16:00", "timezone": "America/New_York"},
    {"days": ["MON", "TUE", "WED", "THU", "FRI"], "start": "22:00", "end": "06:00",
     "timezone": "Asia/Tokyo"},
)  # fmt: skip
CLIENT_AUTH, KIOSK_POLICY = "1.3.6.1.5.5.7.3.2", "1.3.6.1.4.1.55555.1.2"


def zones() -> dict[str, Zone]:
    out = {}
    for i in range(11):
        cidrs = (f"10.{i}.0.0/16", f"172.{16 + i}.0.0/20", f"2001:db8:{i:x}::/48")
        out[f"nzn_{i}"] = Zone(f"nzn_{i}", f"Site {i}", cidrs)
    out["nzn_target"] = Zone("nzn_target", "HQ", ("192.0.2.0/24", "2001:db8:ffff::/48"))
    return out


def template(k: int, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """One of eight realistic rule shapes; none matches the target requests."""
    group, zone, ca = (
        f"grp_dept{rng.randrange(30)}",
        f"nzn_{rng.randrange(11)}",
        "ca_" + "abcd"[k % 4],
    )
    shapes: list[tuple[str, dict[str, Any]]] = [
        ("ALLOW", {"deviceTrust": "VERIFIED", "certificate": {"issuerCaIds": [ca]},
                   "groups": {"anyOf": [group]}, "network": {"include": [zone]}}),
        ("ALLOW", {"deviceTrust": "VERIFIED", "groups": {"anyOf": [f"grp_contract{k % 5}"]},
                   "certificate": {"sans": [{"type": "email", "pattern": f"*@partner{k}.test"}]},
                   "timeWindow": WINDOWS[k % 3]}),
        ("DENY", {"deviceTrust": "VERIFIED", "certificate": {"maxDaysUntilExpiry": 3},
                  "groups": {"anyOf": [group]}}),
        ("DENY", {"deviceStatus": ["SUSPENDED", "DEACTIVATED"]}),
        ("ALLOW", {"certificate": {"commonName": [f"kiosk-{k}-*"], "ekuOids": [CLIENT_AUTH],
                                   "policyOids": [KIOSK_POLICY]}, "network": {"include": [zone]}}),
        ("ALLOW", {"deviceTrust": "VERIFIED", "certificate": {"subjectDn": [f"*OU=Lab{k}*"]},
                   "groups": {"noneOf": ["grp_blocked"], "anyOf": [group]}}),
        ("DENY", {"deviceTrust": "NOT_VERIFIED", "network": {"exclude": ["nzn_target", zone]}}),
        ("ALLOW", {"users": {"include": [f"usr_admin{k}", f"usr_admin{k + 1}"]},
                   "network": {"include": ["nzn_target"]}, "timeWindow": WINDOWS[k % 3]}),
    ]  # fmt: skip
    return shapes[k % len(shapes)]


def policy() -> Policy:
    rng = random.Random(20260601)
    rules: list[dict[str, Any]] = []
    for k in range(1, 100):
        if k == TARGET_PRIORITY:
            action, conditions = "ALLOW", {
                "deviceTrust": "VERIFIED", "certificate": {"issuerCaIds": ["ca_a"]},
                "groups": {"anyOf": ["grp_staff"], "noneOf": ["grp_blocked"]},
                "network": {"include": ["nzn_target"]},
            }  # fmt: skip
        else:
            action, conditions = template(k, rng)
        rules.append({"id": f"rul_{k}", "name": f"Rule {k}", "action": action,
                      "conditions": conditions})  # fmt: skip
    rules.append({"id": "rul_catchall", "name": "Catch-all", "action": "DENY", "catchAll": True})
    return Policy.from_dict({"id": "pol_bench", "name": "Bench", "rules": rules})


def devices(count: int) -> list[CertificateFacts]:
    root = devpki.ca("Bench Root CA")
    issuing = devpki.ca("Bench Issuing CA", root)
    out = []
    for i in range(count):
        name = x509.Name.from_rfc4514_string(f"CN=laptop-{i},OU=Staff,O=Certbound Dev")
        sans = [x509.RFC822Name(f"user{i}@corp.test"), x509.DNSName(f"laptop-{i}.corp.test")]
        leaf = devpki.issue(name, issuing, profile=devpki.Profile(sans=sans), now=NOW)
        chain = (leaf.cert, issuing.cert, root.cert)
        out.append(CertificateFacts.of(chain, frozenset({"ca_a", "ca_root"})))
    return out


def target_request(i: int, facts: list[CertificateFacts]) -> SignOnRequest:
    ip = ipaddress.ip_address(f"192.0.2.{i % 250 + 1}") if i % 3 else None
    ip = ip or ipaddress.ip_address(f"2001:db8:ffff::{i:x}")
    return SignOnRequest(
        app_id="app_portal",
        user_id=f"usr_{i}",
        group_ids=frozenset({"grp_staff", f"grp_team{i % 17}"}),
        ip=ip,
        at=NOW + dt.timedelta(minutes=7 * i),
        device_verified=True,
        device_reason=None,
        device_status="ACTIVE",
        certificate=facts[i % len(facts)],
    )


def fresh_requests(facts: list[CertificateFacts]) -> list[SignOnRequest]:
    """Requests that each bring a user, an IP and a minute not seen before (the engine's
    per-value memos miss); devices repeat (certificate facts are cached per certificate)."""
    out = []
    for i in range(WARM_UP + EVALUATIONS):
        base = target_request(i, facts)
        ip = ipaddress.ip_address(f"2001:db8:ffff::1:{i:x}")
        at = NOW + dt.timedelta(minutes=i)
        out.append(dataclasses.replace(base, user_id=f"usr_fresh{i}", ip=ip, at=at))
    return out


def mixed_request(i: int, facts: list[CertificateFacts], rng: random.Random) -> SignOnRequest:
    """A logged request: mostly staff on verified devices, some unverified or elsewhere."""
    base = target_request(i, facts)
    kind = rng.random()
    if kind < 0.15:
        return dataclasses.replace(
            base, device_verified=False, device_reason="NO_CLIENT_CERTIFICATE", certificate=None
        )
    if kind < 0.25:
        return dataclasses.replace(base, ip=ipaddress.ip_address(f"10.{i % 11}.3.4"))
    if kind < 0.30:
        return dataclasses.replace(base, device_verified=False, device_status="SUSPENDED")
    return dataclasses.replace(base, at=base.at + dt.timedelta(days=rng.randrange(30)))


def time_evaluate(compiled: CompiledPolicy, requests: list[SignOnRequest]) -> dict[str, float]:
    size = len(requests)
    for i in range(WARM_UP):
        compiled.evaluate(requests[i % size])
    timings = [0] * EVALUATIONS
    clock = time.perf_counter_ns
    cpu_started = time.process_time()
    for i in range(EVALUATIONS):
        request = requests[i % size]
        started = clock()
        compiled.evaluate(request)
        timings[i] = clock() - started
    cpu = (time.process_time() - cpu_started) / EVALUATIONS * 1e6
    timings.sort()
    return {
        "median": statistics.median(timings) / 1000,
        "p99": timings[int(len(timings) * 0.99)] / 1000,
        "cpu": cpu,
    }


def logged_events(compiled: CompiledPolicy, requests: list[SignOnRequest]) -> list[dict[str, Any]]:
    """Event bodies as the engine writes them; equal verdict lists share one JSON list."""
    rng = random.Random(7)
    verdict_lists: dict[int, list[dict[str, Any]]] = {}
    events = []
    for n in range(REPLAY_EVENTS):
        decision = compiled.evaluate(requests[rng.randrange(len(requests))])
        detail = decision.to_dict()
        detail["rules"] = verdict_lists.setdefault(id(decision.rules), detail["rules"])
        events.append({
            "uuid": str(uuid.UUID(int=n)),
            "published": format_rfc3339(decision.request.at),
            "outcome": {"result": decision.decision.value, "reason": detail["reason"]},
            "policyEvaluationDetail": detail,
        })  # fmt: skip
    return events


def draft_of(current: Policy) -> Policy:
    rules = tuple(
        dataclasses.replace(r, action=Action.DENY) if r.id == f"rul_{TARGET_PRIORITY}" else r
        for r in current.rules
    )
    return dataclasses.replace(current, rules=rules, revision=current.revision + 1)


def time_replay(
    current: Policy, compiled: CompiledPolicy, facts: list[CertificateFacts]
) -> dict[str, float]:
    rng = random.Random(11)
    requests = [mixed_request(i, facts, rng) for i in range(DISTINCT_REQUESTS)]
    events = logged_events(compiled, requests)
    expected = sum(
        e["policyEvaluationDetail"]["matchedRuleId"] == f"rul_{TARGET_PRIORITY}" for e in events
    )
    cpu_started = time.process_time()
    report = replay(draft_of(current), zones(), events)
    cpu = time.process_time() - cpu_started
    assert report.evaluated == REPLAY_EVENTS and report.changed == expected, report.changed
    return {"wall": report.elapsed, "cpu": cpu, "changed": report.changed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    current = policy()
    compiled = compile_policy(current, zones())
    facts = devices(32)
    requests = [target_request(i, facts) for i in range(256)]
    assert all(compiled.evaluate(r).matched_rule_id == f"rul_{TARGET_PRIORITY}" for r in requests)
    evaluate = time_evaluate(compiled, requests)
    fresh = fresh_requests(facts)
    assert all(compiled.evaluate(r).allowed for r in fresh[:100])
    cold = time_evaluate(compile_policy(current, zones()), fresh)
    replayed = time_replay(current, compiled, facts)
    evaluate_ok = max(evaluate["median"], cold["median"]) <= EVALUATE_TARGET_US
    replay_ok = replayed["wall"] <= REPLAY_TARGET_S

    print(f"Python {platform.python_version()} ({platform.machine()})")
    distinct = len({id(p) for rule in compiled.rules for _, p in rule.conditions})
    print(
        f"policy: {len(current.rules)} rules, {distinct} distinct conditions; "
        f"requests match rule {TARGET_PRIORITY}"
    )
    print()
    print(f"{'operation':38} {'median':>10} {'p99':>10} {'CPU':>10}  target")
    print(
        f"{'(1) evaluate, 100 rules (us/call)':38} {evaluate['median']:10.1f} "
        f"{evaluate['p99']:10.1f} {evaluate['cpu']:10.1f}  median <= {EVALUATE_TARGET_US:.0f} us "
        f"{'ok' if evaluate_ok else 'MISSED'}"
    )
    print(
        f"{'(1b) evaluate, new user/IP/minute':38} {cold['median']:10.1f} "
        f"{cold['p99']:10.1f} {cold['cpu']:10.1f}  median <= {EVALUATE_TARGET_US:.0f} us "
        f"{'ok' if cold['median'] <= EVALUATE_TARGET_US else 'MISSED'}"
    )
    print(
        f"{'(2) replay 100,000 events (s)':38} {replayed['wall']:10.2f} {'':>10} "
        f"{replayed['cpu']:10.2f}  <= {REPLAY_TARGET_S:.0f} s {'ok' if replay_ok else 'MISSED'} "
        f"({replayed['changed']:,} decisions changed)"
    )
    if args.check and not (evaluate_ok and replay_ok):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
