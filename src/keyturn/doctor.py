"""`keyturn doctor`: check an installation and say, per check, what is wrong and how to fix it.

Each check ends as one `Check`: ``ok``, ``warning`` (works, but look at it), ``problem`` (something
fails or will fail) or ``skipped`` (it needs something another check already reported broken — a
broken thing is reported once, by the check it belongs to). Nothing is changed: the vault is opened
only when its schema is already this keyturn's (so opening migrates nothing), no audit message is
sent, no device is contacted.

    key_file        the master key file exists, is ours and is not readable by group or others
    database        reachable, and the round-trip time of one query
    schema          the stored revision against the shipped head (`keyturn db upgrade`)
    clock           skew of this host's clock against the database server's (PostgreSQL)
    vault           unsealed with the key this process has (file, KEYTURN_MASTER_KEY, passphrase)
    broker          KEYTURN_BROKER_URL (and a separate KEYTURN_REDIS_URL) accept a connection
    workers         a live worker serves every site that has rotations waiting
    audit_sink:NAME the destination is reachable (file writable, TCP connect); spool depth and failures
    trust           IOS XE devices whose accounts rotate with no pinned certificate / host key
    needs_attention, unverified   accounts flagged so (`keyturn status --flagged`)
    serve_cert      KEYTURN_SERVE_CERT expires in more than 30 days
    device_certs    CA bundles (PEM) named by devices' ``ca_bundle``, and the certificates pinned by
                    fingerprint, expire in more than 30 days

A database that is down, or a sealed vault, skips only the checks that need it. A pinned certificate's
expiry is the ``certificate_not_after`` that `keyturn device trust` records with the pin (a pin made
before it did is counted, and the detail says how to record it); when a device's certificate is
renewed its pin must be replaced, so the fix names `keyturn device trust RECORD --tls-only --replace`.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import stat
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from keyturn.errors import KeyturnError, VaultSealed

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from keyturn.config import AuditSinkConfig, Settings

Status = Literal["ok", "warning", "problem", "skipped"]
OK: Status = "ok"
WARNING: Status = "warning"
PROBLEM: Status = "problem"
SKIPPED: Status = "skipped"

CERT_WARN_DAYS = 30
LATENCY_WARN_MS = 50.0
SKEW_WARN_S, SKEW_PROBLEM_S = 1.0, 10.0   # worker claims and leases are tens of seconds long
SPOOL_WARN_SHARE = 0.8
CONNECT_TIMEOUT = 3.0
TLS_TRUST = ("fingerprint", "ca_bundle")
SSH_TRUST = ("host_key_fingerprint", "ssh_known_hosts")
SSH_TARGETS = ("iosxe-ssh", "iosxe-enable-secret")
UNCHECKED = {"insecure": ("true", "yes", "1", "on"), "ssh_host_key": ("accept-any",)}


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Report:
    checks: list[Check]

    @property
    def healthy(self) -> bool:
        """No check found a problem (warnings do not make an installation unhealthy)."""
        return all(c.status != PROBLEM for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {"healthy": self.healthy, "checks": [asdict(c) for c in self.checks]}


def skew_status(seconds: float) -> Status:
    return PROBLEM if abs(seconds) >= SKEW_PROBLEM_S else WARNING if abs(seconds) >= SKEW_WARN_S else OK


def expiry_status(not_after: datetime, now: datetime) -> Status:
    if not_after <= now:
        return PROBLEM
    return WARNING if not_after - now <= timedelta(days=CERT_WARN_DAYS) else OK


def run(settings: Settings, *, now: datetime | None = None) -> Report:
    """Every check, in the order of the module docstring; never raises for what it finds."""
    now = now or datetime.now(UTC)
    checks: list[Check] = []
    db = _Database(settings)
    try:
        key = _key_file(settings)
        checks.append(key)
        checks.extend(db.checks())
        checks.append(_vault(settings, db, key))
        checks.extend(_broker(settings, db))
        checks.extend(_sinks(settings, db))
        checks.extend(_accounts(db))
        checks.extend(_certificates(settings, db, now))
    finally:
        db.close()
    return Report(checks)


# --- key file, database, schema, clock, vault --------------------------------------------------------


def _key_file(settings: Settings) -> Check:
    if settings.master_key is not None:
        return Check("key_file", OK, "master key from KEYTURN_MASTER_KEY (no key file used)")
    path = settings.effective_key_file
    try:
        st = path.stat()
    except FileNotFoundError:
        if settings.passphrase is not None:
            return Check("key_file", OK, "master key from KEYTURN_PASSPHRASE (no key file used)")
        return Check("key_file", PROBLEM, f"no key file at {path}",
                     "restore the key file from its backup, or set KEYTURN_MASTER_KEY / KEYTURN_KEY_FILE; "
                     "a new vault: `keyturn init`")
    except OSError as exc:
        return Check("key_file", PROBLEM, f"key file {path} cannot be read ({exc.strerror})",
                     f"give the user keyturn runs as access to {path}")
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != os.geteuid():
        return Check("key_file", PROBLEM, f"key file {path} belongs to uid {st.st_uid}, not to this user "
                     f"({os.geteuid()})", f"chown it to the user keyturn runs as, then chmod 600 {path}")
    if mode & 0o077:
        return Check("key_file", PROBLEM, f"key file {path} is open to group/others (mode {mode:04o})",
                     f"chmod 600 {path}")
    return Check("key_file", OK, f"{path} (mode {mode:04o}, owner uid {st.st_uid})")


class _Database:
    """The storage every later check shares; `engine` is None when the database is not usable."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine: Engine | None = None
        self.at_head = False
        self.down = ""            # why the database checks failed (the later ones skip, naming it)
        self._storage: Any = None

    def close(self) -> None:
        if self._storage is not None:
            self._storage.dispose()

    def checks(self) -> list[Check]:
        from keyturn.vault.storage import Storage, shipped_head, shipped_revisions, sqlite_path

        url = self.settings.effective_database_url
        path = sqlite_path(url)
        if path is not None and not path.exists():
            self.down = "no vault database"
            return [Check("database", PROBLEM, f"no vault database at {path}",
                          "create one with `keyturn init`, or restore it with `keyturn vault restore`"),
                    Check("schema", SKIPPED, "no database"), Check("clock", SKIPPED, "no database")]
        try:
            self._storage = storage = Storage(url, timeout=CONNECT_TIMEOUT)
            latency, skew = self._probe(storage)
            current = storage.schema_revision()
        except KeyturnError as exc:
            self.down = "database unreachable"
            return [Check("database", PROBLEM, str(exc), "start the database or fix KEYTURN_DATABASE_URL "
                          "(`keyturn config show` says where it comes from)"),
                    Check("schema", SKIPPED, self.down), Check("clock", SKIPPED, self.down)]
        self.engine = storage.engine
        out = [Check("database", WARNING if latency > LATENCY_WARN_MS else OK,
                     f"{storage.display_url} reachable, {latency:.2f} ms per query",
                     "" if latency <= LATENCY_WARN_MS else "keep keyturn near its database: every rotation "
                     "step is a transaction")]
        head = shipped_head() or "?"
        if current == head:
            self.at_head = True
            out.append(Check("schema", OK, f"at {head}, this keyturn's"))
        elif current is None:
            self.down = "no vault schema"
            out.append(Check("schema", PROBLEM, "the database has no keyturn schema",
                             "create a vault (`keyturn init`) or restore one (`keyturn vault restore`)"))
        else:
            newer = current not in shipped_revisions()
            self.down = "schema not this keyturn's"
            out.append(Check("schema", PROBLEM, f"the database is at {current}, this keyturn needs {head}"
                             + (" (the database is newer)" if newer else ""),
                             "run the keyturn that upgraded it" if newer else "run `keyturn db upgrade`"))
        if skew is None:
            out.append(Check("clock", OK, "embedded SQLite: the database uses this host's clock"))
        else:
            st = skew_status(skew)
            out.append(Check("clock", st, f"this host's clock is {skew:+.2f} s from the database server's",
                             "" if st == OK else "run NTP (chrony, systemd-timesyncd) on both hosts"))
        return out

    @staticmethod
    def _probe(storage: Any) -> tuple[float, float | None]:
        """(milliseconds for `SELECT 1`, best of three; skew in seconds, None for SQLite)."""
        import sqlalchemy as sa
        from sqlalchemy import exc as sa_exc

        try:
            with storage.engine.connect() as conn:
                rtts = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    conn.execute(sa.text("SELECT 1")).scalar()
                    rtts.append((time.perf_counter() - t0) * 1000)
                if storage.dialect == "sqlite":
                    return min(rtts), None
                before = time.time()
                server = conn.execute(sa.text("SELECT CURRENT_TIMESTAMP")).scalar()
                after = time.time()
                conn.rollback()
        except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
            raise storage.unavailable(exc) from exc
        skew = (before + after) / 2 - server.timestamp()
        return min(rtts), skew


