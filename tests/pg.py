"""A throw-away PostgreSQL schema for tests that run the same checks on SQLite and PostgreSQL.

    with pg_schema_url("kt_contract") as url:      # skips the test when 127.0.0.1:5432 is down
        settings = Settings(home=tmp_path, database_url=url)

The schema is created in database `test` and dropped afterwards, whatever the test did.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def pg_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


@contextmanager
def pg_schema_url(prefix: str) -> Iterator[str]:
    """A database URL whose search_path is a fresh schema `<prefix>_<hex>`."""
    if not pg_up():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    schema = f"{prefix}_{secrets.token_hex(6)}"
    admin = sa.create_engine(PG_ADMIN_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
