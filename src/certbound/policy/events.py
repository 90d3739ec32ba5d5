"""The sign-on policy layer's System Log events.

Changes: ``policy.lifecycle.create`` / ``.update`` / ``.delete`` (a policy, its name or
description, an app assigned or unassigned), ``policy.rule.create`` / ``.update`` /
``.delete`` / ``.reorder`` (a rule) and ``zone.lifecycle.create`` / ``.update`` /
``.delete`` (a network zone). Each names its targets (``PolicyEntity``: id ``pol_...``,
alternateId the name; ``PolicyRule``: id ``rul_...``, alternateId the name;
``NetworkZone``; ``AppInstance`` for an assignment) and holds in ``debugData`` the object
and ``changeDetails`` ``{"before", "after"}`` with the whole Policy JSON (or Zone JSON)
before and after. When the change raised warnings (:func:`certbound.policy.analysis.new_findings`:
a rule it shadows, a dangling reference...) they are in ``debugData.warnings`` and the
event's severity is WARN. A refused change is a FAILURE event of the same type
(:func:`refused`).

Decisions: ``policy.evaluate_sign_on`` is the sign-on decision of the login page (the user
and their device): outcome ALLOW or DENY with POLICY_DENIED / POLICY_NOT_MATCHED,
``policyEvaluationDetail`` the decision (every rule's verdict and the request). The token
endpoint records its decision on its own ``app.oauth2.token.grant`` event instead: one
event per token request. ``docs/events.md`` describes the fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from certbound.errors import CertboundError
from certbound.policy.analysis import Finding
from certbound.policy.engine import PolicyDecision
from certbound.policy.model import Policy, Rule, Zone
from certbound.policy.store import PolicyChange, ZoneChange
from certbound.syslog.events import (
    CLI_ACTOR,
    Actor,
    Client,
    Event,
    EventType,
    Outcome,
    Result,
    Severity,
    Target,
    refused_change,
)

POLICY_TARGET, RULE_TARGET, ZONE_TARGET = "PolicyEntity", "PolicyRule", "NetworkZone"
APP_TARGET = "AppInstance"

_WHAT = {
    EventType.POLICY_LIFECYCLE_CREATE: "Policy created",
    EventType.POLICY_LIFECYCLE_UPDATE: "Policy updated",
    EventType.POLICY_LIFECYCLE_DELETE: "Policy deleted",
    EventType.POLICY_RULE_CREATE: "Policy rule created",
    EventType.POLICY_RULE_UPDATE: "Policy rule updated",
    EventType.POLICY_RULE_DELETE: "Policy rule deleted",
    EventType.POLICY_RULE_REORDER: "Policy rule moved",
    EventType.ZONE_LIFECYCLE_CREATE: "Network zone created",
    EventType.ZONE_LIFECYCLE_UPDATE: "Network zone updated",
    EventType.ZONE_LIFECYCLE_DELETE: "Network zone deleted",
}


def policy_target(policy: Policy) -> Target:
    return Target(policy.id, POLICY_TARGET, policy.name, policy.description)


def rule_target(rule: Rule) -> Target:
    return Target(rule.id, RULE_TARGET, rule.name, None)


def zone_target(zone: Zone) -> Target:
    return Target(zone.id, ZONE_TARGET, zone.name, None)


def _json(value: Policy | Zone | None) -> dict[str, Any] | None:
    return None if value is None else value.to_dict()


def _event(
    event_type: EventType,
    label: str,
    targets: tuple[Target, ...],
    debug: dict[str, Any],
    warnings: tuple[Finding, ...],
    *,
    actor: Actor,
    client: Client | None,
) -> Event:
    if warnings:
        debug = {**debug, "warnings": [f.to_dict() for f in warnings]}
        label += f" ({len(warnings)} warning{'s' if len(warnings) != 1 else ''})"
    return Event(
        event_type=event_type,
        display_message=f"{_WHAT[event_type]}: {label}",
        outcome=Outcome(Result.SUCCESS),
        actor=actor,
        severity=Severity.WARN if warnings else Severity.INFO,
        targets=targets,
        client=client or Client(),
        debug_data=debug,
    )


def policy_changed(
    event_type: EventType,
    change: PolicyChange,
    *,
    app: Target | None = None,
    actor: Actor = CLI_ACTOR,
    client: Client | None = None,
) -> Event:
    """``policy.lifecycle.*`` or ``policy.rule.*``: the policy before and after, the rule
    the change was about, the app assigned or unassigned (``app``)."""
    policy = change.after or change.before
    assert policy is not None, "a change has a policy before or after"
    targets = [policy_target(policy)]
    label = f"{policy.name} ({policy.id})"
    if change.rule is not None:
        targets.append(rule_target(change.rule))
        label += f", rule {change.rule.name} ({change.rule.id})"
    if app is not None:
        targets.append(app)
        label += f", app {app.alternate_id}"
    debug: dict[str, Any] = {
        "policy": policy.to_dict(),
        "changeDetails": {"before": _json(change.before), "after": _json(change.after)},
    }
    if change.moved_from is not None:
        debug["movedFrom"] = {"id": change.moved_from.id, "name": change.moved_from.name}
    return _event(
        event_type, label, tuple(targets), debug, change.warnings, actor=actor, client=client
    )


def zone_changed(
    event_type: EventType,
    change: ZoneChange,
    *,
    actor: Actor = CLI_ACTOR,
    client: Client | None = None,
) -> Event:
    """``zone.lifecycle.*``: the zone before and after, and the policies naming it."""
    zone = change.after or change.before
    assert zone is not None, "a change has a zone before or after"
    debug = {
        "zone": zone.to_dict(),
        "changeDetails": {"before": _json(change.before), "after": _json(change.after)},
        "referencedBy": list(change.referenced_by),
    }
    return _event(
        event_type,
        f"{zone.name} ({zone.id})",
        (zone_target(zone),),
        debug,
        (),
        actor=actor,
        client=client,
    )


def refused(
    event_type: EventType,
    target_type: str,
    ref: str,
    error: CertboundError,
    *,
    actor: Actor = CLI_ACTOR,
    client: Client | None = None,
) -> Event:
    """A refused change: the target is the reference as given; ``debugData`` has ``ref``,
    the ``detail`` and the error's context."""
    return refused_change(
        event_type, _WHAT[event_type], target_type, ref, error, actor=actor, client=client
    )