def _vault(settings: Settings, db: _Database, key: Check) -> Check:
    if not db.at_head:
        return Check("vault", SKIPPED, db.down or "schema not this keyturn's")
    if key.status == PROBLEM:  # the vault refuses such a key file: one broken thing, reported once
        return Check("vault", SKIPPED, "the master key file is not usable (see key_file)")
    from keyturn.vault import Vault

    try:
        Vault.open(settings, timeout=CONNECT_TIMEOUT).close()
    except VaultSealed as exc:
        return Check("vault", PROBLEM, str(exc), "give keyturn the vault's master key: the key file "
                     f"{settings.effective_key_file}, KEYTURN_MASTER_KEY, or KEYTURN_PASSPHRASE")
    except KeyturnError as exc:
        return Check("vault", PROBLEM, str(exc), "see the message; `keyturn vault check` tells more")
    return Check("vault", OK, "unsealed with the master key this process has")


# --- broker and workers, audit sinks -------------------------------------------------------------------


def _broker(settings: Settings, db: _Database) -> list[Check]:
    if not settings.broker_url:
        return [Check("broker", OK, "no broker configured: rotations run in the process that asks")]
    from keyturn.vault.storage import safe_url

    out = []
    for what, url, ping in (("broker", settings.broker_url, _kombu_ping),
                            ("redis", settings.effective_redis_url, _redis_ping)):
        if url is None or (what == "redis" and url == settings.broker_url):
            continue
        try:
            ping(url)
            out.append(Check(what, OK, f"{safe_url(url)} accepts connections"))
        except Exception as exc:  # every client library's own errors: the broker did not answer
            out.append(Check(what, PROBLEM, f"{safe_url(url)} unreachable ({type(exc).__name__})",
                             f"start it, or fix KEYTURN_{what.upper()}_URL"))
    if db.engine is None or not db.at_head:
        return [*out, Check("workers", SKIPPED, db.down or "no database")]
    from keyturn.dispatch.ledger import RequestLedger

    stats = RequestLedger(db.engine).site_stats()
    stuck = [s for s in stats if s.queued and not s.workers]
    live = sum(s.workers for s in stats)
    if stuck:
        names = ", ".join(f"{s.site} ({s.queued} waiting, oldest {s.oldest_queued_age:.0f} s)" for s in stuck)
        out.append(Check("workers", PROBLEM, f"rotations wait with no live worker: {names}",
                         "start `keyturn worker --site SITE` for " + ", ".join(s.site for s in stuck)))
    elif not live:
        out.append(Check("workers", WARNING, "no live worker: requested rotations will wait",
                         "start `keyturn worker --site SITE` for each site"))
    else:
        out.append(Check("workers", OK, f"{live} live worker(s) on " + ", ".join(
            f"{s.site}" for s in stats if s.workers)))
    return out


