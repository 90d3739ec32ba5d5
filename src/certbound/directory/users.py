"""Users: the people who sign in, their status and their argon2id password hashes.

A user has an id (``usr_...``), a username (unique; looked up case-insensitively), an
optional email and display name, a status (ACTIVE, SUSPENDED, DEPROVISIONED) and an
optional password. Passwords are hashed with argon2id (``argon2.PasswordHasher``; at least
12 characters) and never leave this module: no dataclass, JSON or event carries the hash.
:meth:`Users.authenticate` spends one argon2 verification whatever happens (an unknown
user, one without a password or not ACTIVE), so its time does not tell which usernames
exist, and rehashes a password whose hash has older parameters.
"""

from __future__ import annotations

import builtins
import datetime as dt
import enum
import secrets
from dataclasses import dataclass
from typing import Any, Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import and_, delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from certbound.clock import Clock, format_rfc3339
from certbound.errors import CertboundError, ReasonCode
from certbound.storage.database import Database
from certbound.storage.models import GroupMember
from certbound.storage.models import User as UserRow
from certbound.storage.references import find_by_reference

ID_PREFIX = "usr_"
MAX_USERNAME_LENGTH = 256
MAX_EMAIL_LENGTH = 320
MAX_DISPLAY_NAME_LENGTH = 256
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024


class UserStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    DEPROVISIONED = "DEPROVISIONED"


class _Unset(enum.Enum):
    UNSET = "unset"


UNSET: Final = _Unset.UNSET


@dataclass(frozen=True, slots=True)
class User:
    """A user as stored, without the password hash."""

    id: str
    username: str
    email: str | None
    display_name: str | None
    status: UserStatus
    created: dt.datetime
    updated: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "email": self.email,
            "displayName": self.display_name,
            "status": self.status.value,
            "created": format_rfc3339(self.created),
            "updated": format_rfc3339(self.updated),
        }


def user_of(row: UserRow) -> User:
    return User(
        id=row.id,
        username=row.username,
        email=row.email,
        display_name=row.display_name,
        status=UserStatus(row.status),
        created=row.created,
        updated=row.updated,
    )


def invalid_user(field: str, detail: str) -> CertboundError:
    return CertboundError(ReasonCode.INVALID_USER, f"{field}: {detail}", {"field": field})


def checked_username(username: str) -> str:
    """A username as stored (trimmed); INVALID_USER when empty, too long or unprintable."""
    cleaned = username.strip()
    if not cleaned or len(cleaned) > MAX_USERNAME_LENGTH:
        raise invalid_user("username", f"1 to {MAX_USERNAME_LENGTH} characters")
    if any(c.isspace() or not c.isprintable() for c in cleaned):
        raise invalid_user("username", f"{username!r} holds spaces or control characters")
    return cleaned


def checked_email(email: str | None) -> str | None:
    """An email address as stored; INVALID_USER when it is not one."""
    if email is None:
        return None
    local, at, domain = email.rpartition("@")
    malformed = not at or not local or "." not in domain or domain.startswith(".")
    bad_text = any(c.isspace() or not c.isprintable() for c in email)
    if malformed or bad_text or len(email) > MAX_EMAIL_LENGTH:
        raise invalid_user("email", f"{email!r} is not an email address")
    return email


def _check_display_name(name: str | None) -> str | None:
    if name is None:
        return None
    cleaned = name.strip()
    if not cleaned or len(cleaned) > MAX_DISPLAY_NAME_LENGTH or not cleaned.isprintable():
        raise invalid_user("displayName", f"1 to {MAX_DISPLAY_NAME_LENGTH} printable characters")
    return cleaned


