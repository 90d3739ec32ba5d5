"""Admin accounts on both databases: create, look up by id or username in any case, list
in pages, change a role, deactivate (final, revoking the admin's tokens)."""

from __future__ import annotations

import datetime as dt

import pytest

from certbound.admin.admins import Admins, AdminStatus
from certbound.admin.roles import Role
from certbound.admin.tokens import ApiTokens, AuthError
from certbound.clock import FixedClock
from certbound.errors import CertboundError, ReasonCode
from certbound.storage.database import Database


@pytest.fixture
def admins(database: Database, clock: FixedClock) -> Admins:
    return Admins(database, clock)


def test_create_and_look_up(admins: Admins, now: dt.datetime) -> None:
    made = admins.create(" alice ", Role.SUPER_ADMIN, email="alice@example.com")
    assert made.id.startswith("adm_") and made.username == "alice"
    assert (made.role, made.status, made.created) == (Role.SUPER_ADMIN, AdminStatus.ACTIVE, now)
    assert admins.get(made.id) == made == admins.get("ALICE")
    assert made.to_dict()["role"] == "SUPER_ADMIN"
    with pytest.raises(CertboundError) as taken:
        admins.create("Alice", Role.READ_ONLY_ADMIN)
    assert taken.value.reason is ReasonCode.NAME_TAKEN
    with pytest.raises(CertboundError) as missing:
        admins.get("bob")
    assert missing.value.reason is ReasonCode.ADMIN_NOT_FOUND


@pytest.mark.parametrize(
    ("username", "email"),
    [("", None), ("a b", None), ("x" * 257, None), ("ok", "not-an-email"), ("ok", "a@b")],
)
def test_invalid_attributes(admins: Admins, username: str, email: str | None) -> None:
    with pytest.raises(CertboundError) as caught:
        admins.create(username, Role.APP_ADMIN, email=email)
    assert caught.value.reason is ReasonCode.INVALID_USER
    assert admins.count() == 0


def test_list_pages(admins: Admins, clock: FixedClock) -> None:
    made = []
    for name in ("a", "b", "c"):
        made.append(admins.create(name, Role.READ_ONLY_ADMIN))
        clock.advance(dt.timedelta(seconds=1))
    assert [a.username for a in admins.list(limit=2)] == ["a", "b"]
    assert [a.username for a in admins.list(after=made[1].id)] == ["c"]
    with pytest.raises(CertboundError):
        admins.list(after="adm_nope")


def test_set_role(admins: Admins, clock: FixedClock) -> None:
    made = admins.create("carol", Role.ORG_ADMIN)
    clock.advance(dt.timedelta(minutes=1))
    before, after = admins.set_role("carol", Role.HELP_DESK_ADMIN)
    assert (before.role, after.role) == (Role.ORG_ADMIN, Role.HELP_DESK_ADMIN)
    assert after.updated == clock.now() and before == made
    same_before, same_after = admins.set_role("carol", Role.HELP_DESK_ADMIN)
    assert same_before == same_after


def test_deactivate_is_final_and_revokes_tokens(
    admins: Admins, database: Database, clock: FixedClock
) -> None:
    made = admins.create("dave", Role.APP_ADMIN)
    tokens = ApiTokens(database, clock)
    token, info = tokens.create("laptop", "APP_ADMIN", admin=made.id)
    eve = admins.create("eve", Role.APP_ADMIN)
    _, other = tokens.create("other", "READ_ONLY_ADMIN", admin=eve.id)
    before, after, revoked = admins.deactivate("dave")
    assert (before.status, after.status) == (AdminStatus.ACTIVE, AdminStatus.DEACTIVATED)
    assert revoked == [info.id]
    assert tokens.get(info.id).revoked_at == clock.now()
    assert tokens.get(other.id).revoked_at is None
    with pytest.raises(AuthError):
        tokens.authenticate(token)
    assert admins.deactivate("dave") == (after, after, [])


def test_the_last_super_admin_is_kept(admins: Admins) -> None:
    root = admins.create("root", Role.SUPER_ADMIN)
    admins.create("gone", Role.SUPER_ADMIN)
    admins.deactivate("gone")  # another super admin remained: allowed
    for change in (
        lambda: admins.set_role("root", Role.ORG_ADMIN),
        lambda: admins.deactivate("root"),
    ):
        with pytest.raises(CertboundError) as caught:
            change()
        assert caught.value.reason is ReasonCode.LAST_SUPER_ADMIN
    assert admins.get(root.id).role is Role.SUPER_ADMIN and admins.get(root.id).active
    admins.create("second", Role.SUPER_ADMIN)
    before, after = admins.set_role("root", Role.ORG_ADMIN)
    assert (before.role, after.role) == (Role.SUPER_ADMIN, Role.ORG_ADMIN)
    with pytest.raises(CertboundError):
        admins.deactivate("second")  # now it is the last one
