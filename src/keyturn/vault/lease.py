"""The rekey lease: at most one `keyturn vault rekey` at a time, across processes and hosts.

A row in the meta table (``rekey_lease``) names its holder (a random token, host, pid) and an expiry.
It follows the account locks of `keyturn.engine.locks` and shares their holder rule
(`keyturn.holders`): taken in a write transaction, renewed after every batch, and *stale* — free to take
over — when its lease has expired or its holder was a process on this host that no longer exists (a killed
rekey resumes from where it stopped, since every rewrapped row records its key).

The lease keeps rekeys apart; it does not stop ordinary writers. They stay correct during and after a
rekey because every write that wraps a data key checks the vault's current key id in its own
transaction (`Vault._check_wrap_key`).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from keyturn.errors import RekeyLocked
from keyturn.holders import HOST, holder_gone
from keyturn.vault.storage import MetaRow, Storage

LEASE_KEY = "rekey_lease"
DEFAULT_LEASE = 300.0  # seconds; one batch of rewraps takes well under a second


@dataclass(frozen=True)
class LeaseInfo:
    owner: str
    host: str
    pid: int
    expires_at: float


def _parse(value: str) -> LeaseInfo:
    try:
        d = json.loads(value)
        return LeaseInfo(str(d["owner"]), str(d["host"]), int(d["pid"]), float(d["expires_at"]))
    except (ValueError, TypeError, KeyError):
        return LeaseInfo("", "", 0, 0.0)  # unreadable: treated as expired


class RekeyLease:
    """One holder's handle on the rekey lease (`acquire`, `renew` per batch, `release`)."""

    def __init__(self, storage: Storage, *, lease: float = DEFAULT_LEASE,
                 clock: Callable[[], float] = time.time) -> None:
        self._storage = storage
        self.lease = lease
        self._clock = clock
        self.owner = secrets.token_hex(8)

    def is_stale(self, info: LeaseInfo) -> bool:
        return holder_gone(host=info.host, pid=info.pid, expires_at=info.expires_at, now=self._clock())

    def _value(self) -> str:
        return json.dumps({"owner": self.owner, "host": HOST, "pid": os.getpid(),
                           "expires_at": self._clock() + self.lease})

    def acquire(self) -> None:
        """Take the lease; `RekeyLocked` naming the holder when another live rekey has it."""
        with self._storage.session(write=True) as s:
            self._storage.serialize(s)
            row = s.get(MetaRow, LEASE_KEY)
            if row is None:
                s.add(MetaRow(key=LEASE_KEY, value=self._value()))
                return
            info = _parse(row.value)
            if info.owner != self.owner and not self.is_stale(info):
                until = datetime.fromtimestamp(info.expires_at, UTC).isoformat(timespec="seconds")
                raise RekeyLocked(
                    f"another `keyturn vault rekey` is running (pid {info.pid} on {info.host}, lease until "
                    f"{until}); wait for it to finish (run this again afterwards to resume or check)"
                )
            row.value = self._value()

    def renew(self) -> None:
        """Extend the lease; `RekeyLocked` when it was taken over (this rekey must stop)."""
        with self._storage.session(write=True) as s:
            row = s.get(MetaRow, LEASE_KEY)
            if row is None or _parse(row.value).owner != self.owner:
                raise RekeyLocked("this rekey lost its lease to another `keyturn vault rekey` (it stalled "
                                  "past the lease); it stopped, and the other one carries on")
            row.value = self._value()

    def release(self) -> None:
        """Drop the lease if this holder still has it (idempotent)."""
        with self._storage.session(write=True) as s:
            row = s.get(MetaRow, LEASE_KEY)
            if row is not None and _parse(row.value).owner == self.owner:
                s.delete(row)


__all__ = ["DEFAULT_LEASE", "LEASE_KEY", "LeaseInfo", "RekeyLease"]
