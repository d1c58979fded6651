"""Real third-party SSH clients against the IOS XE SSH simulator, unmodified.

netmiko and classic scrapli are blocking, so the simulator runs on its own event loop in a thread
(`ThreadedDevice`); the asyncssh-based scrapli driver runs on the test's loop.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncssh
import pytest

from keyturn.sim.faults import Faults
from keyturn.sim.iosxe_device import IosXeDevice
from keyturn.sim.iosxe_ssh import SshFrontend, generate_host_key

HOST_KEY = generate_host_key()
ADMIN, ADMIN_PW = "admin", "Adm1n-pw"
OPS, OPS_PW = "ops", "0ps-pw"
ENABLE = "En4ble-secret"
NEW_SECRET = "N3w!Pa55-word"
T = TypeVar("T")


def make_device(name: str = "r1") -> IosXeDevice:
    device = IosXeDevice(name)
    device.set_user(ADMIN, kind="secret", clear=ADMIN_PW, privilege=15)
    device.set_user(OPS, kind="secret", clear=OPS_PW, privilege=1)
    device.set_user("bob", kind="secret", clear="0ld-bob-pw", privilege=15)
    device.set_enable_secret(ENABLE)
    device.save()
    return device


@dataclass
class ThreadedDevice:
    device: IosXeDevice
    faults: Faults
    frontend: SshFrontend
    port: int
    loop: asyncio.AbstractEventLoop

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the simulator's loop (the device is not thread-safe)."""

        async def wrapper() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(10)


@pytest.fixture
def threaded_device() -> Iterator[ThreadedDevice]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    device, faults = make_device(), Faults()
    frontend = SshFrontend(device, faults, host_key=HOST_KEY)
    port = asyncio.run_coroutine_threadsafe(frontend.start(), loop).result(10)
    try:
        yield ThreadedDevice(device, faults, frontend, port, loop)
    finally:
        asyncio.run_coroutine_threadsafe(frontend.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def can_login(port: int, username: str, password: str) -> bool:
    async def attempt() -> bool:
        try:
            async with asyncssh.connect("127.0.0.1", port, username=username, password=password,
                                        known_hosts=None, preferred_auth="password"):
                return True
        except asyncssh.PermissionDenied:
            return False

    return asyncio.run(attempt())


def netmiko_params(port: int, **extra: Any) -> dict[str, Any]:
    return {"device_type": "cisco_xe", "host": "127.0.0.1", "port": port, "username": OPS,
            "password": OPS_PW, "secret": ENABLE, **extra}


def test_netmiko_rotates_saves_and_the_new_secret_logs_in(threaded_device: ThreadedDevice) -> None:
    from netmiko import ConnectHandler

    port = threaded_device.port
    with ConnectHandler(**netmiko_params(port)) as conn:
        assert conn.find_prompt() == "r1>"
        conn.enable()
        assert conn.find_prompt() == "r1#"
        out = conn.send_config_set([f"username bob privilege 15 algorithm-type scrypt secret {NEW_SECRET}"],
                                   error_pattern=r"^%|^ERROR:")
        assert "r1(config)#" in out
        assert "Building configuration" in conn.save_config()
        shown = conn.send_command("show running-config | include ^username bob")
        assert shown.startswith("username bob privilege 15 secret 9 $9$")
    assert can_login(port, "bob", NEW_SECRET)
    assert not can_login(port, "bob", "0ld-bob-pw")
    threaded_device.call(threaded_device.device.reboot)
    assert can_login(port, "bob", NEW_SECRET)   # saved, so it survives a reload


def test_netmiko_change_without_save_is_lost_on_reboot(threaded_device: ThreadedDevice) -> None:
    from netmiko import ConnectHandler

    port = threaded_device.port
    with ConnectHandler(**netmiko_params(port, username=ADMIN, password=ADMIN_PW)) as conn:
        conn.send_config_set([f"username bob secret 0 {NEW_SECRET}"])
    assert can_login(port, "bob", NEW_SECRET)
    threaded_device.call(threaded_device.device.reboot)
    assert not can_login(port, "bob", NEW_SECRET)
    assert can_login(port, "bob", "0ld-bob-pw")


def test_netmiko_wrong_enable_secret_fails(threaded_device: ThreadedDevice) -> None:
    from netmiko import ConnectHandler

    with ConnectHandler(**netmiko_params(threaded_device.port, secret="wrong")) as conn, \
            pytest.raises(ValueError, match="enable mode"):
        conn.enable()


# scrapli's system transport leaks its pty file object on close (a third-party ResourceWarning).
SYSTEM_LEAK = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.mark.parametrize("transport", ["paramiko", pytest.param("system", marks=SYSTEM_LEAK)])
def test_scrapli_sync_rotates(threaded_device: ThreadedDevice, transport: str) -> None:
    if transport == "system" and shutil.which("ssh") is None:
        pytest.skip("no OpenSSH client binary")
    from scrapli.driver.core import IOSXEDriver

    port = threaded_device.port
    conn = IOSXEDriver(host="127.0.0.1", port=port, auth_username=OPS, auth_password=OPS_PW,
                       auth_secondary=ENABLE, auth_strict_key=False, ssh_config_file=False,
                       transport=transport, timeout_ops=20)
    conn.open()
    try:
        assert conn.get_prompt() == "r1#"
        result = conn.send_configs([f"username bob privilege 15 algorithm-type scrypt secret {NEW_SECRET}"])
        assert not result.failed
        assert "[OK]" in conn.send_command("write memory").result
        bad = conn.send_command("show bogus")
        assert bad.failed
        assert "% Invalid input detected at '^' marker." in bad.result
    finally:
        conn.close()
    assert can_login(port, "bob", NEW_SECRET)
    assert not can_login(port, "bob", "0ld-bob-pw")
    threaded_device.call(threaded_device.device.reboot)
    assert can_login(port, "bob", NEW_SECRET)


async def test_scrapli_async_asyncssh_transport_rotates() -> None:
    from scrapli.driver.core import AsyncIOSXEDriver

    device = make_device()
    frontend = SshFrontend(device, Faults(), host_key=HOST_KEY)
    port = await frontend.start()
    try:
        conn = AsyncIOSXEDriver(host="127.0.0.1", port=port, auth_username=OPS, auth_password=OPS_PW,
                                auth_secondary=ENABLE, auth_strict_key=False, transport="asyncssh",
                                timeout_ops=20)
        await conn.open()
        try:
            result = await conn.send_configs([f"username bob algorithm-type scrypt secret {NEW_SECRET}"])
            assert not result.failed
            privilege = await conn.send_command("show privilege")
            assert privilege.result == "Current privilege level is 15"
        finally:
            await conn.close()
        assert device.authenticate("bob", NEW_SECRET) is not None
        assert device.user("bob").privilege == 15  # type: ignore[union-attr]
        device.reboot()
        assert device.authenticate("bob", NEW_SECRET) is None   # never saved
    finally:
        await frontend.stop()
