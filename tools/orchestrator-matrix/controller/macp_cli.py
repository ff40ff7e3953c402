"""``mosaic macp``: submit, inspect and steer the MACP queue of a repository.

Subcommands (MACP Phase 1 brief, Task 7, plus what DESIGN.md adds): ``init``, ``submit``,
``status``, ``show``, ``usage``, ``log``, ``diff``, ``prune``, ``archive``, ``report``, ``drain``, ``history``, ``retry``, ``edit``, ``cancel``, ``approve``, ``complete``,
``sync``, ``validate``. Every one takes
``--repo DIR`` (default: the main worktree of the current folder's repository); read commands take
``--json``. Human output goes to stdout, diagnostics to stderr; exit codes are in
docs/exit-codes.md. None of them waits for a running task: they hold the tasks.json lock for
milliseconds only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, cast, get_args

from controller.deliver_cli import RECORDING_COMMANDS, cmd_deliver, deliver_after_command, delivery_lines, delivery_status
from macp import __version__, clock
from macp.archive import ArchiveLookup, archived_ids, archived_tasks
from macp.cliutil import (
    OneLineParser,
    add_workers_option,
    note,
    out,
    positive_dollars,
    positive_int,
    print_json,
    repo_layout,
    run_main,
    shortened,
    token_figure,
)
from macp.config import TEMPLATE_STATE_DIR, load_config, max_attempts
from macp.dependencies import KnownTasks
from macp.errors import EXIT_OK, MacpError
from macp.estimates import calibrate, estimate_note
from macp.events import make_event, read_events
from macp.fsio import loads
from macp.layout import Layout, confine
from macp.lifecycle import STATUSES, status_of, transition
from macp.locks import live_holder
from macp.model import AcpState, Config, Dispatch, Task, TaskChanges, TaskStatus, TaskType
from macp.recording import recorded
from macp.redact import redact
from macp.scheduler import hold_reason
from macp.taskstore import edit_tasks, find_known, load_tasks
from macp.textview import duration_text, fit, one_line, readable, render_table
from macp.usage_report import GROUPINGS, spend_of, spend_text
from protocol.schemas import schema_errors

PROG = "mosaic macp"
TASK_TYPES: tuple[TaskType, ...] = get_args(TaskType)
DISPATCHES: tuple[Dispatch, ...] = get_args(Dispatch)
TEMPLATE_FILES = ("config.json", "tasks.json", ".gitignore")


# -- init -------------------------------------------------------------------------------


def initialise(layout: Layout) -> list[str]:
    """Copy the templates into ``.mosaic/orchestrator/`` (never overwriting); return what was created."""
    created = []
    layout.orch_dir.mkdir(parents=True, exist_ok=True)
    for name in TEMPLATE_FILES:
        target = layout.orch_dir / name
        if not target.exists():
            shutil.copyfile(TEMPLATE_STATE_DIR / name, target)
            created.append(str(target.relative_to(layout.repo_root)))
    return created


def cmd_init(args) -> int:
    layout = repo_layout(args.repo)
    created = initialise(layout)
    if created:
        out(f"initialised {layout.orch_dir}: " + ", ".join(created))
    else:
        out(f"{layout.orch_dir} is already initialised")
    return EXIT_OK


# -- submit -----------------------------------------------------------------------------


def split_ids(values: list[str] | None) -> list[str]:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]`` (comma lists and repeated flags both work)."""
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def brief_path_for(args, layout: Layout, config: Config) -> str | None:
    """The brief path to record, relative to the repository: ``--brief`` (must exist inside the
    repository) or ``<brief_dir>/<task-id>.md`` when that file exists. A relative ``--brief``
    is read from the current folder when that lies inside the repository, else from the
    repository root (so ``--repo`` works from anywhere)."""
    if args.brief is None:
        folder = confine(config["macp"]["brief_dir"], layout.repo_root, "macp.brief_dir")
        default = folder / f"{args.task_id}.md"
        if not default.is_file():
            return None
        return str(confine(default, layout.repo_root, f"macp.brief_dir: {args.task_id}.md").relative_to(layout.repo_root.resolve()))
    path = Path(args.brief)
    if not path.is_absolute():
        cwd, root = Path.cwd().resolve(), layout.repo_root.resolve()
        path = (cwd if cwd == root or root in cwd.parents else root) / path
    resolved = confine(path, layout.repo_root, "--brief")
    if not resolved.is_file():
        raise MacpError(f"--brief: {args.brief} does not exist or is not a file")
    return str(resolved.relative_to(layout.repo_root.resolve()))


