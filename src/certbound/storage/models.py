"""SQLAlchemy table models. Tables are created and changed only by Alembic migrations."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    pass


class TrustState(Base):
    """One row: a counter bumped on every trust-store change, so every instance can
    notice a change made by another and rebuild its verifiers."""

    __tablename__ = "trust_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class CertificateAuthority(Base):
    """An uploaded CA chain: one or more CA certificates, stored leaf-side first."""

    __tablename__ = "certificate_authorities"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    notices: Mapped[str] = mapped_column(Text, nullable=False, default="")
    certificates: Mapped[list[CACertificate]] = relationship(
        back_populates="authority",
        cascade="all, delete-orphan",
        order_by="CACertificate.position",
        lazy="selectin",
    )


class CACertificate(Base):
    __tablename__ = "ca_certificates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ca_id: Mapped[str] = mapped_column(
        ForeignKey("certificate_authorities.id", ondelete="CASCADE"), nullable=False, index=True
    )
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    subject_dn: Mapped[str] = mapped_column(Text, nullable=False)
    issuer_dn: Mapped[str] = mapped_column(Text, nullable=False)
    serial_number: Mapped[str] = mapped_column(String(64), nullable=False)
    not_before: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    not_after: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    sha256_fingerprint: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    spki_sha256: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    der: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    authority: Mapped[CertificateAuthority] = relationship(back_populates="certificates")


_SEQ = BigInteger().with_variant(Integer, "sqlite")


class LogEvent(Base):
    """One System Log event: the full JSON in ``body``, the filterable fields as columns,
    and the hash chain (``prev_hash`` -> ``hash``) that makes edits evident."""

    __tablename__ = "log_events"
    __table_args__ = (
        Index("ix_log_events_type_published", "event_type", "published", "seq"),
        Index("ix_log_events_published", "published", "seq"),
        Index("ix_log_events_reason_published", "outcome_reason", "published"),
        Index("ix_log_events_device_serial", "device_serial"),
        Index("ix_log_events_transaction", "transaction_id"),
    )

    seq: Mapped[int] = mapped_column(_SEQ, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), nullable=False, unique=True)
    published: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    event_type: Mapped[str] = mapped_column(String(100), nullable=False)
    severity: Mapped[str] = mapped_column(String(8), nullable=False)
    outcome_result: Mapped[str] = mapped_column(String(16), nullable=False)
    outcome_reason: Mapped[str | None] = mapped_column(String(64))
    actor_id: Mapped[str | None] = mapped_column(String(255))
    actor_alternate_id: Mapped[str | None] = mapped_column(String(255))
    client_ip: Mapped[str | None] = mapped_column(String(64))
    transaction_id: Mapped[str | None] = mapped_column(String(64))
    device_serial: Mapped[str | None] = mapped_column(String(64))
    device_subject_dn: Mapped[str | None] = mapped_column(Text)
    device_issuer_dn: Mapped[str | None] = mapped_column(Text)
    device_thumbprint: Mapped[str | None] = mapped_column(String(64))
    target_ids: Mapped[str | None] = mapped_column(Text)
    display_message: Mapped[str] = mapped_column(Text, nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)


class LogChain(Base):
    """One row: the head of the event hash chain, and the anchor left by the last purge."""

    __tablename__ = "log_chain"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_seq: Mapped[int] = mapped_column(_SEQ, nullable=False, default=0)
    last_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    anchor_seq: Mapped[int] = mapped_column(_SEQ, nullable=False, default=0)
    anchor_hash: Mapped[str] = mapped_column(String(64), nullable=False)


class ApiToken(Base):
    """An admin API token: only a hash of its secret is kept. ``admin_id``: the admin it
    belongs to (None: a token made before admins existed); ``cert_sha256``: the SHA-256
    thumbprint of the client certificate it is bound to (None: unbound)."""

    __tablename__ = "api_tokens"
    __table_args__ = (Index("ix_api_tokens_admin", "admin_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    role: Mapped[str] = mapped_column(String(32), nullable=False)
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    admin_id: Mapped[str | None] = mapped_column(String(40), ForeignKey("admins.id"))
    cert_sha256: Mapped[str | None] = mapped_column(String(64))


class CARevocation(Base):
    """Per-CA revocation settings (see certbound.pki.revocation_policy for defaults)."""

    __tablename__ = "ca_revocation"

    ca_id: Mapped[str] = mapped_column(
        ForeignKey("certificate_authorities.id", ondelete="CASCADE"), primary_key=True
    )
    mode: Mapped[str] = mapped_column(String(16), nullable=False)
    fail_open: Mapped[bool] = mapped_column(Boolean, nullable=False)
    crl_url: Mapped[str | None] = mapped_column(Text)
    ocsp_url: Mapped[str | None] = mapped_column(Text)
    max_staleness_seconds: Mapped[int] = mapped_column(Integer, nullable=False)
    timeout_seconds: Mapped[float] = mapped_column(nullable=False)


class CRLCacheEntry(Base):
    """A fetched CRL shared by every instance: the DER, its metadata and fetch health."""

    __tablename__ = "crl_cache"

    url: Mapped[str] = mapped_column(Text, primary_key=True)
    issuer_spki_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    der: Mapped[bytes | None] = mapped_column(LargeBinary)
    this_update: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    next_update: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    crl_number: Mapped[str | None] = mapped_column(String(64))
    entry_count: Mapped[int | None] = mapped_column(Integer)
    size: Mapped[int | None] = mapped_column(Integer)
    fetched_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_latency_ms: Mapped[float | None] = mapped_column()


class OCSPResponder(Base):
    """An OCSP responder the devices' certificates named and some instance asked: the
    health of its requests, shared by every instance (``ca health``)."""

    __tablename__ = "ocsp_responders"

    url: Mapped[str] = mapped_column(Text, primary_key=True)
    issuer_spki_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_ok_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_latency_ms: Mapped[float | None] = mapped_column()
    requests: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)


class RevocationCounter(Base):
    """Revocation cache hits and misses of the whole fleet, per CA (issuer SPKI pin) and
    ``all``: every instance adds its counts (``hits = hits + :delta``)."""

    __tablename__ = "revocation_counters"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    hits: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    misses: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Device(Base):
    """One client certificate seen over mTLS (certbound.devices.registry): its facts, the
    user it maps to and its status. ``status_seq`` is the device-state generation of its
    last status change, so every instance can re-read just the statuses that changed."""

    __tablename__ = "devices"
    __table_args__ = (
        UniqueConstraint("thumbprint", name="uq_devices_thumbprint"),
        # One device per issuer and serial; the issuer as a SHA-256 of its DN keeps the
        # index entry small whatever the DN's length.
        UniqueConstraint("issuer_sha256", "serial_number", name="uq_devices_issuer_serial"),
        Index("ix_devices_first_seen", "first_seen", "id"),
        Index("ix_devices_serial_number", "serial_number"),
        Index("ix_devices_user_name", "user_name"),
        Index("ix_devices_status_seq", "status_seq"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    issuer_dn: Mapped[str] = mapped_column(Text, nullable=False)
    issuer_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    serial_number: Mapped[str] = mapped_column(Text, nullable=False)
    thumbprint: Mapped[str] = mapped_column(String(64), nullable=False)
    subject_dn: Mapped[str] = mapped_column(Text, nullable=False)
    sans: Mapped[str] = mapped_column(Text, nullable=False)  # a JSON list of strings
    user_name: Mapped[str | None] = mapped_column(String(256))
    mapped_by: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    status_seq: Mapped[int] = mapped_column(_SEQ, nullable=False, default=0)
    first_seen: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    last_seen: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    not_after: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class DeviceState(Base):
    """One row: the generation bumped by every device status change (its row lock orders
    the changes, so their ``status_seq`` values are in commit order)."""

    __tablename__ = "device_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(_SEQ, nullable=False, default=0)


# --- directory (certbound.directory) and OAuth (certbound.oauth) -------------------------


class User(Base):
    """A person who signs in (the authorize flow); ``password_hash`` is argon2id or None."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    username: Mapped[str] = mapped_column(String(256), nullable=False, unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    display_name: Mapped[str | None] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    password_hash: Mapped[str | None] = mapped_column(Text)
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    updated: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class Group(Base):
    """A named set of users (policy conditions refer to groups by id)."""

    __tablename__ = "groups"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(256), nullable=False, unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class GroupMember(Base):
    __tablename__ = "group_members"
    __table_args__ = (Index("ix_group_members_user", "user_id"),)

    group_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )


