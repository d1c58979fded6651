"""IOS XE SSH front-end: an asyncssh server that puts a `CliSession` behind a vty.

    frontend = SshFrontend(device, faults, host_key=shared_key)
    port = await frontend.start()            # 127.0.0.1, ephemeral port
    ...
    await frontend.stop()

Logins are checked with `device.authenticate` (password or keyboard-interactive), which follows the
device's AAA method list; the answer waits the TACACS+ timeout when that server is unreachable, plus
`login_latency` (key exchange and AAA on a slow control-plane CPU, ~1 s on real devices, reference §6).
Users land at their exec level: privilege 15 in `host#`, everyone else — and everyone on a device with
`aaa new-model` but no exec authorization — in `host>`. In `login block-for` quiet mode a connection is
closed before the SSH banner (the device's quiet-mode ACL refuses it). An interactive
shell behaves like a vty line, which is what netmiko, scrapli and Ansible `network_cli` expect: typed
characters are echoed as they are read (type-ahead is not echoed early, so a password typed ahead of
the `Password:` prompt never appears on screen), Enter echoes CRLF, output uses CRLF, the prompt is
printed again after every input, backspace / Ctrl-U edit the line, Ctrl-V quotes the next key, and
Ctrl-Z / Ctrl-C leave configuration mode. An `exec` request runs one command and closes. Not modelled:
`?` context help (a `?` is taken literally, so a client that forgets the Ctrl-V escape a real device
needs will not notice here) and Tab completion.

The asyncssh line editor is off on purpose: it wraps long lines with cursor sequences that break
clients' echo matching and it echoes type-ahead before the session can turn echo off.

Fault switches (`sim/faults.py`), read per connection or per input:
    down              connection closed at once, before the SSH banner
    latency           seconds before every answer
    reset_rate        probability a command's connection is aborted (no SSH disconnect message)
    timeout_rate      probability a command is never answered; the session then stays silent
    drop_after_apply  a password/secret change is applied, then the connection is aborted unanswered
    refuse_passwords  a password/secret change is refused with a `% Password ...` policy line
One listener per device; a lab runs many front-ends in one event loop and shares one host key.

Algorithm profiles (`SSH_PROFILES`, reference §5): "default" is asyncssh's own modern set with an
ed25519 host key; "ios-17" is what `show ip ssh` lists on 17.x (RSA host key, ECDH and group14-sha1 key
exchange, AES-GCM/CTR); "ios-legacy" is an older release: `diffie-hellman-group14-sha1`, `ssh-rsa`,
`hmac-sha1`, AES-CTR only. Clients that dropped those (paramiko 5, hence netmiko) cannot reach a
legacy device, as in the field. `write_latency` is how long `write memory` takes (1-3 s on real devices).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import warnings
from collections.abc import Mapping

import asyncssh

from keyturn.errors import SimulatorError
from keyturn.sim.faults import Faults
from keyturn.sim.iosxe_cli import CliSession, EnableStyle, Reply
from keyturn.sim.iosxe_device import IosXeDevice
from keyturn.sim.iosxe_profile import SSH_PROFILE_NAMES
from keyturn.sim.iosxe_profile import SshProfileName as SshProfile

_ENTER = "\r\n"
_INTERRUPT_KEYS = {"\x1a": "^Z", "\x03": "^C"}
_ERASE_KEYS = ("\x08", "\x7f")
_KILL_LINE = "\x15"
_QUOTE_NEXT = "\x16"

# Algorithm sets per profile (asyncssh option names), reference §5. Profiles other than "default" need
# an RSA host key.
SSH_PROFILES: dict[SshProfile, dict[str, list[str]]] = {
    "default": {},
    "ios-17": {
        "kex_algs": ["ecdh-sha2-nistp256", "ecdh-sha2-nistp384", "ecdh-sha2-nistp521",
                     "diffie-hellman-group-exchange-sha1", "diffie-hellman-group14-sha1"],
        "signature_algs": ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
        "encryption_algs": ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
                            "aes128-ctr", "aes192-ctr", "aes256-ctr"],
        "mac_algs": ["hmac-sha2-256", "hmac-sha2-512", "hmac-sha1"],
    },
    "ios-legacy": {
        "kex_algs": ["diffie-hellman-group14-sha1"],
        "signature_algs": ["ssh-rsa"],
        "encryption_algs": ["aes128-ctr", "aes192-ctr", "aes256-ctr"],
        "mac_algs": ["hmac-sha1"],
    },
}


class _Interrupted(Exception):
    """Ctrl-Z / Ctrl-C while reading a line."""


class _Closed(Exception):
    """The channel or connection went away."""


def generate_host_key(profile: SshProfile = "default") -> asyncssh.SSHKey:
    """A fresh host key for `profile`: ed25519 by default, else RSA 2048 (`crypto key generate rsa`)."""
    if profile == "default":
        return asyncssh.generate_private_key("ssh-ed25519")
    return asyncssh.generate_private_key("ssh-rsa", key_size=2048)


def _allow_finite_field_dh() -> None:
    # The IOS profiles offer diffie-hellman-group14-sha1 on purpose; cryptography flags finite-field DH
    # as deprecated each time asyncssh uses it. Silence exactly that notice from asyncssh's DH module.
    from cryptography.utils import CryptographyDeprecationWarning

    warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning, module=r"asyncssh\.crypto\.dh")


class SshFrontend:
    """SSH CLI for one simulated device. `start()` binds and returns the port; `stop()` closes the
    listener and aborts open sessions. Not thread-safe: use from one event loop."""

    def __init__(
        self, device: IosXeDevice, faults: Faults, *, host_key: asyncssh.SSHKey | None = None,
        profile: SshProfile = "default",
    ) -> None:
        if profile not in SSH_PROFILES:
            raise SimulatorError(f"unknown SSH profile {profile!r}; known: {', '.join(SSH_PROFILE_NAMES)}")
        self.device = device
        self.faults = faults
        self.profile: SshProfile = profile
        self.host_key = host_key or generate_host_key(profile)
        self.booted_at = time.monotonic()
        self.enable_style: EnableStyle = "aaa"   # how a wrong enable secret is answered (iosxe_cli)
        self.login_latency = 0.0                 # seconds added before a login is answered
        self.write_latency = 0.0                 # seconds `write memory` takes
        self.sessions_opened = 0
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def connections_open(self) -> int:
        """SSH connections open now (a vty line each on a real device)."""
        return len(self._connections)

    @property
    def port(self) -> int | None:
        return None if self._acceptor is None else int(self._acceptor.get_port())

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        if self._acceptor is not None:
            raise SimulatorError(f"SSH front-end for {self.device.name} is already running")
        algorithms = SSH_PROFILES[self.profile]
        if any(k.startswith("diffie-hellman") for k in algorithms.get("kex_algs", [])):
            _allow_finite_field_dh()
        try:
            self._acceptor = await asyncssh.create_server(
                lambda: _DeviceServer(self), host, port,
                server_host_keys=[self.host_key], line_editor=False,
                encoding="utf-8", errors="replace", **algorithms,
            )
        except OSError as exc:
            raise SimulatorError(f"cannot listen on {host}:{port} for {self.device.name}: {exc}") from exc
        return int(self._acceptor.get_port())

    async def stop(self) -> None:
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is not None:
            acceptor.close()
            await acceptor.wait_closed()
        for conn in list(self._connections):
            conn.abort()
        tasks = list(self._tasks)
        if tasks:
            # Sessions end on their own once their connection is gone; cancel any that do not.
            _, pending = await asyncio.wait(tasks, timeout=2)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._connections.clear()
        # Let aborted transports finish closing before the caller may close the loop.
        for _ in range(3):
            await asyncio.sleep(0)

    def _track(self, conn: asyncssh.SSHServerConnection, alive: bool) -> None:
        if alive:
            self._connections.add(conn)
        else:
            self._connections.discard(conn)


class _DeviceServer(asyncssh.SSHServer):
    """Per-connection server object: authentication and session creation."""

    def __init__(self, frontend: SshFrontend) -> None:
        self._frontend = frontend
        self._conn: asyncssh.SSHServerConnection | None = None
        self._privilege = 1

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        if self._frontend.faults.down or self._frontend.device.refuse_in_quiet_mode():
            conn.abort()
            return
        self._frontend._track(conn, True)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._frontend._track(self._conn, False)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        device = self._frontend.device
        delay = self._frontend.login_latency + device.login_delay("ssh")
        if delay > 0:
            await asyncio.sleep(delay)
        user = device.authenticate(username, password, service="ssh")
        if user is None:
            return False
        self._privilege = device.exec_level(user)
        return True

    def session_requested(self) -> _VtySession:
        assert self._conn is not None
        self._frontend.sessions_opened += 1
        return _VtySession(self._frontend, self._conn, self._privilege)


class _VtySession(asyncssh.SSHServerSession[str]):
    """One shell or exec channel: a line discipline in front of a `CliSession`."""

    def __init__(self, frontend: SshFrontend, conn: asyncssh.SSHServerConnection, privilege: int) -> None:
        self._frontend = frontend
        self._conn = conn
        self._cli = CliSession(frontend.device, privilege=privilege, faults=frontend.faults,
                               booted_at=frontend.booted_at, enable_style=frontend.enable_style,
                               write_delay=frontend.write_latency)
        self._chan: asyncssh.SSHServerChannel[str] | None = None
        self._command: str | None = None
        self._buf = ""
        self._pos = 0
        self._after_cr = False
        self._echo: list[str] = []
        self._closed = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ---- asyncssh callbacks ---------------------------------------------------------------------
    def connection_made(self, chan: asyncssh.SSHServerChannel[str]) -> None:
        self._chan = chan

    def pty_requested(self, term_type: str, term_size: tuple[int, int, int, int],
                      term_modes: Mapping[int, int]) -> bool:
        return True

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        self._command = command
        return True

    def session_started(self) -> None:
        task = asyncio.get_running_loop().create_task(self._run())
        self._task = task
        self._frontend._tasks.add(task)
        task.add_done_callback(self._frontend._tasks.discard)

    def data_received(self, data: str, datatype: asyncssh.DataType) -> None:
        self._buf = self._buf[self._pos:] + data
        self._pos = 0
        self._wake.set()

    def eof_received(self) -> bool:
        self._closed = True
        self._wake.set()
        return False

    def break_received(self, msec: int) -> bool:
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._wake.set()

    # ---- the session loop -----------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            if self._command is not None:
                reply = await self._execute(self._command)
                if reply is not None:
                    self._write(reply.text)
                    self._exit()
                return
            self._write(self._cli.prompt)
            while True:
                try:
                    mode = self._cli.input_mode
                    line = await (self._read_key() if mode == "char" else self._read_line(mode == "line"))
                except _Interrupted:
                    self._cli.interrupt()
                    self._write(self._cli.prompt)
                    continue
                reply = await self._execute(line)
                if reply is None:
                    return
                self._write(reply.text)
                if reply.close:
                    self._exit()
                    return
                self._write(self._cli.prompt)
        except _Closed:
            return

    async def _execute(self, line: str) -> Reply | None:
        """Run one input through the faults and the CLI; None when the fault ate the answer."""
        faults = self._frontend.faults
        if line.strip():
            if faults.down or faults.roll(faults.reset_rate):
                self._conn.abort()
                return None
            if faults.roll(faults.timeout_rate):
                await self._stay_silent()
                return None
        if faults.latency > 0:
            await asyncio.sleep(faults.latency)
        reply = self._cli.handle(line)
        if reply.delay > 0:
            await asyncio.sleep(reply.delay)
        if reply.applied and faults.take("drop_after_apply"):
            self._conn.abort()
            return None
        return reply

    async def _stay_silent(self) -> None:
        # A hung vty: input is swallowed, nothing is echoed, the connection stays open.
        while not self._closed:
            self._pos = len(self._buf)
            self._wake.clear()
            await self._wake.wait()

    # ---- line discipline ------------------------------------------------------------------------
    async def _next_char(self) -> str:
        while self._pos >= len(self._buf):
            self._flush_echo()
            if self._closed:
                raise _Closed
            self._wake.clear()
            await self._wake.wait()
        ch = self._buf[self._pos]
        self._pos += 1
        return ch

    async def _read_key(self) -> str:
        """One raw key, as IOS reads the answer to `[confirm]` or `--More--`."""
        ch = await self._next_char()
        while self._after_cr and ch == "\n":
            self._after_cr = False
            ch = await self._next_char()
        self._after_cr = ch == "\r"
        return ch

    async def _read_line(self, echo: bool) -> str:
        line: list[str] = []
        while True:
            ch = await self._next_char()
            if self._after_cr and ch == "\n":   # CRLF is one Enter
                self._after_cr = False
                continue
            self._after_cr = ch == "\r"
            if ch in "\r\n":
                self._write(_ENTER)
                return "".join(line)
            if ch == _QUOTE_NEXT:
                ch = await self._next_char()
            elif ch in _INTERRUPT_KEYS:
                self._write(_INTERRUPT_KEYS[ch] + _ENTER)
                raise _Interrupted
            elif ch in _ERASE_KEYS:
                if line:
                    line.pop()
                    if echo:
                        self._echo.append("\b \b")
                continue
            elif ch == _KILL_LINE:
                if echo and line:
                    self._echo.append("\b \b" * len(line))
                line.clear()
                continue
            elif not ch.isprintable():
                continue
            line.append(ch)
            if echo:
                self._echo.append(ch)

    def _flush_echo(self) -> None:
        # Echo is batched per received chunk: one packet per chunk, not one per key.
        if self._echo:
            text, self._echo = "".join(self._echo), []
            self._write(text)

    def _write(self, text: str) -> None:
        if self._echo:
            self._flush_echo()
        if text and self._chan is not None and not self._closed:
            with contextlib.suppress(asyncssh.Error, OSError):
                self._chan.write(text.replace("\r\n", "\n").replace("\n", "\r\n"))

    def _exit(self) -> None:
        if self._chan is not None and not self._closed:
            with contextlib.suppress(asyncssh.Error, OSError):
                self._chan.exit(0)
