"""Backup and restore of a whole vault, portable between SQLite and PostgreSQL.

The file is a zip: ``tables/<table>.jsonl`` (one JSON object per row; binary columns base64, datetimes
ISO 8601 UTC) for EVERY table the database holds (read from the database itself, not from a list, so
a new table is never left out), and ``manifest.json`` — format, schema revision, key id, per table its
row count and SHA-256 — with ``manifest.mac``, an HMAC of the manifest keyed from the vault's
integrity key. Values are copied as stored: secrets stay encrypted, tokens stay hashed, and the backup
is useless without the master key, which is NOT in it.

Backup is online and consistent: every table is read in one read transaction (SQLite WAL snapshot;
PostgreSQL ``REPEATABLE READ, READ ONLY``), so rotations may run meanwhile.

Restore (`restore`) checks before it writes anything: each part against the manifest (the first bad
part is named), the schema revision against this keyturn's, the master key against the backup's key
check (`VaultSealed`), the manifest MAC. It then writes every row in ONE transaction and, still inside
it, checks every record's integrity tag, decrypts every secret version and verifies the audit chain;
any failure rolls it all back — an interrupted restore leaves the target untouched. The target must
hold no vault data unless `force` (which replaces it, in the same transaction).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from keyturn.config import Settings
from keyturn.errors import VaultError
from keyturn.vault import integrity
from keyturn.vault.barrier import Barrier
from keyturn.vault.storage import RecordRow, SecretVersionRow, Storage, shipped_head, sqlite_path

FORMAT = "keyturn-backup/1"
MANIFEST, MANIFEST_MAC = "manifest.json", "manifest.mac"
_VERSION_TABLE = "alembic_version"  # the schema revision: in the manifest, not a part
_MAC_DOMAIN = b"keyturn.backup.v1\x00"


class BackupInvalid(VaultError):
    """A backup file is corrupted, truncated, altered or from another schema; nothing was written."""


@dataclass(frozen=True)
class BackupSummary:
    path: Path
    schema_revision: str
    tables: dict[str, int]  # table → rows

    @property
    def rows(self) -> int:
        return sum(self.tables.values())


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, datetime):
        aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return {"dt": aware.isoformat()}
    if isinstance(value, Decimal):
        return {"dec": str(value)}
    return value


def _decode(value: Any, *, naive_dt: bool) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        (tag, raw), = value.items()
        if tag == "b64":
            return base64.b64decode(raw)
        if tag == "dt":
            dt = datetime.fromisoformat(raw)
            return dt.replace(tzinfo=None) if naive_dt else dt  # SQLite stores UTC without an offset
        if tag == "dec":
            return Decimal(raw)
    return value


def _tables(conn: sa.Connection) -> list[sa.Table]:
    md = sa.MetaData()
    md.reflect(bind=conn)
    return [t for t in md.sorted_tables if t.name != _VERSION_TABLE]


def _revision(conn: sa.Connection) -> str:
    rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    return ",".join(sorted(str(r) for r in rows))


def _mac_key(barrier: Barrier) -> bytes:
    return bytes.fromhex(barrier.chain_mac(_MAC_DOMAIN + b"key"))


def manifest_mac(barrier: Barrier, manifest: bytes) -> str:
    """HMAC-SHA256 (hex) of the manifest, keyed from the vault's integrity key (domain-separated)."""
    return hmac.new(_mac_key(barrier), _MAC_DOMAIN + manifest, hashlib.sha256).hexdigest()


