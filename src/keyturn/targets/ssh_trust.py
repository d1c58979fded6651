"""SSH host key trust for the IOS XE SSH targets: no credential goes to an SSH peer keyturn has no trust for.

Trust comes from the resource record only (an admin changes records; a rotation profile cannot set it):

* ``host_key_fingerprint`` = ``SHA256:...`` as ``ssh-keygen -l`` prints it (`keyturn device trust
  RECORD` shows and stores it) → exactly that key;
* ``ssh_known_hosts`` = path of an OpenSSH known_hosts file → asyncssh checks the key against it;
* ``ssh_host_key=tofu`` → trust on first use, remembered **in the vault**: the first time, the key is
  read by a key exchange alone (no user name, no credential), handed to the engine's `HostKeyRecorder`,
  which stores it on the resource (audited ``device.trust``, actor ``tofu``), and from then on it is a
  pin like any other — a different key later is refused as changed;
* ``ssh_host_key=accept-any`` → no checking at all (labs and simulators only; a warning per connection).

Anything else is refused. asyncssh validates the host key during the key exchange, before any
authentication starts, so a refused peer has received nothing: `HostKeyNotTrusted` names the command
that establishes trust, `HostKeyChanged` the pinned and the presented fingerprints and how to accept
the new key. A pin or known_hosts file always wins over ``ssh_host_key`` (a stale ``accept-any`` next
to a pin cannot switch the pin off).
"""

from __future__ import annotations

import hmac
import logging
import shlex
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncssh

from keyturn.errors import HostKeyChanged, HostKeyNotTrusted, ProfileError
from keyturn.targets.base import Endpoint

log = logging.getLogger("keyturn.targets.ssh_trust")

PIN_FIELD = "host_key_fingerprint"
KNOWN_HOSTS_FIELD = "ssh_known_hosts"
MODE_FIELD = "ssh_host_key"
TOFU = "tofu"
ACCEPT_ANY = "accept-any"
MODES = (TOFU, ACCEPT_ANY)

#: ``(resource uid, "host:port", fingerprint seen) → fingerprint pinned on the resource afterwards``:
#: the one seen when none was pinned (now stored in the vault), else the one already there. Given to
#: the SSH targets by the engine (`engine.rotate.TargetPool`); the targets never write to the vault.
HostKeyRecorder = Callable[[str, str, str], Awaitable[str]]

#: Reads the host key `host:port` presents by a key exchange alone → its ``SHA256:...`` fingerprint.
KeyReader = Callable[[], Awaitable[str]]


def trust_command(endpoint: Endpoint, *, replace: bool = False) -> str:
    """The command that shows the device's host key and pins it on the resource record."""
    ref = endpoint.resource_title or endpoint.resource_uid or "RECORD"
    return f"keyturn device trust {shlex.quote(ref)}" + (" --replace" if replace else "")


class HostKeyCheck(asyncssh.SSHClient):
    """Accepts exactly the `pinned` fingerprint (None: no key) and keeps the one presented."""

    def __init__(self, pinned: str | None) -> None:
        self.pinned = pinned
        self.presented: str | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.presented = str(key.get_fingerprint("sha256"))
        return self.pinned is not None and hmac.compare_digest(self.presented, self.pinned)


@dataclass(frozen=True)
class HostKeyTrust:
    """How one connection checks the host key: `options` for `asyncssh.connect`, and what a refusal means."""

    options: dict[str, Any]
    check: HostKeyCheck | None = None
    known_hosts: str | None = None

    def refused(self, endpoint: Endpoint, where: str, *, target: str,
                record: str | None) -> HostKeyNotTrusted:
        """The error for a host key asyncssh refused (`asyncssh.HostKeyNotVerifiable`)."""
        presented = self.check.presented if self.check is not None else None
        pinned = self.check.pinned if self.check is not None else None
        resource = f" of {endpoint.resource_title!r}" if endpoint.resource_title else ""
        if pinned is not None and presented is not None:
            log.error("SSH host key of %s CHANGED: pinned %s, presented %s; refused, nothing sent",
                      where, pinned, presented)
            return HostKeyChanged(
                f"{where}: the SSH host key{resource} CHANGED since it was pinned (pinned {pinned}, the "
                f"server presents {presented}): a replaced key, or someone in the path; refused before "
                f"any credential was sent. Check the key on the device, then accept it with "
                f"`{trust_command(endpoint, replace=True)}`",
                pinned=pinned, presented=presented, target=target, record=record)
        if self.known_hosts is not None:
            return HostKeyNotTrusted(
                f"{where}: the SSH host key is not trusted by the known_hosts file {self.known_hosts} "
                "(resource option ssh_known_hosts); refused before any credential was sent",
                target=target, record=record)
        shown = f" (it presents {presented})" if presented else ""
        return HostKeyNotTrusted(
            f"{where}: no trust for this SSH server's host key{shown}; refused before any credential was "
            f"sent. Run `{trust_command(endpoint)}` to check the key and pin it on the resource record "
            "(or set ssh_known_hosts there; ssh_host_key=tofu stores the first key seen)",
            presented=presented, target=target, record=record)


