"""Issue 12, item 2: no credential goes to an SSH server keyturn has no trust for.

The attack: a rogue SSH server (its own host key) answers on the address a resource record points to
— a host on the management network that took over the device's address, or an on-path interceptor.
Before the fix, keyturn trusted the first key it saw in every process (each CLI run, each `serve`
start), so the rogue was offered the admin password (and the user's current one). Now a rotation
against it is refused during the key exchange — before authentication, so the rogue records nothing —
and ends `failed` with a trust failure that names the command establishing trust:

* no trust on the resource → refused, "`keyturn device trust <resource title>`";
* the real device's key pinned → refused, the key CHANGED (pinned vs presented);
* ``ssh_host_key=tofu`` after the first contact stored the real key in the vault (audited
  ``device.trust`` by ``tofu``) → refused and flagged as changed, with ``--replace`` to accept it.

Real sockets on 127.0.0.1: the device is the IOS XE simulator, the rogue a plain asyncssh server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
import pytest

from keyturn.config import Settings
from keyturn.engine.outcome import Outcome, RotationResult
from keyturn.engine.profile import set_profile
from keyturn.engine.rotate import RotationEngine
from keyturn.secret import Secret
from keyturn.sim.faults import Faults
from keyturn.sim.iosxe_device import IosXeDevice
from keyturn.sim.iosxe_ssh import SshFrontend
from keyturn.vault import Field, Record, Vault

ADMIN, ADMIN_PW = "admin", "Adm1n-pw!"
USER, USER_PW = "bob", "B0b-current-pw!"


@dataclass
class Rogue:
    """An SSH server with its own host key that keeps everything a client tries to log in with."""

    offered: list[tuple[str, str]] = field(default_factory=list)   # (username, password or response)
    usernames: list[str] = field(default_factory=list)
    key: asyncssh.SSHKey = field(default_factory=lambda: asyncssh.generate_private_key("ssh-ed25519"))
    acceptor: asyncssh.SSHAcceptor | None = None

    async def start(self, port: int = 0) -> int:
        rogue = self

        class Catcher(asyncssh.SSHServer):
            def begin_auth(self, username: str) -> bool:
                rogue.usernames.append(username)
                return True

            def password_auth_supported(self) -> bool:
                return True

            def validate_password(self, username: str, password: str) -> bool:
                rogue.offered.append((username, password))
                return False

            def kbdint_auth_supported(self) -> bool:
                return True

            def get_kbdint_challenge(self, username: str, lang: str, submethods: str) -> tuple[
                    str, str, str, list[tuple[str, bool]]]:
                return "", "", "", [("Password: ", False)]

            def validate_kbdint_response(self, username: str, responses: list[str]) -> bool:
                rogue.offered.extend((username, r) for r in responses)
                return False

        self.acceptor = await asyncssh.listen("127.0.0.1", port, server_host_keys=[self.key],
                                              server_factory=Catcher, reuse_address=True)
        return int(self.acceptor.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.acceptor is not None:
            self.acceptor.close()
            await self.acceptor.wait_closed()

    @property
    def fingerprint(self) -> str:
        return str(self.key.get_fingerprint("sha256"))

    @property
    def got_nothing(self) -> bool:
        """Not a password, not even a user name: the key exchange refused it before authentication."""
        return not self.offered and not self.usernames


@dataclass
class World:
    vault: Vault
    device: IosXeDevice
    real: SshFrontend
    real_port: int
    rogue: Rogue

    @property
    def real_fingerprint(self) -> str:
        return str(self.real.host_key.get_fingerprint("sha256"))

    def resource(self, title: str, port: int, **trust: str) -> Record:
        custom = [Field("text", "ssh_port", [str(port)])]
        custom += [Field("text", label, [value]) for label, value in trust.items()]
        return self.vault.add(type="pamNetworkDevice", title=title,
                              fields=[Field("host", None, ["127.0.0.1"])], custom=custom)

    def account(self, resource: Record) -> str:
        """An admin record and a user record rotated over SSH through the admin; the user's uid."""
        admin = self.vault.add(type="login", title=f"{resource.title} admin", fields=[
            Field("login", None, [ADMIN]), Field("password", None, [Secret(ADMIN_PW)])])
        user = self.vault.add(type="pamUser", title=f"{USER} @ {resource.title}", fields=[
            Field("login", None, [USER]), Field("password", None, [Secret(USER_PW)])])
        set_profile(self.vault, user.uid, target="iosxe-ssh", resource=resource.uid, admin=admin.uid,
                    max_attempts=1)
        return user.uid

    async def rotate(self, uid: str) -> RotationResult:
        engine = RotationEngine(self.vault, backoff=0.0)
        try:
            return await engine.rotate(uid)
        finally:
            await engine.aclose()

    def unchanged(self, uid: str) -> bool:
        """The vault still holds the user's password, and the device still takes it."""
        current = self.vault.secret(uid)
        return (current is not None and current.reveal() == USER_PW
                and self.device.authenticate(USER, USER_PW) is not None)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    device = IosXeDevice("sw1")
    device.set_user(ADMIN, kind="secret", clear=ADMIN_PW, privilege=15)
    device.set_user(USER, kind="secret", clear=USER_PW, privilege=15)
    device.save()
    real = SshFrontend(device, Faults())
    real_port = await real.start("127.0.0.1", 0)
    rogue = Rogue()
    vault = Vault.init(Settings(home=tmp_path / "home"))
    try:
        yield World(vault, device, real, real_port, rogue)
    finally:
        vault.close()
        await rogue.stop()
        await real.stop()


