"""State of one simulated Cisco IOS XE device, shared by its RESTCONF and SSH front-ends.

The model holds what rotation touches: local users (privilege, and either a reversible `password`
type 0/7 or a hashed `secret` type 5/8/9), the enable secret, and two configurations — `running`
(what logins are checked against) and `startup` (what a reboot reloads). Front-ends translate their
protocol into the methods below and turn `DeviceRefused` into the platform's error output.

IOS rules enforced here, once, for both front-ends:
* a user holds either a password or a secret, never both ("ERROR: Can not have both ...");
* passwords longer than 127 characters, shorter than the configured minimum, or containing
  characters outside printable ASCII are refused, and a refused change leaves the user as it was;
* an unsaved change is lost on `reboot()`.

Hashes are real (type 8 PBKDF2-SHA256, type 9 scrypt, type 7 Vigenere), but computed lazily: a secret
set from clear text keeps the clear value until something reads the configuration, so a lab of
1,000 devices starts and rotates without spending a scrypt per user that nobody ever reads.
"""

from __future__ import annotations

import copy
import hmac
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

# The hash formats live in one module, shared with keyturn's own stored-hash checks.
from keyturn.cisco_hash import new_salt as _salt
from keyturn.cisco_hash import type5_hash as type5_hash
from keyturn.cisco_hash import type7_decode as type7_decode
from keyturn.cisco_hash import type7_encode as type7_encode
from keyturn.cisco_hash import type8_hash as type8_hash
from keyturn.cisco_hash import type9_hash as type9_hash
from keyturn.cisco_hash import verify_hash as verify_hash

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
    """A user's password (`kind="password"`, type 0/7) or secret (`kind="secret"`, type 8/9)."""

    kind: Literal["password", "secret"]
    encryption: str
    _stored: str | None = None         # type-7 string or $8$/$9$ hash once computed
    _clear: str | None = field(default=None, repr=False)
    # Drawn when the secret is set, so every copy (running, startup) hashes to the same string.
    _salt: str | None = field(default=None, repr=False)

    @classmethod
    def from_clear(cls, kind: Literal["password", "secret"], clear: str, encryption: str) -> Credential:
        return cls(kind=kind, encryption=encryption, _clear=clear,
                   _salt=_salt() if kind == "secret" else None)

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


class IosXeDevice:
    """One simulated device. Not thread-safe; used from one asyncio loop."""

    def __init__(self, name: str, hostname: str | None = None) -> None:
        self.name = name
        self.running = DeviceConfig(hostname=hostname or name)
        self.startup = copy.deepcopy(self.running)
        self.change_count = 0
        self.save_count = 0
        self.reboot_count = 0
        self.last_auth_failures = 0

    # ---- reads -------------------------------------------------------------------------------
    @property
    def hostname(self) -> str:
        return self.running.hostname

    def user(self, name: str) -> User | None:
        return self.running.users.get(name)

    def authenticate(self, username: str, password: str) -> User | None:
        """The user if `password` logs in as `username` on the running config, else None."""
        user = self.running.users.get(username)
        if user is None or user.credential is None or not user.credential.matches(password):
            self.last_auth_failures += 1
            return None
        return user

    def check_enable(self, password: str) -> bool:
        cred = self.running.enable_secret
        return cred is not None and cred.matches(password)

    def has_enable_secret(self) -> bool:
        return self.running.enable_secret is not None

    def username_lines(self) -> list[str]:
        """`show running-config | include username` lines, in key order."""
        lines = []
        for name in sorted(self.running.users):
            u = self.running.users[name]
            parts = [f"username {u.name}", f"privilege {u.privilege}"]
            if u.view:
                parts.append(f"view {u.view}")
            if u.credential is not None:
                parts.append(f"{u.credential.kind} {u.credential.encryption} {u.credential.stored}")
            lines.append(" ".join(parts))
        return lines

    def running_config_lines(self) -> list[str]:
        lines = ["!", f"hostname {self.hostname}", "!"]
        if self.running.enable_secret is not None:
            e = self.running.enable_secret
            lines.append(f"enable secret {e.encryption} {e.stored}")
        lines += self.username_lines()
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
                cred = Credential.from_clear("password", clear, "7" if encryption == "7" else "0")
            else:
                cred = Credential.from_clear("secret", clear, "8" if encryption == "8" else "9")
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
        self.running.enable_secret = Credential.from_clear("secret", clear, "8" if encryption == "8" else "9")
        self.change_count += 1

    def set_enable_secret_stored(self, stored: str, encryption: str) -> None:
        """Set the enable secret from an already-hashed value (`enable secret 9 $9$...`)."""
        self.running.enable_secret = Credential.from_stored("secret", encryption, stored)
        self.change_count += 1

    def save(self) -> None:
        self.startup = copy.deepcopy(self.running)
        self.save_count += 1

    def reboot(self) -> None:
        """Reload startup-config: every unsaved change is lost, as on the real device."""
        self.running = copy.deepcopy(self.startup)
        self.reboot_count += 1

    def unsaved_changes(self) -> bool:
        return self.username_lines() != _lines_of(self.startup, self.hostname)


def _lines_of(config: DeviceConfig, name: str) -> list[str]:
    probe = IosXeDevice(name)
    probe.running = config
    return probe.username_lines()
