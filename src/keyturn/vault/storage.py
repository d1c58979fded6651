"""Storage: SQLAlchemy 2 models, the engine, migrations, and transactions. Sees only ciphertext.

* SQLite (embedded default, a file under KEYTURN_HOME) or PostgreSQL (`postgresql+psycopg://...`),
  same schema, created/upgraded by Alembic at open (`upgrade head` over the migrations shipped in
  `keyturn/vault/migrations/versions`; other subsystems add their own revisions there).
* SQLite runs in WAL mode with a busy timeout and `check_same_thread=False` (the engine calls the
  vault from worker threads). Write transactions start with ``BEGIN IMMEDIATE`` so concurrent
  writers, including other processes, serialize instead of failing at commit.
* PostgreSQL write transactions that must be linear (the audit chain) lock the chain head row
  (`Storage.lock_chain`, which reads the head in the same statement; a transaction-scoped advisory
  lock stands in while there is no head row). The audit append takes it just before commit, so the
  writers of one installation queue only for a few statements (`WRITER_LOCK` counts the hold time).
* Every driver `OperationalError` / `InterfaceError` (locked, unreachable) becomes
  `StorageUnavailable` with the URL (password hidden) — see `Storage.session`.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from keyturn.errors import KeyturnError, StorageUnavailable

SQLITE_BUSY_TIMEOUT_MS = 10_000
_MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_ADVISORY_AUDIT = 0x6B74_6175  # "ktau": the audit-chain lock id on PostgreSQL
_ADVISORY_MIGRATE = 0x6B74_6D67  # "ktmg"
# The chain head row, locked and read in one statement (PostgreSQL, READ COMMITTED: FOR UPDATE waits
# for the holder and then reads the row as it committed, so the head is never stale under the lock).
_LOCK_HEAD = sa.text("SELECT value FROM kt_meta WHERE key = 'audit_head' FOR UPDATE")
_READ_HEAD = sa.text("SELECT value FROM kt_meta WHERE key = 'audit_head'")
_HELD_SINCE = "kt_writer_lock_since"  # Connection.info: when this transaction took the writer lock
# The unit of work open on this thread, if any (`Storage.unit`): session, engine, write.
_AMBIENT = threading.local()
#: Session.info key: the record rows a unit of work has read, kept alive so the session's (weak)
#: identity map answers a second read of the same record without a SELECT.
ROWS_KEPT = "kt_rows_kept"
#: Session.info key: audit entries a batching unit appends at its end, in one write (`AuditLog`).
AUDIT_BATCH = "kt_audit_batch"
#: Session.info key: record type → uids of every record of that type, title order, as a unit's
#: `Vault.prefetch` read them (the rows are in ROWS_KEPT); dropped when the unit adds or removes one.
FOUND_BY_TYPE = "kt_found_by_type"
#: Session.info key: the session's connection, taken when its transaction began. Core statements of
#: the hot path run on it directly (`connection_of`): `Session.execute` does nothing more for a
#: statement without ORM entities (no autoflush either) but costs a third more CPU per statement.
CONNECTION = "kt_connection"


def connection_of(s: Session) -> sa.Connection:
    """The connection of `s`'s transaction (the one `Storage.session` began), for Core statements."""
    conn: sa.Connection | None = s.info.get(CONNECTION)
    return conn if conn is not None else s.connection()


def ambient_session(engine: Engine) -> Session | None:
    """The session of the unit of work open on this thread for `engine`, or None."""
    s: Session | None = getattr(_AMBIENT, "session", None)
    return s if s is not None and _AMBIENT.engine is engine else None


def ambient_audit_batch(engine: Engine) -> list[Any] | None:
    """The audit batch of the unit of work open on this thread for `engine`, when it batches."""
    s = getattr(_AMBIENT, "session", None)
    if s is None or _AMBIENT.engine is not engine:
        return None
    batch: list[Any] | None = s.info.get(AUDIT_BATCH)
    return batch


def flush_ambient(engine: Engine) -> None:
    """Flush the pending ORM changes of the unit of work open on this thread for `engine`, if any
    (before taking the chain lock early: `Storage.unit` does the same before its batch)."""
    s = getattr(_AMBIENT, "session", None)
    if s is not None and _AMBIENT.engine is engine:
        s.flush()


