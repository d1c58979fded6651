"""State of one simulated Cisco IOS XE device, shared by its RESTCONF and SSH front-ends.

The model holds what rotation touches: local users (privilege, and either a reversible `password`
type 0/7 or a hashed `secret` type 5/8/9), the enable secret, and two configurations — `running`
(what logins are checked against) and `startup` (what a reboot reloads). Front-ends translate their
protocol into the methods below and turn `DeviceRefused` into the platform's error output.

IOS rules enforced here, once, for both front-ends:
* a user holds either a password or a secret, never both ("ERROR: Can not have both ...");
* passwords longer than 127 characters, shorter than the configured minimum, or containing
  characters outside printable ASCII are refused, and a refused change leaves the user as it was;
* an unsaved change is lost on `reboot()`;
* logins follow the AAA configuration (`iosxe_aaa`): method lists, TACACS+, max-fail lockouts and
  `login block-for` quiet mode, all decided in `authenticate()` for SSH and RESTCONF alike;
* `service password-encryption` stores new type-0 passwords as type 7 (reference §3);
* writes are "busy" while a save runs and for `sync_window` seconds after a CLI change (reference §4):
  front-ends ask `write_blocked()`.

Hashes are real (type 8 PBKDF2-SHA256, type 9 scrypt, type 7 Vigenere), but computed lazily: a secret
set from clear text keeps the clear value until something reads the configuration (or until
`compute_hashes()`, which a lab calls at start, as a real device hashes when configured). Copies of a
configuration (running, startup, a lab's initial copy restored by every reset) share their credential
objects, so a secret is hashed once however many copies hold it.
"""

from __future__ import annotations

import copy
import hmac
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal

# The hash formats live in one module, shared with keyturn's own stored-hash checks.
from keyturn.cisco_hash import new_salt as _salt
from keyturn.cisco_hash import type5_hash as type5_hash
from keyturn.cisco_hash import type7_decode as type7_decode
from keyturn.cisco_hash import type7_encode as type7_encode
from keyturn.cisco_hash import type8_hash as type8_hash
from keyturn.cisco_hash import type9_hash as type9_hash
from keyturn.cisco_hash import verify_hash as verify_hash
from keyturn.sim.iosxe_aaa import (
    LOCAL,
    TACACS_GROUP,
    TACACS_SERVER_ADDRESS,
    TACACS_SERVER_NAME,
    AaaConfig,
    LoginGuard,
    Service,
    TacacsServer,
)

MAX_PASSWORD_LENGTH = 127
TYPE0_WARNING = (
    "WARNING: Command has been added to the configuration using a type 0 password. However, type 0 "
    "passwords will soon be deprecated. Migrate to a supported password type"
)
BOTH_ERROR = "ERROR: Can not have both a user password and a user secret.\nPlease choose one or the other."


class DeviceRefused(Exception):
    """The device refused a configuration change; `message` is the CLI's error text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class Credential:
    """A user's password (`kind="password"`, type 0/7) or secret (`kind="secret"`, type 5/8/9)."""

    kind: Literal["password", "secret"]
    encryption: str
    _stored: str | None = None         # type-7 string or $8$/$9$ hash once computed
    _clear: str | None = field(default=None, repr=False)
    # Drawn when the secret is set, so every copy (running, startup) hashes to the same string.
    _salt: str | None = field(default=None, repr=False)

    @classmethod
    def from_clear(cls, kind: Literal["password", "secret"], clear: str, encryption: str) -> Credential:
        # IOS draws 4 salt characters for md5-crypt (type 5), 14 for type 8/9.
        salt = None if kind != "secret" else _salt(4) if encryption == "5" else _salt()
        return cls(kind=kind, encryption=encryption, _clear=clear, _salt=salt)

    @classmethod
    def from_stored(cls, kind: Literal["password", "secret"], encryption: str, stored: str) -> Credential:
        return cls(kind=kind, encryption=encryption, _stored=stored)

    @property
    def stored(self) -> str:
        """The value as the running-config shows it (computed on first read)."""
        if self._stored is None:
            assert self._clear is not None
            if self.kind == "password":
                self._stored = type7_encode(self._clear) if self.encryption == "7" else self._clear
            elif self.encryption == "5":
                self._stored = type5_hash(self._clear, self._salt)
            elif self.encryption == "8":
                self._stored = type8_hash(self._clear, self._salt)
            else:
                self._stored = type9_hash(self._clear, self._salt)
        return self._stored

    def matches(self, clear: str) -> bool:
        if self._clear is not None:
            return hmac.compare_digest(self._clear.encode(), clear.encode())
        stored = self.stored
        if self.kind == "password":
            plain = type7_decode(stored) if self.encryption == "7" else stored
            return hmac.compare_digest(plain.encode(), clear.encode())
        ok = verify_hash(clear, stored)
        if ok:
            self._clear = clear  # remember, so the next login costs no hash
        return ok


