"""Admin API tokens: creation, bearer authentication, listing and revocation.

A token reads ``cb_<id>_<secret>``. The id is public (it names the token in listings and
in the System Log); only ``sha256(secret)`` is stored, so the whole token is shown once,
when it is created, and never again. Authentication compares hashes in constant time,
refuses expired and revoked tokens, and records ``last_used_at`` at most once a minute
per token, so a busy client does not turn every API read into a database write.

A token belongs to an admin (:mod:`certbound.admin.admins`) and carries a
:class:`~certbound.admin.roles.Role` within the admin's (the same or a lower one). It is
refused once its admin is deactivated, or when the admin's role was lowered below the
token's. Tokens made before admins existed belong to none and act with their own role.
A token may be bound to a client certificate (the SHA-256 thumbprint of its DER): it is
then refused, ``INVALID_TOKEN`` with a detail saying so, unless the request presents that
certificate (the built-in TLS listener or a trusted proxy's header).

Creation and revocation are System Log events (``system.api_token.create`` and
``system.api_token.revoke``) whose target is the token id; the secret never reaches an
event. They are recorded when :class:`ApiTokens` is given a recorder.
"""

from __future__ import annotations

import builtins
import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from certbound.admin import admins
from certbound.admin.admins import Admin
from certbound.admin.roles import Role, parse_role, within
from certbound.clock import Clock, format_rfc3339
from certbound.errors import CertboundError, ReasonCode
from certbound.storage.database import Database
from certbound.storage.models import AdminRow, ApiToken
from certbound.syslog.events import (
    CLI_ACTOR,
    Actor,
    Event,
    EventType,
    Outcome,
    Result,
    Target,
)

TOKEN_PREFIX = "cb"
DEFAULT_ROLE = "SUPER_ADMIN"
MAX_NAME_LENGTH = 200
# last_used_at is written at most this often per token.
LAST_USED_GRANULARITY = dt.timedelta(minutes=1)
_TOKEN = re.compile(r"^cb_([0-9a-f]{16})_([0-9a-f]{64})$")
_THUMBPRINT = re.compile(r"^[0-9a-f]{64}$")
# Compared against when the id is unknown, so both paths do the same work.
_DUMMY_HASH = hashlib.sha256(b"certbound-no-such-token").hexdigest()


class AuthError(CertboundError):
    """A bearer token was refused (reason ``INVALID_TOKEN``); the detail says why."""


class TokenNotFoundError(LookupError):
    """No API token has the given id."""


