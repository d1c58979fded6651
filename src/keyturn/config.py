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
    KEYTURN_MERAKI_API_SHARE  share of each Meraki organisation's API budget (10 requests/s) keyturn
                          may use, in (0, 1]; default 0.9 leaves headroom for other users of the key
    KEYTURN_DEBUG         show tracebacks of unexpected errors (never on by default)
    KEYTURN_AUDIT_SINKS   audit sinks as JSON (normally `[[keyturn.audit_sinks]]` tables in the TOML)

Read by their command only (Typer options that name them): KEYTURN_SERVE_HOST, KEYTURN_SERVE_PORT,
KEYTURN_SERVE_CERT, KEYTURN_SERVE_KEY (`keyturn serve`). Test hook, never set in production:
KEYTURN_TEST_KILL_AT (`keyturn.engine.hooks`).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from keyturn.errors import ConfigError


def _default_home() -> Path:
    return Path(platformdirs.user_data_dir("keyturn", appauthor=False))


class AuditSinkConfig(BaseModel):
    """One `[[keyturn.audit_sinks]]` table. The webhook HMAC key is never in the file: `hmac_record`
    names a vault record (uid or title) whose password is the key. `name` keys the sink's durable
    cursor and spool (KEYTURN_HOME/spool/<name>.sqlite), so renaming a sink restarts it from the
    first audit entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    type: Literal["jsonl", "syslog", "webhook"]
    format: Literal["jsonl", "cef"] = "jsonl"
    path: Path | None = None  # jsonl
    host: str | None = None  # syslog
    port: int | None = Field(default=None, ge=1, le=65535)  # syslog; default 514 (udp/tcp), 6514 (tls)
    protocol: Literal["udp", "tcp", "tls"] = "tls"
    facility: int = Field(default=10, ge=0, le=23)  # 10 = authpriv (security/authorization)
    hostname: str | None = None  # syslog HOSTNAME override
    url: str | None = None  # webhook (https only)
    ca_bundle: Path | None = None  # tls / webhook: trust this CA instead of the system store
    hmac_record: str | None = None  # webhook: vault record whose password is the HMAC key
    timeout: float = Field(default=10.0, gt=0, le=300)
    spool_max: int = Field(default=100_000, ge=1, le=10_000_000)
    batch_size: int = Field(default=100, ge=1, le=10_000)

    @model_validator(mode="after")
    def _required_per_type(self) -> AuditSinkConfig:
        need = {"jsonl": ("path",), "syslog": ("host",), "webhook": ("url", "hmac_record")}[self.type]
        missing = [f for f in need if getattr(self, f) is None]
        if missing:
            raise ValueError(f"a {self.type} sink needs {', '.join(missing)}")
        if self.type == "webhook" and not str(self.url).lower().startswith("https://"):
            raise ValueError("a webhook sink url must be https://")
        return self


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
    meraki_api_share: float = Field(default=0.9, gt=0, le=1)
    audit_sinks: list[AuditSinkConfig] = Field(default_factory=list)

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
