"""``POST /api/v1/policies/simulate`` over a real uvicorn server: the admin token, JSON in
and out, problem+json refusals, drafts and times; and the proof that a simulation decides
as the live token endpoint does for the same certificate (a trusted, an untrusted and a
suspended device, presented through a trusted proxy's header), recording nothing itself;
on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import func, select

from certbound.clock import FixedClock
from certbound.config import Settings
from certbound.devices.mapping import MappingRules
from certbound.devices.registry import DeviceRegistry
from certbound.directory.apps import Apps, AuthMethod, ClientMetadata
from certbound.pki import devpki
from certbound.pki.certificate import der
from certbound.pki.revocation_policy import Mode, RevocationPolicy
from certbound.pki.truststore import TrustStore
from certbound.policy.model import Action, Conditions, DeviceTrustRequirement
from certbound.policy.store import Policies
from certbound.storage.database import Database
from certbound.storage.models import LogEvent
from certbound.web.app import create_app

PKI = devpki.build_dev_pki()
MANAGED = Conditions(device_trust=DeviceTrustRequirement.VERIFIED, device_status=("ACTIVE",))
SIMULATE = "/api/v1/policies/simulate"


def header(name: str) -> str:
    """The device's certificate as an RFC 9440 Client-Cert header."""
    return ":" + base64.b64encode(PKI.devices[name].cert.public_bytes(Encoding.DER)).decode() + ":"


@dataclasses.dataclass
class Server:
    url: str
    secret: str
    policy_id: str


@pytest.fixture
def server(
    settings: Settings, database: Database, clock: FixedClock, live: Callable[..., Any]
) -> Server:
    store = TrustStore(database, clock)
    off = RevocationPolicy(mode=Mode.OFF)
    store.add(devpki.pem_bundle([PKI.intermediate, PKI.root]), "dev", revocation=off)
    metadata = ClientMetadata(token_endpoint_auth_method=AuthMethod.CLIENT_SECRET_BASIC)
    _, secret = Apps(database, clock).create("web", metadata, client_id="web")
    assert secret is not None
    policies = Policies(database, clock)
    created = policies.create("Managed").after
    assert created is not None
    policies.add_rule(created.id, "Managed devices", Action.ALLOW, MANAGED)
    policies.assign(created.id, "web")
    registry = DeviceRegistry(database, clock, MappingRules.parse([]))
    leaf = PKI.devices["cn-only"].cert
    registry.suspend(registry.observe(leaf, der(leaf)).id)
    app = create_app(
        dataclasses.replace(settings, trusted_proxies=("127.0.0.1/32",)),
        database=database,
        clock=clock,
    )
    return Server(live(app, proxy_headers=False).url, secret, created.id)


def count_events(database: Database) -> int:
    with database.session() as session:
        return int(session.scalar(select(func.count()).select_from(LogEvent)) or 0)


def live_token(server: Server, database: Database, device: str) -> tuple[int, dict[str, Any]]:
    """A token request with the device's certificate: the status and its event."""
    before = count_events(database)
    response = httpx.post(
        f"{server.url}/oauth2/v1/token",
        data={"grant_type": "client_credentials"},
        auth=("web", server.secret),
        headers={"Client-Cert": header(device)},
        timeout=10,
    )
    deadline = time.monotonic() + 10
    while count_events(database) == before:
        assert time.monotonic() < deadline, "the token request was not logged"
        time.sleep(0.05)
    with database.session() as session:
        body = session.scalars(select(LogEvent.body).order_by(LogEvent.seq.desc())).first()
    assert body is not None
    return response.status_code, json.loads(body)


