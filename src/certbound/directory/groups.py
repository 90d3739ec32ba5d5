"""Groups: named sets of users, and membership (policy conditions name groups by id).

A group has an id (``grp_...``), a unique name and an optional description. A user is a
member of any number of groups; deleting a group or a user removes its memberships.
:meth:`Groups.group_ids_of` is the policy engine's one-query look-up of a user's groups.
"""

from __future__ import annotations

import builtins
import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from certbound.clock import Clock, format_rfc3339
from certbound.directory import users
from certbound.directory.users import User
from certbound.errors import CertboundError, ReasonCode
from certbound.storage.database import Database
from certbound.storage.models import Group as GroupRow
from certbound.storage.models import GroupMember
from certbound.storage.models import User as UserRow
from certbound.storage.references import find_by_reference

ID_PREFIX = "grp_"
MAX_NAME_LENGTH = 256
MAX_DESCRIPTION_LENGTH = 1000


@dataclass(frozen=True, slots=True)
class Group:
    id: str
    name: str
    description: str | None
    created: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "created": format_rfc3339(self.created),
        }


def _group(row: GroupRow) -> Group:
    return Group(id=row.id, name=row.name, description=row.description, created=row.created)


def _not_found(ref: str) -> CertboundError:
    return CertboundError(
        ReasonCode.GROUP_NOT_FOUND, f"no group has the id or name {ref!r}", {"ref": ref}
    )


def _invalid(field: str, detail: str) -> CertboundError:
    return CertboundError(ReasonCode.INVALID_USER, f"{field}: {detail}", {"field": field})


def find(session: Session, ref: str) -> GroupRow | None:
    """The group ``ref`` names: its id, its name, else its name in another case."""
    return find_by_reference(session, GroupRow, GroupRow.name, ID_PREFIX, ref)


def lookup(session: Session, ref: str) -> GroupRow:
    row = find(session, ref)
    if row is None:
        raise _not_found(ref)
    return row


class Groups:
    """The groups in the database and their members."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def create(self, name: str, description: str | None = None) -> Group:
        """A new group; NAME_TAKEN when the name (in any case) is in use."""
        cleaned = name.strip()
        if not cleaned or len(cleaned) > MAX_NAME_LENGTH or not cleaned.isprintable():
            raise _invalid("name", f"a group's name is 1 to {MAX_NAME_LENGTH} characters")
        if description is not None and len(description) > MAX_DESCRIPTION_LENGTH:
            raise _invalid("description", f"at most {MAX_DESCRIPTION_LENGTH} characters")
        row = GroupRow(
            id=ID_PREFIX + secrets.token_hex(8),
            name=cleaned,
            description=description,
            created=self._clock.now(),
        )
        try:
            with self._db.session() as session:
                if find(session, cleaned) is not None:
                    raise _taken(cleaned)
                session.add(row)
        except IntegrityError:
            raise _taken(cleaned) from None
        return _group(row)

    def get(self, ref: str) -> Group:
        """The group ``ref`` names: its id or name (GROUP_NOT_FOUND)."""
        with self._db.session() as session:
            return _group(lookup(session, ref))

    def list(self, *, limit: int = 100, after: str | None = None) -> builtins.list[Group]:
        """Groups in the order created (then id); ``after``: the last id of the previous page."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        query = select(GroupRow)
        with self._db.session() as session:
            if after is not None:
                anchor = session.get(GroupRow, after)
                if anchor is None:
                    raise _not_found(after)
                query = query.where(
                    or_(
                        GroupRow.created > anchor.created,
                        and_(GroupRow.created == anchor.created, GroupRow.id > anchor.id),
                    )
                )
            rows = session.scalars(query.order_by(GroupRow.created, GroupRow.id).limit(limit))
            return [_group(row) for row in rows]

    def delete(self, ref: str) -> Group:
        """Remove a group and its memberships."""
        with self._db.session() as session:
            row = lookup(session, ref)
            group = _group(row)
            session.execute(delete(GroupMember).where(GroupMember.group_id == row.id))
            session.delete(row)
            return group

    def add_member(self, group_ref: str, user_ref: str) -> bool:
        """Add a user to a group; False when it already was a member."""
        try:
            with self._db.session() as session:
                group, user = lookup(session, group_ref), users.lookup(session, user_ref)
                if session.get(GroupMember, (group.id, user.id)) is not None:
                    return False
                session.add(GroupMember(group_id=group.id, user_id=user.id))
        except IntegrityError:  # added at the same moment by someone else
            return False
        return True

    def remove_member(self, group_ref: str, user_ref: str) -> bool:
        """Remove a user from a group; False when it was not a member."""
        with self._db.session() as session:
            group, user = lookup(session, group_ref), users.lookup(session, user_ref)
            gone = session.execute(
                delete(GroupMember).where(
                    GroupMember.group_id == group.id, GroupMember.user_id == user.id
                )
            )
            return bool(getattr(gone, "rowcount", 0))

    def members(self, group_ref: str) -> builtins.list[User]:
        """A group's members, by username."""
        with self._db.session() as session:
            group = lookup(session, group_ref)
            query = (
                select(UserRow)
                .join(GroupMember, GroupMember.user_id == UserRow.id)
                .where(GroupMember.group_id == group.id)
                .order_by(UserRow.username, UserRow.id)
            )
            return [users.user_of(row) for row in session.scalars(query)]

    def groups_of(self, user_ref: str) -> builtins.list[Group]:
        """The groups a user is a member of, by name."""
        with self._db.session() as session:
            user = users.lookup(session, user_ref)
            query = (
                select(GroupRow)
                .join(GroupMember, GroupMember.group_id == GroupRow.id)
                .where(GroupMember.user_id == user.id)
                .order_by(GroupRow.name, GroupRow.id)
            )
            return [_group(row) for row in session.scalars(query)]

    def group_ids_of(self, user_id: str) -> frozenset[str]:
        """The ids of a user's groups, by user id (one indexed query; an unknown user has
        none)."""
        query = select(GroupMember.group_id).where(GroupMember.user_id == user_id)
        with self._db.session() as session:
            return frozenset(session.scalars(query))


def _taken(name: str) -> CertboundError:
    return CertboundError(ReasonCode.NAME_TAKEN, f"a group named {name!r} exists", {"name": name})
