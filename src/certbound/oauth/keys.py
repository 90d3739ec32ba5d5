"""Token signing keys: creation, encryption at rest, rotation, and the published JWKS.

Keys live in the ``signing_keys`` table. A key is ``active`` (signs new tokens; one at a
time), ``retiring`` (no longer signs, still published so tokens it signed stay verifiable
until they expire) or ``retired`` (not published). The ``kid`` is the key's RFC 7638 JWK
thumbprint. The private key is stored as PKCS#8 PEM encrypted under the server secret
(:func:`load_secret`), so a copy of the database alone signs nothing.

:class:`SigningKeys` caches what it read for ``cache_seconds`` of the injected clock, so
several processes over one database see a rotation within that time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from joserfc.jwk import ECKey, KeySet, RSAKey
from sqlalchemy import select, update

from certbound.clock import Clock, format_rfc3339
from certbound.config import ConfigError
from certbound.errors import WouldBlockError
from certbound.oauth.jws import CompactSigner
from certbound.storage.database import Database
from certbound.storage.models import SigningKey as SigningKeyRow

ACTIVE, RETIRING, RETIRED = "active", "retiring", "retired"
SECRET_BYTES = 32
RSA_BITS = 2048
ALGORITHMS = ("ES256", "RS256")

JoseKey = ECKey | RSAKey


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private signing key (a joserfc key object) with its ``kid`` and JWS ``alg``."""

    kid: str
    alg: str
    key: JoseKey
    signer: CompactSigner = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        signer = CompactSigner(self.key.private_key, self.alg, self.kid)  # type: ignore[arg-type]
        object.__setattr__(self, "signer", signer)


def load_secret(path: Path) -> bytes:
    """The secret that encrypts signing keys: created when missing (32 random bytes, mode
    0600, written atomically), else read. :class:`~certbound.config.ConfigError` when it
    cannot be read or is shorter than 32 bytes."""
    if not path.exists():
        _create_secret(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"secret key file {path} is unreadable: {exc.strerror}") from None
    if len(data) < SECRET_BYTES:
        raise ConfigError(
            f"secret key file {path} holds {len(data)} bytes; at least {SECRET_BYTES} are "
            "needed (restore the original file: signing keys encrypted under it are "
            "unusable without it)"
        )
    return data


