"""Replay: a draft policy evaluated against logged sign-on requests, listing the decisions
that would change.

Each logged item is an event body (the dict ``Event.to_dict`` writes) whose
``policyEvaluationDetail`` carries the ``request`` and the ``decision`` made at the time.
The draft is compiled once; every request is rebuilt with
:meth:`SignOnRequest.from_dict` and evaluated at its own logged time. Events without a
request are skipped; events whose request or decision does not parse are counted as invalid.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from certbound.clock import parse_rfc3339
from certbound.errors import CertboundError
from certbound.policy.engine import compile_policy
from certbound.policy.model import Action, Policy, Zone
from certbound.policy.request import SignOnRequest

_ACTIONS = {action.value: action for action in Action}


@dataclass(frozen=True, slots=True)
class ReplayChange:
    """A logged decision the draft would change (``before_rule``: the rule that matched
    then, ``after_rule``: the draft's rule)."""

    event_uuid: str | None
    published: dt.datetime | None
    before: Action
    after: Action
    before_rule: str | None
    after_rule: str

    def to_dict(self) -> dict[str, Any]:
        published = self.published
        return {
            "eventUuid": self.event_uuid,
            "published": None if published is None else published.isoformat(),
            "before": self.before.value,
            "after": self.after.value,
            "beforeRule": self.before_rule,
            "afterRule": self.after_rule,
        }


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """The changes, and counts: requests evaluated, decisions changed, events skipped (no
    request), events invalid (a request or decision that does not parse); ``elapsed`` in
    seconds."""

    changes: list[ReplayChange] = field(default_factory=list)
    evaluated: int = 0
    changed: int = 0
    skipped: int = 0
    invalid: int = 0
    elapsed: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "evaluated": self.evaluated,
            "changed": self.changed,
            "skipped": self.skipped,
            "invalid": self.invalid,
            "elapsedSeconds": round(self.elapsed, 6),
            "changes": [change.to_dict() for change in self.changes],
        }


def replay(
    draft: Policy, zones: Mapping[str, Zone], logged: Iterable[Mapping[str, Any]]
) -> ReplayReport:
    """Re-evaluate every logged request with ``draft``; list the decisions that differ."""
    started = time.perf_counter()
    compiled = compile_policy(draft, zones)
    changes: list[ReplayChange] = []
    evaluated = skipped = invalid = 0
    for event in logged:
        detail = event.get("policyEvaluationDetail") if isinstance(event, Mapping) else None
        if not isinstance(detail, Mapping) or detail.get("request") is None:
            skipped += 1
            continue
        before = _ACTIONS.get(str(detail.get("decision")))
        try:
            request = SignOnRequest.from_dict(detail["request"])
        except CertboundError:
            request = None
        if before is None or request is None:
            invalid += 1
            continue
        evaluated += 1
        after = compiled.evaluate(request)
        if after.decision is not before:
            changes.append(_change(event, detail, before, after.decision, after.matched_rule_id))
    return ReplayReport(
        changes=changes,
        evaluated=evaluated,
        changed=len(changes),
        skipped=skipped,
        invalid=invalid,
        elapsed=time.perf_counter() - started,
    )


def _change(
    event: Mapping[str, Any],
    detail: Mapping[str, Any],
    before: Action,
    after: Action,
    after_rule: str,
) -> ReplayChange:
    uuid, published, rule = event.get("uuid"), event.get("published"), detail.get("matchedRuleId")
    try:
        when = parse_rfc3339(published) if isinstance(published, str) else None
    except ValueError:
        when = None
    return ReplayChange(
        event_uuid=uuid if isinstance(uuid, str) else None,
        published=when,
        before=before,
        after=after,
        before_rule=rule if isinstance(rule, str) else None,
        after_rule=after_rule,
    )