def _kombu_ping(url: str) -> None:
    from keyturn.dispatch.app import make_app

    app = make_app(url)
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=CONNECT_TIMEOUT)
    finally:
        app.close()


def _redis_ping(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT)
    try:
        client.ping()
    finally:
        client.close()


def _sinks(settings: Settings, db: _Database) -> list[Check]:
    newest = None
    if db.engine is not None and db.at_head:
        import sqlalchemy as sa

        from keyturn.vault.storage import AuditRow

        with db.engine.connect() as conn:
            newest = int(conn.execute(sa.select(sa.func.max(AuditRow.id))).scalar() or 0)
    spool = settings.home / "spool"
    return [_sink(cfg, spool / f"{cfg.name}.sqlite", newest) for cfg in settings.audit_sinks]


def _sink(cfg: AuditSinkConfig, spool: Path, newest: int | None) -> Check:
    name = f"audit_sink:{cfg.name}"
    try:
        where = _sink_reachable(cfg)
    except OSError as exc:
        return Check(name, PROBLEM, f"{cfg.type} sink unreachable: {exc.strerror or type(exc).__name__}",
                     "start the receiver or fix the sink's address; entries wait in the audit table "
                     "meanwhile (nothing is lost)")
    spooled = failures = cursor = 0
    last_error = None
    if spool.exists():
        with _read_only(spool) as db:
            spooled = int(db.execute("SELECT count(*) FROM items").fetchone()[0])
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        failures, cursor, last_error = int(meta.get("failures", 0)), int(meta.get("cursor", 0)), \
            meta.get("last_error")
    backlog = spooled + (max(0, newest - cursor) if newest is not None else 0)
    detail = f"{where}; {spooled} spooled, backlog {backlog} of {cfg.spool_max}"
    if failures:
        return Check(name, WARNING, f"{detail}; {failures} failed deliveries in a row ({last_error})",
                     "`keyturn audit sinks` shows the backlog; the sink catches up once its receiver answers")
    if spooled >= SPOOL_WARN_SHARE * cfg.spool_max:
        return Check(name, WARNING, detail, "the receiver is slower than the audit log: raise spool_max or "
                     "batch_size, or speed it up")
    return Check(name, OK, detail)


