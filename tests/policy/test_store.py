"""Policies and zones in the database: the default policy, rule positions and the fixed
catch-all, revisions, the change warnings, app assignment, zones; and the compiled-policy
cache's revision poll (a change reaches another process within the poll interval, this
process at once, and the offline path never reads the database); on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from certbound.clock import FixedClock
from certbound.directory.apps import Apps, AuthMethod, ClientMetadata
from certbound.errors import CertboundError, ReasonCode, WouldBlockError
from certbound.policy.model import Action, Conditions, DeviceTrustRequirement, Rule
from certbound.policy.store import (
    DEFAULT_POLICY_ID,
    CompiledPolicies,
    Policies,
    Zones,
    read_generation,
)
from certbound.storage.database import Database
from certbound.storage.models import PolicyAppRow, PolicyRuleRow, PolicyState

VERIFIED = Conditions(device_trust=DeviceTrustRequirement.VERIFIED)


def refused(reason: ReasonCode, call: object, *args: object, **kwargs: object) -> CertboundError:
    with pytest.raises(CertboundError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    assert caught.value.reason is reason, caught.value
    return caught.value


def app_id(database: Database, clock: FixedClock, client_id: str = "machine") -> str:
    metadata = ClientMetadata(token_endpoint_auth_method=AuthMethod.CLIENT_SECRET_BASIC)
    app, _ = Apps(database, clock).create(client_id, metadata, client_id=client_id)
    return app.id


def test_the_default_policy_exists_allows_and_stays(database: Database, clock: FixedClock) -> None:
    policies = Policies(database, clock)
    default = policies.default()
    assert default.id == DEFAULT_POLICY_ID and default.is_default
    assert [(r.action, r.catch_all) for r in default.rules] == [(Action.ALLOW, True)]
    assert policies.list() == [default]
    assert Policies(database, clock).get("Default Policy") == default  # created once
    error = refused(ReasonCode.POLICY_INVALID, policies.delete, DEFAULT_POLICY_ID)
    assert "default" in error.detail
    assert policies.for_app("app_without_policy") == default


def test_create_names_and_refusals(database: Database, clock: FixedClock) -> None:
    policies = Policies(database, clock)
    change = policies.create("Devices", "managed only")
    created = change.after
    assert change.before is None and created is not None
    assert created.id.startswith("pol_") and created.revision == 1
    assert [(r.name, r.action, r.catch_all) for r in created.rules] == [
        ("Catch-all", Action.DENY, True)
    ]
    assert policies.get("Devices") == policies.get(created.id) == created
    refused(ReasonCode.NAME_TAKEN, policies.create, "Devices")
    refused(ReasonCode.POLICY_INVALID, policies.create, "  ")
    refused(ReasonCode.POLICY_NOT_FOUND, policies.get, "nothing")
    renamed = policies.update("Devices", name="Managed", description="").after
    assert renamed is not None and renamed.name == "Managed" and renamed.description is None
    assert renamed.revision == 2
    refused(ReasonCode.NAME_TAKEN, policies.update, "Managed", name="Default Policy")
    deleted = policies.delete("Managed")
    assert deleted.after is None and deleted.before == renamed
    refused(ReasonCode.POLICY_NOT_FOUND, policies.get, created.id)


def test_rules_go_above_the_catch_all_which_stays_last(
    database: Database, clock: FixedClock
) -> None:
    policies = Policies(database, clock)
    pid = policies.create("P").after.id  # type: ignore[union-attr]
    first = policies.add_rule(pid, "mtls", Action.ALLOW, VERIFIED)
    assert first.rule is not None and first.after is not None
    assert [r.name for r in first.after.rules] == ["mtls", "Catch-all"]
    top = policies.add_rule(pid, "block", Action.DENY, Conditions(), priority=1).after
    assert top is not None and [r.name for r in top.rules] == ["block", "mtls", "Catch-all"]
    assert top.revision == 3
    refused(ReasonCode.CATCH_ALL_RULE_FIXED, policies.add_rule, pid, "x", Action.ALLOW,
            Conditions(), priority=5)  # fmt: skip
    refused(ReasonCode.POLICY_INVALID, policies.add_rule, pid, "x", Action.ALLOW,
            Conditions(), priority=0)  # fmt: skip
    moved = policies.move_rule(pid, "block", 2).after
    assert moved is not None and [r.name for r in moved.rules] == ["mtls", "block", "Catch-all"]
    refused(ReasonCode.CATCH_ALL_RULE_FIXED, policies.move_rule, pid, "mtls", 3)
    refused(ReasonCode.CATCH_ALL_RULE_FIXED, policies.move_rule, pid, "Catch-all", 1)
    refused(ReasonCode.CATCH_ALL_RULE_FIXED, policies.delete_rule, pid, "Catch-all")
    refused(ReasonCode.CATCH_ALL_RULE_FIXED, policies.update_rule, pid, "Catch-all",
            conditions=VERIFIED)  # fmt: skip
    refused(ReasonCode.RULE_NOT_FOUND, policies.delete_rule, pid, "nothing")
    allowed = policies.update_rule(pid, "Catch-all", action=Action.ALLOW, name="Rest").after
    assert allowed is not None and allowed.catch_all.action is Action.ALLOW
    assert allowed.catch_all.name == "Rest" and allowed.catch_all.conditions.empty
    gone = policies.delete_rule(pid, "block").after
    assert gone is not None and [r.name for r in gone.rules] == ["mtls", "Rest"]
    assert gone.revision == moved.revision + 2
    with database.session() as session:  # positions 1..n in the table too
        rows = session.execute(
            select(PolicyRuleRow.position, PolicyRuleRow.name)
            .where(PolicyRuleRow.policy_id == pid)
            .order_by(PolicyRuleRow.position)
        ).all()
    assert [tuple(row) for row in rows] == [(1, "mtls"), (2, "Rest")]


def test_a_rule_name_several_rules_share_needs_the_id(
    database: Database, clock: FixedClock
) -> None:
    policies = Policies(database, clock)
    pid = policies.create("P").after.id  # type: ignore[union-attr]
    one = policies.add_rule(pid, "same", Action.ALLOW, VERIFIED).rule
    policies.add_rule(pid, "same", Action.DENY, Conditions())
    error = refused(ReasonCode.RULE_NOT_FOUND, policies.delete_rule, pid, "same")
    assert "several rules" in error.detail
    assert one is not None and policies.delete_rule(pid, one.id).rule == one


def test_a_shadowing_change_returns_its_warning(database: Database, clock: FixedClock) -> None:
    policies = Policies(database, clock)
    pid = policies.create("P").after.id  # type: ignore[union-attr]
    assert policies.add_rule(pid, "mtls", Action.ALLOW, VERIFIED).warnings == ()
    change = policies.add_rule(pid, "everyone", Action.ALLOW, Conditions(), priority=1)
    shadowed = [w for w in change.warnings if w.kind == "SHADOWED"]
    mtls = change.after.rules[1]  # type: ignore[union-attr]
    assert mtls.name == "mtls" and shadowed[0].rule_id == mtls.id
    assert shadowed[0].severity == "ERROR" and shadowed[0].shadowed_by == change.rule.id  # type: ignore[union-attr]
    # a later unrelated change does not repeat what was already there
    assert policies.update(pid, description="again").warnings == ()


def test_an_app_uses_one_policy(database: Database, clock: FixedClock) -> None:
    policies = Policies(database, clock)
    app = app_id(database, clock)
    first = policies.create("First").after
    second = policies.create("Second").after
    assert first is not None and second is not None
    assigned = policies.assign("First", "machine")  # by client_id
    assert assigned.after is not None and assigned.after.app_ids == (app,)
    assert assigned.after.revision == 2 and policies.for_app(app).id == first.id
    moved = policies.assign(second.id, app)
    assert moved.moved_from is not None and moved.moved_from.id == first.id
    assert policies.get("First").app_ids == () and policies.get("First").revision == 3
    assert policies.for_app(app).id == second.id
    with database.session() as session:
        assert session.scalars(select(PolicyAppRow.policy_id)).all() == [second.id]
    policies.assign(DEFAULT_POLICY_ID, app)  # back to the default: no row of its own
    assert policies.for_app(app).id == DEFAULT_POLICY_ID
    assert policies.effective(policies.default()).app_ids == (app,)
    policies.assign("Second", app)
    policies.unassign("Second", app)
    assert policies.for_app(app).id == DEFAULT_POLICY_ID
    refused(ReasonCode.APP_NOT_FOUND, policies.assign, "Second", "nobody")
    policies.assign("Second", app)
    Apps(database, clock).delete(app)  # a deleted app leaves its policy
    assert policies.get("Second").app_ids == ()
    policies.delete("Second")  # a deleted policy's apps go back to the default
    assert policies.for_app(app).id == DEFAULT_POLICY_ID


def test_zones(database: Database, clock: FixedClock) -> None:
    zones, policies = Zones(database, clock), Policies(database, clock)
    office = zones.create("office", ["10.1.2.3/8", "2001:db8::1/32"]).after
    assert office is not None and office.cidrs == ("10.0.0.0/8", "2001:db8::/32")
    assert zones.get("office") == zones.get(office.id) == office
    refused(ReasonCode.NAME_TAKEN, zones.create, "office", ["10.0.0.0/8"])
    error = refused(ReasonCode.POLICY_INVALID, zones.create, "bad", ["10.0.0.300/8"])
    assert "cidrs[0]" in error.detail
    refused(ReasonCode.ZONE_NOT_FOUND, zones.get, "nowhere")
    pid = policies.create("P").after.id  # type: ignore[union-attr]
    named = Conditions.from_dict({"network": {"include": [office.id]}})
    policies.add_rule(pid, "office only", Action.ALLOW, named)
    changed = zones.update("office", cidrs=["192.168.0.0/16"])
    assert changed.after is not None and changed.after.cidrs == ("192.168.0.0/16",)
    assert changed.referenced_by == (pid,)
    deleted = zones.delete(office.id)
    assert deleted.referenced_by == (pid,) and zones.list() == []


@pytest.fixture
def compiled(database: Database, clock: FixedClock) -> CompiledPolicies:
    return CompiledPolicies(database, clock, poll_interval=2.0)


def test_the_offline_path_answers_only_from_memory(
    database: Database, clock: FixedClock, compiled: CompiledPolicies
) -> None:
    app = app_id(database, clock)
    with pytest.raises(WouldBlockError):  # nothing loaded yet
        compiled.for_app(app, offline=True)
    assert compiled.for_app(app).policy.id == DEFAULT_POLICY_ID
    assert compiled.for_app(app, offline=True).policy.id == DEFAULT_POLICY_ID
    assert compiled.for_app(None, offline=True).policy.is_default
    clock.advance(dt.timedelta(seconds=2))
    with pytest.raises(WouldBlockError):  # the revision poll is due
        compiled.for_app(app, offline=True)
    reloads = compiled.reloads
    compiled.for_app(app)  # one small query: nothing changed, nothing reloaded
    assert compiled.reloads == reloads


def test_a_change_here_is_seen_at_once(
    database: Database, clock: FixedClock, compiled: CompiledPolicies
) -> None:
    app = app_id(database, clock)
    compiled.for_app(app)
    policies = Policies(database, clock)
    pid = policies.create("Devices").after.id  # type: ignore[union-attr]
    policies.assign(pid, app)
    with pytest.raises(WouldBlockError):  # changed in this process: reload before answering
        compiled.for_app(app, offline=True)
    assert compiled.for_app(app).policy.id == pid
    assert compiled.for_app(app, offline=True).policy.revision == 2


def test_a_change_elsewhere_is_seen_within_the_poll_interval(
    database: Database, clock: FixedClock, compiled: CompiledPolicies
) -> None:
    app = app_id(database, clock)
    policies = Policies(database, clock)
    pid = policies.create("Devices").after.id  # type: ignore[union-attr]
    policies.assign(pid, app)
    assert compiled.for_app(app).policy.catch_all.action is Action.DENY
    with database.session() as session:  # what another process's change does to the tables
        session.execute(
            update(PolicyRuleRow).where(PolicyRuleRow.policy_id == pid).values(action="ALLOW")
        )
        before = read_generation(session)
        session.execute(update(PolicyState).values(generation=PolicyState.generation + 1))
    clock.advance(dt.timedelta(seconds=1))
    assert compiled.for_app(app, offline=True).policy.catch_all.action is Action.DENY
    clock.advance(dt.timedelta(seconds=1))
    assert compiled.for_app(app).policy.catch_all.action is Action.ALLOW
    with database.session() as session:
        assert read_generation(session) == (before or 0) + 1


def test_a_missing_generation_row_is_recreated(database: Database, clock: FixedClock) -> None:
    with database.session() as session:
        session.execute(PolicyState.__table__.delete())
    compiled = CompiledPolicies(database, clock)
    with database.session() as session:
        assert read_generation(session) is None
    assert compiled.for_app(None).policy.is_default  # creating the default bumps it again
    app = app_id(database, clock)
    policies = Policies(database, clock)
    policies.assign(policies.create("after the wipe").after.id, app)  # type: ignore[union-attr]
    with database.session() as session:
        assert read_generation(session) is not None
    assert compiled.for_app(app).policy.name == "after the wipe"


def test_rules_equal_after_storage(database: Database, clock: FixedClock) -> None:
    """What is stored reads back equal (conditions JSON round trip)."""
    policies = Policies(database, clock)
    conditions = Conditions.from_dict(
        {
            "deviceTrust": "VERIFIED",
            "certificate": {"sans": [{"type": "email", "pattern": "*@acme.test"}],
                            "minDaysUntilExpiry": 3},
            "deviceStatus": ["ACTIVE"],
            "timeWindow": {"days": ["MON"], "start": "08:00", "end": "18:00",
                           "timezone": "Europe/Paris"},
        }
    )  # fmt: skip
    change = policies.create(
        "P", rules=(Rule("rul_x", "full", Action.ALLOW, conditions),), catch_all=Action.ALLOW
    )
    assert change.after is not None
    stored = policies.get("P")
    assert stored == change.after and stored.rules[0].conditions == conditions
    assert stored.rules[0].id != "rul_x" and stored.catch_all.action is Action.ALLOW
