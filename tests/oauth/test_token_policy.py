"""The token endpoint's sign-on policy step: the app's policy (or the default) decides after
client authentication; a DENY is access_denied (403) with POLICY_NOT_MATCHED or
POLICY_DENIED; the one app.oauth2.token.grant event carries policyEvaluationDetail; a
known client is still decided offline from the cached compiled policy; the user grants are
decided with the user and their groups; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from certbound.clock import FixedClock
from certbound.directory.apps import Apps, AuthMethod, ClientMetadata, ca_pin
from certbound.directory.groups import Groups
from certbound.directory.users import Users
from certbound.errors import ReasonCode, WouldBlockError
from certbound.oauth.authorization_code import AuthorizationCodes, check_authorize_request
from certbound.oauth.client_auth import ClientAuthenticator, ClientRequest
from certbound.oauth.errors import OAuthError
from certbound.oauth.grants import Grants
from certbound.oauth.keys import SigningKeys
from certbound.oauth.refresh import RefreshTokens
from certbound.oauth.rfc7009 import Revocations
from certbound.oauth.rfc7636 import s256
from certbound.oauth.token_endpoint import TokenEndpoint, TokenSettings, UserGrants
from certbound.pki import devpki
from certbound.pki.certificate import der
from certbound.pki.revocation_policy import Mode, RevocationPolicy
from certbound.pki.truststore import TrustStore
from certbound.pki.validation import Validator
from certbound.policy.model import Action, Conditions, DeviceTrustRequirement
from certbound.policy.simulate import DeviceContext, SignOn
from certbound.policy.store import CompiledPolicies, Policies
from certbound.storage.database import Database
from certbound.storage.models import LogEvent
from certbound.syslog.events import Client
from certbound.syslog.recorder import EventRecorder

ISSUER = "https://auth.example.test"
REDIRECT = "http://127.0.0.1:8765/cb"
VERIFIER = "v" * 43
CA = devpki.ca("Token Policy CA")
DEVICE = devpki.issue("CN=policy-device", CA)
CHAIN = (DEVICE.cert, CA.cert)
MACHINE = {"grant_type": "client_credentials", "client_id": "machine"}
HTTP = Client("192.0.2.10", "pytest")
VERIFIED = Conditions(device_trust=DeviceTrustRequirement.VERIFIED, device_status=("ACTIVE",))


class Setup:
    def __init__(self, database: Database, clock: FixedClock, tmp_path: Path) -> None:
        self.database, self.clock = database, clock
        store = TrustStore(database, clock)
        off = RevocationPolicy(mode=Mode.OFF)
        self.ca = store.add(devpki.pem_bundle([CA]), "policy CA", revocation=off)
        self.apps = Apps(database, clock)
        self.apps.create("machine", ClientMetadata(
            token_endpoint_auth_method=AuthMethod.TLS_CLIENT_AUTH,
            tls_client_auth_subject_dn=DEVICE.cert.subject.rfc4514_string(),
            tls_client_auth_ca_pins=(ca_pin(CA.cert),),
        ), client_id="machine")  # fmt: skip
        self.users = Users(database, clock, PasswordHasher(time_cost=1, memory_cost=1024))
        self.groups = Groups(database, clock)
        self.policies = Policies(database, clock)
        self.recorder = EventRecorder(database, clock, spool_dir=tmp_path / "spool")
        grants = Grants(database, clock, Revocations(database, clock))
        self.codes = AuthorizationCodes(grants, clock)
        user_grants = UserGrants(
            self.codes, RefreshTokens(grants, clock, lifetime=3600), self.users
        )
        self.compiled = CompiledPolicies(database, clock)
        sign_on = SignOn(self.compiled, Validator(store, clock).anchors, self.groups.group_ids_of)
        authenticator = ClientAuthenticator(self.apps, token_endpoint_urls=[ISSUER], clock=clock)
        self.endpoint = TokenEndpoint(
            authenticator, SigningKeys(database, clock, b"k" * 32), self.recorder, clock,
            TokenSettings(ISSUER, 300), user_grants=user_grants, sign_on=sign_on,
        )  # fmt: skip

    def policy(self, *rules: tuple[str, Action, Conditions], app: str = "machine") -> str:
        created = self.policies.create("Machines").after
        assert created is not None
        for name, action, conditions in rules:
            self.policies.add_rule(created.id, name, action, conditions)
        self.policies.assign(created.id, app)
        return created.id

    def token(self, form: dict[str, str], *, status: str = "ACTIVE", **kw: Any) -> Any:
        request = ClientRequest(dict(form), kw.pop("authorization", None), CHAIN,
                                der(DEVICE.cert), None)  # fmt: skip
        context = DeviceContext(status == "ACTIVE", None if status == "ACTIVE" else
                                "DEVICE_SUSPENDED", status, CHAIN, der(DEVICE.cert))  # fmt: skip
        return self.endpoint.handle(request, HTTP, None, device_context=context, **kw)

    def events(self) -> list[dict[str, Any]]:
        assert self.recorder.flush()
        with self.database.session() as session:
            bodies = session.scalars(select(LogEvent.body).order_by(LogEvent.seq)).all()
        return [json.loads(body) for body in bodies]


@pytest.fixture
def setup(database: Database, clock: FixedClock, tmp_path: Path) -> Iterator[Setup]:
    built = Setup(database, clock, tmp_path)
    yield built
    built.recorder.close()


def test_an_allowed_request_carries_the_decision(setup: Setup) -> None:
    policy_id = setup.policy(("Managed devices", Action.ALLOW, VERIFIED))
    answer = setup.token(MACHINE)
    assert answer.policy is not None and answer.policy.matched_rule_name == "Managed devices"
    (event,) = setup.events()  # one event for the request
    assert event["eventType"] == "app.oauth2.token.grant"
    detail = event["policyEvaluationDetail"]
    assert detail["policyId"] == policy_id and detail["decision"] == "ALLOW"
    request = detail["request"]
    assert request["deviceVerified"] is True and request["ip"] == "192.0.2.10"
    assert request["certificate"]["caIds"] == [setup.ca.id]
    assert request["userId"] is None and request["deviceStatus"] == "ACTIVE"


def test_the_catch_all_denies_with_policy_not_matched(setup: Setup) -> None:
    setup.policy(("Managed devices", Action.ALLOW, VERIFIED))
    with pytest.raises(OAuthError) as refused:
        setup.token(MACHINE, status="SUSPENDED")
    error = refused.value
    assert (error.error, error.reason, error.status) == (
        "access_denied", ReasonCode.POLICY_NOT_MATCHED, 403,
    )  # fmt: skip
    assert "Catch-all" in error.description
    (event,) = setup.events()
    assert event["outcome"] == {"result": "FAILURE", "reason": "POLICY_NOT_MATCHED"}
    rules = event["policyEvaluationDetail"]["rules"]
    assert rules[0]["verdict"] == "NOT_MATCHED"
    assert rules[0]["failedConditions"] == ["deviceTrust", "deviceStatus"]


def test_a_deny_rule_is_policy_denied(setup: Setup) -> None:
    by_ca = Conditions.from_dict({"certificate": {"issuerCaIds": [setup.ca.id]}})
    setup.policy(("Block this CA", Action.DENY, by_ca), ("Managed", Action.ALLOW, VERIFIED))
    with pytest.raises(OAuthError) as refused:
        setup.token(MACHINE)
    assert refused.value.reason is ReasonCode.POLICY_DENIED
    (event,) = setup.events()
    assert event["policyEvaluationDetail"]["matchedRuleName"] == "Block this CA"


def test_the_default_policy_allows_and_earlier_refusals_carry_no_decision(setup: Setup) -> None:
    assert setup.token(MACHINE).policy.policy_name == "Default Policy"  # type: ignore[union-attr]
    with pytest.raises(OAuthError) as refused:
        setup.token({**MACHINE, "client_id": "nobody"})
    assert refused.value.reason is ReasonCode.CLIENT_AUTHENTICATION_FAILED
    granted, failed = setup.events()
    assert granted["policyEvaluationDetail"]["policyName"] == "Default Policy"
    assert failed["policyEvaluationDetail"] is None


def test_a_known_client_is_decided_offline(setup: Setup) -> None:
    setup.policy(("Managed devices", Action.ALLOW, VERIFIED))
    setup.token(MACHINE)  # warms the client, key and policy caches
    offline = setup.token(MACHINE, offline=True)
    assert offline.policy is not None and offline.policy.allowed
    with pytest.raises(OAuthError):
        setup.token(MACHINE, status="SUSPENDED", offline=True)
    assert len(setup.events()) == 3
    setup.clock.advance(dt.timedelta(seconds=2))  # the revision poll is due: to a thread
    with pytest.raises(WouldBlockError):
        setup.token(MACHINE, offline=True)
    assert len(setup.events()) == 3  # nothing recorded for it
    setup.token(MACHINE)
    setup.policies.update_rule("Machines", "Catch-all", action=Action.ALLOW)
    with pytest.raises(WouldBlockError):  # changed in this process: reloaded first
        setup.token(MACHINE, status="SUSPENDED", offline=True)
    assert setup.token(MACHINE, status="SUSPENDED").policy.allowed  # type: ignore[union-attr]


def test_the_code_grant_is_left_to_the_login_and_refresh_is_decided_with_the_user(
    setup: Setup,
) -> None:
    """The login page decided the sign-on that issued a code (user and browser device): the
    code is redeemed without a second evaluation, by the app's server. A refresh is a new
    decision, with the grant's user and groups."""
    metadata = ClientMetadata(
        token_endpoint_auth_method=AuthMethod.CLIENT_SECRET_POST,
        grant_types=("authorization_code", "refresh_token"),
        redirect_uris=(REDIRECT,),
        scope="read",
    )
    _app, secret = setup.apps.create("spa", metadata, client_id="spa")
    assert secret is not None
    staff = setup.groups.create("staff")
    alice, bob = setup.users.create("alice"), setup.users.create("bob")
    setup.groups.add_member("staff", "alice")
    in_staff = Conditions.from_dict({"groups": {"anyOf": [staff.id]}})
    setup.policy(("Staff", Action.ALLOW, in_staff), app="spa")

    def redeem(user_id: str) -> Any:
        params = {
            "response_type": "code", "client_id": "spa", "redirect_uri": REDIRECT,
            "code_challenge": s256(VERIFIER), "code_challenge_method": "S256",
        }  # fmt: skip
        checked = check_authorize_request(params, setup.apps)
        code = setup.codes.issue(checked, user_id, setup.clock.now())
        form = {"grant_type": "authorization_code", "client_id": "spa", "code": code,
                "redirect_uri": REDIRECT, "code_verifier": VERIFIER,
                "client_secret": secret}  # fmt: skip
        return setup.endpoint.handle(ClientRequest(form, None, None, None, None), HTTP, None)

    def refresh(token: str) -> Any:
        form = {"grant_type": "refresh_token", "client_id": "spa", "refresh_token": token,
                "client_secret": secret}  # fmt: skip
        return setup.endpoint.handle(ClientRequest(form, None, None, None, None), HTTP, None)

    for_alice, for_bob = redeem(alice.id), redeem(bob.id)
    assert for_alice.policy is None and for_bob.policy is None
    allowed = refresh(for_alice.refresh_token)
    assert allowed.policy.request.user_id == alice.id
    assert allowed.policy.request.group_ids == {staff.id}
    with pytest.raises(OAuthError) as refused:
        refresh(for_bob.refresh_token)
    assert refused.value.reason is ReasonCode.POLICY_NOT_MATCHED
    *_codes, granted, failed = setup.events()
    assert granted["policyEvaluationDetail"]["request"]["userId"] == alice.id
    assert failed["policyEvaluationDetail"]["request"]["userId"] == bob.id
