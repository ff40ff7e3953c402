"""``mosaic macp status`` and ``show``: the queue at a glance, one task in full.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from controller.deliver_cli import delivery_lines, delivery_status
from macp import clock
from macp.archive import ArchiveLookup
from macp.cliutil import note, out, print_json, repo_layout
from macp.config import load_config
from macp.dependencies import KnownTasks
from macp.errors import EXIT_OK
from macp.layout import Layout
from macp.lifecycle import STATUSES, status_of
from macp.model import Config, Task
from macp.scheduler import hold_reason
from macp.settings import max_attempts
from macp.taskstore import find_known, load_tasks
from macp.textview import duration_text, fit, one_line, readable, render_table
from macp.usage_report import spend_of, spend_text


def task_view(task: Task, by_id: Mapping[str, Task], now: datetime, layout: Layout, config: Config | None) -> dict[str, Any]:
    """One row of ``status``: id, status, view (ready/blocked/waiting/...), note and basics;
    a task a controller is running also has ``elapsed_seconds`` (of its attempt) and
    ``last_output`` (the last line of its newest log). ``config`` gives the attempt budget
    of a task without ``max_attempts`` (None: every task has one)."""
    status = status_of(task)
    view: str = status
    why = ""
    extra: dict[str, Any] = {}
    if status in ("running", "gated") and task.get("claim"):
        extra = attempt_progress(task, now, layout)
        why = f"{duration_text(extra['elapsed_seconds'])} in; last output: {extra['last_output'] or '(none yet)'}"
    elif status == "pending":
        why = hold_reason(task, by_id, now) or ""
        view = "ready" if not why else ("waiting" if why.startswith("waiting") else "blocked")
    elif status == "running" and (acp := task.get("acp")) and not task.get("claim"):
        if acp.get("reported_at"):
            why = "acp: report in; the next drain runs its quality gates"
        else:
            view, why = "awaiting-report", "acp: waiting for mosaic macp complete"
    elif status in ("failed", "escalated"):
        why = task.get("escalation_reason") or task.get("error") or ""
    elif status == "completed" and (uncommitted := task.get("uncommitted_work")):
        why = f"not committed (macp.commit_leftovers is off): {uncommitted}"
    elif status == "completed" and (landed := task.get("landed_commit")):
        why = f"landed as {landed[:12]}"
    elif status == "completed" and task.get("branch"):
        why = "not landed yet (mosaic macp land)"
    return {
        "id": task["id"],
        "status": status,
        "view": view,
        "note": one_line(why),
        "attempts": task.get("attempts", 0),
        "max_attempts": max_attempts(task, config) if config is not None else task["max_attempts"],
        "dispatch": task.get("dispatch") or "legacy",
        "runtime": (task.get("attempt_runtime") if extra else None) or task.get("runtime") or task.get("attempt_runtime") or "",
        "title": one_line(task.get("title") or ""),
        "landed_commit": task.get("landed_commit"),
        **spend_of(task),
        **extra,
    }


def _lstat(path: Path) -> os.stat_result | None:
    """``path.lstat()``, or None when the file went between listing and looking (the attempt
    folder moved aside as the attempt ended)."""
    try:
        return path.lstat()
    except FileNotFoundError:
        return None


def attempt_progress(task: Task, now: datetime, layout: Layout) -> dict[str, Any]:
    """``{"elapsed_seconds", "last_output"}`` of a running attempt: seconds since it was
    claimed (``attempt_started_at``), and the last non-empty line of the newest log in its
    attempt folder (the worker's, or a gate's), "" when there is none yet."""
    from macp.capture import read_log_tail  # here: the other commands do not need it at start-up

    started = task.get("attempt_started_at") or task.get("updated_at")
    elapsed = max(0.0, (now - clock.parse_timestamp(started)).total_seconds()) if started else 0.0
    found = [(info.st_mtime, path) for path in layout.attempt_dir(task["id"], task.get("attempts", 0)).glob("*.log")
             if (info := _lstat(path)) and stat.S_ISREG(info.st_mode)]
    logs = [path for _mtime, path in sorted(found)]  # regular files only: a FIFO is never read
    lines = [line for line in read_log_tail(logs[-1], 4096).splitlines() if line.strip()] if logs else []
    return {"elapsed_seconds": round(elapsed, 1), "last_output": one_line(lines[-1]) if lines else ""}


def cmd_status(args) -> int:
    layout = repo_layout(args.repo)
    document = load_tasks(layout, validate=True)
    if args.all:
        from macp.archive import archived_tasks

        live = {task["id"] for task in document.tasks}
        document.tasks[:0] = [task for task in archived_tasks(layout.orch_dir, note) if task["id"] not in live]
    now = clock.now()
    by_id = KnownTasks(document.tasks, ArchiveLookup(layout.orch_dir))
    tasks = [by_id[args.task_id] if args.task_id in by_id else document.get(args.task_id)] if args.task_id else document.tasks
    # The config is read only when a task leaves its attempt budget to worker.max_attempts.
    config = load_config(layout.config_file) if any(not task.get("max_attempts") for task in tasks) else None
    rows = [task_view(task, by_id, now, layout, config) for task in tasks]
    counts = Counter(status_of(task) for task in tasks)
    delivery = delivery_status(layout)
    if args.json:
        transport = {"transport": delivery} if delivery is not None else {}
        print_json({"repo": str(layout.repo_root), "counts": {s: counts[s] for s in STATUSES}, "tasks": rows, **transport})
        return EXIT_OK
    summary = ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s]) or "no tasks"
    out(f"{len(tasks)} task(s): {summary}")
    for line in delivery_lines(delivery) if delivery is not None else []:
        out(line)
    if rows:
        out()
        columns = [
            ("ID", lambda r: r["id"]),
            ("STATUS", lambda r: r["view"] if r["status"] == "pending" else r["status"]),
            ("ATTEMPTS", lambda r: f"{r['attempts']}/{r['max_attempts']}"),
            ("DISPATCH", lambda r: r["dispatch"]),
            ("RUNTIME", lambda r: r["runtime"] or "-"),
            ("SPENT", spend_text),
            ("TITLE", lambda r: fit(r["title"], 40)),
            ("NOTE", lambda r: fit(r["note"], 80)),
        ]
        for line in render_table(rows, columns):
            out(line)
    return EXIT_OK


def cmd_show(args) -> int:
    layout = repo_layout(args.repo)
    load_tasks(layout, validate=True)
    task, archived = find_known(layout, args.task_id)
    from dispatcher.macp_dispatcher import result_file
    from macp.fsio import read_json

    path = result_file(task, layout.orch_dir)
    result = read_json(path) if path.exists() else None
    if args.json:
        print_json({"task": task, "result": result, "archived": archived})
        return EXIT_OK
    if archived:
        out(f"{task['id']} is archived (read-only): {layout.orch_dir / 'archive'}")
    worktree = task.get("worktree")
    shown = {**task, "worktree": f"{worktree} (removed)"} if worktree and not Path(worktree).exists() else task
    for line in readable(shown):
        out(line)
    out()
    if result is None:
        out("result: none yet")
        return EXIT_OK
    out(f"result ({path}):")
    for line in readable({key: value for key, value in result.items() if key != "task_id"}, "  "):
        out(line)
    return EXIT_OK
