"""A fake of the *world* for engine tests: a device whose user table lives in a JSON file.

Being file-backed, the device survives the death of a process, so kill-at-a-step tests can run the
engine in a subprocess and check the device afterwards. Fault knobs are plain fields in the file.
This is not a fake of keyturn: the engine runs unchanged, only the device is simulated.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from keyturn.config import Settings
from keyturn.engine.profile import RotationProfile
from keyturn.engine.rotate import RotationEngine, TargetPool
from keyturn.errors import AccountNotFound, ChangeRejected, TargetAuthRejected, TargetUnreachable
from keyturn.secret import Secret
from keyturn.targets.base import Account, SecretRules, Verdict
from keyturn.vault import Field, Vault

KNOBS = {
    "down": False,               # unreachable: verify inconclusive, change/persist raise TargetUnreachable
    "refuse": 0,                 # next N changes refused (ChangeRejected)
    "drop_after_apply": 0,       # next N changes applied, then the connection drops (TargetUnreachable)
    "down_after_apply": 0,       # next N changes applied, then the device goes down
    "ignore_changes": False,     # accept changes without applying them
    "scramble": False,           # apply a garbage secret instead of the one sent
    "persist_fails": 0,          # next N saves fail
}


@dataclass
class DeviceFile:
    path: Path

    def load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"users": {}, "saved": {}, "admins": {}, "changes": 0, "max_parallel": 0,
                    "in_flight": 0, **KNOBS}
        data: dict[str, Any] = json.loads(self.path.read_text())
        return data

    def save(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.path)

    def set(self, **changes: Any) -> None:
        data = self.load()
        data.update(changes)
        self.save(data)

    def set_user(self, name: str, password: str) -> None:
        data = self.load()
        data["users"][name] = password
        data["saved"][name] = password
        self.save(data)

    def add_admin(self, name: str, password: str) -> None:
        data = self.load()
        data["admins"][name] = password
        self.save(data)

    def password(self, name: str) -> str | None:
        value = self.load()["users"].get(name)
        return None if value is None else str(value)


class FakeTarget:
    """Target over `DeviceFile`s; one device file per account host (Endpoint.host is the file path)."""

    kind: ClassVar[str] = "fake"
    constraints: ClassVar[SecretRules] = SecretRules(min_length=8, max_length=64, forbidden="?")
    can_verify: ClassVar[bool] = True

    def __init__(self) -> None:
        self.closed = False
        self.gate: Any = None          # an asyncio.Event: when set up, changes wait for it
        self.parallel: dict[str, int] = {}
        self.max_parallel: dict[str, int] = {}

    def device(self, account: Account) -> DeviceFile:
        return DeviceFile(Path(account.endpoint.host))

    async def verify(self, account: Account, secret: Secret) -> Verdict:
        data = self.device(account).load()
        if data["down"]:
            return Verdict.INCONCLUSIVE
        ok = data["users"].get(account.username) == secret.reveal()
        return Verdict.OK if ok else Verdict.REJECTED

    async def change(self, account: Account, old: Secret | None, new: Secret) -> None:
        dev = self.device(account)
        host = account.endpoint.host
        self.parallel[host] = self.parallel.get(host, 0) + 1
        self.max_parallel[host] = max(self.max_parallel.get(host, 0), self.parallel[host])
        try:
            if self.gate is not None:
                await self.gate.wait()
            await self._change(dev, account, old, new)
        finally:
            self.parallel[host] -= 1

    async def _change(self, dev: DeviceFile, account: Account, old: Secret | None, new: Secret) -> None:
        import asyncio
        await asyncio.sleep(0)   # let other rotations interleave (per-device limit test)
        data = dev.load()
        if data["down"]:
            raise TargetUnreachable("connection refused", target=self.kind)
        users = data["users"]
        if account.username not in users:
            raise AccountNotFound(f"user {account.username} does not exist on the device", target=self.kind)
        if account.admin is not None:
            if data["admins"].get(account.admin.username) != account.admin.secret.reveal():
                raise TargetAuthRejected("admin credential refused", target=self.kind)
        elif old is None or users[account.username] != old.reveal():
            raise TargetAuthRejected("current credential refused", target=self.kind)
        if data["refuse"] > 0:
            data["refuse"] -= 1
            dev.save(data)
            raise ChangeRejected("device refused the password (policy)", target=self.kind)
        if data["scramble"]:
            users[account.username] = "garbage-" + str(data["changes"])
        elif not data["ignore_changes"]:
            users[account.username] = new.reveal()
        data["changes"] += 1
        if data["drop_after_apply"] > 0:
            data["drop_after_apply"] -= 1
            dev.save(data)
            raise TargetUnreachable("connection dropped after the request was sent", target=self.kind)
        if data["down_after_apply"] > 0:
            data["down_after_apply"] -= 1
            data["down"] = True
            dev.save(data)
            raise TargetUnreachable("connection reset", target=self.kind)
        dev.save(data)

    async def persist(self, account: Account, secret: Secret | None = None) -> None:
        dev = self.device(account)
        data = dev.load()
        if data["down"]:
            raise TargetUnreachable("connection refused", target=self.kind)
        if data["persist_fails"] > 0:
            data["persist_fails"] -= 1
            dev.save(data)
            raise TargetUnreachable("save timed out", target=self.kind)
        data["saved"] = dict(data["users"])
        dev.save(data)

    async def aclose(self) -> None:
        self.closed = True


class BlindTarget(FakeTarget):
    """Like a Meraki auth user: can change, cannot test a login, no save."""

    kind: ClassVar[str] = "blind"
    can_verify: ClassVar[bool] = False

    async def verify(self, account: Account, secret: Secret) -> Verdict:
        return Verdict.INCONCLUSIVE

    persist = None  # type: ignore[assignment]


def make_factory() -> Any:
    from keyturn.targets.base import SecretRules as _Rules

    class Noop:
        kind = "noop"
        constraints = _Rules(min_length=8, max_length=64)
        can_verify = False

        async def verify(self, account: Account, secret: Secret) -> Verdict:
            return Verdict.INCONCLUSIVE

        async def change(self, account: Account, old: Secret | None, new: Secret) -> None:
            return None

        async def aclose(self) -> None:
            return None

    targets = {"fake": FakeTarget(), "blind": BlindTarget(), "noop": Noop()}
    return targets


OLD = "Old-Passw0rd-1"
ADMIN = "Adm1n-Secret-9"


class World:
    def __init__(self, tmp_path, vault: Vault) -> None:
        self.tmp_path = tmp_path
        self.vault = vault
        self.targets = make_factory()
        self.dev = DeviceFile(tmp_path / "device.json")
        self.dev.set_user("netops", OLD)
        self.dev.add_admin("admin", ADMIN)
        self.resource = vault.add(type="pamNetworkDevice", title="sw1",
                                  fields=[Field("host", value=[str(self.dev.path)])])
        self.admin = vault.add(type="pamUser", title="sw1-admin",
                               fields=[Field("login", value=["admin"]),
                                       Field("password", value=[Secret(ADMIN)])])
        self.user = self.add_user("u1", "netops", OLD)

    def add_user(self, title: str, login: str, password: str | None, **profile: object) -> str:
        fields = [Field("login", value=[login])]
        if password is not None:
            fields.append(Field("password", value=[Secret(password)]))
        rec = self.vault.add(type="pamUser", title=title, fields=fields)
        self.set_profile(rec.uid, **profile)
        return rec.uid

    def set_profile(self, uid: str, **kw: object) -> None:
        data: dict[str, object] = {"target": "fake", "resource": self.resource.uid, "admin": None}
        data.update(kw)
        self.vault.set_meta(uid, "rotation", RotationProfile(**data).to_meta())  # type: ignore[arg-type]

    def engine(self) -> RotationEngine:
        return RotationEngine(self.vault, targets=TargetPool(lambda kind: self.targets[kind]), backoff=0.0)

    def current(self, uid: str | None = None) -> str | None:
        s = self.vault.secret(uid or self.user)
        return None if s is None else s.reveal()

    def states(self, uid: str | None = None) -> list[str]:
        return [str(v.state) for v in self.vault.versions(uid or self.user)]


def open_world(tmp_path: Any) -> Iterator[World]:
    """A fresh vault in tmp_path with one device, its admin and one user record (use as a fixture)."""
    vault = Vault.init(Settings(home=tmp_path / "home"))
    try:
        yield World(tmp_path, vault)
    finally:
        vault.close()
