"""Policy analysis: the mistakes a policy can hold before it ships.

:func:`analyse` reports, per policy:

- ``SHADOWED``: a rule that never matches because an earlier rule matches every request it
  would (the earlier rule sets no condition, or each condition it sets is implied by the
  later rule's same condition). ERROR when the two decide differently, or when the later
  rule requires a verified device and the earlier one allows without (the classic
  catch-all-like ALLOW above the mTLS rule); WARNING when the later rule is only redundant.
- ``UNREACHABLE``: a rule whose own conditions contradict (deviceTrust NOT_VERIFIED with
  certificate conditions, a verified device required with only suspended or deactivated
  statuses, include lists inside their exclude lists, min days above max days). A partial
  overlap (some of anyOf also in noneOf) is a WARNING.
- ``DANGLING_REFERENCE``: a rule naming a group, user, CA or zone that no longer exists;
  ERROR when an include-type condition names nothing that exists (the rule cannot match).
- ``NO_DEVICE_TRUST_RULE``: a policy assigned to an app that requires device trust, where a
  request without a verified certificate can reach an ALLOW rule (the catch-all included).

Implication is checked conservatively (globs imply only equal globs), so a finding is never
a false alarm about coverage; some real overlaps are not reported. :func:`new_findings` is
what a change would add: the findings after it that were not there before, compared by
(kind, rule id, shadowing rule id).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from certbound.policy.model import Action, Conditions, DeviceTrustRequirement, Policy, Rule

Severity = Literal["ERROR", "WARNING"]
SHADOWED = "SHADOWED"
UNREACHABLE = "UNREACHABLE"
DANGLING_REFERENCE = "DANGLING_REFERENCE"
NO_DEVICE_TRUST_RULE = "NO_DEVICE_TRUST_RULE"
KINDS = (SHADOWED, UNREACHABLE, DANGLING_REFERENCE, NO_DEVICE_TRUST_RULE)


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    severity: Severity
    policy_id: str
    rule_id: str | None
    message: str
    shadowed_by: str | None
    fix: str

    @property
    def key(self) -> tuple[str, str | None, str | None]:
        """What identifies a finding across two versions of a policy."""
        return self.kind, self.rule_id, self.shadowed_by

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "policyId": self.policy_id,
            "ruleId": self.rule_id,
            "message": self.message,
            "shadowedBy": self.shadowed_by,
            "fix": self.fix,
        }


@dataclass(frozen=True, slots=True)
class KnownIds:
    """The ids that exist now: what rules may refer to."""

    group_ids: frozenset[str]
    user_ids: frozenset[str]
    ca_ids: frozenset[str]
    zone_ids: frozenset[str]


def analyse(
    policy: Policy, *, known: KnownIds, apps_requiring_device_trust: frozenset[str]
) -> list[Finding]:
    """Every finding of the policy, in rule order, kind by kind."""
    unreachable = _unreachable(policy)
    dead = {f.rule_id for f in unreachable if f.severity == "ERROR"}
    findings = [*_shadowed(policy, dead), *unreachable, *_dangling(policy, known)]
    findings += _no_device_trust(policy, dead, apps_requiring_device_trust)
    return findings


def new_findings(
    before: Policy | None,
    after: Policy,
    *,
    known: KnownIds,
    apps_requiring_device_trust: frozenset[str],
) -> list[Finding]:
    """The findings of ``after`` that ``before`` did not have (all of them when new)."""
    found = analyse(after, known=known, apps_requiring_device_trust=apps_requiring_device_trust)
    if before is None:
        return found
    old = analyse(before, known=known, apps_requiring_device_trust=apps_requiring_device_trust)
    seen = {f.key for f in old}
    return [f for f in found if f.key not in seen]


def _ref(policy: Policy, rule: Rule) -> str:
    return f"rule {rule.name!r} ({rule.id}, priority {policy.rules.index(rule) + 1})"


def requires_verified(conditions: Conditions) -> bool:
    """Whether every request the conditions match comes from a verified device."""
    return (
        conditions.device_trust is DeviceTrustRequirement.VERIFIED
        or not conditions.certificate.empty
    )


# --- SHADOWED --------------------------------------------------------------------------------


def _any_of(wide: Iterable[Any], narrow: Iterable[Any]) -> bool:
    """An "any of" condition ``wide`` holds for every request ``narrow`` admits."""
    wide, narrow = set(wide), set(narrow)
    return not wide or (bool(narrow) and narrow <= wide)


def _none_of(wide: Iterable[Any], narrow: Iterable[Any]) -> bool:
    """A "none of" condition ``wide`` holds for every request ``narrow`` admits."""
    return set(wide) <= set(narrow)


def _trust(a: Conditions, b: Conditions) -> bool:
    if a.device_trust is DeviceTrustRequirement.VERIFIED:
        return requires_verified(b)
    if a.device_trust is DeviceTrustRequirement.NOT_VERIFIED:
        return b.device_trust is DeviceTrustRequirement.NOT_VERIFIED
    return True


def _issuer(a: Conditions, b: Conditions) -> bool:
    ca, cb = a.certificate, b.certificate
    if not ca.issuer_ca_ids and not ca.issuer_spki_pins:
        return True
    if not cb.issuer_ca_ids and not cb.issuer_spki_pins:
        return False
    ids_ok = set(cb.issuer_ca_ids) <= set(ca.issuer_ca_ids)
    return ids_ok and set(cb.issuer_spki_pins) <= set(ca.issuer_spki_pins)


def _certificate(a: Conditions, b: Conditions) -> bool:
    ca, cb = a.certificate, b.certificate
    low_ok = ca.min_days_until_expiry is None or (
        cb.min_days_until_expiry is not None
        and cb.min_days_until_expiry >= ca.min_days_until_expiry
    )
    high_ok = ca.max_days_until_expiry is None or (
        cb.max_days_until_expiry is not None
        and cb.max_days_until_expiry <= ca.max_days_until_expiry
    )
    return (
        low_ok
        and high_ok
        and _issuer(a, b)
        and _any_of(ca.subject_dn, cb.subject_dn)
        and _any_of(ca.common_name, cb.common_name)
        and _any_of(ca.serial_numbers, cb.serial_numbers)
        and _any_of(ca.sans, cb.sans)
        and _any_of(ca.policy_oids, cb.policy_oids)
        and set(ca.eku_oids) <= set(cb.eku_oids)
    )


def _people_and_places(a: Conditions, b: Conditions) -> bool:
    users_excluded = _none_of(a.users.exclude, b.users.exclude) or (
        bool(b.users.include) and set(b.users.include).isdisjoint(a.users.exclude)
    )
    return (
        users_excluded
        and _any_of(a.device_status, b.device_status)
        and _any_of(a.users.include, b.users.include)
        and _any_of(a.groups.any_of, b.groups.any_of)
        and _none_of(a.groups.none_of, b.groups.none_of)
        and _any_of(a.network.include, b.network.include)
        and _none_of(a.network.exclude, b.network.exclude)
        and (a.time_window is None or a.time_window == b.time_window)
    )


def covers(a: Conditions, b: Conditions) -> bool:
    """Whether every request ``b`` matches also matches ``a`` (checked conservatively)."""
    if a.empty:
        return True
    return _trust(a, b) and _certificate(a, b) and _people_and_places(a, b)


def _shadowed(policy: Policy, dead: set[str | None]) -> Iterable[Finding]:
    rules = policy.rules
    for j, later in enumerate(rules):
        if later.id in dead:
            continue
        earlier = next(
            (a for a in rules[:j] if a.id not in dead and covers(a.conditions, later.conditions)),
            None,
        )
        if earlier is not None:
            yield _shadow_finding(policy, earlier, later)


def _shadow_finding(policy: Policy, earlier: Rule, later: Rule) -> Finding:
    bypass = (
        earlier.action is Action.ALLOW
        and requires_verified(later.conditions)
        and not requires_verified(earlier.conditions)
    )
    severity: Severity = "ERROR" if bypass or earlier.action != later.action else "WARNING"
    what = f"{_ref(policy, later)} never matches: {_ref(policy, earlier)} above it matches "
    what += "every request it would match"
    if bypass:
        what += ", and allows devices without a verified certificate"
    elif earlier.action == later.action:
        what += f" with the same action ({later.action.value})"
    if later.catch_all:
        fix = f"Give rule {earlier.name!r} conditions, or delete it: the catch-all never decides."
    elif bypass:
        fix = (
            f"Move rule {later.name!r} above rule {earlier.name!r}, and delete rule "
            f"{earlier.name!r} or give it deviceTrust VERIFIED."
        )
    else:
        fix = f"Move rule {later.name!r} above rule {earlier.name!r}, or delete it."
    return Finding(SHADOWED, severity, policy.id, later.id, what + ".", earlier.id, fix)


# --- UNREACHABLE -----------------------------------------------------------------------------


def _contradictions(c: Conditions) -> Iterable[tuple[Severity, str]]:
    if c.device_trust is DeviceTrustRequirement.NOT_VERIFIED and not c.certificate.empty:
        yield "ERROR", "deviceTrust NOT_VERIFIED with certificate conditions (they need one)"
    if requires_verified(c) and c.device_status and "ACTIVE" not in c.device_status:
        yield (
            "ERROR",
            "a verified device is ACTIVE, but deviceStatus allows only "
            + ", ".join(c.device_status),
        )
    low, high = c.certificate.min_days_until_expiry, c.certificate.max_days_until_expiry
    if low is not None and high is not None and low > high:
        yield "ERROR", f"minDaysUntilExpiry {low} is above maxDaysUntilExpiry {high}"
    for what, include, exclude in (
        ("groups anyOf / noneOf", c.groups.any_of, c.groups.none_of),
        ("users include / exclude", c.users.include, c.users.exclude),
        ("network include / exclude", c.network.include, c.network.exclude),
    ):
        both = sorted(set(include) & set(exclude))
        if both and set(include) <= set(exclude):
            yield "ERROR", f"every id of {what} is also excluded: {', '.join(both)}"
        elif both:
            yield "WARNING", f"{', '.join(both)} in both {what} can never satisfy the rule"


def _unreachable(policy: Policy) -> list[Finding]:
    findings = []
    for rule in policy.rules:
        for severity, problem in _contradictions(rule.conditions):
            message = f"{_ref(policy, rule)} can never match as written: {problem}."
            fix = f"Fix the conditions of rule {rule.name!r}, or delete it."
            findings.append(Finding(UNREACHABLE, severity, policy.id, rule.id, message, None, fix))
    return findings


# --- DANGLING_REFERENCE ----------------------------------------------------------------------


def _references(c: Conditions, known: KnownIds) -> Iterable[tuple[str, tuple[str, ...], bool]]:
    """(what, the ids that no longer exist, whether the condition can no longer hold)."""
    cert, groups, users, network = c.certificate, c.groups, c.users, c.network
    for what, ids, pool, include in (
        ("certificate.issuerCaIds", cert.issuer_ca_ids, known.ca_ids, not cert.issuer_spki_pins),
        ("users.include", users.include, known.user_ids, True),
        ("users.exclude", users.exclude, known.user_ids, False),
        ("groups.anyOf", groups.any_of, known.group_ids, True),
        ("groups.noneOf", groups.none_of, known.group_ids, False),
        ("network.include", network.include, known.zone_ids, True),
        ("network.exclude", network.exclude, known.zone_ids, False),
    ):
        missing = tuple(i for i in ids if i not in pool)
        if missing:
            yield what, missing, include and len(missing) == len(ids)


def _dangling(policy: Policy, known: KnownIds) -> list[Finding]:
    findings = []
    for rule in policy.rules:
        found = list(_references(rule.conditions, known))
        if not found:
            continue
        listed = "; ".join(f"{what}: {', '.join(ids)}" for what, ids, _ in found)
        fatal = any(dead for _, _, dead in found)
        message = f"{_ref(policy, rule)} refers to ids that no longer exist ({listed})"
        message += "; it can no longer match." if fatal else "."
        fix = f"Remove the missing ids from rule {rule.name!r}, or point it at existing ones."
        severity: Severity = "ERROR" if fatal else "WARNING"
        finding = Finding(DANGLING_REFERENCE, severity, policy.id, rule.id, message, None, fix)
        findings.append(finding)
    return findings


# --- NO_DEVICE_TRUST_RULE --------------------------------------------------------------------


def _stops_unverified(c: Conditions) -> bool:
    """Whether the conditions match every request without a verified device."""
    return c.device_trust is not DeviceTrustRequirement.VERIFIED and c == Conditions(
        device_trust=c.device_trust
    )


def _no_device_trust(
    policy: Policy, dead: set[str | None], requiring: frozenset[str]
) -> list[Finding]:
    apps = sorted(set(policy.app_ids) & requiring)
    if not apps:
        return []
    for rule in policy.rules:
        if rule.id in dead or requires_verified(rule.conditions):
            continue
        if rule.action is Action.ALLOW:
            return [_open_door(policy, rule, apps)]
        if _stops_unverified(rule.conditions):
            return []
    return []


def _open_door(policy: Policy, rule: Rule, apps: list[str]) -> Finding:
    which = "the catch-all" if rule.catch_all else _ref(policy, rule)
    message = (
        f"policy {policy.name!r} is assigned to {', '.join(apps)}, which require device trust, "
        f"but a request without a verified certificate can reach {which}, which allows it."
    )
    if rule.catch_all:
        fix = "Make the catch-all DENY, or add a rule 'deviceTrust NOT_VERIFIED: DENY' above it."
    else:
        fix = (
            f"Add deviceTrust VERIFIED to rule {rule.name!r}, or add a rule "
            f"'deviceTrust NOT_VERIFIED: DENY' above it."
        )
    return Finding(NO_DEVICE_TRUST_RULE, "ERROR", policy.id, rule.id, message, None, fix)
