"""One IOS XE device of a lab: its model, fault switches, `DeviceProfile` and listeners.

`LabDevice.build(entry, profile, faults)` creates the device from a planned state-file entry (users,
admin, enable secret, the profile's configuration lines) and saves it; `start(...)` opens its RESTCONF
and SSH listeners with the profile's certificate, SSH algorithms and latencies and records what a
client pins (certificate and host-key fingerprints) in `entry.profile`; `set_profile(changes)` changes
switches at run time (the configuration lines in running *and* startup config, as if configured and
saved; `cert` and `ssh_profile` only at start).

Trust material is shared per lab (`LabKeys`): key generation is the slow part of starting 1,000
devices, so one ed25519 and one RSA SSH host key and one RSA key for IOS self-signed certificates serve
every device; each device still gets its own certificate (and so its own fingerprint).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keyturn.errors import SimulatorError
from keyturn.sim.client import IosXeEntry
from keyturn.sim.faults import Faults
from keyturn.sim.iosxe_device import DeviceConfig, IosXeDevice
from keyturn.sim.iosxe_profile import START_TIME_ONLY, DeviceProfile
from keyturn.sim.restconf_errors import ErrorsShape
from keyturn.sim.tls import (
    IOS_SELF_SIGNED_CN,
    SimCA,
    der_fingerprint,
    ios_self_signed_context,
    rsa_key,
    self_signed_context_and_der,
)

if TYPE_CHECKING:
    from asyncssh import SSHKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    from keyturn.sim.iosxe_restconf import RestconfFrontend
    from keyturn.sim.iosxe_ssh import SshFrontend


@dataclass
class LabKeys:
    """Trust material shared by a lab's devices; RSA keys are made on first use."""

    ca: SimCA
    ca_dir: Path
    seed: int | None = None
    _ssh: dict[str, SSHKey] = field(default_factory=dict)
    _tls_rsa: RSAPrivateKey | None = None

    def ssh_host_key(self, profile: str) -> SSHKey:
        kind = "default" if profile == "default" else "rsa"
        if kind not in self._ssh:
            from keyturn.sim.iosxe_ssh import generate_host_key

            self._ssh[kind] = generate_host_key("default" if kind == "default" else "ios-17")
        return self._ssh[kind]

    def tls_rsa(self) -> RSAPrivateKey:
        if self._tls_rsa is None:
            self._tls_rsa = rsa_key()
        return self._tls_rsa

    def cert_number(self, name: str) -> int:
        """The `<n>` of `TP-self-signed-<n>`: stable for a seeded lab, 10 digits like a real one."""
        return random.Random(f"{self.seed}/{name}/cert").randrange(10**9, 2**32)


@dataclass
class ListenOptions:
    host: str = "127.0.0.1"
    restconf: bool = True
    ssh: bool = True
    errors_shape: ErrorsShape = "ietf"


def _on_config(device: IosXeDevice, config: DeviceConfig, change: Callable[[IosXeDevice], None]) -> None:
    """Run `change` against another configuration of `device` (startup, the lab's initial copy)."""
    running, count = device.running, device.change_count
    device.running = config
    try:
        change(device)
    finally:
        device.running, device.change_count = running, count


