"""Settings without pydantic for the commands that start in a blink (`keyturn reveal`, `record add`).

`keyturn.config.load_settings` builds the full `Settings` with pydantic-settings: ~80 ms of imports
before a command can read one value. `quick_settings(**overrides)` reads the same sources with the same
precedence (argument > KEYTURN_* variable > the `[keyturn]` table of the TOML file > default), the same
file (`config_sources.file_values`) and the same guards (`secure_home`, `database_url_warning`), and
gives a `QuickSettings` with the values `Settings` would hold — or None, and then the caller loads the
full settings. It answers only when the answer is plain:

* every KEYTURN_* variable set (upper case) and every key of the `[keyturn]` table is one of the
  settings in `QUICK` — or one of the variables that are not settings (`NOT_SETTINGS`);
* every value is canonical for its type: a path or text is a string, a whole number is digits within
  the field's bounds, a flag is one of pydantic's words for true and false in lower case, a site list
  holds well-formed names.

Anything else (an audit sink table, a mistyped number, `KEYTURN_Home`, a setting this table does not
know) goes to the full loader, whose value or error (`ConfigError: invalid setting ...`) is the one
keyturn gives. `tests/unit/test_config_quick.py` holds `QUICK` to `Settings`' own fields (type, default,
bounds) and compares both loaders on each kind of input.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keyturn.config_sources import (
    EffectivePaths,
    config_file,
    database_url_warning,
    default_home,
    file_values,
    secure_home,
)
from keyturn.errors import ConfigError
from keyturn.sites import check_name

if TYPE_CHECKING:
    from keyturn.config import Settings

# KEYTURN_* variables read by one command each, never settings (`keyturn.config`'s docstring).
NOT_SETTINGS = frozenset({"KEYTURN_URL", "KEYTURN_CA_BUNDLE", "KEYTURN_TOKEN", "KEYTURN_SERVE_INSECURE_HTTP",
                          "KEYTURN_TEST_KILL_AT"})
_DIGITS = re.compile(r"0|[1-9][0-9]{0,8}")
_FLAGS = {"1": True, "on": True, "t": True, "true": True, "y": True, "yes": True,
          "0": False, "off": False, "f": False, "false": False, "n": False, "no": False}


class _Unplain(Exception):
    """A value the quick loader leaves to the full one."""


class QuickSecret:
    """A secret setting (`pydantic.SecretStr`'s interface as the vault uses it)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "QuickSecret('**********')"

    __str__ = __repr__


def _text(value: Any) -> str:
    if type(value) is not str:
        raise _Unplain
    return value


def _path(value: Any) -> Path:
    if isinstance(value, Path):
        return value
    if type(value) is not str or not value:
        raise _Unplain
    return Path(value)


def _flag(value: Any) -> bool:
    if type(value) is bool:
        return value
    if type(value) is str and value in _FLAGS:
        return _FLAGS[value]
    raise _Unplain


def _sites(value: Any) -> list[str]:
    items = value.split(",") if type(value) is str else value
    if type(items) is not list or any(type(v) is not str for v in items):
        raise _Unplain
    try:
        return [check_name(v) for v in (v.strip() for v in items) if v != ""]
    except ConfigError:
        raise _Unplain from None


def _whole(ge: int, le: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if type(value) is str and _DIGITS.fullmatch(value):
            value = int(value)
        if type(value) is not int or not ge <= value <= le:
            raise _Unplain
        return value
    return parse


@dataclass(frozen=True)
class Quick:
    """One setting the quick loader reads: how a plain value converts, and its default."""

    parse: Callable[[Any], Any]
    default: Any = None
    secret: bool = False


#: The settings the quick path knows (each one `Settings` holds, with the same default and bounds).
QUICK: Mapping[str, Quick] = {
    "home": Quick(_path, default_home),
    "database_url": Quick(_text),
    "master_key": Quick(_text, secret=True),
    "passphrase": Quick(_text, secret=True),
    "new_passphrase": Quick(_text, secret=True),
    "debug": Quick(_flag, False),
    "key_file": Quick(_path),
    "config": Quick(_path),
    "log_level": Quick(_text, "WARNING"),
    "history_depth": Quick(_whole(1, 1000), 10),
    "script_user": Quick(_text),
    "auto_upgrade": Quick(_flag),
    "sites": Quick(_sites, list),
}


class QuickSettings(EffectivePaths):
    """The settings in `QUICK`, as `Settings` holds them, with the same derived values. Reading any
    other setting is a bug in the command that asked for quick settings (AttributeError)."""

    home: Path
    database_url: str | None
    master_key: QuickSecret | None
    passphrase: QuickSecret | None
    new_passphrase: QuickSecret | None
    debug: bool
    key_file: Path | None
    config: Path | None
    log_level: str
    history_depth: int
    script_user: str | None
    auto_upgrade: bool | None
    sites: list[str]

    def __init__(self, values: Mapping[str, Any], overrides: Mapping[str, Any]) -> None:
        self._overrides = dict(overrides)
        for name, quick in QUICK.items():
            value = values[name] if name in values else quick.default() if callable(quick.default) \
                else quick.default
            setattr(self, name, QuickSecret(value) if quick.secret and value is not None else value)

    def full(self) -> Settings:
        """The full settings from the same arguments (`load_settings`), for whoever needs more."""
        from keyturn.config import load_settings

        return load_settings(**self._overrides)


def _env_name(name: str) -> str:
    return f"KEYTURN_{name.upper()}"


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: QUICK[name].parse(value) for name, value in values.items()}


def quick_settings(**overrides: Any) -> QuickSettings | None:
    """`load_settings(**overrides)`'s settings when every source is plain (module docstring); None
    when the full loader must decide. Raises what `load_settings` raises for an unreadable file."""
    from keyturn.hardening import secret_env  # master-key variables taken out of os.environ at start

    overrides = {k: v for k, v in overrides.items() if v is not None}
    env_names = {_env_name(name): name for name in QUICK}
    env: dict[str, Any] = {}
    for key, value in os.environ.items():
        upper = key.upper()
        if not upper.startswith("KEYTURN_") or upper in NOT_SETTINGS:
            continue
        if key != upper or key not in env_names:
            return None  # a setting this table does not know, or a name only pydantic matches
        env[env_names[key]] = value
    if set(overrides) - QUICK.keys():
        return None
    database_url_warning(overrides.get("database_url"), from_env=os.environ.get("KEYTURN_DATABASE_URL"))
    given = {**secret_env(), **overrides}
    try:
        # The file is found from the settings without it (argument > env > default), as `_load` does.
        first = _plain({**env, **given})
        home = first["home"] if "home" in first else default_home()
        in_file = file_values(config_file(home, first.get("config")))
        if set(in_file) - QUICK.keys():
            return None
        values = {**_plain({k: v for k, v in in_file.items() if k not in env and k not in given}), **first}
    except _Unplain:
        return None
    settings = QuickSettings(values, overrides)
    secure_home(settings.home)
    return settings
