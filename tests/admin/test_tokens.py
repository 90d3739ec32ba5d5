"""Admin API tokens: shown once, hashed at rest, expiry, revocation, last use; both databases."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from sqlalchemy import select

from certbound.admin.admins import Admins
from certbound.admin.roles import Role
from certbound.admin.tokens import (
    LAST_USED_GRANULARITY,
    ApiTokens,
    AuthError,
    TokenInfo,
    TokenNotFoundError,
    split_token,
)
from certbound.clock import FixedClock
from certbound.errors import CertboundError, ReasonCode
from certbound.storage.database import Database
from certbound.storage.models import ApiToken
from certbound.syslog.events import CLI_ACTOR, Event, EventType, Result


class Recorded:
    """Stands in for the EventRecorder: keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def record(self, event: Event) -> Event:
        self.events.append(event)
        return event


@pytest.fixture
def recorded() -> Recorded:
    return Recorded()


@pytest.fixture
def tokens(database: Database, clock: FixedClock, recorded: Recorded) -> ApiTokens:
    return ApiTokens(database, clock, recorder=recorded)


def stored(database: Database, token_id: str) -> ApiToken:
    with database.session() as session:
        row = session.get(ApiToken, token_id)
        assert row is not None
        return row


def test_create_returns_the_token_once_and_stores_only_its_hash(
    tokens: ApiTokens, database: Database, now: dt.datetime
) -> None:
    token, info = tokens.create("ci pipeline")
    token_id, secret = split_token(token)
    assert token == f"cb_{token_id}_{secret}" and info.id == token_id
    assert (info.name, info.role, info.created_at) == ("ci pipeline", "SUPER_ADMIN", now)
    assert info.expires_at is None and info.last_used_at is None and info.revoked_at is None
    row = stored(database, token_id)
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    with database.session() as session:
        columns = [list(vars(r).values()) for r in session.scalars(select(ApiToken))]
    assert not any(secret in str(value) for value in columns[0])
    assert "secret" not in repr(info)


def test_authenticate_accepts_the_token(tokens: ApiTokens) -> None:
    token, info = tokens.create("reader", role="READ_ONLY_ADMIN")
    assert tokens.authenticate(token).id == info.id
    assert tokens.authenticate(f"  {token}\n").role == "READ_ONLY_ADMIN"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("0" if t[-1] != "0" else "1"),  # wrong secret
        lambda t: "cb_" + "f" * 16 + t[19:],  # unknown id
        lambda t: t[:-1],  # truncated
        lambda t: t.upper(),
        lambda t: "Bearer " + t,
        lambda _t: "",
        lambda t: t.replace("cb_", "xx_"),
    ],
)
def test_authenticate_refuses_altered_tokens(tokens: ApiTokens, mangle: object) -> None:
    token, _ = tokens.create("x")
    assert callable(mangle)
    with pytest.raises(AuthError) as caught:
        tokens.authenticate(mangle(token))
    assert caught.value.reason is ReasonCode.INVALID_TOKEN


def test_wrong_secret_and_unknown_id_read_alike(tokens: ApiTokens) -> None:
    token, _ = tokens.create("x")
    details = set()
    for candidate in (
        token[:-1] + ("0" if token[-1] != "0" else "1"),
        "cb_" + "a" * 16 + token[19:],
    ):
        with pytest.raises(AuthError) as caught:
            tokens.authenticate(candidate)
        details.add(caught.value.detail)
    assert details == {"unknown API token"}


def test_expired_token_is_refused(tokens: ApiTokens, clock: FixedClock) -> None:
    token, info = tokens.create("short", expires_in=dt.timedelta(days=1))
    assert info.expires_at == clock.now() + dt.timedelta(days=1)
    clock.advance(dt.timedelta(hours=23))
    tokens.authenticate(token)
    clock.advance(dt.timedelta(hours=1))
    with pytest.raises(AuthError, match=f"API token {info.id} expired at"):
        tokens.authenticate(token)
    assert tokens.get(info.id).status(clock.now()) == "expired"