class App(Base):
    """An OAuth client: its registration metadata as JSON (RFC 7591 / RFC 8705 names), and
    the hash of its secret for the client_secret_* methods."""

    __tablename__ = "apps"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(256), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(256), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    metadata_json: Mapped[str] = mapped_column(Text, nullable=False)
    secret_hash: Mapped[str | None] = mapped_column(Text)
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    updated: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class SigningKey(Base):
    """A token-signing key: the public JWK, and the private key as encrypted PKCS#8 PEM.
    Status: ``active`` (signs), ``retiring`` (published, verifies), ``retired``."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    public_jwk: Mapped[str] = mapped_column(Text, nullable=False)
    private_pem: Mapped[str] = mapped_column(Text, nullable=False)
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    retired: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class OAuthGrant(Base):
    """Authorization codes and refresh tokens, stored by the SHA-256 of their value.

    ``kind``: ``code`` or ``refresh``; ``family`` groups a refresh token with the ones it
    was rotated from (reuse of a rotated token revokes the family); ``cnf`` is the x5t#S256
    the grant is bound to; ``data`` holds what the grant carries (scope, redirect URI, PKCE
    challenge, nonce) as JSON."""

    __tablename__ = "oauth_grants"
    __table_args__ = (
        Index("ix_oauth_grants_family", "family"),
        Index("ix_oauth_grants_expires", "expires_at"),
    )

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    family: Mapped[str] = mapped_column(String(64), nullable=False)
    client_id: Mapped[str] = mapped_column(String(256), nullable=False)
    user_id: Mapped[str | None] = mapped_column(String(40))
    cnf: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[str] = mapped_column(Text, nullable=False)
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class RevokedToken(Base):
    """An access token revoked before it expired (RFC 7009), by its ``jti``; kept until then."""

    __tablename__ = "revoked_tokens"
    __table_args__ = (Index("ix_revoked_tokens_expires", "expires_at"),)

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(256), nullable=False)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    revoked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


# --- sign-on policies (certbound.policy) --------------------------------------------------


class PolicyRow(Base):
    """A sign-on policy; ``revision`` moves on every change of it, its rules or its apps."""

    __tablename__ = "policies"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(256), nullable=False, unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    is_default: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    revision: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    updated: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class PolicyRuleRow(Base):
    """One rule of a policy at its 1-based ``position`` (the catch-all is the last);
    ``conditions`` is the rule's conditions as JSON (``Conditions.to_dict``)."""

    __tablename__ = "policy_rules"
    __table_args__ = (Index("ix_policy_rules_policy_position", "policy_id", "position"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    policy_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("policies.id", ondelete="CASCADE"), nullable=False
    )
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    name: Mapped[str] = mapped_column(String(256), nullable=False)
    action: Mapped[str] = mapped_column(String(8), nullable=False)
    conditions: Mapped[str] = mapped_column(Text, nullable=False)
    catch_all: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class PolicyAppRow(Base):
    """An app's policy: at most one per app; an app without a row uses the default policy."""

    __tablename__ = "policy_apps"
    __table_args__ = (Index("ix_policy_apps_policy", "policy_id"),)

    app_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True
    )
    policy_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("policies.id", ondelete="CASCADE"), nullable=False
    )


class NetworkZoneRow(Base):
    """A named set of IPv4 and IPv6 networks (``cidrs``: a JSON list) policies refer to."""

    __tablename__ = "network_zones"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(256), nullable=False, unique=True)
    cidrs: Mapped[str] = mapped_column(Text, nullable=False)
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    updated: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class PolicyState(Base):
    """One row: a generation bumped by every change to policies, rules, app assignments or
    zones, so every instance notices a change made elsewhere with one small query."""

    __tablename__ = "policy_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(_SEQ, nullable=False, default=0)


# --- admin accounts (certbound.admin) -----------------------------------------------------


class AdminRow(Base):
    """An admin of Certbound itself: its role decides what its API tokens may do."""

    __tablename__ = "admins"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    username: Mapped[str] = mapped_column(String(256), nullable=False, unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(32), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    updated: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
