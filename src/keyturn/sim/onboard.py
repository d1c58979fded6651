"""Onboard a simulator lab's IOS XE devices into a vault, as a user would: one function for everyone.

    accounts = onboard_iosxe(vault, LabState.load("lab.json"))       # every device, every user
    async with ControlClient(state.control_url) as ctl:
        assert await accounts[0].stored(ctl, vault.secret(accounts[0].uid).reveal())

Per device it adds, through the Vault Python API and in ONE transaction (all or nothing):

* the resource (`pamNetworkDevice`): `host` = RESTCONF ``host:port``, `ssh_port`, and the trust the
  device's profile needs (`TRUST` below) — a CA bundle where the certificate chains to one, the pinned
  SHA-256 fingerprint where it is stock IOS XE's self-signed certificate (no subjectAltName: a bundle
  cannot pass hostname verification, reference iosxe-field-behaviour.md §5), the SSH host key pin, and
  ``ssh_algorithms=legacy`` for a device offering only the SHA-1 algorithm set;
* the admin credential (`login` record, custom secret `enable_secret`);
* one `pamUser` per device user with its rotation profile. The target is the caller's choice except on
  a device whose logins land in user EXEC (`aaa new-model` without exec authorization): RESTCONF refuses
  its local users, so it gets `iosxe-ssh`, which enters `enable` with the enable secret (reference §1).

Lab passwords are simulator test data: they go into the vault as `Secret` values and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keyturn.engine.profile import set_profile
from keyturn.errors import SimulatorError
from keyturn.secret import Secret
from keyturn.vault import Field, NewRecord

if TYPE_CHECKING:
    from keyturn.sim.client import ControlClient, IosXeEntry, LabState
    from keyturn.vault import Vault

DEFAULT_TARGET = "iosxe-restconf"
# Where privilege 15 lands in `>` RESTCONF answers 401 to local users; the SSH target enters `enable`.
USER_EXEC_TARGET = "iosxe-ssh"
IOSXE_TARGETS = ("iosxe-restconf", "iosxe-ssh")

# Device profile (`IosXeEntry.profile`, state-file key `cert`) → how a client trusts the certificate.
#   "ca": the lab CA (or the device's own CA) as `ca_bundle`; "pin": the certificate's SHA-256 only.
TRUST: Mapping[str, str] = {"lab-ca": "ca", "self-signed": "ca", "ios-self-signed": "pin"}
# Device profile `ssh_profile` → the resource's `ssh_algorithms` (absent: keyturn's modern set).
SSH_ALGORITHMS: Mapping[str, str] = {"ios-legacy": "legacy"}


@dataclass(frozen=True)
class Titles:
    """Record titles, as `str.format` templates over `device`, `target` and `username`."""

    resource: str = "{device}"
    admin: str = "{device} admin"
    user: str = "{username} @ {device}"


@dataclass(frozen=True)
class OnboardedAccount:
    """One rotated account: its vault record, the target rotating it, and where the lab checks it."""

    uid: str
    target: str
    device: str
    username: str
    title: str = ""

    async def stored(self, ctl: ControlClient, password: str) -> bool:
        """True if the device's local user store holds `password` (control API `/verify`: any AAA
        profile, never counted as a login)."""
        return await ctl.verify_iosxe(self.device, self.username, password)


def lands_in_user_exec(dev: IosXeEntry) -> bool:
    """True when the device's profile has exec authorization off (privilege 15 lands in `>`)."""
    return dev.profile.get("exec_authorization") is False


def target_for(dev: IosXeEntry, choice: str = DEFAULT_TARGET) -> str:
    """The target that can rotate this device's users: `choice`, or `iosxe-ssh` where logins land in `>`."""
    if choice not in IOSXE_TARGETS:
        raise SimulatorError(f"unknown IOS XE target {choice!r}; use one of {', '.join(IOSXE_TARGETS)}")
    return USER_EXEC_TARGET if lands_in_user_exec(dev) else choice