@dataclass
class LabDevice:
    entry: IosXeEntry
    device: IosXeDevice
    faults: Faults
    initial: DeviceConfig
    profile: DeviceProfile = field(default_factory=DeviceProfile)
    restconf: RestconfFrontend | None = None
    ssh: SshFrontend | None = None

    @classmethod
    def build(cls, entry: IosXeEntry, profile: DeviceProfile, faults: Faults) -> LabDevice:
        """The device of a planned entry, configured by `profile` and saved (startup == running)."""
        device = IosXeDevice(entry.name)
        device.set_user(entry.admin.username, kind="secret", clear=entry.admin.password, privilege=15)
        for user in entry.users:
            encryption = user.encryption or ("7" if user.kind == "password" else "0")
            device.set_user(user.username, kind=user.kind, clear=user.password, privilege=user.privilege,
                            encryption=encryption)
        device.set_enable_secret(entry.enable_secret)
        lab_dev = cls(entry=entry, device=device, faults=faults, initial=device.running, profile=profile)
        lab_dev._configure(device)
        device.save()
        device.change_count = device.save_count = 0   # /stats counts what happens after start
        lab_dev.initial = copy.deepcopy(device.startup)
        lab_dev._record_profile()
        return lab_dev

    def _configure(self, device: IosXeDevice) -> None:
        """Apply the profile's configuration lines and device settings to `device.running`."""
        p = self.profile
        device.set_aaa(p.aaa_config())
        device.set_password_encryption(p.password_encryption)
        # The lab's TACACS+ server knows each device's admin, with the admin's initial password.
        device.tacacs.users = {self.entry.admin.username: self.entry.admin.password}
        device.tacacs.reachable = p.aaa != "tacacs-down"
        device.tacacs.timeout = p.tacacs_timeout
        device.omit_privilege_1 = p.omit_privilege_1
        device.sync_window = p.sync_window

    def _record_profile(self) -> None:
        fingerprints = {k: v for k, v in self.entry.profile.items()
                        if k in ("cert_fingerprint", "cert_subject", "ssh_host_key_fingerprint", "role")}
        self.entry.profile = {**self.profile.to_dict(), "tacacs_users": sorted(self.device.tacacs.users),
                              **fingerprints}

    # ---- listeners -------------------------------------------------------------------------------
    async def start(self, opts: ListenOptions, keys: LabKeys) -> None:
        entry, p = self.entry, self.profile
        requested_restconf, requested_ssh = entry.restconf_port or 0, entry.ssh_port or 0
        if opts.restconf:
            from keyturn.sim.iosxe_restconf import RestconfFrontend

            ctx, der = self._tls(opts, keys)
            entry.profile["cert_fingerprint"] = der_fingerprint(der)
            self.restconf = RestconfFrontend(self.device, self.faults, errors_shape=opts.errors_shape,
                                             save_delay=p.save_delay, request_latency=p.latency.restconf)
            entry.restconf_port = await self.restconf.start(opts.host, requested_restconf, ctx)
        else:
            entry.restconf_port = None
        if opts.ssh:
            from keyturn.sim.iosxe_ssh import SshFrontend

            host_key = keys.ssh_host_key(p.ssh_profile)
            self.ssh = SshFrontend(self.device, self.faults, host_key=host_key, profile=p.ssh_profile)
            self.ssh.login_latency, self.ssh.write_latency = p.latency.ssh_login, p.latency.write_memory
            entry.profile["ssh_host_key_fingerprint"] = host_key.get_fingerprint("sha256")
            entry.ssh_port = await self.ssh.start(opts.host, requested_ssh)
        else:
            entry.ssh_port = None

    def _tls(self, opts: ListenOptions, keys: LabKeys) -> tuple[Any, bytes]:
        entry = self.entry
        if self.profile.cert == "ios-self-signed":
            number = keys.cert_number(entry.name)
            entry.profile["cert_subject"] = "CN=" + IOS_SELF_SIGNED_CN.format(number=number)
            return ios_self_signed_context(number, keys.tls_rsa())
        hosts = ("127.0.0.1", "localhost", entry.name, *({opts.host} - {"127.0.0.1", "localhost"}))
        if self.profile.cert == "self-signed":
            ctx, own_ca, der = self_signed_context_and_der(*hosts)
            entry.ca_cert = str(own_ca.write_ca(keys.ca_dir / f"{entry.name}-ca.pem"))
            return ctx, der
        return keys.ca.server_context_and_der(*hosts)

    async def stop(self) -> list[Any]:
        """The listeners' stop coroutines (the lab awaits them together)."""
        closers: list[Any] = []
        if self.restconf is not None:
            closers.append(self.restconf.stop())
            self.restconf = None
        if self.ssh is not None:
            closers.append(self.ssh.stop())
            self.ssh = None
        return closers

    # ---- run-time changes ------------------------------------------------------------------------
    def preview(self, changes: dict[str, Any], *, seed_key: str) -> DeviceProfile:
        """The profile `changes` would give, without applying it; `SimulatorError` if it cannot be."""
        new = self.profile.updated(changes, seed_key=seed_key)
        fixed = sorted(n for n in START_TIME_ONLY if getattr(new, n) != getattr(self.profile, n))
        if fixed:
            raise SimulatorError(f"{', '.join(fixed)}: start-time switch(es); restart the lab to change them")
        return new

    def set_profile(self, changes: dict[str, Any], *, seed_key: str) -> DeviceProfile:
        """Change switches now; the configuration lines go to running, startup and the lab's initial
        copy (as if configured and saved). Raises `SimulatorError` for a bad switch or a start-time one."""
        new = self.preview(changes, seed_key=seed_key)
        self.profile = new
        self._configure(self.device)
        _on_config(self.device, self.device.startup, self._configure)
        _on_config(self.device, self.initial, self._configure)
        if self.restconf is not None:
            self.restconf.save_delay, self.restconf.request_latency = new.save_delay, new.latency.restconf
        if self.ssh is not None:
            self.ssh.login_latency, self.ssh.write_latency = new.latency.ssh_login, new.latency.write_memory
        self._record_profile()
        return new

    def reset(self) -> None:
        """Back to the initial configuration (with the current profile), no locks, zero counters."""
        d = self.device
        d.running = copy.deepcopy(self.initial)
        d.startup = copy.deepcopy(self.initial)
        d.change_count = d.save_count = d.reboot_count = d.last_auth_failures = 0
        d.guard.reload()
        d.guard.reset_stats()
