"""Which process owns something (a publish claim, a Prefect run), precisely enough to prove it died.

A pid alone names a process only on the same host, in the same kernel boot and PID namespace, and
only until the pid is reused. So an owner records its host name, a host id (a digest of host name,
boot id and PID namespace) and its process start time (``/proc/<pid>/stat`` field 22). Another
process proves the owner dead only when the host ids match and the pid is gone, a zombie, or a
different process now (another start time). Anything else (another host, a container that cannot
see ``/proc``) is not provably dead: the caller waits for a lease or a heartbeat instead.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

from pydantic import BaseModel


class Owner(BaseModel):
    """The process that holds something, precisely enough for another process on the same host to check it."""

    host: str
    host_id: str = ""  # digest of host name, boot id and PID namespace; "" where /proc cannot tell
    pid: int
    pid_start: int | None = None  # /proc/<pid>/stat field 22: clock ticks after boot


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def process_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks after boot) of a process from ``/proc``, or None when unreadable."""
    text = _read_text(f"/proc/{pid}/stat")
    if not text or ")" not in text:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the command name may hold spaces and parentheses
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def host_id() -> str:
    """Same host, same kernel boot, same PID namespace: only then does a pid name the same process."""
    boot = _read_text("/proc/sys/kernel/random/boot_id")
    try:
        namespace = os.stat("/proc/self/ns/pid")
    except OSError:
        return ""
    if not boot:
        return ""
    text = f"{socket.gethostname()}\0{boot}\0{namespace.st_dev}:{namespace.st_ino}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def this_owner() -> Owner:
    pid = os.getpid()
    found = process_stat(pid)
    return Owner(host=socket.gethostname(), host_id=host_id(), pid=pid, pid_start=found[1] if found else None)


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def why_dead(owner: Owner) -> str | None:
    """Why ``owner`` is provably dead, or None when it may be alive (or runs on another host)."""
    if not owner.host_id or owner.host_id != host_id() or owner.pid <= 0:
        return None
    where = f"process {owner.pid} on {owner.host}"
    if owner.pid == os.getpid():
        return None  # this very process: alive (callers that track their own work decide for themselves)
    found = process_stat(owner.pid)
    if found is None:
        # No /proc entry: gone, unless /proc hides it (hidepid) and the kernel still knows the pid.
        return None if _pid_exists(owner.pid) else f"{where} is not running"
    state, start = found
    if state in ("Z", "X"):
        return f"{where} has exited"
    if owner.pid_start is not None and start != owner.pid_start:
        return f"{where} is a different process now (the pid was reused)"
    return None