def resource_custom(dev: IosXeEntry, state: LabState) -> list[Field]:
    """The resource's custom fields: SSH port and the trust this device's profile needs.

    `SimulatorError` when the profile asks for a pin the state file does not carry (a lab state
    written before the device's certificate was known), rather than a resource nothing can trust.
    """
    profile = dev.profile
    custom: list[Field] = []
    if dev.ssh_port:
        custom.append(Field("text", "ssh_port", [str(dev.ssh_port)]))
    cert = str(profile.get("cert", "lab-ca"))
    trust = TRUST.get(cert)
    if trust is None:
        raise SimulatorError(f"device {dev.name}: unknown certificate kind {cert!r} in the lab state")
    if trust == "pin":
        pin = profile.get("cert_fingerprint")
        if not pin:
            raise SimulatorError(f"device {dev.name} serves a self-signed IOS certificate but the lab "
                                 "state has no cert_fingerprint to pin")
        custom.append(Field("text", "fingerprint", [str(pin)]))
    else:
        custom.append(Field("text", "ca_bundle", [dev.ca_cert or state.ca_cert]))
    host_key = profile.get("ssh_host_key_fingerprint") or state.extra.get("ssh_host_key_fingerprint")
    if host_key and dev.ssh_port:
        custom.append(Field("text", "host_key_fingerprint", [str(host_key)]))
    algorithms = SSH_ALGORITHMS.get(str(profile.get("ssh_profile", "default")))
    if algorithms is not None:
        custom.append(Field("text", "ssh_algorithms", [algorithms]))
    return custom


def onboard_iosxe(
    vault: Vault, state: LabState, *, target: str | Sequence[str] = DEFAULT_TARGET,
    devices: int | None = None, users: int | None = None, admin: bool = True,
    options: Mapping[str, str] | None = None, titles: Titles = Titles(),
    allow_duplicate: bool = False, actor: str = "sim-onboard",
) -> list[OnboardedAccount]:
    """Add the records and rotation profiles of the first `devices` devices (all by default) and their
    first `users` users; returns one `OnboardedAccount` per user, in lab order.

    `target` is one target kind, or several given to the devices round-robin (device i gets
    `target[i % len]`); a device landing in `>` gets `iosxe-ssh` whatever was asked. `admin=False`
    makes self-service profiles (the admin record is still added, unused; on a `>` device the user
    record then carries the enable secret itself). `options` are the profiles' options (e.g.
    ``{"verify": "auto"}``). Everything is added in one transaction: an error (`ProfileError`,
    `DuplicateRecord` unless `allow_duplicate`, `SimulatorError` for an unusable lab state) leaves the
    vault as it was.
    """
    choices = (target,) if isinstance(target, str) else tuple(target)
    if not choices:
        raise SimulatorError("onboard_iosxe needs at least one target")
    chosen = [(dev, target_for(dev, choices[i % len(choices)]))
              for i, dev in enumerate(state.iosxe[:devices])]
    specs: list[NewRecord] = []
    plan: list[tuple[IosXeEntry, str, list[tuple[str, str]]]] = []
    for dev, kind in chosen:
        names: dict[str, Any] = {"device": dev.name, "target": kind}
        specs.append(NewRecord(type="pamNetworkDevice", title=titles.resource.format(**names),
                               fields=[Field("host", None, [f"{dev.host}:{dev.restconf_port or 443}"])],
                               custom=resource_custom(dev, state)))
        specs.append(NewRecord(type="login", title=titles.admin.format(**names),
                               fields=[Field("login", None, [dev.admin.username]),
                                       Field("password", None, [Secret(dev.admin.password)])],
                               custom=[Field("secret", "enable_secret", [Secret(dev.enable_secret)])]))
        own_enable = not admin and lands_in_user_exec(dev)
        members = []
        for user in dev.users[:users]:
            title = titles.user.format(username=user.username, **names)
            specs.append(NewRecord(
                type="pamUser", title=title,
                fields=[Field("login", None, [user.username]),
                        Field("password", None, [Secret(user.password)])],
                custom=[Field("secret", "enable_secret", [Secret(dev.enable_secret)])] if own_enable else []))
            members.append((user.username, title))
        plan.append((dev, kind, members))
    out: list[OnboardedAccount] = []
    with vault.unit():
        uids = iter(vault.add_many(specs, allow_duplicate=allow_duplicate, actor=actor))
        for dev, kind, members in plan:
            resource, admin_uid = next(uids), next(uids)
            for username, title in members:
                uid = next(uids)
                set_profile(vault, uid, target=kind, resource=resource, admin=admin_uid if admin else None,
                            options=options, actor=actor)
                out.append(OnboardedAccount(uid, kind, dev.name, username, title))
    return out