def compute_hashes(configs: Iterable[DeviceConfig], users: Collection[str] | None = None) -> int:
    """Compute the stored form of credentials in `configs` now: those of `users`, or (None) every user's
    and the enable secret. Returns how many credentials that was.

    Safe in a worker thread while nothing else touches these configurations (hashlib releases the GIL
    while it hashes)."""
    count = 0
    for config in configs:
        if users is None:
            creds = [u.credential for u in config.users.values()] + [config.enable_secret]
        else:
            creds = [config.users[n].credential for n in users if n in config.users]
        for cred in creds:
            if cred is not None:
                _ = cred.stored
                count += 1
    return count


@dataclass
class User:
    name: str
    privilege: int = 1
    credential: Credential | None = None
    view: str | None = None


@dataclass
class DeviceConfig:
    hostname: str
    users: dict[str, User] = field(default_factory=dict)
    enable_secret: Credential | None = None
    min_length: int = 1
    aaa: AaaConfig = field(default_factory=AaaConfig)
    password_encryption: bool = False      # `service password-encryption`

    def __deepcopy__(self, memo: dict[int, Any]) -> DeviceConfig:
        # Every write (`atomic`), save and lab reset copies a configuration: field by field, not through
        # copy's generic walk. Users are changed in place, so each copy gets its own; credentials are
        # values (replaced, never changed; the hash they compute lazily is the same for every holder),
        # so copies share them; `aaa` is changed by replacement and holds only immutable values.
        users = {name: copy.copy(u) for name, u in self.users.items()}
        return replace(self, users=users, aaa=copy.copy(self.aaa))


