"""Rotation journal: rotations, their steps, and account locks (owned by `keyturn.engine.journal`).

Revision ID: 0002_rotations
Revises: 0001_initial
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_rotations"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rotations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("record_uid", sa.String(64), nullable=False),
        sa.Column("title", sa.String(512), nullable=False, server_default=""),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("lock_key", sa.String(512), nullable=False, server_default=""),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("last_step", sa.String(32), nullable=False, server_default=""),
        sa.Column("candidate_version", sa.Integer(), nullable=True),
        sa.Column("old_version", sa.Integer(), nullable=True),
        sa.Column("applied", sa.String(16), nullable=False, server_default=""),
        sa.Column("scripts", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("host", sa.String(255), nullable=False, server_default=""),
        sa.Column("pid", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_rotations_record_uid", "rotations", ["record_uid"])
    op.create_index("ix_rotations_state", "rotations", ["state"])
    op.create_table(
        "rotation_steps",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("rotation_id", sa.String(32), sa.ForeignKey("rotations.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False, server_default=""),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_rotation_steps_rotation_id", "rotation_steps", ["rotation_id"])
    op.create_table(
        "rotation_locks",
        sa.Column("key", sa.String(512), primary_key=True),
        sa.Column("owner", sa.String(32), nullable=False),
        sa.Column("host", sa.String(255), nullable=False, server_default=""),
        sa.Column("pid", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("expires_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rotation_locks")
    op.drop_index("ix_rotation_steps_rotation_id", table_name="rotation_steps")
    op.drop_table("rotation_steps")
    op.drop_index("ix_rotations_state", table_name="rotations")
    op.drop_index("ix_rotations_record_uid", table_name="rotations")
    op.drop_table("rotations")