def _create_secret(path: Path) -> None:
    """Write a new secret beside ``path`` and link it into place: a concurrent creator's
    file wins, and a reader never sees a partial file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(secrets.token_bytes(SECRET_BYTES))
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):  # a concurrent creator won
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create secret key file {path}: {exc.strerror}") from None


def generate(alg: str) -> JoseKey:
    """A new private key for ``alg`` (ES256: P-256; RS256: RSA 2048), its kid set."""
    key: JoseKey
    if alg == "ES256":
        key = ECKey.generate_key("P-256", private=True)
    elif alg == "RS256":
        key = RSAKey.generate_key(RSA_BITS, private=True)
    else:
        raise ValueError(f"unsupported signing algorithm {alg!r}; use one of {ALGORITHMS}")
    return _with_kid(key, alg)


def _with_kid(key: JoseKey, alg: str) -> JoseKey:
    params = {"kid": key.thumbprint(), "alg": alg, "use": "sig"}
    if isinstance(key, ECKey):
        return ECKey.import_key(key.as_dict(private=True), params)  # type: ignore[arg-type]
    return RSAKey.import_key(key.as_dict(private=True), params)  # type: ignore[arg-type]


def public_jwk(key: JoseKey, alg: str) -> dict[str, Any]:
    """The published form: public members plus kid, alg and use."""
    jwk: dict[str, Any] = dict(key.as_dict(private=False))
    jwk.update(kid=key.kid or key.thumbprint(), alg=alg, use="sig")
    return jwk


def encrypt_private(key: JoseKey, secret: bytes) -> str:
    pem = key.private_key
    assert pem is not None
    return pem.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(secret),
    ).decode("ascii")


def decrypt_private(row: SigningKeyRow, secret: bytes) -> SigningKey:
    """The private key of ``row``; ValueError when ``secret`` is not the one it was stored
    under (or the PEM is damaged)."""
    params = {"kid": row.kid, "alg": row.alg, "use": "sig"}
    key: JoseKey
    if row.alg == "ES256":
        key = ECKey.import_key(row.private_pem, params, password=secret)  # type: ignore[arg-type]
    else:
        key = RSAKey.import_key(row.private_pem, params, password=secret)  # type: ignore[arg-type]
    return SigningKey(row.kid, row.alg, key)


@dataclass(frozen=True, slots=True)
class _Snapshot:
    loaded: dt.datetime
    rows: tuple[SigningKeyRow, ...]  # active and retiring, newest first

    def active(self) -> SigningKeyRow | None:
        return next((row for row in self.rows if row.status == ACTIVE), None)


class SigningKeys:
    """The server's signing keys over ``db``; ``secret`` encrypts private keys at rest."""

    def __init__(
        self, db: Database, clock: Clock, secret: bytes, *, cache_seconds: float = 5.0
    ) -> None:
        if len(secret) < SECRET_BYTES:
            raise ValueError(f"the secret must be at least {SECRET_BYTES} bytes")
        self._db = db
        self._clock = clock
        self._secret = secret
        self._cache = dt.timedelta(seconds=cache_seconds)
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._private: dict[str, SigningKey] = {}

    def signing_key(self, *, offline: bool = False) -> SigningKey:
        """The active key (an ES256 one is created when there is none). With ``offline``
        (on the event loop): only the cached, decrypted key, else WouldBlockError."""
        row = self._current(offline).active()
        if offline and (row is None or row.kid not in self._private):
            raise WouldBlockError("signing key not loaded")
        if row is None:
            self._create_first()
            row = self._current().active()
            assert row is not None
        key = self._private.get(row.kid)
        if key is None:
            key = decrypt_private(row, self._secret)
            self._private[row.kid] = key
        return key

    def verification_keys(self) -> KeySet:
        """The public keys of the active and retiring keys."""
        return KeySet.import_key_set({"keys": self.jwks()["keys"]})

    def jwks(self) -> dict[str, Any]:
        """``{"keys": [...]}``: the public JWKs of the active and retiring keys."""
        return {"keys": [json.loads(row.public_jwk) for row in self._current().rows]}

    def rotate(self, alg: str = "ES256") -> str:
        """Make a new ``alg`` key active; the previous active key becomes retiring."""
        key = generate(alg)
        now = self._clock.now()
        with self._db.session() as session:
            session.execute(
                update(SigningKeyRow).where(SigningKeyRow.status == ACTIVE).values(status=RETIRING)
            )
            session.add(self._row(key, alg, now))
        self.invalidate()
        assert key.kid is not None
        return key.kid

    def retire(self, kid: str) -> None:
        """Stop publishing ``kid``: tokens it signed no longer verify. KeyError when no such
        key; ValueError for the active key (rotate first)."""
        with self._db.session() as session:
            row = session.get(SigningKeyRow, kid)
            if row is None:
                raise KeyError(kid)
            if row.status == ACTIVE:
                raise ValueError(f"key {kid} is the active signing key: rotate before retiring")
            if row.status != RETIRED:
                row.status = RETIRED
                row.retired = self._clock.now()
        self.invalidate()

    def describe(self) -> list[dict[str, Any]]:
        """Every key, newest first: kid, alg, status, created, retired (no key material)."""
        with self._db.session() as session:
            rows = session.scalars(
                select(SigningKeyRow).order_by(SigningKeyRow.created.desc(), SigningKeyRow.kid)
            ).all()
            return [
                {
                    "kid": row.kid,
                    "alg": row.alg,
                    "status": row.status,
                    "created": format_rfc3339(row.created),
                    "retired": format_rfc3339(row.retired) if row.retired else None,
                }
                for row in rows
            ]

    def invalidate(self) -> None:
        """Forget the cached key list (the next call reads the database)."""
        with self._lock:
            self._snapshot = None

    def _current(self, offline: bool = False) -> _Snapshot:
        now = self._clock.now()
        snap = self._snapshot
        if snap is not None and now - snap.loaded < self._cache and now >= snap.loaded:
            return snap
        if offline:
            raise WouldBlockError("signing keys not cached")
        with self._lock:
            with self._db.session() as session:
                rows = session.scalars(
                    select(SigningKeyRow)
                    .where(SigningKeyRow.status.in_((ACTIVE, RETIRING)))
                    .order_by(SigningKeyRow.created.desc(), SigningKeyRow.kid)
                ).all()
                for row in rows:
                    session.expunge(row)
            snap = _Snapshot(now, tuple(sorted(rows, key=lambda r: r.status != ACTIVE)))
            self._snapshot = snap
        return snap

    def _create_first(self) -> None:
        key = generate("ES256")
        with self._db.session() as session:
            exists = session.scalar(
                select(SigningKeyRow.kid).where(SigningKeyRow.status == ACTIVE).limit(1)
            )
            if exists is None:
                session.add(self._row(key, "ES256", self._clock.now()))
        self.invalidate()

    def _row(self, key: JoseKey, alg: str, now: dt.datetime) -> SigningKeyRow:
        assert key.kid is not None
        return SigningKeyRow(
            kid=key.kid,
            alg=alg,
            status=ACTIVE,
            public_jwk=json.dumps(public_jwk(key, alg), sort_keys=True),
            private_pem=encrypt_private(key, self._secret),
            created=now,
            retired=None,
        )
