"""Sign-on policies: policies, their ordered rules, app assignments, network zones, and the
generation every instance polls to notice a change.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from certbound.storage.models import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policies",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(256), nullable=False, unique=True),
        sa.Column("description", sa.Text),
        sa.Column("is_default", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("revision", sa.Integer, nullable=False, server_default="1"),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("updated", UTCDateTime, nullable=False),
    )
    op.create_table(
        "policy_rules",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "policy_id", sa.String(40), sa.ForeignKey("policies.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("conditions", sa.Text, nullable=False),
        sa.Column("catch_all", sa.Boolean, nullable=False, server_default=sa.false()),
    )  # fmt: skip
    op.create_index("ix_policy_rules_policy_position", "policy_rules", ["policy_id", "position"])
    op.create_table(
        "policy_apps",
        sa.Column(
            "app_id", sa.String(40), sa.ForeignKey("apps.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "policy_id", sa.String(40), sa.ForeignKey("policies.id", ondelete="CASCADE"),
            nullable=False,
        ),
    )  # fmt: skip
    op.create_index("ix_policy_apps_policy", "policy_apps", ["policy_id"])
    op.create_table(
        "network_zones",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(256), nullable=False, unique=True),
        sa.Column("cidrs", sa.Text, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("updated", UTCDateTime, nullable=False),
    )
    op.create_table(
        "policy_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("generation", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO policy_state (id, generation) VALUES (1, 0)")


def downgrade() -> None:
    for table in ("policy_state", "network_zones", "policy_apps", "policy_rules", "policies"):
        op.drop_table(table)
