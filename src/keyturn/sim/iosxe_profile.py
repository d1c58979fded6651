"""How field-true one simulated IOS XE device is: its `DeviceProfile` (issue 11, reference sections).

Every switch defaults to the simulator's historical behaviour, except `save_delay` (small, > 0):

    aaa                  "local" (no AAA, or local first) | "tacacs-first" (a TACACS+ server that knows
                         only its own users rejects every other name: local users cannot log in) |
                         "tacacs-down" (server unreachable: local users log in after `tacacs_timeout`)
    max_fail             N → `aaa local authentication attempts max-fail N` (None: off)
    block_for            (S, N, T) → `login block-for S attempts N within T` (None: off)
    exec_authorization   False → `aaa new-model` without `aaa authorization exec default local`:
                         privilege 15 lands in `>`, RESTCONF refuses with 401
    password_encryption  `service password-encryption` (type-0 passwords stored as type 7)
    omit_privilege_1     `username` lines without `privilege 1`, as real IOS prints them
    tacacs_timeout       seconds an unreachable TACACS+ server is waited (2 s realistic, 0 for unit tests)
    save_delay           seconds save-config takes (lab default 0.2; real devices 2.5-3.7)
    sync_window          seconds RESTCONF writes get 409 after a CLI change (lab default 0.05; real: seconds)
    latency              per-operation delays (`Latency`); "realistic" draws them per device, seeded
    cert                 "lab-ca" | "self-signed" (one-off CA) | "ios-self-signed" (stock IOS XE: no SAN)
    ssh_profile          "default" | "ios-17" | "ios-legacy" (algorithm sets of `iosxe_ssh.SSH_PROFILES`)

`latency` sets the timing profile as a whole: "realistic" also sets `save_delay` to the drawn save-config
time, `sync_window` to a few seconds and `tacacs_timeout` to 2 s; 0 puts the first two back to the lab
defaults and the TACACS+ timeout to 0 — unless the same update names them. `cert` and `ssh_profile`
are start-time switches (they need a new listener).

`enterprise_roles(count, seed)` is the `--profile enterprise` mix (see `ENTERPRISE_MIX`).
"""

from __future__ import annotations

import copy
import random
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from keyturn.errors import SimulatorError
from keyturn.sim.iosxe_aaa import LOCAL, REALISTIC_TACACS_TIMEOUT, TACACS_GROUP, AaaConfig

AaaProfile = Literal["local", "tacacs-first", "tacacs-down"]
CertKind = Literal["lab-ca", "self-signed", "ios-self-signed"]
SshProfileName = Literal["default", "ios-17", "ios-legacy"]
AAA_PROFILES: tuple[AaaProfile, ...] = ("local", "tacacs-first", "tacacs-down")
CERT_KINDS: tuple[CertKind, ...] = ("lab-ca", "self-signed", "ios-self-signed")
SSH_PROFILE_NAMES: tuple[SshProfileName, ...] = ("default", "ios-17", "ios-legacy")
START_TIME_ONLY = frozenset({"cert", "ssh_profile"})

DEFAULT_SAVE_DELAY = 0.2
DEFAULT_SYNC_WINDOW = 0.05
# Reference §4/§6: what real access switches take, per operation (seconds, uniform ranges).
REALISTIC_RANGES: dict[str, tuple[float, float]] = {
    "restconf": (0.1, 0.4),          # each RESTCONF request
    "save_config": (2.5, 3.7),       # cisco-ia:save-config
    "ssh_login": (0.8, 1.2),         # key exchange + AAA on a slow control-plane CPU
    "write_memory": (1.0, 3.0),      # `write memory` on the CLI
}
# The datastore re-sync after a CLI change: "a few seconds" (reference §4).
REALISTIC_SYNC_WINDOW = (2.0, 4.0)