def test_revoked_token_is_refused_and_revoking_twice_is_one_event(
    tokens: ApiTokens, clock: FixedClock, recorded: Recorded
) -> None:
    token, info = tokens.create("leaked")
    clock.advance(dt.timedelta(minutes=5))
    revoked = tokens.revoke(info.id)
    assert revoked.revoked_at == clock.now()
    with pytest.raises(AuthError, match="was revoked at"):
        tokens.authenticate(token)
    clock.advance(dt.timedelta(minutes=5))
    again = tokens.revoke(info.id)
    assert again.revoked_at == revoked.revoked_at
    types = [e.event_type for e in recorded.events]
    assert types == [EventType.SYSTEM_API_TOKEN_CREATE, EventType.SYSTEM_API_TOKEN_REVOKE]
    # revoke_once tells the caller whether it was this call that revoked (the API records
    # its own event from that, not from an earlier read)
    _, fresh = tokens.create("fresh")
    assert tokens.revoke_once(fresh.id)[1] is True
    assert tokens.revoke_once(fresh.id)[1] is False


def test_events_name_the_token_id_and_never_the_secret(
    tokens: ApiTokens, recorded: Recorded, clock: FixedClock
) -> None:
    token, info = tokens.create("audited", expires_in=dt.timedelta(days=30))
    tokens.revoke(info.id)
    _, secret = split_token(token)
    for event in recorded.events:
        assert [t.id for t in event.targets] == [info.id]
        assert event.targets[0].type == "ApiToken"
        assert event.actor == CLI_ACTOR
        assert event.outcome.result is Result.SUCCESS
        published = event.to_dict() if event.published else None
        text = repr(event) + repr(published)
        assert secret not in text and token not in text
    assert recorded.events[0].debug_data["role"] == "SUPER_ADMIN"


def test_last_used_is_written_at_most_once_a_minute(
    tokens: ApiTokens, database: Database, clock: FixedClock
) -> None:
    token, info = tokens.create("busy")
    first = clock.now()
    tokens.authenticate(token)
    assert stored(database, info.id).last_used_at == first
    clock.advance(LAST_USED_GRANULARITY - dt.timedelta(seconds=1))
    tokens.authenticate(token)
    assert stored(database, info.id).last_used_at == first
    clock.advance(dt.timedelta(seconds=1))
    tokens.authenticate(token)
    assert stored(database, info.id).last_used_at == clock.now()


def test_list_get_and_unknown_ids(tokens: ApiTokens, clock: FixedClock) -> None:
    _, a = tokens.create("a")
    clock.advance(dt.timedelta(seconds=1))
    _, b = tokens.create("b")
    tokens.revoke(a.id)
    listed = tokens.list()
    assert [t.id for t in listed] == [a.id, b.id]
    assert [t.status(clock.now()) for t in listed] == ["revoked", "active"]
    assert isinstance(tokens.get(b.id), TokenInfo)
    with pytest.raises(TokenNotFoundError):
        tokens.get("0" * 16)
    with pytest.raises(TokenNotFoundError):
        tokens.revoke("nope")


@pytest.mark.parametrize(
    ("name", "role", "expires_in"),
    [
        ("", "SUPER_ADMIN", None),
        ("x" * 201, "SUPER_ADMIN", None),
        ("ok", "super admin", None),
        ("ok", "X" * 33, None),
        ("ok", "SUPER_ADMIN", dt.timedelta(0)),
    ],
)
def test_create_refuses_bad_input(
    tokens: ApiTokens, name: str, role: str, expires_in: dt.timedelta | None
) -> None:
    with pytest.raises(ValueError):
        tokens.create(name, role, expires_in)
    assert tokens.list() == []


