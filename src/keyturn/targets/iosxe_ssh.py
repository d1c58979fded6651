"""`iosxe-ssh` and `iosxe-enable-secret`: rotate IOS XE secrets over the SSH CLI.

Built on asyncssh directly with a small prompt-driven session (one coroutine per device, no thread):
the dialogue is six commands, and owning it lets us keep the secret out of every error text (the vty
echoes what we type), escape `?` with Ctrl-V, and check the IOS error table below — classic scrapli's
failure list misses ``ERROR: Can not have both`` and ``% Invalid Password length`` anyway
(reference cisco-iosxe.md §4.4).

The dialogue (§4.1): log in (the admin, or the user with its old secret) → ``enable`` when the login
lands in ``>`` (with `Account.enable_secret`, else the admin's) → check the user exists
(``show running-config | include ^username NAME``; rotation never creates accounts) →
``configure terminal`` → ``username NAME algorithm-type scrypt secret NEW`` (privilege is kept; a user
holding a reversible password gets ``username NAME password 0 NEW`` unless the profile option
``mode=secret`` insists) →
``end``. `persist` runs ``write memory`` and expects ``[OK]``. `verify` is a fresh login as the user.

One admin session per rotation (issue 14): the admin's vty session of `iosxe-ssh` is kept between the
steps of one rotation — the stored-hash read of verify current, the change, ``write memory`` and the
read of verify new share it (one key exchange, host-key check and password login instead of four) —
and only while idle at the ``#`` prompt for at most `ADMIN_IDLE_SECONDS`. A session is reused only by
the rotation that opened it (the `ProbeLedger` of its `Account`, fresh per rotation), so no state or
stale credential crosses rotations; any error closes it, and the next rotation on the device closes a
leftover one. The user's own logins (the login proofs) are always fresh connections.

Host keys (`keyturn.targets.ssh_trust`): no credential is sent to a server whose host key the
resource record does not trust — a pinned ``host_key_fingerprint`` (`keyturn device trust RECORD`), an
``ssh_known_hosts`` file, ``ssh_host_key=tofu`` (the first key seen is stored in the vault through the
`HostKeyRecorder` the engine gives the target) or, for labs, ``ssh_host_key=accept-any``. Anything else
is refused during the key exchange with `HostKeyNotTrusted` / `HostKeyChanged`, before authentication.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import asyncssh

from keyturn.cisco_hash import parse_cli_username
from keyturn.errors import (
    AccountNotFound,
    ChangeRejected,
    HostKeyNotTrusted,
    ProfileError,
    TargetAuthRejected,
    TargetError,
    TargetTimeout,
    TargetUnreachable,
)
from keyturn.secret import REDACTED, Secret
from keyturn.targets import peer_trust
from keyturn.targets.base import (
    Account,
    AdminCredential,
    Endpoint,
    FoundAccount,
    ProbeLedger,
    SecretRules,
    Verdict,
)
from keyturn.targets.iosxe_verify import (
    AAA_SHOW,
    LOCKOUT_SHOW,
    DeviceView,
    Proving,
    aaa_from_cli,
    lockout_row,
)
from keyturn.targets.ssh_trust import HostKeyRecorder, HostKeyTrust, HostKeyTrustStore

log = logging.getLogger("keyturn.targets.iosxe_ssh")

# ---- platform quirks as data -------------------------------------------------------------------------
PROMPT = re.compile(r"(?:^|[\r\n])[\w.\-@/:]{1,63}(?:\([\w.\-@/:+]{0,32}\))?[>#]\s*$")
EXEC_PROMPT = re.compile(r"[\w.\-@/:]{1,63}>\s*$")
PRIV_PROMPT = re.compile(r"[\w.\-@/:]{1,63}#\s*$")
CONFIG_PROMPT = re.compile(r"[\w.\-@/:]{1,63}\([\w.\-@/:+]{0,32}\)#\s*$")
PASSWORD_PROMPT = re.compile(r"(?:^|[\r\n])(?:enable\s)?password:\s?$", re.IGNORECASE)
# Lines that mean the device refused what we typed (§4.2); `% Password` covers policy violations.
CLI_ERRORS = ("% Invalid", "% Incomplete", "% Ambiguous", "% Unknown command", "ERROR: Can not have both",
              "% Password", "% Invalid Password length", "% Bad secrets", "% Access denied",
              "% No password set", "Command authorization failed")
ENABLE_DENIED = ("% Access denied", "% Bad secrets", "% No password set")
SAVE_OK = "[OK]"
LIST_USERS = "show running-config | include ^username"
USER_LINE = re.compile(r"username (\S+)(?: privilege (\d+))?")
QUOTE_NEXT = "\x16"  # Ctrl-V: makes the next `?` literal instead of context help
SET_SECRET = {"secret": "username {name} algorithm-type scrypt secret {value}",
              "password": "username {name} password 0 {value}"}
SET_ENABLE = "enable algorithm-type scrypt secret {value}"
IOSXE_RULES = SecretRules(min_length=1, max_length=127, forbidden="?")
ENABLE_RULES = SecretRules(min_length=1, max_length=127, forbidden="?")
# What older IOS XE releases offer and nothing else (reference field behaviour §5). All three rest on
# SHA-1 (and finite-field DH, which `cryptography` deprecates), so keyturn offers them only when the
# resource says `ssh_algorithms=legacy`, and then last in each preference list: a device that also
# speaks something better still negotiates the better algorithm.
LEGACY_SSH_ALGORITHMS: dict[str, tuple[str, ...]] = {
    "kex_algs": ("diffie-hellman-group14-sha1",),
    "server_host_key_algs": ("ssh-rsa",),
    "mac_algs": ("hmac-sha1",),
}
SSH_ALGORITHM_PROFILES = ("modern", "legacy")
# Ciphers tried first: AES-GCM, what IOS XE 17.x offers (`show ip ssh`: AES-GCM and AES-CTR, reference
# field behaviour §5; no ChaCha20-Poly1305), so a real device negotiates it anyway. asyncssh puts
# chacha20-poly1305 first, and builds a ChaCha20 and a Poly1305 object per packet: against a server
# that offers both (the simulator's default profile) it cost ~1.5 ms more CPU per connection than
# AES-GCM (issue 14). Both are AEAD ciphers with the same integrity guarantees; nothing is removed.
PREFERRED_CIPHERS = ("aes256-gcm@openssh.com", "aes128-gcm@openssh.com")

# How long an idle admin session waits for the rotation's next step (a user login proof on a real device
# takes ~1 s, reference field behaviour §6; IOS XE's own vty exec-timeout is 10 minutes).
ADMIN_IDLE_SECONDS = 10.0

Connect = Callable[..., Awaitable[Any]]


def ssh_algorithms(options: Mapping[str, str]) -> dict[str, list[str]]:
    """asyncssh's default algorithm lists without the legacy SHA-1 ones, or with them appended last
    (resource option ``ssh_algorithms=legacy``), and its ciphers with `PREFERRED_CIPHERS` first.
    `ProfileError` for any other value."""
    from asyncssh.encryption import get_default_encryption_algs
    from asyncssh.kex import get_default_kex_algs
    from asyncssh.mac import get_default_mac_algs
    from asyncssh.public_key import get_default_public_key_algs

    profile = options.get("ssh_algorithms", "modern").strip().lower() or "modern"
    if profile not in SSH_ALGORITHM_PROFILES:
        raise ProfileError("resource option ssh_algorithms must be one of "
                           f"{', '.join(SSH_ALGORITHM_PROFILES)}, not {profile!r}")
    defaults = {"kex_algs": get_default_kex_algs(), "server_host_key_algs": get_default_public_key_algs(),
                "mac_algs": get_default_mac_algs()}
    lists = {}
    for name, legacy in LEGACY_SSH_ALGORITHMS.items():
        modern = [alg.decode("ascii") for alg in defaults[name] if alg.decode("ascii") not in legacy]
        lists[name] = modern + list(legacy) if profile == "legacy" else modern
    ciphers = [alg.decode("ascii") for alg in get_default_encryption_algs()]
    lists["encryption_algs"] = ([c for c in PREFERRED_CIPHERS if c in ciphers]
                                + [c for c in ciphers if c not in PREFERRED_CIPHERS])
    return lists


@contextmanager
def map_ssh_errors(*, target: str, record: str | None, host: str, doing: str,
                   legacy: bool = False) -> Iterator[None]:
    """The one asyncssh boundary: transport trouble → `TargetUnreachable` / `TargetTimeout`.

    A host key keyturn has no trust for → `HostKeyNotTrusted` (the caller may raise a more telling one
    inside the block), noted for the engine as a trust failure (`keyturn.targets.peer_trust`): the key
    exchange refused the peer before any credential was sent.

    No algorithm in common (asyncssh's `KeyExchangeFailed`, "No matching ...") says how to fix it:
    older IOS XE offers only SHA-1 algorithms, which keyturn uses only with ``ssh_algorithms=legacy``.
    """
    try:
        yield
    except HostKeyNotTrusted as exc:
        peer_trust.note_failure(exc)
        raise
    except asyncssh.HostKeyNotVerifiable as exc:
        failure = HostKeyNotTrusted(f"{host}: SSH host key not trusted while {doing}; refused before any "
                                    "credential was sent", target=target, record=record)
        peer_trust.note_failure(failure)
        raise failure from exc
    except asyncssh.KeyExchangeFailed as exc:
        # asyncssh's reason is "No matching X found, sent A,B,... and received C,D": keep what failed
        # and what the device offered (our own long list helps nobody).
        # ("ext-info-*" and "kex-strict-*" in the key exchange list are extension markers, not algorithms.)
        what, _, lists = str(exc.reason).partition(", sent ")
        offered = ",".join(a for a in lists.rpartition(" and received ")[2].split(",")
                           if a and not a.startswith(("ext-info-", "kex-strict-")))
        detail = f"{what}; the device offers {offered}" if offered else what
        hint = ("" if legacy else "; if the device runs an older IOS XE release (diffie-hellman-group14-"
                "sha1, ssh-rsa, hmac-sha1 only), set ssh_algorithms=legacy on the resource record")
        raise TargetUnreachable(f"{host}: no SSH algorithm in common with the device while {doing} "
                                f"({detail}){hint}", target=target, record=record) from exc
    except asyncssh.PermissionDenied as exc:
        raise TargetAuthRejected(f"{host}: login refused while {doing}", target=target,
                                 record=record) from exc
    except TimeoutError as exc:
        raise TargetTimeout(f"{host}: timed out while {doing}", target=target, record=record) from exc
    except (OSError, asyncssh.Error, EOFError) as exc:
        raise TargetUnreachable(f"{host}: {type(exc).__name__} while {doing}", target=target,
                                record=record) from exc


class _Cli:
    """A prompt-driven vty session over one asyncssh process."""

    def __init__(self, conn: Any, process: Any, timeout: float) -> None:
        self.conn = conn
        self.process = process
        self.timeout = timeout
        self.prompt = ""
        self.ready = False   # privileged and `terminal length 0` done (an admin session kept for reuse)

    @property
    def reusable(self) -> bool:
        """Open, and idle at the privileged EXEC prompt (not in configuration mode)."""
        return (not self.conn.is_closed() and not self.process.stdout.at_eof()
                and PRIV_PROMPT.search(self.prompt) is not None and CONFIG_PROMPT.search(self.prompt) is None)

    async def read_until(self, *patterns: re.Pattern[str]) -> str:
        buffer = ""
        async with asyncio.timeout(self.timeout):
            while True:
                chunk: str = await self.process.stdout.read(4096)
                if not chunk:
                    raise EOFError("the device closed the session")
                buffer += chunk
                tail = buffer[-300:]
                if any(p.search(tail) for p in patterns):
                    self.prompt = buffer.rstrip().rsplit("\n", 1)[-1].strip()
                    return buffer

    async def send(self, line: str, *expect: re.Pattern[str]) -> str:
        self.process.stdin.write(line + "\n")
        return await self.read_until(*(expect or (PROMPT,)))

    async def close(self) -> None:
        self.conn.close()
        # Best effort: the session did its job or already failed.
        with contextlib.suppress(TimeoutError, OSError, asyncssh.Error):
            await asyncio.wait_for(self.conn.wait_closed(), self.timeout)


def _errors(output: str, *secrets_: Secret | None) -> list[str]:
    """The error lines of `output` with every given secret blanked (the vty echoes our input)."""
    lines = []
    for raw in output.replace("\r", "").split("\n"):
        line = raw.strip()
        if any(line.startswith(marker) or marker in line for marker in CLI_ERRORS):
            for s in secrets_:
                if s is not None and s.reveal():
                    line = line.replace(s.reveal(), REDACTED)
            lines.append(line)
    return lines


def _cli_value(secret: Secret) -> str:
    return secret.reveal().replace("?", QUOTE_NEXT + "?")


@dataclass
class _Idle:
    """An admin session kept for the rest of one rotation (`ledger`: that rotation's `ProbeLedger`)."""

    ledger: ProbeLedger
    username: str
    cli: _Cli
    timer: asyncio.TimerHandle
    loop: asyncio.AbstractEventLoop   # its connection belongs to this event loop


class _SshBase:
    """Connection handling shared by the two SSH targets."""

    kind: ClassVar[str]
    keeps_admin_session: ClassVar[bool] = False   # reuse the admin session within a rotation (module doc)

    def __init__(self, connect: Connect | None = None, *, timeout: float = 20.0,
                 save_timeout: float = 60.0, host_keys: HostKeyRecorder | None = None) -> None:
        self._connect = connect or asyncssh.connect
        self._timeout = timeout
        self._save_timeout = save_timeout
        self.host_keys = HostKeyTrustStore(host_keys)  # ssh_host_key=tofu stores through the recorder
        self._save_auth: dict[str, tuple[str, Secret]] = {}
        self._idle: dict[str, _Idle] = {}              # "host:port" → the admin session kept there
        self._closing: set[asyncio.Task[None]] = set()

    def _err(self, cls: type[TargetError], account: Account, message: str) -> TargetError:
        return cls(f"{account.endpoint.host}: {message}", target=self.kind, record=account.record_uid)

    def _port(self, endpoint: Endpoint) -> int:
        return endpoint.ssh_port or int(endpoint.options.get("ssh_port", 22))

    async def _host_key_options(self, account: Account, algorithms: dict[str, list[str]]) -> HostKeyTrust:
        """How this connection checks the host key (`keyturn.targets.ssh_trust`); with
        ``ssh_host_key=tofu`` and no pin yet, the key is read and stored in the vault first."""
        from keyturn.targets.tofu import fetch_host_key

        ep = account.endpoint
        where = f"{ep.host}:{self._port(ep)}"

        async def read_key() -> str:
            key = await fetch_host_key(ep.host, self._port(ep), connect_timeout=self._timeout,
                                       algorithms=algorithms)
            return key.fingerprint

        return await self.host_keys.trust(ep, where, read_key, target=self.kind, record=account.record_uid)

    async def _open(self, account: Account, username: str, password: Secret, doing: str) -> _Cli:
        """A logged-in vty session; the credential goes only to a server whose host key is trusted."""
        ep = account.endpoint
        algorithms = ssh_algorithms(ep.options)
        legacy = "ssh-rsa" in algorithms["server_host_key_algs"]
        with map_ssh_errors(target=self.kind, record=account.record_uid, host=ep.host, doing=doing,
                            legacy=legacy):
            trust = await self._host_key_options(account, algorithms)
            try:
                async with asyncio.timeout(self._timeout):
                    conn = await self._connect(
                        ep.host, self._port(ep), username=username, password=password.reveal(),
                        client_keys=None, agent_path=None, preferred_auth="password,keyboard-interactive",
                        **algorithms, **trust.options,
                    )
            except asyncssh.HostKeyNotVerifiable as exc:
                raise trust.refused(ep, f"{ep.host}:{self._port(ep)}", target=self.kind,
                                    record=account.record_uid) from exc
            except BaseException:
                peer_trust.note_attempt()  # past the host key check, or unknown: it may have been sent
                raise
            peer_trust.note_attempt()
            try:
                process = await conn.create_process(term_type="vt100", term_size=(511, 24))
                cli = _Cli(conn, process, self._timeout)
                await cli.read_until(PROMPT)
            except BaseException:
                conn.close()
                raise
        return cli

    async def _login(self, account: Account, old: Secret | None,
                     doing: str) -> tuple[_Cli, tuple[str, Secret]]:
        if account.admin is not None:
            auth = (account.admin.username, account.admin.secret)
        elif old is not None:
            auth = (account.username, old)
        else:
            raise self._err(TargetAuthRejected, account, "no credential to log in with (no admin credential "
                                                         "and no current secret)")
        return await self._open(account, auth[0], auth[1], doing), auth

    @contextlib.asynccontextmanager
    async def _admin_session(self, account: Account, doing: str) -> AsyncIterator[_Cli]:
        """A privileged admin session with ``terminal length 0``: the one this rotation kept, or a new
        one. Kept again afterwards only if the block ended without an error at the ``#`` prompt
        (`keeps_admin_session`); closed otherwise."""
        admin = account.admin
        assert admin is not None
        cli = self._take_idle(account, admin.username)
        if cli is None:
            cli = await self._open(account, admin.username, admin.secret, doing)
        else:
            peer_trust.note_attempt()   # commands go to the (trusted) device on this session
        kept = False
        try:
            if not cli.ready:
                await self._enable(account, cli, doing)
                await self._run(account, cli, "terminal length 0", doing, PROMPT)
                cli.ready = True
            yield cli
            kept = self.keeps_admin_session and cli.reusable and self._keep_idle(account, admin.username, cli)
        finally:
            if not kept:
                await cli.close()

    def _idle_key(self, account: Account) -> str:
        return f"{account.endpoint.host}:{self._port(account.endpoint)}"

    def _take_idle(self, account: Account, username: str) -> _Cli | None:
        """This rotation's kept admin session for the device, if it is still usable; a session another
        rotation left there is closed (one idle admin vty per device at most)."""
        idle = self._idle.pop(self._idle_key(account), None)
        if idle is None:
            return None
        if (idle.ledger is account.probes and idle.username == username
                and idle.loop is asyncio.get_running_loop() and idle.cli.reusable):
            idle.timer.cancel()
            idle.cli.timeout = self._timeout
            return idle.cli
        self._discard(idle)
        return None

    def _keep_idle(self, account: Account, username: str, cli: _Cli) -> bool:
        key = self._idle_key(account)
        old = self._idle.pop(key, None)
        if old is not None:
            self._discard(old)
        loop = asyncio.get_running_loop()
        timer = loop.call_later(ADMIN_IDLE_SECONDS, self._expire, key, cli)
        self._idle[key] = _Idle(account.probes, username, cli, timer, loop)
        return True

    def _expire(self, key: str, cli: _Cli) -> None:
        idle = self._idle.get(key)
        if idle is not None and idle.cli is cli:
            del self._idle[key]
            self._close_later(cli)

    def _discard(self, idle: _Idle) -> None:
        """Close a kept session: on its own event loop (a target used from a later loop, e.g. another
        `asyncio.run`, must not touch the earlier loop's transports; a closed loop took them along)."""
        idle.timer.cancel()
        if idle.loop is asyncio.get_running_loop():
            self._close_later(idle.cli)
        elif not idle.loop.is_closed():
            with contextlib.suppress(RuntimeError):   # closed meanwhile
                idle.loop.call_soon_threadsafe(idle.cli.conn.close)

    def _close_later(self, cli: _Cli) -> None:
        task = asyncio.get_running_loop().create_task(cli.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _enable(self, account: Account, cli: _Cli, doing: str) -> None:
        """Reach privileged EXEC (`#`), using the account's or the admin's enable secret."""
        if cli.prompt.endswith("#"):
            return
        secret = account.enable_secret or (account.admin.enable_secret if account.admin else None)
        if secret is None:
            # IOS XE with `aaa new-model` and no `aaa authorization exec default local` lands even a
            # privilege-15 local user in user EXEC (reference field behaviour §1).
            raise self._err(TargetAuthRejected, account, "the login lands in user EXEC (>) and no enable "
                            "secret is configured (typical of aaa new-model without `aaa authorization exec "
                            "default local`); give the user or admin record an enable_secret, or an "
                            "enable_secret_record")
        await self._run(account, cli, "enable", doing, PASSWORD_PROMPT, PROMPT)
        if cli.prompt.endswith("#"):
            return  # no enable password configured for this line: already privileged
        out = await self._run(account, cli, secret.reveal(), doing, PROMPT, PASSWORD_PROMPT)
        if not cli.prompt.endswith("#"):
            detail = "; ".join(_errors(out, secret)) or "no # prompt"
            raise self._err(TargetAuthRejected, account, f"enable refused ({detail})")

    async def _run(self, account: Account, cli: _Cli, line: str, doing: str, *expect: re.Pattern[str]) -> str:
        with map_ssh_errors(target=self.kind, record=account.record_uid, host=account.endpoint.host,
                            doing=doing):
            out = await cli.send(line, *expect)
        # The prompt for `send` is the last line; keep `Password:` visible to callers via cli.prompt.
        return out

    async def _configure(self, account: Account, cli: _Cli, command: str, new: Secret, doing: str) -> None:
        """``configure terminal`` → `command` → ``end``; `ChangeRejected` on any IOS error line."""
        await self._run(account, cli, "configure terminal", doing, CONFIG_PROMPT, PROMPT)
        if not CONFIG_PROMPT.search(cli.prompt):
            raise self._err(TargetError, account, "could not enter configuration mode")
        out = await self._run(account, cli, command, doing, PROMPT)
        errors = _errors(out, new)
        await self._run(account, cli, "end", doing, PROMPT)
        if errors:
            raise self._err(ChangeRejected, account, f"device refused the change: {' / '.join(errors)[:300]}")

    async def persist(self, account: Account, secret: Secret | None = None) -> None:
        """``write memory`` (expects ``[OK]``) as the admin, with `secret`, or the last live login.

        "Last live login" = the credential that last changed or verified OK for this account here.
        """
        if account.admin is not None:
            auth: tuple[str, Secret] | None = (account.admin.username, account.admin.secret)
        elif secret is not None:
            auth = (account.username, secret)
        else:
            auth = self._save_auth.get(self._save_key(account))
        if auth is None:
            raise self._err(TargetAuthRejected, account, "no credential to save the configuration with")
        doing = "saving the configuration"
        if account.admin is not None:
            async with self._admin_session(account, doing) as cli:
                out = await self._save(account, cli)
        else:
            cli = await self._open(account, auth[0], auth[1], doing)
            try:
                await self._enable(account, cli, doing)
                out = await self._save(account, cli)
            finally:
                await cli.close()
        if SAVE_OK not in out:
            detail = "; ".join(_errors(out)) or "no [OK]"
            raise self._err(TargetError, account, f"write memory failed ({detail})")
        self._save_auth.pop(self._save_key(account), None)

    async def _save(self, account: Account, cli: _Cli) -> str:
        cli.timeout = self._save_timeout
        try:
            return await self._run(account, cli, "write memory", "saving the configuration", PROMPT)
        finally:
            cli.timeout = self._timeout

    def _save_key(self, account: Account) -> str:
        return f"{self.kind}/{account.lock_key}"

    async def aclose(self) -> None:
        self._save_auth.clear()
        idle, self._idle = list(self._idle.values()), {}
        for entry in idle:
            self._discard(entry)
        if self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)


class IosXeSshTarget(Proving, _SshBase):
    """Rotates an IOS XE local user's secret over the SSH CLI (``username X algorithm-type scrypt``)."""

    kind: ClassVar[str] = "iosxe-ssh"
    constraints: ClassVar[SecretRules] = IOSXE_RULES
    can_verify: ClassVar[bool] = True
    keeps_admin_session: ClassVar[bool] = True
    path: Literal["ssh"] = "ssh"   # which login path the device's AAA applies (iosxe_verify.Prover)

    async def change(self, account: Account, old: Secret | None, new: Secret) -> None:
        mode = account.options.get("mode", "auto")
        if mode != "auto" and mode not in SET_SECRET:
            raise ProfileError(f"iosxe-ssh: option mode must be 'auto', 'secret' or 'password', not {mode!r}")
        doing = "changing the secret"
        if account.admin is not None:
            async with self._admin_session(account, doing) as cli:
                await self._set_secret(account, cli, mode, new, doing)
            live = (account.admin.username, account.admin.secret)
        else:
            cli, _ = await self._login(account, old, doing)
            try:
                await self._enable(account, cli, doing)
                await self._run(account, cli, "terminal length 0", doing, PROMPT)
                await self._set_secret(account, cli, mode, new, doing)
            finally:
                await cli.close()
            live = (account.username, new)  # the old one is dead now
        self._save_auth[self._save_key(account)] = live

    async def _set_secret(self, account: Account, cli: _Cli, mode: str, new: Secret, doing: str) -> None:
        line = await self._user_line(account, cli, doing)
        if mode == "auto":  # keep the kind the user has: switching needs `no username` + re-add
            mode = "password" if " password " in f"{line} " else "secret"
        other = "password" if mode == "secret" else "secret"
        if f" {other} " in line:
            raise self._err(ChangeRejected, account, f"user {account.username!r} holds a {other}, and "
                            f"IOS refuses a {mode} beside it; set the profile option mode={other} or "
                            "convert the user on the device")
        command = SET_SECRET[mode].format(name=account.username, value=_cli_value(new))
        await self._configure(account, cli, command, new, doing)

    async def login(self, account: Account, secret: Secret) -> tuple[Verdict, str]:
        """A fresh login as the user: accepted → OK, refused → REJECTED, no answer → INCONCLUSIVE."""
        try:
            cli = await self._open(account, account.username, secret, "verifying the login")
        except TargetAuthRejected:
            return Verdict.REJECTED, ""
        except TargetError as exc:
            log.info("%s %s: verify inconclusive: %s", self.kind, account.endpoint.host, exc)
            return Verdict.INCONCLUSIVE, str(exc)
        await cli.close()
        self._save_auth[self._save_key(account)] = (account.username, secret)  # live login, for persist
        return Verdict.OK, ""

    async def read_device(self, account: Account, *, aaa: bool, user: bool) -> DeviceView:
        """One admin session: the AAA lines and/or the user's ``username`` line of the running config."""
        doing = "reading the device configuration"
        if account.admin is None:
            raise self._err(TargetAuthRejected, account, "no admin credential to read the device with")
        async with self._admin_session(account, doing) as cli:
            config = stored = lockout = None
            if aaa:
                config = aaa_from_cli(await self._run(account, cli, AAA_SHOW, doing, PROMPT))
            if user:
                line = await self._user_line(account, cli, doing)
                stored = parse_cli_username(line)
                out = await self._run(account, cli, LOCKOUT_SHOW, doing, PROMPT)
                if not _errors(out):   # releases without the command answer "% Invalid input"
                    lockout = lockout_row(out, account.username)
        return DeviceView(aaa=config, stored=stored, lockout=lockout)

    async def discover(self, endpoint: Endpoint, admin: AdminCredential) -> list[FoundAccount]:
        """One admin session: every ``username`` line of the running config (`LIST_USERS`)."""
        account = Account(record_uid="", username=admin.username, endpoint=endpoint, admin=admin)
        doing = "listing the local users"
        cli, _ = await self._login(account, None, doing)
        try:
            await self._enable(account, cli, doing)
            await self._run(account, cli, "terminal length 0", doing, PROMPT)
            out = await self._run(account, cli, LIST_USERS, doing, PROMPT)
        finally:
            await cli.close()
        return parse_user_lines(out)

    async def _user_line(self, account: Account, cli: _Cli, doing: str) -> str:
        """The user's ``username NAME ...`` running-config line; `AccountNotFound` if there is none."""
        show = f"show running-config | include ^username {account.username} "
        out = await self._run(account, cli, show, doing, PROMPT)
        lines = [ln.strip() for ln in out.replace("\r", "").split("\n")
                 if ln.strip().startswith(f"username {account.username} ")]
        if not lines:
            raise self._err(AccountNotFound, account, f"user {account.username!r} does not exist on the "
                                                      "device (keyturn never creates accounts)")
        return lines[0]


class IosXeEnableSecretTarget(_SshBase):
    """Rotates the device's ``enable secret``; logs in with the admin credential (required).

    `old` is the current enable secret (used when the admin lands in user EXEC); `verify` logs in as
    the admin, drops to user EXEC and runs ``enable`` with the secret: ``#`` → OK,
    ``% Access denied`` / ``% Bad secrets`` → REJECTED.
    """

    kind: ClassVar[str] = "iosxe-enable-secret"
    constraints: ClassVar[SecretRules] = ENABLE_RULES
    can_verify: ClassVar[bool] = True

    def _admin(self, account: Account) -> AdminCredential:
        if account.admin is None:
            raise ProfileError("iosxe-enable-secret needs an admin credential (a login to reach the device)")
        return account.admin

    async def change(self, account: Account, old: Secret | None, new: Secret) -> None:
        admin = self._admin(account)
        doing = "changing the enable secret"
        cli = await self._open(account, admin.username, admin.secret, doing)
        try:
            enable = old or account.enable_secret or admin.enable_secret
            await self._enable(_with_enable(account, enable), cli, doing)
            await self._configure(account, cli, SET_ENABLE.format(value=_cli_value(new)), new, doing)
        finally:
            await cli.close()

    async def persist(self, account: Account, secret: Secret | None = None) -> None:
        """``write memory`` as the admin, entering ``enable`` with `secret` — the enable secret now in
        force (the new one after a change, the old one after a rollback), not the stored copy, which
        is stale until the rotation commits."""
        self._admin(account)
        await super().persist(_with_enable(account, secret) if secret is not None else account)

    async def verify(self, account: Account, secret: Secret) -> Verdict:
        try:
            admin = self._admin(account)
            cli = await self._open(account, admin.username, admin.secret, "verifying the enable secret")
        except TargetError as exc:
            log.info("%s %s: verify inconclusive: %s", self.kind, account.endpoint.host, exc)
            return Verdict.INCONCLUSIVE
        try:
            if cli.prompt.endswith("#") or PRIV_PROMPT.search(cli.prompt):
                await self._run(account, cli, "disable", "verifying the enable secret", PROMPT)
            out = await self._run(account, cli, "enable", "verifying", PASSWORD_PROMPT, PROMPT)
            if cli.prompt.endswith("#"):
                return Verdict.INCONCLUSIVE  # no password asked: nothing learned about the secret
            out = await self._run(account, cli, secret.reveal(), "verifying", PROMPT, PASSWORD_PROMPT)
        except TargetError as exc:
            log.info("%s %s: verify inconclusive: %s", self.kind, account.endpoint.host, exc)
            return Verdict.INCONCLUSIVE
        finally:
            await cli.close()
        if cli.prompt.endswith("#"):
            return Verdict.OK
        if PASSWORD_PROMPT.search(out[-300:]) or any(m in out for m in ENABLE_DENIED):
            return Verdict.REJECTED
        return Verdict.INCONCLUSIVE


def parse_user_lines(output: str) -> list[FoundAccount]:
    """The accounts on the ``username ...`` lines of `output` (the echoed command is skipped)."""
    found: dict[str, FoundAccount] = {}
    for raw in output.replace("\r", "").split("\n"):
        line = raw.strip()
        match = USER_LINE.match(line)
        if match is None or line.startswith(LIST_USERS):
            continue
        name = match.group(1)
        stored = parse_cli_username(line)
        privilege = int(match.group(2)) if match.group(2) else 1   # IOS omits the default privilege 1
        found.setdefault(name, FoundAccount(
            username=name, privilege=privilege, kind=stored.kind if stored else "",
            type=stored.type if stored else "", rotatable=stored is not None,
            note="" if stored else "no password or secret (nopassword)"))
    return list(found.values())


def _with_enable(account: Account, enable: Secret | None) -> Account:
    from dataclasses import replace
    return replace(account, enable_secret=enable)
