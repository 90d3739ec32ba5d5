"""Token revocation (RFC 7009): the revoked access tokens, by ``jti``, until they expire.

An access token is a self-contained JWT (RFC 9068), so revoking it records its ``jti`` in
``revoked_tokens`` until its ``exp``: introspection (:mod:`certbound.oauth.rfc7662`) then
answers ``active: false``. Resource servers that verify tokens locally (:mod:`certbound.rs`)
do not see revocations before expiry; those that must, introspect. Per RFC 7009 section 2.2
the endpoint answers 200 whatever the token was (unknown, already revoked, expired), so a
caller learns nothing about tokens it does not own; only a token issued to the calling client
is revoked.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from certbound.clock import Clock
from certbound.storage.database import Database
from certbound.storage.models import RevokedToken


class Revocations:
    """The ``revoked_tokens`` table."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def revoke(self, jti: str, client_id: str, expires_at: dt.datetime) -> bool:
        """Record the revocation; False when it was already revoked."""
        row = RevokedToken(
            jti=jti, client_id=client_id, expires_at=expires_at, revoked_at=self._clock.now()
        )
        try:
            with self._db.session() as session:
                session.add(row)
        except IntegrityError:
            return False
        return True

    def is_revoked(self, jti: str) -> bool:
        with self._db.session() as session:
            found = session.scalar(select(RevokedToken.jti).where(RevokedToken.jti == jti))
        return found is not None

    def purge(self) -> int:
        """Forget revocations of tokens that have expired anyway."""
        with self._db.session() as session:
            done = session.execute(
                delete(RevokedToken).where(RevokedToken.expires_at < self._clock.now())
            )
        return int(done.rowcount or 0)  # type: ignore[attr-defined]
