"""What the device stored when keyturn last proved a secret version by its stored hash (issue 14): a
keyed digest binding the secret to the stored-hash text the device showed, so the next rotation's
check of the same secret against the same stored text is a compare instead of a second scrypt.

Revision ID: 0008_version_seen
Revises: 0007_token_grants
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_version_seen"
down_revision = "0007_token_grants"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("kt_secret_versions") as batch:
        batch.add_column(sa.Column("device_seen", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("kt_secret_versions") as batch:
        batch.drop_column("device_seen")
