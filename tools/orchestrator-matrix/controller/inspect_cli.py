"""See what a task does and did: ``mosaic macp log``, ``mosaic macp diff`` and ``mosaic macp history``.

``log ID [--follow] [--attempt N] [--gate NAME]`` prints a task's worker or gate log. Logs
are ``logs/<id>/attempt-<n>/worker.log`` and ``gate-<k>-<name>.log`` (docs/file-formats.md),
written as the child prints, so they can be read while the task runs; runs of an attempt
that did not count are moved aside to ``attempt-<n>.uncounted-<k>``. ``--follow`` streams
the log until the task leaves ``pending``/``running``/``gated`` (like ``pueue follow``),
moving on to the next attempt's log -- or the same attempt's run again -- unless
``--attempt`` pins one. An empty log is said to be empty on stderr.

``diff ID [--stat]`` prints what the task's branch changed since the commit it started from
(``git diff BASE...BRANCH``).

``history [--task-id ID] [--json]`` prints the event log, streamed.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from macp import gitops
from macp.cliutil import note, out, repo_layout
from macp.errors import EXIT_OK, MacpError
from macp.events import read_events
from macp.fsio import NotARegularFile, open_regular, read_regular
from macp.gates import gate_log_name
from macp.layout import Layout
from macp.lifecycle import status_of
from macp.model import Task
from macp.taskstore import find_known
from macp.textview import one_line

FOLLOW_POLL_SECONDS = 0.2
_STILL_GOING = frozenset({"pending", "running", "gated"})


def attempt_folder(layout: Layout, task_id: str, attempt: int) -> Path:
    """The folder of ``attempt``: ``attempt-<n>``, else -- when every run of that number was
    cut short and moved aside (a signal, a crash, provider failures: they do not count) --
    the newest ``attempt-<n>.uncounted-<k>``, else ``attempt-<n>`` (not there yet)."""
    folder = layout.attempt_dir(task_id, attempt)
    if folder.is_dir():
        return folder
    aside = sorted(folder.parent.glob(f"{folder.name}.uncounted-*"), key=lambda path: int(path.name.rpartition("-")[2] or 0))
    return aside[-1] if aside else folder


def last_attempt_run(layout: Layout, task: Task) -> int:
    """The attempt number whose logs ``log`` shows by default: the task's current attempt,
    or, when none has counted yet but runs were cut short (provider failures), 1; 0 when
    nothing ran."""
    attempts = task.get("attempts", 0)
    if attempts >= 1:
        return attempts
    return 1 if attempt_folder(layout, task["id"], 1).is_dir() else 0


def log_path(layout: Layout, task_id: str, attempt: int, gate: str | None) -> Path:
    """The worker log of ``attempt``, or with ``gate`` the log of the gate of that name (as
    ``show`` prints it, a command included) or number. Raises :class:`MacpError` when the
    attempt ran no gate of that name."""
    folder = attempt_folder(layout, task_id, attempt)
    if gate is None:
        return folder / "worker.log"
    logs = sorted(folder.glob("gate-*.log"))
    for path in logs:
        number, _, name = path.stem.removeprefix("gate-").partition("-")
        if gate in (name, number) or (number.isdigit() and path.name == gate_log_name(int(number), gate)):
            return path
    known = ", ".join(path.stem.removeprefix("gate-").partition("-")[2] for path in logs) or "none"
    raise MacpError(f"task {task_id}: attempt {attempt} has no gate log {gate!r} (gates: {known})")


def cmd_log(args) -> int:
    """Print (or with ``--follow`` stream) a task's log; returns the exit code."""
    layout = repo_layout(args.repo)
    task, _archived = find_known(layout, args.task_id)

    def write(chunk: bytes) -> None:
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()

    if args.follow:
        follow(layout, args.task_id, args.attempt, args.gate, write)
        return EXIT_OK
    attempt = args.attempt or last_attempt_run(layout, task)
    what = f"gate {args.gate!r}" if args.gate else "worker"
    if attempt < 1:
        raise MacpError(f"task {args.task_id} has not run yet ({status_of(task)}); use --follow to wait for its log")
    path = log_path(layout, args.task_id, attempt, args.gate)
    if not path.exists():
        raise MacpError(f"task {args.task_id}: no {what} log for attempt {attempt} ({status_of(task)})")
    try:
        content = read_regular(path)
    except NotARegularFile:
        raise MacpError(f"{path} is not a regular file; not read") from None
    if path.parent.name != f"attempt-{attempt}":
        note(f"task {args.task_id}: attempt {attempt} never ran to its end; this is its last run, which did not count ({path.parent.name})")
    if not content:
        note(f"task {args.task_id}: the {what} of attempt {attempt} printed nothing ({path.name} is empty)")
    write(content)
    return EXIT_OK


