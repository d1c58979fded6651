"""Process hardening: what a process that holds the master key does first (issue 12, items 9 and 11).

`harden_process()` is called in one place per entry point — the CLI's root callback (every command,
`keyturn serve` included) and `keyturn.serve.serve` — and is idempotent:

* **no core dumps**: ``RLIMIT_CORE`` soft and hard limits 0, so a crash never writes the master key, a
  revealed secret or an API token to a core file (children, post-rotation scripts too, inherit it);
* **not dumpable** (Linux, ``prctl(PR_SET_DUMPABLE, 0)`` through ctypes). Why: the kernel then makes
  ``/proc/<pid>/{environ,mem,maps,fd,...}`` root-owned and refuses them, and ``ptrace`` attach, to any
  process without ``CAP_SYS_PTRACE`` — including processes of keyturn's own uid, such as a
  post-rotation script when keyturn does not run as root. Same-uid isolation exists nowhere else on
  Linux. What it costs: ``gdb -p``/``py-spy`` on keyturn need root, and the setting is lost on
  ``execve``, so it protects this process only (scripts are separated by `keyturn.scripts.runner`);
* **master-key material leaves the environment**: ``KEYTURN_MASTER_KEY``, ``KEYTURN_PASSPHRASE`` and
  ``KEYTURN_NEW_PASSPHRASE`` are taken out of ``os.environ`` (no child inherits them) into this module,
  where `secret_env` hands them to `keyturn.config.load_settings`; their bytes in the process's original
  environment block — what ``/proc/<pid>/environ`` shows for the process's whole life, whatever
  ``os.environ`` says — are overwritten with NULs. Root can still read the process's memory: that is
  why scripts do not run as root (`script_policy`).

It also records the **script policy** of this entry point: post-rotation scripts started under it run
as the configured `script_user` (default ``nobody`` when keyturn runs as root; see
`keyturn.scripts.runner.resolve_script_user`). Library callers that never call `harden_process` (tests,
embedders) run scripts as themselves unless they say otherwise.

`harden_process` returns an ``undo`` callable: the CLI calls it when the command ends, so in-process
callers (the CLI test runner) see their environment as it was; a real process simply exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import resource
import sys
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

from keyturn.secret import Secret

log = logging.getLogger("keyturn.hardening")

# environment variable → settings field (keyturn.config.Settings)
SECRET_ENV = {"KEYTURN_MASTER_KEY": "master_key", "KEYTURN_PASSPHRASE": "passphrase",
              "KEYTURN_NEW_PASSPHRASE": "new_passphrase"}
PR_GET_DUMPABLE, PR_SET_DUMPABLE = 3, 4
# /proc/<pid>/stat fields (1-based, proc(5)): env_start and env_end, Linux 3.5+
_STAT_ENV_START, _STAT_ENV_END = 50, 51

_taken: dict[str, Secret] = {}


@dataclass(frozen=True, slots=True)
class ScriptPolicy:
    """How post-rotation scripts run under this entry point: `separate` = as `user` (None: the default,
    ``nobody`` when root), else as keyturn's own user."""

    separate: bool = False
    user: str | None = None


LIBRARY_POLICY = ScriptPolicy()  # frozen: safe as a ContextVar default
_policy: ContextVar[ScriptPolicy] = ContextVar("keyturn_script_policy", default=LIBRARY_POLICY)


def script_policy() -> ScriptPolicy:
    """The script policy in force here (see the module docstring)."""
    return _policy.get()


def secret_env() -> dict[str, str]:
    """The master-key settings taken out of the environment, by settings field name."""
    return {SECRET_ENV[name]: value.reveal() for name, value in _taken.items()}


def harden_process(*, script_user: str | None = None) -> Callable[[], None]:
    """Apply everything in the module docstring; returns ``undo`` (environment and script policy back as
    they were — the resource limits and the dumpable flag stay, they cannot be raised again)."""
    disable_core_dumps()
    set_non_dumpable()
    mine = take_secret_env()
    token = _policy.set(ScriptPolicy(separate=True, user=script_user))

    def undo() -> None:
        _policy.reset(token)
        for name in mine:
            value = _taken.pop(name, None)
            if value is not None and name not in os.environ:
                os.environ[name] = value.reveal()

    return undo


def disable_core_dumps() -> None:
    """RLIMIT_CORE = 0, soft and hard."""
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def set_non_dumpable() -> bool:
    """``prctl(PR_SET_DUMPABLE, 0)``; False where that does not exist (not Linux) or failed."""
    if not sys.platform.startswith("linux"):
        return False
    libc = _libc()
    if libc is None:
        return False
    return int(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0


def is_dumpable() -> bool | None:
    """The process's dumpable flag (None: unknown here)."""
    libc = _libc() if sys.platform.startswith("linux") else None
    if libc is None:
        return None
    return int(libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)) != 0


def take_secret_env() -> list[str]:
    """Move `SECRET_ENV` variables present in ``os.environ`` into this module (see the docstring);
    returns the names taken by this call."""
    taken = []
    for name in SECRET_ENV:
        value = os.environ.get(name)
        if value is None:
            continue
        _wipe_original(name)
        del os.environ[name]
        _taken[name] = Secret(value)
        taken.append(name)
    return taken


def _wipe_original(name: str) -> None:
    """Overwrite NAME's value in the environment block the kernel shows as /proc/<pid>/environ.

    Only bytes inside that block are touched (``env_start``..``env_end`` from /proc/self/stat): a value
    set later by Python lives in a Python object, which is not ours to scribble on."""
    libc = _libc() if sys.platform.startswith("linux") else None
    if libc is None:
        return
    address = libc.getenv(name.encode())
    if not address:
        return
    size = len(ctypes.string_at(address))
    start, end = _environ_block()
    if start <= address and address + size <= end:
        ctypes.memset(address, 0, size)


def _environ_block() -> tuple[int, int]:
    try:
        with open("/proc/self/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        # fields[0] is field 3 (state): field n is fields[n - 3]
        return int(fields[_STAT_ENV_START - 3]), int(fields[_STAT_ENV_END - 3])
    except (OSError, IndexError, ValueError):
        return 0, 0


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the running program: libc symbols, no library search
    except OSError:
        return None
    libc.getenv.restype = ctypes.c_void_p
    libc.getenv.argtypes = [ctypes.c_char_p]
    libc.prctl.restype = ctypes.c_int
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return libc
