"""Run Keeper-compatible post-rotation scripts: no shell, no secret in argv or env, bounded, redacted,
isolated.

`run_script` runs one attachment; `run_rotation_scripts` runs every attachment of a rotation in the
contract's order. Guarantees:

* **argv** is `[script]` (its shebang picks the interpreter) or `shlex.split(prefix) + [script]`;
  no shell ever parses anything. The secret reaches the script only on **stdin** (one base64 line, then
  EOF). A script that never reads stdin neither hangs nor breaks the runner.
* **environment** is minimal: `PATH`, `HOME`, `LANG` from the keyturn process (defaults when unset),
  `TMPDIR` = the private working directory, the proxy/TLS variables `HTTP_PROXY`, `HTTPS_PROXY`,
  `NO_PROXY`, `REQUESTS_CA_BUNDLE`, `SSL_CERT_FILE` (and lower-case forms) when keyturn has them, then
  the attachment's own `env` (which wins). Nothing else of keyturn's environment leaks through. An
  attachment may not set what decides *which code runs* (`refused_env_names`: `PATH`, `LD_*`,
  `PYTHON*`, and the like for other interpreters): refused when attached and again before each run.
* each run has a **private working directory** (mode 0700, owned by the script's user, removed
  afterwards) and runs under a **supervisor** (`keyturn.scripts.supervisor`): the script gets its own
  session, and when it ends — or times out (SIGKILL) — every process it started is killed, a
  ``setsid`` daemon included (the supervisor is their child subreaper), before the result exists.
* **identity**: under a hardened entry point (`keyturn.hardening`: the CLI and `keyturn serve`), when
  keyturn runs as root, scripts run as the `script_user` setting (``KEYTURN_SCRIPT_USER``, default
  ``nobody``; ``root`` keeps root, with a warning) — a root script could read keyturn's memory and key
  file. A non-root keyturn runs scripts as itself (it cannot switch; its process is non-dumpable, so
  the script cannot read it). The script and its interpreter must be readable and executable by that
  user.
* stdout and stderr are read concurrently and **bounded** (`OUTPUT_LIMIT` characters each; the head is
  kept and a truncation note appended), decoded as UTF-8 with replacement characters, and every secret
  form listed in `keyturn.scripts.redact` is replaced by `********` before the result exists.
* problems never raise: each becomes a `ScriptResult` with `ok=False` and a one-line `error` that says
  what to do — script missing, not a file, not executable, bad shebang (no `#!`, CR line ending,
  interpreter missing, interpreter path with a space), prefix not found, refused environment, unknown
  script user, timeout, killed by a signal, non-zero exit, `fail_on` pattern matched.

`run_rotation_scripts` runs **every** script even when an earlier one failed and reports all of them;
deciding what a failure means (`rotated_script_errors`, or NOOP rollback) is the engine's job.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import json
import logging
import os
import pwd
import re
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from keyturn import hardening
from keyturn.errors import ConfigError, KeyturnError
from keyturn.scripts.attachments import ScriptAttachment, attachments_of
from keyturn.scripts.payload import (
    RecordLike,
    build_payload,
    custom_text,
    login_of,
    records_for,
    secret_values,
)
from keyturn.scripts.redact import Redactor
from keyturn.secret import Secret

log = logging.getLogger("keyturn.scripts")

OUTPUT_LIMIT = 64 * 1024
# How long to wait for stdout/stderr to reach EOF once the script itself has exited or been killed
# (a grandchild that escaped the process group may hold the pipes open forever).
DRAIN_GRACE = 2.0
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
PASSTHROUGH_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
# Environment an attachment may not set: each decides which code runs (the loader's preloads and paths,
# an interpreter's start-up hooks, the command search path), so setting it would let whoever edits an
# attachment run code with the passwords. Compared in upper case.
REFUSED_ENV_NAMES = frozenset({"PATH", "IFS", "BASH_ENV", "ENV", "PERL5LIB", "PERL5OPT", "PERLLIB", "RUBYLIB",
                               "RUBYOPT", "NODE_OPTIONS", "NODE_PATH"})
REFUSED_ENV_PREFIXES = ("LD_", "PYTHON", "DYLD_")
DEFAULT_SCRIPT_USER = "nobody"
STOP_GRACE = 5.0  # seconds the supervisor gets to sweep after SIGTERM before it is killed itself
SUPERVISOR = str(Path(__file__).with_name("supervisor.py"))
SPACE_IN_SHEBANG_HINT = (
    "the kernel splits the shebang at the first space; use a prefix such as "
    "--prefix '/path with space/python3' or a '#!/usr/bin/env python3' shebang"
)


@dataclass(frozen=True)
class ScriptResult:
    """The outcome of one script run; every text field is already redacted and bounded.

    `exit_code` is None when the script never started or was killed by keyturn (timeout);
    negative when a signal it did not get from keyturn ended it. `error` is None on success, else one
    line naming the reason and the fix.
    """

    name: str
    exit_code: int | None
    duration: float
    stdout: str
    stderr: str
    ok: bool
    error: str | None
    owner_uid: str
    script: str = ""
    truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form, for storing on the rotation."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScriptResult:
        return cls(**{k: data[k] for k in data if k in cls.__dataclass_fields__})


def _failed(att: ScriptAttachment, owner_uid: str, error: str, started: float | None = None) -> ScriptResult:
    duration = time.monotonic() - started if started is not None else 0.0
    return ScriptResult(
        name=att.name, exit_code=None, duration=duration, stdout="", stderr="", ok=False, error=error,
        owner_uid=owner_uid, script=att.script,
    )


def refused_env_names(env: Mapping[str, str]) -> list[str]:
    """The names in an attachment's `env` that it may not set (see `REFUSED_ENV_NAMES`), sorted."""
    return sorted(name for name in env
                  if name.upper() in REFUSED_ENV_NAMES or name.upper().startswith(REFUSED_ENV_PREFIXES))


