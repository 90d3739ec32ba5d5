"""The app over a real uvicorn server: health, readiness, bearer auth and problem+json errors."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette

from certbound.admin.tokens import ApiTokens
from certbound.clock import FixedClock
from certbound.config import Settings
from certbound.errors import ReasonCode
from certbound.storage.database import Database
from certbound.storage.models import LogEvent
from certbound.syslog.events import Event, EventType, Outcome, Result
from certbound.web.app import create_app

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, reason: ReasonCode | None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["reason"] == (reason.value if reason else None)
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["title"], str) and body["title"]
    if reason is not None:
        assert body["type"] == f"urn:certbound:reason:{reason.value}"
        assert body["title"] == reason.meaning and body["fix"] == reason.fix
    return body


def test_healthz_and_readyz(base_url: str) -> None:
    assert httpx.get(f"{base_url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{base_url}/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


def test_readyz_is_503_when_the_database_is_unreachable(
    live: Any, settings: Settings, clock: FixedClock
) -> None:
    unreachable = Database("postgresql://nobody@127.0.0.1:1/none")
    base = live(create_app(settings, database=unreachable, clock=clock)).url
    assert httpx.get(f"{base}/healthz").status_code == 200
    assert_problem(httpx.get(f"{base}/readyz"), 503, None)
    headers = {"Authorization": f"Bearer cb_{'0' * 16}_{'1' * 64}"}
    response = httpx.get(f"{base}/api/v1/logs", headers=headers)
    assert "database is unavailable" in assert_problem(response, 503, None)["detail"]
    assert response.headers["retry-after"] == "5"


def test_no_token_is_401_authentication_required(base_url: str) -> None:
    response = httpx.get(f"{base_url}/api/v1/logs")
    body = assert_problem(response, 401, ReasonCode.AUTHENTICATION_REQUIRED)
    assert response.headers["www-authenticate"] == 'Bearer realm="certbound"'
    assert "Authorization: Bearer" in body["detail"]


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "token abc", "Bearertoken"])
def test_other_schemes_are_401_authentication_required(base_url: str, header: str) -> None:
    response = httpx.get(f"{base_url}/api/v1/logs", headers={"Authorization": header})
    assert_problem(response, 401, ReasonCode.AUTHENTICATION_REQUIRED)
    assert response.headers["www-authenticate"].startswith("Bearer")


def _refused(base_url: str, token: str) -> dict:
    response = httpx.get(f"{base_url}/api/v1/logs", headers={"Authorization": f"Bearer {token}"})
    body = assert_problem(response, 401, ReasonCode.INVALID_TOKEN)
    assert response.headers["www-authenticate"] == (
        'Bearer realm="certbound", error="invalid_token"'
    )
    return body


def test_bad_tokens_are_401_invalid_token_with_the_reason(
    base_url: str, tokens: ApiTokens, token: str, clock: FixedClock
) -> None:
    assert "malformed" in _refused(base_url, "not-a-token")["detail"]
    wrong = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert _refused(base_url, wrong)["detail"] == "unknown API token"

    short, info = tokens.create("short", expires_in=dt.timedelta(hours=1))
    clock.advance(dt.timedelta(hours=1))
    assert f"{info.id} expired at" in _refused(base_url, short)["detail"]

    _, active = tokens.create("to revoke")
    leaked, leaked_info = tokens.create("leaked")
    tokens.revoke(leaked_info.id)
    assert f"{leaked_info.id} was revoked" in _refused(base_url, leaked)["detail"]
    assert active.revoked_at is None


def test_a_valid_token_is_accepted_and_its_use_recorded(
    base_url: str, tokens: ApiTokens, token: str, clock: FixedClock
) -> None:
    headers = {"Authorization": f"bearer {token}"}  # the scheme is case-insensitive
    response = httpx.get(f"{base_url}/api/v1/logs", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == []
    (info,) = tokens.list()
    assert info.last_used_at == clock.now()


def test_unknown_route_and_method_are_problems(base_url: str, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    assert_problem(httpx.get(f"{base_url}/api/v1/nope", headers=headers), 404, None)
    response = httpx.post(f"{base_url}/api/v1/logs", headers=headers)
    assert_problem(response, 405, None)
    assert "GET" in response.headers["allow"]


def test_the_app_owns_a_recorder_closed_at_shutdown(
    live: Any, app: Starlette, database: Database, clock: FixedClock
) -> None:
    server = live(app)
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    event = Event(EventType.SYSTEM_LOG_PURGE, "recorded by the app", Outcome(Result.SUCCESS))
    app.state.recorder.record(event)
    # Stopping the server runs the lifespan's exit, which flushes and closes the recorder.
    server.stop()
    with database.session() as session:
        stored = session.scalars(select(LogEvent.uuid)).all()
    assert stored == [event.uuid]
    assert app.state.recorder.stats.written == 1


def test_without_a_database_the_app_opens_and_migrates_its_own(
    live: Any, tmp_path: Path, clock: FixedClock
) -> None:
    url = f"sqlite:///{tmp_path / 'own.db'}"
    settings = Settings(data_dir=tmp_path / "data", database_url=url)
    base = live(create_app(settings, clock=clock)).url
    assert httpx.get(f"{base}/readyz").status_code == 200
    secret, _ = ApiTokens(Database(url), clock).create("own")
    response = httpx.get(f"{base}/api/v1/logs", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200 and response.json() == []


def test_the_retention_job_purges_old_events(
    live: Any, settings: Settings, database: Database, clock: FixedClock, seed: Any
) -> None:
    old = Event(
        EventType.SYSTEM_API_TOKEN_CREATE,
        "long ago",
        Outcome(Result.SUCCESS),
        published=clock.now() - dt.timedelta(days=settings.log_retention_days + 1),
    )
    young = Event(
        EventType.SYSTEM_API_TOKEN_CREATE,
        "yesterday",
        Outcome(Result.SUCCESS),
        published=clock.now() - dt.timedelta(days=1),
    )
    seed([old, young])
    live(create_app(settings, database=database, clock=clock, retention_interval=0.2))
    deadline = time.monotonic() + 10
    while True:
        with database.session() as session:
            rows = session.execute(
                select(LogEvent.uuid, LogEvent.event_type).order_by(LogEvent.seq)
            ).all()
        if old.uuid not in {row.uuid for row in rows}:
            break
        assert time.monotonic() < deadline, rows
        time.sleep(0.05)
    assert rows[0].uuid == young.uuid
    assert {row.event_type for row in rows[1:]} == {"system.log.purge"}
