"""Scale-out on Celery (owned by `keyturn.dispatch` and `keyturn.engine`): rotation requests, the
worker registry, a fencing token on account locks, and which worker wrote each journal step.

Revision ID: 0006_scaleout
Revises: 0005_record_mac
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_scaleout"
down_revision = "0005_record_mac"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("rotation_locks", sa.Column("token", sa.String(32), nullable=False, server_default=""))
    op.add_column("rotation_steps", sa.Column("worker", sa.String(320), nullable=False, server_default=""))
    op.create_table(
        "rotation_requests",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("record_uid", sa.String(64), nullable=False),
        sa.Column("title", sa.String(512), nullable=False, server_default=""),
        sa.Column("site", sa.String(64), nullable=False, server_default="default"),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("deliveries", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("rotation_id", sa.String(32), nullable=False, server_default=""),
        sa.Column("outcome", sa.String(32), nullable=True),
        sa.Column("result", sa.Text(), nullable=False, server_default=""),
        sa.Column("requested_by", sa.String(255), nullable=False, server_default=""),
        sa.Column("requested_at", sa.Float(), nullable=False),
        sa.Column("published_at", sa.Float(), nullable=False, server_default="0"),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("claim_host", sa.String(255), nullable=False, server_default=""),
        sa.Column("claim_pid", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("claim_until", sa.Float(), nullable=False, server_default="0"),
        sa.Column("worker", sa.String(320), nullable=False, server_default=""),
    )
    op.create_index("ix_rotation_requests_state_site", "rotation_requests", ["state", "site"])
    op.create_index("ix_rotation_requests_record_uid", "rotation_requests", ["record_uid"])
    op.create_table(
        "workers",
        sa.Column("name", sa.String(320), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("in_flight", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("seen_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("workers")
    op.drop_index("ix_rotation_requests_record_uid", table_name="rotation_requests")
    op.drop_index("ix_rotation_requests_state_site", table_name="rotation_requests")
    op.drop_table("rotation_requests")
    op.drop_column("rotation_steps", "worker")
    op.drop_column("rotation_locks", "token")
