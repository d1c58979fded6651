"""API bearer tokens: created once, shown once, stored only as a SHA-256 digest.

A token is ``kt_`` + 32 random bytes (URL-safe base64). The prefix lets secret scanners recognise a
leaked token; the 256 bits of entropy make an unsalted SHA-256 digest safe to store (there is nothing to
brute-force), and unlike `Vault.hmac_value` the digest survives a master-key rekey. Tokens live in the
`api_tokens` table (Alembic revision `0004_tokens`), beside the vault's own tables.

A `consumer` token carries grants (``record:UID``, ``tag:NAME``; `keyturn.consumers`), stored with it as a
JSON list (revision `0007_token_grants`): the records it may reveal. Only consumer tokens carry grants.

    store = TokenStore(vault.engine)
    info, token = store.create(Role.OPERATOR, name="ci", expires_in=timedelta(days=90), created_by="cli:ann")
    print(token.reveal())                      # the only time the clear token exists
    store.authenticate(token.reveal())         # TokenInfo, or None (unknown / revoked / expired)
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from keyturn import durations
from keyturn.engine.journal import read_tx, write_tx
from keyturn.errors import ConfigError, VaultError
from keyturn.secret import Secret
from keyturn.vault.storage import UTCDateTime

TOKEN_PREFIX = "kt_"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@:/-]{0,127}$")

metadata = sa.MetaData()
api_tokens = sa.Table(
    "api_tokens", metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=True),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.Column("created_by", sa.String(128), nullable=False, server_default=""),
    sa.Column("grants", sa.Text(), nullable=False, server_default="[]"),
)


class Role(enum.StrEnum):
    """API roles; what each may do is the table in `keyturn.api.auth`."""

    ADMIN = "admin"
    OPERATOR = "operator"
    AUDITOR = "auditor"
    CONSUMER = "consumer"


def parse_duration(text: str) -> timedelta:
    """A token lifetime in keyturn's duration syntax (`90d`, `12h`, `1w2d`; `keyturn.durations`), longer
    than zero; `ConfigError` saying the format."""
    return durations.parse_duration(text, what="duration", positive=True)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()



@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token's metadata (never the token or its digest)."""

    id: str
    name: str
    role: Role
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    created_by: str
    grants: tuple[str, ...] = ()

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "role": str(self.role),
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "created_by": self.created_by, "grants": list(self.grants),
        }


def _info(m: sa.RowMapping) -> TokenInfo:
    created = m["created_at"]
    assert created is not None
    try:
        stored = json.loads(m["grants"] or "[]")
    except ValueError:
        stored = []  # a value written around keyturn grants nothing
    grants = tuple(g for g in stored if isinstance(g, str)) if isinstance(stored, list) else ()
    return TokenInfo(id=m["id"], name=m["name"], role=Role(m["role"]), created_at=created,
                     expires_at=m["expires_at"], revoked_at=m["revoked_at"],
                     created_by=m["created_by"], grants=grants)