def test_to_dict_has_no_secret(tokens: ApiTokens, clock: FixedClock) -> None:
    token, info = tokens.create("json")
    data = info.to_dict(clock.now())
    assert data["status"] == "active" and data["id"] == info.id
    assert split_token(token)[1] not in str(data)


# --- tokens of admins: roles within the admin's, deactivation, certificate binding ----------


@pytest.fixture
def admins(database: Database, clock: FixedClock) -> Admins:
    return Admins(database, clock)


def test_a_token_belongs_to_its_admin_within_its_role(tokens: ApiTokens, admins: Admins) -> None:
    org = admins.create("org", Role.ORG_ADMIN)
    token, info = tokens.create("laptop", "HELP_DESK_ADMIN", admin="org")
    assert info.admin_id == org.id and info.to_dict()["adminId"] == org.id
    bearer = tokens.bearer(token)
    assert bearer.admin == org and bearer.role is Role.HELP_DESK_ADMIN
    with pytest.raises(CertboundError) as above:
        tokens.create("x", "SUPER_ADMIN", admin=org.id)
    assert above.value.reason is ReasonCode.FORBIDDEN_ROLE
    with pytest.raises(CertboundError) as unknown:
        tokens.create("x", "READ_ONLY_ADMIN", admin="nobody")
    assert unknown.value.reason is ReasonCode.ADMIN_NOT_FOUND
    assert [t.id for t in tokens.list(admin_id=org.id)] == [info.id]


def test_a_deactivated_or_demoted_admins_token_is_refused(
    tokens: ApiTokens, admins: Admins
) -> None:
    admins.create("org", Role.ORG_ADMIN)
    token, _ = tokens.create("laptop", "ORG_ADMIN", admin="org")
    low, _ = tokens.create("reader", "READ_ONLY_ADMIN", admin="org")
    admins.set_role("org", Role.APP_ADMIN)
    with pytest.raises(AuthError, match="above its admin's"):
        tokens.authenticate(token)
    assert tokens.authenticate(low).role == "READ_ONLY_ADMIN"
    admins.deactivate("org")
    with pytest.raises(AuthError, match="revoked"):
        tokens.authenticate(low)
    with pytest.raises(CertboundError) as gone:
        tokens.create("again", "READ_ONLY_ADMIN", admin="org")
    assert gone.value.reason is ReasonCode.INVALID_REQUEST_BODY


def test_a_bound_token_needs_its_certificate(tokens: ApiTokens, admins: Admins) -> None:
    admins.create("ops", Role.HELP_DESK_ADMIN)
    thumbprint = hashlib.sha256(b"device certificate").hexdigest()
    colons = ":".join(thumbprint[i : i + 2] for i in range(0, 64, 2)).upper()
    token, info = tokens.create("bound", "HELP_DESK_ADMIN", admin="ops", cert_sha256=colons)
    assert info.cert_sha256 == thumbprint
    assert tokens.authenticate(token, presented_sha256=thumbprint).id == info.id
    with pytest.raises(AuthError, match="presented no client certificate") as none:
        tokens.authenticate(token)
    assert none.value.reason is ReasonCode.INVALID_TOKEN
    with pytest.raises(AuthError, match="presented another certificate"):
        tokens.authenticate(token, presented_sha256="0" * 64)
    with pytest.raises(ValueError, match="SHA-256"):
        tokens.create("bad", "HELP_DESK_ADMIN", admin="ops", cert_sha256="abc")


def test_a_token_with_a_role_that_is_no_role_is_refused(
    tokens: ApiTokens, database: Database
) -> None:
    token, info = tokens.create("old", "READ_ONLY_ADMIN")
    with database.session() as session:
        row = session.get(ApiToken, info.id)
        assert row is not None
        row.role = "AUDITOR"  # a free-form role stored by an earlier release
    with pytest.raises(AuthError, match="'AUDITOR', which is not a role"):
        tokens.authenticate(token)
