"""Schemathesis against the ASGI app, from its own ``/api/v1/openapi.json``, on both
databases: every operation gets valid (positive) and invalid (negative: wrong types,
missing fields, no token...) requests from a deterministic run, as a SUPER_ADMIN, and no
answer may be a 5xx. Bounded: :data:`EXAMPLES` requests per operation and mode."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi
from starlette.applications import Starlette

from certbound.admin.admins import Admins
from certbound.admin.roles import Role
from certbound.admin.tokens import ApiTokens
from certbound.clock import FixedClock
from certbound.storage.database import Database

pytestmark = pytest.mark.slow
EXAMPLES = 8
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


@pytest.fixture
def schema(app: Starlette) -> Iterator[Any]:
    """The schema as the app serves it; the app's lifespan (which schemathesis starts) is
    stopped at the end."""
    try:
        yield schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    finally:
        asgi.shutdown_lifespans()


def fuzz(operation: Any, mode: GenerationMode, headers: dict[str, str]) -> list[str]:
    """The 5xx answers of one operation in one mode."""
    failures: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    @given(operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call(headers=headers)
        if response.status_code >= 500:
            failures.append(f"{operation.label} ({mode.value}): {response.status_code} "
                            f"{response.text[:300]} for {case.as_curl_command()}")  # fmt: skip

    with contextlib.suppress(Unsatisfiable):  # nothing to make invalid: no parameter, no body
        run()
    return failures


def test_no_operation_answers_5xx(schema: Any, database: Database, clock: FixedClock) -> None:
    admin = Admins(database, clock).create("fuzzer", Role.SUPER_ADMIN)
    token, _ = ApiTokens(database, clock).create("fuzz", Role.SUPER_ADMIN.value, admin=admin.id)
    headers = {"Authorization": f"Bearer {token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 50
    failures = [
        failure for operation in operations for mode in MODES
        for failure in fuzz(operation, mode, headers)
    ]  # fmt: skip
    assert failures == []
