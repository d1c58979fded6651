"""Run Keeper-compatible post-rotation scripts: no shell, no secret in argv or env, bounded, redacted.

`run_script` runs one attachment; `run_rotation_scripts` runs every attachment of a rotation in the
contract's order. Guarantees:

* **argv** is `[script]` (its shebang picks the interpreter) or `shlex.split(prefix) + [script]`;
  no shell ever parses anything. The secret reaches the script only on **stdin** (one base64 line, then
  EOF). A script that never reads stdin neither hangs nor breaks the runner.
* **environment** is minimal: `PATH`, `HOME`, `LANG` from the keyturn process (defaults when unset),
  `TMPDIR` = the private working directory, the proxy/TLS variables `HTTP_PROXY`, `HTTPS_PROXY`,
  `NO_PROXY`, `REQUESTS_CA_BUNDLE`, `SSL_CERT_FILE` (and lower-case forms) when keyturn has them, then
  the attachment's own `env` (which wins). Nothing else of keyturn's environment leaks through.
* each run has a **private working directory** (mode 0700, removed afterwards) and its own session /
  process group; on timeout the whole **group is killed** (SIGKILL). When the script exits, anything it
  left running in its group is killed too, since its working directory is about to disappear.
* stdout and stderr are read concurrently and **bounded** (`OUTPUT_LIMIT` characters each; the head is
  kept and a truncation note appended), decoded as UTF-8 with replacement characters, and every secret
  form listed in `keyturn.scripts.redact` is replaced by `********` before the result exists.
* problems never raise: each becomes a `ScriptResult` with `ok=False` and a one-line `error` that says
  what to do — script missing, not a file, not executable, bad shebang (no `#!`, CR line ending,
  interpreter missing, interpreter path with a space), prefix not found, timeout, killed by a signal,
  non-zero exit, `fail_on` pattern matched.

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
import re
import shlex
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

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


def build_env(att: ScriptAttachment, base_env: Mapping[str, str] | None, workdir: str) -> dict[str, str]:
    """The child's environment (see the module docstring)."""
    base = os.environ if base_env is None else base_env
    env = {
        "PATH": base.get("PATH") or DEFAULT_PATH,
        "HOME": base.get("HOME") or workdir,
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
                "install it, set PATH with --env PATH=..., or attach with --prefix"
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


def _spawn_error(exc: OSError, argv: list[str]) -> str:
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


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


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
) -> ScriptResult:
    """Run one script with `payload` on stdin; never raises for a script problem (see module doc).

    `secrets` are every secret value inside the payload; they (and the payload itself) are redacted
    from the output. `base_env` stands for keyturn's environment (default `os.environ`).
    """
    started = time.monotonic()
    redactor = Redactor(secrets, blobs=_payload_blobs(payload))
    with tempfile.TemporaryDirectory(prefix="keyturn-script-", ignore_cleanup_errors=True) as workdir:
        env = build_env(att, base_env, workdir)
        argv = prepare_argv(att, env)
        if isinstance(argv, str):
            return _failed(att, owner_uid, argv, started)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=workdir,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            return _failed(att, owner_uid, _spawn_error(exc, argv), started)
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
        except asyncio.CancelledError:
            # Never leave a script group running behind a cancelled rotation.
            _kill_group(proc.pid)
            for task in tasks:
                task.cancel()
            raise
        _kill_group(proc.pid)
        if proc.returncode is None:
            await proc.wait()
        _, pending = await asyncio.wait(tasks, timeout=DRAIN_GRACE)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        duration = time.monotonic() - started
    stdout, out_cut = out.text(redactor, OUTPUT_LIMIT)
    stderr, err_cut = err.text(redactor, OUTPUT_LIMIT)
    code = proc.returncode
    error: str | None = None
    if timed_out:
        code = None
        error = f"timeout: killed after {att.timeout:g} s (whole process group)"
    elif code is not None and code < 0:
        error = f"killed by signal {_signal_name(-code)}"
    elif code:
        error = f"exit code {code}"
    else:
        for pattern in att.fail_on:
            if re.search(pattern, stdout, re.MULTILINE) or re.search(pattern, stderr, re.MULTILINE):
                error = f"fail_on matched: {pattern!r} (exit code 0)"
                break
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
    prefix of every attachment that has none of its own; an attachment's own prefix wins.
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
                await run_script(att, payload, secrets=secrets, base_env=base_env, owner_uid=owner.uid)
            )
    return results