def ambient_connection(engine: Engine) -> sa.Connection | None:
    """The connection of the unit of work open on this thread for `engine`, or None."""
    s = getattr(_AMBIENT, "session", None)
    if s is None or _AMBIENT.engine is not engine:
        return None
    return connection_of(s)


def utcnow() -> datetime:
    return datetime.now(UTC)


class WriterLockClock:
    """How long this process held the installation's serialized writer lock: SQLite's write lock
    (``BEGIN IMMEDIATE`` to the end of the transaction) or PostgreSQL's chain lock (`lock_chain` to
    the end of the transaction). For benchmarks; thread-safe; never reset by keyturn itself."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self.holds = 0
        self.seconds = 0.0

    def add(self, seconds: float) -> None:
        with self._mutex:
            self.holds += 1
            self.seconds += seconds


WRITER_LOCK = WriterLockClock()


def mark_lock_taken(conn: sa.Connection) -> None:
    """The writer lock was just taken in `conn`'s transaction (first time counts)."""
    conn.info.setdefault(_HELD_SINCE, time.perf_counter())


def lock_hold_ended(info: dict[Any, Any]) -> None:
    """`info` (a connection's `.info`, kept from while it was open) ended its transaction."""
    since = info.pop(_HELD_SINCE, None)
    if since is not None:
        WRITER_LOCK.add(time.perf_counter() - since)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset; we restore it)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime stored in the vault")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime}


class MetaRow(Base):
    """Vault-wide settings: key id, key-check value, KDF parameters, wrapped integrity key, rekey
    progress and lease, audit head."""

    __tablename__ = "kt_meta"
    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text)


class RecordRow(Base):
    __tablename__ = "kt_records"
    uid: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(512), index=True)
    title_key: Mapped[str] = mapped_column(sa.String(512), index=True)  # casefolded, for lookup
    type: Mapped[str] = mapped_column(sa.String(64), index=True)
    fields_json: Mapped[str] = mapped_column(sa.Text)  # plain fields; secret ones hold only a slot name
    custom_json: Mapped[str] = mapped_column(sa.Text)
    meta_json: Mapped[str] = mapped_column(sa.Text)
    wrapped_key: Mapped[bytes] = mapped_column(sa.LargeBinary)
    key_id: Mapped[str] = mapped_column(sa.String(16), index=True)  # which master key wraps it
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # HMAC over uid/type/title/fields/custom/meta (`Barrier.record_mac`); NULL only before the upgrade.
    mac: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)


class RecordValues(NamedTuple):
    """A kt_records row read as a Core row (the columns of `RecordRow`, in table order): what the read
    paths of the vault use. Reading a record this way costs about half of loading an ORM `RecordRow`
    (no identity map, no instance state); a path that changes the record loads the `RecordRow`."""

    uid: str
    title: str
    title_key: str
    type: str
    fields_json: str
    custom_json: str
    meta_json: str
    wrapped_key: bytes
    key_id: str
    created_at: datetime
    updated_at: datetime
    mac: str | None


#: A record row as read (`RecordValues`) or as loaded to be changed (`RecordRow`): the same columns.
RecordData = RecordRow | RecordValues


class SecretVersionRow(Base):
    __tablename__ = "kt_secret_versions"
    __table_args__ = (
        sa.UniqueConstraint("record_uid", "field", "version", name="uq_kt_secret_versions_rfv"),
        # Exactly one current per (record, field): enforced by the database, not by convention. The
        # PostgreSQL form of the predicate is added by `postgresql_options` (a PostgreSQL storage):
        # naming it here would import SQLAlchemy's PostgreSQL dialect for every SQLite vault.
        sa.Index(
            "uq_kt_secret_versions_current", "record_uid", "field", unique=True,
            sqlite_where=sa.text("state = 'current'"),
        ),
    )
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    record_uid: Mapped[str] = mapped_column(
        sa.String(32), sa.ForeignKey("kt_records.uid", ondelete="CASCADE"), index=True
    )
    field: Mapped[str] = mapped_column(sa.String(255))
    version: Mapped[int] = mapped_column(sa.Integer)
    state: Mapped[str] = mapped_column(sa.String(16))
    rotation_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True, index=True)
    ciphertext: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Keyed digest of (this secret, the stored-hash text the device showed when keyturn proved it by
    # that hash): the next check of the same secret against the same text needs no second scrypt.
    device_seen: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)


