"""Groups: create, look-up, delete, membership and its queries, paging; on SQLite and
PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from certbound.clock import FixedClock
from certbound.directory.groups import Groups
from certbound.directory.users import Users
from certbound.errors import CertboundError, ReasonCode
from certbound.storage.database import Database


def test_create_get_and_refusals(database: Database, clock: FixedClock) -> None:
    groups = Groups(database, clock)
    admins = groups.create("Admins", "people who administer")
    assert admins.id.startswith("grp_") and groups.get("admins") == groups.get(admins.id)
    assert admins.to_dict()["description"] == "people who administer"
    for ref, reason in (("ADMINS", ReasonCode.NAME_TAKEN), ("", ReasonCode.INVALID_USER)):
        with pytest.raises(CertboundError) as caught:
            groups.create(ref)
        assert caught.value.reason is reason
    with pytest.raises(CertboundError) as caught:
        groups.get("nobody")
    assert caught.value.reason is ReasonCode.GROUP_NOT_FOUND


def test_membership(database: Database, clock: FixedClock) -> None:
    users, groups = Users(database, clock), Groups(database, clock)
    alice, bob, carol = (users.create(name) for name in ("alice", "bob", "carol"))
    admins, staff = groups.create("admins"), groups.create("staff")
    assert groups.add_member("admins", "alice") is True
    assert groups.add_member(admins.id, alice.id) is False  # already a member
    assert groups.add_member("staff", "ALICE") and groups.add_member("staff", "bob")
    assert [u.id for u in groups.members("staff")] == [alice.id, bob.id]
    assert [g.id for g in groups.groups_of("alice")] == [admins.id, staff.id]
    assert groups.groups_of("carol") == []
    assert groups.group_ids_of(alice.id) == frozenset({admins.id, staff.id})
    assert groups.group_ids_of(carol.id) == frozenset()
    assert groups.group_ids_of("usr_unknown") == frozenset()
    assert groups.remove_member("staff", "alice") is True
    assert groups.remove_member("staff", "alice") is False
    assert groups.group_ids_of(alice.id) == frozenset({admins.id})
    for group_ref, user_ref, reason in (
        ("nogroup", "alice", ReasonCode.GROUP_NOT_FOUND),
        ("admins", "nobody", ReasonCode.USER_NOT_FOUND),
    ):
        with pytest.raises(CertboundError) as caught:
            groups.add_member(group_ref, user_ref)
        assert caught.value.reason is reason
    users.delete("bob")  # a deleted user leaves its groups
    assert groups.members("staff") == []
    assert groups.delete("admins") == admins  # a deleted group's users stay
    assert groups.group_ids_of(alice.id) == frozenset()
    assert users.get("alice") == alice


def test_list_pages(database: Database, clock: FixedClock) -> None:
    groups = Groups(database, clock)
    made = []
    for index in range(5):
        clock.advance(dt.timedelta(seconds=1))
        made.append(groups.create(f"g{index}").id)
    first = groups.list(limit=3)
    rest = groups.list(limit=3, after=first[-1].id)
    assert [g.id for g in first + rest] == made and len(rest) == 2
    with pytest.raises(CertboundError):
        groups.list(after="grp_missing")