def backup(storage: Storage, barrier: Barrier, path: Path) -> BackupSummary:
    """Write a consistent snapshot of every table of `storage` to `path` (written aside, then renamed)."""
    parts: dict[str, bytes] = {}
    counts: dict[str, int] = {}
    with storage.engine.connect() as conn:
        if storage.dialect == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        with conn.begin():
            revision = _revision(conn)
            if conn.execute(sa.text("SELECT 1 FROM kt_meta WHERE key = 'rekey'")).first() is not None:
                # Records under two master keys: a restore could check only one of them.
                raise VaultError("a master-key rekey is in progress; finish it (`keyturn vault rekey` "
                                 "again) before taking a backup")
            for table in _tables(conn):
                buf = io.BytesIO()
                n = 0
                order = list(table.primary_key.columns) or list(table.columns)
                for row in conn.execute(sa.select(table).order_by(*order)):
                    obj = {k: _encode(v) for k, v in row._mapping.items()}
                    buf.write(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode() + b"\n")
                    n += 1
                parts[table.name], counts[table.name] = buf.getvalue(), n
    manifest = json.dumps({
        "format": FORMAT, "schema_revision": revision, "key_id": barrier.key_id,
        "source_dialect": storage.dialect, "created_at": datetime.now(UTC).isoformat(),
        "tables": {name: {"part": f"tables/{name}.jsonl", "rows": counts[name],
                          "sha256": hashlib.sha256(data).hexdigest()} for name, data in parts.items()},
    }, indent=1, sort_keys=True).encode()
    tmp = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MANIFEST, manifest)
        zf.writestr(MANIFEST_MAC, manifest_mac(barrier, manifest))
        for name, data in parts.items():
            zf.writestr(f"tables/{name}.jsonl", data)
    tmp.chmod(0o600)
    tmp.replace(path)
    return BackupSummary(path, revision, counts)


@dataclass(frozen=True)
class _Loaded:
    manifest: dict[str, Any]
    manifest_raw: bytes
    mac: str
    rows: dict[str, list[dict[str, Any]]]


