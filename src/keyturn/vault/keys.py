"""Master-key sources: a key file, a passphrase (Argon2id) or `KEYTURN_MASTER_KEY`.

A master key is 32 random bytes. Its *key id* is a short one-way fingerprint (first 16 hex digits of
SHA-256 over a fixed label and the key) so the vault can say which key wraps a data key, and tell a
wrong key from a damaged blob, without storing anything that helps recover the key.

Which source is used (first match wins):

1. `KEYTURN_MASTER_KEY` — standard base64 of exactly 32 bytes.
2. A passphrase, when the vault was created with one (its Argon2id salt and parameters live in the
   vault's meta table, not secret); from `KEYTURN_PASSPHRASE` or, in the CLI, a hidden prompt.
3. The key file (`KEYTURN_KEY_FILE`, default `KEYTURN_HOME/master.key`), created by `keyturn init`
   with mode 0600. A key file readable by group or others is refused with the chmod that fixes it.

This module never imports `cryptography` (the barrier does); Argon2id comes from argon2-cffi.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keyturn.errors import ConfigError, VaultSealed
from keyturn.secret import Secret

KEY_BYTES = 32
_KEY_ID_LABEL = b"keyturn master key id v1\x00"
_KEY_FILE_HEADER = "keyturn-master-key-v1"


@dataclass(frozen=True)
class MasterKey:
    """32 key bytes plus where they came from (for messages). repr never shows the bytes."""

    material: bytes = field(repr=False)
    source: str = "unknown"

    def __post_init__(self) -> None:
        if len(self.material) != KEY_BYTES:
            raise VaultSealed(f"vault is sealed: the master key from {self.source} is not {KEY_BYTES} bytes")

    @property
    def key_id(self) -> str:
        return hashlib.sha256(_KEY_ID_LABEL + self.material).hexdigest()[:16]

    @classmethod
    def generate(cls, source: str = "generated") -> MasterKey:
        return cls(secrets.token_bytes(KEY_BYTES), source)


# --- key file -----------------------------------------------------------------------------------


def create_key_file(path: Path) -> MasterKey:
    """Write a fresh random key to `path` (mode 0600, parent created 0700). Refuses to overwrite."""
    key = MasterKey.generate(source=f"key file {path}")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = f"{_KEY_FILE_HEADER}\n{base64.b64encode(key.material).decode()}\n"
    try:
        # O_EXCL: never clobber an existing key (that would orphan every record it wraps).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise ConfigError("a key file already exists here; refusing to overwrite it", location=str(path)) \
            from exc
    with os.fdopen(fd, "w") as fh:
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())
    return key


def load_key_file(path: Path) -> MasterKey:
    """Read a key file; refuse it when group/world can read it (clear message with the fix)."""
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise VaultSealed(
            f"vault is sealed: no master key (key file {path} not found; set KEYTURN_KEY_FILE, "
            "KEYTURN_MASTER_KEY or KEYTURN_PASSPHRASE)"
        ) from exc
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise VaultSealed(
            f"vault is sealed: key file {path} is accessible by group/others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); fix with: chmod 600 {path}"
        )
    try:
        lines = path.read_text().split()
    except OSError as exc:
        raise VaultSealed(f"vault is sealed: cannot read key file {path}: {exc.strerror}") from exc
    if len(lines) != 2 or lines[0] != _KEY_FILE_HEADER:
        raise VaultSealed(f"vault is sealed: {path} is not a keyturn key file")
    return MasterKey(_b64_key(lines[1], f"key file {path}"), f"key file {path}")


def _b64_key(text: str, source: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VaultSealed(f"vault is sealed: the master key from {source} is not valid base64") from exc
    if len(raw) != KEY_BYTES:
        raise VaultSealed(f"vault is sealed: the master key from {source} is not {KEY_BYTES} bytes")
    return raw


def key_from_env(value: Secret) -> MasterKey:
    """Decode `KEYTURN_MASTER_KEY` (standard base64 of 32 bytes)."""
    return MasterKey(_b64_key(value.reveal(), "KEYTURN_MASTER_KEY"), "KEYTURN_MASTER_KEY")


def encode_key(key: MasterKey) -> Secret:
    """The base64 form accepted by `KEYTURN_MASTER_KEY`."""
    return Secret(base64.b64encode(key.material).decode())


# --- passphrase (Argon2id) -----------------------------------------------------------------------


@dataclass(frozen=True)
class KdfParams:
    """Argon2id parameters + salt; stored in the vault meta table (not secret)."""

    salt: bytes
    time_cost: int = 3
    memory_cost: int = 64 * 1024  # KiB: 64 MiB, the RFC 9106 "second recommended" profile
    parallelism: int = 4

    @classmethod
    def new(cls, **overrides: int) -> KdfParams:
        return cls(salt=secrets.token_bytes(16), **overrides)

    def to_json(self) -> dict[str, Any]:
        return {
            "alg": "argon2id", "salt": base64.b64encode(self.salt).decode(), "time_cost": self.time_cost,
            "memory_cost": self.memory_cost, "parallelism": self.parallelism,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KdfParams:
        if data.get("alg") != "argon2id":
            raise VaultSealed(f"vault is sealed: unsupported key derivation {data.get('alg')!r}")
        return cls(
            salt=base64.b64decode(data["salt"]), time_cost=int(data["time_cost"]),
            memory_cost=int(data["memory_cost"]), parallelism=int(data["parallelism"]),
        )


def derive_from_passphrase(passphrase: Secret, params: KdfParams) -> MasterKey:
    """Argon2id(passphrase, salt) → 32-byte master key."""
    from argon2.low_level import Type, hash_secret_raw

    if not passphrase:
        raise VaultSealed("vault is sealed: the passphrase is empty")
    raw = hash_secret_raw(
        passphrase.reveal().encode(), params.salt, time_cost=params.time_cost,
        memory_cost=params.memory_cost, parallelism=params.parallelism, hash_len=KEY_BYTES, type=Type.ID,
    )
    return MasterKey(raw, "passphrase")


def pending_key_file(key_file: Path) -> Path:
    """Where `keyturn vault rekey` (default mode) keeps the new key until the rekey completes."""
    return key_file.with_name(key_file.name + ".new")
