"""A simulator lab: many IOS XE devices and Meraki orgs in one process, one asyncio loop.

    plan = make_plan(iosxe=3, meraki_orgs=1, users_per_network=2, seed=7)
    async with Lab(plan, LabOptions(state_file=Path("lab.json"))) as lab:
        state = lab.state                 # what was written to lab.json (client.LabState)
        ...                               # talk to the devices, or to lab.control_url

What a lab holds (all on `options.host`, every port ephemeral unless the plan pins it):

* per IOS XE device (`lab_device.LabDevice`): one `IosXeDevice`, its `Faults` and `DeviceProfile`, a
  RESTCONF HTTPS listener (leaf from the lab CA with SANs 127.0.0.1, localhost and the device name; a
  one-off CA per device with `tls="self-signed"`; or stock IOS XE's SAN-less self-signed certificate
  with `cert=ios-self-signed`), an SSH listener (host keys shared by the whole lab);
* one Meraki Dashboard frontend serving every org, and the HTTPS CONNECT proxy in front of it;
* the control API (`control.py`).

Credentials (from `random.Random(seed)`, so a seeded lab is reproducible): every device has an admin
user (`admin`, privilege 15, `secret`) — the admin credential — an enable secret, and D users with
privilege 15 so RESTCONF self-service rotation works. User number 4, 8, ... of each device
(index % 4 == 3) is a type-7 `password` user, all others are `secret` users (type 9); the state file
says which (`kind`). Passwords are 16-24 printable ASCII characters without `?` and space (IOS treats
`?` as help and strips leading spaces). Every device is saved at start (startup == running), with the
secrets a rotation will read already hashed, as a real device hashes them when configured.

Profiles (`iosxe_profile.DeviceProfile`): the plan may give each device one (`profile="enterprise"`),
`LabOptions.profile` overrides switches lab-wide (the `keyturn sim lab` flags), the control API changes
them per device at run time; the state file records each device's effective profile and fingerprints.

`make_plan(profile="enterprise")` is a realistic network, in blocks of 20 devices (so 20 already hold
every role; `iosxe_profile.ENTERPRISE_MIX`):

    12  TACACS+ first (`group tacacs+ local`, max-fail 3, block-for 120/5/60), 4 of them with
        `service password-encryption`                                                           60 %
     2  TACACS+ unreachable (same lines; local users log in after the 2 s timeout)               10 %
     3  local AAA, legacy: users with type-5 secrets, `service password-encryption`, two on the
        `ios-legacy` SSH algorithm set (group14-sha1, ssh-rsa, hmac-sha1)                        15 %
     3  `aaa new-model` without exec authorization (privilege 15 lands in `>`, RESTCONF 401s:
        rotation needs SSH and the enable secret), max-fail 5                                   15 %

Every enterprise device omits `privilege 1`, serves `CN=IOS-Self-Signed-Certificate-<n>` without SAN
and has realistic latency drawn per device from the seed (RESTCONF 0.1-0.4 s, save-config 2.5-3.7 s,
SSH login 0.8-1.2 s, `write memory` 1-3 s, a 2-4 s re-sync window after CLI changes); `--latency 0`
makes it fast again. The TACACS+ server knows each device's `admin` with its initial password.

The state file is written atomically, mode 0600, only after every listener is up; a stale one is
removed first, so a process polling for it never reads a previous run's ports.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import logging
import os
import random
import shutil
import string
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from keyturn.errors import SimulatorError
from keyturn.sim.client import (
    IosXeEntry,
    IosXeUser,
    LabState,
    Login,
    MerakiEntry,
    MerakiIpsk,
    MerakiNetwork,
    MerakiOrg,
    MerakiSsid,
    MerakiUser,
)
from keyturn.sim.faults import Faults
from keyturn.sim.iosxe_device import Credential, DeviceConfig, DeviceRefused, compute_hashes
from keyturn.sim.iosxe_profile import DeviceProfile, enterprise_roles
from keyturn.sim.lab_device import LabDevice, LabKeys, ListenOptions
from keyturn.sim.restconf_errors import ErrorsShape
from keyturn.sim.tls import SimCA

if TYPE_CHECKING:  # front-ends are imported when used: `sim meraki` needs no SSH stack, and so on
    from keyturn.sim.control import ControlServer
    from keyturn.sim.meraki import MerakiFrontend
    from keyturn.sim.meraki_proxy import MerakiProxy
    from keyturn.sim.meraki_state import MerakiState

log = logging.getLogger(__name__)

STATE_VERSION = 1
# IOS reads `?` as a help request and strips leading spaces: keep both out of generated passwords.
PASSWORD_ALPHABET = "".join(c for c in string.printable[:94] if c != "?")
PASSWORD_LENGTH = (16, 24)
PASSWORD_USER_EVERY = 4          # user index % 4 == 3 is a type-7 `password` user
ADMIN_USERNAME = "admin"
_USER_STEMS = ("netops", "noc", "backup", "svc", "ops", "monitor", "audit", "deploy")
SSID_NUMBERS = 14                # SSID 0 stays the network's default; 1-14 can be configured
SSID_MODES = ("psk", "ipsk-without-radius", "8021x-radius", "open")
SSID_NAMES = {"psk": "Staff PSK", "ipsk-without-radius": "Devices iPSK", "8021x-radius": "Corp 802.1X",
              "open": "Guest open"}
_ORG_STEMS = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Tyrell")
_START_CONCURRENCY = 64
LabProfile = Literal["default", "enterprise"]
LAB_PROFILES: tuple[LabProfile, ...] = ("default", "enterprise")


def random_password(rng: random.Random) -> str:
    length = rng.randint(*PASSWORD_LENGTH)
    return "".join(rng.choice(PASSWORD_ALPHABET) for _ in range(length))


def make_plan(
    *,
    iosxe: int = 3,
    meraki_orgs: int = 1,
    networks_per_org: int = 1,
    users_per_network: int = 2,
    users_per_device: int = 2,
    seed: int | None = None,
    host: str = "127.0.0.1",
    profile: LabProfile = "default",
    ssids_per_network: int = 0,
) -> LabState:
    """Names, initial credentials and device profiles of a lab, deterministic for a given `seed` (ports
    still 0). `profile="enterprise"` gives the devices the realistic mix of the module docstring."""
    if min(iosxe, meraki_orgs, networks_per_org, users_per_network, users_per_device, ssids_per_network) < 0:
        raise SimulatorError("lab sizes must not be negative")
    if ssids_per_network > SSID_NUMBERS:
        raise SimulatorError(f"a Meraki network has {SSID_NUMBERS} configurable SSIDs (1-14), not "
                             f"{ssids_per_network}")
    if profile not in LAB_PROFILES:
        raise SimulatorError(f"unknown lab profile {profile!r}; known: {', '.join(LAB_PROFILES)}")
    rng = random.Random(seed)
    devices = []
    for i in range(1, iosxe + 1):
        stems = rng.sample(_USER_STEMS, k=min(len(_USER_STEMS), max(users_per_device, 1)))
        users = [
            IosXeUser(
                username=f"{stems[u % len(stems)]}{u + 1}",
                password=random_password(rng),
                privilege=15,
                kind="password" if u % PASSWORD_USER_EVERY == PASSWORD_USER_EVERY - 1 else "secret",
            )
            for u in range(users_per_device)
        ]
        devices.append(IosXeEntry(
            name=f"sw{i:04d}", host=host, restconf_port=0, ssh_port=0,
            admin=Login(ADMIN_USERNAME, random_password(rng)), enable_secret=random_password(rng),
            users=users,
        ))
    meraki = None
    ssid_rng = random.Random(f"{seed}/ssids")  # its own stream: names and passwords stay as without SSIDs
    if meraki_orgs:
        orgs = []
        for o in range(1, meraki_orgs + 1):
            org_name = f"{rng.choice(_ORG_STEMS)} {o}"
            slug = org_name.lower().replace(" ", "")
            networks = [
                MerakiNetwork(
                    id=f"N_{rng.randrange(10**17, 10**18)}", name=f"{org_name} net{n}",
                    users=[MerakiUser(email=f"vpn{u}.net{n}@{slug}.example.com", name=f"VPN user {u}",
                                      password=random_password(rng))
                           for u in range(1, users_per_network + 1)],
                    ssids=lab_ssids(ssids_per_network, ssid_rng),
                )
                for n in range(1, networks_per_org + 1)
            ]
            orgs.append(MerakiOrg(id=str(rng.randrange(10**5, 10**6) * 1000 + o), name=org_name,
                                  networks=networks))
        meraki = MerakiEntry(base_url="", proxy_url=None, api_key="", orgs=orgs)
    if profile == "enterprise":
        _enterprise(devices, seed)
    return LabState(control_url="", ca_cert="", iosxe=devices, meraki=meraki,
                    extra={"seed": seed, "profile": profile})


def lab_ssids(count: int, rng: random.Random) -> list[MerakiSsid]:
    """SSIDs 1..`count` of a lab network, their auth modes in turn: PSK, identity PSK (one iPSK
    ``kiosk``, group policy 101), 802.1X with RADIUS, open — every case the wireless targets meet."""
    out = []
    for number in range(1, count + 1):
        mode = SSID_MODES[(number - 1) % len(SSID_MODES)]
        ssid = MerakiSsid(number=number, name=f"{SSID_NAMES[mode]} {number}", auth_mode=mode)
        if mode == "psk":
            ssid.psk = random_password(rng)           # 16-24 printable characters: a valid WPA passphrase
        elif mode == "ipsk-without-radius":
            ssid.ipsks = [MerakiIpsk("kiosk", "101", random_password(rng))]
        out.append(ssid)
    return out


def _enterprise(devices: list[IosXeEntry], seed: int | None) -> None:
    # Drawn from their own seeded streams, so names and passwords equal the default plan's.
    for entry, role in zip(devices, enterprise_roles(len(devices), seed), strict=True):
        profile = DeviceProfile().updated(role.changes, seed_key=f"{seed}/{entry.name}")
        entry.profile = {**profile.to_dict(), "role": role.name}
        if role.type5_users:
            for user in entry.users:
                if user.kind == "secret":
                    user.encryption = "5"


def raise_nofile_limit() -> int:
    """Raise the soft open-files limit to the hard limit (1,000 devices need ~2,000 listeners)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if want > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            return soft
        return want
    return soft