@dataclass(frozen=True)
class Latency:
    """Per-operation delays of one device, seconds (all 0 = no added latency)."""

    restconf: float = 0.0
    save_config: float = 0.0
    ssh_login: float = 0.0
    write_memory: float = 0.0

    @classmethod
    def realistic(cls, rng: random.Random) -> Latency:
        """Drawn once per device from `REALISTIC_RANGES` (a seeded rng makes the lab reproducible)."""
        return cls(**{name: round(rng.uniform(lo, hi), 3) for name, (lo, hi) in REALISTIC_RANGES.items()})

    @property
    def any_set(self) -> bool:
        return any(getattr(self, f.name) > 0 for f in fields(self))


@dataclass(frozen=True)
class DeviceProfile:
    aaa: AaaProfile = "local"
    max_fail: int | None = None
    block_for: tuple[int, int, int] | None = None
    exec_authorization: bool = True
    password_encryption: bool = False
    omit_privilege_1: bool = False
    tacacs_timeout: float = REALISTIC_TACACS_TIMEOUT
    save_delay: float = DEFAULT_SAVE_DELAY
    sync_window: float = DEFAULT_SYNC_WINDOW
    latency: Latency = field(default_factory=Latency)
    cert: CertKind = "lab-ca"
    ssh_profile: SshProfileName = "default"

    # ---- what the device is configured with ----------------------------------------------------
    def aaa_config(self) -> AaaConfig:
        """The running-config lines this profile stands for.

        "local" without lockout or exec restriction is today's device (no `aaa new-model`); anything
        that needs AAA turns on `aaa new-model` with `login default local` and `ip http authentication
        local`. The TACACS+ profiles use `group tacacs+ local` for vty and HTTP (`ip http
        authentication aaa`), as enterprise templates do (CIS Cisco IOS 16 Benchmark 1.1.x).
        """
        remote = self.aaa != "local"
        if not (remote or self.max_fail is not None or not self.exec_authorization):
            return AaaConfig(block_for=self.block_for)
        return AaaConfig(
            new_model=True,
            login=(TACACS_GROUP, LOCAL) if remote else (LOCAL,),
            exec_authorization=self.exec_authorization,
            max_fail=self.max_fail,
            block_for=self.block_for,
            http_authentication="aaa" if remote else "local",
        )

    # ---- changes -------------------------------------------------------------------------------
    def updated(self, changes: dict[str, Any], *, seed_key: str = "") -> DeviceProfile:
        """A copy with `changes` applied (JSON or CLI values); unknown switch or bad value →
        `SimulatorError` naming it. `seed_key` seeds "realistic" draws (lab seed + device name)."""
        names = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise SimulatorError(f"unknown profile switch(es): {', '.join(unknown)}; known: {sorted(names)}")
        values: dict[str, Any] = {}
        for name, raw in changes.items():
            try:
                values[name] = _PARSERS[name](raw)
            except (TypeError, ValueError) as exc:
                raise SimulatorError(f"profile switch {name}: bad value {raw!r} ({exc})") from None
        latency = values.get("latency")
        if latency == "realistic":
            rng = random.Random(f"{seed_key}/latency")
            values["latency"] = Latency.realistic(rng)
            values.setdefault("save_delay", values["latency"].save_config)
            values.setdefault("sync_window", round(rng.uniform(*REALISTIC_SYNC_WINDOW), 3))
            values.setdefault("tacacs_timeout", REALISTIC_TACACS_TIMEOUT)
        elif isinstance(latency, Latency) and not latency.any_set:
            values.setdefault("save_delay", DEFAULT_SAVE_DELAY)
            values.setdefault("sync_window", DEFAULT_SYNC_WINDOW)
            values.setdefault("tacacs_timeout", 0.0)
        return replace(self, **values)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["block_for"] = list(self.block_for) if self.block_for is not None else None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeviceProfile:
        """Read a state-file `profile` object back (extra keys such as fingerprints are ignored)."""
        known = {f.name for f in fields(cls)}
        return cls().updated({k: v for k, v in data.items() if k in known})


# ---- value parsers (JSON from the control API and the state file, strings from CLI flags) ---------

def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return value.lower() in ("true", "yes", "on", "1")
    raise ValueError("expected true or false")