class _Recorder(Protocol):
    def record(self, event: Event) -> Event: ...


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """An API token as stored, without its secret."""

    id: str
    name: str
    role: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None
    admin_id: str | None = None
    cert_sha256: str | None = None

    def status(self, now: dt.datetime) -> str:
        """``revoked``, ``expired`` or ``active``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def to_dict(self, now: dt.datetime | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "createdAt": format_rfc3339(self.created_at),
            "expiresAt": _rfc3339(self.expires_at),
            "lastUsedAt": _rfc3339(self.last_used_at),
            "revokedAt": _rfc3339(self.revoked_at),
            "adminId": self.admin_id,
            "certificateSha256": self.cert_sha256,
        }
        if now is not None:
            data["status"] = self.status(now)
        return data


@dataclass(frozen=True, slots=True)
class Bearer:
    """An authenticated token and its admin (None: a token that belongs to no admin)."""

    token: TokenInfo
    admin: Admin | None

    @property
    def role(self) -> Role:
        return Role(self.token.role)


def _rfc3339(value: dt.datetime | None) -> str | None:
    return None if value is None else format_rfc3339(value)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def format_token(token_id: str, secret: str) -> str:
    return f"{TOKEN_PREFIX}_{token_id}_{secret}"


def split_token(token: str) -> tuple[str, str]:
    """The id and secret of a token; AuthError when it is not shaped like one."""
    match = _TOKEN.match(token.strip())
    if match is None:
        raise AuthError(ReasonCode.INVALID_TOKEN, "malformed API token: expected cb_<id>_<secret>")
    return match.group(1), match.group(2)


def _info(row: ApiToken) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        name=row.name,
        role=row.role,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        admin_id=row.admin_id,
        cert_sha256=row.cert_sha256,
    )


def _checked_name(name: str) -> str:
    name = name.strip()
    if not 0 < len(name) <= MAX_NAME_LENGTH:
        raise ValueError(f"a token name has 1 to {MAX_NAME_LENGTH} characters")
    return name


def _checked_role(role: str) -> str:
    return parse_role(role).value


def checked_thumbprint(value: str | None) -> str | None:
    """A certificate's SHA-256 thumbprint as 64 lower-case hex digits (colons and case are
    forgiven); ValueError otherwise."""
    if value is None:
        return None
    text = value.strip().replace(":", "").lower()
    if not _THUMBPRINT.match(text):
        raise ValueError("a certificate thumbprint is a SHA-256 in hex (64 digits)")
    return text


def _owner(session: Session, ref: str, role: str) -> str:
    """The id of the admin ``ref`` names, when it is active and ``role`` is within its
    role (ADMIN_NOT_FOUND, INVALID_REQUEST_BODY, FORBIDDEN_ROLE)."""
    admin = admins.admin_of(admins.lookup(session, ref))
    if not admin.active:
        raise CertboundError(
            ReasonCode.INVALID_REQUEST_BODY,
            f"admin {admin.username} ({admin.id}) is deactivated: it has no tokens",
            {"adminId": admin.id},
        )
    if not within(Role(role), admin.role):
        raise CertboundError(
            ReasonCode.FORBIDDEN_ROLE,
            f"a token of admin {admin.username} ({admin.role.value}) carries that role or a "
            f"lower one, not {role}",
            {"adminId": admin.id, "role": role},
        )
    return admin.id


def _target(info: TokenInfo) -> Target:
    return Target(info.id, "ApiToken", info.id, info.name)


def created_event(info: TokenInfo, actor: Actor) -> Event:
    """``system.api_token.create``: the token id is the target; no secret anywhere."""
    return Event(
        EventType.SYSTEM_API_TOKEN_CREATE,
        f"API token {info.id} ({info.name}) created with role {info.role}",
        Outcome(Result.SUCCESS),
        actor=actor,
        targets=(_target(info),),
        debug_data={
            "role": info.role,
            "expiresAt": _rfc3339(info.expires_at),
            "adminId": info.admin_id,
            "certificateSha256": info.cert_sha256,
        },
    )


def revoked_event(info: TokenInfo, actor: Actor) -> Event:
    return Event(
        EventType.SYSTEM_API_TOKEN_REVOKE,
        f"API token {info.id} ({info.name}) revoked",
        Outcome(Result.SUCCESS),
        actor=actor,
        targets=(_target(info),),
    )


class ApiTokens:
    """The admin API tokens in the database."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        recorder: _Recorder | None = None,
        actor: Actor = CLI_ACTOR,
    ) -> None:
        self._db = db
        self._clock = clock
        self._recorder = recorder
        self._actor = actor

    def create(
        self,
        name: str,
        role: str = DEFAULT_ROLE,
        expires_in: dt.timedelta | None = None,
        *,
        admin: str | None = None,
        cert_sha256: str | None = None,
    ) -> tuple[str, TokenInfo]:
        """A new token: the whole token string (shown once) and what is stored about it.
        ``admin``: the id or username of the admin it belongs to (its role must be within
        the admin's); ``cert_sha256``: the certificate it is bound to. ValueError for a bad
        name, role, lifetime or thumbprint; CertboundError for the admin."""
        name, role = _checked_name(name), _checked_role(role)
        thumbprint = checked_thumbprint(cert_sha256)
        if expires_in is not None and expires_in <= dt.timedelta(0):
            raise ValueError("a token's lifetime must be positive")
        now = self._clock.now()
        token_id, secret = secrets.token_hex(8), secrets.token_hex(32)
        row = ApiToken(
            id=token_id,
            name=name,
            role=role,
            secret_hash=hash_secret(secret),
            created_at=now,
            expires_at=None if expires_in is None else now + expires_in,
            cert_sha256=thumbprint,
        )
        with self._db.session() as session:
            row.admin_id = None if admin is None else _owner(session, admin, role)
            session.add(row)
            info = _info(row)
        if self._recorder is not None:
            self._recorder.record(created_event(info, self._actor))
        return format_token(token_id, secret), info

    def authenticate(self, token: str, *, presented_sha256: str | None = None) -> TokenInfo:
        """The token's info when it is valid now; AuthError otherwise (see :meth:`bearer`)."""
        return self.bearer(token, presented_sha256=presented_sha256).token

    def bearer(self, token: str, *, presented_sha256: str | None = None) -> Bearer:
        """The token and its admin when the token is valid now: known, not revoked or
        expired, its admin active with a role the token's is within, and, when it is bound
        to a certificate, ``presented_sha256`` (the thumbprint of the certificate the
        request presented) that certificate's. AuthError (INVALID_TOKEN) otherwise."""
        token_id, secret = split_token(token)
        now = self._clock.now()
        with self._db.session() as session:
            row = session.get(ApiToken, token_id)
            stored = row.secret_hash if row is not None else _DUMMY_HASH
            if not hmac.compare_digest(stored, hash_secret(secret)) or row is None:
                raise AuthError(ReasonCode.INVALID_TOKEN, "unknown API token")
            info = _info(row)
            _check_usable(info, now)
            admin_row = None if info.admin_id is None else session.get(AdminRow, info.admin_id)
            owner = None if admin_row is None else admins.admin_of(admin_row)
            _check_role(info, owner)
            _check_binding(info, presented_sha256)
            if info.last_used_at is None or now - info.last_used_at >= LAST_USED_GRANULARITY:
                self._touch(token_id, now)
        return Bearer(info, owner)

    def _touch(self, token_id: str, now: dt.datetime) -> None:
        """Record use in its own short transaction; concurrent requests write once."""
        cutoff = now - LAST_USED_GRANULARITY
        with self._db.session() as session:
            session.execute(
                update(ApiToken)
                .where(ApiToken.id == token_id)
                .where(or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= cutoff))
                .values(last_used_at=now)
            )

    def get(self, token_id: str) -> TokenInfo:
        with self._db.session() as session:
            row = session.get(ApiToken, token_id)
            if row is None:
                raise TokenNotFoundError(f"no API token with id {token_id!r}")
            return _info(row)

    def list(self, *, admin_id: str | None = None) -> builtins.list[TokenInfo]:
        """Every token (``admin_id``: of that admin), revoked and expired ones included,
        oldest first."""
        query = select(ApiToken)
        if admin_id is not None:
            query = query.where(ApiToken.admin_id == admin_id)
        with self._db.session() as session:
            rows = session.scalars(query.order_by(ApiToken.created_at, ApiToken.id))
            return [_info(row) for row in rows]

    def revoke(self, token_id: str) -> TokenInfo:
        """Revoke a token (a no-op, without a second event, if it already is)."""
        info, now_revoked = self.revoke_once(token_id)
        if now_revoked and self._recorder is not None:
            self._recorder.record(revoked_event(info, self._actor))
        return info

    def revoke_once(self, token_id: str) -> tuple[TokenInfo, bool]:
        """Revoke a token: its info, and whether this call revoked it (False: it already
        was, perhaps by a concurrent call: the row is locked while it is decided)."""
        with self._db.session() as session:
            row = session.get(ApiToken, token_id, with_for_update=True)
            if row is None:
                raise TokenNotFoundError(f"no API token with id {token_id!r}")
            already = row.revoked_at is not None
            if not already:
                row.revoked_at = self._clock.now()
            return _info(row), not already