def implied_dispatch(args, default: Dispatch) -> Dispatch:
    """``--dispatch`` when given; else ``yolo`` when ``--runtime`` or ``--brief`` names an
    agent's work and no ``--command`` does (the brief's own ``submit`` example); else
    ``default`` (``macp.default_dispatch``)."""
    if args.dispatch:
        return args.dispatch
    if args.command is None and (args.runtime or args.brief):
        return "yolo"
    return default


def build_task(args, layout: Layout, config: Config) -> Task:
    """The new task from ``submit``'s arguments; raises :class:`MacpError` for bad input."""
    from dispatcher.macp_dispatcher import resolve_runtime

    dispatch = implied_dispatch(args, config["macp"]["default_dispatch"])
    task: Task = {"id": args.task_id, "title": args.title or args.task_id, "status": "pending", "dispatch": dispatch}
    optional: TaskChanges = {
        "type": args.type,
        "runtime": args.runtime,
        "pin_runtime": args.pin_runtime,
        "command": args.command,
        "priority": args.priority,
        "exclusive_group": args.exclusive_group,
        "timeout_seconds": args.timeout,
        "branch": args.branch,
        "issue": args.issue,
        "description": args.description,
        "estimate_tokens": args.estimate,
        "max_tokens": args.max_tokens,
        "max_cost_usd": args.max_cost_usd,
    }
    task.update(cast(TaskChanges, {key: value for key, value in optional.items() if value is not None}))
    if args.estimate:
        task["estimate_source"] = "given"
    task["brief_path"] = brief_path_for(args, layout, config)
    task["depends_on"] = split_ids(args.depends_on)
    if args.gate:
        task["quality_gates"] = args.gate
    task["max_attempts"] = args.max_attempts or max_attempts(task, config)
    task["attempts"] = 0
    task["created_at"] = clock.timestamp()
    if dispatch == "exec" and not args.command:
        raise MacpError("an exec task needs --command")
    if args.pin_runtime and not args.runtime:
        raise MacpError("--pin-runtime needs --runtime: the runtime to pin the task to")
    if dispatch in ("yolo", "acp"):
        runtime = resolve_runtime(task, config)
        if runtime not in config["runtimes"]:
            known = ", ".join(config["runtimes"]) or "none"
            raise MacpError(f"unknown runtime {runtime!r} (configured: {known})")
    return task


def check_new_task(document, task: Task, archived: set[str]) -> None:
    """Refuse a duplicate id -- of a task in the queue or in the ``archived`` ids: an id is
    never used twice -- or a dependency that is neither in the queue nor archived (MacpError)."""
    if document.find(task["id"]):
        raise MacpError(f"task {task['id']} already exists")
    if task["id"] in archived:
        raise MacpError(f"task {task['id']} already exists (archived); choose another id")
    for dependency in task["depends_on"]:
        if dependency == task["id"] or (document.find(dependency) is None and dependency not in archived):
            raise MacpError(f"--depends-on: unknown task {dependency}")


def cmd_submit(args) -> int:
    layout = repo_layout(args.repo)
    config = load_config(layout.config_file)
    if args.from_file is not None:
        if args.task_id is not None:
            raise MacpError("--from and --task-id cannot be used together: put every task in the file")
        submissions = read_submissions(args.from_file)
    elif args.task_id is None:
        raise MacpError("--task-id is required (or --from FILE for many tasks)")
    else:
        submissions = [("", args)]
    tasks = []
    for where, spec in submissions:
        try:
            tasks.append(checked_task(spec, layout, config))
        except MacpError as exc:
            raise MacpError(f"{where}{exc}") from None
    archived = archived_ids(layout.orch_dir)
    queue = load_tasks(layout)
    add_checked(queue, submissions, tasks, archived)  # before anything is created
    calibrations = calibrate(tasks, [*queue.tasks, *archived_tasks(layout.orch_dir)])
    created = initialise(layout) if not layout.tasks_file.exists() else []
    if created:
        note(f"created {layout.orch_dir} from templates ({', '.join(created)})")
    with recorded(edit_tasks(layout), layout.events_file) as (document, events):
        # again under the lock: the queue may have moved (archive takes the same lock)
        add_checked(document, submissions, tasks, archived_ids(layout.orch_dir))
        events.extend(make_event("task.submitted", source="cli", task_id=task["id"], status="pending", attempt=0, message=task["title"]) for task in tasks)
    if args.from_file is None:
        estimate = estimate_note(tasks[0])
        out(f"submitted {tasks[0]['id']} ({tasks[0]['dispatch']}, pending" + (f"; {estimate}" if estimate else "") + ")")
    else:
        out(f"submitted {len(tasks)} task(s) from {args.from_file}")
    for line in calibrations:
        out(line)
    return EXIT_OK



