"""Device registry: one row per client certificate seen, and the status-change generation.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from certbound.storage.models import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("issuer_dn", sa.Text, nullable=False),
        sa.Column("issuer_sha256", sa.String(64), nullable=False),
        sa.Column("serial_number", sa.Text, nullable=False),
        sa.Column("thumbprint", sa.String(64), nullable=False),
        sa.Column("subject_dn", sa.Text, nullable=False),
        sa.Column("sans", sa.Text, nullable=False),
        sa.Column("user_name", sa.String(256)),
        sa.Column("mapped_by", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_seq", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("first_seen", UTCDateTime, nullable=False),
        sa.Column("last_seen", UTCDateTime, nullable=False),
        sa.Column("not_after", UTCDateTime, nullable=False),
        sa.UniqueConstraint("thumbprint", name="uq_devices_thumbprint"),
        sa.UniqueConstraint("issuer_sha256", "serial_number", name="uq_devices_issuer_serial"),
    )
    op.create_index("ix_devices_first_seen", "devices", ["first_seen", "id"])
    op.create_index("ix_devices_serial_number", "devices", ["serial_number"])
    op.create_index("ix_devices_user_name", "devices", ["user_name"])
    op.create_index("ix_devices_status_seq", "devices", ["status_seq"])
    op.create_table(
        "device_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("generation", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO device_state (id, generation) VALUES (1, 0)")


def downgrade() -> None:
    op.drop_table("device_state")
    op.drop_table("devices")
