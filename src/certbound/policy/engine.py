"""Policy evaluation: a policy compiled once per revision, then evaluated per request.

:func:`compile_policy` turns each rule's conditions into ``(name, predicate)`` pairs
(:mod:`certbound.policy.conditions`; equal conditions share one predicate). Evaluation goes
top to bottom: the first rule whose conditions all hold decides, each rule above it is
NOT_MATCHED with every condition that failed, each rule below it NOT_EVALUATED. Reason:
POLICY_DENIED when a DENY rule other than the catch-all matched, POLICY_NOT_MATCHED when the
catch-all matched and denies, none when allowed.

For speed, :meth:`CompiledPolicy.evaluate` tests each distinct predicate once, collecting
the failures as bits of one integer, and reuses the results of the predicates that read the
same certificate facts, user, groups, IP or minute as an earlier request (bounded memos).
Each rule's verdict follows from that integer and the bits of its own predicates, and the
verdict list of an integer already seen is reused.
:class:`PolicyCache` keeps compiled policies across requests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from certbound.errors import ReasonCode
from certbound.policy.conditions import READS, Compilation, Predicate, predicates
from certbound.policy.model import Action, Policy, Rule, Verdict, Zone, check_rules
from certbound.policy.request import CertificateFacts, SignOnRequest

_MEMO = 4096


@dataclass(frozen=True, slots=True)
class RuleVerdict:
    """One rule's verdict on one request; ``failed_conditions`` names every condition that
    failed (NOT_MATCHED only)."""

    id: str
    name: str
    priority: int
    verdict: Verdict
    failed_conditions: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "priority": self.priority,
            "verdict": self.verdict.value,
            "failedConditions": list(self.failed_conditions),
        }


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    """The decision on one request and why: ``to_dict`` is ``policyEvaluationDetail``."""

    decision: Action
    reason: ReasonCode | None
    policy_id: str
    policy_name: str
    matched_rule_id: str
    matched_rule_name: str
    rules: tuple[RuleVerdict, ...]
    request: SignOnRequest

    @property
    def allowed(self) -> bool:
        return self.decision is Action.ALLOW

    def to_dict(self) -> dict[str, Any]:
        return {
            "policyId": self.policy_id,
            "policyName": self.policy_name,
            "matchedRuleId": self.matched_rule_id,
            "matchedRuleName": self.matched_rule_name,
            "decision": self.decision.value,
            "reason": None if self.reason is None else self.reason.value,
            "rules": [verdict.to_dict() for verdict in self.rules],
            "request": self.request.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule with its conditions as ``(name, predicate)`` pairs, only those that are set
    (none: the rule matches every request)."""

    rule: Rule
    priority: int
    conditions: tuple[tuple[str, Predicate], ...]


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What a set of failing predicates decides: the matched rule and every verdict."""

    decision: Action
    reason: ReasonCode | None
    rule: Rule
    verdicts: tuple[RuleVerdict, ...]


def compile_policy(policy: Policy, zones: Mapping[str, Zone]) -> CompiledPolicy:
    """The policy ready to evaluate; unknown zone ids match no address. POLICY_INVALID
    when the rules do not end with the catch-all."""
    check_rules(policy.rules)
    compilation = Compilation({z.id: z for z in _zones_used(policy, zones)})
    rules = tuple(
        CompiledRule(rule, i + 1, predicates(rule.conditions, compilation))
        for i, rule in enumerate(policy.rules)
    )
    return CompiledPolicy(policy, rules)


class CompiledPolicy:
    """One policy revision, compiled: :meth:`evaluate` decides a request."""

    __slots__ = ("_checks", "_masks", "_outcomes", "_rule_bits", "policy", "rules")

    def __init__(self, policy: Policy, rules: tuple[CompiledRule, ...]) -> None:
        self.policy = policy
        self.rules = rules
        bits: dict[int, tuple[int, str, Predicate]] = {}
        for rule in rules:
            for name, predicate in rule.conditions:
                bits.setdefault(id(predicate), (1 << len(bits), name, predicate))
        self._checks = _Checks(tuple(bits.values()))
        self._rule_bits = tuple(tuple(bits[id(p)][0] for _, p in rule.conditions) for rule in rules)
        self._masks = tuple(sum(set(rule_bits)) for rule_bits in self._rule_bits)
        self._outcomes: dict[int, _Outcome] = {}

    @property
    def revision(self) -> int:
        return self.policy.revision

    def evaluate(self, request: SignOnRequest) -> PolicyDecision:
        """The first rule whose conditions all hold decides; every rule's verdict recorded."""
        failing = self._checks.failing(request)
        outcome = self._outcomes.get(failing)
        if outcome is None:
            outcome = self._outcome(failing)
        policy, rule = self.policy, outcome.rule
        return PolicyDecision(
            outcome.decision,
            outcome.reason,
            policy.id,
            policy.name,
            rule.id,
            rule.name,
            outcome.verdicts,
            request,
        )

    def _outcome(self, failing: int) -> _Outcome:
        verdicts: list[RuleVerdict] = []
        matched: CompiledRule | None = None
        for compiled, mask, rule_bits in zip(self.rules, self._masks, self._rule_bits, strict=True):
            rule = compiled.rule
            if matched is not None:
                verdicts.append(
                    RuleVerdict(rule.id, rule.name, compiled.priority, Verdict.NOT_EVALUATED)
                )
            elif failing & mask:
                names = tuple(
                    name
                    for (name, _), bit in zip(compiled.conditions, rule_bits, strict=True)
                    if failing & bit
                )
                verdicts.append(
                    RuleVerdict(rule.id, rule.name, compiled.priority, Verdict.NOT_MATCHED, names)
                )
            else:
                matched = compiled
                verdicts.append(RuleVerdict(rule.id, rule.name, compiled.priority, Verdict.MATCHED))
        # The catch-all has no conditions, so a valid policy always matches a rule.
        assert matched is not None, "a policy ends with its catch-all rule"
        outcome = _Outcome(
            matched.rule.action, _reason(matched.rule), matched.rule, tuple(verdicts)
        )
        _remember(self._outcomes, failing, outcome)
        return outcome