def postgresql_options() -> None:
    """Give the models their PostgreSQL-only options (idempotent): the partial unique index's
    ``postgresql_where``, as the migrations create it. Loads SQLAlchemy's PostgreSQL dialect."""
    table = SecretVersionRow.__table__
    assert isinstance(table, sa.Table)
    for index in table.indexes:
        if index.name == "uq_kt_secret_versions_current":
            index.dialect_kwargs["postgresql_where"] = sa.text("state = 'current'")


class AuditRow(Base):
    __tablename__ = "kt_audit"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    ts: Mapped[str] = mapped_column(sa.String(40))  # ISO text: hashed exactly as stored
    actor: Mapped[str] = mapped_column(sa.String(255))
    action: Mapped[str] = mapped_column(sa.String(64), index=True)
    record_uid: Mapped[str | None] = mapped_column(sa.String(32), nullable=True, index=True)
    details: Mapped[str] = mapped_column(sa.Text)
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64))
    # details' rotation_id, indexed (the rotation journal's steps); not hashed: `AuditLog.verify` checks it.
    rotation_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True, index=True)


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa_exc.ArgumentError:
        return "<invalid database URL>"


def normalize_url(url: str) -> str:
    """`postgres://` and a driverless `postgresql://` (what PostgreSQL's own tools and most hosting
    providers write) name the psycopg 3 driver keyturn installs (`keyturn[postgres]`); SQLAlchemy would
    otherwise look for psycopg2 or fail with "Can't load plugin"."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, or None for other databases / in-memory SQLite."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


class Storage:
    """One engine + session factory. `session(write=True)` is the only way to write."""

    def __init__(self, url: str, *, timeout: float = SQLITE_BUSY_TIMEOUT_MS / 1000) -> None:
        """`timeout`: seconds to wait for a SQLite lock, or for a PostgreSQL connection."""
        url = normalize_url(url)
        self.url = url
        self.display_url = safe_url(url)
        try:
            u = make_url(url)
        except sa_exc.ArgumentError as exc:
            raise StorageUnavailable(f"invalid database URL {self.display_url}") from exc
        self.dialect = u.get_backend_name()
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": timeout}
        elif self.dialect == "postgresql":
            postgresql_options()
            kwargs["connect_args"] = {"connect_timeout": max(1, int(timeout))}
            kwargs["pool_pre_ping"] = True
        try:
            self.engine: Engine = sa.create_engine(url, **kwargs)
        except (sa_exc.ArgumentError, ImportError) as exc:
            raise StorageUnavailable(f"cannot use database {self.display_url}: {exc}") from exc
        if self.dialect == "sqlite":
            _install_sqlite_hooks(self.engine, int(timeout * 1000))
        else:
            # A transaction that ended outside `session()` / `write_tx` must not leave its mark behind.
            event.listen(self.engine, "begin", lambda conn: conn.info.pop(_HELD_SINCE, None))
        self._local = threading.local()

    def dispose(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session in one transaction, committed on success, rolled back on error.

        `write=True` starts the transaction as a writer (SQLite ``BEGIN IMMEDIATE``), so a
        read-then-write inside it cannot race another writer. Inside `unit()` on this thread the
        unit's session is returned instead, and it commits with the unit.
        """
        ambient = getattr(_AMBIENT, "session", None)
        if ambient is not None and _AMBIENT.engine is self.engine:
            if write and not _AMBIENT.write:
                raise RuntimeError("a write inside a read-only unit of work")  # a bug, not a user error
            yield ambient
            return
        info: dict[Any, Any] = {}
        try:
            with Session(self.engine, expire_on_commit=False) as s, s.begin():
                # First use of the connection: the "begin" hook sees the option and picks the lock mode.
                conn = s.connection(execution_options={"keyturn_write": write})
                info, s.info[CONNECTION] = conn.info, conn
                yield s
        except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
            raise self.unavailable(exc) from exc
        except sa_exc.DBAPIError as exc:
            if isinstance(exc.orig, KeyturnError):  # pragma: no cover - defensive
                raise exc.orig from exc
            raise
        finally:
            lock_hold_ended(info)

    @contextlib.contextmanager
    def unit(self, *, write: bool = True, batch_audit: bool = False) -> Iterator[Session]:
        """One transaction for every vault, journal and lock call made on this thread inside the block.

        They all join it (see `session()` and `ambient_connection()`), so the block commits as a
        whole or not at all — the rotation engine uses it to make one durable write per phase instead
        of one per call. A nested `unit()` joins the outer one. Inside it a record read twice is read
        once, and its current secrets too (`versions.current_values`). With `batch_audit`, every
        audit entry appended inside goes into the chain in one write just before the commit (their
        ids are assigned then, so appends return none).
        """
        if getattr(_AMBIENT, "session", None) is not None and _AMBIENT.engine is self.engine:
            with self.session(write=write) as joined:
                yield joined
            return
        with self.session(write=write) as s:
            from keyturn.vault.versions import CURRENT_CACHE

            s.info[ROWS_KEPT], s.info[CURRENT_CACHE] = {}, {}
            if batch_audit and write:
                s.info[AUDIT_BATCH] = []
            _AMBIENT.session, _AMBIENT.engine, _AMBIENT.write = s, self.engine, write
            try:
                yield s
                batch = s.info.pop(AUDIT_BATCH, None)
                if batch:
                    # The unit's pending ORM changes go first: the chain lock is taken last and held
                    # for the append only (and a record row is always locked before the chain).
                    s.flush()
                    log_, entries = batch[0][0], [e for _log, e in batch]
                    log_.write_batch(connection_of(s), entries)
            finally:
                _AMBIENT.session = _AMBIENT.engine = None
                for key in (ROWS_KEPT, CURRENT_CACHE, AUDIT_BATCH, FOUND_BY_TYPE):
                    s.info.pop(key, None)

    def unavailable(self, exc: BaseException) -> StorageUnavailable:
        detail = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else type(exc).__name__
        return StorageUnavailable(f"database {self.display_url} is unavailable: {detail}")

    def serialize(self, s: Session | sa.Connection) -> None:
        """Inside a write session: serialize with every other chain writer (all processes) until the
        transaction ends. Take it as late as the work allows: every writer of the installation
        queues behind it. A transaction that also locks a record row locks the record first."""
        if self.dialect == "postgresql":
            self.lock_chain(connection_of(s) if isinstance(s, Session) else s)
        # SQLite: BEGIN IMMEDIATE already holds the single writer lock.

    def lock_chain(self, conn: sa.Connection) -> str | None:
        """Inside a write transaction: take the chain lock (`serialize`) and return the audit head's
        stored value read under it, or None when there is no head row.

        PostgreSQL: one statement locks and reads the head row. Without a head row (a new vault, or
        one whose head was removed) a transaction-scoped advisory lock stands in, and the head is read
        again under it, so a head committed meanwhile by the advisory holder is seen and locked.
        SQLite: the transaction already holds the writer lock; a plain read."""
        if self.dialect != "postgresql":
            value = conn.execute(_READ_HEAD).scalar_one_or_none()
            return None if value is None else str(value)
        value = conn.execute(_LOCK_HEAD).scalar_one_or_none()
        if value is None:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_AUDIT})
            value = conn.execute(_LOCK_HEAD).scalar_one_or_none()
        mark_lock_taken(conn)
        return None if value is None else str(value)

    def migrate(self, *, upgrade: bool = True) -> None:
        """`alembic upgrade head` over the shipped migrations, serialized across processes.

        One query first: a database already at the shipped head (`shipped_head`) is left as it is
        without loading Alembic, which is every open but the first after an upgrade. Anything else (no
        version table yet, an older revision, one this keyturn does not know) goes to Alembic under
        the migration lock, as before. A revision this keyturn does not know (a newer keyturn wrote
        it) is refused with both revisions named. `upgrade=False` (the setting `auto_upgrade` off)
        refuses a database behind the head with "run `keyturn db upgrade`" and touches nothing; an
        empty database is still created. Alembic's progress lines are logged at debug level."""
        if self._at_shipped_head():
            return
        from alembic import command
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory
        from alembic.util import CommandError

        cfg = self._alembic_config()
        script = ScriptDirectory.from_config(cfg)
        head = script.get_current_head()
        known = {r.revision for r in script.walk_revisions()}
        try:
            with self.engine.connect() as conn, _alembic_at_debug():
                conn = conn.execution_options(keyturn_write=True)
                with conn.begin():
                    if self.dialect == "postgresql":
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_MIGRATE})
                    stored = MigrationContext.configure(conn).get_current_revision()
                    if stored is not None and stored not in known:
                        raise StorageUnavailable(
                            f"database {self.display_url}: schema migration failed: the schema is at "
                            f"{stored}, newer than this keyturn (its newest is {head}); run the keyturn "
                            "that upgraded it")
                    if stored is not None and stored != head and not upgrade:
                        raise StorageUnavailable(
                            f"database {self.display_url}: the schema is at {stored} but this keyturn "
                            f"needs {head}; run `keyturn db upgrade` (auto_upgrade is off)")
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
        except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
            raise self.unavailable(exc) from exc
        except CommandError as exc:
            # A broken migration chain or a database newer than this keyturn: refuse, touch nothing.
            raise StorageUnavailable(f"database {self.display_url}: schema migration failed: "
                                     f"{str(exc).splitlines()[0]}") from exc

    def schema_revision(self) -> str | None:
        """The database's Alembic revision; None for a database keyturn never migrated."""
        try:
            with self.engine.connect() as conn:
                if not sa.inspect(conn).has_table("alembic_version"):
                    return None
                value = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
            raise self.unavailable(exc) from exc
        return str(value) if value else None

    @staticmethod
    def _alembic_config() -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS_DIR))
        cfg.set_main_option("path_separator", "os")  # versions live in the default <script>/versions
        return cfg

    def _at_shipped_head(self) -> bool:
        head = shipped_head()
        if head is None:
            return False
        try:
            conn = self.engine.connect()
        except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
            raise self.unavailable(exc) from exc
        with conn:
            try:
                # SQLite: BEGIN IMMEDIATE, as a migration takes it, so a database another process holds
                # locked is still reported at open (WAL would let a plain read through).
                conn.execution_options(keyturn_write=True).begin()
            except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
                raise self.unavailable(exc) from exc
            try:
                stored = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
            except sa_exc.DBAPIError:  # no version table yet: a new database
                return False
        return stored == [head]


