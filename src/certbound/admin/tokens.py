"""Admin API tokens: creation, bearer authentication, listing and revocation.

A token reads ``cb_<id>_<secret>``. The id is public (it names the token in listings and
in the System Log); only ``sha256(secret)`` is stored, so the whole token is shown once,
when it is created, and never again. Authentication compares hashes in constant time,
refuses expired and revoked tokens, and records ``last_used_at`` at most once a minute
per token, so a busy client does not turn every API read into a database write.

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

from certbound.clock import Clock, format_rfc3339
from certbound.errors import CertboundError, ReasonCode
from certbound.storage.database import Database
from certbound.storage.models import ApiToken
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
MAX_ROLE_LENGTH = 32
# last_used_at is written at most this often per token.
LAST_USED_GRANULARITY = dt.timedelta(minutes=1)
_TOKEN = re.compile(r"^cb_([0-9a-f]{16})_([0-9a-f]{64})$")
_ROLE = re.compile(r"^[A-Z][A-Z0-9_]*$")
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
        }
        if now is not None:
            data["status"] = self.status(now)
        return data


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
    )


def _checked_name(name: str) -> str:
    name = name.strip()
    if not 0 < len(name) <= MAX_NAME_LENGTH:
        raise ValueError(f"a token name has 1 to {MAX_NAME_LENGTH} characters")
    return name


def _checked_role(role: str) -> str:
    if not (_ROLE.match(role) and len(role) <= MAX_ROLE_LENGTH):
        raise ValueError(
            f"a role is an upper-case word of at most {MAX_ROLE_LENGTH} characters, "
            f"such as {DEFAULT_ROLE}"
        )
    return role


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
        debug_data={"role": info.role, "expiresAt": _rfc3339(info.expires_at)},
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
        self, name: str, role: str = DEFAULT_ROLE, expires_in: dt.timedelta | None = None
    ) -> tuple[str, TokenInfo]:
        """A new token: the whole token string (shown once) and what is stored about it."""
        name, role = _checked_name(name), _checked_role(role)
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
        )
        with self._db.session() as session:
            session.add(row)
            info = _info(row)
        if self._recorder is not None:
            self._recorder.record(created_event(info, self._actor))
        return format_token(token_id, secret), info

    def authenticate(self, token: str) -> TokenInfo:
        """The token's info when it is valid now; AuthError otherwise."""
        token_id, secret = split_token(token)
        now = self._clock.now()
        with self._db.session() as session:
            row = session.get(ApiToken, token_id)
            stored = row.secret_hash if row is not None else _DUMMY_HASH
            if not hmac.compare_digest(stored, hash_secret(secret)) or row is None:
                raise AuthError(ReasonCode.INVALID_TOKEN, "unknown API token")
            info = _info(row)
            if info.revoked_at is not None:
                raise AuthError(
                    ReasonCode.INVALID_TOKEN,
                    f"API token {token_id} was revoked at {format_rfc3339(info.revoked_at)}",
                )
            if info.expires_at is not None and info.expires_at <= now:
                raise AuthError(
                    ReasonCode.INVALID_TOKEN,
                    f"API token {token_id} expired at {format_rfc3339(info.expires_at)}",
                )
            if info.last_used_at is None or now - info.last_used_at >= LAST_USED_GRANULARITY:
                self._touch(token_id, now)
        return info

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

    def list(self) -> builtins.list[TokenInfo]:
        """Every token, revoked and expired ones included, oldest first."""
        with self._db.session() as session:
            rows = session.scalars(select(ApiToken).order_by(ApiToken.created_at, ApiToken.id))
            return [_info(row) for row in rows]

    def revoke(self, token_id: str) -> TokenInfo:
        """Revoke a token (a no-op, without a second event, if it already is)."""
        now = self._clock.now()
        with self._db.session() as session:
            row = session.get(ApiToken, token_id, with_for_update=True)
            if row is None:
                raise TokenNotFoundError(f"no API token with id {token_id!r}")
            already = row.revoked_at is not None
            if not already:
                row.revoked_at = now
            info = _info(row)
        if not already and self._recorder is not None:
            self._recorder.record(revoked_event(info, self._actor))
        return info
