"""What the admin API tests share: the real app under uvicorn with one admin and token per
role, a client that remembers every secret it sends or is answered, and the audit check.

``api`` starts the app (``tests/web/conftest.py``: both databases, a fixed clock), makes an
admin of every role with two tokens (``token``, used by the tests, and ``spare``), and at
the end of the test scans every System Log event the test produced for secret material: any
token, client secret or password the test saw, a secret's SHA-256 (what is stored), a PEM
private key, an argon2 hash. So every test that uses ``api`` checks that its admin calls
left no secret in the log.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography import x509
from sqlalchemy import select
from starlette.applications import Starlette

from certbound.admin.admins import Admin, Admins
from certbound.admin.roles import Role
from certbound.admin.tokens import ApiTokens, split_token
from certbound.clock import FixedClock
from certbound.devices.registry import Device
from certbound.pki import devpki
from certbound.pki.certificate import der
from certbound.storage.database import Database
from certbound.storage.models import LogEvent

PROBLEM = "application/problem+json"
# Text no event may hold, whatever the test did.
MARKERS = ("PRIVATE KEY", "$argon2")


@dataclass
class Api:
    """The live app, its admins and tokens, and the secrets seen so far."""

    url: str
    app: Starlette
    database: Database
    admins: dict[Role, Admin]
    tokens: dict[Role, str]
    spares: dict[Role, str]
    secrets: set[str] = field(default_factory=set)

    def headers(self, role: Role | None) -> dict[str, str]:
        return {} if role is None else {"Authorization": f"Bearer {self.tokens[role]}"}

    def call(self, role: Role | None, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request as ``role``'s admin (None: without a token); secrets it carries or
        receives are remembered for the audit check."""
        headers = {**self.headers(role), **kwargs.pop("headers", {})}
        self.remember(kwargs.get("json"))
        response = httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)
        if response.headers.get("content-type", "").startswith("application/json"):
            self.remember(response.json())
        return response

    def remember(self, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ("token", "clientSecret", "password") and isinstance(item, str):
                    self.secrets.add(item)
                self.remember(item)
        elif isinstance(value, list):
            for item in value:
                self.remember(item)

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        """The recorded events (of one type), oldest first, once the recorder wrote them."""
        assert self.app.state.recorder.flush(), "the recorder did not flush"
        query = select(LogEvent.body).order_by(LogEvent.seq)
        if event_type is not None:
            query = query.where(LogEvent.event_type == event_type)
        with self.database.session() as session:
            return [json.loads(body) for body in session.scalars(query)]

    def device(self, cert: x509.Certificate) -> Device:
        """Register a device as the mTLS path would."""
        registry = self.app.state.device_trust.registry
        device: Device = registry.observe(cert, der(cert))
        return device


def forbidden_material(secret: str) -> list[str]:
    """What an event must not hold for this secret: it, and its stored hash."""
    found = [secret]
    try:
        found.append(hashlib.sha256(split_token(secret)[1].encode()).hexdigest())
    except Exception:  # not an API token: a password or client secret
        found.append(hashlib.sha256(secret.encode()).hexdigest())
    return found


def assert_no_secrets(api: Api) -> None:
    bodies = [json.dumps(event) for event in api.events()]
    for body in bodies:
        for marker in MARKERS:
            assert marker not in body, f"{marker!r} in an event: {body[:500]}"
        for secret in api.secrets:
            for material in forbidden_material(secret):
                assert material not in body, f"secret material in an event: {body[:500]}"


@pytest.fixture
def audit() -> Callable[[Api], None]:
    """The check every ``api`` test ends with: no secret material in any event."""
    return assert_no_secrets


@pytest.fixture
def api(
    live: Callable[..., Any], app: Starlette, database: Database, clock: FixedClock
) -> Iterator[Api]:
    admins, tokens = Admins(database, clock), ApiTokens(database, clock)
    made = {role: admins.create(f"{role.value.lower()}-admin", role) for role in Role}
    main = {role: tokens.create("tests", role.value, admin=made[role].id)[0] for role in Role}
    spare = {role: tokens.create("spare", role.value, admin=made[role].id)[0] for role in Role}
    server = live(app)
    client = Api(server.url, app, database, made, main, spare)
    client.secrets.update(main.values(), spare.values())
    yield client
    assert_no_secrets(client)


@pytest.fixture(scope="session")
def dev_pki() -> devpki.DevPKI:
    return devpki.build_dev_pki()


@pytest.fixture
def chain_pem(dev_pki: devpki.DevPKI) -> bytes:
    return devpki.pem_bundle([dev_pki.intermediate, dev_pki.root])


Refused = Callable[[httpx.Response, int, str | None], dict[str, Any]]


def _refused(response: httpx.Response, status: int, reason: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM, response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["reason"] == reason, body
    assert body["detail"], body
    return body


@pytest.fixture
def refused() -> Refused:
    """``refused(response, status, reason)``: the problem+json body of a refusal, checked."""
    return _refused
