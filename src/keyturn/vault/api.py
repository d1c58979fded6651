"""`Vault`: typed records and secret versions over the barrier and storage.

Contract (what callers — CLI, engine, scripts runner, API — rely on):

* Methods are synchronous and thread-safe: each call runs in its own database session/transaction,
  so the async engine may call them through `asyncio.to_thread`.
* Every write that returns has been committed (durable), together with its audit entry.
* Plaintext leaves only as `Secret` objects; `reveal()` is the audited path for showing a value.
* A record is checked against its integrity tag whenever it is read for use or changed (`integrity`);
  a row changed outside keyturn raises `RecordTampered`. Listings (`summaries`), `resolve` and
  `remove` do not check, so an admin can still find and delete such a record.
* A `rekey` run by another process is followed: a blob wrapped by a key this process lacks loads it
  from the configured key sources, and a write that would wrap a data key with a retired key switches
  to the current one or raises `VaultKeyRetired` (checked in the write's own transaction).
* Errors: `VaultSealed` (no / wrong master key), `RecordNotFound`, `AmbiguousRecord`,
  `DuplicateRecord`, `DecryptionFailed` (names record + field), `RecordTampered`, `ScriptsNotAllowed`,
  `VaultKeyRetired`, `RekeyLocked`, `StorageUnavailable`, `VaultError`.

Example::

    vault = Vault.open(load_settings())
    rec = vault.add(type="pamUser", title="router admin", fields=[Field("login", None, ["admin"]),
                    Field("password", None, [Secret("s3cret")])])
    v = vault.add_version(rec.uid, Secret("n3w"), rotation_id="r-1")      # pending, durable
    vault.promote(rec.uid, v)                                              # current; old → previous
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from keyturn.audit.chain import AuditLog, canonical
from keyturn.config_quick import QuickSettings
from keyturn.errors import (
    AmbiguousRecord,
    DuplicateRecord,
    KeyturnError,
    RecordNotFound,
    ScriptsNotAllowed,
    VaultError,
    VaultKeyRetired,
    VaultSealed,
)
from keyturn.secret import Secret
from keyturn.vault import integrity
from keyturn.vault import versions as ver
from keyturn.vault.barrier import Barrier
from keyturn.vault.keys import (
    KdfParams,
    MasterKey,
    create_key_file,
    derive_from_passphrase,
    key_from_env,
    load_key_file,
    pending_key_file,
)
from keyturn.vault.lease import RekeyLease
from keyturn.vault.records import (
    DEFAULT_PAM_CONFIGURATION_TITLE,
    MAX_META_DEPTH,
    Field,
    Record,
    check_fields,
    check_record_type,
    check_value,
    encode_fields,
    is_secret_field,
    new_uid,
    secret_values,
    shown,
    slot_names,
    title_key,
    unstorable,
    validate_title,
)
from keyturn.vault.storage import (
    FOUND_BY_TYPE,
    ROWS_KEPT,
    MetaRow,
    RecordData,
    RecordRow,
    RecordValues,
    SecretVersionRow,
    Storage,
    ambient_session,
    connection_of,
    sqlite_path,
    utcnow,
)
from keyturn.vault.versions import VersionInfo, VersionState

if TYPE_CHECKING:
    from keyturn.config import Settings

_M_KEY_ID, _M_KEYCHECK, _M_KDF, _M_REKEY, _M_CREATED = "key_id", "keycheck", "kdf", "rekey", "created_at"
_M_INTEGRITY = "integrity_key"  # the integrity key, wrapped by the current master key (see barrier)
_REKEY_FINAL_ATTEMPTS = 5  # `_rekey_switch` tries, each after records were added under the old key
_UNREAD: Any = object()  # `Vault._touch`: the highest version number was not read


class _RowsAdded(Exception):
    """`Vault._rekey_switch`: rows under the old key appeared after the rows were locked (rolled back)."""


@dataclass(frozen=True)
class NewRecord:
    """A record to create (import / bulk add)."""

    type: str
    title: str
    fields: Sequence[Field] = ()
    custom: Sequence[Field] = ()
    meta: Mapping[str, Any] | None = None
    uid: str | None = None  # kept when free (imports), else a new one is made


@dataclass(frozen=True)
class RecordSummary:
    """uid/title/type of a record, read without decrypting anything (listings)."""

    uid: str
    title: str
    type: str
    updated_at: datetime


@dataclass(frozen=True)
class RekeyProgress:
    new_key_id: str
    rewrapped: int  # rows rewrapped by this call
    remaining: int  # rows still wrapped by another key
    finished: bool


@dataclass(frozen=True)
class VaultStatus:
    database: str
    key_id: str
    key_source: str
    passphrase: bool
    records: int
    secret_versions: int
    audit_entries: int
    rekey_to: str | None
    rekey_remaining: int


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _unb64(s: str) -> bytes:
    return base64.b64decode(s)


def _load_key(settings: Settings | QuickSettings, key_id: str) -> MasterKey | None:
    """The master key `key_id` from the configured sources, when one holds it (never a passphrase:
    Argon2id is too slow to try on a read path). Lets a running process follow a rekey that another
    process finished: the default rekey leaves the new key in the key file (or `<key file>.new`)."""
    sources: list[Callable[[], MasterKey]] = []
    if settings.master_key is not None:
        sources.append(lambda: key_from_env(Secret(settings.master_key.get_secret_value())))  # type: ignore[union-attr]
    key_file = settings.effective_key_file
    sources += [lambda: load_key_file(key_file), lambda: load_key_file(pending_key_file(key_file))]
    for source in sources:
        try:
            key = source()
        except (VaultError, OSError):
            continue
        if key.key_id == key_id:
            return key
    return None


def _script_bearing(custom: Sequence[Field], meta: Mapping[str, Any] | None) -> list[str]:
    from keyturn.scripts.attachments import script_bearing  # lazily: keeps `import keyturn.vault` light

    return script_bearing(custom=custom, meta=meta)


def _shell_values(custom: Sequence[Field]) -> list[tuple[str, list[str]]]:
    """The script-bearing custom fields, comparable between two versions of a record."""
    from keyturn.scripts.attachments import SHELL_LABEL

    return [(f.label or "", [str(v) for v in f.value]) for f in custom
            if (f.label or "").casefold() == SHELL_LABEL.casefold()]


def _refuse_scripts(*, custom: Sequence[Field], meta: Mapping[str, Any] | None, title: str) -> None:
    found = _script_bearing(custom, meta)
    if found:
        raise ScriptsNotAllowed(
            f"record {shown(title)}: {', '.join(found)} would run a program with the passwords at rotation "
            "time; attach scripts and set Shell from the keyturn CLI on the server (`keyturn script "
            "attach`, `keyturn record edit`), not through the API"
        )


class Vault:
    """The vault. Build with `Vault.init` (new) or `Vault.open` (existing); `close()` when done."""

    def __init__(
        self, settings: Settings | QuickSettings, storage: Storage, barrier: Barrier, key_source: str,
    ) -> None:
        # Quick settings (`keyturn.config_quick`: a command that starts in a blink) until someone reads
        # `settings`; the vault itself reads only what they hold.
        self._settings = settings
        self._storage = storage
        self._barrier = barrier
        self._key_source = key_source
        # Late-bound: `_barrier` is replaced when this process follows a rekey (same integrity key).
        self.audit = AuditLog(storage, mac=lambda data: self._barrier.chain_mac(data))

    @property
    def settings(self) -> Settings:
        """The settings the vault was opened with (loaded in full now if it was opened with quick ones)."""
        if isinstance(self._settings, QuickSettings):
            self._settings = self._settings.full()
        return self._settings

    # --- lifecycle -------------------------------------------------------------------------------

    @classmethod
    def init(
        cls, settings: Settings, *, passphrase: Secret | None = None, kdf: KdfParams | None = None,
        timeout: float = 10.0, actor: str = "cli",
    ) -> Vault:
        """Create a vault: master key (new key file 0600, or Argon2id passphrase, or
        `KEYTURN_MASTER_KEY`), schema, and the default PAM Configuration record.

        Refuses (`VaultError`) when a vault already exists at the database URL, and (`ConfigError`)
        when the key file already exists.
        """
        home = settings.home
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        db_file = sqlite_path(settings.effective_database_url)
        if db_file is not None and not db_file.exists():
            # Create it 0600 ourselves: SQLite would use the umask, and its -wal/-shm files copy this mode.
            db_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(db_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        storage = Storage(settings.effective_database_url, timeout=timeout)
        try:
            storage.migrate(upgrade=settings.effective_auto_upgrade)
            with storage.session() as s:
                if s.get(MetaRow, _M_KEY_ID) is not None:
                    raise VaultError(
                        f"a vault already exists at {storage.display_url}; refusing to overwrite it"
                    )
            kdf_params: KdfParams | None = None
            if passphrase is not None:
                kdf_params = kdf or KdfParams.new()
                key = derive_from_passphrase(passphrase, kdf_params)
            elif settings.master_key is not None:
                key = key_from_env(Secret(settings.master_key.get_secret_value()))
            else:
                key = create_key_file(settings.effective_key_file)
            barrier = Barrier(key, integrity=Barrier.new_integrity_key(),
                              key_loader=lambda kid: _load_key(settings, kid))
            vault = cls(settings, storage, barrier, key.source)
            with storage.session(write=True) as s:
                if s.get(MetaRow, _M_KEY_ID) is not None:  # lost a race with another init
                    raise VaultError(
                        f"a vault already exists at {storage.display_url}; refusing to overwrite it"
                    )
                s.add(MetaRow(key=_M_KEY_ID, value=key.key_id))
                s.add(MetaRow(key=_M_KEYCHECK, value=_b64(barrier.make_keycheck())))
                s.add(MetaRow(key=_M_INTEGRITY, value=_b64(barrier.wrap_integrity())))
                s.add(MetaRow(key=_M_CREATED, value=utcnow().isoformat()))
                if kdf_params is not None:
                    s.add(MetaRow(key=_M_KDF, value=json.dumps(kdf_params.to_json())))
                s.flush()
                vault.audit.append_in(
                    s, "vault.init", actor=actor, details={"key_id": key.key_id, "key_source": key.source}
                )
                vault._add_in(
                    s, NewRecord(type="pamConfiguration", title=DEFAULT_PAM_CONFIGURATION_TITLE),
                    allow_duplicate=False, actor=actor,
                )
            return vault
        except BaseException:
            storage.dispose()
            raise

    @classmethod
    def open(
        cls, settings: Settings | QuickSettings, *, passphrase: Secret | None = None,
        new_key: MasterKey | None = None, new_passphrase: Secret | None = None, timeout: float = 10.0,
        ask_passphrase: Callable[[], Secret] | None = None,
    ) -> Vault:
        """Open an existing vault: run migrations, load and check the master key.

        Raises `VaultSealed` when no key is available or it does not match this vault (nothing is
        written in that case). While a `rekey` is in progress both keys are needed: the new one is
        `new_key`, or derived from `new_passphrase`, or read from the pending key file
        (`<key file>.new`) that the default rekey mode writes. `ask_passphrase` is called (e.g. a
        hidden prompt) when the vault uses a passphrase and none was given.
        """
        path = sqlite_path(settings.effective_database_url)
        if path is not None and not path.exists():
            raise VaultError(f"no vault at {path}; create one with `keyturn init`")
        storage = Storage(settings.effective_database_url, timeout=timeout)
        try:
            storage.migrate(upgrade=settings.effective_auto_upgrade)
            with storage.session() as s:
                meta = {r.key: r.value for r in s.scalars(sa.select(MetaRow))}
            if _M_KEY_ID not in meta:
                raise VaultError(f"no vault at {storage.display_url}; create one with `keyturn init`")
            if _M_KDF in meta and passphrase is None and settings.passphrase is None and ask_passphrase:
                passphrase = ask_passphrase()
            key = cls._current_key(settings, meta, passphrase)
            rekey = json.loads(meta[_M_REKEY]) if _M_REKEY in meta else None
            loader = lambda kid: _load_key(settings, kid)  # noqa: E731
            if rekey is None:
                barrier = Barrier(key, key_loader=loader)
            else:
                nk = cls._rekey_key(settings, rekey, new_key, new_passphrase)
                barrier = Barrier(nk, [key], key_loader=loader)
            if _M_INTEGRITY in meta:
                barrier = barrier.with_integrity(barrier.unwrap_integrity(_unb64(meta[_M_INTEGRITY])))
                return cls(settings, storage, barrier, key.source)
            if Barrier.keycheck_version(key, _unb64(meta[_M_KEYCHECK])) != 1:
                # A vault made with an integrity key never loses it: the database was altered.
                raise VaultSealed(
                    f"vault is sealed: the integrity key is missing from {storage.display_url} although "
                    "this vault was created with one; the database was altered: restore it from a backup"
                )
            vault = cls(settings, storage, barrier.with_integrity(Barrier.new_integrity_key()), key.source)
            vault._upgrade_integrity(key)
            return vault
        except BaseException:
            storage.dispose()
            raise

    def _upgrade_integrity(self, committed: MasterKey) -> None:
        """One-time step for a vault from before integrity keys (see `keyturn.vault.integrity`)."""
        with self._storage.session(write=True) as s:
            self._storage.serialize(s)
            meta = {r.key: r.value for r in s.scalars(sa.select(MetaRow))}
            if _M_INTEGRITY in meta:  # another process upgraded it first: use its key
                self._barrier = self._barrier.with_integrity(
                    self._barrier.unwrap_integrity(_unb64(meta[_M_INTEGRITY])))
                return
            if meta[_M_KEY_ID] != committed.key_id:
                raise VaultKeyRetired("the vault's master key changed while it was being opened; "
                                      "open it again")
            # Wrapped by the committed key: an unfinished rekey rewraps it with the rest when it ends.
            s.add(MetaRow(key=_M_INTEGRITY, value=_b64(
                self._barrier.with_primary(committed).wrap_integrity())))
            s.get(MetaRow, _M_KEYCHECK).value = _b64(  # type: ignore[union-attr]
                self._barrier.with_primary(committed).make_keycheck())
            tagged = integrity.seal_all_in(s, self._barrier)
            chain = self.audit.rekey_chain_on(s.connection())
            self.audit.append_in(s, integrity.ACTION_UPGRADE, actor="keyturn", details={
                "records_tagged": tagged, "audit_entries_rekeyed": chain.rekeyed,
                "legacy_head": chain.legacy_head, "chain_broken_at": chain.broken_at,
            })

    @staticmethod
    def _current_key(
        settings: Settings | QuickSettings, meta: dict[str, str], passphrase: Secret | None,
    ) -> MasterKey:
        want, check = meta[_M_KEY_ID], _unb64(meta[_M_KEYCHECK])
        if settings.master_key is not None:
            key = key_from_env(Secret(settings.master_key.get_secret_value()))
        elif _M_KDF in meta:
            pw = passphrase
            if pw is None and settings.passphrase is not None:
                pw = Secret(settings.passphrase.get_secret_value())
            if pw is None:
                raise VaultSealed("vault is sealed: this vault uses a passphrase; set KEYTURN_PASSPHRASE")
            key = derive_from_passphrase(pw, KdfParams.from_json(json.loads(meta[_M_KDF])))
        else:
            key_file = settings.effective_key_file
            pending = pending_key_file(key_file)
            if pending.exists() and _M_REKEY not in meta:
                # A rekey finished in the database but stopped before its key file replaced the old one.
                nk = load_key_file(pending)
                if nk.key_id == want and Barrier.verify_keycheck(nk, check):
                    os.replace(pending, key_file)
                    return replace(nk, source=f"key file {key_file}")
            key = load_key_file(key_file)
        if key.key_id != want or not Barrier.verify_keycheck(key, check):
            raise VaultSealed(
                f"vault is sealed: the master key does not match this vault (key id {key.key_id} from "
                f"{key.source}; the vault needs key id {want})"
            )
        return key

    @staticmethod
    def _rekey_key(
        settings: Settings | QuickSettings, rekey: dict[str, Any], new_key: MasterKey | None,
        new_passphrase: Secret | None,
    ) -> MasterKey:
        want = rekey["key_id"]
        if new_key is None and new_passphrase is not None and rekey.get("kdf"):
            new_key = derive_from_passphrase(new_passphrase, KdfParams.from_json(rekey["kdf"]))
        if new_key is None:
            pending = pending_key_file(settings.effective_key_file)
            if pending.exists():
                new_key = load_key_file(pending)
        if new_key is None or new_key.key_id != want or not Barrier.verify_keycheck(
            new_key, _unb64(rekey["keycheck"])
        ):
            raise VaultSealed(
                f"vault is sealed: a rekey to master key {want} is in progress and that key is not "
                "available; resume it with `keyturn vault rekey` and the same new key"
            )
        return new_key

    def close(self) -> None:
        self._storage.dispose()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine; other subsystems add their tables through their own migrations."""
        return self._storage.engine

    @property
    def storage(self) -> Storage:
        return self._storage

    def unit(self, *, write: bool = True, batch_audit: bool = False
             ) -> contextlib.AbstractContextManager[Session]:
        """One transaction for every vault, journal and lock call on this thread inside the block
        (`Storage.unit`): all of it commits together, or none of it; `batch_audit` writes its audit
        entries in one go at the end."""
        return self._storage.unit(write=write, batch_audit=batch_audit)

    @property
    def barrier(self) -> Barrier:
        return self._barrier

    @property
    def key_id(self) -> str:
        return self._barrier.key_id

    def hmac_value(self, value: Secret | str) -> str:
        """Keyed HMAC of a value for audit details where equality matters (see `Barrier.hmac_value`)."""
        return self._barrier.hmac_value(value)

    # --- records ---------------------------------------------------------------------------------

    def add(
        self, *, type: str, title: str, fields: Sequence[Field] = (), custom: Sequence[Field] = (),
        meta: Mapping[str, Any] | None = None, allow_duplicate: bool = False, actor: str = "cli",
        allow_scripts: bool = True,
    ) -> Record:
        """Create a record. Secret fields with a value get version 1 in state `current`.

        `DuplicateRecord` when another record has the same title (case-insensitive) unless
        `allow_duplicate`. `allow_scripts=False` (the API) refuses a record that would run a
        post-rotation script (`ScriptsNotAllowed`; see `scripts.attachments.script_bearing`).
        """
        spec = NewRecord(type=type, title=title, fields=fields, custom=custom, meta=meta)
        if not allow_scripts:
            _refuse_scripts(custom=custom, meta=meta, title=title)
        with self._storage.session(write=True) as s:
            uid = self._add_in(s, spec, allow_duplicate=allow_duplicate, actor=actor)
        return self.get(uid)

    def add_many(
        self, specs: Sequence[NewRecord], *, allow_duplicate: bool = False, actor: str = "cli",
    ) -> list[str]:
        """Create several records in ONE transaction: all are added or none (imports)."""
        with self._storage.session(write=True) as s:
            uids: list[str] = []
            for i, spec in enumerate(specs):
                try:
                    uids.append(self._add_in(s, spec, allow_duplicate=allow_duplicate, actor=actor))
                except VaultError as exc:
                    title = shown(spec.title) if isinstance(spec.title, str) else "untitled"
                    raise type(exc)(f"record #{i + 1} ({title}): {exc}") from exc
            return uids

    def _add_in(self, s: Session, spec: NewRecord, *, allow_duplicate: bool, actor: str) -> str:
        self._storage.serialize(s)  # PostgreSQL: duplicate-title check + insert are atomic
        self._check_wrap_key(s)
        title = validate_title(spec.title)
        check_record_type(spec.type)
        check_fields(spec.fields, spec.custom)
        check_value(dict(spec.meta or {}), "meta", depth=MAX_META_DEPTH)
        if not allow_duplicate:
            self._refuse_duplicate(s, title, exclude=None)
        uid = spec.uid if spec.uid and re.fullmatch(r"[A-Za-z0-9_-]{16,32}", spec.uid) else new_uid()
        if s.get(RecordRow, uid) is not None:
            uid = new_uid()
        now = utcnow()
        row = RecordRow(
            uid=uid, title=title, title_key=title_key(title), type=spec.type, fields_json="[]",
            custom_json="[]", meta_json=canonical(dict(spec.meta or {})),
            wrapped_key=self._barrier.new_data_key(uid), key_id=self._barrier.key_id,
            created_at=now, updated_at=now,
        )
        s.add(row)
        s.flush()
        s.info.pop(FOUND_BY_TYPE, None)  # a unit's `prefetch`ed listings do not hold it
        self._write_fields(s, row, list(spec.fields), list(spec.custom))
        integrity.seal(self._barrier, row)
        details: dict[str, Any] = {"title": title, "type": spec.type}
        scripts = _script_bearing(spec.custom, spec.meta)
        if scripts:
            details["scripts"] = scripts
        self.audit.append_in(s, "record.add", actor=actor, record_uid=uid, details=details)
        return uid

    def _check_wrap_key(self, s: Session) -> None:
        """Inside a write transaction that is about to wrap a data key: make sure this process wraps
        with a key the vault still accepts — its current key or, while a rekey runs, the new one.

        A `vault rekey` finished by another process retires the key this process opened with; a
        data key wrapped by it after that would be lost when the old key file goes. Switch to the
        vault's key when a configured source has it, else `VaultKeyRetired`. Reading the key id here,
        in the write transaction, serializes with the rekey's final transaction (same writer lock).
        """
        meta = {k: v for k, v in s.execute(sa.select(MetaRow.key, MetaRow.value)
                                           .where(MetaRow.key.in_([_M_KEY_ID, _M_REKEY])))}
        target = json.loads(meta[_M_REKEY])["key_id"] if _M_REKEY in meta else meta[_M_KEY_ID]
        if self._barrier.key_id in (target, meta[_M_KEY_ID]):
            return
        key = self._barrier.key(target)
        if key is None:
            raise VaultKeyRetired(
                f"this process wraps with master key {self._barrier.key_id}, which `keyturn vault rekey` "
                f"retired; the vault now uses key {target}, which is not available here: restart this "
                "process with the new key (nothing was written)"
            )
        self._barrier = self._barrier.with_primary(key)

    def _refuse_duplicate(self, s: Session, title: str, *, exclude: str | None) -> None:
        q = sa.select(RecordRow.uid).where(RecordRow.title_key == title_key(title))
        if exclude is not None:
            q = q.where(RecordRow.uid != exclude)
        other = s.scalars(q).first()
        if other is not None:
            raise DuplicateRecord(
                f"a record titled {shown(title)} already exists (uid {other}); use --allow-duplicate to add "
                "anyway"
            )

    def _write_fields(
        self, s: Session, row: RecordRow, fields: list[Field], custom: list[Field],
    ) -> list[str]:
        """Store plain fields in the row and secret values as new current versions (when changed).

        Returns the names of secret slots that got a new version. An empty value list on a secret
        field leaves its versions untouched.
        """
        items = slot_names(fields, custom)
        changed: list[str] = []
        for f, _is_custom, slot in items:
            if slot is None:
                continue
            values = secret_values(f)
            if len(values) > 1:
                raise VaultError(f"secret field {f.name!r} has {len(values)} values; keyturn keeps one")
            if not values:
                continue
            cur = ver.current_row(s, row.uid, slot)
            if cur is not None and self._decrypt(row, cur) == values[0]:
                continue
            self._new_version(s, row, slot, values[0], VersionState.CURRENT, None)
            changed.append(slot)
        row.fields_json = json.dumps(
            encode_fields([(f, slot) for f, c, slot in items if not c]), separators=(",", ":")
        )
        row.custom_json = json.dumps(
            encode_fields([(f, slot) for f, c, slot in items if c]), separators=(",", ":")
        )
        return changed

    def _new_version(
        self, s: Session, row: RecordData, slot: str, value: Secret, state: VersionState,
        rotation_id: str | None, *, number: int | None = None, touched: bool = False,
    ) -> int:
        """Encrypt and insert the next version of `slot` and bump the record's `updated_at` (listings
        show when a record's secrets last changed). `number`: the next number when the caller read it
        under this write transaction; `touched`: `_touch` has bumped `updated_at` already (else `row`
        must be a `RecordRow`)."""
        if number is None:
            number = ver.next_version(s, row.uid, slot)
        blob = self._barrier.encrypt(row.wrapped_key, row.uid, slot, number, value)
        ver.insert(s, row.uid, slot, number, blob, state, rotation_id)
        if state is VersionState.CURRENT:
            ver.trim(s, row.uid, slot, self._settings.history_depth)
        if not touched:
            _changeable(row).updated_at = utcnow()
        return number

    def _decrypt(self, row: RecordData, v: ver.VersionRow) -> Secret:
        return self._decrypt_value(row, v.field, v.version, v.ciphertext)

    def _decrypt_value(self, row: RecordData, slot: str, version: int, blob: bytes) -> Secret:
        return self._barrier.decrypt(row.wrapped_key, row.uid, slot, version, blob)

    def _to_record(self, s: Session, row: RecordData) -> Record:
        current: dict[str, tuple[int, bytes]] | None = None   # read once, on the first secret field

        def load(raw: str) -> list[Field]:
            nonlocal current
            out: list[Field] = []
            for item in json.loads(raw):
                slot = item.get("slot")
                if slot is None:
                    out.append(Field(item["type"], item.get("label"), list(item.get("value", []))))
                    continue
                if current is None:
                    current = ver.current_values(s, row.uid)
                cur = current.get(slot)
                value = [self._decrypt_value(row, slot, *cur)] if cur else []
                out.append(Field(item["type"], item.get("label"), value))
            return out

        return Record(
            uid=row.uid, title=row.title, type=row.type, fields=load(row.fields_json),
            custom=load(row.custom_json), meta=json.loads(row.meta_json),
            created_at=row.created_at, updated_at=row.updated_at,
        )

    def _view(self, s: Session, ref: str, *, check: bool = True) -> RecordData:
        """The record row by uid or unique title, to read: the unit's copy when it holds one, else read
        as a Core row (`RecordValues`; inside a unit with its versions, in one query). With `check`,
        refused (`RecordTampered`) unless its integrity tag matches."""
        if unstorable(ref):  # the database cannot even be asked (and holds no such text)
            raise _no_such(ref)
        keep: dict[str, RecordData] | None = s.info.get(ROWS_KEPT)
        row: RecordData | None = None if keep is None else keep.get(ref)
        if row is None:
            if keep is None:
                got = connection_of(s).execute(_BY_UID, {"uid": ref}).first()
                row = None if got is None else RecordValues(*got)
            else:
                # A unit of work: the record and its versions in one query (its reads of them follow).
                found = _group(connection_of(s).execute(_JOINED_BY_UID, {"uid": ref}))
                if found:
                    row = found[0][0]
                    ver.remember(s, row.uid, found[0][1])
            if row is None:
                row = self._row_by_title(s, ref)
            if keep is not None:   # a unit of work: later reads of this record in it need no SELECT
                keep[row.uid] = row
        if check:
            integrity.check(self._barrier, row)
        return row

    def _row(self, s: Session, ref: str, *, check: bool = True) -> RecordRow:
        """The record as an ORM `RecordRow` by uid or unique title, to change (its changes are flushed
        with the session); with `check`, integrity-checked as `_view`. Inside a unit it replaces the
        unit's read copy, re-read, so the row changed is the row as it is now."""
        if unstorable(ref):
            raise _no_such(ref)
        keep: dict[str, RecordData] | None = s.info.get(ROWS_KEPT)
        held = None if keep is None else keep.get(ref)
        if isinstance(held, RecordRow):
            row = held
        else:
            found = s.get(RecordRow, ref, populate_existing=keep is not None)
            row = found if found is not None else self._row_by_title(s, ref)
            if keep is not None:
                keep[row.uid] = row
        if check:
            integrity.check(self._barrier, row)
        return row

    def _locked_row(self, s: Session, ref: str) -> RecordRow:
        """`_row`, locked until the transaction ends, so a record's writers queue per record
        (PostgreSQL ``FOR UPDATE``, the row re-read as committed; SQLite's writer lock already covers
        it). Lock order: the record first, then the chain lock (`Storage.serialize`), never the
        other way round, or two writers could each wait for the other."""
        if self._storage.dialect != "postgresql":
            return self._row(s, ref)
        # By uid: locked and read in one statement; by title: found, then locked and read again.
        row = None if unstorable(ref) else s.get(RecordRow, ref, with_for_update=True, populate_existing=True)
        if row is None:
            found = self._view(s, ref, check=False)
            row = s.get(RecordRow, found.uid, with_for_update=True, populate_existing=True)
            if row is None:  # removed by another writer since it was read
                raise _not_found(s, ref)
        keep: dict[str, RecordData] | None = s.info.get(ROWS_KEPT)
        if keep is not None:
            keep[row.uid] = row
        integrity.check(self._barrier, row)
        return row

    def _touch(self, s: Session, ref: str, field: str | None = None) -> tuple[RecordData, Any]:
        """`_locked_row` for a write that changes the record's versions, in one statement: ``UPDATE
        kt_records SET updated_at = now … RETURNING`` the row (on PostgreSQL the UPDATE is the row lock,
        and what it returns is the row as committed, as ``FOR UPDATE`` reads it), with `field`'s highest
        version number (None: no version) read by the same statement. Integrity-checked after.

        Returns (row, highest number, or `_UNREAD`); the row as `RecordValues` unless it went the
        long way. A title, or a record this unit holds as a `RecordRow` (maybe changed, unflushed),
        goes the long way (`_locked_row`, the bump at flush, the number unread): the statement is by
        uid, and must not overwrite a row the session holds changed."""
        kept: dict[str, RecordData] | None = s.info.get(ROWS_KEPT)
        if unstorable(ref) or (kept is not None and isinstance(kept.get(ref), RecordRow)):
            row = self._locked_row(s, ref)
            row.updated_at = utcnow()
            return row, _UNREAD
        got = connection_of(s).execute(
            _TOUCH_FIELD if field is not None else _TOUCH,
            {"kt_uid": ref, "kt_now": utcnow(), **({"kt_field": field} if field is not None else {})},
        ).first()
        if got is None:  # a title (or no such record): found by `_row`, then locked by uid
            row = self._locked_row(s, ref)
            row.updated_at = utcnow()
            return row, _UNREAD
        values = RecordValues(*got[:_WIDTH])
        if kept is not None:   # the unit's later reads see the bumped row
            kept[values.uid] = values
        integrity.check(self._barrier, values)
        top = got[_WIDTH]
        return values, (None if top is None else int(top)) if field is not None else _UNREAD

    def lock_record(self, ref: str) -> None:
        """Inside a write unit of work: lock the record until the unit ends (see `_locked_row`); reads
        of it in the unit after this see it as committed. Take it before anything that serializes."""
        with self._storage.session(write=True) as s:
            self._locked_row(s, ref)

    def _row_by_title(self, s: Session, ref: str) -> RecordRow:
        rows = list(s.scalars(sa.select(RecordRow).where(RecordRow.title_key == title_key(ref))))
        if len(rows) == 1:
            return rows[0]
        if not rows:
            raise _not_found(s, ref)
        cands = [f"{r.uid} {shown(r.title)} ({r.type})" for r in rows]
        raise AmbiguousRecord(
            f"title {shown(ref)} matches {len(rows)} records; use a uid: " + "; ".join(cands),
            candidates=cands,
        )

    def prefetch(self, refs: Sequence[str], *, types: Sequence[str] = ()) -> None:
        """Inside a unit of work: read the records named by uid in `refs` and every record of the
        types `types` in one query, and all their versions in one more, so that `get`, `secret`,
        `versions` and `find(type=...)` of them later in the unit send none (a rotation's prepare reads
        resource, admin and configuration this way). A title in `refs` is left to `get`. Outside a
        unit it does nothing: there is nowhere to keep them."""
        s = ambient_session(self._storage.engine)
        if s is None:
            return
        kept: dict[str, RecordData] = s.info[ROWS_KEPT]
        by_type: dict[str, list[str]] = s.info.setdefault(FOUND_BY_TYPE, {})
        uids = [r for r in dict.fromkeys(refs) if r and not unstorable(r) and r not in kept]
        new_types = [t for t in dict.fromkeys(types) if t not in by_type]
        if not uids and not new_types:
            return
        s.flush()   # a record this unit added is listed by type too (Core statements do not autoflush)
        found = _group(connection_of(s).execute(_PREFETCH, {"kt_uids": uids, "kt_types": new_types}))
        for t in new_types:
            by_type[t] = [r.uid for r, _v in found if r.type == t]
        for r, versions in found:
            kept.setdefault(r.uid, r)
            ver.remember(s, r.uid, versions)

    def get(self, ref: str) -> Record:
        """Record by uid or unique title (case-insensitive). `RecordNotFound` / `AmbiguousRecord`."""
        with self._storage.session() as s:
            _read_once(s)
            return self._to_record(s, self._view(s, ref))

    def meta(self, ref: str) -> tuple[str, dict[str, Any]]:
        """(uid, meta) of a record by uid or unique title, decrypting nothing."""
        with self._storage.session() as s:
            row = self._view(s, ref)
            meta: dict[str, Any] = json.loads(row.meta_json)
            return row.uid, meta

    def metas(self, refs: Sequence[str]) -> list[tuple[str, dict[str, Any]] | KeyturnError]:
        """`meta` of every ref, in order: (uid, meta), or the `KeyturnError` `meta` raises for it (not
        found, ambiguous, tampered). The records named by uid are read in one query per
        `_METAS_CHUNK` (a batch of 10,000 rotations groups its accounts by device this way: one query
        per record cost a statement per rotation); a title is looked up as `meta` does."""
        out: list[tuple[str, dict[str, Any]] | KeyturnError] = []
        with self._storage.session() as s:
            uids = [r for r in dict.fromkeys(refs) if r and not unstorable(r)]
            rows: dict[str, Any] = {}
            for start in range(0, len(uids), _METAS_CHUNK):
                chunk = uids[start:start + _METAS_CHUNK]
                rows.update((r.uid, r) for r in s.execute(_BY_UIDS, {"kt_uids": chunk}))
            for ref in refs:
                try:
                    row = rows.get(ref)
                    if row is None:   # a title, or no such uid: the lookup (and error) of `meta`
                        row = self._view(s, ref)
                    else:
                        integrity.check(self._barrier, row)
                    out.append((row.uid, json.loads(row.meta_json)))
                except KeyturnError as exc:
                    out.append(exc)
        return out

    def summary(self, ref: str) -> RecordSummary:
        """uid/title/type of a record by uid or unique title, without decrypting or checking it (what
        a confirmation prompt shows, e.g. before removing a tampered record)."""
        with self._storage.session() as s:
            row = self._view(s, ref, check=False)
            return RecordSummary(row.uid, row.title, row.type, row.updated_at)

    def resolve(self, ref: str) -> str:
        """The uid for a uid or unique title (no decryption, no integrity check: an admin must be able
        to name a tampered record to remove or reseal it)."""
        with self._storage.session() as s:
            return self._view(s, ref, check=False).uid

    def find(
        self, *, type: str | None = None, title: str | None = None, custom: Mapping[str, str] | None = None,
    ) -> list[Record]:
        """Records matching all filters, ordered by title. `title` is a case-insensitive substring;
        `custom` matches plain custom field values exactly (labels as in `Record.custom_value`)."""
        if any(unstorable(f) for f in (type, title) if f is not None):
            return []
        q = sa.select(_RECORDS).order_by(_RECORDS.c.title_key, _RECORDS.c.uid)
        if type is not None:
            q = q.where(_RECORDS.c.type == type)
        if title is not None:
            q = q.where(_RECORDS.c.title_key.contains(title_key(title), autoescape=True))
        with self._storage.session() as s:
            listed = s.info.get(FOUND_BY_TYPE, {}).get(type) if title is None else None
            s.flush()   # what this unit changed is read back as changed (Core does not autoflush)
            rows: list[RecordData] = (
                [RecordValues(*r) for r in connection_of(s).execute(q)] if listed is None
                else [s.info[ROWS_KEPT][uid] for uid in listed])   # `prefetch` read them
            for r in rows:
                integrity.check(self._barrier, r)
            records = [self._to_record(s, r) for r in rows]
        if custom:
            records = [
                r for r in records
                if all(
                    (v := r.custom_value(label)) is not None and not isinstance(v, Secret) and str(v) == want
                    for label, want in custom.items()
                )
            ]
        return records

    def summaries(self, *, type: str | None = None, title: str | None = None) -> list[RecordSummary]:
        """Like `find` (type / title substring) but without decrypting: for listings."""
        if any(unstorable(f) for f in (type, title) if f is not None):
            return []
        q = sa.select(RecordRow.uid, RecordRow.title, RecordRow.type, RecordRow.updated_at).order_by(
            RecordRow.title_key, RecordRow.uid
        )
        if type is not None:
            q = q.where(RecordRow.type == type)
        if title is not None:
            q = q.where(RecordRow.title_key.contains(title_key(title), autoescape=True))
        with self._storage.session() as s:
            return [RecordSummary(*r) for r in s.execute(q)]

    def update(
        self, uid: str, *, title: str | None = None, fields: Sequence[Field] | None = None,
        custom: Sequence[Field] | None = None, allow_duplicate: bool = False, actor: str = "cli",
        allow_scripts: bool = True,
    ) -> Record:
        """Change title and/or replace the standard / custom field lists.

        A secret field whose value differs from its current version gets a new `current` version
        (old → `previous`); an empty value list keeps the current one. `allow_scripts=False` (the API)
        refuses a change to a `Shell` field; sending the record's current one back is fine.
        """
        with self._storage.session(write=True) as s:
            row = self._locked_row(s, uid)
            self._storage.serialize(s)  # the duplicate-title check and the rename are atomic
            details: dict[str, Any] = {}
            if title is not None and title.strip() != row.title:
                new_title = validate_title(title)
                if not allow_duplicate:
                    self._refuse_duplicate(s, new_title, exclude=row.uid)
                details["title"] = {"from": row.title, "to": new_title}
                row.title, row.title_key = new_title, title_key(new_title)
            if fields is not None or custom is not None:
                current = self._to_record(s, row)
                new_fields = list(fields) if fields is not None else current.fields
                new_custom = list(custom) if custom is not None else current.custom
                # Only what changes is checked: a record stored before a rule existed stays editable.
                check_fields(new_fields, new_custom, unchanged=[*current.fields, *current.custom])
                if not allow_scripts and _shell_values(new_custom) != _shell_values(current.custom):
                    _refuse_scripts(custom=new_custom, meta=None, title=row.title)
                details["new_versions"] = self._write_fields(s, row, new_fields, new_custom)
                details["fields"] = fields is not None
                details["custom"] = custom is not None
            row.updated_at = utcnow()
            integrity.seal(self._barrier, row)
            self.audit.append_in(s, "record.update", actor=actor, record_uid=row.uid, details=details)
            result = self._to_record(s, row)
        return result

    def set_meta(self, uid: str, key: str, value: Any, *, actor: str = "cli") -> None:
        """Set `meta[key] = value` (JSON, non-secret: e.g. "rotation" profile, "scripts")."""
        with self._storage.session(write=True) as s:
            row = self._row(s, uid)
            meta = json.loads(row.meta_json)
            meta[key] = value
            row.meta_json = canonical(meta)  # refuses Secret values
            row.updated_at = utcnow()
            integrity.seal(self._barrier, row)
            # What changed, without the value (env values of an attachment are in clear but private):
            # a keyed digest, and what would run when it is a script-bearing key.
            details: dict[str, Any] = {"key": key, "digest": self._barrier.hmac_value(canonical(value))}
            scripts = _script_bearing((), {key: value})
            if scripts:
                details["scripts"] = scripts
            self.audit.append_in(s, "record.meta", actor=actor, record_uid=row.uid, details=details)

    def remove(self, uid: str, *, actor: str = "cli") -> None:
        """Delete a record and all its secret versions (a tampered one too: that is one way out)."""
        with self._storage.session(write=True) as s:
            row = self._row(s, uid, check=False)
            s.execute(sa.delete(SecretVersionRow).where(SecretVersionRow.record_uid == row.uid))
            ver.forget_current(s, row.uid)
            s.info.pop(FOUND_BY_TYPE, None)
            kept = s.info.get(ROWS_KEPT)
            if kept is not None:
                kept.pop(row.uid, None)
            self.audit.append_in(s, "record.remove", actor=actor, record_uid=row.uid,
                                 details={"title": row.title, "type": row.type})
            s.delete(row)

    # --- integrity -------------------------------------------------------------------------------

    def tampered(self) -> list[RecordSummary]:
        """Every record whose integrity check fails (`keyturn vault check`), by title."""
        out: list[RecordSummary] = []
        with self._storage.session() as s:
            for row in s.scalars(sa.select(RecordRow).order_by(RecordRow.title_key, RecordRow.uid)):
                try:
                    integrity.check(self._barrier, row)
                except VaultError:
                    out.append(RecordSummary(row.uid, row.title, row.type, row.updated_at))
        return out

    def inspect(self, ref: str) -> dict[str, Any]:
        """A record's stored, UNVERIFIED type/title/fields/meta (no secret values), for review before
        `reseal`, plus ``"intact"``: whether its integrity check passes."""
        with self._storage.session() as s:
            row = self._view(s, ref, check=False)
            view = integrity.raw_view(row)
            try:
                integrity.check(self._barrier, row)
                view["intact"] = True
            except VaultError:
                view["intact"] = False
            return view

    def reseal(self, ref: str, *, actor: str) -> None:
        """Accept a record's current stored content as authentic: a new integrity tag (an admin action
        after review; audited with what was accepted, including any script attachments)."""
        with self._storage.session(write=True) as s:
            row = self._row(s, ref, check=False)
            view = integrity.raw_view(row)
            if not (isinstance(view["fields"], list) and isinstance(view["custom"], list)
                    and isinstance(view["meta"], dict)):
                raise VaultError(f"record {row.uid} holds malformed fields or metadata and cannot be used "
                                 f"even resealed; remove it (`keyturn record rm {row.uid}`)")
            integrity.seal(self._barrier, row)
            custom = [Field(str(i.get("type", "")), i.get("label"), list(i.get("value") or []))
                      for i in view["custom"] if isinstance(i, dict)]
            meta = view["meta"]
            self.audit.append_in(s, integrity.ACTION_RESEAL, actor=actor, record_uid=row.uid, details={
                "title": row.title, "type": row.type, "digest": self._barrier.hmac_value(canonical(view)),
                "scripts": _script_bearing(custom, meta),
            })

    # --- secret versions -------------------------------------------------------------------------

    def _slot(self, s: Session, row: RecordData, name: str, *, create: bool = False) -> str:
        """Slot for a field name: slot name, standard type, standard label, custom label (then -i)."""
        std, cus = json.loads(row.fields_json), json.loads(row.custom_json)
        slots = [i["slot"] for i in std + cus if "slot" in i]
        if name in slots:
            return name
        for key in ("type", "label"):
            for i in std:
                if "slot" in i and i.get(key) == name:
                    return str(i["slot"])
        for fold in (False, True):
            for i in cus:
                label = i.get("label") or ""
                if "slot" in i and ((label.casefold() == name.casefold()) if fold else label == name):
                    return str(i["slot"])
        if not create:
            if s.scalar(sa.select(SecretVersionRow.id).where(
                    SecretVersionRow.record_uid == row.uid, SecretVersionRow.field == name).limit(1)):
                return name
            raise VaultError(f"record {row.uid} has no secret field {name!r}")
        # First version of a field the record does not list yet: add it, so `get` shows it.
        entity = row if isinstance(row, RecordRow) else self._row(s, row.uid)
        if is_secret_field(name, custom=False):
            std.append({"type": name, "label": None, "slot": name})
            entity.fields_json = json.dumps(std, separators=(",", ":"))
            integrity.seal(self._barrier, entity)
            return name
        slot = f"custom:{name}"
        cus.append({"type": "secret", "label": name, "slot": slot})
        entity.custom_json = json.dumps(cus, separators=(",", ":"))
        integrity.seal(self._barrier, entity)
        return slot

    def secret(self, uid: str, field: str = "password") -> Secret | None:
        """The current version's value of a secret field, or None when it has none."""
        with self._storage.session() as s:
            row = self._view(s, uid)
            try:
                slot = self._slot(s, row, field)
            except VaultError:
                return None
            cur = ver.current_values(s, row.uid).get(slot)
            return self._decrypt_value(row, slot, *cur) if cur is not None else None

    def versions(self, uid: str, field: str = "password") -> list[VersionInfo]:
        """All versions of a secret field, newest first (metadata only)."""
        with self._storage.session() as s:
            row = self._view(s, uid)
            try:
                slot = self._slot(s, row, field)
            except VaultError:
                return []
            return [ver.info(v) for v in ver.list_rows(s, row.uid, slot)]

    def version_secret(self, uid: str, version: int, field: str = "password") -> Secret:
        with self._storage.session() as s:
            row = self._view(s, uid)
            return self._decrypt(row, ver.get_row(s, row.uid, self._slot(s, row, field), version))

    def add_version(
        self, uid: str, value: Secret, *, field: str = "password", state: VersionState = VersionState.PENDING,
        rotation_id: str | None = None, actor: str = "engine",
    ) -> int:
        """Store a new encrypted version (default `pending`); committed when this returns."""
        if not isinstance(value, Secret):
            raise TypeError("add_version takes a Secret")
        with self._storage.session(write=True) as s:
            row, top = self._touch(s, uid, field)
            slot = self._slot(s, row, field, create=True)
            number = self._new_version(s, row, slot, value, VersionState(state), rotation_id, touched=True,
                                       number=None if top is _UNREAD or slot != field else (top or 0) + 1)
            self.audit.append_in(s, "version.add", actor=actor, record_uid=row.uid, details={
                "field": slot, "version": number, "state": str(state), "rotation_id": rotation_id,
            })
            return number

    def set_version_state(
        self, uid: str, version: int, state: VersionState, *, field: str = "password", actor: str = "engine",
    ) -> None:
        """Set a version's state; `current` is the same as `promote`. The current version cannot be
        demoted directly (promote another one instead)."""
        if VersionState(state) is VersionState.CURRENT:
            self.promote(uid, version, field=field, actor=actor)
            return
        with self._storage.session(write=True) as s:
            row = self._view(s, uid)
            slot = self._slot(s, row, field)
            old = ver.set_state(s, row.uid, slot, version, VersionState(state))
            self.audit.append_in(s, "version.state", actor=actor, record_uid=row.uid, details={
                "field": slot, "version": version, "from": old, "to": str(state),
            })

    def promote(self, uid: str, version: int, *, field: str = "password", actor: str = "engine",
                seen: str | None = None) -> None:
        """One transaction: `version` → current, old current → previous, history trimmed. `seen`: what
        the device stored when this version was proved by its stored hash (`VersionInfo.device_seen`)."""
        with self._storage.session(write=True) as s:
            # The record's lock, not the installation's chain lock: a rotation's commit waits only for
            # writers of the same record; the chain lock is taken by the audit append at the end.
            row, _top = self._touch(s, uid)
            slot = self._slot(s, row, field)
            old = ver.promote(s, row.uid, slot, version, seen=seen)
            ver.trim(s, row.uid, slot, self._settings.history_depth)
            self.audit.append_in(s, "version.promote", actor=actor, record_uid=row.uid, details={
                "field": slot, "version": version, "previous": old,
            })

    def reveal(self, uid: str, *, field: str = "password", actor: str, version: int | None = None) -> Secret:
        """The current value of a secret field — or its `version` (any state: an earlier secret is how
        a mistake is undone) — for showing to a person. Audited ("reveal", with the version). `uid`
        may also be a unique title (as `resolve` takes it)."""
        with self._storage.session(write=True) as s:
            _read_once(s)
            row = self._view(s, uid)
            slot = self._slot(s, row, field)
            cur = (ver.current_row(s, row.uid, slot) if version is None
                   else ver.get_row(s, row.uid, slot, version))
            if cur is None:
                raise VaultError(f"record {row.uid} field {field!r} has no current value")
            value = self._decrypt(row, cur)
            self.audit.append_in(s, "reveal", actor=actor, record_uid=row.uid,
                                 details={"field": slot, "version": cur.version, "state": str(cur.state)})
            return value

    def restore(self, uid: str, version: int, *, field: str = "password", actor: str) -> int:
        """Make the value of `version` current again, as a NEW version (history is never rewritten);
        returns its number. Audited ("record.restore"). Only the vault changes — the device must
        already have that secret (it is how a lost working secret is recovered).

        Refused (`VaultError`) while a candidate is pending (a rotation is in flight or unsettled:
        `keyturn recover` first) and when `version` is already the current one.
        """
        with self._storage.session(write=True) as s:
            row = self._locked_row(s, uid)
            slot = self._slot(s, row, field)
            source = ver.get_row(s, row.uid, slot, version)
            rows = ver.list_rows(s, row.uid, slot)
            pending = [r.version for r in rows if r.state == VersionState.PENDING.value]
            if pending:
                raise VaultError(f"record {row.uid} field {field!r} has a pending candidate (version "
                                 f"{pending[0]}): a rotation is in flight or unsettled; run `keyturn "
                                 "recover` first")
            if source.state == VersionState.CURRENT.value:
                raise VaultError(f"version {version} of record {row.uid} field {field!r} is already current")
            current = next((r.version for r in rows if r.state == VersionState.CURRENT.value), None)
            number = self._new_version(s, row, slot, self._decrypt(row, source), VersionState.CURRENT, None)
            self.audit.append_in(s, "record.restore", actor=actor, record_uid=row.uid, details={
                "field": slot, "version": version, "from_state": str(source.state), "new_version": number,
                "previous": current,
            })
            return number

    # --- master key --------------------------------------------------------------------------------

    def rekey(
        self, new_key: MasterKey, *, kdf: KdfParams | None = None, limit: int | None = None,
        batch_size: int = 200, actor: str = "cli", lease: RekeyLease | None = None,
    ) -> RekeyProgress:
        """Rewrap every record's data key under `new_key` (record data is not re-encrypted).

        Resumable: each row records which key wraps it, and only rows not yet under the new key are
        processed, `batch_size` rows per committed transaction. `limit` stops after that many rows
        (an interruption on purpose; call again to resume). While unfinished, the vault needs both
        keys to open (see `open`). On completion the vault's key id, key check, KDF parameters and
        wrapped integrity key switch to the new key in one transaction, which also rewraps the rows
        other processes added meanwhile; the old key is no longer accepted. `kdf` is given when
        `new_key` was derived from a passphrase.

        Holds the rekey lease throughout (`RekeyLocked` when another rekey has it; `lease` lets a
        caller pass its own, e.g. with a short lease in tests). Processes that keep writing meanwhile
        stay correct by themselves (`_check_wrap_key`); the integrity key, and with it record tags,
        the audit chain and audit HMACs, is unchanged.
        """
        lease = lease or RekeyLease(self._storage)
        lease.acquire()
        try:
            return self._rekey(new_key, kdf=kdf, limit=limit, batch_size=batch_size, actor=actor, lease=lease)
        finally:
            lease.release()

    def _rekey(
        self, new_key: MasterKey, *, kdf: KdfParams | None, limit: int | None, batch_size: int, actor: str,
        lease: RekeyLease,
    ) -> RekeyProgress:
        with self._storage.session(write=True) as s:
            committed_id = s.get(MetaRow, _M_KEY_ID).value  # type: ignore[union-attr]
            cur = s.get(MetaRow, _M_REKEY)
            if cur is None:
                if new_key.key_id == committed_id:
                    raise VaultError("the new master key is the vault's current key")
                plan = {
                    "key_id": new_key.key_id, "keycheck": _b64(Barrier(new_key).make_keycheck()),
                    "kdf": kdf.to_json() if kdf else None, "started_at": utcnow().isoformat(),
                }
                s.add(MetaRow(key=_M_REKEY, value=json.dumps(plan)))
                self.audit.append_in(s, "vault.rekey.start", actor=actor, details={"to": new_key.key_id})
            elif json.loads(cur.value)["key_id"] != new_key.key_id:
                raise VaultError(
                    f"a rekey to master key {json.loads(cur.value)['key_id']} is in progress; "
                    "resume it with that key"
                )
        if self._barrier.key(committed_id) is None:
            raise VaultKeyRetired(f"the vault's master key {committed_id} is not loaded in this process; "
                                  "open the vault again")
        self._barrier = self._barrier.with_primary(new_key)
        done = 0
        while limit is None or done < limit:
            take = batch_size if limit is None else min(batch_size, limit - done)
            with self._storage.session(write=True) as s:
                rows = self._rewrap_rows(s, new_key, take)
            done += rows
            if rows < take:
                break
            lease.renew()
        if limit is not None:
            with self._storage.session() as s:
                remaining = _count_not_under(s, new_key)
            if remaining:
                return RekeyProgress(new_key.key_id, done, remaining, finished=False)
        for _attempt in range(_REKEY_FINAL_ATTEMPTS):
            try:
                done += self._rekey_switch(new_key, actor)
                break
            except _RowsAdded:   # rolled back; the next attempt locks them first
                continue
        else:
            raise VaultError(f"rekey to {new_key.key_id}: records kept being added under the old key; "
                             "run `keyturn vault rekey` again to finish")
        self._key_source = new_key.source
        return RekeyProgress(new_key.key_id, done, 0, finished=True)

    def _rekey_switch(self, new_key: MasterKey, actor: str) -> int:
        """The rekey's final transaction: rewrap the rows still under another key (added by other
        processes since the batches, see `_check_wrap_key`) and switch the vault's key id, key check,
        KDF parameters and wrapped integrity key to `new_key`. Returns the rows rewrapped.

        Lock order: the rows first, then the chain lock, as every writer takes them (`_locked_row`);
        the other way round, a rotation holding one of those rows while it waits for the chain lock
        would deadlock with this transaction. A row added after the rows were locked and before the
        chain lock was taken (an add takes the chain lock, so none after) raises `_RowsAdded`: the
        transaction rolls back and the caller tries again."""
        with self._storage.session(write=True) as s:
            done = self._rewrap_rows(s, new_key, None, lock=True)
            self._storage.serialize(s)
            if _count_not_under(s, new_key):
                raise _RowsAdded
            plan = json.loads(s.get(MetaRow, _M_REKEY).value)  # type: ignore[union-attr]
            s.get(MetaRow, _M_KEY_ID).value = new_key.key_id  # type: ignore[union-attr]
            # A fresh version-2 check by the new key (the plan's may predate integrity keys).
            s.get(MetaRow, _M_KEYCHECK).value = _b64(self._barrier.make_keycheck())  # type: ignore[union-attr]
            s.get(MetaRow, _M_INTEGRITY).value = _b64(self._barrier.wrap_integrity())  # type: ignore[union-attr]
            kdf_row = s.get(MetaRow, _M_KDF)
            if plan.get("kdf"):
                if kdf_row is None:
                    s.add(MetaRow(key=_M_KDF, value=json.dumps(plan["kdf"])))
                else:
                    kdf_row.value = json.dumps(plan["kdf"])
            elif kdf_row is not None:
                s.delete(kdf_row)
            s.delete(s.get(MetaRow, _M_REKEY))
            self.audit.append_in(s, "vault.rekey.done", actor=actor, details={"to": new_key.key_id})
        return done

    def _rewrap_rows(self, s: Session, new_key: MasterKey, limit: int | None, *, lock: bool = False) -> int:
        """Rewrap up to `limit` (None: all) rows not yet under `new_key`; returns how many. `lock`:
        read them ``FOR UPDATE`` (PostgreSQL), locked in uid order before anything else is."""
        q = sa.select(RecordRow).where(RecordRow.key_id != new_key.key_id).order_by(RecordRow.uid)
        if lock:
            q = q.with_for_update()
        rows = list(s.scalars(q if limit is None else q.limit(limit)))
        for r in rows:
            r.wrapped_key = self._barrier.rewrap(r.wrapped_key, r.uid)
            r.key_id = new_key.key_id
        return len(rows)

    def status(self) -> VaultStatus:
        from keyturn.vault.storage import AuditRow

        with self._storage.session() as s:
            meta = {r.key: r.value for r in s.scalars(sa.select(MetaRow))}
            def count(m: type[Any]) -> int:
                return s.scalar(sa.select(sa.func.count()).select_from(m)) or 0

            rekey = json.loads(meta[_M_REKEY]) if _M_REKEY in meta else None
            remaining = 0
            if rekey:
                remaining = s.scalar(sa.select(sa.func.count()).select_from(RecordRow).where(
                    RecordRow.key_id != rekey["key_id"])) or 0
            return VaultStatus(
                database=self._storage.display_url, key_id=meta[_M_KEY_ID], key_source=self._key_source,
                passphrase=_M_KDF in meta, records=count(RecordRow), secret_versions=count(SecretVersionRow),
                audit_entries=count(AuditRow), rekey_to=rekey["key_id"] if rekey else None,
                rekey_remaining=remaining,
            )

    def rekey_kdf(self) -> KdfParams | None:
        """KDF parameters of an unfinished passphrase rekey (to derive the same new key), else None."""
        with self._storage.session() as s:
            row = s.get(MetaRow, _M_REKEY)
        plan = json.loads(row.value) if row is not None else None
        return KdfParams.from_json(plan["kdf"]) if plan and plan.get("kdf") else None

    def rekey_in_progress(self) -> str | None:
        """The new key id of an unfinished rekey, or None."""
        with self._storage.session() as s:
            row = s.get(MetaRow, _M_REKEY)
            return str(json.loads(row.value)["key_id"]) if row is not None else None