@dataclass
class _Followed:
    """The log being followed: an open descriptor (it keeps reading the same file when the
    folder is moved aside), its inode, and how far it has been copied."""

    handle: BinaryIO
    inode: int

    def copy_new(self, write: Callable[[bytes], None]) -> None:
        """Write what the file holds beyond what was written already."""
        if chunk := self.handle.read():
            write(chunk)


def follow(layout: Layout, task_id: str, pinned: int | None, gate: str | None, write: Callable[[bytes], None]) -> None:
    """Stream the task's log until the task is no longer pending, running or gated (or, with
    ``pinned``, moved past that attempt). The status is read before the file each round, so
    everything written before the task ended is shown. The file is followed by its
    descriptor: when a new file takes its place -- the next attempt, or the same attempt run
    again after a signal, a crash or a failover (its first run moved aside, uncounted) -- the
    rest of the old one is written, then a separator line, then the new one from its start."""
    followed: _Followed | None = None
    try:
        while True:
            task, _archived = find_known(layout, task_id)
            going = status_of(task) in _STILL_GOING and (pinned is None or task.get("attempts", 0) <= pinned)
            attempt = pinned or max(1, task.get("attempts", 0))
            path = _existing_log(layout, task_id, attempt, gate)
            inode = _inode(path) if path is not None else None
            if followed is not None and inode is not None and inode != followed.inode:
                followed.copy_new(write)  # the rest of the log it replaces
                followed.handle.close()
                followed = None
                write(f"--- {task_id}: attempt {attempt} ---\n".encode())
            if followed is None and path is not None and inode is not None:
                followed = _Followed(os.fdopen(open_regular(path), "rb"), inode)
            if followed is not None:
                followed.copy_new(write)
            if not going:
                return
            time.sleep(FOLLOW_POLL_SECONDS)
    finally:
        if followed is not None:
            followed.handle.close()


def _inode(path: Path) -> int | None:
    """The inode of the regular file ``path``, None when it is gone or not a file."""
    try:
        info = path.lstat()
    except OSError:
        return None
    return info.st_ino if stat.S_ISREG(info.st_mode) else None


def _existing_log(layout: Layout, task_id: str, attempt: int, gate: str | None) -> Path | None:
    """The log to follow for ``attempt``, or None while it has not been started."""
    try:
        path = log_path(layout, task_id, attempt, gate)
    except MacpError:
        return None
    return path if path.exists() else None


def cmd_diff(args) -> int:
    """Print ``git diff BASE...BRANCH`` of a task (``--stat``: the summary); returns the
    exit code. Raises :class:`MacpError` for a task that has no branch of its own yet."""
    layout = repo_layout(args.repo)
    task, _archived = find_known(layout, args.task_id)
    base_commit, branch = task.get("base_commit"), task.get("branch")
    if not base_commit or not branch:
        raise MacpError(f"task {args.task_id} has no branch of its own yet ({status_of(task)}; legacy tasks run in the repository itself)")
    try:
        text = gitops.diff(layout.repo_root, base_commit, branch, stat=args.stat)
    except gitops.GitError as exc:
        raise MacpError(f"task {args.task_id}: {exc}") from None
    if text:
        sys.stdout.write(text)
    else:
        out(f"task {args.task_id}: no changes on {branch} since {base_commit[:12]}")
    return EXIT_OK


def cmd_history(args) -> int:
    layout = repo_layout(args.repo)
    if args.task_id:
        find_known(layout, args.task_id)  # an unknown id is an error, an archived one has a history
    shown = 0
    for event in read_events(layout.events_file, args.task_id):  # streamed: a million events need no list
        if args.json:
            out(json.dumps(event, ensure_ascii=False))  # JSON lines, one event each, as events.ndjson has them
        else:
            task_id = event.get("task_id") or "-"
            status = event.get("status") or ""
            out(one_line(f"{event.get('timestamp', '')}  {task_id}  {event.get('event_type', '')}  {status}  {event.get('message', '')}").rstrip())
        shown += 1
    if not shown and not args.json:
        out("no events")
    return EXIT_OK