class IosXeDevice:
    """One simulated device. Not thread-safe; used from one asyncio loop.

    Run-time settings (not configuration): `tacacs` (the TACACS+ server and its reachability),
    `omit_privilege_1` (show `username` lines as real IOS does, without `privilege 1`),
    `sync_window` (seconds RESTCONF writes stay refused after a CLI change) and `clock`.
    """

    def __init__(self, name: str, hostname: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.running = DeviceConfig(hostname=hostname or name)
        self.startup = copy.deepcopy(self.running)
        self.change_count = 0
        self.save_count = 0
        self.reboot_count = 0
        self.last_auth_failures = 0
        self.clock = clock
        self.tacacs = TacacsServer()
        self.guard = LoginGuard(clock=clock)
        self.omit_privilege_1 = False
        self.sync_window = 0.0
        self._cli_changed_at: float | None = None
        self._saving_until = 0.0

    # ---- reads -------------------------------------------------------------------------------
    @property
    def hostname(self) -> str:
        return self.running.hostname

    def user(self, name: str) -> User | None:
        return self.running.users.get(name)

    def authenticate(self, username: str, password: str, *, service: Service = "ssh") -> User | None:
        """The user if `password` logs in as `username` over `service` now, else None.

        Follows the method list of the running config (`AaaConfig.methods`): a TACACS+ answer (accept
        or reject) is final, an unreachable server passes to the next method; the local database
        refuses a locked user even with the right password. Every refusal is counted (`guard`) and may
        start quiet mode; a user accepted by TACACS+ is returned as a fresh `User` with the server's
        privilege. In quiet mode every login is refused (front-ends close the connection before
        asking). The TACACS+ timeout is not waited here: front-ends wait `login_delay()` first.
        """
        if self.guard.in_quiet_mode():
            return None
        user = self._login(username, password, service)
        if user is None:
            self.last_auth_failures += 1
            # `login block-for` needs no AAA (Cisco "IOS Login Enhancements"): any refusal counts.
            self.guard.failed(username, self.running.aaa.block_for)
        return user

    def _login(self, username: str, password: str, service: Service) -> User | None:
        for method in self.running.aaa.methods(service):
            if method == TACACS_GROUP:
                if not self.tacacs.reachable:
                    continue    # an error, not a reject: the next method is tried
                if self.tacacs.check(username, password):
                    return User(name=username, privilege=self.tacacs.privilege)
                return None     # a TACACS+ reject ends the login; local is not consulted
            if method == LOCAL:
                return self._local_login(username, password)
        return None

    def _local_login(self, username: str, password: str) -> User | None:
        user = self.running.users.get(username)
        if user is None or user.credential is None:
            return None
        aaa = self.running.aaa
        if self.guard.is_locked(username):
            return None         # no distinction from a wrong password (Cisco "Login Password Retry Lockout")
        if not user.credential.matches(password):
            if aaa.new_model:
                self.guard.local_failure(username, aaa.max_fail)
            return None
        self.guard.local_success(username)
        return user

    def login_delay(self, service: Service = "ssh") -> float:
        """Seconds a login over `service` waits before it is decided (an unreachable TACACS+ server
        first in the method list times out before the next method is tried)."""
        methods = self.running.aaa.methods(service)
        if TACACS_GROUP in methods and not self.tacacs.reachable:
            return self.tacacs.timeout
        return 0.0

    def exec_level(self, user: User) -> int:
        """The EXEC privilege `user` lands in (1 when AAA applies no exec authorization)."""
        return self.running.aaa.exec_level(user.privilege)

    def quiet_mode(self) -> bool:
        """True while `login block-for` quiet mode refuses every login."""
        return self.guard.in_quiet_mode()

    def refuse_in_quiet_mode(self) -> bool:
        """Front-ends call this when a connection arrives: True (and counted) if it must be closed."""
        if self.guard.in_quiet_mode():
            self.guard.quiet_refusals += 1
            return True
        return False

    def local_user_locked(self, username: str) -> bool:
        return self.guard.is_locked(username)

    def check_enable(self, password: str) -> bool:
        cred = self.running.enable_secret
        return cred is not None and cred.matches(password)

    def has_enable_secret(self) -> bool:
        return self.running.enable_secret is not None

    def username_lines(self) -> list[str]:
        """`show running-config | include username` lines, in key order."""
        return _user_lines(self.running, omit_privilege_1=self.omit_privilege_1)

    def running_config_lines(self) -> list[str]:
        """`show running-config` body, in the order IOS XE prints these sections."""
        cfg = self.running
        aaa = cfg.aaa.lines()
        lines = ["!"]
        if cfg.password_encryption:
            lines += ["service password-encryption", "!"]
        lines += [f"hostname {self.hostname}", "!"]
        if cfg.enable_secret is not None:
            e = cfg.enable_secret
            lines.append(f"enable secret {e.encryption} {e.stored}")
        for section in ("aaa", "login"):
            if aaa[section]:
                lines += ["!", *aaa[section], "!"]
        lines += self.username_lines()
        if aaa["http"]:
            lines += ["!", *aaa["http"]]
        if cfg.aaa.uses_tacacs():
            lines += ["!", f"tacacs server {TACACS_SERVER_NAME}", f" address ipv4 {TACACS_SERVER_ADDRESS}"]
        lines += ["!", "end"]
        return lines

    # ---- writes ------------------------------------------------------------------------------
    def _check_clear(self, clear: str) -> str:
        # IOS drops leading spaces and keeps trailing ones.
        clear = clear.lstrip(" ")
        if not clear:
            raise DeviceRefused("% Incomplete command.")
        if len(clear) > MAX_PASSWORD_LENGTH:
            raise DeviceRefused("% Invalid Password length - must contain 1 to 127 characters. "
                                "Password configuration failed")
        if len(clear) < self.running.min_length:
            raise DeviceRefused(f"% Password too short - must be at least {self.running.min_length} "
                                "characters. Password configuration failed")
        if any(not (0x20 <= ord(c) <= 0x7E) for c in clear):
            raise DeviceRefused("% Invalid input detected: password contains an illegal character")
        return clear

    def set_user(
        self,
        name: str,
        *,
        kind: Literal["password", "secret"],
        clear: str | None = None,
        encryption: str = "0",
        stored: str | None = None,
        privilege: int | None = None,
        create: bool = True,
    ) -> User:
        """Set a user's password or secret from clear text (type 0 input) or an already-encoded value.

        `encryption` is the type the value is given in ("0" = clear) for `stored=None`, or the type of
        `stored`. A clear secret is stored as type 9 (IOS XE 17 default) unless encryption is "8"/"9"
        with `algorithm` semantics handled by the caller. Raises `DeviceRefused` without changing state.
        """
        user = self.running.users.get(name)
        if user is None and not create:
            raise DeviceRefused(f"% User {name} does not exist")
        if user is not None and user.credential is not None and user.credential.kind != kind:
            raise DeviceRefused(BOTH_ERROR)
        if privilege is not None and not 0 <= privilege <= 15:
            raise DeviceRefused("% Invalid input detected at '^' marker.")
        if stored is None:
            if clear is None:
                raise DeviceRefused("% Incomplete command.")
            clear = self._check_clear(clear)
            if kind == "password":
                # `service password-encryption` stores a new type-0 password as type 7 (reference §3).
                seven = encryption == "7" or self.running.password_encryption
                cred = Credential.from_clear("password", clear, "7" if seven else "0")
            else:
                cred = Credential.from_clear("secret", clear, encryption if encryption in ("5", "8") else "9")
        else:
            cred = Credential.from_stored(kind, encryption, stored)
        if user is None:
            user = User(name=name, privilege=1 if privilege is None else privilege)
            self.running.users[name] = user
        elif privilege is not None:
            user.privilege = privilege
        user.credential = cred
        self.change_count += 1
        return user

    def update_user(
        self, name: str, *, privilege: int | None = None, view: str | None = None, create: bool = True
    ) -> User:
        """Set a user's privilege/view without touching its credential (`username X privilege N`).

        Creates the user (privilege 1, no credential) when missing and `create` is true. Raises
        `DeviceRefused` without changing state.
        """
        user = self.running.users.get(name)
        if user is None and not create:
            raise DeviceRefused(f"% User {name} does not exist")
        if privilege is not None and not 0 <= privilege <= 15:
            raise DeviceRefused("% Invalid input detected at '^' marker.")
        if user is None:
            user = User(name=name)
            self.running.users[name] = user
        if privilege is not None:
            user.privilege = privilege
        if view is not None:
            user.view = view
        self.change_count += 1
        return user

    def set_hostname(self, hostname: str) -> None:
        self.running.hostname = hostname
        self.change_count += 1

    def clear_enable_secret(self) -> None:
        if self.running.enable_secret is not None:
            self.running.enable_secret = None
            self.change_count += 1

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Apply several changes all-or-nothing: any exception restores the running config as it was.

        Front-ends wrap one request (a RESTCONF PATCH of several users, a CLI command) in this so a
        refused change never leaves half of it applied.
        """
        saved, count = copy.deepcopy(self.running), self.change_count
        try:
            yield
        except BaseException:
            self.running, self.change_count = saved, count
            raise

    def delete_user(self, name: str) -> bool:
        existed = self.running.users.pop(name, None) is not None
        if existed:
            self.change_count += 1
        return existed

    def set_enable_secret(self, clear: str, encryption: str = "9") -> None:
        clear = self._check_clear(clear)
        self.running.enable_secret = Credential.from_clear("secret", clear,
                                                           encryption if encryption in ("5", "8") else "9")
        self.change_count += 1

    def set_enable_secret_stored(self, stored: str, encryption: str) -> None:
        """Set the enable secret from an already-hashed value (`enable secret 9 $9$...`)."""
        self.running.enable_secret = Credential.from_stored("secret", encryption, stored)
        self.change_count += 1

    def set_password_encryption(self, enabled: bool) -> None:
        """`[no] service password-encryption`. Turning it on encrypts every type-0 password at once;
        turning it off leaves type-7 values as they are (IOS does not decrypt them back)."""
        cfg = self.running
        if cfg.password_encryption == enabled:
            return
        cfg.password_encryption = enabled
        if enabled:
            for user in cfg.users.values():
                cred = user.credential
                if cred is not None and cred.kind == "password" and cred.encryption == "0":
                    user.credential = Credential.from_clear("password", cred.stored, "7")
        self.change_count += 1

    def set_aaa(self, aaa: AaaConfig) -> None:
        """Replace the login-related configuration lines (a CLI or profile change)."""
        if aaa != self.running.aaa:
            self.running.aaa = copy.deepcopy(aaa)
            self.change_count += 1

    def save(self) -> None:
        self.startup = copy.deepcopy(self.running)
        self.save_count += 1

    def reboot(self) -> None:
        """Reload startup-config: every unsaved change is lost, as are lockouts and quiet mode."""
        self.running = copy.deepcopy(self.startup)
        self.guard.reload()
        self.reboot_count += 1

    def unsaved_changes(self) -> bool:
        run, start = self.running, self.startup
        if (run.aaa, run.password_encryption) != (start.aaa, start.password_encryption):
            return True
        return _user_lines(run) != _user_lines(start)

    # ---- busy windows (reference §4) ------------------------------------------------------------
    def note_cli_change(self) -> None:
        """A CLI configuration change: the datastore re-syncs for `sync_window` seconds."""
        self._cli_changed_at = self.clock()

    def begin_save(self, seconds: float) -> float:
        """A save (`write memory`, save-config) runs for `seconds`: writes are refused meanwhile.
        Returns a token for `end_save`."""
        self._saving_until = max(self._saving_until, self.clock() + seconds)
        return self._saving_until

    def end_save(self, token: float) -> None:
        """The save that `begin_save` answered `token` is over (timers may fire a little early)."""
        if self._saving_until == token:
            self._saving_until = 0.0

    def write_blocked(self) -> str | None:
        """Why a RESTCONF write must be refused now ("save" / "sync"), or None."""
        now = self.clock()
        if now < self._saving_until:
            return "save"
        if self._cli_changed_at is not None and now < self._cli_changed_at + self.sync_window:
            return "sync"
        return None


def _user_lines(config: DeviceConfig, *, omit_privilege_1: bool = False) -> list[str]:
    lines = []
    for name in sorted(config.users):
        u = config.users[name]
        parts = [f"username {u.name}"]
        # Real IOS prints no `privilege 1` (the default level); the simulator shows it unless told.
        if not (omit_privilege_1 and u.privilege == 1):
            parts.append(f"privilege {u.privilege}")
        if u.view:
            parts.append(f"view {u.view}")
        if u.credential is not None:
            parts.append(f"{u.credential.kind} {u.credential.encryption} {u.credential.stored}")
        lines.append(" ".join(parts))
    return lines