# The record reads of the vault, as Core rows (`RecordValues`): loading ORM entities cost as much again.
_RECORDS: sa.Table = RecordRow.__table__  # type: ignore[assignment]
_WIDTH = len(_RECORDS.c)   # a record's columns lead every row of the statements below
_BY_UID = sa.select(_RECORDS).where(_RECORDS.c.uid == sa.bindparam("uid"))
_JOINED_BY_UID = ver.joined(sa.select(_RECORDS), _RECORDS.c.uid).where(_RECORDS.c.uid == sa.bindparam("uid"))
# `metas`: records by uid, as Core rows (metadata only: no versions, nothing decrypted).
_BY_UIDS = sa.select(RecordRow.__table__).where(
    RecordRow.uid.in_(sa.bindparam("kt_uids", expanding=True)))
_METAS_CHUNK = 500   # uids per query: far under SQLite's and PostgreSQL's bound-parameter limits
# `prefetch`: records by uid or type, with their versions (expanding IN: one statement for any count).
_PREFETCH = (ver.joined(sa.select(_RECORDS), _RECORDS.c.uid)
             .where(sa.or_(_RECORDS.c.uid.in_(sa.bindparam("kt_uids", expanding=True)),
                           _RECORDS.c.type.in_(sa.bindparam("kt_types", expanding=True))))
             .order_by(_RECORDS.c.title_key, _RECORDS.c.uid))