def _same_credential(a: Credential | None, b: Credential | None) -> bool:
    if a is None or b is None:
        return a is b
    if (a.kind, a.encryption) != (b.kind, b.encryption):
        return False
    # Hashes are computed lazily with a fresh salt per copy, so two copies of one secret may show
    # different $9$ strings: compare clear values where known, else check one against the other.
    if a._clear is not None and b._clear is not None:
        return a._clear == b._clear
    if a._clear is not None:
        return b.matches(a._clear)
    if b._clear is not None:
        return a.matches(b._clear)
    return a.stored == b.stored


def same_config(a: DeviceConfig, b: DeviceConfig) -> bool:
    """True if two configurations hold the same users, privileges and credentials (hashing rarely)."""
    if a.hostname != b.hostname or a.users.keys() != b.users.keys():
        return False
    if (a.aaa, a.password_encryption) != (b.aaa, b.password_encryption):
        return False
    if not _same_credential(a.enable_secret, b.enable_secret):
        return False
    for name, ua in a.users.items():
        ub = b.users[name]
        if (ua.privilege, ua.view) != (ub.privilege, ub.view) or not _same_credential(ua.credential,
                                                                                      ub.credential):
            return False
    return True


@dataclass(frozen=True)
class LabOptions:
    """How to run a plan. `state_file`/`ca_cert` None: CA in a private temp dir, no state file.

    `profile` overrides device profile switches lab-wide (after the plan's own); `tls="self-signed"`
    and `save_delay` are older spellings of the `cert` and `save_delay` switches (None: the profile's).
    """

    host: str = "127.0.0.1"
    ssh: bool = True
    restconf: bool = True
    tls: Literal["lab-ca", "self-signed"] = "lab-ca"
    faults: Mapping[str, Any] = field(default_factory=dict)
    state_file: Path | None = None
    ca_cert: Path | None = None
    control_port: int = 0
    meraki_port: int = 0
    proxy_port: int = 0
    proxy: bool = True
    errors_shape: ErrorsShape = "ietf"
    save_delay: float | None = None
    profile: Mapping[str, Any] = field(default_factory=dict)
    meraki_rate_per_org: float = 10.0
    meraki_burst: int = 10
    meraki_rate_per_ip: float = 100.0
    meraki_key_propagation: float = 0.0   # seconds a new API key answers 401 (`sim/meraki_identities`)