def add_checked(document, submissions: Sequence[tuple[str, object]], tasks: list[Task], archived: set[str]) -> None:
    """Append ``tasks`` to ``document`` in order, each checked against what is already there
    and the ``archived`` ids (:func:`check_new_task`: no duplicate, dependencies known or
    earlier in the batch)."""
    for (where, _spec), task in zip(submissions, tasks, strict=True):
        try:
            check_new_task(document, task, archived)
        except MacpError as exc:
            raise MacpError(f"{where}{exc}") from None
        document.tasks.append(task)


def checked_task(spec, layout: Layout, config: Config) -> Task:
    """The new task from ``submit``'s arguments (or one ``--from`` line), checked against
    the task schema and git's branch rules; raises :class:`MacpError`."""
    task = build_task(spec, layout, config)
    errors = schema_errors("task", task)
    if errors:
        raise MacpError(f"invalid task: {errors[0]}")
    from dispatcher.macp_dispatcher import branch_problem

    problem = branch_problem(task, layout.repo_root)
    if problem:
        raise MacpError(problem)
    return task


# One line of `submit --from`: task fields (tasks.json names) -> submit's options.
SUBMISSION_FIELDS = {
    "id": "task_id", "title": "title", "description": "description", "type": "type", "dispatch": "dispatch",
    "runtime": "runtime", "pin_runtime": "pin_runtime", "brief": "brief", "command": "command", "depends_on": "depends_on", "priority": "priority", "exclusive_group": "exclusive_group",
    "max_attempts": "max_attempts", "timeout_seconds": "timeout", "branch": "branch", "issue": "issue", "quality_gates": "gate",
    "estimate_tokens": "estimate", "max_tokens": "max_tokens", "max_cost_usd": "max_cost_usd",
}


def check_submission_types(fields: dict[str, Any], where: str) -> None:
    """Refuse a ``submit --from`` line whose fields have the wrong JSON types or values, before
    anything is built from it: each is checked against its property in task.schema.json
    (``brief`` as ``brief_path``; ``depends_on`` may also be one id). Raises
    :class:`MacpError` ``<file>:<line>: invalid task: $.<field>: <reason>``."""
    candidate = {"brief_path" if name == "brief" else name: value for name, value in fields.items()}
    if isinstance(candidate.get("depends_on"), str):
        candidate["depends_on"] = [candidate["depends_on"]]
    candidate.setdefault("id", "")
    for error in schema_errors("task", candidate):
        if error.path != "$.id" or "id" in fields:
            raise MacpError(f"{where}invalid task: {error.path.replace('$.brief_path', '$.brief', 1)}: {error.message}")


