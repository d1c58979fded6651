"""Who holds a lease, and whether that holder is gone: the one rule every lease in keyturn follows.

Account locks (`keyturn.engine.locks`), the rekey lease (`keyturn.vault.lease`) and recovery's "is a
live process still on this rotation" check all name their holder by host and pid and carry an expiry.
A holder is *gone* — its lease free to take over — when the lease has expired, or when it was another
process on this host that no longer exists (a crashed or killed keyturn). Both vault and engine use it,
so it lives below them.
"""

from __future__ import annotations

import os
import socket

#: This machine's name as leases record it.
HOST = socket.gethostname()


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (one we may not signal still exists)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_site = ""


def set_site(site: str) -> None:
    """Name the site this process works for (a `keyturn worker --site`), for `worker_label`."""
    global _site
    _site = site


def worker_label() -> str:
    """Who is writing, as the journal records it per step: host, pid and (in a worker) site."""
    label = f"{HOST} pid {os.getpid()}"
    return f"{label} site {_site}" if _site else label


def holder_gone(*, host: str, pid: int, expires_at: float, now: float) -> bool:
    """Expired lease, or a holder process on this host (not this one) that no longer exists."""
    if expires_at <= now:
        return True
    return host == HOST and pid != os.getpid() and not pid_alive(pid)


__all__ = ["HOST", "holder_gone", "pid_alive", "set_site", "worker_label"]