def _load(path: Path) -> _Loaded:
    """Read and check every part against the manifest; `BackupInvalid` naming the first bad part."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BackupInvalid(f"{path} is not a keyturn backup or is truncated: {exc}") from exc
    with zf:
        def read(name: str) -> bytes:
            try:
                return zf.read(name)
            except KeyError as exc:
                raise BackupInvalid(f"backup part {name} is missing") from exc
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:  # CRC, truncated data
                raise BackupInvalid(f"backup part {name} is corrupted: {exc}") from exc

        raw = read(MANIFEST)
        try:
            manifest = json.loads(raw)
            tables = manifest["tables"]
            if manifest.get("format") != FORMAT:
                raise BackupInvalid(f"backup part {MANIFEST}: unknown format {manifest.get('format')!r}")
        except (ValueError, KeyError, TypeError) as exc:
            raise BackupInvalid(f"backup part {MANIFEST} is corrupted") from exc
        mac = read(MANIFEST_MAC).decode("ascii", "replace").strip()
        rows: dict[str, list[dict[str, Any]]] = {}
        for name, info in tables.items():
            data = read(info["part"])
            if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), str(info["sha256"])):
                raise BackupInvalid(f"backup part {info['part']} does not match its checksum (altered "
                                    "or truncated)")
            try:
                rows[name] = [json.loads(line) for line in data.splitlines() if line]
            except ValueError as exc:
                raise BackupInvalid(f"backup part {info['part']} is corrupted") from exc
            if len(rows[name]) != info["rows"]:
                raise BackupInvalid(f"backup part {info['part']} holds {len(rows[name])} rows, the "
                                    f"manifest says {info['rows']}")
    return _Loaded(manifest, raw, mac, rows)


def _is_empty(conn: sa.Connection, tables: list[sa.Table]) -> bool:
    return all(conn.execute(sa.select(sa.literal(1)).select_from(t).limit(1)).first() is None
               for t in tables)


def restore(settings: Settings, path: Path, *, force: bool = False) -> BackupSummary:
    """Restore the backup at `path` into the database of `settings` (see the module docstring).

    Raises `BackupInvalid` (bad file, other schema), `VaultSealed` (wrong master key), `VaultError`
    (target not empty without `force`), `RecordTampered` / `DecryptionFailed` (a record of the backup
    fails its checks); in every case the target is left as it was.
    """
    from keyturn.audit.chain import AuditLog
    from keyturn.vault.api import _M_INTEGRITY, Vault, _unb64

    loaded = _load(path)
    head = shipped_head()
    revision = str(loaded.manifest["schema_revision"])
    if head is not None and revision != head:
        raise BackupInvalid(f"the backup has schema revision {revision}, this keyturn has {head}; restore "
                            "it with the keyturn version that wrote it")
    meta = {r["key"]: r["value"] for r in loaded.rows.get("kt_meta", [])}
    if "key_id" not in meta:
        raise BackupInvalid("backup part tables/kt_meta.jsonl holds no vault key settings")
    key = Vault._current_key(settings, meta, None)  # VaultSealed for a wrong key
    barrier = Barrier(key)
    if _M_INTEGRITY in meta:
        barrier = barrier.with_integrity(barrier.unwrap_integrity(_unb64(meta[_M_INTEGRITY])))
    if not hmac.compare_digest(manifest_mac(barrier, loaded.manifest_raw), loaded.mac):
        raise BackupInvalid(f"backup part {MANIFEST} fails its integrity tag (altered, or written by "
                            "another vault)")

    db_file = sqlite_path(settings.effective_database_url)
    if db_file is not None and not db_file.exists():
        # 0600 from the start, as `Vault.init` does: SQLite would follow the umask.
        db_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(db_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    storage = Storage(settings.effective_database_url)
    try:
        storage.migrate()
        with storage.unit(write=True) as s:
            conn = s.connection()
            storage.serialize(s)
            targets = _tables(conn)
            by_name = {t.name: t for t in targets}
            unknown = sorted(set(loaded.rows) - set(by_name))
            if unknown:
                raise BackupInvalid(f"backup table {unknown[0]} does not exist in this schema")
            if not _is_empty(conn, targets):
                if not force:
                    raise VaultError(f"the target database {storage.display_url} already holds a vault or "
                                     "keyturn data; restore into an empty database, or pass --force to "
                                     "replace everything in it")
                for t in reversed(targets):
                    conn.execute(t.delete())
            naive = storage.dialect == "sqlite"
            for t in targets:
                batch = [{k: _decode(v, naive_dt=naive) for k, v in r.items()}
                         for r in loaded.rows.get(t.name, [])]
                for i in range(0, len(batch), 500):
                    conn.execute(t.insert(), batch[i:i + 500])
            if storage.dialect == "postgresql":
                _reset_sequences(conn, targets)
            _verify(s, barrier, AuditLog(storage, mac=barrier.chain_mac))
    finally:
        storage.dispose()
    counts = {name: len(rows) for name, rows in loaded.rows.items()}
    return BackupSummary(path, revision, counts)


def _verify(s: Any, barrier: Barrier, audit: Any) -> None:
    """Inside the restore transaction: every record's tag, every secret version, the audit chain."""
    wrapped: dict[str, bytes] = {}
    for row in s.scalars(sa.select(RecordRow)):
        integrity.check(barrier, row)
        wrapped[row.uid] = row.wrapped_key
    for v in _versions(s):
        barrier.decrypt(wrapped[v.record_uid], v.record_uid, v.field, v.version, v.ciphertext)
    broken = audit.verify()
    if broken is not None:
        raise BackupInvalid(f"the backup's audit chain is broken at entry {broken}; nothing was restored")


def _versions(s: Any) -> Iterator[SecretVersionRow]:
    yield from s.scalars(sa.select(SecretVersionRow).order_by(SecretVersionRow.id))


def _reset_sequences(conn: sa.Connection, tables: list[sa.Table]) -> None:
    for t in tables:
        pk = list(t.primary_key.columns)
        if len(pk) == 1 and isinstance(pk[0].type, sa.Integer):
            col, top = pk[0], sa.func.max(pk[0])
            seq = sa.func.pg_get_serial_sequence(t.name, col.name)
            conn.execute(sa.select(sa.func.setval(seq, sa.func.coalesce(top, 1), top.is_not(None))))


__all__ = ["FORMAT", "BackupInvalid", "BackupSummary", "backup", "manifest_mac", "restore"]