def read_submissions(source: str) -> list[tuple[str, argparse.Namespace]]:
    """The tasks of ``submit --from FILE|-``: one JSON object per line (blank lines skipped),
    with tasks.json's field names (:data:`SUBMISSION_FIELDS`), each as submit's arguments
    and a ``"<file>:<line>: "`` prefix for its errors. Raises :class:`MacpError` for an
    unreadable file, a line that is not a JSON object, or an unknown field."""
    if source == "-" and sys.stdin is None:
        raise MacpError("--from -: stdin is closed; give the tasks on stdin or name a file")
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise MacpError(f"--from: cannot read {shortened(source)}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise MacpError(f"--from: {source} is not UTF-8 (byte {exc.start})") from None
    label = "stdin" if source == "-" else source
    submissions = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{label}:{number}: "
        try:
            fields = loads(line)
        except json.JSONDecodeError as exc:
            raise MacpError(f"{where}invalid JSON: {exc.msg} (column {exc.colno})") from None
        except ValueError as exc:
            raise MacpError(f"{where}invalid JSON: {exc}") from None
        if not isinstance(fields, dict):
            raise MacpError(f"{where}expected a JSON object (one task per line)")
        unknown = sorted(set(fields) - set(SUBMISSION_FIELDS))
        if unknown:
            raise MacpError(f"{where}unknown field(s): {', '.join(unknown)} (known: {', '.join(SUBMISSION_FIELDS)})")
        check_submission_types(fields, where)
        spec = argparse.Namespace(**dict.fromkeys(SUBMISSION_FIELDS.values()))
        for field, value in fields.items():
            setattr(spec, SUBMISSION_FIELDS[field], [value] if field == "depends_on" and isinstance(value, str) else value)
        submissions.append((where, spec))
    if not submissions:
        raise MacpError(f"--from: {label} holds no tasks")
    return submissions


# -- status / show ----------------------------------------------------------------------


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
    from macp.procs import read_log_tail  # here: the other commands do not need it at start-up

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


# -- history ----------------------------------------------------------------------------


def delegated(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """A handler that imports ``controller.<module>`` only when its command runs (start-up
    stays small: docs/performance.md) and calls its ``name``."""

    def handler(args: argparse.Namespace) -> int:
        import importlib

        return getattr(importlib.import_module(f"controller.{module}"), name)(args)

    return handler


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


# -- drain ------------------------------------------------------------------------------


def cmd_drain(args) -> int:
    from controller.mosaic_orchestrator import run_controller

    return run_controller(
        args.repo, until_drained=True, wait=args.wait, dry_run=args.dry_run, json_output=args.json, workers=args.workers, say=out
    )


# -- retry / cancel / complete ----------------------------------------------------------


def change_task(
    layout: Layout, task_id: str, decide: Callable[[Task], TaskChanges], new_status: TaskStatus, event: Callable[[Task, Task], dict]
) -> tuple[Task, Task]:
    """Under the tasks.json lock, move ``task_id`` to ``new_status`` and record
    ``event(before, after)`` with it (:func:`macp.recording.recorded`).

    ``decide(task)`` returns the field changes, or raises :class:`MacpError` to refuse.
    Returns ``(task before, task after)``.
    """
    with recorded(edit_tasks(layout), layout.events_file) as (document, events):
        before = document.get(task_id)
        after = transition(before, new_status, clock.timestamp(), decide(before))
        document.replace(after)
        events.append(event(before, after))
    return before, after


def cli_event(event_type: str, task: Task, message: str, **metadata: object) -> dict:
    """A ``cli`` event about ``task`` (its status and attempt)."""
    return make_event(
        event_type,
        source="cli",
        task_id=task["id"],
        status=status_of(task),
        attempt=task.get("attempts", 0),
        message=message,
        metadata=metadata,
    )


def cmd_retry(args) -> int:
    layout = repo_layout(args.repo)
    config = load_config(layout.config_file)
    if args.fresh:
        from dispatcher.macp_dispatcher import start_over

        task = load_tasks(layout).get(args.task_id)
        check_retryable(task)
        for line in start_over(task, layout.repo_root, config):
            out(f"{args.task_id}: {line}")

    def decide(task: Task) -> TaskChanges:
        check_retryable(task)
        budget = task.get("attempts", 0) + args.attempts
        fresh: TaskChanges = {"worktree": None, "base_commit": None, "stacked_on": [], "last_failure": None} if args.fresh else {}
        return {**RETRY_RESETS, "max_attempts": budget, **fresh}

    how = "from the base, in a new worktree" if args.fresh else "in its worktree"

    def event(before: Task, task: Task) -> dict:
        return cli_event(
            "task.retried",
            task,
            f"back to pending by hand ({how}); {args.attempts} more attempt(s), budget {task['max_attempts']}",
            previous_status=status_of(before),
            max_attempts=task["max_attempts"],
            fresh=args.fresh,
        )

    _before, task = change_task(layout, args.task_id, decide, "pending", event)
    out(f"{task['id']}: pending again ({args.attempts} more attempt(s))")
    for other in requeue_downstream(layout, task["id"]):
        out(f"{other['id']}: pending again (it was escalated only because {task['id']} failed)")
    return EXIT_OK


# Fields a retry clears: the claim, the outcome, waits, the provider-failure budget, an acp report.
RETRY_RESETS: TaskChanges = {
    "claim": None,
    "error": None,
    "escalation_reason": None,
    "upstream_failed": False,
    "not_before": None,
    "provider_failures": 0,
    "failed_runtimes": [],
    "acp": None,
}


def check_retryable(task: Task) -> None:
    """Refuse (MacpError) a task that is not failed, escalated or cancelled."""
    if status_of(task) not in ("failed", "escalated", "cancelled"):
        raise MacpError(f"task {task['id']} is {status_of(task)}; only failed, escalated or cancelled tasks can be retried")


def requeue_downstream(layout: Layout, task_id: str) -> list[Task]:
    """Put back to pending the tasks escalated only because ``task_id`` (or a task so
    escalated because of it) failed (``upstream_failed``); returns them."""
    requeued: list[Task] = []
    with recorded(edit_tasks(layout), layout.events_file) as (document, events):
        frontier = [task_id]
        while frontier:
            upstream = frontier.pop()
            for held in document.tasks:
                if status_of(held) == "escalated" and held.get("upstream_failed") and upstream in (held.get("depends_on") or []):
                    requeued.append(transition(held, "pending", clock.timestamp(), RETRY_RESETS))
                    document.replace(requeued[-1])
                    events.append(cli_event("task.retried", requeued[-1], f"back to pending: its dependency {task_id} is retried"))
                    frontier.append(held["id"])
    return requeued


EDITABLE = {
    "timeout": "timeout_seconds", "command": "command", "max_attempts": "max_attempts", "runtime": "runtime", "priority": "priority", "gate": "quality_gates",
    "estimate": "estimate_tokens", "max_tokens": "max_tokens", "max_cost_usd": "max_cost_usd",
}


def cmd_edit(args) -> int:
    """Change fields of a pending or escalated task; the event records old and new values."""
    layout = repo_layout(args.repo)
    config = load_config(layout.config_file)
    wanted = {field: getattr(args, option) for option, field in EDITABLE.items() if getattr(args, option) is not None}
    if not wanted:
        raise MacpError("nothing to change: give at least one of " + ", ".join("--" + option.replace("_", "-") for option in EDITABLE))
    if "estimate_tokens" in wanted:
        wanted["estimate_source"] = "given"
    if "runtime" in wanted and wanted["runtime"] not in config["runtimes"]:
        raise MacpError(f"unknown runtime {wanted['runtime']!r} (configured: {', '.join(config['runtimes']) or 'none'})")
    with recorded(edit_tasks(layout), layout.events_file) as (document, events):
        task = document.get(args.task_id)
        if status_of(task) not in ("pending", "escalated"):
            retry_first = f" (retry it first: mosaic macp retry {task['id']}, then edit it)" if status_of(task) in ("failed", "cancelled") else ""
            raise MacpError(f"task {task['id']} is {status_of(task)}; only pending or escalated tasks can be edited{retry_first}")
        changed = {field: {"from": task.get(field), "to": value} for field, value in wanted.items() if task.get(field) != value}
        edited = cast(Task, {**task, **wanted, "updated_at": clock.timestamp()})  # schema-checked next
        errors = schema_errors("task", edited)
        if errors:
            raise MacpError(f"invalid change: {errors[0]}")
        document.replace(edited)
        summary = ", ".join(f"{field} {one_line(str(change['to']))}" for field, change in changed.items())
        if changed:
            events.append(cli_event("task.updated", edited, f"edited by hand: {summary}", changes=changed))
    if not changed:
        out(f"{args.task_id}: nothing changed")
        return EXIT_OK
    out(f"{args.task_id}: {summary}")
    return EXIT_OK


def cmd_cancel(args) -> int:
    layout = repo_layout(args.repo)

    def decide(task: Task) -> TaskChanges:
        claim = task.get("claim")
        holder = live_holder(layout.controller_lock) if claim else None
        if claim and holder is not None and holder.get("token") in (None, claim.get("token")):
            raise MacpError(f"task {task['id']} is {status_of(task)} under a running controller; stop the controller first")
        if status_of(task) in ("completed", "cancelled"):
            raise MacpError(f"task {task['id']} is already {status_of(task)}")
        return {"claim": None}

    _, task = change_task(layout, args.task_id, decide, "cancelled", lambda _before, task: cli_event("task.cancelled", task, args.reason or "cancelled by hand"))
    out(f"{task['id']}: cancelled")
    return EXIT_OK


def cmd_approve(args) -> int:
    layout = repo_layout(args.repo)

    def decide(task: Task) -> TaskChanges:
        if status_of(task) != "escalated" or not task.get("risk_hold"):
            raise MacpError(f"task {task['id']} is not held for risk review")
        return {"approved": True, "risk_hold": None, "escalation_reason": None}

    def event(before: Task, task: Task) -> dict:
        return cli_event("task.approved", task, f"approved past the risk hold on {before['risk_hold']!r}", risk_term=before["risk_hold"])

    _before, task = change_task(layout, args.task_id, decide, "pending", event)
    out(f"{task['id']}: approved; pending again")
    for other in requeue_downstream(layout, task["id"]):  # escalated by a MACP that took the hold for a failure
        out(f"{other['id']}: pending again (it was escalated only because {task['id']} was held)")
    return EXIT_OK


def cmd_complete(args) -> int:
    layout = repo_layout(args.repo)
    with recorded(edit_tasks(layout), layout.events_file) as (document, events):
        task = document.get(args.task_id)
        acp: AcpState = task.get("acp") or {}
        if task.get("dispatch") != "acp" or status_of(task) != "running" or not acp.get("requested_at"):
            raise MacpError(f"task {task['id']} is not an acp task waiting for its completion report")
        if acp.get("reported_at"):
            raise MacpError(f"task {task['id']} already has a completion report")
        reported_at = clock.timestamp()
        summary = redact(args.summary) if args.summary is not None else None  # text enters MACP's state redacted
        acp = {**acp, "reported_exit_code": args.exit_code, "reported_summary": summary, "reported_at": reported_at}
        task = {**task, "acp": acp, "updated_at": reported_at}
        document.replace(task)
        events.append(cli_event("task.acp.reported", task, f"external worker exited {args.exit_code}", exit_code=args.exit_code))
    out(f"{task['id']}: completion recorded (exit {args.exit_code}); the next drain runs its quality gates")
    return EXIT_OK


# -- sync / validate (their own modules) ------------------------------------------------


def cmd_sync(args) -> int:
    from controller.tasks_md_sync import run_sync

    return run_sync(args)


def cmd_validate(args) -> int:
    from dispatcher.macp_dispatcher import check_task_paths
    from macp.statecheck import run_validate

    return run_validate(args, check_task_paths)


# -- parser -----------------------------------------------------------------------------


def add_budget_options(parser: argparse.ArgumentParser, estimate_default: str, cap_default: str) -> None:
    """``--estimate``, ``--max-tokens`` and ``--max-cost-usd`` (docs/usage.md)."""
    parser.add_argument("--estimate", type=token_figure, metavar="TOKENS", help=f"tokens the task is expected to use, as 5K or 4.2K: input not read from a cache, plus output ({estimate_default})")
    parser.add_argument("--max-tokens", type=token_figure, metavar="TOKENS", help=f"the most the task may use over all its runs; a task whose estimate would pass it is escalated before it starts ({cap_default})")
    parser.add_argument("--max-cost-usd", type=positive_dollars, metavar="USD", help=f"the most the task may cost over all its runs; passed to runtimes that take a cap ({cap_default})")


def build_parser() -> OneLineParser:
    """The ``mosaic macp`` argument parser."""
    parser = OneLineParser(prog="mosaic macp", description="Submit, inspect and run MACP tasks.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="subcommand", required=True, parser_class=OneLineParser, metavar="COMMAND")

    def command(name: str, handler, help_text: str) -> OneLineParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--repo", help="repository root (default: the main worktree of the current folder's repository, also from a task's worktree)")
        p.set_defaults(handler=handler)
        return p

    command("init", cmd_init, "create .mosaic/orchestrator/ from the templates")

    p = command("submit", cmd_submit, "add a task to the queue")
    p.add_argument("--task-id", help="task id: letters, digits, '.', '_', '-' (max 128); no default: required unless --from")
    p.add_argument("--from", dest="from_file", metavar="FILE", help="submit many tasks in one locked update: one JSON object per line with tasks.json's field names, - for stdin (default: one task from the options)")
    p.add_argument("--title", help="one line for humans (default: the task id)")
    p.add_argument("--description", help="longer text; becomes the agent's prompt when there is no brief (default: none)")
    p.add_argument("--type", choices=TASK_TYPES, help="kind of work; picks the runtime with the best success rate (default: none)")
    p.add_argument("--dispatch", choices=DISPATCHES, help="how the task runs (default: yolo when --runtime or --brief is given without --command, else config macp.default_dispatch)")
    p.add_argument("--runtime", help="agent runtime for yolo/acp; on a provider failure (rate limit, quota, auth, network, missing binary) the task fails over to the other configured runtimes, the attempt not counted, unless --pin-runtime (default: best success rate for the type, else worker.runtime)")
    p.add_argument("--pin-runtime", action="store_true", default=None, help="run only on --runtime: a provider failure waits for that runtime's reset time (or escalates at macp.max_provider_failures) instead of failing over (default: fail over)")
    p.add_argument("--brief", help="markdown brief inside the repository, relative to the current folder when inside it, else to the repository root (default: <macp.brief_dir>/<id>.md when it exists)")
    p.add_argument("--command", help="shell command of an exec task, run by /bin/sh in the worktree (default: none)")
    p.add_argument("--depends-on", action="append", metavar="IDS", help="ids that must complete first (comma list; repeatable; default: none)")
    p.add_argument("--priority", type=int, help="higher runs first (default: 0)")
    p.add_argument("--exclusive-group", metavar="NAME", help="never run at the same time as another task of this group, whatever --workers allows (default: none)")
    p.add_argument("--max-attempts", type=positive_int, help="attempts before the task ends failed/escalated (default: config worker.max_attempts)")
    p.add_argument("--timeout", type=positive_int, metavar="SECONDS", help="limit of each worker run (default: config worker.timeout_seconds)")
    p.add_argument("--branch", help="git branch of the task (default: feat/<id>-<slug of title>)")
    p.add_argument("--issue", help="issue reference kept with the task, e.g. #42 (default: none)")
    p.add_argument("--gate", action="append", metavar="COMMAND", help="quality gate for this task, replacing config's (repeatable; default: config quality_gates)")
    add_budget_options(p, "default: the median used of completed tasks of its type, else none", "default: config budget")

    p = command("status", cmd_status, "show the queue")
    p.add_argument("--task-id", help="show only this task (default: every task)")
    p.add_argument("--all", action="store_true", help="include archived tasks (default: only tasks.json)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = command("show", cmd_show, "show one task and its result")
    p.add_argument("task_id", help="the task to show")
    p.add_argument("--json", action="store_true", help="print the task and its result as JSON")

    p = command("drain", cmd_drain, "run the controller until nothing is runnable")
    p.add_argument("--dry-run", action="store_true", help="print the order and commands, run nothing")
    p.add_argument("--wait", action="store_true", help="wait for a running controller instead of exiting 75")
    p.add_argument("--json", action="store_true", help="print the run's summary as one JSON document on stdout (progress goes to stderr)")
    add_workers_option(p)

    p = command("log", delegated("inspect_cli", "cmd_log"), "print a task's worker or gate log; --follow streams it while the task runs")
    p.add_argument("task_id", help="the task whose log to print")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the task is no longer pending, running or gated")
    p.add_argument("--attempt", type=positive_int, help="which attempt (default: the latest; with --follow, each new one)")
    p.add_argument("--gate", metavar="NAME", help="a quality gate's log, by name or number (default: the worker's log)")

    p = command("diff", delegated("inspect_cli", "cmd_diff"), "show what a task's branch changed since the commit it started from (git diff BASE...BRANCH)")
    p.add_argument("task_id", help="the task whose work to show")
    p.add_argument("--stat", action="store_true", help="only the summary of changed files")

    p = command("prune", delegated("prune", "cmd_prune"), "remove finished tasks' worktrees that hold no work and their branches already in the base")
    p.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")
    p.add_argument("--wait", action="store_true", help="wait for a running controller instead of exiting 75")

    p = command("usage", delegated("usage_cli", "cmd_usage"), "what the work cost: tokens, used tokens, cost, waste and estimate variance per task, runtime, type or day (archived tasks included)")
    p.add_argument("--by", choices=GROUPINGS, default="task", help="how to group the runs (default: task)")
    p.add_argument("--since", metavar="DATE", help="only runs recorded from this date (YYYY-MM-DD, UTC) or timestamp on (default: every run)")
    p.add_argument("--json", action="store_true", help="print the groups and their total as one JSON document")
    p = command("archive", delegated("archive_cli", "cmd_archive"), "move finished tasks out of tasks.json into archive/<YYYY-MM>.ndjson (status --all and history still see them)")
    p.add_argument("--before", metavar="DATE", help="only tasks finished before this date or timestamp (default: every finished task)")
    p.add_argument("--dry-run", action="store_true", help="say how many would go, move nothing")

    p = command("report", delegated("report_cli", "cmd_report"), "write the quality-gate results of every finished task as JUnit XML, for CI")
    p.add_argument("--junit", required=True, metavar="FILE", help="where to write the JUnit XML (outside .mosaic/orchestrator)")

    p = command("deliver", cmd_deliver, "send the events not yet delivered to the Matrix room now (docs/transport.md)")
    p.add_argument("--json", action="store_true", help="print what was delivered and what waits as JSON")

    p = command("history", cmd_history, "show the event log")
    p.add_argument("--task-id", help="only this task's events (default: every event)")
    p.add_argument("--json", action="store_true", help="print the events as JSON lines: one compact JSON object per line, as they are logged (no events: no lines)")

    p = command("retry", cmd_retry, "put a failed, escalated or cancelled task back to pending")
    p.add_argument("task_id", help="the task to retry")
    p.add_argument("--attempts", type=positive_int, default=1, help="attempts to grant (default: 1)")
    p.add_argument("--fresh", action="store_true", help="start over from the base in a new worktree; the old branch tip is kept under refs/macp/ (default: continue in the task's worktree)")

    p = command("edit", cmd_edit, "change a pending or escalated task (the event records the change)")
    p.add_argument("task_id", help="the task to change")
    p.add_argument("--timeout", type=positive_int, metavar="SECONDS", help="new limit of each worker run (default: unchanged)")
    p.add_argument("--command", help="new shell command of an exec/legacy task (default: unchanged)")
    p.add_argument("--max-attempts", type=positive_int, help="new attempt budget (default: unchanged)")
    p.add_argument("--runtime", help="new agent runtime (default: unchanged)")
    p.add_argument("--priority", type=int, help="new priority, higher runs first (default: unchanged)")
    p.add_argument("--gate", action="append", metavar="COMMAND", help="the task's quality gates, replacing its list (repeatable; default: unchanged)")
    add_budget_options(p, "default: unchanged", "default: unchanged")

    p = command("cancel", cmd_cancel, "cancel a task that is not running")
    p.add_argument("task_id", help="the task to cancel")
    p.add_argument("--reason", help="why, kept in the task and its event (default: none)")

    p = command("approve", cmd_approve, "let a task held by the risk policy run")
    p.add_argument("task_id", help="the held task")

    p = command("validate", cmd_validate, "check state files against their schemas (exit 1 when invalid)")
    p.add_argument("--schema", help="a JSON Schema file to check FILES against (default: the schema each file's name implies)")
    p.add_argument("files", nargs="*", metavar="FILE", help="default: every state file of the repository")

    p = command("sync", cmd_sync, "sync the docs/TASKS.md table into tasks.json")
    p.add_argument("--file", help="the markdown file (default: docs/TASKS.md)")
    p.add_argument("--write-back", action="store_true", help="write statuses, agents and timestamps back into the table (default: read only)")
    p.add_argument("--dry-run", action="store_true", help="show the changes, write nothing")

    p = command("complete", cmd_complete, "report the end of an acp task's external run")
    p.add_argument("task_id", help="the acp task waiting for its report")
    p.add_argument("--exit-code", type=int, required=True, help="the external run's exit code (0: success)")
    p.add_argument("--summary", help="what the run did, kept in the result (default: none)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mosaic-macp`` / ``mosaic macp``; returns the exit code."""
    args = build_parser().parse_args(argv)

    def body() -> int:
        code = args.handler(args)
        if args.subcommand in RECORDING_COMMANDS:
            deliver_after_command(args.repo)
        return code

    return run_main(f"{PROG} {args.subcommand}", body)
