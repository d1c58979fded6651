"""iosxe-ssh keeps one admin session per rotation (issue 14), against the SSH simulator.

A verified rotation used to open six SSH connections (the admin for the stored-hash read, the change,
`write memory` and the second read; the user for the two login proofs); the admin's session is now
kept between those steps, so it opens three. It is reused only by the rotation (the `ProbeLedger` of
the `Account`) that opened it, never after an error, never once closed by the device, and not after
`ADMIN_IDLE_SECONDS`; `aclose` closes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import pytest

from keyturn.errors import ChangeRejected
from keyturn.secret import Secret
from keyturn.sim.faults import Faults
from keyturn.sim.iosxe_device import IosXeDevice
from keyturn.sim.iosxe_ssh import SshFrontend
from keyturn.targets import iosxe_ssh
from keyturn.targets.base import Account, AdminCredential, Endpoint, ProbeLedger, Verdict
from keyturn.targets.iosxe_ssh import IosXeSshTarget

ADMIN_PW, OLD, NEW = "Adm1n-pw", "0ld-Bob-pw", "N3w-Bob-pw"


@dataclass
class Lab:
    device: IosXeDevice
    frontend: SshFrontend
    target: IosXeSshTarget
    account: Account

    def rotation(self) -> Account:
        """The account as a new rotation sees it: a fresh probe ledger."""
        return replace(self.account, probes=ProbeLedger())

    async def open_connections(self, expected: int) -> int:
        """The device's open SSH connections, once it has seen `expected` (closing is asynchronous)."""
        for _ in range(100):
            if self.frontend.connections_open == expected:
                break
            await asyncio.sleep(0.01)
        return self.frontend.connections_open


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    device = IosXeDevice("sw1")
    device.set_user("admin", kind="secret", clear=ADMIN_PW, privilege=15)
    device.set_user("bob", kind="secret", clear=OLD, privilege=15)
    device.save()
    frontend = SshFrontend(device, Faults())
    port = await frontend.start("127.0.0.1", 0)
    pin = str(frontend.host_key.get_fingerprint("sha256"))
    endpoint = Endpoint(host="127.0.0.1", ssh_port=port, options={"host_key_fingerprint": pin})
    account = Account(record_uid="r1", username="bob", endpoint=endpoint,
                      admin=AdminCredential("admin", Secret(ADMIN_PW)))
    target = IosXeSshTarget(timeout=10.0)
    try:
        yield Lab(device, frontend, target, account)
    finally:
        await target.aclose()
        await frontend.stop()


async def test_a_verified_rotation_opens_three_sessions_not_six(lab: Lab) -> None:
    account = lab.rotation()
    assert (await lab.target.check(account, Secret(OLD))).verdict is Verdict.OK   # admin read + user login
    await lab.target.change(account, Secret(OLD), Secret(NEW))
    await lab.target.persist(account, Secret(NEW))
    assert (await lab.target.check(account, Secret(NEW))).verdict is Verdict.OK   # admin read + user login
    assert lab.frontend.sessions_opened == 3        # one admin session, two login proofs
    saved = lab.device.startup.users["bob"].credential
    assert saved is not None and saved.matches(NEW)  # `write memory` on the kept session did save
    assert await lab.open_connections(1) == 1       # the admin's, idle until the rotation's next step
    await lab.target.aclose()
    assert await lab.open_connections(0) == 0


async def test_another_rotation_opens_its_own_and_closes_the_leftover(lab: Lab) -> None:
    first, second = lab.rotation(), lab.rotation()
    await lab.target.change(first, Secret(OLD), Secret(NEW))
    assert lab.frontend.sessions_opened == 1
    await lab.target.change(second, Secret(NEW), Secret(OLD))
    assert lab.frontend.sessions_opened == 2        # not the first rotation's session
    assert await lab.open_connections(1) == 1       # and the first one's is closed
    await lab.target.persist(second, Secret(OLD))
    assert lab.frontend.sessions_opened == 2


async def test_an_error_closes_the_session(lab: Lab) -> None:
    account = lab.rotation()
    lab.frontend.faults.update(refuse_passwords=1)
    with pytest.raises(ChangeRejected):
        await lab.target.change(account, Secret(OLD), Secret(NEW))
    assert await lab.open_connections(0) == 0
    lab.frontend.faults.update(refuse_passwords=0)
    await lab.target.change(account, Secret(OLD), Secret(NEW))
    assert lab.frontend.sessions_opened == 2


async def test_a_session_the_device_closed_is_not_reused(lab: Lab) -> None:
    account = lab.rotation()
    await lab.target.change(account, Secret(OLD), Secret(NEW))
    await lab.frontend.stop()                       # aborts every session, as a reload would
    port = lab.account.endpoint.ssh_port
    assert port is not None
    await lab.frontend.start("127.0.0.1", port)
    await asyncio.sleep(0.05)
    await lab.target.persist(account, Secret(NEW))  # a new session, not the dead one
    assert lab.frontend.sessions_opened == 2


async def test_an_idle_session_is_closed_after_the_idle_time(lab: Lab,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(iosxe_ssh, "ADMIN_IDLE_SECONDS", 0.05)
    account = lab.rotation()
    await lab.target.change(account, Secret(OLD), Secret(NEW))
    await asyncio.sleep(0.2)
    assert await lab.open_connections(0) == 0
    await lab.target.persist(account, Secret(NEW))
    assert lab.frontend.sessions_opened == 2


async def test_self_service_sessions_are_never_kept(lab: Lab) -> None:
    account = replace(lab.rotation(), admin=None)
    await lab.target.change(account, Secret(OLD), Secret(NEW))
    assert await lab.open_connections(0) == 0
    await lab.target.persist(account, Secret(NEW))
    assert lab.frontend.sessions_opened == 2
