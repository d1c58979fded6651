"""Apply an inventory to the vault: create or update by title, in ONE transaction, or only plan it.

Per device (`model.DeviceSpec`), by title (case-insensitive, as the vault compares titles):

* the resource ``DEVICE`` (pamNetworkDevice): `host` = HOST:PORT, custom ``ssh_port`` and the trust
  fields the file gives; the site in ``meta.site``. Fields the file does not give (a pin stored by
  `keyturn device trust`, a TOFU key) are kept;
* the admin ``DEVICE admin`` (login): login, password, custom secret ``enable_secret``; a new admin
  needs a password (from the file or --admin-password);
* each user ``USER @ DEVICE`` (pamUser): login, and its password when the file has one and the vault
  has none — a password the vault holds is never replaced by the file's (keyturn rotates it; the file's
  is the old one). A user without a password is reconciled through the admin on its first rotation;
* the user's rotation profile through `engine.profile.set_profile` (target, resource, admin, options
  and policy the file gives; options and policy it does not give are kept), and its schedule through
  `scheduler.assign.set_schedule` when the file gives one (unchanged when spec, zone, window and
  jitter are the same, so the interval grid keeps its anchor).

Everything runs inside `Vault.unit()`. Any problem (a `set_profile` refusal, a title held by a record of
another kind, a missing admin password) is collected with the device's ``file:line`` and, at the end,
raised as `InventoryInvalid` — which rolls the whole unit back. A dry run does the same work and rolls
back on purpose, so what it reports was validated exactly as the real run would be.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from keyturn.errors import ImportFailed, KeyturnError
from keyturn.inventory.model import DeviceSpec, Inventory, InventoryInvalid, Problem, UserSpec, first_line
from keyturn.secret import Secret

if TYPE_CHECKING:
    from keyturn.vault import Field, Record, Vault
    from keyturn.vault.api import RecordSummary

RESOURCE_TYPES = ("pamNetworkDevice",)
ADMIN_TYPES = ("login", "pamUser")
USER_TYPES = ("pamUser", "login")
KINDS = ("device", "admin", "user", "profile", "schedule")
ACTIONS = ("create", "update", "unchanged")


@dataclass(frozen=True)
class Change:
    """One record (or a user's profile / schedule) and what the import does to it; never a secret."""

    action: str      # create | update | unchanged
    kind: str        # device | admin | user | profile | schedule
    title: str
    detail: str = ""

    def to_json(self) -> dict[str, str]:
        return {"action": self.action, "kind": self.kind, "title": self.title, "detail": self.detail}


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    applied: bool = False

    def add(self, action: str, kind: str, title: str, detail: str = "") -> None:
        self.changes.append(Change(action, kind, title, detail))

    def counts(self) -> dict[str, dict[str, int]]:
        """{kind: {action: n}} for every kind and action (zeros included)."""
        c = Counter((ch.kind, ch.action) for ch in self.changes)
        return {k: {a: c[(k, a)] for a in ACTIONS} for k in KINDS}

    def summary(self) -> str:
        parts = []
        for kind, by_action in self.counts().items():
            shown = ", ".join(f"{n} {a}" for a, n in by_action.items() if n)
            if shown:
                parts.append(f"{kind}s: {shown}")
        return "; ".join(parts) if parts else "nothing to import"


class _DryRun(Exception):
    """Raised inside the unit of work to roll a dry run back."""


def apply(vault: Vault, inv: Inventory, *, dry_run: bool = False, actor: str = "cli") -> Plan:
    """Create or update everything `inv` describes in one transaction (see the module docstring);
    with `dry_run`, the same checks and nothing kept. `InventoryInvalid` lists every problem."""
    inv.check()
    plan = Plan()
    problems: list[Problem] = []
    try:
        with vault.unit(batch_audit=True):
            from keyturn.engine.profile import default_configuration

            index = _TitleIndex(vault.summaries())
            config = default_configuration(vault)   # what set_profile would look up for each new profile
            for dev in inv.devices:
                try:
                    _device(vault, dev, index, config, plan, actor)
                except InventoryInvalid as exc:
                    problems.extend(exc.problems)
                except KeyturnError as exc:
                    problems.append(Problem(dev.where, first_line(exc)))
            if problems:
                raise InventoryInvalid(inv.source, problems)
            if dry_run:
                raise _DryRun
            # `record.import`: the audit sinks' severity table already rates an import (NOTICE).
            vault.audit.append("record.import", actor=actor, details={
                "format": f"inventory:{inv.format}", "devices": len(inv.devices), "counts": plan.counts()})
    except _DryRun:
        return plan
    plan.applied = True
    return plan


class _TitleIndex:
    """Records by case-folded title, read once (listing only: nothing decrypted)."""

    def __init__(self, summaries: Sequence[RecordSummary]) -> None:
        self.by_title: dict[str, list[RecordSummary]] = {}
        for s in summaries:
            self.by_title.setdefault(s.title.strip().casefold(), []).append(s)

    def find(self, title: str, types: Sequence[str], role: str) -> str | None:
        found = self.by_title.get(title.strip().casefold(), [])
        if len(found) > 1:
            raise ImportFailed(f"{len(found)} records are titled {title!r}; rename all but one first")
        if not found:
            return None
        rec = found[0]
        if rec.type not in types:
            raise ImportFailed(f"record {title!r} exists as a {rec.type}; the {role} must be a "
                               f"{' or '.join(types)}")
        return rec.uid


def _device(vault: Vault, dev: DeviceSpec, index: _TitleIndex, config: str, plan: Plan, actor: str) -> None:
    from keyturn.vault import Field
    from keyturn.vault.api import NewRecord

    resource = index.find(dev.name, RESOURCE_TYPES, "device")
    admin = index.find(dev.admin_title, ADMIN_TYPES, "admin credential")
    users = [(u, index.find(u.title, USER_TYPES, "user")) for u in dev.users]
    new: list[NewRecord] = []
    if resource is None:
        custom = [Field("text", k, [v]) for k, v in _custom(dev).items()]
        site = dev.site if dev.site and dev.site != "default" else None
        new.append(NewRecord(type="pamNetworkDevice", title=dev.name,
                             fields=[Field("host", None, [dev.host_field])], custom=custom,
                             meta={"site": site} if site else None))
        plan.add("create", "device", dev.name, f"{dev.host_field}" + (f", site {site}" if site else ""))
    else:
        _update_resource(vault, resource, dev, plan, actor)
    if admin is None:
        if dev.admin_password is None:
            raise ImportFailed(f"{dev.admin_title}: no admin password (give it in the file, or with "
                               "--admin-password -)")
        enable = [Field("secret", "enable_secret", [dev.enable_secret])] if dev.enable_secret else []
        new.append(NewRecord(type="login", title=dev.admin_title,
                             fields=[Field("login", None, [dev.admin_login]),
                                     Field("password", None, [dev.admin_password])], custom=enable))
        plan.add("create", "admin", dev.admin_title, f"login {dev.admin_login}")
    else:
        _update_admin(vault, admin, dev, plan, actor)
    for user, uid in users:
        if uid is None:
            fields = [Field("login", None, [user.login])]
            if user.password is not None:
                fields.append(Field("password", None, [user.password]))
            new.append(NewRecord(type="pamUser", title=user.title, fields=fields))
            plan.add("create", "user", user.title, "password from the file" if user.password else
                     "password unknown: the admin sets the first one")
        else:
            _update_user(vault, uid, user, plan, actor)
    created = iter(vault.add_many(new, actor=actor)) if new else iter(())
    resource = resource or next(created)
    admin = admin or next(created)
    for user, found in users:
        uid = found or next(created)
        meta = vault.meta(uid)[1] if found else {}   # a record made just now has no profile or schedule
        _profile(vault, uid, meta, user, dev, resource, admin, config, plan, actor)
        if dev.schedule is not None:
            _schedule(vault, uid, meta, user, dev.schedule, plan, actor)


def _custom(dev: DeviceSpec) -> dict[str, str]:
    out = dict(dev.trust)
    if dev.ssh_port is not None:
        out["ssh_port"] = str(dev.ssh_port)
    return out


def _plain(value: Any) -> str | None:
    return None if value is None else str(value)


def _update_resource(vault: Vault, uid: str, dev: DeviceSpec, plan: Plan, actor: str) -> None:
    from keyturn.vault import Field

    rec = vault.get(uid)
    changed: list[str] = []
    fields = list(rec.fields)
    if _plain(rec.field("host")) != dev.host_field:
        changed.append("host")
        fields = [f for f in fields if f.type != "host"] + [Field("host", None, [dev.host_field])]
    custom = list(rec.custom)
    for label, value in _custom(dev).items():
        if _plain(rec.custom_value(label)) != value:
            changed.append(label)
            custom = [f for f in custom if f.label != label] + [Field("text", label, [value])]
    if changed:
        vault.update(uid, fields=fields, custom=custom, actor=actor)
    if dev.site is not None:
        want = None if dev.site == "default" else dev.site
        if rec.meta.get("site") != want:
            vault.set_meta(uid, "site", want, actor=actor)
            changed.append("site")
    plan.add("update" if changed else "unchanged", "device", dev.name, ", ".join(changed))


def _same_secret(rec: Record, label: str, value: Secret | None, *, custom: bool) -> bool:
    if value is None:
        return True
    current = rec.custom_value(label) if custom else rec.field(label)
    return isinstance(current, Secret) and current == value


def _update_admin(vault: Vault, uid: str, dev: DeviceSpec, plan: Plan, actor: str) -> None:
    from keyturn.vault import Field

    rec = vault.get(uid)
    changed: list[str] = []
    fields: list[Field] = list(rec.fields)
    custom: list[Field] = list(rec.custom)
    if _plain(rec.field("login")) != dev.admin_login:
        changed.append("login")
        fields = [f for f in fields if f.type != "login"] + [Field("login", None, [dev.admin_login])]
    if not _same_secret(rec, "password", dev.admin_password, custom=False):
        changed.append("password")
        fields = [f for f in fields if f.type != "password"] + [Field("password", None, [dev.admin_password])]
    elif not isinstance(rec.field("password"), Secret):
        raise ImportFailed(f"{dev.admin_title}: no admin password in the vault nor in the file (give it "
                           "with --admin-password -)")
    if not _same_secret(rec, "enable_secret", dev.enable_secret, custom=True):
        changed.append("enable_secret")
        custom = [f for f in custom if f.label != "enable_secret"] + [
            Field("secret", "enable_secret", [dev.enable_secret])]
    if changed:
        vault.update(uid, fields=fields, custom=custom, actor=actor)
    plan.add("update" if changed else "unchanged", "admin", dev.admin_title, ", ".join(changed))


def _update_user(vault: Vault, uid: str, user: UserSpec, plan: Plan, actor: str) -> None:
    from keyturn.vault import Field

    rec = vault.get(uid)
    changed: list[str] = []
    fields: list[Field] = list(rec.fields)
    if _plain(rec.field("login")) != user.login:
        changed.append("login")
        fields = [f for f in fields if f.type != "login"] + [Field("login", None, [user.login])]
    if user.password is not None and not isinstance(rec.field("password"), Secret):
        changed.append("password")
        fields = [f for f in fields if f.type != "password"] + [Field("password", None, [user.password])]
    if changed:
        vault.update(uid, fields=fields, actor=actor)
    plan.add("update" if changed else "unchanged", "user", user.title, ", ".join(changed))


def _profile(vault: Vault, uid: str, meta: Mapping[str, Any], user: UserSpec, dev: DeviceSpec,
             resource: str, admin: str, config: str, plan: Plan, actor: str) -> None:
    from keyturn.engine.profile import META_KEY, RotationProfile, set_profile
    from keyturn.policy import parse_policy

    old = RotationProfile.from_meta(meta[META_KEY]) if meta.get(META_KEY) is not None else None
    options = {**(old.options if old else {}), **dev.options}
    policy: Mapping[str, Any] | str | None = dev.policy
    if policy is None and old is not None:
        policy = old.policy
    if old is not None:
        same = (old.target == dev.target and old.resource == resource and old.admin == admin
                and dict(old.options) == options
                and (dev.policy is None or parse_policy(old.policy) == parse_policy(dev.policy)))
        if same:
            plan.add("unchanged", "profile", user.title, dev.target)
            return
    set_profile(vault, uid, target=dev.target, resource=resource, admin=admin, policy=policy,
                options=options, configuration=old.configuration if old and old.configuration else config,
                verify_with=old.verify_with if old else None,
                max_attempts=old.max_attempts if old else 3, actor=actor)
    plan.add("update" if old else "create", "profile", user.title, dev.target)


def _schedule(vault: Vault, uid: str, meta: Mapping[str, Any], user: UserSpec, schedule: Mapping[str, str],
              plan: Plan, actor: str) -> None:
    from keyturn.scheduler.assign import set_schedule
    from keyturn.scheduler.schedules import META_KEY

    wanted = _schedule_meta(schedule["schedule"], schedule.get("tz"), schedule.get("window"),
                            schedule.get("jitter"))
    old = meta.get(META_KEY)
    keys = ("spec", "tz", "window", "jitter")
    if isinstance(old, Mapping) and all(old.get(k) == wanted[k] for k in keys):
        plan.add("unchanged", "schedule", user.title, str(wanted["spec"]))
        return
    set_schedule(vault, uid, schedule["schedule"], tz=schedule.get("tz"), window=schedule.get("window"),
                 jitter=schedule.get("jitter"), actor=actor)
    plan.add("update" if isinstance(old, Mapping) else "create", "schedule", user.title, str(wanted["spec"]))


@functools.lru_cache(maxsize=256)
def _schedule_meta(spec: str, tz: str | None, window: str | None, jitter: str | None) -> dict[str, Any]:
    """What `set_schedule` would store, without its anchor (compared, never stored from here)."""
    from keyturn.scheduler.schedules import parse_schedule

    return parse_schedule(spec, tz=tz, window=window, jitter=jitter).to_meta()
