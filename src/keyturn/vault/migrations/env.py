"""Alembic environment: runs on the connection `keyturn.vault.storage.Storage.migrate` hands over."""

from __future__ import annotations

from alembic import context

from keyturn.vault.storage import Base, postgresql_options

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - keyturn always passes its own connection
    raise RuntimeError("keyturn migrations run through keyturn.vault.storage.Storage.migrate()")

if connection.dialect.name == "postgresql":
    postgresql_options()  # the models as the migrations made them (autogenerate compares them)
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
# The caller already opened the transaction (and holds the migration lock); Alembic joins it.
context.run_migrations()
