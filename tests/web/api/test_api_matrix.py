"""The permission matrix of docs/roles.md against the running app: every route the router
has (not the doc's list), with a token of every role and without one.

An ``allow`` cell must not answer 401 or 403, a ``deny`` cell must answer 403
``FORBIDDEN_ROLE`` and leave an ``admin.access.deny`` event, a ``public`` cell must never be
refused for its role; every admin route without a token is a 401. A route with no row in
the doc fails, and so does a row no route has, or a row that differs from the code's table.
Every route that changes something must succeed at least once in the walk and leave an
event stamped with the admin's token.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from certbound.admin.admins import Admins
from certbound.admin.roles import Role
from certbound.admin.tokens import split_token
from certbound.clock import FixedClock
from certbound.directory.apps import Apps, AuthMethod, ClientMetadata
from certbound.directory.groups import Groups
from certbound.directory.users import Users
from certbound.pki import devpki
from certbound.pki.truststore import TrustStore
from certbound.policy.model import Action, Conditions
from certbound.policy.store import Policies, Zones
from certbound.storage.database import Database
from certbound.web.api import ALLOW, DENY, OPERATIONS, PUBLIC, matrix

DOC = Path(__file__).resolve().parents[3] / "docs" / "roles.md"
_ROW = re.compile(r"^\| `([A-Z]+ /[^`]*)` \|(.*)\|\s*$")


def doc_matrix(text: str) -> dict[str, dict[Role, str]]:
    """The table under ``## The matrix``: route -> role -> allow/deny/public."""
    section = text.split("## The matrix", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[0] == "route", header
    roles = [Role(name) for name in header[1:]]
    assert set(roles) == set(Role), "the matrix needs one column per role"
    rows: dict[str, dict[Role, str]] = {}
    for line in lines[2:]:
        match = _ROW.match(line)
        assert match, f"not a route row: {line!r}"
        cells = [cell.strip() for cell in match.group(2).split("|")]
        assert match.group(1) not in rows, f"{match.group(1)} has two rows"
        assert set(cells) <= {ALLOW, DENY, PUBLIC}, line
        rows[match.group(1)] = dict(zip(roles, cells, strict=True))
    return rows


def router_routes(app: Starlette) -> set[str]:
    """Every ``METHOD /path`` the app's router serves (HEAD is GET's)."""
    keys = set()
    for route in app.routes:
        assert isinstance(route, Route), route
        for method in (route.methods or set()) - {"HEAD"}:
            keys.add(f"{method} {route.path}")
    return keys


@pytest.fixture(scope="module")
def documented() -> dict[str, dict[Role, str]]:
    return doc_matrix(DOC.read_text(encoding="utf-8"))


def test_the_doc_is_the_codes_table(documented: dict[str, dict[Role, str]]) -> None:
    assert documented == matrix()


def test_every_route_of_the_app_has_a_row_and_every_row_a_route(
    app: Starlette, documented: dict[str, dict[Role, str]]
) -> None:
    served = router_routes(app)
    assert served - set(documented) == set(), "routes without a row in docs/roles.md"
    assert set(documented) - served == set(), "rows of docs/roles.md without a route"


def test_the_parser_catches_a_missing_row_and_a_wrong_cell(
    app: Starlette, documented: dict[str, dict[Role, str]]
) -> None:
    text = DOC.read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if "`POST /api/v1/trust/cas`" in line)
    missing = doc_matrix(text.replace(row + "\n", ""))
    assert router_routes(app) - set(missing) == {"POST /api/v1/trust/cas"}
    flipped = doc_matrix(text.replace(row, row.replace("deny", "allow")))
    assert flipped != matrix()


class Objects:
    """One object of every kind, so each ``{param}`` names something real."""

    def __init__(self, api: Any, database: Database, clock: FixedClock, pki: Any) -> None:
        chain = devpki.pem_bundle([pki.intermediate, pki.root])
        self.ca = TrustStore(database, clock).add(chain).id
        policies = Policies(database, clock)
        self.policy = policies.create("matrix policy").after.id  # type: ignore[union-attr]
        change = policies.add_rule(self.policy, "matrix rule", Action.ALLOW, Conditions())
        self.rule = change.rule.id  # type: ignore[union-attr]
        meta = ClientMetadata(token_endpoint_auth_method=AuthMethod.CLIENT_SECRET_BASIC)
        self.app = Apps(database, clock).create("matrix app", meta)[0].id
        self.user = Users(database, clock).create("matrix-user").id
        self.group = Groups(database, clock).create("matrix-group").id
        self.device = api.device(pki.devices["good"].cert).id
        self.victim = Admins(database, clock).create("victim", Role.READ_ONLY_ADMIN).id
        zone = Zones(database, clock).create("matrix zone", ["192.0.2.0/24"]).after
        self.zone = zone.id  # type: ignore[union-attr]
        self.spares = {role: split_token(token)[0] for role, token in api.spares.items()}

    def pem(self, role: Role) -> str:
        """A CA chain no one uploaded yet (each role's upload is a new root)."""
        return devpki.ca(f"Matrix Root {role.value}").cert_pem().decode()

    def fill(self, path: str, role: Role) -> str:
        ids = {
            "cas": self.ca,
            "policies": self.policy,
            "apps": self.app,
            "users": self.user,
            "groups": self.group,
            "devices": self.device,
            "admins": self.victim,
            "tokens": self.spares[role],
            "zones": self.zone,
        }
        segments = path.split("/")
        for i, segment in enumerate(segments):
            if segment == "{id}":
                segments[i] = ids[segments[i - 1]]
        filled = "/".join(segments)
        filled = filled.replace("{ruleId}", self.rule).replace("{appId}", self.app)
        return filled.replace("{userId}", self.user)


