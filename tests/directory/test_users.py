"""Users: create, look-up by id or username (any case), update, statuses, paging, argon2id
passwords, and authenticate's equal work for unknown users; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from certbound.clock import FixedClock
from certbound.directory.users import Users, UserStatus
from certbound.errors import CertboundError, ReasonCode
from certbound.storage.database import Database
from certbound.storage.models import User as UserRow

PASSWORD = "correct horse battery"


class CountingHasher(PasswordHasher):
    """A real argon2id hasher that counts its verifications."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verified += 1
        return super().verify(hash, password)


def stored_hash(database: Database, user_id: str) -> str | None:
    with database.session() as session:
        return session.scalar(select(UserRow.password_hash).where(UserRow.id == user_id))


def refused(reason: ReasonCode, call: Any, *args: Any, **kwargs: Any) -> CertboundError:
    with pytest.raises(CertboundError) as caught:
        call(*args, **kwargs)
    assert caught.value.reason is reason, caught.value
    return caught.value


def test_create_get_update(database: Database, clock: FixedClock) -> None:
    users = Users(database, clock)
    alice = users.create("Alice", email="alice@corp.example", display_name="Alice A")
    assert alice.id.startswith("usr_") and alice.status is UserStatus.ACTIVE
    assert users.get("alice") == users.get("ALICE") == users.get(alice.id) == alice
    assert alice.to_dict() == {
        "id": alice.id, "username": "Alice", "email": "alice@corp.example",
        "displayName": "Alice A", "status": "ACTIVE",
        "created": alice.to_dict()["created"], "updated": alice.to_dict()["updated"],
    }  # fmt: skip
    refused(ReasonCode.NAME_TAKEN, users.create, "aLiCe")
    refused(ReasonCode.USER_NOT_FOUND, users.get, "bob")
    clock.advance(dt.timedelta(seconds=3))
    before, after = users.update("alice", email=None)
    assert before == alice and after.email is None and after.display_name == "Alice A"
    assert after.updated == clock.now()
    _, same = users.update("alice", display_name="Alice A")
    assert same == after


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"username": ""}, "username"),
        ({"username": "two words"}, "username"),
        ({"username": "x" * 257}, "username"),
        ({"username": "u", "email": "no-at-sign"}, "email"),
        ({"username": "u", "email": "a@nodot"}, "email"),
        ({"username": "u", "display_name": " "}, "displayName"),
        ({"username": "u", "password": "short"}, "password"),
    ],
)
def test_invalid_attributes(
    database: Database, clock: FixedClock, kwargs: dict[str, Any], field: str
) -> None:
    rest = dict(kwargs)
    username = rest.pop("username")
    error = refused(ReasonCode.INVALID_USER, Users(database, clock).create, username, **rest)
    assert error.detail.startswith(f"{field}:")


def test_passwords_are_argon2id_and_authenticate(database: Database, clock: FixedClock) -> None:
    users = Users(database, clock)
    alice = users.create("alice", password=PASSWORD)
    stored = stored_hash(database, alice.id)
    assert stored is not None and stored.startswith("$argon2id$") and PASSWORD not in stored
    assert users.authenticate("alice", PASSWORD) == alice
    assert users.authenticate("ALICE", PASSWORD) == alice
    assert users.authenticate("alice", PASSWORD + "x") is None
    assert users.authenticate("nobody", PASSWORD) is None
    refused(ReasonCode.INVALID_USER, users.set_password, "alice", "elevenchars")
    users.set_password("alice", "a brand new password")
    assert users.authenticate("alice", PASSWORD) is None
    assert users.authenticate("alice", "a brand new password") is not None
    users.suspend("alice")
    assert users.authenticate("alice", "a brand new password") is None
    users.activate("alice")
    assert users.authenticate("alice", "a brand new password") is not None
    users.create("nopass")
    assert users.authenticate("nopass", "") is None and users.authenticate("nopass", "x") is None


def test_authenticate_spends_a_verification_whatever_happens(
    database: Database, clock: FixedClock
) -> None:
    hasher = CountingHasher()
    users = Users(database, clock, hasher)
    users.create("alice", password=PASSWORD)
    users.create("bob")  # no password
    users.create("carol", password=PASSWORD)
    users.suspend("carol")
    for name, password in (
        ("alice", PASSWORD), ("alice", "wrong password!"), ("nobody", PASSWORD),
        ("bob", PASSWORD), ("carol", PASSWORD), ("", PASSWORD),
    ):  # fmt: skip
        hasher.verified = 0
        users.authenticate(name, password)
        assert hasher.verified == 1, name

    # and it takes comparable time: an unknown user costs no less than a wrong password
    def spent(name: str) -> float:
        start = time.perf_counter()
        for _ in range(3):
            users.authenticate(name, "wrong password!")
        return time.perf_counter() - start

    spent("nobody")  # the dummy hash is made once, on first use
    known, unknown = min(spent("alice") for _ in range(2)), min(spent("nobody") for _ in range(2))
    assert unknown > known * 0.5, (known, unknown)


def test_rehash_when_parameters_changed(database: Database, clock: FixedClock) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
    user = Users(database, clock, weak).create("alice", password=PASSWORD)
    old = stored_hash(database, user.id)
    assert old is not None and "m=8192" in old
    strong = Users(database, clock)  # the library's default parameters
    assert strong.authenticate("alice", "wrong password!") is None
    assert stored_hash(database, user.id) == old  # never rehashed on a failure
    assert strong.authenticate("alice", PASSWORD) is not None
    new = stored_hash(database, user.id)
    assert new != old and new is not None and not PasswordHasher().check_needs_rehash(new)
    assert strong.authenticate("alice", PASSWORD) is not None


def test_statuses_list_and_pages(database: Database, clock: FixedClock) -> None:
    users = Users(database, clock)
    made = []
    for index in range(5):
        clock.advance(dt.timedelta(seconds=1))
        made.append(users.create(f"user{index}").id)
    before, after = users.suspend("user1")
    assert before.status is UserStatus.ACTIVE and after.status is UserStatus.SUSPENDED
    assert users.suspend("user1")[0] == users.suspend("user1")[1]  # nothing changed
    assert [u.id for u in users.list(status=UserStatus.SUSPENDED)] == [made[1]]
    first = users.list(limit=2)
    second = users.list(limit=2, after=first[-1].id)
    third = users.list(limit=2, after=second[-1].id)
    assert [u.id for u in first + second + third] == made
    refused(ReasonCode.USER_NOT_FOUND, users.list, after="usr_missing")
    assert users.delete("user0").id == made[0]
    refused(ReasonCode.USER_NOT_FOUND, users.get, made[0])
    refused(ReasonCode.USER_NOT_FOUND, users.suspend, "user0")
