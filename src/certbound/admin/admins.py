"""Admin accounts: who administers Certbound, with which role, and whether still active.

An admin has an id (``adm_...``), a username (unique, looked up case-insensitively), an
optional email, a :class:`~certbound.admin.roles.Role` and a status (``ACTIVE`` or
``DEACTIVATED``, final). Admins act through their API tokens
(:mod:`certbound.admin.tokens`); a token of a deactivated admin is refused, and
deactivating an admin revokes its tokens in the same transaction. The first
``SUPER_ADMIN`` is made on the server with ``certbound admin create``; after that a
``SUPER_ADMIN`` manages admins over the API too. Changes are System Log events built by
:mod:`certbound.admin.events`.
"""

from __future__ import annotations

import builtins
import datetime as dt
import enum
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from certbound.admin.roles import Role
from certbound.clock import Clock, format_rfc3339
from certbound.directory.users import checked_email, checked_username
from certbound.errors import CertboundError, ReasonCode
from certbound.storage.database import Database
from certbound.storage.models import AdminRow, ApiToken
from certbound.storage.references import find_by_reference

ID_PREFIX = "adm_"


class AdminStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    DEACTIVATED = "DEACTIVATED"


@dataclass(frozen=True, slots=True)
class Admin:
    id: str
    username: str
    email: str | None
    role: Role
    status: AdminStatus
    created: dt.datetime
    updated: dt.datetime

    @property
    def active(self) -> bool:
        return self.status is AdminStatus.ACTIVE

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "email": self.email,
            "role": self.role.value,
            "status": self.status.value,
            "created": format_rfc3339(self.created),
            "updated": format_rfc3339(self.updated),
        }


def admin_of(row: AdminRow) -> Admin:
    return Admin(
        id=row.id,
        username=row.username,
        email=row.email,
        role=Role(row.role),
        status=AdminStatus(row.status),
        created=row.created,
        updated=row.updated,
    )


def not_found(ref: str) -> CertboundError:
    return CertboundError(
        ReasonCode.ADMIN_NOT_FOUND, f"no admin has the id or username {ref!r}", {"ref": ref}
    )


def find(session: Session, ref: str) -> AdminRow | None:
    """The admin ``ref`` names: its id, its username, else its username in another case."""
    return find_by_reference(session, AdminRow, AdminRow.username, ID_PREFIX, ref)


def lookup(session: Session, ref: str) -> AdminRow:
    row = find(session, ref)
    if row is None:
        raise not_found(ref)
    return row


def _taken(username: str) -> CertboundError:
    return CertboundError(
        ReasonCode.NAME_TAKEN, f"an admin named {username!r} exists", {"username": username}
    )


class Admins:
    """The admin accounts in the database."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def create(self, username: str, role: Role, *, email: str | None = None) -> Admin:
        """A new ACTIVE admin; NAME_TAKEN when the username (in any case) is in use."""
        now = self._clock.now()
        row = AdminRow(
            id=ID_PREFIX + secrets.token_hex(8),
            username=checked_username(username),
            email=checked_email(email),
            role=Role(role).value,
            status=AdminStatus.ACTIVE.value,
            created=now,
            updated=now,
        )
        try:
            with self._db.session() as session:
                if find(session, row.username) is not None:
                    raise _taken(row.username)
                session.add(row)
        except IntegrityError:
            raise _taken(row.username) from None
        return admin_of(row)

    def get(self, ref: str) -> Admin:
        """The admin ``ref`` names: its id or username (ADMIN_NOT_FOUND)."""
        with self._db.session() as session:
            return admin_of(lookup(session, ref))

    def list(self, *, limit: int = 100, after: str | None = None) -> builtins.list[Admin]:
        """Admins in the order created (then id); ``after``: the last id of the previous page."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        query = select(AdminRow)
        with self._db.session() as session:
            if after is not None:
                anchor = session.get(AdminRow, after)
                if anchor is None:
                    raise not_found(after)
                query = query.where(
                    or_(
                        AdminRow.created > anchor.created,
                        and_(AdminRow.created == anchor.created, AdminRow.id > anchor.id),
                    )
                )
            rows = session.scalars(query.order_by(AdminRow.created, AdminRow.id).limit(limit))
            return [admin_of(row) for row in rows]

    def count(self) -> int:
        """How many admins there are, deactivated ones included."""
        with self._db.session() as session:
            return int(session.scalar(select(func.count()).select_from(AdminRow)) or 0)

    def set_role(self, ref: str, role: Role) -> tuple[Admin, Admin]:
        """Give an admin another role: ``(before, after)``. Its tokens whose role is no
        longer within the admin's are refused from now on (see ApiTokens)."""
        with self._db.session() as session:
            row = lookup(session, ref)
            before = admin_of(row)
            if before.role is not role:
                if before.active and before.role is Role.SUPER_ADMIN:
                    _keep_a_super_admin(session, row.id)
                row.role = Role(role).value
                row.updated = self._clock.now()
            return before, admin_of(row)

    def deactivate(self, ref: str) -> tuple[Admin, Admin, builtins.list[str]]:
        """Deactivate an admin for good and revoke its tokens: ``(before, after, the ids of
        the tokens revoked now)``; a deactivated admin changes nothing."""
        now = self._clock.now()
        with self._db.session() as session:
            row = lookup(session, ref)
            before = admin_of(row)
            if not before.active:
                return before, before, []
            if before.role is Role.SUPER_ADMIN:
                _keep_a_super_admin(session, row.id)
            row.status, row.updated = AdminStatus.DEACTIVATED.value, now
            live = select(ApiToken.id).where(
                ApiToken.admin_id == row.id, ApiToken.revoked_at.is_(None)
            )
            revoked = sorted(session.scalars(live))
            if revoked:
                session.execute(
                    update(ApiToken).where(ApiToken.id.in_(revoked)).values(revoked_at=now)
                )
            return before, admin_of(row), revoked


def _keep_a_super_admin(session: Session, leaving: str) -> None:
    """LAST_SUPER_ADMIN unless an active SUPER_ADMIN other than ``leaving`` remains. The
    active SUPER_ADMIN rows are locked first (PostgreSQL; SQLite has one writer), so two
    super admins demoting each other at once cannot both pass."""
    supers = select(AdminRow.id).where(
        AdminRow.role == Role.SUPER_ADMIN.value,
        AdminRow.status == AdminStatus.ACTIVE.value,
    )
    remaining = set(session.scalars(supers.with_for_update())) - {leaving}
    if not remaining:
        raise CertboundError(
            ReasonCode.LAST_SUPER_ADMIN,
            "this is the last active SUPER_ADMIN: make another admin SUPER_ADMIN first",
        )