# `_touch`: the record's ``updated_at`` bumped and the row returned (locked on PostgreSQL), with or
# without the highest version number of one field; built once, as it runs in every writing phase. A
# Core UPDATE with Core rows: the ORM's own UPDATE ... RETURNING goes through its bulk-update
# machinery, which cost more CPU than the rest of the phase's statements together.
_VERSIONS: sa.Table = SecretVersionRow.__table__  # type: ignore[assignment]
_TOUCH_BASE = (sa.update(_RECORDS).where(_RECORDS.c.uid == sa.bindparam("kt_uid"))
               .values(updated_at=sa.bindparam("kt_now")))
_TOUCH = _TOUCH_BASE.returning(*_RECORDS.c, sa.null().label("kt_top"))
_TOUCH_FIELD = _TOUCH_BASE.returning(*_RECORDS.c, sa.select(sa.func.max(_VERSIONS.c.version)).where(
    _VERSIONS.c.record_uid == _RECORDS.c.uid, _VERSIONS.c.field == sa.bindparam("kt_field"),
).scalar_subquery().label("kt_top"))


def _count_not_under(s: Session, key: MasterKey) -> int:
    """Records whose data key another master key than `key` wraps (a rekey's remaining work)."""
    return int(s.scalar(sa.select(sa.func.count()).select_from(RecordRow)
                        .where(RecordRow.key_id != key.key_id)) or 0)


