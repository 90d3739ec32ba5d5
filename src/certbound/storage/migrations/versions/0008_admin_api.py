"""Admin API: admin accounts, and the admin and certificate binding of each API token.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from certbound.storage.models import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admins",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("username", sa.String(256), nullable=False, unique=True),
        sa.Column("email", sa.String(320)),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("updated", UTCDateTime, nullable=False),
    )
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("admin_id", sa.String(40)))
        batch.add_column(sa.Column("cert_sha256", sa.String(64)))
        batch.create_foreign_key("fk_api_tokens_admin", "admins", ["admin_id"], ["id"])
        batch.create_index("ix_api_tokens_admin", ["admin_id"])


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_index("ix_api_tokens_admin")
        batch.drop_constraint("fk_api_tokens_admin", type_="foreignkey")
        batch.drop_column("cert_sha256")
        batch.drop_column("admin_id")
    op.drop_table("admins")
