"""See what a task does and did: ``mosaic macp log`` and ``mosaic macp diff``.

``log ID [--follow] [--attempt N] [--gate NAME]`` prints a task's worker or gate log. Logs are ``logs/<id>/attempt-<n>/worker.log`` and ``gate-<k>-<name>.log`` (docs/file-formats.md),
written as the child prints, so they can be read while the task runs. ``--follow`` streams
the log until the task leaves ``pending``/``running``/``gated`` (like ``pueue follow``),
moving on to the next attempt's log when a retry starts, unless ``--attempt`` pins one.

``diff ID [--stat]`` prints what the task's branch changed since the commit it started from
(``git diff BASE...BRANCH``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from macp import gitops
from macp.cliutil import out, repo_layout
from macp.errors import EXIT_OK, MacpError
from macp.fsio import NotARegularFile, read_regular
from macp.layout import Layout
from macp.lifecycle import status_of
from macp.taskstore import find_known

FOLLOW_POLL_SECONDS = 0.2
_STILL_GOING = frozenset({"pending", "running", "gated"})


def log_path(layout: Layout, task_id: str, attempt: int, gate: str | None) -> Path:
    """The worker log of ``attempt``, or with ``gate`` the log of the gate of that name (or
    number). Raises :class:`MacpError` when the attempt ran no gate of that name."""
    folder = layout.attempt_dir(task_id, attempt)
    if gate is None:
        return folder / "worker.log"
    logs = sorted(folder.glob("gate-*.log"))
    for path in logs:
        number, _, name = path.stem.removeprefix("gate-").partition("-")
        if gate in (name, number):
            return path
    known = ", ".join(path.stem.removeprefix("gate-").partition("-")[2] for path in logs) or "none"
    raise MacpError(f"task {task_id}: attempt {attempt} has no gate log {gate!r} (gates: {known})")


def copy_new(path: Path, position: int, write: Callable[[bytes], None]) -> int:
    """Write what ``path`` holds after byte ``position``; return the new position (the same
    when the file does not exist yet). Raises :class:`MacpError` when it is not a regular
    file (a FIFO is never opened in a way that could block)."""
    try:
        chunk = read_regular(path, offset=position)
    except FileNotFoundError:
        return position
    except NotARegularFile:
        raise MacpError(f"{path} is not a regular file; not read") from None
    if chunk:
        write(chunk)
    return position + len(chunk)


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
    attempt = args.attempt or task.get("attempts", 0)
    what = f"gate {args.gate!r}" if args.gate else "worker"
    if attempt < 1:
        raise MacpError(f"task {args.task_id} has not run yet ({status_of(task)}); use --follow to wait for its log")
    path = log_path(layout, args.task_id, attempt, args.gate)
    if not path.exists():
        raise MacpError(f"task {args.task_id}: no {what} log for attempt {attempt} ({status_of(task)})")
    copy_new(path, 0, write)
    return EXIT_OK


def follow(layout: Layout, task_id: str, pinned: int | None, gate: str | None, write: Callable[[bytes], None]) -> None:
    """Stream the task's log until the task is no longer pending, running or gated (or, with
    ``pinned``, moved past that attempt). The status is read before the file each round, so
    everything written before the task ended is shown."""
    shown: Path | None = None
    position = 0
    while True:
        task, _archived = find_known(layout, task_id)
        going = status_of(task) in _STILL_GOING and (pinned is None or task.get("attempts", 0) <= pinned)
        attempt = pinned or task.get("attempts", 0)
        path = _existing_log(layout, task_id, attempt, gate) if attempt >= 1 else None
        if shown is not None and path is not None and path != shown:
            copy_new(shown, position, write)  # the rest of the previous attempt's log
            write(f"--- {task_id}: attempt {attempt} ---\n".encode())
            shown, position = None, 0
        shown = shown or path
        if shown is not None:
            position = copy_new(shown, position, write)
        if not going:
            return
        time.sleep(FOLLOW_POLL_SECONDS)


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