def _trust_failure(result: RotationResult) -> None:
    assert result.outcome is Outcome.FAILED, result
    assert result.reason.startswith("trust failure:"), result.reason
    assert "nothing was sent" in result.reason and "will retry" not in result.reason


async def test_no_trust_on_the_resource_refuses_the_rogue(world: World) -> None:
    port = await world.rogue.start()
    uid = world.account(world.resource("core sw1", port))

    result = await world.rotate(uid)

    _trust_failure(result)
    assert f"it presents {world.rogue.fingerprint}" in result.reason
    assert "`keyturn device trust 'core sw1'`" in result.reason
    assert world.rogue.got_nothing, world.rogue.offered
    assert world.unchanged(uid)


async def test_a_pin_for_the_real_device_refuses_the_rogue(world: World) -> None:
    port = await world.rogue.start()
    uid = world.account(world.resource("sw1", port, host_key_fingerprint=world.real_fingerprint))

    result = await world.rotate(uid)

    _trust_failure(result)
    assert "CHANGED since it was pinned" in result.reason
    assert f"pinned {world.real_fingerprint}" in result.reason
    assert f"presents {world.rogue.fingerprint}" in result.reason
    assert "`keyturn device trust sw1 --replace`" in result.reason
    assert world.rogue.got_nothing, world.rogue.offered
    assert world.unchanged(uid)


async def test_accept_any_is_the_explicit_lab_switch(world: World) -> None:
    """The one way to talk to an untrusted key: the resource says so (and the rogue then gets the
    admin password — which is why it is for labs only)."""
    port = await world.rogue.start()
    uid = world.account(world.resource("lab sw1", port, ssh_host_key="accept-any"))

    result = await world.rotate(uid)

    assert result.outcome is Outcome.FAILED
    assert (ADMIN, ADMIN_PW) in world.rogue.offered


async def test_tofu_stores_the_first_key_in_the_vault_then_refuses_the_rogue(world: World) -> None:
    resource = world.resource("sw1", world.real_port, ssh_host_key="tofu")
    uid = world.account(resource)

    first = await world.rotate(uid)

    assert first.outcome is Outcome.ROTATED, first
    pinned = world.vault.get(resource.uid).custom_value("host_key_fingerprint")
    assert pinned == world.real_fingerprint
    trusted = world.vault.audit.list(record_uid=resource.uid, action="device.trust")
    assert [(e.actor, e.details["host_key_fingerprint"]) for e in trusted] == [
        ("tofu", {"old": None, "new": world.real_fingerprint})]
    rotated = world.vault.secret(uid)
    assert rotated is not None and world.device.authenticate(USER, rotated.reveal()) is not None

    # the rogue takes over the device's address (same port), with its own key
    await world.real.stop()
    await world.rogue.start(world.real_port)

    second = await world.rotate(uid)

    _trust_failure(second)
    assert "CHANGED since it was pinned" in second.reason
    assert f"pinned {world.real_fingerprint}" in second.reason
    assert f"presents {world.rogue.fingerprint}" in second.reason
    assert "`keyturn device trust sw1 --replace`" in second.reason
    assert world.rogue.got_nothing, world.rogue.offered
    # the stored pin stays: a changed key is never stored by tofu, only by a person with --replace
    assert world.vault.get(resource.uid).custom_value("host_key_fingerprint") == world.real_fingerprint
    assert len(world.vault.audit.list(record_uid=resource.uid, action="device.trust")) == 1
    assert world.vault.secret(uid) == rotated
