"""Script attachments: which post-rotation scripts a record carries, stored in the record's meta.

A record (PAM user, resource, or PAM configuration) holds its attachments as a JSON list under
`record.meta["scripts"]`, in run order. Each entry is the plain-JSON form of a `ScriptAttachment`:

    {"script": "/opt/scripts/update.py", "prefix": "/usr/bin/python3", "with_records": ["uid1"],
     "timeout": 120.0, "env": {"NOTIFY_URL": "https://..."}, "fail_on": ["Failed to update"]}

The meta is **not encrypted**: `env` values and `fail_on` patterns are stored in clear, so they must
never hold a secret (a script that needs a credential gets it from a record listed in `with_records`,
through stdin). `attachments_of` validates what it reads and raises `ConfigError` naming the record and
entry, so a hand-edited or corrupt meta fails loudly instead of running something unexpected. The
vault tags the meta (`keyturn.vault.integrity`): a database write that adds an attachment is refused.

Attachments, and Keeper's `Shell` custom field (the command prefix of a resource's scripts), run with
the passwords a rotation sets. They are accepted from the CLI (`keyturn script attach`, `keyturn record
add/edit`) only: the API refuses them, and an import refuses them unless the admin confirms with
`keyturn record import --allow-scripts`. `script_bearing` says what in a record would run one.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from keyturn.errors import ConfigError

META_KEY = "scripts"
SHELL_LABEL = "Shell"  # Keeper's custom field: command prefix of the resource's scripts
DEFAULT_TIMEOUT = 120.0
MAX_TIMEOUT = 24 * 3600.0
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class HasLabel(Protocol):
    @property
    def label(self) -> str | None: ...

    @property
    def value(self) -> list[Any]: ...


class HasMeta(Protocol):
    """What this module reads from a vault record."""

    @property
    def uid(self) -> str: ...

    @property
    def meta(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class ScriptAttachment:
    """One post-rotation script attached to a record.

    `script` is the script path (made absolute by `keyturn script attach`); `prefix` is Keeper's
    "Run with Command Prefix" (split with `shlex`, never run through a shell); `with_records` are uids of
    extra records the script sees in `records`; `env` is extra, non-secret environment (stored in
    clear); `fail_on` are regexes that mark a run failed when they match stdout or stderr even if the
    script exits 0. Invalid values raise `ConfigError` at construction.
    """

    script: str
    prefix: str | None = None
    with_records: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT
    env: Mapping[str, str] = field(default_factory=dict)
    fail_on: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.script or not self.script.strip():
            raise ConfigError("script path is empty")
        if self.prefix is not None:
            try:
                parts = shlex.split(self.prefix)
            except ValueError as exc:
                raise ConfigError(f"command prefix {self.prefix!r} cannot be parsed: {exc}") from exc
            if not parts:
                raise ConfigError("command prefix is empty; omit it to run the script by its shebang")
        if not (0 < self.timeout <= MAX_TIMEOUT):
            raise ConfigError(f"timeout must be between 0 and {MAX_TIMEOUT:g} seconds, got {self.timeout:g}")
        for name, value in self.env.items():
            if not _ENV_NAME.match(name):
                raise ConfigError(f"environment variable name {name!r} is not valid (letters, digits, _)")
            if not isinstance(value, str) or "\0" in value:
                raise ConfigError(f"environment variable {name} must be a string without NUL bytes")
        for pattern in self.fail_on:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"fail-on pattern {pattern!r} is not a valid regex: {exc}") from exc
        # Freeze the containers so an attachment read from meta cannot be mutated behind the runner.
        object.__setattr__(self, "with_records", tuple(self.with_records))
        object.__setattr__(self, "fail_on", tuple(self.fail_on))
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))

    @property
    def name(self) -> str:
        """The script's file name, as shown in results and job logs."""
        return Path(self.script).name

    def to_meta(self) -> dict[str, Any]:
        """The plain-JSON form stored in `record.meta["scripts"]`."""
        return {
            "script": self.script,
            "prefix": self.prefix,
            "with_records": list(self.with_records),
            "timeout": self.timeout,
            "env": dict(self.env),
            "fail_on": list(self.fail_on),
        }

    @classmethod
    def from_meta(cls, data: Mapping[str, Any], *, location: str | None = None) -> ScriptAttachment:
        """Parse one stored entry; raises `ConfigError(location=...)` when it is malformed."""
        try:
            if not isinstance(data, Mapping):
                raise ConfigError("entry is not an object")
            unknown = set(data) - {"script", "prefix", "with_records", "timeout", "env", "fail_on"}
            if unknown:
                raise ConfigError(f"unknown keys {sorted(unknown)}")
            script = data.get("script")
            if not isinstance(script, str):
                raise ConfigError("'script' must be a string")
            prefix = data.get("prefix")
            if prefix is not None and not isinstance(prefix, str):
                raise ConfigError("'prefix' must be a string or null")
            timeout = data.get("timeout", DEFAULT_TIMEOUT)
            if isinstance(timeout, bool) or not isinstance(timeout, int | float):
                raise ConfigError("'timeout' must be a number")
            return cls(
                script=script,
                prefix=prefix,
                with_records=_str_tuple(data.get("with_records", []), "with_records"),
                timeout=float(timeout),
                env=_str_map(data.get("env", {})),
                fail_on=_str_tuple(data.get("fail_on", []), "fail_on"),
            )
        except ConfigError as exc:
            if location is None:
                raise
            raise ConfigError(str(exc), location=location) from exc


def _str_tuple(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"'{key}' must be a list of strings")
    return tuple(value)


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError("'env' must be an object of string values")
    return dict(value)


def attachments_of(record: HasMeta) -> list[ScriptAttachment]:
    """The record's script attachments in run order (empty when it has none)."""
    raw = record.meta.get(META_KEY)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError("script attachments must be a list", location=f"record {record.uid} meta.scripts")
    return [
        ScriptAttachment.from_meta(item, location=f"record {record.uid} meta.scripts[{i}]")
        for i, item in enumerate(raw)
    ]


def script_bearing(
    *, custom: Iterable[HasLabel] = (), meta: Mapping[str, Any] | None = None,
) -> list[str]:
    """What in a record would choose or run a post-rotation script, for a message: ``meta.scripts``
    when it holds any entry, ``custom field 'Shell'`` for a non-empty `Shell` field (label in any case:
    refusing a near miss costs nothing). Empty when there is nothing."""
    found: list[str] = []
    if meta is not None and meta.get(META_KEY):
        n = len(meta[META_KEY]) if isinstance(meta[META_KEY], list) else 1
        found.append(f"meta.{META_KEY} ({n} attachment{'' if n == 1 else 's'})")
    for f in custom:
        if (f.label or "").casefold() == SHELL_LABEL.casefold() and any(
                str(v).strip() for v in f.value):
            found.append(f"custom field {f.label!r}")
    return found


def to_meta(attachments: Sequence[ScriptAttachment]) -> list[dict[str, Any]]:
    """The value to store with `Vault.set_meta(uid, "scripts", ...)`."""
    return [a.to_meta() for a in attachments]


def parse_env_assignments(items: Sequence[str]) -> dict[str, str]:
    """Parse CLI `K=V` items into a dict; raises `ConfigError` for an item without `=`."""
    env: dict[str, str] = {}
    for index, item in enumerate(items, 1):
        name, sep, value = item.partition("=")
        if not sep or not name:
            # The item itself is not echoed: a mistyped value might be something sensitive.
            raise ConfigError(f"--env expects NAME=VALUE (item {index} has no name or no '=')")
        env[name] = value
    return env
