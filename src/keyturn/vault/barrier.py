"""The barrier: the only keyturn module that encrypts (and the only one importing `cryptography`).

Envelope scheme:

* Each record has its own random 32-byte **data key**. It is stored *wrapped*: AES-256-GCM under
  the master key with its own 12-byte nonce, associated data ``wrap|<record uid>`` (a wrapped key
  cannot be moved to another record). Layout: ``b"KW1" | key id (8 bytes) | nonce | ciphertext+tag``;
  the key-id header says which master key wraps it, so `rekey` can rewrap data keys one row at a
  time while both keys are loaded, without touching record data.
* Each secret value is encrypted with the record's data key, AES-256-GCM, a fresh 12-byte nonce per
  encryption, associated data = record uid + field + version (a blob cannot be swapped to another
  record, field or version, nor replayed as an older version). Layout: ``b"KE1" | nonce | ct+tag``.
* A **key-check value** (a GCM encryption of a constant with AD ``keycheck``) lets `open` tell a
  wrong master key from a damaged blob before anything is read or written.
* An **integrity key** (32 random bytes, made once per vault) is stored wrapped like a data key
  (AD ``integrity|v1``) and rewrapped by `rekey`, so everything derived from it survives a master-key
  rotation. HKDF-SHA256 derives three keys from it, one per purpose:

  - ``record mac``: `record_mac` is an HMAC-SHA256 over a record's uid, type, title, stored field lists
    (secret fields hold only slot names) and metadata, so a direct database write to a script
    attachment, a ``Shell`` field or a rotation profile is refused when the record is read.
    Secret values need no MAC: their AEAD already binds them to record, field and version.
  - ``audit chain``: `chain_mac` keys the audit hash chain (a database writer cannot rebuild it).
  - ``audit hmac``: `hmac_value`, for audit entries that must match a value without storing it.

  Why a stored key and not HKDF of the master key itself: a rekey would change every derived key,
  and re-MACing the audit chain would rewrite history (hashes already shipped to a SIEM would no
  longer match). The integrity key stays protected by whichever master key is current.
* The key-check value has a version: ``v2`` says the vault has an integrity key. Without the master
  key a database writer cannot forge a ``v1`` check, so it cannot pass a vault off as one from before
  integrity keys (whose first open seals every record and re-keys the chain).

Errors: a wrong/unknown master key → `VaultSealed`; a blob that fails authentication →
`DecryptionFailed` naming the record and field. Messages never contain key or secret material.

Cost: the purpose keys are derived once per `Barrier`; a record MAC is one HMAC-SHA256 over the row's
text, a few microseconds against the milliseconds of the database round trip that reads the row.
"""

from __future__ import annotations

import hmac
import json
import os
import threading
from collections.abc import Callable, Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keyturn.errors import DecryptionFailed, VaultSealed
from keyturn.secret import Secret
from keyturn.vault.keys import MasterKey

NONCE_BYTES = 12
DATA_KEY_BYTES = 32
INTEGRITY_KEY_BYTES = 32
_WRAP_MAGIC = b"KW1"
_ENC_MAGIC = b"KE1"
# Key-check plaintexts by version; v2 = "this vault has an integrity key" (see the module docstring).
_KEYCHECK_PLAINTEXTS = {b"keyturn keycheck v1": 1, b"keyturn keycheck v2": 2}
_KEYCHECK_CURRENT = b"keyturn keycheck v2"
_KEYCHECK_AD = b"keycheck"
_INTEGRITY_AD = b"integrity|v1"
# HKDF info labels, one per purpose; "audit hmac v1" is the label the pre-integrity-key vaults used.
_INFO_RECORD_MAC = b"keyturn record mac v1"
_INFO_CHAIN = b"keyturn audit chain v1"
_INFO_VALUE = b"keyturn audit hmac v1"

KeyLoader = Callable[[str], MasterKey | None]


def _ad(record_uid: str, field: str, version: int) -> bytes:
    # JSON array: unambiguous even if a uid or field name contains a separator character.
    return json.dumps(["keyturn-secret-v1", record_uid, field, version], separators=(",", ":")).encode()