def _check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise invalid_user("password", f"at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise invalid_user("password", f"at most {MAX_PASSWORD_LENGTH} characters")
    return password


def _not_found(ref: str) -> CertboundError:
    return CertboundError(
        ReasonCode.USER_NOT_FOUND, f"no user has the id or username {ref!r}", {"ref": ref}
    )


def find(session: Session, ref: str) -> UserRow | None:
    """The user ``ref`` names: its id, its username, else its username in another case."""
    return find_by_reference(session, UserRow, UserRow.username, ID_PREFIX, ref)


def lookup(session: Session, ref: str) -> UserRow:
    """:func:`find`, or USER_NOT_FOUND."""
    row = find(session, ref)
    if row is None:
        raise _not_found(ref)
    return row


class Users:
    """The users in the database."""

    def __init__(self, db: Database, clock: Clock, hasher: PasswordHasher | None = None) -> None:
        self._db = db
        self._clock = clock
        self._hasher = hasher or PasswordHasher()  # argon2id, RFC 9106 parameters
        self._dummy: str | None = None

    def _dummy_hash(self) -> str:
        """A hash with this hasher's parameters, verified when there is no real one."""
        if self._dummy is None:
            self._dummy = self._hasher.hash(secrets.token_urlsafe(16))
        return self._dummy

    def create(
        self,
        username: str,
        *,
        email: str | None = None,
        display_name: str | None = None,
        password: str | None = None,
    ) -> User:
        """A new ACTIVE user; NAME_TAKEN when the username (in any case) is in use."""
        now = self._clock.now()
        row = UserRow(
            id=ID_PREFIX + secrets.token_hex(8),
            username=checked_username(username),
            email=checked_email(email),
            display_name=_check_display_name(display_name),
            status=UserStatus.ACTIVE.value,
            password_hash=None,
            created=now,
            updated=now,
        )
        if password is not None:
            row.password_hash = self._hasher.hash(_check_password(password))
        try:
            with self._db.session() as session:
                if find(session, row.username) is not None:
                    raise _taken(row.username)
                session.add(row)
        except IntegrityError:
            raise _taken(row.username) from None
        return user_of(row)

    def get(self, ref: str) -> User:
        """The user ``ref`` names: its id or username (USER_NOT_FOUND)."""
        with self._db.session() as session:
            return user_of(lookup(session, ref))

    def list(
        self, *, status: UserStatus | None = None, limit: int = 100, after: str | None = None
    ) -> builtins.list[User]:
        """Users in the order created (then id); ``after``: the last id of the previous page."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        query = select(UserRow)
        if status is not None:
            query = query.where(UserRow.status == status.value)
        with self._db.session() as session:
            if after is not None:
                anchor = session.get(UserRow, after)
                if anchor is None:
                    raise _not_found(after)
                query = query.where(
                    or_(
                        UserRow.created > anchor.created,
                        and_(UserRow.created == anchor.created, UserRow.id > anchor.id),
                    )
                )
            rows = session.scalars(query.order_by(UserRow.created, UserRow.id).limit(limit))
            return [user_of(row) for row in rows]

    def update(
        self,
        ref: str,
        *,
        email: str | _Unset | None = UNSET,
        display_name: str | _Unset | None = UNSET,
    ) -> tuple[User, User]:
        """Change the email or display name (None clears one): ``(before, after)``."""
        with self._db.session() as session:
            row = lookup(session, ref)
            before = user_of(row)
            if not isinstance(email, _Unset):
                row.email = checked_email(email)
            if not isinstance(display_name, _Unset):
                row.display_name = _check_display_name(display_name)
            if user_of(row) != before:
                row.updated = self._clock.now()
            return before, user_of(row)

    def set_password(self, ref: str, password: str) -> User:
        """Set (or replace) a user's password: at least 12 characters (INVALID_USER)."""
        hashed = self._hasher.hash(_check_password(password))
        with self._db.session() as session:
            row = lookup(session, ref)
            row.password_hash = hashed
            row.updated = self._clock.now()
            return user_of(row)

    def authenticate(self, username: str, password: str) -> User | None:
        """The ACTIVE user with this username and password, else None. One argon2
        verification is spent in every case (timing does not reveal the username)."""
        with self._db.session() as session:
            row = find(session, username) if username.strip() else None
            stored = row.password_hash if row is not None else None
            password = password[:MAX_PASSWORD_LENGTH]
            try:
                self._hasher.verify(stored or self._dummy_hash(), password)
            except (VerificationError, InvalidHashError):
                return None
            if row is None or stored is None or row.status != UserStatus.ACTIVE.value:
                return None
            if self._hasher.check_needs_rehash(stored):
                row.password_hash = self._hasher.hash(password)
            return user_of(row)

    def suspend(self, ref: str) -> tuple[User, User]:
        """Suspend a user (authenticate refuses it): ``(before, after)``."""
        return self._change(ref, UserStatus.SUSPENDED)

    def activate(self, ref: str) -> tuple[User, User]:
        """Make a user ACTIVE again: ``(before, after)``."""
        return self._change(ref, UserStatus.ACTIVE)

    def _change(self, ref: str, status: UserStatus) -> tuple[User, User]:
        with self._db.session() as session:
            row = lookup(session, ref)
            before = user_of(row)
            if before.status is not status:
                row.status = status.value
                row.updated = self._clock.now()
            return before, user_of(row)

    def delete(self, ref: str) -> User:
        """Remove a user and its group memberships."""
        with self._db.session() as session:
            row = lookup(session, ref)
            user = user_of(row)
            session.execute(delete(GroupMember).where(GroupMember.user_id == row.id))
            session.delete(row)
            return user


def _taken(username: str) -> CertboundError:
    return CertboundError(
        ReasonCode.NAME_TAKEN, f"a user named {username!r} exists", {"username": username}
    )