def host_key_mode(options: Mapping[str, str]) -> str | None:
    """The resource's ``ssh_host_key`` option (None when unset); `ProfileError` for an unknown value."""
    raw = options.get(MODE_FIELD)
    mode = raw.strip().lower() if raw is not None else ""
    if not mode:
        return None
    if mode not in MODES:
        raise ProfileError(f"resource option {MODE_FIELD} must be one of {', '.join(MODES)} (or unset: "
                           f"only a pinned {PIN_FIELD} or ssh_known_hosts is trusted), not {raw!r}")
    return mode


class HostKeyTrustStore:
    """Per SSH target: turns an endpoint's trust options into a `HostKeyTrust` for one connection.

    With ``ssh_host_key=tofu`` and nothing pinned yet, `recorder` stores the first key seen; the pin it
    answers is kept here per resource, so the other connections of the rotation (the record they were
    built from still shows no pin) do not repeat the key exchange. That memory only mirrors the vault:
    a pin on the record always takes precedence.
    """

    def __init__(self, recorder: HostKeyRecorder | None = None) -> None:
        self.recorder = recorder
        self._stored: dict[tuple[str, str], str] = {}

    async def trust(self, endpoint: Endpoint, where: str, read_key: KeyReader, *, target: str,
                    record: str | None) -> HostKeyTrust:
        opts = endpoint.options
        mode = host_key_mode(opts)
        known_hosts = (opts.get(KNOWN_HOSTS_FIELD) or "").strip()
        if known_hosts:
            return HostKeyTrust({"known_hosts": known_hosts}, known_hosts=known_hosts)
        pinned = (opts.get(PIN_FIELD) or "").strip() or None
        if pinned is None and mode == ACCEPT_ANY:
            log.warning("SSH host key checking is OFF for %s (resource option ssh_host_key=accept-any): "
                        "any server answering there receives the credentials; for labs only", where)
            return HostKeyTrust({"known_hosts": None})
        if pinned is None and mode == TOFU:
            pinned = await self._first_use(endpoint, where, read_key, target=target, record=record)
        check = HostKeyCheck(pinned)
        # An empty trusted list makes asyncssh ask the client object about every key.
        return HostKeyTrust({"known_hosts": ([], [], []), "client_factory": lambda: check}, check)

    async def _first_use(self, endpoint: Endpoint, where: str, read_key: KeyReader, *, target: str,
                         record: str | None) -> str:
        uid = endpoint.resource_uid
        if self.recorder is None or uid is None:
            raise HostKeyNotTrusted(
                f"{where}: ssh_host_key=tofu, but nothing here can store the first key seen in the vault "
                f"(no resource record or no recorder); refused before any credential was sent. Run "
                f"`{trust_command(endpoint)}` to pin the key", target=target, record=record)
        stored = self._stored.get((uid, where))
        if stored is not None:
            return stored
        seen = await read_key()   # a key exchange only: nothing is sent before the key is in the vault
        stored = await self.recorder(uid, where, seen)
        if not hmac.compare_digest(stored, seen):
            check = HostKeyCheck(stored)
            check.presented = seen
            raise HostKeyTrust({}, check).refused(endpoint, where, target=target, record=record)
        log.info("SSH host key of %s is %s (ssh_host_key=tofu, pinned on the resource)", where, stored)
        self._stored[(uid, where)] = stored
        return stored
