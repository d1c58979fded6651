"""The supervisor of one post-rotation script run: starts the script and leaves nothing behind.

Run standalone by `keyturn.scripts.runner` — standard library only, so it starts fast under
``python -I -S`` and no environment variable (``PYTHONPATH``, ...) can change what it runs::

    python -I -S supervisor.py STATUS_FD USER UID GID -- ARGV...

(USER/UID/GID are ``-`` to keep the supervisor's own identity.) It

1. becomes a **child subreaper** (Linux ``PR_SET_CHILD_SUBREAPER``): every process the script starts
   that loses its parent — a ``setsid``/double-forked daemon included — is re-parented to the
   supervisor instead of init, so none can slip out of reach; and asks for SIGTERM if keyturn dies
   (``PR_SET_PDEATHSIG``), so a killed keyturn still gets its scripts cleaned up;
2. forks the script into **its own session** (``setsid``), drops to USER/UID/GID when given (initgroups,
   setgid, setuid — in that order, so nothing is kept), restores default SIGPIPE/SIGXFSZ handling and
   execs ARGV with the environment it was given;
3. waits for the script; SIGTERM (keyturn's timeout or cancellation) kills the script's session group;
4. **sweeps**: kills the script's process group, then every remaining child (re-parented orphans) until
   it has none — with the subreaper set, no child means no descendant — and reaps them;
5. writes one line to STATUS_FD, ``KEY=N`` words: ``code=N`` | ``signal=N`` | ``exec_errno=N``, then
   ``swept=K`` (processes killed after the script), and ``killed=1`` when it was told to stop.

stdin/stdout/stderr belong to the script: the supervisor replaces its own with /dev/null after the fork,
so the runner sees end-of-file as soon as the script and everything it started are gone. Imports are
kept to the few modules a bare interpreter needs: this runs once per script, on the rotation's clock.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the running program: libc symbols, no library search
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _children(me: int) -> list[int]:
    """Processes whose parent is `me` (a /proc scan: works without CONFIG_PROC_CHILDREN)."""
    found: list[int] = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and fields[1] == str(me).encode():
            found.append(int(name))
    return found


def _kill(pid: int, *, group: bool = False) -> bool:
    try:
        (os.killpg if group else os.kill)(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # gone already; contextlib costs an import
        return False
    return True


def _exec_child(argv: list[str], user: str, uid: str, gid: str, report: int) -> None:
    """In the forked child: new session, identity, default signals, exec. Never returns."""
    try:
        os.setsid()
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        if gid != "-":
            if user != "-":
                os.initgroups(user, int(gid))
            else:
                os.setgroups([])
            os.setgid(int(gid))
        if uid != "-":
            os.setuid(int(uid))
        # no shell: argv is the attachment's list, checked by the runner (S606 is about shell-less exec)
        os.execv(argv[0], argv)  # noqa: S606
    except OSError as exc:
        os.write(report, str(exc.errno or 0).encode())
    finally:
        os._exit(127)


def main(args: list[str]) -> int:
    status_fd, user, uid, gid, dashes, *argv = args
    if dashes != "--" or not argv:
        print("usage: supervisor.py STATUS_FD USER UID GID -- ARGV...", file=sys.stderr)
        return 2
    status = int(status_fd)
    os.set_inheritable(status, False)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    state = {"pid": 0, "killed": 0}

    def stop(signum: int, frame: object) -> None:
        state["killed"] = 1
        if state["pid"]:
            _kill(state["pid"], group=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    errors_r, errors_w = os.pipe()  # close-on-exec: stays empty when the exec succeeds
    pid = os.fork()
    if pid == 0:
        os.close(errors_r)
        _exec_child(argv, user, uid, gid, errors_w)
    state["pid"] = pid
    if state["killed"]:
        _kill(pid, group=True)
    os.close(errors_w)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    exec_error = os.read(errors_r, 32)
    os.close(errors_r)
    _, wait_status = os.waitpid(pid, 0)
    if exec_error:
        words = [f"exec_errno={int(exec_error)}"]
    elif os.WIFSIGNALED(wait_status):
        words = [f"signal={os.WTERMSIG(wait_status)}"]
    else:
        words = [f"code={os.waitstatus_to_exitcode(wait_status)}"]
    words.append(f"swept={_sweep(pid)}")
    if state["killed"]:
        words.append("killed=1")
    os.write(status, (" ".join(words) + "\n").encode())
    return 0


def _sweep(pgid: int) -> int:
    """Kill the script's group, then every child left (orphans re-parented here) until none remain."""
    _kill(pgid, group=True)
    me, swept = os.getpid(), set[int]()
    while True:
        for child in _children(me):
            if _kill(child):
                swept.add(child)
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return len(swept)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
