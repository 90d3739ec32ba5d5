"""``certbound policy``: sign-on policies, their rules and apps; simulate and replay.

``list``, ``show``, ``create``, ``update``, ``delete``, ``assign`` / ``unassign`` (an app
uses one policy; an app without one uses the default policy), ``rule add`` / ``update`` /
``move`` / ``delete``, ``simulate`` (what the policy decides for an app, a user, a
certificate, an address and a time, without signing on) and ``replay`` (a draft policy
evaluated against the sign-ons logged in the last days: the decisions it would change).

A policy is named by its id (``pol_...``) or name, a rule by its id (``rul_...``) or its
name within the policy. A rule's conditions come from ``--conditions`` (the JSON of
docs/policies.md, or ``@FILE``) and the shorthand options ``--device-trust``,
``--device-status``, ``--group`` and ``--zone`` (groups and zones by id or name), which set
those conditions on top. Every change is a System Log event (``policy.lifecycle.*``,
``policy.rule.*``), and so is every refused one; the warnings a change raises (a rule it
shadows, a dangling reference: :mod:`certbound.policy.analysis`) are printed in yellow and
kept in the event. A refusal prints ``error <CODE>: <detail>`` and the fix, and exits 2.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text
from sqlalchemy import select

from certbound.cli.main import EXIT_FAILED, Context, pass_context
from certbound.cli.output import fail, make_console, print_json
from certbound.clock import SystemClock, format_rfc3339, parse_rfc3339
from certbound.directory.apps import Apps
from certbound.directory.groups import Groups
from certbound.errors import CertboundError
from certbound.pki.revocation import RevocationChecker, stored_policies
from certbound.pki.truststore import TrustStore
from certbound.pki.validation import Validator
from certbound.policy import events
from certbound.policy.analysis import Finding
from certbound.policy.engine import RuleVerdict
from certbound.policy.model import Action, Conditions, DeviceTrustRequirement, Policy, invalid
from certbound.policy.replay import ReplayReport, replay
from certbound.policy.simulate import Simulation, Simulator
from certbound.policy.store import (
    CompiledPolicies,
    Policies,
    PolicyChange,
    Zones,
    rule_index,
    stored_zones,
)
from certbound.storage.database import Database
from certbound.storage.models import LogEvent
from certbound.syslog.events import EventType, Target

MAX_FILE_BYTES = 1024 * 1024
MAX_DAYS = 3650
# The events that carry a sign-on decision: token requests, and the login page's decision.
REPLAYED = (EventType.APP_OAUTH2_TOKEN_GRANT.value, EventType.POLICY_EVALUATE_SIGN_ON.value)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
_ACTIONS = click.Choice([a.value for a in Action], case_sensitive=False)


def _policies(ctx: Context) -> Policies:
    return Policies(ctx.database(), SystemClock())


def _refused(
    ctx: Context, event_type: EventType, target: str, ref: str, exc: CertboundError
) -> None:
    ctx.recorder().record(events.refused(event_type, target, ref, exc))


def _read(text: str, what: str) -> Any:
    """JSON given inline, or ``@FILE``; POLICY_INVALID naming ``what`` when unreadable."""
    if text.startswith("@"):
        try:
            data = Path(text[1:]).read_bytes()[: MAX_FILE_BYTES + 1]
        except OSError as exc:
            raise invalid(what, f"cannot read {text[1:]}: {exc.strerror}") from None
        if len(data) > MAX_FILE_BYTES:
            raise invalid(what, f"{text[1:]} is larger than {MAX_FILE_BYTES} bytes")
        text = data.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise invalid(what, f"not JSON: {exc}") from None


def _warn(warnings: tuple[Finding, ...]) -> None:
    if not warnings:
        return
    err = make_console(stderr=True)
    for finding in warnings:
        err.print(Text(f"warning {finding.kind}: {finding.message}", style="yellow"))
        err.print(Text(f"  fix: {finding.fix}", style="yellow"))


def _done(change: PolicyChange, message: str, as_json: bool) -> None:
    """Print a change: the policy (and warnings) as JSON, or a line and the warnings."""
    if as_json:
        policy = change.after or change.before
        print_json(
            {
                "policy": policy.to_dict() if policy else None,
                "rule": change.rule.to_dict() if change.rule else None,
                "warnings": [f.to_dict() for f in change.warnings],
            }
        )
        return
    make_console().print(Text(message))
    _warn(change.warnings)


def _conditions_text(conditions: Conditions) -> str:
    data = conditions.to_dict()
    return json.dumps(data, separators=(",", ":")) if data else "(none: matches every request)"


@click.group()
def policy() -> None:
    """Sign-on policies: ordered rules that allow or deny a sign-on (docs/policies.md)."""


@policy.command("list")
@_json_option
@pass_context
def list_(ctx: Context, as_json: bool) -> None:
    """List the policies, the default first."""
    items = _policies(ctx).list()
    if as_json:
        print_json({"policies": [item.to_dict() for item in items]})
        return
    table = Table("id", "name", "rules", "apps", "revision")
    for item in items:
        apps = "(every app without its own)" if item.is_default else str(len(item.app_ids))
        table.add_row(
            Text(item.id), Text(item.name), str(len(item.rules)), Text(apps), str(item.revision)
        )
    make_console(wide_off_terminal=True).print(table)


def _show(item: Policy) -> None:
    console = make_console(wide_off_terminal=True)
    default = " (default)" if item.is_default else ""
    console.print(Text.assemble((item.id, "bold cyan"), "  ", item.name, default))
    console.print(Text.assemble("  ", ("description ", "dim"), item.description or "-"))
    console.print(Text.assemble("  ", ("revision    ", "dim"), str(item.revision)))
    apps = ", ".join(item.app_ids) or "-"
    console.print(Text.assemble("  ", ("apps        ", "dim"), apps))
    table = Table("priority", "rule", "id", "action", "conditions")
    for priority, rule in enumerate(item.rules, start=1):
        colour = "green" if rule.action is Action.ALLOW else "red"
        name = f"{rule.name} (catch-all)" if rule.catch_all else rule.name
        table.add_row(
            str(priority), Text(name), Text(rule.id), Text(rule.action.value, style=colour),
            Text(_conditions_text(rule.conditions)),
        )  # fmt: skip
    console.print(table)


@policy.command("show")
@click.argument("ref", metavar="POLICY")
@_json_option
@pass_context
def show(ctx: Context, ref: str, as_json: bool) -> None:
    """Show a policy and its rules in priority order. POLICY: its id or name."""
    try:
        item = _policies(ctx).get(ref)
    except CertboundError as exc:
        fail(exc, as_json)
    if as_json:
        print_json(item.to_dict())
        return
    _show(item)


@policy.command("create")
@click.argument("name")
@click.option("--description", metavar="D", help="What the policy is for.")
@click.option("--catch-all", "catch_all", type=_ACTIONS, default="DENY", show_default=True,
              help="The action of the catch-all rule (when no other rule matches).")  # fmt: skip
@_json_option
@pass_context
def create(ctx: Context, name: str, description: str | None, catch_all: str, as_json: bool) -> None:
    """Create a policy with its catch-all rule (add rules above it with `policy rule add`)."""
    try:
        change = _policies(ctx).create(name, description, catch_all=Action(catch_all.upper()))
    except CertboundError as exc:
        _refused(ctx, EventType.POLICY_LIFECYCLE_CREATE, events.POLICY_TARGET, name, exc)
        fail(exc, as_json)
    ctx.recorder().record(events.policy_changed(EventType.POLICY_LIFECYCLE_CREATE, change))
    assert change.after is not None
    _done(change, f"created policy {change.after.name} ({change.after.id})", as_json)


@policy.command("update")
@click.argument("ref", metavar="POLICY")
@click.option("--name", help="A new name.")
@click.option("--description", metavar="D", help="A new description ('' removes it).")
@_json_option
@pass_context
def update(
    ctx: Context, ref: str, name: str | None, description: str | None, as_json: bool
) -> None:
    """Rename a policy or change its description."""
    try:
        change = _policies(ctx).update(ref, name=name, description=description)
    except CertboundError as exc:
        _refused(ctx, EventType.POLICY_LIFECYCLE_UPDATE, events.POLICY_TARGET, ref, exc)
        fail(exc, as_json)
    ctx.recorder().record(events.policy_changed(EventType.POLICY_LIFECYCLE_UPDATE, change))
    assert change.after is not None
    _done(change, f"updated policy {change.after.name} ({change.after.id})", as_json)


@policy.command("delete")
@click.argument("ref", metavar="POLICY")
@_json_option
@pass_context
def delete(ctx: Context, ref: str, as_json: bool) -> None:
    """Delete a policy; its apps use the default policy from now on."""
    try:
        change = _policies(ctx).delete(ref)
    except CertboundError as exc:
        _refused(ctx, EventType.POLICY_LIFECYCLE_DELETE, events.POLICY_TARGET, ref, exc)
        fail(exc, as_json)
    ctx.recorder().record(events.policy_changed(EventType.POLICY_LIFECYCLE_DELETE, change))
    assert change.before is not None
    _done(change, f"deleted policy {change.before.name} ({change.before.id})", as_json)


def _assignment(ctx: Context, ref: str, app_ref: str, as_json: bool, *, assign: bool) -> None:
    policies = _policies(ctx)
    try:
        app = Apps(ctx.database(), SystemClock()).get(app_ref)
        change = policies.assign(ref, app.id) if assign else policies.unassign(ref, app.id)
    except CertboundError as exc:
        target = f"{ref} {app_ref}"
        _refused(ctx, EventType.POLICY_LIFECYCLE_UPDATE, events.POLICY_TARGET, target, exc)
        fail(exc, as_json)
    app_target = Target(app.id, events.APP_TARGET, app.client_id, app.name)
    event = events.policy_changed(EventType.POLICY_LIFECYCLE_UPDATE, change, app=app_target)
    ctx.recorder().record(event)
    assert change.after is not None
    verb = "now uses" if assign else "no longer uses"
    _done(change, f"app {app.client_id} {verb} policy {change.after.name}", as_json)


@policy.command("assign")
@click.argument("ref", metavar="POLICY")
@click.argument("app_ref", metavar="APP")
@_json_option
@pass_context
def assign(ctx: Context, ref: str, app_ref: str, as_json: bool) -> None:
    """Make APP (id or client_id) use POLICY (it leaves the policy it had)."""
    _assignment(ctx, ref, app_ref, as_json, assign=True)


@policy.command("unassign")
@click.argument("ref", metavar="POLICY")
@click.argument("app_ref", metavar="APP")
@_json_option
@pass_context
def unassign(ctx: Context, ref: str, app_ref: str, as_json: bool) -> None:
    """Make APP leave POLICY for the default policy."""
    _assignment(ctx, ref, app_ref, as_json, assign=False)


# --- rules ---------------------------------------------------------------------------------


def _condition_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--conditions", metavar="JSON|@FILE",
                     help="The conditions as JSON (docs/policies.md), or @FILE."),
        click.option("--device-trust", type=click.Choice(
            [r.value for r in DeviceTrustRequirement], case_sensitive=False),
            help="deviceTrust: VERIFIED (a trusted device) or NOT_VERIFIED."),
        click.option("--device-status", "device_status", multiple=True, metavar="S",
                     type=click.Choice(["ACTIVE", "SUSPENDED", "DEACTIVATED"],
                                       case_sensitive=False),
                     help="deviceStatus: one of these statuses (repeat)."),
        click.option("--group", "groups", multiple=True, metavar="GROUP",
                     help="groups.anyOf: a member of this group, id or name (repeat)."),
        click.option("--zone", "zones", multiple=True, metavar="ZONE",
                     help="network.include: from this network zone, id or name (repeat)."),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


def _given(
    conditions: str | None,
    device_trust: str | None,
    device_status: tuple[str, ...],
    groups: tuple[str, ...],
    zones: tuple[str, ...],
) -> dict[str, Any]:
    return {
        "conditions": conditions,
        "device_trust": device_trust,
        "device_status": device_status,
        "groups": groups,
        "zones": zones,
    }


def _conditions(ctx: Context, base: Conditions, given: dict[str, Any]) -> Conditions | None:
    """The conditions the options ask for (None: none of them given)."""
    shorthands = ("device_trust", "device_status", "groups", "zones")
    if given["conditions"] is None and not any(given[k] for k in shorthands):
        return None
    data = base.to_dict()
    if given["conditions"] is not None:
        data = _read(given["conditions"], "conditions")
        if not isinstance(data, dict):
            raise invalid("conditions", "must be a JSON object")
    if given["device_trust"]:
        data["deviceTrust"] = given["device_trust"].upper()
    if given["device_status"]:
        data["deviceStatus"] = [s.upper() for s in given["device_status"]]
    db, clock = ctx.database(), SystemClock()
    if given["groups"]:
        groups = Groups(db, clock)
        data["groups"] = {
            **data.get("groups", {}),
            "anyOf": [groups.get(g).id for g in given["groups"]],
        }
    if given["zones"]:
        zones = Zones(db, clock)
        data["network"] = {
            **data.get("network", {}),
            "include": [zones.get(z).id for z in given["zones"]],
        }
    return Conditions.from_dict(data)


@policy.group("rule")
def rule() -> None:
    """A policy's rules: the first whose conditions all hold decides."""


