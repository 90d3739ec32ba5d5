"""System Log events with their hash chain, and admin API tokens.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from certbound.storage.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

GENESIS = "0" * 64
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "log_events",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("uuid", sa.String(36), nullable=False, unique=True),
        sa.Column("published", UTCDateTime, nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("severity", sa.String(8), nullable=False),
        sa.Column("outcome_result", sa.String(16), nullable=False),
        sa.Column("outcome_reason", sa.String(64)),
        sa.Column("actor_id", sa.String(255)),
        sa.Column("actor_alternate_id", sa.String(255)),
        sa.Column("client_ip", sa.String(64)),
        sa.Column("transaction_id", sa.String(64)),
        sa.Column("device_serial", sa.String(64)),
        sa.Column("device_subject_dn", sa.Text),
        sa.Column("device_issuer_dn", sa.Text),
        sa.Column("device_thumbprint", sa.String(64)),
        sa.Column("target_ids", sa.Text),
        sa.Column("display_message", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index(
        "ix_log_events_type_published", "log_events", ["event_type", "published", "seq"]
    )
    op.create_index("ix_log_events_published", "log_events", ["published", "seq"])
    op.create_index("ix_log_events_reason_published", "log_events", ["outcome_reason", "published"])
    op.create_index("ix_log_events_device_serial", "log_events", ["device_serial"])
    op.create_index("ix_log_events_transaction", "log_events", ["transaction_id"])
    op.create_table(
        "log_chain",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("last_seq", _SEQ, nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.Column("anchor_seq", _SEQ, nullable=False),
        sa.Column("anchor_hash", sa.String(64), nullable=False),
    )
    op.execute(
        "INSERT INTO log_chain (id, last_seq, last_hash, anchor_seq, anchor_hash) "
        f"VALUES (1, 0, '{GENESIS}', 0, '{GENESIS}')"
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime),
        sa.Column("last_used_at", UTCDateTime),
        sa.Column("revoked_at", UTCDateTime),
    )


def downgrade() -> None:
    op.drop_table("api_tokens")
    op.drop_table("log_chain")
    op.drop_table("log_events")