def sign_on_evaluated(
    decision: PolicyDecision,
    *,
    actor: Actor,
    app_target: Target,
    http_client: Client,
    device: Mapping[str, Any] | None,
    detail: Mapping[str, Any] | None = None,
) -> Event:
    """``policy.evaluate_sign_on``: a user's sign-on decided by the app's policy (``detail``:
    the decision's JSON when the caller has it already)."""
    allowed = decision.allowed
    verdict = (
        "allowed" if allowed else f"denied ({decision.reason.value if decision.reason else '-'})"
    )
    return Event(
        event_type=EventType.POLICY_EVALUATE_SIGN_ON,
        display_message=(
            f"Sign-on to {app_target.alternate_id} {verdict} by policy {decision.policy_name}, "
            f"rule {decision.matched_rule_name}"
        ),
        outcome=Outcome(Result.ALLOW if allowed else Result.DENY, decision.reason),
        actor=actor,
        severity=Severity.INFO if allowed else Severity.WARN,
        targets=(
            app_target,
            Target(decision.policy_id, POLICY_TARGET, decision.policy_name, None),
            Target(decision.matched_rule_id, RULE_TARGET, decision.matched_rule_name, None),
        ),
        client=http_client,
        transaction_type="WEB",
        device_trust=dict(device) if device is not None else None,
        policy_evaluation=dict(detail) if detail is not None else decision.to_dict(),
        debug_data={"clientId": app_target.alternate_id},
    )
