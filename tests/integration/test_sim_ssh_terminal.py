"""Byte-level terminal behaviour and fault switches of the SSH simulator, seen by an asyncssh client."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncssh
import pytest

from keyturn.sim.faults import Faults
from keyturn.sim.iosxe_device import BOTH_ERROR, IosXeDevice
from keyturn.sim.iosxe_ssh import SshFrontend, generate_host_key

HOST_KEY = generate_host_key()
ADMIN, ADMIN_PW, OPS, OPS_PW, ENABLE = "admin", "Adm1n-pw", "ops", "0ps-pw", "En4ble-secret"


@dataclass
class Lab:
    device: IosXeDevice
    faults: Faults
    frontend: SshFrontend
    port: int


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    device = IosXeDevice("r1")
    device.set_user(ADMIN, kind="secret", clear=ADMIN_PW, privilege=15)
    device.set_user(OPS, kind="password", clear=OPS_PW, privilege=1)
    device.set_enable_secret(ENABLE)
    device.save()
    faults = Faults()
    frontend = SshFrontend(device, faults, host_key=HOST_KEY)
    port = await frontend.start()
    yield Lab(device, faults, frontend, port)
    await frontend.stop()


class Terminal:
    """An interactive vty as a person (or expect script) sees it."""

    def __init__(self, conn: asyncssh.SSHClientConnection, proc: asyncssh.SSHClientProcess[str]) -> None:
        self.conn, self.proc, self.buffer = conn, proc, ""

    @classmethod
    async def open(cls, port: int, username: str = ADMIN, password: str = ADMIN_PW) -> Terminal:
        conn = await asyncssh.connect("127.0.0.1", port, username=username, password=password,
                                      known_hosts=None, preferred_auth="password")
        proc = await conn.create_process(term_type="vt100", term_size=(511, 1000))
        return cls(conn, proc)

    async def read_until(self, marker: str, timeout: float = 10) -> str:
        async def fill() -> str:
            while marker not in self.buffer:
                chunk = await self.proc.stdout.read(4096)
                if not chunk:
                    raise EOFError(f"closed before {marker!r}; got {self.buffer!r}")
                self.buffer += chunk
            head, _, self.buffer = self.buffer.partition(marker)
            return head + marker

        return await asyncio.wait_for(fill(), timeout)

    async def command(self, line: str, prompt: str = "r1#") -> str:
        self.proc.stdin.write(line + "\r")
        return await self.read_until(prompt)

    async def closed(self) -> bool:
        """True once the server has closed the session (EOF, or the connection lost outright)."""
        try:
            while chunk := await asyncio.wait_for(self.proc.stdout.read(4096), 10):
                self.buffer += chunk
        except asyncssh.ConnectionLost:
            pass
        return True

    def close(self) -> None:
        self.conn.close()


async def test_echo_crlf_and_prompt_reprint(lab: Lab) -> None:
    term = await Terminal.open(lab.port)
    assert await term.read_until("r1#") == "r1#"
    assert await term.command("show privilege") == "show privilege\r\nCurrent privilege level is 15\r\nr1#"
    assert await term.command("") == "\r\nr1#"
    uptime = await term.command("sh ver | i uptime")
    assert re.fullmatch(r"sh ver \| i uptime\r\nr1 uptime is \d+ days, \d+ hours, \d+ minutes\r\nr1#", uptime)
    term.close()


async def test_enable_password_is_not_echoed(lab: Lab) -> None:
    term = await Terminal.open(lab.port, OPS, OPS_PW)
    await term.read_until("r1>")
    assert await term.command("enable", "Password: ") == "enable\r\nPassword: "
    assert await term.command(ENABLE) == "\r\nr1#"
    term.close()


async def test_error_outputs_are_exact(lab: Lab) -> None:
    term = await Terminal.open(lab.port)
    await term.read_until("r1#")
    assert await term.command("show bogus") == (
        "show bogus\r\n        ^\r\n% Invalid input detected at '^' marker.\r\n\r\nr1#")
    assert await term.command("c") == 'c\r\n% Ambiguous command:  "c"\r\n\r\nr1#'
    await term.command("conf t", "r1(config)#")
    assert await term.command("username bob privlege 15 secret x", "r1(config)#") == (
        "username bob privlege 15 secret x\r\n"
        "                        ^\r\n% Invalid input detected at '^' marker.\r\n\r\nr1(config)#")
    assert await term.command("username ops secret 0 Xyz", "r1(config)#") == (
        "username ops secret 0 Xyz\r\n" + BOTH_ERROR.replace("\n", "\r\n") + "\r\nr1(config)#")
    assert await term.command("username", "r1(config)#") == (
        "username\r\n% Incomplete command.\r\n\r\nr1(config)#")
    term.close()


async def test_ctrl_v_quotes_question_mark_and_ctrl_z_ends(lab: Lab) -> None:
    term = await Terminal.open(lab.port)
    await term.read_until("r1#")
    await term.command("conf t", "r1(config)#")
    await term.command("username bob privilege 15 secret 0 wh\x16?not", "r1(config)#")
    term.proc.stdin.write("\x1a")
    assert await term.read_until("r1#") == "^Z\r\nr1#"
    assert lab.device.authenticate("bob", "wh?not") is not None
    term.close()


async def test_no_username_confirm_takes_a_single_key(lab: Lab) -> None:
    term = await Terminal.open(lab.port)
    await term.read_until("r1#")
    await term.command("conf t", "r1(config)#")
    assert (await term.command("no username ops", "[confirm]")).endswith("Do you want to continue? [confirm]")
    term.proc.stdin.write("y")    # Ansible answers without a newline
    await term.read_until("r1(config)#")
    assert lab.device.user("ops") is None
    term.close()


async def test_exec_request_runs_one_command(lab: Lab) -> None:
    async with asyncssh.connect("127.0.0.1", lab.port, username=ADMIN, password=ADMIN_PW,
                                known_hosts=None) as conn:
        result = await conn.run("show privilege", timeout=10)
    assert result.stdout == "Current privilege level is 15\r\n"
    assert result.exit_status == 0


async def test_bad_password_is_rejected(lab: Lab) -> None:
    with pytest.raises(asyncssh.PermissionDenied):
        await Terminal.open(lab.port, ADMIN, "wrong")


# ---- fault switches ---------------------------------------------------------------------------

async def test_fault_down_refuses_connections(lab: Lab) -> None:
    lab.faults.update(down=True)
    with pytest.raises((asyncssh.Error, OSError)):
        await asyncio.wait_for(Terminal.open(lab.port), 10)
    lab.faults.update(down=False)
    term = await Terminal.open(lab.port)
    await term.read_until("r1#")
    term.close()


async def test_fault_latency_delays_every_answer(lab: Lab) -> None:
    term = await Terminal.open(lab.port)
    await term.read_until("r1#")
    lab.faults.update(latency=60.0)
    term.proc.stdin.write("show privilege\r")
    with pytest.raises(asyncio.TimeoutError):
        await term.read_until("level", timeout=0.5)
    term.close()


async def test_fault_timeout_leaves_the_session_silent(lab: Lab) -> None:
    term = await Terminal.open(lab.port)
    await term.read_until("r1#")
    lab.faults.update(timeout_rate=1.0)
    term.proc.stdin.write("show privilege\r")
    with pytest.raises(asyncio.TimeoutError):
        await term.read_until("level", timeout=0.5)
    lab.faults.update(timeout_rate=0.0)
    term.proc.stdin.write("show privilege\r")
    with pytest.raises(asyncio.TimeoutError):
        await term.read_until("level", timeout=0.5)
    assert not term.proc.stdout.at_eof()
    term.close()


async def test_fault_reset_closes_the_connection(lab: Lab) -> None:
    term = await Terminal.open(lab.port)
    await term.read_until("r1#")
    lab.faults.update(reset_rate=1.0)
    term.proc.stdin.write("conf t\r")
    assert await term.closed()
    assert "Enter configuration" not in term.buffer
    term.close()


async def test_fault_drop_after_apply_applies_then_drops(lab: Lab) -> None:
    lab.faults.update(drop_after_apply=1)
    term = await Terminal.open(lab.port)
    await term.read_until("r1#")
    await term.command("conf t", "r1(config)#")
    term.proc.stdin.write("username admin algorithm-type scrypt secret Appl1ed-pw\r")
    assert await term.closed()
    assert "r1(config)#" not in term.buffer
    assert lab.device.authenticate(ADMIN, "Appl1ed-pw") is not None
    assert lab.faults.drop_after_apply == 0
    term.close()
    again = await Terminal.open(lab.port, ADMIN, "Appl1ed-pw")
    await again.read_until("r1#")
    await again.command("conf t", "r1(config)#")
    assert await again.command("username admin secret 0 Sec0nd-pw", "r1(config)#") == \
        "username admin secret 0 Sec0nd-pw\r\nr1(config)#"
    again.close()


async def test_fault_refuse_passwords(lab: Lab) -> None:
    lab.faults.update(refuse_passwords=1)
    term = await Terminal.open(lab.port)
    await term.read_until("r1#")
    await term.command("conf t", "r1(config)#")
    out = await term.command("username ops password 0 Refused-pw", "r1(config)#")
    assert out.split("\r\n")[1].startswith("% Password")
    assert lab.device.authenticate(OPS, OPS_PW) is not None
    assert lab.faults.refuse_passwords == 0
    term.close()
