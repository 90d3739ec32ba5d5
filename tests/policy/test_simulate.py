"""Simulation and the sign-on request builder over the real validator, trust store and
device registry: trusted, untrusted and suspended devices, users and groups, zones, time,
drafts; no event recorded and no device registered; the certificate facts carry the
trust-store CA ids; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from certbound.clock import FixedClock
from certbound.devices.mapping import MappingRules
from certbound.devices.registry import DeviceRegistry
from certbound.directory.apps import Apps, AuthMethod, ClientMetadata
from certbound.directory.groups import Groups
from certbound.directory.users import Users
from certbound.errors import CertboundError, ReasonCode
from certbound.pki import devpki
from certbound.pki.certificate import der
from certbound.pki.revocation_policy import Mode, RevocationPolicy
from certbound.pki.truststore import TrustStore
from certbound.pki.validation import Validator
from certbound.policy.model import Action, Conditions, DeviceTrustRequirement
from certbound.policy.simulate import NO_DEVICE, DeviceContext, Simulator
from certbound.policy.store import CompiledPolicies, Policies, Zones
from certbound.storage.database import Database
from certbound.storage.models import Device, LogEvent

PKI = devpki.build_dev_pki()
MANAGED = Conditions(device_trust=DeviceTrustRequirement.VERIFIED, device_status=("ACTIVE",))


def pem(name: str) -> bytes:
    return PKI.devices[name].cert_pem()


def count(database: Database, table: type[Device] | type[LogEvent]) -> int:
    with database.session() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


class Setup:
    def __init__(self, database: Database, clock: FixedClock) -> None:
        store = TrustStore(database, clock)
        off = RevocationPolicy(mode=Mode.OFF)
        self.ca = store.add(devpki.pem_bundle([PKI.intermediate, PKI.root]), "dev", revocation=off)
        self.validator = Validator(store, clock)
        self.compiled = CompiledPolicies(database, clock)
        self.simulator = Simulator(database, clock, self.validator, self.compiled)
        metadata = ClientMetadata(token_endpoint_auth_method=AuthMethod.CLIENT_SECRET_BASIC)
        self.app, _ = Apps(database, clock).create("web", metadata, client_id="web")
        self.policies = Policies(database, clock)
        created = self.policies.create("Managed")
        assert created.after is not None
        self.policy_id = created.after.id
        self.policies.add_rule(self.policy_id, "Managed devices", Action.ALLOW, MANAGED)
        self.policies.assign(self.policy_id, "web")


@pytest.fixture
def setup(database: Database, clock: FixedClock) -> Setup:
    return Setup(database, clock)


def test_trusted_untrusted_and_suspended_devices(
    database: Database, clock: FixedClock, setup: Setup
) -> None:
    trusted = setup.simulator.run("web", certificate=pem("good"))
    assert trusted.decision.allowed and trusted.decision.matched_rule_name == "Managed devices"
    assert trusted.device_trust["verified"] and trusted.device_trust["newDevice"]
    assert count(database, Device) == 0  # a simulation registers nothing
    foreign = setup.simulator.run("web", certificate=pem("foreign"))
    assert foreign.decision.reason is ReasonCode.POLICY_NOT_MATCHED
    assert foreign.device_trust["reason"] == "UNKNOWN_CA"
    verdict = foreign.decision.rules[0]
    assert set(verdict.failed_conditions) == {"deviceTrust", "deviceStatus"}
    registry = DeviceRegistry(database, clock, MappingRules.parse([]))
    leaf = PKI.devices["cn-only"].cert
    device = registry.observe(leaf, der(leaf))
    registry.suspend(device.id)
    suspended = setup.simulator.run("web", certificate=pem("cn-only"))
    assert suspended.decision.reason is ReasonCode.POLICY_NOT_MATCHED
    assert suspended.device_trust["reason"] == "DEVICE_SUSPENDED"
    assert suspended.device_trust["device"]["id"] == device.id
    assert suspended.decision.request.device_status == "SUSPENDED"
    assert count(database, LogEvent) == 0  # and records nothing


def test_no_certificate_and_the_default_policy(
    database: Database, clock: FixedClock, setup: Setup
) -> None:
    bare = setup.simulator.run("web")
    assert bare.decision.reason is ReasonCode.POLICY_NOT_MATCHED
    assert bare.decision.request.device_reason == "NO_CLIENT_CERTIFICATE"
    metadata = ClientMetadata(token_endpoint_auth_method=AuthMethod.CLIENT_SECRET_BASIC)
    Apps(database, clock).create("other", metadata, client_id="other")
    default = setup.simulator.run("other").to_dict()
    assert default["decision"] == "ALLOW" and default["reason"] is None
    assert default["policyEvaluationDetail"]["policyName"] == "Default Policy"
    assert default["deviceTrust"]["verified"] is False


def test_the_facts_name_the_trust_store_ca(setup: Setup) -> None:
    result = setup.simulator.run("web", certificate=pem("good"))
    facts = result.decision.request.certificate
    assert facts is not None and facts.ca_ids == frozenset({setup.ca.id})
    assert ("email", devpki.GOOD_DEVICE_USER) in facts.sans
    by_ca = Conditions.from_dict({"certificate": {"issuerCaIds": [setup.ca.id]}})
    draft = setup.policies.get(setup.policy_id)
    changed = setup.policies.update_rule(draft.id, "Managed devices", conditions=by_ca)
    assert changed.after is not None
    assert setup.simulator.run("web", certificate=pem("good")).decision.allowed


def test_users_groups_zones_and_time(database: Database, clock: FixedClock, setup: Setup) -> None:
    users, groups = Users(database, clock), Groups(database, clock)
    alice, bob = users.create("alice"), users.create("bob")
    staff = groups.create("staff")
    groups.add_member("staff", "alice")
    office = Zones(database, clock).create("office", ["10.0.0.0/8"]).after
    assert office is not None
    conditions = Conditions.from_dict(
        {"groups": {"anyOf": [staff.id]}, "network": {"include": [office.id]}}
    )
    setup.policies.add_rule(setup.policy_id, "staff at the office", Action.ALLOW, conditions)
    sim = setup.simulator
    assert sim.run("web", user="alice", ip="10.1.2.3").decision.matched_rule_name == (
        "staff at the office"
    )
    assert not sim.run("web", user="bob", ip="10.1.2.3").decision.allowed
    assert not sim.run("web", user=alice.id, ip="192.0.2.1").decision.allowed
    assert sim.run("web", user=bob.id).decision.request.group_ids == frozenset()
    for bad, reason in ((dict(user="nobody"), ReasonCode.USER_NOT_FOUND),
                        (dict(ip="10.0.0.300"), ReasonCode.POLICY_INVALID)):  # fmt: skip
        with pytest.raises(CertboundError) as caught:
            sim.run("web", **bad)  # type: ignore[arg-type]
        assert caught.value.reason is reason
    with pytest.raises(CertboundError) as caught:
        sim.run("nothing")
    assert caught.value.reason is ReasonCode.APP_NOT_FOUND
    # a certificate valid from next month on, simulated now and then
    later = clock.now() + dt.timedelta(days=31)
    assert not sim.run("web", certificate=pem("not-yet-valid")).decision.allowed
    assert sim.run("web", certificate=pem("not-yet-valid"), at=later).decision.allowed


def test_a_draft_is_evaluated_instead(setup: Setup) -> None:
    draft = setup.policies.get(setup.policy_id).to_dict()
    draft["rules"][-1]["action"] = "ALLOW"
    answer = setup.simulator.run("web", certificate=pem("foreign"), draft=draft)
    assert answer.decision.allowed and answer.decision.matched_rule_name == "Catch-all"
    assert not setup.simulator.run("web", certificate=pem("foreign")).decision.allowed
    draft["rules"][0]["conditions"] = {"deviceTrust": "SOMETIMES"}
    with pytest.raises(CertboundError) as caught:
        setup.simulator.run("web", draft=draft)
    assert caught.value.reason is ReasonCode.POLICY_INVALID
    assert "policy.rules[0].conditions.deviceTrust" in caught.value.detail


def test_device_context_and_sign_on_request(setup: Setup, clock: FixedClock) -> None:
    chain = (PKI.devices["good"].cert, PKI.intermediate.cert, PKI.root.cert)
    context = DeviceContext(True, None, "ACTIVE", chain, der(chain[0]))
    sign_on = setup.simulator.sign_on
    asked = sign_on.request("app_x", context, at=clock.now(), ip="::ffff:10.0.0.1")
    assert asked.device_verified and asked.device_reason is None
    assert asked.certificate is not None and asked.certificate.ca_ids == {setup.ca.id}
    assert sign_on.certificate(context) is asked.certificate  # kept per leaf
    unix = sign_on.request(None, NO_DEVICE, at=clock.now(), ip="unix:/run/cb.sock")
    assert unix.ip is None and unix.device_reason == "NO_CLIENT_CERTIFICATE"
    assert sign_on.request(None, DeviceContext.of(None), at=clock.now()).certificate is None