@pytest.mark.parametrize(
    "case",
    [
        ("good", 200, "ALLOW", None),
        ("foreign", 403, "DENY", "UNKNOWN_CA"),
        ("cn-only", 403, "DENY", "DEVICE_SUSPENDED"),
    ],
)
def test_a_simulation_decides_as_the_token_endpoint(
    server: Server, database: Database, token: str, case: tuple[str, int, str, str | None]
) -> None:
    device, status, decision, device_reason = case
    got, event = live_token(server, database, device)
    assert got == status and event["eventType"] == "app.oauth2.token.grant"
    live = event["policyEvaluationDetail"]
    events = count_events(database)
    simulated = httpx.post(
        f"{server.url}{SIMULATE}",
        json={"app": "web", "certificate": PKI.devices[device].cert_pem().decode()},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert simulated.status_code == 200, simulated.text
    answer = simulated.json()
    assert answer["decision"] == live["decision"] == decision
    assert answer["reason"] == live["reason"]
    detail = answer["policyEvaluationDetail"]
    assert detail["matchedRuleId"] == live["matchedRuleId"]
    assert [r["verdict"] for r in detail["rules"]] == [r["verdict"] for r in live["rules"]]
    assert detail["request"]["deviceReason"] == live["request"]["deviceReason"] == device_reason
    assert detail["request"]["certificate"] == live["request"]["certificate"]
    assert answer["deviceTrust"]["reason"] == device_reason
    time.sleep(0.1)  # the recorder writes within its linger: a simulation's event would be in
    assert count_events(database) == events


def test_the_route_needs_an_admin_token(server: Server) -> None:
    response = httpx.post(f"{server.url}{SIMULATE}", json={"app": "web"}, timeout=10)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["reason"] == "AUTHENTICATION_REQUIRED"


def test_answers_and_refusals(server: Server, token: str) -> None:
    def ask(body: Any) -> httpx.Response:
        return httpx.post(
            f"{server.url}{SIMULATE}",
            content=body if isinstance(body, bytes) else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=10,
        )

    bare = ask({"app": "web", "ip": "192.0.2.1", "at": "2030-01-01T00:00:00Z"})
    assert bare.status_code == 200 and bare.headers["cache-control"] == "no-store"
    request = bare.json()["policyEvaluationDetail"]["request"]
    assert request["ip"] == "192.0.2.1" and request["at"] == "2030-01-01T00:00:00Z"
    assert bare.json()["reason"] == "POLICY_NOT_MATCHED"
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
        policy = client.post(f"{server.url}{SIMULATE}", json={"app": "web"}).json()
    draft = {
        "id": server.policy_id, "name": "Draft", "rules": [
            {"id": "rul_open", "name": "Open", "action": "ALLOW", "catchAll": True}
        ],
    }  # fmt: skip
    opened = ask({"app": "web", "policy": draft}).json()
    assert (
        opened["decision"] == "ALLOW" and opened["policyEvaluationDetail"]["policyName"] == "Draft"
    )
    assert policy["decision"] == "DENY"
    for body, status, reason, named in (
        (b"{", 400, "POLICY_INVALID", "(body)"),
        ([1], 400, "POLICY_INVALID", "(body)"),
        ({"app": "web", "colour": "red"}, 400, "POLICY_INVALID", "colour"),
        ({}, 400, "POLICY_INVALID", "app"),
        ({"app": "web", "at": "yesterday"}, 400, "POLICY_INVALID", "at"),
        ({"app": "web", "ip": "10.0.0.999"}, 400, "POLICY_INVALID", "ip"),
        ({"app": "web", "certificate": "not a pem"}, 400, "PEM_MALFORMED", ""),
        ({"app": "web", "policy": {"id": "pol_x"}}, 400, "POLICY_INVALID", "policy.name"),
        ({"app": "nobody"}, 404, "APP_NOT_FOUND", "nobody"),
        ({"app": "web", "user": "nobody"}, 404, "USER_NOT_FOUND", "nobody"),
        ({"app": "we\u0000b"}, 400, "POLICY_INVALID", "app"),
        ({"app": "web", "user": "x" * 300}, 400, "POLICY_INVALID", "user"),
    ):
        response = ask(body)
        assert response.status_code == status, (body, response.text)
        problem = response.json()
        assert problem["reason"] == reason and named in problem["detail"], problem
        assert response.headers["content-type"] == "application/problem+json"