def walk_order(key: str) -> tuple[bool, bool, int, str]:
    """Deactivations, then deletions (the deepest paths first) last, so that the objects
    exist and are active for every other route."""
    method, path = key.split(" ", 1)
    deleting = method == "DELETE"
    return deleting, key.endswith("/deactivate"), -path.count("/") if deleting else 0, key


def body(key: str, role: Role, pem: str) -> dict[str, Any] | None:
    """A body the route accepts (``{}`` for the other JSON routes, refused with a 400)."""
    name = f"{role.value.lower()}-{zlib.crc32(key.encode())}"
    bodies: dict[str, dict[str, Any]] = {
        "POST /api/v1/users": {"username": name},
        "POST /api/v1/groups": {"name": name},
        "POST /api/v1/policies": {"name": name},
        "POST /api/v1/admins": {"username": name, "role": "READ_ONLY_ADMIN"},
        "PUT /api/v1/admins/{id}/role": {"role": "READ_ONLY_ADMIN"},
        "POST /api/v1/tokens": {"name": name, "role": "READ_ONLY_ADMIN"},
        "POST /api/v1/policies/{id}/rules": {"name": name, "action": "DENY"},
        "POST /api/v1/policies/{id}/rules/{ruleId}/move": {"priority": 1},
        "PUT /api/v1/trust/cas/{id}/revocation": {"mode": "off"},
        "POST /api/v1/apps": {"name": name, "metadata": SECRET_APP},
        "POST /api/v1/trust/cas": {"pem": pem, "name": name},
        "PATCH /api/v1/apps/{id}": {"name": name},
        "PATCH /api/v1/users/{id}": {"email": f"{name}@example.com"},
        "PATCH /api/v1/policies/{id}": {"description": name},
        "PATCH /api/v1/policies/{id}/rules/{ruleId}": {"name": name},
        "POST /api/v1/zones": {"name": name, "cidrs": ["198.51.100.0/24"]},
        "PUT /api/v1/zones/{id}": {"name": name, "cidrs": ["203.0.113.0/24"]},
    }
    method = key.split(" ", 1)[0]
    if key in bodies:
        return bodies[key]
    return {} if method in ("POST", "PUT", "PATCH") and key.startswith(f"{method} /api/") else None


@pytest.fixture
def objects(api: Any, database: Database, clock: FixedClock, dev_pki: Any) -> Objects:
    return Objects(api, database, clock, dev_pki)


def test_every_route_against_every_role(
    api: Any, app: Starlette, objects: Objects, documented: dict[str, dict[Role, str]]
) -> None:
    denied: Counter[tuple[str, str]] = Counter()
    changed: set[str] = set()  # the routes that changed something (a 2xx to POST/PUT/...)
    for key in sorted(router_routes(app), key=walk_order):
        method, path = key.split(" ", 1)
        for role in Role:
            verdict = documented[key][role]
            sent = body(key, role, objects.pem(role))
            kwargs: dict[str, Any] = {} if sent is None else {"json": sent}
            response = api.call(role, method, objects.fill(path, role), **kwargs)
            reason = _reason(response)
            where = f"{key} as {role.value}: {response.status_code} {response.text[:300]}"
            if verdict == DENY:
                assert (response.status_code, reason) == (403, "FORBIDDEN_ROLE"), where
                denied[(key, role.value)] += 1
            elif verdict == ALLOW:
                assert response.status_code not in (401, 403), where
                if method != "GET" and response.is_success:
                    changed.add(key)
            else:
                assert reason not in ("FORBIDDEN_ROLE", "AUTHENTICATION_REQUIRED"), where
        if documented[key][Role.SUPER_ADMIN] != PUBLIC:
            anonymous = api.call(None, method, objects.fill(path, Role.SUPER_ADMIN))
            assert anonymous.status_code == 401, f"{key} without a token: {anonymous.text}"
            assert _reason(anonymous) == "AUTHENTICATION_REQUIRED"
    logged = Counter(
        (event["debugContext"]["debugData"]["route"], event["debugContext"]["debugData"]["role"])
        for event in api.events("admin.access.deny")
    )
    assert logged == denied
    assert sum(denied.values()) > 50
    audited = {
        event["debugContext"]["debugData"].get("route")
        for event in api.events()
        if event["authenticationContext"] and event["outcome"]["result"] == "SUCCESS"
    }
    changes = changed - {"POST /api/v1/policies/simulate"}  # a read: it changes nothing
    assert changes - audited == set(), "changes made over the API without an event"
    assert changes == CHANGES, "every change route was walked with a 2xx at least once"


SECRET_APP = {"token_endpoint_auth_method": "client_secret_basic"}
# Every route of the API package that changes something: each must succeed in the walk.
CHANGES = frozenset(op.key for op in OPERATIONS if op.method != "GET" and op.handler is not None)


def _reason(response: Any) -> str | None:
    if response.headers.get("content-type") != "application/problem+json":
        return None
    reason: str | None = response.json().get("reason")
    return reason