class Lab:
    """Builds and runs a plan; also the operations behind the control API (all synchronous, loop-safe)."""

    def __init__(self, plan: LabState, options: LabOptions | None = None) -> None:
        self.plan = plan
        self.options = options or LabOptions()
        self.seed: int | None = plan.extra.get("seed")
        self.devices: dict[str, LabDevice] = {}
        self.meraki: MerakiState | None = None
        self.state: LabState | None = None
        self.control_url = ""
        self.startup_seconds = 0.0
        self._ca: SimCA | None = None
        self._tmpdir: str | None = None
        self._meraki_frontend: MerakiFrontend | None = None
        self._proxy: MerakiProxy | None = None
        self._control: ControlServer | None = None
        self._org_ids: set[str] = set()
        self._network_ids: set[str] = set()
        self._gc_frozen = False

    async def __aenter__(self) -> Lab:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- start / stop ----------------------------------------------------------------------------
    async def start(self) -> LabState:
        """Start every listener, then write the state file; on failure stop what was started."""
        from keyturn.sim.control import ControlServer  # aiohttp, only once a lab starts

        began = time.monotonic()
        opts = self.options
        if opts.state_file is not None:
            opts.state_file.unlink(missing_ok=True)
        raise_nofile_limit()
        try:
            self._ca = SimCA.create()
            ca_path = self._ca_path()
            self._ca.write_ca(ca_path)
            keys = LabKeys(ca=self._ca, ca_dir=ca_path.parent, seed=self.seed)
            for index, planned in enumerate(self.plan.iosxe):   # built in plan order, then listening
                self._build_device(index, planned)
            sem = asyncio.Semaphore(_START_CONCURRENCY)
            listen = ListenOptions(host=opts.host, restconf=opts.restconf, ssh=opts.ssh,
                                   errors_shape=opts.errors_shape)

            async def start_one(dev: LabDevice) -> None:
                async with sem:
                    await dev.start(listen, keys)

            await asyncio.gather(self._compute_hashes(), *(start_one(d) for d in self.devices.values()))
            meraki = await self._start_meraki() if self.plan.meraki else None
            control = self._control = ControlServer(self)
            control_port = await control.start(opts.host, opts.control_port)
            self.control_url = f"http://{opts.host}:{control_port}"
        except BaseException:
            await self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        extra = {**self.plan.extra, "version": STATE_VERSION, "pid": os.getpid(), "tls": opts.tls,
                 "startup_seconds": round(self.startup_seconds, 3)}
        if opts.ssh and self.plan.iosxe:
            extra["ssh_host_key_fingerprint"] = keys.ssh_host_key("default").get_fingerprint("sha256")
        self.state = LabState(control_url=self.control_url, ca_cert=str(ca_path),
                              iosxe=[d.entry for d in self.devices.values()], meraki=meraki, extra=extra)
        if opts.state_file is not None:
            self.state.write(opts.state_file)
        # What start-up built lives as long as the lab: keep it out of every garbage collection (on a
        # 1,000-device lab a full collection walks ~10^6 objects); `stop()` hands it back.
        gc.freeze()
        self._gc_frozen = True
        log.info("lab up: %d devices, %d orgs in %.2f s", len(self.devices),
                 len(meraki.orgs) if meraki else 0, self.startup_seconds)
        return self.state

    async def _compute_hashes(self) -> None:
        # A real device hashes a secret when it is configured; the model does it on first read. Doing it
        # here (worker threads, while the listeners start) keeps the lab's initial secrets out of the
        # first rotation a benchmark measures, and every reset restores them hashed. Only what rotations
        # will read: SSH's `show running-config` prints every secret, RESTCONF only the user asked for
        # (a type-9 secret is 3.7 ms of scrypt: ~4 CPU-s per 1,000 at start).
        def users(dev: LabDevice) -> set[str] | None:
            return None if self.options.ssh else {u.username for u in dev.entry.users}

        await asyncio.gather(*(asyncio.to_thread(compute_hashes, (d.device.running, d.device.startup,
                                                                  d.initial), users(d))
                               for d in self.devices.values()))

    def _ca_path(self) -> Path:
        opts = self.options
        if opts.ca_cert is not None:
            return opts.ca_cert.resolve()
        if opts.state_file is not None:
            sf = opts.state_file.resolve()
            return sf.with_name(f"{sf.stem}-ca.pem")
        self._tmpdir = tempfile.mkdtemp(prefix="keyturn-lab-")
        return Path(self._tmpdir) / "ca.pem"

    def _build_device(self, index: int, planned: IosXeEntry) -> None:
        opts = self.options
        if planned.name in self.devices:
            raise SimulatorError(f"device name {planned.name!r} appears twice in the plan")
        entry = copy.deepcopy(planned)
        entry.host = opts.host
        profile = DeviceProfile.from_dict(entry.profile)
        legacy: dict[str, Any] = {}
        if opts.tls == "self-signed" and profile.cert == "lab-ca":
            legacy["cert"] = "self-signed"
        if opts.save_delay is not None:
            legacy["save_delay"] = opts.save_delay
        profile = profile.updated({**legacy, **opts.profile}, seed_key=self._seed_key(entry.name))
        faults = Faults(seed=None if self.seed is None else self.seed * 100_003 + index)
        if opts.faults:
            faults.update(**opts.faults)
        self.devices[entry.name] = LabDevice.build(entry, profile, faults)

    def _seed_key(self, name: str) -> str:
        return f"{self.seed}/{name}"

    async def _start_meraki(self) -> MerakiEntry:
        opts = self.options
        assert self.plan.meraki is not None and self._ca is not None
        from keyturn.sim.meraki import MerakiFrontend
        from keyturn.sim.meraki_state import MerakiState

        planned = copy.deepcopy(self.plan.meraki)
        state = MerakiState(seed=self.seed)
        for org in planned.orgs:
            org.id = state.add_org(org.name, org_id=org.id).id
            self._org_ids.add(org.id)
            if opts.faults:
                state.faults_for(org.id).update(**opts.faults)
            for net in org.networks:
                net.id = state.add_network(org.id, net.name, network_id=net.id).id
                self._network_ids.add(net.id)
                for user in net.users:
                    state.add_auth_user(net.id, user.email, user.password, name=user.name,
                                        account_type=user.account_type)
                for ssid in net.ssids:
                    state.configure_ssid(net.id, ssid.number, name=ssid.name, auth_mode=ssid.auth_mode,
                                         psk=ssid.psk)
                    for ipsk in ssid.ipsks:
                        state.add_identity_psk(net.id, ssid.number, ipsk.name, ipsk.group_policy_id,
                                               ipsk.passphrase)
        planned.api_key = planned.api_key or state.add_api_key()
        self.meraki = state
        self._meraki_frontend = MerakiFrontend(state, rate_per_org=opts.meraki_rate_per_org,
                                               burst=opts.meraki_burst, rate_per_ip=opts.meraki_rate_per_ip,
                                               key_propagation=opts.meraki_key_propagation)
        port = await self._meraki_frontend.start(opts.host, opts.meraki_port)
        planned.base_url = f"http://{opts.host}:{port}/api/v1"
        if opts.proxy:
            from keyturn.sim.meraki_proxy import MerakiProxy

            self._proxy = MerakiProxy(port, self._ca, upstream_host=opts.host)
            proxy_port = await self._proxy.start(opts.host, opts.proxy_port)
            planned.proxy_url = f"http://{opts.host}:{proxy_port}"
        return planned

    async def stop(self) -> None:
        """Close every listener (idempotent). The state file and a user-given CA path are kept."""
        closers: list[Any] = []
        if self._control is not None:
            closers.append(self._control.stop())
            self._control = None
        if self._proxy is not None:
            closers.append(self._proxy.stop())
            self._proxy = None
        if self._meraki_frontend is not None:
            closers.append(self._meraki_frontend.stop())
            self._meraki_frontend = None
        for dev in self.devices.values():
            closers += await dev.stop()
        for result in await asyncio.gather(*closers, return_exceptions=True):
            if isinstance(result, BaseException):
                log.warning("lab listener did not stop cleanly: %s", result.__class__.__name__)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
        if self._gc_frozen:
            gc.unfreeze()
            self._gc_frozen = False

    # ---- control operations ----------------------------------------------------------------------
    def has_device(self, name: str) -> bool:
        return name in self.devices

    def has_org(self, org_id: str) -> bool:
        return org_id in self._org_ids

    def has_network(self, network_id: str) -> bool:
        return network_id in self._network_ids

    def device(self, name: str) -> LabDevice:
        try:
            return self.devices[name]
        except KeyError:
            raise SimulatorError(f"no IOS XE device {name!r} in this lab") from None

    def _meraki_state(self) -> MerakiState:
        if self.meraki is None:
            raise SimulatorError("this lab runs no Meraki organisations")
        return self.meraki

    def verify_iosxe(self, name: str, username: str, password: str) -> tuple[bool, bool]:
        """(stored, locked): does the device's *local* user store hold `password` for `username` (running
        config), and is that user locked out now? Whatever the AAA profile, lockouts and quiet mode;
        no fault applies and it never counts as a login."""
        device = self.device(name).device
        user = device.running.users.get(username)
        ok = user is not None and user.credential is not None and user.credential.matches(password)
        return ok, device.local_user_locked(username)

    def verify_meraki(self, network_id: str, email: str, password: str) -> bool:
        return bool(self._meraki_state().verify_login(network_id, email, password))

    def drift_iosxe(self, name: str, username: str, password: str, *, save: bool = True) -> None:
        """Out-of-band change, as a person at the console would do it (saved unless `save=False`)."""
        dev = self.device(name).device
        user = dev.user(username)
        kind = user.credential.kind if user is not None and user.credential is not None else "secret"
        try:
            if username == "enable":
                dev.set_enable_secret(password)
            else:
                dev.set_user(username, kind=kind, clear=password,
                             encryption="7" if kind == "password" else "0")
        except DeviceRefused as exc:
            raise SimulatorError(f"device {name} refused the drift: {exc.message.splitlines()[0]}") from None
        if save:
            dev.save()

    def drift_meraki(self, network_id: str, email: str, password: str) -> None:
        self._meraki_state().set_password_out_of_band(network_id, email, password)

    def set_faults(self, kind: str, ident: str, switches: Mapping[str, Any]) -> dict[str, Any]:
        """Update switches of a device or org; unknown switch → `SimulatorError` naming it."""
        if kind == "iosxe":
            faults = self.device(ident).faults
        elif kind == "meraki":
            if not self.has_org(ident):
                raise SimulatorError(f"no Meraki organisation {ident!r} in this lab")
            faults = self._meraki_state().faults_for(ident)
        else:
            raise SimulatorError(f"unknown kind {kind!r}; use 'iosxe' or 'meraki'")
        faults.update(**dict(switches))
        return faults.snapshot()

    def profile(self, name: str) -> dict[str, Any]:
        """The device's effective profile with its fingerprints (what the state file says)."""
        return dict(self.device(name).entry.profile)

    def set_profile(self, name: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change profile switches of one device now (see `LabDevice.set_profile`)."""
        dev = self.device(name)
        dev.set_profile(dict(changes), seed_key=self._seed_key(name))
        return dict(dev.entry.profile)

    def set_profile_all(self, changes: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The same change on every device; all-or-nothing on a bad switch (checked on a copy first)."""
        for name, dev in self.devices.items():
            dev.preview(dict(changes), seed_key=self._seed_key(name))
        return [self.set_profile(name, changes) for name in self.devices]

    def reboot(self, name: str) -> None:
        self.device(name).device.reboot()

    def reset(self, *, faults_only: bool = False) -> None:
        """Clear all fault switches; unless `faults_only`, restore initial credentials and counters."""
        for dev in self.devices.values():
            dev.faults.reset()
            if not faults_only:
                dev.reset()
        if self.meraki is not None and self.state is not None and self.state.meraki is not None:
            for org in self.state.meraki.orgs:
                self.meraki.faults_for(org.id).reset()
                if faults_only:
                    continue
                self.meraki.stats.pop(org.id, None)   # recreated empty on next use
                for net in org.networks:
                    for user in net.users:
                        try:
                            self.meraki.set_password_out_of_band(net.id, user.email, user.password)
                        except SimulatorError:  # the user may have been deleted through the API
                            log.warning("reset: Meraki user in %s no longer exists", net.id)

    def devices_info(self) -> list[dict[str, Any]]:
        return [
            {"name": name, "host": d.entry.host, "restconf_port": d.entry.restconf_port,
             "ssh_port": d.entry.ssh_port, "faults": d.faults.snapshot(),
             "unsaved_changes": not same_config(d.device.running, d.device.startup),
             "profile": dict(d.entry.profile)}
            for name, d in self.devices.items()
        ]

    def meraki_info(self) -> list[dict[str, Any]]:
        if self.meraki is None or self.state is None or self.state.meraki is None:
            return []
        return [
            {"id": org.id, "name": org.name, "networks": [{"id": n.id, "name": n.name} for n in org.networks],
             "faults": self.meraki.faults_for(org.id).snapshot()}
            for org in self.state.meraki.orgs
        ]

    def api_keys(self, propagation: float | None = None) -> dict[str, Any]:
        """The Dashboard's API keys by identity (suffixes, never a key) and the propagation delay;
        `propagation` (seconds, 0-3600) sets the delay first."""
        from keyturn.sim.meraki_identities import keys_info

        frontend = self._meraki_frontend
        if self.meraki is None or frontend is None:
            raise SimulatorError("this lab runs no Meraki Dashboard")
        if propagation is not None:
            if not 0 <= propagation <= 3600:
                raise SimulatorError("propagation must be 0 to 3600 seconds")
            frontend.key_propagation = float(propagation)
        return {"propagation": frontend.key_propagation,
                "identities": keys_info(self.meraki, frontend.new_keys)}

    def stats(self) -> dict[str, Any]:
        devices = {
            name: {"changes": d.device.change_count, "saves": d.device.save_count,
                   "reboots": d.device.reboot_count, "auth_failures": d.device.last_auth_failures,
                   "restconf_requests": d.restconf.requests if d.restconf is not None else 0,
                   "restconf_connections": d.restconf.connections if d.restconf is not None else 0,
                   "restconf_tls_resumed": d.restconf.tls_resumed if d.restconf is not None else 0,
                   **d.device.guard.stats()}
            for name, d in self.devices.items()
        }
        meraki: dict[str, Any] = {}
        if self.meraki is not None:
            for org_id in sorted(self._org_ids):
                counters = self.meraki.stats_for(org_id)
                meraki[org_id] = {**asdict(counters), "throttled": counters.throttled}
        return {"iosxe": devices, "meraki": meraki}