@rule.command("add")
@click.argument("ref", metavar="POLICY")
@click.option("--name", required=True, help="The rule's name.")
@click.option("--action", type=_ACTIONS, required=True, help="ALLOW or DENY when it matches.")
@click.option("--priority", type=int, help="1-based position (default: above the catch-all).")
@_condition_options
@_json_option
@pass_context
def rule_add(
    ctx: Context, ref: str, name: str, action: str, priority: int | None, as_json: bool,
    conditions: str | None, device_trust: str | None, device_status: tuple[str, ...],
    groups: tuple[str, ...], zones: tuple[str, ...],
) -> None:  # fmt: skip
    """Add a rule to POLICY."""
    given = _given(conditions, device_trust, device_status, groups, zones)
    try:
        wanted = _conditions(ctx, Conditions(), given) or Conditions()
        change = _policies(ctx).add_rule(
            ref, name, Action(action.upper()), wanted, priority=priority
        )
    except CertboundError as exc:
        _refused(ctx, EventType.POLICY_RULE_CREATE, events.RULE_TARGET, f"{ref} {name}", exc)
        fail(exc, as_json)
    ctx.recorder().record(events.policy_changed(EventType.POLICY_RULE_CREATE, change))
    assert change.rule is not None and change.after is not None
    at = change.after.rules.index(change.rule) + 1
    _done(change, f"added rule {change.rule.name} ({change.rule.id}) at priority {at}", as_json)


