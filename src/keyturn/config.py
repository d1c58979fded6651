"""Typed settings, resolved in one place: argument > env var (`KEYTURN_*`) > config file > default.

Every environment variable keyturn reads is a field here:

    KEYTURN_HOME          data directory (default: the platform's user data dir)
    KEYTURN_DATABASE_URL  SQLAlchemy URL (default: sqlite file `keyturn.db` under KEYTURN_HOME)
    KEYTURN_MASTER_KEY    base64 32-byte master key (overrides the key file)
    KEYTURN_PASSPHRASE    passphrase for an Argon2id-derived master key
    KEYTURN_NEW_PASSPHRASE  the new passphrase for `keyturn vault rekey --new-passphrase`
    KEYTURN_KEY_FILE      master key file (default: KEYTURN_HOME/master.key)
    KEYTURN_CONFIG        TOML config file (default: KEYTURN_HOME/keyturn.toml)
    KEYTURN_LOG_LEVEL     logging level
    KEYTURN_CONCURRENCY   default number of rotations in flight
    KEYTURN_DEBUG         show tracebacks of unexpected errors (never on by default)
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from keyturn.errors import ConfigError


def _default_home() -> Path:
    return Path(platformdirs.user_data_dir("keyturn", appauthor=False))


class Settings(BaseSettings):
    """keyturn settings; construct with `load_settings()` so the config file is honoured."""

    model_config = SettingsConfigDict(env_prefix="KEYTURN_", extra="ignore")

    home: Path = Field(default_factory=_default_home)
    database_url: str | None = None
    master_key: SecretStr | None = None
    passphrase: SecretStr | None = None
    new_passphrase: SecretStr | None = None
    debug: bool = False
    key_file: Path | None = None
    config: Path | None = None
    log_level: str = "WARNING"
    concurrency: int = Field(default=64, ge=1, le=10_000)
    per_device_concurrency: int = Field(default=1, ge=1, le=64)
    history_depth: int = Field(default=10, ge=1, le=1000)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'keyturn.db'}"

    @property
    def effective_key_file(self) -> Path:
        return self.key_file or self.home / "master.key"


def load_settings(**overrides: Any) -> Settings:
    """Build settings: explicit overrides (CLI arguments) > env > config file > defaults."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    try:
        base = Settings(**overrides)
        config_path = base.config or base.home / "keyturn.toml"
        file_values: dict[str, Any] = {}
        if config_path.is_file():
            try:
                file_values = tomllib.loads(config_path.read_text()).get("keyturn", {})
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"cannot read config file: {exc}", location=str(config_path)) from exc
        if not file_values:
            return base
        env_set = {
            name for name in Settings.model_fields if f"KEYTURN_{name.upper()}" in os.environ
        }
        merged = {k: v for k, v in file_values.items() if k not in env_set and k not in overrides}
        merged.update(overrides)
        return Settings(**merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"invalid setting {loc}: {first['msg']}") from exc
