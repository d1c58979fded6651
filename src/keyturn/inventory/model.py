"""The format-neutral inventory: what every parser produces and `inventory.plan` writes.

One IOS XE device becomes three kinds of records (as `keyturn.sim.onboard` builds them)::

    DEVICE            pamNetworkDevice  host = HOST:PORT (RESTCONF, default 443); custom ssh_port + trust
    DEVICE admin      login             login, password; custom secret enable_secret
    USER @ DEVICE     pamUser           login, password (unknown: the admin sets the first one)

plus a rotation profile per user (target, resource, admin, options, policy), a schedule per user when
one is given, and the device's site (``meta.site``). Every parser maps its own variables onto the
keyturn vocabulary below (`DEVICE_KEYS`, the columns of keyturn's CSV) and calls `device_from`, which
checks each value the way the CLI would and records a `Problem` (``file:line`` or ``file:host``) for
each one that is wrong, so a bad file is reported whole.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keyturn.errors import ImportFailed, KeyturnError
from keyturn.secret import Secret

IOSXE_TARGETS = ("iosxe-restconf", "iosxe-ssh")
DEFAULT_TARGET = "iosxe-restconf"
ADMIN_TITLE = "{device} admin"
USER_TITLE = "{user} @ {device}"

# Profile options an inventory may set (`engine.profile.PROFILE_OPTIONS` checks them); `site` is the
# device's, not an override per account.
OPTION_KEYS = ("mode", "verify", "failed_login_budget", "verify_via")
# Resource custom fields for reaching and trusting the device (README, "Records the targets read").
TRUST_KEYS = ("ca_bundle", "fingerprint", "host_key_fingerprint", "ssh_known_hosts", "ssh_host_key",
              "ssh_algorithms", "insecure")
PATH_KEYS = ("ca_bundle", "ssh_known_hosts")
TRUST_CHOICES: Mapping[str, tuple[str, ...]] = {
    "ssh_host_key": ("tofu", "accept-any"), "ssh_algorithms": ("legacy",), "insecure": ("true", "false"),
}
SCHEDULE_KEYS = ("schedule", "tz", "window", "jitter")
SECRET_KEYS = ("admin_password", "enable_secret", "user_password")
DEVICE_KEYS = ("device", "host", "port", "ssh_port", "target", "site", "admin_login", "admin_password",
               "enable_secret", "user", "user_password", "policy", *SCHEDULE_KEYS, *OPTION_KEYS,
               *TRUST_KEYS)


class Encrypted:
    """A value the file holds encrypted (Ansible Vault): keyturn cannot read it, so it is unknown."""

    def __repr__(self) -> str:
        return "Encrypted()"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the inventory, and where: ``hosts.csv:12`` or ``hosts.yaml:sw01``."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class InventoryInvalid(ImportFailed):
    """The inventory has problems; nothing was imported. `problems` lists every one."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        n = len(self.problems)
        super().__init__(f"{n} problem{'s' if n != 1 else ''} in {source}; nothing was imported")


@dataclass(frozen=True)
class Defaults:
    """What the command line gives every device the file leaves without it."""

    target: str | None = None
    users: tuple[str, ...] = ()
    admin_login: str | None = None
    admin_password: Secret | None = None
    known_sites: tuple[str, ...] = ("default",)


@dataclass(frozen=True)
class UserSpec:
    login: str
    title: str
    password: Secret | None
    where: str


@dataclass
class DeviceSpec:
    name: str
    where: str
    host: str
    port: int | None
    ssh_port: int | None
    target: str
    site: str | None                      # None: leave as it is; "default": none
    admin_login: str
    admin_password: Secret | None
    enable_secret: Secret | None
    users: list[UserSpec]
    trust: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    policy: str | None = None
    schedule: dict[str, str] | None = None   # spec, tz, window, jitter (absent ones left out)

    @property
    def admin_title(self) -> str:
        return ADMIN_TITLE.format(device=self.name)

    @property
    def host_field(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port or 443}"


@dataclass
class Inventory:
    """A parsed inventory: devices, the problems found, warnings, and whether the file held secrets."""

    source: str
    format: str
    devices: list[DeviceSpec] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    secrets_in_file: bool = False
    schedules_checked: dict[tuple[str | None, ...], str] = field(default_factory=dict, repr=False)

    def problem(self, where: str, message: str) -> None:
        self.problems.append(Problem(where, message))

    def check(self) -> None:
        """`InventoryInvalid` when any problem was found."""
        if self.problems:
            raise InventoryInvalid(self.source, sorted(self.problems, key=_order))


def _order(p: Problem) -> tuple[str, int, str]:
    """File order: by file, then line number where the place is one."""
    file, _, place = p.where.rpartition(":")
    return (file, int(place), "") if place.isdigit() else (p.where, 0, "")


