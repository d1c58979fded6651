"""Trust on first use, remembered in the vault: the first SSH host key seen for a resource that opted in.

A resource record with ``ssh_host_key=tofu`` and no ``host_key_fingerprint`` gets the key its device
presented at first contact stored as that pin — before any credential is sent to the device — audited
as ``device.trust`` with actor ``tofu`` (the same entry `keyturn device trust` writes). From then on it
is a pin like one a person set: a different key is refused as changed, and only `keyturn device trust
RECORD --replace` accepts it. The SSH targets never write to the vault; the engine's `TargetPool`
gives them this recorder (`keyturn.targets.ssh_trust.HostKeyRecorder`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from keyturn.errors import HostKeyNotTrusted

log = logging.getLogger("keyturn.engine.hostkeys")

PIN_FIELD = "host_key_fingerprint"
MODE_FIELD = "ssh_host_key"
ACTOR = "tofu"


class HostKeyPins:
    """`HostKeyRecorder` over a vault: ``await pins(resource_uid, "host:port", "SHA256:...")`` → the pin.

    `run` runs a synchronous vault call off the event loop (`RotationEngine.db`). Reading the record,
    storing the pin and the audit entry are one transaction; a pin already there (a concurrent first
    contact, or a person's) is returned unchanged, never overwritten. `HostKeyNotTrusted` when the
    record no longer opts in (an admin removed ``ssh_host_key=tofu`` meanwhile).
    """

    def __init__(self, vault: Any, run: Callable[[Callable[[], str]], Awaitable[str]]) -> None:
        self._vault = vault
        self._run = run

    async def __call__(self, resource_uid: str, where: str, fingerprint: str) -> str:
        return await self._run(lambda: self._pin(resource_uid, where, fingerprint))

    def _pin(self, resource_uid: str, where: str, fingerprint: str) -> str:
        from keyturn.vault import Field

        vault = self._vault
        with vault.unit():
            lock = getattr(vault, "lock_record", None)
            if lock is not None:  # PostgreSQL: read, then write, under the record's lock
                lock(resource_uid)
            record = vault.get(resource_uid)
            if str(record.custom_value(MODE_FIELD) or "").strip().lower() != "tofu":
                raise HostKeyNotTrusted(f"{where}: resource {record.title!r} no longer says "
                                        "ssh_host_key=tofu; nothing was sent")
            current = str(record.custom_value(PIN_FIELD) or "").strip()
            if current:
                return current
            custom = [f for f in record.custom if (f.label or "").casefold() != PIN_FIELD]
            custom.append(Field("text", PIN_FIELD, [fingerprint]))
            vault.update(record.uid, custom=custom, actor=ACTOR)
            vault.audit.append("device.trust", actor=ACTOR, record_uid=record.uid, details={
                "host": where, PIN_FIELD: {"old": None, "new": fingerprint}, "replaced": False,
                "first_use": True})
        log.warning("trusted the SSH host key of %s on first use (%s) and pinned it on %r", where,
                    fingerprint, record.title)
        return fingerprint