def refused_env_message(names: Sequence[str]) -> str:
    return (f"environment {', '.join(names)} may not be set for a script: PATH, LD_*, PYTHON* and other "
            "variables that choose which code runs are refused (they would let whoever edits the "
            "attachment run code with the passwords); use an absolute interpreter path or --prefix")


@dataclass(frozen=True, slots=True)
class ScriptUser:
    """The account scripts run as when keyturn runs as root."""

    name: str
    uid: int
    gid: int


def resolve_script_user(name: str | None, *, euid: int | None = None) -> ScriptUser | None:
    """Who scripts run as (None: keyturn's own user); `ConfigError` when that cannot be.

    As root (`euid` 0): `name`, default ``nobody``; ``root`` (or uid 0) keeps root, with a warning
    logged. Not root: None — keyturn cannot switch users — and a `name` other than its own user is an
    error (the isolation asked for cannot be given)."""
    euid = os.geteuid() if euid is None else euid
    wanted = (name or "").strip()
    if euid != 0:
        if wanted and wanted not in (_user_name(euid), str(euid)):
            raise ConfigError(f"script_user {wanted!r} needs keyturn to run as root (it runs as uid {euid}, "
                              "and scripts run as that user); unset script_user or run keyturn as root")
        return None
    wanted = wanted or DEFAULT_SCRIPT_USER
    try:
        entry = pwd.getpwuid(int(wanted)) if wanted.isdigit() else pwd.getpwnam(wanted)
    except (KeyError, OverflowError) as exc:
        raise ConfigError(f"script_user {wanted!r}: no such user on this host (create it, or set "
                          "KEYTURN_SCRIPT_USER / script_user to an unprivileged account)") from exc
    if entry.pw_uid == 0:
        log.warning("post-rotation scripts run as root (script_user=%s): a script can read keyturn's "
                    "memory and master key file", wanted)
        return None
    return ScriptUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


RunAs = ScriptUser | None | Literal["policy"]


def _run_as(run_as: RunAs) -> ScriptUser | None:
    if run_as != "policy":
        return run_as
    policy = hardening.script_policy()
    return resolve_script_user(policy.user) if policy.separate else None


def build_env(att: ScriptAttachment, base_env: Mapping[str, str] | None, workdir: str, *,
              own_home: bool = False) -> dict[str, str]:
    """The child's environment (see the module docstring); `own_home`: HOME is the working directory
    (a script running as another user has no business in keyturn's home)."""
    base = os.environ if base_env is None else base_env
    env = {
        "PATH": base.get("PATH") or DEFAULT_PATH,
        "HOME": workdir if own_home else (base.get("HOME") or workdir),
        "LANG": base.get("LANG") or "C.UTF-8",
        "TMPDIR": workdir,
    }
    for name in PASSTHROUGH_VARS:
        for variant in (name, name.lower()):
            if variant in base:
                env[variant] = base[variant]
    env.update(att.env)
    return env


