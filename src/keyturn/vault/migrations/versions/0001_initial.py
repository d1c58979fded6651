"""Vault schema: meta, records, secret versions, audit chain.

Revision ID: 0001_initial
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kt_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "kt_records",
        sa.Column("uid", sa.String(32), primary_key=True),
        sa.Column("title", sa.String(512), nullable=False),
        sa.Column("title_key", sa.String(512), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("fields_json", sa.Text(), nullable=False),
        sa.Column("custom_json", sa.Text(), nullable=False),
        sa.Column("meta_json", sa.Text(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_kt_records_title", "kt_records", ["title"])
    op.create_index("ix_kt_records_title_key", "kt_records", ["title_key"])
    op.create_index("ix_kt_records_type", "kt_records", ["type"])
    op.create_index("ix_kt_records_key_id", "kt_records", ["key_id"])
    op.create_table(
        "kt_secret_versions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "record_uid", sa.String(32), sa.ForeignKey("kt_records.uid", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("field", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("rotation_id", sa.String(64), nullable=True),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("record_uid", "field", "version", name="uq_kt_secret_versions_rfv"),
    )
    op.create_index("ix_kt_secret_versions_record_uid", "kt_secret_versions", ["record_uid"])
    op.create_index("ix_kt_secret_versions_rotation_id", "kt_secret_versions", ["rotation_id"])
    op.create_index(
        "uq_kt_secret_versions_current", "kt_secret_versions", ["record_uid", "field"], unique=True,
        sqlite_where=sa.text("state = 'current'"), postgresql_where=sa.text("state = 'current'"),
    )
    op.create_table(
        "kt_audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("ts", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("record_uid", sa.String(32), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_kt_audit_action", "kt_audit", ["action"])
    op.create_index("ix_kt_audit_record_uid", "kt_audit", ["record_uid"])


def downgrade() -> None:
    op.drop_table("kt_audit")
    op.drop_table("kt_secret_versions")
    op.drop_table("kt_records")
    op.drop_table("kt_meta")