class _InfoToDebug(logging.Filter):
    """Alembic's INFO lines ("Context impl …", "Running upgrade …") as DEBUG, dropped unless keyturn
    logs at debug: a server start is not the place for seven lines of migration chatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger("keyturn").isEnabledFor(logging.DEBUG)
        return True


@contextlib.contextmanager
def _alembic_at_debug() -> Iterator[None]:
    loggers = [logging.getLogger(n) for n in ("alembic.runtime.migration", "alembic.ddl.impl")]
    demote = _InfoToDebug()
    for lg in loggers:
        lg.addFilter(demote)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(demote)


@functools.cache
def shipped_head() -> str | None:
    """The head revision of the shipped migrations, from the `revision` / `down_revision` literals of
    the version files (neither they nor Alembic are imported); None unless there is exactly one head."""
    revisions, parents = _shipped_graph()
    heads = revisions - parents
    return next(iter(heads)) if len(heads) == 1 else None


def shipped_revisions() -> frozenset[str]:
    """Every revision this keyturn ships: a stored one outside it was written by a newer keyturn."""
    return _shipped_graph()[0]


@functools.cache
def _shipped_graph() -> tuple[frozenset[str], frozenset[str]]:
    """(revisions, revisions some other one names as its parent) of the shipped version files."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (_MIGRATIONS_DIR / "versions").glob("*.py"):
        found: dict[str, object] = {}
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                target, value = node.target, node.value
            else:
                continue
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                with contextlib.suppress(ValueError):
                    found[target.id] = ast.literal_eval(value)
        revision, down = found.get("revision"), found.get("down_revision")
        if not isinstance(revision, str):
            continue
        revisions.add(revision)
        if isinstance(down, str):
            parents.add(down)
        elif isinstance(down, tuple | list):  # a merge revision
            parents.update(str(d) for d in down)
    return frozenset(revisions), frozenset(parents)


def _install_sqlite_hooks(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite so "begin" below decides the lock mode.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {busy_timeout_ms:d}")
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA foreign_keys = ON")
            cur.execute("PRAGMA synchronous = NORMAL")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        write = conn.get_execution_options().get("keyturn_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
        conn.info.pop(_HELD_SINCE, None)
        if write:
            mark_lock_taken(conn)
