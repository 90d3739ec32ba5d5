"""The audit check every admin API test ends with (``api`` in conftest.py) finds secret
material in an event: a token, the SHA-256 stored for it, a client secret, a password, a
private key, an argon2 hash. A planted event shows the check fails, then is removed."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import delete

from certbound.admin.roles import Role
from certbound.admin.tokens import split_token
from certbound.storage.models import LogEvent
from certbound.syslog.events import Event, EventType, Outcome, Result


def leak(text: str) -> Event:
    return Event(
        EventType.SYSTEM_LOG_PURGE, "planted", Outcome(Result.SUCCESS), debug_data={"x": text}
    )


def planted(api: Any, text: str, audit: Callable[[Any], None]) -> None:
    """Plant an event holding ``text``; the check must fail; then take it out again."""
    event = api.app.state.recorder.record(leak(text))
    with pytest.raises(AssertionError):
        audit(api)
    with api.database.session() as session:
        session.execute(delete(LogEvent).where(LogEvent.uuid == event.uuid))
    audit(api)


def test_the_check_finds_every_kind_of_secret(api: Any, audit: Callable[[Any], None]) -> None:
    made = api.call(Role.SUPER_ADMIN, "POST", "/api/v1/tokens", json={"name": "x"}).json()
    secret = split_token(made["token"])[1]
    app = api.call(
        Role.SUPER_ADMIN,
        "POST",
        "/api/v1/apps",
        json={"name": "a", "metadata": {"token_endpoint_auth_method": "client_secret_post"}},
    ).json()
    password = "a long enough password"
    assert (
        api.call(
            Role.SUPER_ADMIN, "POST", "/api/v1/users", json={"username": "u", "password": password}
        ).status_code
        == 201
    )
    audit(api)
    for text in (
        made["token"],
        hashlib.sha256(secret.encode()).hexdigest(),
        app["clientSecret"],
        password,
        "-----BEGIN PRIVATE KEY-----",
        "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
    ):
        planted(api, text, audit)