def _hkdf(root: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(root)


def wrapped_key_id(blob: bytes) -> str:
    """The master key id in a wrapped data key's header (no decryption)."""
    if len(blob) < 3 + 8 or blob[:3] != _WRAP_MAGIC:
        raise DecryptionFailed("wrapped data key has no valid header")
    return blob[3:11].hex()


_TAGS_KEPT = 4096   # record tags a barrier remembers (`record_mac_matches`)


def record_mac_input(
    uid: str, type: str, title: str, fields_json: str, custom_json: str, meta_json: str,
) -> bytes:
    """The canonical bytes a record MAC covers: the stored text of every authenticated column."""
    return json.dumps(["keyturn-record-v1", uid, type, title, fields_json, custom_json, meta_json],
                      separators=(",", ":"), ensure_ascii=False).encode()


class Barrier:
    """Encrypts/decrypts with a primary master key; extra keys are accepted for unwrapping only.

    `primary` wraps every new data key. `others` (e.g. the old key during a `rekey`, or the new one
    while an interrupted rekey waits to be resumed) are used only to unwrap blobs whose header names
    them. `integrity` is the vault's integrity key (unwrapped); without one (a bare barrier, e.g. for
    a key check) it is derived from the primary key. `key_loader(key_id)` is asked for a master key
    that a blob names but that is not loaded (a rekey finished by another process); what it returns is
    used only if its id matches. Thread-safe: the key map only grows, under a lock.
    """

    def __init__(
        self, primary: MasterKey, others: Iterable[MasterKey] = (), *, integrity: bytes | None = None,
        key_loader: KeyLoader | None = None,
    ) -> None:
        self._primary = primary
        self._keys: dict[str, AESGCM] = {k.key_id: AESGCM(k.material) for k in (*others, primary)}
        self._loaded: dict[str, MasterKey] = {k.key_id: k for k in (*others, primary)}
        self._lock = threading.Lock()
        self._loader = key_loader
        if integrity is None:
            integrity = _hkdf(primary.material, b"keyturn integrity (bare barrier)")
        if len(integrity) != INTEGRITY_KEY_BYTES:
            raise VaultSealed("vault is sealed: the integrity key has the wrong length")
        self._integrity = integrity
        self._record_mac_key = _hkdf(integrity, _INFO_RECORD_MAC)
        # Record columns whose tag this barrier computed, with the tag: a row read again unchanged (a
        # rotation reads its resource and admin records in every phase) is checked without an HMAC.
        self._tags: dict[tuple[str, ...], str] = {}
        self._chain_key = _hkdf(integrity, _INFO_CHAIN)
        self._value_key = _hkdf(integrity, _INFO_VALUE)

    def with_primary(self, primary: MasterKey) -> Barrier:
        """The same keys and integrity key, wrapping new data keys with `primary`."""
        return Barrier(primary, self._loaded.values(), integrity=self._integrity, key_loader=self._loader)

    @property
    def key_id(self) -> str:
        return self._primary.key_id

    @property
    def primary(self) -> MasterKey:
        return self._primary

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def key(self, key_id: str) -> MasterKey | None:
        """A loaded master key by id (asking the loader when it is not loaded yet), else None."""
        try:
            self._aead(key_id, "")  # loads it when the loader can
        except VaultSealed:
            return None
        return self._loaded.get(key_id)

    def _aead(self, kid: str, record_uid: str) -> AESGCM:
        aead = self._keys.get(kid)
        if aead is not None:
            return aead
        with self._lock:
            if kid not in self._keys and self._loader is not None:
                key = self._loader(kid)
                if key is not None and key.key_id == kid:
                    self._keys[kid], self._loaded[kid] = AESGCM(key.material), key
            aead = self._keys.get(kid)
        if aead is None:
            what = f"record {record_uid} is" if record_uid else "the vault's keys are"
            raise VaultSealed(
                f"vault is sealed: {what} wrapped by master key {kid}, which is not loaded (a "
                "`keyturn vault rekey` changed it: restart with the new key)"
            )
        return aead

    # --- key check -------------------------------------------------------------------------------

    def make_keycheck(self) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._keys[self.key_id].encrypt(nonce, _KEYCHECK_CURRENT, _KEYCHECK_AD)

    @staticmethod
    def keycheck_version(key: MasterKey, blob: bytes) -> int | None:
        """The version of a key check made with `key` (1: before integrity keys, 2: with), or None
        when `key` did not make it."""
        try:
            plain = AESGCM(key.material).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _KEYCHECK_AD)
        except (InvalidTag, ValueError):
            return None
        return _KEYCHECK_PLAINTEXTS.get(plain)

    @staticmethod
    def verify_keycheck(key: MasterKey, blob: bytes) -> bool:
        """True when `blob` (from `make_keycheck`, any version) was made with `key`."""
        return Barrier.keycheck_version(key, blob) is not None

    # --- data keys -------------------------------------------------------------------------------

    def new_data_key(self, record_uid: str) -> bytes:
        """A fresh random data key for `record_uid`, returned already wrapped by the primary key."""
        return self.wrap(os.urandom(DATA_KEY_BYTES), record_uid)

    def _wrap(self, material: bytes, ad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return _WRAP_MAGIC + bytes.fromhex(self.key_id) + nonce + self._keys[self.key_id].encrypt(
            nonce, material, ad
        )

    def wrap(self, data_key: bytes, record_uid: str) -> bytes:
        return self._wrap(data_key, b"wrap|" + record_uid.encode())

    def unwrap(self, blob: bytes, record_uid: str) -> bytes:
        aead = self._aead(wrapped_key_id(blob), record_uid)
        body = blob[11:]
        try:
            return aead.decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], b"wrap|" + record_uid.encode())
        except (InvalidTag, ValueError) as exc:
            raise DecryptionFailed(
                f"data key of record {record_uid} failed authentication (corrupted or moved)",
                record_uid=record_uid, field=None,
            ) from exc

    def rewrap(self, blob: bytes, record_uid: str) -> bytes:
        """Unwrap with whichever loaded key wraps it and wrap again under the primary key."""
        return self.wrap(self.unwrap(blob, record_uid), record_uid)

    # --- integrity key ---------------------------------------------------------------------------

    @staticmethod
    def new_integrity_key() -> bytes:
        return os.urandom(INTEGRITY_KEY_BYTES)

    def wrap_integrity(self) -> bytes:
        """This barrier's integrity key, wrapped by the primary key (for the vault's meta table)."""
        return self._wrap(self._integrity, _INTEGRITY_AD)

    def unwrap_integrity(self, blob: bytes) -> bytes:
        """Unwrap a stored integrity key; `DecryptionFailed` when the blob was altered."""
        aead = self._aead(wrapped_key_id(blob), "")
        body = blob[11:]
        try:
            return aead.decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], _INTEGRITY_AD)
        except (InvalidTag, ValueError) as exc:
            raise DecryptionFailed("the vault's integrity key failed authentication (the database was "
                                   "altered); restore it from a backup") from exc

    def with_integrity(self, integrity: bytes) -> Barrier:
        return Barrier(self._primary, self._loaded.values(), integrity=integrity, key_loader=self._loader)

    def record_mac(
        self, uid: str, type: str, title: str, fields_json: str, custom_json: str, meta_json: str,
    ) -> str:
        """HMAC-SHA256 (hex) of a record's authenticated columns (see `record_mac_input`)."""
        data = record_mac_input(uid, type, title, fields_json, custom_json, meta_json)
        return hmac.digest(self._record_mac_key, data, "sha256").hex()   # one-shot: no HMAC object

    def record_mac_matches(
        self, mac: str, uid: str, type: str, title: str, fields_json: str, custom_json: str, meta_json: str,
    ) -> bool:
        """Whether `mac` is `record_mac` of these columns (compared in constant time). The tag of columns
        seen before is remembered (at most `_TAGS_KEPT` of them), not computed again."""
        columns = (uid, type, title, fields_json, custom_json, meta_json)
        expected = self._tags.get(columns)
        if expected is None:
            expected = self.record_mac(*columns)
            with self._lock:
                if len(self._tags) >= _TAGS_KEPT:
                    self._tags.pop(next(iter(self._tags)))    # the oldest
                self._tags[columns] = expected
        return hmac.compare_digest(mac, expected)

    def chain_mac(self, data: bytes) -> str:
        """HMAC-SHA256 (hex) for the audit chain: entry hashes and the chain head."""
        return hmac.digest(self._chain_key, data, "sha256").hex()

    # --- values ----------------------------------------------------------------------------------

    def encrypt(self, wrapped_key: bytes, record_uid: str, field: str, version: int, value: Secret) -> bytes:
        aead = AESGCM(self.unwrap(wrapped_key, record_uid))
        nonce = os.urandom(NONCE_BYTES)
        return _ENC_MAGIC + nonce + aead.encrypt(
            nonce, value.reveal().encode(), _ad(record_uid, field, version)
        )

    def decrypt(self, wrapped_key: bytes, record_uid: str, field: str, version: int, blob: bytes) -> Secret:
        aead = AESGCM(self.unwrap(wrapped_key, record_uid))
        what = f"record {record_uid} field {field!r} version {version}"
        if blob[:3] != _ENC_MAGIC or len(blob) < 3 + NONCE_BYTES + 16:
            raise DecryptionFailed(f"{what}: ciphertext is malformed", record_uid=record_uid, field=field)
        try:
            nonce, body = blob[3:3 + NONCE_BYTES], blob[3 + NONCE_BYTES:]
            plain = aead.decrypt(nonce, body, _ad(record_uid, field, version))
        except InvalidTag as exc:
            raise DecryptionFailed(
                f"{what}: ciphertext failed authentication (corrupted or swapped)",
                record_uid=record_uid, field=field,
            ) from exc
        return Secret(plain.decode())

    # --- matching without storing -----------------------------------------------------------------

    def hmac_value(self, value: Secret | str | bytes) -> str:
        """Keyed HMAC-SHA256 (hex) of a value, for audit entries that must match it without storing it.

        The key is derived from the vault's integrity key, so a value hashed before a `rekey` matches
        the same value hashed after it.
        """
        if isinstance(value, Secret):
            data = value.reveal().encode()
        elif isinstance(value, str):
            data = value.encode()
        else:
            data = value
        return hmac.digest(self._value_key, data, "sha256").hex()
