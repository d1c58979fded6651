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
    KEYTURN_NOTIFY        notification rules as JSON (normally `[[keyturn.notify]]` tables in the TOML)
    KEYTURN_SCRIPT_USER   account post-rotation scripts run as when keyturn runs as root (default
                          nobody; `keyturn.scripts.runner.resolve_script_user`)
    KEYTURN_BROKER_URL    Celery broker (redis://… by default, amqp://… for RabbitMQ): when set, `rotate`,
                          the API and the scheduler enqueue rotations for `keyturn worker`s
    KEYTURN_REDIS_URL     Redis for the limits workers share (Meraki budgets, per-device slots);
                          default: the broker URL when it is redis://
    KEYTURN_WORKER_ATTEMPTS   rotations a worker tries for one request while they fail (default 3)
    KEYTURN_WORKER_RETRY_BACKOFF  seconds before the second attempt, doubling (default 5)
    KEYTURN_WORKER_MAX_DELIVERIES  deliveries of one request whose worker died before it settles
                          `needs_attention` (a poison request never loops; default 3)
    KEYTURN_BROKER_VISIBILITY_TIMEOUT  seconds before Redis hands an unacknowledged task to another
                          worker (default 300; RabbitMQ redelivers when the connection drops)
    KEYTURN_WORKER_HEARTBEAT  seconds between a worker's heartbeats: registration, claim renewal
                          (claims live 60 s, so at most 20) and, every third beat, the stranded check
                          (default 10)
    KEYTURN_WORKER_STRANDED_AFTER  seconds after its last publish a request counts as stranded — queued
                          while its queue is empty, or claimed by a dead worker — and is published
                          again (default 30)
    KEYTURN_WORKER_SLOT_TTL  seconds a device slot (`DeviceSlots`) lives without renewal (renewed every
                          third of it): how long a killed worker keeps its devices from the others
                          (default 60)
    KEYTURN_AUTO_UPGRADE  upgrade the database schema when a vault behind this keyturn's is opened
                          (default: true for the embedded SQLite, false for PostgreSQL, where
                          `keyturn db upgrade` is a deliberate step); off, opening one is refused
    KEYTURN_SITES         sites records and profiles may name, comma-separated (`sites = [...]` in the
                          TOML); `default` is always one (`keyturn.sites`)
    KEYTURN_PER_DEVICE_CONCURRENCY  rotations in flight on one device at most (default 1)
    KEYTURN_HISTORY_DEPTH  password versions kept per record (default 10)
    KEYTURN_SERVE_HOST    address `keyturn serve` binds (default 127.0.0.1; any other needs a
                          certificate, or --insecure-http)
    KEYTURN_SERVE_PORT    TCP port `keyturn serve` listens on; 0 picks a free one (default 8443)
    KEYTURN_SERVE_CERT    TLS certificate chain of `keyturn serve`, PEM (with KEYTURN_SERVE_KEY)
    KEYTURN_SERVE_KEY     TLS private key of `keyturn serve`, PEM
    KEYTURN_SERVE_GRACE   seconds in-flight rotations get on SIGTERM before they are parked for recovery
                          (default 30)

KEYTURN_MASTER_KEY, KEYTURN_PASSPHRASE and KEYTURN_NEW_PASSPHRASE are taken out of the environment when a
command starts (`keyturn.hardening`); `load_settings` gets them from there, at the same rank.

`keyturn serve`'s flags (--host, --port, --cert, --key, --grace) take priority over the KEYTURN_SERVE_*
settings above. Read by their command only (Typer options that name them):
KEYTURN_SERVE_INSECURE_HTTP (`keyturn serve`, a choice made per start, never in a file); KEYTURN_URL,
KEYTURN_CA_BUNDLE and KEYTURN_TOKEN, the server a consumer reads from (`keyturn exec`; the token from the
environment only, never an option). Test hook, never
set in production: KEYTURN_TEST_KILL_AT (`keyturn.engine.hooks`).

`load_settings` also guards the data directory (issue 12, item 16): KEYTURN_HOME holds the key file,
the database and the audit spool, so one readable by group or others is tightened to 0700 with a
warning (it is created 0700 by `keyturn init`); and a database URL with a password given as an
argument (`--database-url`) draws the same warning as `--password`: the process list and the shell
history show it. KEYTURN_DATABASE_URL (the environment is readable by its owner only), the config
file or the database's own password file (``PGPASSFILE``) are the places for it.

`keyturn.config_quick` reads the same sources without pydantic for the commands that must start in a
blink (`keyturn reveal`, `record add`), and leaves every configuration that is not plain to
`load_settings`; its table of settings is held to the fields below by tests/unit/test_config_quick.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The pydantic-free half of loading settings (`keyturn.config_sources`); HOME_MODE, database_url_warning
# and secure_home are re-exported: they lived here first.
from keyturn.config_sources import HOME_MODE as HOME_MODE
from keyturn.config_sources import EffectivePaths, config_file, default_home, file_values
from keyturn.config_sources import database_url_warning as database_url_warning
from keyturn.config_sources import secure_home as secure_home
from keyturn.errors import ConfigError
from keyturn.sites import check_name
from keyturn.tags import check_tag


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


_OUTCOME = Literal["rotated", "rotated_unverifiable", "rotated_script_errors", "rolled_back", "unverified",
                   "failed", "needs_attention"]
NOTIFY_OUTCOMES: tuple[_OUTCOME, ...] = (
    "failed", "rolled_back", "needs_attention", "unverified", "rotated_script_errors")


class NotifyConfig(BaseModel):
    """One `[[keyturn.notify]]` table: where finished rotations are announced and which ones
    (`keyturn.notify`). No secret is in the file: a Slack-compatible webhook URL (its path is the
    token) is the password of the vault record `url_record`, the SMTP password that of
    `password_record`. `name` keys the rule's durable cursor and spool
    (KEYTURN_HOME/spool/notify-<name>.sqlite). Empty `tags` / `sites` match every record."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    type: Literal["slack", "email"]
    outcomes: list[_OUTCOME] = Field(default_factory=lambda: list(NOTIFY_OUTCOMES), min_length=1)
    tags: list[str] = Field(default_factory=list)
    sites: list[str] = Field(default_factory=list)
    url_record: str | None = None  # slack: vault record whose password is the https:// webhook URL
    host: str | None = None  # email: SMTP server
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True  # email: STARTTLS before anything else is sent
    sender: str | None = Field(default=None, alias="from")  # email
    to: list[str] = Field(default_factory=list)  # email
    username: str | None = None  # email: SMTP AUTH user (with password_record)
    password_record: str | None = None  # email: vault record whose password is the SMTP password
    ca_bundle: Path | None = None  # trust this CA instead of the system store
    timeout: float = Field(default=10.0, gt=0, le=300)
    spool_max: int = Field(default=10_000, ge=1, le=10_000_000)
    batch_size: int = Field(default=20, ge=1, le=1000)

    @field_validator("tags", "sites")
    @classmethod
    def _names(cls, value: list[str], info: ValidationInfo) -> list[str]:
        check = check_tag if info.field_name == "tags" else check_name
        try:
            return [check(v) for v in value]
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _required_per_type(self) -> NotifyConfig:
        if self.type == "slack":
            if self.url_record is None:
                raise ValueError("a slack rule needs url_record (the vault record holding the webhook URL)")
            return self
        missing = [f for f, v in (("host", self.host), ("from", self.sender)) if v is None]
        if not self.to:
            missing.append("to")
        if missing:
            raise ValueError(f"an email rule needs {', '.join(missing)}")
        if (self.username is None) != (self.password_record is None):
            raise ValueError("username and password_record go together")
        if self.password_record is not None and not self.starttls:
            raise ValueError("SMTP AUTH needs starttls = true (the password would cross in clear)")
        return self


class Settings(BaseSettings, EffectivePaths):
    """keyturn settings; construct with `load_settings()` so the config file is honoured."""

    model_config = SettingsConfigDict(env_prefix="KEYTURN_", extra="ignore")

    home: Path = Field(default_factory=default_home)
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
    notify: list[NotifyConfig] = Field(default_factory=list)
    script_user: str | None = None
    auto_upgrade: bool | None = None  # None: `effective_auto_upgrade` decides by backend
    # NoDecode: KEYTURN_SITES is "dc-east,dc-west", not JSON.
    sites: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("sites", mode="before")
    @classmethod
    def _site_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list):
            value = [v.strip() if isinstance(v, str) else v for v in value]
            return [v for v in value if v != ""]
        return value

    @field_validator("sites")
    @classmethod
    def _site_names(cls, value: list[str]) -> list[str]:
        try:
            return [check_name(v) for v in value]
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    broker_url: str | None = None
    redis_url: str | None = None
    worker_attempts: int = Field(default=3, ge=1, le=20)
    worker_retry_backoff: float = Field(default=5.0, ge=0, le=3600)
    worker_max_deliveries: int = Field(default=3, ge=1, le=100)
    broker_visibility_timeout: float = Field(default=300.0, ge=5, le=86_400)
    worker_heartbeat: float = Field(default=10.0, gt=0, le=20)
    worker_stranded_after: float = Field(default=30.0, ge=0, le=86_400)
    worker_slot_ttl: float = Field(default=60.0, ge=3, le=3600)
    serve_host: str = Field(default="127.0.0.1", min_length=1)
    serve_port: int = Field(default=8443, ge=0, le=65535)
    serve_cert: Path | None = None
    serve_key: Path | None = None
    serve_grace: float = Field(default=30.0, ge=0, le=3600)
    # Web console sessions (`keyturn.console.session`): seconds without a request, and seconds since
    # sign-in, after which a session ends.
    console_idle_timeout: float = Field(default=900.0, ge=60, le=86_400)
    console_session_lifetime: float = Field(default=28_800.0, ge=300, le=604_800)
    # Drop `Secure` from the console cookie: only for plain-HTTP tests on the loopback interface.
    console_insecure_cookie: bool = False

    @property
    def effective_redis_url(self) -> str | None:
        if self.redis_url:
            return self.redis_url
        if self.broker_url and self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return None


def load_settings(**overrides: Any) -> Settings:
    """Build settings: explicit overrides (CLI arguments) > env > config file > defaults.

    Warns about (and tightens) a KEYTURN_HOME open to others, and about a password in a
    `database_url` argument (see the module docstring)."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    database_url_warning(overrides.get("database_url"), from_env=os.environ.get("KEYTURN_DATABASE_URL"))
    from keyturn.hardening import secret_env  # master-key variables taken out of os.environ at start

    settings = _load({**secret_env(), **overrides})
    secure_home(settings.home)
    return settings


SettingSource = Literal["flag", "env", "file", "default"]


def setting_sources(**overrides: Any) -> tuple[Settings, Path, dict[str, SettingSource]]:
    """The effective settings, the config file consulted and where each setting came from: `flag`
    (an argument), `env` (KEYTURN_*), `file` (the `[keyturn]` table) or `default` — the precedence of
    `load_settings`, which this mirrors (for `keyturn config show`)."""
    from keyturn.hardening import secret_env

    # --home and --database-url also read their variable (Typer): the same value as the env is env.
    flags = {k for k, v in overrides.items() if v is not None and os.environ.get(_env_name(k)) != str(v)}
    settings = load_settings(**overrides)
    env = {k for k in secret_env()} | {n for n in Settings.model_fields if _env_name(n) in os.environ}
    path = config_path(settings)
    in_file = set(file_values(path))
    sources: dict[str, SettingSource] = {}
    for name in Settings.model_fields:
        sources[name] = ("flag" if name in flags else "env" if name in env
                         else "file" if name in in_file else "default")
    return settings, path, sources


def _env_name(field: str) -> str:
    return f"KEYTURN_{field.upper()}"


def config_path(base: Settings) -> Path:
    """The TOML file settings are read from: KEYTURN_CONFIG, else KEYTURN_HOME/keyturn.toml."""
    return config_file(base.home, base.config)


def _load(overrides: dict[str, Any]) -> Settings:
    try:
        base = Settings(**overrides)
        in_file = file_values(config_path(base))
        if not in_file:
            return base
        env_set = {
            name for name in Settings.model_fields if _env_name(name) in os.environ
        }
        merged = {k: v for k, v in in_file.items() if k not in env_set and k not in overrides}
        merged.update(overrides)
        return Settings(**merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"invalid setting {loc}: {first['msg']}") from exc