def _choice(allowed: tuple[str, ...]) -> Any:
    def parse(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return str(value)
    return parse


def _optional_int(value: Any) -> int | None:
    if value is None or value in ("", "off", "none", 0, "0"):
        return None
    number = int(value)
    if not 1 <= number <= 65535:
        raise ValueError("must be 1..65535")
    return number


def _block_for(value: Any) -> tuple[int, int, int] | None:
    if value is None or value in ("", "off", "none"):
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    if len(parts) != 3:
        raise ValueError("expected S,N,T (seconds, attempts, within)")
    s, n, t = (int(p) for p in parts)
    if not all(1 <= x <= 65535 for x in (s, n, t)):
        raise ValueError("each of S,N,T must be 1..65535")
    return s, n, t


def _seconds(value: Any) -> float:
    seconds = float(value)
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


def _latency(value: Any) -> Latency | str:
    if value in ("realistic", "real"):
        return "realistic"
    if value in (None, 0, 0.0, "0", "none", "off"):
        return Latency()
    if isinstance(value, Latency):
        return value
    if isinstance(value, dict):
        return Latency(**{k: _seconds(v) for k, v in value.items()})
    raise ValueError('expected "realistic", 0 or {restconf, save_config, ssh_login, write_memory}')


_PARSERS: dict[str, Any] = {
    "aaa": _choice(AAA_PROFILES),
    "max_fail": _optional_int,
    "block_for": _block_for,
    "exec_authorization": _bool,
    "password_encryption": _bool,
    "omit_privilege_1": _bool,
    "tacacs_timeout": _seconds,
    "save_delay": _seconds,
    "sync_window": _seconds,
    "latency": _latency,
    "cert": _choice(CERT_KINDS),
    "ssh_profile": _choice(SSH_PROFILE_NAMES),
}


# ---- the enterprise mix ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Role:
    """One kind of device in a realistic network: its profile and whether its users are legacy type 5."""

    name: str
    changes: dict[str, Any]
    type5_users: bool = False


_COMMON: dict[str, Any] = {"omit_privilege_1": True, "cert": "ios-self-signed", "latency": "realistic"}
_LOCKOUT: dict[str, Any] = {"max_fail": 3, "block_for": "120,5,60"}
# Per block of 20 devices (so 20 devices already show every role): 60 % TACACS+-first with lockout
# (a third of them with `service password-encryption`), 10 % TACACS+ down, 15 % local AAA with legacy
# type-5 users on older releases, 15 % `>` landing (no exec authorization: SSH + enable secret).
ENTERPRISE_MIX: tuple[tuple[Role, int], ...] = (
    (Role("tacacs-first", {**_COMMON, **_LOCKOUT, "aaa": "tacacs-first", "ssh_profile": "ios-17"}), 8),
    (Role("tacacs-first-pwenc", {**_COMMON, **_LOCKOUT, "aaa": "tacacs-first", "ssh_profile": "ios-17",
                                 "password_encryption": True}), 4),
    (Role("tacacs-down", {**_COMMON, **_LOCKOUT, "aaa": "tacacs-down", "ssh_profile": "ios-17"}), 2),
    (Role("legacy-type5", {**_COMMON, "aaa": "local", "password_encryption": True,
                           "ssh_profile": "ios-legacy"}, type5_users=True), 2),
    (Role("legacy-type5-ios17", {**_COMMON, "aaa": "local", "password_encryption": True,
                                 "ssh_profile": "ios-17"}, type5_users=True), 1),
    (Role("no-exec-authorization", {**_COMMON, "aaa": "local", "exec_authorization": False,
                                    "max_fail": 5, "ssh_profile": "ios-17"}), 3),
)
MIX_BLOCK = sum(n for _, n in ENTERPRISE_MIX)


def enterprise_roles(count: int, seed: int | None) -> list[Role]:
    """`count` roles in the `ENTERPRISE_MIX` proportions, shuffled per block of 20 (seeded)."""
    rng = random.Random(f"{seed}/enterprise")
    block = [role for role, n in ENTERPRISE_MIX for _ in range(n)]
    out: list[Role] = []
    while len(out) < count:
        shuffled = copy.copy(block)
        rng.shuffle(shuffled)
        out += shuffled
    return out[:count]
