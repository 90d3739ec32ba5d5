"""Revocation: per-CA settings and the shared CRL cache.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from certbound.storage.models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ca_revocation",
        sa.Column(
            "ca_id",
            sa.String(40),
            sa.ForeignKey("certificate_authorities.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("fail_open", sa.Boolean, nullable=False),
        sa.Column("crl_url", sa.Text),
        sa.Column("ocsp_url", sa.Text),
        sa.Column("max_staleness_seconds", sa.Integer, nullable=False),
        sa.Column("timeout_seconds", sa.Float, nullable=False),
    )
    op.create_table(
        "crl_cache",
        sa.Column("url", sa.Text, primary_key=True),
        sa.Column("issuer_spki_sha256", sa.String(64), primary_key=True),
        sa.Column("der", sa.LargeBinary),
        sa.Column("this_update", UTCDateTime),
        sa.Column("next_update", UTCDateTime),
        sa.Column("crl_number", sa.String(64)),
        sa.Column("entry_count", sa.Integer),
        sa.Column("size", sa.Integer),
        sa.Column("fetched_at", UTCDateTime),
        sa.Column("last_attempt_at", UTCDateTime),
        sa.Column("last_error", sa.Text),
        sa.Column("last_latency_ms", sa.Float),
    )


def downgrade() -> None:
    op.drop_table("crl_cache")
    op.drop_table("ca_revocation")
