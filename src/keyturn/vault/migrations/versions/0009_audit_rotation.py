"""Rotation steps are audit entries (issue 14): `kt_audit.rotation_id`, indexed, so the journal reads a
rotation's steps from the audit chain instead of writing each one a second time to `rotation_steps`.

NULL for entries written before this revision (their rotations' steps stay in `rotation_steps`, which
is kept and still read) and for entries whose details name no rotation.

Revision ID: 0009_audit_rotation
Revises: 0008_version_seen
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_audit_rotation"
down_revision = "0008_version_seen"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("kt_audit") as batch:
        batch.add_column(sa.Column("rotation_id", sa.String(64), nullable=True))
        batch.create_index("ix_kt_audit_rotation_id", ["rotation_id"])


def downgrade() -> None:
    with op.batch_alter_table("kt_audit") as batch:
        batch.drop_index("ix_kt_audit_rotation_id")
        batch.drop_column("rotation_id")