@rule.command("update")
@click.argument("ref", metavar="POLICY")
@click.argument("rule_ref", metavar="RULE")
@click.option("--name", help="A new name.")
@click.option("--action", type=_ACTIONS, help="A new action.")
@_condition_options
@_json_option
@pass_context
def rule_update(
    ctx: Context, ref: str, rule_ref: str, name: str | None, action: str | None, as_json: bool,
    conditions: str | None, device_trust: str | None, device_status: tuple[str, ...],
    groups: tuple[str, ...], zones: tuple[str, ...],
) -> None:  # fmt: skip
    """Change a rule's name, action or conditions (the shorthands change only theirs)."""
    policies = _policies(ctx)
    given = _given(conditions, device_trust, device_status, groups, zones)
    try:
        current = policies.get(ref)
        base = current.rules[rule_index(current, rule_ref)].conditions
        change = policies.update_rule(
            ref, rule_ref, name=name, action=Action(action.upper()) if action else None,
            conditions=_conditions(ctx, base, given),
        )  # fmt: skip
    except CertboundError as exc:
        target = f"{ref} {rule_ref}"
        _refused(ctx, EventType.POLICY_RULE_UPDATE, events.RULE_TARGET, target, exc)
        fail(exc, as_json)
    ctx.recorder().record(events.policy_changed(EventType.POLICY_RULE_UPDATE, change))
    assert change.rule is not None
    _done(change, f"updated rule {change.rule.name} ({change.rule.id})", as_json)


