"""Trust store: uploaded CA chains and their certificates.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from certbound.storage.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trust_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("generation", sa.Integer, nullable=False),
    )
    op.execute("INSERT INTO trust_state (id, generation) VALUES (1, 0)")
    op.create_table(
        "certificate_authorities",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("notices", sa.Text, nullable=False),
    )
    op.create_table(
        "ca_certificates",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "ca_id",
            sa.String(40),
            sa.ForeignKey("certificate_authorities.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("subject_dn", sa.Text, nullable=False),
        sa.Column("issuer_dn", sa.Text, nullable=False),
        sa.Column("serial_number", sa.String(64), nullable=False),
        sa.Column("not_before", UTCDateTime, nullable=False),
        sa.Column("not_after", UTCDateTime, nullable=False),
        sa.Column("sha256_fingerprint", sa.String(64), nullable=False),
        sa.Column("spki_sha256", sa.String(64), nullable=False),
        sa.Column("der", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("ca_id", "sha256_fingerprint", name="uq_ca_certificates_ca_fp"),
    )
    op.create_index("ix_ca_certificates_ca_id", "ca_certificates", ["ca_id"])
    op.create_index(
        "ix_ca_certificates_sha256_fingerprint", "ca_certificates", ["sha256_fingerprint"]
    )
    op.create_index("ix_ca_certificates_spki_sha256", "ca_certificates", ["spki_sha256"])


def downgrade() -> None:
    op.drop_table("ca_certificates")
    op.drop_table("certificate_authorities")
    op.drop_table("trust_state")