def _read_once(s: Session) -> None:
    """Outside a unit of work: give this call's session the unit's read caches, so `_row` reads a
    record by uid with its versions in one query and the call's reads of them send none (the session
    ends with the call; inside a unit the unit's caches are already there)."""
    if ROWS_KEPT not in s.info:
        s.info[ROWS_KEPT], s.info[ver.CURRENT_CACHE] = {}, {}


def _group(result: sa.Result[Any]) -> list[tuple[RecordValues, list[sa.Row[Any]]]]:
    """The rows of a `versions.joined` query as (record, its rows), in the order the records came."""
    out: dict[str, tuple[RecordValues, list[sa.Row[Any]]]] = {}
    for r in result:
        got = out.get(r[0])
        if got is None:
            got = out[r[0]] = (RecordValues(*r[:_WIDTH]), [])
        got[1].append(r)
    return list(out.values())


def _changeable(row: RecordData) -> RecordRow:
    """`row` as the `RecordRow` a change is made to; a row read to be shown is never changed."""
    if not isinstance(row, RecordRow):
        raise TypeError(f"record {row.uid} was read as values; load it with `Vault._row` to change it")
    return row


def _no_such(ref: str) -> RecordNotFound:
    return RecordNotFound(f"no record with uid or title {shown(ref)} (see `keyturn record list`)")


def _not_found(s: Session, ref: str) -> RecordNotFound:
    """`RecordNotFound` for `ref`, naming up to three titles close to it (difflib), as `git` does."""
    import difflib

    titles: dict[str, str] = {}
    for title, key in s.execute(sa.select(RecordRow.title, RecordRow.title_key)):
        titles.setdefault(key, title)
    close = [titles[k] for k in difflib.get_close_matches(title_key(ref), titles, n=3, cutoff=0.75)]
    if not close:
        return _no_such(ref)
    names = " or ".join(", ".join(shown(t) for t in close).rsplit(", ", 1))
    return RecordNotFound(f"no record with uid or title {shown(ref)}; did you mean {names}?",
                          suggestions=close)


__all__ = ["NewRecord", "RecordSummary", "RekeyProgress", "Vault", "VaultStatus"]
