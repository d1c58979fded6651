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
* `hmac_value` gives a keyed HMAC-SHA256 (key derived from the master key with HKDF) for audit
  entries that must match a value without storing it.

Errors: a wrong/unknown master key → `VaultSealed`; a blob that fails authentication →
`DecryptionFailed` naming the record and field. Messages never contain key or secret material.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Iterable
from hashlib import sha256

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keyturn.errors import DecryptionFailed, VaultSealed
from keyturn.secret import Secret
from keyturn.vault.keys import MasterKey

NONCE_BYTES = 12
DATA_KEY_BYTES = 32
_WRAP_MAGIC = b"KW1"
_ENC_MAGIC = b"KE1"
_KEYCHECK_PLAINTEXT = b"keyturn keycheck v1"
_KEYCHECK_AD = b"keycheck"


def _ad(record_uid: str, field: str, version: int) -> bytes:
    # JSON array: unambiguous even if a uid or field name contains a separator character.
    return json.dumps(["keyturn-secret-v1", record_uid, field, version], separators=(",", ":")).encode()


def wrapped_key_id(blob: bytes) -> str:
    """The master key id in a wrapped data key's header (no decryption)."""
    if len(blob) < 3 + 8 or blob[:3] != _WRAP_MAGIC:
        raise DecryptionFailed("wrapped data key has no valid header")
    return blob[3:11].hex()


class Barrier:
    """Encrypts/decrypts with a primary master key; extra keys are accepted for unwrapping only.

    `primary` wraps every new data key. `others` (e.g. the old key during a `rekey`, or the new one
    while an interrupted rekey waits to be resumed) are used only to unwrap blobs whose header names
    them. Thread-safe: holds no mutable state.
    """

    def __init__(
        self, primary: MasterKey, others: Iterable[MasterKey] = (), *, hmac_key: MasterKey | None = None,
    ) -> None:
        self._primary = primary
        self._keys: dict[str, AESGCM] = {k.key_id: AESGCM(k.material) for k in (*others, primary)}
        # The HMAC key follows the vault's committed master key (the old one while a rekey runs).
        self._hmac_master = hmac_key or primary
        self._hmac_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"keyturn audit hmac v1",
        ).derive(self._hmac_master.material)

    @property
    def hmac_master(self) -> MasterKey:
        return self._hmac_master

    @property
    def key_id(self) -> str:
        return self._primary.key_id

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._keys)

    # --- key check -------------------------------------------------------------------------------

    def make_keycheck(self) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._keys[self.key_id].encrypt(nonce, _KEYCHECK_PLAINTEXT, _KEYCHECK_AD)

    @staticmethod
    def verify_keycheck(key: MasterKey, blob: bytes) -> bool:
        """True when `blob` (from `make_keycheck`) was made with `key`."""
        try:
            plain = AESGCM(key.material).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _KEYCHECK_AD)
        except (InvalidTag, ValueError):
            return False
        return hmac.compare_digest(plain, _KEYCHECK_PLAINTEXT)

    # --- data keys -------------------------------------------------------------------------------

    def new_data_key(self, record_uid: str) -> bytes:
        """A fresh random data key for `record_uid`, returned already wrapped by the primary key."""
        return self.wrap(os.urandom(DATA_KEY_BYTES), record_uid)

    def wrap(self, data_key: bytes, record_uid: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        ad = b"wrap|" + record_uid.encode()
        return _WRAP_MAGIC + bytes.fromhex(self.key_id) + nonce + self._keys[self.key_id].encrypt(
            nonce, data_key, ad
        )

    def unwrap(self, blob: bytes, record_uid: str) -> bytes:
        kid = wrapped_key_id(blob)
        aead = self._keys.get(kid)
        if aead is None:
            raise VaultSealed(
                f"vault is sealed: record {record_uid} is wrapped by master key {kid}, which is not loaded"
            )
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

        The key is derived from the primary master key, so values hashed before a `rekey` do not
        match values hashed after it.
        """
        if isinstance(value, Secret):
            data = value.reveal().encode()
        elif isinstance(value, str):
            data = value.encode()
        else:
            data = value
        return hmac.new(self._hmac_key, data, sha256).hexdigest()