def _executable_file(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _check_shebang(script: Path, env_path: str) -> str | None:
    """None when the kernel can run the script directly, else the reason and the fix."""
    with script.open("rb") as fh:
        head = fh.read(512)
    if head.startswith(b"\x7fELF"):
        return None
    if not head.startswith(b"#!"):
        return (
            f"bad shebang: {script.name} has no '#!' line, so the system cannot run it; add one such as "
            "'#!/usr/bin/env python3' or attach it with --prefix"
        )
    line = head[2:].split(b"\n", 1)[0]
    if line.endswith(b"\r"):
        return (
            f"bad shebang: the first line of {script.name} ends with a carriage return (Windows line "
            "endings); convert it with dos2unix or attach it with --prefix"
        )
    text = line.decode("utf-8", errors="replace").strip(" \t")
    if not text:
        return f"bad shebang: the '#!' line of {script.name} names no interpreter"
    # The kernel takes everything up to the first space or tab as the interpreter path.
    interpreter, _, rest = text.replace("\t", " ").partition(" ")
    if not _executable_file(interpreter):
        if rest.strip():
            return f"bad shebang: interpreter {interpreter!r} not found; {SPACE_IN_SHEBANG_HINT}"
        return (
            f"bad shebang: interpreter {interpreter!r} not found or not executable; fix the '#!' line "
            "or attach with --prefix"
        )
    if os.path.basename(interpreter) == "env":
        command = _env_command(rest)
        if command and "/" not in command and shutil.which(command, path=env_path) is None:
            return (
                f"bad shebang: {command!r} (from '#!{text}') is not on the script PATH {env_path!r}; "
                "install it there, use an absolute interpreter path, or attach with --prefix"
            )
        if command and "/" in command and not _executable_file(command):
            return f"bad shebang: interpreter {command!r} not found or not executable"
    return None


def _env_command(args: str) -> str | None:
    """The command `/usr/bin/env ARGS` would run (skipping options and NAME=VALUE assignments)."""
    for word in args.split():
        if word.startswith("-") or "=" in word:
            continue
        return word
    return None


def prepare_argv(att: ScriptAttachment, env: Mapping[str, str]) -> list[str] | str:
    """The argv to spawn, or a one-line error explaining why the script cannot run."""
    script = Path(att.script).expanduser().absolute()
    if not script.exists():
        return f"script not found: {script}"
    if not script.is_file():
        return f"script is not a regular file: {script}"
    path = env.get("PATH", DEFAULT_PATH)
    if att.prefix is not None:
        parts = shlex.split(att.prefix)
        command = parts[0]
        resolved = command if "/" in command else shutil.which(command, path=path)
        if resolved is None or not _executable_file(resolved):
            where = "is not an executable file" if "/" in command else f"is not on the script PATH {path!r}"
            return f"prefix not found: {command!r} {where}"
        if not os.access(script, os.R_OK):
            return f"script not readable: {script} (check its permissions)"
        return [resolved, *parts[1:], str(script)]
    if not os.access(script, os.X_OK):
        return (
            f"script not executable: {script}; run 'chmod +x {script.name}' or attach it with a prefix "
            "such as --prefix python3"
        )
    problem = _check_shebang(script, path)
    if problem:
        return problem
    return [str(script)]


def _spawn_error(exc: OSError, argv: list[str], user: ScriptUser | None = None) -> str:
    if user is not None and exc.errno in (errno.EACCES, errno.ENOENT, errno.EPERM):
        return (f"script user {user.name!r} cannot run {argv[0]} ({exc.strerror}): the script, its "
                f"interpreter and every directory above them must be readable and executable by "
                f"{user.name!r} (or set script_user)")
    if exc.errno == errno.ENOEXEC:
        return (
            f"bad shebang: the system cannot execute {argv[-1]} (exec format error); "
            "attach it with --prefix"
        )
    if exc.errno == errno.EACCES:
        return f"permission denied executing {argv[0]} (noexec mount or missing x permission)"
    if exc.errno == errno.ENOENT:
        return (
            f"cannot start {argv[0]}: interpreter or file not found "
            f"(if its path has a space: {SPACE_IN_SHEBANG_HINT})"
        )
    return f"cannot start {argv[0]}: {exc.strerror or exc}"


class _Capture:
    """Reads one pipe to EOF (so the script never blocks on a full pipe), keeping a bounded head."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.buf = bytearray()
        self.total = 0

    async def pump(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while chunk := await stream.read(65536):
            self.total += len(chunk)
            room = self.keep - len(self.buf)
            if room > 0:
                self.buf += chunk[:room]

    def text(self, redact: Redactor, limit: int) -> tuple[str, bool]:
        text = redact(self.buf.decode("utf-8", errors="replace"))
        dropped = self.total > len(self.buf)
        if dropped:
            # A secret may straddle the end of what was kept: mask its visible head.
            text = redact.clip_tail(text)
        truncated = dropped or len(text) > limit
        if truncated:
            text = text[:limit] + f"\n[keyturn: output truncated: {self.total} bytes in all, head kept]"
        return text, truncated


async def _feed(stdin: asyncio.StreamWriter | None, payload: bytes) -> None:
    """Write the payload and close stdin; a script that exits without reading it is fine."""
    if stdin is None:
        return
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.write(payload)
        await stdin.drain()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.close()
        await stdin.wait_closed()


def _stop(proc: asyncio.subprocess.Process) -> None:
    """Ask the supervisor to kill the script and everything it started (it sweeps, then exits)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(proc.pid, signal.SIGTERM)


async def _stopped(proc: asyncio.subprocess.Process) -> None:
    """`_stop`, then wait; a supervisor that does not finish in `STOP_GRACE` is killed (logged)."""
    _stop(proc)
    try:
        await asyncio.wait_for(proc.wait(), STOP_GRACE)
    except TimeoutError:
        log.warning("script supervisor %d did not stop in %.0f s; killed", proc.pid, STOP_GRACE)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


def _read_status(fd: int) -> dict[str, int]:
    """The supervisor's status line, ``KEY=N`` words (empty when it died without writing it)."""
    chunks = []
    with contextlib.suppress(OSError):
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    os.close(fd)
    status: dict[str, int] = {}
    for word in b"".join(chunks).decode("ascii", errors="replace").split():
        key, _, value = word.partition("=")
        with contextlib.suppress(ValueError):
            status[key] = int(value)
    return status


def _payload_blobs(payload: bytes) -> list[str]:
    """The payload line and its inner `records` string: redacted whole if a script echoes them."""
    line = payload.decode("ascii", errors="replace").strip()
    blobs = [line]
    with contextlib.suppress(ValueError, TypeError, KeyError):
        inner = json.loads(base64.b64decode(line, validate=True))
        blobs.append(str(inner["records"]))
    return blobs


async def run_script(
    att: ScriptAttachment,
    payload: bytes,
    *,
    secrets: Sequence[Secret],
    base_env: Mapping[str, str] | None = None,
    owner_uid: str = "",
    run_as: RunAs = "policy",
) -> ScriptResult:
    """Run one script with `payload` on stdin; never raises for a script problem (see module doc).

    `secrets` are every secret value inside the payload; they (and the payload itself) are redacted
    from the output. `base_env` stands for keyturn's environment (default `os.environ`). `run_as`: the
    user to run as (None: keyturn's own), default the entry point's policy (`resolve_script_user`).
    """
    started = time.monotonic()
    refused = refused_env_names(att.env)
    if refused:
        return _failed(att, owner_uid, refused_env_message(refused), started)
    try:
        user = _run_as(run_as)
    except ConfigError as exc:
        return _failed(att, owner_uid, str(exc), started)
    redactor = Redactor(secrets, blobs=_payload_blobs(payload))
    with tempfile.TemporaryDirectory(prefix="keyturn-script-", ignore_cleanup_errors=True) as workdir:
        env = build_env(att, base_env, workdir, own_home=user is not None)
        argv = prepare_argv(att, env)
        if isinstance(argv, str):
            return _failed(att, owner_uid, argv, started)
        identity = ["-", "-", "-"]
        if user is not None:
            try:
                os.chown(workdir, user.uid, user.gid)
            except OSError as exc:
                return _failed(att, owner_uid, f"cannot give the working directory to script user "
                                               f"{user.name!r}: {exc.strerror or exc}", started)
            identity = [user.name, str(user.uid), str(user.gid)]
        status_r, status_w = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-S", SUPERVISOR, str(status_w), *identity, "--", *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=workdir,
                env=env,
                start_new_session=True,
                pass_fds=(status_w,),
            )
        except OSError as exc:
            os.close(status_r)
            return _failed(att, owner_uid, f"cannot start the script supervisor: {exc.strerror or exc}",
                           started)
        finally:
            os.close(status_w)
        keep = OUTPUT_LIMIT + 4  # room for a UTF-8 sequence cut at the limit
        out, err = _Capture(keep), _Capture(keep)
        tasks = [
            asyncio.create_task(_feed(proc.stdin, payload)),
            asyncio.create_task(out.pump(proc.stdout)),
            asyncio.create_task(err.pump(proc.stderr)),
        ]
        timed_out = False
        try:
            await asyncio.wait_for(proc.wait(), att.timeout)
        except TimeoutError:
            timed_out = True
            await _stopped(proc)
        except asyncio.CancelledError:
            # Never leave a script running behind a cancelled rotation: the supervisor sweeps it.
            _stop(proc)
            os.close(status_r)
            for task in tasks:
                task.cancel()
            raise
        status = _read_status(status_r)
        # The supervisor swept every process holding the pipes; the grace only covers its own failure.
        _, pending = await asyncio.wait(tasks, timeout=DRAIN_GRACE)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        duration = time.monotonic() - started
    if "exec_errno" in status:
        errno_ = status["exec_errno"]
        return _failed(att, owner_uid, _spawn_error(OSError(errno_, os.strerror(errno_)), argv, user),
                       started)
    stdout, out_cut = out.text(redactor, OUTPUT_LIMIT)
    stderr, err_cut = err.text(redactor, OUTPUT_LIMIT)
    code: int | None = status.get("code")
    if "signal" in status:
        code = -status["signal"]
    error: str | None = None
    if timed_out:
        code = None
        error = f"timeout: killed after {att.timeout:g} s (whole process group)"
    elif code is None:
        error = f"the script supervisor failed (exit {proc.returncode}); the script's outcome is unknown"
    elif code < 0:
        error = f"killed by signal {_signal_name(-code)}"
    elif code:
        error = f"exit code {code}"
    else:
        for pattern in att.fail_on:
            if re.search(pattern, stdout, re.MULTILINE) or re.search(pattern, stderr, re.MULTILINE):
                error = f"fail_on matched: {pattern!r} (exit code 0)"
                break
    if status.get("swept"):
        log.info("script %s (record %s): %d process(es) it left running were killed", att.name, owner_uid,
                 status["swept"])
    result = ScriptResult(
        name=att.name, exit_code=code, duration=duration, stdout=stdout, stderr=stderr,
        ok=error is None, error=error, owner_uid=owner_uid, script=att.script,
        truncated=out_cut or err_cut,
    )
    log.info(
        "script %s (record %s): %s in %.2f s", result.name, owner_uid, error or "ok", duration
    )
    return result


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return str(num)