Check = tuple[int, Predicate]


def _failing(checks: tuple[Check, ...], request: SignOnRequest) -> int:
    """The bits of the predicates that do not hold."""
    failing = 0
    for bit, predicate in checks:
        if not predicate(request):
            failing |= bit
    return failing


def _remember(memo: dict[Any, Any], key: Any, value: Any) -> None:
    if len(memo) >= _MEMO:
        memo.clear()
    memo[key] = value


def _minute(request: SignOnRequest) -> int:
    return int(request.at.timestamp()) // 60


_Keyed = tuple[Callable[[SignOnRequest], Hashable], tuple[Check, ...], dict[Hashable, int]]
_KEYS: dict[str, Callable[[SignOnRequest], Hashable]] = {
    "user": attrgetter("user_id"),
    "groups": attrgetter("group_ids"),
    "ip": attrgetter("ip"),
    "minute": _minute,
}


class _Checks:
    """Every distinct predicate of a policy, each with its bit, grouped by what it reads
    (``conditions.READS``). :meth:`failing` tests them all, reusing earlier results for
    requests with the same user, groups, IP, request minute or certificate facts."""

    __slots__ = ("_certificate", "_certificate_bits", "_certificate_memo", "_direct", "_keyed")

    def __init__(self, checks: tuple[tuple[int, str, Predicate], ...]) -> None:
        by_reads: dict[str, list[Check]] = {}
        for bit, name, predicate in checks:
            by_reads.setdefault(READS[name], []).append((bit, predicate))
        self._keyed: tuple[_Keyed, ...] = tuple(
            (key, tuple(by_reads.pop(reads)), {})
            for reads, key in _KEYS.items()
            if reads in by_reads
        )
        self._certificate = tuple(by_reads.pop("certificate", ()))
        self._certificate_bits = sum(bit for bit, _ in self._certificate)
        # Facts by identity: facts are shared per certificate (CertificateFacts caches).
        self._certificate_memo: dict[int, tuple[CertificateFacts, int]] = {}
        self._direct = tuple(check for group in by_reads.values() for check in group)

    def failing(self, request: SignOnRequest) -> int:
        failing = _failing(self._direct, request) if self._direct else 0
        if self._certificate:
            failing |= self._failing_certificate(request)
        for key_of, checks, memo in self._keyed:
            key = key_of(request)
            bits = memo.get(key)
            if bits is None:
                bits = _failing(checks, request)
                _remember(memo, key, bits)
            failing |= bits
        return failing

    def _failing_certificate(self, request: SignOnRequest) -> int:
        facts = request.certificate
        if not request.device_verified or facts is None:
            return self._certificate_bits
        entry = self._certificate_memo.get(id(facts))
        if entry is None or entry[0] is not facts:
            entry = (facts, _failing(self._certificate, request))
            _remember(self._certificate_memo, id(facts), entry)
        return entry[1]


def _reason(rule: Rule) -> ReasonCode | None:
    if rule.action is Action.ALLOW:
        return None
    return ReasonCode.POLICY_NOT_MATCHED if rule.catch_all else ReasonCode.POLICY_DENIED


class PolicyCache:
    """Compiled policies by id: a policy is compiled again only when it, or a zone it
    names, changed (revision, rules or networks)."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._compiled: dict[str, tuple[tuple[Zone, ...], CompiledPolicy]] = {}

    def get(self, policy: Policy, zones: Mapping[str, Zone]) -> CompiledPolicy:
        used = _zones_used(policy, zones)
        with self._lock:
            entry = self._compiled.get(policy.id)
        if entry is not None:
            cached_zones, compiled = entry
            same = compiled.policy is policy or compiled.policy == policy
            if same and cached_zones == used:
                return compiled
        compiled = compile_policy(policy, zones)
        with self._lock:
            if len(self._compiled) >= self._size:
                self._compiled.clear()
            self._compiled[policy.id] = (used, compiled)
        return compiled


def _zones_used(policy: Policy, zones: Mapping[str, Zone]) -> tuple[Zone, ...]:
    ids = {
        zone_id
        for rule in policy.rules
        for zone_id in (*rule.conditions.network.include, *rule.conditions.network.exclude)
    }
    return tuple(zones[z] for z in sorted(ids) if z in zones)