@rule.command("move")
@click.argument("ref", metavar="POLICY")
@click.argument("rule_ref", metavar="RULE")
@click.argument("priority", type=int)
@_json_option
@pass_context
def rule_move(ctx: Context, ref: str, rule_ref: str, priority: int, as_json: bool) -> None:
    """Move a rule to PRIORITY (1 = evaluated first; never onto the catch-all)."""
    try:
        change = _policies(ctx).move_rule(ref, rule_ref, priority)
    except CertboundError as exc:
        target = f"{ref} {rule_ref}"
        _refused(ctx, EventType.POLICY_RULE_REORDER, events.RULE_TARGET, target, exc)
        fail(exc, as_json)
    ctx.recorder().record(events.policy_changed(EventType.POLICY_RULE_REORDER, change))
    assert change.rule is not None
    _done(change, f"moved rule {change.rule.name} to priority {priority}", as_json)


@rule.command("delete")
@click.argument("ref", metavar="POLICY")
@click.argument("rule_ref", metavar="RULE")
@_json_option
@pass_context
def rule_delete(ctx: Context, ref: str, rule_ref: str, as_json: bool) -> None:
    """Delete a rule (never the catch-all)."""
    try:
        change = _policies(ctx).delete_rule(ref, rule_ref)
    except CertboundError as exc:
        target = f"{ref} {rule_ref}"
        _refused(ctx, EventType.POLICY_RULE_DELETE, events.RULE_TARGET, target, exc)
        fail(exc, as_json)
    ctx.recorder().record(events.policy_changed(EventType.POLICY_RULE_DELETE, change))
    assert change.rule is not None
    _done(change, f"deleted rule {change.rule.name} ({change.rule.id})", as_json)