async def run_rotation_scripts(
    *,
    get_record: Callable[[str], RecordLike],
    provider: RecordLike,
    resource: RecordLike | None,
    user: RecordLike,
    new_password: Secret,
    old_password: Secret | None,
    base_env: Mapping[str, str] | None = None,
    run_as: RunAs = "policy",
) -> list[ScriptResult]:
    """Run every script of a rotation, in order, and return one result per script.

    Order: attachments of the user record, then the resource record, then the PAM configuration
    (provider) record, each in listed order. Each script gets its own payload; its `with_records` are
    fetched with `get_record` and placed in `records` between the resource and the user record.
    A failure stops nothing: all scripts run and all results are returned; a record whose attachment
    meta is malformed, or an additional record that cannot be read, yields a failed result for that
    entry (with `exit_code=None`). The secrets redacted are the new and old password and every
    password-like value of every record the script sees.

    Keeper's `Shell` custom field on the resource record (e.g. `pwsh` or `/bin/bash`) is the command
    prefix of every attachment that has none of its own; an attachment's own prefix wins. `run_as` is
    `run_script`'s.
    """
    results: list[ScriptResult] = []
    owners = [r for r in (user, resource, provider) if r is not None]
    login = login_of(user)
    shell = custom_text(resource, "Shell") if resource is not None else None
    for owner in owners:
        try:
            attachments = attachments_of(owner)
        except ConfigError as exc:
            results.append(ScriptResult(
                name="(script attachments)", exit_code=None, duration=0.0, stdout="", stderr="",
                ok=False, error=str(exc), owner_uid=owner.uid,
            ))
            continue
        for att in attachments:
            if shell and att.prefix is None:
                try:
                    att = replace(att, prefix=shell)
                except ConfigError as exc:
                    results.append(_failed(att, owner.uid, f"Shell field of the resource record: {exc}"))
                    continue
            try:
                extra = [get_record(uid) for uid in att.with_records]
            except KeyturnError as exc:
                results.append(_failed(att, owner.uid, f"additional record unavailable: {exc}"))
                continue
            payload = build_payload(
                provider=provider, resource=resource, user=user, extra=extra,
                new_password=new_password, old_password=old_password, user_login=login,
            )
            secrets: list[Secret] = [new_password]
            if old_password is not None:
                secrets.append(old_password)
            for rec in records_for(provider=provider, resource=resource, user=user, extra=extra):
                secrets.extend(secret_values(rec))
            results.append(
                await run_script(att, payload, secrets=secrets, base_env=base_env, owner_uid=owner.uid,
                                 run_as=run_as)
            )
    return results
