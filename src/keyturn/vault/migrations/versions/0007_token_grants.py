"""Grants of consumer tokens (owned by `keyturn.api.tokens`): what a `consumer` token may reveal, as
a JSON list of ``record:UID`` / ``tag:NAME`` strings; empty for every other role.

Revision ID: 0007_token_grants
Revises: 0006_scaleout
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_token_grants"
down_revision = "0006_scaleout"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("grants", sa.Text(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("grants")
