"""The vault: typed Keeper-shaped records and secret versions, encrypted by the barrier.

Layers: `storage` (SQLAlchemy, ciphertext only) → `barrier` (AES-256-GCM envelope, the only crypto)
→ `records` / `versions` → `Vault` (the API every other subsystem calls).
"""

from __future__ import annotations

from keyturn.vault.api import NewRecord, RecordSummary, RekeyProgress, Vault, VaultStatus
from keyturn.vault.records import Field, Record
from keyturn.vault.versions import VersionInfo, VersionState

__all__ = [
    "Field", "NewRecord", "Record", "RecordSummary", "RekeyProgress", "Vault", "VaultStatus", "VersionInfo",
    "VersionState",
]
