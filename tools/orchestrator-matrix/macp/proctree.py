"""Find and stop every process one command started, also those that left its process group.

A worker runs in its own process group, but a descendant can leave it (``setsid``, a double
fork that daemonises). MACP still finds it, three ways, all read from Linux ``/proc``:

- it descends from the command's leader (parent links);
- it carries the command's run id in its environment (:data:`RUN_ENV`, inherited by
  everything the command starts unless it scrubs its environment);
- the controller is a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``, Linux 3.4+):
  a descendant orphaned by a double fork is re-parented to the controller instead of init,
  so it is a child of the controller. While several commands run at once (``--workers``),
  such an orphan that also scrubbed its environment cannot be told apart: it is stopped
  with the last command still running (docs/workers.md "Limits").

Stopping is SIGTERM, a grace period, then SIGKILL, and adopted children are reaped so no
zombie is left. Without ``/proc`` (macOS, BSD) only the process group is reachable: a
descendant that leaves it is not stopped there (docs/durability.md "Limits").
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Collection, Iterable
from typing import NamedTuple

RUN_ENV = "MACP_RUN_ID"
_PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
_PR_GET_CHILD_SUBREAPER = 37
_POLL_SECONDS = 0.05


def _prctl(option: int, argument: object) -> int:
    """``prctl(2)`` through libc; -1 where it does not exist (not Linux)."""
    if not sys.platform.startswith("linux"):
        return -1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, argument, 0, 0, 0))
    except (OSError, AttributeError):
        return -1


def become_subreaper() -> bool:
    """Make this process the child subreaper of its descendants (Linux); returns True when
    it is one. Not inherited by children, so only the process that asks is one."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1) == 0


def is_subreaper() -> bool:
    """True when this process is a child subreaper (:func:`become_subreaper`)."""
    value = ctypes.c_int(0)
    return _prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(value)) == 0 and value.value != 0


class _Process(NamedTuple):
    parent: int
    state: bytes
    group: int
    started: int  # clock ticks after boot (proc(5) starttime)


def _process_table() -> dict[int, _Process]:
    """Every process in ``/proc`` by pid: parent, state letter (``Z`` for a zombie),
    process group and start time; {} where there is no ``/proc``."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return {}
    table = {}
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b") ", 1)[1].split()
            table[int(entry)] = _Process(int(fields[1]), fields[0], int(fields[2]), int(fields[19]))
        except (OSError, IndexError, ValueError):
            continue
    return table


def _descendants(roots: Iterable[int], table: dict[int, _Process]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, process in table.items():
        children.setdefault(process.parent, []).append(pid)
    found: set[int] = set()
    stack = list(roots)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def start_ticks(pid: int) -> int:
    """When ``pid`` started, in clock ticks after boot (``/proc/<pid>/stat``); 0 when it
    cannot be read (no ``/proc``, or the process is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return int(handle.read().rsplit(b") ", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return 0


def processes_with_env(name: str, value: str, table: dict[int, _Process] | None = None, since: int = 0) -> list[int]:
    """PIDs of processes whose environment holds ``name=value`` (read from ``/proc``),
    among those of ``table`` (default: every process) that started at clock tick ``since``
    or later -- a value made up when a command started cannot be in anything older, and
    reading only the newer processes' environments keeps this cheap on a busy machine.

    Returns ``[]`` where ``/proc`` is missing (not Linux) or unreadable. This process is
    never included.
    """
    needle = f"{name}={value}".encode()
    found = []
    for pid, process in (_process_table() if table is None else table).items():
        if pid == os.getpid() or process.started < since:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                if needle in handle.read().split(b"\0"):
                    found.append(pid)
        except OSError:
            continue
    return sorted(found)


def run_members(leader: int, run_id: str, since: int = 0, keep: Collection[int] = (), adopt_orphans: bool = True) -> set[int]:
    """Live processes (not zombies) of the command whose group leader is ``leader`` and
    which started at clock tick ``since`` (:func:`start_ticks` of the leader; 0: unknown):
    the members of its process group, its descendants, those carrying ``run_id`` in
    :data:`RUN_ENV`, and -- when this process is a child subreaper and ``adopt_orphans`` --
    every other descendant of this process (orphans it adopted). The descendants of the
    pids in ``keep`` (the leaders of other commands running at the same time) are never
    counted as adopted orphans.

    Adopted children that already ended are reaped on the way, from the same one reading of
    ``/proc`` -- never ``leader`` or a pid in ``keep``: their exit status belongs to whoever
    started them (subprocess.Popen). The leader itself is included while it lives; this
    process never is. Without ``/proc`` (not Linux): ``{leader}`` while its process group
    has a member, else nothing."""
    table = _process_table()
    if not table:
        return {leader} if _group_exists(leader) else set()
    me = os.getpid()
    subreaper = is_subreaper()
    if subreaper:
        spared = {leader, *keep}
        reap(pid for pid, process in table.items() if process.parent == me and process.state == b"Z" and pid not in spared)
    members = {leader} | _descendants([leader], table) | set(processes_with_env(RUN_ENV, run_id, table, since))
    members |= {pid for pid, process in table.items() if process.group == leader}
    if subreaper and adopt_orphans:
        members |= _descendants([me], table) - _descendants(keep, table) - set(keep)
    members.discard(me)
    return {pid for pid in members if pid in table and table[pid].state != b"Z"}


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def reap_adopted(keep: Collection[int] = ()) -> None:
    """When this process is a child subreaper: collect every exited child (an adopted
    orphan that ended) but those in ``keep`` (leaders whose status their Popen collects),
    so none stays a zombie. Does nothing otherwise -- in a library caller's process another
    part of the program may be waiting for its own children."""
    if not is_subreaper():
        return
    me = os.getpid()
    reap(pid for pid, process in _process_table().items() if process.parent == me and process.state == b"Z" and pid not in keep)


def signal_all(pids: Iterable[int], signum: int) -> None:
    """Send ``signum`` to each of ``pids`` that still exists."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (Linux ``/proc``; elsewhere: exists)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b") ", 1)[1][:1] != b"Z"
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True


def reap(pids: Iterable[int]) -> None:
    """Collect the exit status of those of ``pids`` that are this process's exited children
    (adopted orphans), so none stays a zombie. Never waits."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def terminate(pids: list[int], grace_seconds: float) -> None:
    """SIGTERM ``pids``, wait up to ``grace_seconds`` for them to go, SIGKILL the rest, and
    reap those that are this process's children."""
    signal_all(pids, signal.SIGTERM)
    end = time.monotonic() + grace_seconds
    remaining = list(pids)
    while remaining and time.monotonic() < end:
        time.sleep(_POLL_SECONDS)
        reap(remaining)
        remaining = [pid for pid in remaining if alive(pid)]
    signal_all(remaining, signal.SIGKILL)
    reap(pids)
