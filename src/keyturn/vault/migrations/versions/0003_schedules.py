"""Scheduler state: one row per scheduled record (owned by `keyturn.scheduler.state`).

Revision ID: 0003_schedules
Revises: 0002_rotations
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_schedules"
down_revision = "0002_rotations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kt_schedule_state",
        sa.Column("record_uid", sa.String(32), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False, server_default=""),
        sa.Column("slot", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_due", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deferred", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("needs_attention", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("attention_reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rotations_seen", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_outcome", sa.String(32), nullable=True),
        sa.Column("last_reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("last_rotation_id", sa.String(64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_kt_schedule_state_next_due", "kt_schedule_state", ["next_due"])


def downgrade() -> None:
    op.drop_index("ix_kt_schedule_state_next_due", table_name="kt_schedule_state")
    op.drop_table("kt_schedule_state")
