"""Record integrity tags: `kt_records.mac` (owned by `keyturn.vault`).

The column is nullable because the tag needs the master key, which a migration never has: the first
`Vault.open` after this revision creates the vault's integrity key, tags every record and re-keys the
audit chain in one transaction (see `keyturn.vault.integrity`).

Revision ID: 0005_record_mac
Revises: 0004_tokens
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_record_mac"
down_revision = "0004_tokens"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("kt_records", sa.Column("mac", sa.String(64), nullable=True))


def downgrade() -> None:
    # A plain ALTER TABLE (SQLite >= 3.35), not batch mode: batch recreates the table, and dropping the
    # old one with foreign keys on would cascade-delete every secret version.
    op.drop_column("kt_records", "mac")
