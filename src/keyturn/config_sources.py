"""Where keyturn's settings come from, without pydantic: the default data directory, the TOML file,
and the guards `keyturn.config.load_settings` applies — a KEYTURN_HOME open to others is tightened
(module docstring of `keyturn.config`), a database password given as an argument draws a warning.

Shared by the full loader (`keyturn.config`) and the quick one (`keyturn.config_quick`), so both read
the same file the same way and warn once per process, whichever ran.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keyturn.errors import ConfigError

log = logging.getLogger("keyturn.config")
HOME_MODE = 0o700
_warned: set[str] = set()       # one warning per process and subject, however often settings load




class EffectivePaths:
    """What `Settings` and `QuickSettings` derive from their own values (one definition for both)."""

    if TYPE_CHECKING:
        home: Path
        database_url: str | None
        auto_upgrade: bool | None
        key_file: Path | None

    @property
    def effective_database_url(self) -> str:
        """The configured database, or the embedded SQLite vault in `home`."""
        return self.database_url or f"sqlite:///{self.home / 'keyturn.db'}"

    @property
    def effective_auto_upgrade(self) -> bool:
        """Migrate on open: as configured, else only the embedded SQLite (a shared PostgreSQL is
        upgraded by `keyturn db upgrade`)."""
        if self.auto_upgrade is not None:
            return self.auto_upgrade
        return self.effective_database_url.startswith("sqlite")

    @property
    def effective_key_file(self) -> Path:
        """The configured master-key file, or `master.key` in `home`."""
        return self.key_file or self.home / "master.key"


def default_home() -> Path:
    import platformdirs  # here: a KEYTURN_HOME set (the usual case) never needs it

    return Path(platformdirs.user_data_dir("keyturn", appauthor=False))


def secure_home(home: Path) -> str | None:
    """Tighten an existing KEYTURN_HOME readable or writable by group or others to 0700; the warning
    given (logged once), or None when there was nothing to say. A missing home is left to
    `keyturn init`, which creates it 0700."""
    try:
        st = home.stat()
    except OSError:
        return None
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISDIR(st.st_mode) or not mode & 0o077:
        return None
    fix = f"fix with: chmod {HOME_MODE:o} {home}"
    if not _ours(home, st):
        # Never chmod a directory that is not plainly keyturn's own (KEYTURN_HOME=/tmp, or /, as root).
        message = (f"KEYTURN_HOME {home} is open to group/others (mode {mode:04o}) and does not look like "
                   f"a directory keyturn alone uses, so it was left as it is; use a private one, or {fix}")
    else:
        try:
            home.chmod(HOME_MODE)
            message = (f"KEYTURN_HOME {home} was open to group/others (mode {mode:04o}); tightened to "
                       f"{HOME_MODE:04o}: it holds the master key file, the vault database and the "
                       "audit spool")
        except OSError as exc:
            message = (f"KEYTURN_HOME {home} is open to group/others (mode {mode:04o}) and could not be "
                       f"tightened ({exc.strerror}); {fix}")
    _warn_once(f"home:{home}", message)
    return message


# What a keyturn home holds; a directory with anything else in it is not tightened automatically.
HOME_ENTRIES = frozenset({"keyturn.db", "keyturn.db-wal", "keyturn.db-shm", "keyturn.db-journal",
                          "master.key", "master.key.new", "keyturn.toml", "spool"})


def _ours(home: Path, st: os.stat_result) -> bool:
    """Owned by us, not a shared (sticky) directory, and holding nothing but keyturn's files."""
    if st.st_uid != os.geteuid() or st.st_mode & stat.S_ISVTX:
        return False
    try:
        with os.scandir(home) as entries:
            return all(entry.name in HOME_ENTRIES for entry in entries)
    except OSError:
        return False


def database_url_warning(url: str | None, *, from_env: str | None) -> str | None:
    """The warning for a database password given as an argument (`--database-url`), like `--password`'s;
    None when the URL has no password or came from KEYTURN_DATABASE_URL (`from_env`)."""
    if not url or url == from_env:
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        password = make_url(url).password
    except (ArgumentError, ValueError):
        return None
    if not password:
        return None
    message = ("a database password given on the command line (--database-url) can leak via the process "
               "list and shell history; prefer KEYTURN_DATABASE_URL, the config file, or the database's "
               "password file (PGPASSFILE)")
    _warn_once("database_url:" + hashlib.sha256(url.encode()).hexdigest(), message)
    return message


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(message)


def config_file(home: Path, config: Path | None) -> Path:
    """The TOML file settings are read from: KEYTURN_CONFIG, else KEYTURN_HOME/keyturn.toml."""
    return config or home / "keyturn.toml"


def file_values(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        values = tomllib.loads(path.read_text()).get("keyturn", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file: {exc}", location=str(path)) from exc
    return values if isinstance(values, dict) else {}