class TokenStore:
    """Create, authenticate, list and revoke API tokens. Thread-safe; every write commits on return."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_tables(self) -> None:
        """Create the table directly (bare engines in tests; a vault gets it from Alembic)."""
        metadata.create_all(self.engine)

    def create(
        self, role: Role | str, *, name: str, expires_in: timedelta | None = None, created_by: str = "cli",
        now: datetime | None = None, grants: Sequence[str] = (),
    ) -> tuple[TokenInfo, Secret]:
        """A new token for `role`; returns its metadata and the clear token (show it once, then drop it).

        `grants` (``record:UID``, ``tag:NAME``) only for a consumer token; `ConfigError` for a malformed
        one, or grants on another role. A record grant is stored as given: the caller resolves titles."""
        from keyturn.consumers import parse_grants

        try:
            role = Role(role)
        except ValueError as exc:
            raise ConfigError(f"unknown role {role!r}: use {', '.join(r.value for r in Role)}") from exc
        if not _NAME_RE.match(name):
            raise ConfigError(f"bad token name {name!r}: 1-128 letters, digits, space or ._@:/-")
        if grants and role is not Role.CONSUMER:
            raise ConfigError(f"grants are for consumer tokens; a {role} token has its role's permissions")
        stored = tuple(str(g) for g in parse_grants(grants))
        now = now or datetime.now(UTC)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        info = TokenInfo(id=secrets.token_hex(8), name=name, role=role, created_at=now,
                         expires_at=now + expires_in if expires_in else None, revoked_at=None,
                         created_by=created_by[:128], grants=stored)
        with write_tx(self.engine) as conn:
            conn.execute(api_tokens.insert().values(
                id=info.id, name=info.name, role=info.role.value, token_hash=digest(token),
                created_at=info.created_at, expires_at=info.expires_at, revoked_at=None,
                created_by=info.created_by, grants=json.dumps(list(stored)),
            ))
        return info, Secret(token)

    def authenticate(self, token: str, *, now: datetime | None = None) -> TokenInfo | None:
        """The active token matching `token`, else None (unknown, revoked or expired)."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            return None
        want = digest(token)
        with read_tx(self.engine) as conn:
            m = conn.execute(api_tokens.select().where(api_tokens.c.token_hash == want)).mappings().first()
        # The lookup is by digest; compare again in constant time so timing says nothing about prefixes.
        if m is None or not hmac.compare_digest(m["token_hash"], want):
            return None
        info = _info(m)
        return info if info.active(now or datetime.now(UTC)) else None

    def get(self, token_id: str) -> TokenInfo | None:
        """The token with id `token_id` (active or not), else None: how a console session re-checks
        the token it was opened with (`keyturn.console.session`)."""
        with read_tx(self.engine) as conn:
            m = conn.execute(api_tokens.select().where(api_tokens.c.id == token_id)).mappings().first()
        return _info(m) if m is not None else None

    def classify(self, token: str, *, now: datetime | None = None) -> str:
        """Why a token does not authenticate: ``unknown``, ``revoked``, ``expired`` (or ``active``)."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            return "unknown"
        with read_tx(self.engine) as conn:
            m = conn.execute(api_tokens.select().where(api_tokens.c.token_hash == digest(token))
                             ).mappings().first()
        if m is None:
            return "unknown"
        info = _info(m)
        if info.revoked_at is not None:
            return "revoked"
        return "active" if info.active(now or datetime.now(UTC)) else "expired"

    def list(self) -> list[TokenInfo]:
        with read_tx(self.engine) as conn:
            ms = conn.execute(api_tokens.select().order_by(api_tokens.c.created_at, api_tokens.c.id))
            return [_info(m) for m in ms.mappings()]

    def revoke(self, ref: str, *, now: datetime | None = None) -> TokenInfo:
        """Revoke the token with id `ref` (or the only active token named `ref`); idempotent."""
        with write_tx(self.engine) as conn:
            m = conn.execute(api_tokens.select().where(api_tokens.c.id == ref)).mappings().first()
            if m is None:
                ms = conn.execute(api_tokens.select().where(
                    api_tokens.c.name == ref, api_tokens.c.revoked_at.is_(None))).mappings().all()
                if len(ms) > 1:
                    raise VaultError(f"{len(ms)} active tokens are named {ref!r}; revoke by id "
                                     "(see `keyturn token list`)")
                m = ms[0] if ms else None
            if m is None:
                raise VaultError(f"no token with id or name {ref!r} (see `keyturn token list`)")
            if m["revoked_at"] is None:
                conn.execute(api_tokens.update().where(api_tokens.c.id == m["id"])
                             .values(revoked_at=now or datetime.now(UTC)))
            found = conn.execute(api_tokens.select().where(api_tokens.c.id == m["id"])).mappings().one()
            return _info(found)


__all__ = ["TOKEN_PREFIX", "Role", "TokenInfo", "TokenStore", "digest", "parse_duration"]