# --- simulate ------------------------------------------------------------------------------


def _instant(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    try:
        return parse_rfc3339(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an RFC 3339 time", param_hint="--at") from None


def _file(path: Path | None, option: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()[: MAX_FILE_BYTES + 1]
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint=option) from None


def _verdict_line(verdict: RuleVerdict) -> str:
    failed = verdict.failed_conditions
    why = f": failed {', '.join(failed)}" if failed else ""
    return f"{verdict.priority}. {verdict.name}: {verdict.verdict.value}{why}"


def _print_simulation(simulation: Simulation) -> None:
    console = make_console(wide_off_terminal=True)
    decision, device = simulation.decision, simulation.device_trust
    colour = "green" if decision.allowed else "red"
    reason = f" ({decision.reason.value})" if decision.reason else ""
    console.print(Text.assemble("Decision: ", (decision.decision.value + reason, f"bold {colour}")))
    console.print(Text(f"Policy: {decision.policy_name} ({decision.policy_id})"))
    console.print(Text(f"Matched rule: {decision.matched_rule_name} ({decision.matched_rule_id})"))
    verdict = "verified" if device["verified"] else f"not verified ({device['reason']})"
    new = "ACTIVE, new" if device.get("newDevice") else "-"
    status = (device.get("device") or {}).get("status") or new
    console.print(Text(f"Device: {verdict}; status {status}"))
    for rule_verdict in decision.rules:
        console.print(Text(f"  {_verdict_line(rule_verdict)}"))


def _simulator(db: Database) -> tuple[Simulator, RevocationChecker]:
    clock = SystemClock()
    checker = RevocationChecker(db, clock)  # no recorder: a simulation records nothing
    validator = Validator(
        TrustStore(db, clock), clock, revocation=checker, policies=stored_policies(db)
    )
    return Simulator(db, clock, validator, CompiledPolicies(db, clock)), checker


@policy.command("simulate")
@click.option("--app", "app_ref", required=True, metavar="APP", help="The app: id or client_id.")
@click.option("--user", "user_ref", metavar="USER", help="The user: id or username.")
@click.option(
    "--cert",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The device's certificate file (PEM, leaf first).",
)
@click.option("--ip", help="The client's IP address.")
@click.option("--at", "at_text", metavar="TIME", help="When (RFC 3339; default now).")
@click.option(
    "--draft",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A draft policy (its JSON) evaluated instead of the app's.",
)
@_json_option
@pass_context
def simulate(
    ctx: Context, app_ref: str, user_ref: str | None, cert: Path | None, ip: str | None,
    at_text: str | None, draft: Path | None, as_json: bool,
) -> None:  # fmt: skip
    """What the app's policy would decide for this sign-on; nothing is recorded or
    registered. Exit 0 when it allows, 1 when it denies."""
    at = _instant(at_text)
    certificate = _file(cert, "--cert")
    simulator, checker = _simulator(ctx.database())
    try:
        draft_policy = None if draft is None else _read(f"@{draft}", "policy")
        simulation = simulator.run(
            app_ref, user=user_ref, certificate=certificate, ip=ip, at=at, draft=draft_policy
        )
    except CertboundError as exc:
        fail(exc, as_json)
    finally:
        checker.close()
    if as_json:
        print_json(simulation.to_dict())
    else:
        _print_simulation(simulation)
    if not simulation.decision.allowed:
        raise click.exceptions.Exit(EXIT_FAILED)


# --- replay --------------------------------------------------------------------------------


def _logged(db: Database, app_ids: frozenset[str], since: dt.datetime) -> Iterator[dict[str, Any]]:
    """The sign-on events since ``since`` whose request was for one of ``app_ids``."""
    query = (
        select(LogEvent.body)
        .where(LogEvent.event_type.in_(REPLAYED), LogEvent.published >= since)
        .order_by(LogEvent.published, LogEvent.seq)
        .execution_options(yield_per=1000)
    )
    with db.session() as session:
        for body in session.scalars(query):
            event = json.loads(body)
            request = (event.get("policyEvaluationDetail") or {}).get("request") or {}
            if request.get("appId") in app_ids:
                yield event


def _print_replay(report: ReplayReport, policy: Policy, days: int) -> None:
    console = make_console(wide_off_terminal=True)
    console.print(
        Text(
            f"Replayed {report.evaluated} sign-on(s) of the last {days} day(s) for policy "
            f"{policy.name}: {report.changed} decision(s) would change"
            f" ({report.skipped} without a request, {report.invalid} unreadable)."
        )
    )
    if not report.changes:
        return
    table = Table("event", "published", "before", "after", "rule before", "rule after")
    for change in report.changes:
        table.add_row(
            Text(change.event_uuid or "-"),
            Text(format_rfc3339(change.published) if change.published else "-"),
            Text(change.before.value), Text(change.after.value, style="bold"),
            Text(change.before_rule or "-"), Text(change.after_rule),
        )  # fmt: skip
    console.print(table)


@policy.command("replay")
@click.argument("ref", metavar="POLICY")
@click.option(
    "--draft",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The draft policy (its JSON, as `policy show --json` prints it).",
)
@click.option(
    "--days",
    type=click.IntRange(1, MAX_DAYS),
    default=7,
    show_default=True,
    help="Replay the sign-ons of the last DAYS days.",
)
@_json_option
@pass_context
def replay_(ctx: Context, ref: str, draft: Path, days: int, as_json: bool) -> None:
    """Evaluate a draft of POLICY against the sign-ons logged for its apps (token requests
    and logins that carry policyEvaluationDetail.request); print the decisions it would
    change. Nothing is changed."""
    db = ctx.database()
    try:
        current = _policies(ctx).get(ref)
        apps = frozenset(_policies(ctx).effective(current).app_ids)
        proposed = Policy.from_dict(_read(f"@{draft}", "policy"), "policy")
        since = SystemClock().now() - dt.timedelta(days=days)
        report = replay(proposed, stored_zones(db), _logged(db, apps, since))
    except CertboundError as exc:
        fail(exc, as_json)
    if as_json:
        print_json({"policy": {"id": current.id, "name": current.name}, **report.to_dict()})
        return
    _print_replay(report, current, days)