def _sink_reachable(cfg: AuditSinkConfig) -> str:
    """Where the sink delivers, after the cheapest proof that it can (no message is sent)."""
    if cfg.type == "jsonl":
        assert cfg.path is not None
        parent = cfg.path.parent
        if not os.access(cfg.path if cfg.path.exists() else parent, os.W_OK):
            raise PermissionError(13, f"{cfg.path} is not writable")
        return f"file {cfg.path} writable"
    if cfg.type == "syslog":
        assert cfg.host is not None
        port = cfg.port or (6514 if cfg.protocol == "tls" else 514)
        if cfg.protocol == "udp":
            socket.getaddrinfo(cfg.host, port)
            return f"udp {cfg.host}:{port} resolves (UDP cannot be checked further)"
    else:
        parts = urlsplit(str(cfg.url))
        port = parts.port or 443
        assert parts.hostname is not None
        cfg_host = parts.hostname
        socket.create_connection((cfg_host, port), timeout=CONNECT_TIMEOUT).close()
        return f"https {cfg_host}:{port} accepts connections"
    socket.create_connection((cfg.host, port), timeout=CONNECT_TIMEOUT).close()
    return f"{cfg.protocol} {cfg.host}:{port} accepts connections"


class _read_only:
    """A sink's spool opened read-only: the doctor never creates or changes one."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=CONNECT_TIMEOUT)

    def __enter__(self) -> sqlite3.Connection:
        return self._db

    def __exit__(self, *exc: object) -> None:
        self._db.close()


# --- accounts, trust, certificates ---------------------------------------------------------------------


def _accounts(db: _Database) -> list[Check]:
    names = ("trust", "needs_attention", "unverified")
    if db.engine is None or not db.at_head:
        return [Check(n, SKIPPED, db.down or "no database") for n in names]
    from keyturn.accounts_view import list_accounts

    accounts = list_accounts(db.engine).accounts
    out = [_trust(db.engine, accounts)]
    for flag, status, fix in (
            ("needs_attention", PROBLEM, "`keyturn status --flagged` says why; fix the cause, then "
             "`keyturn rotate RECORD`"),
            ("unverified", WARNING, "`keyturn recover` probes the devices and settles them")):
        flagged = [a.title for a in accounts if flag in a.flags]
        out.append(Check(flag, status, f"{len(flagged)} account(s): {_few(flagged)}", fix) if flagged
                   else Check(flag, OK, f"none of {len(accounts)} account(s)"))
    return out


def _few(names: list[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _plain_custom(engine: Engine, uids: set[str]) -> dict[str, tuple[str, dict[str, str]]]:
    """uid → (title, plain custom fields by label) — read without the master key (secret ones are slots)."""
    import sqlalchemy as sa

    from keyturn.vault.storage import RecordRow

    out: dict[str, tuple[str, dict[str, str]]] = {}
    with engine.connect() as conn:
        rows = conn.execute(sa.select(RecordRow.uid, RecordRow.title, RecordRow.custom_json)
                            .where(RecordRow.uid.in_(sorted(uids))))
        for uid, title, raw in rows:
            fields = {}
            for item in json.loads(raw):
                values = item.get("value") or []
                if "slot" not in item and item.get("label") and values and str(values[0]).strip():
                    fields[str(item["label"]).casefold()] = str(values[0]).strip()
            out[uid] = (title, fields)
    return out


def _trust(engine: Engine, accounts: list[Any]) -> Check:
    needs: dict[str, set[str]] = {}       # resource uid → "tls" / "ssh"
    for a in accounts:
        if a.target.startswith("iosxe"):
            needs.setdefault(a.resource_uid or a.record_uid, set()).add(
                "ssh" if a.target in SSH_TARGETS else "tls")
    resources = _plain_custom(engine, set(needs))
    untrusted, unchecked = [], []
    for uid, kinds in sorted(needs.items()):
        title, fields = resources.get(uid, (uid, {}))
        for kind, labels in (("tls", TLS_TRUST), ("ssh", SSH_TRUST)):
            if kind not in kinds:
                continue
            mode = fields.get("insecure" if kind == "tls" else "ssh_host_key", "").lower()
            if any(fields.get(label) for label in labels):
                continue
            if mode in UNCHECKED["insecure" if kind == "tls" else "ssh_host_key"]:
                unchecked.append(f"{title} ({kind})")
            elif not (kind == "ssh" and mode == "tofu"):
                untrusted.append(f"{title} ({kind})")
    if untrusted:
        return Check("trust", PROBLEM, f"no trust pinned, rotations are refused: {_few(untrusted)}",
                     "`keyturn device trust RECORD` shows the device's certificate / host key and pins them")
    if unchecked:
        return Check("trust", WARNING, f"trust not checked (insecure / accept-any): {_few(unchecked)}",
                     "pin it (`keyturn device trust RECORD`), then remove insecure / ssh_host_key=accept-any")
    return Check("trust", OK, f"{len(needs)} IOS XE device(s), each with trust pinned")


def _certificates(settings: Settings, db: _Database, now: datetime) -> list[Check]:
    out = []
    cert = settings.serve_cert
    if cert is None:
        out.append(Check("serve_cert", OK, "not set: `keyturn serve` runs on loopback or plain HTTP"))
    else:
        out.append(_cert_file("serve_cert", cert, now, "renew the certificate and restart `keyturn serve`"))
    if db.engine is None or not db.at_head:
        return [*out, Check("device_certs", SKIPPED, db.down or "no database")]
    from keyturn.accounts_view import list_accounts

    uids = {a.resource_uid or a.record_uid for a in list_accounts(db.engine).accounts}
    bundles: dict[str, list[str]] = {}
    pinned: list[tuple[str, str]] = []       # (title, certificate_not_after)
    unrecorded: list[str] = []
    for title, fields in sorted(_plain_custom(db.engine, uids).values()):
        if fields.get("ca_bundle"):
            bundles.setdefault(fields["ca_bundle"], []).append(title)
        if fields.get("fingerprint"):
            if fields.get("certificate_not_after"):
                pinned.append((title, fields["certificate_not_after"]))
            else:
                unrecorded.append(title)
    checks = [_cert_file("device_certs", Path(p), now, "renew the CA certificate; update the file the "
                         f"devices' ca_bundle names ({_few(t)})") for p, t in sorted(bundles.items())]
    checks += [_pinned_cert(title, after, now) for title, after in pinned]
    bad = [c for c in checks if c.status != OK]
    if bad:
        worst = PROBLEM if any(c.status == PROBLEM for c in bad) else WARNING
        fixes = list(dict.fromkeys(c.fix for c in bad))
        return [*out, Check("device_certs", worst, "; ".join(c.detail for c in bad), "; ".join(fixes))]
    note = (f"; {len(unrecorded)} pinned before expiries were recorded ({_few(unrecorded)}): `keyturn device "
            "trust RECORD --tls-only` records it" if unrecorded else "")
    return [*out, Check("device_certs", OK, f"{len(bundles)} CA bundle(s) and {len(pinned)} pinned "
                        f"certificate(s) valid beyond {CERT_WARN_DAYS} days{note}")]


def _pinned_cert(title: str, not_after: str, now: datetime) -> Check:
    """The certificate pinned on device `title`, valid until `not_after` (ISO 8601, from device trust)."""
    fix = (f"renew the certificate on {title}, then `keyturn device trust {title} --tls-only --replace` "
           "(pins the new one; rotations are refused by the old pin until then)")
    try:
        after = datetime.fromisoformat(not_after)
    except ValueError:
        return Check("device_certs", WARNING, f"{title}: certificate_not_after {not_after!r} is not a date",
                     f"`keyturn device trust {title} --tls-only` records it again")
    after = after if after.tzinfo else after.replace(tzinfo=UTC)
    st = expiry_status(after, now)
    verb = "expired" if st == PROBLEM else "expires"
    return Check("device_certs", st, f"{title}: pinned certificate {verb} {after:%Y-%m-%d} "
                 f"({(after - now).days} days)", fix if st != OK else "")


def _cert_file(name: str, path: Path, now: datetime, fix: str) -> Check:
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        return Check(name, PROBLEM, f"{path} cannot be read as PEM certificates "
                     f"({getattr(exc, 'strerror', None) or type(exc).__name__})", fix)
    soonest = min(certs, key=lambda c: c.not_valid_after_utc)
    after = soonest.not_valid_after_utc
    st = expiry_status(after, now)
    subject = soonest.subject.rfc4514_string() or "(no subject)"
    verb = "expired" if st == PROBLEM else "expires"
    days = (after - now).days
    return Check(name, st, f"{path}: {subject} {verb} {after:%Y-%m-%d} ({days} days)",
                 fix if st != OK else "")


def render(report: Report, echo: Callable[[str], None]) -> None:
    """One line per check (`status  name  detail`), the fix indented under it."""
    width = max((len(c.name) for c in report.checks), default=0)
    for c in report.checks:
        echo(f"{c.status:<8} {c.name:<{width}}  {c.detail}")
        if c.fix and c.status in (WARNING, PROBLEM):
            echo(f"{'':<8} {'':<{width}}  fix: {c.fix}")
    problems = sum(c.status == PROBLEM for c in report.checks)
    warnings = sum(c.status == WARNING for c in report.checks)
    echo("healthy" + (f" ({warnings} warning(s))" if warnings else "") if report.healthy
         else f"{problems} problem(s), {warnings} warning(s)")