@dataclass(frozen=True)
class UserInput:
    login: Any
    password: Any
    where: str


def text(value: Any) -> str | None:
    """A scalar as stripped text; None for absent, empty or encrypted values."""
    if value is None or isinstance(value, Encrypted):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    out = str(value).strip()
    return out or None


def first_line(exc: BaseException) -> str:
    msg = str(exc)
    return msg.splitlines()[0] if msg else type(exc).__name__


def suggest(value: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(value, known, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _port(inv: Inventory, where: str, key: str, value: Any) -> int | None:
    raw = text(value)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or not 0 < int(raw) < 65536:
        inv.problem(where, f"{key} {raw!r} is not a port (1-65535)")
        return None
    return int(raw)


def _split_host(inv: Inventory, where: str, raw: str) -> tuple[str, str | None]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address → (host, port text or None)."""
    if raw.startswith("["):
        host, _, rest = raw[1:].partition("]")
        if rest and not rest.startswith(":"):
            inv.problem(where, f"host {raw!r} is malformed")
        return host, rest[1:] if rest else None
    if raw.count(":") == 1:
        host, _, port = raw.partition(":")
        if not port:
            inv.problem(where, f"host {raw!r} has no port after ':'")
        return host, port or None
    return raw, None


def _secret(inv: Inventory, where: str, key: str, value: Any) -> Secret | None:
    if isinstance(value, Encrypted):
        inv.warnings.append(f"{where}: {key} is encrypted (Ansible Vault); treated as unknown")
        return None
    raw = None if value is None else str(value)
    if raw is None or raw == "":
        return None
    inv.secrets_in_file = True
    return Secret(raw)


def device_from(inv: Inventory, name: Any, where: str, values: Mapping[str, Any], users: Sequence[UserInput],
                defaults: Defaults, base_dir: Path, *, default_target: str = DEFAULT_TARGET
                ) -> DeviceSpec | None:
    """Check one device's values (keyturn vocabulary, `DEVICE_KEYS`) and build its `DeviceSpec`;
    every problem goes to `inv` (then None is returned when the device cannot be built at all)."""
    from keyturn.engine.profile import check_options
    from keyturn.policy import parse_policy
    from keyturn.scheduler.schedules import parse_schedule
    from keyturn.sites import check_known
    from keyturn.vault.records import validate_title

    before = len(inv.problems)
    for key in values:
        if key not in DEVICE_KEYS or key in ("device", "user", "user_password"):
            inv.problem(where, f"unknown setting {key!r}{suggest(str(key), DEVICE_KEYS)}")
    title = text(name)
    try:
        title = validate_title(title or "")
    except KeyturnError as exc:
        inv.problem(where, f"device name: {first_line(exc)}")
        return None
    raw_host = text(values.get("host"))
    host, port_text = ("", None)
    if raw_host is None:
        inv.problem(where, "no host (give the device's address)")
    else:
        host, port_text = _split_host(inv, where, raw_host)
    port = _port(inv, where, "port", values.get("port"))
    if port_text is not None:
        in_host = _port(inv, where, "port", port_text)
        if port is not None and in_host is not None and in_host != port:
            inv.problem(where, f"host {raw_host!r} and port {port} disagree")
        port = port or in_host
    ssh_port = _port(inv, where, "ssh_port", values.get("ssh_port"))
    target = text(values.get("target")) or defaults.target or default_target
    if target not in IOSXE_TARGETS:
        inv.problem(where, f"unknown target {target!r}{suggest(target, IOSXE_TARGETS)} (an inventory "
                    f"imports IOS XE devices: {', '.join(IOSXE_TARGETS)})")
    site = text(values.get("site"))
    if site is not None:
        try:
            check_known(site, defaults.known_sites)
        except KeyturnError as exc:
            inv.problem(where, first_line(exc))
    admin_login = text(values.get("admin_login")) or defaults.admin_login
    if admin_login is None:
        inv.problem(where, "no admin login (the credential keyturn logs in with; or --admin-login NAME)")
    admin_password = _secret(inv, where, "admin_password", values.get("admin_password"))
    enable = _secret(inv, where, "enable_secret", values.get("enable_secret"))
    options = {k: str(text(values[k])) for k in OPTION_KEYS if text(values.get(k)) is not None}
    try:
        options = check_options(options)
    except KeyturnError as exc:
        inv.problem(where, first_line(exc))
    policy = text(values.get("policy"))
    if policy is not None:
        try:
            parse_policy(policy)
        except KeyturnError as exc:
            inv.problem(where, f"policy: {first_line(exc)}")
    schedule = {k: v for k in SCHEDULE_KEYS if (v := text(values.get(k))) is not None}
    if schedule and "schedule" not in schedule:
        inv.problem(where, "tz, window and jitter need a schedule")
    elif schedule:
        spec_key = tuple(schedule.get(k) for k in SCHEDULE_KEYS)
        if spec_key not in inv.schedules_checked:  # a fleet shares a few schedules: check each once
            try:
                parse_schedule(schedule["schedule"], tz=schedule.get("tz"), window=schedule.get("window"),
                               jitter=schedule.get("jitter"))
                inv.schedules_checked[spec_key] = ""
            except KeyturnError as exc:
                inv.schedules_checked[spec_key] = f"schedule: {first_line(exc)}"
        if inv.schedules_checked[spec_key]:
            inv.problem(where, inv.schedules_checked[spec_key])
    trust = _trust(inv, where, values, base_dir)
    specs: list[UserSpec] = []
    seen: dict[str, str] = {}
    for u in users:
        login = text(u.login)
        if login is None:
            inv.problem(u.where, "a user without a login")
            continue
        if login.casefold() in seen:
            first = seen[login.casefold()]
            inv.problem(u.where, f"user {login!r} is listed twice for {title} (first at {first})")
            continue
        seen[login.casefold()] = u.where
        user_title = USER_TITLE.format(user=login, device=title)
        try:
            validate_title(user_title)
        except KeyturnError as exc:
            inv.problem(u.where, f"user {login!r}: {first_line(exc)}")
        specs.append(UserSpec(login, user_title, _secret(inv, u.where, "user password", u.password), u.where))
    if len(inv.problems) > before or admin_login is None:
        return None
    return DeviceSpec(name=title, where=where, host=host, port=port, ssh_port=ssh_port, target=target,
                      site=site, admin_login=admin_login, admin_password=admin_password or
                      defaults.admin_password, enable_secret=enable, users=specs, trust=trust,
                      options=options, policy=policy, schedule=schedule or None)


def _trust(inv: Inventory, where: str, values: Mapping[str, Any], base_dir: Path) -> dict[str, str]:
    trust: dict[str, str] = {}
    for key in TRUST_KEYS:
        value = text(values.get(key))
        if value is None:
            continue
        choices = TRUST_CHOICES.get(key)
        if choices is not None and value.lower() not in choices:
            inv.problem(where, f"{key} must be one of {', '.join(choices)}, not {value!r}")
            continue
        if key in PATH_KEYS:
            path = Path(value).expanduser()
            path = path if path.is_absolute() else (base_dir / path)
            if not path.is_file():
                inv.problem(where, f"{key} {value!r}: no such file")
                continue
            value = str(path.resolve())
        trust[key] = value.lower() if choices else value
    return trust


def check_titles(inv: Inventory) -> None:
    """A title given twice (device, admin or user records of different devices) is a problem."""
    seen: dict[str, str] = {}
    for dev in inv.devices:
        for title, where in ((dev.name, dev.where), (dev.admin_title, dev.where),
                             *((u.title, u.where) for u in dev.users)):
            key = title.casefold()
            if key in seen:
                inv.problem(where, f"duplicate title {title!r} (first at {seen[key]})")
            else:
                seen[key] = where


def users_from(value: Any, where: str, inv: Inventory) -> list[UserInput]:
    """Users as a format gives them: a list of logins or of {login|name|username, password} mappings,
    or a comma-separated string."""
    if value is None:
        return []
    if isinstance(value, str):
        return [UserInput(x.strip(), None, where) for x in value.split(",") if x.strip()]
    if not isinstance(value, list):
        inv.problem(where, f"users must be a list, not {type(value).__name__}")
        return []
    out = []
    for item in value:
        if isinstance(item, Mapping):
            login = item.get("login", item.get("name", item.get("username")))
            extra = set(item) - {"login", "name", "username", "password"}
            if extra:
                inv.problem(where, f"user {login!r}: unknown key(s) {', '.join(sorted(map(str, extra)))}")
            out.append(UserInput(login, item.get("password"), where))
        else:
            out.append(UserInput(item, None, where))
    return out


def finish(inv: Inventory) -> Inventory:
    """The checks across devices, and the warnings that follow from the whole file."""
    check_titles(inv)
    if inv.secrets_in_file:
        inv.warnings.insert(0, f"{inv.source} holds secrets in clear: keep it as safe as the vault, "
                            "or delete it once imported")
    no_users = [d.name for d in inv.devices if not d.users]
    if no_users:
        inv.warnings.append(f"{len(no_users)} device(s) list no user to rotate (e.g. {no_users[0]}); give "
                            "users in the file or with --user NAME")
    return inv
