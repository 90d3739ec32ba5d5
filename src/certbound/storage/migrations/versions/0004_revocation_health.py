"""Revocation health of the fleet: OCSP responders asked, cache hit/miss counters.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from certbound.storage.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ocsp_responders",
        sa.Column("url", sa.Text, primary_key=True),
        sa.Column("issuer_spki_sha256", sa.String(64), primary_key=True),
        sa.Column("last_ok_at", UTCDateTime),
        sa.Column("last_error", sa.Text),
        sa.Column("last_error_at", UTCDateTime),
        sa.Column("last_latency_ms", sa.Float),
        sa.Column("requests", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_table(
        "revocation_counters",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("hits", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("misses", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("updated_at", UTCDateTime),
    )


def downgrade() -> None:
    op.drop_table("revocation_counters")
    op.drop_table("ocsp_responders")