def _refuse(detail: str) -> AuthError:
    return AuthError(ReasonCode.INVALID_TOKEN, detail)


def _check_usable(info: TokenInfo, now: dt.datetime) -> None:
    if info.revoked_at is not None:
        raise _refuse(f"API token {info.id} was revoked at {format_rfc3339(info.revoked_at)}")
    if info.expires_at is not None and info.expires_at <= now:
        raise _refuse(f"API token {info.id} expired at {format_rfc3339(info.expires_at)}")


def _check_role(info: TokenInfo, owner: Admin | None) -> None:
    try:
        role = parse_role(info.role)
    except ValueError:
        detail = f"API token {info.id} has the role {info.role!r}, which is not a role"
        raise _refuse(detail) from None
    if info.admin_id is None:
        return
    if owner is None or not owner.active:
        raise _refuse(f"API token {info.id} belongs to admin {info.admin_id}, who is deactivated")
    if not within(role, owner.role):
        raise _refuse(
            f"API token {info.id} has the role {role.value}, above its admin's "
            f"({owner.role.value} since the role was changed): create a new token"
        )


def _check_binding(info: TokenInfo, presented_sha256: str | None) -> None:
    bound = info.cert_sha256
    if bound is None or (presented_sha256 is not None and presented_sha256.lower() == bound):
        return
    what = "no client certificate" if presented_sha256 is None else "another certificate"
    raise _refuse(
        f"API token {info.id} is bound to the client certificate with SHA-256 {bound}; "
        f"the request presented {what} (connect with that certificate over mTLS)"
    )
