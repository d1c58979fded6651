"""AAA of a simulated IOS XE device: who checks a login, lockouts and quiet mode (reference §1-2).

Three pieces, used by `IosXeDevice.authenticate` (the one place a login is decided):

* `AaaConfig` — the login-related lines of the running config (saved and reloaded with it):
  `aaa new-model`, `aaa authentication login default <methods>`, `aaa authorization exec default local`,
  `aaa local authentication attempts max-fail N`, `login block-for S attempts N within T`,
  `ip http authentication aaa|local`. `lines()` renders them as `show running-config` does.
* `TacacsServer` — the device's TACACS+ server as the device sees it: a user database of its own,
  reachable or not, and the timeout the device waits before it gives up on it.
* `LoginGuard` — run-time state a reload clears: per-user failure counters and locks (max-fail), the
  failure window and quiet mode (block-for), and the counters the lab's `/stats` reports.

Method lists follow IOS (*Cisco IOS in a Nutshell*, "aaa authentication login"; CIS Cisco IOS 16
Benchmark 1.1.2): methods are tried in order and the next one is used only when the current one
*errors* (server unreachable) — a TACACS+ reject ends the login, so a local user cannot log in while
the server is up. Without `aaa new-model` the vty lines use `login local` (the local database only).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

Service = Literal["ssh", "http"]
HttpAuthentication = Literal["aaa", "local"]

# ---- quirks as data ----------------------------------------------------------------------------------

LOCAL = "local"
TACACS_GROUP = "group tacacs+"
LOGIN_METHODS = frozenset({LOCAL, TACACS_GROUP})
# Where the lab's TACACS+ server lives (TEST-NET-1: an address no lab ever routes to).
TACACS_SERVER_NAME = "TACACS-1"
TACACS_SERVER_ADDRESS = "192.0.2.10"
# IOS's default `tacacs-server timeout` is 5 s; enterprise templates set 2 s (the lab's realistic value).
REALISTIC_TACACS_TIMEOUT = 2.0
# `show aaa local user lockout` (Cisco "Login Password Retry Lockout", example output).
LOCKOUT_HEADER = "Local-user  Lock time"
LOCK_TIME_FORMAT = "%H:%M:%S UTC %a %b %d %Y"


@dataclass
class AaaConfig:
    """The login-related configuration lines; every field default is "line absent"."""

    new_model: bool = False
    login: tuple[str, ...] = ()          # `aaa authentication login default` methods, in order
    exec_authorization: bool = False     # `aaa authorization exec default local`
    max_fail: int | None = None          # `aaa local authentication attempts max-fail N`
    block_for: tuple[int, int, int] | None = None   # (S, N, T): `login block-for S attempts N within T`
    http_authentication: HttpAuthentication | None = None

    def methods(self, service: Service) -> tuple[str, ...]:
        """The method list that checks a login over `service` (vty SSH or the HTTP/RESTCONF server)."""
        if not self.new_model:
            return (LOCAL,)                  # vty `login local`, no AAA
        if service == "http" and self.http_authentication == LOCAL:
            return (LOCAL,)
        # No default list under new-model: IOS falls back to the local database.
        return self.login or (LOCAL,)

    def exec_level(self, configured: int) -> int:
        """The EXEC level a user with `privilege configured` lands in after login.

        With `aaa new-model` and no exec authorization nobody's privilege is applied: every user starts
        at level 1 (`>`) and must `enable` (Catalyst 9300 17.x Security Configuration Guide,
        "Configuring Local Authentication and Authorization").
        """
        if self.new_model and not self.exec_authorization:
            return 1
        return configured

    def lines(self) -> dict[str, list[str]]:
        """Running-config lines by section: "aaa", "login", "http"."""
        aaa: list[str] = []
        if self.new_model:
            aaa.append("aaa new-model")
            if self.login:
                aaa.append("aaa authentication login default " + " ".join(self.login))
            if self.exec_authorization:
                aaa.append("aaa authorization exec default local")
            if self.max_fail is not None:
                aaa.append(f"aaa local authentication attempts max-fail {self.max_fail}")
        login = []
        if self.block_for is not None:
            s, n, t = self.block_for
            login.append(f"login block-for {s} attempts {n} within {t}")
        http = []
        if self.http_authentication is not None:
            http.append(f"ip http authentication {self.http_authentication}")
        return {"aaa": aaa, "login": login, "http": http}

    def uses_tacacs(self) -> bool:
        return self.new_model and TACACS_GROUP in self.login


@dataclass
class TacacsServer:
    """The TACACS+ server the device points at. It knows only its own users and rejects every other name."""

    users: dict[str, str] = field(default_factory=dict, repr=False)   # name → clear password
    reachable: bool = True
    timeout: float = REALISTIC_TACACS_TIMEOUT
    privilege: int = 15        # the priv-lvl the server authorises its users with

    def check(self, username: str, password: str) -> bool:
        known = self.users.get(username)
        return known is not None and known == password


Outcome = Literal["ok", "rejected", "unknown-user", "locked", "no-method"]


@dataclass(frozen=True)
class Verdict:
    """How a login was decided: `method` is the method that answered ("local", "tacacs+", or None)."""

    outcome: Outcome
    method: str | None


@dataclass
class LoginGuard:
    """Failure counters, locks and quiet mode of one device (run-time state, cleared by a reload)."""

    clock: Callable[[], float] = time.monotonic
    fail_counts: dict[str, int] = field(default_factory=dict)
    locked: dict[str, datetime] = field(default_factory=dict)     # name → when it was locked
    quiet_until: float = 0.0
    _window: deque[float] = field(default_factory=deque)
    # Counters for the lab's /stats (whole run; `reset_stats` clears them).
    failed_logins: int = 0
    failed_by_user: Counter[str] = field(default_factory=Counter)
    lockouts: int = 0
    quiet_mode_entries: int = 0
    quiet_refusals: int = 0

    def in_quiet_mode(self) -> bool:
        return self.clock() < self.quiet_until

    def is_locked(self, username: str) -> bool:
        return username in self.locked

    def local_failure(self, username: str, max_fail: int | None) -> None:
        """A failed *local* check of an existing user: count it and lock at `max_fail` (Cisco "Login
        Password Retry Lockout": the user stays locked until `clear aaa local user lockout`)."""
        if max_fail is None or username in self.locked:
            return
        count = self.fail_counts.get(username, 0) + 1
        self.fail_counts[username] = count
        if count >= max_fail:
            self.locked[username] = datetime.now(UTC)
            self.lockouts += 1

    def local_success(self, username: str) -> None:
        self.fail_counts.pop(username, None)

    def failed(self, username: str, block_for: tuple[int, int, int] | None) -> None:
        """Any refused login (any user, any method): count it, and enter quiet mode when `block_for`'s
        N failures fall within T seconds (`login block-for S attempts N within T`)."""
        self.failed_logins += 1
        self.failed_by_user[username] += 1
        if block_for is None:
            return
        seconds, attempts, within = block_for
        now = self.clock()
        self._window.append(now)
        while self._window and self._window[0] <= now - within:
            self._window.popleft()
        if len(self._window) >= attempts:
            self._window.clear()
            self.quiet_until = now + seconds
            self.quiet_mode_entries += 1

    def clear_lockout(self, username: str | None) -> list[str]:
        """`clear aaa local user lockout username NAME | all`: unlock and reset counters; returns names."""
        names = sorted(self.locked) if username is None else [username] if username in self.locked else []
        for name in names:
            del self.locked[name]
            self.fail_counts.pop(name, None)
        return names

    def clear_fail_attempts(self, username: str | None) -> None:
        """`clear aaa local user fail-attempts username NAME | all`."""
        if username is None:
            self.fail_counts.clear()
        else:
            self.fail_counts.pop(username, None)

    def lockout_lines(self) -> list[str]:
        """`show aaa local user lockout`: the header, then one row per locked user."""
        rows = [f"{name:<11} {when.strftime(LOCK_TIME_FORMAT)}" for name, when in sorted(self.locked.items())]
        return [LOCKOUT_HEADER, *rows]

    def reload(self) -> None:
        """A reload forgets locks, counters and quiet mode (none of them is configuration)."""
        self.fail_counts.clear()
        self.locked.clear()
        self._window.clear()
        self.quiet_until = 0.0

    def reset_stats(self) -> None:
        self.failed_logins = self.lockouts = self.quiet_mode_entries = self.quiet_refusals = 0
        self.failed_by_user.clear()

    def stats(self) -> dict[str, object]:
        return {
            "failed_logins": self.failed_logins,
            "failed_logins_by_user": dict(sorted(self.failed_by_user.items())),
            "lockouts": self.lockouts,
            "locked_users": sorted(self.locked),
            "quiet_mode_entries": self.quiet_mode_entries,
            "quiet_mode_refusals": self.quiet_refusals,
            "quiet_mode": self.in_quiet_mode(),
        }


def parse_methods(text: str) -> tuple[str, ...]:
    """`group tacacs+ local` → ("group tacacs+", "local"); raises ValueError for an unknown method."""
    words = text.split()
    out: list[str] = []
    i = 0
    while i < len(words):
        if words[i] == "group" and i + 1 < len(words):
            method, i = f"group {words[i + 1]}", i + 2
        else:
            method, i = words[i], i + 1
        if method not in LOGIN_METHODS:
            raise ValueError(f"unsupported login method {method!r}")
        out.append(method)
    if not out:
        raise ValueError("empty method list")
    return tuple(out)
